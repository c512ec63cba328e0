"""Multi-step GRPO: trl reference (loss and advantages), images reach the loss, edge cases, resume after a kill."""
import doctest
from dataclasses import asdict
from types import SimpleNamespace

import pytest
import torch
from PIL import ImageDraw

from ivt_lib.training import grpo
from ivt_lib.core import rewards
from ivt_lib.core.loop import StepRecord, Trajectory
from ivt_lib.core.state_io import LEGACY_STATE, STATE_JSON, STATE_TENSORS, load_state


def write_legacy_state(folder, state):
    """Write ``state`` as the code before safetensors + JSON did: one pickled ``state.pt``."""
    torch.save(state, folder / LEGACY_STATE)
    for name in (STATE_JSON, STATE_TENSORS):
        (folder / name).unlink(missing_ok=True)


def test_reward_doctests_and_registry():
    import ivt_lib.core.rewards as mod

    assert doctest.testmod(mod).failed == 0
    assert set(rewards.REWARDS) >= {"iou", "format"}
    conv = [[{"role": "assistant", "content": '{"bbox_2d": [0, 0, 500, 500]}'}], [{"role": "assistant", "content": "??"}]]
    cols = dict(bbox=[[0, 0, 64, 64]] * 2, width=[128] * 2, height=[128] * 2)
    assert rewards.combined(conv, **cols) == pytest.approx([1.1, 0.0])  # IoU + 0.1 format; unparsable -> 0


def test_group_advantages_match_trl_and_handle_equal_groups():
    from trl.trainer.utils import nanstd

    r = torch.tensor([0.1, 0.5, 0.9, 0.3, 0.3, 0.3, 0.0, 1.0, 0.2])
    got = grpo.group_advantages(r, 3)
    # trl 1.16 GRPOTrainer._generate_and_score_completions, scale_rewards="group":
    g = r.view(-1, 3)
    mean = g.mean(1).repeat_interleave(3)
    std = nanstd(g, dim=1).repeat_interleave(3)
    assert torch.allclose(got, (r - mean) / (std + 1e-4), atol=1e-6)
    assert torch.equal(got[3:6], torch.zeros(3))  # identical rewards: zero advantage, no NaN
    assert torch.isfinite(got).all()


def _trl_loss(loss_type, logps, old, ref, adv, mask, beta, eps):
    """Call trl's own GRPOTrainer._compute_loss with a minimal stand-in for the trainer."""
    from trl import GRPOTrainer

    acc = SimpleNamespace(reduce=lambda t, reduction="sum": t, gather=lambda t: t, gather_for_metrics=lambda t: t,
                          num_processes=1, sync_gradients=True)
    model = SimpleNamespace(training=True)
    fake = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logps, torch.zeros_like(logps), None),
        aux_loss_enabled=False, top_entropy_quantile=1.0, off_policy_mask_threshold=None,
        importance_sampling_level="token", beta=beta, loss_type=loss_type, epsilon_low=eps, epsilon_high=eps,
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None), use_vllm=False, model=model,
        current_gradient_accumulation_steps=1, _entropy_bonus_enabled=False, accelerator=acc,
        _metrics={"train": __import__("collections").defaultdict(list)})
    C = logps.shape[1]
    inputs = {"prompt_ids": torch.zeros((logps.shape[0], 2), dtype=torch.long),
              "prompt_mask": torch.ones((logps.shape[0], 2), dtype=torch.long),
              "completion_ids": torch.zeros((logps.shape[0], C), dtype=torch.long), "completion_mask": mask,
              "advantages": adv, "old_per_token_logps": old, "ref_per_token_logps": ref,
              "num_items_in_batch": mask.sum()}
    return GRPOTrainer._compute_loss(fake, model, inputs)


