"""The base-grounder training script: labels, data stream, and resume after a kill."""
import random

import pytest
import torch

from ivt_lib.embedded import base_stream as bs
from ivt_lib.embedded import train_base as tb
from ivt_lib.core.parsing import parse_box
from ivt_lib.core.state_io import load_state


def _cfg(tmp_path, **kw):
    base = dict(out_dir=str(tmp_path / "out"), ckpt_dir=str(tmp_path / "ckpt"), total_steps=6, batch_size=3,
                warmup_steps=2, eval_every=3, eval_n=3, ckpt_every_s=0.0, threads=1)
    base.update(kw)
    return tb.BaseTrainConfig(**base)


def test_config_validation():
    with pytest.raises(ValueError, match="total_steps"):
        tb.BaseTrainConfig(total_steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="refine_frac"):
        tb.BaseTrainConfig(refine_frac=1.5)
    with pytest.raises(ValueError, match="contrast_frac"):
        tb.BaseTrainConfig(contrast_frac=-0.1)


def test_stream_is_a_function_of_the_step(tmp_path):
    cfg = _cfg(tmp_path, total_steps=1000)
    a = bs.make_sample(random.Random("s-7"), 700, cfg)
    b = bs.make_sample(random.Random("s-7"), 700, cfg)
    assert a[0] == b[0] and a[1].tobytes() == b[1].tobytes()
    answer = a[0][-1]["content"][0]["text"]
    assert parse_box(answer).ok


def test_collate_labels_only_the_answer(tiny):
    _, proc = tiny
    cfg = tb.BaseTrainConfig(total_steps=1000)
    rng = random.Random(0)
    convs, imgs = zip(*(bs.make_sample(rng, 900, cfg) for _ in range(4)))
    batch = tb.collate(proc, list(convs), list(imgs))
    for i, conv in enumerate(convs):
        lab = batch["labels"][i]
        got = proc.tokenizer.decode(lab[lab != -100])
        assert got == conv[-1]["content"][0]["text"] + "<|im_end|>"


def test_resume_after_kill_matches_uninterrupted_run(tmp_path, monkeypatch):
    full = tb.train(_cfg(tmp_path / "a"))
    assert full["steps"] == 6
    ref = load_state(tmp_path / "a" / "ckpt")

    calls = {"n": 0}
    real = tb.collate

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:  # killed during step 5, after the step-4 checkpoint
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(tb, "collate", dying)
    with pytest.raises(KeyboardInterrupt):
        tb.train(_cfg(tmp_path / "b"))
    st = load_state(tmp_path / "b" / "ckpt")
    assert st["step"] == 4
    monkeypatch.setattr(tb, "collate", real)
    resumed = tb.train(_cfg(tmp_path / "b"))
    assert resumed["steps"] == 6
    got = load_state(tmp_path / "b" / "ckpt")
    assert [p["step"] for p in got["curve"]] == [3, 6]
    from safetensors.torch import load_file

    wa = load_file(tmp_path / "a" / "ckpt" / "model.safetensors")
    wb = load_file(tmp_path / "b" / "ckpt" / "model.safetensors")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)
    assert (tmp_path / "b" / "out" / "config.json").exists()  # best weights written
    assert ref["step"] == 6


def _kinds(cfg, steps, n=150):
    out = {"refine": 0, "step0": 0, "contrast": 0, "drawn": 0}
    for st in steps:
        rng = random.Random(f"k-{st}")
        for _ in range(n):
            conv, img = bs.make_sample(rng, st, cfg)
            text = conv[0]["content"][1]["text"]
            out["refine" if "Refinement" in text else "step0"] += 1
            out["drawn"] += int(any(px[0] > 200 and px[1] < 60 and px[2] < 60 for px in img.getdata()))
    return out


def test_pure_grounder_never_sees_a_drawn_box_or_a_refine_prompt():
    cfg = tb.BaseTrainConfig(total_steps=1000)  # the shipped mode: refine_frac=0
    assert cfg.refine_frac == 0.0 and cfg.contrast_frac > 0
    k = _kinds(cfg, (10, 150, 500, 990))
    assert k["refine"] == 0 and k["drawn"] == 0 and k["step0"] == 600


def test_refine_mix_flag_adds_drawn_refinement_samples():
    cfg = tb.BaseTrainConfig(total_steps=1000, refine_frac=0.3, contrast_frac=0.0, paraphrase_frac=0.0)
    k = _kinds(cfg, (500, 990))
    assert 0.2 < k["refine"] / 300 < 0.4 and k["drawn"] > 0.8 * k["refine"]


def test_contrast_share_after_the_curriculum(monkeypatch):
    seen = []
    real = bs.generate_scene

    def spy(rng, family, *a, **kw):
        seen.append(family)
        return real(rng, family, *a, **kw)

    monkeypatch.setattr(bs, "generate_scene", spy)
    cfg = tb.BaseTrainConfig(total_steps=1000)
    rng = random.Random(0)
    for _ in range(400):
        bs.make_sample(rng, 900, cfg)
    assert 0.17 < seen.count("contrast") / len(seen) < 0.33
    assert {"refcocog", "refadv", "refl4"} <= set(seen)


