"""Tiers: one parameter file per tier, ``params/<tier>.yaml``, with one section per notebook, read and validated here."""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping

from . import base
from .base import TIERS, StageConfig, check
from .stages import NOTEBOOK_CONFIGS


def load_tier(tier: str) -> dict[str, dict]:
    """The parameters of every notebook for a tier, from ``params/<tier>.yaml``."""
    import yaml

    check(tier in TIERS, "tier", tier, f"must be one of {TIERS}")
    with open(base.ROOT / "params" / f"{tier}.yaml") as f:
        return yaml.safe_load(f) or {}


def tier_config(tier: str, notebook: str, overrides: Mapping[str, Any] | None = None) -> StageConfig:
    """The validated config of one notebook in a tier (``params/<tier>.yaml``), with ``overrides`` applied; what the
    notebook would run with. Scripts use it to run a stage exactly as its notebook would (e.g. on several GPUs)."""
    check(notebook in NOTEBOOK_CONFIGS, "notebook", notebook, f"must be one of {sorted(NOTEBOOK_CONFIGS)}")
    cls = NOTEBOOK_CONFIGS[notebook]
    overrides = dict(overrides or {})
    unknown = set(overrides) - {f.name for f in fields(cls)}
    check(not unknown, "overrides", sorted(unknown), f"not parameters of {notebook}")
    return cls.from_params({**load_tier(tier)[notebook], **overrides})
