"""One epoch of contrastive fine-tuning: batches in, loss and synchronised training seconds out. No Ray."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sweeps.config import TrainConfig
from sweeps.data.items import Pairs, RetrievalData
from sweeps.device import Runtime
from sweeps.losses import batch_hard_triplet, infonce, supcon
from sweeps.models import RetrievalModel


@dataclass(frozen=True)
class TrainSet:
    """The N training items of one trial, as positions into the prepared training pool's features."""

    positions: np.ndarray  # (N,) positions into the pool (first N of the seed's nested ordering)
    label_ids: np.ndarray  # (N,) int: label id (labeled data) or document id (pairs) of each item
    doc_positions: np.ndarray | None  # (N,) pairs only: position of each item's document in the doc features
    labels_for_batching: Sequence[str] | None  # labeled data: labels, so batches hold groups per label


@dataclass(frozen=True)
class EpochStats:
    loss: float
    items: int
    steps: int
    seconds: float  # training wall time, device synchronised at both ends


def build_train_set(pool: RetrievalData, positions: np.ndarray) -> TrainSet:
    """The training items at ``positions`` of the pool, with the ids the losses need."""
    if isinstance(pool, Pairs):
        doc_positions = np.asarray(pool.doc_of, dtype=np.int64)[positions]
        return TrainSet(
            positions=positions, label_ids=doc_positions, doc_positions=doc_positions, labels_for_batching=None
        )
    labels = [pool.labels[i] for i in positions]
    vocab = {label: i for i, label in enumerate(sorted(set(labels)))}
    label_ids = np.array([vocab[label] for label in labels], dtype=np.int64)
    return TrainSet(positions=positions, label_ids=label_ids, doc_positions=None, labels_for_batching=labels)


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, *, runtime: Runtime) -> torch.optim.Optimizer:
    # No weight decay on biases and norm weights, as BERT/CLIP fine-tuning recipes do.
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or name.endswith(".bias") else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel updates all parameters in a few launches instead of several per tensor.
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=runtime.is_cuda)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, *, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Constant by default, so the model after epoch e of a long run is the model an e-epoch run gives."""
    warmup = max(1, int(cfg.warmup_ratio * total_steps))

    def factor(step: int) -> float:
        if cfg.schedule == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "warmup-constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if cfg.schedule == "warmup-linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))  # warmup-cosine

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_one_epoch(
    model: RetrievalModel,
    batches: list[np.ndarray],
    *,
    train_set: TrainSet,
    query_features,
    doc_features,
    cfg: TrainConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    runtime: Runtime,
    scaler: torch.amp.GradScaler | None = None,
) -> EpochStats:
    """Run the given batches (each: positions into ``train_set``) once, in order.

    ``scaler``: the trial's loss scaler (``runtime.grad_scaler()``), kept across epochs; its scale under fp16
    carries over from epoch to epoch. None: a disabled one, outside fp16 only.
    """
    if scaler is None:
        if runtime.amp_dtype == torch.float16:
            raise ValueError("fp16 autocast needs a loss scaler: pass scaler=runtime.grad_scaler()")
        scaler = runtime.grad_scaler()  # disabled outside fp16
    model.train()
    total_loss = torch.zeros((), device=runtime.device)
    items = 0
    runtime.synchronize()
    start = time.perf_counter()
    for batch in batches:
        loss = _step_loss(
            model,
            batch,
            train_set=train_set,
            query_features=query_features,
            doc_features=doc_features,
            cfg=cfg,
            runtime=runtime,
        )
        optimizer.zero_grad(set_to_none=True)
        # One path for every precision: outside fp16 the scaler is disabled and each call a pass-through.
        scaler.scale(loss).backward()
        if cfg.grad_clip is not None:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        # Skips the update when the scaled gradients overflowed (the scale then halves). With the fused
        # AdamW the overflow check runs inside the optimiser kernel: no host sync per step.
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        total_loss += loss.detach()  # stays on the device: no host sync per step
        items += len(batch)
    runtime.synchronize()
    seconds = time.perf_counter() - start
    steps = len(batches)
    return EpochStats(loss=float(total_loss) / max(1, steps), items=items, steps=steps, seconds=seconds)


def _to_device(batch: dict[str, torch.Tensor], runtime: Runtime) -> dict[str, torch.Tensor]:
    return {k: runtime.to_device(v) for k, v in batch.items()}


def _step_loss(
    model, batch, *, train_set: TrainSet, query_features, doc_features, cfg: TrainConfig, runtime: Runtime
) -> torch.Tensor:
    # Not torch.as_tensor(..., device=...): a blocking host->GPU copy waits for the GPU's queue to drain.
    ids = runtime.to_device(torch.from_numpy(np.ascontiguousarray(train_set.label_ids[batch])))
    query_batch = model.query_tower.collate(query_features, train_set.positions[batch])
    with runtime.autocast():
        if train_set.doc_positions is None:  # labeled data: one collection
            query = model.query_tower(_to_device(query_batch, runtime))  # (B, D)
            if cfg.loss == "batch-hard-triplet":
                return batch_hard_triplet(query, ids)
            return supcon(query, ids, temperature=cfg.temperature)
        doc_batch = model.doc_tower.collate(doc_features, train_set.doc_positions[batch])
        # Exact only without BatchNorm: batch statistics over both sides would train another model
        # (measured on face pairs: recall@20 moved beyond the seed spread, benchmarks/RESULTS.md).
        if model.symmetric and cfg.joint_pair_forward and not model.query_tower.normalises_over_batch:
            tower = model.query_tower
            # Joined on the device: for images the concatenation is a copy of both pixel batches, cheap there.
            both = tower(tower.join([_to_device(query_batch, runtime), _to_device(doc_batch, runtime)]))  # (2B, D)
            query, doc = both[: len(batch)], both[len(batch) :]
        else:
            # Both copies are issued before either forward: a tower that makes the host wait (transformers'
            # attention-mask check does) would otherwise leave the GPU idle while the host stages the other
            # side's batch (H200: CLIP pairs 0.81x -> 0.95x of the reference loop, benchmarks/RESULTS.md).
            query_on, doc_on = _to_device(query_batch, runtime), _to_device(doc_batch, runtime)
            query = model.query_tower(query_on)  # (B, D)
            doc = model.doc_tower(doc_on)  # (B, D)
        return infonce(query, doc, ids, temperature=cfg.temperature)
