"""The refinement loop: step 0 (grounding) then T refine steps, batched over samples, rendering between steps.

Each step, every active sample's previous box is drawn on its original image (``render.draw_box``) and the model
is asked to correct it. The loop records, per sample and step, the text, the parsed box, its IoU with the ground
truth and the parse status: a :class:`Trajectory`. Generation goes through a :class:`Policy`, so the loop is
tested with a fake policy and runs with any HF VLM through :class:`HFPolicy`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
from PIL import Image
from tqdm.auto import tqdm

from . import boxes as bx
from . import progress
from .parsing import answer_box
from .feedback import ViewSettings, refine_view
from .prompts import PROMPT_FORMATS, step0_messages
from .render import overlay_style
from .sample_check import check_samples
from .sampling import SeededSampler, derive_seed
from .trajectory import StepRecord, Trajectory, load_trajectories, save_trajectories  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)


@dataclass
class Generation:
    """One generated answer and the mean log-probability of its tokens (a label-free confidence)."""

    text: str
    mean_logprob: float = float("nan")
    token_ids: list[int] | None = None  # the generated tokens up to and including EOS (for GRPO scoring)
    min_logprob: float = float("nan")   # the least likely generated token (a feature of the learned verifier)


class PromptTooLong(ValueError):
    """A prompt that, with the answer budget, passes the model's positions; ``index``: its row in the call."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index


class Policy(Protocol):
    """Anything that turns (messages, image) pairs into generations, batched; a pair's image may be a list (the
    zoom view's two images, in the order of the message's image placeholders)."""

    def generate(self, messages: list[list[dict]], images: list[Image.Image | list[Image.Image]],
                 seeds: Sequence[int] | None = None) -> list[Generation]: ...


def flat_images(images: Sequence) -> list[Image.Image]:
    """One flat list of images in placeholder order, from per-prompt images or lists of them (what processors take)."""
    return [im for x in images for im in (x if isinstance(x, (list, tuple)) else [x])]


VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")


def vision_token_ids(processor) -> list[int]:
    """Ids of the vision placeholder tokens, which a completion must never contain: scoring such a completion with
    its image makes the processor count one image token too many ("Image features and image tokens do not match")."""
    tok = getattr(processor, "tokenizer", processor)
    ids = [tok.convert_tokens_to_ids(t) for t in VISION_TOKENS]
    return sorted({i for i in ids if isinstance(i, int) and i != tok.unk_token_id})


