"""Can the loop see its own box? Box-perception probes, in what the model represents and in what it does.

**Representation.** Each validation scene is shown as the first refinement step shows it, in a feedback view
(:mod:`ivt_lib.core.feedback`): the refine prompt stating the ground-truth box (the same text for every variant, so
only the drawing differs), and the image with no box, the ground-truth box, or that box shifted by 2 / 4 / 8 px (and
by -8 ... +8 px horizontally). In the ``zoom`` view the prompt also shows the window around the **ground truth** (the
same window for every variant of a scene) with the variant's box drawn in it, and the features are the window's.
Features are read at the vision tower's patches (``vision``), the merged tokens the language model receives
(``merged``) and the language model's hidden states at the image positions (``lm_<k>``; ``lm_0`` is ``merged``).
Linear probes on the whole grid, on the tokens under the ground truth averaged (``pooled``) and optionally on the
best single cell (``cell``), regularized and cross-validated by scene (:mod:`.box_probe_fit`), answer:

* ``drawn``: ground-truth box drawn vs no box (chance 50 %);
* ``aligned_vs_<d>px``: the ground-truth box vs the same box shifted by d px in a random direction (chance 50 %);
* ``offset``: the horizontal shift in px (ridge); RMSE beside guessing's and their ratio.

A linear probe is a lower bound on what the model can read. **Behaviour**: one refine step (in the view) from the
ground truth, from it shifted by 2 / 4 / 8 px, from a distractor's box and from the model's own step-0 box: how often
the box is kept (IoU with the start >= 0.9), how often it ends closer to the truth, and the cosine between the move
and the needed correction.
"""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch

from ..core import boxes as bx
from ..core.feedback import ViewSettings, to_window, zoom_image, zoom_window
from ..core.loop import HFPolicy, run_loop
from ..core.prompts import step_messages, zoom_messages
from ..core.render import draw_box, overlay_style
from ..core.stats import proportion_ci
from . import box_probe_fit as fit
from .keep_signal import keep_signal_policy

SHIFTS = (2, 4, 8)
OFFSETS = (-8, -4, -2, 2, 4, 8)  # horizontal shifts for the regression (0 is the ground truth itself)
KEPT_IOU = 0.9
OVERLAY = ViewSettings()  # the default view (the paper's)
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


def parse_view(spec: str) -> ViewSettings:
    """``overlay`` or ``zoom[:margin[:size]]`` (e.g. ``zoom:0.5:128``) -> :class:`ViewSettings`."""
    name, *knobs = spec.split(":")
    if name == "overlay" and not knobs:
        return ViewSettings("overlay")
    if name != "zoom" or len(knobs) > 2:
        raise ValueError(f"unknown view {spec!r}; expected overlay or zoom[:margin[:size]]")
    default = ViewSettings("zoom")
    return ViewSettings("zoom", float(knobs[0]) if knobs else default.margin,
                        int(knobs[1]) if len(knobs) > 1 else default.size)


def view_key(view: ViewSettings) -> str:
    """The view's key in the output: ``overlay`` or ``zoom m<margin> s<size>``."""
    return "overlay" if view.feedback == "overlay" else f"zoom m{view.margin:g} s{view.size}"


def scene_inputs(s: dict, vs: Sequence[dict], view: ViewSettings, style: dict, processor=None,
                 coord_format: str = "qwen3", window_at: str = "gt") -> tuple[list, list, list, list]:
    """Per variant of one scene: its messages, its images, the box whose cells are pooled and the size of the image
    read. The prompt states the ground truth (in the zoom view: in the ground truth's window) for every variant.
    In the zoom view the image read is the window (the second image), around the ground truth for every variant
    (``window_at="gt"``: only the drawing differs) or, as the loop does, around the variant's own box
    (``window_at="box"``: the box always sits at the window's centre and the scene moves under it)."""
    w, h, gt = s["width"], s["height"], tuple(s["bbox"])
    overlays = [draw_box(s["image"], v["box"], **style) if v["box"] is not None else s["image"] for v in vs]
    if view.feedback == "overlay":
        msgs = step_messages(s["expression"], bx.to_model_frame(gt, w, h, coord_format), 1, 2)
        return [msgs] * len(vs), [[im] for im in overlays], [gt] * len(vs), [(w, h)] * len(vs)
    if window_at not in ("gt", "box"):
        raise ValueError(f"window_at must be 'gt' or 'box', not {window_at!r}")
    window = zoom_window(gt, w, h, view.margin)
    side = window[2] - window[0]
    frame = bx.model_frames(processor, [(view.size, view.size)], coord_format)[0]
    msgs = zoom_messages(s["expression"], bx.to_model_frame(to_window(gt, window), side, side, coord_format, frame),
                         1, 2)
    images, boxes = [], []
    for im, v in zip(overlays, vs):
        at = v["box"] if window_at == "box" and v["box"] is not None else gt
        win = zoom_window(at, w, h, view.margin) if window_at == "box" else window
        images.append([im if v["box"] is not None else im.convert("RGB"),
                       zoom_image(s["image"], v["box"], win, view.size, style)])
        boxes.append(to_window(at, win))
    return [msgs] * len(vs), images, boxes, [(side, side)] * len(vs)


