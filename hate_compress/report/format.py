"""How numbers are written in every table the package prints (summary.md, report.md, seeds).

Shared, so a macro F1 reads `0.7921` in the run summary, the multirun report and the HTML pages
alike.
"""

from __future__ import annotations

from typing import Any


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def mean_pm_std(stats: dict | None) -> str:
    """"0.7921 ± 0.0127" ("0.7921 (1 seed)" when there is no spread to show)."""
    if not stats or stats.get("mean") is None:
        return "-"
    if stats.get("std") is None:
        return f"{stats['mean']:.4f} (1 seed)"
    return f"{stats['mean']:.4f} ± {stats['std']:.4f}"


def cell_text(value: Any) -> str:
    """`fmt(value)` made safe inside a markdown table cell."""
    return fmt(value).replace("|", "\\|").replace("\n", " ")
