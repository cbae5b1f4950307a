"""Where a student's teacher outputs come from: a live frozen teacher, or a disk cache.

With only logit, head-input (pooled) and pooled-hidden terms the teacher's outputs on the
training set do not change between epochs, students or runs, so they are computed once and
stored in safetensors, keyed by a hash of the teacher weights, the token ids of every cached
split and the pooling. Token-level hidden or attention terms (or augmented data) need the live
teacher. Which is which follows from each loss term's declared `needs` (`CACHEABLE_NEEDS`).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from hate_compress.data.tokenization import tokenizer_config
from hate_compress.models.classifier import HateClassifier, home_device, pool
from hate_compress.models.outputs import ModelOutputs
from hate_compress.storage import CACHE_KEY, replacing, writing

log = logging.getLogger(__name__)

#: The loss-term needs (`hate_compress.kd.terms.NEEDS`) a `CachedTeacher` serves: logits, the
#: head input (`pooled`) and per-layer hidden states pooled per sequence.
CACHEABLE_NEEDS = frozenset({"teacher_logits", "teacher_pooled", "pooled_hidden_states"})


def freeze(model: HateClassifier) -> HateClassifier:
    """Eval mode (no dropout) and no gradients: the teacher is a fixed function during KD."""
    model.eval()
    model.requires_grad_(False)
    return model


class LiveTeacher:
    def __init__(self, model: HateClassifier, key: str, *, hidden: bool, attentions: bool):
        self.model = freeze(model)
        self.key, self.hidden, self.attentions = key, hidden, attentions

    def outputs(self, batch, split: str) -> ModelOutputs:
        inputs = batch["inputs"][self.key]
        device = inputs["input_ids"].device
        if next(self.model.parameters()).device != device:
            self.model.to(device)
        self.model.eval()  # Lightning's train() calls never reach it (not a submodule)
        with torch.no_grad():
            return self.model(inputs["input_ids"], inputs["attention_mask"],
                              output_hidden_states=self.hidden,
                              output_attentions=self.attentions)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """Identity of a tokenizer's pipeline, ignoring truncation/padding state that tokenizing
    a dataset sets on it (the same tokenizer must not look different after use)."""
    return hashlib.sha256(tokenizer_config(tokenizer).encode()).hexdigest()


def cache_key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


# the splits whose teacher outputs are cached (test is only evaluated, by the live teacher)
CACHED_SPLITS = ("train", "dev")
# what a cache file holds per split; part of the key, so files written before `head` existed
# (they lack the head input) are never served
CACHE_LAYOUT = "logits+head+pooled"


def outputs_key(weights: Path, data, input_key: str, tokenizer, pooling: str | None) -> str:
    """Cache key of a teacher's outputs: every input that decides them, for every cached split.

    Per split the texts and labels (`fingerprint`) and the exact token ids the teacher reads
    (`token_fingerprint`: tokenizer, max_length, truncation); plus the weights, the pooling and
    the batch sizes (padding width). Keying on train alone once served another dev set's logits."""
    parts = [file_sha256(weights), tokenizer_fingerprint(tokenizer), f"max_length={data.max_length}",
             f"pooling={pooling}", f"batches={data.batch_size}/{data.eval_batch_size}",
             f"layout={CACHE_LAYOUT}"]
    for split in CACHED_SPLITS:
        parts += [split, data.fingerprint(split), data.token_fingerprint(input_key, split)]
    return cache_key(*parts)


