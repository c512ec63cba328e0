"""ivt_lib.reproduction.reproduce: notebook discovery, the resume key, parameter validation and the skip/resume/force logic.

papermill is replaced by a recorder and the project root by a tmp folder, so nothing is executed or written in the repo.
"""
import os
import json
import re
import shutil
from pathlib import Path

import papermill
import pytest

from ivt_lib.reproduction import executor, reproduce
from ivt_lib.configs import ConfigError

REAL_NBS = executor.notebooks()
STEMS = ["00_base_model", "01_naive_iteration_collapse", "02_teacher_data_synthesis"]
TIER = "smoke"


def test_notebooks_lists_numbered_notebooks_in_order():
    stems = [p.stem for p in REAL_NBS]
    assert len(stems) >= 3 and stems == sorted(stems)
    assert stems[:3] == STEMS
    assert all(re.match(r"^\d\d_", s) and p.suffix == ".ipynb" for s, p in zip(stems, REAL_NBS))
    assert all(p.parent == executor.NB_DIR for p in REAL_NBS)  # executed/ copies are not listed


def test_notebooks_ignores_unnumbered(tmp_path, monkeypatch):
    for name in ("10_last.ipynb", "02_b.ipynb", "01_a.ipynb", "scratch.ipynb", "3_short.ipynb", "04_notes.md"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "executed").mkdir()
    (tmp_path / "executed" / "00_old.ipynb").write_text("{}")
    monkeypatch.setattr(executor, "NB_DIR", tmp_path)
    assert [p.name for p in executor.notebooks()] == ["01_a.ipynb", "02_b.ipynb", "10_last.ipynb"]


# ---------------------------------------------------------------------------------------------------------------
# run_key / validate
# ---------------------------------------------------------------------------------------------------------------


def test_run_key(tmp_path):
    nb = tmp_path / "00_x.ipynb"
    nb.write_text('{"cells": []}')
    k = executor.run_key(nb, {"a": 1, "b": 2})
    assert re.fullmatch(r"[0-9a-f]{16}", k)
    assert executor.run_key(nb, {"b": 2, "a": 1}) == k  # parameter order does not matter
    assert executor.run_key(nb, {"a": 1, "b": 3}) != k  # params
    assert executor.run_key(nb, {"a": 1, "b": 2}, upstream="abc") != k  # upstream key
    assert executor.run_key(nb, {"a": 1, "b": 2}, upstream="abc") != executor.run_key(nb, {"a": 1, "b": 2}, "abd")
    nb.write_text('{"cells": [] }')
    assert executor.run_key(nb, {"a": 1, "b": 2}) != k  # source


def test_validate_real_tiers_pass():
    for tier in ("smoke", "default"):  # (the paper tier needs its external benchmark data on disk)
        plan = executor.validate(tier)
        assert list(plan) == [p.stem for p in REAL_NBS]
    assert list(executor.validate("smoke", only=[STEMS[1]])) == [STEMS[1]]


@pytest.mark.parametrize("section,param", [
    ({"00_base_model": {"batch_size": 0}}, "batch_size"),
    ({"01_naive_iteration_collapse": {"T": 2, "T_curve": 1}}, "T_curve"),
    ({"02_teacher_data_synthesis": {"iou_min": 0.9, "iou_max": 0.5}}, "iou_min"),
])
def test_validate_names_the_bad_parameter(monkeypatch, section, param):
    monkeypatch.setattr(executor, "load_tier", lambda tier: section)
    with pytest.raises(ConfigError, match=param):
        executor.validate(TIER)


def test_validate_only_skips_other_notebooks(monkeypatch):
    monkeypatch.setattr(executor, "load_tier", lambda tier: {"00_base_model": {"batch_size": 0}})
    assert STEMS[1] in executor.validate(TIER, only=[STEMS[1]])  # the bad section is not checked


def test_unknown_parameter_is_rejected(monkeypatch):
    monkeypatch.setattr(executor, "load_tier", lambda tier: {"00_base_model": {"no_such_param": 1}})
    with pytest.raises(ConfigError, match="no_such_param"):
        executor.validate(TIER)


