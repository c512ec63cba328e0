"""Phase-1 data (filter, linear path, validation, dataset) and the trl SFT wrapper (mask, resume after a kill)."""
import dataclasses
import random

import pytest

from ivt_lib.core import boxes as bx
from ivt_lib.training import sft, traces
from ivt_lib.core.parsing import parse_box
from ivt_lib.training.teacher import ScriptedTeacher


def test_filter_and_linear_path(test_samples):
    s = test_samples[:6]
    starts = [None, s[1]["bbox"]] + [bx.jitter(random.Random(i), x["bbox"], 128, 128, 0.5) for i, x in enumerate(s[2:])]
    st = traces.SynthesisStats()
    reqs = traces.build_requests(s, starts, T=2, iou_min=0.0, iou_max=0.85, stats=st)
    assert st.n_no_student_box == 1 and st.n_outside_filter >= 1  # a perfect box (IoU 1) is outside [0, 0.85]
    assert st.n_kept_samples + st.n_outside_filter + st.n_no_student_box == 6
    assert len(reqs) == 2 * st.n_kept_samples
    for a, b in zip(reqs[::2], reqs[1::2]):
        gt = next(x["bbox"] for x in s if x["id"] == a.sample_id)
        assert a.step == 1 and b.step == 2 and b.previous == a.target  # the chain b_0 -> b_1 -> b_2
        assert b.target == pytest.approx(tuple(gt))  # the last step lands on the ground truth
        mid = bx.lerp(a.previous, gt, 0.5)
        assert a.target == pytest.approx(mid)


def _far(box):
    """A box of the same size moved to the opposite corner (IoU 0 with ``box`` in a 128 px scene)."""
    w, h = box[2] - box[0], box[3] - box[1]
    x0 = 0.0 if box[0] > 64 else 128.0 - w
    y0 = 0.0 if box[1] > 64 else 128.0 - h
    return (x0, y0, x0 + w, y0 + h)


def test_ours_recipe_keeps_good_boxes_and_sends_misses_to_the_object(test_samples):
    s = test_samples[:6]
    starts = [s[0]["bbox"], s[1]["bbox"], _far(s[2]["bbox"]),
              *[bx.jitter(random.Random(i), x["bbox"], 128, 128, 0.2) for i, x in enumerate(s[3:])]]
    assert bx.iou(starts[2], s[2]["bbox"]) < traces.MISS_IOU
    paper_st, ours_st = traces.SynthesisStats(), traces.SynthesisStats()
    paper = traces.build_requests(s, starts, 2, 0.0, 0.85, paper_st)
    ours = traces.build_requests(s, starts, 2, 0.0, 0.85, ours_st, recipe="ours")
    assert ours_st.n_keep_samples == 2 and paper_st.n_keep_samples == 0 and ours_st.n_object_first == 1
    assert len(ours) == 2 * (ours_st.n_kept_samples + ours_st.n_keep_samples)
    by = {(r.sample_id, r.step): r for r in ours}
    for i in (0, 1):  # keep trajectories: the target is the box itself at every step
        assert all(by[(str(s[i]["id"]), t)].target == pytest.approx(tuple(starts[i])) for t in (1, 2))
    miss = str(s[2]["id"])  # object-first: the step-1 target is the ground truth, not a midpoint in empty space
    assert by[(miss, 1)].target == pytest.approx(tuple(s[2]["bbox"])) == by[(miss, 2)].target
    p_mid = next(r for r in paper if r.sample_id == miss and r.step == 1)
    assert p_mid.target == pytest.approx(bx.lerp(starts[2], s[2]["bbox"], 0.5))
    counts = traces.start_counts(ours, s, starts)
    assert counts["good"] == 2 and counts["miss"] == 1 and sum(counts.values()) == ours_st.n_kept_samples + 2
    assert traces.start_counts(paper, s, starts)["good"] == 0
    recs, _ = traces.synthesize(ScriptedTeacher(), [by[(str(s[0]["id"]), 1)]])
    assert "keep it" in recs[0]["messages"][-1]["content"][0]["text"]
    with pytest.raises(ValueError, match="recipe"):
        traces.build_requests(s, starts, 2, recipe="mine")


def test_natural_replay_draws_right_and_wrong_answers(test_samples):
    texts = {str(x["id"]): f"answer {i}" for i, x in enumerate(test_samples)}
    st = traces.SynthesisStats()
    out = traces.step0_replay_natural(test_samples, texts, 5, seed=1, stats=st)
    assert len(out) == 5 == st.n_replay and all(r["step"] == 0 for r in out)
    assert out == traces.step0_replay_natural(test_samples, texts, 5, seed=1)
    assert {r["sample_id"] for r in out} != {r["sample_id"] for r in traces.step0_replay_natural(test_samples, texts, 5, 2)}
    assert len(traces.step0_replay_natural(test_samples, texts, 10 ** 6)) == len(test_samples)


