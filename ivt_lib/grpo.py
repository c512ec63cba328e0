"""Phase 2: multi-step GRPO over visual-feedback trajectories.

Why not trl's ``GRPOTrainer``: each refine step's image is rendered *during* the rollout from the previous step's box,
and trl's ``rollout_func`` drops such images from the training forward pass (a silent "blind policy"). So the GRPO
step lives here, built on torch + peft, reusing trl's formulation (``GRPOTrainer._compute_loss`` and the group
advantages in ``GRPOTrainer._generate_and_score_completions``, trl 1.16; ``tests/test_grpo.py`` checks we match it):

1. sample ``group_size`` whole trajectories per prompt with the refinement loop (temperature > 0), rendering between
   steps and recording every step's exact messages, image and generated token ids;
2. reward the **final step** only: IoU + 0.1 x format (the reward registry, trl's signature);
3. group-normalised advantages ``(r - mean_g) / (std_g + 1e-4)`` (zero for a group of equal rewards, never NaN);
4. a clipped policy-gradient loss over every generated token of every step (each step's row is scored with *its own*
   rendered image), plus ``beta`` x the k3 KL to the reference. With LoRA, the adapter-disabled model is the
   reference: GRPO starts from the merged SFT model, so the reference is the SFT policy at no extra memory.

One policy update per rollout batch (trl's default ``num_iterations=1``), so the importance ratio is 1 at the update
and the clip fraction is logged for completeness. Checkpoints (adapter + optimiser + iteration + logs) are written
atomically every ``save_every`` iterations; a killed run resumes where it stopped, with the same prompts.
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .io import atomic_dir
from .loop import HFPolicy, Trajectory, run_loop
from .rewards import PAPER_WEIGHTS, combined
from .sft import LLM_TARGETS

log = logging.getLogger(__name__)


@dataclass
class GRPORunConfig:
    """Hyper-parameters of multi-step GRPO (paper: G=6, beta=0.04, final-step IoU + 0.1 format)."""

    iterations: int = 60
    prompts_per_iter: int = 4
    group_size: int = 6
    T: int = 2
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 96
    learning_rate: float = 5e-4
    beta: float = 0.04
    epsilon: float = 0.2
    loss_type: str = "bnpo"             # token mean over the batch ("grpo": per-row mean, then mean)
    micro_batch: int = 24               # rows per scoring forward (gradient accumulation inside an iteration)
    lora_r: int = 16
    lora_alpha: int = 32
    reward_weights: dict = field(default_factory=lambda: dict(PAPER_WEIGHTS))
    save_every: int = 10
    seed: int = 0
    coord_format: str = "qwen3"
    gen_batch_size: int = 48

    def __post_init__(self):
        if self.group_size < 2:
            raise ValueError(f"group_size={self.group_size}: GRPO needs at least 2 trajectories per prompt")
        if self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature}: rollouts must sample (temperature > 0)")
        if self.loss_type not in ("bnpo", "grpo"):
            raise ValueError(f"loss_type={self.loss_type!r}: expected bnpo or grpo")
        if self.iterations < 1 or self.prompts_per_iter < 1 or self.T < 0:
            raise ValueError("iterations and prompts_per_iter must be >= 1 and T >= 0")


def group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``(r - mean_g) / (std_g + 1e-4)`` per group of consecutive ``group_size`` rewards (trl's ``scale_rewards="group"``,
    unbiased std as trl's ``nanstd``). A group of equal rewards gets zero advantage."""
    g = rewards.view(-1, group_size)
    mean = g.mean(1, keepdim=True)
    std = g.std(1, keepdim=True, unbiased=True) if group_size > 1 else torch.zeros_like(mean)
    return ((g - mean) / (std + 1e-4)).view(-1)


def grpo_loss(logps: torch.Tensor, old_logps: torch.Tensor, ref_logps: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, beta: float = 0.04, eps_low: float = 0.2,
              eps_high: float = 0.2, loss_type: str = "bnpo") -> tuple[torch.Tensor, dict]:
    """trl's clipped GRPO objective on ``(rows, tokens)`` tensors; returns the loss and its statistics."""
    adv = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
    coef_1 = torch.exp(logps - old_logps)
    coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
    per_token = -torch.min(coef_1 * adv, coef_2 * adv)
    kl = None
    if beta != 0.0 and ref_logps is not None:
        kl = torch.exp(ref_logps - logps) - (ref_logps - logps) - 1  # k3 estimator, as trl
        per_token = per_token + beta * kl
    mask = mask.to(per_token.dtype)
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif loss_type == "bnpo":
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1.0)
    else:
        raise ValueError(f"unknown loss_type {loss_type!r}")
    n = mask.sum().clamp(min=1.0)
    clipped = ((coef_1 < 1 - eps_low) & (adv < 0)) | ((coef_1 > 1 + eps_high) & (adv > 0))
    stats = {"kl": float(((kl * mask).sum() / n).detach()) if kl is not None else 0.0,
             "clip_frac": float(((clipped.to(mask.dtype) * mask).sum() / n).detach())}
    return loss, stats