# ---------------------------------------------------------------------------------------------------------------
# run: skip, force, resume, rerun downstream
# ---------------------------------------------------------------------------------------------------------------


class Recorder:
    """Stands in for ``papermill.execute_notebook``; raises on ``fail_on`` (an interrupted run)."""

    def __init__(self):
        self.calls: list[tuple[str, dict, dict]] = []
        self.fail_on: str | None = None
        self.writes: dict[str, list[tuple[Path, bytes]]] = {}  # stem -> files it writes through ivt_lib.core.io

    def __call__(self, input_path, output_path, parameters=None, **kw):
        stem = Path(input_path).stem
        if stem == self.fail_on:
            raise RuntimeError(f"interrupted in {stem}")
        import os

        from ivt_lib.core import io

        kw["progress_env"] = os.environ.get("IVT_PROGRESS")  # what the kernel would inherit
        kw["threads_env"] = os.environ.get("OMP_NUM_THREADS")
        kw["force_env"] = os.environ.get("IVT_FORCE")
        self.calls.append((stem, dict(parameters or {}), {"output_path": output_path, **kw}))
        Path(output_path).write_text("{}")
        for path, data in self.writes.get(stem, []):
            io.atomic_write_bytes(path, data)  # as a notebook's results, figures and models are written

    def ran(self) -> list[str]:
        out = [c[0] for c in self.calls]
        self.calls.clear()
        return out


@pytest.fixture()
def sandbox(tmp_path, monkeypatch):
    """A tmp project root with copies of the first three real notebooks and a mutable tier."""
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    for s in STEMS:
        shutil.copy(executor.NB_DIR / f"{s}.ipynb", nb_dir)
    folders = {k: str(tmp_path / "out" / k) for k in ("results_dir", "figures_dir", "runs_dir")}  # as load_tier fills
    params = {s: {"tier": TIER, "n_samples": 3 + i, **folders} for i, s in enumerate(STEMS)}
    rec = Recorder()
    monkeypatch.setattr(executor, "ROOT", tmp_path)
    monkeypatch.setattr(executor, "NB_DIR", nb_dir)
    monkeypatch.setattr(executor, "load_tier", lambda tier: params)
    monkeypatch.setattr(papermill, "execute_notebook", rec)
    return {"root": tmp_path, "nb_dir": nb_dir, "params": params, "rec": rec,
            "stamps": tmp_path / "runs" / "reproduce" / TIER}


def test_first_run_executes_all_in_order_and_stamps(sandbox, monkeypatch):
    from ivt_lib.core import progress

    for k in progress.QUIET_ENV:
        monkeypatch.setenv(k, "1" if k == progress.ENV else "0")  # recorded, so the test's quiet() is undone after
    times = reproduce.run(TIER)
    rec = sandbox["rec"]
    assert [c[0] for c in rec.calls] == STEMS and list(times) == STEMS
    for stem, params, kw in rec.calls:
        assert params == sandbox["params"][stem]
        assert kw["cwd"] == str(sandbox["root"])
        assert kw["progress_env"] == "0", "unattended kernels must run without progress bars"
        assert Path(kw["output_path"]) == sandbox["nb_dir"] / "executed" / TIER / f"{stem}.ipynb"
        assert Path(kw["output_path"]).exists()
    for s in STEMS:
        stamp = json.loads((sandbox["stamps"] / f"{s}.json").read_text())
        assert re.fullmatch(r"[0-9a-f]{16}", stamp["key"]) and "finished" in stamp
    keys = [json.loads((sandbox["stamps"] / f"{s}.json").read_text())["key"] for s in STEMS]
    assert len(set(keys)) == 3


def test_second_run_skips_and_force_reruns(sandbox):
    rec = sandbox["rec"]
    reproduce.run(TIER)
    assert rec.ran() == STEMS
    times = reproduce.run(TIER)
    assert rec.ran() == [] and times == {s: 0.0 for s in STEMS}
    reproduce.run(TIER, force=True)
    assert rec.ran() == STEMS
    reproduce.run(TIER)
    assert rec.ran() == []  # force kept the same keys


