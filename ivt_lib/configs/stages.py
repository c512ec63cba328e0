"""One typed config per notebook, built from the notebook's ``parameters`` cell (the base classes are in ``base``).

Each ``__post_init__`` checks values, so bad parameters fail before any work starts with a message that names the
parameter. ``tests/test_notebooks.py`` holds each dataclass equal to its notebook's parameters cell and to the
default tier's YAML.
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import GenerationStageConfig, HasView, StageConfig, check, check_view

BY_EPOCHS = -1  # max_steps / ours_max_steps: train for ``epochs`` (transformers' own "no step cap")


@dataclass
class BaseModelConfig(GenerationStageConfig):
    """Notebook 00: the base grounder, single-shot (and the refine-mix ablation base beside it)."""

    ablation_model: str = "data/base_model_refine_mix"  # empty: no ablation base (the paper tiers)
    min_acc: float = 0.40
    min_parse_rate: float = 0.99
    retrain: bool = False
    retrain_steps: int = 7200
    grid_n: int = 12
    visual_probe_n: int = 400
    visual_probe_untrained: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ablation_model:
            self._check_model("ablation_model", self.ablation_model)
        check(self.visual_probe_n >= 0, "visual_probe_n", self.visual_probe_n, "must be >= 0 (0 = no probe)")
        check(self.retrain_steps > 200, "retrain_steps", self.retrain_steps, "must be > 200 (the warm-up)")
        check(0 <= self.grid_n <= 64, "grid_n", self.grid_n, "must be in [0, 64]")


@dataclass
class NaiveConfig(GenerationStageConfig):
    """Notebook 01: naive iteration (the base model refines its own boxes), for the base and the ablation base."""

    ablation_model: str = "data/base_model_refine_mix"  # empty: no ablation base (the paper tiers)
    min_acc: float = 0.40
    min_parse_rate: float = 0.95
    T: int = 2
    T_curve: int = 4
    still_eps: float = 0.05
    probe_n: int = 0
    grid_n: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        check(isinstance(self.T, int) and self.T >= 1, "T", self.T, "must be an int >= 1")
        check(isinstance(self.T_curve, int) and self.T_curve >= self.T, "T_curve", self.T_curve, "must be >= T")
        check(0.0 < self.still_eps < 1.0, "still_eps", self.still_eps, "must be in (0, 1)")
        check(self.probe_n >= 0, "probe_n", self.probe_n, "must be >= 0 (0 = all samples)")
        check(0 <= self.grid_n <= 64, "grid_n", self.grid_n, "must be in [0, 64]")
        if self.ablation_model:
            self._check_model("ablation_model", self.ablation_model)


@dataclass
class TeacherSynthConfig(HasView, GenerationStageConfig):
    """Notebook 02: teacher traces from the base model's own step-0 errors on the train split."""

    split: str = "train"
    T: int = 2
    iou_min: float = 0.0
    iou_max: float = 0.85
    teacher_backend: str = "scripted"
    teacher_model: str = ""
    teacher_url: str = ""
    teacher_workers: int = 4
    ablation_jittered: bool = True
    jitter_scale: float = 0.35
    max_trajectories: int = 934
    replay_step0: bool = True
    recipe_ours: bool = True
    reasoning: bool = False  # box-only traces: with reasoning text the 5 M model wrote garbled reasoning after SFT
    traces_dir: str = ""  # "" = <runs_dir>/traces
    feedback: str = "overlay"  # how refine steps show the previous box: overlay (the paper's) | zoom (ours)
    zoom_margin: float = 0.5
    zoom_size: int = 128

    OUTPUTS = (*StageConfig.OUTPUTS, "traces_dir")  # the traces are written here

    def __post_init__(self) -> None:
        super().__post_init__()
        check_view(self.feedback, self.zoom_margin, self.zoom_size)
        check(isinstance(self.T, int) and self.T >= 1, "T", self.T, "must be an int >= 1")
        check(self.max_trajectories >= 0, "max_trajectories", self.max_trajectories, "must be >= 0 (0 = no cap)")
        check(0.0 <= self.iou_min < self.iou_max <= 1.0, "iou_min/iou_max", (self.iou_min, self.iou_max),
               "need 0 <= iou_min < iou_max <= 1")
        check(self.teacher_backend in ("scripted", "hf", "openai"), "teacher_backend", self.teacher_backend, "must be scripted, hf or openai")
        check(self.teacher_backend != "hf" or bool(self.teacher_model), "teacher_model", self.teacher_model,
               "the hf teacher needs a model id or folder")
        check(self.teacher_backend != "openai" or (bool(self.teacher_url) and bool(self.teacher_model)), "teacher_url",
               self.teacher_url, "the openai teacher needs teacher_url and teacher_model")
        check(self.teacher_workers >= 1, "teacher_workers", self.teacher_workers, "must be >= 1")
        check(0.0 < self.jitter_scale < 2.0, "jitter_scale", self.jitter_scale, "must be in (0, 2)")


