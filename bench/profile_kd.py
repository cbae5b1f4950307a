"""Where the framework's KD step spends its time (live teacher), and what the cache build costs.

Four looks at the same step (tiny_teacher 4x256 -> tiny_student 2x128, batch 32 x 64 tokens,
logit KD, the package's KD stage itself: `prepare_kd` + `fit_kd` from `stages/kd.py`):

1. Lightning's SimpleProfiler: ms per step of every hook/action of the training loop (what is
   Lightning machinery and what is the model's work), next to the plain loop's ms/step.
2. cProfile over the timed steps: self time grouped by origin (torch kernels called from Python,
   transformers, Lightning, hate_compress, progress bar, ...) and the framework's own per-step
   entry points (logging, reseed, teacher source, collate, clipping).
3. torch.profiler (CPU): the top aten ops by self time.
4. cProfile of `prepare_kd` building the teacher-output cache (one-off): teacher forward vs
   hashing, tokenization, file write.
Plus one environment check: the same plain step with 1 vs 2 torch threads (`--threads-check`).

    python bench/profile_kd.py                    # ~2 min on 2 busy cores
    python bench/profile_kd.py --steps 40 --top 30

Writes bench/results/profile_kd.json (all tables' numbers; BENCHMARKS.md shows a summary) and
bench/results/profile_kd.md (the full tables, not committed).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import statistics
import time
from collections import defaultdict

import torch
from lightning.pytorch.callbacks import Callback

try:
    from bench import common
    from bench.plain_kd_loop import plain_kd
except ImportError:  # `python bench/profile_kd.py`
    import common
    from plain_kd_loop import plain_kd
from bench import results_io, tables  # noqa: E402  (common put the repository on sys.path)


class WindowProfiler(Callback):
    """Runs `start()` at the start of batch W and `stop()` at the start of batch W+N."""

    def __init__(self, warmup: int, steps: int, start, stop):
        self.warmup, self.steps, self.start, self.stop = warmup, steps, start, stop
        self.seen = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.seen == self.warmup:
            self.start()
        elif self.seen == self.warmup + self.steps:
            self.stop()
        self.seen += 1


class GrabProfiler(Callback):
    def on_train_end(self, trainer, pl_module):
        self.recorded = dict(trainer.profiler.recorded_durations)


# -- 1. Lightning's own per-action timings ---------------------------------------------------------


def simple_profile(setup, warmup, steps, top):
    grab = GrabProfiler()
    fw = common.framework_kd(setup, cache=False, limit_train_batches=warmup + steps + 1,
                             overrides=["+trainer.profiler=simple"], extra_callbacks=[grab])
    step_ms = 1000 * common.window(fw.timer.batch_starts, warmup, steps) / steps
    rows = []
    for action, durations in grab.recorded.items():
        if len(durations) < warmup + steps:
            continue  # once-per-fit actions (setup, epoch hooks)
        ms = 1000 * statistics.mean(durations[warmup:warmup + steps])
        rows.append((ms, action))
    rows.sort(reverse=True)
    return step_ms, rows[:top]


# -- 2. cProfile -----------------------------------------------------------------------------------

ORIGINS = (
    ("progress bar (rich/tqdm)", ("/rich/", "/tqdm/", "progress")),
    ("hate_compress (ours)", ("/hate_compress/",)),
    ("bench wrappers (PadTo, timer)", ("/bench/",)),
    ("lightning", ("/lightning/", "/lightning_utilities/", "/lightning_fabric/", "/torchmetrics/")),
    ("transformers (python)", ("/transformers/",)),
    ("torch (python)", ("/torch/",)),
)

# the framework's own per-step code paths (file fragment, function name)
ENTRY_POINTS = (
    ("ClassifierModule.training_step (whole)", "training/module.py", "training_step"),
    ("TeacherSource/LiveTeacher.outputs (teacher fwd)", "kd/teacher.py", "outputs"),
    ("student forward (HateClassifier.forward, both models)", "models/classifier.py", "forward"),
    ("CompositeLoss (ce + logit terms)", "kd/terms.py", "forward"),
    ("LightningModule.log (4 calls/step)", "core/module.py", "log"),
    ("BatchSeed.on_train_batch_start (reseed)", "training/trainer.py", "on_train_batch_start"),
    ("_Collate.__call__ (batch assembly)", "data/datamodule.py", "__call__"),
    ("PadTo (bench: pad to fixed length)", "bench/common.py", "__call__"),
    ("transfer_batch_to_device", "data/datamodule.py", "transfer_batch_to_device"),
    ("clip_gradients", "core/module.py", "clip_gradients"),
    ("AdamW update (_single_tensor_adam)", "torch/optim/adam.py", "_single_tensor_adam"),
    ("backward", "core/module.py", "backward"),
    ("logger connector: update_train_step_metrics",
     "logger_connector/logger_connector.py", "update_train_step_metrics"),
    ("progress bar on_train_batch_end", "progress", "on_train_batch_end"),
)


def origin(filename: str) -> str:
    if filename.startswith("~") or filename.startswith("<"):
        return "C builtins (torch kernels, numpy, ...)"
    for name, fragments in ORIGINS:
        if any(f in filename for f in fragments):
            return name
    return "other python"


def cprofile_step(setup, warmup, steps, top):
    prof = cProfile.Profile()
    window = WindowProfiler(warmup, steps, prof.enable, prof.disable)
    fw = common.framework_kd(setup, cache=False, limit_train_batches=warmup + steps + 1,
                             extra_callbacks=[window])
    step_ms = 1000 * common.window(fw.timer.batch_starts, warmup, steps) / steps
    stats = pstats.Stats(prof)
    by_origin: dict[str, float] = defaultdict(float)
    total = 0.0
    entries = {}
    for (filename, _line, func), (_cc, _nc, tottime, cumtime, _callers) in stats.stats.items():
        by_origin[origin(filename)] += tottime
        total += tottime
        for label, frag, name in ENTRY_POINTS:
            if func == name and frag in filename:
                # nested matches (TeacherSource.outputs -> LiveTeacher.outputs): the outermost
                entries[label] = max(entries.get(label, 0.0), cumtime)
    top_funcs = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    funcs = [(1000 * v[2] / steps, v[1], f"{_short(k[0])}:{k[1]}({k[2]})") for k, v in top_funcs]
    origins = sorted(((1000 * t / steps, name) for name, t in by_origin.items()), reverse=True)
    entries_ms = [(1000 * entries.get(label, 0.0) / steps, label) for label, _, _ in ENTRY_POINTS]
    return step_ms, 1000 * total / steps, origins, entries_ms, funcs


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


# -- 3. torch.profiler -----------------------------------------------------------------------------


def torch_profile(setup, warmup, steps, top):
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU])
    window = WindowProfiler(warmup, steps, prof.__enter__, lambda: prof.__exit__(None, None, None))
    common.framework_kd(setup, cache=False, limit_train_batches=warmup + steps + 1,
                        extra_callbacks=[window])
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [(e.self_cpu_time_total / 1000 / steps, 100 * e.self_cpu_time_total / total, e.count // steps,
             e.key) for e in rows], total / 1000 / steps


# -- 4. cache build --------------------------------------------------------------------------------


def cache_build_profile(setup, examples, top):
    """cProfile of the KD stage's `prepare_kd` with a fresh teacher-output cache."""
    setup.data.use_examples(examples)
    run = setup.new_run(setup.config(["kd.cache=true"]))
    setup.clear_teacher_cache()
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    prepared = common.prepare(run)
    prof.disable()
    seconds = time.perf_counter() - start
    if prepared.source is None or prepared.source.cache is None:
        raise RuntimeError("prepare_kd built no teacher-output cache with kd.cache=true")
    setup.data.use_examples(None)
    stats = pstats.Stats(prof)
    labels = (
        ("teacher forward (HateClassifier.forward)", "models/classifier.py", "forward"),
        ("tokenization (_tokenize)", "data/datamodule.py", "_tokenize"),
        ("batch assembly (_Collate)", "data/datamodule.py", "__call__"),
        ("file_sha256 (teacher weights)", "kd/teacher.py", "file_sha256"),
        ("data fingerprint", "data/datamodule.py", "fingerprint"),
        ("tokenizer_fingerprint", "kd/teacher.py", "tokenizer_fingerprint"),
        ("save_file (safetensors)", "safetensors/torch.py", "save_file"),
    )
    parts = []
    for label, frag, name in labels:
        cum = sum(v[3] for k, v in stats.stats.items() if k[2] == name and frag in k[0])
        calls = sum(v[1] for k, v in stats.stats.items() if k[2] == name and frag in k[0])
        parts.append((cum, calls, label))
    return seconds, parts