def test_synthesis_counts_rejections(test_samples):
    class Sloppy(ScriptedTeacher):
        def write(self, requests):
            out = super().write(requests)
            return ["garbage"] + out[1:]

    starts = [bx.jitter(random.Random(i), x["bbox"], 128, 128, 0.5) for i, x in enumerate(test_samples[:4])]
    reqs = traces.build_requests(test_samples[:4], starts, T=2, iou_max=1.0)
    recs, st = traces.synthesize(Sloppy(), reqs)
    assert st.n_rejected == 1 and st.rejected == {"parse:no_box": 1} and st.n_traces == len(reqs) - 1
    r = recs[0]
    assert r["messages"][0]["content"][0] == {"type": "image"} and len(r["images"]) == 1
    assert f"Refinement step {r['step']} of 2" in r["messages"][0]["content"][1]["text"]
    assert parse_box(r["messages"][-1]["content"][0]["text"]).ok
    ds = traces.to_dataset(recs)
    assert len(ds) == len(recs) and set(ds.column_names) >= {"messages", "images"}
    with pytest.raises(ValueError, match="no teacher traces"):
        traces.to_dataset([])


def test_jittered_starts_are_seeded(test_samples):
    a = traces.jittered_starts(test_samples[:5], seed=3)
    assert a == traces.jittered_starts(test_samples[:5], seed=3) != traces.jittered_starts(test_samples[:5], seed=4)


@pytest.fixture(scope="module")
def trace_ds(test_samples):
    starts = [bx.jitter(random.Random(i), x["bbox"], 128, 128, 0.4) for i, x in enumerate(test_samples)]
    recs, _ = traces.synthesize(ScriptedTeacher(), traces.build_requests(test_samples, starts, T=2, iou_max=1.0))
    return traces.to_dataset(recs)


def test_assistant_only_mask(tiny, trace_ds):
    _, proc = tiny
    share = sft.assistant_token_share(proc, trace_ds)
    assert 0.1 < share < 0.7  # the answer only: not the prompt, the image tokens or the padding


