"""Does a model use the zoom view's window? One refine step from the ground truth shifted a few px, with the window
as the loop shows it, blanked (black), or cut around a wrong box (the start moved ``WRONG_PX`` further), while the
prompt, the stated box and the full image stay the same; every answer is read in the shown window's frame.

Work on crop tools for VLMs finds that models lean on the full image and under-use the crop; if the answers do not
change when the window does, the window is not what the model reads. ``python -m ivt_lib.analysis.view_ablation
--model M [--model M2] --n 200 --out F`` (validation only).
"""
from __future__ import annotations

import random
from typing import Sequence

from PIL import Image

from ..core import boxes as bx
from ..core.feedback import ViewSettings, refine_view, zoom_image, zoom_window
from ..core.parsing import answer_box
from ..core.stats import proportion_ci
from .box_probe import shifted

ARMS = ("window as shown", "window blanked", "window around a wrong box")
SHIFT_PX, WRONG_PX = 4, 10
SAME_IOU = 0.9  # answers with at least this IoU count as the same answer


def _share(flags: Sequence[bool]) -> dict:
    n, k = len(flags), int(sum(flags))
    return {"share": k / n if n else float("nan"), "ci": list(proportion_ci(k, n)) if n else None, "n": n}


def ablation(policy, samples: Sequence[dict], view: ViewSettings = ViewSettings("zoom"), seed: int = 0,
             coord_format: str = "qwen3") -> dict:
    """Per arm: closer to the truth than the start, IoU ≥ 0.5 with it, and (beside the first arm) the answer changed."""
    rng = random.Random(f"view-ablation-{seed}")
    proc = getattr(policy, "processor", None)
    rows = []
    for s in samples:
        w, h, gt = s["width"], s["height"], tuple(s["bbox"])
        ux, uy = rng.choice(((1, 0), (-1, 0), (0, 1), (0, -1)))
        start = shifted(gt, ux * SHIFT_PX, uy * SHIFT_PX, w, h)
        wrong = shifted(start, ux * WRONG_PX, uy * WRONG_PX, w, h)
        v = refine_view(s["image"], s["expression"], start, 1, 2, view, coord_format, processor=proc)
        if v.window is None:
            raise ValueError("the view ablation needs the zoom view")
        blank = Image.new("RGB", v.images[1].size)
        moved = zoom_image(s["image"], start, zoom_window(wrong, w, h, view.margin), view.size)
        rows.append((s, gt, start, v, {ARMS[0]: v.images[1], ARMS[1]: blank, ARMS[2]: moved}))
    answers = {}
    for arm in ARMS:
        gens = policy.generate([r[3].messages for r in rows], [[r[3].images[0], r[4][arm]] for r in rows])
        answers[arm] = [answer_box(g.text, r[0]["width"], r[0]["height"], coord_format, r[3].frame, r[3].window)[0]
                        for g, r in zip(gens, rows)]
    out = {}
    for arm in ARMS:
        boxes = answers[arm]
        res = {"closer": _share([b is not None and bx.iou(b, r[1]) > bx.iou(r[2], r[1]) + 0.01 for b, r in zip(boxes, rows)]),
               "acc@0.5": _share([b is not None and bx.iou(b, r[1]) >= 0.5 for b, r in zip(boxes, rows)])}
        if arm != ARMS[0]:
            res["changed_vs_shown"] = _share([b is None or a is None or bx.iou(a, b) < SAME_IOU
                                              for a, b in zip(answers[ARMS[0]], boxes)])
        out[arm] = res
    return {"arms": out, "shift_px": SHIFT_PX, "wrong_px": WRONG_PX, "n": len(rows)}


def main(argv: list[str] | None = None) -> None:
    """CLI: the ablation of each ``--model`` on validation scenes, as JSON (``--out``, with provenance)."""
    import argparse
    import json

    import torch

    from ..core.io import write_result
    from ..core.models import load_policy
    from ..corpora.splits import load_split

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--n", type=int, default=200, help="validation scenes (the test split is never used)")
    ap.add_argument("--zoom-margin", type=float, default=ViewSettings().margin)
    ap.add_argument("--zoom-size", type=int, default=ViewSettings().size)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    samples, view = load_split("validation", limit=a.n), ViewSettings("zoom", a.zoom_margin, a.zoom_size)
    res = {m: ablation(load_policy(m, device="cpu", show_progress=False), samples, view) for m in a.model}
    if a.out:
        write_result(a.out, res, vars(a))
    else:
        print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
