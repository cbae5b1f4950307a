"""The README.md model card written beside every saved model.

Why a card at all: a model directory travels on its own (copied to a server, attached to a
ticket). Whoever finds it must learn from the directory alone what it was trained on, under which
licence that data may be used, what it is (not) fit for, how well it did per class, and that the
data behind it is abusive. Everything here is rendered from `hate_compress.json` (`meta`), so the
card never says something the machine-readable metadata does not.
"""

from __future__ import annotations

from typing import Any

CONTENT_WARNING = (
    "> **Content warning.** This model was trained on hate speech and offensive language. Its "
    "training data, and any examples or predictions you inspect, may contain abusive, racist, "
    "sexist and religious hate."
)

INTENDED_USE = """\
## Intended use

Research on hate-speech detection and model compression, and as *one signal* that routes content
to human moderators. Every prediction is a probability to be thresholded and reviewed.

## Limitations

- Trained on one dataset, one language and one platform (see *Training data*): expect lower
  quality on other platforms, dialects, code-mixed text, new slurs and topics after the data was
  collected.
- Annotations of offensive language are subjective; the labels carry the annotators' biases,
  and F1 below is measured against those same labels.
- Not for automated decisions about people (bans, legal or employment decisions) without
  human review. Compressed models (pruned, quantized) can disagree with their teacher on
  individual texts even when the aggregate F1 is close: check `agreement` below.
"""


def _base_model(role: dict | None) -> str:
    """`deepset/gbert-base`, or what a from-scratch encoder looked like."""
    if not role:
        return "n/a"
    backbone = role.get("backbone") or {}
    if backbone.get("name_or_path"):
        return f"`{backbone['name_or_path']}`"
    scratch = backbone.get("scratch") or {}
    shape = ", ".join(f"{k}={scratch[k]}" for k in ("model_type", "num_hidden_layers", "hidden_size")
                      if k in scratch)
    return f"trained from scratch ({shape})" if shape else "trained from scratch"


def _training_data(about: dict) -> list[str]:
    data = about.get("data") or {}
    if not data:
        return ["No training data recorded (a model saved before model cards were written)."]
    dev = (f"`{data['dev_file']}`" if data.get("dev_file")
           else f"a stratified {data.get('dev_size')} share of train (split_seed {data.get('split_seed')})")
    if data.get("test_file"):
        test = f"`{data['test_file']}`"
    elif data.get("test_size"):
        test = f"a stratified {data['test_size']} share held out from train"
    else:
        test = "none (metrics below are on dev)"
    return [
        f"- dataset: **{data.get('name')}**; licence of the data: **{data.get('licence') or 'not recorded'}**",
        f"- trained on the train split `{data.get('train_file')}`",
        f"- model selection (best epoch, gates) on the dev split: {dev}",
        f"- test split, only reported: {test}",
    ]


def _lineage(about: dict) -> list[str]:
    teacher, student = about.get("teacher"), about.get("student")
    lines = [f"- this artifact: **{about.get('artifact', 'model')}**"]
    if teacher:
        lines.append(f"- teacher: `{teacher.get('name')}`, base model {_base_model(teacher)}")
    if student and about.get("artifact") != "teacher":
        lines.append(f"- student: `{student.get('name')}`, base model {_base_model(student)}")
    return lines


def _per_class_table(meta: dict) -> list[str]:
    """Per-class F1 with one column per evaluated split (the metrics come from `measure_stage`)."""
    metrics = meta.get("metrics") or {}
    splits = [s for s in ("dev", "test") if isinstance(metrics.get(s), dict)]
    if not splits:
        return ["Not measured yet (the card is completed after the stage's evaluation)."]
    lines = [f"| | {' | '.join(splits)} |", "|---|" + "---|" * len(splits)]
    rows = [("macro F1", "macro_f1"), *((f"F1 {n}", f"f1_{n}") for n in meta["label_names"]),
            ("accuracy", "accuracy"), ("agreement with teacher", "agreement"), ("examples", "n")]
    for title, key in rows:
        values = [metrics[s].get(key) for s in splits]
        if all(v is None for v in values):
            continue
        cells = ["" if v is None else (str(v) if isinstance(v, int) else f"{v:.4f}") for v in values]
        lines.append(f"| {title} | {' | '.join(cells)} |")
    return lines


def _all_metrics_table(meta: dict) -> list[str]:
    lines = ["| metric | value |", "|---|---|"]
    for stage, values in meta.get("metrics", {}).items():
        if isinstance(values, dict):
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    lines.append(f"| {stage}/{k} | {v:.4g} |")
        elif isinstance(values, (int, float)):
            lines.append(f"| {stage} | {values:.4g} |")
    return lines


def model_card_markdown(meta: dict[str, Any]) -> str:
    about = meta.get("about") or {}
    fmt = meta.get("format", "torch")
    loads = ("ONNX Runtime (`model.onnx`; `python -m hate_compress.predict` picks it)" if fmt == "onnx"
             else "hate_compress (`hate_compress.artifacts.load_classifier`, "
                  "`python -m hate_compress.predict`); see the project README for plain transformers")
    lines = [
        f"# hate_compress model: {about.get('artifact', 'classifier')} on {(about.get('data') or {}).get('name', '?')}",
        "",
        CONTENT_WARNING,
        "",
        f"- task: {meta['task']}; labels: {', '.join(meta['label_names'])}",
        f"- compression: {', '.join(s['kind'] for s in meta.get('compression', [])) or 'none'}",
        f"- loads with: {loads}",
        "",
        "Use: `python -m hate_compress.predict model=<this dir> input=<file or ->`",
        "",
        "## Training data",
        "",
        *_training_data(about),
        "",
        "## Models",
        "",
        *_lineage(about),
        "",
        INTENDED_USE,
        "## Per-class metrics",
        "",
        *_per_class_table(meta),
        "",
        "## All metrics",
        "",
        *_all_metrics_table(meta),
    ]
    return "\n".join(lines) + "\n"
