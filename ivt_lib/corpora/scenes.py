"""Synthetic referring-expression scenes: the embedded stand-in for RefCOCOg / Ref-Adv-S / Ref-L4.

Each scene is a small canvas of coloured shapes plus one referring expression that picks **exactly one** object
(checked by construction: :func:`matches` re-resolves the expression against the scene). Three families mirror the
paper's three sources:

* ``refcocog``-like: 1-3 objects, short attribute expressions ("the blue circle");
* ``refadv``-like: 2-4 objects whose distractors share the target's colour and shape, so only position decides
  ("the leftmost blue circle");
* ``refl4``-like: 3-5 objects, small or large, long descriptions with size, colour, shape and a 3x3 region
  ("the small yellow triangle in the top left of the image").

A fourth generator, ``contrast``, is used only in the base grounder's pretraining stream (never in a split): the
target has a twin that differs in exactly one attribute (colour, shape, size or position), so that the expression's
words must be bound to the object they describe.

Red is kept out of the palette because the refinement overlay is red (red shapes would look like the drawn box).
"""
from __future__ import annotations

import random
from functools import partial
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

FAMILIES = ("refcocog", "refadv", "refl4")
COLOURS: dict[str, tuple[int, int, int]] = {
    "blue": (40, 90, 255), "green": (40, 190, 60), "yellow": (245, 215, 30),
    "white": (235, 235, 235), "purple": (150, 60, 210),
}
SHAPES = ("circle", "square", "triangle")
BACKGROUND = (28, 28, 32)
REGIONS_Y = ("top", "middle", "bottom")
REGIONS_X = ("left", "center", "right")
SUPERLATIVES = {"leftmost": (0, min), "rightmost": (0, max), "topmost": (1, min), "bottommost": (1, max)}


@dataclass(frozen=True)
class SceneConfig:
    """Geometry of a family, as fractions of the canvas side so that a larger canvas keeps the same task."""

    canvas: int = 128              # px; a multiple of 32 (Qwen-VL patch 16 x merge 2)
    min_objects: int = 1
    max_objects: int = 3
    min_size: float = 0.19         # object side / canvas side
    max_size: float = 0.375


FAMILY_CONFIGS: dict[str, SceneConfig] = {
    "refcocog": SceneConfig(min_objects=1, max_objects=3, min_size=0.19, max_size=0.375),
    "refadv": SceneConfig(min_objects=2, max_objects=4, min_size=0.16, max_size=0.28),
    "refl4": SceneConfig(min_objects=3, max_objects=5, min_size=0.14, max_size=0.31),
}


@dataclass
class Obj:
    """One drawn object: attributes and its xyxy pixel box."""

    shape: str
    colour: str
    box: tuple[float, float, float, float]
    size: str = ""  # "small"/"large" in refl4 scenes

    @property
    def centre(self) -> tuple[float, float]:
        """Box centre (x, y)."""
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)


@dataclass
class Scene:
    """A rendered scene with its expression, target index and family."""

    image: Image.Image
    objects: list[Obj]
    target: int
    expression: str
    family: str
    spec: dict = field(default_factory=dict)  # the structured expression, used by :func:`matches`

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """Ground-truth xyxy pixel box of the target."""
        return self.objects[self.target].box


def _place(rng: random.Random, n: int, canvas: int, sizes: list[int], gap: int = 3) -> list[tuple[int, int, int, int]] | None:
    boxes: list[tuple[int, int, int, int]] = []
    for s in sizes[:n]:
        for _ in range(60):
            x, y = rng.randint(1, canvas - s - 1), rng.randint(1, canvas - s - 1)
            b = (x, y, x + s, y + s)
            if all(b[2] + gap <= o[0] or o[2] + gap <= b[0] or b[3] + gap <= o[1] or o[3] + gap <= b[1] for o in boxes):
                boxes.append(b)
                break
        else:
            return None
    return boxes


def _draw(objects: list[Obj], canvas: int) -> Image.Image:
    img = Image.new("RGB", (canvas, canvas), BACKGROUND)
    d = ImageDraw.Draw(img)
    for o in objects:
        x1, y1, x2, y2 = (int(v) for v in o.box)
        rgb = COLOURS[o.colour]
        if o.shape == "circle":
            d.ellipse([x1, y1, x2 - 1, y2 - 1], fill=rgb)
        elif o.shape == "square":
            d.rectangle([x1, y1, x2 - 1, y2 - 1], fill=rgb)
        else:
            d.polygon([((x1 + x2 - 1) / 2, y1), (x2 - 1, y2 - 1), (x1, y2 - 1)], fill=rgb)
    return img


def region_of(o: Obj, canvas: int) -> str:
    """3x3 region phrase of an object's centre ("top left", "middle center" -> "center", ...)."""
    cx, cy = o.centre
    ry, rx = REGIONS_Y[min(2, int(3 * cy / canvas))], REGIONS_X[min(2, int(3 * cx / canvas))]
    return "center" if (ry, rx) == ("middle", "center") else f"{ry} {rx}"


