"""Train the base grounder: the tiny Qwen3-VL that stands in for the pretrained Qwen3-VL-4B-Instruct.

A plain, seeded torch loop (AdamW, warm-up, cosine decay) on a stream of freshly generated scenes whose seeds are
disjoint from the fixed train/validation/test splits: this stage plays the part of *pretraining*, so the IVT
train split (used by teacher synthesis, SFT and GRPO) stays unseen, as the paper's train split was unseen by
Qwen3-VL-4B. Two modes, one flag (``refine_frac``):

* **pure grounder** (``refine_frac=0``, the shipped ``data/base_model``): only step-0 grounding samples (image +
  expression -> box). It never sees a drawn box or a refinement prompt, as a pretrained instruct VLM was never taught
  to correct its own drawn box. A curriculum starts on big objects with few distractors, and a share
  ``contrast_frac`` of attribute-contrast scenes (a twin differs from the target in exactly one of colour, shape,
  size, position) teaches it to bind the expression's words to objects. A share ``paraphrase_frac`` of the grounding
  questions is asked in other phrasings (:data:`ivt_lib.embedded.base_stream.GROUNDING_PARAPHRASES`), the instruction variety
  an instruct model has and a one-template tiny model lacks. A share ``caption_frac`` (0 so far) are object-naming
  samples instead (a one-object scene, no box drawn or stated -> "the <colour> <shape>"), the attribute supervision a
  real VLM's captioning data gives: without it the trained patch merger discards colour
  (``python -m ivt_lib.analysis.visual_probe --model data/base_model``).
* **refine mix** (``--refine-frac 0.3 --contrast-frac 0 --paraphrase-frac 0``, the ablation
  ``data/base_model_refine_mix``): the same
  stream plus generic refinement samples ("the red box is a previous answer, output the corrected box") whose
  previous box is jittered ground truth, a distractor's box or a random box. That is the paper's jittered-GT
  ablation baked into pretraining, so this base is already a refiner. It never sees its *own* errors.

The stream itself (scenes, prompts, batching) is :mod:`ivt_lib.embedded.base_stream`. Resumes from ``ckpt_dir`` after a
kill (model, optimiser, scheduler and step; the data stream is a function of the step, so a resumed run sees the same
samples). Usage: ``python -m ivt_lib.embedded.train_base --total-steps 16000``.
Resuming a finished run with a larger ``--total-steps`` *extends* it: training goes on from the checkpoint on the
longer run's cosine (a warm restart), and each such stage is recorded (``stages`` in ``train_params.json``), so that
``make base-model`` can replay the exact sequence of commands.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .base_stream import collate, make_sample
from ..core.integrity import corrupt_error, folder_problems, force_requested
from ..core.io import atomic_dir, atomic_write_json, provenance, recover_dir
from ..core.state_io import has_state, load_state, save_state, state_files
from ..corpora.records import iter_split
from ..corpora.scenes import CONTRAST_AXES, FAMILIES

log = logging.getLogger(__name__)


@dataclass
class BaseTrainConfig:
    """Parameters of the base-grounder run (all of them recorded next to the weights)."""

    out_dir: str = "data/base_model"       # best weights (by validation Acc@0.5) go here
    ckpt_dir: str = "runs/base_ckpt"       # resumable training state (gitignored)
    seed: int = 0
    total_steps: int = 16000
    batch_size: int = 16
    lr: float = 2e-3
    min_lr_frac: float = 0.05
    warmup_steps: int = 200
    weight_decay: float = 0.01
    curriculum_frac: float = 0.10          # share of steps on easy scenes (1-2 big objects)
    blend_frac: float = 0.10               # then a linear blend from easy to the full 3-family mix
    refine_frac: float = 0.0               # share of generic refinement samples (0: pure grounder; 0.3: refine mix)
    contrast_frac: float = 0.25            # share of attribute-contrast scenes after the curriculum
    paraphrase_frac: float = 0.5           # share of grounding samples asked in another phrasing (instruction variety)
    caption_frac: float = 0.0              # share of object-naming samples (one object -> "the <colour> <shape>")
    family_weights: str = "1,1,1"          # relative draw weights of refcocog, refadv, refl4 scenes after the curriculum
    contrast_axes: str = "colour,shape,size,position"  # pool of the contrast twin's differing attribute (repeat to weight)
    init_from: str = ""                    # warm start: weights of a saved model folder (fresh optimiser and schedule)
    reset_merger: bool = False             # warm start only: re-initialise the vision patch merger(s) before training
    freeze_merger: bool = False            # never train the patch merger(s): an untrained one keeps colour (visual_probe)
    eval_every: int = 500
    eval_n: int = 150                      # validation samples per eval (balanced families)
    ckpt_every_s: float = 240.0
    threads: int = 2
    canvas: int = 128

    def __post_init__(self):
        if self.total_steps <= self.warmup_steps:
            raise ValueError(f"total_steps={self.total_steps} must exceed warmup_steps={self.warmup_steps}")
        for k in ("refine_frac", "contrast_frac", "paraphrase_frac", "caption_frac"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ValueError(f"{k}={getattr(self, k)} must be in [0, 1]")
        try:
            w = self.weights
        except ValueError:
            w = []
        if len(w) != len(FAMILIES) or min(w) < 0 or sum(w) <= 0:
            raise ValueError(f"family_weights={self.family_weights!r}: expected {len(FAMILIES)} non-negative numbers "
                             f"(for {', '.join(FAMILIES)}) with a positive sum")
        if any(a not in CONTRAST_AXES for a in self.axes):
            raise ValueError(f"contrast_axes={self.contrast_axes!r}: expected a comma list of {CONTRAST_AXES}")
        if self.init_from and not (Path(self.init_from) / "config.json").exists():
            raise ValueError(f"init_from={self.init_from!r} holds no saved model (config.json missing)")
        if self.reset_merger and not self.init_from:
            raise ValueError("reset_merger=True needs init_from: a fresh run's merger is freshly initialised anyway")
        if self.init_from and Path(self.init_from).resolve() == Path(self.out_dir).resolve():
            raise ValueError(f"init_from and out_dir are both {self.out_dir!r}: the warm start would be overwritten")

    @property
    def weights(self) -> list[float]:
        """Family draw weights, in :data:`FAMILIES` order."""
        return [float(v) for v in self.family_weights.split(",")]

    @property
    def axes(self) -> tuple[str, ...]:
        """The contrast twin's axis pool."""
        return tuple(a.strip() for a in self.contrast_axes.split(","))


