"""Loss terms checked against values computed by hand (pure-Python math on fixed tensors).

Expected values never go through torch's own loss functions, so a sign, a missing T**2, a
wrong reduction or a mask leak shows up as a wrong number, not as two implementations agreeing.
"""

from __future__ import annotations

import logging
import math

import pytest
import torch

from hate_compress.errors import ConfigError
from hate_compress.kd.context import LossContext
from hate_compress.kd.layer_map import default_layer_map, parse_layer_map
from hate_compress.kd.terms import (
    TERMS,
    AttentionTerm,
    CeTerm,
    CompositeLoss,
    HiddenTerm,
    LogitTerm,
    LossTerm,
    build_composite_loss,
    build_term,
    register_term,
)
from hate_compress.models.outputs import ModelOutputs

# ----------------------------------------------------------------- hand-computation helpers

S_LOGITS = [[2.0, -1.0, 0.5], [0.1, 0.3, -0.4]]
T_LOGITS = [[3.0, 0.0, -1.0], [-0.5, 1.5, 0.2]]
LABELS = [0, 1]

ML_S = [[1.0, -2.0, 0.5], [-0.3, 0.8, 2.0]]
ML_T = [[2.0, -1.0, -0.5], [0.0, 1.0, 1.5]]
ML_Y = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]


def softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def hand_kl(s_rows, t_rows, T):
    """batchmean KL(softmax(t/T) || softmax(s/T)), no T**2."""
    total = 0.0
    for s, t in zip(s_rows, t_rows):
        ps, pt = softmax([x / T for x in s]), softmax([x / T for x in t])
        total += sum(b * math.log(b / a) for a, b in zip(ps, pt))
    return total / len(s_rows)


def hand_ce(s_rows, labels, w=None):
    w = w or [1.0] * len(s_rows[0])
    num = sum(w[y] * -math.log(softmax(s)[y]) for s, y in zip(s_rows, labels))
    return num / sum(w[y] for y in labels)


def hand_bce(x, y, pw=1.0):
    return -(pw * y * math.log(sigmoid(x)) + (1 - y) * math.log(1 - sigmoid(x)))


def hand_ml_hard(j, pw=None):
    pw = pw or [1.0, 1.0, 1.0]
    return sum(hand_bce(ML_S[i][j], ML_Y[i][j], pw[j]) for i in range(2)) / 2


def hand_ml_soft(j, T):
    return T**2 * sum(hand_bce(ML_S[i][j] / T, sigmoid(ML_T[i][j] / T)) for i in range(2)) / 2


def outs(logits, mask=None, **kw):
    logits = torch.as_tensor(logits, dtype=torch.float32)
    if mask is None:
        mask = torch.ones(logits.shape[0], 3)
    return ModelOutputs(logits=logits, attention_mask=torch.as_tensor(mask, dtype=torch.float32), **kw)


def make_ctx(s=S_LOGITS, t=T_LOGITS, y=LABELS, task="multiclass", shared=True):
    student = s if isinstance(s, ModelOutputs) else outs(s)
    teacher = t if (t is None or isinstance(t, ModelOutputs)) else outs(t)
    labels = torch.tensor(y, dtype=torch.float32 if task == "multilabel" else torch.long)
    return LossContext(student=student, teacher=teacher, labels=labels, task=task, shared_tokenizer=shared)


def approx(x, rel=1e-5, abs=1e-6):
    return pytest.approx(x, rel=rel, abs=abs)


# ----------------------------------------------------------------- ce / logit


def test_logit_temperature_squared_scaling_and_gradient():
    s = torch.tensor(S_LOGITS, requires_grad=True)
    ctx = make_ctx(s=outs(s))
    value = LogitTerm(temperature=4.0)(ctx)
    assert value.item() == approx(16 * hand_kl(S_LOGITS, T_LOGITS, 4.0))
    value.backward()
    # d/ds [T^2 KL] = T * (softmax(s/T) - softmax(t/T)) / B
    for i in range(2):
        ps, pt = softmax([x / 4 for x in S_LOGITS[i]]), softmax([x / 4 for x in T_LOGITS[i]])
        assert s.grad[i].tolist() == approx([4 * (a - b) / 2 for a, b in zip(ps, pt)])


def test_kl_zero_for_identical_logits_positive_otherwise():
    term = LogitTerm(temperature=2.0)
    assert term(make_ctx(t=S_LOGITS)).item() == approx(0.0, abs=1e-7)
    assert term(make_ctx()).item() > 1e-3


