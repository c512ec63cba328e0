"""Markdown tables of the box-perception probes (``box_probe.json``: ``{model: {view: result}}``), for notebooks 01
and 05 and the report: what a view lets the model read about its box, and what one refine step does with it."""
from __future__ import annotations

import statistics

QUESTIONS = (("drawn", "drawn vs none"), ("aligned_vs_2px", "aligned vs 2 px"), ("aligned_vs_4px", "aligned vs 4 px"),
             ("aligned_vs_8px", "aligned vs 8 px"))
TARGET_ACC, TARGET_RATIO = 0.85, 0.5  # aligned vs 4 px read at the language model's input; offset RMSE / guessing


def _place(rep: dict, key: str) -> dict | None:
    return rep.get(key)  # a place equal to an earlier one (lm_0 = merged) carries its results, marked same_as


def _acc(q: dict | None, k: str) -> str:
    r = (q or {}).get(k)
    return f"{100 * r['acc']:.0f} [{100 * r['ci'][0]:.0f}, {100 * r['ci'][1]:.0f}]" if r else "–"


def _offset(q: dict | None) -> str:
    o = (q or {}).get("offset")
    return f"{o['rmse']:.2f} / {o['guess_rmse']:.2f} ({o['rmse'] / o['guess_rmse']:.2f})" if o else "–"


def representation(res: dict, places: tuple[str, ...] = ("vision", "merged", "lm_2", "lm_4")) -> list[str]:
    """Probe accuracy % [Wilson 95 % CI] per model, view, place and probe (grid keeps the layout; pooled averages the
    tokens under the box), and the horizontal-offset regression's RMSE beside guessing (px, ratio)."""
    out = ["| model | view | place | probe | " + " | ".join(t for _, t in QUESTIONS) + " | offset RMSE / guess px (ratio) |",
           "|---|---|---|---|" + "---|" * len(QUESTIONS) + "---|"]
    for model, views in res.items():
        for view, r in views.items():
            rep = r.get("representation") or {}
            for place in places:
                for kind, key in (("grid", place), ("pooled", f"{place}/pooled")):
                    q = _place(rep, key)
                    if q is None:
                        continue
                    cells = [_acc(q, k) for k, _ in QUESTIONS]
                    out.append(f"| {model} | {view} | {place} | {kind} | " + " | ".join(cells) + f" | {_offset(q)} |")
    return out


def behaviour(res: dict) -> list[str]:
    """One refine step from each start: kept (IoU ≥ 0.9 with the start), ended closer to the truth, cosine of the move
    with the needed correction (% with Wilson 95 % CIs)."""
    out = ["| model | view | start | kept % [CI] | ended closer % [CI] | IoU ≥ 0.9 with the truth after % | "
           "cos(move, needed) | n |", "|---|---|---|---|---|---|---|---|"]
    for model, views in res.items():
        for view, r in views.items():
            for start, b in (r.get("behaviour") or {}).items():
                cos = b.get("cosine_move_vs_needed")
                out.append(f"| {model} | {view} | {start} | {100 * b['kept']:.0f} [{100 * b['kept_ci'][0]:.0f}, "
                           f"{100 * b['kept_ci'][1]:.0f}] | {100 * b['closer']:.0f} [{100 * b['closer_ci'][0]:.0f}, "
                           f"{100 * b['closer_ci'][1]:.0f}] | {100 * b['kept_at_iou_0.9_with_truth']:.0f} | "
                           f"{'–' if cos is None else f'{cos:+.2f}'} | {b['n']} |")
    return out


def targets(r: dict, place: str = "merged") -> dict:
    """The issue's probe targets for one view's result at ``place`` (the language model's input): aligned vs 4 px
    read at ≥ 85 % (grid and pooled) and the offset RMSE at most half of guessing."""
    rep = r.get("representation") or {}
    out = {}
    for kind, key in (("grid", place), ("pooled", f"{place}/pooled")):
        q = _place(rep, key) or {}
        a4, off = q.get("aligned_vs_4px"), q.get("offset")
        out[kind] = {"aligned_vs_4px": a4["acc"] if a4 else None,
                     "offset_ratio": off["rmse"] / off["guess_rmse"] if off else None,
                     "met": bool(a4 and off and a4["acc"] >= TARGET_ACC and off["rmse"] / off["guess_rmse"] <= TARGET_RATIO)}
    return out


