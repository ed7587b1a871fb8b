"""Fixed shapes for compiled towers: text widths padded to a few buckets, batches padded to a few row counts.

A compiled tower (``torch.compile``, above all ``reduce-overhead``'s CUDA graphs) pays for every new input shape:
dynamo guards fail and recompile, CUDA graph trees record a new graph. Trials feed many shapes: padded text widths
vary per batch, labeled batches close a little short or long (``group_batches``), the last batch of pairs is
smaller, and evaluation has its own batch size. ``FixedShapes`` maps each of them onto a handful:

- widths (text): the next power of two from 16, capped at the tower's position table;
- rows: the next of the trial's row counts (training batch, joint pair batch, evaluation batch), when padding
  rows is exact: only for towers whose rows do not see each other (no BatchNorm; ``Tower.normalises_over_batch``).

Padding is exact: padded token columns are masked (as ``pad_batch``'s own padding), padded rows are extra rows
whose outputs are cut off before anything (loss, search) sees them, so the loss, its gradients and every real row's
embedding are those of the unpadded batch, up to float rounding in reductions over a longer axis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sweeps.config import TrialConfig
from sweeps.models.base import Tower

MIN_WIDTH = 16


@dataclass(frozen=True)
class FixedShapes:
    """How one tower's inputs are padded: row counts (empty: rows never padded) and text settings."""

    rows: tuple[int, ...]  # sorted; a batch of n rows is padded to the first >= n (larger ones stay as they are)
    max_width: int  # the tower's position table: widths are never padded past it (0: not a text tower)
    pad_id: int = 0

    @classmethod
    def for_tower(cls, tower: Tower, cfg: TrialConfig, *, pairs: bool) -> FixedShapes:
        text = _text_part(tower)
        rows: tuple[int, ...] = ()
        if not tower.normalises_over_batch:
            batch = cfg.train.batch_size if pairs else cfg.train.batch_size + cfg.train.group_size
            # group_batches: a labeled batch can hold up to group_size items more than batch_size
            counts = {batch, cfg.eval.batch_size}
            if pairs and cfg.train.joint_pair_forward:
                counts.add(2 * cfg.train.batch_size)  # both sides of a pair batch in one pass
            rows = tuple(sorted(counts))
        if text is None:
            return cls(rows=rows, max_width=0)
        return cls(rows=rows, max_width=int(text.max_positions), pad_id=int(text.pad_id))

    def width(self, w: int) -> int:
        """The bucket of a padded text width ``w``: the next power of two from ``MIN_WIDTH``, capped at the table."""
        bucket = max(MIN_WIDTH, 1 << max(0, w - 1).bit_length())
        return max(w, min(bucket, self.max_width))

    def row_count(self, n: int) -> int:
        return next((r for r in self.rows if r >= n), n)

    def pad(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
        """(the padded batch, n real rows). Text: ``input_ids`` / ``attention_mask`` (B, T); images: ``pixels``."""
        n = next(iter(batch.values())).shape[0]
        rows = self.row_count(n) - n
        out = {}
        if "input_ids" in batch:
            ids, mask = batch["input_ids"], batch["attention_mask"]  # (B, T)
            cols = self.width(ids.shape[1]) - ids.shape[1]
            ids = F.pad(ids, (0, cols, 0, rows), value=self.pad_id)
            mask = F.pad(mask, (0, cols, 0, rows), value=0)
            if rows:
                # A padded row attends to one (pad) token: an all-masked row would make attention's softmax 0/0,
                # and a NaN there reaches the real rows' gradients through the shared weights (NaN * 0 = NaN).
                mask[n:, 0] = 1
            out.update(batch, input_ids=ids, attention_mask=mask)
        else:
            # Only when needed: F.pad returns a contiguous copy, and the pixels' channels-last layout should stay.
            out.update({k: F.pad(v, (0,) * (2 * (v.dim() - 1)) + (0, rows)) if rows else v for k, v in batch.items()})
        for tensor in out.values():
            # Rows and widths vary across few values: one graph with symbolic sizes instead of one per shape.
            for dim in range(min(tensor.dim(), 2 if "input_ids" in out else 1)):
                torch._dynamo.maybe_mark_dynamic(tensor, dim)
        return out, n


class FixedShapeCall:
    """A tower's compiled call behind ``FixedShapes``: pad, run, cut the padded rows off. (B, D) out."""

    def __init__(self, compiled: Callable, shapes: FixedShapes):
        self.compiled = compiled
        self.shapes = shapes

    def __call__(self, batch: dict[str, torch.Tensor], *args, **kwargs) -> torch.Tensor:
        padded, n = self.shapes.pad(batch)
        return self.compiled(padded, *args, **kwargs)[:n]


def _text_part(tower: Tower):
    """The text tower inside ``tower`` (itself, or the inner tower of a projected one), or None."""
    inner = getattr(tower, "inner", tower)
    return inner if hasattr(inner, "pad_id") and hasattr(inner, "max_positions") else None
