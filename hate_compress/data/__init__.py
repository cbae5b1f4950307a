"""Reading, validating and batching labelled hate-speech data.

`HateDataModule` is imported lazily so that reading/validating a file does not pull in torch and
Lightning (seconds of import time for CLI checks and tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hate_compress.data.reading import (
    LabeledTexts,
    check_label_coverage,
    detect_format,
    read_split,
)
from hate_compress.data.schema import DataSchema

if TYPE_CHECKING:
    from hate_compress.data.datamodule import HateDataModule

__all__ = [
    "DataSchema", "HateDataModule", "LabeledTexts", "check_label_coverage", "detect_format",
    "read_split", "sample_dir",
]


def sample_dir() -> Path:
    """Folder of the bundled synthetic sample (``synthetic_train.csv``, ``synthetic_test.csv``).

    Resolved from this file rather than the working directory so it works from any checkout or
    installed wheel (the CSVs must be shipped as package data).
    """
    return Path(__file__).resolve().parent / "sample"


def __getattr__(name: str) -> Any:
    if name == "HateDataModule":
        from hate_compress.data.datamodule import HateDataModule

        return HateDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