def matches(scene: Scene) -> list[int]:
    """Resolve the scene's structured expression against its objects; a valid scene returns ``[target]``."""
    s, objs, c = scene.spec, scene.objects, scene.image.width
    cand = [i for i, o in enumerate(objs)
            if (s.get("shape") in (None, o.shape)) and (s.get("colour") in (None, o.colour))
            and (s.get("size") in (None, o.size)) and (s.get("region") in (None, region_of(o, c)))]
    if "superlative" in s and cand:
        axis, pick = SUPERLATIVES[s["superlative"]]
        vals = [objs[i].centre[axis] for i in cand]
        best = pick(vals)
        cand = [i for i, v in zip(cand, vals) if abs(v - best) < 1e-9]
    return cand


def _noun(shape: str | None) -> str:
    return shape if shape is not None else "shape"


def _layout(rng: random.Random, cfg: SceneConfig) -> list[tuple[int, int, int, int]] | None:
    """Object count, sizes and non-overlapping positions (None when placement fails)."""
    n = rng.randint(cfg.min_objects, cfg.max_objects)
    c = cfg.canvas
    sizes = [rng.randint(round(cfg.min_size * c), round(cfg.max_size * c)) for _ in range(n)]
    return _place(rng, n, c, sizes)


def _gen_refcocog(rng: random.Random, cfg: SceneConfig) -> Scene | None:
    boxes = _layout(rng, cfg)
    if boxes is None:
        return None
    n, c = len(boxes), cfg.canvas
    objs = [Obj(rng.choice(SHAPES), rng.choice(list(COLOURS)), tuple(map(float, b))) for b in boxes]
    t = rng.randrange(n)
    options = []
    for spec in ({"shape": objs[t].shape}, {"colour": objs[t].colour},
                 {"shape": objs[t].shape, "colour": objs[t].colour}):
        if sum(1 for o in objs if all(getattr(o, k) == v for k, v in spec.items())) == 1:
            options.append(spec)
    if not options:
        return None
    spec = rng.choice(options)
    expr = f"the {spec.get('colour', '')} {_noun(spec.get('shape'))}".replace("  ", " ")
    if n == 1 and rng.random() < 0.3:
        spec, expr = {}, "the only shape"
    return Scene(_draw(objs, c), objs, t, expr, "refcocog", spec)


def _gen_refadv(rng: random.Random, cfg: SceneConfig) -> Scene | None:
    boxes = _layout(rng, cfg)
    if boxes is None:
        return None
    n, c = len(boxes), cfg.canvas
    shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
    n_twins = rng.randint(2, n)  # the target and >=1 distractor share colour and shape: only position decides
    objs = [Obj(shape, colour, tuple(map(float, b))) for b in boxes[:n_twins]]
    for b in boxes[n_twins:]:
        objs.append(Obj(rng.choice(SHAPES), rng.choice(list(COLOURS)), tuple(map(float, b))))
    sup = rng.choice(list(SUPERLATIVES))
    spec = {"shape": shape, "colour": colour, "superlative": sup}
    if rng.random() < 0.35:  # the noun alone is sometimes shared by more objects: harder
        spec.pop("colour")
    axis, pick = SUPERLATIVES[sup]
    cand = [i for i, o in enumerate(objs) if all(getattr(o, k) == v for k, v in spec.items() if k != "superlative")]
    vals = sorted(objs[i].centre[axis] for i in cand)
    margin = (vals[1] - vals[0]) if pick is min else (vals[-1] - vals[-2])
    if margin < 0.08 * c:  # keep the extreme unambiguous to a reader
        return None
    t = (min if pick is min else max)(cand, key=lambda i: objs[i].centre[axis])
    expr = f"the {sup} {spec.get('colour', '')} {shape}".replace("  ", " ")
    return Scene(_draw(objs, c), objs, t, expr, "refadv", spec)


def _gen_refl4(rng: random.Random, cfg: SceneConfig) -> Scene | None:
    n = rng.randint(cfg.min_objects, cfg.max_objects)
    c = cfg.canvas
    lo, hi = round(cfg.min_size * c), round(cfg.max_size * c)
    mid = (lo + hi) // 2
    size_words = [rng.choice(("small", "large")) for _ in range(n)]
    sizes = [rng.randint(lo, mid - 3) if w == "small" else rng.randint(mid + 3, hi) for w in size_words]
    boxes = _place(rng, n, c, sizes)
    if boxes is None:
        return None
    # few colours and shapes so that every attribute is needed
    shapes, colours = rng.sample(SHAPES, 2), rng.sample(list(COLOURS), 2)
    objs = [Obj(rng.choice(shapes), rng.choice(colours), tuple(map(float, b)), w) for b, w in zip(boxes, size_words)]
    t = rng.randrange(n)
    o = objs[t]
    spec = {"size": o.size, "colour": o.colour, "shape": o.shape, "region": region_of(o, c)}
    where = "in the center of the image" if spec["region"] == "center" else f"in the {spec['region']} of the image"
    expr = f"the {o.size} {o.colour} {o.shape} {where}"
    return Scene(_draw(objs, c), objs, t, expr, "refl4", spec)


