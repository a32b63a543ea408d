"""The committed reference folders: their tables rebuild from summary.csv alone, and nothing the repository
ships under results/ names a path of the machine it was made on.

These tests read only what the repository ships (`git ls-files results`), never a user's own sweep beside it:
the README's first command, bare `alrun`, writes results/baseline/<time>/, whose .hydra/hydra.yaml names
absolute paths, and the README's second command, `python -m pytest`, must pass after it."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from alrun.report import SUMMARY, SUMMARY_GZ, summary_file, write_report
from tests.conftest import run_alrun

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
# an absolute path of a Unix or Windows machine (a placeholder such as PATH/TO/cifar10-jpg is fine)
ABSOLUTE = re.compile(r"(?<![\w.~$])/(work|tmp|home|Users|root|mnt|data|scratch|var|opt)/|[A-Za-z]:\\\\")
SCANNED = {".csv", ".md", ".txt", ".json", ".yaml"}


def _git_tracked(repo: Path) -> list[Path] | None:
    """The tracked files under repo/results/, or None when repo is not the top of a git checkout."""
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=repo, capture_output=True, text=True)
    except OSError:  # no git on this machine
        return None
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != repo.resolve():
        return None  # not a checkout (an sdist), or one inside someone else's repository
    listed = subprocess.run(["git", "ls-files", "-z", "--", "results"], cwd=repo, capture_output=True, text=True)
    if listed.returncode != 0:
        return None
    # a tracked file deleted in the work tree is listed too; there is nothing of it to read
    return sorted(p for p in (repo / name for name in listed.stdout.split("\0") if name) if p.is_file()) or None


def committed_results(repo: Path) -> list[Path]:
    """The files under repo/results/ that the repository ships, never a user's sweep beside them.

    In a git checkout the tracked ones (`git ls-files results`); without git (an sdist) results/reference/
    and the top-level README, tables and script of results/, where a sweep never writes."""
    tracked = _git_tracked(repo)
    if tracked is not None:
        return tracked
    results = repo / "results"
    shipped = [p for p in results.iterdir() if p.is_file() and p.suffix in {".md", ".py"}]
    return sorted(shipped + [p for p in (results / "reference").rglob("*") if p.is_file()])


def reference_folders(repo: Path) -> list[Path]:
    """The committed reference folders: those of results/reference/ with a committed summary.csv (or .csv.gz)."""
    reference = repo / "results" / "reference"
    return sorted({p.parent for p in committed_results(repo)
                   if p.name in (SUMMARY, SUMMARY_GZ) and p.parent.parent == reference})


def machine_paths(repo: Path) -> dict[str, list[str]]:
    """Each committed result file that names an absolute path, with the first few it names."""
    found = {}
    for path in committed_results(repo):
        if path.suffix in SCANNED or path.suffixes[-2:] == [".csv", ".gz"]:
            text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
            hits = ABSOLUTE.findall(text)
            if hits:
                found[str(path.relative_to(repo / "results"))] = hits[:3]
    return found


FOLDERS = reference_folders(REPO)


def test_every_reference_study_is_there():
    assert {p.name for p in FOLDERS} >= {"noise_cpu", "imbalance_cpu", "query_size_cpu", "pool_size_cpu",
                                         "convergence_cpu", "noise_cpu_paper_sizes", "imbalance_cpu_paper_sizes",
                                         "cold_start_laptop", "mnist_batchbald", "cold_start_cpu",
                                         "query_size_badge_cpu", "noise_memorise_cpu", "noise_frozen_cpu"}


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_reference_tables_rebuild_from_summary_alone(folder, tmp_path):
    copy = tmp_path / folder.name
    copy.mkdir()
    summary = summary_file(folder)
    shutil.copy(summary, copy / summary.name)
    report = write_report(copy)
    assert report is not None
    assert [p.name for p in copy.glob("summary.csv*")] == [summary.name]  # the folder keeps its summary's form
    assert (copy / summary.name).read_bytes() == summary.read_bytes()
    # the committed tables are what the report makes of the committed summary today
    assert (copy / "table.md").read_text() == (folder / "table.md").read_text()
    pd.testing.assert_frame_equal(pd.read_csv(copy / "table.csv"), pd.read_csv(folder / "table.csv"))
    assert "AUBC" in report.markdown
    if "random" in set(report.summary["heuristic"]):  # pool_size_cpu runs BALD only
        assert "against Random, paired by seed" in report.markdown


def test_no_machine_path_in_results():
    assert committed_results(REPO), "no committed file found under results/"
    assert machine_paths(REPO) == {}, "committed result files name absolute paths of a machine"


def test_readme_order_a_users_sweep_beside_the_reference_results(tmp_path):
    """The README's two commands in order on a fresh clone: a sweep of the user's own lands in results/
    (`alrun scale=smoke` here, bare `alrun` at smoke scale), and the result-reading tests still pass, in a
    git checkout and without git (an sdist)."""
    clone = tmp_path / "clone"
    for path in committed_results(REPO):
        copy = clone / path.relative_to(REPO)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, copy)
    shutil.copy(REPO / ".gitignore", clone / ".gitignore")
    has_git = shutil.which("git") is not None
    if has_git:
        subprocess.run(["git", "init", "-q"], cwd=clone, check=True)
        subprocess.run(["git", "add", "results", ".gitignore"], cwd=clone, check=True)
    run_alrun(["scale=smoke"], cwd=clone)
    # the user's sweep is there, untracked, and its Hydra files name this machine's paths
    sweeps = list((clone / "results" / "baseline").glob("*/*/.hydra/hydra.yaml"))
    assert sweeps and all(ABSOLUTE.search(p.read_text()) for p in sweeps)
    expected = [p.relative_to(REPO) for p in FOLDERS]
    for mode in ("git", "no git") if has_git else ("no git",):
        if mode == "no git":
            shutil.rmtree(clone / ".git", ignore_errors=True)
        files = committed_results(clone)
        assert files and not any("baseline" in p.relative_to(clone).parts for p in files), mode
        assert machine_paths(clone) == {}, mode
        assert [p.relative_to(clone) for p in reference_folders(clone)] == expected, mode


def test_readme_side_by_side_is_what_the_summaries_give():
    """results/README.md's comparison with the paper is generated from the committed summary.csv files."""
    from alrun.report import side_by_side as module

    assert module.RESULTS_DIR == RESULTS
    readme = (RESULTS / "README.md").read_text()
    block = readme.split(module.START)[1].split(module.END)[0]
    assert block.strip() == module.render().strip()
    assert "Table 1" in block and "Table 2" in block and "Table 3" in block and "Holds" in block
