"""Temperature study: how soft are a trained teacher's labels at each distillation temperature T?

`python -m hate_compress.temperature [teacher=... data=... teacher.checkpoint=...]` obtains the
teacher exactly as the pipeline does (checkpoint, stored teacher, or training), then prints and
plots the mean soft-label entropy on the dev split for T in `temperatures`. It shows where the
soft labels stop carrying information (entropy saturating at log C) on real data, before a sweep.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import hate_compress.resolvers  # noqa: F401
from hate_compress.cli import CONF_DIR

log = logging.getLogger(__name__)

DEFAULT_TEMPERATURES = (1, 2, 3, 5, 10, 20)


def soft_label_entropy(logits: torch.Tensor, temperature: float, task: str) -> float:
    """Mean entropy (nats) of the teacher's soft labels at `temperature`.

    Single-label: entropy of softmax(z/T) (max log C). Multilabel: mean over labels of the
    Bernoulli entropy of sigmoid(z/T) (max log 2)."""
    z = logits.float() / temperature
    if task == "multilabel":
        p = torch.sigmoid(z)
        ent = -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p))
        return float(ent.mean())
    logp = torch.log_softmax(z, dim=-1)
    return float(-(logp.exp() * logp).sum(-1).mean())


def study(logits: torch.Tensor, task: str, temperatures) -> list[dict]:
    classes = logits.shape[-1]
    max_entropy = math.log(2) if task == "multilabel" else math.log(classes)
    rows = []
    for t in temperatures:
        entropy = soft_label_entropy(logits, float(t), task)
        rows.append({"temperature": float(t), "entropy": entropy,
                     "normalized_entropy": entropy / max_entropy})
    return rows


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["temperature"] for r in rows], [r["normalized_entropy"] for r in rows], "o-")
    ax.set_xscale("log")
    ax.set_xlabel("temperature T")
    ax.set_ylabel("soft-label entropy / max")
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_study(cfg: DictConfig, out_dir: Path) -> list[dict]:
    from hate_compress.models.classifier import predict_logits
    from hate_compress.pipeline.runner import make_data
    from hate_compress.stages.state import Run
    from hate_compress.stages.teacher import obtain_teacher

    out_dir.mkdir(parents=True, exist_ok=True)
    data = make_data(cfg)
    run = Run(cfg, out_dir, data)
    teacher = obtain_teacher(run)
    data.set_tokenizers({"teacher": teacher.tokenizer})
    logits, _ = predict_logits(teacher.model, data.dataloader("dev"), "teacher")
    temperatures = cfg.get("temperatures") or DEFAULT_TEMPERATURES
    rows = study(logits, data.task, temperatures)
    with open(out_dir / "temperature_study.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "temperature_study.json").write_text(json.dumps(
        {"teacher": str(teacher.path), "data": data.name, "split": "dev", "rows": rows}, indent=2))
    plot(rows, out_dir / "temperature_study.png",
         f"{cfg.teacher.name} on {data.name} (dev, {data.num_labels} classes)")
    print(f"\nsoft-label entropy of {cfg.teacher.name} on {data.name} dev")
    print("| T | entropy (nats) | entropy / max |\n|---|---|---|")
    for r in rows:
        print(f"| {r['temperature']:g} | {r['entropy']:.4f} | {r['normalized_entropy']:.4f} |")
    print(f"\nplot: {out_dir / 'temperature_study.png'}")
    return rows


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    from hate_compress.pipeline.guard import guarded_call

    guarded_call(run_study, cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    from hate_compress.cli import check_args

    check_args()
    main()
