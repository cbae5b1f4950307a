"""Measurement, in one place: how good a model is, what it costs, and what compression changed.

* `quality` — classification metrics from logits (macro F1, per-class F1, agreement, the
  degenerate-model rule), shared by training, every stage, the report and prediction;
* `footprint` — parameters (logical counts), bytes on disk, CPU latency;
* `evaluate` — those measured for one stage's model on the run's data, relative to the teacher;
* `explain`, `forgetting`, `analysis` — explanation similarity with the teacher and what the
  model forgets (flip rates, per-class and per-group changes);
* `outcome` — what a run's metrics say: final stage, sweep objective, degenerate, targets, seed
  spread.

A low layer on purpose: it imports only `models` (and `errors`) of the package, so training, KD,
compression and artifacts can measure with it; the stage-level step that records a stage's
numbers in the run and the model card is `hate_compress.stages.measure`. `run`/`trained`
arguments are read through their attributes only. Presentation is `hate_compress.report`.
Importing this package imports none of its modules (`outcome` is loaded by the Hydra callback
at the start of every run and must stay standard-library only).
"""
