"""The report's figures: where each model sits on the F1/cost trade-off, and the matrix at a glance.

Kept apart from the other report modules so the callback Hydra instantiates for every run never imports
matplotlib; the notebook (`notebooks/analysis.ipynb`) draws with the same functions on rows read
back from report.csv, so the figures in the report and in the notebook cannot drift apart.

Rows are dicts as in report.csv (`df.to_dict("records")` works: NaN counts as missing).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ARROW = "→"


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _finished(row: Mapping) -> bool:
    return row.get("status") == "ok"


def pareto_front(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both axes (lower x = cheaper, higher y = better), by x.

    A point is dropped only if another is at least as cheap AND strictly better, or strictly
    cheaper and as good: equal points both stay, since neither is a reason to drop the other.
    """
    pts = sorted(set(points), key=lambda p: (p[0], -p[1]))
    front: list[tuple[float, float]] = []
    best = -math.inf
    for x, y in pts:
        if y > best:
            front.append((x, y))
            best = y
    return front


def _label_offsets(points: list[tuple[float, float]], step: float = 9.0) -> list[float]:
    """Vertical label offsets (points) so labels of models that land on (almost) the same spot
    stack instead of printing over each other — common when students tie on F1."""
    if not points:
        return []
    spans = [max(p[k] for p in points) - min(p[k] for p in points) or 1.0 for k in (0, 1)]
    placed: list[tuple[float, float, float]] = []
    offsets = []
    for x, y in points:
        dy = 0.0
        while any(abs(x - px) / spans[0] < 0.3 and abs(y - py) / spans[1] < 0.05 and dy == pdy
                  for px, py, pdy in placed):
            dy += step
        placed.append((x, y, dy))
        offsets.append(dy)
    return offsets


def plot_pareto(ax, rows: Iterable[Mapping], x: str, xlabel: str, y: str = "macro_f1",
                ylabel: str = "macro F1") -> list[Mapping]:
    """Scatter of finished models with the Pareto front drawn; returns the rows on the front."""
    pts, references = [], []
    for row in rows:
        xv, yv = _num(row.get(x)), _num(row.get(y))
        if row.get("kind") == "baseline":  # a reference line, not a candidate on the front
            if _finished(row) and yv is not None:
                references.append((yv, row))
        elif _finished(row) and xv is not None and yv is not None and xv > 0:
            pts.append((xv, yv, row))
    for yv, row in references:
        ax.axhline(yv, linestyle="--", color="tab:gray", linewidth=1, zorder=1,
                   label=str(row.get("label") or "baseline"))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if not pts:
        ax.text(0.5, 0.5, f"no finished model has {x} and {y}", ha="center", va="center",
                transform=ax.transAxes)
        return []
    front = pareto_front((p[0], p[1]) for p in pts)
    on_front = set(front)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    log_x = min(xs) > 0 and max(xs) / min(xs) > 20
    offsets = _label_offsets([(math.log(x) if log_x else x, y) for x, y in zip(xs, ys)])
    for (xv, yv, row), dy in zip(pts, offsets):
        teacher = row.get("kind") == "teacher"
        ax.scatter(xv, yv, marker="s" if teacher else "o", s=60 if teacher else 45,
                   c="tab:red" if (xv, yv) in on_front else "tab:blue",
                   edgecolors="black", linewidths=0.5, zorder=3)
        ax.annotate(str(row.get("label") or row.get("cell")), (xv, yv), textcoords="offset points",
                    xytext=(5, 4 + dy), fontsize=7)
    if len(front) > 1:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:red",
                alpha=0.6, zorder=2, label="Pareto front")
    else:
        ax.plot([], [], color="tab:red", label="Pareto front")
    ax.scatter([], [], marker="s", c="white", edgecolors="black", label="teacher")
    ax.scatter([], [], marker="o", c="white", edgecolors="black", label="student")
    if log_x:
        ax.set_xscale("log")
    ax.legend(fontsize=7, loc="best")
    return [row for xv, yv, row in pts if (xv, yv) in on_front]


