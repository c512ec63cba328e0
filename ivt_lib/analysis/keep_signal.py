"""Does GRPO's sampling ever propose "keep" where keeping is right? (a validation-only diagnostic)

For samples whose greedy step-0 box is good (IoU >= ``good_iou``), refine that box once greedily and ``group`` times
sampled (at ``temperature``, as the GRPO tier's rollouts), and report how often a step-1 answer keeps the drawn box
(IoU with it >= ``keep_iou``) and the IoU of keeps vs moves, with Wilson 95 % intervals on the keep rates.

The sampled draws of one start are not independent, so ``sampled_keep_ci`` (over all draws) is narrower than the
truth; ``groups_with_a_keep_ci`` (one per start) is not clustered.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core import boxes as bx
from ..core import loop, models
from ..core.feedback import ViewSettings
from ..core.stats import proportion_ci

KEYS = ("n", "good_starts", "greedy_keep", "greedy_keep_ci", "greedy_step1_iou", "sampled", "sampled_keep",
        "sampled_keep_ci", "groups_with_a_keep", "groups_with_a_keep_ci", "sampled_iou_keep", "sampled_iou_move")


def _kept(trajs: Sequence[loop.Trajectory], starts: Sequence, keep_iou: float) -> np.ndarray:
    """Per trajectory: did step 1 answer a box with IoU >= ``keep_iou`` against the drawn start?"""
    return np.array([t.steps[1].box is not None and bx.iou(t.steps[1].box, b) >= keep_iou
                     for t, b in zip(trajs, starts)], dtype=bool)


def _rate(hits: np.ndarray) -> tuple[float, list[float]]:
    """Share of True and its Wilson 95 % interval."""
    return float(hits.mean()), list(proportion_ci(int(hits.sum()), int(hits.size)))


def keep_signal_policy(policy: loop.Policy, samples: Sequence[dict], group: int = 6, temperature: float = 1.0,
                       good_iou: float = 0.85, feedback: ViewSettings | str = "overlay", keep_iou: float = 0.9,
                       sampler: loop.Policy | None = None) -> dict:
    """Keep rates (greedy and sampled, Wilson CIs) and step-1 IoUs from ``policy``'s good step-0 starts on ``samples``.

    ``sampler`` draws the ``group`` samples per start (default: ``policy`` sampling at ``temperature``); draw ``j`` of
    start ``i`` uses seed ``i * group + j``. With no good start, every key but ``n`` and ``good_starts`` is None.
    """
    if group < 1:
        raise ValueError(f"group must be >= 1, got {group}")
    s0 = loop.run_loop(policy, samples, T=0, show_progress=False)
    good = [(s, tr.steps[0].box) for s, tr in zip(samples, s0) if tr.steps[0].iou >= good_iou]
    out: dict = dict.fromkeys(KEYS)
    out.update(n=len(samples), good_starts=len(good))
    if not good:
        return out
    starts = [b for _, b in good]
    greedy = loop.run_loop(policy, [s for s, _ in good], T=1, start_boxes=starts, show_progress=False,
                           feedback=feedback)
    exp = [g for g in good for _ in range(group)]
    sampler = sampler if sampler is not None else models.sampling_copy(policy, temperature)
    sampled = loop.run_loop(sampler, [s for s, _ in exp], T=1, start_boxes=[b for _, b in exp], show_progress=False,
                            sample_seeds=list(range(len(exp))), feedback=feedback)
    k, iou = _kept(sampled, [b for _, b in exp], keep_iou), np.array([t.steps[1].iou for t in sampled])
    out["greedy_keep"], out["greedy_keep_ci"] = _rate(_kept(greedy, starts, keep_iou))
    out["greedy_step1_iou"] = float(np.mean([t.steps[1].iou for t in greedy]))
    out["sampled"] = int(k.size)
    out["sampled_keep"], out["sampled_keep_ci"] = _rate(k)
    out["groups_with_a_keep"], out["groups_with_a_keep_ci"] = _rate(k.reshape(-1, group).any(1))
    out["sampled_iou_keep"] = float(iou[k].mean()) if k.any() else None
    out["sampled_iou_move"] = float(iou[~k].mean()) if (~k).any() else None
    return out


def keep_signal(model_or_policy_path: str, samples: Sequence[dict], group: int = 6, temperature: float = 1.0,
                good_iou: float = 0.85, feedback: ViewSettings | str = "overlay", keep_iou: float = 0.9,
                device: str = "auto") -> dict:
    """:func:`keep_signal_policy` on the model folder (or hub id) ``model_or_policy_path``, plus its ``model``."""
    pol = models.load_policy(model_or_policy_path, device=device, show_progress=False)
    return {"model": str(model_or_policy_path),
            **keep_signal_policy(pol, samples, group, temperature, good_iou, feedback, keep_iou)}