def test_sft_resumes_after_kill(tiny_dir, trace_ds, tmp_path, monkeypatch):
    cfg = sft.SFTRunConfig(max_steps=4, train_batch_size=4, save_steps=2, logging_steps=1, lora_r=8, lora_alpha=16)
    from transformers import Trainer

    real = Trainer.training_step
    calls = {"n": 0}

    def dying(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # killed in step 3, after the step-2 checkpoint
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(Trainer, "training_step", dying)
    with pytest.raises(KeyboardInterrupt):
        sft.run_sft(str(tiny_dir), trace_ds, tmp_path, cfg, device="cpu")
    assert sft.last_checkpoint(tmp_path / "checkpoints").endswith("checkpoint-2")
    monkeypatch.setattr(Trainer, "training_step", real)
    out = sft.run_sft(str(tiny_dir), trace_ds, tmp_path, cfg, device="cpu")
    assert out["resumed_from"].endswith("checkpoint-2") and out["steps"] == 4
    assert (tmp_path / "merged" / "config.json").exists() and (tmp_path / "adapter" / "adapter_config.json").exists()
    from ivt_lib.core.models import adapter_checksum

    before = adapter_checksum(tmp_path / "adapter")
    again = sft.run_sft(str(tiny_dir), trace_ds, tmp_path, cfg, device="cpu")  # a finished run: loaded, not extended
    assert again["steps"] == 4 and [h["loss"] for h in again["log_history"]] == [h["loss"] for h in out["log_history"]]
    assert adapter_checksum(tmp_path / "adapter")["sha256"] == before["sha256"]
    # checkpoints of another recipe are refused before any work, not silently continued
    with pytest.raises(ValueError, match="other settings.*learning_rate"):
        sft.run_sft(str(tiny_dir), trace_ds, tmp_path, dataclasses.replace(cfg, learning_rate=1e-3), device="cpu")
    with pytest.raises(ValueError, match="rows"):
        sft.run_sft(str(tiny_dir), trace_ds.select(range(len(trace_ds) - 1)), tmp_path, cfg, device="cpu")
    assert out["trainable_params"] < 0.1 * out["total_params"]
    from ivt_lib.core.models import load_model

    m, _ = load_model(out["merged"], device="cpu")  # merged model loads like any model
    assert not any("lora" in n for n, _ in m.named_parameters())


def test_run_manifest_hashes_every_row_and_resolves_the_model_path(trace_ds, monkeypatch):
    from datasets import Dataset

    from ivt_lib.configs import ROOT

    rows = [dict(trace_ds[i]) for i in range(len(trace_ds))]
    assert len(rows) > 7
    changed = [dict(r) for r in rows]
    changed[7] = {**changed[7], "messages": changed[6]["messages"]}  # differs only at row 7
    monkeypatch.chdir(ROOT)
    a = sft.run_manifest("data/base_model", Dataset.from_list(rows), sft.SFTRunConfig())
    b = sft.run_manifest("data/base_model", Dataset.from_list(changed), sft.SFTRunConfig())
    assert a["messages_sha256"] != b["messages_sha256"]
    c = sft.run_manifest(str(ROOT / "data" / "base_model"), Dataset.from_list(rows), sft.SFTRunConfig())
    assert c == a  # the same folder, named relatively or absolutely


def test_a_project_moved_elsewhere_loads_its_finished_run(tiny_dir, trace_ds, tmp_path):
    """The manifest names the model relative to the run folder: a copied or cloned project (model and runs moved
    together) loads its finished run instead of refusing it as another model's."""
    import shutil

    cfg = sft.SFTRunConfig(max_steps=1, train_batch_size=4, save_steps=1)
    shutil.copytree(tiny_dir, tmp_path / "a" / "model")
    first = sft.run_sft(str(tmp_path / "a" / "model"), trace_ds, tmp_path / "a" / "run", cfg, device="cpu")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")
    again = sft.run_sft(str(tmp_path / "b" / "model"), trace_ds, tmp_path / "b" / "run", cfg, device="cpu")
    assert again["resumed_from"] and again["steps"] == first["steps"] == 1
    other = tmp_path / "b" / "other_model"
    shutil.copytree(tiny_dir, other)
    with pytest.raises(ValueError, match="other settings"):  # another folder is still another model
        sft.run_sft(str(other), trace_ds, tmp_path / "b" / "run", cfg, device="cpu")


def test_a_manifest_without_checkpoints_blocks_nothing(tiny_dir, trace_ds, tmp_path):
    """A run killed before its first checkpoint left only run_config.json: a new run with other settings starts."""
    (tmp_path / "run_config.json").write_text('{"model": "another model", "learning_rate": 1.0}')
    out = sft.run_sft(str(tiny_dir), trace_ds, tmp_path, sft.SFTRunConfig(max_steps=1, train_batch_size=4), device="cpu")
    assert out["steps"] == 1 and out["resumed_from"] is None
    assert '"another model"' not in (tmp_path / "run_config.json").read_text()


def test_gradient_checkpointing_changes_memory_not_the_result(tiny_dir, trace_ds, tmp_path, monkeypatch):
    """On or off, the same adapter bit for bit (the recomputed forward is the same forward): the committed results,
    trained with it on, are what a run with it off reproduces; and a run may resume either way."""
    from safetensors.torch import load_file

    cfg = sft.SFTRunConfig(max_steps=2, train_batch_size=4, save_steps=10, logging_steps=1, lora_r=8, lora_alpha=16)
    from transformers import PreTrainedModel

    real, enabled = PreTrainedModel.activation_checkpointing_enable, []

    def spy(self, *a, **k):
        enabled.append(gc)
        return real(self, *a, **k)

    monkeypatch.setattr(PreTrainedModel, "activation_checkpointing_enable", spy)  # transformers 5 name
    outs = {}
    for gc in (True, False):
        run = dataclasses.replace(cfg, gradient_checkpointing=gc)
        outs[gc] = sft.run_sft(str(tiny_dir), trace_ds, tmp_path / str(gc), run, device="cpu")
    assert enabled and set(enabled) == {True}  # the parameter reaches the model: on when asked, and only then
    for gc in (True, False):
        run = dataclasses.replace(cfg, gradient_checkpointing=gc)
        assert sft.run_manifest(str(tiny_dir), trace_ds, run) == sft.run_manifest(str(tiny_dir), trace_ds, cfg)
    a, b = (load_file(str(tmp_path / str(gc) / "adapter" / "adapter_model.safetensors")) for gc in (True, False))
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)  # bit for bit, on CPU
    assert [h["loss"] for h in outs[True]["log_history"]] == [h["loss"] for h in outs[False]["log_history"]]
