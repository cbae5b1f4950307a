"""Which config keys change a result, for everything that decides "this is the same thing".

The teacher store, the teacher-output cache and resuming a run all reuse work done under an
earlier config. Listing the keys that *do* matter goes stale the day someone adds a trainer
option (a hand-picked list once ignored `gradient_clip_val` and `precision`), so each check
compares the WHOLE resolved config minus an explicit list of keys that provably cannot change
the result: a new key counts as "changes the result" until someone argues otherwise here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Trainer arguments that only change what is printed or logged, never a weight.
TRAINER_LOGGING_KEYS = ("enable_progress_bar", "log_every_n_steps", "enable_model_summary")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"kd": {"alpha": 0.5}}` -> `{"kd.alpha": 0.5}` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def is_ignored(dotted: str, ignored: Iterable[str]) -> bool:
    """True when `dotted` is one of `ignored` or lies below one (`paths` covers `paths.x`)."""
    return any(dotted == key or dotted.startswith(key + ".") for key in ignored)


def without(tree: Mapping[str, Any], ignored: Iterable[str]) -> dict[str, Any]:
    """`tree` flattened, minus the ignored keys: the part of a config that identifies a result."""
    ignored = tuple(ignored)
    return {k: v for k, v in flatten(tree).items() if not is_ignored(k, ignored)}


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any],
                 ignored: Iterable[str] = ()) -> list[str]:
    """`["kd.alpha: 0.5 -> 0.7", ...]` for every key that differs (missing on one side: `-`)."""
    before, after = without(old, ignored), without(new, ignored)
    missing = object()
    changes = []
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key, missing), after.get(key, missing)
        if a != b:
            changes.append(f"{key}: {'-' if a is missing else a} -> {'-' if b is missing else b}")
    return changes
