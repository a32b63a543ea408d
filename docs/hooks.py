"""MkDocs hook: the committed plots of results/reference/*/ become files of the site, so the study pages show
them without copying them into docs/ (the tables come in through pymdownx.snippets)."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

REFERENCE = Path("results") / "reference"


def on_files(files, config):
    for plot in sorted(REFERENCE.glob("*/curves.png")):
        files.append(File.generated(config, f"studies/reference/{plot.parent.name}-curves.png",
                                    abs_src_path=str(plot.resolve())))
    return files
