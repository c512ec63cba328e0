"""Tests for ivt_lib.core.io: atomic writes, provenance sidecars, figures."""
import json
import os
import re
from pathlib import Path

import pytest

from ivt_lib.core import io as ivt_io
from ivt_lib.core import trajectory


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# ---------------------------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------------------------


def test_atomic_write_json_round_trip(tmp_path):
    obj = {"a": 1, "b": [1.5, 2, None, True], "nested": {"s": "ü ✓", "empty": []}}
    p = ivt_io.atomic_write_json(tmp_path / "r.json", obj)
    assert p == tmp_path / "r.json"
    assert json.loads(p.read_text()) == obj
    assert p.read_text().endswith("\n")
    assert _files(tmp_path) == {"r.json"}  # no temp files left behind


def test_atomic_write_json_non_json_values_become_strings(tmp_path):
    p = ivt_io.atomic_write_json(tmp_path / "r.json", {"path": Path("/x/y"), "t": (1, 2)})
    assert json.loads(p.read_text()) == {"path": "/x/y", "t": [1, 2]}


def test_atomic_write_creates_parent_folders(tmp_path):
    p = ivt_io.atomic_write_json(tmp_path / "a" / "b" / "c.json", [1, 2, 3])
    assert json.loads(p.read_text()) == [1, 2, 3]


def test_atomic_write_overwrites(tmp_path):
    p = tmp_path / "r.json"
    ivt_io.atomic_write_json(p, {"v": 1})
    ivt_io.atomic_write_json(p, {"v": 2})
    assert json.loads(p.read_text()) == {"v": 2}
    assert _files(tmp_path) == {"r.json"}


def test_atomic_write_bytes_exact(tmp_path):
    data = bytes(range(256)) * 10
    p = ivt_io.atomic_write_bytes(str(tmp_path / "blob.bin"), data)
    assert isinstance(p, Path)
    assert p.read_bytes() == data
    assert _files(tmp_path) == {"blob.bin"}


def test_failed_replace_keeps_old_file_and_cleans_temp(tmp_path, monkeypatch):
    p = tmp_path / "r.json"
    ivt_io.atomic_write_json(p, {"v": "old"})

    def boom(src, dst):
        assert Path(src).exists()  # the temp file was fully written before the replace
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        ivt_io.atomic_write_json(p, {"v": "new"})
    monkeypatch.undo()
    assert json.loads(p.read_text()) == {"v": "old"}
    assert _files(tmp_path) == {"r.json"}


def test_failed_write_keeps_old_file_and_cleans_temp(tmp_path, monkeypatch):
    p = tmp_path / "r.json"
    ivt_io.atomic_write_json(p, {"v": "old"})

    def boom(fd):
        raise OSError("fsync failed")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="fsync failed"):
        ivt_io.atomic_write_json(p, {"v": "new"})
    monkeypatch.undo()
    assert json.loads(p.read_text()) == {"v": "old"}
    assert _files(tmp_path) == {"r.json"}


