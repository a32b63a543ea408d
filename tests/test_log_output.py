"""Readable in a log: when stdout and stderr are not a terminal (a SLURM log, CI, `| tee`), no progress
line and no table cell is broken: one line per step, tables at the width of their content, or `COLUMNS`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, THREADS

# one full line per step: "<job>: step 3/4, labelled 40, test NLL 2.097, accuracy 0.373"
PROGRESS = re.compile(r"^.*: step \d+/\d+, labelled \d+, test NLL [\d.]+, accuracy [\d.]+$")
BOX = re.compile(r"[\u2500-\u257f]")  # rich's table borders
VERTICAL = "│┃║|"
# what would make rich think the output is a terminal, or set its width
TERMINAL_ENV = ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS")


def run_in_log(args: list[str], cwd: Path, columns: int | None = None) -> subprocess.CompletedProcess:
    """`python ARGS` with stdout and stderr captured (not a terminal), COLUMNS only when given."""
    env = {k: v for k, v in os.environ.items() if k not in TERMINAL_ENV}
    env.update(THREADS, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", ALRUN_DATA_DIR=str(cwd / "data"))
    if columns is not None:
        env["COLUMNS"] = str(columns)
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def tables(text: str) -> list[list[str]]:
    """The tables printed in TEXT: runs of lines that start with a border character."""
    found: list[list[str]] = []
    previous = False
    for line in text.splitlines():
        is_table = bool(line) and BOX.match(line) is not None
        if is_table and not previous:
            found.append([])
        if is_table:
            found[-1].append(line)
        previous = is_table
    return found


def assert_no_broken_cell(text: str) -> None:
    """Every table line starts and ends with a border; no cell folds onto a second line (a folded cell leaves a
    line whose first cell is blank, or a bracket open in one line and closed in the next)."""
    for line in text.splitlines():
        if any(c in line for c in "│┃"):
            assert BOX.match(line), f"a table line broken before its border: {line!r}"
    found = tables(text)
    assert found, text
    for table in found:
        assert len({len(line) for line in table}) == 1, "\n".join(table)  # one width for the whole table
        for line in table:
            assert BOX.match(line[-1]), f"a table line broken before its border: {line!r}"
            if line[0] in VERTICAL:  # a row (header or body) rather than a rule
                cells = [c.strip() for c in re.split(f"[{VERTICAL}]", line)[1:-1]]
                assert cells[0], f"a cell folded onto a second line: {line!r}"
                for cell in cells:
                    assert cell.count("[") == cell.count("]") and cell.count("(") == cell.count(")"), line


def test_a_sweep_in_a_log_has_one_line_per_step_and_whole_table_cells(tmp_path):
    # every table of table.md (report.full_tables): the widest output a log gets
    proc = run_in_log(["-m", "alrun", "scale=smoke", "heuristic=bald,random", "seed=0,1", "report.full_tables=true",
                       f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    steps = [line for line in proc.stderr.splitlines() if ": step " in line]
    assert len(steps) == 4 * 4, proc.stderr  # 4 jobs, 4 steps each (20 to 50 labels by 10)
    for line in steps:
        assert PROGRESS.match(line), f"a progress line broken: {line!r}"
    # nothing of a progress line spilled onto the next one (rich used to break before "accuracy")
    assert not [line for line in proc.stderr.splitlines() if re.match(r"^(accuracy )?[\d.]+$", line.strip())]
    assert_no_broken_cell(proc.stdout)
    assert "against Random, paired by seed" in proc.stdout
    # the verdict: one line per heuristic, whole
    verdict = [line for line in proc.stdout.splitlines() if line.startswith("- bald: ")]
    assert len(verdict) == 1 and verdict[0].endswith(".")
    # the paired cells, each on one line of its row
    assert re.search(r"│ [+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\] p=\d\.\d{3}", proc.stdout), proc.stdout


def test_columns_sets_the_width_of_the_tables_in_a_log(tmp_path):
    """A reference study's report read again: at its content's width without COLUMNS; with COLUMNS=100,
    every table whose content fits 100 columns is the same, and none is wider than 100."""
    folder = tmp_path / "noise_cpu"
    folder.mkdir()
    shutil.copy(REPO / "results" / "reference" / "noise_cpu" / "summary.csv", folder / "summary.csv")
    out = run_in_log(["-m", "alrun.report", str(folder)], cwd=tmp_path).stdout
    assert_no_broken_cell(out)
    natural = tables(out)
    narrow = tables(run_in_log(["-m", "alrun.report", str(folder)], cwd=tmp_path, columns=100).stdout)
    assert len(narrow) == len(natural)
    for wide, fitted in zip(natural, narrow, strict=True):
        assert max(len(line) for line in fitted) <= 100
        if len(wide[0]) <= 100:
            assert fitted == wide