# -- environment check -----------------------------------------------------------------------------


def threads_check(setup, warmup, steps):
    out = {}
    before = torch.get_num_threads()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        res = plain_kd(setup, max_steps=warmup + steps + 1)
        out.setdefault(threads, []).append(1000 * common.window(res["batch_starts"], warmup, steps) / steps)
    torch.set_num_threads(before)
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-examples", type=int, default=256,
                        help="train examples for the cache-build profile (dev in proportion)")
    parser.add_argument("--no-threads-check", dest="threads_check", action="store_false")
    parser.add_argument("--max-length", type=int, default=common.DEFAULT_MAX_LENGTH)
    parser.add_argument("--batch-size", type=int, default=common.DEFAULT_BATCH_SIZE)
    args = parser.parse_args()
    record = results_io.Recorder("profile_kd")
    threads = common.set_threads(args.threads)
    W, N, top = args.warmup, args.steps, args.top
    setup = common.make_setup(max_length=args.max_length, batch_size=args.batch_size)
    log_path = common.RESULTS / "profile_kd.log"
    log_path.unlink(missing_ok=True)
    result = {"settings": vars(args), "torch_threads": threads}
    try:
        with common.stderr_to(log_path):
            plain = plain_kd(setup, max_steps=W + N + 1)
            plain_ms = 1000 * common.window(plain["batch_starts"], W, N) / N
            simple_ms, simple_rows = simple_profile(setup, W, N, top)
            cprof = cprofile_step(setup, W, N, top)
            torch_rows, torch_total = torch_profile(setup, W, N, top)
            cache_s, cache_parts = cache_build_profile(setup, args.cache_examples, top)
            cache_examples = args.cache_examples
            thr = threads_check(setup, 1, 3) if args.threads_check else None
    finally:
        shutil.rmtree(setup.workdir, ignore_errors=True)
    torch.set_num_threads(threads)
    cp_step, cp_total, origins, entries, funcs = cprof
    fmt = common.markdown_table
    out = [
        "## Profile of the framework's KD step (teacher live)", "",
        f"- date: {record.date}; torch threads {threads}, load average at start "
        f"{record.loadavg_start}",
        f"- command: `{record.command}`",
        f"- {N} steps after {W} warm-up, batch {args.batch_size} x {args.max_length} tokens", "",
        f"### 1. Lightning SimpleProfiler, ms per step (framework step {simple_ms:.1f} ms with the "
        f"profiler on; plain loop {plain_ms:.1f} ms)", "",
        fmt(["action", "ms/step", "% of step"],
            [[a, f"{ms:.3f}", f"{100 * ms / simple_ms:.1f}"] for ms, a in simple_rows]), "",
        f"### 2. cProfile ({cp_step:.1f} ms/step under cProfile; {cp_total:.1f} ms/step of "
        "profiled self time)", "",
        "Self time by origin:", "",
        fmt(["origin", "ms/step", "%"], [[name, f"{ms:.2f}", f"{100 * ms / cp_total:.1f}"]
                                          for ms, name in origins]), "",
        "Framework entry points (cumulative, incl. what they call):", "",
        fmt(["code path", "ms/step"], [[label, f"{ms:.3f}"] for ms, label in entries]), "",
        "Top functions by self time:", "",
        fmt(["ms/step", "calls", "function"], [[f"{ms:.2f}", n, f"`{name}`"] for ms, n, name in funcs]),
        "",
        f"### 3. torch.profiler, top ops by self CPU ({torch_total:.1f} ms/step of op time)", "",
        fmt(["op", "self ms/step", "%", "calls/step"],
            [[f"`{k}`", f"{ms:.2f}", f"{pct:.1f}", c] for ms, pct, c, k in torch_rows]), "",
        f"### 4. Teacher-output cache build ({cache_examples} train examples + dev in proportion): "
        f"{cache_s:.2f} s", "",
        fmt(["part", "seconds", "calls", "% of build"],
            [[label, f"{s:.3f}", c, f"{100 * s / cache_s:.1f}"] for s, c, label in cache_parts]),
    ]
    if thr:
        out += ["", "### Environment: plain KD step vs torch threads (one run each)", "",
                fmt(["torch threads", "ms/step"], [[k, f"{v:.0f}"] for k, v in sorted(thr.items())])]
    report = "\n".join(out)
    print(report)
    result.update({"plain_ms": plain_ms, "simple_step_ms": simple_ms, "simple": simple_rows,
                   "cprofile": {"step_ms": cp_step, "origins": origins, "entries": entries,
                                "top": funcs},
                   "torch_ops": torch_rows, "cache_build_s": cache_s, "cache_parts": cache_parts,
                   "threads_check_ms": thr})
    path = record.write(result)
    common.write_text("profile_kd.md", report + "\n")
    print("\n" + tables.render_record("profile_kd", results_io.read("profile_kd")))
    print(f"\nwrote {path} and {common.RESULTS / 'profile_kd.md'}")


if __name__ == "__main__":
    main()
