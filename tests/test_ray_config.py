"""`hydra/launcher=ray` without a Ray cluster (these run whether or not the `ray` extra is installed): the
config composes to alrun's launcher, Hydra's plugin scan imports it without importing ray, and a sweep that
cannot reach Ray stops with one sentence before any job."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO, THREADS, run_alrun


def test_the_config_composes_to_alruns_launcher_with_its_keys():
    from hydra import compose, initialize_config_dir

    from alrun.cli import config_dir

    overrides = ["hydra/launcher=ray", "hydra.launcher.address=10.0.0.5:6379", "hydra.launcher.num_gpus=1"]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    launcher = dict(cfg.hydra.launcher)
    assert launcher == {"_target_": "hydra_plugins.alrun_ray_launcher.ray_launcher.RayLauncher",
                        "address": "10.0.0.5:6379", "num_cpus": 1, "num_gpus": 1, "max_retries": 3}


def test_hydras_plugin_scan_imports_the_launcher_without_ray():
    code = ("import sys\n"
            "from hydra.core.plugins import Plugins\n"
            "from hydra.plugins.launcher import Launcher\n"
            "names = [p.__name__ for p in Plugins.instance().discover(Launcher)]\n"
            "print('RayLauncher' in names, 'ray' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False"]


def test_missing_ray_is_one_sentence_with_the_install_command(tmp_path):
    # a sitecustomize that hides an installed ray from this process, as if it were not installed
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "sitecustomize.py").write_text(
        "import sys\n"
        "class HideRay:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'ray' or name.startswith('ray.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, HideRay())\n")
    env = {**THREADS, "PYTHONPATH": os.pathsep.join([str(shadow), str(REPO)])}
    proc = run_alrun(["scale=smoke", "heuristic=bald", "seed=0,1", "hydra/launcher=ray",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path, check=False, env=env)
    assert proc.returncode == 2
    [line] = [x for x in proc.stderr.splitlines() if x.strip()]
    assert line == ("alrun: error: hydra/launcher=ray needs the ray package, which is not installed: "
                    "pip install 'alrun[ray]' (or pip install ray).")
    assert not list(tmp_path.rglob("job.json"))


def test_forwarded_environment():
    from alrun.launch.ray_launch import forwarded_environment

    env = {"ALRUN_DATA_DIR": "d", "MLFLOW_TRACKING_TOKEN": "t", "HOME": "/h", "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
           "CUDA_VISIBLE_DEVICES": "0"}
    assert forwarded_environment(env) == {"ALRUN_DATA_DIR": "d", "MLFLOW_TRACKING_TOKEN": "t",
                                          "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


class FakeRay:
    """ray's init as connect() calls it: `auto` finds a running cluster or not, as told."""

    def __init__(self, cluster_running: bool) -> None:
        self.cluster_running, self.calls, self.initialized = cluster_running, [], False

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, address=None, **kwargs):
        self.calls.append(address)
        if address == "auto" and not self.cluster_running:
            raise ConnectionError("Could not find any running Ray instance. Please specify the one to connect to.")
        self.initialized = True

    def cluster_resources(self):
        return {"CPU": 2.0}

    def get_runtime_context(self):
        class Context:
            gcs_address = "10.1.2.3:6379"
        return Context()


def test_auto_starts_a_local_ray_when_no_cluster_runs_and_says_so():
    """As Hydra's Ray launcher (address null) and ray.init() do: a local Ray when none runs, joined otherwise."""
    from alrun.launch.ray_launch import connect

    fake = FakeRay(cluster_running=False)
    line = connect(fake, "auto")
    assert fake.calls == ["auto", None] and "started a local Ray on this machine (2 CPUs)" in line
    fake = FakeRay(cluster_running=True)
    assert connect(fake, "auto") == "Ray: joined the running Ray cluster at 10.1.2.3:6379" and fake.calls == ["auto"]
    for local in (None, "local"):
        fake = FakeRay(cluster_running=True)
        assert "started a local Ray" in connect(fake, local) and fake.calls == [None]


def test_a_given_address_is_joined_or_refused_never_replaced_by_a_local_ray():
    import socket

    import pytest

    from alrun.core.errors import ConfigError
    from alrun.launch.ray_launch import connect

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fake = FakeRay(cluster_running=False)
    with pytest.raises(ConfigError, match="cannot join a Ray cluster at `127.0.0.1:"):
        connect(fake, f"127.0.0.1:{port}")
    assert fake.calls == []
