"""Markdown tables for reports and terminal output."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

COST_COLUMNS = [("gmacs_per_view", "GMACs/view (mean)"), ("gmacs_per_view_min", "min"),
                ("gmacs_per_view_max", "max"), ("dense_gmacs_per_view", "dense")]
"""The per-view cost columns of every results table: a dynamic model's mean, min and max over
the views evaluated and its dense cost (every decision at its largest); all equal for a static one."""


def format_cell(value: Any, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` decimals, ints with thousands separators, ``None``/NaN as ``-``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]], *,
                   digits: int = 3) -> str:
    """A GitHub-flavoured markdown table; ``columns`` are ``(key, header)`` pairs, numbers right-aligned."""
    cells = [[format_cell(row.get(key), digits) for key, _ in columns] for row in rows]
    numeric = [all(isinstance(row.get(key), (int, float)) or row.get(key) is None for row in rows) and bool(rows)
               for key, _ in columns]
    widths = [max([len(header)] + [len(line[i]) for line in cells]) for i, (_, header) in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric)) + "|"
    return "\n".join([line([header for _, header in columns]), rule, *(line(c) for c in cells)])
