"""A non-editable `pip install .` works: the wheel ships the configs (issue 12, item 1).

The wheel used to lack `conf/`, so an installed app failed at start-up; setup.py now copies it
into the wheel as `hate_compress/conf` and `config_keys.CONF_DIR` picks that copy when installed.
This builds a real wheel from a clean copy of the sources, installs it into a fresh venv and runs
it from a directory outside the checkout, as a user who ran `pip install .` would.

Kept fast and offline: the venv is created without pip and sees this interpreter's site-packages
through a `.pth` line (pip, torch, transformers ... are not downloaded again), `--no-index` makes
pip fail instead of downloading when a declared dependency is missing, and the build uses this
interpreter's setuptools (`--no-build-isolation`). A `.pth` path line adds the directory but does
not run the `.pth` files inside it, so the developer's editable install of hate_compress stays
invisible and the venv imports the wheel's copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

SOURCES = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", "hate_compress", "conf"]


def run(command: list, cwd: Path, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{command}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, a working directory outside the checkout, environment)."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "HATE_COMPRESS_DATA_DIR", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")}
    env.update(HATE_COMPRESS_CACHE_DIR=str(tmp / "cache"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    source = tmp / "source"  # a clean copy: no build/ or egg-info written into the checkout
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "-w", tmp / "dist", "."], cwd=source, env=env)
    wheel = next((tmp / "dist").glob("hate_compress-*.whl"))

    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp, env=env)
    python = venv / "bin" / "python"
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
               cwd=tmp, env=env).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "developer_site_packages.pth").write_text("\n".join(sorted(ours)) + "\n")
    run([python, "-m", "pip", "install", "--no-index", "--no-build-isolation", "--quiet", wheel],
        cwd=tmp, env=env)
    work = tmp / "work"
    work.mkdir()
    return python, work, env, wheel


def test_wheel_ships_every_config_file(installed):
    *_, wheel = installed
    in_wheel = {n.removeprefix("hate_compress/conf/") for n in zipfile.ZipFile(wheel).namelist()
                if n.startswith("hate_compress/conf/")}
    in_checkout = {p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.yaml")}
    assert in_checkout and in_checkout <= in_wheel, sorted(in_checkout - in_wheel)


def test_installed_package_reads_its_own_configs(installed):
    python, work, env, _ = installed
    out = run([python, "-c", "import hate_compress, hate_compress.config_keys as k; "
               "print(hate_compress.__file__); print(k.CONF_DIR)"], cwd=work, env=env).stdout.split()
    venv = python.parent.parent
    assert Path(out[0]).is_relative_to(venv), f"imported {out[0]}, not the installed wheel"
    assert Path(out[1]) == Path(out[0]).parent / "conf"


@pytest.mark.parametrize("module,key", [("hate_compress", "stages:"), ("hate_compress.sweep", "hparams_search:")])
def test_cfg_job_composes_from_the_wheel(installed, module, key):
    python, work, env, _ = installed
    out = run([python, "-m", module, "--cfg", "job"], cwd=work, env=env).stdout
    assert key in out and "teacher:" in out and "student:" in out, out[-2000:]


def test_console_script_and_a_tiny_offline_run(installed):
    python, work, env, _ = installed
    script = python.parent / "hate-compress"
    assert "data:" in run([script, "--cfg", "job", "data=synthetic"], cwd=work, env=env).stdout
    run([python, "-m", "hate_compress", "debug=tiny", "data=synthetic", "run_name=wheel_smoke"],
        cwd=work, env=env, timeout=600)
    metrics = json.loads((work / "outputs" / "runs" / "wheel_smoke" / "metrics.json").read_text())
    assert metrics["kd"]["test"]["macro_f1"] >= 0, metrics["kd"]
    assert (work / "outputs" / "runs" / "wheel_smoke" / "final_model").is_dir()
    assert not list(work.glob("**/conf")), "a run must not need a conf/ beside it"
