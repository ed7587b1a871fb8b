"""CLIP as two towers: text model + text projection, vision model + visual projection."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from sweeps.dns_check import unreachable_reason
from sweeps.models._hub import load_pretrained, looks_like_hub_id, offline_clip_tokenizer, resolve_name
from sweeps.models._images import ImageSpec
from sweeps.models.base import Tower, seeded
from sweeps.models.image import ImageTower
from sweeps.models.text import TokenFeatures, join_padded, pad_batch, tokenize, tokenizer_key

# OpenAI CLIP's pixel statistics, for checkpoints that ship no preprocessor_config.json.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipTextTower(Tower):
    """CLIP's text transformer, pooled at the end-of-text token (causal attention), then projected."""

    modality = "text"

    def __init__(self, text_model: nn.Module, projection: nn.Linear, tokenizer, *, name: str, max_length: int):
        super().__init__()
        self.text_model = text_model
        self.projection = projection
        self.tokenizer = tokenizer
        self.name = name
        self.max_positions = int(text_model.config.max_position_embeddings)  # 77 for OpenAI CLIP
        self.max_length = min(max_length, self.max_positions)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
        self.dim = int(projection.out_features)

    def preprocess(self, items: Sequence[str]) -> TokenFeatures:
        return tokenize(self.tokenizer, items, max_length=self.max_length)

    def preprocess_key(self) -> dict | None:
        if not hasattr(self, "_preprocess_key"):  # the tokenizer's serialisation, once per tower
            self._preprocess_key = tokenizer_key(self.tokenizer, max_length=self.max_length)
        return self._preprocess_key

    def collate(self, features: TokenFeatures, index: np.ndarray) -> dict[str, torch.Tensor]:
        return pad_batch(features, index, pad_id=self.pad_id, max_positions=self.max_positions)

    def join(self, batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return join_padded(batches, pad_id=self.pad_id)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # Padding cannot leak in: attention is causal and the pooled token is the first end-of-text,
        # which precedes every pad token (OpenAI CLIP pads with end-of-text itself).
        out = self.text_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return self.projection(out.pooler_output)  # (B, H) -> (B, P)


class _ClipVision(nn.Module):
    """Vision transformer's pooled [CLS] output, projected: (B, 3, S, S) -> (B, P)."""

    def __init__(self, vision_model: nn.Module, projection: nn.Linear):
        super().__init__()
        self.vision_model = vision_model
        self.projection = projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.vision_model(pixel_values=x).pooler_output)


def build_clip_towers(
    *, name: str, max_length: int, tiny: bool, field: str = "model.name"
) -> tuple[ClipTextTower, ImageTower]:
    """(text tower, image tower) of ``CLIPModel.from_pretrained(name)`` or of its tiny twin.

    Tiny twin: a ``CLIPConfig`` with 2-layer, 32-wide text and vision transformers (image 32, patch 8,
    projection 16), random and seeded, and a real CLIP byte-level BPE tokenizer built offline with the
    256 byte symbols and no merges (character-level tokens; see ``offline_clip_tokenizer``). It keeps
    CLIP's tokenizer class, end-of-text pooling and pad-with-EOS behaviour, which the MiniLM WordPiece
    vocab would not exercise.
    """
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel

    if tiny:
        tokenizer = offline_clip_tokenizer()
        config = CLIPConfig(
            text_config={
                "vocab_size": len(tokenizer),
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "max_position_embeddings": 77,
                "bos_token_id": tokenizer.bos_token_id,
                "eos_token_id": tokenizer.eos_token_id,
                "pad_token_id": tokenizer.pad_token_id,
            },
            vision_config={
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "image_size": 32,
                "patch_size": 8,
            },
            projection_dim=16,
        )
        with seeded(0):
            clip = CLIPModel(config)
        mean, std, resize = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, None
    else:
        clip = load_pretrained(CLIPModel.from_pretrained, name, field=field).float()  # fp32 master weights
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, name, field=field, part="tokenizer")
        mean, std, resize = _clip_pixel_stats(CLIPImageProcessor, resolve_name(name, field=field))
    size = int(clip.config.vision_config.image_size)  # fixed by the position embeddings: cfg.image_size is ignored
    spec = ImageSpec(size=size, resize=max(size, resize or size), mean=mean, std=std, resample="bicubic")
    text = ClipTextTower(clip.text_model, clip.text_projection, tokenizer, name=name, max_length=max_length)
    image = ImageTower(
        _ClipVision(clip.vision_model, clip.visual_projection), spec, dim=int(clip.config.projection_dim), name=name
    )
    return text, image


def _clip_pixel_stats(processor_cls, resolved: str) -> tuple[tuple[float, ...], tuple[float, ...], int | None]:
    """(mean, std, shorter-side resize) from the checkpoint's image processor config, else OpenAI's constants."""
    # Without network the cached copy or nothing, at once (as load_pretrained does for the model).
    offline = {"local_files_only": True} if looks_like_hub_id(resolved) and unreachable_reason() else {}
    try:
        processor = processor_cls.from_pretrained(resolved, **offline)
    except (OSError, ValueError):  # no preprocessor_config.json: the model loaded, so use OpenAI's
        return OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, None
    size = getattr(processor, "size", None) or {}
    # A plain dict in transformers 4, a SizeDict (attribute access) in 5.
    resize = size.get("shortest_edge") if isinstance(size, dict) else getattr(size, "shortest_edge", None)
    mean = tuple(float(v) for v in (processor.image_mean or OPENAI_CLIP_MEAN))
    std = tuple(float(v) for v in (processor.image_std or OPENAI_CLIP_STD))
    return mean, std, resize
