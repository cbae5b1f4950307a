"""What the KD benchmarks share: the tiny teacher/student on real GermEval texts, timing, tables.

Everything on the framework side is built with the package's own functions, in the order
`hate_compress/stages/kd.py::kd_stage` calls them (`build_classifier`, `shares_tokenizer`,
`set_tokenizers`, `loss_for`, `teacher_source`, `fit` -> `ClassifierModule` + `make_trainer`), from
configs composed by Hydra from `conf/` exactly like a real run. Only `save` and `measure_stage`
(after training) are left out. The plain loop (`plain_kd_loop.py`) gets the *same* teacher
instance, an identically initialised student, the same tokenizer, texts, batch size and padded
length.

Fixed sequence length: the package pads per batch (dynamic padding); a hand-written script
usually pads every text to `max_length`. To compare equal work, both sides here pad to
`--max-length` (64): the framework keeps its own datamodule (reading, split, tokenization,
sampler, collate) and only gets a wrapper around its collate that right-pads each batch to the
fixed width (`FixedLengthDataModule`). Texts are truncated to the same length on both sides.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import json
import logging
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
CONF = REPO / "conf"

if str(REPO) not in sys.path:  # `python bench/x.py` from anywhere, without installing bench/
    sys.path.insert(0, str(REPO))

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

import hate_compress.resolvers  # noqa: E402,F401  (registers ${data_file:...})
from hate_compress.data.datamodule import HateDataModule  # noqa: E402
from hate_compress.pipeline.console import quiet_lightning  # noqa: E402
from hate_compress.stages.common import build_classifier, fit, loss_for, save  # noqa: E402
from hate_compress.stages.kd import shares_tokenizer, teacher_source  # noqa: E402
from hate_compress.stages.state import Run, Trained  # noqa: E402

log = logging.getLogger("bench")

DEFAULT_MAX_LENGTH = 64
DEFAULT_BATCH_SIZE = 32
SEED = 42


def data_dir() -> Path:
    """`HATE_COMPRESS_DATA_DIR`, else `../shared/data` beside the checkout."""
    env = os.environ.get("HATE_COMPRESS_DATA_DIR")
    return Path(env).expanduser() if env else (REPO.parent / "shared" / "data").resolve()


def check_data() -> Path:
    path = data_dir()
    if not (path / "germeval2018" / "train.tsv").exists():
        sys.exit(f"error: {path}/germeval2018/train.tsv not found; set HATE_COMPRESS_DATA_DIR")
    return path


def set_threads(threads: int | None) -> int:
    threads = int(threads or os.cpu_count() or 1)
    torch.set_num_threads(threads)
    return torch.get_num_threads()


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "loadavg_1_5_15": [round(x, 2) for x in load],
    }


def now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def command_line() -> str:
    env = f"HATE_COMPRESS_DATA_DIR={os.environ['HATE_COMPRESS_DATA_DIR']} " \
        if "HATE_COMPRESS_DATA_DIR" in os.environ else ""
    exe = os.path.relpath(sys.executable, Path.cwd()) if sys.executable else "python"
    return env + " ".join([exe, *sys.argv])


def quiet() -> None:
    """Lightning's banner and our INFO lines off the console; warnings we know about muted."""
    quiet_lightning()
    for name in ("lightning.pytorch", "lightning.fabric", "hate_compress"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*could not find the monitored key.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*ModelCheckpoint.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="lightning")


# -- data ------------------------------------------------------------------------------------------


class PadTo:
    """Wraps the package's collate: right-pads every tokenization of a batch to `length`."""

    def __init__(self, inner, length: int):
        self.inner, self.length = inner, int(length)

    def __call__(self, positions):
        batch = self.inner(positions)
        for keys, _, pad_id, left in self.inner.groups:
            tensors = batch["inputs"][keys[0]]
            extra = self.length - tensors["input_ids"].shape[1]
            if extra <= 0:
                continue
            spec = (extra, 0) if left else (0, extra)
            padded = {"input_ids": F.pad(tensors["input_ids"], spec, value=pad_id),
                      "attention_mask": F.pad(tensors["attention_mask"], spec, value=0)}
            for key in keys:  # keys sharing a tokenizer keep sharing one tensor
                batch["inputs"][key] = padded
        return batch


class FixedLengthDataModule(HateDataModule):
    """The package's datamodule; batches padded to `max_length` instead of their longest text."""

    fixed_length = True
    _full: dict | None = None

    def use_examples(self, n: int | None) -> None:
        """Train on the first `n` train examples (None: all), dev cut in the same proportion
        as the real split, so a shortened epoch keeps the real train:dev ratio (which sets how
        much of the teacher-output cache build is dev)."""
        self.setup()
        if self._full is None:
            self._full = dict(self._splits)
        full_train, full_dev = self._full["train"], self._full["dev"]
        if n is None or n >= len(full_train):
            self._splits = dict(self._full)
        else:
            n_dev = max(1, math.ceil(n * len(full_dev) / len(full_train)))
            self._splits = {**self._full, "train": full_train.subset(range(n)),
                            "dev": full_dev.subset(range(min(n_dev, len(full_dev))))}
        self._encodings = [(tok, {}) for tok, _ in self._encodings]  # re-tokenize lazily

    def dataloader(self, split, shuffle=False, batch_size=None):
        loader = super().dataloader(split, shuffle=shuffle, batch_size=batch_size)
        if self.fixed_length:
            loader.collate_fn = PadTo(loader.collate_fn, self.max_length)
        return loader


