"""Typed stage configs: one dataclass per notebook, built from the notebook's ``parameters`` cell.

Each ``__post_init__`` checks values, so bad parameters fail before any work starts with a message that names the
parameter. Relative paths resolve against the project root, so a notebook works from papermill (cwd = root) and from
JupyterLab (cwd = notebooks/) alike. Tiers live in ``params/<tier>.yaml`` (smoke, default, paper = one 80 GB GPU, paper_24gb = one 24 GB GPU): one section
per notebook.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

ROOT = Path(__file__).resolve().parent.parent
TIERS = ("smoke", "default", "paper", "paper_24gb")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# Upstream folders a stage reads, derived from ``runs_dir`` when left empty, so a tier names its scratch folder once
DERIVED_FROM_RUNS_DIR = {"traces_dir": "traces", "sft_model": "sft/student/merged", "trajectories_dir": "trajectories"}


class ConfigError(ValueError):
    """A parameter has an invalid value (the message names it)."""


def resolve_path(p: str | Path) -> Path:
    """Absolute path; relative paths are taken from the project root."""
    p = Path(p)
    return p if p.is_absolute() else ROOT / p


def _check(cond: bool, name: str, value: Any, why: str) -> None:
    if not cond:
        raise ConfigError(f"parameter {name}={value!r}: {why}")


@dataclass
class StageConfig:
    """Fields every stage shares."""

    tier: str = "default"
    model: str = "data/base_model"
    dataset: str = "data/scenes"
    split: str = "test"
    n_samples: int = 0
    batch_size: int = 32
    max_new_tokens: int = 32
    device: str = "auto"
    dtype: str = "float32"
    coord_format: str = "qwen3"
    seed: int = 0
    results_dir: str = "results"
    figures_dir: str = "figures"
    runs_dir: str = "runs/default"
    max_image_pixels: int = 0      # cap on each image's area (0 = as stored); bounds the image tokens
    min_acc: float = 0.0           # assert-cell floor for Acc@0.5 (set per tier)
    min_parse_rate: float = 0.0    # assert-cell floor for the parse rate (set per tier)

    def __post_init__(self) -> None:
        self._check_types()
        for name, sub in DERIVED_FROM_RUNS_DIR.items():
            if getattr(self, name, None) == "":
                setattr(self, name, f"{self.runs_dir.rstrip('/')}/{sub}")
        _check(0.0 <= self.min_acc <= 1.0, "min_acc", self.min_acc, "must be in [0, 1]")
        _check(0.0 <= self.min_parse_rate <= 1.0, "min_parse_rate", self.min_parse_rate, "must be in [0, 1]")
        _check(isinstance(self.max_image_pixels, int) and (self.max_image_pixels == 0 or self.max_image_pixels >= 1024),
               "max_image_pixels", self.max_image_pixels, "must be 0 (no cap) or at least 1024 (one 32x32 token)")
        _check(self.tier in TIERS, "tier", self.tier, f"must be one of {TIERS}")
        _check(self.split in ("train", "validation", "test"), "split", self.split,
               "must be train, validation or test")
        _check(isinstance(self.n_samples, int) and self.n_samples >= 0, "n_samples", self.n_samples,
               "must be an int >= 0 (0 = the whole split)")
        _check(isinstance(self.batch_size, int) and self.batch_size > 0, "batch_size", self.batch_size,
               "must be a positive int")
        _check(isinstance(self.max_new_tokens, int) and self.max_new_tokens > 0, "max_new_tokens",
               self.max_new_tokens, "must be a positive int")
        _check(self.dtype in ("float32", "bfloat16", "float16", "auto"), "dtype", self.dtype,
               "must be float32, bfloat16, float16 or auto")
        _check(self.coord_format in ("qwen3", "qwen25"), "coord_format", self.coord_format, "must be qwen3 or qwen25")
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"), "device",
               self.device, "must be auto, cpu or cuda[:N]")
        self._check_model("model", self.model)
        _check(resolve_path(self.dataset).exists(), "dataset", self.dataset,
               f"no dataset at {resolve_path(self.dataset)} (build it with `python -m ivt_lib.data`)")

    def _check_types(self) -> None:
        """Every field has its annotated type (a float field takes an int; a bool is not an int)."""
        kinds = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}
        for f in fields(self):
            v = getattr(self, f.name)
            want = kinds.get(str(f.type))
            ok = want is None or (isinstance(v, want) and not (isinstance(v, bool) and bool not in want))
            _check(ok, f.name, v, f"must be of type {f.type}, got {type(v).__name__}")

    @staticmethod
    def _check_model(name: str, value: str) -> None:
        local = resolve_path(value)
        _check((local / "config.json").exists() or (not local.exists() and bool(_HUB_ID.match(value))
                                                    and not value.startswith(("data/", "runs/", "./"))),
               name, value, "must be a saved model folder (with config.json) or a hub id like org/name")

    @property
    def max_pixels(self) -> int | None:
        """``max_image_pixels`` as ``load_split``'s argument (None = no cap)."""
        return self.max_image_pixels or None

    @property
    def limit(self) -> int | None:
        """``n_samples`` as a slice limit (None = all)."""
        return self.n_samples or None

    def path(self, attr: str) -> Path:
        """A path-valued field resolved against the project root."""
        return resolve_path(getattr(self, attr))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]):
        """Build from a mapping (e.g. a notebook's ``globals()``), keeping only this config's fields."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in names})

    def to_dict(self) -> dict:
        """Plain dict of the fields."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class GenerationStageConfig(StageConfig):
    """A stage that generates with the model: which backend does it (vLLM is optional and GPU-only)."""

    generation_backend: str = "hf"   # hf (transformers generate) | vllm (pip install vllm; GPU)
    vllm_gpu_memory: float = 0.3     # vLLM gpu_memory_utilization per engine (a notebook may hold several)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.generation_backend in ("hf", "vllm"), "generation_backend", self.generation_backend,
               "must be hf or vllm")
        _check(0.05 <= self.vllm_gpu_memory <= 0.95, "vllm_gpu_memory", self.vllm_gpu_memory,
               "must be in [0.05, 0.95] (a fraction of the GPU's memory)")
        _check(self.generation_backend != "vllm" or self.device != "cpu", "generation_backend",
               self.generation_backend, "vllm needs a GPU: use hf with device=cpu")

    def policy_kwargs(self) -> dict:
        """Arguments for :func:`ivt_lib.models.load_policy` from this config."""
        return {"backend": self.generation_backend, "device": self.device, "dtype": self.dtype,
                "max_new_tokens": self.max_new_tokens, "batch_size": self.batch_size,
                "vllm_gpu_memory": self.vllm_gpu_memory}


