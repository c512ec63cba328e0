"""Can the loop see its own box? Box-perception probes, in what the model represents and in what it does.

**Representation.** Each validation scene is shown as the first refinement step shows it: the refine prompt stating
the ground-truth box (the same text for every variant, so only the drawing differs), and the image with no box, the
ground-truth box, or that box shifted by 2 / 4 / 8 px (and by -8 ... +8 px horizontally). Features are read at three
places of the path into the answer: the vision tower's patches (``vision``), the merged tokens the language model
receives (``merged``) and the language model's hidden states at the image positions, every layer (``lm_<k>``).
Linear probes that **keep the spatial layout** (every token of the grid, flattened in order) and, for comparison,
the tokens under the box averaged (``pooled``) answer three questions, cross-validated with folds grouped by scene:

* ``drawn``: ground-truth box drawn vs no box (chance 50 %);
* ``aligned_vs_<d>px``: the ground-truth box vs the same box shifted by d px in a random direction (chance 50 %);
* ``offset``: the horizontal shift in px, ridge regression; RMSE beside guessing the mean.

A linear probe is a lower bound on what the model can read; a probe at chance says the information is at least not
linearly there. **Behaviour**: one refine step from the ground truth, from it shifted by 2 / 4 / 8 px, from a
distractor's box and from the model's own step-0 box: how often the box is kept (IoU with the start >= 0.9), how
often it ends closer to the truth, and the cosine between the move and the needed correction.
"""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch

from ..core import boxes as bx
from ..core.loop import HFPolicy, run_loop
from ..core.prompts import step_messages
from ..core.render import draw_box, overlay_style
from ..core.stats import proportion_ci

SHIFTS = (2, 4, 8)
OFFSETS = (-8, -4, -2, 2, 4, 8)  # horizontal shifts for the regression (0 is the ground truth itself)
KEPT_IOU = 0.9
CLOSER_EPS = 0.01


def shifted(box: Sequence[float], dx: float, dy: float, width: int, height: int) -> bx.Box:
    """``box`` moved by (dx, dy) px, kept whole inside the image (a move that would leave it is cut short)."""
    x1, y1, x2, y2 = map(float, box)
    dx = min(max(dx, -x1), width - x2)
    dy = min(max(dy, -y1), height - y2)
    return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)


def variants(sample: dict, rng: random.Random) -> list[dict]:
    """The drawings of one scene: none, the ground truth, shifted by each of :data:`SHIFTS` in a random direction,
    and horizontally by each of :data:`OFFSETS` (``dx`` is the shift actually applied, after keeping it inside)."""
    w, h, gt = sample["width"], sample["height"], tuple(sample["bbox"])
    out = [{"variant": "none", "box": None, "dx": 0.0}, {"variant": "gt", "box": gt, "dx": 0.0}]
    for d in SHIFTS:
        ux, uy = rng.choice(((1, 0), (-1, 0), (0, 1), (0, -1)))
        b = shifted(gt, ux * d, uy * d, w, h)
        out.append({"variant": f"shift_{d}", "box": b, "dx": b[0] - gt[0]})
    for o in OFFSETS:
        b = shifted(gt, o, 0, w, h)
        out.append({"variant": f"dx_{o}", "box": b, "dx": b[0] - gt[0]})
    return out


