"""A user's package that alrun has never seen: a model (nets), a data function (data) and an
acquisition function (acq), used by the README section "Your own model, data and heuristic"."""