def test_interrupted_run_resumes_from_the_failed_notebook(sandbox):
    rec = sandbox["rec"]
    rec.fail_on = STEMS[1]
    with pytest.raises(RuntimeError, match="interrupted"):
        reproduce.run(TIER)
    assert rec.ran() == [STEMS[0]]
    assert (sandbox["stamps"] / f"{STEMS[0]}.json").exists()
    assert not (sandbox["stamps"] / f"{STEMS[1]}.json").exists()
    rec.fail_on = None
    times = reproduce.run(TIER)
    assert rec.ran() == STEMS[1:]
    assert times[STEMS[0]] == 0.0
    reproduce.run(TIER)
    assert rec.ran() == []


def test_changed_params_rerun_that_notebook_and_everything_after(sandbox):
    rec, params = sandbox["rec"], sandbox["params"]
    reproduce.run(TIER)
    rec.ran()
    params[STEMS[0]]["n_samples"] = 99
    reproduce.run(TIER)
    assert rec.ran() == STEMS
    assert rec.calls == []
    params[STEMS[1]]["batch_size"] = 7
    reproduce.run(TIER)
    assert rec.ran() == STEMS[1:]
    reproduce.run(TIER)
    assert rec.ran() == []


def test_changed_source_reruns_that_notebook_and_everything_after(sandbox):
    rec = sandbox["rec"]
    reproduce.run(TIER)
    rec.ran()
    last = sandbox["nb_dir"] / f"{STEMS[2]}.ipynb"
    last.write_text(last.read_text() + "\n")
    reproduce.run(TIER)
    assert rec.ran() == [STEMS[2]]
    first = sandbox["nb_dir"] / f"{STEMS[0]}.ipynb"
    first.write_text(first.read_text() + "\n")
    reproduce.run(TIER)
    assert rec.ran() == STEMS


def test_invalid_params_run_nothing(sandbox):
    sandbox["params"][STEMS[2]]["batch_size"] = 0
    with pytest.raises(ConfigError, match="batch_size"):
        reproduce.run(TIER)
    assert sandbox["rec"].calls == [] and not sandbox["stamps"].exists()


def test_only_runs_the_named_notebooks(sandbox):
    rec = sandbox["rec"]
    times = reproduce.run(TIER, only=[STEMS[1]])
    assert rec.ran() == [STEMS[1]] and list(times) == [STEMS[1]]


def test_only_uses_the_same_keys_as_a_full_run(sandbox):
    """An unchanged notebook is skipped under --only, and --only does not invalidate the next full run."""
    rec, params = sandbox["rec"], sandbox["params"]
    reproduce.run(TIER)
    rec.ran()
    full_keys = {s: json.loads((sandbox["stamps"] / f"{s}.json").read_text())["key"] for s in STEMS}
    assert reproduce.run(TIER, only=[STEMS[1]]) == {STEMS[1]: 0.0}
    assert rec.ran() == []
    reproduce.run(TIER, only=[STEMS[1]], force=True)
    assert rec.ran() == [STEMS[1]]
    assert json.loads((sandbox["stamps"] / f"{STEMS[1]}.json").read_text())["key"] == full_keys[STEMS[1]]
    reproduce.run(TIER)
    assert rec.ran() == []
    # an upstream change outside --only still makes the selected downstream notebook stale
    params[STEMS[0]]["n_samples"] = 42
    reproduce.run(TIER, only=[STEMS[2]])
    assert rec.ran() == [STEMS[2]]


def test_main_cli(sandbox, capsys):
    assert reproduce.main(["--tier", TIER]) == 0
    assert sandbox["rec"].ran() == STEMS
    assert "all done" in capsys.readouterr().out
    assert reproduce.main(["--tier", TIER, "--force", "--only", STEMS[0], STEMS[2]]) == 0
    assert sandbox["rec"].ran() == [STEMS[0], STEMS[2]]


