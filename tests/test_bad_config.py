"""Bad inputs end to end: every case goes through the real CLI path and must end in ONE `error:`
line that names the problem, with exit status 2, before anything is trained.

`tests/test_bad_inputs.py` checks the readers; this checks what a user actually sees, including
config mistakes that only a later stage would trip over (so they must be caught up front, or an
hour of teacher training is lost). The documented quirks are run through the whole teacher stage
to prove they are really accepted, not just parsed.

Most cases run in-process through `guarded_run` (the function `__main__` calls), which is the
CLI minus interpreter start-up; a few run `python -m hate_compress` for real, so the in-process
shortcut cannot hide a difference.

`docs/bad_inputs.md` is generated from the messages these cases really produce
(`python -m tests.test_bad_config --write-doc`); each case checks its own row, so the doc cannot
drift from the code.
"""

from __future__ import annotations

import contextlib
import csv
import io
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hate_compress.pipeline.runner import guarded_run
from tests.conftest import ROOT, TINY, cli_env, compose_cfg

BAD = ROOT / "tests" / "data" / "bad"
DOC = ROOT / "docs" / "bad_inputs.md"
SAMPLE = ROOT / "hate_compress" / "data" / "sample" / "synthetic_train.csv"

# data cases read one file with the reader's defaults (as in tests/data/bad/CASES.md)
DATA = ("data.test_file=null", "data.label_names=null", "data.positive_label=null",
        "data.name=bad")
# accepted files go through a real (tiny, 1-batch) teacher stage
TRAIN_ONE_BATCH = ("pipeline=teacher", "data.test_file=null", "trainer.limit_train_batches=1",
                   "trainer.limit_val_batches=1")
FULL = ("pipeline=full", "prune=magnitude", "quant=dynamic_int8")


@dataclass(frozen=True)
class Case:
    id: str
    overrides: tuple[str, ...]
    # substrings the single error line must contain; empty = the input is accepted
    expect: tuple[str, ...] = ()
    accepted: str = ""  # documented handling, for accepted cases
    cli: bool = False  # run `python -m hate_compress` in a subprocess
    generated: str | None = None  # fixture written by `make_fixture` into tmp_path
    exit_code: int = 2


def bad(name: str) -> str:
    return str(BAD / name)


