"""Phase 1 SFT: a thin wrapper over trl's ``SFTTrainer`` with a peft LoRA adapter (QLoRA on GPU).

Assistant-only loss (the chat template's ``{% generation %}`` marks the answer), checkpoints every ``save_steps`` and
resume after a kill from the last checkpoint. The result is saved twice: the adapter, and the adapter merged into
the base weights (a plain model folder that :func:`ivt_lib.core.models.load_model` loads, and that GRPO starts from, so
that GRPO's adapter-disabled reference *is* the SFT policy).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..core import progress
from ..core.integrity import corrupt_error, folder_problems, force_requested, json_problem
from ..core.models import LLM_TARGETS

if TYPE_CHECKING:
    from ..configs import SFTStageConfig

log = logging.getLogger(__name__)



@dataclass
class SFTRunConfig:
    """Hyper-parameters of the SFT stage."""

    lora_r: int = 64
    lora_alpha: int = 128
    lora_dropout: float = 0.0
    target_modules: str = LLM_TARGETS
    learning_rate: float = 5e-4
    epochs: float = 2.0
    max_steps: int = -1
    train_batch_size: int = 16
    grad_accum: int = 1
    warmup_ratio: float = 0.05
    save_steps: int = 50
    logging_steps: int = 5
    # Recompute activations in the backward pass: saves GPU memory on the 4B model (trl's default, the paper tier's
    # choice), costs time and saves nothing that matters on the tiny CPU model. The same gradients either way, so
    # it is not part of the resume manifest.
    gradient_checkpointing: bool = False
    seed: int = 0
    quantize_4bit: bool = False
    bf16: bool = False

    @classmethod
    def from_stage(cls, stage: "SFTStageConfig") -> "SFTRunConfig":
        """The run config of notebook 03's (or ``scripts/sft_accelerate.py``'s) stage config: same-named fields copied,
        bf16 from the stage's dtype."""
        names = {f.name for f in fields(cls)} & set(stage.to_dict())
        return cls(**{n: getattr(stage, n) for n in names}, bf16=stage.dtype == "bfloat16")

    def __post_init__(self):
        if self.lora_r <= 0 or self.train_batch_size <= 0 or self.learning_rate <= 0:
            raise ValueError("lora_r, train_batch_size and learning_rate must be positive")


def ours_budget(cfg: SFTRunConfig, ours_max_steps: int, paper_steps: int) -> SFTRunConfig:
    """``cfg`` with the "ours" recipe's step budget: -1 keeps its epochs (more steps: ours has more conversations),
    0 the paper recipe's ``paper_steps`` (the same compute), N > 0 exactly N optimiser steps."""
    if ours_max_steps < -1:
        raise ValueError(f"ours_max_steps must be -1, 0 or a step count, got {ours_max_steps}")
    if ours_max_steps == -1:
        return cfg
    return replace(cfg, max_steps=paper_steps if ours_max_steps == 0 else ours_max_steps)


