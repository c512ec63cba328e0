"""Configs wing: the typed parameters of every notebook and the tier files that fill them.

Holds ``base`` (paths, :class:`ConfigError`, the shared checks and the stage base classes), ``stages`` (one validated
dataclass per notebook) and ``tiers`` (``params/<tier>.yaml``). It imports nothing from ``ivt_lib``: every other wing
may import it. The package re-exports the public names, so ``configs.SFTStageConfig`` and ``configs.load_tier`` work.
"""
from .base import (DERIVED_FROM_RUNS_DIR, ROOT, TIER_FOLDERS, TIERS, ConfigError, GenerationStageConfig, StageConfig,
                   check, model_source, resolve_path, tier_owning)
from .stages import (BY_EPOCHS, NOTEBOOK_CONFIGS, BaseModelConfig, EvaluationConfig, ExploreConfig, GRPOStageConfig,
                     NaiveConfig, SFTStageConfig, TeacherSynthConfig)
from .tiers import load_tier, read_tier_file, stage_config, tier_config, tier_file

__all__ = ["ROOT", "TIERS", "TIER_FOLDERS", "ConfigError", "StageConfig", "GenerationStageConfig", "check",
           "resolve_path", "tier_owning", "load_tier", "read_tier_file", "stage_config", "tier_config", "tier_file",
           "model_source", "BY_EPOCHS", "DERIVED_FROM_RUNS_DIR", "NOTEBOOK_CONFIGS", "BaseModelConfig",
           "NaiveConfig", "TeacherSynthConfig", "SFTStageConfig", "GRPOStageConfig", "EvaluationConfig",
           "ExploreConfig"]
