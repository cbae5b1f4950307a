"""KD training throughput: the framework (the package's KD stage: `prepare_kd` + `fit_kd` from
`stages/kd.py`) vs a plain PyTorch loop (`plain_kd_loop.py`), same work on both sides.

Two comparisons, each as ALTERNATING runs in ABBA order (framework, plain, plain, framework,
framework, plain, ...) so that background load (and its drift) hits both sides alike, reported
as medians:

* live teacher: `--warmup` untimed steps, then `--steps` timed steps per run (samples/s over whole
  iterations: start of batch W to start of batch W+N). Target: framework/plain >= 0.95.
* teacher output cache, 3 epochs (`--epochs`) over `--epoch-examples` train examples: the
  framework's time is `prepare_kd` (student build and the cache build: teacher over train + dev,
  tokenization, hashing, writing the safetensors file; a fresh cache every run) + its training
  epochs; the plain loop runs the teacher on every step. Target: framework/plain >= 1.5.

Both sides: tiny_teacher (4x256) -> tiny_student (2x128) sharing its WordPiece tokenizer, real
GermEval 2018 train texts, batch 32, every batch padded to `--max-length` 64, logit KD (alpha 0.5,
T 4), AdamW + linear warm-up, clip 1.0, fp32, `--threads` torch threads (1 by default: with
another job on a 2-core machine, 2 threads oversubscribe the cores and every op waits on a
descheduled OpenMP thread; measured 5-7x slower steps). Validation is off on the framework side
(the plain loop has none); checkpoints, CSV logger, progress bar, deterministic mode and the
per-batch reseed stay as configured.

    python bench/kd_throughput.py                 # ~5 min on 2 busy cores
    python bench/kd_throughput.py --runs 7 --steps 40 --epoch-examples 0 --out kd_throughput_full

Writes bench/results/<--out, default kd_throughput>.json (bench/results_io.py); BENCHMARKS.md's
table is rendered from it by bench/tables.py.
"""

from __future__ import annotations

import argparse
import gc
import shutil

try:
    from bench import common
    from bench.plain_kd_loop import plain_kd
except ImportError:  # `python bench/kd_throughput.py`
    import common
    from plain_kd_loop import plain_kd
from bench import results_io, tables  # noqa: E402  (common put the repository on sys.path)

TARGET_LIVE, TARGET_CACHED = 0.95, 1.5


def in_order(first_framework: bool, framework, plain):
    """Run both sides, framework first or plain first (ABBA over the pairs cancels both a
    linear drift of the background load and any first/second-in-pair effect)."""
    out = {}
    for name in (("fw", "plain") if first_framework else ("plain", "fw")):
        out[name] = framework() if name == "fw" else plain()
        gc.collect()
    return out["fw"], out["plain"]


def live_pair(setup, warmup: int, steps: int, fw_first: bool) -> tuple[dict, dict]:
    n = warmup + steps + 1
    fw, pl = in_order(
        fw_first, lambda: common.framework_kd(setup, cache=False, epochs=1, limit_train_batches=n),
        lambda: plain_kd(setup, epochs=1, max_steps=n))
    fw_s = common.window(fw.timer.batch_starts, warmup, steps)
    pl_s = common.window(pl["batch_starts"], warmup, steps)
    bs = setup.batch_size
    return ({"seconds": fw_s, "samples_per_s": steps * bs / fw_s, "threads": fw.timer.threads,
             "deterministic": fw.timer.deterministic, "fit_wall_s": fw.fit_wall_s},
            {"seconds": pl_s, "samples_per_s": steps * bs / pl_s})


def cached_pair(setup, epochs: int, fw_first: bool) -> tuple[dict, dict]:
    n_train = len(setup.data.train_texts)
    fw, pl = in_order(fw_first, lambda: common.framework_kd(setup, cache=True, epochs=epochs),
                      lambda: plain_kd(setup, epochs=epochs))
    train_s = fw.timer.epoch_ends[-1] - fw.timer.epoch_starts[0]
    fw_s = fw.prepare_s + train_s
    pl_s = pl["end"] - pl["start"]
    return ({"seconds": fw_s, "cache_build_s": fw.prepare_s, "train_s": train_s,
             "samples_per_s": epochs * n_train / fw_s, "epochs_run": len(fw.timer.epoch_ends),
             "fit_wall_s": fw.fit_wall_s, "threads": fw.timer.threads},
            {"seconds": pl_s, "samples_per_s": epochs * n_train / pl_s, "steps": pl["steps"]})


