"""Checkpoints and saved models: corrupt ones are named with what to do, a forced rerun retrains over them, state is
saved without pickle and old ``state.pt`` checkpoints still resume, read with ``weights_only=True`` (issue 33,
items 2 and 6)."""
import os
from pathlib import Path

import pytest
import torch

from ivt_lib.training import grpo

MARKER = Path("/tmp/ivt_test_pickle_ran")  # what the malicious state.pt below would create on load


def _cut(path: Path, keep: float = 0.5) -> None:
    """Cut a file to ``keep`` of its size, as the issue's probes did."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _read_state(folder: Path) -> dict:
    """A checkpoint's state in either format (test files are trusted; on the code before, only state.pt exists)."""
    if not (folder / "state.json").exists():
        return torch.load(folder / "state.pt", weights_only=False)
    from ivt_lib.core.state_io import load_state

    return load_state(folder)


def _legacy(folder: Path, state: dict | None = None) -> None:
    """Turn a checkpoint into the old format: the state as one pickled state.pt (what the code before wrote)."""
    state = _read_state(folder) if state is None else state
    for name in ("state.json", "state.safetensors"):
        (folder / name).unlink(missing_ok=True)
    torch.save(state, folder / "state.pt")


class RunsCode:
    """Unpickling this creates MARKER: stands for any code a foreign state.pt could run."""

    def __reduce__(self):
        return (os.makedirs, (str(MARKER),))


GRPO_CFG = dict(iterations=2, prompts_per_iter=2, group_size=2, T=1, max_new_tokens=6, save_every=1)


def _grpo(tiny_dir, samples, out, force=None, **kw):
    cfg = grpo.GRPORunConfig(**{**GRPO_CFG, **kw})
    args = {} if force is None else {"force": force}
    return grpo.MultiStepGRPO(str(tiny_dir), samples, out, cfg, device="cpu", **args)


@pytest.fixture(scope="module")
def grpo_full(tiny_dir, tmp_path_factory, test_samples):
    """An uninterrupted 2-update GRPO run: the reference every resumed or retrained run must match."""
    tr = _grpo(tiny_dir, test_samples[:6], tmp_path_factory.mktemp("full"))
    tr.train(show_progress=False)
    return tr


