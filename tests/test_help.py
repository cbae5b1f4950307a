"""Every entry point answers `--help` with its usage and exit code 0 (issue 12).

A newcomer's first command is `--help`; `python -m hate_compress.predict --help` used to exit 2
with "unknown argument", and `make_sample --help` rewrote the sample data instead of explaining.
Each case runs the real interpreter, as a user would, and checks that nothing was written.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, cli_env

# bench scripts are the files a user runs (they have a `__main__` block); the rest are libraries
BENCH = sorted(p.name for p in (ROOT / "bench").glob("*.py")
               if 'if __name__ == "__main__"' in p.read_text(encoding="utf-8"))

# (command after the interpreter, a phrase its help must contain)
ENTRY_POINTS = [
    (["-m", "hate_compress"], "teacher"),
    (["-m", "hate_compress.predict"], "model=<dir>"),
    (["-m", "hate_compress.report"], "--f1-floor"),
    (["-m", "hate_compress.temperature"], "teacher"),
    (["-m", "hate_compress.sweep"], "hparams_search"),
    (["-m", "hate_compress.data.sample.make_sample"], "--out"),
    *[([f"bench/{name}"], "usage") for name in BENCH],
]


@pytest.mark.parametrize("command,phrase", ENTRY_POINTS, ids=[" ".join(c) for c, _ in ENTRY_POINTS])
def test_help_prints_usage_and_exits_0(command, phrase, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in (ROOT / "hate_compress" / "data" / "sample").glob("*.csv")}
    proc = subprocess.run([sys.executable, *command, "--help"], cwd=ROOT, env=cli_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert phrase in proc.stdout, proc.stdout[-2000:]
    assert "error" not in proc.stderr.lower(), proc.stderr[-2000:]
    after = {p: p.stat().st_mtime_ns for p in before}
    assert before == after, "--help must not regenerate the sample data"


def test_predict_help_in_process(capsys):
    from hate_compress.predict import main

    assert main(["model=x", "-h"]) == 0
    assert "input=<file or ->" in capsys.readouterr().out


def listed_groups(help_text: str) -> dict[str, list[str]]:
    """The `group: option, ...` lines between Hydra's two help headings."""
    block = help_text.split("== Configuration groups ==", 1)[1].split("== Config ==", 1)[0]
    lines = [line for line in block.splitlines() if ": " in line and not line.startswith("Compose")]
    return {g: o.split(", ") for g, o in (line.split(": ", 1) for line in lines)}


@pytest.mark.parametrize("module", ["hate_compress", "hate_compress.sweep"])
def test_help_lists_exactly_the_options_the_cli_accepts(module, tmp_path):
    """`--help` used to list the `_base` files options extend (`kd: _base, ...`), which the
    command line then rejected; it lists every choosable option and nothing else."""
    from hate_compress.cli import unknown_group_option

    proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, env=cli_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    groups = listed_groups(proc.stdout)
    on_disk = {p.name for p in (ROOT / "conf").iterdir() if p.is_dir() and p.name != "hydra"}
    assert set(groups) == on_disk, proc.stdout[:3000]
    for group, options in groups.items():
        choosable = sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml") if not p.stem.startswith("_"))
        assert options == choosable, (group, options)
        assert unknown_group_option([f"{group}={','.join(options)}"]) is None
    assert unknown_group_option(["kd=_base"]), "the CLI accepts _base: then --help should list it"
    assert f"python -m {module.removesuffix('.sweep')}" in proc.stdout.splitlines()[0]
    assert "export HATE_COMPRESS_DATA_DIR=" in proc.stdout
