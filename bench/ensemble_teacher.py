"""Is the ensemble teacher worth distilling from? Member weights x temperature x combine mode.

Issue 16's ensemble KD fell short, and its equal-weight ensemble scored *below* its better
member. Before spending student training on it, this scores the teacher itself: the members
(`tiny_teacher`, `char_ngram`, from the same teacher store `bench/kd_variants.py` uses, so
nothing retrains) predict dev and test once; every combination of the char_ngram weight share,
the temperature and `teacher.combine` is then the package's own `combine_logits` over those
logits, scored by the package's `classification_metrics`. Selection is on dev; test is only
reported.

    python bench/ensemble_teacher.py --data germeval_coarse
    python bench/ensemble_teacher.py --data bengali_hate_v2 --shares 0,0.5,0.7,1

A weight share w means `teacher.weights=[1-w,w]` (tiny_teacher, char_ngram); w=0 and w=1 are
the members alone. Writes bench/results/ensemble_teacher_<data>.json (bench/results_io.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import results_io, tables  # noqa: E402
from bench.common import compose, quiet  # noqa: E402
from bench.kd_variant_list import MEMBER_SEEDS, TEACHER_SEED  # noqa: E402
from bench.table_renderers import ensemble_teacher  # noqa: E402


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def score(logits, data, split: str) -> float:
    import torch

    from hate_compress.measure.quality import classification_metrics

    labels = torch.as_tensor(data.labels(split))
    return float(classification_metrics(logits, labels, task=data.task, label_names=data.label_names,
                                        positive_index=data.positive_index)["macro_f1"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="germeval_coarse")
    parser.add_argument("--store", type=Path,
                        default=ROOT / "bench" / "results" / "work" / "kd_variants_store",
                        help="paths.cache_dir holding the members (bench/kd_variants.py's store)")
    parser.add_argument("--shares", default="0,0.25,0.5,0.6,0.7,0.8,0.9,1",
                        help="char_ngram weight shares to try")
    parser.add_argument("--temperatures", default="1,2,4")
    parser.add_argument("--combine", default="probs,logits")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides (the members' config)")
    args = parser.parse_args(argv)
    quiet()
    from hate_compress.kd.ensemble import combine_logits
    from hate_compress.pipeline.runner import make_data
    from hate_compress.stages.state import Run
    from hate_compress.stages.teacher import obtain_teacher
    from hate_compress.stages.text_teacher import obtain_ensemble

    name = f"ensemble_teacher_{args.data}"
    record = results_io.Recorder(name, argv=None if argv is None else [__file__, *argv])
    overrides = [f"data={args.data}", "teacher=ensemble", f"teacher.seed={TEACHER_SEED}",
                 *MEMBER_SEEDS, f"paths.cache_dir={args.store.resolve()}", "stages=[teacher]",
                 *args.overrides]
    cfg = compose(overrides)
    data = make_data(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(cfg, Path(tmp) / "run", data)
        ensemble, _ = obtain_ensemble(run, obtain_teacher)
    members = list(ensemble.model.members)
    if members != ["tiny_teacher", "char_ngram"]:
        raise SystemExit(f"error: expected members tiny_teacher, char_ngram; got {members}")
    splits = ["dev", "test"] if data.has_test else ["dev"]
    logits = {s: [m.predict_texts(data.texts(s)) for m in ensemble.model.members.values()]
              for s in splits}
    rows = []
    for mode in args.combine.split(","):
        for temperature in floats(args.temperatures) if mode == "probs" else [1.0]:
            for share in floats(args.shares):
                combined = {s: combine_logits(logits[s], [1 - share, share], task=data.task,
                                              mode=mode, temperature=temperature) for s in splits}
                rows.append({"combine": mode, "temperature": temperature if mode == "probs" else None,
                             "char_ngram_share": share,
                             **{f"{s}_macro_f1": score(combined[s], data, s) for s in splits}})
    best = max(rows, key=lambda r: r["dev_macro_f1"])
    default = next((r for r in rows if r["combine"] == "probs" and r["char_ngram_share"] == 0.5
                    and r["temperature"] == float(cfg.teacher.temperature)), None)
    result = {"data": args.data, "split": splits[-1], "members": members, "rows": rows,
              "best_by_dev": best, "default": default,
              "default_temperature": float(cfg.teacher.temperature), "overrides": overrides}
    record.write(result, note=None)  # quality only
    print(tables.render_record(ensemble_teacher, results_io.read(name)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