@dataclass
class BaseModelConfig(GenerationStageConfig):
    """Notebook 00: the base grounder, single-shot (and the refine-mix ablation base beside it)."""

    ablation_model: str = "data/base_model_refine_mix"  # empty: no ablation base (the paper tiers)
    min_acc: float = 0.40
    min_parse_rate: float = 0.99
    retrain: bool = False
    retrain_steps: int = 7200
    grid_n: int = 12

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ablation_model:
            self._check_model("ablation_model", self.ablation_model)
        _check(self.retrain_steps > 200, "retrain_steps", self.retrain_steps, "must be > 200 (the warm-up)")
        _check(0 <= self.grid_n <= 64, "grid_n", self.grid_n, "must be in [0, 64]")


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
        _check(isinstance(self.T, int) and self.T >= 1, "T", self.T, "must be an int >= 1")
        _check(isinstance(self.T_curve, int) and self.T_curve >= self.T, "T_curve", self.T_curve, "must be >= T")
        _check(0.0 < self.still_eps < 1.0, "still_eps", self.still_eps, "must be in (0, 1)")
        _check(self.probe_n >= 0, "probe_n", self.probe_n, "must be >= 0 (0 = all samples)")
        _check(0 <= self.grid_n <= 64, "grid_n", self.grid_n, "must be in [0, 64]")
        if self.ablation_model:
            self._check_model("ablation_model", self.ablation_model)


