"""The two shapes of retrieval data every loader returns.

- ``LabeledItems``: one collection; an item's relevant results are the other items with its label
  (CLINC150 intents, BANKING77 categories, CelebA identities, captions of one COCO image).
  Queries and index are the same set; a query never retrieves itself.
- ``Pairs``: queries and a separate collection of documents; a query's relevant result is its paired
  document (caption -> image, question -> duplicate question). Several queries may share a document
  (five captions per image); documents are stored once.

``N`` (the data-size axis) always counts labeled items: one labeled text or image for ``LabeledItems``,
one (query, document) pair for ``Pairs``, as Finetuner counted one Document per item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Modality = Literal["text", "image"]


@dataclass(frozen=True)
class LabeledItems:
    """Items (texts, or image file paths) with a relevance label each."""

    items: tuple[str, ...]
    labels: tuple[str, ...]
    modality: Modality
    source: str  # file, folder or hub id: named in error messages
    official_split: tuple[str, ...] | None = None  # "train"/"test"/... per item, when the source defines one

    def __post_init__(self) -> None:
        if len(self.items) != len(self.labels):
            raise ValueError(f"{self.source}: {len(self.items)} items but {len(self.labels)} labels")
        if self.official_split is not None and len(self.official_split) != len(self.items):
            raise ValueError(f"{self.source}: official_split has the wrong length")

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, index: np.ndarray | list[int]) -> LabeledItems:
        index = [int(i) for i in index]
        return LabeledItems(
            items=tuple(self.items[i] for i in index),
            labels=tuple(self.labels[i] for i in index),
            modality=self.modality,
            source=self.source,
            official_split=None if self.official_split is None else tuple(self.official_split[i] for i in index),
        )


@dataclass(frozen=True)
class Pairs:
    """Queries, each paired with one document; documents are stored once and referenced by index."""

    queries: tuple[str, ...]
    docs: tuple[str, ...]
    doc_of: tuple[int, ...]  # queries[i] is paired with docs[doc_of[i]]
    query_modality: Modality
    doc_modality: Modality
    source: str
    official_split: tuple[str, ...] | None = None  # per query

    def __post_init__(self) -> None:
        if len(self.queries) != len(self.doc_of):
            raise ValueError(f"{self.source}: {len(self.queries)} queries but {len(self.doc_of)} document links")
        if self.doc_of and not (0 <= min(self.doc_of) and max(self.doc_of) < len(self.docs)):
            raise ValueError(f"{self.source}: a document link points outside the {len(self.docs)} documents")
        if self.official_split is not None and len(self.official_split) != len(self.queries):
            raise ValueError(f"{self.source}: official_split has the wrong length")

    def __len__(self) -> int:
        return len(self.queries)

    def subset(self, index: np.ndarray | list[int]) -> Pairs:
        """The pairs at ``index``, keeping only the documents they reference (in first-use order)."""
        index = [int(i) for i in index]
        remap: dict[int, int] = {}
        for i in index:
            remap.setdefault(self.doc_of[i], len(remap))
        return Pairs(
            queries=tuple(self.queries[i] for i in index),
            docs=tuple(self.docs[d] for d in remap),
            doc_of=tuple(remap[self.doc_of[i]] for i in index),
            query_modality=self.query_modality,
            doc_modality=self.doc_modality,
            source=self.source,
            official_split=None if self.official_split is None else tuple(self.official_split[i] for i in index),
        )


RetrievalData = LabeledItems | Pairs
