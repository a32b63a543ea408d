"""Job folder names: the settings that vary across the sweep, never more than a path component can hold.

`configs/config.yaml` sets `hydra.sweep.subdir: ${alrun.job_folder:}`; Hydra resolves it in the process
that runs the job (the main process, a joblib worker or a submitit job), after the sweep's
`multirun.yaml` is written. A job's folder is named by its overrides, in Hydra's `key=value,key=value`
form and order (that of `hydra.job.override_dirname`), keeping only the keys that take more than one
value in the sweep, plus `heuristic` and `seed` (the report pairs on them); `exclude_keys` stay out.
Constant settings are in `multirun.yaml` and each job's `job.json`. A name longer than `MAX_NAME_BYTES`
keeps a readable prefix and ends in a hash of the whole name.

Resume: an existing folder of the same job in the sweep folder is used as it is, whether it bears this
name, the name older alrun versions gave (the full `override_dirname`), or another name whose
`job.json` records the same overrides (a sweep re-run with a different set of varying keys). A name
taken by another job (a sweep extended with a setting its earlier jobs lack, e.g. the same heuristics
and seeds again with `heuristic.embedding=input`, or without a setting only they had) gives this job a name
that holds the settings that differ, with this job's own value for one it does not set (`train.lr=0.001`).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

RESOLVER = "alrun.job_folder"
# a path component holds 255 bytes on common filesystems; stay well below (eCryptfs, encrypted homes: ~143)
MAX_NAME_BYTES = 140
HASH_CHARS = 12
ALWAYS = ("heuristic", "seed")  # in every job's name: the report pairs jobs on them


def _parse(lines: Iterable[str]) -> list[Any]:
    """Hydra's parsed overrides of LINES."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(lines))


def _takes_several_values(override: Any) -> bool:
    """True for a sweep override with more than one distinct value (`seed=0,1`, `range(3)`)."""
    if not override.is_sweep_override():
        return False
    try:
        return len(set(override.sweep_string_iterator())) > 1
    except Exception:  # a sweep form the basic sweeper cannot list: count it as varying
        return True


def varying_keys(sweep_overrides: Iterable[str], sweeper_params: dict[str, Any] | None) -> set[str]:
    """Keys that take several values in a sweep of the command line's SWEEP_OVERRIDES and the config's
    `hydra.sweeper.params` (the command line wins for a key in both, as in Hydra's basic sweeper).

    >>> sorted(varying_keys(["heuristic=bald", "lr=0.1,0.2", "+x=1"], {"heuristic": "bald,random", "seed": "0,1"}))
    ['lr', 'seed']
    """
    lines = [f"{k}={v}" for k, v in (sweeper_params or {}).items()] + list(sweep_overrides)
    final: OrderedDict[str, bool] = OrderedDict()
    for override in _parse(lines):
        final[override.key_or_group] = _takes_several_values(override)
    return {key for key, several in final.items() if several}


def sweep_varying_keys(sweep_dir: Path) -> set[str] | None:
    """The varying keys of the sweep whose `multirun.yaml` is in SWEEP_DIR; None when it has none (or one
    this cannot read)."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return None
    try:
        cfg = OmegaConf.load(path)
        task = OmegaConf.select(cfg, "hydra.overrides.task", default=None) or []
        params_node = OmegaConf.select(cfg, "hydra.sweeper.params", default=None)
        params = {str(k): params_node[k] for k in params_node} if params_node else {}  # resolves ${grid.seeds}
        return varying_keys([str(o) for o in task], params)
    except Exception:  # unreadable, or a sweep syntax of another sweeper: every override names the folder
        return None


def shortened(name: str, limit: int = MAX_NAME_BYTES) -> str:
    """NAME itself when it fits in LIMIT bytes, else a readable prefix, `-` and a short sha256 of NAME.

    >>> shortened("a=1,b=2")
    'a=1,b=2'
    >>> len(shortened("x=" + "9" * 300).encode()) <= MAX_NAME_BYTES
    True
    """
    raw = name.encode()
    if len(raw) <= limit:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:HASH_CHARS]
    prefix = raw[: limit - HASH_CHARS - 1].decode(errors="ignore").rstrip(",=")
    return f"{prefix}-{digest}"


def job_name(job_overrides: Iterable[str], varying: set[str], exclude_keys: Iterable[str],
             item_sep: str = ",", kv_sep: str = "=") -> str:
    """The job's folder name (before shortening): its overrides of VARYING keys and of `heuristic` and
    `seed`, EXCLUDE_KEYS left out, sorted and joined as in Hydra's `override_dirname`.

    >>> job_name(["train.lr=0.1", "seed=1", "heuristic=bald", "scale=smoke", "epochs=5"], {"epochs"}, ["scale"])
    'epochs=5,heuristic=bald,seed=1'
    """
    excluded = set(exclude_keys)
    keep = varying | set(ALWAYS)
    lines = sorted(o.input_line for o in _parse(job_overrides)
                   if o.key_or_group not in excluded and o.key_or_group in keep)
    return item_sep.join(lines).replace("=", kv_sep)


def _comparable(overrides: dict[str, str], excluded: set[str]) -> dict[str, str]:
    """OVERRIDES as `job.json` records them ({key without +/~: value}), EXCLUDED keys left out."""
    return {k.lstrip("+~"): v for k, v in overrides.items() if k.lstrip("+~") not in excluded}


def _recorded_overrides(folder: Path) -> dict[str, str] | None:
    """The overrides FOLDER's `job.json` records, or None when it has none readable (a job not started yet)."""
    try:
        recorded = json.loads((folder / "job.json").read_text()).get("overrides", {})
    except (OSError, ValueError, AttributeError):
        return None
    return recorded if isinstance(recorded, dict) else None


