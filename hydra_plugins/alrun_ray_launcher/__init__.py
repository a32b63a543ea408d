"""alrun's Ray launcher for Hydra (`hydra/launcher=ray`): see alrun/launch/ray_launch.py."""
