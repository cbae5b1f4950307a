"""Peak memory (RSS) of one KD epoch: framework with the teacher live vs from the output cache
(and the plain loop for reference), each in a fresh subprocess.

Per mode a child process builds the benchmark setup (config, GermEval data, tokenizer, teacher)
and trains one epoch; the parent reads that child's own peak RSS from `os.wait4` (its
`ru_maxrss`, i.e. `getrusage(RUSAGE_CHILDREN)` for that one child — the plain RUSAGE_CHILDREN
value is a running max over all children, so it could not separate the modes). The child also
samples its RSS with psutil every 5 ms, tagged by phase (setup / `prepare_kd`, which builds the
teacher-output cache in cached mode / training epoch), so the table shows what the epoch itself
adds on top of the setup. The framework side is the package's KD stage (`prepare_kd` +
`fit_kd`, via `common.framework_kd`). Writes bench/results/memory.json.

    python bench/memory.py                        # full epoch, ~2.5 min on 2 busy cores
    python bench/memory.py --epoch-examples 1024  # shorter epoch (~1 min); peaks barely move
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

try:
    from bench import common
    from bench.plain_kd_loop import plain_kd
except ImportError:  # `python bench/memory.py`
    import common
    from plain_kd_loop import plain_kd
from bench import results_io, tables  # noqa: E402  (common put the repository on sys.path)

MODES = ("live", "cached", "plain")
MB = 1024 * 1024


class RssSampler(threading.Thread):
    """Peak RSS per phase, sampled every `interval` seconds (torch ops release the GIL)."""

    def __init__(self, interval: float = 0.005):
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.phase = "setup"
        self.peaks: dict[str, int] = {}
        self.stop = threading.Event()

    def set_phase(self, name: str) -> None:
        self.sample()
        self.phase = name
        self.sample()

    def sample(self) -> None:
        rss = self.proc.memory_info().rss
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            time.sleep(self.interval)


def child(mode: str, args) -> None:
    import resource

    common.set_threads(args.threads)
    sampler = RssSampler()
    sampler.start()
    setup = common.make_setup(max_length=args.max_length, batch_size=args.batch_size)
    setup.data.use_examples(args.epoch_examples or None)
    sampler.set_phase("ready")
    try:
        with common.stderr_to(Path(args.log)):
            if mode == "plain":
                sampler.set_phase("train")
                out = plain_kd(setup, epochs=1)
                steps = out["steps"]
                sampler.set_phase("done")
            else:
                fw = common.framework_kd(setup, cache=mode == "cached", epochs=1,
                                         on_phase=sampler.set_phase)
                steps = len(fw.timer.batch_starts)
    finally:
        import shutil

        shutil.rmtree(setup.workdir, ignore_errors=True)
    sampler.stop.set()
    sampler.join()
    peaks = sampler.peaks
    print(json.dumps({
        "mode": mode, "steps": steps, "train_examples": len(setup.data.train_texts),
        "rss_ready_mb": peaks.get("ready", 0) / MB,
        "peak_prepare_mb": peaks.get("prepare", 0) / MB,
        "peak_train_mb": peaks.get("train", 0) / MB,
        "ru_maxrss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB,
        "threads": common.torch.get_num_threads(),
    }))


def run_child(mode: str, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode,
           "--threads", str(args.threads), "--epoch-examples", str(args.epoch_examples),
           "--max-length", str(args.max_length), "--batch-size", str(args.batch_size),
           "--log", args.log]
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        sys.exit(f"error: child {mode} failed ({proc.returncode}):\n{text[-3000:]}")
    result = json.loads(text.strip().splitlines()[-1])
    result["ru_maxrss_child_mb"] = usage.ru_maxrss * 1024 / MB  # Linux: kilobytes
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default=",".join(MODES), help="comma list of live,cached,plain")
    parser.add_argument("--epoch-examples", type=int, default=0,
                        help="train examples in the epoch (0 = all 3879)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=common.DEFAULT_MAX_LENGTH)
    parser.add_argument("--batch-size", type=int, default=common.DEFAULT_BATCH_SIZE)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--log", default=str(common.RESULTS / "memory.log"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args)
        return
    common.check_data()
    record = results_io.Recorder("memory")
    Path(args.log).unlink(missing_ok=True)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = set(modes) - set(MODES)
    if bad:
        sys.exit(f"error: unknown mode(s) {sorted(bad)}; choose from {', '.join(MODES)}")
    result = {"settings": vars(args), "modes": modes, "runs": []}
    for mode in modes:
        result["runs"].append(run_child(mode, args))
        x = result["runs"][-1]
        print(f"{mode}: peak RSS {x['ru_maxrss_child_mb']:.0f} MB ({x['seconds']:.0f} s)", flush=True)
    path = record.write(result)
    print("\n" + tables.render_record("memory", results_io.read("memory")))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
