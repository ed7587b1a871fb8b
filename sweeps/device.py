"""Pick the device once; the CPU path is the same code.

Everything device-specific (autocast, synchronisation, memory counters, the device's name) is
decided here, so the trainer and evaluator never branch on ``torch.cuda.is_available()``.
"""

from __future__ import annotations

import contextlib
import gc
import random
import resource
import sys
from dataclasses import dataclass

import numpy as np
import torch

from sweeps.errors import ConfigError


@dataclass(frozen=True)
class Runtime:
    """The device a trial runs on and how it computes there."""

    device: torch.device
    amp_dtype: torch.dtype | None  # None: plain fp32

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def synchronize(self) -> None:
        # Kernels run asynchronously: without a sync, a timer measures launch time, not work.
        if self.is_cuda:
            torch.cuda.synchronize(self.device)

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """Copy a CPU tensor (a collated batch's) to the device without making the host wait for the GPU.

        From pageable memory CUDA stages the copy and may first synchronise with the stream (CUDA runtime
        docs, "API synchronization behavior"): with image batches of tens of MB the host would wait for the
        previous step's kernels before queueing the next step, and the CPU-side work (gathering and copying
        the next batch, launching its kernels) would stop overlapping the GPU's. From pinned memory the copy
        is an asynchronous DMA (what ``DataLoader(pin_memory=True)`` gives training loops); torch's caching
        host allocator reuses a pinned block only after the copy that read it has completed.
        """
        if not self.is_cuda:
            return tensor
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """The trial's loss scaler: active under fp16 autocast, a pass-through otherwise (fp32, bf16).

        fp16 has a 5-bit exponent: gradients below ~6e-8 flush to zero and training silently stalls, so the
        loss is scaled up before backward and the gradients unscaled before the step (skipped when they
        overflowed). bf16 keeps fp32's exponent and needs none of this: a disabled scaler's ``scale`` returns
        the loss and its ``step`` is ``optimizer.step()``, so every precision takes one backward path.
        """
        return torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    def release(self) -> None:
        """Free what a finished or failed trial left on the accelerator, before the process's next trial.

        Collecting first drops the tensors that dropped references (or an exception's traceback, once the
        exception is handled) kept alive; ``empty_cache`` then returns the caching allocator's blocks to the
        device. On the CPU only the collection runs.
        """
        gc.collect()
        if self.is_cuda:
            torch.cuda.empty_cache()

    def limit_memory(self, fraction: float) -> bool:
        """Cap this process's share of the GPU's memory at ``fraction`` (a fractional Ray GPU); True if capped.

        Ray's ``num_gpus: 0.25`` only schedules: four trials share one card with no memory fence, so one
        greedy trial would push its neighbours out of memory. With the cap, the trial that exceeds its declared
        share is the one that fails (with torch's out-of-memory error, recorded with the fix).
        """
        if not self.is_cuda or not 0 < fraction < 1:
            return False
        torch.cuda.set_per_process_memory_fraction(fraction, self.device)
        return True

    def reset_peak_memory(self) -> None:
        if self.is_cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_memory_mb(self) -> float:
        """Peak accelerator memory since the last reset; on the CPU, the process's peak resident set."""
        if self.is_cuda:
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux

    @property
    def device_name(self) -> str:
        return torch.cuda.get_device_name(self.device) if self.is_cuda else "cpu"


def resolve_runtime(device: str = "auto", precision: str = "auto", *, task: str | None = None) -> Runtime:
    """Resolve ``device`` (auto|cpu|cuda[:i]) and ``precision`` (auto|fp32|bf16|fp16) once.

    ``task`` only informs ``auto``: text-to-text trains in fp32 with TF32 matmuls, image towers in bf16.
    """
    if device == "auto":
        dev = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("cuda was asked for but no GPU is visible", field="device", fix="use device: auto or cpu")
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    if precision == "auto":
        # bf16 keeps fp32's range (no loss scaling) and roughly doubles matmul throughput on Ampere+;
        # on the CPU autocast mostly slows things down, so fp32 there.
        # including_emulation=False: pre-Ampere cards (T4, V100) run bf16 without tensor cores, slower than fp32.
        # Text towers are the exception, measured on an H200 (benchmarks/RESULTS.md, GPU): at the Jina study's shapes
        # (batches of 128 short sentences) they are bound by kernel launches, so bf16 autocast's extra casts
        # cost more than its matmuls save (MiniLM on CLINC150: fp32/TF32 1.10-1.35x faster; bert-base: equal)
        # and bf16 lowered recall@20 by 0.003 on all three seeds. Image towers gain from bf16 (resnet50
        # 1.45x in the reference loop, CLIP 1.03x in ours, both with a third less memory).
        bf16 = dev.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
        amp = torch.bfloat16 if bf16 and task != "text-to-text" else None
    elif precision == "fp32":
        amp = None
    elif precision == "bf16":
        amp = torch.bfloat16
    elif precision == "fp16":
        if dev.type != "cuda":
            raise ConfigError("fp16 autocast needs a GPU", field="train.precision", fix="use auto, fp32 or bf16")
        amp = torch.float16
    else:
        raise ConfigError(f"unknown precision {precision!r}", field="train.precision", fix="use auto|fp32|bf16|fp16")
    if dev.type == "cuda":
        # TF32 matmuls for the fp32 parts (loss, optimiser): same accuracy class as the reference loops.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        # Image batches have one shape per trial (S x S crops, a fixed batch size): let cuDNN time its
        # convolution algorithms once per shape and keep the fastest. Bit-exact reruns on a GPU were never
        # promised (atomics in backward), and the choice only moves results at float-rounding level.
        torch.backends.cudnn.benchmark = True
    return Runtime(device=dev, amp_dtype=amp)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch; code that needs randomness still takes explicit generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
