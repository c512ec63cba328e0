"""Diagnostic: on fresh attribute-contrast scenes (a twin differs from the target in one attribute only, which the
expression names), where does a model's single-shot box land: on the target, on another object, or on none?

Usage: ``python scripts/diag_contrast_binding.py --model runs/pilot5 --model runs/probe_colour_final --axis colour``.
The scenes come from a seed no training stream or split uses (12345); with two models, their Acc@0.5 difference is
paired (bootstrap CI). A model that binds the word lands on the target far more often than on the twin.
"""
import argparse
import json
import random

from ivt_lib.core import loop, metrics, models, stats
from ivt_lib.analysis import probe
from ivt_lib.corpora.records import scene_to_record
from ivt_lib.corpora.scenes import generate_scene


def contrast_scenes(n: int, axis: str, seed: int = 12345) -> list[dict]:
    """``n`` contrast-scene records whose twin differs from the target in ``axis`` only."""
    rng = random.Random(seed)
    return [scene_to_record(generate_scene(rng, "contrast", 128, contrast_axes=(axis,)), f"contrast-{i}")
            for i in range(n)]


def contrast_binding(model_paths: list[str], n: int = 300, axis: str = "colour") -> dict:
    """Per model: Acc@0.5 and where the boxes land; with two or more, the second vs the first, paired."""
    recs = contrast_scenes(n, axis)
    other = "shape" if axis == "colour" else "colour"  # the other word the expression names
    blind = [1 / sum(o[other] == r["objects"][r["target"]][other] for o in r["objects"]) for r in recs]
    out = {"n": n, "axis": axis, "models": {},
           "chance_random_object": sum(1 / len(r["objects"]) for r in recs) / n,  # a box on a random object
           "chance_axis_blind": sum(blind) / n}  # reads the other word perfectly, blind to this axis
    ious = {}
    for m in model_paths:
        trajs = loop.run_loop(models.load_policy(m, device="cpu"), recs, T=0, show_progress=False)
        picks = [probe.picked(t.steps[0].box, r) for t, r in zip(trajs, recs)]
        ious[m] = [t.steps[0].iou for t in trajs]
        out["models"][m] = {"acc@0.5": metrics.step_metrics(trajs, 0)["acc@0.5"],
                            "landed": {k: picks.count(k) for k in probe.PICKS}}
    if len(model_paths) >= 2:
        c = stats.compare(ious[model_paths[0]], ious[model_paths[1]])
        out["second_vs_first"] = {"d_acc@0.5": c["d_acc@0.5"], "ci_acc@0.5": c["ci_acc@0.5"]}
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--axis", default="colour", choices=("colour", "shape"))  # the chance levels assume these two
    a = ap.parse_args()
    print(json.dumps(contrast_binding(a.model, a.n, a.axis), indent=1))
