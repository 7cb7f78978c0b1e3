"""Plain-text rendering shared by every report of the package (pure Python: no torch)."""

from __future__ import annotations

import math

from typing import Sequence

__all__ = ["table"]


def table(rows: Sequence[Sequence[str]]) -> str:
    """``rows`` as left-aligned columns two spaces apart, the first row a header underlined with dashes.

    >>> print(table([("layer", "slope"), ("input", "+0.50"), ("readout", "-1")]))
    layer    slope
    -------  -----
    input    +0.50
    readout  -1
    """
    if not rows:
        raise ValueError("rows: expected a header row at least, got none")
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def signed(x: float, digits: int = 2) -> str:
    """A slope as the reports print it: with its sign, ``digits`` decimals, ``+inf``/``-inf``, and ``n/a`` for NaN."""
    return "n/a" if math.isnan(x) else f"{x:+.{digits}f}"