def test_refine_mix_flags_reproduce_the_ablation_bases_stream():
    """``--refine-frac 0.3 --contrast-frac 0 --paraphrase-frac 0`` is sample-for-sample the stream data/base_model_refine_mix was trained
    on (digest computed with the training code of commit a71363f, before the pure mode existed)."""
    import hashlib

    cfg = tb.BaseTrainConfig(total_steps=10000, refine_frac=0.3, contrast_frac=0.0, paraphrase_frac=0.0)
    h = hashlib.sha256()
    for st in (0, 1500, 5000, 9999):
        rng = random.Random(f"base-stream-0-{st}")
        for _ in range(16):
            conv, img = bs.make_sample(rng, st, cfg)
            h.update(repr(conv).encode())
            h.update(img.tobytes())
    assert h.hexdigest() == "b2d0e82f17a2ba1becb47b9593dbb4ce198d4bfa1bfcb2da6e89119a8bfc35b2"


def test_paraphrases_never_draw_or_state_an_answer_about_the_image():
    cfg = tb.BaseTrainConfig(total_steps=1000)
    rng = random.Random(3)
    texts = []
    for _ in range(300):
        conv, _img = bs.make_sample(rng, 900, cfg)
        texts.append(conv[0]["content"][1]["text"])
        answer = conv[-1]["content"][0]["text"]
        assert answer not in texts[-1], "the answer never appears in the prompt"
    canonical = sum(t.startswith("Locate") and t.endswith("Output its bbox_2d in JSON.") and "Answer in" not in t
                    and "pixels" not in t for t in texts)
    assert 0.35 < canonical / len(texts) < 0.75
    assert not any("red" in t or "previous" in t or "correct" in t or "Refinement" in t for t in texts)
    assert len(set(t.split('"')[0] for t in texts)) >= 4, "several phrasings"


def test_extend_stages_records_a_longer_schedule_and_refuses_to_shorten():
    one = tb.extend_stages([], 0, 7200)
    assert one == [{"start_step": 0, "total_steps": 7200}]
    assert tb.extend_stages(one, 3000, 7200) == one  # a resume after a kill is not a new stage
    two = tb.extend_stages(one, 7200, 14000)
    assert two == [*one, {"start_step": 7200, "total_steps": 14000}]
    with pytest.raises(ValueError, match="cannot shorten"):
        tb.extend_stages(two, 9000, 8000)


def test_resuming_with_more_steps_extends_the_run(tmp_path):
    tb.train(_cfg(tmp_path))
    longer = tb.train(_cfg(tmp_path, total_steps=9))
    assert longer["steps"] == 9
    assert longer["stages"] == [{"start_step": 0, "total_steps": 6}, {"start_step": 6, "total_steps": 9}]
    st = load_state(tmp_path / "ckpt")
    assert [p["step"] for p in st["curve"]] == [3, 6, 9] and st["stages"] == longer["stages"]


def test_binding_stream_options_validate():
    with pytest.raises(ValueError, match="family_weights"):
        tb.BaseTrainConfig(family_weights="1,1")
    with pytest.raises(ValueError, match="family_weights"):
        tb.BaseTrainConfig(family_weights="0,0,0")
    with pytest.raises(ValueError, match="contrast_axes"):
        tb.BaseTrainConfig(contrast_axes="colour,hue")
    with pytest.raises(ValueError, match="init_from"):
        tb.BaseTrainConfig(init_from="/nonexistent/model")


def test_family_weights_and_contrast_axes_shape_the_stream(monkeypatch):
    seen, axes = [], []
    real = bs.generate_scene

    def spy(rng, family, *a, **kw):
        seen.append(family)
        if family == "contrast":
            axes.append(kw["contrast_axes"])
        return real(rng, family, *a, **kw)

    monkeypatch.setattr(bs, "generate_scene", spy)
    cfg = tb.BaseTrainConfig(total_steps=1000, curriculum_frac=0.0, blend_frac=0.0, contrast_frac=0.2,
                             family_weights="4,1,1", contrast_axes="colour,shape")
    rng = random.Random(0)
    for _ in range(600):
        bs.make_sample(rng, 10, cfg)  # blend_frac=0: no easy scenes even at the start
    fam = [f for f in seen if f != "contrast"]
    assert 0.55 < fam.count("refcocog") / len(fam) < 0.78  # 4/6 of the family draws
    assert set(axes) == {("colour", "shape")}


def test_contrast_axes_pick_the_twins_attribute():
    from ivt_lib.corpora.scenes import generate_scene
    rng = random.Random(1)
    for _ in range(40):
        s = generate_scene(rng, "contrast", contrast_axes=("colour",))
        t = s.objects[s.target]
        twins = [o for o in s.objects if o is not t and o.shape == t.shape and o.size == t.size and o.colour != t.colour]
        assert twins and "superlative" not in s.spec and "size" not in s.spec
    with pytest.raises(ValueError, match="contrast_axes"):
        generate_scene(rng, "contrast", contrast_axes=("hue",))


