"""Per table of BENCHMARKS.md: which `bench/results/<name>.json` it reads, the command that
writes it, and how its numbers become markdown (`bench/tables.py` puts them between markers).

A renderer gets the `results` part of each record (`bench/results_io.py`) and returns markdown.
It formats numbers and nothing else: every value comes from the file, so a table can only say
what its command measured. Standard library only.
"""

from __future__ import annotations

import shlex
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.kd_variant_list import ENSEMBLE_COMPRESSION_ARGS


class TableDataError(ValueError):
    """A result file that exists but cannot be rendered (the message names file and key)."""


@dataclass(frozen=True)
class Table:
    name: str
    results: tuple[str, ...]  # bench/results/<name>.json files, in the renderer's argument order
    command: str  # what writes them (shown in the "pending" line when one is missing)
    render: Callable[..., str]


TABLES: dict[str, Table] = {}


def table(name: str, results: Sequence[str], command: str, render: Callable[..., str]) -> None:
    if name in TABLES:
        raise ValueError(f"table {name!r} registered twice")
    TABLES[name] = Table(name, tuple(results), command, render)


# -- formatting ------------------------------------------------------------------------------------


def markdown(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def cell(value: Any) -> str:
    """The pipeline's own number format (hate_compress summary tables): 4 decimals below 10."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def mean_sd(stats: dict) -> str:
    return f"{stats['mean']:.4f} ± {stats['sd']:.4f}"


# -- framework vs plain loop (bench/kd_throughput.py, plain_kd_loop.py, memory.py, profile_kd.py) --


def kd_throughput(r: dict) -> str:
    s, bs = r["settings"], r["models"]["batch_size"]
    rows = []
    if "live" in r:
        lv = r["live"]
        rows.append([
            "teacher live", f"{s['runs']}+{s['runs']}", f"{s['warmup']} warm-up + {s['steps']} steps",
            f"{lv['framework_median']:.1f} ({1000 * bs / lv['framework_median']:.0f} ms/step)",
            f"{lv['plain_median']:.1f} ({1000 * bs / lv['plain_median']:.0f} ms/step)",
            f"**{lv['ratio']:.3f}x**", f"{lv['paired_ratio_median']:.3f}x",
            f">= {r['targets']['live']}x", "yes" if lv["ratio"] >= r["targets"]["live"] else "**no**"])
    if "cached" in r:
        ca = r["cached"]
        prepare = statistics.median(x["framework"]["cache_build_s"] for x in ca["runs"])
        rows.append([
            f"teacher output cache, {s['epochs']} epochs", f"{s['runs']}+{s['runs']}",
            f"{s['epochs']} x {r['cached_examples']} examples (+{r['cached_dev_examples']} dev cached)",
            f"{ca['framework_median']:.1f} ({ca['framework_seconds_median']:.1f} s incl. "
            f"{prepare:.1f} s prepare_kd + cache build)",
            f"{ca['plain_median']:.1f} ({ca['plain_seconds_median']:.1f} s)",
            f"**{ca['ratio']:.2f}x**", f"{ca['paired_ratio_median']:.2f}x",
            f">= {r['targets']['cached']}x", "yes" if ca["ratio"] >= r["targets"]["cached"] else "**no**"])
    out = markdown(["comparison", "runs (fw+plain)", "work per run", "framework samples/s",
                    "plain samples/s", "ratio fw/plain (of medians)", "median of paired ratios",
                    "target", "met"], rows)
    for key, label in (("live", "teacher live"), ("cached", "cache")):
        if key in r:
            fw = ", ".join(f"{v:.1f}" for v in r[key]["framework_samples_per_s"])
            pl = ", ".join(f"{v:.1f}" for v in r[key]["plain_samples_per_s"])
            out += f"\n\nPer-run samples/s, {label}: framework {fw}; plain {pl}."
    m = r["models"]
    out += (f"\n\nModels: teacher {m['teacher']} ({m['teacher_params'] / 1e6:.2f} M parameters) -> "
            f"student {m['student']} ({m['student_params'] / 1e6:.2f} M), batch {bs}, every batch "
            f"padded to {m['max_length']} tokens, {m['train_examples']} GermEval train examples.")
    return out


def plain_kd_loop(r: dict) -> str:
    s = r["settings"]
    return markdown(
        ["loop", "samples/s", "ms/step", "timed steps (after warm-up)", "batch x tokens", "torch threads"],
        [["plain PyTorch KD loop", f"{r['samples_per_s']:.1f}", f"{r['ms_per_step']:.0f}",
          f"{r['steps']} (+{s['warmup']})", f"{s['batch_size']} x {s['max_length']}",
          r["torch_threads"]]])


MEMORY_LABELS = {"live": "framework, teacher live", "cached": "framework, teacher output cache",
                 "plain": "plain PyTorch loop (reference)"}


def memory(r: dict) -> str:
    rows = []
    for x in r["runs"]:
        rows.append([MEMORY_LABELS.get(x["mode"], x["mode"]), f"{x['ru_maxrss_child_mb']:.0f}",
                     f"{x['rss_ready_mb']:.0f}",
                     f"{x['peak_prepare_mb']:.0f}" if x["mode"] != "plain" else "–",
                     f"{x['peak_train_mb']:.0f}", f"{x['peak_train_mb'] - x['rss_ready_mb']:+.0f}",
                     x["steps"], f"{x['seconds']:.0f}"])
    return markdown(["mode", "peak RSS MB (ru_maxrss)", "RSS before KD MB",
                     "peak during prepare_kd MB (cache build)", "peak during epoch MB",
                     "epoch adds MB", "steps", "wall s"], rows) + (
        f"\n\nOne epoch of {r['runs'][0]['train_examples']} train examples per mode, each in a "
        "fresh process.")


def profile_kd(r: dict) -> str:
    step = r["simple_step_ms"]
    # actions that wrap the whole step (run_training_batch, optimizer_step) say nothing: named only
    wrappers = [a for ms, a in r["simple"] if ms >= 0.95 * step]
    parts_of_step = [(ms, a) for ms, a in r["simple"] if ms < 0.95 * step]
    rows = [[f"`{action}`", f"{ms:.2f}", f"{100 * ms / step:.1f}%"] for ms, action in parts_of_step[:8]]
    out = markdown(["Lightning action (SimpleProfiler)", "ms/step", "share of step"], rows)
    if wrappers:
        out += "\n\nLeft out, as they wrap the whole step: " + ", ".join(f"`{a}`" for a in wrappers) + "."
    origins = r["cprofile"]["origins"]
    total = sum(ms for ms, _ in origins) or 1.0
    shares = ", ".join(f"{name} {100 * ms / total:.1f}%" for ms, name in origins[:6])
    parts = ", ".join(f"{label} {100 * s / r['cache_build_s']:.1f}%"
                      for s, _, label in sorted(r["cache_parts"], reverse=True)[:4])
    out += (f" Framework step {step:.0f} ms (SimpleProfiler on) vs plain loop {r['plain_ms']:.0f} "
            f"ms. cProfile self time by origin: {shares}. `prepare_kd` with a fresh teacher-output "
            f"cache ({r['settings']['cache_examples']} train examples + dev): {r['cache_build_s']:.2f} s, "
            f"of which {parts}.")
    if r.get("threads_check_ms"):
        thr = ", ".join(f"{k} thread(s) {v:.0f} ms" for k, v in sorted(r["threads_check_ms"].items()))
        out += f" Plain step vs torch threads: {thr}."
    return out


# -- pipeline runs (bench/compression.py), sweeps (kd_table.py, kd_matrix.py), temperature -------


def leading_float(text: str) -> float | None:
    """`0.6524` of a cell such as `0.6524 ± 0.0018` (None for `-` or a word)."""
    try:
        return float(str(text).split()[0])
    except (ValueError, IndexError):
        return None


def final_vs_kd(headers: list[str], rows: list[list[str]]) -> str | None:
    """How much of the KD student's macro F1 the last compressed stage keeps: pruning and
    quantization are judged against the model they start from, not only against the teacher."""
    column = next((i for i, h in enumerate(headers) if h.startswith("macro F1")), None)
    stages = [row[0].split(" (")[0] for row in rows]
    if column is None or "kd" not in stages:
        return None
    at = stages.index("kd")
    after = [row for row, stage in zip(rows[at + 1:], stages[at + 1:], strict=True)
             if not stage.startswith("baseline")]  # a reference row is no stage
    if not after:
        return None
    kd, final = leading_float(rows[at][column]), leading_float(after[-1][column])
    if not kd or final is None:
        return None
    return (f"The final stage ({after[-1][0]}) keeps {final / kd:.3f} of the KD student's "
            f"macro F1 ({final:.4f} vs {kd:.4f}).")


def pipeline_run(r: dict) -> str:
    notes = [f"Quality on {r['split']}."] if r.get("split") else []
    if kept := final_vs_kd(r["headers"], r["rows"]):
        notes.append(kept)
    if r.get("targets"):
        notes.append("Targets: " + "; ".join(
            f"{name} {cell(t['value'])} vs {t['target']} -> {'met' if t['met'] else '**MISSED**'}"
            for name, t in r["targets"].items()) + ".")
    if r.get("stage_seconds"):
        notes.append("Stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in r["stage_seconds"].items()) + ".")
    table = markdown(r["headers"], r["rows"])
    return table + ("\n\n" + " ".join(notes) if notes else "")


def kd_ablation(r: dict) -> str:
    split = r["split"]
    reasons = ("explain_cosine", "explain_top5", "flip_rate_lost")
    rows = [[x["kd"], x["seeds"], mean_sd(x["macro_f1"]), mean_sd(x["minority_f1"]),
             mean_sd(x["dev_macro_f1"]), mean_sd(x["agreement"]),
             *(mean_sd(x[k]) if x.get(k) else "-" for k in reasons)] for x in r["rows"]]
    head = f"Teacher {r['teacher']['name']}: {split} macro F1 {r['teacher']['macro_f1']:.4f}.\n\n"
    foot = ("\n\nexpl. cosine / top-5: Integrated-Gradients word attributions against the "
            "teacher's on dev examples (mean over seeds of each run's mean); flip rate: share of "
            f"the {split} examples the teacher gets right that the student gets wrong. "
            "\"-\": not measured in this sweep (no `measure.explain=true`).")
    return head + markdown(["kd", "seeds", f"{split} macro F1", f"{split} {r['minority_label']}",
                            "dev macro F1", f"agreement ({split})", "expl. cosine",
                            "expl. top-5 overlap", "flip rate (teacher right -> wrong)"],
                           rows) + foot



def kd_variants(r: dict) -> str:
    """bench/kd_variants.py: one row per KD variant, mean ± std over the finished seeds, the
    gain over the label-only row and the gap to the char_ngram baseline (both in F1 points)."""
    split, base = r["split"], r.get("baseline_macro_f1")
    ref = next((x for x in r["rows"] if x["variant"] == "none" and x.get("macro_f1")), None)
    rows = []
    for x in r["rows"]:
        if not x.get("macro_f1"):
            rows.append([x["label"], 0, "not run yet", "-", "-", "-", "-", "-", "-"])
            continue
        f1 = x["macro_f1"]
        gain = "-" if ref is None or x is ref else f"{100 * (f1['mean'] - ref['macro_f1']['mean']):+.1f}"
        gap = "-" if base is None else f"{100 * (f1['mean'] - base):+.1f}"
        rows.append([x["label"], f1["n"], mean_sd(f1), gain, gap,
                     mean_sd(x["agreement"]) if x.get("agreement") else "-",
                     mean_sd(x["dev_macro_f1"]), x["teacher"],
                     " / ".join(f"{v:.4f}" for v in x.get("teacher_macro_f1_values") or [x["teacher_macro_f1"]])])
    out = markdown(["variant", "seeds", f"{split} macro F1 (mean ± std)", "vs labels only (points)",
                    "vs baseline (points)", f"agreement with its teacher ({split})",
                    "dev macro F1", "teacher", f"teacher {split} macro F1"], rows)
    notes = [f"char_ngram baseline (TF-IDF + logistic regression): {split} macro F1 "
             + ("-" if base is None else f"**{base:.4f}**") + "."]
    seeds = sorted({s for x in r["rows"] for s in x["seeds"]}, key=int)
    notes.append(f"Student seeds finished: {', '.join(map(str, seeds)) or 'none'} "
                 f"(planned {', '.join(map(str, r['planned_seeds']))}); teacher seed {r['teacher_seed']}.")
    failed = [f"{x['variant']} seed {s}" for x in r["rows"] for s in x.get("failed", {})]
    if failed:
        notes.append("Failed cells: " + ", ".join(failed) + ".")
    for x in r["rows"]:
        for s, c in x["runs"].items():
            if "assistant_test_macro_f1" in c:
                notes.append(f"Assistant (3x192) seed {s}: {split} macro F1 "
                             f"{c['assistant_test_macro_f1']:.4f}.")
            if "peer_test_macro_f1" in c:
                notes.append(f"Mutual peers seed {s}: {split} macro F1 "
                             + " / ".join(f"{v:.4f}" for v in c["peer_test_macro_f1"]) + ".")
    if len(r.get("invocations") or []) > 1:
        notes.append("Cells made by: " + "; ".join(f"`{c}`" for c in r["invocations"]) + ".")
    if any(len(x.get("teacher_macro_f1_values") or []) > 1 for x in r["rows"]):
        notes.append("Two teacher F1s in a row (a / b): the teacher was trained twice with the same "
                     "seed and config (a fresh store on another machine) and the seeds split "
                     "between the two; floating-point results differ across CPUs.")
    return out + "\n\n" + " ".join(notes)

MATRIX_COLUMNS = (("model", "label"), ("kd", "kd"), ("stage", "stage"), ("status", "status"),
                  ("macro F1", "macro_f1"), ("hate F1", "hate_f1"), ("agreement", "agreement"),
                  ("F1 retention", "f1_retention"), ("speedup b1", "speedup_b1"),
                  ("size MB", "size_mb"), ("latency b1 ms", "latency_ms_b1"),
                  ("latency b32 ms", "latency_ms_b32"), ("cell", "cell"))


def kd_matrix(r: dict) -> str:
    rows = [[row.get(key) for _, key in MATRIX_COLUMNS] for row in r["rows"]]
    return markdown([h for h, _ in MATRIX_COLUMNS], rows)


def temperature(r: dict) -> str:
    rows = [[f"{x['temperature']:g}", f"{x['entropy']:.4f}", f"{x['normalized_entropy']:.4f}"]
            for x in r["rows"]]
    return (f"Teacher {r['teacher_name']} on {r['data']} {r['split']}.\n\n"
            + markdown(["T", "entropy (nats)", "entropy / max"], rows))


def latency_realistic(r: dict) -> str:
    cols = r["columns"]
    rows = []
    for row in r["rows"]:
        base = next(b for b in r["rows"] if b["model"] == row["model"] and b["variant"] == "torch fp32")
        rows.append([row["model"], row["variant"], f"{row['size_mb']:.1f}",
                     *(f"{row[c]:.2f} ({base[c] / row[c]:.1f}x)" for c in cols)])
    s = r["settings"]
    return (markdown(["model", "variant", "size MB", *cols], rows)
            + f"\n\n(x) = speedup vs torch fp32 of the same shape, batch and threads; sequence "
              f"{s['seq']}, median of {s['runs']} timed forwards after {s['warmup']} warm-up; "
              "random weights.")


# -- the registry: table name -> results, command, renderer ---------------------------------------

def ensemble_teacher(r: dict) -> str:
    """bench/ensemble_teacher.py: the ensemble teacher's own F1 per weight share, T and combine
    mode; selected on dev, test reported; the members alone are the share-0 and share-1 rows."""
    split = r["split"]
    rows = [[x["combine"], "-" if x["temperature"] is None else f"{x['temperature']:g}",
             f"{1 - x['char_ngram_share']:.2f} / {x['char_ngram_share']:.2f}",
             x["dev_macro_f1"], x.get(f"{split}_macro_f1")] for x in r["rows"]]
    best, default = r["best_by_dev"], r.get("default")

    def describe(x: dict) -> str:
        t = "" if x["temperature"] is None else f", T {x['temperature']:g}"
        return (f"combine={x['combine']}{t}, weights {1 - x['char_ngram_share']:.2f} / "
                f"{x['char_ngram_share']:.2f}: dev {x['dev_macro_f1']:.4f}, {split} "
                f"{x.get(f'{split}_macro_f1', float('nan')):.4f}")

    notes = [f"Best by dev: {describe(best)}."]
    if default:
        notes.append(f"Default ensemble (equal weights, probs at T {r['default_temperature']:g}): "
                     f"{describe(default)}.")
    return markdown(["combine", "T", "weights tiny_teacher / char_ngram", "dev macro F1",
                     f"{split} macro F1"], rows) + "\n\n" + " ".join(notes)


table("full_pipeline_germeval", ["full_pipeline_germeval_coarse"],
      "python bench/compression.py --data germeval_coarse", pipeline_run)
table("full_pipeline_bengali", ["full_pipeline_bengali_hate_v2"],
      "python bench/compression.py --data bengali_hate_v2", pipeline_run)
table("kd_ablation_germeval", ["kd_table_germeval_coarse"],
      "python bench/kd_table.py --data germeval_coarse", kd_ablation)
table("kd_ablation_bengali", ["kd_table_bengali_hate_v2"],
      "python bench/kd_table.py --data bengali_hate_v2", kd_ablation)
table("kd_matrix_tiny", ["kd_matrix_tiny"], "python bench/kd_matrix.py", kd_matrix)
table("kd_throughput", ["kd_throughput"], "python bench/kd_throughput.py", kd_throughput)
table("kd_throughput_full", ["kd_throughput_full"],
      "python bench/kd_throughput.py --skip-live --epoch-examples 0 --runs 2 --out kd_throughput_full",
      kd_throughput)
table("plain_kd_loop", ["plain_kd_loop"], "python bench/plain_kd_loop.py", plain_kd_loop)
table("memory", ["memory"], "python bench/memory.py", memory)
table("profile_kd", ["profile_kd"], "python bench/profile_kd.py", profile_kd)
table("temperature", ["temperature"], "python bench/temperature.py", temperature)
table("demo", ["demo_germeval_coarse"],
      "python bench/compression.py --experiment demo --data germeval_coarse -- teacher.retrain=true",
      pipeline_run)
table("onnx_germeval", ["full_pipeline_germeval_coarse_threads"],
      "python bench/compression.py --data germeval_coarse --tag threads -- 'measure.threads=[1,2]'",
      pipeline_run)
table("full_pipeline_ensemble_germeval", ["full_pipeline_germeval_coarse_ensemble"],
      shlex.join(["python", "bench/compression.py", *ENSEMBLE_COMPRESSION_ARGS]), pipeline_run)
table("latency_realistic", ["latency_realistic"],
      "python bench/latency_realistic.py --runs 3 --warmup 1", latency_realistic)
table("kd_variants_germeval", ["kd_variants_germeval_coarse"],
      "python bench/kd_variants.py --data germeval_coarse --seeds 1,2,3", kd_variants)
table("kd_variants_bengali", ["kd_variants_bengali_hate_v2"],
      "python bench/kd_variants.py --data bengali_hate_v2 --seeds 1,2,3", kd_variants)
table("ensemble_teacher_germeval", ["ensemble_teacher_germeval_coarse"],
      "python bench/ensemble_teacher.py --data germeval_coarse", ensemble_teacher)
table("ensemble_teacher_bengali", ["ensemble_teacher_bengali_hate_v2"],
      "python bench/ensemble_teacher.py --data bengali_hate_v2", ensemble_teacher)