# -- the KD setup ----------------------------------------------------------------------------------


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


@dataclass
class KDSetup:
    """Tiny teacher (saved, so the output cache can key on its weights), data and config.

    `base` are the Hydra overrides every run shares; `framework_kd` adds per-run ones."""

    workdir: Path
    base: list[str]
    cfg: DictConfig
    data: HateDataModule
    teacher: Trained
    max_length: int
    batch_size: int
    train_examples: int
    _runs: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cache_dir(self) -> Path:
        return self.workdir / "cache"

    def config(self, overrides: Sequence[str] = ()) -> DictConfig:
        return compose([*self.base, *overrides])

    def new_run(self, cfg: DictConfig, callbacks: dict | None = None) -> Run:
        self._runs += 1
        run_dir = self.workdir / "runs" / f"r{self._runs}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run = Run(cfg, run_dir, self.data, callbacks=dict(callbacks or {}))
        run.teacher = self.teacher
        return run

    def clear_teacher_cache(self) -> None:
        shutil.rmtree(self.cache_dir / "teacher_outputs", ignore_errors=True)

    def cleanup_runs(self) -> None:
        shutil.rmtree(self.workdir / "runs", ignore_errors=True)


def make_setup(
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workdir: Path | None = None,
    fixed_length: bool = True,
    overrides: Sequence[str] = (),
) -> KDSetup:
    """Compose the real config (tiny_teacher -> tiny_student, kd=logit, germeval_coarse), read
    the data with the package's datamodule and build + save a (randomly initialised) teacher.

    The teacher is not trained: its weights do not change the cost of a step, and training it
    would only cost benchmark time. Validation is switched off (`limit_val_batches=0`) because the
    plain loop has none; everything else is the default `trainer`, `hardware=cpu`, `logger=csv`."""
    quiet()
    check_data()
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="kd_bench_", dir=_tmp_root()))
        atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    base = [
        "data=germeval_coarse", "teacher=tiny_teacher", "student=tiny_student", "kd=logit",
        f"paths.data_dir={data_dir()}", f"paths.cache_dir={workdir / 'cache'}",
        f"paths.output_root={workdir / 'outputs'}", f"data.max_length={max_length}",
        f"data.batch_size={batch_size}", "resume=false", "+trainer.limit_val_batches=0",
        *overrides,
    ]
    cfg = compose(base)
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    data_cfg.pop("_target_")
    data = FixedLengthDataModule(**data_cfg)  # == app.make_data, with the fixed-length collate
    data.fixed_length = fixed_length
    data.setup()
    pl.seed_everything(SEED, workers=True, verbose=False)
    run = Run(cfg, workdir / "teacher_run", data)
    model, tokenizer = build_classifier(run, "teacher")
    teacher = Trained("teacher", model, tokenizer, "teacher")
    save(run, teacher, workdir / "teacher")
    return KDSetup(workdir, base, cfg, data, teacher, max_length, batch_size,
                   data.split_sizes["train"])


def _tmp_root() -> str:
    root = RESULTS / "work"  # scratch (teacher, tokenizer, caches, run dirs); removed at exit
    root.mkdir(parents=True, exist_ok=True)
    return str(root)


def build_student(setup: KDSetup, run: Run | None = None):
    """`(student, tokenizer, shared)` as kd_stage builds them (same seed -> same weights)."""
    run = run or setup.new_run(setup.cfg)
    pl.seed_everything(int(run.cfg.seed), workers=True, verbose=False)
    model, tokenizer = build_classifier(run, "student")
    shared = shares_tokenizer(tokenizer, setup.teacher.tokenizer)
    if shared:
        tokenizer = setup.teacher.tokenizer
    return model, tokenizer, shared


class TrainTimer(Callback):
    """Timestamps of every training batch start and epoch boundary (perf_counter)."""

    def __init__(self):
        self.batch_starts: list[float] = []
        self.epoch_starts: list[float] = []
        self.epoch_ends: list[float] = []
        self.threads = None
        self.deterministic = None

    def on_train_start(self, trainer, pl_module):
        self.threads = torch.get_num_threads()
        self.deterministic = torch.are_deterministic_algorithms_enabled()

    def on_train_epoch_start(self, trainer, pl_module):
        self.epoch_starts.append(time.perf_counter())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batch_starts.append(time.perf_counter())

    def on_train_epoch_end(self, trainer, pl_module):
        self.epoch_ends.append(time.perf_counter())


