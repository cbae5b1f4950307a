"""`kd=mutual` (kd.method=mutual): Deep Mutual Learning in the kd stage (issue 16, item 4).

`kd.peers` (default 2) students of the `student` config are trained together from scratch, each
on CE + alpha * T^2 * KL to the other peers' soft predictions (hate_compress/training/mutual.py)
— online distillation: no pretrained model's outputs enter the loss. Peer i is initialised from
`seed + i`, so peer 0 starts exactly where a `kd=none`/`kd=logit` student of the same seed does.

Every peer is saved (`kd_peer<i>/model`) and measured as its own row (`kd_peer<i>`, shown before
the `kd` row in the summary); the peer with the best dev macro F1 becomes the `kd` row (a copy
in `kd/model`) and continues down the pipeline. The teacher stage still runs: its row is the
reference every speedup, retention and agreement is measured against, and a later prune
fine-tune with `prune.kd=true` distils from it as usual.
"""

from __future__ import annotations

import copy
import logging
import shutil

import lightning.pytorch as pl

from hate_compress.errors import ConfigError
from hate_compress.kd.terms import build_composite_loss
from hate_compress.models.backbone import resolve_encoder_config
from hate_compress.stages.augment import augment_settings
from hate_compress.stages.common import build_classifier, fit, loss_for, plain, save
from hate_compress.stages.kd import KD_METHODS, attach_student_tokenizer, encoder_shape
from hate_compress.stages.measure import complete_card, measure_stage
from hate_compress.stages.state import Run, Trained
from hate_compress.storage import OUTPUT_KEY, writing
from hate_compress.training.mutual import MutualModule, Peers

log = logging.getLogger(__name__)

# what peers can exchange: their predictions (no peer is a frozen model with a cache)
MUTUAL_TERMS = ("ce", "logit")


def peer_row(i: int) -> str:
    return f"kd_peer{i}"


def num_peers(cfg) -> int:
    peers = cfg.kd.get("peers", 2)
    if isinstance(peers, bool) or not isinstance(peers, int) or peers < 2:
        raise ConfigError(f"kd.peers={peers!r}: mutual learning needs a whole number >= 2 of peers")
    return peers


def check_mutual(run: Run) -> None:
    """Before the teacher trains: peers >= 2, only prediction-level terms, a student that
    resolves and whose loss builds."""
    cfg = run.cfg
    num_peers(cfg)
    for term in plain(cfg.kd.get("terms") or {}):
        if term not in MUTUAL_TERMS:
            raise ConfigError(f"kd.terms.{term}: kd=mutual peers exchange soft predictions only "
                              f"(terms {', '.join(MUTUAL_TERMS)}); remove it")
    if "logit" not in (cfg.kd.get("terms") or {}):
        raise ConfigError("kd=mutual needs kd.terms.logit (the KL to the other peers)")
    if augment_settings(run).enabled:
        raise ConfigError("kd.augment.copies: teacher-labelled augmentation needs a teacher to "
                          "label the copies; kd=mutual has none in its loss (set copies=0)")
    student = resolve_encoder_config(plain(cfg.student.backbone), role="student")
    dims = encoder_shape(student)
    build_composite_loss(plain(cfg.kd), task=run.data.task, num_labels=run.data.num_labels,
                         student_dims=dims, teacher_dims=dims)


def build_peers(run: Run) -> tuple[list, object, bool]:
    """`kd.peers` students of the `student` config, peer i initialised from `seed + i`."""
    models, tokenizer = [], None
    for i in range(num_peers(run.cfg)):
        pl.seed_everything(int(run.cfg.seed) + i, workers=True, verbose=False)
        model, tok = build_classifier(run, "student")
        models.append(model)
        tokenizer = tokenizer or tok
    pl.seed_everything(int(run.cfg.seed), workers=True, verbose=False)
    tokenizer, shared = attach_student_tokenizer(run, tokenizer)
    return models, tokenizer, shared


def mutual(run: Run) -> None:
    models, tokenizer, shared = build_peers(run)
    log.info("[kd] mutual learning: %d peers of %s (%d layers x %d) from scratch", len(models),
             run.cfg.student.name, models[0].num_layers, models[0].hidden_size)
    loss = loss_for(run, run.cfg.kd, models[0], models[0], True,
                    bool(run.cfg.student.train.class_weights))
    together = Trained("mutual", Peers(models), tokenizer, "student")
    fit(run, "kd", together, loss, train_cfg=run.cfg.student.train, module_cls=MutualModule)
    rows = {}
    for i, model in enumerate(models):
        peer = Trained(peer_row(i), model, tokenizer, "student")
        save(run, peer, run.stage_dir(peer_row(i)) / "model")
        values = measure_stage(run, peer_row(i), peer, extra={
            "kd": run.cfg.kd.name, "student": run.cfg.student.name, "row_of": "kd",
            "peer": i, "shared_tokenizer": shared})
        rows[peer_row(i)] = (peer, values)
    # the best dev macro F1 continues (ties: the lower index)
    chosen = max(rows, key=lambda name: (rows[name][1]["dev"]["macro_f1"], -rows[name][1]["peer"]))
    peer, values = rows[chosen]
    target = run.stage_dir("kd") / "model"
    with writing(target, OUTPUT_KEY):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(peer.path, target)
    student = Trained("student", peer.model, tokenizer, "student", target)
    run.current = student
    kd_values = copy.deepcopy(values)
    kd_values.pop("row_of")
    kd_values.update(artifact=str(target), chosen_peer=chosen, peers={
        name: {"dev_macro_f1": v["dev"]["macro_f1"], "artifact": v["artifact"]}
        for name, (_, v) in rows.items()})
    run.record("kd", kd_values)
    complete_card(target, {k: v for k, v in kd_values.items() if k != "artifact"})
    log.info("[kd] mutual learning: %s continues (dev macro F1 %.4f)", chosen,
             values["dev"]["macro_f1"])


KD_METHODS.add("mutual", mutual, preflight=check_mutual)

