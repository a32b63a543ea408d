"""The committed reference folders: their tables rebuild from summary.csv alone, and nothing in results/
names a path of the machine they were made on."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from alrun.report import write_report

RESULTS = Path(__file__).resolve().parents[1] / "results"
FOLDERS = sorted(p for p in (RESULTS / "reference").iterdir() if (p / "summary.csv").is_file())
# an absolute path of a Unix or Windows machine (a placeholder such as PATH/TO/cifar10-jpg is fine)
ABSOLUTE = re.compile(r"(?<![\w.~$])/(work|tmp|home|Users|root|mnt|data|scratch|var|opt)/|[A-Za-z]:\\\\")


def test_every_reference_study_is_there():
    assert {p.name for p in FOLDERS} >= {"noise_cpu", "imbalance_cpu", "query_size_cpu", "pool_size_cpu",
                                         "convergence_cpu", "noise_cpu_paper_sizes", "imbalance_cpu_paper_sizes"}


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_reference_tables_rebuild_from_summary_alone(folder, tmp_path):
    copy = tmp_path / folder.name
    copy.mkdir()
    shutil.copy(folder / "summary.csv", copy / "summary.csv")
    report = write_report(copy)
    assert report is not None
    # the committed tables are what the report makes of the committed summary today
    assert (copy / "table.md").read_text() == (folder / "table.md").read_text()
    pd.testing.assert_frame_equal(pd.read_csv(copy / "table.csv"), pd.read_csv(folder / "table.csv"))
    assert "AUBC" in report.markdown
    if "random" in set(report.summary["heuristic"]):  # pool_size_cpu runs BALD only
        assert "against Random, paired by seed" in report.markdown


def test_no_machine_path_in_results():
    for path in sorted(RESULTS.rglob("*")):
        if path.suffix in {".csv", ".md", ".txt", ".json", ".yaml"}:
            hits = ABSOLUTE.findall(path.read_text())
            assert not hits, f"{path.relative_to(RESULTS)} names an absolute path ({hits[:3]})"


def test_readme_side_by_side_is_what_the_summaries_give():
    """results/README.md's comparison with the paper is generated from the committed summary.csv files."""
    spec = importlib.util.spec_from_file_location("side_by_side", RESULTS / "side_by_side.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = (RESULTS / "README.md").read_text()
    block = readme.split(module.START)[1].split(module.END)[0]
    assert block.strip() == module.render().strip()
    assert "Table 1" in block and "Table 2" in block and "Table 3" in block and "Holds" in block