CASES = [
    # -- data files ---------------------------------------------------------------------------
    Case("missing_file", (f"data.train_file={bad('does_not_exist.csv')}", *DATA),
         ("does_not_exist.csv", "file not found"), cli=True),
    Case("missing_text_column", (f"data.train_file={bad('missing_text_column.csv')}", *DATA),
         ("missing column 'text'",)),
    Case("missing_label_column", (f"data.train_file={bad('missing_label_column.csv')}", *DATA),
         ("missing column 'label'", "did you mean 'Label'")),
    Case("missing_meta_column", (f"data.train_file={SAMPLE}", *DATA, "data.meta_columns=[to_whom]"),
         ("synthetic_train.csv", "missing column 'to_whom' (data.meta_columns)")),
    Case("empty_file", (f"data.train_file={bad('empty.csv')}", *DATA), ("empty.csv", "file is empty")),
    Case("header_only", (f"data.train_file={bad('header_only.csv')}", *DATA), ("no data rows",)),
    Case("whitespace_text", (f"data.train_file={bad('whitespace_text.csv')}", *DATA),
         ("row 2", "empty or whitespace-only")),
    Case("nan_label", (f"data.train_file={bad('nan_label.csv')}", *DATA),
         ("row 2", "label in column 'label' is empty")),
    Case("unknown_label", (f"data.train_file={bad('unknown_label.csv')}", *DATA,
                           "data.label_names=[OFFENSE,OTHER]"),
         ("row 4", "unknown label 'OFFENCE'")),
    Case("case_mismatch_label", (f"data.train_file={bad('case_mismatch_label.csv')}", *DATA),
         ("row 3", "did you mean 'OFFENSE'")),
    Case("label_only_in_dev", (f"data.train_file={bad('dev_only_label_train.csv')}",
                               f"data.dev_file={bad('dev_only_label_dev.csv')}", *DATA,
                               "data.task=multiclass"),
         ("dev_only_label_dev.csv", "row 2", "'PROFANITY' never occurs in the train split")),
    Case("single_class", (f"data.train_file={bad('single_class_train.csv')}", *DATA),
         ("single class",)),
    Case("wrong_delimiter", (f"data.train_file={bad('tsv_named_csv.csv')}", *DATA),
         ("looks tab-separated", "data.format=tsv")),
    Case("undecodable_bytes", (f"data.train_file={bad('undecodable.csv')}", *DATA),
         ("row 3", "not valid UTF-8")),
    Case("duplicated_header", (f"data.train_file={bad('duplicated_header.csv')}", *DATA),
         ("duplicated column name", "'text'")),
    Case("ragged_row", (f"data.train_file={bad('ragged_row.csv')}", *DATA),
         ("row 2 has 3 fields",)),
    Case("bad_json", (f"data.train_file={bad('bad_json.jsonl')}", *DATA),
         ("row 2", "invalid JSON")),
    Case("multilabel_out_of_range", (f"data.train_file={bad('multilabel_bad_value.csv')}", *DATA,
                                     "data.task=multilabel", "data.label_column=null",
                                     "data.label_columns=[insult,threat]"),
         ("row 3", "column 'insult' must be 0 or 1", "'2'")),
    Case("numeric_text_column", (f"data.train_file={bad('numeric_text_column.csv')}", *DATA,
                                 "data.text_column=id"),
         ("numeric_text_column.csv", "column 'id' (data.text_column) holds numbers", "5 of 5 rows")),
    Case("one_mb_text", TRAIN_ONE_BATCH, generated="one_mb_text",
         accepted="a ~1 MB text is read verbatim (above the csv module's 128 KiB field limit) "
                  "and truncated to data.max_length tokens by the tokenizer"),
    Case("stray_space_labels", TRAIN_ONE_BATCH, generated="stray_space_labels",
         accepted="labels ' OFFENSE' / 'OTHER ' are trimmed (data.strip_labels=true, the default)"),
    Case("bom", TRAIN_ONE_BATCH, generated="bom",
         accepted="a UTF-8 byte-order mark is stripped, so the first column is 'text'"),
    Case("mixed_line_endings", TRAIN_ONE_BATCH, generated="mixed_line_endings",
         accepted="\\r\\n and \\n both end a row; a quoted field keeps its own line break"),
    # -- config -------------------------------------------------------------------------------
    Case("kd_alpha", ("pipeline=teacher_kd", "kd.alpha=1.5"), ("kd.alpha=1.5", "outside [0, 1]"),
         cli=True),
    Case("kd_temperature", ("pipeline=teacher_kd", "kd.temperature=0"),
         ("kd.temperature=0.0 must be > 0",)),
    Case("kd_unknown_term", ("pipeline=teacher_kd", "+kd.terms.contrastive={}"),
         ("kd.terms.contrastive", "unknown loss term")),
    Case("prune_sparsity", (*FULL, "prune.sparsity=1.2"), ("prune.sparsity=1.2", "outside [0, 1)")),
    Case("explain_steps", ("measure.explain=true", "measure.explain_steps=1"),
         ("measure.explain_steps=1", "whole number >= 2")),
    Case("prune_method_unknown", (*FULL, "prune.method=random"),
         ("prune.method: unknown pruner 'random'; choose from",)),
    Case("prune_option_unknown", (*FULL, "+prune.options.scop=layer"),
         ("prune.options.scop is not an option",)),
    Case("quant_method_int3", ("pipeline=full", "quant.method=int3"),
         ("quant.method: unknown quantizer 'int3'; choose from",)),
    Case("quant_option_unknown", (*FULL, "+quant.options.bits=3"),
         ("quant.bits is not an option of quant.method='dynamic_int8'",)),
    Case("quant_onnx_option_unknown", ("pipeline=full", "quant=onnx_int8", "+quant.options.bits=4"),
         ("quant.bits is not an option of quant.method='onnx_int8'", "optimize", "per_channel")),
    Case("teacher_checkpoint_missing", ("teacher.checkpoint=/missing",),
         ("teacher.checkpoint=/missing", "no saved hate_compress model")),
    Case("max_length_zero", ("data.max_length=0",), ("data.max_length must be an integer >= 2",)),
    Case("unknown_stage", ("stages=[teacher,distill]",), ("stages: unknown stage 'distill'; choose from",)),
    Case("stage_order", ("stages=[teacher,quant,kd]",), ("stages run in the order",)),
    Case("plugin_missing", ("plugins=[no_such_plugin]",),
         ("plugins: cannot import 'no_such_plugin'", "ModuleNotFoundError")),
    Case("teacher_min_f1", ("teacher.min_f1=2",), ("teacher.min_f1=2.0 is outside [0, 1]",)),
    Case("student_heads", ("pipeline=teacher_kd", "student.backbone.scratch.num_attention_heads=3"),
         ("student.backbone.scratch", "not divisible by num_attention_heads=3")),
    Case("trainer_unknown_key", ("+trainer.gpus=1",),
         ("trainer.gpus is not a Lightning Trainer argument",)),
    Case("trainer_max_epochs", ("+trainer.max_epochs=3",), ("trainer.max_epochs cannot be set",)),
    Case("optimizer_unknown_class", ("student.train.optimizer._target_=torch.optim.AdamX",),
         ("student.train.optimizer:", "AdamX")),
    Case("optimizer_unknown_argument", ("+teacher.train.optimizer.betaz=[0.9,0.99]",),
         ("teacher.train.optimizer:", "betaz")),
    Case("hardware_key_moved", ("hardware.precision=bf16-mixed",),
         ("did you mean trainer.precision?",), cli=True),
    Case("key_typo", ("kd.alpa=0.5",), ("unknown key kd.alpa, did you mean kd.alpha?",), cli=True),
    Case("appended_key_typo", ("+kd.alpa=0.5",), ("unknown key kd.alpa, did you mean kd.alpha?",)),
    Case("appended_nested_key_typo", ("+teacher.backbone.tokenizer.vocab=100",),
         ("unknown key teacher.backbone.tokenizer.vocab, did you mean "
          "teacher.backbone.tokenizer.vocab_size?",)),
    Case("unknown_group_option", ("quant=int3",),
         ("quant=int3: no such option; choose from", "dynamic_int8", "nf4"), cli=True),
    Case("assistant_missing", ("stages=[teacher,assistant,kd]",),
         ("no assistant is configured", "pipeline=assistant_kd")),
    Case("kd_method_unknown", ("pipeline=teacher_kd", "kd.method=born_again"),
         ("kd.method: unknown kd method 'born_again'; choose from", "mutual")),
    Case("mutual_one_peer", ("pipeline=teacher_kd", "kd=mutual", "kd.peers=1"),
         ("kd.peers=1", "whole number >= 2")),
    Case("baseline_value", ("measure.baseline=maybe",),
         ("measure.baseline='maybe' must be true, false or auto",)),
    Case("seeds_repeated", ("seeds=[1,1]",), ("seeds=[1, 1]", "distinct non-negative integers"),
         cli=True),
    Case("seeds_with_search", ("hparams_search=kd_optuna", "seeds=[1,2]"),
         ("with hparams_search", "hparams_search.seeds_per_trial"), cli=True),
]
BY_ID = {c.id: c for c in CASES}


