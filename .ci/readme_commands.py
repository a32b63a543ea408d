"""Print the command lines of README.md's "Two commands" block, one a line, exactly as written there.

.ci/run runs what this prints, so CI checks what a newcomer types and the two cannot drift apart."""

from __future__ import annotations

import sys
from pathlib import Path

HEADING = "## Two commands"


def commands(readme: str) -> list[str]:
    """The non-empty, non-comment lines of the first ```bash block after the "Two commands" heading."""
    _, found, after = readme.partition(f"\n{HEADING}\n")
    if not found:
        raise ValueError(f"README.md has no '{HEADING}' heading")
    _, found, block = after.partition("```bash\n")
    if not found or "```" not in block:
        raise ValueError(f"README.md's '{HEADING}' section has no ```bash block")
    lines = block.split("```", 1)[0].splitlines()
    return [line.rstrip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else "README.md")
    try:
        lines = commands(path.read_text())
    except (OSError, ValueError) as error:
        print(f"{path}: {error}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
