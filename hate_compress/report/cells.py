"""Reading a multirun directory: every cell's metrics.json and what its directory says about it.

A cell that failed before it recorded its names (a config error) still gets them from its
saved config, so it shows up in the report as a failed row instead of a silent gap.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hate_compress.errors import HateCompressError


class ReportError(HateCompressError):
    """Nothing to report on: a wrong directory, or a sweep that wrote no metrics.json."""


# ---------------------------------------------------------------------------------------------
# reading the cells


def _natural(path: Path) -> list:
    """Cell 10 sorts after cell 9, as Hydra numbered them."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.as_posix())]


def find_cells(root: Path) -> list[Path]:
    """Every directory below `root` holding a metrics.json, in sweep order.

    Searching recursively lets one report cover `multirun/` (several sweeps) as well as one
    sweep directory or a single run directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise ReportError(f"{root}: no such directory")
    cells = sorted((p.parent for p in root.rglob("metrics.json") if p.is_file()),
                   key=lambda p: _natural(p.relative_to(root)))
    if not cells:
        raise ReportError(f"{root}: no metrics.json found below it (is this a multirun directory?)")
    return cells


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        from omegaconf import OmegaConf

        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:  # a half-written file must not hide the rest of the sweep
        return None


def _config_names(cell: Path) -> dict[str, Any]:
    """Teacher/student/... names from the cell's config, for cells that failed before the app
    recorded them in metrics.json (e.g. a config error)."""
    cfg = _read_yaml(cell / "config_resolved.yaml") or _read_yaml(cell / ".hydra" / "config.yaml")
    if not isinstance(cfg, dict):
        return {}
    names: dict[str, Any] = {}
    for group in ("teacher", "student", "kd", "prune", "quant", "data"):
        node = cfg.get(group)
        if isinstance(node, dict) and isinstance(node.get("name"), str) and "${" not in node["name"]:
            names[group] = node["name"]
    if isinstance(cfg.get("stages"), list):
        names["stages"] = cfg["stages"]
    if isinstance(cfg.get("seed"), int):
        names["seed"] = cfg["seed"]
    return names


def load_cell(cell: Path, root: Path) -> dict[str, Any]:
    """metrics.json plus what the cell directory says about itself."""
    name = cell.relative_to(root).as_posix() if cell != root else cell.name
    overrides = _read_yaml(cell / ".hydra" / "overrides.yaml")
    try:
        metrics = json.loads((cell / "metrics.json").read_text())
        if not isinstance(metrics, dict):
            raise ValueError("not a JSON object")
        error = None
    except (OSError, ValueError) as exc:
        metrics, error = {}, f"unreadable metrics.json: {exc}"
    run = dict(_config_names(cell))
    run.update({k: v for k, v in (metrics.get("run") or {}).items() if v is not None})
    if error:
        run.update(status="failed", error=error)
    return {"cell": name, "path": cell, "metrics": metrics, "run": run,
            "overrides": " ".join(map(str, overrides)) if isinstance(overrides, list) else None}