def make_fixture(kind: str, directory: Path) -> Path:
    """A trainable file (the synthetic sample) with one documented quirk.

    Generated rather than stored in tests/data/bad/: those are tiny reader-level fixtures, and
    an accepted file must be big enough to train on."""
    with open(SAMPLE, encoding="utf-8", newline="") as fh:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(fh)]
    path = directory / f"{kind}.csv"
    if kind == "one_mb_text":
        rows[0] = ("Wort " * 210_000 + "Ende", rows[0][1])
    if kind == "stray_space_labels":
        rows = [(t, f" {lab}" if i % 2 else f"{lab} ") for i, (t, lab) in enumerate(rows)]
    if kind == "mixed_line_endings":
        rows[1] = ("Zwei\r\nZeilen", rows[1][1])

    def quote(text: str) -> str:
        return f'"{text}"' if any(ch in text for ch in ',"\r\n') else text

    lines = ["text,label"] + [f"{quote(t)},{lab}" for t, lab in rows]
    ends = ["\r\n" if i % 2 else "\n" for i in range(len(lines))]
    body = "".join(line + (ends[i] if kind == "mixed_line_endings" else "\n")
                   for i, line in enumerate(lines))
    if kind == "bom":
        body = "\ufeff" + body
    path.write_bytes(body.encode("utf-8"))
    return path