def test_warm_start_scores_the_start_then_trains_on(tmp_path):
    first = tb.train(_cfg(tmp_path / "a"))
    assert first["steps"] == 6
    cfg = _cfg(tmp_path / "b", init_from=str(tmp_path / "a" / "out"), family_weights="2,1,1",
               contrast_axes="colour,shape", curriculum_frac=0.0, blend_frac=0.0)
    warm = tb.train(cfg)
    st = load_state(tmp_path / "b" / "ckpt")
    assert warm["steps"] == 6 and [p["step"] for p in st["curve"]] == [0, 3, 6]
    assert st["curve"][0]["init_from"] == cfg.init_from
    with pytest.raises(ValueError, match="overwritten"):
        _cfg(tmp_path / "a", init_from=str(tmp_path / "a" / "out"))


def test_caption_samples_name_the_one_object_and_draw_nothing(monkeypatch):
    """--caption-frac: object naming on a one-object scene (no box drawn or stated) answered with its colour and shape."""
    from ivt_lib.core.prompts import CAPTION_TEXT

    recs = []
    real = bs.scene_to_record

    def spy(*a, **k):
        recs.append(real(*a, **k))
        return recs[-1]

    monkeypatch.setattr(bs, "scene_to_record", spy)
    cfg = tb.BaseTrainConfig(total_steps=1000, caption_frac=0.4)
    rng = random.Random(5)
    n_cap = 0
    for _ in range(300):
        conv, img = bs.make_sample(rng, 900, cfg)
        if conv[0]["content"][1]["text"] != CAPTION_TEXT:
            continue
        n_cap += 1
        rec = recs[-1]  # the caption sample's own scene
        assert len(rec["objects"]) == 1 and img is rec["image"], "one object, nothing drawn"
        o = rec["objects"][0]
        assert conv[-1]["content"][0]["text"] == f"the {o['colour']} {o['shape']}"
    assert 0.3 < n_cap / 300 < 0.5


def test_caption_frac_is_validated_and_off_by_default():
    assert tb.BaseTrainConfig().caption_frac == 0.0
    with pytest.raises(ValueError, match="caption_frac"):
        tb.BaseTrainConfig(caption_frac=1.5)


def test_reset_mergers_touches_only_the_mergers(tiny):
    import copy

    model = copy.deepcopy(tiny[0])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.model.visual.merger.parameters():
            p.add_(1.0)  # a "trained" merger, unlike the fresh one
    tb.reset_mergers(model, seed=0)
    after = model.state_dict()
    merged = [k for k in before if "merger" in k]
    assert merged and all("visual" in k for k in merged)
    assert all(torch.equal(before[k], after[k]) for k in before if "merger" not in k)
    assert any(not torch.equal(before[k], after[k]) for k in merged if "visual.merger." in k)
    ln = model.model.visual.merger.norm
    assert torch.equal(ln.weight, torch.ones_like(ln.weight)) and torch.equal(ln.bias, torch.zeros_like(ln.bias))
    again = copy.deepcopy(model)
    tb.reset_mergers(again, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters())), "seeded"


def test_reset_merger_needs_a_warm_start_and_bool_flags_parse(tmp_path):
    with pytest.raises(ValueError, match="reset_merger"):
        tb.BaseTrainConfig(reset_merger=True)
    assert tb._flag("False") is False and tb._flag("true") is True
    with pytest.raises(Exception, match="true or false"):
        tb._flag("maybe")


def test_freeze_merger_keeps_the_merger_fixed_while_the_rest_trains(tmp_path):
    from transformers import AutoModelForImageTextToText

    init = tb.train(_cfg(tmp_path / "a", total_steps=3, warmup_steps=1, eval_every=3))
    assert init["steps"] == 3
    start = AutoModelForImageTextToText.from_pretrained(tmp_path / "a" / "out").state_dict()
    tb.train(_cfg(tmp_path / "b", total_steps=3, eval_every=3, init_from=str(tmp_path / "a" / "out"),
                  reset_merger=True, freeze_merger=True))
    st = load_state(tmp_path / "b" / "ckpt")
    after = AutoModelForImageTextToText.from_pretrained(tmp_path / "b" / "ckpt").state_dict()
    reset = AutoModelForImageTextToText.from_pretrained(tmp_path / "a" / "out")
    tb.reset_mergers(reset, seed=0)  # what the frozen run started from
    merger = [k for k in after if "merger" in k]
    assert merger and all(torch.equal(after[k], reset.state_dict()[k]) for k in merger)  # never trained
    assert any(not torch.equal(after[k], start[k]) for k in after if "merger" not in k)  # the rest did
    n_trainable = len(list(reset.parameters())) - len(tb.merger_parameters(reset))
    assert st["step"] == 3 and len(st["opt"]["param_groups"][0]["params"]) == n_trainable  # resumable as frozen
