"""The package's layers import one way only, and saved weights go through one step's packer.

The import graph is read from the source (every `hate_compress.*` import, including lazy ones
inside functions), collapsed to subpackages as the repository's before-stop check does
(`hate_compress.compress.pruning` -> `hate_compress.compress`): a cycle between two
subpackages means neither can be understood, tested or replaced without the other.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

from hate_compress.artifacts import ModelCard, load_classifier, save_classifier
from hate_compress.compress.steps import RESTORERS, Restorer, record_compression
from hate_compress.models.classifier import HateClassifier

PACKAGE = Path(__file__).resolve().parents[1] / "hate_compress"


def layer(module: str) -> str:
    """`hate_compress.x.y` -> `hate_compress.x`; top-level modules stay themselves."""
    return module.rsplit(".", 1)[0] if module.count(".") > 1 else module


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
    for leaf in ("registry.py", "compress/steps.py", "models/outputs.py", "distributed.py"):
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