@pytest.mark.parametrize("loss_type", ["bnpo", "grpo"])
def test_loss_matches_trl(loss_type):
    g = torch.Generator().manual_seed(0)
    R, C = 6, 7
    logps = -torch.rand(R, C, generator=g) * 3
    old = logps + 0.3 * torch.randn(R, C, generator=g)  # off-policy enough to hit both clip sides
    ref = logps + 0.2 * torch.randn(R, C, generator=g)
    adv = torch.randn(R, generator=g)
    mask = (torch.rand(R, C, generator=g) > 0.25).long()
    mask[:, 0] = 1
    ours, stats = grpo.grpo_loss(logps, old, ref, adv, mask, beta=0.04, eps_low=0.2, eps_high=0.2, loss_type=loss_type)
    theirs = _trl_loss(loss_type, logps, old, ref, adv, mask, 0.04, 0.2)
    assert torch.allclose(ours, theirs, atol=1e-6), (ours, theirs)
    assert stats["clip_frac"] > 0 and stats["kl"] > 0


def test_loss_without_kl_and_with_equal_advantages():
    logps = -torch.rand(3, 4)
    loss, st = grpo.grpo_loss(logps, logps.detach(), None, torch.zeros(3), torch.ones(3, 4), beta=0.0)
    assert float(loss) == 0.0 and st["kl"] == 0.0


@pytest.fixture(scope="module")
def trainer(tiny_dir, tmp_path_factory, test_samples):
    cfg = grpo.GRPORunConfig(iterations=1, prompts_per_iter=2, group_size=2, T=1, max_new_tokens=6, save_every=1)
    return grpo.MultiStepGRPO(str(tiny_dir), test_samples[:6], tmp_path_factory.mktemp("g"), cfg, device="cpu")


def test_images_reach_the_loss(trainer):
    """Changing the rendered image of step t changes the log-probs that the loss uses for step t+1."""
    trajs = trainer.rollout(trainer.prompts(0))
    tr = trajs[0]
    assert [r["step"] for r in tr.rollout] == [0, 1]
    row = dict(tr.rollout[1])  # step 1 is scored with the image rendered from step 0's box
    with torch.no_grad():
        a, mask = grpo.score_rows(trainer.model, trainer.processor, [row])
        img = row["image"].copy()
        ImageDraw.Draw(img).rectangle([0, 0, 60, 60], fill=(255, 255, 255))
        b, _ = grpo.score_rows(trainer.model, trainer.processor, [{**row, "image": img}])
    assert mask.sum() > 0 and not torch.allclose(a, b)


def test_rollout_rows_skip_frozen_steps():
    steps = [StepRecord("x", None, 0.0, False)] * 3
    tr = Trajectory("a", "f", (0, 0, 1, 1), 8, 8, list(steps),
                    rollout=[{"step": 0, "token_ids": [1, 2]}, {"step": 1, "token_ids": [3]}])  # stopped after 1
    rows = grpo.rollout_rows([tr], torch.tensor([0.5]))
    assert [r["step"] for r in rows] == [0, 1] and all(r["advantage"] == 0.5 for r in rows)


def test_unparsable_final_step_gets_zero_reward():
    tr = Trajectory("a", "f", (0.0, 0.0, 64.0, 64.0), 128, 128,
                    [StepRecord('{"bbox_2d": [0, 0, 500, 500]}', (0, 0, 64, 64), 1.0, True),
                     StepRecord("lost it", None, 0.0, False)])
    assert grpo.final_rewards([tr], rewards.PAPER_WEIGHTS).tolist() == [0.0]


def test_config_validation():
    with pytest.raises(ValueError, match="group_size"):
        grpo.GRPORunConfig(group_size=1)
    with pytest.raises(ValueError, match="temperature"):
        grpo.GRPORunConfig(temperature=0)
    with pytest.raises(ValueError, match="generation_backend"):
        grpo.GRPORunConfig(generation_backend="sglang")
    with pytest.raises(ValueError, match="4-bit"):
        grpo.GRPORunConfig(generation_backend="vllm", quantize_4bit=True)
    with pytest.raises(ValueError, match="micro_batch"):
        grpo.GRPORunConfig(micro_batch=0)
    with pytest.raises(ValueError, match="credit"):
        grpo.GRPORunConfig(credit="step0")
    with pytest.raises(ValueError, match="T >= 1"):
        grpo.GRPORunConfig(credit="refine", T=0)
    with pytest.raises(ValueError, match="refine_start"):
        grpo.GRPORunConfig(credit="refine", refine_start="best")


