"""A plain PyTorch KD training loop, written the way a user's own script does it (no Lightning).

This is the baseline the framework has to match: the usual hand-written `train_step` of a KD
script for single-label logit KD, without AMP (CPU, fp32):
teacher forward every step under `no_grad`, student forward,
`alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(class weights)`, `zero_grad`,
`backward`, `clip_grad_norm_`, AdamW step, linear warm-up schedule, and the per-step `.item()`s
such a script returns for logging. Texts are tokenized once up front and padded to a fixed
`max_length`, as hand-written scripts usually do (`padding="max_length"`).

Standalone: ``python bench/plain_kd_loop.py --steps 60`` prints its samples/s with the same tiny
teacher/student as `kd_throughput.py` (which imports `plain_kd` from here) and writes
bench/results/plain_kd_loop.json.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from transformers import get_linear_schedule_with_warmup

try:
    from bench import common
except ImportError:  # `python bench/plain_kd_loop.py`
    import common


def make_loader(tokenizer, texts, labels, *, max_length: int, batch_size: int, seed: int) -> DataLoader:
    enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length,
                    return_tensors="pt", return_token_type_ids=False)
    dataset = TensorDataset(enc["input_ids"], enc["attention_mask"], torch.as_tensor(labels).long())
    return DataLoader(dataset, batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


def kd_loss(student_logits, teacher_logits, labels, *, alpha: float, temperature: float,
            class_weights=None) -> dict[str, torch.Tensor]:
    T = temperature
    soft = F.kl_div(F.log_softmax(student_logits / T, dim=-1), F.softmax(teacher_logits / T, dim=-1),
                    reduction="batchmean") * (T * T)
    hard = F.cross_entropy(student_logits, labels, weight=class_weights)
    return {"total_loss": alpha * soft + (1 - alpha) * hard, "soft_loss": soft, "hard_loss": hard}


def plain_kd_train(
    teacher: torch.nn.Module,
    student: torch.nn.Module,
    loader: DataLoader,
    *,
    epochs: int = 1,
    max_steps: int | None = None,
    lr: float = 3e-4,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.1,
    alpha: float = 0.5,
    temperature: float = 4.0,
    clip: float = 1.0,
    class_weights=None,
) -> dict:
    """Train `student` under `teacher`; returns per-batch start times and the end time."""
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad = False
    student.train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=weight_decay)
    total = epochs * len(loader) if max_steps is None else min(max_steps, epochs * len(loader))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total), total)
    batch_starts: list[float] = []
    history = []
    step = 0
    start = time.perf_counter()
    for _epoch in range(epochs):
        for input_ids, attention_mask, labels in loader:
            if step == total:
                break
            batch_starts.append(time.perf_counter())
            with torch.no_grad():
                teacher_out = teacher(input_ids, attention_mask)
            student_out = student(input_ids, attention_mask)
            losses = kd_loss(student_out.logits, teacher_out.logits, labels, alpha=alpha,
                             temperature=temperature, class_weights=class_weights)
            optimizer.zero_grad()
            losses["total_loss"].backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), clip)
            optimizer.step()
            scheduler.step()
            history.append({k: v.item() for k, v in losses.items()})
            step += 1
    end = time.perf_counter()
    return {"batch_starts": batch_starts, "start": start, "end": end, "steps": step,
            "last_loss": history[-1]["total_loss"] if history else None}


def plain_kd(setup: common.KDSetup, *, epochs: int = 1, max_steps: int | None = None) -> dict:
    """The plain loop on the benchmark setup: same teacher instance, same student init, same
    tokenizer, train texts, class weights, batch size, max length and hyper-parameters."""
    cfg = setup.cfg
    student, tokenizer, _ = common.build_student(setup)
    loader = make_loader(tokenizer, setup.data.train_texts, setup.data.labels("train"),
                         max_length=setup.max_length, batch_size=setup.batch_size, seed=common.SEED)
    weights = setup.data.class_weights() if cfg.student.train.class_weights else None
    try:
        return plain_kd_train(
            setup.teacher.model, student, loader, epochs=epochs, max_steps=max_steps,
            lr=float(cfg.student.train.lr), weight_decay=float(cfg.student.train.weight_decay),
            warmup_ratio=float(cfg.student.train.warmup_ratio), alpha=float(cfg.kd.alpha),
            temperature=float(cfg.kd.temperature),
            clip=float(cfg.trainer.gradient_clip_val), class_weights=weights,
        )
    finally:
        setup.cleanup_runs()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="timed steps after warm-up")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (see bench/README.md)")
    parser.add_argument("--max-length", type=int, default=common.DEFAULT_MAX_LENGTH)
    parser.add_argument("--batch-size", type=int, default=common.DEFAULT_BATCH_SIZE)
    parser.add_argument("--out", default="plain_kd_loop", help="results name in bench/results/")
    args = parser.parse_args()
    from bench import results_io, tables  # common put the repository on sys.path

    record = results_io.Recorder(args.out)
    threads = common.set_threads(args.threads)
    setup = common.make_setup(max_length=args.max_length, batch_size=args.batch_size)
    try:
        out = plain_kd(setup, max_steps=args.warmup + args.steps + 1)
    finally:
        import shutil

        shutil.rmtree(setup.workdir, ignore_errors=True)
    seconds = common.window(out["batch_starts"], args.warmup, args.steps)
    path = record.write({
        "settings": vars(args), "torch_threads": threads, "steps": args.steps,
        "seconds": seconds, "samples_per_s": args.steps * args.batch_size / seconds,
        "ms_per_step": 1000 * seconds / args.steps, "last_loss": out["last_loss"],
    })
    print(tables.render_record("plain_kd_loop", results_io.read(args.out)))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
