"""The run config of multi-step GRPO (:mod:`ivt_lib.training.grpo`), its construction from notebook 04's stage config, and
which of its settings a resumed checkpoint must share."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

from ..core.rewards import PAPER_WEIGHTS

if TYPE_CHECKING:
    from ..configs import GRPOStageConfig


CREDITS = ("trajectory", "refine")
REFINE_STARTS = ("sampled", "greedy")


@dataclass
class GRPORunConfig:
    """Hyper-parameters of multi-step GRPO (paper: G=6, beta=0.04, final-step IoU + 0.1 format)."""

    iterations: int = 80
    prompts_per_iter: int = 4
    group_size: int = 6
    T: int = 2
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 32
    learning_rate: float = 5e-4
    beta: float = 0.04
    epsilon: float = 0.2
    loss_type: str = "bnpo"             # token mean over the batch ("grpo": per-row mean, then mean)
    micro_batch: int = 24               # rows per scoring forward (gradient accumulation inside an iteration)
    quantize_4bit: bool = False         # QLoRA: 4-bit NF4 base weights (GPU, bitsandbytes)
    lora_r: int = 16
    lora_alpha: int = 32
    reward_weights: dict = field(default_factory=lambda: dict(PAPER_WEIGHTS))
    save_every: int = 10
    seed: int = 0
    coord_format: str = "qwen3"
    batch_size: int = 32                # generation batch size of the rollouts and the validation curve
    generation_backend: str = "hf"         # "hf" (model.generate) | "vllm" (colocated vllm.LLM, GPU)
    vllm_kwargs: dict = field(default_factory=dict)  # passed to vllm.LLM, e.g. {"gpu_memory_utilization": 0.3}
    # "trajectory": the paper's recipe, every member samples its own whole trajectory and every step's tokens get the
    # final reward's advantage. "refine" (ours, labelled): one sampled step-0 answer shared by the group, G refine
    # continuations from it, no loss on step-0 tokens, so the advantage measures refinement, not step-0 luck.
    credit: str = "trajectory"
    # with credit="refine": where the shared step 0 comes from. "sampled" (one sample at the rollout temperature) or
    # "greedy" (ours, labelled): the deployed greedy answer, so refinement trains on the starts it will be evaluated on
    refine_start: str = "sampled"
    # with credit="refine" (ignored otherwise: there step 0 is in the loss): also score the shared step-0 answer with
    # advantage 0, so that only the KL term acts on it and holds grounding near the SFT model while the refine steps
    # train (ours, labelled): refine-only updates can erode step 0 (the GRPO sweep on validation measures how much)
    anchor_step0: bool = False
    feedback: str = "overlay"           # the refine steps' view (ivt_lib.core.feedback): overlay (paper) | zoom (ours)
    zoom_margin: float = 0.5
    zoom_size: int = 128
    val_every: int = 0                  # greedy T-step evaluation on the validation subset every K updates (0 = off)

    @classmethod
    def from_stage(cls, stage: "GRPOStageConfig", credit: str | None = None) -> "GRPORunConfig":
        """The run config of notebook 04's (or ``scripts/grpo_accelerate.py``'s) stage config; ``credit`` overrides the
        stage's (the refine-credit run). Same-named fields are copied; only the vLLM memory share is translated."""
        names = {f.name for f in fields(cls)} & set(stage.to_dict())
        kw = {n: getattr(stage, n) for n in names}
        credit = credit or stage.credit
        return cls(**{**kw, "credit": credit, "anchor_step0": kw.get("anchor_step0", False) and credit == "refine",
                      "vllm_kwargs": {"gpu_memory_utilization": stage.vllm_gpu_memory}})

    def __post_init__(self):
        if self.group_size < 2:
            raise ValueError(f"group_size={self.group_size}: GRPO needs at least 2 trajectories per prompt")
        if self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature}: rollouts must sample (temperature > 0)")
        if self.loss_type not in ("bnpo", "grpo"):
            raise ValueError(f"loss_type={self.loss_type!r}: expected bnpo or grpo")
        if self.iterations < 1 or self.prompts_per_iter < 1 or self.T < 0:
            raise ValueError("iterations and prompts_per_iter must be >= 1 and T >= 0")
        if self.generation_backend not in ("hf", "vllm"):
            raise ValueError(f"generation_backend={self.generation_backend!r}: expected 'hf' or 'vllm'")
        if self.generation_backend == "vllm" and self.quantize_4bit:
            raise ValueError("quantize_4bit: 4-bit weights cannot be pushed into a vLLM engine (use generation_backend='hf')")
        if self.micro_batch < 1 or self.batch_size < 1:
            raise ValueError("micro_batch and batch_size must be >= 1")
        if self.credit not in CREDITS:
            raise ValueError(f"credit={self.credit!r}: expected one of {CREDITS}")
        if self.refine_start not in REFINE_STARTS:
            raise ValueError(f"refine_start={self.refine_start!r}: expected one of {REFINE_STARTS}")
        if self.credit == "refine" and self.T < 1:
            raise ValueError("credit='refine' trains the refine steps: it needs T >= 1")
        if self.val_every < 0:
            raise ValueError(f"val_every={self.val_every}: must be >= 0")


# Settings that change only memory, speed or bookkeeping, not the run's result (rollouts are batch-invariant): a
# checkpoint may be resumed with other values, e.g. written by scripts/grpo_accelerate.py and finished by notebook 04.
RESUMABLE_CHANGES = ("iterations", "save_every", "micro_batch", "batch_size", "vllm_kwargs", "val_every")


# checkpoints written before the run config took the stage config's names
OLD_NAMES = {"gen_batch_size": "batch_size", "rollout_backend": "generation_backend"}
# settings added after checkpoints were written: a checkpoint without one was trained with its value here
ADDED_LATER = {"refine_start": "sampled", "anchor_step0": False, "feedback": "overlay", "zoom_margin": 0.5,
               "zoom_size": 128}


def resume_relevant(cfg: GRPORunConfig) -> dict:
    """The settings a checkpoint must share with the run that resumes it."""
    return {k: v for k, v in asdict(cfg).items() if k not in RESUMABLE_CHANGES}
