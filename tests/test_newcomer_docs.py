"""The README and docs as a newcomer runs them (issue 12, item 7).

The first command failed outside `make` with "paths.data_dir is not set"; the notebook docs said
`jupyter lab`, which `make install` does not install; `trainer=fast` smoke runs stopped at the
teacher F1 gate with advice to train longer.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

from hate_compress.stages.teacher import smoke_hint
from tests.conftest import ROOT, compose_cfg

README = (ROOT / "README.md").read_text()


def first_bash_block(text: str) -> list[str]:
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


def test_first_command_sets_the_data_directory_first():
    lines = first_bash_block(README)
    run = next(i for i, line in enumerate(lines) if line.startswith("python -m hate_compress"))
    exports = [i for i, line in enumerate(lines) if line.startswith("export HATE_COMPRESS_DATA_DIR=")]
    assert exports and exports[0] < run, lines
    # the variable the README exports is the one the config reads
    assert "oc.env:HATE_COMPRESS_DATA_DIR" in (ROOT / "conf" / "paths" / "default.yaml").read_text()
    assert "HATE_COMPRESS_DATA_DIR" in (ROOT / "Makefile").read_text()


def test_readme_offers_an_offline_smoke_run_that_composes(tmp_path):
    assert "python -m hate_compress debug=tiny data=synthetic" in README
    cfg = compose_cfg(tmp_path, ["debug=tiny", "data=synthetic"], tiny=False)
    assert cfg.teacher.min_f1 == 0.0 and cfg.data.name == "synthetic"


def test_jupyter_in_the_docs_comes_with_the_extra_that_installs_it():
    pyproject = (ROOT / "pyproject.toml").read_text()  # (tomllib is 3.11+; we support 3.10)
    extras = dict(re.findall(r"^(\w+) = \[(.*?)\]", pyproject.split("[project.optional-dependencies]")[1]
                             .split("\n[")[0], re.M | re.S))
    assert '"jupyterlab' in extras["notebook"]
    assert "jupyterlab" not in extras["dev"], "make install stays lean"
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        if re.search(r"\bjupyter (lab|nbconvert|notebook)\b", text):
            assert ".[notebook]" in text, f"{path.name} runs jupyter without saying how to install it"


def test_smoke_trainer_gate_error_says_how_to_turn_the_gate_off(tmp_path):
    fast = compose_cfg(tmp_path, ["trainer=fast"], tiny=False)
    assert fast.teacher.min_f1 > 0  # the gate stays on: a smoke run must say how to skip it
    hint = smoke_hint(SimpleNamespace(cfg=fast))
    assert "debug=tiny" in hint and "teacher.min_f1=0" in hint
    assert smoke_hint(SimpleNamespace(cfg=compose_cfg(tmp_path, [], tiny=False))) == ""