def _cells_under(box: Sequence[float], width: int, height: int, gh: int, gw: int) -> list[int]:
    """Row-major indices of the merged-grid cells a box overlaps."""
    x1, y1, x2, y2 = box
    cw, ch = width / gw, height / gh
    cols = range(int(x1 // cw), min(gw, int(np.ceil(x2 / cw))))
    rows = range(int(y1 // ch), min(gh, int(np.ceil(y2 / ch))))
    return [r * gw + c for r in rows for c in cols] or [0]


@torch.no_grad()
def features(model, processor, samples: Sequence[dict], seed: int = 0, coord_format: str = "qwen3",
             overlay: str = "fill", batch_size: int = 16) -> dict:
    """Grid (``<place>``) and under-the-box (``<place>/pooled``) features of every scene x variant, with row labels."""
    rng, style = random.Random(f"box-probe-{seed}"), overlay_style(overlay)
    policy = HFPolicy(model, processor, batch_size=batch_size)
    merge, image_id = processor.image_processor.merge_size, model.config.image_token_id
    rows, items = [], []
    for i, s in enumerate(samples):
        gt_m = bx.to_model_frame(s["bbox"], s["width"], s["height"], coord_format)
        for v in variants(s, rng):
            img = draw_box(s["image"], v["box"], **style) if v["box"] is not None else s["image"]
            items.append((step_messages(s["expression"], gt_m, 1, 2), img, s))
            rows.append({"scene": i, "variant": v["variant"], "dx": v["dx"]})
    feats: dict[str, list] = {}
    for k in range(0, len(items), batch_size):
        chunk = items[k:k + batch_size]
        enc = policy.encode([m for m, _, _ in chunk], [im for _, im, _ in chunk])
        vis = model.model.get_image_features(enc["pixel_values"], enc["image_grid_thw"])
        patches = torch.split(vis.last_hidden_state, [int(g.prod()) for g in enc["image_grid_thw"]])
        hidden = model(**enc, output_hidden_states=True).hidden_states
        places = {"vision": patches, "merged": vis.pooler_output}
        for j, ((_, _, s), g) in enumerate(zip(chunk, enc["image_grid_thw"])):
            gh, gw = int(g[1]) // merge, int(g[2]) // merge
            under = _cells_under(s["bbox"], s["width"], s["height"], gh, gw)
            pos = (enc["input_ids"][j] == image_id).nonzero().squeeze(1)
            grids = {"vision": places["vision"][j].reshape(gh * gw, -1), "merged": places["merged"][j]}
            grids.update({f"lm_{layer}": h[j, pos] for layer, h in enumerate(hidden)})
            for name, grid in grids.items():
                feats.setdefault(name, []).append(grid.float().flatten().cpu().numpy())
                feats.setdefault(f"{name}/pooled", []).append(grid[under].float().mean(0).cpu().numpy())
    return {"features": {k: np.stack(v) for k, v in feats.items()}, "rows": rows}


def _classify(X: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
    pred = cross_val_predict(clf, X, y, groups=groups, cv=GroupKFold(folds))
    hit = int((pred == y).sum())
    lo, hi = proportion_ci(hit, len(y))
    return {"acc": hit / len(y), "ci": [lo, hi], "n": int(len(y))}


def _regress(X: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int) -> dict:
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    reg = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 4, 11)))
    pred = cross_val_predict(reg, X, y, groups=groups, cv=GroupKFold(folds))
    return {"rmse": float(np.sqrt(np.mean((pred - y) ** 2))), "guess_rmse": float(np.std(y)), "n": int(len(y))}


def probe(feats: dict, folds: int = 5, seed: int = 0) -> dict:
    """``{place: {question: result}}`` for every place (grid and pooled) and the three questions."""
    rows = feats["rows"]
    variant = np.array([r["variant"] for r in rows])
    scene = np.array([r["scene"] for r in rows])
    dx = np.array([r["dx"] for r in rows], dtype=float)
    offset = np.isin(variant, ["gt", *(f"dx_{o}" for o in OFFSETS)])
    out = {}
    for place, X in feats["features"].items():
        res = {}
        m = np.isin(variant, ["none", "gt"])
        res["drawn"] = _classify(X[m], (variant[m] == "gt").astype(int), scene[m], folds)
        for d in SHIFTS:
            m = np.isin(variant, ["gt", f"shift_{d}"])
            res[f"aligned_vs_{d}px"] = _classify(X[m], (variant[m] == "gt").astype(int), scene[m], folds)
        res["offset"] = _regress(X[offset], dx[offset], scene[offset], folds)
        out[place] = res
    return out


def _cos(a: Sequence[float], b: Sequence[float]) -> float | None:
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else None


def _step_stats(trajs, gts) -> dict:
    kept, closer, cos = [], [], []
    for t, gt in zip(trajs, gts):
        start, after = t.steps[0].box, t.steps[1].box
        kept.append(after is not None and bx.iou(after, start) >= KEPT_IOU)
        closer.append(after is not None and bx.iou(after, gt) > bx.iou(start, gt) + CLOSER_EPS)
        c = _cos(np.subtract(after, start), np.subtract(gt, start)) if after is not None else None
        if c is not None:
            cos.append(c)
    n = len(trajs)
    return {"kept": float(np.mean(kept)), "kept_ci": list(proportion_ci(sum(kept), n)),
            "closer": float(np.mean(closer)), "closer_ci": list(proportion_ci(sum(closer), n)),
            "kept_at_iou_0.9_with_truth": float(np.mean([t.steps[1].iou >= KEPT_IOU for t in trajs])),
            "cosine_move_vs_needed": float(np.mean(cos)) if cos else None, "n_cosine": len(cos), "n": n}


def behaviour(policy, samples: Sequence[dict], own_boxes: Sequence, seed: int = 0,
              coord_format: str = "qwen3") -> dict:
    """One refine step from each start (ground truth, shifted 2 / 4 / 8 px, a distractor, the model's own box)."""
    rng = random.Random(f"box-behaviour-{seed}")
    gts = [tuple(s["bbox"]) for s in samples]
    starts = {"gt": (list(range(len(samples))), gts)}
    for d in SHIFTS:
        starts[f"gt shifted {d} px"] = (list(range(len(samples))), [
            shifted(g, *(d * u for u in rng.choice(((1, 0), (-1, 0), (0, 1), (0, -1)))), s["width"], s["height"])
            for g, s in zip(gts, samples)])
    multi = [i for i, s in enumerate(samples) if len(s.get("objects") or []) > 1]
    starts["distractor"] = (multi, [tuple(rng.choice([o["box"] for k, o in enumerate(samples[i]["objects"])
                                                      if k != samples[i]["target"]])) for i in multi])
    own = [i for i, b in enumerate(own_boxes) if b is not None]
    starts["own box"] = (own, [tuple(own_boxes[i]) for i in own])
    out = {}
    for name, (idx, boxes) in starts.items():
        if not idx:
            continue
        sub = [samples[i] for i in idx]
        trajs = run_loop(policy, sub, T=1, coord_format=coord_format, start_boxes=boxes, show_progress=False)
        out[name] = _step_stats(trajs, [gts[i] for i in idx])
    return out


def probe_model(model_path: str, samples: Sequence[dict], seed: int = 0, coord_format: str = "qwen3",
                folds: int = 5, device: str = "cpu") -> dict:
    """Both probes of one model on ``samples`` (validation): ``{"representation": ..., "behaviour": ...}``."""
    from ..core.models import load_model, resolve_device

    model, processor = load_model(model_path, device=resolve_device(device))
    model.eval()
    rep = probe(features(model, processor, samples, seed, coord_format), folds, seed)
    policy = HFPolicy(model, processor)
    own = [t.steps[0].box for t in run_loop(policy, samples, T=0, coord_format=coord_format, show_progress=False)]
    return {"representation": rep, "behaviour": behaviour(policy, samples, own, seed, coord_format),
            "n_scenes": len(samples)}


def main(argv: list[str] | None = None) -> None:
    """``python -m ivt_lib.analysis.box_probe --model data/base_model --n 200 --out box_probe.json``."""
    import argparse
    import json

    from ..core.io import atomic_write_json, provenance
    from ..corpora.splits import load_split

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="model folder or hub id (repeatable)")
    ap.add_argument("--n", type=int, default=200, help="validation scenes (the test split is never probed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the JSON here (with a provenance sidecar) instead of printing it")
    a = ap.parse_args(argv)
    samples = load_split("validation", limit=a.n)
    res = {m: probe_model(m, samples, a.seed) for m in a.model}
    if a.out:
        atomic_write_json(a.out, res)
        atomic_write_json(a.out.replace(".json", ".provenance.json"), provenance(vars(a)))
    else:
        print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
