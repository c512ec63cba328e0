"""Typed stage configs: the base classes and paths (one dataclass per notebook is in ``stages``, tier files in ``tiers``).

Each ``__post_init__`` checks values, so bad parameters fail before any work starts with a message that names the
parameter. Relative paths resolve against the project root, so a notebook works from papermill (cwd = root) and from
JupyterLab (cwd = notebooks/) alike. Tiers live in ``params/<tier>.yaml`` (smoke, default, full = the default plus the one-seed ablations and ours' longer
SFT, paper = one 80 GB GPU, paper_24gb = one 24 GB GPU): one section per notebook.
"""
from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

ROOT = Path(__file__).resolve().parents[2]
TIERS = ("smoke", "default", "full", "paper", "paper_24gb")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# Upstream folders a stage reads, derived from ``runs_dir`` when left empty, so a tier names its scratch folder once
DERIVED_FROM_RUNS_DIR = {"traces_dir": "traces", "sft_model": "sft/student/merged", "trajectories_dir": "trajectories"}


# Each tier's own output folders: a tier file may leave them out (they are then these) and may point them elsewhere,
# but never into another tier's folders (:func:`tier_owning`), so a mistyped smoke file cannot overwrite results/.
TIER_FOLDERS: dict[str, dict[str, str]] = {
    "smoke": {"results_dir": "runs/smoke/results", "figures_dir": "runs/smoke/figures", "runs_dir": "runs/smoke"},
    "default": {"results_dir": "results", "figures_dir": "figures", "runs_dir": "runs/default"},
    **{t: {"results_dir": f"results/{t}", "figures_dir": f"figures/{t}", "runs_dir": f"runs/{t}"}
       for t in ("full", "paper", "paper_24gb")},
}