class CachedTeacher:
    """Teacher outputs looked up by each example's `idx` in its split.

    Cached `hidden_states` hold one pooled vector per layer as a length-1 sequence, so the
    pooled path of the hidden term (CLS of a 1-token sequence, or its mean) returns exactly the
    stored vector: the term needs no special case for cached teachers."""

    def __init__(self, tensors: dict[str, Tensor]):
        self.tensors = tensors

    @classmethod
    def build(
        cls,
        teacher: HateClassifier,
        loaders: dict[str, object],
        key: str,
        path: Path,
        *,
        pooling: str | None,
        device: torch.device | None = None,
    ) -> CachedTeacher:
        """Load the cache at `path`, or compute it (on `device`, the training GPU, when given:
        a base-size teacher over the train set is the slow part of a KD run on CPU)."""
        path = Path(path)
        if path.exists():
            cached = cls(load_file(str(path)))
            if cached.matches({split: _num_examples(loader) for split, loader in loaders.items()}):
                log.info("teacher outputs: reusing cache %s", path)
                return cached
            log.warning("teacher outputs: %s does not match the splits' sizes; recomputing", path)
        log.info("teacher outputs: computing once for %s -> %s", ", ".join(loaders), path)
        freeze(teacher)
        home = home_device(teacher)
        device = device or home
        teacher.to(device)
        try:
            tensors = cls._compute(teacher, loaders, key, pooling, device)
        finally:
            teacher.to(home)
        with writing(path.parent, CACHE_KEY):
            path.parent.mkdir(parents=True, exist_ok=True)
            with replacing(path) as tmp:
                save_file(tensors, str(tmp))
        return cls(tensors)

    @staticmethod
    def _compute(teacher: HateClassifier, loaders: dict[str, object], key: str,
                 pooling: str | None, device: torch.device) -> dict[str, Tensor]:
        tensors: dict[str, Tensor] = {}
        for split, loader in loaders.items():
            logits, head, pooled, order = [], [], [], []
            with torch.no_grad():
                for batch in loader:
                    inputs = batch["inputs"][key]
                    ids, mask = inputs["input_ids"].to(device), inputs["attention_mask"].to(device)
                    out = teacher(ids, mask, output_hidden_states=pooling is not None)
                    logits.append(out.logits.float().cpu())
                    head.append(out.pooled.float().cpu())
                    order.append(batch["idx"])
                    if pooling is not None:
                        pooled.append(torch.stack(
                            [pool(h, mask, pooling) for h in out.hidden_states], dim=1,
                        ).float().cpu())
            idx = torch.cat(order)
            inverse = torch.empty_like(idx)
            inverse[idx] = torch.arange(len(idx))
            tensors[f"{split}.logits"] = torch.cat(logits)[inverse].contiguous()
            tensors[f"{split}.head"] = torch.cat(head)[inverse].contiguous()
            if pooling is not None:
                tensors[f"{split}.pooled"] = torch.cat(pooled)[inverse].contiguous()
        return tensors

    def matches(self, sizes: dict[str, int]) -> bool:
        """One row per example of every split (a second line of defence behind the key)."""
        return all(self.has(split) and len(self.tensors[f"{split}.logits"]) == n
                   for split, n in sizes.items())

    def has(self, split: str) -> bool:
        return f"{split}.logits" in self.tensors

    def outputs(self, batch, split: str) -> ModelOutputs:
        idx = batch["idx"].cpu()
        logits = self.tensors[f"{split}.logits"][idx]
        hidden = None
        if f"{split}.pooled" in self.tensors:
            layers = self.tensors[f"{split}.pooled"][idx]  # (B, L+1, H)
            hidden = tuple(layers[:, i : i + 1] for i in range(layers.shape[1]))
        # a text-level teacher's cache holds logits only (its terms are limited to logits)
        head = self.tensors.get(f"{split}.head")
        mask = torch.ones(len(idx), 1, dtype=torch.long)
        return ModelOutputs(logits=logits, attention_mask=mask,
                            pooled=None if head is None else head[idx], hidden_states=hidden)


def _num_examples(loader) -> int:
    dataset = getattr(loader, "dataset", None)
    return len(dataset) if dataset is not None else sum(len(b["idx"]) for b in loader)


class TeacherSource:
    """Cached outputs where available (train/dev), the live teacher otherwise."""

    def __init__(self, live: LiveTeacher, cache: CachedTeacher | None = None):
        self.live, self.cache = live, cache

    @property
    def model(self) -> HateClassifier:
        return self.live.model

    def outputs(self, batch, split: str) -> ModelOutputs:
        if self.cache is not None and self.cache.has(split):
            return self.cache.outputs(batch, split)
        return self.live.outputs(batch, split)
