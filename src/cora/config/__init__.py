"""Typed configuration: pydantic sections (``schema``) and YAML loading (``loader``)."""

from cora.config.loader import ConfigError, config_to_yaml, load_config, load_raw, save_config
from cora.config.schema import ArchSpec, CoraConfig, StageConfig

__all__ = [
    "ArchSpec",
    "ConfigError",
    "CoraConfig",
    "StageConfig",
    "config_to_yaml",
    "load_config",
    "load_raw",
    "save_config",
]
