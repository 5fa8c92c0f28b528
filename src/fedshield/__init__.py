"""fedshield: federated learning with privacy and security, measured in one experiment.

Quick use::

    import fedshield
    from fedshield.config import default_config
    result = fedshield.run_experiment(default_config())
    print(result.final_metrics["test_accuracy"], result.run_dir)
"""

from fedshield.config import ConfigError, ExperimentConfig, default_config, from_dict, load_toml
from fedshield.engine import Hook, ParamLayout, Result, run_experiment

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "Hook",
    "ParamLayout",
    "Result",
    "__version__",
    "default_config",
    "from_dict",
    "load_toml",
    "run_experiment",
]
