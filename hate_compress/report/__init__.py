"""Presentation: the tables, plots and pages a run or a sweep leaves behind.

* `summary` — the per-stage table of one run (summary.md, printed at the end of a run) and of a
  `seeds=[...]` run; `format` — how every table writes a number;
* `multirun` — report.md / report.csv / plots over a Hydra multirun directory, built from
  `cells` (reading the directory), `rows`, `seed_groups` and `recommend`;
* `plots` — the Pareto and heatmap figures (also drawn by the notebook); `html` — the
  self-contained report.html of a run and of a sweep;
* `callback` — `MultirunReportCallback`, which Hydra runs when a sweep ends;
  `python -m hate_compress.report <dir>` is `__main__`.

What the numbers mean (final stage, degenerate, targets, seed spread) is decided in
`hate_compress.measure.outcome`; this package only lays them out. Every module here imports only
the standard library at import time: Hydra instantiates the callback at the start of every run.
"""

# `hate_compress.report.MultirunReportCallback` is the Hydra target in conf/hydra/default.yaml and
# in users' own hydra configs; it stays importable from the package itself.
from hate_compress.report.callback import MultirunReportCallback

__all__ = ["MultirunReportCallback"]
