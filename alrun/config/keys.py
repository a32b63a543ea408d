"""The settings a user can type, read from alrun's config files, and the sentence for one that is not among them.

Hydra answers a misspelt key with "Key 'querysize' is not in struct ... To append to your config use
+querysize=20", advice that only moves the error into the job. The names here are the config's own (the
paper's `lambda`, `delta`), never RunSpec's field names, and the nearest one is offered (difflib).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

# a config file's first lines name its package; `_global_` files (scales, experiments) set root keys
GLOBAL_PACKAGE = "# @package _global_"
# groups that are Hydra's own, not settings of a job
NOT_SETTINGS = ("hydra",)


def _dotted(tree: Any, prefix: str = "") -> set[str]:
    """Every key of a nested mapping, inner ones included (`train`, `train.lr`)."""
    keys: set[str] = set()
    if not isinstance(tree, dict):
        return keys
    for key, value in tree.items():
        if key == "defaults" or key in NOT_SETTINGS:
            continue
        dotted = f"{prefix}{key}"
        keys.add(dotted)
        keys |= _dotted(value, f"{dotted}.")
    return keys


def _read(path: Path) -> tuple[bool, set[str]]:
    """(whether the file sets root keys, its keys)."""
    text = path.read_text()
    tree = OmegaConf.to_container(OmegaConf.create(text), resolve=False) if text.strip() else {}
    return GLOBAL_PACKAGE in text.split("\n", 3)[0:3], _dotted(tree)


class Settings:
    """The keys and config groups of one or more config folders (alrun's own first, then the user's
    `--config-dir`): `root` holds the dotted keys of the root config and of `_global_` files, `groups` each
    group's options with their keys."""

    def __init__(self, folders: Iterable[str | Path]) -> None:
        self.root: set[str] = set()
        self.groups: dict[str, dict[str, set[str]]] = {}
        for folder in map(Path, folders):
            if (folder / "config.yaml").is_file():
                self.root |= _read(folder / "config.yaml")[1]
            for group_dir in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
                if group_dir.name in NOT_SETTINGS:
                    continue
                options = self.groups.setdefault(group_dir.name, {})
                for path in sorted(group_dir.glob("*.yaml")):
                    is_global, keys = _read(path)
                    if is_global:
                        self.root |= keys
                        options.setdefault(path.stem, set())
                    else:
                        options.setdefault(path.stem, set()).update(keys)

    def knows(self, key: str) -> bool:
        """Whether `key` (dotted, without `+`) is a setting of some config: a root key, a group, or a key of
        one of the group's options. Which option is chosen is Hydra's to check."""
        if key in self.root or key in self.groups or key.split(".")[0] in NOT_SETTINGS:
            return True
        group, _, rest = key.partition(".")
        return group in self.groups and any(rest in keys for keys in self.groups[group].values())

    def every_key(self) -> set[str]:
        """Every name a user can type: root keys, groups, `group.key`."""
        keys = set(self.root) | set(self.groups)
        for group, options in self.groups.items():
            keys |= {f"{group}.{k}" for option_keys in options.values() for k in option_keys}
        return keys

    def nearest(self, key: str) -> str | None:
        """The known setting nearest to a misspelt `key`: by the whole dotted key, else by its last part
        (`lr` -> `train.lr`)."""
        every = sorted(self.every_key())
        close = difflib.get_close_matches(key, every, n=1, cutoff=0.6)
        if close:
            return close[0]
        leaf = key.split(".")[-1]
        by_leaf: dict[str, str] = {}
        for known in every:  # the shortest key ending in each leaf (`train.lr`, not `hydra...lr`)
            by_leaf.setdefault(known.split(".")[-1], known)
        close = difflib.get_close_matches(leaf, sorted(by_leaf), n=1, cutoff=0.75)
        return by_leaf[close[0]] if close else None

    def nearest_option(self, group: str, value: str) -> str | None:
        """The option of `group` nearest to a misspelt `value` (`heuristic=bal` -> bald)."""
        close = difflib.get_close_matches(value, sorted(self.groups.get(group, {})), n=1, cutoff=0.6)
        return close[0] if close else None


def unknown_setting(key: str, settings: Settings) -> str:
    """The one sentence for a key no config holds."""
    near = settings.nearest(key)
    if near is not None:
        return f"unknown setting `{key}`: did you mean `{near}`?"
    return f"unknown setting `{key}`: `alrun --cfg job` prints every setting a job has."


def unknown_option(group: str, value: str, settings: Settings) -> str:
    """The one sentence for an option no config folder holds (`heuristic=bal`)."""
    options = sorted(settings.groups.get(group, {}))
    near = settings.nearest_option(group, value)
    if near is not None:
        return f"unknown {group} `{value}`: did you mean `{near}`? ({group}s: {', '.join(options)})"
    return f"unknown {group} `{value}`: choose one of {', '.join(options)}."


def _search_dir(entry: str) -> str | None:
    """A `hydra.searchpath` entry as a folder (`pkg://mypkg.conf`, `file://conf`, `conf`); None when it cannot
    be found here."""
    import importlib.util

    entry = entry.strip().strip("'\"")
    if entry.startswith("pkg://"):
        top, *rest = entry[len("pkg://"):].split(".")
        try:
            found = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return None
        if found is None or not found.submodule_search_locations:
            return None
        return str(Path(list(found.submodule_search_locations)[0], *rest))
    return entry.removeprefix("file://")


def config_dirs(argv: list[str], base: str) -> list[str] | None:
    """alrun's config folder `base` and the user's (`--config-dir`/`-cd`, `hydra.searchpath=[...]`), where their
    options live; None when one of them cannot be found before Hydra looks (then only keys are checked)."""
    dirs = [base]
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            dirs.append(argv[i + 1])
        elif arg.startswith("--config-dir="):
            dirs.append(arg.split("=", 1)[1])
        elif arg.lstrip("+").startswith("hydra.searchpath="):
            for entry in arg.split("=", 1)[1].strip("[]").split(","):
                folder = _search_dir(entry) if entry.strip() else None
                if folder is None or not Path(folder).is_dir():
                    return None
                dirs.append(folder)
    return dirs
