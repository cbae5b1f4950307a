"""What escapes a run becomes one line, a recorded status and an exit code.

A user error (bad config, bad data, a full disk) is one `error: ...` line on stderr and exit
status 2 — in a Hydra sweep the cell is recorded as failed and the sweep goes on; Ctrl-C is one
line saying how to resume and exit status 130. Either way metrics.json says `failed` or
`interrupted`, never `running`.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from hate_compress import distributed
from hate_compress.errors import HateCompressError
from hate_compress.resume import run_label
from hate_compress.storage import storage_errno, storage_message, write_text_atomically

log = logging.getLogger("hate_compress")

INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what shells report for Ctrl-C


def user_error(exc: BaseException) -> str:
    """The HateCompressError an OmegaConf resolver raised, else the first line of `exc`."""
    seen = exc
    while seen is not None:
        if isinstance(seen, HateCompressError):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return str(exc).splitlines()[0]


def record_status(run_dir: Path | None, status: str, **extra) -> None:
    """Mark metrics.json `failed`/`interrupted`; best effort (the disk may be what failed)."""
    if run_dir is None or not distributed.is_rank_zero():
        return
    path = run_dir / "metrics.json"
    try:
        metrics = json.loads(path.read_text()) if path.exists() else {}
        metrics.setdefault("run", {}).update({"status": status, **extra})
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, json.dumps(metrics, indent=2, default=str))
    except (OSError, ValueError) as exc:
        log.warning("could not record status %s in %s: %s", status, path, exc)


def fail(message: str, run_dir: Path | None, multirun: bool) -> None:
    """One line on stderr; in a sweep the cell is recorded as failed and the sweep goes on."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    record_status(run_dir, "failed", error=message)
    if not multirun:
        sys.exit(HateCompressError.exit_code)


def interrupted(cfg: DictConfig, run_dir: Path) -> None:
    """Ctrl-C: one line saying how to resume, status `interrupted`, exit 130 (128 + SIGINT) —
    also in a sweep, where the user meant to stop everything."""
    print(f"interrupted; rerun the same command ({run_label(cfg, run_dir)}) to resume",
          file=sys.stderr, flush=True)
    record_status(run_dir, "interrupted")
    sys.exit(INTERRUPTED_EXIT_CODE)


def guarded_call(fn, cfg: DictConfig, run_dir: Path, multirun: bool = False):
    """Call `fn(cfg, run_dir)`; a user error becomes one `error:` line (and exit 2)."""
    try:
        return fn(cfg, run_dir)
    except HateCompressError as exc:
        fail(str(exc), run_dir, multirun)
    except OmegaConfBaseException as exc:
        fail(user_error(exc), run_dir, multirun)
    except KeyboardInterrupt:
        interrupted(cfg, run_dir)
    except OSError as exc:  # a write no `writing(...)` block names: still one line, the file
        if storage_errno(exc) is None:
            raise
        fail(storage_message(exc, None), run_dir, multirun)
    return None