class HFPolicy:
    """Batched ``generate`` for any HF VLM + processor (left padding, greedy unless ``temperature > 0``).

    With ``seeds`` (one per pair), sampling is seeded per sequence (:class:`~ivt_lib.core.sampling.SeededSampler`): a
    sequence's tokens depend on its own seed, not on the rest of the batch (GRPO rollouts across processes).
    """

    def __init__(self, model, processor, max_new_tokens: int = 32, batch_size: int = 32, temperature: float = 0.0,
                 top_p: float = 1.0, show_progress: bool = False):
        self.model, self.processor = model, processor
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.temperature, self.top_p, self.show_progress = temperature, top_p, show_progress
        self.suppress = vision_token_ids(processor)  # never generated (greedy or sampled)
        text_cfg = getattr(getattr(model, "config", None), "text_config", None) or getattr(model, "config", None)
        self.max_positions = getattr(text_cfg, "max_position_embeddings", None)

    def check_length(self, enc: dict, first: int) -> None:
        """Refuse prompts that, with ``max_new_tokens``, pass the model's positions (its answer would be garbage)."""
        if not isinstance(self.max_positions, int) or "attention_mask" not in enc:
            return
        lengths = enc["attention_mask"].sum(1).tolist()
        over = [(first + i, n) for i, n in enumerate(lengths) if n + self.max_new_tokens > self.max_positions]
        if over:
            i, n = over[0]
            raise PromptTooLong(f"prompt #{i} is {n} tokens: with max_new_tokens={self.max_new_tokens} it passes "
                                f"the model's {self.max_positions} positions ({len(over)} such prompt(s) in this "
                                "batch); shorten its expression", i)

    def encode(self, messages: list[list[dict]], images: list[Image.Image], add_generation_prompt: bool = True,
               padding_side: str = "left") -> dict:
        """Chat-template + process a batch into model inputs."""
        texts = [self.processor.apply_chat_template(m, tokenize=False, add_generation_prompt=add_generation_prompt)
                 for m in messages]
        tok = self.processor.tokenizer
        old, tok.padding_side = tok.padding_side, padding_side
        try:
            enc = self.processor(text=texts, images=flat_images(images), padding=True, return_tensors="pt")
        finally:
            tok.padding_side = old
        return enc.to(self.model.device)

    @torch.no_grad()
    def generate(self, messages: list[list[dict]], images: list[Image.Image],
                 seeds: Sequence[int] | None = None) -> list[Generation]:
        """Generate for all pairs, ``batch_size`` at a time (``seeds``: per-sequence seeded sampling)."""
        if seeds is not None and (len(seeds) != len(messages) or self.temperature <= 0):
            raise ValueError(f"seeds: need one per prompt ({len(seeds)} for {len(messages)}) and temperature > 0 "
                             f"(got {self.temperature})")
        out: list[Generation] = []
        starts = range(0, len(messages), self.batch_size)
        for s in tqdm(starts, desc="generate", leave=False, disable=not (self.show_progress and progress.enabled())):
            enc = self.encode(messages[s:s + self.batch_size], images[s:s + self.batch_size])
            self.check_length(enc, s)
            sample = self.temperature > 0
            if seeds is not None:
                from transformers import LogitsProcessorList  # here, so metrics/evaluation/explorer stay light
  # greedy over a seeded sampler's one-hot scores = per-sequence sampling
                sampler = SeededSampler(seeds[s:s + self.batch_size], enc["input_ids"].shape[1], self.temperature,
                                        self.top_p)
                gen = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                          temperature=None, top_p=None, top_k=None, suppress_tokens=self.suppress,
                                          logits_processor=LogitsProcessorList([sampler]), return_dict_in_generate=True)
                scores = sampler.token_logps()
            else:
                gen = self.model.generate(
                    **enc, max_new_tokens=self.max_new_tokens, do_sample=sample,
                    temperature=self.temperature if sample else None, top_p=self.top_p if sample else None,
                    top_k=None, suppress_tokens=self.suppress, output_scores=True, return_dict_in_generate=True)
                scores = self.model.compute_transition_scores(gen.sequences, gen.scores, normalize_logits=True)
            new = gen.sequences[:, enc["input_ids"].shape[1]:]
            pad = self.model.generation_config.pad_token_id
            eos = self.model.generation_config.eos_token_id
            eos_ids = [e for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None]
            valid = new != pad
            if eos_ids and pad not in eos_ids:  # the eos token itself counts once; padding after it does not
                is_eos = torch.isin(new, torch.tensor(eos_ids, device=new.device)).int()
                valid &= torch.cumsum(is_eos, 1) - is_eos == 0
            scores = scores.to(valid.device)
            mean_lp = (scores.masked_fill(~valid, 0).sum(1) / valid.sum(1).clamp(min=1)).tolist()
            min_lp = scores.masked_fill(~valid, float("inf")).min(1).values.tolist()
            texts = self.processor.batch_decode(new, skip_special_tokens=True)
            ids = [row[m].tolist() for row, m in zip(new, valid)]
            out.extend(Generation(t, lp, i, mn if mn != float("inf") else float("nan"))
                       for t, lp, i, mn in zip(texts, mean_lp, ids, min_lp))
        return out


def _step_record(gen: Generation, gt, w: int, h: int, coord_format: str,
                 resized: tuple[int, int] | None = None, window=None) -> StepRecord:
    box, reason = answer_box(gen.text, w, h, coord_format, resized, window)
    return StepRecord(gen.text, box, bx.iou(box, gt), box is not None, reason, gen.mean_logprob,
                      min_logprob=gen.min_logprob, window=window)


