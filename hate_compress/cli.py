"""Command-line checks that run before Hydra composes anything.

Hydra reports an unknown group option (`quant=int3`) or an unknown key (`kd.alpa=0.5`) as a
multi-line block with exit code 1; users asked for one line with the choices (or the closest
key) and the same exit code as every other input error. Appended keys (`+kd.alpa=0.5`) pass
Hydra and are refused by `validation` instead.
"""

from __future__ import annotations

import os
import sys

from hate_compress.config_keys import CONF_DIR, unknown_key_message


def group_options(group: str) -> list[str]:
    folder = CONF_DIR / group
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_"))


def groups_help() -> str:
    """`--help`'s "group: option, ..." lines: the options the command line accepts (Hydra's own
    list also shows the `_base` files that options extend, which `check_args` rejects)."""
    groups = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra")
    return "\n".join(f"{g}: {', '.join(group_options(g))}" for g in groups if group_options(g))


def help_command() -> str:
    """How the running entry point was started, for `--help`'s usage line."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is None:  # the `hate-compress` console script
        return os.path.basename(sys.argv[0]) or "hate-compress"
    return f"python -m {spec.name.removesuffix('.__main__')}"


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


def unknown_override_key(args: list[str]) -> str | None:
    """The message for the first `key=value` override (no `+`) of a key no group defines."""
    for arg in args:
        key, sep, _ = arg.partition("=")
        if not sep or key.startswith(("+", "~", "-", "hydra")) or "/" in key or "@" in key:
            continue
        if "." not in key and (CONF_DIR / key).is_dir():
            continue  # a group choice: unknown_group_option
        message = unknown_key_message(key)
        if message:
            return message
    return None


def check_args(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    message = unknown_group_option(args) or unknown_override_key(args)
    if message:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
