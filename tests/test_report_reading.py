"""table.md and curves.png as a reader meets them: what the sweep held fixed, integers as integers, one panel row
per setting when more than the heuristic varies."""

from __future__ import annotations

import matplotlib.pyplot as plt

from alrun.report import write_report
from alrun.report.plot import split_keys
from tests.test_report import write_job


def grid_sweep(folder, query_sizes=(10.0, 20.0), lambdas=(0.0, 0.05)):
    for q in query_sizes:  # floats, as a column read back from CSV holds them
        for lam in lambdas:
            for heuristic in ("bald", "random"):
                for seed in (0, 1):
                    write_job(folder, heuristic, seed, [2.0, 1.4 + 0.1 * seed, 1.0 - lam],
                              extra={"query_size": q, "lambda": lam})


def test_table_says_what_was_held_fixed_right_after_the_verdict(tmp_path):
    grid_sweep(tmp_path, query_sizes=(20.0,))
    md = write_report(tmp_path).markdown
    line = next(x for x in md.splitlines() if x.startswith("Held fixed in this sweep:"))
    assert "dataset=digits" in line and "model=mlp" in line and "query_size=20," in line and "epochs=5" in line
    assert "lambda" not in line  # it varies: it is a column of the tables
    assert md.index("## Verdict") < md.index("Held fixed") < md.index("## test NLL")


def test_whole_numbers_print_as_integers(tmp_path):
    grid_sweep(tmp_path)
    md = write_report(tmp_path).markdown
    assert "| lambda | query_size | heuristic |" in md
    assert "| 0 | 10 | bald |" in md and "| 0.05 | 20 | random |" in md
    assert "20.0" not in md and "| 0.0 |" not in md and "query_size=10.0" not in md


def test_curves_get_a_row_of_panels_per_setting_when_more_than_the_heuristic_varies(tmp_path):
    assert split_keys(["lambda", "query_size", "heuristic"]) == ("heuristic", ["lambda", "query_size"])
    assert split_keys(["heuristic"]) == ("heuristic", [])
    assert split_keys(["lambda"]) == ("lambda", [])
    grid_sweep(tmp_path / "grid")
    write_report(tmp_path / "grid")
    grid_sweep(tmp_path / "one", query_sizes=(20.0,), lambdas=(0.0,))
    write_report(tmp_path / "one")
    tall = plt.imread(tmp_path / "grid" / "curves.png").shape
    flat = plt.imread(tmp_path / "one" / "curves.png").shape
    assert tall[0] > 3 * flat[0]  # four rows of panels against one
    assert abs(tall[1] - flat[1]) < 0.1 * flat[1]  # the same two metric columns and the legend beside them
