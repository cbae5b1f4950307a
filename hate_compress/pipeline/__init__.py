"""Running the pipeline: what "a run" means, in one place.

* `runner` — compose the data, check the config, loop over `stages` in registry order
  (`run_pipeline`), the call tests and the Optuna sweep make with a composed config;
* `guard` — turn what escapes a run into one `error:` line, a recorded status and an exit
  code (user errors, a full disk, Ctrl-C);
* `outputs` — what a finished run leaves beside metrics.json (final_model, summary.md,
  report.html);
* `console` — Lightning's console logging made to print once.

The state a run carries between stages is `hate_compress.stages.state.Run`; `__main__` is only
the Hydra entry point. Importing this package imports none of its modules (a Hydra callback or
the sweep pulls only what it uses).
"""
