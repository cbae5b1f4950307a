"""Reading files that may have come from someone else, without ever executing them.

A `.ckpt`/`.bin`/`.pt` file is a pickle, and unpickling can call any Python function: a shared
run directory or a downloaded "teacher" is enough to run code on the machine. Everything the
package reads is therefore either safetensors (a JSON header plus raw bytes) or goes through
`torch.load(weights_only=True)`, which only rebuilds tensors and primitive containers. Refusals
are `ModelLoadError`s with one line saying which file, why, and what to do instead.
"""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path
from typing import Any

import torch

from hate_compress.errors import ModelLoadError

# weight formats that are pickles under the hood: never read, only named in refusals
PICKLE_WEIGHTS = ("pytorch_model.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")


def _reason(exc: BaseException) -> str:
    """The informative line of torch's multi-paragraph weights_only error."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        low = line.lower()
        if "unsupported" in low or "global" in low:
            return line.rstrip(".")
    return (lines[-1] if lines else type(exc).__name__).rstrip(".")


def safe_torch_load(path: str | Path, *, what: str, hint: str, map_location: Any = "cpu") -> Any:
    """`torch.load(path, weights_only=True)`, with refusals and corrupt files as one-line errors.

    `weights_only` is passed explicitly rather than relying on torch's default, because the
    default can be flipped back to full unpickling by an environment variable
    (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(
            f"{path}: refusing to load this {what}: it contains pickled Python objects, not only "
            f"tensors ({_reason(exc)}), and unpickling them could run arbitrary code; {hint}"
        ) from None
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: {what} not found; {hint}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelLoadError(
            f"{path}: this {what} is unreadable or truncated ({_reason(exc)}); {hint}"
        ) from None


def check_safetensors(path: str | Path, *, what: str = "weights file") -> None:
    """Refuse anything that is not a well-formed safetensors file, reading only its header.

    A pickle renamed to `model.safetensors` must fail here, before any loader that might
    "helpfully" fall back to torch.load sees it."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ValueError("shorter than a safetensors header")
            (size,) = struct.unpack("<Q", head)
            if not 2 <= size <= min(100_000_000, path.stat().st_size - 8):
                raise ValueError("no valid safetensors header")
            header = json.loads(fh.read(size))
            if not isinstance(header, dict):
                raise ValueError("no valid safetensors header")
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: {what} not found") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        kind = " (it looks like a pickle)" if _looks_like_pickle(path) else ""
        raise ModelLoadError(
            f"{path}: not a valid safetensors {what}{kind} ({exc}); only safetensors weights are "
            "loaded, because pickle-based formats can run code when read — re-save the model with "
            "hate_compress (or safetensors.torch.save_file)"
        ) from None


def _looks_like_pickle(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head[:1] == b"\x80" or head[:2] == b"PK"  # raw pickle protocol >= 2, or torch zip


def pickle_weight_files(directory: Path) -> list[str]:
    found: set[str] = set()
    for pattern in PICKLE_WEIGHTS:
        found.update(p.name for p in directory.glob(pattern) if p.is_file())
    return sorted(found)
