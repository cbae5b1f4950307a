"""A classical text classifier: TF-IDF over character 2-5-grams and word 1-2-grams, then
logistic regression (softmax for single-label, one sigmoid per label for multilabel).

Why it exists: offline, a 10-second scikit-learn model beats our small transformers (issue 16),
so it serves as a teacher (its decision function is the logits: it reads raw text, so it can
teach a student with any tokenizer) and as the baseline every report shows.

Why the features are computed here and not by `TfidfVectorizer.transform`: the model is saved
as JSON (vocabularies, settings) + safetensors (idf, coefficients) and must never be unpickled;
training and loading both go through `features` with the same fixed vocabularies, so a loaded
model predicts bit-for-bit what the trained one did.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from safetensors.numpy import load_file, save_file
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold

CONFIG_FILE = "char_ngram.json"
WEIGHTS_FILE = "char_ngram.safetensors"
OOF_FILE = "train_oof_logits.safetensors"
FORMAT = "char_ngram/1"

log = logging.getLogger(__name__)


def texts_digest(texts: list[str]) -> str:
    """Which train texts the out-of-fold logits belong to (row order included)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()

DEFAULTS = {"char_ngrams": [2, 5], "word_ngrams": [1, 2], "min_df": 1, "C": 3.0,
            "class_weight": "balanced", "max_iter": 2000, "lowercase": True}
# an absent class (a cross-fit fold without it) gets this logit: never predicted, finite
ABSENT_LOGIT = -20.0


def _analyzers(settings: dict) -> list[dict[str, Any]]:
    return [
        {"analyzer": "char_wb", "ngram_range": tuple(settings["char_ngrams"])},
        {"analyzer": "word", "ngram_range": tuple(settings["word_ngrams"])},
    ]


def _counts(spec: dict, vocabulary: dict[str, int], texts: list[str], lowercase: bool):
    vec = CountVectorizer(vocabulary=vocabulary, lowercase=lowercase, dtype=np.float64, **spec)
    return vec.transform(texts)


def features(texts: list[str], vocabularies: list[dict[str, int]], idfs: list[np.ndarray],
             settings: dict) -> sp.csr_matrix:
    """Sublinear TF x IDF, L2-normalised per block, blocks side by side (one per analyzer)."""
    blocks = []
    for spec, vocab, idf in zip(_analyzers(settings), vocabularies, idfs):
        counts = _counts(spec, vocab, texts, bool(settings["lowercase"])).tocsr()
        counts.data = 1.0 + np.log(counts.data)
        weighted = counts @ sp.diags(idf)
        norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        blocks.append(sp.diags(1.0 / norms) @ weighted)
    return sp.hstack(blocks, format="csr")


def fit_vocabularies(texts: list[str], settings: dict) -> tuple[list[dict], list[np.ndarray]]:
    vocabularies, idfs = [], []
    for spec in _analyzers(settings):
        min_df = int(settings["min_df"]) if len(texts) >= 4 * int(settings["min_df"]) else 1
        vec = TfidfVectorizer(min_df=min_df, sublinear_tf=True, lowercase=bool(settings["lowercase"]),
                              **spec)
        vec.fit(texts)
        vocabularies.append({term: int(i) for term, i in vec.vocabulary_.items()})
        idfs.append(np.asarray(vec.idf_, dtype=np.float64))
    return vocabularies, idfs


def _logistic(settings: dict, seed: int) -> LogisticRegression:
    return LogisticRegression(C=float(settings["C"]), class_weight=settings["class_weight"],
                              max_iter=int(settings["max_iter"]), random_state=seed)