def last_checkpoint(ckpt_dir: Path) -> str | None:
    """The newest ``checkpoint-N`` folder, if any (trl/transformers' layout)."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.exists() else None


def run_manifest(model_path: str, train_dataset, cfg: SFTRunConfig, world_size: int | None = None,
                 out_dir: str | Path | None = None) -> dict:
    """What a checkpoint must share with the run that resumes it: model, data (row count + a hash of the
    conversations), the optimiser-step batch (per-device batch x accumulation x processes, so N processes with
    accumulation a/N may be finished by one process with a) and every other hyper-parameter except the save/log
    cadence. A local model is named relative to ``out_dir`` (the run folder) when given, else absolutely."""
    import os

    world = world_size or int(os.environ.get("WORLD_SIZE", "1"))
    d = {k: v for k, v in asdict(cfg).items() if k not in ("save_steps", "logging_steps", "train_batch_size", "grad_accum",
                                                      "gradient_checkpointing")}
    msgs = train_dataset["messages"][:]  # a list (datasets 5 returns a lazy Column, whose str() is a preview)
    h = hashlib.sha256(json.dumps(msgs, sort_keys=True, default=str).encode()).hexdigest()[:16]
    local = Path(model_path)
    model = str(local.resolve()) if local.exists() else str(model_path)  # relative or absolute: the same folder
    if local.exists() and out_dir is not None:  # a project moved or cloned elsewhere still resumes its runs
        model = os.path.relpath(model, Path(out_dir).resolve())
    return {"model": model, "rows": len(train_dataset), "messages_sha256": h,
            "step_batch": cfg.train_batch_size * cfg.grad_accum * world, **d}


# what Trainer reads to resume (transformers 5.24): adapter, trainer state, optimiser, scheduler, RNG state(s)
RESUME_FILES = ("adapter_model.safetensors", "trainer_state.json", "optimizer.pt", "scheduler.pt")


def checkpoint_problems(checkpoint: str | Path) -> list[tuple[str, str]]:
    """``(file, problem)`` for each file a resume reads from a Trainer checkpoint that is missing or cut short."""
    ck = Path(checkpoint)
    names = set(RESUME_FILES) | {p.name for p in ck.iterdir() if p.suffix in (".pt", ".pth", ".json", ".safetensors")}
    return folder_problems(ck, sorted(names))


def resume_point(ckpt_dir: Path, force: bool, what: str = "SFT checkpoint") -> str | None:
    """The newest checkpoint in ``ckpt_dir`` whose files are whole (None: train from the start). A corrupt newer one
    raises :class:`~ivt_lib.core.integrity.CorruptFileError` naming it, or under ``force`` is deleted and passed over,
    so the run retrains from the one before it (the same result: a resumed run matches an uninterrupted one)."""
    if not ckpt_dir.exists():
        return None
    found = [p for p in ckpt_dir.iterdir() if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)]
    for ck in sorted(found, key=lambda p: int(p.name.split("-")[1]), reverse=True):
        bad = checkpoint_problems(ck)
        if not bad:
            return os.path.join(str(ckpt_dir), ck.name)  # the string last_checkpoint gives (results record it)
        if not force:
            raise corrupt_error(what, ck, bad)
        log.warning("%s %s is corrupt (%s); forced rerun: deleted, training goes on from the one before it", what, ck,
                    "; ".join(f"{n} {p}" for n, p in bad))
        shutil.rmtree(ck, ignore_errors=True)  # every process of a launch may get here: whoever is first deletes
    return None


def check_resume(manifest_path: Path, manifest: dict, force: bool = False) -> None:
    """Refuse to resume checkpoints written by another recipe (trl would silently continue them)."""
    if not manifest_path.exists():
        return
    problem = json_problem(manifest_path)
    if problem and force:  # rewritten before training
        return
    if problem:
        raise corrupt_error("SFT run", manifest_path.parent, [(manifest_path.name, problem)])
    saved = json.loads(manifest_path.read_text())
    diff = {k: (saved.get(k), manifest.get(k)) for k in sorted(set(saved) | set(manifest))
            if saved.get(k) != manifest.get(k)}
    if diff:
        raise ValueError(f"{manifest_path.parent} holds an SFT run with other settings {diff} (saved, now): delete "
                         "that folder or use another out_dir")


def finished_state(checkpoint: str | None):
    """The checkpoint's ``TrainerState`` when it is the end of its run (``global_step >= max_steps``), else None."""
    if not checkpoint or not (Path(checkpoint) / "adapter_model.safetensors").exists():
        return None
    from transformers import TrainerState

    state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    return state if 0 < state.max_steps <= state.global_step else None


def load_finished(trainer, checkpoint: str | None):
    """When ``checkpoint`` is the end of its run, load its adapter and state into ``trainer`` and return the state;
    else None. Resumed at ``max_steps``, Trainer (transformers 5.24) and trl's GRPOTrainer (trl 1.16, mid-epoch)
    take one more step, so a finished run is loaded, never resumed."""
    state = finished_state(checkpoint)
    if state is not None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(trainer.model, load_file(str(Path(checkpoint) / "adapter_model.safetensors")))
        trainer.state = state
    return state