def same_job_folder(sweep_dir: Path, job_overrides: list[str], excluded: set[str]) -> str | None:
    """The folder in SWEEP_DIR whose `job.json` records the overrides JOB_OVERRIDES (EXCLUDED aside)."""
    wanted = _comparable(dict(o.split("=", 1) for o in job_overrides if "=" in o), excluded)
    for meta in sorted(sweep_dir.glob("*/job.json")):
        recorded = _recorded_overrides(meta.parent)
        if recorded is not None and _comparable(recorded, excluded) == wanted:
            return meta.parent.name
    return None


def differing_keys(folder: Path, job_overrides: list[str], excluded: set[str]) -> set[str]:
    """The keys whose overrides FOLDER's `job.json` records otherwise than JOB_OVERRIDES (EXCLUDED aside; empty
    without a job.json): when not empty the name is taken, e.g. by a job of an earlier sweep in this folder
    without a setting this one adds."""
    recorded = _recorded_overrides(folder)
    if recorded is None:
        return set()
    theirs = _comparable(recorded, excluded)
    wanted = _comparable(dict(o.split("=", 1) for o in job_overrides if "=" in o), excluded)
    return {k for k in theirs.keys() | wanted.keys() if theirs.get(k) != wanted.get(k)}


def _is_folder(path: Path) -> bool:
    """Whether PATH is an existing folder (False for a name the filesystem cannot hold)."""
    try:
        return path.is_dir()
    except OSError:
        return False


def job_folder(*, _root_: DictConfig) -> str:
    """The resolver behind `hydra.sweep.subdir`: the job's folder name inside the sweep folder."""
    hydra_cfg = _root_.hydra
    sweep_dir = Path(str(hydra_cfg.sweep.dir))
    dirname_cfg = hydra_cfg.job.config.override_dirname
    excluded = {str(k) for k in dirname_cfg.exclude_keys}
    job_overrides = [str(o) for o in hydra_cfg.overrides.task]
    old_name = str(hydra_cfg.job.override_dirname)
    varying = sweep_varying_keys(sweep_dir)
    if varying is None:  # no readable multirun.yaml: every override, as Hydra would (shortened below)
        full = old_name
    else:
        full = job_name(job_overrides, varying, excluded, str(dirname_cfg.item_sep), str(dirname_cfg.kv_sep))
    name = shortened(full or old_name) or str(hydra_cfg.job.num)
    differ = differing_keys(sweep_dir / name, job_overrides, excluded) if _is_folder(sweep_dir / name) else set()
    if _is_folder(sweep_dir / name) and not differ:
        return name
    if old_name and _is_folder(sweep_dir / old_name) and not differing_keys(sweep_dir / old_name, job_overrides,
                                                                            excluded):
        return old_name  # a sweep started before folders were named this way
    if sweep_dir.is_dir():
        found = same_job_folder(sweep_dir, job_overrides, excluded)
        if found:
            return found
    if differ:  # a sweep extended by a setting its earlier jobs lack (or only they had): the name holds it too
        return own_name(_root_, sweep_dir, job_overrides, (varying or set()) | differ, excluded)
    return name


def _own_value(root: DictConfig, key: str) -> str:
    """This job's value of KEY, which its overrides do not set: the option chosen for a config group, else the
    composed value (`null` for a key this job's config lacks)."""
    choices = OmegaConf.select(root, "hydra.runtime.choices", default=None)
    if choices is not None and key in choices:
        return str(choices[key])
    value = OmegaConf.select(root, key, default=None, throw_on_missing=False)
    if isinstance(value, (DictConfig, ListConfig)):
        return json.dumps(OmegaConf.to_container(value, resolve=True), separators=(",", ":"), sort_keys=True)
    return "null" if value is None else str(value)


def own_name(root: DictConfig, sweep_dir: Path, job_overrides: list[str], keys: set[str], excluded: set[str]) -> str:
    """The name of a job whose usual name another job holds: its overrides of KEYS, and for a key of KEYS it does
    not set (a setting only the earlier job set: `alrun ... train.lr=0.01`, then the same without it) its own
    value, so the two never share a folder; when even that name is another job's, a hash of its overrides."""
    dirname_cfg = root.hydra.job.config.override_dirname
    item_sep, kv_sep = str(dirname_cfg.item_sep), str(dirname_cfg.kv_sep)
    parts = {o.key_or_group.lstrip("+~"): o.input_line.lstrip("+~") for o in _parse(job_overrides)
             if o.key_or_group not in excluded and o.key_or_group in keys | set(ALWAYS)}
    for key in sorted(keys - set(parts) - excluded):
        parts[key] = f"{key}={_own_value(root, key)}"
    name = shortened(item_sep.join(sorted(parts.values())).replace("=", kv_sep))
    if _is_folder(sweep_dir / name) and differing_keys(sweep_dir / name, job_overrides, excluded):
        wanted = _comparable(dict(o.split("=", 1) for o in job_overrides if "=" in o), excluded)
        digest = hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:HASH_CHARS]
        name = shortened(f"{name}-{digest}")
    return name


def register() -> None:
    """Make `${alrun.job_folder:}` known to OmegaConf (idempotent)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, job_folder)