@dataclass
class SFTStageConfig(HasView, GenerationStageConfig):
    """Notebook 03: LoRA SFT on the teacher traces, then the T-step evaluation."""

    max_new_tokens: int = 32
    min_acc: float = 0.30
    min_parse_rate: float = 0.90
    traces_dir: str = ""  # "" = <runs_dir>/traces
    T: int = 2
    still_eps: float = 0.05
    lora_r: int = 64
    lora_alpha: int = 128
    learning_rate: float = 5e-4
    epochs: float = 2.0
    max_steps: int = -1
    train_batch_size: int = 16
    grad_accum: int = 1
    save_steps: int = 50
    gradient_checkpointing: bool = False
    quantize_4bit: bool = False
    ablation_jittered: bool = False
    recipe_ours: bool = True
    ours_max_steps: int = 0
    grid_n: int = 6
    feedback: str = "overlay"  # must match the traces' view (notebook 02): overlay (the paper's) | zoom (ours)
    zoom_margin: float = 0.5
    zoom_size: int = 128

    SIGNED = frozenset({"max_steps", "ours_max_steps"})  # BY_EPOCHS, checked below

    def __post_init__(self) -> None:
        super().__post_init__()
        check_view(self.feedback, self.zoom_margin, self.zoom_size)
        check(isinstance(self.T, int) and self.T >= 1, "T", self.T, "must be an int >= 1")
        check(0.0 < self.still_eps < 1.0, "still_eps", self.still_eps, "must be in (0, 1)")
        # -1 is the one spelling of "by epochs": -7 once meant it too, and transformers reads 0 steps as it silently
        check(self.max_steps == BY_EPOCHS or self.max_steps >= 1, "max_steps", self.max_steps,
               f"must be {BY_EPOCHS} (train by epochs) or a step count >= 1")
        check(isinstance(self.ours_max_steps, int) and self.ours_max_steps >= BY_EPOCHS, "ours_max_steps",
               self.ours_max_steps,
               f"must be {BY_EPOCHS} (train by epochs), 0 (the paper recipe's steps) or a step count")
        check(self.lora_r >= 1, "lora_r", self.lora_r, "must be >= 1")
        check(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be > 0")
        check(self.epochs >= 0, "epochs", self.epochs, "must be >= 0")
        check(self.epochs > 0 or self.max_steps > 0, "epochs", self.epochs, "epochs or max_steps must be > 0")
        check(self.train_batch_size >= 1, "train_batch_size", self.train_batch_size, "must be >= 1")
        check(isinstance(self.grad_accum, int) and self.grad_accum >= 1, "grad_accum", self.grad_accum, "must be an int >= 1")
        check(self.save_steps >= 1, "save_steps", self.save_steps, "must be >= 1")


@dataclass
class GRPOStageConfig(HasView, GenerationStageConfig):
    """Notebook 04: multi-step GRPO from the SFT model, and the single-step trl GRPO ablation from the base."""

    max_new_tokens: int = 32
    min_acc: float = 0.30
    min_parse_rate: float = 0.90
    sft_model: str = ""  # "" = <runs_dir>/sft/student/merged, notebook 03's merged model
    train_n: int = 0
    T: int = 2
    iterations: int = 80
    prompts_per_iter: int = 4
    group_size: int = 6
    temperature: float = 1.0
    top_p: float = 1.0
    credit: str = "trajectory"
    refine_start: str = "sampled"
    anchor_step0: bool = False
    refine_credit_ablation: bool = True
    val_every: int = 10
    val_n: int = 144
    learning_rate: float = 5e-4
    beta: float = 0.04
    epsilon: float = 0.2
    lora_r: int = 16
    lora_alpha: int = 32
    micro_batch: int = 24
    quantize_4bit: bool = False
    save_every: int = 10
    still_eps: float = 0.05
    single_step: bool = False
    single_step_steps: int = 60
    grid_n: int = 6
    feedback: str = "overlay"  # overlay (the paper's) | zoom (ours): as the SFT model was trained
    zoom_margin: float = 0.5
    zoom_size: int = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        check_view(self.feedback, self.zoom_margin, self.zoom_size)
        check(isinstance(self.sft_model, str) and bool(self.sft_model), "sft_model", self.sft_model,
               "must name notebook 03's merged model (folder) or a hub id")
        check(self.train_n >= 0, "train_n", self.train_n, "must be >= 0 (0 = the whole train split)")
        check(isinstance(self.T, int) and self.T >= 1, "T", self.T, "must be an int >= 1")
        check(self.iterations >= 1, "iterations", self.iterations, "must be >= 1")
        check(self.prompts_per_iter >= 1, "prompts_per_iter", self.prompts_per_iter, "must be >= 1")
        check(self.group_size >= 2, "group_size", self.group_size, "must be >= 2 (group-relative advantages)")
        check(self.temperature > 0, "temperature", self.temperature, "must be > 0: rollouts sample")
        check(0 < self.top_p <= 1, "top_p", self.top_p, "must be in (0, 1]")
        check(self.credit in ("trajectory", "refine"), "credit", self.credit,
               "must be 'trajectory' (the paper's whole trajectories) or 'refine' (shared step 0, ours)")
        check(self.refine_start in ("sampled", "greedy"), "refine_start", self.refine_start,
               "must be 'sampled' (a step 0 at the rollout temperature) or 'greedy' (the deployed start, ours)")
        check(self.val_every >= 0, "val_every", self.val_every, "must be >= 0 (0 = no validation curve)")
        check(self.val_n >= 1 or self.val_every == 0, "val_n", self.val_n, "must be >= 1 when val_every > 0")
        check(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be > 0")
        check(self.beta >= 0, "beta", self.beta, "must be >= 0")
        check(0 < self.epsilon < 1, "epsilon", self.epsilon, "must be in (0, 1)")
        check(self.save_every >= 1, "save_every", self.save_every, "must be >= 1")
        check(isinstance(self.micro_batch, int) and self.micro_batch >= 1, "micro_batch", self.micro_batch,
               "must be an int >= 1")
        check(not (self.quantize_4bit and self.generation_backend == "vllm"), "quantize_4bit", self.quantize_4bit,
               "4-bit weights cannot be pushed into a vLLM engine: use generation_backend hf")
        check(0.0 < self.still_eps < 1.0, "still_eps", self.still_eps, "must be in (0, 1)")
        check(self.single_step_steps >= 1, "single_step_steps", self.single_step_steps, "must be >= 1")


@dataclass
class EvaluationConfig(GenerationStageConfig):
    """Notebook 05: every configuration side by side, deployable vs oracle, figures, the paper's numbers beside ours."""

    ablation_model: str = "data/base_model_refine_mix"
    trajectories_dir: str = ""  # "" = <runs_dir>/trajectories
    still_eps: float = 0.05
    hard_threshold: float = 0.5
    fit_rules: bool = True           # fit the label-free rules on validation and run the equal-compute baselines
    val_n: int = 0                   # validation samples the rules are fitted on (0 = the whole split)
    sample_temperature: float = 0.7  # sampling temperature of the N step-0 answers (best-of-N, self-consistency)
    grid_n: int = 6

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0.0 < self.still_eps < 1.0, "still_eps", self.still_eps, "must be in (0, 1)")
        check(0.0 < self.hard_threshold <= 1.0, "hard_threshold", self.hard_threshold, "must be in (0, 1]")
        check(isinstance(self.val_n, int) and self.val_n >= 0, "val_n", self.val_n, "must be an int >= 0")
        check(0.0 < self.sample_temperature <= 2.0, "sample_temperature", self.sample_temperature,
               "must be in (0, 2]")
        check(self.split != "validation" or not self.fit_rules, "split", self.split,
               "the rules are fitted on validation, so they cannot be scored on it: use split=test")


@dataclass
class ExploreConfig(StageConfig):
    """Notebook 06: the refinement explorer widget."""

    trajectories_dir: str = ""  # "" = <runs_dir>/trajectories
    start_config: str = "base + naive iteration"
    start_filter: str = "worst degradations"
    live_T: int = 2
    live_demo: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check(isinstance(self.live_T, int) and 0 <= self.live_T <= 8, "live_T", self.live_T, "must be an int in [0, 8]")


NOTEBOOK_CONFIGS: dict[str, type[StageConfig]] = {
    "00_base_model": BaseModelConfig,
    "01_naive_iteration_collapse": NaiveConfig,
    "02_teacher_data_synthesis": TeacherSynthConfig,
    "03_sft": SFTStageConfig,
    "04_grpo": GRPOStageConfig,
    "05_evaluation": EvaluationConfig,
    "06_explore": ExploreConfig,
}
