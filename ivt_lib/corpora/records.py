"""Scenes as the project's samples: the record schema and the seeded, family-balanced split stream.

A record is what every stage reads (:mod:`ivt_lib.corpora.splits` saves the splits as a ``DatasetDict``): id, image,
expression, xyxy pixel bbox, family, source, size, and the scene's objects (the probes of notebooks 00-01 use them).
"""
from __future__ import annotations

import random
from typing import Iterable

from .scenes import FAMILIES, Scene, generate_scene


def scene_to_record(scene: Scene, sample_id: str) -> dict:
    """The project's sample schema: id, image, expression, xyxy pixel bbox, family, source, objects."""
    return {
        "id": sample_id, "image": scene.image, "expression": scene.expression,
        "bbox": [float(v) for v in scene.bbox], "family": scene.family, "source": "synthetic",
        "width": scene.image.width, "height": scene.image.height,
        "objects": [{"shape": o.shape, "colour": o.colour, "size": o.size, "box": [float(v) for v in o.box]}
                    for o in scene.objects],
        "target": scene.target,
    }


def iter_split(split: str, n: int, seed: int, canvas: int = 128) -> Iterable[dict]:
    """Yield ``n`` records of a split, families balanced round-robin; sample i depends only on (seed, split, i)."""
    for i in range(n):
        family = FAMILIES[i % len(FAMILIES)]
        rng = random.Random(f"{seed}-{split}-{i}")
        yield scene_to_record(generate_scene(rng, family, canvas), f"{split}-{i:05d}")