@dataclass
class TeacherSynthConfig(GenerationStageConfig):
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

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(isinstance(self.T, int) and self.T >= 1, "T", self.T, "must be an int >= 1")
        _check(self.max_trajectories >= 0, "max_trajectories", self.max_trajectories, "must be >= 0 (0 = no cap)")
        _check(0.0 <= self.iou_min < self.iou_max <= 1.0, "iou_min/iou_max", (self.iou_min, self.iou_max),
               "need 0 <= iou_min < iou_max <= 1")
        _check(self.teacher_backend in ("scripted", "hf", "openai"), "teacher_backend", self.teacher_backend, "must be scripted, hf or openai")
        _check(self.teacher_backend != "hf" or bool(self.teacher_model), "teacher_model", self.teacher_model,
               "the hf teacher needs a model id or folder")
        _check(self.teacher_backend != "openai" or (bool(self.teacher_url) and bool(self.teacher_model)), "teacher_url",
               self.teacher_url, "the openai teacher needs teacher_url and teacher_model")
        _check(self.teacher_workers >= 1, "teacher_workers", self.teacher_workers, "must be >= 1")
        _check(0.0 < self.jitter_scale < 2.0, "jitter_scale", self.jitter_scale, "must be in (0, 2)")


@dataclass
class SFTStageConfig(GenerationStageConfig):
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
    quantize_4bit: bool = False
    ablation_jittered: bool = True
    recipe_ours: bool = True
    grid_n: int = 6

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(isinstance(self.T, int) and self.T >= 1, "T", self.T, "must be an int >= 1")
        _check(0.0 < self.still_eps < 1.0, "still_eps", self.still_eps, "must be in (0, 1)")
        _check(self.lora_r >= 1, "lora_r", self.lora_r, "must be >= 1")
        _check(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be > 0")
        _check(self.epochs > 0 or self.max_steps > 0, "epochs", self.epochs, "epochs or max_steps must be > 0")
        _check(self.train_batch_size >= 1, "train_batch_size", self.train_batch_size, "must be >= 1")
        _check(isinstance(self.grad_accum, int) and self.grad_accum >= 1, "grad_accum", self.grad_accum, "must be an int >= 1")
        _check(self.save_steps >= 1, "save_steps", self.save_steps, "must be >= 1")


@dataclass
class GRPOStageConfig(GenerationStageConfig):
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
    refine_credit_ablation: bool = True
    val_every: int = 10
    val_n: int = 48
    learning_rate: float = 5e-4
    beta: float = 0.04
    epsilon: float = 0.2
    lora_r: int = 16
    lora_alpha: int = 32
    micro_batch: int = 24
    quantize_4bit: bool = False
    save_every: int = 10
    still_eps: float = 0.05
    single_step: bool = True
    single_step_steps: int = 60
    grid_n: int = 6

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(isinstance(self.sft_model, str) and bool(self.sft_model), "sft_model", self.sft_model,
               "must name notebook 03's merged model (folder) or a hub id")
        _check(self.train_n >= 0, "train_n", self.train_n, "must be >= 0 (0 = the whole train split)")
        _check(isinstance(self.T, int) and self.T >= 1, "T", self.T, "must be an int >= 1")
        _check(self.iterations >= 1, "iterations", self.iterations, "must be >= 1")
        _check(self.prompts_per_iter >= 1, "prompts_per_iter", self.prompts_per_iter, "must be >= 1")
        _check(self.group_size >= 2, "group_size", self.group_size, "must be >= 2 (group-relative advantages)")
        _check(self.temperature > 0, "temperature", self.temperature, "must be > 0: rollouts sample")
        _check(0 < self.top_p <= 1, "top_p", self.top_p, "must be in (0, 1]")
        _check(self.credit in ("trajectory", "refine"), "credit", self.credit,
               "must be 'trajectory' (the paper's whole trajectories) or 'refine' (shared step 0, ours)")
        _check(self.val_every >= 0, "val_every", self.val_every, "must be >= 0 (0 = no validation curve)")
        _check(self.val_n >= 1 or self.val_every == 0, "val_n", self.val_n, "must be >= 1 when val_every > 0")
        _check(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be > 0")
        _check(self.beta >= 0, "beta", self.beta, "must be >= 0")
        _check(0 < self.epsilon < 1, "epsilon", self.epsilon, "must be in (0, 1)")
        _check(self.save_every >= 1, "save_every", self.save_every, "must be >= 1")
        _check(isinstance(self.micro_batch, int) and self.micro_batch >= 1, "micro_batch", self.micro_batch,
               "must be an int >= 1")
        _check(not (self.quantize_4bit and self.generation_backend == "vllm"), "quantize_4bit", self.quantize_4bit,
               "4-bit weights cannot be pushed into a vLLM engine: use generation_backend hf")
        _check(0.0 < self.still_eps < 1.0, "still_eps", self.still_eps, "must be in (0, 1)")
        _check(self.single_step_steps >= 1, "single_step_steps", self.single_step_steps, "must be >= 1")


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
        _check(0.0 < self.still_eps < 1.0, "still_eps", self.still_eps, "must be in (0, 1)")
        _check(0.0 < self.hard_threshold <= 1.0, "hard_threshold", self.hard_threshold, "must be in (0, 1]")
        _check(isinstance(self.val_n, int) and self.val_n >= 0, "val_n", self.val_n, "must be an int >= 0")
        _check(0.0 < self.sample_temperature <= 2.0, "sample_temperature", self.sample_temperature,
               "must be in (0, 2]")
        _check(self.split != "validation" or not self.fit_rules, "split", self.split,
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
        _check(isinstance(self.live_T, int) and 0 <= self.live_T <= 8, "live_T", self.live_T, "must be an int in [0, 8]")


NOTEBOOK_CONFIGS: dict[str, type[StageConfig]] = {
    "00_base_model": BaseModelConfig,
    "01_naive_iteration_collapse": NaiveConfig,
    "02_teacher_data_synthesis": TeacherSynthConfig,
    "03_sft": SFTStageConfig,
    "04_grpo": GRPOStageConfig,
    "05_evaluation": EvaluationConfig,
    "06_explore": ExploreConfig,
}


def load_tier(tier: str) -> dict[str, dict]:
    """The parameters of every notebook for a tier, from ``params/<tier>.yaml``."""
    import yaml

    _check(tier in TIERS, "tier", tier, f"must be one of {TIERS}")
    with open(ROOT / "params" / f"{tier}.yaml") as f:
        return yaml.safe_load(f) or {}


def tier_config(tier: str, notebook: str, overrides: Mapping[str, Any] | None = None) -> StageConfig:
    """The validated config of one notebook in a tier (``params/<tier>.yaml``), with ``overrides`` applied; what the
    notebook would run with. Scripts use it to run a stage exactly as its notebook would (e.g. on several GPUs)."""
    _check(notebook in NOTEBOOK_CONFIGS, "notebook", notebook, f"must be one of {sorted(NOTEBOOK_CONFIGS)}")
    cls = NOTEBOOK_CONFIGS[notebook]
    overrides = dict(overrides or {})
    unknown = set(overrides) - {f.name for f in fields(cls)}
    _check(not unknown, "overrides", sorted(unknown), f"not parameters of {notebook}")
    return cls.from_params({**load_tier(tier)[notebook], **overrides})


def model_source(value: str) -> str:
    """A model parameter as ``from_pretrained`` wants it: a resolved local folder, or the hub id unchanged."""
    local = resolve_path(value)
    return str(local) if local.exists() else value
