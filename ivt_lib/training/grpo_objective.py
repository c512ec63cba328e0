"""The GRPO objective of Phase 2, one update's math: group-relative advantages, trl's clipped loss with the k3 KL, and
the scoring of each recorded step with its own rendered image.

Kept apart from the trainer (:mod:`ivt_lib.training.grpo`) so the formulation can be read, and checked against trl's
(``GRPOTrainer._compute_loss`` and ``_generate_and_score_completions``, trl 1.16; ``tests/test_grpo.py``), on its own.
"""
from __future__ import annotations

import hashlib
import json
from typing import Sequence

import torch

from ..core.loop import Trajectory, flat_images
from ..core.rewards import combined


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
        enc = processor(text=texts, images=flat_images([r["image"] for r in rows]), padding=True, return_tensors="pt")
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


def rollout_rows(trajs: Sequence[Trajectory], advantages: torch.Tensor, banned_ids: Sequence[int] = ()) -> list[dict]:
    """Every generated step of every trajectory as a scoring row carrying its trajectory's advantage. A completion
    containing a ``banned_ids`` token (a vision placeholder, which the scoring processor would count as an image
    token) is left out: HFPolicy never generates one, but another backend might. A step marked ``anchor`` (the shared
    step 0 under ``anchor_step0``) gets advantage 0: only the KL term acts on it."""
    banned = set(banned_ids)
    rows = []
    for tr, a in zip(trajs, advantages.tolist()):
        for r in tr.rollout:
            if r["token_ids"] and not banned.intersection(r["token_ids"]):
                rows.append({**r, "advantage": 0.0 if r.get("anchor") else a})
    return rows


def rollout_digest(tokens: Sequence[tuple[str, list]]) -> str:
    """Short sha256 of ``(sample_id, per-step token ids)`` pairs, order-free across prompts (stable within a group)."""
    ordered = sorted(enumerate(tokens), key=lambda it: (it[1][0], it[0]))
    return hashlib.sha256(json.dumps([t for _, t in ordered]).encode()).hexdigest()[:16]


def final_rewards(trajs: Sequence[Trajectory], weights: dict, coord_format: str = "qwen3",
                  resized: Sequence | None = None) -> torch.Tensor:
    """The paper's reward on the final step only (no per-step shaping), through the reward registry; ``resized``
    (per trajectory, the processor-resized size of the image its last answer refers to: the zoom window's image
    when that step had one) is needed for qwen25 answers, which are pixels of that image."""
    return torch.tensor(combined([tr.steps[-1].text for tr in trajs], weights, bbox=[tr.gt for tr in trajs],
                                 width=[tr.width for tr in trajs], height=[tr.height for tr in trajs],
                                 coord_format=coord_format, resized=resized,
                                 window=[tr.steps[-1].window for tr in trajs]), dtype=torch.float32)
