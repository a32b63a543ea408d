"""`python -m alrun.report FOLDER`: the report of a sweep folder written again, printed, and logged to its tracker."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alrun.core.errors import AlrunError
from alrun.report.write import write_report


def main(argv: list[str] | None = None) -> int:
    """`python -m alrun.report FOLDER [--sizes 500 1000]`: re-aggregate a sweep folder."""
    parser = argparse.ArgumentParser(prog="python -m alrun.report", description=main.__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--sizes", type=int, nargs="*", default=None, help="labelled sizes to read the table at")
    parser.add_argument("--target-accuracy", type=float, nargs="+", default=None,
                        help="report the labels each job needed to reach this test accuracy (or these)")
    parser.add_argument("--full", action="store_true",
                        help="print every table of table.md, not only the verdict and the compact table")
    parser.add_argument("--gzip", action="store_true",
                        help="write the summary as summary.csv.gz (a folder that holds one keeps it without this)")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"alrun: error: {args.folder} is not a folder.", file=sys.stderr)
        return 2
    try:
        targets = args.target_accuracy
        report = write_report(args.folder, args.sizes, targets[0] if targets and len(targets) == 1 else targets,
                              compress=True if args.gzip else None)
    except AlrunError as exc:
        print(f"alrun: error: {exc}", file=sys.stderr)
        return 2
    if report is None:
        print(f"alrun: error: no job under {args.folder} has finished a step (no steps.csv, no summary.csv).",
              file=sys.stderr)
        return 2
    from alrun.report.terminal import print_report
    from alrun.track.tracker import log_to_recorded_store

    print_report(report, args.folder, full=args.full)
    log_to_recorded_store(args.folder, report)  # a tracked sweep's parent run gets the new numbers, each once
    return 0


if __name__ == "__main__":
    sys.exit(main())
