"""The package's layers import one way only, and saved weights go through one step's packer.

The import graph is read from the source (every `hate_compress.*` import, including lazy ones
inside functions), collapsed to subpackages as the repository's before-stop check does
(`hate_compress.compress.pruning` -> `hate_compress.compress`): a cycle between two
subpackages means neither can be understood, tested or replaced without the other.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

from hate_compress.artifacts import ModelCard, load_classifier, save_classifier
from hate_compress.compress.steps import RESTORERS, Restorer, record_compression
from hate_compress.models.classifier import HateClassifier

PACKAGE = Path(__file__).resolve().parents[1] / "hate_compress"


def is_package(module: str) -> bool:
    return (PACKAGE.parent / module.replace(".", "/") / "__init__.py").is_file()


def layer(module: str) -> str:
    """A package stays itself, a module becomes its package (`hate_compress.x.y` ->
    `hate_compress.x`, `hate_compress.compress.pruning.masks` -> `hate_compress.compress.pruning`);
    top-level modules stay themselves."""
    if module.count(".") <= 1 or is_package(module):
        return module
    return module.rsplit(".", 1)[0]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts).removesuffix(".__init__")


def imported_modules(path: Path) -> set[str]:
    """Every `hate_compress.*` module `path` imports, at any depth of its syntax tree."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            if base == "hate_compress":  # `from hate_compress import stages` imports a module
                found.update(f"hate_compress.{a.name}" for a in node.names)
    return {m for m in found if m.startswith("hate_compress.")}


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        me = layer(module_name(path))
        graph.setdefault(me, set()).update(
            layer(m) for m in imported_modules(path) if layer(m) != me)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in stack:
            return stack[stack.index(node):] + [node]
        if node in done:
            return None
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            cycle = visit(nxt)
            if cycle:
                return cycle
        stack.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle:
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_lazy_and_relative_imports(tmp_path, monkeypatch):
    """The check itself can fail: a lazy import inside a function closes a cycle."""
    pkg = tmp_path / "hate_compress"
    (pkg / "a").mkdir(parents=True)
    (pkg / "b").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from .x import f\n")
    (pkg / "a" / "x.py").write_text("def f():\n    from hate_compress.b.y import g\n")
    (pkg / "b" / "__init__.py").write_text("")
    (pkg / "b" / "y.py").write_text("from hate_compress.a import f\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    assert find_cycle(import_graph()) == ["hate_compress.a", "hate_compress.b", "hate_compress.a"]


def test_leaf_modules_import_nothing_of_the_package_but_errors_and_registry():
    allowed = {"hate_compress.errors", "hate_compress.registry"}
    for leaf in ("registry.py", "compress/steps.py", "models/outputs.py"):
        assert imported_modules(PACKAGE / leaf) <= allowed, leaf


# --------------------------------------------------------------------------- pack / unpack


def _marked(marker: str):
    """A restorer whose packer adds `marker` and whose unpacker insists on it."""

    def pack(model):
        return {**{k: v.detach() for k, v in model.state_dict().items()}, marker: torch.ones(1)}

    def unpack(model, state):
        if marker not in state:
            raise AssertionError(f"unpacked by {marker} but packed by another step")
        state = dict(state)
        state.pop(marker)
        model.load_state_dict(state, strict=False)

    def rebuild(model, step):
        pass

    rebuild.__qualname__ = f"rebuild_{marker}"
    return Restorer(rebuild=rebuild, pack=pack, unpack=unpack)


@pytest.fixture
def two_packing_steps():
    kinds = ("test_pack_first", "test_pack_last")
    for kind in kinds:
        RESTORERS.add(kind, _marked(kind))
    yield kinds
    for kind in kinds:
        RESTORERS.pop(kind)


def test_save_and_load_use_the_same_steps_packer(tmp_path, two_packing_steps):
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=32),
                        add_pooling_layer=False)
    model = HateClassifier(encoder, num_labels=2)
    for kind in two_packing_steps:
        record_compression(model, {"kind": kind})
    save_classifier(model, tmp_path / "m", None, ModelCard(task="binary", label_names=["a", "b"]))
    loaded, _, meta = load_classifier(tmp_path / "m", with_tokenizer=False)
    assert [s["kind"] for s in meta["compression"]] == list(two_packing_steps)
    ids = torch.randint(0, 50, (2, 5))
    mask = torch.ones_like(ids)
    model.eval()
    assert torch.equal(loaded(ids, mask).logits, model(ids, mask).logits)


