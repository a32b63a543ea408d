"""config: what a job is: the schema (RunSpec and its parts, validated with one-sentence errors), the one
registry of components (built-in names and users' `_target_`s), the experiment settings a report groups by,
the keys a user can type (keys: the sentence for a misspelt one).
Imports only core. `from alrun.config import RunSpec` (alrun 0.1's path) still works."""



_SUBMODULES = frozenset(['schema', 'components', 'settings', 'keys'])


def __getattr__(name: str):
    # alrun 0.1 kept these names in alrun/config.py: they stay reachable from the package (submodules load as usual)
    if name in _SUBMODULES or name.startswith("__"):
        raise AttributeError(name)
    import importlib

    try:
        return getattr(importlib.import_module("alrun.config.schema"), name)
    except AttributeError:
        raise AttributeError(f"module 'alrun.config' has no attribute '{name}'") from None
