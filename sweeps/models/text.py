"""Text towers: token-id features, dynamic padding, and a Hugging Face encoder with mean/cls pooling."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sweeps.models._hub import load_pretrained, offline_bert_tokenizer
from sweeps.models.base import Tower, seeded

Pooling = Literal["mean", "cls"]
PAD_MULTIPLE = 8  # tensor cores want sequence lengths in multiples of 8


@dataclass(frozen=True)
class TokenFeatures:
    """Token ids of N texts, truncated but not padded, stored back to back.

    Two flat arrays instead of N small tensors: pickling and sharing across Ray workers is one buffer
    copy, and a batch is gathered with vectorised indexing.
    """

    flat: np.ndarray  # (total,) int32: the ids of text 0, then text 1, ...
    offsets: np.ndarray  # (N + 1,) int64: text i is flat[offsets[i]:offsets[i + 1]]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """(N,) tokens per text; the evaluator sorts by it to keep padding small."""
        return np.diff(self.offsets)

    def ids(self, i: int) -> np.ndarray:
        return self.flat[self.offsets[i] : self.offsets[i + 1]]


def tokenize(tokenizer, items: Sequence[str], *, max_length: int) -> TokenFeatures:
    """Tokenise ``items`` with special tokens, truncated to ``max_length`` (the last token stays EOS/SEP)."""
    if len(items) == 0:
        return TokenFeatures(flat=np.zeros(0, np.int32), offsets=np.zeros(1, np.int64))
    encoded = tokenizer(list(items), truncation=True, max_length=max_length, padding=False, return_attention_mask=False)
    ids = encoded["input_ids"]
    offsets = np.zeros(len(ids) + 1, np.int64)
    np.cumsum([len(x) for x in ids], out=offsets[1:])
    flat = np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(offsets[-1]))
    return TokenFeatures(flat=flat, offsets=offsets)


def tokenizer_key(tokenizer, *, max_length: int) -> dict | None:
    """The prepared-data cache key of ``tokenize(tokenizer, ..., max_length=...)``: the fast tokenizer's whole
    serialisation (vocab, normaliser, special tokens) hashed; None for a tokenizer without one (not cached)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    spec = json.loads(backend.to_str())
    # Calls with truncation=True leave their settings on the backend; what they are is max_length's business.
    spec.pop("truncation", None)
    spec.pop("padding", None)
    blob = json.dumps(spec).encode()  # the library writes its keys in a fixed order
    return {"tokenizer": type(tokenizer).__name__, "spec": hashlib.sha256(blob).hexdigest(), "max_length": max_length}


def pad_batch(
    features: TokenFeatures, index: np.ndarray, *, pad_id: int, max_positions: int
) -> dict[str, torch.Tensor]:
    """input_ids / attention_mask (B, T) int64, T = the longest in the batch rounded up to a multiple of 8
    (but never past the model's position table)."""
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    starts = features.offsets[index]  # (B,)
    lengths = features.offsets[index + 1] - starts  # (B,)
    longest = int(lengths.max(initial=1))
    width = min(-(-longest // PAD_MULTIPLE) * PAD_MULTIPLE, max(max_positions, longest))
    positions = np.arange(width)  # (T,)
    mask = positions[None, :] < lengths[:, None]  # (B, T)
    ids = np.full((len(index), width), pad_id, dtype=np.int64)
    ids[mask] = features.flat[(starts[:, None] + positions[None, :])[mask]]
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask.astype(np.int64))}


def join_padded(batches: Sequence[dict[str, torch.Tensor]], *, pad_id: int) -> dict[str, torch.Tensor]:
    """Stack padded token batches of different widths: each is right-padded to the widest first.

    Attention masks keep the extra positions out, so every row embeds as it would in its own batch.
    """
    width = max(b["input_ids"].shape[1] for b in batches)
    ids = [F.pad(b["input_ids"], (0, width - b["input_ids"].shape[1]), value=pad_id) for b in batches]
    masks = [F.pad(b["attention_mask"], (0, width - b["attention_mask"].shape[1]), value=0) for b in batches]
    return {"input_ids": torch.cat(ids), "attention_mask": torch.cat(masks)}


class HFTextTower(Tower):
    """A Hugging Face encoder (``AutoModel``) pooled over tokens: masked mean or the [CLS] token."""

    modality = "text"

    def __init__(self, encoder: nn.Module, tokenizer, *, name: str, pooling: Pooling, max_length: int):
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.name = name
        self.pooling = pooling
        config = encoder.config
        self.max_positions = int(getattr(config, "max_position_embeddings", None) or max_length)
        self.max_length = min(max_length, self.max_positions)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.dim = int(config.hidden_size)

    def preprocess(self, items: Sequence[str]) -> TokenFeatures:
        return tokenize(self.tokenizer, items, max_length=self.max_length)

    def preprocess_key(self) -> dict | None:
        if not hasattr(
            self, "_preprocess_key"
        ):  # serialising a 30k-token vocab costs a noticeable fraction of a second
            self._preprocess_key = tokenizer_key(self.tokenizer, max_length=self.max_length)
        return self._preprocess_key

    def collate(self, features: TokenFeatures, index: np.ndarray) -> dict[str, torch.Tensor]:
        return pad_batch(features, index, pad_id=self.pad_id, max_positions=self.max_positions)

    def join(self, batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return join_padded(batches, pad_id=self.pad_id)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["attention_mask"]  # (B, T)
        hidden = self.encoder(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state  # (B, T, H)
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1): padding contributes nothing
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # (B, H)


def build_text_tower(
    *, name: str, pooling: Pooling, max_length: int, tiny: bool, field: str = "model.name"
) -> HFTextTower:
    """The configured encoder from ``name`` (hub id, folder, ``package:<module>``), or its tiny twin.

    The tiny twin is a 2-layer, 32-wide ``BertModel`` (random, seeded) with a real WordPiece tokenizer that
    needs no network (see ``offline_bert_tokenizer``); ``name`` is still recorded as configured.
    """
    from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

    if tiny:
        tokenizer = offline_bert_tokenizer()
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=max(128, max_length),
            pad_token_id=tokenizer.pad_token_id,
        )
        with seeded(0):
            encoder = BertModel(config, add_pooling_layer=False)
    else:
        # float(): transformers 5 keeps a checkpoint's stored dtype; the trainer wants fp32 master weights
        # (bf16 comes from autocast).
        encoder = load_pretrained(AutoModel.from_pretrained, name, field=field).float()
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, name, field=field, part="tokenizer")
        if getattr(encoder, "pooler", None) is not None:
            # BERT's pooler (a dense layer on [CLS], trained for next-sentence prediction) is not used by
            # either pooling; dropping it avoids parameters that never get gradients (DDP, optimiser state).
            encoder.pooler = None
    return HFTextTower(encoder, tokenizer, name=name, pooling=pooling, max_length=max_length)