def test_a_restorer_packs_and_unpacks_or_neither():
    with pytest.raises(ValueError, match="both pack and unpack"):
        Restorer(rebuild=lambda m, s: None, pack=lambda m: {})


# --------------------------------------------------------------------------- Optuna's private API

SHIM = PACKAGE / "sweep" / "optuna_shim.py"
OPTUNA_PRIVATE_NAME = re.compile(r"\boptuna(_integration)?(\.\w+)*\._\w")


def optuna_private_uses(path: Path) -> list[str]:
    """Where `path` relies on Optuna internals: an import from a private Optuna module, a string
    naming one (a logger), or — in a module that imports Optuna — a private attribute of
    anything but `self`/`cls` (`study._storage`, `trial._trial_id`)."""
    tree = ast.parse(path.read_text())
    uses, imports_optuna = [], False
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in ("optuna", "optuna_integration"):
                imports_optuna = True
                if any(part.startswith("_") for part in name.split(".")):
                    uses.append(f"{path.name}:{node.lineno}: import {name}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and OPTUNA_PRIVATE_NAME.search(node.value):
            uses.append(f"{path.name}:{node.lineno}: {node.value!r}")
    if imports_optuna:
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                uses.append(f"{path.name}:{node.lineno}: .{node.attr}")
    return uses


def test_only_the_shim_touches_optunas_private_api():
    """An Optuna upgrade that moves an internal breaks one module, whose docstring says why each
    internal is needed; everything else uses the public API."""
    offenders = [use for path in sorted(PACKAGE.rglob("*.py")) if path != SHIM
                 for use in optuna_private_uses(path)]
    assert offenders == [], "Optuna internals outside sweep/optuna_shim.py: " + "; ".join(offenders)


def test_the_private_api_check_can_fail():
    """The check sees what the shim does, so a copy of it anywhere else would fail the test."""
    found = " ".join(optuna_private_uses(SHIM))
    for internal in ("optuna.storages._heartbeat", "._storage", "._trial_id", "._rng",
                     "optuna.study._optimize"):
        assert internal in found, internal


# --------------------------------------------------------------------------- registration on import

REGISTERED = """
import sys
import {module}
from hate_compress.compress.steps import RESTORERS
from hate_compress.compress.pruning import PRUNERS
from hate_compress.compress.quantization import QUANTIZERS
print(sorted(PRUNERS.names()), sorted(QUANTIZERS.names()), sorted(RESTORERS.names()))
"""


@pytest.mark.parametrize("module", ["hate_compress.compress.pruning.methods",
                                    "hate_compress.compress.quantization.base",
                                    "hate_compress.artifacts"])
def test_importing_any_compression_module_registers_every_method(module):
    """Whichever module a user (or a plugin) imports first, its package `__init__` runs first
    and registers every built-in method and restorer: a pruner is never missing because the
    module that defines it happened not to be imported."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", REGISTERED.format(module=module)],
                         capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    pruners, quantizers, restorers = out.stdout.strip().split("] [")
    assert pruners == "['gradual', 'magnitude', 'structured', 'wanda'"
    assert quantizers == ("'bf16', 'dynamic_int8', 'fp16', 'nf4', 'none', 'onnx', 'onnx_int8', "
                          "'onnx_static_int8', 'static_int8'")
    assert restorers == ("'quant_bf16', 'quant_dynamic_int8', 'quant_fp16', 'quant_nf4', "
                         "'quant_static_int8', 'structured_prune']")


def test_the_compression_step_leaf_imports_no_method():
    """`compress.steps` is imported by every layer that saves or loads a model; importing it must
    not drag in the methods (and Lightning with them) — `compress/__init__` imports nothing."""
    import subprocess

    code = ("import sys, hate_compress.compress.steps; "
            "print([m for m in sys.modules if m.startswith(('hate_compress.compress.p', "
            "'hate_compress.compress.q', 'lightning'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]"