def encode_rows(processor, rows: Sequence[dict], device) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Model inputs for scoring each row's recorded completion given *its* messages and image: left-padded prompt,
    right-padded completion, as trl. Returns ``(inputs, completion_ids, completion_mask)``."""
    texts = [processor.apply_chat_template(r["messages"], tokenize=False, add_generation_prompt=True) for r in rows]
    tok = processor.tokenizer
    old, tok.padding_side = tok.padding_side, "left"
    try:
        enc = processor(text=texts, images=[r["image"] for r in rows], padding=True, return_tensors="pt")
    finally:
        tok.padding_side = old
    enc = enc.to(device)
    C = max(len(r["token_ids"]) for r in rows)
    comp = torch.full((len(rows), C), tok.pad_token_id, dtype=torch.long, device=device)
    cmask = torch.zeros((len(rows), C), dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        comp[i, :len(r["token_ids"])] = torch.tensor(r["token_ids"], dtype=torch.long)
        cmask[i, :len(r["token_ids"])] = 1
    inputs = {"input_ids": torch.cat([enc["input_ids"], comp], 1),
              "attention_mask": torch.cat([enc["attention_mask"], cmask], 1),
              "pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"]}
    if "mm_token_type_ids" in enc:
        inputs["mm_token_type_ids"] = torch.cat([enc["mm_token_type_ids"], torch.zeros_like(comp)], 1)
    return inputs, comp, cmask


def token_logps(model, inputs: dict, comp: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-probabilities of the completion tokens (logits divided by the sampling temperature, as trl)."""
    C = comp.shape[1]
    logits = model(**inputs, logits_to_keep=C + 1).logits[:, :-1, :].float() / temperature
    return torch.log_softmax(logits, -1).gather(-1, comp.unsqueeze(-1)).squeeze(-1)


def score_rows(model, processor, rows: Sequence[dict], temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logps, mask)`` of shape ``(rows, max_completion_len)`` for each row's recorded completion."""
    inputs, comp, cmask = encode_rows(processor, rows, model.device)
    return token_logps(model, inputs, comp, temperature), cmask


def rollout_rows(trajs: Sequence[Trajectory], advantages: torch.Tensor) -> list[dict]:
    """Every generated step of every trajectory as a scoring row carrying its trajectory's advantage."""
    rows = []
    for tr, a in zip(trajs, advantages.tolist()):
        for r in tr.rollout:
            if r["token_ids"]:
                rows.append({**r, "advantage": a})
    return rows


def final_rewards(trajs: Sequence[Trajectory], weights: dict, coord_format: str = "qwen3") -> torch.Tensor:
    """The paper's reward on the final step only (no per-step shaping), through the reward registry."""
    return torch.tensor(combined([tr.steps[-1].text for tr in trajs], weights, bbox=[tr.gt for tr in trajs],
                                 width=[tr.width for tr in trajs], height=[tr.height for tr in trajs],
                                 coord_format=coord_format), dtype=torch.float32)


