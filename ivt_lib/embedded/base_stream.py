"""The base grounder's pretraining stream: one freshly generated conversation per training step, and its batching.

Split out of :mod:`ivt_lib.embedded.train_base` (which owns the loop, the schedule and the checkpoints). A sample is a
function of the step's seeded ``random.Random`` and the stream's knobs (:class:`StreamSettings`, which the run's
``BaseTrainConfig`` satisfies), so a resumed run sees the same stream. This module imports nothing from train_base.
"""
from __future__ import annotations

import random
from typing import Protocol

import torch

from ..core import boxes as bx
from ..core.parsing import format_box
from ..core.prompts import caption_messages, refine_messages, step0_messages, with_answer
from ..core.render import draw_box
from ..corpora.records import scene_to_record
from ..corpora.scenes import FAMILIES, SceneConfig, generate_scene


class StreamSettings(Protocol):
    """The knobs of the stream that :func:`make_sample` reads (a ``BaseTrainConfig`` has them all)."""

    total_steps: int
    canvas: int
    curriculum_frac: float
    blend_frac: float
    contrast_frac: float
    refine_frac: float
    caption_frac: float
    paraphrase_frac: float

    @property
    def weights(self) -> list[float]: ...

    @property
    def axes(self) -> tuple[str, ...]: ...


ONE_OBJECT = SceneConfig(min_objects=1, max_objects=1, min_size=0.14, max_size=0.45)  # caption samples
EASY = SceneConfig(min_objects=1, max_objects=2, min_size=0.25, max_size=0.45)
# Instruction variety for the pure grounder (pretraining only). A pretrained instruct VLM has met many phrasings,
# numbers in a prompt that are not the answer, and multi-part instructions; a 5 M-parameter model trained on one
# template garbles its JSON on any other (measured: 2 % parse rate on the refine prompt without these). None of them
# draws a box, states a previous answer about this image, or asks for a correction.
GROUNDING_PARAPHRASES = (
    'Find "{e}" in the picture and give its bbox_2d in JSON.',
    'Where is "{e}"? Output the bbox_2d in JSON.',
    'Locate "{e}" in the image. The image is {w} by {h} pixels and coordinates run from 0 to 1000. '
    'Output its bbox_2d in JSON.',
    'Question {k} of {n}. Locate "{e}" in the image. Output its bbox_2d in JSON.',
    'Locate "{e}" in the image. Answer in the format {{"bbox_2d": [{a}, {b}, {c}, {d}]}} with your own numbers. '
    'Output its bbox_2d in JSON.',
)


def grounding_paraphrase(rng: random.Random, expression: str, w: int, h: int) -> list[dict]:
    """Step-0 messages in a random other phrasing (the format example's numbers are random, never the answer)."""
    a, b = sorted(rng.sample(range(0, 1001), 2))
    c, d = sorted(rng.sample(range(0, 1001), 2))
    n = rng.randint(2, 5)
    text = rng.choice(GROUNDING_PARAPHRASES).format(e=expression, w=w, h=h, k=rng.randint(1, n), n=n, a=a, b=c, c=b,
                                                    d=d)
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def previous_box(rng: random.Random, rec: dict):
    """A plausible previous answer for a generic refinement sample (never the model's own)."""
    w, h, gt = rec["width"], rec["height"], rec["bbox"]
    r = rng.random()
    others = [o["box"] for i, o in enumerate(rec["objects"]) if i != rec["target"]]
    if r < 0.2 and others:
        return bx.jitter(rng, rng.choice(others), w, h, 0.1)     # on a distractor
    if r < 0.3:
        x1, y1 = rng.uniform(0, w * 0.8), rng.uniform(0, h * 0.8)
        return (x1, y1, min(w, x1 + rng.uniform(8, w / 2)), min(h, y1 + rng.uniform(8, h / 2)))  # random
    return bx.jitter(rng, gt, w, h, rng.choice((0.05, 0.15, 0.3)))  # near the target


