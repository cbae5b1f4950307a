"""A real (tiny) run with `measure.explain=true` writes the new columns and files, and its
report.html — and a sweep's — render in headless Chromium with the tables, images and numbers.

Chromium is Debian's `chromium` package (installed by .ci/run); without it the rendering tests
skip with that reason, the file checks still run."""

from __future__ import annotations

import csv
import html
import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from hate_compress.pipeline.runner import run_pipeline
from hate_compress.report.format import fmt
from hate_compress.report.html import run_report_html
from tests.conftest import compose_cfg

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not installed (Debian: apt-get install chromium; .ci/run "
                "installs it)")


def render(page: Path, tmp: Path) -> tuple[bytes, str]:
    """(screenshot PNG bytes, serialized DOM) of a local HTML file."""
    exe = chromium()
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'chromium-profile'}"]
    shot = tmp / "shot.png"
    subprocess.run([exe, *flags, f"--screenshot={shot}", "--window-size=1200,1600",
                    page.as_uri()], check=True, capture_output=True, timeout=120)
    dom = subprocess.run([exe, *flags, "--dump-dom", page.as_uri()], check=True,
                         capture_output=True, text=True, timeout=120).stdout
    return shot.read_bytes(), dom


def png_colours(data: bytes) -> int:
    """How many distinct pixel values a (non-interlaced, 8-bit RGB/RGBA) PNG has."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour = header[:4]
    assert depth == 8 and colour in (2, 6)
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels + 1
    # filters change bytes, not whether an image is flat: count distinct raw rows' bytes instead
    values = set()
    for y in range(0, height, max(1, height // 200)):
        row = raw[y * stride + 1:(y + 1) * stride]
        values.update(row[i:i + channels] for i in range(0, len(row), channels * 7))
    return len(values)


@pytest.fixture(scope="module")
def explained_run(tmp_path_factory) -> tuple[Path, dict]:
    """teacher -> KD (student with its own tokenizer) -> dynamic int8, explanation on."""
    tmp = tmp_path_factory.mktemp("explained")
    cfg = compose_cfg(tmp, ["stages=[teacher,kd,quant]", "quant=dynamic_int8",
                            "student=tiny_student_xtok", "measure.explain=true",
                            "measure.explain_n=6", "measure.explain_steps=8"])
    metrics = run_pipeline(cfg, tmp / "run")
    return tmp / "run", metrics


def test_run_writes_explanations_and_forgetting(explained_run):
    run_dir, metrics = explained_run
    assert metrics["teacher"]["explain"]["status"] == "reference"
    kd, quant = metrics["kd"]["explain"], metrics["quant"]["explain"]
    assert kd["status"] == "ok" and kd["explained_via"] == "kd"
    assert -1.0 <= kd["cosine_mean"] <= 1.0 and 0.0 <= kd["top5_overlap_mean"] <= 1.0
    assert kd["n"] + kd["n_undefined"] >= 6
    # int8 has no gradients: explained through the KD student it was quantized from, said so
    assert quant["status"] == "ok" and quant["explained_via"] == "student (fp32 source)"
    assert "no gradient" in quant["not_differentiable"]
    assert quant["cosine_mean"] == pytest.approx(kd["cosine_mean"])
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["kd"]["explain"] == kd
    for stage in ("kd", "quant"):
        forgot = metrics[stage]["forgetting"]
        assert set(forgot["f1_change"]) == {"OTHER", "OFFENSE"}
        with open(run_dir / stage / "disagreements.csv", newline="", encoding="utf-8") as fh:
            assert len(list(csv.DictReader(fh))) == forgot["n_disagreements"]
        examples = json.loads((run_dir / stage / "explanations.json").read_text())["examples"]
        assert examples and all(len(e["words"]) == len(e["teacher"]) == len(e["model"])
                                for e in examples)
    summary = (run_dir / "summary.md").read_text()
    assert "expl. cosine" in summary and f"{kd['cosine_mean']:.4f} ± {kd['cosine_std']:.4f}" in summary
    assert "via student (fp32 source)" in summary
    assert (run_dir / "report.html").is_file()


def test_run_report_renders_in_chromium(explained_run, tmp_path):
    run_dir, metrics = explained_run
    shot, dom = render(run_dir / "report.html", tmp_path)
    assert png_colours(shot) > 20, "the screenshot is blank"
    text = html.unescape(dom)
    for stage in ("teacher", "kd", "quant"):
        assert fmt(metrics[stage]["test"]["macro_f1"]) in text
    assert f"{metrics['kd']['explain']['cosine_mean']:.4f}" in text
    assert dom.count("data:image/png;base64,") >= 2  # F1 vs size, per-class change
    assert "Explanation examples" in text


def test_post_text_is_escaped(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "kd").mkdir(parents=True)
    metrics = {"run": {"data": "<b>x</b>"}, "teacher": {"test": {"macro_f1": 0.5}},
               "kd": {"test": {"macro_f1": 0.4}}}
    example = {"row": 1, "text": "<script>alert(1)</script> ok", "target": "A&B",
               "words": ["<script>alert(1)</script>", "ok"], "teacher": [1.0, 0.0],
               "model": [0.5, 0.5], "cosine": 0.7, "top5_overlap": 1.0}
    (run_dir / "kd" / "explanations.json").write_text(
        json.dumps({"stage": "kd", "explained_via": "kd", "examples": [example]}))
    page = run_report_html(run_dir, metrics).read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>x</b>" not in page and "A&amp;B" in page


def test_sweep_report_html_renders(tmp_path):
    from hate_compress.report.multirun import write_report
    from tests.test_report import GBERT, run_info, student_stage, write_cell

    root = tmp_path / "sweep"
    kd = student_stage(GBERT, 0.72, 9.0, 90.0, "/mr/0/kd/model")
    kd["explain"] = {"status": "ok", "cosine_mean": 0.6123, "cosine_std": 0.1, "n": 10,
                     "top5_overlap_mean": 0.5, "top5_overlap_std": 0.2, "explained_via": "kd"}
    kd["forgetting"] = {"split": "test", "f1_change": {"OTHER": -0.02, "OFFENSE": -0.11},
                        "flip_rate_lost": 0.0875, "flip_rate_gained": 0.2}
    write_cell(root, 0, {"run": run_info("gbert", "sahajbert", ["teacher", "kd"]),
                         "teacher": GBERT, "kd": kd, "targets": {}}, ["student=sahajbert"])
    result = write_report(root)
    page = result["html"]
    assert page == root / "report.html" and page.is_file()
    with open(root / "report.csv", newline="") as fh:
        cell = next(r for r in csv.DictReader(fh) if r["kind"] == "cell")
    assert float(cell["explain_cosine"]) == 0.6123 and float(cell["flip_rate_lost"]) == 0.0875
    shot, dom = render(page, tmp_path)
    assert png_colours(shot) > 20
    text = html.unescape(dom)
    assert "0.6123" in text and "0.0875" in text and fmt(0.72) in text
    assert dom.count("data:image/png;base64,") >= 3
