"""Which columns of a data file hold the text and the labels, and how labels are encoded.

The schema is validated on construction so that a wrong config key fails before any file is read,
with a `ConfigError` naming the ``data.<key>`` to change. Values may arrive as OmegaConf containers
(Hydra); they are normalised to plain lists/dicts here so the rest of the package never sees them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hate_compress.errors import ConfigError

TASKS = ("binary", "multiclass", "multilabel")

# Labels that conventionally mean "not hate". Used only to pick a sensible default positive class
# for binary tasks when `positive_label` is not given (GermEval sorts OFFENSE before OTHER, so
# "index 1" alone would make OTHER the reported class).
NEGATIVE_LOOKING = frozenset(
    {
        "0", "false", "no", "none", "not", "other", "neutral", "normal", "nothate", "not_hate",
        "not-hate", "non-hate", "nonhate", "non_hate", "not hate", "not_offensive", "not offensive",
        "non-offensive", "nonoffensive", "not-offensive", "nag", "clean",
    }
)

_BINARY_FROM_KEYS = ("negative", "positive", "negative_name", "positive_name")


def _as_list(value: Any, key: str) -> list[str] | None:
    """Accept a list-like (incl. OmegaConf ListConfig) or a single string; reject anything else."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise ConfigError(f"data.{key} must be a list of strings, got {value!r}")
    items = list(value)
    if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in items):
        raise ConfigError(f"data.{key} must be a list of strings, got {items!r}")
    return [str(v) for v in items]


