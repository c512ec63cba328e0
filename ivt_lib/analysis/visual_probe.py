"""Linear probes of the image tokens: can an object's colour and shape be read off what the language model sees?

The word-binding probe (:func:`ivt_lib.analysis.probe.word_binding`) says *that* the base ignores colour words; this says
*where* the colour goes. For every object of a sample, the features of the vision tower at the object's centre are
taken at three points of the path into the language model:

* ``pixels``: the mean RGB of the merged cell (what any encoder could start from; the ceiling for colour);
* ``pre_merger``: the vision tower's last hidden states of the cell's patches, averaged;
* ``lm_token``: the merged image token the language model attends to (after the patch merger's MLP).

A 5-fold cross-validated logistic regression (scikit-learn, standardised features) predicts each attribute; the
majority class is the chance line. Usage: ``python -m ivt_lib.analysis.visual_probe --model data/base_model``.
"""
from __future__ import annotations

import argparse
import json
from typing import Sequence

import numpy as np
import torch

STAGES = ("pixels", "pre_merger", "lm_token")
ATTRIBUTES = ("colour", "shape")


@torch.no_grad()
def object_features(model, processor, samples: Sequence[dict], batch_size: int = 32) -> dict:
    """Per object: the features at each of :data:`STAGES` in the merged cell holding its centre, and its attributes."""
    merge = processor.image_processor.merge_size
    feats: dict[str, list] = {k: [] for k in STAGES}
    labels: dict[str, list] = {k: [] for k in ATTRIBUTES}
    for i in range(0, len(samples), batch_size):
        chunk = samples[i:i + batch_size]
        enc = processor.image_processor(images=[s["image"] for s in chunk], return_tensors="pt")
        grids = enc["image_grid_thw"]
        out = model.model.get_image_features(enc["pixel_values"].to(model.device, model.dtype), grids.to(model.device))
        tokens = out.pooler_output
        patches = torch.split(out.last_hidden_state, [int(g.prod()) for g in grids])
        for s, tok, pat, g in zip(chunk, tokens, patches, grids):
            gh, gw = int(g[1]) // merge, int(g[2]) // merge
            cw, ch = s["width"] / gw, s["height"] / gh
            img = np.asarray(s["image"].convert("RGB"), dtype=np.float32) / 255
            for o in s["objects"]:
                x1, y1, x2, y2 = o["box"]
                c, r = min(gw - 1, int((x1 + x2) / 2 // cw)), min(gh - 1, int((y1 + y2) / 2 // ch))
                k = r * gw + c  # merged tokens are row-major; each holds merge**2 consecutive patches
                feats["lm_token"].append(tok[k].float().cpu().numpy())
                feats["pre_merger"].append(pat[k * merge ** 2:(k + 1) * merge ** 2].mean(0).float().cpu().numpy())
                cell = img[int(r * ch):int((r + 1) * ch), int(c * cw):int((c + 1) * cw)]
                feats["pixels"].append(cell.reshape(-1, 3).mean(0))
                for a in ATTRIBUTES:
                    labels[a].append(o[a])
    return {"features": {k: np.stack(v) for k, v in feats.items()},
            "labels": {k: np.array(v) for k, v in labels.items()}}


def decodability(features: dict, folds: int = 5, seed: int = 0) -> dict:
    """Cross-validated accuracy of a linear probe per attribute and stage, beside the majority-class rate."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = {}
    for a, y in features["labels"].items():
        _, counts = np.unique(y, return_counts=True)
        if len(counts) < 2:
            raise ValueError(f"attribute {a!r} has a single value over {len(y)} objects: nothing to probe")
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        row = {"majority": float(counts.max() / counts.sum()), "n_objects": int(len(y))}
        for stage, X in features["features"].items():
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
            row[stage] = float(cross_val_score(clf, X, y, cv=cv).mean())
        out[a] = row
    return out


def probe_model(model_path: str, samples: Sequence[dict], device: str = "cpu") -> dict:
    """Load a model and probe it on ``samples``; ``{attribute: {stage: accuracy, majority, n_objects}}``."""
    from ..core.models import load_model, resolve_device

    missing = [s.get("id", i) for i, s in enumerate(samples) if "objects" not in s]
    if not samples or missing:
        raise ValueError(f"the probe needs samples that list their objects (synthetic scenes); "
                         f"{'no samples' if not samples else f'none listed in {missing[:3]}'}")
    model, processor = load_model(model_path, device=resolve_device(device))
    model.eval()
    return decodability(object_features(model, processor, samples))


COLUMNS = ["base", "attribute", "chance (majority)", *STAGES, "objects"]


def rows(reports: dict[str, dict]) -> list[dict]:
    """Table rows (one per base and attribute) of :func:`probe_model` reports keyed by base name."""
    return [{"base": b, "attribute": a, "chance (majority)": r["majority"], **{k: r[k] for k in STAGES},
             "objects": r["n_objects"]} for b, rep in reports.items() for a, r in rep.items()]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, help="model folder or hub id (repeatable)")
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--split", default="validation")
    a = p.parse_args(argv)
    from ..corpora.splits import load_split

    samples = load_split(a.split, limit=a.n)
    print(json.dumps({m: probe_model(m, samples) for m in a.model}, indent=1))


if __name__ == "__main__":
    main()
