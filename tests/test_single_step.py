"""The single-step GRPO ablation: its settings come from notebook 04's stage (no hard-coded budget or reward
weights), and trl's trainer gets this project's rewards with those weights."""
import pytest

from ivt_lib import single_step
from ivt_lib.config import GRPOStageConfig


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
    from ivt_lib import boxes as bx
    from ivt_lib.parsing import format_box
    from ivt_lib.rewards import iou_reward

    s = test_samples[0]
    frame = (2 * int(s["width"]) + 12, 2 * int(s["height"]) + 20)  # any resize the processor may have made
    ds = single_step.grounding_dataset([s], [frame])
    text = format_box(bx.to_model_frame(s["bbox"], s["width"], s["height"], "qwen25", resized=frame))
    cols = {k: ds[k] for k in ("bbox", "width", "height", "resized")}
    assert iou_reward([text], coord_format="qwen25", **cols)[0] == pytest.approx(1.0, abs=0.02)
    assert iou_reward([text], coord_format="qwen25", **{**cols, "resized": [list(s["image"].size)]})[0] < 0.9
