"""How large are the corrections the SFT traces teach? (a data diagnostic, no model involved)

Each refine row of a trace dataset (``training.traces.to_dataset``: step > 0) states the previous box in its prompt
and answers the teacher's box, both in the frame the view uses (the image's for the overlay, the window's for zoom).
The correction's size is the distance between the two boxes' centres over the stated box's longer side, so it reads
the same in either frame: on the default scenes (boxes of 22-40 px, median 29) a 4 px miss is about 0.14 box sides
and an 8 px miss about 0.28. The histogram shows which corrections SFT ever demonstrates.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..core.parsing import parse_box

# bin edges in box sides: kept exactly, a nudge, about 1-4 px, about 4-8 px, 8 px to half a box, up to a box, beyond
EDGES = (0.0, 1e-9, 0.05, 0.14, 0.28, 0.5, 1.0, math.inf)


def _text(message: dict) -> str:
    return " ".join(c.get("text") or "" for c in message["content"] if c.get("type") == "text")


def correction_sizes(rows: Iterable[dict]) -> np.ndarray:
    """Centre shift / stated box's longer side of every refine row (``{"step", "messages"}``) whose stated box and
    answer both parse; rows that do not parse are left out (their count is ``len(rows) - len(result)``)."""
    out = []
    for r in rows:
        if int(r["step"]) == 0:
            continue
        stated, answer = parse_box(_text(r["messages"][0])).box, parse_box(_text(r["messages"][-1])).box
        if stated is None or answer is None:
            continue
        side = max(stated[2] - stated[0], stated[3] - stated[1])
        if side <= 0:
            continue
        dx = (answer[0] + answer[2] - stated[0] - stated[2]) / 2
        dy = (answer[1] + answer[3] - stated[1] - stated[3]) / 2
        out.append(math.hypot(dx, dy) / side)
    return np.asarray(out, dtype=float)


def summary(sizes: np.ndarray, n_rows: int) -> dict:
    """Shares per bin of :data:`EDGES` (``"[a, b)"``), the median, and the rows counted / left out."""
    if sizes.size == 0:
        raise ValueError("no refine row with a stated box and an answer box: is this a trace dataset?")
    counts, _ = np.histogram(sizes, bins=np.asarray(EDGES))
    return {"bins": {f"[{a:g}, {b:g})": c / sizes.size for a, b, c in zip(EDGES, EDGES[1:], counts)},
            "median": float(np.median(sizes)), "n": int(sizes.size), "unparsed_or_step0": n_rows - int(sizes.size)}


def of_dataset(path: str) -> dict:
    """:func:`summary` of a trace dataset saved with ``save_to_disk`` (images are not decoded)."""
    from datasets import load_from_disk

    d = load_from_disk(path).select_columns(["step", "messages"])
    return summary(correction_sizes(d), len(d))


def table(res: dict) -> list[str]:
    """Markdown: one row per trace set, the share of refine rows in each size bin (%)."""
    bins = list(next(iter(res.values()))["bins"])
    lines = ["| traces | refine rows | median | " + " | ".join(bins) + " |", "|---|---|---|" + "---|" * len(bins)]
    for name, r in res.items():
        lines.append(f"| {name} | {r['n']} | {r['median']:.2f} | "
                     + " | ".join(f"{100 * r['bins'][b]:.0f}" for b in bins) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    """``python -m ivt_lib.analysis.trace_corrections --traces NAME=DIR [...] --out F``: ``{name: summary}``."""
    import argparse
    import json

    from ..core.io import write_result

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", nargs="+", required=True, help="NAME=DIR of a saved trace dataset (repeatable)")
    ap.add_argument("--out", help="write the JSON here (with a provenance sidecar) instead of printing it")
    a = ap.parse_args(argv)
    pairs = [t.split("=", 1) for t in a.traces]
    if any(len(p) != 2 for p in pairs):
        ap.error("--traces takes NAME=DIR")
    res = {name: of_dataset(path) for name, path in pairs}
    if a.out:
        write_result(a.out, res, {"traces": dict(pairs)})
    print("\n".join(table(res)))


if __name__ == "__main__":
    main()
