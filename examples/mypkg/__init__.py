"""A user's package that alrun has never seen: a model (nets), a data function (data) and an
acquisition function (acq), used by the docs pages docs/how-to/own-model.md and own-heuristic.md."""