def fit_linear(x, labels: np.ndarray, task: str, num_labels: int, settings: dict,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`(coef (num_labels, F), intercept (num_labels,))` whose `x @ coef.T + intercept` are the
    logits: softmax of them for single-label (binary stored as +-d/2, so softmax = sigmoid(d)),
    one sigmoid per label for multilabel. Classes a fold never saw get `ABSENT_LOGIT`."""
    n_features = x.shape[1]
    coef = np.zeros((num_labels, n_features))
    intercept = np.full(num_labels, ABSENT_LOGIT)
    if task == "multilabel":
        for j in range(num_labels):
            column = labels[:, j].astype(int)
            if column.min() == column.max():  # constant label in this fold: no regression
                intercept[j] = -ABSENT_LOGIT if column[0] else ABSENT_LOGIT
                continue
            model = _logistic(settings, seed).fit(x, column)
            coef[j], intercept[j] = model.coef_[0], model.intercept_[0]
        return coef, intercept
    labels = labels.astype(int)
    present = np.unique(labels)
    if len(present) == 1:
        intercept[present[0]] = 0.0
        return coef, intercept
    model = _logistic(settings, seed).fit(x, labels)
    classes = model.classes_.astype(int)
    if len(classes) == 2:  # sklearn keeps one row (the second class vs the first)
        half_w, half_b = model.coef_[0] / 2, model.intercept_[0] / 2
        coef[classes[0]], coef[classes[1]] = -half_w, half_w
        intercept[classes[0]], intercept[classes[1]] = -half_b, half_b
    else:
        coef[classes], intercept[classes] = model.coef_, model.intercept_
    return coef, intercept


class CharNgramModel:
    """Fitted TF-IDF + logistic regression; `predict_texts` gives logits like a HateClassifier.

    Not a torch module on purpose: nothing may fine-tune, prune or quantize it; the pipeline
    treats it as a *text-level* model (`text_level = True`) that reads raw strings."""

    text_level = True
    runtime = "sklearn"
    num_layers = 0  # no hidden states or attentions to distil (preflight rejects such terms)
    hidden_size = 0

    def __init__(self, vocabularies, idfs, coef, intercept, *, task: str, settings: dict,
                 train_oof_logits: np.ndarray | None = None, oof_texts: str | None = None):
        self.vocabularies, self.idfs = vocabularies, idfs
        self.coef, self.intercept = coef, intercept
        self.task, self.settings = task, dict(settings)
        self.train_oof_logits = train_oof_logits
        self.oof_texts = oof_texts  # texts_digest of the rows train_oof_logits label

    # -- training -----------------------------------------------------------------------------

    @classmethod
    def fit(cls, texts: list[str], labels: np.ndarray, *, task: str, num_labels: int,
            settings: dict | None = None, seed: int = 0, cross_fit: int = 0) -> CharNgramModel:
        """Fit on all `texts`; with `cross_fit=k >= 2` also k fold models, each labelling the
        fold it did not see (`train_oof_logits`: soft targets that are not memorised)."""
        settings = {**DEFAULTS, **(settings or {})}
        model = cls._fit_once(texts, labels, task, num_labels, settings, seed)
        if cross_fit and int(cross_fit) >= 2:
            model.train_oof_logits = cls.out_of_fold(texts, labels, task, num_labels, settings,
                                                     seed, int(cross_fit))
            model.oof_texts = texts_digest(texts)
        return model

    @classmethod
    def _fit_once(cls, texts, labels, task, num_labels, settings, seed) -> CharNgramModel:
        vocabularies, idfs = fit_vocabularies(texts, settings)
        x = features(texts, vocabularies, idfs, settings)
        coef, intercept = fit_linear(x, np.asarray(labels), task, num_labels, settings, seed)
        return cls(vocabularies, idfs, coef, intercept, task=task, settings=settings)

    @classmethod
    def out_of_fold(cls, texts, labels, task, num_labels, settings, seed, k) -> np.ndarray:
        labels = np.asarray(labels)
        if task == "multilabel":
            stratified = False
        else:
            counts = np.bincount(labels.astype(int))
            stratified = bool(counts[counts > 0].min() >= k)  # every class in every fold
        splitter = (StratifiedKFold if stratified else KFold)(n_splits=k, shuffle=True,
                                                               random_state=seed)
        oof = np.zeros((len(texts), num_labels))
        for fit_idx, held_idx in splitter.split(np.zeros(len(texts)), labels if stratified else None):
            fold = cls._fit_once([texts[i] for i in fit_idx], labels[fit_idx], task, num_labels,
                                 settings, seed)
            oof[held_idx] = fold.decision([texts[i] for i in held_idx])
        return oof

    # -- inference ----------------------------------------------------------------------------

    def decision(self, texts: list[str]) -> np.ndarray:
        x = features(list(texts), self.vocabularies, self.idfs, self.settings)
        return np.asarray(x @ self.coef.T) + self.intercept

    def predict_texts(self, texts: list[str]) -> torch.Tensor:
        return torch.from_numpy(self.decision(texts)).float()

    def train_soft_logits(self, texts: list[str]) -> torch.Tensor:
        """Soft targets for the train split: out-of-fold when cross-fitted on exactly these
        texts, else in-sample (memorised, so a cross-fitted model says so when it falls back)."""
        if self.train_oof_logits is None:
            return self.predict_texts(texts)
        same = (self.oof_texts == texts_digest(texts) if self.oof_texts is not None
                else len(self.train_oof_logits) == len(texts))  # saved before the digest
        if same:
            return torch.from_numpy(self.train_oof_logits).float()
        log.warning("char_ngram: its out-of-fold logits label other train texts than these %d "
                    "(another split or data file): using its in-sample outputs, which are near "
                    "memorised; refit the teacher on this data for cross-fitted targets",
                    len(texts))
        return self.predict_texts(texts)

    def identity(self) -> str:
        """Digest of everything that decides the outputs (the teacher-output cache key)."""
        digest = hashlib.sha256(json.dumps([self.task, self.settings, self.vocabularies],
                                           sort_keys=True, ensure_ascii=False).encode())
        for array in [*self.idfs, self.coef, self.intercept,
                      *([] if self.train_oof_logits is None else [self.train_oof_logits])]:
            digest.update(np.ascontiguousarray(array).tobytes())
        return "char_ngram:" + digest.hexdigest()

    @property
    def parameter_counts(self) -> dict[str, float]:
        total = int(self.coef.size + self.intercept.size + sum(len(i) for i in self.idfs))
        nonzero = int(np.count_nonzero(self.coef) + np.count_nonzero(self.intercept)
                      + sum(np.count_nonzero(i) for i in self.idfs))
        return {"params_total": total, "params_nonzero": nonzero,
                "sparsity": 1.0 - nonzero / total if total else 0.0}

    # -- persistence (no pickle) --------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Vocabularies and settings as JSON, idf/coefficients (and the out-of-fold train
        logits) as safetensors; the model card is the caller's (`artifact.write_card`)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(json.dumps(
            {"format": FORMAT, "task": self.task, "settings": self.settings,
             "vocabularies": self.vocabularies, "oof_texts": self.oof_texts}, ensure_ascii=False))
        tensors = {f"idf.{i}": np.ascontiguousarray(idf) for i, idf in enumerate(self.idfs)}
        tensors.update(coef=np.ascontiguousarray(self.coef),
                       intercept=np.ascontiguousarray(self.intercept))
        save_file(tensors, str(directory / WEIGHTS_FILE))
        if self.train_oof_logits is not None:
            save_file({"logits": np.ascontiguousarray(self.train_oof_logits)},
                      str(directory / OOF_FILE))

    @classmethod
    def load(cls, directory: Path) -> CharNgramModel:
        directory = Path(directory)
        config = json.loads((directory / CONFIG_FILE).read_text())
        if config.get("format") != FORMAT:
            raise ValueError(f"{directory / CONFIG_FILE}: format {config.get('format')!r}, "
                             f"expected {FORMAT!r}")
        tensors = load_file(str(directory / WEIGHTS_FILE))
        idfs = [tensors[f"idf.{i}"] for i in range(len(config["vocabularies"]))]
        oof_path = directory / OOF_FILE
        oof = load_file(str(oof_path))["logits"] if oof_path.exists() else None
        return cls(config["vocabularies"], idfs, tensors["coef"], tensors["intercept"],
                   task=config["task"], settings=config["settings"], train_oof_logits=oof,
                   oof_texts=config.get("oof_texts"))


def is_char_ngram_dir(directory: Path) -> bool:
    return (Path(directory) / CONFIG_FILE).exists()