def overrides_for(case: Case, tmp_path: Path) -> list[str]:
    extra = []
    if case.generated:
        extra.append(f"data.train_file={make_fixture(case.generated, tmp_path)}")
    return [*case.overrides, *extra]


@dataclass
class Outcome:
    code: int
    errors: list[str]
    stderr: str
    seconds: float
    run_dir: Path
    metrics: dict | None = None


def run_in_process(case: Case, tmp_path: Path) -> Outcome:
    cfg = compose_cfg(tmp_path, overrides_for(case, tmp_path))
    run_dir = tmp_path / "run"
    start = time.perf_counter()
    metrics, code = None, 0
    with contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            metrics = guarded_run(cfg, run_dir)
        except SystemExit as exc:
            code = exc.code
    seconds = time.perf_counter() - start
    text = err.getvalue()
    return Outcome(code, [ln for ln in text.splitlines() if ln.startswith("error:")], text,
                   seconds, run_dir, metrics)


def run_cli(case: Case, tmp_path: Path) -> Outcome:
    run_dir = tmp_path / "outputs" / "runs" / "cli"
    args = ["data=synthetic", f"paths.output_root={tmp_path / 'outputs'}", "run_name=cli",
            *TINY, *overrides_for(case, tmp_path)]
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "hate_compress", *args], cwd=ROOT,
                         env=cli_env(tmp_path), capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    return Outcome(out.returncode, errors, out.stderr, seconds, run_dir)


def message(case: Case, outcome: Outcome, tmp_path: Path) -> str:
    """The user-visible message with machine-specific paths made repo-relative."""
    if case.accepted:
        return f"accepted: {case.accepted}"
    text = outcome.errors[0].removeprefix("error: ")
    return text.replace(str(tmp_path), "<tmp>").replace(str(ROOT) + "/", "")


def doc_row(case: Case, text: str) -> str:
    shown = [o.replace(str(ROOT) + "/", "") for o in case.overrides if o not in DATA]
    if case.generated:
        shown.insert(0, f"data.train_file=<{case.generated}.csv>")
    cell = " ".join(shown).replace("|", "\\|")
    how = "subprocess" if case.cli else "in-process"
    code = 0 if case.accepted else case.exit_code
    text = text.replace("|", "\\|")
    return f"| `{case.id}` | `{cell}` | {how} | {code} | `{text}` |"


def documented_rows() -> dict[str, str]:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            rows[line.split("`")[1]] = line
    return rows


