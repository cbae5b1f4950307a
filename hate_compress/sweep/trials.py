"""What a study's trials add up to: counts against `n_trials`, who gets the last slot, and the
best trial.

A worker only asks for a trial while `finished + running < n_trials`, and a trial that got a
number anyway (two workers asking at the same instant) gives its slot up before sampling unless
`finished + unfinished trials numbered below it < n_trials` (`has_slot`); it ends FAIL with the
user attr `surplus`, without params, and is not counted.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def counts(study: optuna.Study) -> dict[str, int]:
    out = {s.name.lower(): 0 for s in TrialState} | {"surplus": 0}
    for t in study.get_trials(deepcopy=False):
        surplus = t.state == TrialState.FAIL and t.user_attrs.get("surplus")
        out["surplus" if surplus else t.state.name.lower()] += 1  # a lost race is no failed run
    out["finished"] = out["complete"] + out["pruned"]
    return out


def has_slot(trials: list[FrozenTrial], number: int, n_trials: int) -> bool:
    """Whether trial `number` is within the budget: finished trials plus the unfinished ones with
    a lower number leave room for it. Numbers are assigned by the storage, so trials racing for
    the last slot agree on who gets it. WAITING trials count too: a re-queued trial created
    before this one is popped later (by whichever worker asks next) and must find its slot."""
    finished = sum(1 for t in trials if t.state in FINISHED)
    ahead = sum(1 for t in trials if t.number < number
                and t.state in (TrialState.RUNNING, TrialState.WAITING))
    return finished + ahead < n_trials


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial whose model is not degenerate (None if there is none)."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if not t.user_attrs.get("degenerate")]
    if not complete:
        return None
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    return pick(complete, key=lambda t: t.value)
