"""A job's settings as flat dotted keys: what job.json records, what the report keys rows on, what the
tracker logs as params. A leaf: plain dicts in, plain dicts out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

# settings that hold a path of the machine: never written to summary.csv (nor to job folder names)
PATH_KEYS = ("data_dir", "dataset.root", "dataset.cache_dir", "model.weights_path", "model.feature_cache")
_PATH_LEAVES = {k.split(".")[-1] for k in PATH_KEYS}
_ABSOLUTE = re.compile(r"^(/|~|[A-Za-z]:[\\/])")
# keys (and key prefixes) that say where or how a job runs or is reported, not what it computes: two jobs
# differing only in these are the same experiment, so they never split the report's rows
NOT_EXPERIMENT = ("study", "data_dir", "device", "report", "grid", "scale_name", "tracker", "hydra",
                  "inference_batch_size", "dataset.download", "dataset.cache")


def is_path_setting(key: str, value: object) -> bool:
    """True for a setting that names a file or folder (it would tie summary.csv to one machine)."""
    return key in PATH_KEYS or key.split(".")[-1] in _PATH_LEAVES or (
        isinstance(value, str) and bool(_ABSOLUTE.match(value)))


def flatten(plain: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as {dotted key: scalar}; lists become their JSON text (so they stay one value).

    >>> flatten({"train": {"lr": 0.1}, "report": {"sizes": [1, 2]}})
    {'train.lr': 0.1, 'report.sizes': '[1, 2]'}
    """
    out: dict[str, Any] = {}
    for key, value in plain.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{dotted}."))
        elif isinstance(value, (list, tuple)):
            out[dotted] = json.dumps(list(value))
        else:
            out[dotted] = value
    return out


def is_experiment_setting(key: str) -> bool:
    """True for a key that can change a job's results (the report keys rows on those that vary)."""
    return not any(key == k or key.startswith(f"{k}.") for k in NOT_EXPERIMENT)


def experiment_settings(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a flattened config that define the experiment: paths and run-side keys left out."""
    return {k: v for k, v in flat.items() if is_experiment_setting(k) and not is_path_setting(k, v)}
