"""loop: the active-learning job, the only state between steps: the active set (labelled | pool), the labelled
sets it starts from, the checkpoint and resume. Imports acquire, train, model, data, config, core.
`from alrun.loop import ActiveLearningJob` (alrun 0.1's path) still works."""

from alrun._aliases import names_of

_SUBMODULES = frozenset(['job', 'active_set', 'labelled_sets', 'checkpoint'])

# alrun 0.1 kept these names in alrun/loop.py: they stay reachable from the package
__getattr__ = names_of("alrun.loop", "alrun.loop.job", _SUBMODULES)
