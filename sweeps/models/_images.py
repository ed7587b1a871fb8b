"""Decode image files once into a uint8 pixel tensor: RGB, shorter side resized, center-cropped.

The pipeline matches torchvision's eval transforms on PIL images (``Resize(resize)`` then
``CenterCrop(size)``); normalisation is left to the tower, on the device.
"""

from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
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


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity, which containers and ``taskset`` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def decode_images(
    paths: Sequence[str],
    spec: ImageSpec,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None | Literal["auto"] = "auto",
) -> ImageFeatures:
    """Decode ``paths`` into one (N, S, S, 3) uint8 array, on every core this process may use.

    Processes, not threads: PIL releases the GIL while it decodes and resizes, but the per-image Python and
    NumPy work holds it, and a GPU node's driver has tens of cores (the Jina study's largest set, CelebA, is
    120,000 images). The worker processes are forked after one shared anonymous memory map is made, and
    each writes its images straight into it: no pixels travel through pipes, and the map is the result.
    Without ``fork`` (not Linux), or once this process has started or joined Ray, the same work runs on threads.

    Args:
        workers: processes (default: every core of ``default_workers()``); 1 decodes in this process.
        progress: called as ``progress(done, total)`` after each chunk; ``"auto"`` prints a line to stderr
            every few seconds for 1,000 images or more; None is silent.
    """
    n = len(paths)
    workers = max(1, min(workers or default_workers(), n // 2 or 1))
    report = _progress_printer(n, workers) if progress == "auto" else progress
    if workers <= 1 or n < 2 * workers:
        out = np.empty((n, spec.size, spec.size, 3), dtype=np.uint8)  # (N, S, S, 3)
        for start in range(0, n, 256):
            _decode_into(out, paths[start : start + 256], start, spec)
            if report is not None:
                report(min(n, start + 256), n)
        return ImageFeatures(nhwc=out)
    nbytes = n * spec.size * spec.size * 3
    out = np.frombuffer(mmap.mmap(-1, nbytes), dtype=np.uint8).reshape(n, spec.size, spec.size, 3)
    # Chunks of a few dozen images: small enough to balance the load and to report progress often,
    # large enough that scheduling costs nothing next to decoding.
    step = max(8, min(256, -(-n // (workers * 16))))
    chunks = [(i, [str(p) for p in paths[i : i + step]]) for i in range(0, n, step)]
    global _TARGET
    _TARGET = (out, spec)  # inherited by forked workers; the map is shared, so their writes land in `out`
    ray = sys.modules.get("ray")
    # No fork from a process that runs Ray's threads (a Ray worker, or a driver already connected): gRPC does
    # not survive a fork reliably. Then the same work runs on threads.
    if "fork" in mp.get_all_start_methods() and not (ray is not None and ray.is_initialized()):
        executor = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork"))
    else:
        executor = ThreadPoolExecutor(max_workers=workers)
    done = 0
    try:
        with executor:
            futures = {executor.submit(_decode_chunk, start, chunk): len(chunk) for start, chunk in chunks}
            for future in as_completed(futures):
                failure = future.result()
                if failure is not None:  # the first bad file, as a DataError (UserError pickles poorly)
                    for other in futures:
                        other.cancel()
                    problem, where, fix = failure
                    raise DataError(problem, where=where, fix=fix)
                done += futures[future]
                if report is not None:
                    report(done, n)
    finally:
        _TARGET = None
    return ImageFeatures(nhwc=out)


# (pixels, spec) of the decode in progress: set before the worker processes fork, so they inherit it.
_TARGET: tuple[np.ndarray, ImageSpec] | None = None


def _decode_into(out: np.ndarray, paths: Sequence[str], start: int, spec: ImageSpec) -> None:
    for i, path in enumerate(paths):
        out[start + i] = load_image(str(path), spec)


def _decode_chunk(start: int, paths: list[str]) -> tuple[str, str | None, str | None] | None:
    """Runs in a worker: decode ``paths`` into rows ``start...`` of the shared array; the first DataError as fields."""
    out, spec = _TARGET
    try:
        _decode_into(out, paths, start, spec)
    except DataError as exc:
        return exc.problem, exc.where, exc.fix
    return None


def _progress_printer(total: int, workers: int) -> Callable[[int, int], None] | None:
    """A ``progress`` that prints at most every 5 s (and at the end), for sets worth waiting on."""
    if total < 1000:
        return None
    start = time.perf_counter()
    last = [start]

    def report(done: int, n: int) -> None:
        now = time.perf_counter()
        if done < n and now - last[0] < 5.0:
            return
        last[0] = now
        elapsed = now - start
        left = elapsed / done * (n - done) if done else float("nan")
        print(
            f"decoding {n:,} images on {workers} {'processes' if workers > 1 else 'process'}: "
            f"{done:,}/{n:,} ({100 * done / n:.0f}%) {elapsed:.0f}s" + (f", ~{left:.0f}s left" if done < n else ""),
            file=sys.stderr,
            flush=True,
        )

    return report