def summarize(pairs: list[tuple[dict, dict]]) -> dict:
    fw = [p[0]["samples_per_s"] for p in pairs]
    pl = [p[1]["samples_per_s"] for p in pairs]
    return {
        "framework_samples_per_s": fw, "plain_samples_per_s": pl,
        "framework_median": common.median(fw), "plain_median": common.median(pl),
        "ratio": common.median(fw) / common.median(pl),
        "paired_ratio_median": common.median([f / p for f, p in zip(fw, pl)]),
        "framework_seconds_median": common.median([p[0]["seconds"] for p in pairs]),
        "plain_seconds_median": common.median([p[1]["seconds"] for p in pairs]),
        "runs": [{"framework": f, "plain": p} for f, p in pairs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per side and comparison")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per live run")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per live run")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the cached comparison")
    parser.add_argument("--epoch-examples", type=int, default=768,
                        help="train examples per epoch in the cached comparison (0 = all 3879)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=common.DEFAULT_MAX_LENGTH)
    parser.add_argument("--batch-size", type=int, default=common.DEFAULT_BATCH_SIZE)
    parser.add_argument("--out", default="kd_throughput", help="results name in bench/results/")
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--skip-cached", action="store_true")
    args = parser.parse_args()

    record = results_io.Recorder(args.out)
    threads = common.set_threads(args.threads)
    log_path = common.RESULTS / f"{args.out}.log"
    log_path.unlink(missing_ok=True)
    setup = common.make_setup(max_length=args.max_length, batch_size=args.batch_size)
    result = {"settings": vars(args), "targets": {"live": TARGET_LIVE, "cached": TARGET_CACHED},
              "models": model_facts(setup), "torch_threads": threads}
    try:
        with common.stderr_to(log_path):
            if not args.skip_live:
                setup.data.use_examples(None)
                pairs = []
                for i in range(args.runs):
                    pairs.append(live_pair(setup, args.warmup, args.steps, i % 2 == 0))
                    common.say(f"live {i + 1}/{args.runs}: framework "
                               f"{pairs[-1][0]['samples_per_s']:.1f} plain "
                               f"{pairs[-1][1]['samples_per_s']:.1f} samples/s")
                result["live"] = summarize(pairs)
            if not args.skip_cached:
                setup.data.use_examples(args.epoch_examples or None)
                result["cached_examples"] = len(setup.data.train_texts)
                result["cached_dev_examples"] = len(setup.data.texts("dev"))
                pairs = []
                for i in range(args.runs):
                    pairs.append(cached_pair(setup, args.epochs, i % 2 == 0))
                    f, p = pairs[-1]
                    common.say(f"cached {i + 1}/{args.runs}: framework {f['seconds']:.1f}s "
                               f"(prepare incl. cache {f['cache_build_s']:.1f}s) plain "
                               f"{p['seconds']:.1f}s")
                result["cached"] = summarize(pairs)
    finally:
        shutil.rmtree(setup.workdir, ignore_errors=True)
    path = record.write(result)
    print("\n" + tables.render_record("kd_throughput", results_io.read(args.out)))
    print(f"\nwrote {path} (progress bar/warnings: {log_path})")


def model_facts(setup) -> dict:
    student, _, _ = common.build_student(setup)
    teacher = setup.teacher.model

    def params(m):
        return sum(p.numel() for p in m.parameters())

    return {"teacher": f"{teacher.num_layers}x{teacher.hidden_size}", "teacher_params": params(teacher),
            "student": f"{student.num_layers}x{student.hidden_size}", "student_params": params(student),
            "train_examples": setup.train_examples, "batch_size": setup.batch_size,
            "max_length": setup.max_length}


if __name__ == "__main__":
    main()
