"""alrun: a runner for Bayesian deep active-learning experiments (MC-Dropout, BALD, the paper's pathologies).

The packages follow the loop's steps and the sweep's life, imports pointing down only (ARCHITECTURE.md):
cli > launch > track > report > loop > acquire > train > model > data > config > core.
"""

from alrun import _aliases
from alrun.config.schema import DatasetSpec, ModelSpec, RunSpec, TrainSpec
from alrun.core.version import __version__

_aliases.install()
__all__ = ["DatasetSpec", "ModelSpec", "RunSpec", "TrainSpec", "__version__"]
