"""config: what a job is: the schema (RunSpec and its parts, validated with one-sentence errors), the one
registry of components (built-in names and users' `_target_`s), the experiment settings a report groups by,
the keys a user can type (keys: the sentence for a misspelt one), the command line read before Hydra
(command_line: where the configs are, the one sentence for a command that cannot work).
Imports only core. `from alrun.config import RunSpec` (alrun 0.1's path) still works."""

from alrun._aliases import names_of

_SUBMODULES = frozenset(['schema', 'components', 'settings', 'keys', 'command_line'])

# alrun 0.1 kept these names in alrun/config.py: they stay reachable from the package
__getattr__ = names_of("alrun.config", "alrun.config.schema", _SUBMODULES)
