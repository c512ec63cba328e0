"""Diagnostics of the loop: the presence probe (does the model react to *whether* a box is drawn, or to whether it
is right?), the drop drivers (which part of the refine step causes the naive drop: the drawing, its red fill, the
unseen prompt?), the failure anatomy of degrading samples (jump to a distractor, drift, shrink, grow, degenerate box,
parse failure), and the selection anatomy of a step (which object did the box land on?).
"""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np

from ..core import boxes as bx
from ..core.loop import Policy, Trajectory, run_loop
from ..corpora.scenes import COLOURS, SHAPES
from ..core.stats import bootstrap_ci, compare, mcnemar

MOVE_EPS = 0.01


def random_box(rng: random.Random, w: int, h: int) -> tuple[float, float, float, float]:
    """A random box with sides 15-50 % of the image (the probe's "wrong box" arm)."""
    bw, bh = rng.uniform(0.15, 0.5) * w, rng.uniform(0.15, 0.5) * h
    x1, y1 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    return (x1, y1, x1 + bw, y1 + bh)


def _arm_stats(trajs: Sequence[Trajectory]) -> dict:
    before = np.array([t.steps[0].iou for t in trajs])
    after = np.array([t.steps[1].iou for t in trajs])
    moved = np.array([1.0 - bx.iou(t.steps[0].box, t.steps[1].box) if t.steps[0].box and t.steps[1].box else 1.0
                      for t in trajs])
    d = after - before
    return {"iou_before": float(before.mean()), "iou_after": float(after.mean()),
            "acc@0.5_before": float((before >= 0.5).mean()), "acc@0.5_after": float((after >= 0.5).mean()),
            "toward_truth": float((d >= MOVE_EPS).mean()), "away_from_truth": float((d <= -MOVE_EPS).mean()),
            "mean_move": float(moved.mean()), "unchanged": float((moved < MOVE_EPS).mean()),
            "parse_rate_after": float(np.mean([t.steps[1].parse_ok for t in trajs])), "n": len(trajs)}


def presence_probe(policy: Policy, samples: Sequence[dict], own_boxes: Sequence, seed: int = 0,
                   coord_format: str = "qwen3") -> dict[str, dict]:
    """One refine step from four starts: the model's own box, the GT box, a random box (all drawn), and the own box
    stated in text but **not drawn**. Returns per-arm IoU before/after and how the box moved."""
    rng = random.Random(f"probe-{seed}")
    rand = [random_box(rng, s["image"].width, s["image"].height) for s in samples]
    arms = {"own_box_drawn": (own_boxes, True), "gt_box_drawn": ([s["bbox"] for s in samples], True),
            "random_box_drawn": (rand, True), "own_box_not_drawn": (own_boxes, False)}
    return {name: _arm_stats(run_loop(policy, samples, T=1, coord_format=coord_format, start_boxes=starts,
                                      draw_previous=drawn, show_progress=False))
            for name, (starts, drawn) in arms.items()}


# One refine step from the model's own step-0 box under each arm: (how the box is drawn, or None = not drawn,
# prompt format). "naive" is the loop as the paper runs it; "regrounding_control" re-asks step 0 on the clean image,
# so a deterministic (greedy) model must reproduce its step 0 there exactly.
DROP_DRIVER_ARMS: dict[str, tuple[str | None, str]] = {
    "naive (red fill drawn + stated, refine prompt)": ("fill", "refine"),
    "stated in text only (not drawn)": (None, "refine"),
    "outline only (no fill)": ("outline", "refine"),
    "lighter fill (alpha 24 of 255)": ("light_fill", "refine"),
    "drawn, grounding prompt (a format the base knows)": ("fill", "grounding"),
    "regrounding_control (not drawn, grounding prompt)": (None, "grounding"),
}


def _names_colour(expression: str) -> bool:
    return any(c in expression.split() for c in COLOURS)


