"""A folder holds one study: a command into an existing sweep folder may add seeds, sweep a setting the folder's
command did not fix, or run another value of a training or loop setting (its jobs get folders of their own, an
arm beside the others: issue #30's sweep extended in either direction), but not drop or change an override that
defines the study and all its jobs share (the data set, the model, the scale, the experiment, and their keys):
that would mix two studies in one folder's tables."""

from __future__ import annotations

import shlex
from pathlib import Path

from alrun.report.resume import folder_text, sweep_overrides

# the config groups (and their keys) that say which study a folder holds; other settings make arms of it
STUDY_GROUPS = ("dataset", "model", "scale", "experiment", "study")
_SWEEP_FUNCTIONS = ("range(", "choice(", "interval(", "glob(", "sort(", "shuffle(")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _is_sweep(value: str) -> bool:
    """A value that gives the jobs different values (`a,b`, `range(0,4)`): not shared by all of them."""
    if value.startswith(_SWEEP_FUNCTIONS):
        return True
    depth = 0
    for char in value:  # a comma outside brackets or quotes-free lists: Hydra's sweep syntax
        depth += char in "[{("
        depth -= char in "]})"
        if char == "," and depth == 0:
            return True
    return False


def _task(argv: list[str]) -> list[str]:
    """The study's overrides of a command line: key=value words that are not Hydra's own."""
    return [a for a in argv if "=" in a and not a.startswith("-") and not _key(a).startswith(("hydra.", "hydra/"))]


def study_change(argv: list[str]) -> str | None:
    """One sentence when `argv` would run into an existing sweep folder (its hydra.sweep.dir holds a
    multirun.yaml) without an override all that folder's jobs share, or with another value of it; None when it
    keeps the study (adding seeds, sweeping a setting the folder's command did not fix) or names no folder."""
    folders = [a.split("=", 1)[1] for a in argv if _key(a) == "hydra.sweep.dir"]
    if not folders:
        return None
    folder = Path(folders[-1])
    recorded = sweep_overrides(folder)
    if recorded is None:
        return None
    task, _ = recorded
    shared = {_key(o): o.split("=", 1)[1] for o in task if _key(o) != "seed" and not _is_sweep(o.split("=", 1)[1])}
    defining = [k for k in shared if k.split(".")[0].split("/")[0] in STUDY_GROUPS]
    given = {_key(o): o.split("=", 1)[1] for o in _task(argv)}
    dropped = [k for k in defining if k not in given]
    changed = [k for k in defining if k in given and given[k] != shared[k]]
    if not dropped and not changed:
        return None
    what = [f"drops {k}={shared[k]}" for k in dropped] + [f"changes {k}={shared[k]} to {k}={given[k]}" for k in changed]
    seed = [o for o in _task(argv) if _key(o) == "seed"] or [o for o in task if _key(o) == "seed"]
    extend = [*(o for o in task if _key(o) != "seed"), *seed,
              *(o for o in _task(argv) if _key(o) not in shared and _key(o) != "seed"),
              f"hydra.sweep.dir={folder_text(folder)}"]
    return (f"{folder_text(folder)} holds one study and this command {' and '.join(what)} that all its jobs share "
            f"(its multirun.yaml); to resume or extend that study run "
            f"`alrun {' '.join(shlex.quote(w) for w in extend)}`, "
            "or give this one a folder of its own.")
