"""Pruning: sparsity accounting, schedules, Wanda vs magnitude, structured surgery, reloads."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn
from torch.nn import functional as F
from transformers import BertConfig, BertModel

from hate_compress.artifacts import ModelCard, load_classifier, save_classifier
from hate_compress.compress import pruning as P
from hate_compress.compress.pruning.structured import head_importance, transformer_blocks
from hate_compress.errors import ConfigError
from hate_compress.models.classifier import HateClassifier

VOCAB, SEQ = 200, 12


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matrices: thread hand-offs cost more than they save on a shared 2-core box."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
CARD = ModelCard(task="binary", label_names=["a", "b"])


def tiny_model(seed: int = 0) -> HateClassifier:
    torch.manual_seed(seed)
    enc = BertModel(
        BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=128),
        add_pooling_layer=False,
    )
    return HateClassifier(enc, num_labels=2)


def make_batches(n: int, batch_size: int = 4, seed: int = 1, pad: bool = True) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        ids = torch.randint(5, VOCAB, (batch_size, SEQ), generator=g)
        mask = torch.ones(batch_size, SEQ, dtype=torch.long)
        if pad:
            mask[:, SEQ - 3:] = 0  # padded tail
            ids[:, SEQ - 3:] = 0
        inputs = {"input_ids": ids, "attention_mask": mask}
        out.append({"idx": torch.arange(batch_size) + i * batch_size,
                    "labels": torch.randint(0, 2, (batch_size,), generator=g),
                    "inputs": {"student": inputs, "teacher": inputs}})
    return out


def logits(model, batch):
    model.eval()
    x = batch["inputs"]["student"]
    with torch.no_grad():
        return model(x["input_ids"], x["attention_mask"]).logits


def weights_of(model, names):
    mods = dict(model.named_modules())
    return {n: P.effective_weight(mods[n]).clone() for n in names}


EMBED_AND_HEAD = ["encoder.embeddings.word_embeddings", "encoder.embeddings.position_embeddings",
                  "head.0", "head.3"]


# --------------------------------------------------------------------------- targets / magnitude


def test_prunable_linears_excludes_embeddings_and_head_unless_asked():
    model = tiny_model()
    names = [n for n, _ in P.prunable_linears(model)]
    assert len(names) == 12 and all(n.startswith("encoder.encoder.layer.") for n in names)
    all_names = [n for n, _ in P.prunable_linears(model, include_embeddings=True,
                                                    include_head=True)]
    assert set(EMBED_AND_HEAD) <= set(all_names)
    assert "encoder.embeddings.token_type_embeddings" in all_names
    assert set(names) < set(all_names)


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_reaches_sparsity_and_leaves_embeddings_and_head(scope):
    model = tiny_model()
    before = weights_of(model, EMBED_AND_HEAD)
    report = P.prune_model(model, "magnitude", 0.6, scope=scope)
    assert report["prunable_sparsity"] == pytest.approx(0.6, abs=0.01)
    if scope == "layer":
        assert all(s == pytest.approx(0.6, abs=0.01) for s in report["per_layer"].values())
    else:  # one threshold: layers with larger weights keep more
        assert max(report["per_layer"].values()) - min(report["per_layer"].values()) > 0.02
    after = weights_of(model, EMBED_AND_HEAD)
    for name in EMBED_AND_HEAD:
        assert torch.equal(before[name], after[name]), name
    assert 0 < report["sparsity"] < report["prunable_sparsity"]


def test_magnitude_global_prunes_the_smallest_weights():
    model = tiny_model()
    originals = weights_of(model, [n for n, _ in P.prunable_linears(model)])
    P.prune_model(model, "magnitude", 0.5)
    mods = dict(model.named_modules())
    kept_min = min(originals[n][mods[n].weight_mask.bool()].abs().min() for n in originals)
    pruned_max = max(originals[n][~mods[n].weight_mask.bool()].abs().max() for n in originals)
    assert pruned_max <= kept_min


def test_magnitude_includes_embeddings_and_head_when_asked():
    model = tiny_model()
    report = P.prune_model(model, "magnitude", 0.5, scope="layer", include_embeddings=True,
                           include_head=True)
    for name in EMBED_AND_HEAD:
        assert report["per_layer"][name] == pytest.approx(0.5, abs=0.01), name
    assert report["prunable_sparsity"] == pytest.approx(0.5, abs=0.01)


def test_make_permanent_removes_reparametrisation_and_keeps_zeros(tmp_path):
    model = tiny_model()
    P.prune_model(model, "magnitude", 0.7)
    masks = {n: m.weight_mask.clone() for n, m in P.prunable_linears(model)}
    ref = logits(model, make_batches(1)[0])
    assert P.make_permanent(model) == 12
    keys = model.state_dict().keys()
    assert not any(k.endswith(("weight_orig", "weight_mask")) for k in keys)
    for name, module in P.prunable_linears(model):
        assert isinstance(module.weight, nn.Parameter)
        assert torch.all(module.weight[masks[name] == 0] == 0)
    assert P.sparsity_report(model)["prunable_sparsity"] == pytest.approx(0.7, abs=0.01)
    batch = make_batches(1)[0]
    torch.testing.assert_close(logits(model, batch), ref)
    save_classifier(model, tmp_path / "m", None, CARD)
    loaded, _, _ = load_classifier(tmp_path / "m", with_tokenizer=False)
    assert torch.equal(logits(loaded, batch), logits(model, batch))
    assert P.sparsity_report(loaded)["prunable_sparsity"] == pytest.approx(0.7, abs=0.01)


# --------------------------------------------------------------------------- gradual schedule


def test_cubic_schedule_by_hand():
    kw = dict(total=100, initial=0.0, final=0.8, begin=0, end_fraction=0.5)
    assert P.cubic_sparsity(0, **kw) == 0.0
    assert P.cubic_sparsity(25, **kw) == pytest.approx(0.8 - 0.8 * 0.5**3)  # 0.7
    assert P.cubic_sparsity(10, **kw) == pytest.approx(0.8 - 0.8 * 0.8**3)  # 0.3904
    assert P.cubic_sparsity(50, **kw) == pytest.approx(0.8)
    assert P.cubic_sparsity(99, **kw) == pytest.approx(0.8)  # clamped after the end
    # begin offset and non-zero initial sparsity
    kw = dict(total=100, initial=0.2, final=0.6, begin=10, end_fraction=0.5)
    assert P.cubic_sparsity(5, **kw) == pytest.approx(0.2)
    assert P.cubic_sparsity(30, **kw) == pytest.approx(0.6 - 0.4 * 0.5**3)
    with pytest.raises(ConfigError, match="prune.begin_step"):
        P.cubic_sparsity(0, 100, 0.0, 0.5, begin=60, end_fraction=0.5)


class TinyModule(L.LightningModule):
    input_key = "student"

    def __init__(self, model):
        super().__init__()
        self.model = model

    def training_step(self, batch, batch_idx):
        x = batch["inputs"][self.input_key]
        out = self.model(x["input_ids"], x["attention_mask"])
        return F.cross_entropy(out.logits, batch["labels"])

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


class SparsitySpy(Callback):
    def __init__(self):
        self.seen: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen.append(P.sparsity_report(pl_module.model)["prunable_sparsity"])


def fit(callbacks, model, steps=8, batches=None, ckpt_path=None):
    loader = torch.utils.data.DataLoader(batches or make_batches(4), batch_size=None)
    checkpointing = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False,
                        enable_checkpointing=checkpointing, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=callbacks)
    trainer.fit(TinyModule(model), train_dataloaders=loader, ckpt_path=ckpt_path)
    return trainer


def test_gradual_callback_follows_cubic_schedule_to_final_sparsity():
    pruning = P.PruningCallback("gradual", 0.6, end_fraction=0.5, every=1)
    spy = SparsitySpy()
    model = tiny_model()
    fit([pruning, spy], model, steps=8)
    expected = [P.cubic_sparsity(t, 8, 0.0, 0.6, 0, 0.5) for t in range(8)]
    assert len(spy.seen) == 8
    for got, want in zip(spy.seen, expected):
        assert got == pytest.approx(want, abs=0.01)
    assert 0 < spy.seen[1] < spy.seen[2] < spy.seen[3] < 0.6  # a ramp, not a jump
    assert all(s == pytest.approx(0.6, abs=0.01) for s in spy.seen[4:])
    # on_fit_end: masks baked in, target reached and reported
    assert not any(k.endswith("_orig") for k, _ in model.named_parameters())
    assert pruning.report["prunable_sparsity"] == pytest.approx(0.6, abs=0.01)


def test_gradual_every_and_end_fraction_one_still_reach_target():
    """Δt=3 does not land on the end step, and end_fraction=1 ends after the last batch."""
    pruning = P.PruningCallback("gradual", 0.5, end_fraction=1.0, every=3)
    spy = SparsitySpy()
    fit([pruning, spy], tiny_model(), steps=8)
    assert spy.seen[0] == 0.0
    assert spy.seen[1] == spy.seen[2] == 0.0  # only updated on the Δt grid
    assert spy.seen[3] == pytest.approx(P.cubic_sparsity(3, 8, 0.0, 0.5, 0, 7 / 8), abs=0.01)
    assert spy.seen[-1] == pytest.approx(0.5, abs=0.01)


def test_checkpoints_hold_plain_weights_and_resume_keeps_the_zeros(tmp_path):
    def callbacks():
        return [P.PruningCallback("gradual", 0.6, end_fraction=0.25, every=1),
                ModelCheckpoint(dirpath=tmp_path, filename="{step}", every_n_train_steps=4,
                                save_top_k=-1)]

    fit(callbacks(), tiny_model(), steps=8)
    ckpt = tmp_path / "step=4.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert not any(k.endswith(("_orig", "_mask")) for k in state)
    plain = TinyModule(tiny_model(seed=3))
    plain.load_state_dict(state)  # strict: a model that never heard of pruning
    assert P.sparsity_report(plain.model)["prunable_sparsity"] == pytest.approx(0.6, abs=0.01)
    # resume an "interrupted" run from step 4: the schedule is over, only the masks keep zeros
    spy = SparsitySpy()
    fit(callbacks() + [spy], tiny_model(seed=3), steps=8, ckpt_path=str(ckpt))
    assert len(spy.seen) == 4
    assert all(s == pytest.approx(0.6, abs=0.01) for s in spy.seen)


# --------------------------------------------------------------------------- wanda


def skewed_model() -> HateClassifier:
    """Embedding LayerNorm gain of 20 on 8 features: layer-0 inputs have uneven column norms."""
    model = tiny_model()
    with torch.no_grad():
        model.encoder.embeddings.LayerNorm.weight[:8] = 20.0
    return model


QUERY0 = "encoder.encoder.layer.0.attention.self.query"


def test_wanda_input_norms_are_l2_over_real_tokens():
    model = skewed_model()
    batches = make_batches(2)
    pruner = P.get_pruner("wanda")
    pruner.run(model, 0.5, batches=batches, input_key="student")
    model.eval()
    xs = []
    with torch.no_grad():
        for b in batches:  # layer 0 is calibrated before anything is pruned
            x = b["inputs"]["student"]
            h = model.encoder(input_ids=x["input_ids"], attention_mask=x["attention_mask"],
                              output_hidden_states=True).hidden_states[0]
            xs.append(h[x["attention_mask"].bool()])
    expected = torch.cat(xs).norm(dim=0)
    torch.testing.assert_close(pruner.input_norms[QUERY0], expected, rtol=1e-4, atol=1e-4)


def test_wanda_differs_from_magnitude_with_skewed_activations():
    base = skewed_model()
    batches = make_batches(3)
    wanda, magnitude = copy.deepcopy(base), copy.deepcopy(base)
    P.prune_model(wanda, "wanda", 0.5, batches, scope="layer")
    P.prune_model(magnitude, "magnitude", 0.5, scope="layer")
    w_mask = dict(wanda.named_modules())[QUERY0].weight_mask.bool()
    m_mask = dict(magnitude.named_modules())[QUERY0].weight_mask.bool()
    assert w_mask.float().mean() == pytest.approx(m_mask.float().mean())  # same budget
    assert (w_mask != m_mask).float().mean() > 0.05
    # Wanda protects the weights that multiply the large input features
    assert w_mask[:, :8].float().mean() > m_mask[:, :8].float().mean() + 0.2


def test_wanda_row_scope_prunes_equal_count_per_row():
    model = skewed_model()
    report = P.prune_model(model, "wanda", 0.5, make_batches(2), num_calibration_batches=1)
    assert report["prunable_sparsity"] == pytest.approx(0.5, abs=0.01)
    for name, module in P.prunable_linears(model):
        zeros_per_row = (module.weight_mask == 0).sum(dim=1)
        assert torch.all(zeros_per_row == round(0.5 * module.in_features)), name


def test_wanda_callback_calibrates_on_the_train_dataloader():
    """No datamodule: the train dataloader only exists at on_train_start, before any step."""
    pruning = P.PruningCallback("wanda", 0.5, calibration_batches=2)
    spy = SparsitySpy()
    fit([pruning, spy], skewed_model(), steps=2)
    assert spy.seen[0] == pytest.approx(0.5, abs=0.01)
    assert pruning.report["prunable_sparsity"] == pytest.approx(0.5, abs=0.01)


# --------------------------------------------------------------------------- structured


def test_structured_pruning_shrinks_params_file_and_removes_the_weakest_units(tmp_path):
    model = tiny_model()
    reference = copy.deepcopy(model)
    save_classifier(reference, tmp_path / "dense", None, CARD)
    scores = [head_importance(b) for b in transformer_blocks(model)]
    batch = make_batches(1)[0]
    report = P.prune_model(model, "structured", 0.5)
    assert report["total_params"] < P.sparsity_report(reference)["total_params"] * 0.8
    step = model.compression_log[-1]
    assert step["kind"] == "structured_prune"
    for layer, s in zip(step["layers"], scores):
        assert layer["heads"] == sorted(torch.topk(s, 2).indices.tolist())
        assert layer["ffn"] == 64
    # same function as the dense model with the removed units' outputs zeroed
    with torch.no_grad():
        for b_ref, b_new, layer in zip(transformer_blocks(reference), transformer_blocks(model),
                                       step["layers"]):
            d = b_ref.head_size
            for h in set(range(4)) - set(layer["heads"]):
                b_ref.get("o").weight[:, h * d:(h + 1) * d] = 0
            old_rows, new_rows = b_ref.get("ffn_in").weight, b_new.get("ffn_in").weight
            kept = {int((old_rows == r).all(dim=1).nonzero()) for r in new_rows}
            for i in set(range(128)) - kept:
                b_ref.get("ffn_out").weight[:, i] = 0
    torch.testing.assert_close(logits(model, batch), logits(reference, batch))
    save_classifier(model, tmp_path / "pruned", None, CARD)
    dense_size = (tmp_path / "dense" / "model.safetensors").stat().st_size
    pruned_size = (tmp_path / "pruned" / "model.safetensors").stat().st_size
    assert pruned_size < dense_size * 0.8


def test_structured_model_runs_with_sdpa_and_eager_and_reloads(tmp_path):
    model = tiny_model()
    P.prune_model(model, "structured", 0.3, head_sparsity=0.5, ffn_sparsity=0.25)
    batch = make_batches(1)[0]
    x = batch["inputs"]["student"]
    model.eval()
    model.encoder.set_attn_implementation("sdpa")
    sdpa = logits(model, batch)
    model.encoder.set_attn_implementation("eager")
    with torch.no_grad():
        out = model(x["input_ids"], x["attention_mask"], output_attentions=True)
    torch.testing.assert_close(out.logits, sdpa, rtol=1e-4, atol=1e-5)
    assert out.attentions[0].shape[1] == 2  # two heads left in layer 0
    save_classifier(model, tmp_path / "m", None, CARD)
    loaded, _, meta = load_classifier(tmp_path / "m", with_tokenizer=False)
    assert meta["compression"][0]["kind"] == "structured_prune"
    assert torch.equal(logits(loaded, batch), sdpa)  # a fresh model loads with sdpa
    assert P.sparsity_report(loaded)["total_params"] == P.sparsity_report(model)["total_params"]
    assert transformer_blocks(loaded)[1].ffn_size == 96


def test_structured_global_scope_keeps_a_head_per_layer():
    model = tiny_model()
    with torch.no_grad():  # layer 1 much weaker: a global ranking takes its heads first
        transformer_blocks(model)[1].get("o").weight.mul_(0.01)
    P.prune_model(model, "structured", 0.0, scope="global", head_sparsity=0.5)
    blocks = transformer_blocks(model)
    # 4 of 8 heads go: layer 1 gives up all but one, layer 0 pays the rest (layer scope: [2, 2])
    assert [b.num_heads for b in blocks] == [3, 1]
    assert blocks[0].ffn_size == 128  # ffn_sparsity=0 leaves the FFN alone


def test_structured_callback_prunes_before_the_optimizer_is_built():
    pruning = P.PruningCallback("structured", 0.5)
    model = tiny_model()
    before = P.sparsity_report(model)["total_params"]
    trainer = fit([pruning], model, steps=2)
    assert P.sparsity_report(model)["total_params"] < before
    optimised = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert {id(p) for p in model.parameters()} <= optimised


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda: P.prune_model(tiny_model(), "magnitude", 1.2), "prune.sparsity"),
        (lambda: P.prune_model(tiny_model(), "magnitude", -0.1), "prune.sparsity"),
        (lambda: P.PruningCallback("magnitude", 1.0), "prune.sparsity"),
        (lambda: P.prune_model(tiny_model(), "nope", 0.5), "prune.method"),
        (lambda: P.prune_model(tiny_model(), "magnitude", 0.5, scope="row"), "prune.scope"),
        (lambda: P.prune_model(tiny_model(), "wanda", 0.5, scope="global"), "prune.scope"),
        (lambda: P.prune_model(tiny_model(), "wanda", 0.5), "wanda"),
        (lambda: P.prune_model(tiny_model(), "magnitude", 0.5, end_fraction=0.5),
         "prune.end_fraction"),
        (lambda: P.prune_model(tiny_model(), "structured", 0.5, head_sparsity=1.0),
         "prune.head_sparsity"),
        (lambda: P.PruningCallback("gradual", 0.5, end_fraction=0.0), "prune.end_fraction"),
        (lambda: P.prune_model(tiny_model(), "magnitude", 0.5, scpoe="layer"), "prune.scpoe"),
        (lambda: P.PruningCallback("gradual", 0.5, initial_sparsity=0.7),
         "prune.initial_sparsity"),
        (lambda: P.PruningCallback("gradual", 0.5, every=0), "prune.every"),
        (lambda: P.PruningCallback("wanda", 0.5, calibration_batches=0),
         "prune.calibration_batches"),
    ],
)
def test_bad_config_values_name_the_key(make, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        make()
    assert "\n" not in str(info.value)


def test_unknown_method_lists_the_registered_names():
    with pytest.raises(ConfigError) as info:
        P.get_pruner("lottery")
    for name in ("magnitude", "gradual", "wanda", "structured"):
        assert name in str(info.value)