def _lr_lambda(cfg: BaseTrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        p = (step - cfg.warmup_steps) / max(1, cfg.total_steps - cfg.warmup_steps)
        return cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))
    return f


def evaluate(model, processor, samples: list[dict]) -> dict:
    """Single-shot validation metrics (overall and per family)."""
    from ..core.loop import HFPolicy, run_loop
    from ..core.metrics import by_family, step_metrics

    model.eval()
    trajs = run_loop(HFPolicy(model, processor, max_new_tokens=28, batch_size=50), samples, T=0, show_progress=False)
    model.train()
    out = step_metrics(trajs, 0)
    out["by_family"] = {f: m["acc@0.5"] for f, m in by_family(trajs, 0).items()}
    return out


def _save_state(path: Path, model, opt, sched, step: int, best: float, curve: list, stages: list):
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp)
        save_state(tmp, {"opt": opt.state_dict(), "sched": sched.state_dict(), "step": step, "best": best,
                         "curve": curve, "stages": stages})  # safetensors + JSON: loading runs no code


def mergers(model) -> list:
    """The vision patch merger and the deepstack mergers: the path from the vision tower to the language model."""
    vis = model.model.visual
    return [vis.merger, *getattr(vis, "deepstack_merger_list", [])]


def merger_parameters(model) -> list:
    """The parameters of :func:`mergers`."""
    return [p for m in mergers(model) for p in m.parameters()]


def reset_mergers(model, seed: int) -> None:
    """Re-initialise the vision patch merger and the deepstack mergers (seeded; the model's own init scheme): the
    trained bases' merger discards colour (ivt_lib.analysis.visual_probe), and an untrained one keeps it."""
    # by hand: model._init_weights leaves weights loaded from a checkpoint untouched (transformers 5; checked)
    torch.manual_seed(seed)
    for merger in mergers(model):
        for m in merger.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.LayerNorm)):
                m.reset_parameters()
                if isinstance(m, torch.nn.Linear):  # the model's own scheme (normal, initializer_range), as build_tiny's
                    torch.nn.init.normal_(m.weight, std=model.config.vision_config.initializer_range)
                    torch.nn.init.zeros_(m.bias)


def extend_stages(stages: list[dict], step: int, total_steps: int) -> list[dict]:
    """The run's schedule stages after resuming at ``step`` with ``total_steps`` (a new stage when it grew)."""
    if total_steps < step:
        raise ValueError(f"total_steps={total_steps} is below the checkpoint's step {step}: cannot shorten a run")
    if not stages or stages[-1]["total_steps"] != total_steps:
        return [*stages, {"start_step": step, "total_steps": total_steps}]
    return stages


def resumable(ckpt: Path, force: bool) -> bool:
    """Whether ``ckpt`` holds a state to resume; a corrupt one stops the run, or under ``force`` is trained over."""
    if not has_state(recover_dir(ckpt)):
        return False
    bad = folder_problems(ckpt, ("config.json", "model.safetensors", *state_files(ckpt)))
    if bad and not force:
        raise corrupt_error("base-training checkpoint", ckpt, bad)
    if bad:  # the first save replaces it
        log.warning("checkpoint %s is corrupt (%s); forced rerun: training starts over", ckpt,
                    "; ".join(f"{n} {p}" for n, p in bad))
    return not bad


