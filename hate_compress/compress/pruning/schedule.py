"""The gradual pruning schedule (Zhu & Gupta, 2017) and the range checks of pruning options."""

from __future__ import annotations

import math

from hate_compress.errors import ConfigError


def check_fraction(value, key: str, *, low_open: bool = False, high_closed: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > 0 if low_open else value >= 0) and (value <= 1 if high_closed else value < 1)
    if not ok:
        interval = ("(0" if low_open else "[0") + (", 1]" if high_closed else ", 1)")
        raise ConfigError(f"{key}={value!r} is outside {interval}")
    return float(value)


def check_int(value, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value!r} must be an integer >= {minimum}")
    return value


def cubic_sparsity(
    step: int,
    total: int,
    initial: float,
    final: float,
    begin: int = 0,
    end_fraction: float = 0.75,
) -> float:
    """Zhu & Gupta (2017): s_t = s_f + (s_i - s_f)(1 - (t - t0)/(nΔt))³ for t0 <= t <= t0 + nΔt.

    ``nΔt`` spans from `begin` to ``round(end_fraction · total)``: pruning fast while the network
    is redundant and slowly near the target, then leaving the rest of training to recover.
    Before `begin` the value is `initial`, after the end it stays `final`.
    """
    end = round(check_fraction(end_fraction, "prune.end_fraction", low_open=True,
                                high_closed=True) * total)
    if end <= begin:
        raise ConfigError(
            f"prune.begin_step={begin} is not before the end of pruning "
            f"(step {end} = prune.end_fraction={end_fraction} of {total} steps)"
        )
    return cubic_at(step, begin, end, initial, final)


def cubic_at(step: int, begin: int, end: int, initial: float, final: float) -> float:
    if step <= begin:
        return float(initial)
    if step >= end:
        return float(final)
    progress = (step - begin) / (end - begin)
    return float(final + (initial - final) * (1.0 - progress) ** 3)
