"""The single-step GRPO ablation (the paper's "single-step GRPO, no iteration" row), trained with trl's own
``GRPOTrainer`` and this project's reward functions (trl's reward signature; the same IoU + 0.1 x format).

Single-step grounding has no mid-rollout images, so trl fits it exactly: conversational prompts with an image
placeholder plus an ``image`` column, rewards receiving the dataset columns (``bbox``, ``width``, ``height``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .prompts import step0_messages
from .rewards import format_reward, iou_reward
from .sft import LLM_TARGETS

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
    seed: int = 0


def grounding_dataset(samples: Sequence[dict]):
    """trl's VLM GRPO format: conversational ``prompt`` + ``image`` + the reward columns."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": step0_messages(s["expression"]), "image": s["image"],
                               "bbox": [float(v) for v in s["bbox"]], "width": int(s["width"]),
                               "height": int(s["height"])} for s in samples])


def make_trainer(model_path: str, samples: Sequence[dict], out_dir: str | Path, cfg: SingleStepConfig,
                 device: str = "auto", dtype: str = "float32"):
    """A configured ``trl.GRPOTrainer`` (LoRA, our rewards with weights 1.0 / 0.1)."""
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from .models import load_model, resolve_device

    device = resolve_device(device)
    model, processor = load_model(model_path, device, dtype)
    args = GRPOConfig(
        output_dir=str(Path(out_dir) / "checkpoints"), max_steps=cfg.max_steps, learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.prompts_per_step * cfg.group_size, num_generations=cfg.group_size,
        max_completion_length=cfg.max_completion_length, temperature=cfg.temperature, beta=cfg.beta,
        reward_weights=[1.0, 0.1], logging_steps=5, save_steps=cfg.save_steps, save_total_limit=2, seed=cfg.seed,
        use_cpu=device == "cpu", bf16=dtype == "bfloat16", report_to="none", disable_tqdm=False,
        remove_unused_columns=False)
    return GRPOTrainer(model=model, args=args, reward_funcs=[iou_reward, format_reward],
                       train_dataset=grounding_dataset(samples), processing_class=processor,
                       peft_config=LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                              target_modules=LLM_TARGETS, task_type="CAUSAL_LM"))


def run_single_step(model_path: str, samples: Sequence[dict], out_dir: str | Path, cfg: SingleStepConfig,
                    device: str = "auto", dtype: str = "float32") -> dict:
    """Train (resuming from the last checkpoint) and export the merged model; return paths and the log."""
    from .models import save_merged
    from .sft import last_checkpoint

    out = Path(out_dir)
    trainer = make_trainer(model_path, samples, out, cfg, device, dtype)
    resume = last_checkpoint(out / "checkpoints")
    trainer.train(resume_from_checkpoint=resume)
    final = save_merged(trainer.model, trainer.processing_class, out / "merged")
    return {"merged": final, "resumed_from": resume, "steps": trainer.state.global_step,
            "log_history": [h for h in trainer.state.log_history if "reward" in h]}
