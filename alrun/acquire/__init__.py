"""acquire: one acquisition: the heuristics (pure functions, probabilities [N, C, T] -> scores [N]), batch-aware
and stochastic batches, the diversity selectors on embeddings, a user's heuristic checked, and the top-k.
Imports model, config, core; nothing of train, loop, report, track or launch."""
