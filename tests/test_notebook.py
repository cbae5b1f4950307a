"""notebooks/analysis.ipynb runs top to bottom on a real report.csv and draws its figures.

The kernel is pinned to this interpreter through a throwaway kernelspec: the stock `python3`
kernelspec launches whatever `python` is first on PATH, which on CI (or with an unactivated
venv) is not the one with hate_compress installed.
"""

from __future__ import annotations

import json
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from hate_compress.report.multirun import write_report
from tests.conftest import ROOT
from tests.test_report import sweep  # noqa: F401  (the synthetic multirun fixture)

NOTEBOOK = ROOT / "notebooks" / "analysis.ipynb"


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "HATE_COMPRESS_REPORT_CSV" in params[0].source


@pytest.fixture
def kernel(tmp_path, monkeypatch) -> str:
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "hate_compress test kernel", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))  # searched before user/system
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # inline backend -> image outputs
    return "python3"


def test_notebook_runs_on_a_sweep_report(sweep, kernel, tmp_path, monkeypatch):  # noqa: F811
    csv_path = write_report(sweep, plots=False)["csv"]
    monkeypatch.setenv("HATE_COMPRESS_REPORT_CSV", str(csv_path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, kernel_name=kernel, timeout=180,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the Pareto pair and the heatmap pair
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "4 cells, 2 teachers" in text
    assert "Fastest with dev macro F1 >= 0.6: gbert→mdistilbert (cell 1)" in text
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "training diverged" in html  # the failed cell is listed


def test_notebook_explains_a_missing_csv(kernel, tmp_path, monkeypatch):
    monkeypatch.setenv("HATE_COMPRESS_REPORT_CSV", str(tmp_path / "nope.csv"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, kernel_name=kernel, timeout=120,
                            resources={"metadata": {"path": str(tmp_path)}})
    with pytest.raises(Exception, match="set REPORT_CSV"):
        client.execute()
