"""alrun: a runner for Bayesian deep active-learning experiments (MC-Dropout, BALD, the paper's pathologies)."""

from alrun.config import DatasetSpec, ModelSpec, RunSpec, TrainSpec

__version__ = "0.1.0"
__all__ = ["DatasetSpec", "ModelSpec", "RunSpec", "TrainSpec", "__version__"]