def test_refine_credit_shares_step0_in_a_group_and_never_scores_it(tiny_dir, tmp_path, test_samples):
    """Option A: one sampled step 0 per prompt for the whole group, G refine continuations, no step-0 rows."""
    cfg = grpo.GRPORunConfig(iterations=1, prompts_per_iter=2, group_size=3, T=1, max_new_tokens=6, save_every=1,
                             credit="refine")
    tr = grpo.MultiStepGRPO(str(tiny_dir), test_samples[:6], tmp_path / "r", cfg, device="cpu")
    trajs = tr.rollout(tr.prompts(0))
    assert len(trajs) == 6
    for g in range(2):
        group = trajs[3 * g:3 * g + 3]
        assert len({t.sample_id for t in group}) == 1
        assert len({(t.steps[0].box, t.steps[0].text) for t in group}) == 1  # the shared step 0
        assert all(t.steps[0].text != "<given>" for t in group)          # its real text is kept
    assert all([r["step"] for r in t.rollout] == [1] for t in trajs)       # step-0 tokens never reach the loss
    rows = grpo.rollout_rows(trajs, torch.zeros(6))
    assert rows and all(r["step"] >= 1 for r in rows)
    # the paper's whole trajectories score step 0 as well
    whole = grpo.MultiStepGRPO(str(tiny_dir), test_samples[:6], tmp_path / "w",
                               grpo.GRPORunConfig(**{**asdict(cfg), "credit": "trajectory"}), device="cpu")
    assert any(r["step"] == 0 for t in whole.rollout(whole.prompts(0)) for r in t.rollout)


def test_greedy_refine_start_is_the_deployed_step0(tiny_dir, tmp_path, test_samples):
    """refine_start="greedy": the group's shared step 0 is the greedy answer the evaluated policy gives."""
    from ivt_lib.core.loop import HFPolicy, run_loop

    cfg = grpo.GRPORunConfig(iterations=1, prompts_per_iter=3, group_size=2, T=1, max_new_tokens=6, save_every=1,
                             credit="refine", refine_start="greedy", temperature=1.5)
    tr = grpo.MultiStepGRPO(str(tiny_dir), test_samples[:6], tmp_path / "g", cfg, device="cpu")
    prompts = tr.prompts(0)
    trajs = tr.rollout(prompts)
    with torch.no_grad():
        ref = run_loop(HFPolicy(tr.model, tr.processor, 6, 8), prompts, 0, cfg.coord_format, show_progress=False)
    assert [t.steps[0].text for t in trajs] == [r.steps[0].text for r in ref for _ in range(2)]
    assert all([r["step"] for r in t.rollout] == [1] for t in trajs)


def test_anchor_step0_scores_the_shared_step0_once_per_group_with_kl_only(tiny_dir, tmp_path, test_samples):
    """anchor_step0: the group's shared step 0 becomes one scoring row per group, advantage 0 whatever the group's
    reward, so only the KL term acts on it; the refine rows keep their advantages; one update runs."""
    cfg = grpo.GRPORunConfig(iterations=1, prompts_per_iter=2, group_size=3, T=1, max_new_tokens=6, save_every=1,
                             credit="refine", refine_start="greedy", anchor_step0=True)
    tr = grpo.MultiStepGRPO(str(tiny_dir), test_samples[:6], tmp_path / "a", cfg, device="cpu")
    trajs = tr.rollout(tr.prompts(0))
    assert [[r["step"] for r in t.rollout] for t in trajs] == [[0, 1], [1], [1]] * 2
    assert trajs[0].rollout[0]["token_ids"] and trajs[0].rollout[0]["anchor"]
    rows = grpo.rollout_rows(trajs, torch.tensor([0.5, -0.25, -0.375, 1.0, 0.0, -1.0]))
    assert [(r["step"], r["advantage"]) for r in rows] == [(0, 0.0), (1, 0.5), (1, -0.25), (1, -0.375),
                                                           (0, 0.0), (1, 1.0), (1, 0.0), (1, -1.0)]
    assert tr.step()["rows"] == 8
    # with trajectory credit step 0 is in the loss already: from_stage leaves the anchor off there
    from ivt_lib.configs import GRPOStageConfig

    stage = GRPOStageConfig(anchor_step0=True)
    assert grpo.GRPORunConfig.from_stage(stage).anchor_step0 is False
    assert grpo.GRPORunConfig.from_stage(stage, credit="refine").anchor_step0 is True