class ConfigError(ValueError):
    """A parameter has an invalid value (the message names it; ``key`` is the parameter, when there is one)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def resolve_path(p: str | Path) -> Path:
    """Absolute path; relative paths are taken from the project root."""
    p = Path(p)
    return p if p.is_absolute() else ROOT / p


def check(cond: bool, name: str, value: Any, why: str) -> None:
    """Raise :class:`ConfigError` naming ``name`` and ``value`` unless ``cond`` holds."""
    if not cond:
        raise ConfigError(f"parameter {name}={value!r}: {why}", key=name)


def tier_owning(path: str | Path) -> tuple[str, str] | None:
    """``(tier, folder)`` when ``path`` lies in one of a tier's output folders (the most specific one: ``results/full``
    is the full tier's, although it is inside the default tier's ``results``), else None."""
    p = resolve_path(path).resolve()
    best: tuple[int, str, str] | None = None
    for tier, folders in TIER_FOLDERS.items():
        for folder in folders.values():
            root = resolve_path(folder).resolve()
            if p.is_relative_to(root) and (best is None or len(root.parts) > best[0]):
                best = (len(root.parts), tier, folder)
    return None if best is None else best[1:]


def ownership_problem(tier: str, path: str | Path) -> str | None:
    """Why a ``tier`` run may not write to ``path`` (another tier's folder), else None."""
    owner = tier_owning(path)
    if owner is None or owner[0] == tier:
        return None
    own = TIER_FOLDERS.get(tier, {})
    return (f"is inside the {owner[0]} tier's folder {owner[1]}/: a {tier}-tier run writes only in its own folders"
            f" ({', '.join(dict.fromkeys(own.values()))}) or in a folder outside every tier's")


def writable_problem(path: str | Path) -> str | None:
    """Why files cannot be written in folder ``path`` (created when missing), else None; it writes nothing."""
    p = resolve_path(path)
    q = p
    while not q.exists() and q != q.parent:  # the nearest existing folder is where mkdir would need to write
        q = q.parent
    if not q.is_dir():
        return f"cannot be a folder: {q} is a file"
    try:  # a real attempt (an unlinked temp file): os.access says yes to root, and no to nothing on a full disk
        tempfile.TemporaryFile(dir=q).close()
    except OSError as e:
        return f"is not writable: {q}: {e.strerror or e}"
    return None


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

    # class constants (no annotation, so not fields): the folders a stage writes, checked before any work
    OUTPUTS = ("results_dir", "figures_dir", "runs_dir")
    # int parameters that may be negative (a subclass checks each one's values); every other int is a count >= 0
    SIGNED = frozenset()

    def __post_init__(self) -> None:
        self._check_types()
        self._check_counts()
        for name, sub in DERIVED_FROM_RUNS_DIR.items():
            if getattr(self, name, None) == "":
                setattr(self, name, f"{self.runs_dir.rstrip('/')}/{sub}")
        check(0.0 <= self.min_acc <= 1.0, "min_acc", self.min_acc, "must be in [0, 1]")
        check(0.0 <= self.min_parse_rate <= 1.0, "min_parse_rate", self.min_parse_rate, "must be in [0, 1]")
        check(isinstance(self.max_image_pixels, int) and (self.max_image_pixels == 0 or self.max_image_pixels >= 1024),
               "max_image_pixels", self.max_image_pixels, "must be 0 (no cap) or at least 1024 (one 32x32 token)")
        check(self.tier in TIERS, "tier", self.tier, f"must be one of {TIERS}")
        check(self.split in ("train", "validation", "test"), "split", self.split,
               "must be train, validation or test")
        check(isinstance(self.n_samples, int) and self.n_samples >= 0, "n_samples", self.n_samples,
               "must be an int >= 0 (0 = the whole split)")
        check(isinstance(self.batch_size, int) and self.batch_size > 0, "batch_size", self.batch_size,
               "must be a positive int")
        check(isinstance(self.max_new_tokens, int) and self.max_new_tokens > 0, "max_new_tokens",
               self.max_new_tokens, "must be a positive int")
        check(self.dtype in ("float32", "bfloat16", "float16", "auto"), "dtype", self.dtype,
               "must be float32, bfloat16, float16 or auto")
        check(self.coord_format in ("qwen3", "qwen25"), "coord_format", self.coord_format, "must be qwen3 or qwen25")
        check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"), "device",
               self.device, "must be auto, cpu or cuda[:N]")
        self._check_model("model", self.model)
        check(resolve_path(self.dataset).exists(), "dataset", self.dataset,
               f"no dataset at {resolve_path(self.dataset)} (build it with `python -m ivt_lib.corpora.splits`)")
        self.check_outputs()

    def check_outputs(self) -> None:
        """Every output folder belongs to this config's tier and can be written: checked when the config is built, so
        a notebook fails before it computes anything (notebook 05 once computed for 157 s, then found results/
        read-only)."""
        for name in self.OUTPUTS:
            value = getattr(self, name)
            check(isinstance(value, str) and bool(value), name, value, "must name a folder")
            why = ownership_problem(self.tier, value) or writable_problem(value)
            check(why is None, name, value, why or "")

    def _check_counts(self) -> None:
        """Every int parameter is a count (>= 0), except the few ``SIGNED`` ones, which their class checks."""
        for f in fields(self):
            v = getattr(self, f.name)
            if str(f.type) == "int" and f.name not in self.SIGNED and isinstance(v, int) and not isinstance(v, bool):
                check(v >= 0, f.name, v, "is a count: must be >= 0")

    def _check_types(self) -> None:
        """Every field has its annotated type (a float field takes an int; a bool is not an int)."""
        kinds = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}
        for f in fields(self):
            v = getattr(self, f.name)
            want = kinds.get(str(f.type))
            ok = want is None or (isinstance(v, want) and not (isinstance(v, bool) and bool not in want))
            check(ok, f.name, v, f"must be of type {f.type}, got {type(v).__name__}")

    @staticmethod
    def _check_model(name: str, value: str) -> None:
        local = resolve_path(value)
        check((local / "config.json").exists() or (not local.exists() and bool(_HUB_ID.match(value))
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
        check(self.generation_backend in ("hf", "vllm"), "generation_backend", self.generation_backend,
               "must be hf or vllm")
        check(0.05 <= self.vllm_gpu_memory <= 0.95, "vllm_gpu_memory", self.vllm_gpu_memory,
               "must be in [0.05, 0.95] (a fraction of the GPU's memory)")
        check(self.generation_backend != "vllm" or self.device != "cpu", "generation_backend",
               self.generation_backend, "vllm needs a GPU: use hf with device=cpu")

    def policy_kwargs(self) -> dict:
        """Arguments for :func:`ivt_lib.core.models.load_policy` from this config."""
        return {"backend": self.generation_backend, "device": self.device, "dtype": self.dtype,
                "max_new_tokens": self.max_new_tokens, "batch_size": self.batch_size,
                "vllm_gpu_memory": self.vllm_gpu_memory}


class HasView:
    """A stage with feedback-view parameters (``feedback``, ``zoom_margin``, ``zoom_size``)."""

    def view(self):
        """The stage's view as the loop, the traces and GRPO take it (:class:`ivt_lib.core.feedback.ViewSettings`)."""
        from ..core.feedback import ViewSettings

        return ViewSettings(self.feedback, self.zoom_margin, self.zoom_size)


def check_view(feedback: str, zoom_margin: float, zoom_size: int) -> None:
    """The feedback-view parameters of a stage (``ivt_lib.core.feedback``): the paper's overlay, or ours, zoom."""
    from ..core.feedback import FEEDBACK_VIEWS

    check(feedback in FEEDBACK_VIEWS, "feedback", feedback,
          f"must be one of {', '.join(FEEDBACK_VIEWS)} (overlay: the paper's view; zoom: ours)")
    check(0.0 <= zoom_margin <= 4.0, "zoom_margin", zoom_margin, "must be in [0, 4] (a share of the box's side)")
    check(isinstance(zoom_size, int) and 32 <= zoom_size <= 1024, "zoom_size", zoom_size, "must be an int in [32, 1024] px")


def model_source(value: str) -> str:
    """A model parameter as ``from_pretrained`` wants it: a resolved local folder, or the hub id unchanged."""
    local = resolve_path(value)
    return str(local) if local.exists() else value