def test_logit_needs_only_teacher_logits_and_detaches_teacher():
    assert LogitTerm.needs == frozenset({"teacher_logits"})
    s = torch.tensor(S_LOGITS, requires_grad=True)
    t = torch.tensor(T_LOGITS, requires_grad=True)
    LogitTerm(2.0)(make_ctx(s=outs(s), t=outs(t))).backward()
    assert s.grad is not None and t.grad is None


def test_ce_class_weights_by_hand():
    w = [1.0, 2.0, 0.5]
    term = CeTerm(class_weights=w)
    assert term(make_ctx()).item() == approx(hand_ce(S_LOGITS, LABELS, w))
    assert CeTerm()(make_ctx()).item() == approx(hand_ce(S_LOGITS, LABELS))
    assert "class_weights" in dict(term.named_buffers())  # moves with .to(device)


def test_ce_multilabel_pos_weight_by_hand():
    pw = [2.0, 1.0, 3.0]
    ctx = make_ctx(s=ML_S, t=ML_T, y=ML_Y, task="multilabel")
    expected = sum(hand_ml_hard(j, pw) for j in range(3)) / 3
    assert CeTerm(class_weights=pw)(ctx).item() == approx(expected)
    assert CeTerm(pw).per_label(ctx).tolist() == approx([hand_ml_hard(j, pw) for j in range(3)])


def test_logit_multilabel_bce_by_hand():
    ctx = make_ctx(s=ML_S, t=ML_T, y=ML_Y, task="multilabel")
    term = LogitTerm(temperature=2.0)
    per = [hand_ml_soft(j, 2.0) for j in range(3)]
    assert term.per_label(ctx).tolist() == approx(per)
    assert term(ctx).item() == approx(sum(per) / 3)


@pytest.mark.parametrize("alpha", [0.7, 0.0, 1.0])
def test_alpha_weighs_the_soft_side(alpha):
    loss = CompositeLoss({"ce": CeTerm(), "logit": LogitTerm(2.0)}, alpha=alpha)
    total, parts = loss(make_ctx())
    soft, hard = 4 * hand_kl(S_LOGITS, T_LOGITS, 2.0), hand_ce(S_LOGITS, LABELS)
    assert total.item() == approx(alpha * soft + (1 - alpha) * hard)
    assert parts["logit"].item() == approx(soft) and parts["ce"].item() == approx(hard)
    assert not parts["logit"].requires_grad
    if alpha == 0.0:
        assert total.item() == approx(hard)
    if alpha == 1.0:
        assert total.item() == approx(soft)


def test_no_logit_term_means_plain_ce_and_alpha_ignored():
    total, parts = CompositeLoss({"ce": CeTerm()}, alpha=0.9)(make_ctx(t=None))
    assert total.item() == approx(hand_ce(S_LOGITS, LABELS))
    assert set(parts) == {"ce"}


def test_per_label_alpha_by_hand():
    a = [0.2, 0.5, 0.9]
    loss = CompositeLoss({"ce": CeTerm(), "logit": LogitTerm(2.0)}, alpha=0.5, per_label_alpha=a)
    total, parts = loss(make_ctx(s=ML_S, t=ML_T, y=ML_Y, task="multilabel"))
    expected = sum(a[j] * hand_ml_soft(j, 2.0) + (1 - a[j]) * hand_ml_hard(j) for j in range(3)) / 3
    assert total.item() == approx(expected)
    assert parts["ce"].item() == approx(sum(hand_ml_hard(j) for j in range(3)) / 3)


# ----------------------------------------------------------------- layer maps


@pytest.mark.parametrize(
    ("ls", "lt", "expected"),
    [(2, 4, {1: 2, 2: 4}), (3, 12, {1: 4, 2: 8, 3: 12}), (4, 6, {1: 2, 2: 3, 3: 4, 4: 6}), (4, 4, {1: 1, 2: 2, 3: 3, 4: 4})],
)
def test_default_layer_map(ls, lt, expected):
    # (4, 6): j * 1.5 = 1.5, 3, 4.5, 6 -> Python round (half-to-even) -> 2, 3, 4, 6
    assert default_layer_map(ls, lt) == expected
    term = HiddenTerm(ls, lt, 8, 8)
    assert {p.student: p.teacher for p in term.pairs} == expected


