"""Configs wing: the typed parameters of every notebook and the tier files that fill them.

Holds ``base`` (paths, :class:`ConfigError`, the shared checks and the stage base classes), ``stages`` (one validated
dataclass per notebook) and ``tiers`` (``params/<tier>.yaml``). It imports nothing from ``ivt_lib``: every other wing
may import it. The package re-exports the public names, so ``configs.SFTStageConfig`` and ``configs.load_tier`` work.
"""
from .base import (DERIVED_FROM_RUNS_DIR, ROOT, TIERS, ConfigError, GenerationStageConfig, StageConfig, check,
                   model_source, resolve_path)
from .stages import (NOTEBOOK_CONFIGS, BaseModelConfig, EvaluationConfig, ExploreConfig, GRPOStageConfig, NaiveConfig,
                     SFTStageConfig, TeacherSynthConfig)
from .tiers import load_tier, tier_config

__all__ = ["ROOT", "TIERS", "ConfigError", "StageConfig", "GenerationStageConfig", "check", "resolve_path",
           "load_tier", "tier_config", "model_source", "DERIVED_FROM_RUNS_DIR", "NOTEBOOK_CONFIGS", "BaseModelConfig",
           "NaiveConfig", "TeacherSynthConfig", "SFTStageConfig", "GRPOStageConfig", "EvaluationConfig",
           "ExploreConfig"]