def drop_drivers(policy: Policy, samples: Sequence[dict], own_boxes: Sequence,
                 coord_format: str = "qwen3") -> dict[str, dict]:
    """One refine step from the model's own step-0 boxes under each :data:`DROP_DRIVER_ARMS` arm.

    Per arm: the presence-probe statistics, the Acc@0.5 flips against step 0 (exact McNemar), and Acc@0.5
    after the step split by whether the expression names a colour (does the red fill hide the named colour?)."""
    colour = np.array([_names_colour(s["expression"]) for s in samples])
    out, after_ious = {}, {}
    for name, (overlay, fmt) in DROP_DRIVER_ARMS.items():
        trajs = run_loop(policy, samples, T=1, coord_format=coord_format, start_boxes=own_boxes,
                         draw_previous=overlay is not None, overlay=overlay or "fill", prompt_format=fmt,
                         show_progress=False)
        before = np.array([t.steps[0].iou >= 0.5 for t in trajs])
        after = np.array([t.steps[1].iou >= 0.5 for t in trajs])
        st = _arm_stats(trajs)
        st.update(mcnemar_vs_step0=mcnemar(before, after), overlay=overlay or "none", prompt_format=fmt,
                  **{f"acc@0.5_after_{k}": (float(after[m].mean()) if m.any() else float("nan"))
                     for k, m in (("colour_named", colour), ("no_colour_named", ~colour))},
                  **{f"acc@0.5_before_{k}": (float(before[m].mean()) if m.any() else float("nan"))
                     for k, m in (("colour_named", colour), ("no_colour_named", ~colour))})
        out[name] = st
        after_ious[name] = [t.steps[1].iou for t in trajs]
    naive = next(iter(DROP_DRIVER_ARMS))
    for name, st in out.items():  # each arm against the naive arm on the same samples: what does the change buy?
        c = compare(after_ious[naive], after_ious[name])
        st["vs_naive"] = {k: c[k] for k in ("d_acc@0.5", "ci_acc@0.5", "d_mean_iou", "ci_mean_iou", "significant")}
        st["vs_naive"].update(c["mcnemar"])
    return out


def drop_driver_summary(drivers: dict[str, dict]) -> list[str]:
    """One generated line per arm: its one-step Acc@0.5 change from step 0, and what it changes against the naive
    arm (paired CI and McNemar p); "no difference" when the CI contains 0."""
    lines = []
    for name, v in drivers.items():
        m, c = v["mcnemar_vs_step0"], v["vs_naive"]
        lo, hi = c["ci_acc@0.5"]
        verdict = "no difference" if not c["significant"] else ("better" if c["d_acc@0.5"] > 0 else "worse")
        lines.append(f"{name}: Acc@0.5 {100 * v['acc@0.5_before']:.1f} -> {100 * v['acc@0.5_after']:.1f} "
                     f"({m['gained']} gained / {m['lost']} lost vs step 0, p = {m['p']:.3g}); vs the naive arm "
                     f"{100 * c['d_acc@0.5']:+.1f} pp [{100 * lo:+.1f}, {100 * hi:+.1f}], p = {c['p']:.3g}: {verdict}; "
                     f"parse rate {100 * v['parse_rate_after']:.0f} %")
    return lines


FAILURE_KINDS = ("jump_to_distractor", "drift", "shrink", "grow", "degenerate_box", "parse_failure")


def classify_failure(tr: Trajectory, sample: dict, ratio: float = 0.7) -> str | None:
    """Why a sample degraded from step 0 to the last step (None if it did not degrade).

    In order: ``parse_failure`` (no valid box), ``degenerate_box`` (zero area or nearly the whole image),
    ``jump_to_distractor`` (now on another object: a wrong-object switch), ``shrink``/``grow`` (area ratio beyond
    ``ratio``), else ``drift``."""
    first, last = tr.steps[0], tr.steps[-1]
    if last.iou > first.iou - MOVE_EPS:
        return None
    if not last.parse_ok:
        return "parse_failure"
    if bx.is_degenerate(last.box, tr.width, tr.height):
        return "degenerate_box"
    others = [o["box"] for i, o in enumerate(sample.get("objects", [])) if i != sample.get("target")]
    if others and max(bx.iou(last.box, o) for o in others) >= 0.5 > last.iou:
        return "jump_to_distractor"
    if first.box is not None and bx.area(first.box) > 0:
        r = bx.area(last.box) / bx.area(first.box)
        if r < ratio:
            return "shrink"
        if r > 1 / ratio:
            return "grow"
    return "drift"


