"""Lightning's console output, printed once and without its advertising.

Kept apart from `runner` because the Optuna sweep sets it up once for the whole study, before
any run exists.
"""

from __future__ import annotations

import logging


class _DropTips(logging.Filter):
    """Lightning's advertising tip, and its Ctrl-C notice (we print our own one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "litlogger" not in message and "Detected KeyboardInterrupt" not in message


def quiet_lightning() -> None:
    """Lightning has its own console handler: stop its records reaching Hydra's root handler
    too (every line printed twice), and drop its advertising tip and Ctrl-C notice."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.propagate = False
        for handler in logger.handlers:
            handler.addFilter(_DropTips())
        logger.addFilter(_DropTips())
