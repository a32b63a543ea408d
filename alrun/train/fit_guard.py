"""The under-fitting guard: whether a step's fitted model can be trusted (pure functions, no torch).

Each step of steps.csv records the training loss and accuracy of the weights kept on the labelled set
(:func:`alrun.train.fit.training_fit`) and `fit_flag`, one word from :func:`fit_flag` ("" when fine); the
verdict and the report's notes count the flagged steps (:func:`flag_sentence`).
"""

from __future__ import annotations

import math

# the training accuracy on clean labels below which a step's model did not fit its own labelled set; with label
# noise lambda the bar is (1 - lambda) * FIT_ACCURACY: a model that learns the classes and not the noise gets
# about the share 1 - lambda of the noisy labels right
FIT_ACCURACY = 0.9
# weights kept by early stopping after at most this many passes over the labelled set (labelled samples seen
# before them / the labelled set's size) are flagged when training went on after them: in at most one pass each
# labelled item has been trained on about once, too little for a freshly initialised network to fit its own
# labels, so later weights being no better says training diverged or collapsed. Counted in passes, not epochs or
# gradient steps: a fixed-length epoch (train.epoch_samples, e.g. 1,264 samples over 20-250 labels in the
# mnist_batchbald reference, training accuracy 1.0) is already many passes, while an epoch of one pass over a
# large labelled set is many gradient steps and still only one sighting of each item
EARLY_PASSES = 1.0
# fit_flag's words, in the order they are tried (the first that applies is recorded), and what each means
FIT_FLAGS = {
    "chance": "ended at or below chance test accuracy",
    "early_weights": "kept weights that had seen the labelled set at most once (training diverged or collapsed "
                     "after them)",
    "underfit": "did not fit their labelled set",
}


def fit_threshold(label_noise: float = 0.0) -> float:
    """The training accuracy below which a model did not fit its labelled set: FIT_ACCURACY on clean labels,
    (1 - lambda) * FIT_ACCURACY with label noise lambda."""
    return (1.0 - label_noise) * FIT_ACCURACY


def fit_flag(train_acc: float, kept_epoch: int, epochs_run: int, test_acc: float, n_classes: int,
             label_noise: float = 0.0, kept_passes: float | None = None) -> str:
    """Why a step's fitted model is not to be trusted, as one word ("" when it is fine):

    - chance: test accuracy at or below chance (1 / n_classes);
    - early_weights: the weights kept had seen at most EARLY_PASSES passes over the labelled set (`kept_passes`:
      labelled samples seen before them / the labelled set's size; None: `kept_epoch`, epochs of one pass)
      while more epochs (or validation checks) ran after them: early stopping found nothing better later,
      so training diverged or collapsed;
    - underfit: training accuracy on the labelled set below :func:`fit_threshold`.
    """
    if n_classes >= 2 and not math.isnan(test_acc) and test_acc <= 1.0 / n_classes:
        return "chance"
    passes = float(kept_epoch) if kept_passes is None else kept_passes
    if kept_epoch < epochs_run and passes <= EARLY_PASSES:
        return "early_weights"
    if math.isnan(train_acc) or train_acc < fit_threshold(label_noise):
        return "underfit"
    return ""


def flag_counts(flags: list[str]) -> dict[str, int]:
    """{flag: number of steps} of the flagged steps among `flags` (fit_flag values; empty or NaN: fine), in
    FIT_FLAGS' order."""
    words = [f for f in flags if isinstance(f, str) and f]
    return {word: words.count(word) for word in FIT_FLAGS if word in words}


def flag_sentence(flags: list[str], label_noise: float | None = None) -> str | None:
    """What the flagged steps among `flags` (one fit_flag per step) say, naming the fix; None when none is
    flagged. `label_noise`: the setting's lambda, for the threshold shown (None: the clean-label threshold,
    with its rule under noise)."""
    counts = flag_counts(flags)
    if not counts:
        return None
    total = len(flags)
    if label_noise is None:
        bar = f"{FIT_ACCURACY:g}, x (1 - lambda) with label noise"
    else:
        bar = f"{fit_threshold(label_noise):.2g}"
    parts = []
    for word, n in counts.items():
        what = FIT_FLAGS[word] + (f" (training accuracy below {bar})" if word == "underfit" else "")
        parts.append(f"{n} of {total} steps {what}")
    return (f"{'; '.join(parts)}: the comparison there is unreliable; train longer (train.schedule=min_updates "
            "train.min_updates=500, or train.epoch_samples with early stopping).")
