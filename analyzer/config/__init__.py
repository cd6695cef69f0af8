"""Canary configs: models, loading, and the built-in default."""

from analyzer.config.loading import (
    ConfigError,
    default_config,
    load_config,
    load_config_dir,
    parse_config,
)
from analyzer.config.models import CanaryConfig, JudgeSettings, MetricConfig

__all__ = [
    "CanaryConfig",
    "ConfigError",
    "JudgeSettings",
    "MetricConfig",
    "default_config",
    "load_config",
    "load_config_dir",
    "parse_config",
]