def test_checkpoint_from_before_refine_start_resumes(trainer):
    """A checkpoint written before refine_start existed was trained with a sampled step 0, and resumes as such."""
    trainer.save()
    st = load_state(trainer.ckpt)
    st["config"] = {k: v for k, v in st["config"].items() if k not in ("refine_start", "anchor_step0")}
    write_legacy_state(trainer.ckpt, st)  # such checkpoints are old, so state.pt
    again = grpo.MultiStepGRPO(trainer.model_path, trainer.samples, trainer.out, trainer.cfg, device="cpu")
    assert again.iteration == trainer.iteration
    greedy = grpo.GRPORunConfig(**{**asdict(trainer.cfg), "refine_start": "greedy"})
    with pytest.raises(ValueError, match="refine_start"):
        grpo.MultiStepGRPO(trainer.model_path, trainer.samples, trainer.out, greedy, device="cpu")


def test_validation_curve_is_logged_and_resumed(tiny_dir, tmp_path, test_samples):
    cfg = grpo.GRPORunConfig(iterations=2, prompts_per_iter=2, group_size=2, T=1, max_new_tokens=6, save_every=1,
                             val_every=2)
    with pytest.raises(ValueError, match="validation samples"):
        grpo.MultiStepGRPO(str(tiny_dir), test_samples[:6], tmp_path / "v0", cfg, device="cpu")
    tr = grpo.MultiStepGRPO(str(tiny_dir), test_samples[:6], tmp_path / "v", cfg, device="cpu",
                            val_samples=test_samples[6:9])
    logs = tr.train(show_progress=False)
    assert "val" not in logs[0] and set(logs[1]["val"]) >= {"last_acc@0.5", "degradation", "stay", "improve"}
    assert logs[1]["val"]["n"] == 3 and tr.val0["n"] == 3
    again = grpo.MultiStepGRPO(str(tiny_dir), test_samples[:6], tmp_path / "v", cfg, device="cpu",
                               val_samples=test_samples[6:9])
    assert again.iteration == 2 and again.val0 == tr.val0


