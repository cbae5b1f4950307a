"""Teachers that read raw text (`char_ngram`, `ensemble`): their soft targets, served as a cache.

A text-level teacher has no token ids in the batch, but KD with logit terms only needs its
logits per example, and batches carry `idx` (the row in the split). So its logits are computed
once per split from the texts — out-of-fold for train when the teacher was cross-fitted — and
served through `CachedTeacher`, keyed on disk by the teacher's identity and every split's content.
Because the teacher reads the full raw text, the student keeps its own tokenizer and truncation.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from hate_compress.kd.teacher import CachedTeacher, TeacherSource, cache_key
from hate_compress.models.classifier import HateClassifier
from hate_compress.storage import CACHE_KEY, replacing, writing

log = logging.getLogger(__name__)

# every split: the text teacher has no live fallback for the split it would miss
TEXT_SPLITS = ("train", "dev", "test")


# teacher kinds (`teacher.kind`) whose model reads raw text; the default kind is "neural"
TEXT_KINDS = ("char_ngram", "ensemble")
#: the loss-term needs a text-level teacher serves: its cache holds logits and nothing else
TEXT_TEACHER_NEEDS = frozenset({"teacher_logits"})


def teacher_kind(teacher_cfg) -> str:
    return str(teacher_cfg.get("kind") or "neural")


class TokenizedTextModel:
    """A trained HateClassifier + its tokenizer behind the text interface (ensemble members)."""

    text_level = True
    runtime = "torch"

    def __init__(self, model: HateClassifier, tokenizer, max_length: int, digest: str,
                 batch_size: int = 64):
        self.model, self.tokenizer, self.digest = model, tokenizer, digest
        self.max_length, self.batch_size = int(max_length), int(batch_size)
        self.num_layers, self.hidden_size = model.num_layers, model.hidden_size

    def predict_texts(self, texts: list[str]) -> torch.Tensor:
        self.model.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(list(texts[start:start + self.batch_size]), truncation=True,
                                     max_length=self.max_length, padding=True,
                                     return_tensors="pt")
                out.append(self.model(enc["input_ids"], enc["attention_mask"]).logits.float())
        return torch.cat(out) if out else torch.zeros(0, self.model.num_labels)

    def train_soft_logits(self, texts: list[str]) -> torch.Tensor:
        return self.predict_texts(texts)

    def identity(self) -> str:
        return f"neural:{self.digest}:max_length={self.max_length}"

    @property
    def parameter_counts(self) -> dict:
        from hate_compress.measure.footprint import count_parameters

        return count_parameters(self.model)


def split_logits(model, data) -> dict[str, torch.Tensor]:
    """`{"train.logits": ..., "dev.logits": ..., "test.logits": ...}` from the raw texts."""
    tensors = {}
    for split in TEXT_SPLITS:
        if split == "test" and not data.has_test:
            continue
        texts = data.texts(split)
        logits = model.train_soft_logits(texts) if split == "train" else model.predict_texts(texts)
        tensors[f"{split}.logits"] = logits.float().contiguous()
    return tensors


def text_teacher_source(run, needs=TEXT_TEACHER_NEEDS) -> TeacherSource:
    """Soft targets of a text-level teacher for every split, through the disk cache."""
    extra = set(needs) - TEXT_TEACHER_NEEDS
    if extra:  # the preflight rejects these terms; a direct caller gets the same rule
        raise ValueError(f"a text-level teacher gives logits only, not {sorted(extra)}")
    teacher = run.teacher
    parts = [teacher.model.identity(), f"max_length={run.data.max_length}"]
    for split in TEXT_SPLITS:
        if split != "test" or run.data.has_test:
            parts += [split, run.data.fingerprint(split)]
    path = Path(run.cfg.paths.cache_dir) / "teacher_outputs" / f"text-{cache_key(*parts)}.safetensors"
    if path.exists():
        tensors = load_file(str(path))
        cached = CachedTeacher(tensors)
        if cached.matches({s: n for s, n in run.data.split_sizes.items() if s in TEXT_SPLITS}):
            log.info("teacher outputs: reusing cache %s", path)
            return TeacherSource(None, cached)
    log.info("teacher outputs: computing the text teacher's logits once -> %s", path)
    tensors = split_logits(teacher.model, run.data)
    with writing(path.parent, CACHE_KEY):
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            save_file(tensors, str(tmp))
    return TeacherSource(None, CachedTeacher(tensors))