@dataclass
class DataSchema:
    """Column layout and label encoding of a labelled text file.

    Label encodings:

    * ``binary`` / ``multiclass``: one column ``label_column`` holding one label per row.
    * ``multilabel``: either several 0/1 columns ``label_columns`` (their names are the label
      names) or one column ``label_column`` of labels joined by ``label_delimiter`` (``"a|b"``).

    ``label_names`` fixes the class order (index = class id). When omitted, it is inferred as the
    sorted set of labels in the train file, so ids are stable across runs and machines.

    ``strip_labels`` trims whitespace around labels because stray spaces are a common export
    artefact that carry no meaning; a *case* difference ("offense" vs "OFFENSE") is never fixed
    silently because it might be a genuinely different class — it is reported with a hint instead.

    ``binary_from`` derives a binary task from a multi-valued column, e.g. BanglaMultiHate's
    ``hate_type`` where ``"None"`` means not hate::

        {"negative": ["None"]}                   # everything else is positive
        {"negative": ["None"], "positive": [...], "negative_name": "NotHate", "positive_name": "Hate"}

    If ``positive`` is given, any other value is an error instead of silently becoming positive.
    The resulting label names are ``[negative_name, positive_name]`` (default
    ``["NotHate", "Hate"]``) and the positive label is ``positive_name``.
    """

    text_column: str = "text"
    task: str = "binary"
    label_column: str | None = "label"
    label_columns: list[str] | None = None
    label_delimiter: str | None = None
    label_names: list[str] | None = None
    positive_label: str | None = None
    strip_labels: bool = True
    binary_from: dict[str, Any] | None = None
    multilabel_from: dict[str, Any] | None = None
    # columns kept per example as metadata, not labels (e.g. BanglaMultiHate's `to_whom`), so a
    # report can ask how a compressed model does per target group
    meta_columns: list[str] | None = None

    def __post_init__(self) -> None:
        self.label_columns = _as_list(self.label_columns, "label_columns")
        self.meta_columns = _as_list(self.meta_columns, "meta_columns") or []
        if self.text_column in self.meta_columns:
            raise ConfigError(f"data.meta_columns contains the text column {self.text_column!r}")
        self.label_names = _as_list(self.label_names, "label_names")
        self._check_task()
        self._check_columns()
        self._check_names()
        if self.binary_from is not None:
            self._apply_binary_from()
        if self.multilabel_from is not None:
            self._apply_multilabel_from()

    # -- validation ---------------------------------------------------------------------------

    def _check_task(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"data.task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if not isinstance(self.text_column, str) or not self.text_column:
            raise ConfigError(f"data.text_column must be a non-empty string, got {self.text_column!r}")
        if self.positive_label is not None and self.task != "binary":
            raise ConfigError(
                f"data.positive_label={self.positive_label!r} only applies to task=binary "
                f"(task is {self.task}); remove it"
            )
        if self.binary_from is not None and self.task != "binary":
            raise ConfigError(f"data.binary_from only applies to task=binary (task is {self.task})")

    def _check_columns(self) -> None:
        if self.task == "multilabel" and self.multilabel_from is not None:
            return  # checked by _apply_multilabel_from
        if self.task == "multilabel":
            if self.label_columns and self.label_delimiter:
                raise ConfigError(
                    "data.label_columns and data.label_delimiter are both set; use label_columns for "
                    "0/1 columns or label_column+label_delimiter for one delimited column, not both"
                )
            if self.label_columns:
                if len(set(self.label_columns)) != len(self.label_columns):
                    raise ConfigError(f"data.label_columns has duplicates: {self.label_columns}")
                if self.text_column in self.label_columns:
                    raise ConfigError(f"data.label_columns contains the text column {self.text_column!r}")
                self.label_column = None  # the 0/1 columns are the labels; a default "label" is moot
                return
            if not self.label_column or not self.label_delimiter:
                raise ConfigError(
                    "task=multilabel needs data.label_columns (several 0/1 columns) or "
                    "data.label_column plus data.label_delimiter (one column like 'a|b')"
                )
        else:
            if self.label_columns:
                raise ConfigError(
                    f"data.label_columns is only for task=multilabel (task is {self.task}); "
                    "use data.label_column"
                )
            if self.label_delimiter:
                raise ConfigError(f"data.label_delimiter is only for task=multilabel (task is {self.task})")
            if not self.label_column:
                raise ConfigError(f"task={self.task} needs data.label_column")
        if self.label_column == self.text_column:
            raise ConfigError(f"data.label_column and data.text_column are both {self.text_column!r}")

    def _check_names(self) -> None:
        names = self.label_names
        if names is None:
            return
        if len(set(names)) != len(names):
            raise ConfigError(f"data.label_names has duplicates: {names}")
        if self.task == "binary" and len(names) != 2:
            raise ConfigError(f"task=binary needs exactly 2 data.label_names, got {len(names)}: {names}")
        if self.task == "multiclass" and len(names) < 2:
            raise ConfigError(f"task=multiclass needs at least 2 data.label_names, got {names}")
        if self.label_columns and names != self.label_columns:
            raise ConfigError(
                "with data.label_columns the column names are the label names; drop data.label_names "
                f"or make it equal to label_columns ({self.label_columns})"
            )
        if self.positive_label is not None and self.positive_label not in names:
            raise ConfigError(
                f"data.positive_label={self.positive_label!r} is not in data.label_names {names}"
            )

    def _apply_binary_from(self) -> None:
        spec = self.binary_from
        if not isinstance(spec, Mapping):
            raise ConfigError(f"data.binary_from must be a mapping like {{negative: [None]}}, got {spec!r}")
        unknown = [k for k in spec if k not in _BINARY_FROM_KEYS]
        if unknown:
            raise ConfigError(
                f"unknown key data.binary_from.{unknown[0]}; allowed: {', '.join(_BINARY_FROM_KEYS)}"
            )
        negative = _as_list(spec.get("negative"), "binary_from.negative")
        if not negative:
            raise ConfigError("data.binary_from.negative must list the values that mean 'not hate'")
        positive = _as_list(spec.get("positive"), "binary_from.positive")
        if positive and set(positive) & set(negative):
            raise ConfigError(
                f"data.binary_from lists {sorted(set(positive) & set(negative))} as both negative and positive"
            )
        neg_name = str(spec.get("negative_name") or "NotHate")
        pos_name = str(spec.get("positive_name") or "Hate")
        if neg_name == pos_name:
            raise ConfigError("data.binary_from.negative_name and positive_name must differ")
        names = [neg_name, pos_name]
        if self.label_names is not None and self.label_names != names:
            raise ConfigError(
                f"data.label_names {self.label_names} conflicts with data.binary_from, which produces "
                f"{names}; set binary_from.negative_name/positive_name instead"
            )
        if self.positive_label is not None and self.positive_label != pos_name:
            raise ConfigError(
                f"data.positive_label={self.positive_label!r} conflicts with data.binary_from "
                f"(positive class is {pos_name!r}); set binary_from.positive_name instead"
            )
        self.binary_from = {"negative": negative, "positive": positive,
                            "negative_name": neg_name, "positive_name": pos_name}
        self.label_names = names
        self.positive_label = pos_name

    def _apply_multilabel_from(self) -> None:
        """A multilabel view over several categorical columns (e.g. BanglaMultiHate's hate_type
        and to_whom): a row's labels are the values of those columns, minus `ignore` values
        such as "None" (no hate type / no target). A row may end up with no label."""
        spec = self.multilabel_from
        if self.task != "multilabel":
            raise ConfigError(f"data.multilabel_from only applies to task=multilabel (task is {self.task})")
        if not isinstance(spec, Mapping) or set(spec) - {"columns", "ignore"}:
            raise ConfigError("data.multilabel_from must be {columns: [...], ignore: [...]}")
        columns = _as_list(spec.get("columns"), "multilabel_from.columns")
        if not columns:
            raise ConfigError("data.multilabel_from.columns must list at least one column")
        if self.label_columns or self.label_delimiter:
            raise ConfigError("data.multilabel_from replaces data.label_columns/label_delimiter; set only one")
        self.multilabel_from = {"columns": columns,
                                "ignore": _as_list(spec.get("ignore"), "multilabel_from.ignore") or []}
        self.label_column = None

    # -- derived ------------------------------------------------------------------------------

    @property
    def is_multilabel(self) -> bool:
        return self.task == "multilabel"

    @property
    def required_columns(self) -> list[str]:
        """Columns that must exist in every split file (text, labels, then metadata)."""
        return self._text_and_label_columns + self.extra_meta_columns

    @property
    def _text_and_label_columns(self) -> list[str]:
        if self.label_columns:
            return [self.text_column, *self.label_columns]
        if self.multilabel_from:
            return [self.text_column, *self.multilabel_from["columns"]]
        return [self.text_column, self.label_column]

    @property
    def extra_meta_columns(self) -> list[str]:
        """Metadata columns that are not also the text or a label column."""
        return [c for c in self.meta_columns if c not in self._text_and_label_columns]

    def default_positive_index(self, names: Sequence[str]) -> int:
        """Index of the class whose F1 is reported for a binary task.

        Uses `positive_label` when given; otherwise the one label that does not look like
        "not hate" (OTHER, NOT, None, 0, ...), falling back to index 1.
        """
        if self.positive_label is not None:
            return list(names).index(self.positive_label)
        negative = [i for i, n in enumerate(names) if n.strip().lower() in NEGATIVE_LOOKING]
        if len(names) == 2 and len(negative) == 1:
            return 1 - negative[0]
        return 1