def run_sft(model_path: str, train_dataset, out_dir: str | Path, cfg: SFTRunConfig, device: str = "auto",
            dtype: str = "float32", force: bool | None = None) -> dict:
    """Train a LoRA adapter on ``train_dataset`` (``messages`` + ``images``); save adapter + merged model.
    ``force``: retrain over a corrupt checkpoint instead of stopping (None: ``IVT_FORCE``, a forced rerun)."""
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from ..core.models import load_model, resolve_device, save_merged

    out = Path(out_dir)
    ckpts = out / "checkpoints"
    manifest = run_manifest(model_path, train_dataset, cfg, out_dir=out)
    force = force_requested(force)
    if last_checkpoint(ckpts):  # before any work; a run killed before its first checkpoint blocks nothing
        check_resume(out / "run_config.json", manifest, force)
    resume = resume_point(ckpts, force)  # a corrupt checkpoint is named here, before the model loads
    device = resolve_device(device)
    model, processor = load_model(model_path, device, dtype, quantize_4bit=cfg.quantize_4bit)
    model.train()
    args = SFTConfig(
        output_dir=str(ckpts), per_device_train_batch_size=cfg.train_batch_size, gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        warmup_steps=cfg.warmup_ratio, lr_scheduler_type="cosine", logging_steps=cfg.logging_steps,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=2, seed=cfg.seed, data_seed=cfg.seed,
        assistant_only_loss=True, max_length=None, use_cpu=device == "cpu", bf16=cfg.bf16, report_to="none",
        remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=not progress.enabled(), loss_type="nll",
        activation_checkpointing=cfg.gradient_checkpointing)  # transformers 5 name of gradient checkpointing
    peft_cfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=cfg.target_modules, task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_dataset, processing_class=processor,
                         peft_config=peft_cfg)
    progress.quiet_trainer(trainer)
    # trl computes this loss itself (token sum / ``num_items_in_batch``), but Trainer only counts the tokens of the
    # whole global batch when the *model* says it accepts loss kwargs, and Qwen-VL classes say no (about their own
    # forward's loss). Without this, each DDP process averages over its own tokens and the update depends on how a
    # batch is split: N processes x batch b would not match 1 process x batch N*b. One process, no accumulation:
    # unchanged (bit-identical). Not under sequence parallelism, where Trainer reduces the model's own loss.
    pc = getattr(trainer.accelerator, "parallelism_config", None)
    if not (pc is not None and getattr(pc, "sp_enabled", False)):
        trainer.model_accepts_loss_kwargs = True
    if resume:
        log.info("resuming SFT from %s", resume)
    if trainer.is_world_process_zero():
        from ..core.io import atomic_write_json

        atomic_write_json(out / "run_config.json", manifest)
    finished = load_finished(trainer, resume)
    if finished is not None:
        log.info("SFT run in %s already finished at step %d: loaded, no further steps", resume, finished.global_step)
        losses = [h["loss"] for h in finished.log_history if "loss" in h]
        train_loss = sum(losses) / max(len(losses), 1)  # mean of the logged losses (the run's own average is not saved)
    else:
        train_loss = trainer.train(resume_from_checkpoint=resume).training_loss
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trainer.model.parameters())
    adapter, final = out / "adapter", out / "merged"
    if trainer.is_world_process_zero():  # under accelerate launch (DDP) only one process writes the results
        trainer.model.save_pretrained(adapter)
        save_merged(trainer.model, processor, final)
    trainer.accelerator.wait_for_everyone()
    history = [h for h in trainer.state.log_history if "loss" in h]
    return {"merged": str(final), "adapter": str(adapter), "train_loss": train_loss,
            "steps": trainer.state.global_step, "trainable_params": trainable, "total_params": total,
            "resumed_from": resume, "log_history": history, "world_size": trainer.args.world_size}


def assistant_token_share(processor, dataset, n: int = 4) -> float:
    """Share of tokens that carry loss (a check that the assistant-only mask is really applied)."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    coll = DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=True)
    batch = coll([dict(dataset[i]) for i in range(min(n, len(dataset)))])
    lab = batch["labels"]
    return float((lab != -100).sum() / batch["attention_mask"].sum())
