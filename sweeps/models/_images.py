"""Decode image files once into a uint8 pixel tensor: RGB, shorter side resized, center-cropped.

The pipeline matches torchvision's eval transforms on PIL images (``Resize(resize)`` then
``CenterCrop(size)``); normalisation is left to the tower, on the device.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image

from sweeps.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Resample = Literal["bilinear", "bicubic"]
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class ImageSpec:
    """How a model wants its input: the square size, the shorter side before cropping, mean/std in [0, 1] units."""

    size: int  # S: the crop fed to the model
    resize: int  # shorter side after resizing, >= size
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resample: Resample = "bilinear"

    @classmethod
    def scaled(cls, size: int, *, crop_fraction: float = 0.875, **kwargs) -> ImageSpec:
        """``size`` with the usual eval margin (224 -> resize 256 -> crop 224)."""
        return cls(size=size, resize=max(size, round(size / crop_fraction)), **kwargs)


@dataclass(frozen=True)
class ImageFeatures:
    """N decoded images as one (N, S, S, 3) uint8 NumPy array (channels-last, as PIL decodes them).

    NumPy, not a torch tensor, because of how Ray ships data to trials: a NumPy array inside an object in
    Ray's object store is deserialised zero-copy, as a read-only view of the node's one shared copy, while a
    torch tensor is unpickled into a private copy in every worker (tens of GB per trial at CelebA's size;
    benchmarks/RESULTS.md, "Decoded images at scale"). So the array here may be read-only: batches are
    gathered copies and nothing writes into it. uint8 keeps the cache and the host->device copy 4x smaller
    than float; channels-last is how PIL decodes, and convolutions on tensor cores want it anyway.
    """

    nhwc: np.ndarray  # (N, S, S, 3) uint8, C-contiguous; read-only when it came through Ray

    def __post_init__(self) -> None:
        if self.nhwc.dtype != np.uint8 or self.nhwc.ndim != 4 or self.nhwc.shape[3] != 3:
            raise ValueError(f"ImageFeatures wants (N, S, S, 3) uint8 pixels, got {self.nhwc.shape} {self.nhwc.dtype}")

    @classmethod
    def from_tensor(cls, pixels: torch.Tensor) -> ImageFeatures:
        """From a (N, 3, S, S) uint8 tensor (any memory format); the pixels are copied to NHWC once."""
        return cls(nhwc=np.ascontiguousarray(pixels.permute(0, 2, 3, 1).numpy()))

    def __len__(self) -> int:
        return int(self.nhwc.shape[0])

    @property
    def pixels(self) -> torch.Tensor:
        """(N, 3, S, S) uint8 channels-last view of all images, no copy; for reading only."""
        with warnings.catch_warnings():
            # torch warns that a read-only NumPy array becomes a writable tensor; nothing writes into it.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(self.nhwc).permute(0, 3, 1, 2)

    def batch(self, index: np.ndarray) -> torch.Tensor:
        """(B, 3, S, S) uint8 channels-last copy of the rows at ``index``."""
        rows = np.asarray(index, dtype=np.int64).reshape(-1)
        # Gathered by NumPy: 128 rows at 224 px (18 MiB) take ~0.6 ms against ~6 ms for torch's advanced
        # indexing (benchmarks/image_gather.py, RESULTS.md); it is host work every image training step pays.
        # The gather happens in NHWC so the copy stays channels-last; the copy is private and writable,
        # the (possibly shared, read-only) cache is only read.
        return torch.from_numpy(self.nhwc[rows]).permute(0, 3, 1, 2)


def load_image(path: str, spec: ImageSpec) -> np.ndarray:
    """(S, S, 3) uint8 RGB pixels of one file; ``DataError`` naming the file if it cannot be decoded."""
    try:
        with Image.open(path) as image:
            # JPEG only: decode at a reduced DCT scale that still covers the target (big photos, much faster).
            image.draft("RGB", (spec.resize, spec.resize))
            image = image.convert("RGB")  # grayscale (.pgm), palette, RGBA, CMYK -> 3 channels
            width, height = image.size
            short, long = min(width, height), max(width, height)
            new_long = int(spec.resize * long / short)  # torchvision's rule (truncating)
            new_size = (spec.resize, new_long) if width <= height else (new_long, spec.resize)
            if new_size != image.size:
                image = image.resize(new_size, _RESAMPLE[spec.resample])
            left = int(round((new_size[0] - spec.size) / 2.0))
            top = int(round((new_size[1] - spec.size) / 2.0))
            image = image.crop((left, top, left + spec.size, top + spec.size))
            return np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(
            "image file not found", where=path, fix="check the image paths or the image root folder"
        ) from None
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        # PIL raises OSError (UnidentifiedImageError, truncated data), ValueError or SyntaxError (bad headers).
        raise DataError(
            f"cannot decode image: {exc}",
            where=path,
            fix="replace the file with a valid image or remove it from the data",
        ) from None


def decode_images(paths: Sequence[str], spec: ImageSpec, *, workers: int | None = None) -> ImageFeatures:
    """Decode ``paths`` into one (N, 3, S, S) uint8 tensor, several files at a time.

    Threads suffice: PIL releases the GIL while decoding and resizing.
    """
    out = np.empty((len(paths), spec.size, spec.size, 3), dtype=np.uint8)  # (N, S, S, 3)

    def fill(i: int) -> None:
        out[i] = load_image(str(paths[i]), spec)

    workers = workers or min(8, os.cpu_count() or 1)
    if workers <= 1 or len(paths) < 2 * workers:
        for i in range(len(paths)):
            fill(i)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(fill, range(len(paths))):  # re-raises the first DataError
                pass
    return ImageFeatures(nhwc=out)
