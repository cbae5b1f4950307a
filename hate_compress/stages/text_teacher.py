"""Teacher stage for text-level teachers: `teacher=char_ngram` and `teacher=ensemble`.

A `char_ngram` teacher is fitted in seconds and stored in the teacher store under the same key
rule as a neural one (the whole teacher config, the data config, every split's content).
An ensemble trains (or reuses) each member through the store, gates each member on its own
`min_f1`, then combines them (hate_compress/kd/ensemble.py). Both are served to KD as cached
logits (hate_compress/kd/text_teacher.py), so only logit-level terms can use them: the
preflight below rejects the rest before anything trains.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from hate_compress.artifacts import write_card
from hate_compress.config_keys import CONF_DIR
from hate_compress.errors import ConfigError, GateError
from hate_compress.kd.ensemble import COMBINE_MODES, EnsembleModel, normalised
from hate_compress.kd.teacher import file_sha256, tokenizer_fingerprint
from hate_compress.kd.terms import TERMS
from hate_compress.kd.text_teacher import (
    TEXT_KINDS,
    TEXT_TEACHER_NEEDS,
    TokenizedTextModel,
    teacher_kind,
)
from hate_compress.measure.quality import classification_metrics
from hate_compress.models.char_ngram import CharNgramModel
from hate_compress.stages.common import model_card, plain
from hate_compress.stages.state import Run, Trained

log = logging.getLogger(__name__)

def fit_char_ngram(run: Run, directory: Path) -> CharNgramModel:
    """Fit on train (`teacher.cross_fit=k`: plus k out-of-fold models for train's soft
    targets) and save to `directory` as JSON + safetensors."""
    cfg = run.cfg.teacher
    settings = plain(cfg.ngram)
    log.info("[teacher] fitting char_ngram (C=%s, cross_fit=%s) on %d texts", settings.get("C"),
             cfg.get("cross_fit", 0), run.data.split_sizes["train"])
    model = CharNgramModel.fit(run.data.texts("train"), run.data.labels("train"),
                               task=run.data.task, num_labels=run.data.num_labels,
                               settings=settings, seed=int(cfg.seed),
                               cross_fit=int(cfg.get("cross_fit") or 0))
    model.save(directory)
    card = model_card(run)
    write_card(directory, {"format": "char_ngram", "compression": [], "task": card.task,
                           "label_names": list(card.label_names),
                           "positive_label": card.positive_label, "max_length": card.max_length,
                           "metrics": {}, "teacher_config": plain(cfg)})
    return model


# -- ensemble members ---------------------------------------------------------------------------

def member_config(name: str, overrides) -> DictConfig:
    """`conf/teacher/<name>.yaml` with its defaults (`_base`) merged, then `overrides`."""
    path = CONF_DIR / "teacher" / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"teacher.members: no teacher config {name!r} ({path} not found)")
    node = OmegaConf.load(path)
    defaults = list(node.pop("defaults", None) or ["_self_"])
    merged = OmegaConf.create({})
    for entry in defaults:
        merged = OmegaConf.merge(merged, node if entry == "_self_" else member_config(entry, None))
    if "_self_" not in defaults:
        merged = OmegaConf.merge(merged, node)
    return OmegaConf.merge(merged, overrides or {})


def member_run(run: Run, name: str, overrides=None, folder: str = "teacher_members") -> Run:
    """A view of `run` whose teacher is `conf/teacher/<name>.yaml` + `overrides` (default: the
    ensemble's `teacher.member_overrides.<name>`); own run directory for its checkpoints, the
    same data, the run's other settings: `${seed}` in the member resolves as usual."""
    root = copy.deepcopy(run.cfg)
    OmegaConf.set_struct(root, False)
    if overrides is None:
        overrides = (run.cfg.teacher.get("member_overrides") or {}).get(name)
    root.teacher = member_config(name, overrides)
    return replace(run, cfg=root, run_dir=run.run_dir / folder / name, metrics={},
                   teacher=None, current=None, teacher_logits=None, analysis={})


def as_text_model(run: Run, trained: Trained):
    if getattr(trained.model, "text_level", False):
        return trained.model
    digest = file_sha256(Path(trained.path) / "model.safetensors") + ":" + \
        tokenizer_fingerprint(trained.tokenizer)
    return TokenizedTextModel(trained.model, trained.tokenizer, run.data.max_length, digest,
                              run.data.eval_batch_size)


def gate_member(run: Run, name: str, model, min_f1: float) -> dict:
    """Score one member on dev (and test, reported only); stop when it misses its own gate."""
    out = {}
    for split in ("dev", "test") if run.data.has_test else ("dev",):
        logits = model.predict_texts(run.data.texts(split))
        labels = torch.as_tensor(run.data.labels(split))
        out[f"{split}_macro_f1"] = classification_metrics(
            logits, labels, task=run.data.task, label_names=run.data.label_names,
            positive_index=run.data.positive_index)["macro_f1"]
    out["min_f1"], out["passed"] = float(min_f1), out["dev_macro_f1"] >= float(min_f1)
    log.info("[teacher] ensemble member %s: dev macro F1 %.4f", name, out["dev_macro_f1"])
    if not out["passed"]:
        raise GateError(f"teacher gate: ensemble member {name} has dev macro F1 "
                        f"{out['dev_macro_f1']:.4f} < its min_f1={min_f1}; train it longer, drop "
                        f"it from teacher.members, or lower its min_f1 (teacher.member_overrides)")
    return out


def obtain_ensemble(run: Run, obtain) -> tuple[Trained, dict]:
    """Every member through the teacher store (`obtain`: the stage's obtain_teacher), gated on
    its own, then combined. Returns the ensemble and the members' report."""
    cfg = run.cfg.teacher
    members, report = {}, {}
    for name in cfg.members:
        sub = member_run(run, str(name))
        trained = obtain(sub)
        model = as_text_model(sub, trained)
        report[str(name)] = {**gate_member(run, str(name), model, float(sub.cfg.teacher.min_f1)),
                             "artifact": str(trained.path)}
        members[str(name)] = model
    ensemble = EnsembleModel(members, plain(cfg).get("weights"), task=run.data.task,
                             mode=str(cfg.combine), temperature=float(cfg.temperature))
    return Trained("teacher", ensemble, None, "teacher", None), report


# -- preflight ----------------------------------------------------------------------------------

def check_text_teacher(run: Run) -> None:
    """Config errors a text-level teacher causes, found before anything trains."""
    cfg = run.cfg
    kind = teacher_kind(cfg.teacher)
    if kind not in TEXT_KINDS:
        if int(cfg.teacher.get("cross_fit") or 0):
            raise ConfigError(f"teacher.cross_fit={cfg.teacher.cross_fit}: cross-fitted soft "
                              "targets are implemented for teacher=char_ngram only")
        return
    name = f"teacher={cfg.teacher.name}"
    stages = list(cfg.stages)
    if ("prune" in stages or "quant" in stages) and not {"kd", "assistant"} & set(stages):
        raise ConfigError(f"{name} is a scikit-learn/text-level model that cannot be pruned or "
                          "quantized: add the kd stage (stages=[teacher,kd,...])")
    if cfg.measure.get("explain"):
        raise ConfigError(f"measure.explain=true needs a neural teacher to explain; {name} is "
                          "text-level (set measure.explain=false)")
    uses_kd = "kd" in stages or ("prune" in stages and cfg.prune.get("kd", True)
                                 and cfg.prune.method != "none")
    for term in (plain(cfg.kd.get("terms") or {}) if uses_kd else {}):
        cls = TERMS.get(term)
        extra = set(getattr(cls, "needs", frozenset())) - TEXT_TEACHER_NEEDS
        if extra:
            raise ConfigError(f"kd.terms.{term} needs the teacher's {', '.join(sorted(extra))}, "
                              f"which {name} does not have (it only gives logits): use kd=logit")
    cross_fit = int(cfg.teacher.get("cross_fit") or 0)
    if cross_fit == 1 or cross_fit < 0:
        raise ConfigError(f"teacher.cross_fit={cross_fit}: use 0 (off) or k >= 2 folds")
    if kind == "ensemble":
        check_ensemble(cfg.teacher)


def check_ensemble(cfg) -> None:
    members = [str(m) for m in (cfg.get("members") or [])]
    if len(members) < 2:
        raise ConfigError(f"teacher.members={members}: an ensemble needs at least two teachers")
    if len(set(members)) != len(members):
        raise ConfigError(f"teacher.members={members}: a member is listed twice (use weights)")
    for member in members:
        sub = member_config(member, None)
        if teacher_kind(sub) == "ensemble":
            raise ConfigError(f"teacher.members: {member} is itself an ensemble")
    if str(cfg.combine) not in COMBINE_MODES:
        raise ConfigError(f"teacher.combine={cfg.combine!r}: choose one of {list(COMBINE_MODES)}")
    try:
        normalised(plain(cfg).get("weights"), len(members))
    except ValueError as exc:
        raise ConfigError(f"teacher.weights: {exc}") from None
    if not float(cfg.temperature) > 0:
        raise ConfigError(f"teacher.temperature={cfg.temperature} must be > 0")
