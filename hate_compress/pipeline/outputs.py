"""What a finished run leaves beside metrics.json: `final_model`, summary.md and report.html.

Written only after every stage succeeded; metrics.json itself is rewritten by the `Run` after
every stage, so a crash never loses what finished.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hate_compress.report.summary import summary_table
from hate_compress.stages.state import Run
from hate_compress.storage import OUTPUT_KEY, writing

log = logging.getLogger("hate_compress")


def export_final(run: Run) -> None:
    """`<run_dir>/final_model` points at the last stage's artifact: the model to ship."""
    if run.current is None or run.current.path is None:
        return
    link = run.run_dir / "final_model"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path(run.current.path).resolve())
    run.metrics["run"]["final_model"] = str(run.current.path)


def write_summary(run_dir: Path, metrics: dict) -> None:
    """summary.md and report.html, and the table printed where the user is looking."""
    table = summary_table(metrics)
    with writing(run_dir / "summary.md", OUTPUT_KEY):
        (run_dir / "summary.md").write_text(table + "\n")
    write_html_report(run_dir, metrics)
    print("\n" + table + "\n", flush=True)
    print(f"metrics: {run_dir / 'metrics.json'}", flush=True)


def write_html_report(run_dir: Path, metrics: dict) -> None:
    """report.html beside summary.md; a by-product, so a plotting problem is a warning, not a
    failed run whose metrics are all written already."""
    from hate_compress.report.html import run_report_html

    try:
        log.info("report: %s", run_report_html(run_dir, metrics))
    except Exception as exc:  # noqa: BLE001 - the run itself succeeded
        log.warning("report.html not written: %s: %s", type(exc).__name__, exc)
