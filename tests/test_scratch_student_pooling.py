"""Issue 17: a student trained from scratch must see its input from the first step.

With [CLS] pooling a randomly initialised encoder gives every text the same pooled vector
(attention is near-uniform at init, so [CLS] is its own embedding plus a tiny mean of the
others): the head learns nothing until attention has learned to route content into [CLS], and
how long that takes depends on the seed — on Bengali hate v2 the default seed 42 ended 7 points
below the other seeds. The from-scratch student configs pool by mean, which carries the text
from step 0; this checks that property on the real configs, not the config value."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F

from hate_compress.pipeline.runner import make_data
from hate_compress.stages.common import build_classifier
from hate_compress.stages.state import Run, Trained

SCRATCH_STUDENTS = ["tiny_student", "tiny_student_xtok", "custom"]


def pooled_at_init(cfg, tmp_path: Path, seed: int) -> torch.Tensor:
    data = make_data(cfg)
    run = Run(cfg, tmp_path / "run", data)
    pl.seed_everything(0, verbose=False)
    teacher, teacher_tok = build_classifier(run, "teacher")
    run.teacher = Trained("teacher", teacher, teacher_tok, "teacher")
    pl.seed_everything(seed, verbose=False)
    student, tok = build_classifier(run, "student")
    data.set_tokenizers({"teacher": teacher_tok, "student": tok})
    inputs = next(iter(data.dataloader("dev", batch_size=16)))["inputs"]["student"]
    student.eval()
    with torch.no_grad():
        return student(inputs["input_ids"], inputs["attention_mask"]).pooled


@pytest.mark.parametrize("student", SCRATCH_STUDENTS)
def test_scratch_student_pools_text_dependent_vectors_at_init(tiny_cfg, tmp_path, student):
    cfg = tiny_cfg(f"student={student}", "student.layers=1", "student.hidden=32",
                   "student.heads=2", "student.intermediate=64") if student == "custom" \
        else tiny_cfg(f"student={student}")
    for seed in (42, 1):
        pooled = F.normalize(pooled_at_init(cfg, tmp_path, seed), dim=1)
        cosine = pooled @ pooled.T
        between_texts = cosine[~torch.eye(len(cosine), dtype=torch.bool)].mean().item()
        # [CLS] at init: 0.9999 for every seed; mean pooling: ~0.94 on real text
        assert between_texts < 0.99, (student, seed, between_texts)
