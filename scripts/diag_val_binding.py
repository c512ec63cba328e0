"""Diagnostic (validation only): single shot per family, word binding and refcocog-like object-count anatomy.

Usage: ``python scripts/diag_val_binding.py --model data/base_model --model runs/pilot_frozen`` (notebook 00 reports
the same on the test split for the shipped bases; this is for candidate bases, which must not be chosen on test).
"""
import argparse
import json

from ivt_lib.corpora import splits
from ivt_lib.core import loop, models
from ivt_lib.analysis import probe


def val_binding(model: str, n: int | None = None) -> dict:
    """Step-0 Acc@0.5 overall and per family, word-binding rows and object-count rows of ``model`` on validation."""
    val = splits.load_split("validation", limit=n)
    trajs = loop.run_loop(models.load_policy(model, device="cpu"), val, T=0, show_progress=False)
    rep = probe.single_shot(trajs, val)
    return {"model": model, "n": len(val), "acc@0.5": rep["overall"]["acc@0.5"],
            "by_family": {f: v["acc@0.5"] for f, v in rep["by_family"].items()},
            "word_binding": probe.word_binding_rows({model: rep}), "objects": probe.object_count_rows({model: rep})}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--n", type=int, default=0, help="validation samples (0 = all)")
    a = ap.parse_args()
    print(json.dumps([val_binding(m, a.n or None) for m in a.model], indent=1, default=str))