def run_case(case: Case, tmp_path: Path) -> tuple[Outcome, str]:
    outcome = run_cli(case, tmp_path) if case.cli else run_in_process(case, tmp_path)
    if case.accepted:
        assert outcome.code == 0 and not outcome.errors, outcome.stderr[-3000:]
    elif case.exit_code == 2:
        assert outcome.code == 2, outcome.stderr[-3000:]
        assert len(outcome.errors) == 1, outcome.stderr[-3000:]
        assert "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
        for needle in case.expect:
            assert needle in outcome.errors[0], (needle, outcome.errors[0])
    return outcome, message(case, outcome, tmp_path)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_end_to_end(case, tmp_path):
    outcome, text = run_case(case, tmp_path)
    if not case.accepted:
        # nothing was trained or even tokenized before the error
        assert not (outcome.run_dir / "teacher").exists()
        assert not (tmp_path / "cache" / "tokenizers").exists()
        assert not (tmp_path / "cache" / "teachers").exists()
        assert outcome.seconds < (90 if case.cli else 30), outcome.seconds
    else:
        check_accepted(case, outcome)
    row = doc_row(case, text)
    assert documented_rows().get(case.id) == row, (
        f"docs/bad_inputs.md is out of date for {case.id}; regenerate it with "
        f"`python -m tests.test_bad_config --write-doc`\nwant: {row}")


def check_accepted(case: Case, outcome: Outcome) -> None:
    metrics = outcome.metrics
    assert metrics["run"]["status"] == "ok"
    assert metrics["run"]["split_sizes"]["train"] + metrics["run"]["split_sizes"]["dev"] == 400
    dev = metrics["teacher"]["dev"]
    assert {"f1_OTHER", "f1_OFFENSE"} <= set(dev), dev  # labels trimmed, header un-BOMed
    assert (outcome.run_dir / "teacher" / "checkpoints" / "last.ckpt").exists()


def test_doc_lists_exactly_the_cases():
    documented = set(documented_rows())
    assert documented == set(BY_ID), (sorted(documented - set(BY_ID)), sorted(set(BY_ID) - documented))
    assert len(CASES) >= 20


def write_doc() -> None:
    """Regenerate docs/bad_inputs.md by running every case (about a minute)."""
    import tempfile

    rows = []
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            _, text = run_case(case, Path(tmp))
        rows.append(doc_row(case, text))
        print(rows[-1], file=sys.stderr)
    header = (
        "# Bad inputs: what the CLI says\n\n"
        "Every case below is run end to end by `tests/test_bad_config.py` (through `guarded_run`, "
        "what `python -m hate_compress` calls, or a real subprocess). A rejected input ends in "
        "exactly one line `error: <message>` on stderr and exit status 2, before any tokenizer "
        "or model is trained; accepted quirks run a whole (tiny) teacher stage. Paths are shown "
        "relative to the repo root; `<tmp>` is the test's temporary directory. Data cases also "
        "set `data.test_file=null data.label_names=null data.positive_label=null` (the reader's "
        "defaults, as in `tests/data/bad/CASES.md`); the fixtures are in `tests/data/bad/`, the "
        "`<...csv>` ones are generated by the test from the synthetic sample.\n\n"
        "This file is generated from the real messages — do not edit it by hand: "
        "`.venv/bin/python -m tests.test_bad_config --write-doc`. Each test case compares its "
        "own row, so a changed message fails the test until the doc is regenerated.\n\n"
        "| case | overrides | run | exit | message |\n|---|---|---|---|---|\n"
    )
    footer = (
        "\n`unknown_group_option` and `key_typo` are caught before Hydra composes the config "
        "(`hate_compress/cli.py`), so they too are one line, listing the choices or the closest "
        "key. A key appended with `+` passes Hydra and is refused by the config validation "
        "(`appended_key_typo`); the known keys are read from each group's yaml files, and the "
        "free-form subtrees left open are listed in `hate_compress/config_keys.py`.\n"
    )
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(header + "\n".join(rows) + "\n" + footer, encoding="utf-8")


if __name__ == "__main__":
    if "--write-doc" in sys.argv:
        write_doc()
