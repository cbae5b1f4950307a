"""The analysis `measure_stage` adds to every stage: what was forgotten, and whether the model
still explains its decisions like the teacher (`measure.explain`).

The teacher stage fixes the explained sample (`measure.explain_n` dev examples, seeded by
`seed`), the classes to explain (the teacher's prediction: every model answers the same
question, so a different answer is not mistaken for a different explanation; multilabel: each
label the teacher predicts, or its most probable label when it predicts none) and the teacher's
word attributions; later stages are compared with those. A model that cannot be differentiated
(int8 kernels) is explained through the fp32 model it was quantized from (`trained.source`) and
the stage records `explained_via`; without a source its explanation is "n/a" with the reason.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np
import torch

from hate_compress.measure.explain import NotExplainable, compare, explain_words, similarity
from hate_compress.measure.forgetting import forgetting
from hate_compress.measure.quality import predictions, probabilities

log = logging.getLogger(__name__)

EXPLAIN_DEFAULTS = {"explain": False, "explain_n": 200, "explain_steps": 32}
EXPLANATIONS_FILE = "explanations.json"


def explain_settings(measure_cfg) -> dict[str, Any]:
    return {k: measure_cfg.get(k, v) if measure_cfg is not None else v
            for k, v in EXPLAIN_DEFAULTS.items()}


def sample_positions(n_total: int, n: int, seed: int) -> list[int]:
    """`n` distinct dev positions (all when the split is smaller), seeded, in file order."""
    if n >= n_total:
        return list(range(n_total))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n_total, size=n, replace=False))


def classes_to_explain(logits: torch.Tensor, task: str) -> list[list[int]]:
    preds = predictions(logits, task)
    if task != "multilabel":
        return [[int(p)] for p in preds]
    top = probabilities(logits, task).argmax(-1)
    return [[j for j, on in enumerate(row.tolist()) if on] or [int(t)] for row, t in zip(preds, top)]


def _explain(run, trained, state) -> tuple[list, str | None]:
    """Word explanations of `trained`, else of its fp32 source; returns (explanations, via)."""
    settings = state["settings"]

    def run_ig(model, tokenizer):
        return explain_words(model, tokenizer, state["texts"], state["targets"],
                             steps=int(settings["explain_steps"]),
                             max_length=run.data.max_length)

    try:
        return run_ig(trained.model, trained.tokenizer), None
    except NotExplainable as exc:
        source = getattr(trained, "source", None)
        if source is None:
            raise
        log.info("[explain] %s: %s; explaining its fp32 source %s", trained.name, exc, source.name)
        state["why_source"] = str(exc)
        return run_ig(source.model, source.tokenizer), f"{source.name} (fp32 source)"


def explain_stage(run, stage: str, trained, dev_logits: torch.Tensor) -> dict[str, Any]:
    settings = explain_settings(run.cfg.get("measure"))
    start = time.perf_counter()
    state = run.analysis.setdefault("explain", {})
    base = {"steps": int(settings["explain_steps"]), "baseline": "pad (special tokens kept)",
            "target": "teacher's predicted class"}
    if stage == "teacher":
        texts = run.data.texts("dev")
        positions = sample_positions(len(texts), int(settings["explain_n"]), int(run.cfg.seed))
        state.update(settings=settings, positions=positions, texts=[texts[i] for i in positions],
                     targets=classes_to_explain(dev_logits[positions], run.data.task))
        try:
            state["teacher"] = _explain(run, trained, state)[0]
        except NotExplainable as exc:
            state["teacher"] = None
            return {**base, "status": "n/a", "reason": f"teacher: {exc}",
                    "seconds": round(time.perf_counter() - start, 2)}
        return {**base, "status": "reference", "n_examples": len(positions),
                "n_explained": len(state["teacher"]),
                "seconds": round(time.perf_counter() - start, 2)}
    if not state.get("teacher"):
        return {**base, "status": "n/a", "reason": "the teacher could not be explained"}
    try:
        words, via = _explain(run, trained, state)
    except NotExplainable as exc:
        return {**base, "status": "n/a", "reason": str(exc),
                "seconds": round(time.perf_counter() - start, 2)}
    result = {**base, "status": "ok", **similarity(state["teacher"], words),
              "n_examples": len(state["positions"]), "explained_via": via or stage}
    if via:
        result["not_differentiable"] = state.pop("why_source", None)
    write_explanations(run, stage, state, words, via or stage)
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


def write_explanations(run, stage: str, state: dict, words: list, via: str) -> None:
    """Every explained example with the teacher's and this model's word scores, for the report."""
    names = run.data.label_names
    rows = run.data.split("dev").rows
    theirs = {(e.example, e.target): e for e in words}
    examples = []
    for ref in state["teacher"]:
        mine = theirs.get((ref.example, ref.target))
        if mine is None:
            continue
        text = state["texts"][ref.example]
        cos, top = compare(ref, mine)
        examples.append({
            "row": rows[state["positions"][ref.example]], "text": text,
            "target": names[ref.target], "words": text.split(),
            "teacher": [round(float(v), 6) for v in ref.scores],
            "model": [round(float(v), 6) for v in mine.scores],
            "cosine": cos, "top5_overlap": top,
        })
    payload = {"stage": stage, "explained_via": via, "examples": examples}
    (run.stage_dir(stage) / EXPLANATIONS_FILE).write_text(json.dumps(payload, ensure_ascii=False))


def analyse_stage(run, stage: str, trained, values: dict, logits: dict, split: str) -> dict:
    """Forgetting (every stage after the teacher) and explanation similarity (when enabled)."""
    out: dict[str, Any] = {}
    teacher = run.metrics.get("teacher")
    if stage != "teacher" and teacher and run.teacher_logits is not None:
        data = run.data.split(split)
        out["forgetting"] = forgetting(
            split=split, model_metrics=values[split], teacher_metrics=teacher[split],
            model_logits=logits[split], teacher_logits=run.teacher_logits[split],
            labels=data.labels, texts=data.texts, rows=data.rows, task=run.data.task,
            label_names=run.data.label_names, meta=data.meta, out_dir=run.stage_dir(stage))
    if explain_settings(run.cfg.get("measure"))["explain"]:
        dev = run.teacher_logits["dev"] if stage == "teacher" else logits["dev"]
        out["explain"] = explain_stage(run, stage, trained, dev)
    return out
