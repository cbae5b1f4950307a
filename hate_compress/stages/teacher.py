"""Teacher stage: load a given checkpoint, reuse a stored teacher, or fine-tune one; then gate it.

Trained teachers go to a content-addressed store (`paths.teacher_store`) keyed by the whole
teacher-training config and the content of every data split (`teacher_identity`), so every
student of a matrix — and every later run — loads the same teacher instead of retraining it. A file lock makes parallel cells wait for the
one that trains.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import shutil
from contextlib import contextmanager
from pathlib import Path

import lightning.pytorch as pl

from hate_compress import distributed
from hate_compress.artifacts import load_classifier, read_meta
from hate_compress.errors import ConfigError, GateError, StorageError
from hate_compress.identity import TRAINER_LOGGING_KEYS, without
from hate_compress.kd.text_teacher import teacher_kind
from hate_compress.measure.footprint import artifact_size_mb
from hate_compress.models.char_ngram import CharNgramModel, is_char_ngram_dir
from hate_compress.models.classifier import is_text_level
from hate_compress.models.tokenizer import VOCAB_VERSION
from hate_compress.stages.baseline import record_baseline
from hate_compress.stages.common import build_classifier, fit, loss_for, plain, save
from hate_compress.stages.measure import measure_stage
from hate_compress.stages.state import Run, Trained, register_preflight, register_stage
from hate_compress.stages.text_teacher import check_text_teacher, fit_char_ngram, obtain_ensemble
from hate_compress.storage import OUTPUT_KEY, STORE_KEY, check_writable, writing

log = logging.getLogger(__name__)

# Keys that provably do not change the trained teacher; everything else in the teacher, trainer
# (which holds the hardware group: accelerator, precision, ...) and data groups does (see hate_compress/identity.py for why this is an exclusion list).
TEACHER_HARMLESS = ("checkpoint", "min_f1", "retrain")  # where it comes from, and the gate
# files are identified by their content (`fingerprints`), so moving them changes nothing;
# `num_workers` only parallelises loading; `name` and `licence` are labels
# the neural settings a text-level teacher (char_ngram, ensemble) inherits from _base but never reads
TEXT_TEACHER_UNUSED = ("backbone", "head", "train")
DATA_HARMLESS = ("name", "licence", "train_file", "dev_file", "test_file", "num_workers")


def teacher_identity(run: Run) -> dict:
    """Everything the teacher's weights depend on: the resolved teacher config (its seed
    included), the whole trainer config with the hardware group merged into it (clipping,
    accumulation, precision, devices, limits, ...), the data config and the content of every
    split (dev picks the best epoch)."""
    unused = () if teacher_kind(run.cfg.teacher) == "neural" else TEXT_TEACHER_UNUSED
    return {
        "teacher": without(plain(run.cfg.teacher), (*TEACHER_HARMLESS, *unused)),
        "trainer": without(plain(run.cfg.trainer), TRAINER_LOGGING_KEYS),
        "data": without(plain(run.cfg.data), DATA_HARMLESS),
        "splits": run.data.fingerprints(),
        "vocab_rule": VOCAB_VERSION,
    }


def teacher_key(run: Run) -> str:
    ident = json.dumps(teacher_identity(run), sort_keys=True, default=str)
    return f"{run.cfg.teacher.name}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


@contextmanager
def locked(path: Path):
    """The store's file lock; in a distributed run rank 0 holds it for every rank (the others
    follow rank 0's decision, see `obtain_teacher`)."""
    if not distributed.is_rank_zero():
        yield
        return
    with writing(path.parent, STORE_KEY):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "w")  # closed by the `with` below
    with handle as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def check_labels(run: Run, meta: dict, where: Path) -> None:
    if list(meta["label_names"]) != list(run.data.label_names) or meta["task"] != run.data.task:
        raise ConfigError(
            f"teacher.checkpoint={where}: it predicts {meta['task']} {meta['label_names']} but "
            f"data={run.cfg.data.name} has {run.data.task} {list(run.data.label_names)}"
        )


def load_teacher(run: Run, directory: Path) -> Trained:
    check_labels(run, read_meta(directory), directory)
    if is_char_ngram_dir(directory):  # JSON + safetensors: never unpickled
        return Trained("teacher", CharNgramModel.load(directory), None, "teacher", directory)
    model, tokenizer, _ = load_classifier(directory)
    return Trained("teacher", model, tokenizer, "teacher", directory)


def store_atomically(target: Path, write) -> None:
    """`write(tmp)` then rename to `target`: a half-written teacher is never mistaken for a
    finished one."""
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with writing(tmp, STORE_KEY):
        write(tmp)
    with writing(target, STORE_KEY):
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)


