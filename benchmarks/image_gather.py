"""Host time to gather one image training batch from the decoded uint8 cache (speed issue, image loops).

Every training step of an image tower copies its batch's rows out of the (N, 3, S, S) uint8 cache on the CPU
before the host->GPU copy; on a GPU this host work has to stay well under the step's GPU time. Compared in the
same run: the previous gather (torch advanced indexing on the NHWC view) and ``ImageFeatures.batch`` (NumPy
indexing), which must return the same pixels in the same channels-last layout.

    .venv/bin/python benchmarks/image_gather.py --n 1000 --batch 128 --size 224 --out benchmarks/results/image_gather_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from sweeps.models._images import ImageFeatures


def _torch_indexing(pixels: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    """The gather ``ImageFeatures.batch`` used before (the baseline)."""
    nhwc = pixels.permute(0, 2, 3, 1)
    return nhwc[torch.as_tensor(rows)].permute(0, 3, 1, 2)


def _ms_per_call(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1e3 * (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="images in the cache")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", help="write the numbers as JSON here")
    args = parser.parse_args()

    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (args.n, 3, args.size, args.size), dtype=torch.uint8, generator=g)
    features = ImageFeatures.from_tensor(pixels)
    rows = np.random.default_rng(0).permutation(args.n)[: args.batch]

    new, old = features.batch(rows), _torch_indexing(features.pixels, rows)
    assert torch.equal(new, old) and new.is_contiguous(memory_format=torch.channels_last)
    baseline = _ms_per_call(lambda: _torch_indexing(features.pixels, rows), args.repeats)
    current = _ms_per_call(lambda: features.batch(rows), args.repeats)
    mb = new.numel() / 2**20
    print(f"batch {args.batch} x {args.size} px from {args.n} cached images ({mb:.1f} MiB per batch), same pixels")
    print(f"torch advanced indexing (before): {baseline:.2f} ms")
    print(f"ImageFeatures.batch (NumPy):      {current:.2f} ms   ratio {current / baseline:.3f}x")
    if args.out:
        result = {
            "machine": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "args": vars(args),
            "mib_per_batch": mb,
            "torch_indexing_ms": baseline,
            "image_features_batch_ms": current,
            "ratio": current / baseline,
        }
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
