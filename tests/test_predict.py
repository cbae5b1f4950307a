"""`python -m hate_compress.predict`: label texts from a file or stdin with any saved model."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from hate_compress.artifacts import load_classifier
from hate_compress.measure.quality import classification_metrics
from hate_compress.models.classifier import predict_logits
from hate_compress.pipeline.runner import make_data, run_pipeline
from hate_compress.predict import main
from tests.conftest import ROOT, compose_cfg


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    cfg = compose_cfg(tmp, ["pipeline=full", "prune=magnitude", "prune.finetune_epochs=1",
                            "quant=dynamic_int8"])
    return run_pipeline(cfg, tmp / "run"), tmp


def test_final_model_link_points_at_the_last_stage(pipeline_run):
    metrics, tmp = pipeline_run
    final = tmp / "run" / "final_model"
    assert final.resolve() == (tmp / "run" / "quant" / "model").resolve()
    meta = json.loads((final / "hate_compress.json").read_text())
    assert meta["compression"][-1]["kind"] == "quant_dynamic_int8"
    assert meta["metrics"]["test"]["macro_f1"] == metrics["quant"]["test"]["macro_f1"]
    assert "macro_f1" in (final / "README.md").read_text()


def test_predict_file_to_csv_with_probabilities(pipeline_run, tmp_path, capsys):
    _, tmp = pipeline_run
    source = tmp_path / "in.csv"
    source.write_text("text\nDu bist ein Idiot\nDas Wetter ist schön\n", encoding="utf-8")
    assert main([f"model={tmp / 'run' / 'final_model'}", f"input={source}"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["text"] for r in rows] == ["Du bist ein Idiot", "Das Wetter ist schön"]
    for row in rows:
        assert row["label"] in ("OTHER", "OFFENSE")
        assert abs(float(row["prob_OTHER"]) + float(row["prob_OFFENSE"]) - 1) < 1e-4


def test_reloaded_artifacts_reproduce_the_recorded_metrics(pipeline_run):
    """Each stage's metrics were measured on the in-memory model; the saved artifact, reloaded
    from safetensors (pruned masks baked in, int8 weights repacked), must score the same."""
    metrics, tmp = pipeline_run
    cfg = compose_cfg(tmp, [])
    data = make_data(cfg)
    for stage in ("teacher", "kd", "prune", "quant"):
        model, tok, meta = load_classifier(metrics[stage]["artifact"])
        data.set_tokenizers({"m": tok})
        logits, labels = predict_logits(model, data.dataloader("test"), "m")
        again = classification_metrics(logits, labels, task=meta["task"],
                                       label_names=meta["label_names"],
                                       positive_index=data.positive_index)
        assert again["macro_f1"] == pytest.approx(metrics[stage]["test"]["macro_f1"], abs=1e-9)
        assert again["accuracy"] == pytest.approx(metrics[stage]["test"]["accuracy"], abs=1e-9)


def test_stdin_to_jsonl_via_cli(pipeline_run):
    _, tmp = pipeline_run
    out = subprocess.run(
        [sys.executable, "-m", "hate_compress.predict", f"model={tmp / 'run' / 'final_model'}",
         "input=-", "format=jsonl"],
        input="Du Dummkopf\nSchönes Wetter heute\n", capture_output=True, text=True, cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 2 and {"text", "label", "prob_OTHER", "prob_OFFENSE"} <= set(rows[0])


def test_bad_arguments_give_one_line(tmp_path, capsys):
    assert main(["model=/nonexistent"]) == 2
    assert capsys.readouterr().err.startswith("error: /nonexistent")
    assert main(["modle=x"]) == 2
    assert "unknown argument 'modle=x'" in capsys.readouterr().err


# -- input read as strictly as training reads it ------------------------------------------------

BAD = ROOT / "tests" / "data" / "bad"


def run_main(args: list[str], capsys) -> tuple[int, str, list[str]]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err.splitlines()


@pytest.mark.parametrize(("name", "needles"), [
    ("predict_unbalanced_quote.tsv", ("row 4", "unbalanced double quote", "joined lines 5-26")),
    ("predict_utf16.csv", ("UTF-16",)),
    ("numeric_text_column.csv", ("column 'id' (text_column) holds numbers",)),
])
def test_bad_input_is_one_error_line_and_no_predictions(pipeline_run, capsys, name, needles):
    """Before: the stray quote gave 9 predictions for 30 rows (exit 0), UTF-16 a traceback."""
    _, tmp = pipeline_run
    column = ["text_column=id"] if name.startswith("numeric") else []
    code, out, err = run_main([f"model={tmp / 'run' / 'final_model'}", f"input={BAD / name}",
                               *column], capsys)
    assert code == 2 and out == ""
    assert len(err) == 1 and err[0].startswith(f"error: {BAD / name}: "), err
    for needle in needles:
        assert needle in err[0], err[0]


def test_one_prediction_per_input_row(pipeline_run, tmp_path, capsys):
    _, tmp = pipeline_run
    fixed = tmp_path / "fixed.tsv"  # the fixture with its stray quotes removed: 30 rows
    fixed.write_text((BAD / "predict_unbalanced_quote.tsv").read_text(encoding="utf-8")
                     .replace('"', ""), encoding="utf-8")
    code, out, err = run_main([f"model={tmp / 'run' / 'final_model'}", f"input={fixed}"], capsys)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 30 and rows[3]["text"] == "Achtung, so nicht"


def test_utf16_on_stdin_is_one_error_line(pipeline_run, monkeypatch, capsys):
    _, tmp = pipeline_run
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("Du Dummkopf\n".encode("utf-16"))))
    code, out, err = run_main([f"model={tmp / 'run' / 'final_model'}", "input=-"], capsys)
    assert code == 2 and err == ["error: <stdin>: input is UTF-16 encoded; re-save it as UTF-8"]


def test_rows_out_must_equal_rows_in(pipeline_run, tmp_path, monkeypatch, capsys):
    import hate_compress.predict as predict

    _, tmp = pipeline_run
    source = tmp_path / "in.txt"
    source.write_text("eins\nzwei\ndrei\n", encoding="utf-8")
    real = predict.predict_texts
    monkeypatch.setattr(predict, "predict_texts", lambda *a, **k: real(*a, **k)[:-1])
    code, out, err = run_main([f"model={tmp / 'run' / 'final_model'}", f"input={source}"], capsys)
    assert code == 2 and out == ""
    assert err == [f"error: {source}: 3 rows in but 2 predictions out"]


def test_warns_when_most_tokens_are_unknown(pipeline_run, tmp_path, capsys):
    """Bengali text on a model whose tokenizer only saw German is all [UNK]: one warning line."""
    _, tmp = pipeline_run
    model = f"model={tmp / 'run' / 'final_model'}"
    bengali = tmp_path / "bn.txt"
    bengali.write_text("এই সরকার কে যারা নির্লজ্জের মত সাপোর্ট দিয়েছে\nতাদের আরো এমন রাস্তায়\n",
                       encoding="utf-8")
    code, out, err = run_main([model, f"input={bengali}"], capsys)
    assert code == 0 and len(list(csv.DictReader(io.StringIO(out)))) == 2
    assert len(err) == 1 and err[0].startswith(f"warning: {bengali}: 100% of the tokens are "
                                               "unknown to the model's tokenizer ([UNK])"), err
    german = tmp_path / "de.txt"
    german.write_text("Du bist ein Idiot\nDas Wetter ist schön\n", encoding="utf-8")
    code, _, err = run_main([model, f"input={german}"], capsys)
    assert code == 0 and not [line for line in err if line.startswith("warning:")], err
