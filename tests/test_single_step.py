"""The single-step GRPO ablation: its settings come from notebook 04's stage (no hard-coded budget or reward
weights), and trl's trainer gets this project's rewards with those weights."""
import pytest

from ivt_lib.training import single_step
from ivt_lib.configs import GRPOStageConfig


def test_from_stage_follows_the_multi_step_run():
    stage = GRPOStageConfig(max_new_tokens=48, single_step_steps=9, prompts_per_iter=3, group_size=4,
                            temperature=0.8, learning_rate=1e-4, beta=0.0, lora_r=8, lora_alpha=16, seed=5)
    c = single_step.SingleStepConfig.from_stage(stage)
    # notebook 04 used to build this by hand and left max_completion_length at 32 whatever the tier said
    assert c.max_completion_length == 48
    assert (c.max_steps, c.prompts_per_step, c.group_size, c.temperature) == (9, 3, 4, 0.8)
    assert (c.learning_rate, c.beta, c.lora_r, c.lora_alpha, c.seed) == (1e-4, 0.0, 8, 16, 5)
    assert c.reward_weights == {"iou": 1.0, "format": 0.1} and c.coord_format == "qwen3"
    assert single_step.SingleStepConfig.from_stage(GRPOStageConfig(coord_format="qwen25")).coord_format == "qwen25"


def test_bad_reward_weights_fail():
    with pytest.raises(ValueError, match="reward_weights"):
        single_step.SingleStepConfig(reward_weights={"iou": 1.0})


def test_grounding_dataset_has_trl_columns(test_samples):
    ds = single_step.grounding_dataset(test_samples[:2])
    assert set(ds.column_names) == {"prompt", "image", "bbox", "width", "height"}
    assert ds[0]["bbox"] == [float(v) for v in test_samples[0]["bbox"]]


def test_trainer_gets_the_configured_reward_weights(tiny_dir, tmp_path, test_samples):
    cfg = single_step.SingleStepConfig(max_steps=1, prompts_per_step=1, group_size=2, max_completion_length=8,
                                       reward_weights={"iou": 2.0, "format": 0.5})
    tr = single_step.make_trainer(str(tiny_dir), test_samples[:2], tmp_path, cfg, device="cpu")
    assert list(tr.args.reward_weights) == [2.0, 0.5]
    assert tr.args.max_completion_length == 8
    assert [f.__name__ for f in tr.reward_funcs] == ["iou_reward", "format_reward"]


def test_qwen25_rewards_get_the_resized_frame(test_samples):
    """A qwen25 answer is in the resized image's pixels: the dataset carries that frame and the reward uses it."""
    from ivt_lib.core import boxes as bx
    from ivt_lib.core.parsing import format_box
    from ivt_lib.core.rewards import iou_reward

    s = test_samples[0]
    frame = (2 * int(s["width"]) + 12, 2 * int(s["height"]) + 20)  # any resize the processor may have made
    ds = single_step.grounding_dataset([s], [frame])
    text = format_box(bx.to_model_frame(s["bbox"], s["width"], s["height"], "qwen25", resized=frame))
    cols = {k: ds[k] for k in ("bbox", "width", "height", "resized")}
    assert iou_reward([text], coord_format="qwen25", **cols)[0] == pytest.approx(1.0, abs=0.02)
    assert iou_reward([text], coord_format="qwen25", **{**cols, "resized": [list(s["image"].size)]})[0] < 0.9


def test_trains_on_a_right_padded_base_with_unequal_prompts(tiny_dir, tmp_path, test_samples):
    """Regression: the shipped base saves a right-padding tokenizer; trl then padded mm_token_type_ids on the right
    and the prompt ids on the left, and Qwen3-VL's get_rope_index failed ("value tensor of shape [3, 81] cannot be
    broadcast ... [3, 79]") as soon as two prompts differed in length."""
    from ivt_lib.core.models import load_model

    model, processor = load_model(str(tiny_dir), device="cpu")
    processor.tokenizer.padding_side = "right"
    base = tmp_path / "right_padded"
    model.save_pretrained(base)
    processor.save_pretrained(base)
    short = min(test_samples, key=lambda s: len(s["expression"]))
    long = max(test_samples, key=lambda s: len(s["expression"]))
    assert len(long["expression"]) > len(short["expression"]) + 5
    cfg = single_step.SingleStepConfig(max_steps=1, prompts_per_step=2, group_size=2, max_completion_length=6,
                                       save_steps=100)
    tr = single_step.make_trainer(str(base), [short, long], tmp_path / "run", cfg, device="cpu")
    assert tr.processing_class.tokenizer.padding_side == "left"
    tr.train()
    assert tr.state.global_step == 1


def test_a_finished_run_is_loaded_not_trained_further(tiny_dir, tmp_path, test_samples):
    """Regression: rerunning notebook 04 resumed the finished single-step run at max_steps, and trl took one more
    step (checkpoint-61 of 60), so every rerun changed the ablation's weights and its log."""
    import torch

    cfg = single_step.SingleStepConfig(max_steps=2, prompts_per_step=1, group_size=2, max_completion_length=6,
                                       save_steps=1, learning_rate=0.05, logging_steps=1)
    first = single_step.run_single_step(str(tiny_dir), test_samples[:6], tmp_path, cfg, device="cpu")
    assert first["steps"] == 2 and first["resumed_from"] is None
    from safetensors.torch import load_file, save_file

    ckpt = tmp_path / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors"
    w = load_file(str(ckpt))
    save_file({k: v + 0.01 if "lora_B" in k else v for k, v in w.items()}, str(ckpt))  # a mark the rerun must load
    again = single_step.run_single_step(str(tiny_dir), test_samples[:6], tmp_path, cfg, device="cpu")
    assert again["steps"] == 2 and again["resumed_from"].endswith("checkpoint-2")
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir()) == ["checkpoint-1", "checkpoint-2"]
    assert [h["step"] for h in first["log_history"]] == [1, 2] and again["log_history"] == first["log_history"]
    from ivt_lib.core.models import load_model

    merged, _ = load_model(again["merged"], device="cpu")
    base, _ = load_model(str(tiny_dir), device="cpu")
    ref = base.state_dict()
    assert any(not torch.equal(v, ref[k]) for k, v in merged.state_dict().items())  # the checkpoint's adapter, merged


def test_base_training_collate_leaves_the_padding_side(tiny):
    """collate pads right for the loss but must not leave the processor right-padding (it is saved with the base)."""
    from ivt_lib.core.prompts import step0_messages, with_answer
    from ivt_lib.embedded.base_stream import collate
    from PIL import Image

    _, processor = tiny
    tok = processor.tokenizer
    before, tok.padding_side = tok.padding_side, "left"
    img = Image.new("RGB", (64, 64))
    convs = [with_answer(step0_messages(e), "[1, 2, 3, 4]") for e in ("the cat", "the big red square on the left")]
    try:
        collate(processor, convs, [img, img])
        assert tok.padding_side == "left"
    finally:
        tok.padding_side = before