def test_interrupt_during_replace_cleans_temp(tmp_path, monkeypatch):
    p = tmp_path / "r.json"
    ivt_io.atomic_write_json(p, {"v": "old"})

    def interrupt(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        ivt_io.atomic_write_json(p, {"v": "new"})
    monkeypatch.undo()
    assert json.loads(p.read_text()) == {"v": "old"}
    assert _files(tmp_path) == {"r.json"}


def test_unserializable_object_leaves_old_file(tmp_path):
    p = tmp_path / "r.json"
    ivt_io.atomic_write_json(p, {"v": "old"})
    circular: dict = {}
    circular["self"] = circular
    with pytest.raises(ValueError):
        ivt_io.atomic_write_json(p, circular)
    assert json.loads(p.read_text()) == {"v": "old"}
    assert _files(tmp_path) == {"r.json"}


# ---------------------------------------------------------------------------------------------------------------
# provenance
# ---------------------------------------------------------------------------------------------------------------

SHA = re.compile(r"^(unknown|[0-9a-f]{40}(\+dirty)?)$")


def test_git_sha_format():
    assert SHA.match(ivt_io.git_sha(Path(ivt_io.__file__).resolve().parent.parent))


def test_git_sha_outside_git_is_unknown(tmp_path, monkeypatch):
    # GIT_CEILING_DIRECTORIES stops git from finding an enclosing repository above tmp_path
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert ivt_io.git_sha(tmp_path) == "unknown"


def test_write_result_writes_provenance_sidecar(tmp_path):
    params = {"lr": 1e-4, "steps": 3, "name": "test"}
    p = ivt_io.write_result(tmp_path / "result.json", {"acc": 0.5}, params=params, wall_s=1.25)
    assert p == tmp_path / "result.json"
    assert json.loads(p.read_text()) == {"acc": 0.5}
    side = tmp_path / "result.provenance.json"
    assert _files(tmp_path) == {"result.json", "result.provenance.json"}
    prov = json.loads(side.read_text())
    for key in ("git_sha", "params", "packages", "python", "machine", "cpus", "wall_s", "written_at"):
        assert key in prov
    assert SHA.match(prov["git_sha"])
    assert prov["params"] == params
    assert prov["wall_s"] == 1.25
    assert set(prov["packages"]) == set(ivt_io.PACKAGES)
    assert isinstance(prov["packages"]["torch"], str)  # installed in this environment


def test_write_result_default_params_is_empty_dict(tmp_path):
    ivt_io.write_result(tmp_path / "r.json", {"x": 1})
    prov = json.loads((tmp_path / "r.provenance.json").read_text())
    assert prov["params"] == {}
    assert prov["wall_s"] is None


# ---------------------------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.5, 1.0))
    ax.plot([0, 1, 2], [0, 1, 4])
    yield fig
    plt.close(fig)


def test_save_figure_png_with_sidecar(tmp_path, tiny_figure):
    p = ivt_io.save_figure(tiny_figure, tmp_path / "figs" / "curve.png", params={"k": 1}, wall_s=0.5)
    assert p == tmp_path / "figs" / "curve.png"
    data = p.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    from PIL import Image

    with Image.open(p) as im:
        im.load()
        assert im.width > 10 and im.height > 10
    prov = json.loads((tmp_path / "figs" / "curve.provenance.json").read_text())
    assert prov["params"] == {"k": 1} and prov["wall_s"] == 0.5
    assert _files(tmp_path / "figs") == {"curve.png", "curve.provenance.json"}


def test_save_figure_format_follows_suffix(tmp_path, tiny_figure):
    p = ivt_io.save_figure(tiny_figure, tmp_path / "curve.svg")
    head = p.read_bytes()[:200]
    assert b"<svg" in p.read_bytes() and not head.startswith(b"\x89PNG")


# ---------------------------------------------------------------------------------------------------------------
# trajectories (JSON lines)
# ---------------------------------------------------------------------------------------------------------------


def test_trajectories_round_trip(tmp_path):
    import math

    from ivt_lib.core.loop import StepRecord, Trajectory

    trajs = [
        Trajectory("s1", "fam", (1.0, 2.0, 30.0, 40.0), 64, 48, [
            StepRecord('{"bbox_2d": [1, 2, 3, 4]}', (1.0, 2.0, 3.0, 4.0), 0.25, True, None, -0.5, min_logprob=-2.0),
            StepRecord("nothing", None, 0.0, False, "no_box", -1.5, stopped=True, min_logprob=-3.0)]),
        Trajectory("s2", "other", (0.0, 0.0, 5.0, 5.0), 10, 10, [
            StepRecord("x", (0.0, 0.0, 5.0, 5.0), 1.0, True)]),  # mean_logprob NaN by default
    ]
    p = trajectory.save_trajectories(tmp_path / "t.jsonl", trajs)
    assert len(p.read_text().splitlines()) == 2
    assert _files(tmp_path) == {"t.jsonl"}
    back = trajectory.load_trajectories(p)
    assert back[0] == trajs[0]
    assert isinstance(back[0].gt, tuple) and isinstance(back[0].steps[0].box, tuple)
    assert back[0].steps[1].box is None and back[0].steps[1].stopped is True
    assert back[1].sample_id == "s2" and back[1].steps[0].box == (0.0, 0.0, 5.0, 5.0)
    assert math.isnan(back[1].steps[0].mean_logprob)


def test_results_record_project_paths_relative_to_the_root(tmp_path):
    """A result that names a checkout's own folder must not change when the checkout moves (fresh clones)."""
    from ivt_lib.core import io
    from ivt_lib.configs import ROOT

    obj = {"model": str(ROOT / "runs" / "default" / "sft" / "merged"), "nested": [{"p": str(ROOT / "data" / "x")}],
           "hub": "Qwen/Qwen3-VL-4B-Instruct", "elsewhere": "/opt/models/m", "n": 3}
    out = tmp_path / "r.json"
    io.write_result(out, obj, {"dataset": str(ROOT / "data" / "scenes")})
    got = json.loads(out.read_text())
    assert got == {"model": "runs/default/sft/merged", "nested": [{"p": "data/x"}], "hub": "Qwen/Qwen3-VL-4B-Instruct",
                   "elsewhere": "/opt/models/m", "n": 3}
    assert json.loads(out.with_suffix(".provenance.json").read_text())["params"]["dataset"] == "data/scenes"


def test_kill_between_the_two_renames_is_recovered(tmp_path, monkeypatch):
    """A kill after ``path -> path.old`` and before ``tmp -> path`` left only ``.old``; GRPO then restarted from zero
    without a word. The next reader (or save) restores the last complete folder."""
    from ivt_lib.core import io

    ck = tmp_path / "checkpoint"
    with io.atomic_dir(ck) as t:
        (t / "state.pt").write_text("step 4")
    real, calls = os.replace, {"n": 0}

    def dying(a, b):
        calls["n"] += 1
        if calls["n"] == 2:  # the second rename: tmp -> path
            raise KeyboardInterrupt
        return real(a, b)

    monkeypatch.setattr(io.os, "replace", dying)
    with pytest.raises(KeyboardInterrupt):
        with io.atomic_dir(ck) as t:
            (t / "state.pt").write_text("step 8")
    monkeypatch.setattr(io.os, "replace", real)
    assert not ck.exists() and (tmp_path / "checkpoint.old" / "state.pt").exists()
    assert (io.recover_dir(ck) / "state.pt").read_text() == "step 4"
    assert not (tmp_path / "checkpoint.old").exists()
    with io.atomic_dir(ck) as t:  # and saving works again
        (t / "state.pt").write_text("step 8")
    assert (ck / "state.pt").read_text() == "step 8"


# ---------------------------------------------------------------------------------------------------------------
# atomic_dir: a unique temp folder per writer (issue 33, item 5)
# ---------------------------------------------------------------------------------------------------------------

_SLOW_WRITER = """
import sys, time
from pathlib import Path
from ivt_lib.core import io
target, go = Path(sys.argv[1]), Path(sys.argv[2])
with io.atomic_dir(target) as tmp:
    (tmp / "a1").write_text("A")
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.05)
    (tmp / "a2").write_text("A")  # the old shared <name>.tmp was deleted under it by the second writer by now
"""


def test_two_processes_writing_one_folder_never_delete_each_others_work(tmp_path):
    """atomic_dir always used <name>.tmp and deleted it if it existed: an overlapping writer deleted the first one's
    half-written folder."""
    import subprocess
    import sys

    target, go = tmp_path / "merged", tmp_path / "go"
    first = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target), str(go)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=Path(ivt_io.__file__).resolve().parents[2])
    assert first.stdout.readline().strip() == "ready"
    with ivt_io.atomic_dir(target) as tmp:  # the second writer, while the first is still writing
        (tmp / "b1").write_text("B")
    assert _files(target) == {"b1"}
    go.touch()
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert _files(target) == {"a1", "a2"}, "the writer that swapped last wins, whole"
    assert _files(tmp_path) == {"merged", "go"}, "no temp or .old folder left"


