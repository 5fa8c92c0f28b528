"""The simulation engine: parameter layout, local training paths, the round loop."""

from fedshield.engine.batches import BatchPlan, make_batch_plan
from fedshield.engine.fused import FusedMLPTrainer
from fedshield.engine.hooks import ClientUpdates, Hook, RoundContext
from fedshield.engine.layout import ParamLayout
from fedshield.engine.local import LocalRecipe, LocalResult, SequentialTrainer
from fedshield.engine.loop import Federation, Result, build_federation, run_experiment
from fedshield.engine.vectorized import VmapTrainer

__all__ = [
    "BatchPlan",
    "ClientUpdates",
    "Federation",
    "FusedMLPTrainer",
    "Hook",
    "LocalRecipe",
    "LocalResult",
    "ParamLayout",
    "Result",
    "RoundContext",
    "SequentialTrainer",
    "VmapTrainer",
    "build_federation",
    "make_batch_plan",
    "run_experiment",
]
