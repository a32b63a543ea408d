"""alrun's SLURM launcher for Hydra (`hydra/launcher=slurm`): see alrun/launchers.py."""
