"""The command line read before Hydra composes: where alrun's configs are, and the one sentence for a
command that cannot work (a misspelt setting, a `_target_` beside a built-in), plus the rewrites that let
Hydra read alrun's commands as sweeps (`--multirun`, `++` for the settings of swept groups).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alrun.config.keys import config_dirs as keys_config_dirs


def config_dir() -> str:
    """configs/ inside the installed package (wheel), else beside the package (source checkout)."""
    here = Path(__file__).resolve().parents[1]  # the alrun package
    for candidate in (here / "configs", here.parent / "configs"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise RuntimeError(f"alrun's configs are missing: looked in {here / 'configs'} and {here.parent / 'configs'}")


GROUPS_WITH_TARGET = ("model", "dataset", "heuristic")  # the groups whose `custom` takes a `_target_`
EXAMPLE_TARGET = {"model": "mypkg.nets.Net", "dataset": "mypkg.data.load", "heuristic": "mypkg.acq.score"}


def builtin_choices(group: str) -> set[str]:
    """alrun's own configs of `group` (configs/<group>/*.yaml) other than `custom`."""
    return {p.stem for p in (Path(config_dir()) / group).glob("*.yaml")} - {"custom"}


def _choice_values(override: Any) -> list[str] | None:
    """The option names a group override chooses (`heuristic=custom,bald` -> custom, bald); None when they
    cannot be listed before Hydra composes (e.g. glob)."""
    try:
        if override.is_sweep_override():
            return [str(v) for v in override.sweep_string_iterator()]
        return [override.get_value_element_as_str()]
    except Exception:  # noqa: BLE001 - Hydra itself reports what it cannot read
        return None


def target_spelling_error(argv: list[str]) -> str | None:
    """The sentence for a `<group>._target_=...` that cannot work, read from the command line before Hydra
    composes (Hydra would answer "Ambiguous value", "Key '_target_' is not in struct", or apply it to the
    built-ins of a sweep): a `_target_` beside a built-in choice of its group (`heuristic=custom,bald,random
    heuristic._target_=...`, `++heuristic._target_=...` with a built-in, `model._target_=...` without
    `model=custom`). None when the command line is fine or is not one this can read (Hydra then answers).
    """
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    try:
        args, _ = get_args_parser().parse_known_args(argv)
        overrides = OverridesParser.create().parse_overrides(args.overrides or [])
    except BaseException:  # noqa: BLE001 - argparse exits on a bad flag; Hydra says what is wrong
        return None
    chosen: dict[str, list[str] | None] = {}
    targets: dict[str, str] = {}
    for override in overrides:
        key = override.key_or_group
        if override.type == OverrideType.DEL or override.package:
            continue
        if key in GROUPS_WITH_TARGET:
            chosen[key] = _choice_values(override)
        elif key.count(".") == 1 and key.split(".")[1] == "_target_" and key.split(".")[0] in GROUPS_WITH_TARGET:
            targets[key.split(".")[0]] = override.input_line.split("=", 1)[-1] if override.input_line else ""
    for group, target in targets.items():
        if group not in chosen:  # the default (or an experiment's sweep) chooses alrun's own
            values = None
        else:
            values = chosen[group]
            if values is None:
                continue
        builtins = builtin_choices(group)
        if values is not None and not set(values) & builtins:
            continue  # custom, or the user's own config files, whose `_target_` this sets
        path = target or EXAMPLE_TARGET[group]
        folder = f"conf/{group}/mine.yaml holding `name: custom` and `_target_: {path}`"
        others = [v for v in (values or []) if v != "custom"] or sorted(builtins & {"bald", "random", "mlp", "digits"})
        sweep = ",".join(["mine", *others])
        how = (f"give yours a config file of its own, e.g. {folder}, and run `alrun --config-dir conf {group}={sweep}`"
               " (docs: how-to/own-heuristic.md, Yours beside ours in one sweep)")
        if values and "custom" in values:
            return (f"`{group}._target_={target}` cannot go beside `{group}={','.join(values)}`: it would be "
                    f"set for every {group} of the sweep, so {how}.")
        now = f"{group}={','.join(values)}" if values else f"the default {group}"
        return (f"`{group}._target_={target}` is not allowed: it is read only with {group}=custom (now {now}); "
                f"add {group}=custom, or to sweep yours beside alrun's {how}.")
    return None


def config_dirs(argv: list[str]) -> list[str] | None:
    """alrun's config folder and the user's (`--config-dir`, `hydra.searchpath`): alrun.config.keys.config_dirs."""
    return keys_config_dirs(argv, config_dir())