def test_resume_after_kill_matches_uninterrupted(tiny_dir, tmp_path, test_samples, monkeypatch):
    cfg = grpo.GRPORunConfig(iterations=3, prompts_per_iter=2, group_size=2, T=1, max_new_tokens=6, save_every=1)
    full = grpo.MultiStepGRPO(str(tiny_dir), test_samples[:6], tmp_path / "a", cfg, device="cpu")
    full.train(show_progress=False)
    real = grpo.MultiStepGRPO.step
    calls = {"n": 0}

    def dying(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(grpo.MultiStepGRPO, "step", dying)
    b = grpo.MultiStepGRPO(str(tiny_dir), test_samples[:6], tmp_path / "b", cfg, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        b.train(show_progress=False)
    monkeypatch.setattr(grpo.MultiStepGRPO, "step", real)
    resumed = grpo.MultiStepGRPO(str(tiny_dir), test_samples[:6], tmp_path / "b", cfg, device="cpu")
    assert resumed.iteration == 2
    resumed.train(show_progress=False)
    assert [e["iteration"] for e in resumed.logs] == [1, 2, 3]
    assert [e["reward_mean"] for e in resumed.logs] == pytest.approx([e["reward_mean"] for e in full.logs])
    pa = {n: p for n, p in full.model.named_parameters() if p.requires_grad}
    pb = {n: p for n, p in resumed.model.named_parameters() if p.requires_grad}
    assert all(torch.allclose(pa[n], pb[n], atol=1e-5) for n in pa)
    with pytest.raises(ValueError, match="other settings.*learning_rate"):  # a checkpoint of another recipe
        grpo.MultiStepGRPO(str(tiny_dir), test_samples[:6], tmp_path / "b",
                           grpo.GRPORunConfig(**{**asdict(cfg), "learning_rate": 1e-3}), device="cpu")
    out = resumed.export(tmp_path / "merged")
    assert (tmp_path / "merged" / "config.json").exists() and out.endswith("merged")


def test_run_config_from_stage_takes_the_stage_names_and_values():
    """One construction, in the stage module: every same-named field copied, credit overridable, vLLM share kept."""
    from dataclasses import fields

    from ivt_lib.configs import GRPOStageConfig

    stage = GRPOStageConfig(iterations=7, batch_size=5, generation_backend="hf", top_p=0.9, max_new_tokens=40,
                            vllm_gpu_memory=0.4, seed=3, val_every=2)
    run = grpo.GRPORunConfig.from_stage(stage)
    shared = {f.name for f in fields(grpo.GRPORunConfig)} & set(stage.to_dict())
    assert {"iterations", "batch_size", "generation_backend", "top_p", "max_new_tokens", "seed", "credit"} <= shared
    assert all(getattr(run, n) == getattr(stage, n) for n in shared)
    assert run.vllm_kwargs == {"gpu_memory_utilization": 0.4}
    assert grpo.GRPORunConfig.from_stage(stage, credit="refine").credit == "refine"
    # the two layers agree on defaults, so a default stage and a default run are the same run
    default = grpo.GRPORunConfig.from_stage(GRPOStageConfig())
    assert {n: getattr(default, n) for n in shared - {"val_every"}} == \
        {n: getattr(grpo.GRPORunConfig(), n) for n in shared - {"val_every"}}


def test_checkpoint_with_the_old_field_names_resumes(trainer):
    """Checkpoints written before the rename (rollout_backend; gen_batch_size is never compared) still resume."""
    trainer.save()
    st = load_state(trainer.ckpt)
    cfg = dict(st["config"])
    assert "batch_size" not in cfg
    cfg["rollout_backend"] = cfg.pop("generation_backend")
    st["config"] = cfg
    write_legacy_state(trainer.ckpt, st)
    again = grpo.MultiStepGRPO(trainer.model_path, trainer.samples, trainer.out, trainer.cfg, device="cpu")
    assert again.iteration == trainer.iteration


def test_qwen25_rewards_read_the_processors_resized_pixels():
    """GRPO's reward re-parses the final answer: for qwen25 it must use the same resized frame as the loop. An answer
    that is the ground truth in the processor's resized pixels earns IoU 1 + 0.1 format; the frame comes from the
    trainer's processor (before the fix the reward read those pixels as original pixels, IoU < 1)."""
    from types import SimpleNamespace

    from PIL import Image
    from transformers import Qwen2VLImageProcessor

    from ivt_lib.core import boxes as bx
    from ivt_lib.core.parsing import format_box

    ip = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=200 * 28 * 28)
    trajs = []
    for w, h in [(500, 375), (1000, 750)]:
        _, gh, gw = ip(images=[Image.new("RGB", (w, h))], return_tensors="pt")["image_grid_thw"][0].tolist()
        gt = (0.1 * w, 0.2 * h, 0.6 * w, 0.7 * h)
        text = format_box(bx.to_model_frame(gt, w, h, "qwen25", resized=(gw * 14, gh * 14)))
        trajs.append(Trajectory("s", "f", gt, w, h, [StepRecord(text, None, 0.0, True)]))
    fake = SimpleNamespace(cfg=SimpleNamespace(coord_format="qwen25"), processor=SimpleNamespace(image_processor=ip))
    frames = grpo.MultiStepGRPO.frames(fake, trajs)
    r = grpo.final_rewards(trajs, rewards.PAPER_WEIGHTS, "qwen25", frames)
    assert r.tolist() == pytest.approx([1.1, 1.1], abs=0.02)
    with pytest.raises(ValueError, match="resized"):
        grpo.final_rewards(trajs, rewards.PAPER_WEIGHTS, "qwen25")
    qwen3 = SimpleNamespace(cfg=SimpleNamespace(coord_format="qwen3"), processor=None)
    assert grpo.MultiStepGRPO.frames(qwen3, trajs) == [None, None]  # 0-1000 relative: no pixel frame