def test_library_or_data_change_reruns_the_notebooks(sandbox):
    """Keyed on ivt_lib/ and data/ too: after a library change the notebooks must not print "up to date"."""
    root = sandbox["root"]
    (root / "ivt_lib").mkdir()
    lib = root / "ivt_lib" / "metrics.py"
    lib.write_text("def acc(x):\n    return x\n")
    (root / "data").mkdir()
    reproduce.run(TIER)
    rec = sandbox["rec"]
    rec.ran()
    reproduce.run(TIER)
    assert rec.ran() == [], "nothing changed: everything skipped"
    lib.write_text("def acc(x):\n    return x * 1.0\n")
    reproduce.run(TIER)
    assert rec.ran() == STEMS
    (root / "data" / "model.safetensors").write_bytes(b"new weights")
    reproduce.run(TIER)
    assert rec.ran() == STEMS


def test_extra_seeds_run_after_their_notebook_and_chain_into_the_next(sandbox, monkeypatch):
    from ivt_lib.reproduction import seeds

    rec = sandbox["rec"]
    monkeypatch.setattr(executor, "SEEDS_AFTER", STEMS[1])
    monkeypatch.setattr(seeds, "run_all", lambda tier, s, force=False, extra_rows=False:
                        rec.calls.append((f"seeds {s}", {"force": force, "extra_rows": extra_rows}, {})))
    times = reproduce.run(TIER, seeds=[1, 2])
    assert [c[0] for c in rec.calls] == [STEMS[0], STEMS[1], "seeds [1, 2]", STEMS[2]]
    assert rec.calls[2][1] == {"force": True, "extra_rows": True} and "seeds" in times
    rec.ran()
    assert reproduce.run(TIER, seeds=[1, 2])["seeds"] == 0.0 and rec.ran() == []  # stamped: skipped
    reproduce.run(TIER, seeds=[1])  # other seeds: they rerun, and so does the notebook after them, not before
    assert rec.ran() == ["seeds [1]", STEMS[2]]
    reproduce.run(TIER, only=[STEMS[2]], seeds=[1])  # --only computes the same chained key
    assert rec.ran() == []
    reproduce.run(TIER)  # no seeds: the evaluation's input changed
    assert rec.ran() == [STEMS[2]]


# ---------------------------------------------------------------------------------------------------------------
# Outputs are checked, not just stamps (issue 33, item 2): a skip verifies the sizes and hashes in the stamp
# ---------------------------------------------------------------------------------------------------------------


def _model(sandbox, stem=STEMS[0]) -> Path:
    """Make ``stem`` write a 'merged model' (and a result) through ivt_lib.core.io, as notebook 03 does."""
    out = sandbox["root"] / "runs" / TIER / "sft" / "merged" / "model.safetensors"
    sandbox["rec"].writes[stem] = [(out, bytes(range(256)) * 64), (out.parent.parent / "sft.json", b'{"acc": 1}')]
    return out


def test_the_stamp_records_every_file_its_notebook_wrote(sandbox):
    model = _model(sandbox)
    reproduce.run(TIER)
    stamp = json.loads((sandbox["stamps"] / f"{STEMS[0]}.json").read_text())
    rel = str(model.relative_to(sandbox["root"]))
    assert set(stamp["outputs"]) == {rel, str(model.parent.parent.relative_to(sandbox["root"]) / "sft.json")}
    assert stamp["outputs"][rel]["size"] == 256 * 64 and re.fullmatch(r"[0-9a-f]{64}", stamp["outputs"][rel]["sha256"])
    assert json.loads((sandbox["stamps"] / f"{STEMS[1]}.json").read_text())["outputs"] == {}  # wrote nothing
    assert not list((sandbox["stamps"] / "logs").glob("*.outputs")), "the output logs are removed once stamped"


def test_a_corrupt_output_reruns_the_notebook_that_wrote_it(sandbox, capsys):
    """A merged SFT model cut to half its size: every notebook was 'up to date, skipped', exit 0."""
    rec, model = sandbox["rec"], _model(sandbox)
    reproduce.run(TIER)
    rec.ran()
    assert reproduce.run(TIER) == {s: 0.0 for s in STEMS} and rec.ran() == []
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    capsys.readouterr()
    reproduce.run(TIER)
    assert rec.ran() == [STEMS[0]], "the notebook that wrote it reruns (and rewrites it); the others are intact"
    rel = model.relative_to(sandbox["root"])
    assert f"{STEMS[0]}: {rel} changed since its run (16384 bytes recorded, 8192 now): rerunning" in \
        capsys.readouterr().out
    assert model.stat().st_size == 256 * 64
    reproduce.run(TIER)
    assert rec.ran() == []