@torch.no_grad()
def features(model, processor, samples: Sequence[dict], seed: int = 0, coord_format: str = "qwen3",
             overlay: str = "fill", batch_size: int = 16, view: ViewSettings = OVERLAY,
             places: Sequence[str] | None = None, window_at: str = "gt") -> dict:
    """Grid (``<place>``) and under-the-box (``<place>/pooled``) features of every scene x variant, the row labels,
    and each place's number of cells (``cells``). ``places``: a subset of vision, merged, lm_<k> (default: all).
    The overlay view reads the (only) image; the zoom view reads the window, the prompt's second image
    (``window_at``: see :func:`scene_inputs`)."""
    rng, style = random.Random(f"box-probe-{seed}"), overlay_style(overlay)
    policy = HFPolicy(model, processor, batch_size=batch_size)
    merge, image_id = processor.image_processor.merge_size, model.config.image_token_id
    rows, items = [], []
    for i, s in enumerate(samples):
        vs = variants(s, rng)
        items += list(zip(*scene_inputs(s, vs, view, style, processor, coord_format, window_at)))
        rows += [{"scene": i, "variant": v["variant"], "dx": v["dx"]} for v in vs]
    layers = [k for k in range(model.config.text_config.num_hidden_layers + 1) if places is None or f"lm_{k}" in places]
    feats: dict[str, list] = {}
    cells: dict[str, int] = {}
    for k in range(0, len(items), batch_size):
        chunk = items[k:k + batch_size]
        enc = policy.encode([c[0] for c in chunk], [c[1] for c in chunk])
        thw = enc["image_grid_thw"]
        vis = model.model.get_image_features(enc["pixel_values"], thw)
        patches = torch.split(vis.last_hidden_state, [int(g.prod()) for g in thw])
        hidden = model(**enc, output_hidden_states=True).hidden_states if layers else ()
        for j, (_, ims, box, (w, h)) in enumerate(chunk):
            r = sum(len(c[1]) for c in chunk[:j]) + len(ims) - 1  # the read image: the prompt's last
            gh, gw = int(thw[r][1]) // merge, int(thw[r][2]) // merge
            under = _cells_under(box, w, h, gh, gw)
            pos = (enc["input_ids"][j] == image_id).nonzero().squeeze(1)[-gh * gw:]
            grids = {"vision": patches[r].reshape(gh * gw, -1), "merged": vis.pooler_output[r]}
            grids.update({f"lm_{layer}": hidden[layer][j, pos] for layer in layers})
            for name, grid in grids.items():
                if places is not None and name not in places:
                    continue
                cells[name] = gh * gw
                feats.setdefault(name, []).append(grid.float().flatten().cpu().numpy())
                feats.setdefault(f"{name}/pooled", []).append(grid[under].float().mean(0).cpu().numpy())
    return {"features": {k: np.stack(v) for k, v in feats.items()}, "rows": rows, "cells": cells}


def probe(feats: dict, folds: int = 5, seed: int = 0, cells: bool = False) -> dict:
    """``{place: {question: result}}`` for every place and the three questions (:func:`.box_probe_fit.probe_all`)."""
    return fit.probe_all(feats, SHIFTS, OFFSETS, folds, seed, cells)


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


def behaviour(policy, samples: Sequence[dict], own_boxes: Sequence, seed: int = 0, coord_format: str = "qwen3",
              view: ViewSettings = OVERLAY) -> dict:
    """One refine step (in ``view``) from each start (ground truth, shifted 2 / 4 / 8 px, a distractor, the model's
    own box)."""
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
        trajs = run_loop(policy, sub, T=1, coord_format=coord_format, start_boxes=boxes, show_progress=False,
                         feedback=view)
        out[name] = _step_stats(trajs, [gts[i] for i in idx])
    return out


