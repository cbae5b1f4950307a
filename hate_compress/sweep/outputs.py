"""What a study leaves in its directory: best_params.yaml, trials.csv and plots, rewritten after
every run of the study and safe to write from several workers at once.
"""

from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from hate_compress.storage import replacing, write_text_atomically
from hate_compress.sweep.space import Search, trial_seeds
from hate_compress.sweep.storage import masked, storage_url
from hate_compress.sweep.trials import best_trial, counts

log = logging.getLogger("hate_compress.sweep")

def fmt_value(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def fmt_params(params: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items()) or "-"


def write_trials_csv(study: optuna.Study, search: Search, path: Path) -> None:
    import io

    names = [p.name for p in search.params]
    extra = sorted({k for t in study.trials for k in (t.user_attrs.get("metrics") or {})})
    header = ["number", "state", "value", *names, "pruned_at_epoch", "duration_s", "datetime_start",
              *extra, "degenerate", "run_dir", "worker", "error"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for t in study.trials:
        metrics = t.user_attrs.get("metrics") or {}
        writer.writerow([
            t.number, t.state.name, t.value, *(t.params.get(n) for n in names),
            max(t.intermediate_values) if t.state == TrialState.PRUNED and t.intermediate_values else None,
            round(t.duration.total_seconds(), 1) if t.duration else None,
            t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
            *(metrics.get(k) for k in extra), t.user_attrs.get("degenerate"),
            t.user_attrs.get("run_dir"),
            t.user_attrs.get("worker"),
            "surplus (not run)" if t.user_attrs.get("surplus") else t.user_attrs.get("error"),
        ])
    write_text_atomically(path, buf.getvalue())


def write_plots(study: optuna.Study, search: Search, out_dir: Path) -> list[Path]:
    """History once a trial completed; importances only with >= 2 complete trials whose values
    differ (fANOVA has nothing to explain otherwise); contour of the first two params with >= 2
    complete trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from optuna.visualization import matplotlib as ovm

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = len({t.value for t in complete}) >= 2
    plots = {}
    if complete:
        plots["optimization_history.png"] = lambda: ovm.plot_optimization_history(study)
    if len(complete) >= 2 and varied:
        plots["param_importances.png"] = lambda: ovm.plot_param_importances(study)
    names = [p.name for p in search.params]
    if len(names) >= 2 and len(complete) >= 2:
        plots["contour.png"] = lambda: ovm.plot_contour(study, params=names[:2])
    written = []
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = plot()
            fig = np.ravel(axes)[0].figure
            with replacing(out_dir / name) as tmp:
                fig.savefig(tmp, dpi=100, bbox_inches="tight")
            plt.close(fig)
            written.append(out_dir / name)
        except Exception as exc:  # a plot is never worth failing a finished study for
            log.warning("[sweep] plot %s skipped: %s", name, exc)
    return written


def write_outputs(study: optuna.Study, search: Search, cfg: DictConfig, out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    now = counts(study)
    best = best_trial(study)
    summary = {
        "study_name": search.study_name,
        "storage": masked(storage_url(cfg, search)),
        "direction": search.direction,
        "objective": "dev macro F1 of the last stage (degenerate models: the worst value)"
                     + (f", mean over {search.seeds_per_trial} seeds "
                        f"{trial_seeds(cfg, search.seeds_per_trial)}"
                        if search.seeds_per_trial > 1 else ""),
        "n_trials": search.n_trials,
        "trials": {k: now[k] for k in ("finished", "complete", "pruned", "fail", "running",
                                        "surplus")},
        "best_trial": None if best is None else best.number,
        "best_value": None if best is None else float(best.value),
        "best_params": None if best is None else dict(best.params),
        "best_run_dir": None if best is None else best.user_attrs.get("run_dir"),
        "best_overrides": None if best is None else " ".join(
            f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in best.params.items()),
    }
    write_text_atomically(out_dir / "best_params.yaml", OmegaConf.to_yaml(OmegaConf.create(summary)))
    write_trials_csv(study, search, out_dir / "trials.csv")
    write_plots(study, search, out_dir)
    return summary


def print_summary(summary: dict, out_dir: Path) -> None:
    t = summary["trials"]
    lines = [
        f"study {summary['study_name']} ({summary['storage']}): {t['finished']}/{summary['n_trials']} "
        f"finished ({t['complete']} complete, {t['pruned']} pruned), {t['fail']} failed"
        + (f", {t['surplus']} not run (lost the race for the last slot)" if t["surplus"] else ""),
    ]
    if summary["best_trial"] is None:
        lines.append("no complete, non-degenerate trial yet")
    else:
        lines.append(f"best dev macro F1 {summary['best_value']:.4f} (trial {summary['best_trial']}): "
                     f"{fmt_params(summary['best_params'])}")
    lines.append(f"outputs: {out_dir} (best_params.yaml, trials.csv, *.png)")
    print("\n".join(lines), flush=True)