def train_teacher(run: Run, target: Path) -> Trained:
    if teacher_kind(run.cfg.teacher) == "char_ngram":
        distributed.on_rank_zero(lambda: store_atomically(target, lambda tmp: fit_char_ngram(run, tmp)),
                                 share=False)
        return load_teacher(run, target)  # what KD reads is exactly what the store holds
    pl.seed_everything(int(run.cfg.teacher.seed), workers=True, verbose=False)
    model, tokenizer = build_classifier(run, "teacher")
    trained = Trained("teacher", model, tokenizer, "teacher")
    run.data.set_tokenizers({"teacher": tokenizer})
    train_cfg = run.cfg.teacher.train
    loss = loss_for(run, {"terms": {}}, model, None, True, bool(train_cfg.class_weights))
    fit(run, "teacher", trained, loss, train_cfg=train_cfg)  # on every rank
    distributed.on_rank_zero(lambda: store_atomically(target, lambda tmp: save(
        run, trained, tmp, STORE_KEY, teacher_config=plain(run.cfg.teacher))), share=False)
    trained.path = target
    return trained


def obtain_teacher(run: Run) -> Trained:
    cfg = run.cfg.teacher
    if cfg.get("checkpoint"):
        directory = Path(cfg.checkpoint).expanduser()
        if not (directory / "hate_compress.json").exists():
            raise ConfigError(f"teacher.checkpoint={directory}: no saved hate_compress model there")
        log.info("[teacher] loading %s", directory)
        return load_teacher(run, directory)
    target = Path(run.cfg.paths.teacher_store) / teacher_key(run)
    try:  # rank 0 probes; the others raise what it raised
        distributed.on_rank_zero(lambda: check_writable(target.parent, STORE_KEY), share=False)
    except StorageError:
        if target.exists() and not cfg.get("retrain"):  # a read-only store still serves reads
            log.warning("[teacher] %s is not writable; reusing %s without a lock", target.parent,
                        target)
            return load_teacher(run, target)
        raise
    with locked(target.with_name(target.name + ".lock")):
        # every rank trains, or every rank loads: rank 0 decides under the lock
        if distributed.broadcast(target.exists()) and not cfg.get("retrain"):
            log.info("[teacher] reusing stored teacher %s (teacher.retrain=true to retrain)", target)
            return load_teacher(run, target)
        return train_teacher(run, target)


register_preflight("teacher")(check_text_teacher)


@register_stage("teacher", rank=0)
def teacher_stage(run: Run) -> None:
    members = None
    if teacher_kind(run.cfg.teacher) == "ensemble":
        trained, members = obtain_ensemble(run, obtain_teacher)
    else:
        trained = obtain_teacher(run)
    if not is_text_level(trained.model):  # text-level teachers read raw texts, not batches
        run.data.set_tokenizers({"teacher": trained.tokenizer})
    run.teacher = run.current = trained
    extra = None if members is None else {
        "members": members, "combine": str(run.cfg.teacher.combine),
        "size_mb": sum(artifact_size_mb(Path(m["artifact"])) for m in members.values())}
    values = measure_stage(run, "teacher", trained, extra=extra)
    pointer = run.stage_dir("teacher") / "model_path.txt"
    paths = [m["artifact"] for m in members.values()] if members else [str(trained.path)]
    if distributed.is_rank_zero():
        with writing(pointer, OUTPUT_KEY):
            pointer.write_text("\n".join(paths) + "\n")
    gate = float(run.cfg.teacher.min_f1)
    dev_f1 = values["dev"]["macro_f1"]
    values["gate"] = {"min_f1": gate, "dev_macro_f1": dev_f1, "passed": dev_f1 >= gate}
    run.record("teacher", values)
    record_baseline(run, obtain_teacher)  # measure.baseline: the char_ngram reference row
    later = [s for s in run.cfg.stages if s not in ("teacher", "report")]
    if dev_f1 < gate and later:
        raise GateError(
            f"teacher gate: dev macro F1 {dev_f1:.4f} < teacher.min_f1={gate}; stopping before "
            f"{', '.join(later)} (KD from a weak teacher only teaches its mistakes) — train longer "
            f"(teacher.train.epochs), check the data, or lower teacher.min_f1{smoke_hint(run)}"
        )


def smoke_hint(run: Run) -> str:
    """A trainer that sees a few batches per epoch (`trainer=fast`) is a smoke run, which is
    about plumbing: say how to turn the gate off rather than how to train better."""
    limit = run.cfg.trainer.get("limit_train_batches")
    if limit is None or float(limit) == 1.0:
        return ""
    return (f"; trainer.limit_train_batches={limit} looks like a smoke run: use debug=tiny "
            "(gate off) or add teacher.min_f1=0")
