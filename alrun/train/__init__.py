"""train: fit a model on the labelled set and evaluate it (NLL of the MC-averaged predictive, accuracy, F1),
and the fit guard that flags a step whose model did not fit. Imports model, data, config, core."""
