"""Configs are found from a built wheel, outside the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out / "dist"),
                            str(REPO)], capture_output=True, text=True)
    if build.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{build.stderr[-3000:]}")
    wheel = next((out / "dist").glob("alrun-*.whl"))
    site = out / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    return site


def test_wheel_ships_configs_and_runs(wheel_site, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(wheel_site)}
    where = subprocess.run([sys.executable, "-c", "import alrun.cli as c; print(c.__file__); print(c.config_dir())"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert where[0].startswith(str(wheel_site)) and where[1].startswith(str(wheel_site))
    assert (Path(where[1]) / "scale" / "smoke.yaml").is_file()
    # hydra/launcher=ray: its config, and the launcher class in Hydra's plugin namespace (no __init__.py there)
    assert (Path(where[1]) / "hydra" / "launcher" / "ray.yaml").is_file()
    assert (wheel_site / "hydra_plugins" / "alrun_ray_launcher" / "ray_launcher.py").is_file()
    assert (wheel_site / "hydra_plugins" / "alrun_slurm_launcher" / "slurm_launcher.py").is_file()
    assert not (wheel_site / "hydra_plugins" / "__init__.py").exists()
    proc = subprocess.run([sys.executable, "-m", "alrun", "scale=smoke", "heuristic=random", "seed=0",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (tmp_path / "sweep" / "table.md").read_text()
    assert "## test NLL" in table and "| random | " in table