def run_loop(policy: Policy, samples: Sequence[dict], T: int = 2, coord_format: str = "qwen3",
             stop_when_still: float | None = None, start_boxes: Sequence | None = None,
             draw_previous: bool = True, show_progress: bool = True, record_inputs: bool = False,
             sample_seeds: Sequence[int] | None = None, overlay: str = "fill",
             prompt_format: str = "refine", feedback: ViewSettings | str = "overlay") -> list[Trajectory]:
    """Run step 0 + ``T`` refine steps for every sample; return one :class:`Trajectory` per sample.

    Every sample is checked before anything is generated (:mod:`ivt_lib.core.sample_check`): one with a missing,
    undecodable or extremely narrow image, a ground-truth box outside its image, or an empty or over-long expression
    stops the call with an :class:`~ivt_lib.core.sample_check.InvalidSamplesError` that names each such sample.

    Args:
        samples: records with ``image``, ``expression``, ``bbox`` (pixel xyxy), ``id``, ``family``.
        stop_when_still: label-free stopping: a sample whose box moved by less than this IoU distance
            (1 - IoU(prev, new)) is frozen; its later steps repeat its box and are marked ``stopped``.
        start_boxes: skip step 0 and use these pixel boxes (or ``None`` = nothing drawn) as step 0 (probes).
        draw_previous: False refines without drawing the previous box (the presence probe's "no box" arm).
        record_inputs: keep each generated step's messages, image and token ids in ``Trajectory.rollout`` (GRPO).
        overlay: how the previous box is drawn (``render.OVERLAY_STYLES``: the paper's ``fill``, ``light_fill``,
            ``outline``).
        prompt_format: ``refine`` (the IVT prompt) or ``grounding`` (re-ask the step-0 question on the drawn image).
        feedback: how a refine step shows the previous box (:mod:`ivt_lib.core.feedback`): the paper's ``overlay``,
            or ``zoom`` (ours: a second, enlarged image of the window around it; the answer in that window's frame).
        sample_seeds: one seed per sample: step ``t`` of sample ``i`` samples with ``derive_seed(seed_i, t)``, so a
            trajectory does not depend on how samples are batched or split across processes (policy must sample).
    """
    if T < 0:
        raise ValueError(f"T must be >= 0, got {T}")
    if len(samples) == 0:
        raise ValueError("run_loop got an empty list of samples")
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"unknown prompt_format {prompt_format!r}; expected one of {PROMPT_FORMATS}")
    style = overlay_style(overlay)
    view = feedback if isinstance(feedback, ViewSettings) else ViewSettings(feedback)
    if view.feedback != "overlay" and prompt_format != "refine":
        raise ValueError(f"the {view.feedback} view asks with the refine prompt only, not {prompt_format!r}")
    if sample_seeds is not None and len(sample_seeds) != len(samples):
        raise ValueError(f"sample_seeds: {len(sample_seeds)} seeds for {len(samples)} samples")

    def gen(msgs, imgs, idx, t):  # the seed argument only when asked for, so any Policy works without it
        try:
            if sample_seeds is None:
                return policy.generate(msgs, imgs)
            return policy.generate(msgs, imgs, seeds=[derive_seed(sample_seeds[i], t) for i in idx])
        except PromptTooLong as exc:  # name the sample, not the row of the batch
            i = list(idx)[exc.index]
            raise PromptTooLong(f"sample {str(samples[i]['id'])!r} (#{i}), step {t}: {exc}", i) from exc

    images = check_samples(samples)  # RGB copies; names every bad sample before any batch runs
    trajs = [Trajectory(str(s["id"]), str(s.get("family", "")), tuple(s["bbox"]), s["image"].width,
                        s["image"].height) for s in samples]
    # qwen25 answers in pixels of the image *as the policy's processor resized it*
    frames = bx.model_frames(getattr(policy, "processor", None), [(tr.width, tr.height) for tr in trajs], coord_format)
    if start_boxes is None:
        msgs0 = [step0_messages(s["expression"]) for s in samples]
        gens = gen(msgs0, images, range(len(samples)), 0)
        for tr, g, m, im, fr in zip(trajs, gens, msgs0, images, frames):
            tr.steps.append(_step_record(g, tr.gt, tr.width, tr.height, coord_format, fr))
            if record_inputs:
                tr.rollout.append({"step": 0, "messages": m, "image": im, "token_ids": g.token_ids})
    else:
        for tr, b in zip(trajs, start_boxes):
            b = bx.sanitize(b, tr.width, tr.height) if b is not None else None
            tr.steps.append(StepRecord("<given>", b, bx.iou(b, tr.gt), b is not None, None if b else "given_none"))
    active = list(range(len(samples)))
    for t in tqdm(range(1, T + 1), desc="refine steps", leave=False,
                  disable=not (show_progress and progress.enabled())):
        views = [refine_view(images[i], samples[i]["expression"], trajs[i].steps[-1].box, t, T, view, coord_format,
                             style, prompt_format, getattr(policy, "processor", None), draw_previous) for i in active]
        msgs = [v.messages for v in views]
        imgs = [v.images[0] if len(v.images) == 1 else v.images for v in views]  # one image stays one image
        gens = gen(msgs, imgs, active, t) if active else []
        next_active = []
        for i, g, m, im, v in zip(active, gens, msgs, imgs, views):
            prev = trajs[i].steps[-1].box
            rec = _step_record(g, trajs[i].gt, trajs[i].width, trajs[i].height, coord_format, v.frame, v.window)
            trajs[i].steps.append(rec)
            if record_inputs:
                trajs[i].rollout.append({"step": t, "messages": m, "image": im, "token_ids": g.token_ids})
            if stop_when_still is None or not bx.is_still(prev, rec.box, stop_when_still):
                next_active.append(i)
        for tr in trajs:
            if len(tr.steps) < t + 1:  # frozen by the stopping rule: carry its box forward, marked stopped
                last = tr.steps[-1]
                tr.steps.append(StepRecord(last.text, last.box, last.iou, last.parse_ok, last.reason,
                                           last.mean_logprob, stopped=True, min_logprob=last.min_logprob,
                                           window=last.window))
        active = next_active
    return trajs