def test_a_changed_or_missing_output_reruns_too(sandbox, capsys):
    rec, model = sandbox["rec"], _model(sandbox)
    reproduce.run(TIER)
    rec.ran()
    model.write_bytes(bytes(256 * 64))  # same size, other bytes
    reproduce.run(TIER)
    assert rec.ran() == [STEMS[0]] and "(same size, other content): rerunning" in capsys.readouterr().out
    shutil.rmtree(model.parent)
    reproduce.run(TIER)
    assert rec.ran() == [STEMS[0]] and f"{model.relative_to(sandbox['root'])} is missing: rerunning" in \
        capsys.readouterr().out


def test_a_file_that_a_later_notebook_rewrites_is_not_a_change(sandbox):
    """The seeds' summary adds every seed's numbers to notebook 03's sft.json: that must not rerun notebook 03."""
    rec, model = sandbox["rec"], _model(sandbox)
    result = model.parent.parent / "sft.json"
    rec.writes[STEMS[2]] = [(result, b'{"acc": 1, "seeds": {}}')]
    reproduce.run(TIER)
    rec.ran()
    reproduce.run(TIER)
    assert rec.ran() == []
    result.write_text('{"acc": 0}')  # matches no stamp's record: corrupt
    reproduce.run(TIER)
    assert rec.ran() == [STEMS[0], STEMS[2]]


def test_big_files_are_fingerprinted_by_size_and_both_ends(tmp_path, monkeypatch):
    from ivt_lib.reproduction import outputs

    monkeypatch.setattr(outputs, "FULL_HASH_MAX", 1000)
    monkeypatch.setattr(outputs, "_END", 100)
    f = tmp_path / "big.bin"
    f.write_bytes(bytes(5000))
    fp = outputs.fingerprint(f)
    assert fp["size"] == 5000 and fp["ends_only"] is True
    f.write_bytes(bytes(2000) + b"x" + bytes(2999))  # a middle byte: not seen (the documented limit)
    assert outputs.fingerprint(f) == fp
    f.write_bytes(bytes(4999) + b"x")
    assert outputs.fingerprint(f) != fp


# ---------------------------------------------------------------------------------------------------------------
# Reproducibility (issue 33, item 7): a fixed thread count per task, in the key and the stamp
# ---------------------------------------------------------------------------------------------------------------


def test_every_notebook_runs_with_the_tiers_fixed_thread_count(sandbox, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # what the shell had: not what the kernels get
    reproduce.run(TIER)
    assert [c[2]["threads_env"] for c in sandbox["rec"].calls] == ["1"] * len(STEMS)
    assert all(json.loads((sandbox["stamps"] / f"{s}.json").read_text())["threads"] == 1 for s in STEMS)
    assert os.environ["OMP_NUM_THREADS"] == "2", "restored after the run"
    sandbox["rec"].ran()
    reproduce.run(TIER, threads=2)  # another thread count: other numbers, so another key
    assert sandbox["rec"].ran() == STEMS


def test_the_key_holds_the_thread_count(sandbox):
    params = sandbox["params"]
    k1, k2, kn = (executor.keys(params, [], t) for t in (1, 2, None))
    assert k1 == executor.keys(params, [], 1) and k1[STEMS[0]] != k2[STEMS[0]] != kn[STEMS[0]]


def test_a_forced_run_tells_the_notebooks_to_retrain_over_corrupt_checkpoints(sandbox):
    reproduce.run(TIER)
    assert {c[2]["force_env"] for c in sandbox["rec"].calls} == {None}
    sandbox["rec"].ran()
    reproduce.run(TIER, force=True)
    assert [c[2]["force_env"] for c in sandbox["rec"].calls] == ["1"] * len(STEMS)
