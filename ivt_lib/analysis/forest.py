"""The forest plot of notebook 05's verdict, and a check that a figure's text fits and does not overlap.

Every configuration x answer rule as Δ Acc@0.5 against base single shot with its paired 95 % CI, grouped by
configuration; ORACLE rules (which pick with the ground truth) are hollow and labelled; each row names its
forward passes. It is drawn from ``evaluation.json`` alone, so the report can redraw it without rerunning anything.
"""
from __future__ import annotations

import io as _io
from pathlib import Path
from typing import Sequence

import matplotlib

if matplotlib.get_backend().lower() != "module://matplotlib_inline.backend_inline":
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..core.io import atomic_write_bytes  # noqa: E402

BASE = "base, single shot"


def _short(rule: str) -> str:
    return (rule.replace(" (label-free)", "").replace(" (uses GT)", "").replace(" fitted on validation", " on val")
            .replace("label-free, ", ""))


def forest_figure(rows: Sequence[dict], metric: str = "acc@0.5"):
    """Δ ``metric`` (pp) vs base single shot with 95 % CIs, one row per configuration x rule (the verdict's rows)."""
    rows = [r for r in rows if r["configuration"] != BASE]
    confs = list(dict.fromkeys(r["configuration"] for r in rows))
    fig, ax = plt.subplots(figsize=(9.5, 0.24 * (len(rows) + 2 * len(confs)) + 1.2))
    y, ticks, labels = 0.0, [], []
    for ci_, conf in enumerate(confs):
        ax.text(-0.01, y, conf, transform=ax.get_yaxis_transform(), ha="right", va="center", fontsize=8,
                fontweight="bold")
        y -= 1
        for r in (r for r in rows if r["configuration"] == conf):
            d, (lo, hi) = 100 * r[f"d_{metric}"], r[f"ci_{metric}"]
            oracle = "ORACLE" in r["rule"]
            colour = "grey" if oracle else ("tab:green" if lo > 0 else "tab:red" if hi < 0 else "tab:blue")
            ax.plot([100 * lo, 100 * hi], [y, y], color=colour, lw=1.5)
            ax.plot([d], [y], marker="o", ms=5, color=colour, mfc="white" if oracle else colour)
            ticks.append(y)
            labels.append(f"{_short(r['rule'])} · "
                          f"{r['passes']:.0f} pass{'es' if r['passes'] != 1 else ''}")
            y -= 1
        y -= 0.6
        if ci_ < len(confs) - 1:
            ax.axhline(y + 0.8, color="0.85", lw=0.6)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.tick_params(axis="y", pad=2)
    ax.set_ylim(y, 1)
    ax.set_xlabel(f"Δ {metric.replace('acc@', 'Acc@')} vs base single shot (pp), paired 95 % CI")
    ax.set_title("Every answer against base single shot (505 test samples)\ngreen: above, red: below, blue: no "
                 "difference; hollow grey: ORACLE (picks with the ground truth)", fontsize=8.5)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def text_problems(fig) -> list[str]:
    """Text that leaves the canvas, and tick labels of one axis that overlap each other (empty: the figure is fine)."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    canvas = fig.bbox
    out = []
    shown = {id(lab) for ax in fig.axes for axis, k in ((ax.xaxis, 0), (ax.yaxis, 1))
             for lab in axis.get_ticklabels()
             if min(axis.get_view_interval()) <= lab.get_position()[k] <= max(axis.get_view_interval())}
    ticks = {id(lab) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis) for lab in axis.get_ticklabels()}
    for t in fig.findobj(matplotlib.text.Text):
        if not t.get_visible() or not t.get_text().strip() or (id(t) in ticks and id(t) not in shown):
            continue
        b = t.get_window_extent(r)
        if b.x0 < canvas.x0 - 1 or b.y0 < canvas.y0 - 1 or b.x1 > canvas.x1 + 1 or b.y1 > canvas.y1 + 1:
            out.append(f"outside the canvas: {t.get_text()!r}")
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            k = 0 if axis is ax.xaxis else 1
            boxes = [(lab.get_text(), lab.get_window_extent(r)) for lab in axis.get_ticklabels()
                     if lab.get_visible() and lab.get_text().strip() and lo <= lab.get_position()[k] <= hi]
            for i, (ta, a) in enumerate(boxes):
                for tb, b in boxes[i + 1:]:
                    if a.overlaps(b) and (a.intersection(a, b).width > 1 and a.intersection(a, b).height > 1):
                        out.append(f"overlapping tick labels: {ta!r} and {tb!r}")
    return out


def save(ev: dict, path: Path, params: dict | None = None) -> list[Path]:
    """Draw the forest plot of ``ev`` (an ``evaluation.json``) to ``path`` with its provenance sidecar, as every figure
    has; write only what changed (an unchanged image keeps its bytes and its sidecar)."""
    return save_figure_if_changed(forest_figure(ev["deployable_vs_oracle"]), path, params)


def save_figure_if_changed(fig, path: Path, params: dict | None = None) -> list[Path]:
    """Save ``fig`` as a PNG with its provenance sidecar only when its bytes changed (so a regenerated report leaves an
    unchanged figure and its sidecar alone); the paths written."""
    from ..core.io import atomic_write_json, provenance, relative_paths

    path = Path(path)
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    data, side = buf.getvalue(), path.with_suffix(".provenance.json")
    if path.exists() and path.read_bytes() == data and side.exists():
        return []
    atomic_write_bytes(path, data)
    atomic_write_json(side, relative_paths(provenance(params)))
    return [path]
