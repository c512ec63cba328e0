"""Phase 1 data: teacher traces from the base model's own step-0 errors (the paper's SFT warm-up data).

1. The base model predicts on the train split (step 0).
2. Samples with step-0 IoU in ``[iou_min, iou_max]`` are kept (paper: [0, 0.85] -> 934 of 2,400).
3. For each kept sample, step targets lie on the **linear path from the student's box to the ground truth**:
   ``b_t = lerp(b_0, gt, t / T)`` for t = 1..T.
4. A teacher writes, for each step, corrective reasoning that ends with ``b_t``; the conversation for step t shows the
   image with ``b_{t-1}`` drawn, exactly as the refinement loop will at inference.
5. Every trace is validated; rejections are counted by reason, never silently dropped.

The ablation (:func:`jittered_starts`) replaces the student's own boxes by jittered ground truth (the paper reports this
causes "step-0 sandbagging").

Two recipes (``recipe``), both kept and labelled:

* ``"paper"``: the above, as the paper does it. No trace ever keeps a right box (those samples are filtered out),
  and a wrong-object start's linear-path midpoint is a box in empty space between two objects.
* ``"ours"`` (a labelled deviation): the paper's trajectories, plus **keep** trajectories for samples whose step-0
  IoU is above ``iou_max`` (the target at every refine step is the box itself, unchanged), and **object-first**
  targets for starts that miss the target (IoU < ``MISS_IOU``, usually the wrong object): every step's target is the
  ground truth, a box on an object, instead of a midpoint in empty space. Its step-0 replays
  (:func:`step0_replay_natural`) are drawn from all the student's answers, right and wrong, in their natural
  proportion, instead of only the kept samples' answers (its failures).
"""
from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..core import boxes as bx
from ..core.feedback import ViewSettings, answer_in_view, refine_view
from ..core.parsing import format_box
from ..core.prompts import step0_messages, with_answer
from .teacher import Teacher, TeacherRequest, validate_trace

log = logging.getLogger(__name__)

RECIPES = ("paper", "ours")
MISS_IOU = 0.1  # "ours": a start below this IoU misses the target (wrong object or empty space) -> object-first targets


