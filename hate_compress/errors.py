"""User-facing errors.

Everything a user can get wrong (a file, a row, a config key, a model name) raises a subclass of
`HateCompressError`. The CLI entry points catch it and print its message as a single line,
prefixed with ``error:``, and exit with status 2 — so bad input never ends in a bare traceback.
"""

from __future__ import annotations


class HateCompressError(Exception):
    """A problem the user can fix; its message is one line that names the file, row or key."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always a single line


class DataError(HateCompressError):
    """Bad data file: missing, unreadable, wrong schema, or a bad row."""


class ConfigError(HateCompressError):
    """A config value that is out of range or names something that does not exist."""


class ModelLoadError(HateCompressError):
    """A backbone, tokenizer or checkpoint that could not be loaded."""


class GateError(HateCompressError):
    """A stage produced a model too weak for the next stage to be meaningful (e.g. teacher F1 gate)."""


class TrainingDiverged(HateCompressError):
    """The loss became NaN/inf; the stage stopped and its last good checkpoint was kept."""


class StorageError(HateCompressError):
    """An output, cache or store directory that cannot be written: not writable, full, read-only."""