def keep_signals(res: dict) -> dict:
    """``{"<model>, <view>": keep-signal result}`` of the entries that carry one (``box_probe --keep-signal``)."""
    return {f"{m}, {v}" if len(views) > 1 else m: r["keep_signal"]
            for m, views in res.items() for v, r in views.items() if r.get("keep_signal")}


def rep_value(r: dict, place: str, question: str) -> float | None:
    """A probe's accuracy at ``place`` (grid), or for ``"offset"`` its RMSE over guessing's; None when not probed."""
    x = ((r.get("representation") or {}).get(place) or {}).get(question)
    return None if x is None else (x["rmse"] / x["guess_rmse"] if question == "offset" else x["acc"])


def beh_value(r: dict, start: str, key: str) -> float | None:
    """One refine step's ``key`` (kept, closer, cosine_move_vs_needed, ...) from ``start``; None when absent."""
    return ((r.get("behaviour") or {}).get(start) or {}).get(key)


def _keep_value(r: dict, key: str) -> float | None:
    ks = r.get("keep_signal")
    return None if not ks or not ks.get("good_starts") else ks[key]


def _configuration(model: str) -> tuple[str, str]:
    """"SFT + IVT, overlay view, seed 1" -> ("SFT + IVT, overlay view", "1"); a name without a seed is its own."""
    head, sep, seed = model.rpartition(", seed ")
    return (head, seed) if sep else (model, "–")


def _mean_sd(xs: list, scale: float = 100.0, digits: int = 0) -> str:
    """Mean ± sd (sd with ≥ 2 values) of the values that exist, times ``scale``; – when none do."""
    xs = [scale * x for x in xs if x is not None]
    if not xs:
        return "–"
    return f"{statistics.fmean(xs):.{digits}f}" + (f" ± {statistics.stdev(xs):.{digits}f}" if len(xs) > 1 else "")


def trained_summary(res: dict, place: str = "lm_4") -> list[str]:
    """One line per configuration and view, mean ± sd over its seeds: aligned vs 4 px and the offset ratio read at
    ``place`` (grid probe), then one refine step's behaviour (kept from the truth, closer from 4 / 8 px and the
    cosine of the move from 8 px with the needed correction, own box kept) and the keep signal from right starts
    (greedy, sampled); % except the ratio and the cosine."""
    groups: dict[str, list[dict]] = {}
    seeds: dict[str, list[str]] = {}
    for model, views in res.items():
        head, seed = _configuration(model)
        for r in views.values():
            groups.setdefault(head, []).append(r)
            seeds.setdefault(head, []).append(seed)

    out = [f"| configuration | seeds | aligned vs 4 px at {place} | offset RMSE / guess | truth kept | closer from 4 px | "
           "closer from 8 px | cos(move, needed) from 8 px | own box kept | keep signal greedy | keep signal sampled |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for head, rs in groups.items():
        cells = [_mean_sd([rep_value(r, place, "aligned_vs_4px") for r in rs]),
                 _mean_sd([rep_value(r, place, "offset") for r in rs], 1, 2),
                 _mean_sd([beh_value(r, "gt", "kept") for r in rs]),
                 _mean_sd([beh_value(r, "gt shifted 4 px", "closer") for r in rs]),
                 _mean_sd([beh_value(r, "gt shifted 8 px", "closer") for r in rs]),
                 _mean_sd([beh_value(r, "gt shifted 8 px", "cosine_move_vs_needed") for r in rs], 1, 2),
                 _mean_sd([beh_value(r, "own box", "kept") for r in rs]),
                 _mean_sd([_keep_value(r, "greedy_keep") for r in rs]),
                 _mean_sd([_keep_value(r, "sampled_keep") for r in rs])]
        out.append(f"| {head} | {', '.join(seeds[head])} | " + " | ".join(cells) + " |")
    return out