def matrix(rows: Iterable[Mapping], value: str) -> tuple[list[str], list[str], list[list[Any]]]:
    """teacher x student grid of `value`; each pair shows its finished cell with the best *dev*
    macro F1 (other swept settings, e.g. several kd methods, collapse to their best; choosing on
    test would report a selected, optimistic test score), or "failed" if none finished."""
    cells = [r for r in rows if r.get("kind") == "cell" and r.get("student")
             and isinstance(r.get("student"), str)]
    teachers = list(dict.fromkeys(str(r.get("teacher")) for r in cells))
    students = list(dict.fromkeys(str(r.get("student")) for r in cells))
    grid: list[list[Any]] = [[None] * len(students) for _ in teachers]
    best: dict[tuple[int, int], float] = {}
    for r in cells:
        i, j = teachers.index(str(r.get("teacher"))), students.index(str(r.get("student")))
        f1 = _num(r.get("dev_macro_f1"))
        if _finished(r) and f1 is not None:
            if f1 > best.get((i, j), -math.inf):
                best[(i, j)] = f1
                grid[i][j] = _num(r.get(value))
        elif (i, j) not in best:
            grid[i][j] = "failed"
    return teachers, students, grid


def plot_heatmap(ax, rows: Iterable[Mapping], value: str, title: str, fmt: str = "{:.3f}",
                 cmap: str = "viridis") -> None:
    import numpy as np

    teachers, students, grid = matrix(list(rows), value)
    ax.set_title(title)
    if not teachers:
        ax.text(0.5, 0.5, "no teacher→student cells", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return
    data = np.array([[v if isinstance(v, float) else np.nan for v in line] for line in grid])
    image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, aspect="auto")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(len(students)), students, rotation=30, ha="right")
    ax.set_yticks(range(len(teachers)), teachers)
    ax.set_xlabel("student")
    ax.set_ylabel("teacher")
    finite = data[np.isfinite(data)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i, line in enumerate(grid):
        for j, v in enumerate(line):
            if isinstance(v, float):
                text, color = fmt.format(v), "white" if v < mid else "black"
            else:
                text, color = ("failed" if v == "failed" else "-"), "tab:red"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=9)


def draw_all(rows: list[Mapping], out: Path, files: Mapping[str, str]) -> dict[str, str]:
    """Write every figure of the report into `out`; returns {plot name: file name}."""
    # a bare Figure, not pyplot: no global backend switch (headless nodes, a caller's notebook)
    from matplotlib.figure import Figure

    specs = {
        "pareto_size": lambda ax: (plot_pareto(ax, rows, "size_mb", "size on disk (MB)"),
                                   ax.set_title("macro F1 vs size")),
        "pareto_latency": lambda ax: (plot_pareto(ax, rows, "latency_ms_b1",
                                                  "CPU latency, batch 1 (ms)"),
                                      ax.set_title("macro F1 vs latency (b1)")),
        "heatmap_f1": lambda ax: plot_heatmap(ax, rows, "macro_f1", "macro F1 (teacher x student)"),
        "heatmap_speedup": lambda ax: plot_heatmap(ax, rows, "speedup_b1",
                                                   "speedup vs teacher, b1 (teacher x student)",
                                                   fmt="{:.2f}x", cmap="magma"),
    }
    written = {}
    for name, draw in specs.items():
        fig = Figure(figsize=(7, 5) if name.startswith("pareto") else (6, 4.5))
        draw(fig.subplots())
        fig.tight_layout()
        fig.savefig(Path(out) / files[name], dpi=110)
        written[name] = files[name]
    return written


def plot_class_change(ax, changes: Mapping[str, Mapping[str, float]]) -> None:
    """Grouped bars of per-class F1 change vs the teacher, one colour per stage (or cell): the
    classes a compressed model forgets stand out as long bars below zero."""
    import numpy as np

    series = {name: dict(values) for name, values in changes.items() if values}
    classes = list(dict.fromkeys(c for values in series.values() for c in values))
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel("F1 change vs teacher")
    ax.set_title("per-class F1 change vs teacher")
    if not classes:
        ax.text(0.5, 0.5, "no per-class F1 change recorded", ha="center", va="center",
                transform=ax.transAxes)
        return
    width = 0.8 / len(series)
    x = np.arange(len(classes))
    for k, (name, values) in enumerate(series.items()):
        heights = [values.get(c, np.nan) for c in classes]
        ax.bar(x - 0.4 + width * (k + 0.5), heights, width, label=name)
    ax.set_xticks(x, classes, rotation=30 if len(classes) > 4 else 0, ha="right"
                  if len(classes) > 4 else "center")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
