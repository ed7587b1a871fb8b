"""The model stage: ``build_model(cfg, task=...)`` -> a ``RetrievalModel`` of one or two ``Tower``s.

Kinds (``model.kind``):

- ``hf-text``: a Hugging Face encoder (hub id, local folder or ``package:<module>``), mean or cls pooling.
- ``clip``: ``CLIPModel`` split into a text tower and an image tower (projected, normalised).
- ``dual``: an ``hf-text`` tower and a torchvision / EfficientNet-Lite0 tower, each with a new linear head.
- ``torchvision``: a torchvision classifier without its last layer (``resnet50``).
- ``efficientnet-lite0``: EfficientNet-Lite0 with the ImageNet weights of the offline package.

``tiny: true`` builds each kind's architecture from a small config, randomly initialised from a fixed
seed, for tests and smoke runs. Only this package imports transformers, torchvision and the
EfficientNet package, and only when a model is built.
"""

from __future__ import annotations

from sweeps.config import ModelConfig
from sweeps.errors import ModelError
from sweeps.models.base import Features, Modality, RetrievalModel, Tower

# Which tasks each kind can serve; CLIP's towers also work alone for same-modality search.
TASKS_OF_KIND: dict[str, tuple[str, ...]] = {
    "hf-text": ("text-to-text",),
    "clip": ("text-to-image", "text-to-text", "image-to-image"),
    "dual": ("text-to-image",),
    "torchvision": ("image-to-image",),
    "efficientnet-lite0": ("image-to-image",),
}


def build_model(cfg: ModelConfig, *, task: str) -> RetrievalModel:
    """Build the configured model on the CPU, in eval mode (the caller moves it to its device).

    Raises:
        ModelError: the kind cannot serve ``task``, or the weights cannot be found or loaded.
    """
    allowed = TASKS_OF_KIND.get(cfg.kind)
    if allowed is None:
        raise ModelError(
            f"unknown model kind {cfg.kind!r}", field="model.kind", fix=f"use one of {', '.join(TASKS_OF_KIND)}"
        )
    if task not in allowed:
        kinds = [kind for kind, tasks in TASKS_OF_KIND.items() if task in tasks]
        raise ModelError(
            f"model kind {cfg.kind} cannot be used for task {task} (it serves {', '.join(allowed)})",
            field="model.kind",
            fix=f"for {task} use model.kind {' or '.join(kinds) or '(none)'}",
        )

    return _build(cfg, task=task).eval()


def _build(cfg: ModelConfig, *, task: str) -> RetrievalModel:
    if cfg.kind == "hf-text":
        from sweeps.models.text import build_text_tower

        tower = build_text_tower(name=cfg.name, pooling=cfg.pooling, max_length=cfg.max_length, tiny=cfg.tiny)
        return RetrievalModel(tower, name=cfg.name)

    if cfg.kind == "clip":
        from sweeps.models.clip import build_clip_towers

        text, image = build_clip_towers(name=cfg.name, max_length=cfg.max_length, tiny=cfg.tiny)
        if task == "text-to-text":
            return RetrievalModel(text, name=cfg.name)
        if task == "image-to-image":
            return RetrievalModel(image, name=cfg.name)
        return RetrievalModel(text, image, name=cfg.name)

    if cfg.kind == "dual":
        from sweeps.models.dual import build_dual_towers

        text, image = build_dual_towers(cfg)
        return RetrievalModel(text, image, name=f"{cfg.text_tower.name}+{cfg.image_tower.name}")

    from sweeps.models.image import build_efficientnet_lite0_tower, build_torchvision_tower

    if cfg.kind == "torchvision":
        tower = build_torchvision_tower(name=cfg.name, weights=cfg.weights, image_size=cfg.image_size, tiny=cfg.tiny)
    else:
        tower = build_efficientnet_lite0_tower(name=cfg.name, image_size=cfg.image_size, tiny=cfg.tiny)
    return RetrievalModel(tower, name=cfg.name)


__all__ = ["Features", "Modality", "RetrievalModel", "Tower", "build_model", "TASKS_OF_KIND"]