def test_a_dead_writers_temp_folder_is_cleaned_and_a_live_ones_kept(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".ck.{dead.stdout.strip()}.0123abcd.tmp"
    live = tmp_path / f".ck.{os.getppid()}.0123abcd.tmp"  # a live process's (pytest's parent)
    legacy = tmp_path / "ck.tmp"  # the name every writer shared before
    for d in (stale, live, legacy):
        d.mkdir()
    with ivt_io.atomic_dir(tmp_path / "ck") as tmp:
        assert re.fullmatch(rf"\.ck\.{os.getpid()}\.[0-9a-f]{{8}}\.tmp", tmp.name)
        (tmp / "state").write_text("1")
    assert _files(tmp_path) == {"ck", live.name}


def test_a_failed_save_leaves_no_temp_folder(tmp_path):
    ck = tmp_path / "ck"
    with ivt_io.atomic_dir(ck) as tmp:
        (tmp / "state").write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with ivt_io.atomic_dir(ck) as tmp:
            (tmp / "state").write_text("half")
            raise RuntimeError("disk full")
    assert _files(tmp_path) == {"ck"} and (ck / "state").read_text() == "old"


def test_written_files_and_folders_are_noted_in_the_output_log(tmp_path, monkeypatch):
    log = tmp_path / "outputs.log"
    monkeypatch.setenv(ivt_io.OUTPUT_LOG_ENV, str(log))
    ivt_io.write_result(tmp_path / "r.json", {"a": 1})
    with ivt_io.atomic_dir(tmp_path / "model") as tmp:
        (tmp / "w.safetensors").write_bytes(b"x")
    assert log.read_text().splitlines() == [str(tmp_path / n) for n in ("r.json", "r.provenance.json", "model")]
    monkeypatch.delenv(ivt_io.OUTPUT_LOG_ENV)
    ivt_io.atomic_write_json(tmp_path / "s.json", {})
    assert len(log.read_text().splitlines()) == 3


def test_notebooks_write_figures_only_through_save_figure():
    """Figures are written atomically with a provenance sidecar, like results: no notebook calls savefig itself."""
    import nbformat

    from ivt_lib.reproduction.executor import notebooks

    for nb in notebooks():
        code = "\n".join(c.source for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code")
        assert ".savefig(" not in code and "imsave(" not in code, nb.stem