class MultiStepGRPO:
    """Multi-step GRPO on a LoRA adapter over ``model_path`` (typically the merged SFT model)."""

    def __init__(self, model_path: str, train_samples: Sequence[dict], out_dir: str | Path, cfg: GRPORunConfig,
                 device: str = "auto", dtype: str = "float32"):
        from peft import LoraConfig, get_peft_model

        from .models import load_model

        if not train_samples:
            raise ValueError("MultiStepGRPO got no training samples")
        self.cfg, self.samples, self.out = cfg, list(train_samples), Path(out_dir)
        base, self.processor = load_model(model_path, device, dtype)
        torch.manual_seed(cfg.seed)
        self.model = get_peft_model(base, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                                     target_modules=LLM_TARGETS, task_type="CAUSAL_LM"))
        self.opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=cfg.learning_rate)
        self.iteration, self.logs = 0, []
        self._maybe_resume()

    # ------------------------------------------------------------------------------------------- checkpointing
    @property
    def ckpt(self) -> Path:
        """The resumable state folder."""
        return self.out / "checkpoint"

    def save(self) -> None:
        """Atomically write adapter + optimiser + iteration + logs."""
        with atomic_dir(self.ckpt) as tmp:
            self.model.save_pretrained(tmp)
            torch.save({"opt": self.opt.state_dict(), "iteration": self.iteration}, tmp / "state.pt")
            (tmp / "logs.json").write_text(json.dumps(self.logs))

    def _maybe_resume(self) -> None:
        if not (self.ckpt / "state.pt").exists():
            return
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(self.model, load_file(self.ckpt / "adapter_model.safetensors"))
        st = torch.load(self.ckpt / "state.pt", weights_only=False)
        self.opt.load_state_dict(st["opt"])
        self.iteration, self.logs = st["iteration"], json.loads((self.ckpt / "logs.json").read_text())
        log.info("resumed GRPO at iteration %d", self.iteration)

    # ------------------------------------------------------------------------------------------------ one step
    def prompts(self, iteration: int) -> list[dict]:
        """The prompts of an iteration: a function of (seed, iteration), so a resumed run sees the same ones."""
        rng = random.Random(f"grpo-{self.cfg.seed}-{iteration}")
        return rng.sample(self.samples, min(self.cfg.prompts_per_iter, len(self.samples)))

    def rollout(self, prompts: Sequence[dict]) -> list[Trajectory]:
        """``group_size`` sampled trajectories per prompt (consecutive), recording every step's inputs."""
        c = self.cfg
        expanded = [p for p in prompts for _ in range(c.group_size)]
        pol = HFPolicy(self.model, self.processor, c.max_new_tokens, c.gen_batch_size, c.temperature, c.top_p)
        self.model.eval()
        with torch.no_grad():
            return run_loop(pol, expanded, c.T, c.coord_format, show_progress=False, record_inputs=True)

    def step(self) -> dict:
        """One GRPO iteration: rollout, rewards, advantages, one clipped policy-gradient update."""
        c = self.cfg
        torch.manual_seed(c.seed * 100003 + self.iteration)  # sampling is reproducible per iteration
        trajs = self.rollout(self.prompts(self.iteration))
        rewards = final_rewards(trajs, c.reward_weights, c.coord_format)
        adv = group_advantages(rewards, c.group_size)
        rows = rollout_rows(trajs, adv)
        n_tok = sum(len(r["token_ids"]) for r in rows)
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        loss_sum, kl_sum, clip_sum = 0.0, 0.0, 0.0
        for s in range(0, len(rows), c.micro_batch):
            mb = rows[s:s + c.micro_batch]
            inputs, comp, mask = encode_rows(self.processor, mb, self.model.device)  # encoded once, scored twice
            ref = None
            if c.beta != 0.0:
                with torch.no_grad(), self.model.disable_adapter():
                    ref = token_logps(self.model, inputs, comp, c.temperature)
            logps = token_logps(self.model, inputs, comp, c.temperature)
            a = torch.tensor([r["advantage"] for r in mb], dtype=logps.dtype, device=logps.device)
            loss, st = grpo_loss(logps, logps.detach(), ref, a, mask, c.beta, c.epsilon, c.epsilon, c.loss_type)
            mb_tok = int(mask.sum())
            # accumulate so that the total equals the loss over the whole batch of rows
            weight = mb_tok / max(n_tok, 1) if c.loss_type == "bnpo" else len(mb) / len(rows)
            (loss * weight).backward()
            loss_sum += float(loss.detach()) * weight
            kl_sum += st["kl"] * mb_tok
            clip_sum += st["clip_frac"] * mb_tok
        torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], 1.0)
        self.opt.step()
        self.iteration += 1
        ious = np.array([tr.ious for tr in trajs])
        entry = {"iteration": self.iteration, "loss": loss_sum, "reward_mean": float(rewards.mean()),
                 "reward_std": float(rewards.std()), "kl": kl_sum / max(n_tok, 1), "clip_frac": clip_sum / max(n_tok, 1),
                 "iou_per_step": ious.mean(0).tolist(), "final_parse_rate": float(np.mean([tr.steps[-1].parse_ok for tr in trajs])),
                 "zero_adv_groups": int((rewards.view(-1, c.group_size).std(1) == 0).sum()), "rows": len(rows),
                 "tokens": n_tok}
        self.logs.append(entry)
        return entry

    def train(self, show_progress: bool = True) -> list[dict]:
        """Run the remaining iterations (resuming if a checkpoint exists); save periodically and at the end."""
        bar = tqdm(total=self.cfg.iterations, initial=self.iteration, desc="GRPO", disable=not show_progress)
        while self.iteration < self.cfg.iterations:
            e = self.step()
            bar.update(1)
            bar.set_postfix(reward=f"{e['reward_mean']:.3f}", kl=f"{e['kl']:.4f}")
            if self.iteration % self.cfg.save_every == 0 or self.iteration == self.cfg.iterations:
                self.save()
        bar.close()
        return self.logs

    def export(self, path: str | Path) -> str:
        """Merge the adapter into a plain model folder (loadable by ``load_model``); returns its path."""
        from .models import save_merged

        return save_merged(self.model, self.processor, path,
                           {"grpo_config.json": json.dumps(asdict(self.cfg), indent=1)})