def test_layer_map_shorthand_and_attention_default():
    pairs = parse_layer_map([[1, 2], [2, 4, 0.5]], student_layers=2, teacher_layers=4, key="k")
    assert [(p.student, p.teacher, p.weight) for p in pairs] == [(1, 2, 1.0), (2, 4, 0.5)]
    att = AttentionTerm(2, 4)
    assert [(p.student, p.teacher) for p in att.pairs] == [(1, 2), (2, 4)]


@pytest.mark.parametrize(
    ("layer_map", "message"),
    [
        ([{"student": 3, "teacher": 1}], "kd.terms.hidden.layer_map[0].student=3 is outside [0, 2]"),
        ([{"student": 1, "teacher": 1}, {"student": 1, "teacher": 5}], "kd.terms.hidden.layer_map[1].teacher=5 is outside [0, 4]"),
        ([{"student": 1, "teacher": 1, "weight": -1}], "kd.terms.hidden.layer_map[0].weight"),
        ([{"student": 1}], "kd.terms.hidden.layer_map[0] needs both"),
        ([{"student": 1, "teacher": 1, "extra": 2}], "unknown key"),
        ([[1.5, 2]], "kd.terms.hidden.layer_map[0].student=1.5 must be an integer"),
        ([], "kd.terms.hidden.layer_map is empty"),
        ("1:2", "kd.terms.hidden.layer_map must be a list"),
    ],
)
def test_custom_layer_map_validation(layer_map, message):
    with pytest.raises(ConfigError) as e:
        HiddenTerm(2, 4, 8, 8, layer_map=layer_map)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_attention_layer_map_has_no_embedding_layer():
    with pytest.raises(ConfigError, match=r"kd\.terms\.attention\.layer_map\[0\]\.teacher=0 is outside \[1, 4\]"):
        AttentionTerm(2, 4, layer_map=[{"student": 1, "teacher": 0}])


# ----------------------------------------------------------------- hidden


def hs(*layers):
    return tuple(torch.tensor([layer], dtype=torch.float32) for layer in layers)  # batch of 1


ZERO3 = [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]


def hidden_ctx(s_layers, t_layers, s_mask, t_mask, shared):
    student = outs([[0.0, 0.0]], mask=[s_mask], hidden_states=hs(*s_layers))
    teacher = outs([[0.0, 0.0]], mask=[t_mask], hidden_states=hs(*t_layers))
    return make_ctx(s=student, t=teacher, y=[0], shared=shared)


