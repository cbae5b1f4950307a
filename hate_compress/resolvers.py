"""OmegaConf resolvers used by the configs.

`${data_file:rel}` joins `paths.data_dir` with a dataset's relative path and, when no data
directory is configured, stops with a one-line hint instead of reading "None/germeval/...".
`${help_groups:}` and `${help_command:}` fill `--help` (conf/hydra/default.yaml).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from hate_compress.errors import ConfigError


def data_file(relative: str, *, _root_) -> str:
    base = _root_.paths.get("data_dir")
    if base in (None, "", "None"):
        raise ConfigError(
            f"paths.data_dir is not set, so {relative} cannot be found: export "
            "HATE_COMPRESS_DATA_DIR=/path/to/data (or pass paths.data_dir=...), or use data=synthetic"
        )
    return str(Path(base).expanduser() / relative)


def sample_file(name: str) -> str:
    from hate_compress.data import sample_dir

    return str(Path(sample_dir()) / name)


def help_groups() -> str:
    from hate_compress.cli import groups_help

    return groups_help()


def help_command() -> str:
    from hate_compress.cli import help_command as command

    return command()


def register() -> None:
    for name, fn in (("data_file", data_file), ("sample_file", sample_file),
                     ("help_groups", help_groups), ("help_command", help_command)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register()