def train(cfg: BaseTrainConfig, force: bool | None = None) -> dict:
    """Run (or resume) the base-grounder training; return the final summary. ``force``: train over a corrupt
    checkpoint instead of stopping (None: ``IVT_FORCE``)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from ..core import loop, metrics  # noqa: F401  imported now, so editing the library during a long run cannot break it
    from .tiny_model import TinyConfig, build_tiny

    torch.set_num_threads(cfg.threads)
    out, ckpt = Path(cfg.out_dir), Path(cfg.ckpt_dir)
    init_dir = Path(cfg.init_from) if cfg.init_from else ckpt.with_name(ckpt.name + "_init")
    if not (init_dir / "config.json").exists():
        build_tiny(init_dir, TinyConfig(canvas=cfg.canvas), seed=cfg.seed)
    processor = AutoProcessor.from_pretrained(init_dir)
    # a warm start (init_from) replaces the random init only; a checkpoint of this run always wins, so it resumes
    src = ckpt if resumable(ckpt, force_requested(force)) else init_dir
    model = AutoModelForImageTextToText.from_pretrained(src, dtype=torch.float32)
    if cfg.reset_merger and src != ckpt:
        reset_mergers(model, cfg.seed)
    if cfg.freeze_merger:
        for p in merger_parameters(model):
            p.requires_grad_(False)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    step, best, curve, stages = 0, -1.0, [], []
    if src == ckpt:
        st = load_state(ckpt)  # the old state.pt too, read with weights_only=True
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])  # the lambda is rebuilt from cfg, so a larger total_steps extends
        step, best, curve = st["step"], st["best"], st["curve"]
        # checkpoints written before stages were recorded come from one finished single-stage run
        stages = st.get("stages") or [{"start_step": 0, "total_steps": step}]
        log.info("resumed from step %d (best val acc@0.5 %.3f)", step, best)
    stages = extend_stages(stages, step, cfg.total_steps)
    val = list(iter_split("validation", cfg.eval_n, cfg.seed, cfg.canvas))
    t0, last_ckpt = time.time(), time.time()
    wall0 = curve[-1]["wall_s"] if curve else 0.0
    losses: list[float] = []
    if cfg.init_from and src != ckpt:  # the warm start's own score is the first point and the best to beat
        ev = evaluate(model, processor, val)
        best = ev["acc@0.5"]
        curve.append({"step": 0, "wall_s": 0.0, "loss": None, "lr": 0.0, "init_from": cfg.init_from,
                      **{k: ev[k] for k in ("acc@0.5", "mean_iou", "parse_rate")}, "by_family": ev["by_family"]})
        log.info("warm start from %s: %s", cfg.init_from, json.dumps(curve[-1]))
        model.save_pretrained(out)
        processor.save_pretrained(out)
    while step < cfg.total_steps:
        rng = random.Random(f"base-stream-{cfg.seed}-{step}")  # disjoint from split seeds; resumable
        convs, imgs = zip(*(make_sample(rng, step, cfg) for _ in range(cfg.batch_size)))
        batch = collate(processor, list(convs), list(imgs))
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        step += 1
        if step % cfg.eval_every == 0 or step == cfg.total_steps:
            ev = evaluate(model, processor, val)
            point = {"step": step, "wall_s": round(wall0 + time.time() - t0, 1), "loss": sum(losses) / len(losses),
                     "lr": sched.get_last_lr()[0], **{k: ev[k] for k in ("acc@0.5", "mean_iou", "parse_rate")},
                     "by_family": ev["by_family"]}
            losses = []
            curve.append(point)
            log.info("step %d %s", step, json.dumps(point))
            if ev["acc@0.5"] > best:
                best = ev["acc@0.5"]
                model.save_pretrained(out)
                processor.save_pretrained(out)
            atomic_write_json(out / "training_curve.json", curve)
        if time.time() - last_ckpt > cfg.ckpt_every_s or step == cfg.total_steps:
            _save_state(ckpt, model, opt, sched, step, best, curve, stages)
            last_ckpt = time.time()
    summary = {"best_val_acc@0.5": best, "steps": step, "wall_s": curve[-1]["wall_s"] if curve else 0.0,
               "stages": stages}
    atomic_write_json(out / "train_params.json", {"config": asdict(cfg), "summary": summary,
                                                  "provenance": provenance(asdict(cfg))})
    return summary


def _flag(text: str) -> bool:
    """A boolean flag's value (``bool("False")`` would be True)."""
    if text.lower() not in ("true", "false", "1", "0"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() in ("true", "1")


def main(argv: list[str] | None = None) -> None:
    """CLI: every :class:`BaseTrainConfig` field is a ``--flag``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for k, v in asdict(BaseTrainConfig()).items():
        p.add_argument("--" + k.replace("_", "-"), type=_flag if isinstance(v, bool) else type(v), default=v)
    p.add_argument("--force", action="store_true", help="train over a corrupt checkpoint in --ckpt-dir")
    args = vars(p.parse_args(argv))
    force = args.pop("force") or None  # not given: IVT_FORCE decides
    cfg = BaseTrainConfig(**args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    print(json.dumps(train(cfg, force)))


if __name__ == "__main__":
    main()
