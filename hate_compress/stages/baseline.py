"""The reference row every report shows: the `char_ngram` baseline (issue 16, item 5).

A TF-IDF + logistic regression model fitted in seconds reaches a macro F1 that small distilled
students may not: nobody should ship a model such a baseline beats without seeing it. With
`measure.baseline` on (`auto`, the default: on for real data, off for the bundled synthetic
sample and `debug=tiny`), the teacher stage also obtains `conf/teacher/char_ngram.yaml` through
the teacher store (fitted once per data set and trainer config, then loaded; seed fixed, so
every student seed shares it) and measures it like a model: its quality on dev/test, size and
latency go to `metrics.json` under `baseline`, the summary table (a reference row and a
verdict line), report.html and the matrix report (a reference row and a dashed line on the
Pareto plots). It never becomes the teacher and is never a recommended model.
"""

from __future__ import annotations

import logging

from hate_compress.errors import ConfigError
from hate_compress.measure.evaluate import footprint, score
from hate_compress.stages.state import Run, Trained
from hate_compress.stages.text_teacher import member_run

log = logging.getLogger(__name__)

BASELINE = "char_ngram"
# one baseline for every student seed (the model has no randomness without cross_fit)
BASELINE_OVERRIDES = {"seed": 0, "min_f1": 0.0, "cross_fit": 0, "checkpoint": None,
                      "retrain": False}


def baseline_enabled(cfg) -> bool:
    """`measure.baseline`: true, false, or auto (= on unless the data is the synthetic sample)."""
    value = (cfg.get("measure") or {}).get("baseline", False)
    if value == "auto":
        return str(cfg.data.get("name")) != "synthetic"
    if isinstance(value, bool):
        return value
    raise ConfigError(f"measure.baseline={value!r} must be true, false or auto")


def record_baseline(run: Run, obtain) -> dict | None:
    """Obtain the baseline through the teacher store (`obtain`: the teacher stage's
    obtain_teacher), measure it, record it as `baseline` in metrics.json."""
    if not baseline_enabled(run.cfg):
        return None
    sub = member_run(run, BASELINE, BASELINE_OVERRIDES, folder="baseline")
    stored = obtain(sub)
    trained = Trained("baseline", stored.model, None, "baseline", stored.path)
    values, _ = score(run, trained)
    values.update(model=BASELINE, runtime=getattr(trained.model, "runtime", "sklearn"),
                  degenerate=bool(values["dev"]["degenerate"]), reference=True,
                  **footprint(run, trained), artifact=str(stored.path))
    run.record("baseline", values)
    split = "test" if "test" in values else "dev"
    log.info("baseline %s: %s macro F1 %.4f (reference row; %s)", BASELINE, split,
             values[split]["macro_f1"], stored.path)
    return values
