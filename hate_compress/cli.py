"""Command-line checks that run before Hydra composes anything.

Hydra reports an unknown group option (`quant=int3`) as a multi-line block with exit code 1;
users asked for one line with the choices and the same exit code as every other input error.
"""

from __future__ import annotations

import sys
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def group_options(group: str) -> list[str]:
    folder = CONF_DIR / group
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_"))


def unknown_group_option(args: list[str]) -> str | None:
    """The message for the first `group=option` argument naming an option that does not exist."""
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or key.startswith(("+", "~", "hydra")) or "." in key or "/" in key:
            continue
        if not (CONF_DIR / key).is_dir() or value in ("null", ""):
            continue
        choices = group_options(key)
        for option in value.split(","):  # multirun lists: teacher=gbert,xlmr
            if option not in choices:
                return f"{key}={option}: no such option; choose from {', '.join(choices)}"
    return None


def check_args(argv: list[str] | None = None) -> None:
    message = unknown_group_option(list(sys.argv[1:] if argv is None else argv))
    if message:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
