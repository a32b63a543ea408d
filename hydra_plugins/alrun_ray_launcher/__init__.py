"""alrun's Ray launcher for Hydra (`hydra/launcher=ray`): see alrun/ray_launch.py."""
