"""core: the leaves every step may use: errors (one-sentence exceptions), seeding (generators derived by name),
files (atomic writes), filelock, devices (device choice, AMP precision, GPU claims), the version.
Imports nothing of alrun outside core."""
