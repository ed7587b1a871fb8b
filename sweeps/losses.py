"""Contrastive losses on L2-normalised embeddings: (B, D) in, scalar out.

- ``supcon`` for labeled data (intents, identities): supervised contrastive loss (Khosla et al. 2020)
  with in-batch negatives. Every other item of the anchor's label in the batch is a positive. We use it
  rather than Finetuner's mined triplet loss because it uses all positives and negatives of a batch
  at once (a batch-hard triplet loss keeps one of each per anchor), which gives a steadier signal at
  the few-hundred-item sizes this tool is about, and it optimises exactly the cosine ranking the
  metrics measure. Batches are packed with small groups per label so that anchors have positives.
- ``infonce`` for pairs: symmetric in-batch InfoNCE / multiple-negatives ranking loss (CLIP's loss);
  queries that share a document (five captions of one image) count each other's document as positive,
  so a duplicate in the batch is never pushed away as a negative.
- ``batch_hard_triplet``: the Finetuner-style alternative, for comparison.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F


def _in_fp32(loss: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Run ``loss`` with autocast off. The trainer calls the losses inside the towers' autocast region, where a
    matmul recasts its inputs to bf16 whatever ``.float()`` did before; scores of cosine / 0.05 reach 20,
    where bf16 steps by 0.125, and near convergence the gradient would be mostly rounding."""

    @functools.wraps(loss)
    def wrapper(emb: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        with torch.autocast(emb.device.type, enabled=False):
            return loss(emb, *args, **kwargs)

    return wrapper


@_in_fp32
def supcon(emb: torch.Tensor, labels: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss. emb: (B, D) normalised; labels: (B,) int."""
    logits = emb.float() @ emb.float().T / temperature  # (B, B)
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    logits = logits.masked_fill(eye, float("-inf"))  # an item is not its own candidate
    log_prob = logits - logits.logsumexp(dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~eye  # (B, B)
    n_pos = positives.sum(dim=1)  # (B,)
    # Anchors without a positive, or without a negative (nothing to contrast with: the loss would only
    # push positives apart), do not count.
    has_neg = ((labels[:, None] != labels[None, :]).sum(dim=1) > 0).float()
    valid = (n_pos > 0).float() * has_neg  # (B,)
    pos_log_prob = log_prob.masked_fill(~positives, 0.0).sum(dim=1)  # (B,)
    # Masks and sums instead of `if not valid.any()` / `x[valid]`: both read a GPU value on the host,
    # a sync per step that stops the CPU from queueing the next kernels. A batch without a valid anchor
    # gives 0 (with a graph).
    per_anchor = pos_log_prob / n_pos.clamp(min=1)
    return -(per_anchor * valid).sum() / valid.sum().clamp(min=1.0)


@_in_fp32
def infonce(query: torch.Tensor, doc: torch.Tensor, doc_ids: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """Symmetric multi-positive InfoNCE. query, doc: (B, D) normalised; doc_ids: (B,) int."""
    logits = query.float() @ doc.float().T / temperature  # (B, B): query i vs document of pair j
    positives = doc_ids[:, None] == doc_ids[None, :]  # (B, B), diagonal always true

    def _direction(scores: torch.Tensor) -> torch.Tensor:
        pos = scores.masked_fill(~positives, float("-inf")).logsumexp(dim=1)
        return (scores.logsumexp(dim=1) - pos).mean()

    return 0.5 * (_direction(logits) + _direction(logits.T))


@_in_fp32
def batch_hard_triplet(emb: torch.Tensor, labels: torch.Tensor, *, margin: float = 0.2) -> torch.Tensor:
    """Batch-hard triplet loss on cosine distance. emb: (B, D) normalised; labels: (B,) int."""
    dist = 1.0 - emb.float() @ emb.float().T  # (B, B)
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    same = (labels[:, None] == labels[None, :]) & ~eye
    diff = labels[:, None] != labels[None, :]
    valid = (same.any(dim=1) & diff.any(dim=1)).float()  # (B,) anchors with a positive and a negative
    hardest_pos = dist.masked_fill(~same, float("-inf")).amax(dim=1)
    hardest_neg = dist.masked_fill(~diff, float("inf")).amin(dim=1)
    # Invalid anchors give -inf inside the relu (0, with zero gradient) and are masked out: no host sync.
    return (F.relu(hardest_pos - hardest_neg + margin) * valid).sum() / valid.sum().clamp(min=1.0)
