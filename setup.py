"""Build hook: the wheel ships the Hydra configs (`conf/`) inside the package as
`hate_compress/conf`, so a non-editable `pip install .` can start (issue 12, item 1).

Everything else lives in pyproject.toml. `conf/` stays at the checkout root, where developers
edit it: an editable install (`pip install -e .`, `make install`) copies nothing and reads the
checkout's `conf/`; `hate_compress.config_keys.CONF_DIR` picks whichever copy exists.
tests/test_wheel_install.py builds a real wheel and runs it from a fresh venv.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONF = Path(__file__).resolve().parent / "conf"


class BuildPyWithConf(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # the checkout's conf/ is used in place
        if not (CONF / "config.yaml").is_file():
            raise SystemExit(f"{CONF}/config.yaml not found: the wheel needs the configs")
        target = Path(self.build_lib) / "hate_compress" / "conf"
        shutil.rmtree(target, ignore_errors=True)  # no stale option from an earlier build
        shutil.copytree(CONF, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithConf})
