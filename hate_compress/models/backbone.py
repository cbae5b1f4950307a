"""Encoders and tokenizers: real hub models, local copies, or tiny ones built offline.

One config shape covers all three so that `teacher=gbert` and `teacher=tiny_teacher` differ only
in YAML: a hub id or local directory in `name_or_path`, or a `scratch` architecture (random init)
whose WordPiece tokenizer is trained on the training texts and cached on disk by content hash, so
reruns and other runs reuse it instead of retraining it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoModel, AutoTokenizer

from hate_compress.errors import ConfigError, ModelLoadError
from hate_compress.models.tokenizer import train_wordpiece_tokenizer

log = logging.getLogger(__name__)

@functools.lru_cache(maxsize=1)
def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """One quick TCP probe, so an offline machine fails in seconds instead of ~30 s of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_kwargs(name_or_path: str, role: str) -> dict[str, Any]:
    """Local directories never touch the network; hub ids fall back to the local HF cache offline."""
    if Path(name_or_path).expanduser().is_dir():
        return {}
    return {} if hub_reachable() else {"local_files_only": True}


def _load_error(role: str, name_or_path: str, exc: Exception) -> ModelLoadError:
    where = "the model hub is unreachable from this machine" if not hub_reachable() else str(exc)
    return ModelLoadError(
        f"could not load {role} model '{name_or_path}' ({where}); download it where the hub is "
        f"reachable (e.g. `huggingface-cli download {name_or_path} --local-dir DIR`) and set "
        f"{role}.backbone.name_or_path=DIR, or use an offline entry ({role}=tiny_{role})"
    )