def failure_anatomy(trajs: Sequence[Trajectory], samples: Sequence[dict]) -> dict:
    """Counts and shares of each failure kind among degrading samples."""
    kinds = [classify_failure(t, s) for t, s in zip(trajs, samples)]
    bad = [k for k in kinds if k is not None]
    names = FAILURE_KINDS
    return {"n_degrading": len(bad), "n": len(trajs),
            "counts": {k: bad.count(k) for k in names},
            "shares_of_degrading": {k: (bad.count(k) / len(bad) if bad else 0.0) for k in names}}


PICKS = ("target", "distractor", "no_object", "parse_failure")


def picked(box, sample: dict) -> str:
    """Which object a box lands on (IoU >= 0.5): the target, a distractor, or none."""
    if box is None:
        return "parse_failure"
    ious = [bx.iou(box, o["box"]) for o in sample["objects"]]
    best = int(np.argmax(ious))
    if ious[best] < 0.5:
        return "no_object"
    return "target" if best == sample["target"] else "distractor"


def selection_anatomy(trajs: Sequence[Trajectory], samples: Sequence[dict], step: int = 0) -> dict:
    """Per family: where the box of ``step`` lands (target / distractor / no object / parse failure) and Acc@0.5 by
    the number of objects in the scene beside chance (1 / objects). Needs the scenes' object lists (synthetic data);
    samples without them are skipped, so a real dataset gives ``{}``. Tells a localisation error from picking the
    wrong object."""
    groups: dict[str, list[tuple[str, int, bool]]] = {}
    for tr, s in zip(trajs, samples):
        if not s.get("objects") or s.get("target") is None:
            continue
        st = tr.steps[step]
        groups.setdefault(tr.family, []).append((picked(st.box, s), len(s["objects"]), st.iou >= 0.5))
    out = {}
    for fam, rows in sorted(groups.items()):
        n = len(rows)
        by_n = {}
        for k in sorted({r[1] for r in rows}):
            hits = [r[2] for r in rows if r[1] == k]
            by_n[str(k)] = {"n": len(hits), "acc@0.5": float(np.mean(hits)), "chance": 1.0 / k}
        out[fam] = {"n": n, "picked": {k: sum(r[0] == k for r in rows) / n for k in PICKS}, "acc_by_objects": by_n}
    return out


def pick_transitions(trajs: Sequence[Trajectory], samples: Sequence[dict], start: int = 0, end: int = -1) -> dict:
    """On multi-object scenes: where step ``end``'s box lands (target / distractor / no object / parse failure) given
    where step ``start``'s landed, as counts and row shares. A refiner that checks its box rarely leaves the target and
    often leaves a distractor; one that moves blindly treats both alike. Synthetic scenes only (others skipped)."""
    counts = {a: dict.fromkeys(PICKS, 0) for a in PICKS}
    for tr, s in zip(trajs, samples):
        if len(s.get("objects") or []) < 2 or s.get("target") is None:
            continue
        counts[picked(tr.steps[start].box, s)][picked(tr.steps[end].box, s)] += 1
    shares = {a: {b: v / max(sum(row.values()), 1) for b, v in row.items()} for a, row in counts.items()}
    return {"counts": counts, "shares": shares}


def pick_transition_rows(configs: dict[str, Sequence[Trajectory]], samples: dict[str, dict]) -> list[dict]:
    """One row per iterative configuration: of multi-object starts on the target, the share still on it at the last
    step, moved to a distractor or to no object; of starts on a distractor, the share moved to the target."""
    rows = []
    for name, trajs in configs.items():
        if len(trajs[0].steps) < 2:
            continue
        t = pick_transitions(trajs, [samples[tr.sample_id] for tr in trajs])
        on, off = t["shares"]["target"], t["shares"]["distractor"]
        rows.append({"configuration": name, "starts on target": sum(t["counts"]["target"].values()),
                     "stays on target %": 100 * on["target"], "-> distractor %": 100 * on["distractor"],
                     "-> no object %": 100 * on["no_object"],
                     "starts on distractor": sum(t["counts"]["distractor"].values()),
                     "distractor -> target %": 100 * off["target"], "stays on distractor %": 100 * off["distractor"]})
    return rows


