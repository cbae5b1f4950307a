"""Which config keys exist: a typo (`kd.alpa=0.5`, `+kd.alpa=0.5`) must fail, not be ignored.

Without `+`, Hydra rejects an unknown key with a multi-line block; with `+` it appends the key
and the run silently ignores it. Both are checked against the keys our config groups define,
derived from the yaml files themselves (no hand-written list of keys to keep in sync): a group's
known keys are the union over its options, each composed with its same-group defaults
(`defaults: [_base, _self_]`). A key is known when any option of the group defines it, so a
key that only one option uses (`quant.calibration_batches`) is accepted with the others too.

Free-form subtrees hold keys that belong to someone else and are checked there, or nowhere:

* ``teacher/student/assistant.backbone.scratch``: Hugging Face config kwargs (`AutoConfig.for_model`);
* ``teacher/student/assistant.train.optimizer``: the optimizer class's kwargs (tried by `build_optimizer`);
* ``kd.terms``: term names are checked against the registry, each term's params by the term;
* ``prune.options`` / ``quant.options``: checked against the chosen method's options;
* ``data.binary_from`` / ``data.multilabel_from``: checked by `DataSchema`;
* the groups ``trainer`` (checked against `pl.Trainer`'s arguments; the ``hardware`` group is
  merged into it by `# @package trainer`, its ``strategy`` a Lightning strategy name or its
  constructor kwargs), ``logger`` (the logger
  class's kwargs), ``hparams_search`` (checked by the sweep) and ``hydra`` (Hydra's own).

A subtree whose default is null, a scalar or ``{}`` in every option is open too: there is no
default to compare with.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from omegaconf import OmegaConf


def conf_dir() -> Path:
    """The Hydra config directory: `hate_compress/conf` in an installed wheel (setup.py copies
    it there), else the checkout's `conf/` (editable installs, PYTHONPATH=checkout), which is
    the copy developers edit. The package copy is never created in a checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "conf"
    return packaged if (packaged / "config.yaml").is_file() else here.parent / "conf"


CONF_DIR = conf_dir()

FREE_FORM = frozenset({
    "teacher.backbone.scratch", "student.backbone.scratch", "teacher.train.optimizer",
    "student.train.optimizer", "assistant.backbone.scratch", "assistant.train.optimizer", "teacher.member_overrides", "kd.terms", "prune.options",
    "quant.options", "data.binary_from", "data.multilabel_from",
    "trainer", "logger", "hparams_search", "hydra",
})


def _package(path: Path) -> str | None:
    """The node a `# @package X` header makes the file write to (`_global_`: the top level);
    None without a header (the group's own node)."""
    for line in path.read_text(encoding="utf-8").split("\n", 3)[:3]:
        words = line.replace("#", " ").split()
        if len(words) == 2 and words[0] == "@package":
            return words[1]
    return None


@lru_cache(maxsize=1)
def moved_groups() -> dict[str, str]:
    """Groups whose options write into another node: `{"hardware": "trainer"}`."""
    moved = {}
    for folder in sorted(p for p in CONF_DIR.iterdir() if p.is_dir()):
        packages = {_package(p) for p in folder.glob("*.yaml")} - {None, "_global_", folder.name}
        if len(packages) == 1:
            moved[folder.name] = packages.pop()
    return moved


def _load(group: str, option: str, seen: tuple[str, ...] = ()) -> dict:
    """One option of `group` composed with its same-group defaults, as Hydra would."""
    path = CONF_DIR / group / f"{option}.yaml"
    if option in seen or not path.exists():
        return {}
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    defaults = node.pop("defaults", None) or []
    if "_self_" not in defaults:
        defaults = [*defaults, "_self_"]
    out: dict = {}
    for entry in defaults:  # dict entries (`override /x: y`) select other groups: not ours
        if entry == "_self_":
            out = _union(out, node)
        elif isinstance(entry, str) and entry.startswith("/") and entry.endswith("@_here_"):
            # another group's option merged into this node (`/student/_base@_here_`)
            other, _, name = entry[1:].removesuffix("@_here_").rpartition("/")
            out = _union(out, _load(other, name, (*seen, f"{group}/{option}")))
        elif isinstance(entry, str):
            out = _union(out, _load(group, entry, (*seen, option)))
    return out


def _union(a, b):
    """Keys of both trees; a node is a mapping when either side has one there."""
    if not isinstance(a, Mapping):
        return dict(b) if isinstance(b, Mapping) else b
    if not isinstance(b, Mapping):
        return a
    out = dict(a)
    for key, value in b.items():
        out[key] = _union(out[key], value) if key in out else value
    return out


@lru_cache(maxsize=1)
def known_tree() -> dict:
    """Top-level keys of conf/config.yaml and of `_global_` files, plus each group's union tree."""
    top = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml"), resolve=False)
    top.pop("defaults", None)
    tree: dict = {key: None for key in top} | {k: v for k, v in top.items() if isinstance(v, dict)}
    for folder in sorted(p for p in CONF_DIR.iterdir() if p.is_dir()):
        group, merged = folder.name, None
        node = moved_groups().get(group, group)
        for path in sorted(folder.glob("*.yaml")):
            if _package(path) == "_global_":
                extra = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
                for key in set(extra) - {"defaults"}:
                    tree.setdefault(key, None)
            elif not path.stem.startswith("_"):
                merged = _union(merged, _load(group, path.stem))
        tree[node] = _union(tree.get(node), merged) if merged is not None else tree.get(node)
    return tree


def _suggest(key: str, siblings: list[str], parent: str) -> str:
    """The closest known key: a sibling first, else any known leaf (`teacher.lr` -> `teacher.train.lr`)."""
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, siblings, n=1, cutoff=0.6)
    if close:
        return f"{parent}.{close[0]}" if parent else close[0]
    close = difflib.get_close_matches(key, list(_leaves(known_tree())), n=1, cutoff=0.75)
    return close[0] if close else ""


def _leaves(tree: Mapping, prefix: str = ""):
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and path not in FREE_FORM:
            yield from _leaves(value, f"{path}.")
        else:
            yield path


def unknown_key_message(key: str) -> str | None:
    """'unknown key kd.alpa, did you mean kd.alpha?' when dotted `key` is not a known key."""
    node, parts = known_tree(), key.split(".")
    if len(parts) > 1 and parts[0] in moved_groups() and parts[0] not in node:
        moved = ".".join([moved_groups()[parts[0]], *parts[1:]])
        return f"unknown key {key}, did you mean {moved}? (the {parts[0]} group writes there)"
    for depth, part in enumerate(parts):
        parent = ".".join(parts[:depth])
        if parent in FREE_FORM or not isinstance(node, Mapping) or not node:
            return None  # open subtree: nothing to compare with
        if part not in node:
            hint = _suggest(key, [str(k) for k in node], parent)
            if hint:
                return f"unknown key {key}, did you mean {hint}?"
            where = f"{parent} keys" if parent else "top-level keys"
            return f"unknown key {key}; {where}: {', '.join(sorted(map(str, node)))}"
        node = node[part]
    return None


def unknown_keys(cfg: Mapping, prefix: str = "") -> list[str]:
    """Dotted keys of a composed config that no group default defines (e.g. `+kd.alpa=0.5`)."""
    found = []
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if unknown_key_message(path):
            found.append(path)
        elif isinstance(value, Mapping) and path not in FREE_FORM:
            found.extend(unknown_keys(value, f"{path}."))
    return found
