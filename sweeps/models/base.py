"""The two contracts every model kind fulfils: ``Tower`` (one encoder) and ``RetrievalModel`` (a pair).

Kept free of transformers/torchvision imports so that the trainer and evaluator can import the types
without paying for (or needing) the model libraries.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Modality = Literal["text", "image"]
Features = Any  # whatever a tower's ``preprocess`` returns: supports len() and pickling


class Tower(nn.Module):
    """One encoder for one modality: preprocess once on the CPU, collate batches, embed on the device.

    Subclasses set ``modality``, ``dim`` and ``name`` and implement ``preprocess``, ``collate`` and
    ``encode``; ``forward`` L2-normalises what ``encode`` returns.
    """

    modality: Modality
    dim: int
    name: str

    def preprocess(self, items: Sequence[str]) -> Features:
        """Texts -> token ids, image paths -> uint8 pixels; CPU, once per dataset."""
        raise NotImplementedError

    def preprocess_key(self) -> dict | None:
        """What ``preprocess``'s output depends on besides the items, JSON-able: the prepared-data cache's key
        (``sweeps.data.cache``). None: not cached."""
        return None

    def collate(self, features: Features, index: np.ndarray) -> dict[str, torch.Tensor]:
        """The CPU batch of the items at ``index`` (positions into ``features``)."""
        raise NotImplementedError

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, D) pooled, unnormalised features; a projection head (``dual``) stacks on this."""
        raise NotImplementedError

    @functools.cached_property
    def normalises_over_batch(self) -> bool:
        """True if rows of a training batch change each other's embeddings (BatchNorm in a CNN): then a joint
        forward of both sides of a pair batch would be another computation than one pass per side."""
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.modules())

    def join(self, batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """One batch of the rows of ``batches``, in order: (B1 + B2 + ..., ...).

        The trainer embeds both sides of a pair batch in one forward pass through a shared tower: twice the
        batch per kernel launch, which is where a GPU's throughput comes from at these batch sizes. Towers
        whose batches differ in shape beyond the first dimension (padded text) override this.
        """
        return {key: torch.cat([b[key] for b in batches]) for key in batches[0]}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, D) float32 L2-normalised embeddings."""
        # float() first: under bf16 autocast the norm of a bf16 vector is too coarse for cosine ranking.
        return F.normalize(self.encode(batch).float(), dim=-1)


class RetrievalModel(nn.Module):
    """A query tower and a document tower; one shared tower for symmetric (same-modality) tasks."""

    query_tower: Tower
    doc_tower: Tower

    def __init__(self, query_tower: Tower, doc_tower: Tower | None = None, *, name: str):
        super().__init__()
        self.query_tower = query_tower
        self.symmetric = doc_tower is None or doc_tower is query_tower
        if self.symmetric:
            # A plain attribute, not a second registered submodule: the parameters appear once in
            # state_dict() and parameters(), and .to()/deepcopy/pickle keep the two names one object.
            object.__setattr__(self, "doc_tower", query_tower)
        else:
            self.doc_tower = doc_tower
        self.name = name

    def forward(self, batch: dict[str, torch.Tensor], *, side: Literal["query", "doc"] = "query") -> torch.Tensor:
        """Embed a collated batch with the query or the document tower."""
        return (self.query_tower if side == "query" else self.doc_tower)(batch)

    def compile_towers(self, mode: str) -> None:
        """``torch.compile`` each tower's forward in place (a shared tower once); ``mode`` as torch's, or "default".

        Shapes change between batches (padded widths, the last smaller batch): dynamo specialises on the
        first shape and, when one changes, recompiles with that size dynamic (automatic dynamic shapes).
        """
        towers = [self.query_tower] if self.symmetric else [self.query_tower, self.doc_tower]
        for tower in towers:
            tower.compile(mode=None if mode == "default" else mode)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block under a fixed torch seed without disturbing the caller's global RNG state.

    New weights (tiny twins, projection heads) are then the same in every trial and process.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