def probe_model(model_path: str, samples: Sequence[dict], seed: int = 0, coord_format: str = "qwen3",
                folds: int = 5, device: str = "cpu", view: ViewSettings = OVERLAY,
                places: Sequence[str] | None = None, with_behaviour: bool = True, cells: bool = False,
                window_at: str = "gt", with_keep_signal: bool = False) -> dict:
    """Both probes of one model on ``samples`` (validation) in ``view``: ``{"representation": ..., "behaviour": ...}``
    (``behaviour`` None without ``with_behaviour``); ``with_keep_signal`` adds ``"keep_signal"`` on the same policy."""
    from ..core.models import load_model, resolve_device

    model, processor = load_model(model_path, device=resolve_device(device))
    model.eval()
    feats = features(model, processor, samples, seed, coord_format, view=view, places=places, window_at=window_at)
    rep = probe(feats, folds, seed, cells)
    beh, policy, extra = None, HFPolicy(model, processor), {}
    if with_behaviour:
        own = [t.steps[0].box for t in run_loop(policy, samples, T=0, coord_format=coord_format, show_progress=False)]
        beh = behaviour(policy, samples, own, seed, coord_format, view)
    if with_keep_signal:
        extra["keep_signal"] = {"model": str(model_path), **keep_signal_policy(policy, samples, feedback=view)}
    return {"representation": rep, "behaviour": beh, "n_scenes": len(samples), "view": view_key(view),
            "window_at": window_at if view.feedback == "zoom" else None, **extra}


def main(argv: list[str] | None = None) -> None:
    """``python -m ivt_lib.analysis.box_probe --model M --view overlay --out F``: ``{model: {view: result}}``."""
    import argparse
    import json
    import time
    from pathlib import Path

    from ..core.io import atomic_write_json, provenance
    from ..corpora.splits import load_split

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="model folder or hub id (repeatable)")
    ap.add_argument("--label", action="append", help="the results' name of each --model, in order (default: its path)")
    ap.add_argument("--n", type=int, default=200, help="validation scenes (the test split is never probed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--view", action="append", help="overlay or zoom[:margin[:size]], e.g. zoom:0.5:128 (repeatable)")
    ap.add_argument("--feedback", choices=("overlay", "zoom"), help="one view (with --zoom-margin/--zoom-size)")
    ap.add_argument("--zoom-margin", type=float, default=ViewSettings().margin)
    ap.add_argument("--zoom-size", type=int, default=ViewSettings().size)
    ap.add_argument("--places", nargs="+", help="restrict to these places (vision, merged, lm_<k>)")
    ap.add_argument("--cells", action="store_true", help="also the best single cell (chosen inside the CV)")
    ap.add_argument("--window-at", choices=("gt", "box"), default="gt",
                    help="zoom view: the window around the ground truth for all variants, or around each drawn box")
    ap.add_argument("--no-behaviour", action="store_true", help="the representation probes only")
    ap.add_argument("--keep-signal", action="store_true", help="also the keep-signal diagnostic (analysis.keep_signal)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", help="write the JSON here (with a provenance sidecar) instead of printing it")
    ap.add_argument("--add", action="store_true", help="add to (or replace within) the models of an existing --out")
    a = ap.parse_args(argv)
    if a.label and len(a.label) != len(a.model):
        ap.error(f"--label: {len(a.label)} labels for {len(a.model)} models; give one per --model or none")
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(a.threads)
    threadpool_limits(a.threads)  # numpy / scikit-learn's BLAS too
    views = [parse_view(v) for v in a.view or []]
    if a.feedback:
        views.append(ViewSettings(a.feedback, a.zoom_margin, a.zoom_size))
    samples = load_split("validation", limit=a.n)
    res = {}
    for m, label in zip(a.model, a.label or a.model):
        for v in views or [ViewSettings()]:
            t0 = time.time()
            r = probe_model(m, samples, a.seed, view=v, places=a.places, with_behaviour=not a.no_behaviour,
                            cells=a.cells, window_at=a.window_at, with_keep_signal=a.keep_signal)
            key = view_key(v) + (" window@box" if v.feedback == "zoom" and a.window_at == "box" else "")
            res.setdefault(label, {})[key] = {**r, "model": m, "seconds": round(time.time() - t0, 1)}
    if a.out:
        out, side = Path(a.out), Path(a.out.replace(".json", ".provenance.json"))
        before = json.loads(out.read_text()) if a.add and out.exists() else {}
        earlier = json.loads(side.read_text()) if a.add and side.exists() else None
        atomic_write_json(out, {**before, **{m: {**before.get(m, {}), **v} for m, v in res.items()}})
        atomic_write_json(side, {**provenance(vars(a)), **({"earlier": earlier} if earlier else {})})
    else:
        print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
