"""Writing outputs, caches and the teacher store: failures become one line naming the path.

A full disk, a read-only mount or an output path below a regular file surface deep inside
Lightning, safetensors or `json.dump` as an OSError (often with no file name: `write()` does not
know it) and used to end the run in a traceback. Every place that writes wraps itself in
`writing(path, key)`, so the user learns which directory, why, and which setting moves it.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import OmegaConf

from hate_compress.errors import StorageError

# errno -> what the user is told; anything else is not a storage problem and is re-raised
REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a parent of it is a file, not a directory",
    errno.EEXIST: "a file of that name is in the way",
}
READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)
# the settings that choose each place we write to (named in the error's hint)
OUTPUT_KEY, CACHE_KEY, STORE_KEY = "paths.output_root", "paths.cache_dir", "paths.teacher_store"
_RUST_ERRNO = re.compile(r"os error (\d+)")  # how safetensors reports an io::Error


def storage_errno(exc: BaseException) -> int | None:
    """The errno of a storage failure (OSError, or safetensors' wrapped io error), else None."""
    if isinstance(exc, OSError):
        code = exc.errno
    elif type(exc).__name__ == "SafetensorError" and (found := _RUST_ERRNO.search(str(exc))):
        code = int(found.group(1))
    else:
        return None
    return code if code in REASONS else None


def storage_message(exc: BaseException, path: str | Path | None, key: str | None = None) -> str:
    code = storage_errno(exc)
    where = getattr(exc, "filename", None) or path or "a file"
    hint = ""
    if key:
        full = code in (errno.ENOSPC, errno.EDQUOT)
        hint = f"; {'free some space, or ' if full else ''}set {key}=<a writable directory>"
    return f"cannot write {where}: {REASONS[code]}{hint}"


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temp path beside `path` to write its new content to; when the block succeeds it
    replaces `path` in one rename, when it fails it is removed and `path` is untouched.

    Files another process may read while we write — a stored teacher's card that a parallel
    worker loads while this one records its metrics, a cache a parallel cell reads — must never
    be seen empty or half-written: a reader keeps the old file or gets the new one. The temp
    name is per process (parallel writers never share one) and keeps the suffix, for writers
    that pick the format from it (matplotlib)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomically(path: str | Path, text: str) -> None:
    """`path.write_text(text)` through `replacing`: never seen empty or half-written."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextmanager
def writing(path: str | Path, key: str | None = None) -> Iterator[None]:
    """Turn a storage failure inside the block into a `StorageError` naming `path` (and the
    config `key` that chooses it); every other error passes through untouched."""
    try:
        yield
    except Exception as exc:
        if storage_errno(exc) is None:
            raise
        raise StorageError(storage_message(exc, path, key)) from None


def check_writable(directory: str | Path, key: str) -> None:
    """Create `directory` and write a probe file in it (a read-only mount lets mkdir succeed on
    an existing directory, so only a real write tells)."""
    directory = Path(directory)
    with writing(directory, key):
        directory.mkdir(parents=True, exist_ok=True)
        # one name per process: ranks of a distributed run (or parallel cells) probe at once,
        # and a shared name let one unlink the other's probe
        probe = directory / f".hate_compress_write_probe.{os.getpid()}"
        probe.write_text("")
        probe.unlink()


class WritableOutputDir(HydraCallback):
    """Hydra callback: check the run (or sweep) directory before Hydra writes its logs there.

    Hydra creates that directory outside our code, so an unwritable `paths.output_root` would
    otherwise end in Hydra's traceback (exit 1) before any `error:` handling is reached."""

    def _check(self, config: Any, dir_key: str, setting: str) -> None:
        try:
            check_writable(str(OmegaConf.select(config, dir_key)), setting)
        except StorageError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            sys.exit(StorageError.exit_code)

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir", OUTPUT_KEY)

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir", "hydra.sweep.dir")