def test_hidden_mse_token_level_equal_sizes_by_hand():
    s2 = [[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]  # last token is padding
    t1 = [[0.0, 2.0], [3.0, 1.0], [-50.0, 7.0]]
    ctx = hidden_ctx([ZERO3, ZERO3, s2], [ZERO3, t1, ZERO3], [1, 1, 0], [1, 1, 0], shared=True)
    term = HiddenTerm(2, 2, 2, 2, layer_map=[{"student": 2, "teacher": 1}])
    assert list(term.parameters()) == []  # equal sizes: identity, nothing to learn
    # token 0: (1^2 + 0^2)/2 = 0.5 ; token 1: (0^2 + 3^2)/2 = 4.5 ; padded token ignored
    assert term(ctx).item() == approx((0.5 + 4.5) / 2)


def test_hidden_pair_weights_and_mean_over_pairs():
    s1 = [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    ctx = hidden_ctx([ZERO3, s1, ZERO3], [ZERO3, ZERO3, ZERO3], [1, 1, 1], [1, 1, 1], shared=True)
    lm = [{"student": 1, "teacher": 1, "weight": 3.0}, {"student": 2, "teacher": 2, "weight": 1.0}]
    # pair 1: mse 1.0, pair 2: mse 0.0 -> (3 * 1 + 1 * 0) / 2 pairs
    assert HiddenTerm(2, 2, 2, 2, layer_map=lm)(ctx).item() == approx(1.5)


def test_hidden_projection_shapes_and_gradients():
    torch.manual_seed(0)
    term = HiddenTerm(2, 4, 32, 64)
    assert [(p.in_features, p.out_features) for p in term.projections] == [(32, 64), (32, 64)]
    s_hs = tuple(torch.randn(2, 5, 32, requires_grad=True) for _ in range(3))
    t_hs = tuple(torch.randn(2, 5, 64) for _ in range(5))
    mask = torch.ones(2, 5)
    student = ModelOutputs(torch.zeros(2, 2), mask, hidden_states=s_hs)
    teacher = ModelOutputs(torch.zeros(2, 2), mask, hidden_states=t_hs)
    term(LossContext(student, teacher, torch.tensor([0, 1]), "binary", True)).backward()
    for proj in term.projections:
        assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0
    assert s_hs[1].grad is not None and s_hs[0].grad is None  # embeddings unmapped by default


@pytest.mark.parametrize("shared", [True, False])
def test_cosine_zero_for_same_direction(shared):
    s1 = [[1.0, 2.0], [-3.0, 0.5], [2.0, 2.0]]
    t1 = [[3 * a, 3 * b] for a, b in s1]
    ctx = hidden_ctx([ZERO3, s1], [ZERO3, t1], [1, 1, 1], [1, 1, 1], shared=shared)
    assert HiddenTerm(1, 1, 2, 2, loss="cosine", pooling="mean")(ctx).item() == approx(0.0, abs=1e-6)
    neg = hidden_ctx([ZERO3, s1], [ZERO3, [[-a, -b] for a, b in s1]], [1, 1, 1], [1, 1, 1], shared=shared)
    assert HiddenTerm(1, 1, 2, 2, loss="cosine")(neg).item() == approx(2.0)


def test_hidden_pooled_when_tokenizers_differ_with_different_lengths():
    s1 = [[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]  # mask 1 1 0 -> mean (2, 3), cls (1, 2)
    t1 = [[0.0, 0.0], [3.0, 3.0], [6.0, 3.0], [7.0, 7.0], [7.0, 7.0]]  # mask 1 1 1 0 0 -> mean (3, 2)
    zeros5 = [[0.0, 0.0]] * 5
    ctx = hidden_ctx([ZERO3, s1], [zeros5, t1], [1, 1, 0], [1, 1, 1, 0, 0], shared=False)
    assert HiddenTerm(1, 1, 2, 2, pooling="mean")(ctx).item() == approx(((2 - 3) ** 2 + (3 - 2) ** 2) / 2)
    assert HiddenTerm(1, 1, 2, 2, pooling="cls")(ctx).item() == approx((1 + 4) / 2)
    ctx.shared_tokenizer = True  # a lie: token level cannot align 3 with 5 tokens
    with pytest.raises(ValueError, match="sequence lengths differ"):
        HiddenTerm(1, 1, 2, 2)(ctx)


def test_hidden_path_follows_shared_tokenizer():
    s1 = [[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]
    t1 = [[0.0, 1.0], [1.0, 0.0], [5.0, 5.0]]
    token_value = (1.0 + 1.0 + 0.0) / 3  # per-token mse 1, 1, 0 averaged over 3 tokens
    pooled_value = 0.0  # means are identical: (2, 2)/3 each
    for shared, expected in [(True, token_value), (False, pooled_value)]:
        ctx = hidden_ctx([ZERO3, s1], [ZERO3, t1], [1, 1, 1], [1, 1, 1], shared=shared)
        assert HiddenTerm(1, 1, 2, 2, pooling="mean")(ctx).item() == approx(expected)
    ctx = hidden_ctx([ZERO3, s1], [ZERO3, t1], [1, 1, 1], [1, 1, 1], shared=True)
    assert HiddenTerm(1, 1, 2, 2, pooling="mean", token_level=False)(ctx).item() == approx(pooled_value)


def test_hidden_missing_hidden_states_is_explained():
    ctx = make_ctx()
    with pytest.raises(ValueError, match="output_hidden_states=True"):
        HiddenTerm(1, 1, 2, 2)(ctx)


# ----------------------------------------------------------------- attention

# Student: 2 heads, averaged -> [[.6,.4,0], [.8,.2,0], [.25,.25,.5]]. Teacher: 1 head.
S_HEADS = [
    [[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.3, 0.3, 0.4]],
    [[0.7, 0.3, 0.0], [0.6, 0.4, 0.0], [0.2, 0.2, 0.6]],
]
MASK = [1, 1, 0]


def att_ctx(t_head, shared=True):
    student = outs([[0.0, 0.0]], mask=[MASK], attentions=(torch.tensor([S_HEADS]),))
    teacher = outs([[0.0, 0.0]], mask=[MASK], attentions=(torch.tensor([[t_head]]),))
    return make_ctx(s=student, t=teacher, y=[0], shared=shared)


def test_attention_mse_by_hand_padding_masked():
    t = [[0.8, 0.1, 0.1], [0.4, 0.6, 0.0], [0.1, 0.1, 0.8]]
    # only query rows 0-1 x key cols 0-1 count: .2^2 + .3^2 + .4^2 + .4^2 over 4 entries
    expected = (0.04 + 0.09 + 0.16 + 0.16) / 4
    assert AttentionTerm(1, 1, loss="mse")(att_ctx(t)).item() == approx(expected)


def test_attention_kl_by_hand():
    t = [[0.9, 0.1, 0.0], [0.4, 0.6, 0.0], [0.1, 0.1, 0.8]]
    row0 = 0.9 * math.log(0.9 / 0.6) + 0.1 * math.log(0.1 / 0.4)
    row1 = 0.4 * math.log(0.4 / 0.8) + 0.6 * math.log(0.6 / 0.2)
    assert AttentionTerm(1, 1, loss="kl")(att_ctx(t)).item() == approx((row0 + row1) / 2)
    same = [[0.6, 0.4, 0.0], [0.8, 0.2, 0.0], [0.0, 0.0, 1.0]]  # differs only on the padded row
    assert AttentionTerm(1, 1, loss="kl")(att_ctx(same)).item() == approx(0.0, abs=1e-6)


def test_attention_tokenizer_mismatch_errors():
    t = [[0.9, 0.1, 0.0]] * 3
    with pytest.raises(ConfigError, match=r"on_mismatch=skip") as e:
        AttentionTerm(1, 1)(att_ctx(t, shared=False))
    assert "share a tokenizer" in str(e.value)


def test_attention_tokenizer_mismatch_skip_warns_once(caplog):
    t = [[0.9, 0.1, 0.0]] * 3
    term = AttentionTerm(1, 1, on_mismatch="skip")
    assert term.skipped is False
    with caplog.at_level(logging.WARNING, logger="hate_compress.kd.terms"):
        values = [term(att_ctx(t, shared=False)) for _ in range(3)]
    assert all(v.item() == 0.0 for v in values) and term.skipped is True
    records = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.WARNING


# ----------------------------------------------------------------- registry / config


def test_unknown_term_lists_registered_names():
    with pytest.raises(ConfigError) as e:
        build_term("nope")
    for name in ("ce", "logit", "hidden", "attention"):
        assert name in str(e.value)
    with pytest.raises(ConfigError, match="kd.terms.nope: unknown loss term; choose from .*hidden"):
        build_composite_loss({"terms": {"nope": {}}}, task="binary", num_labels=2, student_dims=(2, 8))


BUILD = {"task": "multilabel", "num_labels": 3, "student_dims": (2, 8), "teacher_dims": (4, 16)}


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"alpha": 1.5, "terms": {"logit": {}}}, "kd.alpha=1.5 is outside [0, 1]"),
        ({"alpha": -0.1}, "kd.alpha=-0.1 is outside [0, 1]"),
        ({"temperature": 0, "terms": {"logit": {}}}, "kd.temperature=0"),
        ({"temperature": -2.0}, "kd.temperature=-2.0"),
        ({"terms": {"hidden": {"weight": -1}}}, "kd.terms.hidden.weight=-1"),
        ({"terms": {"logit": {"weight": 2.0}}}, "kd.terms.logit.weight is not used"),
        ({"terms": {"logit": {"temperature": 2.0}}}, "kd.terms.logit.temperature cannot be set here"),
        ({"terms": {"hidden": {"loss": "l1"}}}, "kd.terms.hidden.loss='l1'"),
        ({"terms": {"hidden": {"bogus": 1}}}, "accepted options"),
        ({"terms": {"attention": {"on_mismatch": "maybe"}}}, "kd.terms.attention.on_mismatch"),
        ({"per_label_alpha": [0.5, 0.5], "terms": {"logit": {}}}, "kd.per_label_alpha has 2 values"),
        ({"per_label_alpha": [0.5, 1.2, 0.5], "terms": {"logit": {}}}, "kd.per_label_alpha[1]=1.2"),
        ({"per_label_alpha": [0.5, 0.5, 0.5]}, "no 'logit' term"),
        ({"terms": ["logit"]}, "kd.terms must be a mapping"),
    ],
)
def test_bad_config_values_name_the_key(cfg, message):
    with pytest.raises(ConfigError) as e:
        build_composite_loss(cfg, **BUILD)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_teacher_terms_without_teacher_rejected():
    for term in ("logit", "hidden", "attention"):
        with pytest.raises(ConfigError, match=f"kd.terms.{term} needs a teacher"):
            build_composite_loss({"terms": {term: {}}}, task="binary", num_labels=2, student_dims=(2, 8))


