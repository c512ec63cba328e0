"""The single-step GRPO ablation (the paper's "single-step GRPO, no iteration" row), trained with trl's own
``GRPOTrainer`` and this project's reward functions (trl's reward signature; the same IoU + 0.1 x format).

Single-step grounding has no mid-rollout images, so trl fits it exactly: conversational prompts with an image
placeholder plus an ``image`` column, rewards receiving the dataset columns (``bbox``, ``width``, ``height``).
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..core import boxes as bx
from ..core import progress
from ..core.prompts import step0_messages
from ..core.rewards import PAPER_WEIGHTS, format_reward, iou_reward
from ..core.models import LLM_TARGETS

if TYPE_CHECKING:
    from ..configs import GRPOStageConfig

log = logging.getLogger(__name__)


@dataclass
class SingleStepConfig:
    """trl GRPOTrainer settings for the ablation."""

    max_steps: int = 60
    prompts_per_step: int = 4
    group_size: int = 6
    temperature: float = 1.0
    max_completion_length: int = 32
    learning_rate: float = 5e-4
    beta: float = 0.04
    lora_r: int = 16
    lora_alpha: int = 32
    save_steps: int = 20
    logging_steps: int = 5
    seed: int = 0
    reward_weights: dict = field(default_factory=lambda: dict(PAPER_WEIGHTS))  # the multi-step run's, by default
    coord_format: str = "qwen3"

    @classmethod
    def from_stage(cls, stage: "GRPOStageConfig") -> "SingleStepConfig":
        """The ablation's settings from notebook 04's stage config: the multi-step run's group, sampling, optimiser,
        adapter and generation budget (``max_new_tokens``), so the two GRPO rows differ only in iterating."""
        return cls(max_steps=stage.single_step_steps, prompts_per_step=stage.prompts_per_iter,
                   group_size=stage.group_size, temperature=stage.temperature,
                   max_completion_length=stage.max_new_tokens, learning_rate=stage.learning_rate, beta=stage.beta,
                   lora_r=stage.lora_r, lora_alpha=stage.lora_alpha, seed=stage.seed, coord_format=stage.coord_format)

    def __post_init__(self):
        if set(self.reward_weights) != {"iou", "format"}:
            raise ValueError(f"reward_weights={self.reward_weights}: expected the keys 'iou' and 'format'")


def grounding_dataset(samples: Sequence[dict], resized: Sequence | None = None):
    """trl's VLM GRPO format: conversational ``prompt`` + ``image`` + the reward columns (``resized``: per sample the
    processor-resized size that qwen25 answers refer to, a column the IoU reward reads)."""
    from datasets import Dataset

    rows = [{"prompt": step0_messages(s["expression"]), "image": s["image"], "bbox": [float(v) for v in s["bbox"]],
             "width": int(s["width"]), "height": int(s["height"])} for s in samples]
    if resized is not None:
        rows = [{**r, "resized": [int(v) for v in fr]} for r, fr in zip(rows, resized)]
    return Dataset.from_list(rows)


def make_trainer(model_path: str, samples: Sequence[dict], out_dir: str | Path, cfg: SingleStepConfig,
                 device: str = "auto", dtype: str = "float32"):
    """A configured ``trl.GRPOTrainer`` (LoRA, our IoU and format rewards with ``cfg.reward_weights``)."""
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from ..core.models import load_model, resolve_device

    device = resolve_device(device)
    model, processor = load_model(model_path, device, dtype)
    # trl left-pads the prompt ids itself but builds mm_token_type_ids with the processor's own padding side; a
    # right-padding tokenizer (data/base_model's, saved so by train_base) shifts the image span against the ids and
    # Qwen3-VL's get_rope_index fails on prompts of unequal length. trl loads processors left-padded; so do we.
    processor.tokenizer.padding_side = "left"
    resized = (bx.model_frames(processor, [(int(s["width"]), int(s["height"])) for s in samples], cfg.coord_format)
               if cfg.coord_format == "qwen25" else None)
    # trl names a reward by its function's __name__: the partial keeps iou_reward's
    iou = functools.update_wrapper(functools.partial(iou_reward, coord_format=cfg.coord_format), iou_reward)
    args = GRPOConfig(
        output_dir=str(Path(out_dir) / "checkpoints"), max_steps=cfg.max_steps, learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.prompts_per_step * cfg.group_size, num_generations=cfg.group_size,
        max_completion_length=cfg.max_completion_length, temperature=cfg.temperature, beta=cfg.beta,
        reward_weights=[cfg.reward_weights["iou"], cfg.reward_weights["format"]], logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps, save_total_limit=2, seed=cfg.seed,
        use_cpu=device == "cpu", bf16=dtype == "bfloat16", report_to="none", disable_tqdm=not progress.enabled(),
        remove_unused_columns=False)
    trainer = GRPOTrainer(model=model, args=args, reward_funcs=[iou, format_reward],
                          train_dataset=grounding_dataset(samples, resized), processing_class=processor,
                          peft_config=LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                                 target_modules=LLM_TARGETS, task_type="CAUSAL_LM"))
    return progress.quiet_trainer(trainer)


def run_single_step(model_path: str, samples: Sequence[dict], out_dir: str | Path, cfg: SingleStepConfig,
                    device: str = "auto", dtype: str = "float32", force: bool | None = None) -> dict:
    """Train (resuming from the last checkpoint) and export the merged model; return paths and the log.
    ``force``: retrain over a corrupt checkpoint instead of stopping (None: ``IVT_FORCE``, a forced rerun)."""
    from ..core.integrity import force_requested
    from ..core.models import save_merged
    from .sft import load_finished, resume_point

    out = Path(out_dir)
    resume = resume_point(out / "checkpoints", force_requested(force), "single-step GRPO checkpoint")
    trainer = make_trainer(model_path, samples, out, cfg, device, dtype)
    if load_finished(trainer, resume) is None:  # a finished run is loaded: resuming it would take one more step
        trainer.train(resume_from_checkpoint=resume)
    final = save_merged(trainer.model, trainer.processing_class, out / "merged")
    return {"merged": final, "resumed_from": resume, "steps": trainer.state.global_step,
            # the logged steps; not trl's end-of-train summary, which a loaded finished run does not have
            "log_history": [h for h in trainer.state.log_history if "reward" in h and "train_runtime" not in h]}
