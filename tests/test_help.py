"""`alrun --help`: what alrun is, the README's two commands, four example lines that compose, then
Hydra's listing of the config groups (configs/hydra/help/alrun.yaml)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def help_text() -> str:
    proc = subprocess.run([sys.executable, "-m", "alrun", "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def examples(text: str) -> list[list[str]]:
    """The overrides of each `alrun ...` example line of the help."""
    block = text.split("Examples:\n", 1)[1].split("\n\n", 1)[0]
    return [line.split("#")[0].split()[1:] for line in block.splitlines() if line.strip().startswith("alrun ")]


def test_help_opens_with_alrun_and_the_two_commands(help_text):
    assert help_text.startswith("alrun runs Bayesian deep active-learning experiments")
    assert "powered by Hydra" not in help_text
    readme = (REPO / "README.md").read_text()
    for command in ('pip install -e ".[dev]" && alrun', "python -m pytest"):
        assert command in help_text and command in readme
    assert len(examples(help_text)) == 4


def test_help_lists_the_config_groups_and_the_config(help_text):
    for group in ("dataset", "model", "heuristic", "scale", "experiment", "tracker"):
        options = sorted(p.stem for p in (REPO / "configs" / group).glob("*.yaml"))
        assert re.search(rf"^{group}: {', '.join(options)}$", help_text, re.M)
    assert "== Config ==" in help_text and "query_size: 20" in help_text
    assert help_text.index("Examples:") < help_text.index("== Configuration groups ==")


def test_help_examples_compose(help_text):
    """Each example's overrides (a sweep's first value) compose into a config alrun accepts."""
    from hydra import compose, initialize_config_dir

    from alrun.cli import config_dir
    from alrun.config.schema import run_spec_from_dict

    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the `cluster` extra is not installed")
    from omegaconf import OmegaConf

    for overrides in examples(help_text):
        first = [o.split(",")[0] for o in overrides]
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose("config", overrides=first, return_hydra_config=True)
        for override in first:  # each group names the option it chose (hydra/launcher=slurm: slurm)
            key, value = override.lstrip("+").split("=", 1)
            if key.split("/")[-1] in ("experiment", "launcher", "heuristic", "model", "dataset"):
                assert cfg.hydra.runtime.choices[key] == value
        plain = OmegaConf.to_container(cfg, resolve=False)
        plain.pop("hydra")
        run_spec_from_dict(OmegaConf.to_container(OmegaConf.create(plain), resolve=True))
