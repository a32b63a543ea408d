"""Numbers as the verdict's sentences print them: a value that rounds to zero without a sign, an interval's
ends with the decimals they take not to read as 0."""

from __future__ import annotations

import math


def fmt(value: float, spec: str) -> str:
    text = f"{value:{spec}}"
    # a value that rounds to zero prints as 0, never as -0 (or +-0.000 read as a direction)
    return text.lstrip("+-") if float(text) == 0 else text


def bound(value: float, spec: str) -> str:
    """An interval's end: its sign kept, with the decimals it takes not to read as 0 (an end at +0.0004 is what
    makes a decision; printed 0.000 it would look like one that includes zero)."""
    text = f"{value:{spec}}"
    if float(text) != 0 or value == 0:
        return text
    decimals = int(spec.strip("+").rstrip("f").lstrip(".") or 0)
    for more in range(decimals + 1, decimals + 6):
        text = f"{value:+.{more}f}"
        if float(text) != 0:
            break
    return text


def interval(low: float, high: float, spec: str) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f" [{bound(low, spec)}, {bound(high, spec)}]"