def load_pretrained_encoder(
    name_or_path: str,
    *,
    role: str,
    trust_remote_code: bool = False,
    revision: str | None = None,
    attn_implementation: str | None = None,
):
    """Load a pretrained encoder (no classification head: ours is added on top)."""
    kwargs = _hub_kwargs(name_or_path, role)
    if revision:
        kwargs["revision"] = revision
    try:
        config = AutoConfig.from_pretrained(
            name_or_path, trust_remote_code=trust_remote_code, **kwargs
        )
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        with transformers_load_report_silenced():
            encoder, info = AutoModel.from_pretrained(
                name_or_path, config=config, trust_remote_code=trust_remote_code,
                output_loading_info=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_error(role, name_or_path, exc) from None
    report_encoder_load(role, name_or_path, info)
    return drop_pooler(encoder)


# checkpoint keys of heads we replace with our own (task heads, MLM/NSP heads) and of the
# encoder's pooler we drop: expected to be unused, not worth a warning
REPLACED_HEAD_PREFIXES = ("classifier.", "cls.", "lm_head.", "pre_classifier.", "qa_outputs.",
                          "vocab_", "pooler.", "discriminator_predictions.", "generator_")


@contextlib.contextmanager
def transformers_load_report_silenced():
    """transformers 5 logs a LOAD REPORT table for every key it did not use, including the
    pretraining/classification head we replace; `report_encoder_load` says what matters."""
    names = ("transformers.modeling_utils", "transformers.utils.loading_report")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def report_encoder_load(role: str, name_or_path: str, info: Mapping[str, Any]) -> None:
    """Warn only about what the user can act on: encoder weights the checkpoint lacks (they
    start random) and unused keys that are not a replaced head."""
    def strip(key: str) -> str:
        return key.split(".", 1)[1] if key.split(".", 1)[0] in ("bert", "roberta", "electra",
                                                                  "distilbert", "xlm_roberta") else key

    missing = [k for k in info.get("missing_keys", ()) if not strip(k).startswith("pooler.")
               and not k.endswith("position_ids")]
    unexpected = [k for k in info.get("unexpected_keys", ()) if not strip(k).startswith(REPLACED_HEAD_PREFIXES)]
    if missing:
        log.warning("%s model '%s': %d encoder weight(s) not in the checkpoint start random "
                    "(e.g. %s); is it the right checkpoint?", role, name_or_path, len(missing),
                    ", ".join(sorted(missing)[:3]))
    if unexpected:
        log.warning("%s model '%s': %d checkpoint weight(s) unused (e.g. %s)", role, name_or_path,
                    len(unexpected), ", ".join(sorted(unexpected)[:3]))


def resolve_encoder_config(backbone: Mapping[str, Any], *, role: str):
    """The encoder's HF config without its weights: proves a pretrained model resolves (path,
    hub or local cache) in seconds, before a run spends hours on the stages in front of it."""
    name_or_path, scratch = backbone.get("name_or_path"), backbone.get("scratch")
    if bool(name_or_path) == bool(scratch):
        raise ConfigError(
            f"{role}.backbone: set exactly one of name_or_path (pretrained) or scratch (random init)"
        )
    if scratch:
        arch = dict(scratch)
        try:
            return AutoConfig.for_model(arch.pop("model_type", "bert"), **arch)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{role}.backbone.scratch: invalid architecture {dict(scratch)}: {exc}") from None
    kwargs = _hub_kwargs(name_or_path, role)
    if backbone.get("revision"):
        kwargs["revision"] = backbone["revision"]
    try:
        return AutoConfig.from_pretrained(
            name_or_path, trust_remote_code=bool(backbone.get("trust_remote_code", False)), **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_error(role, name_or_path, exc) from None


def load_pretrained_tokenizer(name_or_path: str, *, role: str, trust_remote_code: bool = False):
    try:
        return AutoTokenizer.from_pretrained(
            name_or_path, trust_remote_code=trust_remote_code, **_hub_kwargs(name_or_path, role)
        )
    except (OSError, ValueError) as exc:
        raise _load_error(role, name_or_path, exc) from None


def drop_pooler(encoder):
    """BERT's own pooler is unused (our head pools); removing it saves size and keeps it
    out of pruning and quantization. Returns the encoder for chaining."""
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    return encoder


def build_scratch_encoder(
    arch: Mapping[str, Any], vocab_size: int, attn_implementation: str | None = None
):
    """A randomly initialised encoder from a config dict (tiny offline models, `custom` students)."""
    arch = dict(arch)
    model_type = arch.pop("model_type", "bert")
    try:
        config = AutoConfig.for_model(model_type, vocab_size=vocab_size, **arch)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"backbone.scratch: invalid architecture {dict(arch)}: {exc}") from None
    if config.hidden_size % config.num_attention_heads:
        raise ConfigError(
            f"backbone.scratch: hidden_size={config.hidden_size} is not divisible by "
            f"num_attention_heads={config.num_attention_heads}"
        )
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    return drop_pooler(AutoModel.from_config(config, **kwargs))


def build_backbone(
    backbone: Mapping[str, Any],
    *,
    role: str,
    train_texts: Sequence[str] | None = None,
    cache_dir: str | os.PathLike = ".cache",
    attn_implementation: str | None = None,
    teacher_tokenizer=None,
):
    """Return `(encoder, tokenizer)` for a `teacher.backbone` / `student.backbone` config.

    `tokenizer: teacher` reuses the teacher's tokenizer (a scratch student that shares the
    teacher's vocabulary can then be distilled token by token)."""
    name_or_path = backbone.get("name_or_path")
    scratch = backbone.get("scratch")
    trust = bool(backbone.get("trust_remote_code", False))
    tokenizer = build_tokenizer(backbone, role=role, train_texts=train_texts,
                                cache_dir=cache_dir, teacher_tokenizer=teacher_tokenizer)
    if name_or_path:
        encoder = load_pretrained_encoder(
            name_or_path, role=role, trust_remote_code=trust,
            revision=backbone.get("revision"), attn_implementation=attn_implementation,
        )
    else:
        encoder = build_scratch_encoder(scratch, len(tokenizer), attn_implementation)
    if encoder.get_input_embeddings().num_embeddings < len(tokenizer):
        raise ConfigError(f"{role}: tokenizer has {len(tokenizer)} tokens but the encoder's "
                          f"embedding only {encoder.get_input_embeddings().num_embeddings}")
    return encoder, tokenizer


def build_tokenizer(
    backbone: Mapping[str, Any],
    *,
    role: str,
    train_texts: Sequence[str] | None = None,
    cache_dir: str | os.PathLike = ".cache",
    teacher_tokenizer=None,
):
    """The tokenizer of a backbone config, without its encoder: cheap enough to compare the
    teacher's and the student's before anything trains (trained ones are cached by content)."""
    name_or_path = backbone.get("name_or_path")
    scratch = backbone.get("scratch")
    trust = bool(backbone.get("trust_remote_code", False))
    if bool(name_or_path) == bool(scratch):
        raise ConfigError(
            f"{role}.backbone: set exactly one of name_or_path (pretrained) or scratch (random init)"
        )
    tok_cfg = backbone.get("tokenizer")
    if tok_cfg == "teacher":
        if teacher_tokenizer is None:
            raise ConfigError(f"{role}.backbone.tokenizer=teacher needs a teacher stage first")
        tokenizer = teacher_tokenizer
    elif isinstance(tok_cfg, str):
        tokenizer = load_pretrained_tokenizer(tok_cfg, role=role, trust_remote_code=trust)
    elif isinstance(tok_cfg, Mapping) and tok_cfg.get("train"):
        if not train_texts:
            raise ConfigError(f"{role}.backbone.tokenizer.train needs the training texts")
        opts = {k: v for k, v in tok_cfg.items() if k != "train"}
        tokenizer = train_wordpiece_tokenizer(
            train_texts, Path(cache_dir) / "tokenizers", **opts
        )
    elif name_or_path:
        tokenizer = load_pretrained_tokenizer(name_or_path, role=role, trust_remote_code=trust)
    else:
        raise ConfigError(f"{role}.backbone.tokenizer: a scratch model needs a tokenizer "
                          "(a path, or {train: true, vocab_size: ...})")
    return tokenizer
