"""Errors a user can act on: each carries one sentence and is printed without a traceback."""


class AlrunError(Exception):
    """Base class: the message is one sentence that says what is wrong and what to do."""


class ConfigError(AlrunError):
    """A configuration value is out of range or unknown."""


class DataError(AlrunError):
    """A data set is missing, incomplete or corrupt."""


class ModelError(AlrunError):
    """A model cannot be built (for example pretrained weights are missing)."""


class HeuristicError(AlrunError):
    """A user's heuristic (heuristic=custom) fails or returns scores or indices that cannot be used."""


class TrainingDiverged(AlrunError):
    """The training loss became NaN or infinite: the job stops, the rest of the sweep goes on."""