def _same_run(a, b):
    assert [e["rollout_digest"] for e in a.logs] == [e["rollout_digest"] for e in b.logs]
    assert [e["loss"] for e in a.logs] == pytest.approx([e["loss"] for e in b.logs], abs=1e-9)
    pa = {n: p for n, p in a.model.named_parameters() if p.requires_grad}
    assert all(torch.allclose(pa[n], p, atol=1e-6) for n, p in b.model.named_parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------------- the state format
def test_state_round_trips_exactly_without_pickle(tmp_path):
    from ivt_lib.core.state_io import STATE_JSON, load_state, save_state

    p = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(p.parameters(), lr=1e-3, betas=(0.9, 0.98))
    p(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"opt": opt.state_dict(), "step": 7, "best": float("nan"), "inf": float("-inf"), "curve": [{"a": 0.1}],
             "tup": (1, "x", None), "nested": {3: {"__tensor__": 1}}, "flag": True}
    save_state(tmp_path, state)
    got = load_state(tmp_path)
    assert got["opt"]["param_groups"] == state["opt"]["param_groups"]  # betas still a tuple, ids still ints
    assert set(got["opt"]["state"]) == {0, 1}
    for k, s in state["opt"]["state"].items():
        assert all(torch.equal(s[n], got["opt"]["state"][k][n]) and s[n].dtype == got["opt"]["state"][k][n].dtype
                   for n in s)
    assert got["step"] == 7 and got["best"] != got["best"] and got["inf"] == float("-inf")
    assert got["tup"] == (1, "x", None) and got["nested"] == {3: {"__tensor__": 1}} and got["flag"] is True
    assert "__reduce__" not in (tmp_path / STATE_JSON).read_text()
    with pytest.raises(TypeError, match="plain values"):
        save_state(tmp_path, {"f": open})


def test_a_foreign_state_pt_is_refused_and_its_code_never_runs(tiny_dir, tmp_path, test_samples, grpo_full):
    """The old loader, torch.load(weights_only=False), ran whatever a copied runs/ folder's state.pt held."""
    import shutil

    MARKER.exists() and MARKER.rmdir()
    ck = tmp_path / "out" / "checkpoint"
    shutil.copytree(grpo_full.ckpt, ck)
    st = _read_state(ck)
    st["val0"] = RunsCode()
    _legacy(ck, st)
    with pytest.raises(ValueError, match=r"state.pt holds pickled objects other than tensors and plain values"):
        _grpo(tiny_dir, test_samples[:6], tmp_path / "out")
    assert not MARKER.exists()
    with pytest.raises(ValueError, match="could run code"):  # a forced rerun does not overwrite it either
        _grpo(tiny_dir, test_samples[:6], tmp_path / "out", force=True)
    assert not MARKER.exists()


def test_an_old_format_grpo_checkpoint_resumes_to_the_same_run(tiny_dir, tmp_path, test_samples, grpo_full):
    """A state.pt written by the code before (a pickle) resumes, read with weights_only=True, into the same run."""
    first = _grpo(tiny_dir, test_samples[:6], tmp_path / "b", iterations=1)
    first.train(show_progress=False)
    assert (first.ckpt / "state.json").exists() and not (first.ckpt / "state.pt").exists()
    _legacy(first.ckpt)
    resumed = _grpo(tiny_dir, test_samples[:6], tmp_path / "b")
    assert resumed.iteration == 1
    resumed.train(show_progress=False)
    _same_run(grpo_full, resumed)
    assert (resumed.ckpt / "state.json").exists() and not (resumed.ckpt / "state.pt").exists()  # saved anew


def test_an_old_format_base_training_checkpoint_resumes(tmp_path, monkeypatch):

    from ivt_lib.embedded import train_base as tb

    def cfg(d, **kw):
        return tb.BaseTrainConfig(**{**dict(out_dir=str(d / "out"), ckpt_dir=str(d / "ckpt"), total_steps=4,
                                            batch_size=2, warmup_steps=1, eval_every=2, eval_n=3, ckpt_every_s=0.0,
                                            threads=1), **kw})

    tb.train(cfg(tmp_path / "a"))
    tb.train(cfg(tmp_path / "b", total_steps=2))  # the first stage of a two-stage run
    _legacy(tmp_path / "b" / "ckpt")
    out = tb.train(cfg(tmp_path / "b"))
    assert out["steps"] == 4 and out["stages"] == [{"start_step": 0, "total_steps": 2},
                                                    {"start_step": 2, "total_steps": 4}]


# --------------------------------------------------------------------------------------------- corrupt checkpoints
@pytest.mark.parametrize("fmt", ["old state.pt", "state.safetensors", "adapter"])
def test_a_truncated_grpo_checkpoint_is_named_and_a_forced_rerun_retrains(tiny_dir, tmp_path, test_samples,
                                                                          grpo_full, fmt, monkeypatch):
    """Issue 33: a truncated GRPO state.pt gave `OSError: [Errno 22] Invalid argument`, naming nothing."""
    import shutil

    ck = tmp_path / "out" / "checkpoint"
    shutil.copytree(grpo_full.ckpt, ck)
    if fmt == "old state.pt":
        _legacy(ck)
    name = {"old state.pt": "state.pt", "state.safetensors": "state.safetensors",
            "adapter": "adapter_model.safetensors"}[fmt]
    _cut(ck / name)
    with pytest.raises(RuntimeError) as err:
        _grpo(tiny_dir, test_samples[:6], tmp_path / "out")
    msg = str(err.value)
    assert msg.startswith(f"GRPO checkpoint {ck} is corrupt: {name} is ") and "Delete that folder, or rerun" in msg
    assert "--force" in msg, msg
    monkeypatch.setenv("IVT_FORCE", "1")  # what a forced rerun sets for the notebooks it runs
    again = _grpo(tiny_dir, test_samples[:6], tmp_path / "out")
    assert again.iteration == 0
    again.train(show_progress=False)
    _same_run(grpo_full, again)
    monkeypatch.delenv("IVT_FORCE")
    assert _grpo(tiny_dir, test_samples[:6], tmp_path / "out").iteration == 2  # replaced by a whole one


def test_a_truncated_base_training_checkpoint_is_named_and_force_retrains(tmp_path):
    from ivt_lib.embedded import train_base as tb

    cfg = tb.BaseTrainConfig(out_dir=str(tmp_path / "out"), ckpt_dir=str(tmp_path / "ckpt"), total_steps=2,
                             batch_size=2, warmup_steps=1, eval_every=2, eval_n=3, ckpt_every_s=0.0, threads=1)
    tb.train(cfg)
    _cut(tmp_path / "ckpt" / "state.safetensors")
    with pytest.raises(RuntimeError, match=r"base-training checkpoint .*ckpt is corrupt: state.safetensors is "
                                           r"truncated.*Delete that folder"):
        tb.train(cfg)
    assert tb.train(cfg, force=True)["steps"] == 2
    assert tb.train(cfg)["steps"] == 2  # whole again: resumed, nothing left to do


def test_a_truncated_sft_checkpoint_is_named_and_a_forced_rerun_retrains(tiny_dir, tmp_path, test_samples):
    """Issue 33: a truncated SFT checkpoint gave `SafetensorError: incomplete metadata`, naming no file; --force did
    not retrain. Now the error names the checkpoint and file; forced, it is deleted and the run goes on from the
    checkpoint before it, to the same losses and adapter."""
    import random

    from ivt_lib.core import boxes as bx
    from ivt_lib.core.models import adapter_checksum
    from ivt_lib.training import sft, traces
    from ivt_lib.training.teacher import ScriptedTeacher

    samples = test_samples[:8]
    starts = [bx.jitter(random.Random(i), s["bbox"], 128, 128, 0.4) for i, s in enumerate(samples)]
    reqs = traces.build_requests(samples, starts, T=2, iou_max=1.0)
    ds = traces.to_dataset(traces.synthesize(ScriptedTeacher(), reqs)[0])
    cfg = sft.SFTRunConfig(max_steps=2, train_batch_size=4, save_steps=1, logging_steps=1, lora_r=8, lora_alpha=16)
    ref = sft.run_sft(str(tiny_dir), ds, tmp_path / "a", cfg, device="cpu")
    sft.run_sft(str(tiny_dir), ds, tmp_path / "b", cfg, device="cpu")
    bad = tmp_path / "b" / "checkpoints" / "checkpoint-2"
    _cut(bad / "adapter_model.safetensors")
    with pytest.raises(RuntimeError) as err:
        sft.run_sft(str(tiny_dir), ds, tmp_path / "b", cfg, device="cpu")
    assert str(err.value).startswith(f"SFT checkpoint {bad} is corrupt: adapter_model.safetensors is truncated")
    assert "Delete that folder, or rerun" in str(err.value)
    out = sft.run_sft(str(tiny_dir), ds, tmp_path / "b", cfg, device="cpu", force=True)
    assert out["resumed_from"].endswith("checkpoint-1") and out["steps"] == 2
    assert [h["loss"] for h in out["log_history"]] == [h["loss"] for h in ref["log_history"]]
    sha = [adapter_checksum(tmp_path / d / "adapter")["sha256"] for d in ("a", "b")]
    assert sha[0] == sha[1]
    assert sft.checkpoint_problems(bad) == []  # written again, whole


# ------------------------------------------------------------------------------------------------ corrupt models
def test_a_model_cut_to_half_is_named_with_what_to_do(tiny_dir, tmp_path):
    """Issue 33: a merged SFT model cut to half its size failed with `SafetensorError: incomplete metadata`."""
    import shutil

    from ivt_lib.core.models import load_model

    merged = tmp_path / "runs" / "x" / "merged"
    shutil.copytree(tiny_dir, merged)
    _cut(merged / "model.safetensors")
    with pytest.raises(RuntimeError) as err:
        load_model(merged, device="cpu")
    msg = str(err.value)
    assert msg.startswith(f"model folder {merged} is corrupt: model.safetensors is truncated: ") and \
        "Delete that folder, or rerun" in msg, msg
    (merged / "model.safetensors").write_bytes(b"")
    with pytest.raises(RuntimeError, match="model.safetensors is empty"):
        load_model(merged, device="cpu")


def test_the_advice_names_the_notebook_that_writes_the_folder():
    from ivt_lib.configs import ROOT
    from ivt_lib.core.integrity import writer_hint

    assert writer_hint(ROOT / "runs/smoke/sft/student/merged") == (
        "rerun notebook 03_sft with --force (`python -m ivt_lib.reproduction.reproduce --tier smoke --force`), which "
        "writes it again")
    assert "notebook 03_sft" in writer_hint(ROOT / "runs/default/seed_1/sft/ours/checkpoints/checkpoint-40")
    assert "notebook 04_grpo" in writer_hint(ROOT / "runs/default/grpo/checkpoint")
    assert "notebook 04_grpo" in writer_hint(ROOT / "runs/full/single_step_grpo/merged")
    assert "ivt_lib.embedded.train_base" in writer_hint(ROOT / "runs/base_ckpt")
    assert writer_hint(ROOT / "data/base_model").startswith("restore it with `git checkout -- data/base_model`")


def test_an_old_state_pt_with_numpy_scalars_loads(tmp_path):
    """Old states may hold a metric as numpy.float64: numpy scalars are on the weights-only allowlist, callables not."""
    import numpy as np

    from ivt_lib.core.state_io import load_state

    torch.save({"best": np.float64(0.25), "n": np.int64(3), "t": torch.ones(2)}, tmp_path / "state.pt")
    st = load_state(tmp_path)
    assert st["best"] == 0.25 and st["n"] == 3 and torch.equal(st["t"], torch.ones(2))
