"""alrun's SLURM launcher for Hydra (`hydra/launcher=slurm`): see alrun/launch/launchers.py."""