def setting_typo_error(argv: list[str]) -> str | None:
    """The sentence for a key no config holds (`querysize=20`, `+querysize=20`, `model.hed=fc`) or an option
    with a near namesake (`heuristic=bal`), read from the command line before Hydra composes: Hydra would say
    "not in struct" and advise `+key`, which only moves the error into every job. None when all is known."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    from alrun.config.keys import Settings, unknown_option, unknown_setting

    try:
        args, _ = get_args_parser().parse_known_args(argv)
    except BaseException:  # noqa: BLE001 - argparse exits on a bad flag; Hydra says what is wrong
        return None
    parser, overrides = OverridesParser.create(), []
    for arg in args.overrides or []:  # one by one: a value Hydra cannot read (a path) leaves the others checked
        try:
            overrides.append(parser.parse_override(arg))
        except BaseException:  # noqa: BLE001 - Hydra itself says what is wrong with it
            continue
    folders = config_dirs(argv)
    settings = Settings(folders or [config_dir()])
    chosen = {o.key_or_group: _choice_values(o) or [] for o in overrides if o.key_or_group in settings.groups}
    for override in overrides:
        key = override.key_or_group
        if override.type == OverrideType.DEL or override.package or "/" in key or key.startswith("hydra"):
            continue
        group = key.split(".")[0]
        if "." in key and group in settings.groups and override.type != OverrideType.CHANGE:
            continue  # `++model.width=64`: an extra key of the user's own component, passed to it
        if key in settings.groups:
            for value in chosen[key] if folders is not None else []:  # a folder not found: Hydra's to check
                if value not in settings.groups[key] and settings.nearest_option(key, value):
                    return unknown_option(key, value, settings)
            continue  # an option with no near namesake: Hydra lists the options
        if not settings.knows(key):
            sentence = unknown_setting(key, settings)
            if group in GROUPS_WITH_TARGET and "custom" in chosen.get(group, []):
                sentence += f" (a key of your own {group}=custom goes in with `++{key}=...`)"
            return sentence
    return None


def asks_for_determinism(argv: list[str]) -> bool:
    """Whether a command line sets `deterministic` to true for any job (`deterministic=true`, or a sweep such
    as `deterministic=false,true`)."""
    for arg in argv:
        key, _, value = arg.partition("=")
        if key.lstrip("+~") == "deterministic" and "true" in value.lower():
            return True
    return False


def as_multirun(argv: list[str]) -> list[str]:
    """argv with Hydra's `--multirun` added when it names no Hydra command of its own (`-m`, `--run`, `--cfg`,
    `--info`, `--help`, ...) and does not set hydra.mode: alrun's config runs every command line as a sweep, but
    Hydra learns that from a first composition, which fails on a sweep of a group beside one of its keys
    (`heuristic=typiclust,probcover heuristic.embedding=input`), and it then says "Ambiguous value"."""
    from hydra._internal.utils import get_args_parser

    try:
        args, _ = get_args_parser().parse_known_args(argv)
    except BaseException:  # noqa: BLE001 - argparse exits on a bad flag; Hydra itself says what is wrong
        return argv
    commands = (args.multirun, args.run, args.cfg, args.info, args.shell_completion, args.help, args.hydra_help,
                args.experimental_rerun)
    if any(commands) or any(o.lstrip("+~").startswith("hydra.mode=") for o in args.overrides or []):
        return argv
    return ["--multirun", *argv]


def settings_of_swept_groups(argv: list[str]) -> list[str]:
    """argv with `G.key=value` written `++G.key=value` where the group G is swept (`G=a,b`), `_target_` aside.

    Hydra applies `G.key=value` to the sweep's first composition, made with G's default option, and stops
    there when that option lacks the key (`heuristic=typiclust,probcover heuristic.embedding=input` with the
    default bald); `++` sets it in each job's own option instead, and alrun then says in one sentence which
    option of the sweep does not take it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    parser = OverridesParser.create()
    parsed = []
    for arg in argv:
        try:
            parsed.append(parser.parse_override(arg) if "=" in arg and not arg.startswith("-") else None)
        except BaseException:  # noqa: BLE001 - Hydra itself says what is wrong with it
            parsed.append(None)
    swept = {o.key_or_group for o in parsed if o is not None and o.package is None and o.is_sweep_override()
             and "." not in o.key_or_group}
    out = []
    for arg, o in zip(argv, parsed, strict=True):
        group, _, key = (o.key_or_group.partition(".") if o is not None else ("", "", ""))
        if (o is not None and o.type == OverrideType.CHANGE and group in swept and key and key != "_target_"
                and not arg.startswith(("+", "~"))):
            arg = "++" + arg
        out.append(arg)
    return out
