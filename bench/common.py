"""What the KD benchmarks share: the tiny teacher/student on real GermEval texts, timing, tables.

The framework side IS the package's KD stage: `framework_kd` calls
`hate_compress.stages.kd.prepare_kd` (student, loss, teacher source and its output cache) and
`fit_kd` (`ClassifierModule` + `make_trainer`), the two halves `kd_stage` itself runs, on configs
composed by Hydra from `conf/` exactly like a real run. Only `save` and `measure_stage` (after
training) are left out. The plain loop (`plain_kd_loop.py`) gets the *same* teacher instance and
the student `prepare_kd` builds (same seed, same weights), the same tokenizer, texts, batch size
and padded length.

Fixed sequence length: the package pads per batch (dynamic padding); a hand-written script
usually pads every text to `max_length`. To compare equal work, both sides here pad to
`--max-length` (64): the framework keeps its own datamodule (reading, split, tokenization,
sampler, collate) and only gets a wrapper around its collate that right-pads each batch to the
fixed width (`FixedLengthDataModule`). Texts are truncated to the same length on both sides.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
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
from hate_compress.stages import kd as kd_stage  # noqa: E402  (module: tests spy on it)
from hate_compress.stages.common import build_classifier, save  # noqa: E402
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
    data: str = "germeval_coarse",
    overrides: Sequence[str] = (),
    quiet_console: bool = True,
) -> KDSetup:
    """Compose the real config (tiny_teacher -> tiny_student, kd=logit, `data`), read the data
    with the package's datamodule and build + save a (randomly initialised) teacher.

    The teacher is not trained: its weights do not change the cost of a step, and training it
    would only cost benchmark time. Validation is switched off (`limit_val_batches=0`) because the
    plain loop has none; everything else is the default `trainer`, `hardware=cpu`, `logger=csv`.
    `data=synthetic` (the sample shipped with the package) needs no dataset directory: the test
    of this module runs on it (with `quiet_console=False`: in a test process our loggers stay
    as pytest set them, for the tests that assert on log lines)."""
    if quiet_console:
        quiet()
    if data != "synthetic":
        check_data()
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="kd_bench_", dir=_tmp_root()))
        atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    base = [
        f"data={data}", "teacher=tiny_teacher", "student=tiny_student", "kd=logit",
        f"paths.data_dir={data_dir()}", f"paths.cache_dir={workdir / 'cache'}",
        f"paths.output_root={workdir / 'outputs'}", f"data.max_length={max_length}",
        f"data.batch_size={batch_size}", "resume=false", "++trainer.limit_val_batches=0",
        *overrides,
    ]
    cfg = compose(base)
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    data_cfg.pop("_target_")
    datamodule = FixedLengthDataModule(**data_cfg)  # == pipeline.runner.make_data, with the fixed-length collate
    datamodule.fixed_length = fixed_length
    datamodule.setup()
    pl.seed_everything(SEED, workers=True, verbose=False)
    run = Run(cfg, workdir / "teacher_run", datamodule)
    model, tokenizer = build_classifier(run, "teacher")
    teacher = Trained("teacher", model, tokenizer, "teacher")
    save(run, teacher, workdir / "teacher")
    return KDSetup(workdir, base, cfg, datamodule, teacher, max_length, batch_size,
                   datamodule.split_sizes["train"])


def _tmp_root() -> str:
    root = RESULTS / "work"  # scratch (teacher, tokenizer, caches, run dirs); removed at exit
    root.mkdir(parents=True, exist_ok=True)
    return str(root)


def prepare(run: Run) -> kd_stage.PreparedKD:
    """The KD stage's first half, seeded as the pipeline runner seeds every stage."""
    pl.seed_everything(int(run.cfg.seed), workers=True, verbose=False)
    return kd_stage.prepare_kd(run)


def build_student(setup: KDSetup):
    """`(student, tokenizer, shared)` exactly as the KD stage builds them (`prepare_kd` with the
    live teacher; same seed -> same weights): what the plain loop trains."""
    run = setup.new_run(setup.config(["kd.cache=false"]))
    prepared = prepare(run)
    return prepared.student.model, prepared.student.tokenizer, prepared.shared


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
    prepare_s: float  # prepare_kd: student + loss + teacher source (the cache build, if cached)
    fit_wall_s: float
    cached: bool
    prepared: Any = None

    @property
    def cache_build_s(self) -> float:
        """Seconds of `prepare_kd` when it built the teacher-output cache, else 0."""
        return self.prepare_s if self.cached else 0.0


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
    """One KD fit of the framework: the package's `prepare_kd` then `fit_kd`. With `cache`, the
    teacher output cache is built from scratch inside `prepare_kd` (so `prepare_s` includes the
    student build, ~0.1 s, beside the cache). `on_phase` is called with "prepare", "train" and
    "done" as the run moves on (memory.py tags RSS samples with them)."""
    phase = on_phase or (lambda name: None)
    ov = [f"kd.cache={str(cache).lower()}", f"student.train.epochs={epochs}", *overrides]
    if limit_train_batches:
        ov.append(f"++trainer.limit_train_batches={int(limit_train_batches)}")
    cfg = setup.config(ov)
    timer = TrainTimer()
    run = setup.new_run(cfg, callbacks={"kd": [timer, *extra_callbacks]})
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        if cache:
            setup.clear_teacher_cache()
        phase("prepare")
        start = time.perf_counter()
        prepared = prepare(run)
        prepare_s = time.perf_counter() - start
        built = bool(prepared.source is not None and prepared.source.cache is not None)
        if cache != built:
            raise RuntimeError(f"expected teacher cache={cache}, prepare_kd built cache={built}")
        phase("train")
        start = time.perf_counter()
        kd_stage.fit_kd(run, prepared)
        fit_wall_s = time.perf_counter() - start
        phase("done")
    finally:
        # trainer.deterministic=true switches torch's global flag on and leaves it on; restore
        # it so a plain run in the same process is not measured under the framework's setting
        torch.use_deterministic_algorithms(deterministic)
        setup.cleanup_runs()
    return FrameworkResult(timer, prepare_s, fit_wall_s, cache, prepared)


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


def write_text(name: str, text: str) -> Path:
    """A human-readable companion of a result (`<name>.md`, not committed: the JSON is)."""
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
