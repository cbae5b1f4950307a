"""Which student layer learns from which teacher layer.

Intermediate-layer distillation is only as good as its layer alignment, and the alignment is the
part users most want to tweak, so it is plain data (TextBrewer-style) rather than code. Layer
numbers are 1-based, HF style (``hidden_states[l]`` is the output of layer ``l``); ``0`` means the
embedding output where a term allows it.

Config format (one format, validated here so a typo fails before training starts)::

    layer_map:
      - {student: 1, teacher: 4}
      - {student: 2, teacher: 8, weight: 2.0}

The shorthand ``[student, teacher]`` (or ``[student, teacher, weight]``) is accepted for each
entry because it is what people write on a Hydra command line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from hate_compress.errors import ConfigError


@dataclass(frozen=True)
class LayerPair:
    """One student-layer -> teacher-layer match and how much it counts."""

    student: int
    teacher: int
    weight: float = 1.0


def default_layer_map(student_layers: int, teacher_layers: int) -> dict[int, int]:
    """Spread the student's layers uniformly over the teacher's depth: ``j -> round(j * Lt / Ls)``.

    Uniform spreading is the PKD/TinyBERT "skip" strategy; the last student layer always meets
    the last teacher layer, which is the one closest to the task head. ``round`` is Python's
    (half-to-even), evaluated on exact fractions so float error never moves a layer; the result
    is clamped to >= 1 so a student deeper than its teacher never matches the embeddings by
    accident.
    """
    _check_depth(student_layers, "student_layers")
    _check_depth(teacher_layers, "teacher_layers")
    return {
        j: max(1, round(Fraction(j * teacher_layers, student_layers)))
        for j in range(1, student_layers + 1)
    }


def parse_layer_map(
    spec: Sequence[Any] | None,
    *,
    student_layers: int,
    teacher_layers: int,
    key: str,
    min_layer: int = 0,
) -> list[LayerPair]:
    """Turn a ``layer_map`` config value into validated pairs (``None`` -> the default map).

    ``min_layer`` is 0 for hidden states (the embedding output exists) and 1 for attentions
    (embeddings have no attention map). Every error names the exact entry, e.g.
    ``kd.terms.hidden.layer_map[1].teacher``, because a layer map is usually edited by hand.
    """
    if spec is None:
        return [LayerPair(s, t) for s, t in default_layer_map(student_layers, teacher_layers).items()]
    if isinstance(spec, (str, bytes, Mapping)) or not isinstance(spec, Sequence):
        raise ConfigError(
            f"{key} must be a list of {{student: S, teacher: T, weight: W}} entries, got {spec!r}"
        )
    if len(spec) == 0:
        raise ConfigError(f"{key} is empty; use null for the default map")
    pairs = []
    for i, entry in enumerate(spec):
        ekey = f"{key}[{i}]"
        student, teacher, weight = _entry_fields(entry, ekey)
        student = _layer(student, f"{ekey}.student", min_layer, student_layers)
        teacher = _layer(teacher, f"{ekey}.teacher", min_layer, teacher_layers)
        weight = _weight(weight, f"{ekey}.weight")
        pairs.append(LayerPair(student, teacher, weight))
    return pairs


def _entry_fields(entry: Any, ekey: str) -> tuple[Any, Any, Any]:
    if isinstance(entry, Mapping):
        unknown = set(entry) - {"student", "teacher", "weight"}
        if unknown:
            raise ConfigError(
                f"{ekey} has unknown key(s) {sorted(map(str, unknown))}; allowed: student, teacher, weight"
            )
        if "student" not in entry or "teacher" not in entry:
            raise ConfigError(f"{ekey} needs both 'student' and 'teacher', got {dict(entry)!r}")
        return entry["student"], entry["teacher"], entry.get("weight", 1.0)
    if isinstance(entry, Sequence) and not isinstance(entry, (str, bytes)) and len(entry) in (2, 3):
        return entry[0], entry[1], (entry[2] if len(entry) == 3 else 1.0)
    raise ConfigError(
        f"{ekey} must be {{student: S, teacher: T, weight: W}} or [S, T], got {entry!r}"
    )


def _layer(value: Any, key: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}={value!r} must be an integer layer number")
    if not lo <= value <= hi:
        raise ConfigError(f"{key}={value} is outside [{lo}, {hi}]")
    return value


def _weight(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}={value!r} must be a number")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{key}={value} must be a finite number >= 0")
    return value


def _check_depth(n: Any, what: str) -> None:
    # Depths come from loaded models, not from users: a bad one is a programming error.
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{what} must be a positive int, got {n!r}")