BOUND_WORDS = {"colour": tuple(COLOURS), "shape": SHAPES}


def word_binding(trajs: Sequence[Trajectory], samples: Sequence[dict], step: int = 0) -> dict:
    """Per family and attribute (colour, shape): does the answer honour the word the expression names?

    Over multi-object scenes whose expression names that attribute and whose answer lands on some object (IoU >= 0.5),
    the share landing on an object that has the named value, beside chance (the share of the scene's objects that
    have it: an answer on a random object), with a paired bootstrap CI of the per-sample difference. A base that
    binds the word sits far above chance; one that ignores it sits at chance. Synthetic scenes only."""
    rows: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for tr, s in zip(trajs, samples):
        objs = s.get("objects") or []
        box = tr.steps[step].box
        if len(objs) < 2 or box is None:
            continue
        ious = [bx.iou(box, o["box"]) for o in objs]
        j = int(np.argmax(ious))
        if ious[j] < 0.5:
            continue
        words = s["expression"].split()
        for attr, vocab in BOUND_WORDS.items():
            named = next((w for w in words if w in vocab), None)
            if named is not None:
                chance = sum(o[attr] == named for o in objs) / len(objs)
                rows.setdefault(tr.family, {}).setdefault(attr, []).append((float(objs[j][attr] == named), chance))
    out: dict = {}
    for fam, by_attr in sorted(rows.items()):
        for attr, pairs in sorted(by_attr.items()):
            hit, chance = (np.array(x) for x in zip(*pairs))
            lo, hi = bootstrap_ci(hit - chance)
            out.setdefault(fam, {})[attr] = {"n": len(pairs), "honoured": float(hit.mean()),
                                             "chance": float(chance.mean()), "ci_diff": [lo, hi],
                                             "bound": bool(lo > 0)}
    return out


WORD_BINDING_COLUMNS = ("base", "family", "word", "n", "honoured %", "chance %", "diff pp [95 % CI]", "bound")


def word_binding_rows(reports: dict[str, dict]) -> list[dict]:
    """One row per (base, family, attribute word) of :func:`word_binding` (notebook 00 and the README)."""
    return [{"base": name, "family": fam, "word": attr, "n": v["n"], "honoured %": round(100 * v["honoured"], 1),
             "chance %": round(100 * v["chance"], 1),
             "diff pp [95 % CI]": f"{100 * (v['honoured'] - v['chance']):+.1f} "
                                  f"[{100 * v['ci_diff'][0]:+.1f}, {100 * v['ci_diff'][1]:+.1f}]",
             "bound": "yes" if v["bound"] else "no (at chance)"}
            for name, rep in reports.items() for fam, by in rep.get("word_binding", {}).items()
            for attr, v in by.items()]


def worst(trajs: Sequence[Trajectory], k: int = 8) -> list[int]:
    """Indices of the ``k`` samples whose IoU fell the most from step 0 to the last step."""
    d = [t.steps[-1].iou - t.steps[0].iou for t in trajs]
    return [int(i) for i in np.argsort(d, kind="stable")[:k]]


def single_shot(trajs: Sequence[Trajectory], samples: Sequence[dict]) -> dict:
    """Step-0 metrics overall and per family, with the selection anatomy (notebook 00, for each base)."""
    from ..core.metrics import by_family, step_metrics

    return {"overall": step_metrics(trajs, 0), "by_family": by_family(trajs, 0),
            "selection_anatomy": selection_anatomy(trajs, samples), "word_binding": word_binding(trajs, samples)}


OBJECT_COUNT_COLUMNS = ("base", "family", "objects", "n", "acc@0.5", "chance", "above_chance_pp")


def object_count_rows(reports: dict[str, dict]) -> list[dict]:
    """One row per (base, family, object count): n, Acc@0.5, chance and the margin above chance (pp)."""
    return [{"base": name, "family": fam, "objects": int(k), "n": v["n"], "acc@0.5": v["acc@0.5"],
             "chance": v["chance"], "above_chance_pp": 100 * (v["acc@0.5"] - v["chance"])}
            for name, rep in reports.items() for fam, a in rep["selection_anatomy"].items()
            for k, v in a["acc_by_objects"].items()]
