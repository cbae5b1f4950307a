"""Where every benchmark's numbers go: `bench/results/<name>.json`, with how they were made.

One JSON file per benchmark result, committed to git, is the only source of the tables in
BENCHMARKS.md (`bench/tables.py` renders them), so a number in the doc is always the number a
command produced. Each file carries, beside the numbers, the exact command (with the environment
variables that change the result), the date, how long it took and the machine it ran on,
including the load average: this project's machine is shared, and a latency measured while other
jobs ran says so in its own file.

Standard library only (imported by `bench/tables.py`, which must run without torch).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
# environment variables that change what a benchmark measures (threads, which data)
RELEVANT_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "HATE_COMPRESS_DATA_DIR", "HATE_COMPRESS_CACHE_DIR")
SHARED_MACHINE_NOTE = (
    "measured on a shared 2-core machine (other jobs running, see machine.loadavg_*): "
    "timings and latencies are noisy; compare ratios measured in the same run, not absolute ms")


def now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def loadavg() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def command_line(argv: list[str] | None = None) -> str:
    """The command that reproduces this run, from the repository root: relevant environment
    variables, `python`, the script path relative to the repository, its arguments."""
    argv = list(sys.argv if argv is None else argv)
    if argv and argv[0].endswith(".py"):
        script = Path(argv[0]).resolve()
        argv[0] = str(script.relative_to(REPO)) if script.is_relative_to(REPO) else argv[0]
    elif argv and argv[0] == "-m":  # not reached for scripts; kept for `python -m bench.x`
        pass
    env = [f"{k}={os.environ[k]}" for k in RELEVANT_ENV if k in os.environ]
    return shlex.join([*env, "python", *argv]) if env else shlex.join(["python", *argv])


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(loadavg_start: list[float] | None = None) -> dict[str, Any]:
    """What the numbers depend on besides the code: cores, CPU, threads, versions, load."""
    torch = sys.modules.get("torch")  # never imported here: tables.py runs without it
    info: dict[str, Any] = {
        "cpu_cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": _version("torch"),
        "lightning": _version("lightning"),
        "transformers": _version("transformers"),
        "onnxruntime": _version("onnxruntime"),
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "env": {k: os.environ[k] for k in RELEVANT_ENV if k in os.environ},
        "loadavg_start": loadavg_start,
        "loadavg_end": loadavg(),
    }
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return info


class Recorder:
    """Start a benchmark's record when it starts (date, load), write it when it ends.

        rec = Recorder("kd_throughput")
        ...                                  # measure
        rec.write({"live": {...}}, note="...")
    """

    def __init__(self, name: str, argv: list[str] | None = None):
        self.name = name
        self.date = now_iso()
        self.command = command_line(argv)
        self.loadavg_start = loadavg()
        self.started = time.perf_counter()

    def write(self, payload: dict[str, Any], note: str | None = SHARED_MACHINE_NOTE,
              results: Path | None = None) -> Path:
        return write(self.name, payload, command=self.command, date=self.date, note=note,
                     seconds=time.perf_counter() - self.started, loadavg_start=self.loadavg_start,
                     results=results)


def write(name: str, payload: dict[str, Any], *, command: str | None = None, date: str | None = None,
          note: str | None = SHARED_MACHINE_NOTE, seconds: float | None = None,
          loadavg_start: list[float] | None = None, results: Path | None = None) -> Path:
    """`bench/results/<name>.json` = provenance (`name`, `command`, `date`, `seconds`, `machine`,
    `note`) + `results` (the benchmark's own numbers)."""
    if "/" in name or name.endswith(".json"):
        raise ValueError(f"result name {name!r}: a bare name, no '/' or '.json'")
    doc = {
        "name": name,
        "command": command or command_line(),
        "date": date or now_iso(),
        "seconds": None if seconds is None else round(seconds, 1),
        "machine": machine(loadavg_start),
        "note": note,
        "results": payload,
    }
    out = Path(results or RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, default=_jsonable) + "\n")
    return path


def read(name: str, results: Path | None = None) -> dict[str, Any] | None:
    """The record written by `write`, or None when the benchmark has not been run."""
    path = Path(results or RESULTS) / f"{name}.json"
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    for key in ("command", "date", "results"):
        if key not in doc:
            raise ValueError(f"{path}: missing key {key!r} (not written by bench/results_io.py?)")
    return doc


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
