"""Where the framework's KD step spends its time (live teacher), and what the cache build costs.

Four looks at the same step (tiny_teacher 4x256 -> tiny_student 2x128, batch 32 x 64 tokens,
logit KD, the package's ClassifierModule + Trainer as `stages/kd.py` builds them):

1. Lightning's SimpleProfiler: ms per step of every hook/action of the training loop (what is
   Lightning machinery and what is the model's work), next to the plain loop's ms/step.
2. cProfile over the timed steps: self time grouped by origin (torch kernels called from Python,
   transformers, Lightning, hate_compress, progress bar, ...) and the framework's own per-step
   entry points (logging, reseed, teacher source, collate, clipping).
3. torch.profiler (CPU): the top aten ops by self time.
4. cProfile of the teacher-output cache build (one-off): teacher forward vs hashing,
   tokenization, file write.
5. Ablation of the one real difference found: the framework runs the student forward *before*
   the teacher forward (`ClassifierModule._loss`), the plain loop after it. One framework run
   with `_loss` patched in this process (never in the package files) to alternate the two
   orders batch by batch.
Plus one environment check: the same plain step with 1 vs 2 torch threads (`--threads-check`).

    python bench/profile_kd.py                    # ~2 min on 2 busy cores
    python bench/profile_kd.py --steps 40 --top 30
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
    from hate_compress.stages.common import loss_for
    from hate_compress.stages.kd import teacher_source

    setup.data.use_examples(examples)
    cfg = setup.config(["kd.cache=true"])
    run = setup.new_run(cfg)
    student, tokenizer, shared = common.build_student(setup, run)
    run.data.set_tokenizers({"teacher": run.teacher.tokenizer, "student": tokenizer})
    loss = loss_for(run, cfg.kd, student, run.teacher.model, shared,
                    bool(cfg.student.train.class_weights))
    setup.clear_teacher_cache()
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    teacher_source(run, loss, shared)
    prof.disable()
    seconds = time.perf_counter() - start
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


# -- 5. ablation: the forward order, interleaved step by step ---------------------------------------


def order_ablation(setup, warmup, steps):
    """The framework with `ClassifierModule._loss` patched (in this process only) to alternate,
    batch by batch, between its own order (student forward, then teacher) and the teacher
    forward first. Interleaving per step makes both orders see the same background load, which
    separate runs on this machine do not (+-10% between runs). Also times the teacher forward
    itself with forward hooks on the teacher."""
    from hate_compress.training.module import ClassifierModule

    original = ClassifierModule._loss
    calls = {"n": 0}
    teacher_s: list[float] = []
    started: list[float] = []

    def alternating(self, batch, split):
        first = calls["n"] % 2 == 1  # even batches: as is; odd: teacher first
        calls["n"] += 1
        return (common._teacher_first_loss if first else original)(self, batch, split)

    model = setup.teacher.model
    hooks = [model.register_forward_pre_hook(lambda m, a: started.append(time.perf_counter())),
             model.register_forward_hook(
                 lambda m, a, o: teacher_s.append(time.perf_counter() - started[-1]))]
    ClassifierModule._loss = alternating
    try:
        fw = common.framework_kd(setup, cache=False, limit_train_batches=warmup + 2 * steps + 1)
    finally:
        ClassifierModule._loss = original
        for hook in hooks:
            hook.remove()
    starts = fw.timer.batch_starts
    out = {}
    for parity, name in ((0, "as is: student forward, then teacher"),
                         (1, "teacher forward first (bench patch of ClassifierModule._loss)")):
        idx = [k for k in range(warmup, warmup + 2 * steps) if k % 2 == parity]
        out[name] = (1000 * statistics.median(starts[k + 1] - starts[k] for k in idx),
                     1000 * statistics.median(teacher_s[k] for k in idx), len(idx))
    return out


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
    parser.add_argument("--order-steps", type=int, default=20,
                        help="steps per order in the interleaved forward-order ablation (0 = skip)")
    parser.add_argument("--no-threads-check", dest="threads_check", action="store_false")
    parser.add_argument("--max-length", type=int, default=common.DEFAULT_MAX_LENGTH)
    parser.add_argument("--batch-size", type=int, default=common.DEFAULT_BATCH_SIZE)
    args = parser.parse_args()
    threads = common.set_threads(args.threads)
    W, N, top = args.warmup, args.steps, args.top
    started = time.perf_counter()
    setup = common.make_setup(max_length=args.max_length, batch_size=args.batch_size)
    log_path = common.RESULTS / "profile_kd.log"
    log_path.unlink(missing_ok=True)
    result = {"date": common.now_iso(), "command": common.command_line(),
              "machine": common.machine(), "settings": vars(args)}
    try:
        with common.stderr_to(log_path):
            plain = plain_kd(setup, max_steps=W + N + 1)
            plain_ms = 1000 * common.window(plain["batch_starts"], W, N) / N
            simple_ms, simple_rows = simple_profile(setup, W, N, top)
            cprof = cprofile_step(setup, W, N, top)
            torch_rows, torch_total = torch_profile(setup, W, N, top)
            cache_s, cache_parts = cache_build_profile(setup, args.cache_examples, top)
            cache_examples = args.cache_examples
            ablation = order_ablation(setup, W, args.order_steps) if args.order_steps else None
            thr = threads_check(setup, 1, 3) if args.threads_check else None
    finally:
        shutil.rmtree(setup.workdir, ignore_errors=True)
    torch.set_num_threads(threads)
    cp_step, cp_total, origins, entries, funcs = cprof
    fmt = common.markdown_table
    out = [
        "## Profile of the framework's KD step (teacher live)", "",
        f"- date: {result['date']}; machine: {result['machine']['cpu_cores']} cores, torch threads "
        f"{threads}, load average {result['machine']['loadavg_1_5_15']}",
        f"- command: `{result['command']}` ({time.perf_counter() - started:.0f} s)",
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
    if ablation:
        base = next(iter(ablation.values()))[0]
        out += ["", f"### 5. Ablation: forward order, interleaved batch by batch in one framework "
                f"run ({args.order_steps} steps per order)", "",
                fmt(["order", "median step ms", "median teacher forward ms", "steps",
                     "step time vs as is"],
                    [[name, f"{st:.1f}", f"{tf:.1f}", n, f"{st / base:.3f}"]
                     for name, (st, tf, n) in ablation.items()])]
    if thr:
        out += ["", "### Environment: plain KD step vs torch threads (one run each)", "",
                fmt(["torch threads", "ms/step"], [[k, f"{v:.0f}"] for k, v in sorted(thr.items())])]
    report = "\n".join(out)
    print(report)
    result.update({"plain_ms": plain_ms, "simple_step_ms": simple_ms, "simple": simple_rows,
                   "cprofile": {"step_ms": cp_step, "origins": origins, "entries": entries,
                                "top": funcs},
                   "torch_ops": torch_rows, "cache_build_s": cache_s, "cache_parts": cache_parts,
                   "order_ablation": ablation, "threads_check_ms": thr})
    common.write_json("profile_kd.json", result)
    common.write_text("profile_kd.md", report + "\n")
    print(f"\nwrote {common.RESULTS / 'profile_kd.json'} and profile_kd.md")


if __name__ == "__main__":
    main()