@dataclass
class SynthesisStats:
    """What happened to every candidate sample and step."""

    n_samples: int = 0
    n_no_student_box: int = 0
    n_outside_filter: int = 0
    n_kept_samples: int = 0
    n_keep_samples: int = 0      # "ours": keep trajectories (step-0 IoU above iou_max; targets = the box itself)
    n_object_first: int = 0      # "ours": kept samples whose start misses the target (targets = the ground truth)
    n_over_cap: int = 0
    n_replay: int = 0
    n_traces: int = 0
    n_rejected: int = 0
    rejected: dict = field(default_factory=dict)
    step0_iou_hist: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready."""
        return dict(self.__dict__)


def jittered_starts(samples: Sequence[dict], seed: int = 0, scale: float = 0.35) -> list:
    """Ablation starts: ground truth jittered by ``scale`` (not the student's own errors)."""
    rng = random.Random(f"jitter-{seed}")
    return [bx.jitter(rng, s["bbox"], s["width"], s["height"], scale) for s in samples]


def start_quality(iou: float, iou_max: float = 0.85) -> str:
    """The bucket of a start box: good (above the filter), off (inside it), or miss (below ``MISS_IOU``)."""
    return "good" if iou > iou_max else "miss" if iou < MISS_IOU else "off"


def build_requests(samples: Sequence[dict], starts: Sequence, T: int, iou_min: float = 0.0, iou_max: float = 0.85,
                   stats: SynthesisStats | None = None, max_samples: int = 0, seed: int = 0,
                   recipe: str = "paper") -> list[TeacherRequest]:
    """Filter by start IoU, keep at most ``max_samples`` (seeded; 0 = all; the paper kept 934), and lay the step
    targets on the linear path from the start box to the ground truth. ``recipe="ours"`` adds keep trajectories
    and object-first targets (module docstring)."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe={recipe!r}: expected one of {RECIPES}")
    stats = stats if stats is not None else SynthesisStats()
    stats.n_samples = len(samples)
    ious = [bx.iou(b, s["bbox"]) if b is not None else 0.0 for s, b in zip(samples, starts)]
    hist, edges = np.histogram(ious, bins=10, range=(0, 1))
    stats.step0_iou_hist = {f"{edges[i]:.1f}-{edges[i + 1]:.1f}": int(h) for i, h in enumerate(hist)}
    kept, keep = [], []
    for s, b, v in zip(samples, starts, ious):
        if b is None:
            stats.n_no_student_box += 1
        elif not iou_min <= v <= iou_max:
            stats.n_outside_filter += 1
            if recipe == "ours" and v > iou_max:
                keep.append((s, b))
        else:
            kept.append((s, b))
    if max_samples and len(kept) > max_samples:
        stats.n_over_cap = len(kept) - max_samples
        chosen = set(random.Random(f"cap-{seed}").sample(range(len(kept)), max_samples))
        kept = [k for i, k in enumerate(kept) if i in chosen]
    stats.n_kept_samples, stats.n_keep_samples = len(kept), len(keep)
    reqs = []
    for s, b in kept + keep:
        v = bx.iou(b, s["bbox"])
        first = recipe == "ours" and v < MISS_IOU
        stats.n_object_first += first
        prev = tuple(b)
        for t in range(1, T + 1):
            target = tuple(b) if v > iou_max else tuple(s["bbox"]) if first else bx.lerp(b, s["bbox"], t / T)
            reqs.append(TeacherRequest(str(s["id"]), s["image"], s["expression"], prev, target, t, T,
                                       list(s.get("objects", [])), int(s.get("target", -1))))
            prev = target
    return reqs


def start_counts(requests: Sequence[TeacherRequest], samples: Sequence[dict], starts: Sequence,
                 iou_max: float = 0.85) -> dict[str, int]:
    """Trajectories by start quality (good / off / miss), for the recipes' side-by-side table."""
    by_id = {str(s["id"]): bx.iou(b, s["bbox"]) for s, b in zip(samples, starts) if b is not None}
    ids = {r.sample_id for r in requests if r.step == 1}
    out = Counter(start_quality(by_id[i], iou_max) for i in ids)
    return {k: int(out.get(k, 0)) for k in ("good", "off", "miss")}


def reframe(text: str, box: tuple[int, int, int, int]) -> str:
    """``text`` with its last ``bbox_2d`` list replaced by ``box`` (a trace's target restated in a view's frame)."""
    head, sep, tail = text.rpartition('{"bbox_2d"')
    if not sep:
        raise ValueError(f"no bbox_2d in the trace {text[:80]!r}")
    return head + format_box(box) + tail[tail.index("}") + 1:]


def synthesize(teacher: Teacher, requests: Sequence[TeacherRequest], stats: SynthesisStats | None = None,
               coord_format: str = "qwen3", tol: float = 2.0, need_reasoning: bool = True,
               view: ViewSettings = ViewSettings()) -> tuple[list[dict], SynthesisStats]:
    """Ask the teacher for every request, validate, and build training conversations (messages + rendered images)
    as the loop shows refine steps in ``view``; in the zoom view the teacher's box is restated in the window's frame
    (the teacher writes in the image's frame; its text is validated there first)."""
    stats = stats if stats is not None else SynthesisStats()
    texts = teacher.write(list(requests))
    records, reasons = [], Counter()
    for r, text in zip(requests, texts):
        why = validate_trace(text, r, coord_format, tol, need_reasoning)
        if why is not None:
            reasons[why] += 1
            continue
        v = refine_view(r.image, r.expression, r.previous, r.step, r.T, view, coord_format)
        if v.window is not None:
            text = reframe(text, answer_in_view(r.target, v, r.image.width, r.image.height, coord_format))
        records.append({"id": f"{r.sample_id}-s{r.step}", "sample_id": r.sample_id, "step": r.step, "T": r.T,
                        "messages": with_answer(v.messages, text), "images": v.images,
                        "start_iou": bx.iou(r.previous, r.target) if r.step == 1 else None})
    stats.n_traces, stats.n_rejected, stats.rejected = len(records), sum(reasons.values()), dict(reasons)
    if stats.n_rejected:
        log.warning("rejected %d of %d traces: %s", stats.n_rejected, len(requests), dict(reasons))
    return records, stats


def step0_replay(samples: Sequence[dict], step0_texts: dict[str, str], sample_ids: set[str],
                 stats: SynthesisStats | None = None) -> list[dict]:
    """Step 0 of each kept trajectory with the **student's own** answer as the target (label-free), so that SFT on
    whole trajectories does not move the model's first guess (the paper warns about step-0 sandbagging)."""
    out = []
    for s in samples:
        sid = str(s["id"])
        if sid in sample_ids and sid in step0_texts:
            out.append({"id": f"{sid}-s0", "sample_id": sid, "step": 0, "T": 0, "start_iou": None,
                        "messages": with_answer(step0_messages(s["expression"]), step0_texts[sid]),
                        "images": [s["image"]]})
    if stats is not None:
        stats.n_replay = len(out)
    return out


def step0_replay_natural(samples: Sequence[dict], step0_texts: dict[str, str], n: int, seed: int = 0,
                         stats: SynthesisStats | None = None) -> list[dict]:
    """``n`` step-0 replays (the student's own answer as target) drawn at random from *all* samples with an answer,
    right and wrong in their natural proportion, so replay does not pull step 0 toward the model's failures."""
    pool = [s for s in samples if str(s["id"]) in step0_texts]
    chosen = {str(s["id"]) for s in random.Random(f"replay-{seed}").sample(pool, min(n, len(pool)))}
    return step0_replay(samples, step0_texts, chosen, stats)


def to_dataset(records: Sequence[dict]):
    """A ``datasets.Dataset`` with ``messages`` + ``images`` columns (trl's VLM SFT format)."""
    from datasets import Dataset

    if not records:
        raise ValueError("no teacher traces to build a dataset from (all rejected or filtered out)")
    return Dataset.from_list([{"id": r["id"], "step": r["step"], "messages": r["messages"], "images": r["images"]}
                              for r in records])


def example_answer(records: Sequence[dict], k: int = 3) -> list[str]:
    """A few assistant answers, for display."""
    return [r["messages"][-1]["content"][0]["text"] for r in records[:k]]