@dataclass
class FrameworkResult:
    timer: TrainTimer
    cache_build_s: float
    fit_wall_s: float
    cached: bool


def framework_kd(
    setup: KDSetup,
    *,
    cache: bool,
    epochs: int = 1,
    limit_train_batches: int | None = None,
    overrides: Sequence[str] = (),
    extra_callbacks: Sequence[Callback] = (),
    on_phase=None,
) -> FrameworkResult:
    """One KD fit of the framework, built as `kd_stage` builds it. With `cache`, the teacher
    output cache is built from scratch (its time is returned as `cache_build_s`). `on_phase` is
    called with "cache", "train" and "done" as the run moves on (memory.py tags RSS samples)."""
    phase = on_phase or (lambda name: None)
    ov = [f"kd.cache={str(cache).lower()}", f"student.train.epochs={epochs}", *overrides]
    if limit_train_batches:
        ov.append(f"+trainer.limit_train_batches={int(limit_train_batches)}")
    cfg = setup.config(ov)
    timer = TrainTimer()
    run = setup.new_run(cfg, callbacks={"kd": [timer, *extra_callbacks]})
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        # --- kd_stage, verbatim apart from the logging, save and measure_stage ---
        model, tokenizer, shared = build_student(setup, run)
        run.data.set_tokenizers({"teacher": run.teacher.tokenizer, "student": tokenizer})
        student = Trained("student", model, tokenizer, "student")
        loss = loss_for(run, run.cfg.kd, model, run.teacher.model, shared,
                        bool(run.cfg.student.train.class_weights))
        if cache:
            setup.clear_teacher_cache()
        phase("cache")
        start = time.perf_counter()
        source = teacher_source(run, loss, shared) if loss.needs else None
        cache_build_s = time.perf_counter() - start
        if cache != bool(source is not None and source.cache is not None):
            raise RuntimeError(f"expected teacher cache={cache}, got {source and source.cache}")
        phase("train")
        start = time.perf_counter()
        fit(run, "kd", student, loss, train_cfg=run.cfg.student.train, teacher_source=source,
            shared_tokenizer=shared)
        fit_wall_s = time.perf_counter() - start
        phase("done")
    finally:
        # trainer.deterministic=true switches torch's global flag on and leaves it on; restore
        # it so a plain run in the same process is not measured under the framework's setting
        torch.use_deterministic_algorithms(deterministic)
        setup.cleanup_runs()
    return FrameworkResult(timer, cache_build_s if cache else 0.0, fit_wall_s, cache)


# -- what-if: teacher forward before the student forward (bench-only patch) ------------------------


def _teacher_first_loss(self, batch, split):
    """`ClassifierModule._loss` with the two forwards swapped: the teacher (no grad, eval mode:
    draws no random numbers, so the student's dropout masks and results are unchanged) runs
    before the student, whose saved activations then go straight into backward."""
    from hate_compress.kd.context import LossContext

    teacher = self.teacher_source.outputs(batch, split) if self.teacher_source else None
    student = self.student_outputs(batch)
    ctx = LossContext(student=student, teacher=teacher, labels=batch["labels"],
                      task=self.task, shared_tokenizer=self.shared_tokenizer)
    total, parts = self.loss(ctx)
    return total, student, teacher, parts


@contextlib.contextmanager
def teacher_first(enabled: bool = True):
    """Patch `ClassifierModule._loss` in this process only (never the package's files)."""
    from hate_compress.training.module import ClassifierModule

    if not enabled:
        yield
        return
    original = ClassifierModule._loss
    ClassifierModule._loss = _teacher_first_loss
    try:
        yield
    finally:
        ClassifierModule._loss = original


# -- timing helpers --------------------------------------------------------------------------------


def window(batch_starts: Sequence[float], warmup: int, steps: int) -> float:
    """Seconds of `steps` whole iterations after `warmup` (start of batch W to start of W+N)."""
    if len(batch_starts) < warmup + steps + 1:
        raise RuntimeError(f"only {len(batch_starts)} batches timed; need {warmup + steps + 1}")
    return batch_starts[warmup + steps] - batch_starts[warmup]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    return f"{min(values):.0f}–{max(values):.0f}"


# -- output ----------------------------------------------------------------------------------------


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def write_text(name: str, text: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(text)
    return path


@contextlib.contextmanager
def stderr_to(path: Path):
    """Lightning's progress bar (rich writes to stdout, tqdm to stderr) and warnings go to a log
    file, as under nohup; `say` still reaches the console."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh, contextlib.redirect_stderr(fh), contextlib.redirect_stdout(fh):
        yield


def say(*args) -> None:
    """Print to the real stdout, also inside `stderr_to`."""
    print(*args, file=sys.__stdout__, flush=True)