CONTRAST_AXES = ("colour", "shape", "size", "position")
CONTRAST_CONFIG = SceneConfig(min_objects=2, max_objects=4, min_size=0.14, max_size=0.375)


def _gen_contrast(rng: random.Random, cfg: SceneConfig, axes: tuple[str, ...] = CONTRAST_AXES) -> Scene | None:
    """Attribute contrast (pretraining only): a twin differs from the target in one attribute; the words decide."""
    n, c = rng.randint(max(2, cfg.min_objects), max(2, cfg.max_objects)), cfg.canvas
    axis = rng.choice(axes)
    lo, hi = round(cfg.min_size * c), round(cfg.max_size * c)
    mid = (lo + hi) // 2
    words = [rng.choice(("small", "large")) for _ in range(n)]
    words[1] = ("large" if words[0] == "small" else "small") if axis == "size" else words[0]
    boxes = _place(rng, n, c, [rng.randint(lo, mid - 3) if w == "small" else rng.randint(mid + 3, hi) for w in words])
    if boxes is None:
        return None
    t = Obj(rng.choice(SHAPES), rng.choice(list(COLOURS)), tuple(map(float, boxes[0])), words[0])
    twin = Obj(t.shape, t.colour, tuple(map(float, boxes[1])), words[1])
    if axis == "colour":
        twin.colour = rng.choice([k for k in COLOURS if k != t.colour])
    elif axis == "shape":
        twin.shape = rng.choice([k for k in SHAPES if k != t.shape])
    objs = [t, twin] + [Obj(rng.choice(SHAPES), rng.choice(list(COLOURS)), tuple(map(float, b)), w)
                        for b, w in zip(boxes[2:], words[2:])]
    order = list(range(n))
    rng.shuffle(order)  # the target is not always drawn first
    objs = [objs[i] for i in order]
    ti = order.index(0)
    spec: dict = {"colour": t.colour, "shape": t.shape}
    if axis == "size":
        spec["size"] = t.size
        expr = f"the {t.size} {t.colour} {t.shape}"
    elif axis == "position":
        ax = 0 if abs(t.centre[0] - twin.centre[0]) >= abs(t.centre[1] - twin.centre[1]) else 1
        sup = {(0, True): "leftmost", (0, False): "rightmost", (1, True): "topmost", (1, False): "bottommost"}[
            (ax, t.centre[ax] < twin.centre[ax])]
        if abs(t.centre[ax] - twin.centre[ax]) < 0.08 * c:
            return None
        spec["superlative"] = sup
        expr = f"the {sup} {t.colour} {t.shape}"
    else:
        expr = f"the {t.colour} {t.shape}"
    return Scene(_draw(objs, c), objs, ti, expr, "contrast", spec)


_GENERATORS = {"refcocog": _gen_refcocog, "refadv": _gen_refadv, "refl4": _gen_refl4, "contrast": _gen_contrast}


def generate_scene(rng: random.Random, family: str, canvas: int = 128, config: SceneConfig | None = None,
                   contrast_axes: tuple[str, ...] = CONTRAST_AXES) -> Scene:
    """Draw one valid scene of ``family`` (rejection-sampled until the expression picks exactly one object).

    ``contrast_axes`` (contrast family only) is the pool the twin's differing attribute is drawn from; repeat an axis
    to weight it.
    """
    if family not in _GENERATORS:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES} (or 'contrast' for pretraining)")
    cfg = config or FAMILY_CONFIGS.get(family, CONTRAST_CONFIG)
    if cfg.canvas != canvas:
        cfg = SceneConfig(canvas, cfg.min_objects, cfg.max_objects, cfg.min_size, cfg.max_size)
    if canvas % 32:
        raise ValueError(f"canvas={canvas} must be a multiple of 32 (Qwen-VL patch 16 x merge 2)")
    bad = [a for a in contrast_axes if a not in CONTRAST_AXES]
    if bad or not contrast_axes:
        raise ValueError(f"contrast_axes={contrast_axes!r}: expected a non-empty pool of {CONTRAST_AXES}")
    gen = partial(_gen_contrast, axes=contrast_axes) if family == "contrast" else _GENERATORS[family]
    for _ in range(1000):
        scene = gen(rng, cfg)
        if scene is not None and matches(scene) == [scene.target]:
            return scene
    raise RuntimeError(f"could not generate a valid {family} scene in 1000 tries")
