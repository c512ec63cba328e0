"""Prompts and chat messages for step 0 (grounding) and refinement steps (look at the drawn box, correct it).

Messages use the HF chat format with an ``{"type": "image"}`` placeholder; images travel separately (one per
message list, in order), which is what processors and trl's VLM trainers expect.

The expression sits between double quotes, escaped as a JSON string (``"`` -> ``\\"``, ``\\`` -> ``\\\\``, a newline
-> ``\\n``), so an expression such as ``a "}`` cannot close the quotes early; the expressions of the shipped data
contain none of these, so their prompts are unchanged. An empty expression, or one longer than
:data:`MAX_EXPRESSION_CHARS`, is refused (:func:`expression_problem`), never sent.
"""
from __future__ import annotations

import json

from .parsing import format_box

# Longest referring expression accepted, in characters: 17 times the shipped splits' longest (59), some 170 words. A
# 5,000-character one (1,331 tokens of the tiny model) used to come back as "ddd..." without a word.
MAX_EXPRESSION_CHARS = 1000

STEP0_TEMPLATE = 'Locate "{expression}" in the image. Output its bbox_2d in JSON.'
# Step-conditioned, as the paper's teacher traces are: step t of T moves along the path from the first box to the truth.
REFINE_TEMPLATE = ('Locate "{expression}" in the image. Refinement step {step} of {T}: the red box is the previous '
                   'answer {previous}. Check it and output the corrected bbox_2d in JSON.')

# The zoom view (ours, ``ivt_lib.core.feedback``): a second image enlarges the window around the previous box, and
# both the stated box and the answer are in that window's frame (the loop maps the answer back to the image).
ZOOM_TEMPLATE = ('Locate "{expression}" in the image. Refinement step {step} of {T}: the second image enlarges the '
                 'region around the previous answer, drawn there as the red box {previous}. Check it and output the '
                 'corrected bbox_2d in JSON, in the second image\'s coordinates.')

# Object naming (base-grounder pretraining only, ``train_base --caption-frac``): a one-object image, no box drawn or
# stated, answered with the object's colour and shape: the attribute words a pretrained VLM's captions supervise.
CAPTION_TEXT = "Name the object in the image. Answer with its colour and shape."


def expression_problem(expression) -> str | None:
    """Why ``expression`` cannot be asked (not text, empty, longer than :data:`MAX_EXPRESSION_CHARS`), else None."""
    if not isinstance(expression, str):
        return f"expression is a {type(expression).__name__}, not text"
    if not expression.strip():
        return "expression is empty" if not expression else "expression is only whitespace"
    if len(expression) > MAX_EXPRESSION_CHARS:
        return (f"expression is {len(expression):,} characters long, over the limit of {MAX_EXPRESSION_CHARS:,} "
                "(ivt_lib.core.prompts.MAX_EXPRESSION_CHARS)")
    return None


def quote_expression(expression: str) -> str:
    """``expression`` escaped to sit between the template's double quotes (a JSON string body); refuses a bad one."""
    problem = expression_problem(expression)
    if problem:
        raise ValueError(f"{problem}: {str(expression)[:60]!r}")
    return json.dumps(expression, ensure_ascii=False)[1:-1]


def step0_messages(expression: str) -> list[dict]:
    """Messages for step 0: one image, the referring expression."""
    text = STEP0_TEMPLATE.format(expression=quote_expression(expression))
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def refine_messages(expression: str, previous_box_model: tuple[int, int, int, int] | None, step: int = 1,
                    T: int = 1) -> list[dict]:
    """Messages for refinement step ``step`` of ``T``: the image with the previous box drawn, and that box as text."""
    prev = format_box(previous_box_model) if previous_box_model is not None else "none (it could not be parsed)"
    text = REFINE_TEMPLATE.format(expression=quote_expression(expression), previous=prev, step=step, T=T)
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def zoom_messages(expression: str, previous_box_window: tuple[int, int, int, int] | None, step: int = 1,
                  T: int = 1) -> list[dict]:
    """Messages of a zoom-view refine step: the full image, the enlarged window, the previous box in its frame."""
    prev = format_box(previous_box_window) if previous_box_window is not None else "none (it could not be parsed)"
    text = ZOOM_TEMPLATE.format(expression=quote_expression(expression), previous=prev, step=step, T=T)
    return [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": text}]}]


def caption_messages() -> list[dict]:
    """Messages asking for the colour and shape of the (single) object in the image."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": CAPTION_TEXT}]}]


def with_answer(messages: list[dict], answer: str) -> list[dict]:
    """Append the assistant turn (training conversations)."""
    return messages + [{"role": "assistant", "content": [{"type": "text", "text": answer}]}]


# How a refine step asks: "refine" is the IVT prompt (the box drawn and stated); "grounding" re-asks the step-0
# question on the image with the box drawn, a format any grounder knows (a drop-driver arm of notebook 01).
PROMPT_FORMATS = ("refine", "grounding")


def step_messages(expression: str, previous_box_model: tuple[int, int, int, int] | None, step: int, T: int,
                  prompt_format: str = "refine") -> list[dict]:
    """Messages for refinement step ``step`` of ``T`` in the given ``prompt_format``."""
    if prompt_format == "refine":
        return refine_messages(expression, previous_box_model, step, T)
    if prompt_format == "grounding":
        return step0_messages(expression)
    raise ValueError(f"unknown prompt_format {prompt_format!r}; expected one of {PROMPT_FORMATS}")
