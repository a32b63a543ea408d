"""CI runs README.md's two commands as written: .ci/readme_commands.py reads them from the README."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / ".ci" / "readme_commands.py"

pytestmark = pytest.mark.skipif(not SCRIPT.is_file(), reason="no .ci/ here (an sdist)")


def readme_commands(readme: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(readme)], capture_output=True, text=True)


def test_ci_reads_the_readmes_two_commands_install_and_alrun_then_the_suite():
    proc = readme_commands(REPO / "README.md")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    install, tests = (shlex.split(line, comments=True) for line in lines)
    # the first installs the project with its dev extra and runs bare `alrun`; the second runs the whole suite
    assert install[:2] == ["pip", "install"] and ".[dev]" in install and install[-2:] == ["&&", "alrun"]
    # the whole suite, spread over a worker per core (pytest-xdist); a file's tests stay on one worker, so its
    # module fixtures (one sweep, many checks) run once
    assert tests == ["python", "-m", "pytest", "-n", "auto", "--dist", "loadfile"]
    run = (REPO / ".ci" / "run").read_text()
    assert "python3 .ci/readme_commands.py README.md" in run
    assert run.index('-c "${commands[0]}"') < run.index('-c "${commands[1]}"')  # in the README's order
    # a single-node SLURM for the tests marked slurm first; exit 3 (no root, no apt-get) lets CI go on
    assert run.index("bash .ci/slurm-up.sh") < run.index('-c "${commands[1]}"')
    assert '"$slurm" -eq 3' in run


def test_a_readme_without_the_block_stops_ci_with_one_line(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# alrun\n\n## Install\n\n```bash\npip install alrun\n```\n")
    proc = readme_commands(readme)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().endswith("README.md has no '## Two commands' heading")
