"""loop: the active-learning job, the only state between steps: the active set (labelled | pool), the labelled
sets it starts from, the checkpoint and resume. Imports acquire, train, model, data, config, core.
`from alrun.loop import ActiveLearningJob` (alrun 0.1's path) still works."""



_SUBMODULES = frozenset(['job', 'active_set', 'labelled_sets', 'checkpoint'])


def __getattr__(name: str):
    # alrun 0.1 kept these names in alrun/loop.py: they stay reachable from the package (submodules load as usual)
    if name in _SUBMODULES or name.startswith("__"):
        raise AttributeError(name)
    import importlib

    try:
        return getattr(importlib.import_module("alrun.loop.job"), name)
    except AttributeError:
        raise AttributeError(f"module 'alrun.loop' has no attribute '{name}'") from None
