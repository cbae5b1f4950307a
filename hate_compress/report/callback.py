"""The Hydra callback that writes the multirun report when a sweep ends.

Hydra instantiates it at the start of every run, single runs included, so this module (and the
report modules it imports) import only the standard library and Hydra at import time.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hate_compress.report.multirun import write_report

log = logging.getLogger(__name__)

try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover - hydra is a dependency; keep the CLI usable without it
    _HydraCallback = object


class MultirunReportCallback(_HydraCallback):
    """Write the report into the sweep directory when a multirun ends.

    A report is a by-product: any error here is logged and swallowed, because failing the
    sweep after hours of training over a plotting problem would be the worse outcome.
    """

    def __init__(self, f1_floor: float | None = None, split: str = "auto",
                 enabled: bool = True) -> None:
        self.f1_floor = f1_floor
        self.split = split
        self.enabled = enabled

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        if not self.enabled or config.get("hparams_search"):  # a study writes its own outputs
            return
        try:
            sweep_dir = Path(str(config.hydra.sweep.dir))
            floor = None if self.f1_floor is None else float(self.f1_floor)
            result = write_report(sweep_dir, f1_floor=floor, split=self.split)
            log.info("sweep report: %s", result["report"])
            for rec in result["recommendations"]:
                log.info("%s: %s", rec["title"], rec["text"].replace("**", ""))
        except Exception as exc:  # noqa: BLE001 - never crash a finished sweep
            log.warning("sweep report not written: %s: %s", type(exc).__name__, exc)