def make_sample(rng: random.Random, step: int, cfg: StreamSettings) -> tuple[list[dict], object]:
    """One training conversation (messages with the answer) and its image, drawn for training ``step``."""
    frac = step / cfg.total_steps
    if frac < cfg.curriculum_frac:
        p_easy = 1.0
    else:  # blend_frac=0 (a warm start needs no curriculum) ends the easy scenes at once
        p_easy = max(0.0, 1 - (frac - cfg.curriculum_frac) / cfg.blend_frac) if cfg.blend_frac else 0.0
    if rng.random() < p_easy:
        scene = generate_scene(rng, "refcocog", cfg.canvas, EASY)
    elif cfg.contrast_frac and rng.random() < cfg.contrast_frac:  # no draw when 0: the refine-mix stream is unchanged
        scene = generate_scene(rng, "contrast", cfg.canvas, contrast_axes=cfg.axes)
    else:
        w = cfg.weights  # equal weights draw exactly as before (rng.choice), so older runs' streams replay unchanged
        family = rng.choice(FAMILIES) if len(set(w)) == 1 else rng.choices(FAMILIES, weights=w)[0]
        scene = generate_scene(rng, family, cfg.canvas)
    rec = scene_to_record(scene, "stream")
    w, h = rec["width"], rec["height"]
    answer = format_box(bx.to_model_frame(rec["bbox"], w, h))
    p_ref = cfg.refine_frac * (1 - p_easy) + min(0.1, cfg.refine_frac) * p_easy
    if rng.random() < p_ref:
        prev = previous_box(rng, rec)
        T = rng.choice((1, 2, 2, 3, 4))
        msgs = refine_messages(rec["expression"], bx.to_model_frame(prev, w, h) if prev else None,
                               rng.randint(1, T), T)
        return with_answer(msgs, answer), draw_box(rec["image"], prev)
    if cfg.caption_frac and rng.random() < cfg.caption_frac:  # no draw when 0: older streams replay unchanged
        one = scene_to_record(generate_scene(rng, "refcocog", cfg.canvas, ONE_OBJECT), "stream")
        o = one["objects"][0]
        return with_answer(caption_messages(), f"the {o['colour']} {o['shape']}"), one["image"]
    if cfg.paraphrase_frac and rng.random() < cfg.paraphrase_frac:  # no draw when 0: the refine-mix stream is unchanged
        return with_answer(grounding_paraphrase(rng, rec["expression"], w, h), answer), rec["image"]
    return with_answer(step0_messages(rec["expression"]), answer), rec["image"]


def collate(processor, convs: list[list[dict]], images: list) -> dict:
    """Right-padded batch with labels on the assistant answer only (prompt, image and padding masked)."""
    tok = processor.tokenizer
    texts = [processor.apply_chat_template(c, tokenize=False) for c in convs]
    # restored afterwards: the saved base must not inherit right padding (trl's GRPOTrainer left-pads prompt ids but
    # pads mm_token_type_ids with the processor's side, and a mismatch breaks Qwen3-VL's get_rope_index)
    old, tok.padding_side = tok.padding_side, "right"
    try:
        enc = processor(text=texts, images=images, padding=True, return_tensors="pt")
    finally:
        tok.padding_side = old
    ids = enc["input_ids"]
    im_start = tok.convert_tokens_to_ids("<|im_start|>")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    header = len(tok("assistant\n", add_special_tokens=False)["input_ids"])
    pos = torch.arange(ids.shape[1]).expand_as(ids)
    last_start = torch.where(ids == im_start, pos, -1).max(1).values + 1 + header
    last_end = torch.where(ids == im_end, pos, -1).max(1).values
    keep = (pos >= last_start[:, None]) & (pos <= last_end[:, None])
    enc["labels"] = torch.where(keep, ids, -100)
    return enc
