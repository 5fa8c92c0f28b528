"""Experiment configuration: typed frozen dataclasses, TOML loading, validation."""

from fedshield.config.loader import (
    QUICKSTART,
    apply_overrides,
    default_config,
    from_dict,
    load_toml,
    parse_override,
)
from fedshield.config.schema import (
    ConfigError,
    DataConfig,
    EngineConfig,
    EvalConfig,
    ExperimentConfig,
    FedQSNConfig,
    FedREConfig,
    ModelConfig,
    OutputConfig,
    PrivacyAttackConfig,
    SecureConfig,
    ServerConfig,
    TrainConfig,
)

__all__ = [
    "QUICKSTART",
    "ConfigError",
    "DataConfig",
    "EngineConfig",
    "EvalConfig",
    "ExperimentConfig",
    "FedQSNConfig",
    "FedREConfig",
    "ModelConfig",
    "OutputConfig",
    "PrivacyAttackConfig",
    "SecureConfig",
    "ServerConfig",
    "TrainConfig",
    "apply_overrides",
    "default_config",
    "from_dict",
    "load_toml",
    "parse_override",
]