def test_class_weights_length_checked():
    with pytest.raises(ConfigError, match="class_weights"):
        build_composite_loss({}, task="multiclass", num_labels=3, class_weights=[1.0, 2.0], student_dims=(2, 8))


def test_kd_none_builds_ce_only():
    loss = build_composite_loss({"name": "none", "terms": {}}, task="multiclass", num_labels=3,
                                class_weights=[1.0, 2.0, 0.5], student_dims=(2, 8))
    assert list(loss.terms) == ["ce"] and loss.needs == frozenset()
    total, _ = loss(make_ctx(t=None))
    assert total.item() == approx(hand_ce(S_LOGITS, LABELS, [1.0, 2.0, 0.5]))


def test_multi_level_config_builds_and_trains():
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create(
        {
            "name": "multi_level", "alpha": 0.5, "temperature": 4.0, "per_label_alpha": None,
            "terms": {
                "logit": {},
                "hidden": {"weight": 2.0, "loss": "mse", "layer_map": None, "pooling": "cls"},
                "attention": {"weight": 1.0, "loss": "mse", "on_mismatch": "error"},
            },
        }
    )
    loss = build_composite_loss(cfg, task="binary", num_labels=2, class_weights=None,
                                student_dims=(2, 8), teacher_dims=(4, 16))
    assert loss.needs == frozenset({"teacher_logits", "hidden_states", "attentions"})
    assert loss.weights == {"hidden": 2.0, "attention": 1.0}
    assert any(n.startswith("terms.hidden.projections.") for n, _ in loss.named_parameters())
    torch.manual_seed(0)
    B, S = 2, 4
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    s_logits = torch.randn(B, 2, requires_grad=True)
    student = ModelOutputs(s_logits, mask, hidden_states=tuple(torch.randn(B, S, 8) for _ in range(3)),
                           attentions=tuple(torch.softmax(torch.randn(B, 2, S, S), -1) for _ in range(2)))
    teacher = ModelOutputs(torch.randn(B, 2), mask, hidden_states=tuple(torch.randn(B, S, 16) for _ in range(5)),
                           attentions=tuple(torch.softmax(torch.randn(B, 4, S, S), -1) for _ in range(4)))
    ctx = LossContext(student, teacher, torch.tensor([0, 1]), "binary", True)
    total, parts = loss(ctx)
    expected = 0.5 * parts["logit"] + 0.5 * parts["ce"] + 2.0 * parts["hidden"] + parts["attention"]
    assert total.item() == approx(expected.item())
    total.backward()
    assert s_logits.grad is not None
    # A known tokenizer mismatch fails at build time, before any data is loaded.
    with pytest.raises(ConfigError, match="on_mismatch=skip"):
        build_composite_loss(cfg, task="binary", num_labels=2, student_dims=(2, 8), teacher_dims=(4, 16),
                             shared_tokenizer=False)


def test_registered_dummy_term_is_buildable_from_config():
    @register_term("test_dummy_l1")
    class DummyL1(LossTerm):
        def __init__(self, scale: float = 1.0):
            super().__init__()
            self.scale = scale

        def forward(self, ctx):
            return self.scale * ctx.student.logits.abs().mean()

    try:
        cfg = {"terms": {"test_dummy_l1": {"scale": 2.0, "weight": 0.5}}}
        loss = build_composite_loss(cfg, task="multiclass", num_labels=3, student_dims=(2, 8))
        total, parts = loss(make_ctx(t=None))
        mean_abs = sum(abs(x) for row in S_LOGITS for x in row) / 6
        assert parts["test_dummy_l1"].item() == approx(2.0 * mean_abs)
        assert total.item() == approx(hand_ce(S_LOGITS, LABELS) + 0.5 * 2.0 * mean_abs)
        with pytest.raises(ValueError, match="already registered"):
            register_term("test_dummy_l1")(type("Other", (LossTerm,), {}))
    finally:
        TERMS.pop("test_dummy_l1", None)
