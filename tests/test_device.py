"""Device decisions made once (sweeps/device.py): the memory cap of a fractional-GPU trial."""

from __future__ import annotations

import pytest
import torch

from sweeps.device import Runtime, resolve_runtime


@pytest.fixture
def calls(monkeypatch) -> list[tuple]:
    seen: list[tuple] = []
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda *args: seen.append(args))
    return seen


@pytest.mark.parametrize(("fraction", "capped"), [(0.25, True), (0.5, True), (1.0, False), (2.0, False), (0.0, False)])
def test_a_fractional_gpu_caps_the_process_memory_share(calls, fraction, capped):
    # A Runtime on cuda:1 needs no GPU to exist; the cap call is recorded instead of made.
    runtime = Runtime(device=torch.device("cuda", 1), amp_dtype=torch.bfloat16)
    assert runtime.limit_memory(fraction) is capped
    assert calls == ([(fraction, torch.device("cuda", 1))] if capped else [])


def test_no_cap_on_the_cpu(calls):
    assert resolve_runtime("cpu", "fp32").limit_memory(0.25) is False
    assert calls == []


@pytest.fixture
def fake_gpu(monkeypatch):
    """torch.cuda as on a GPU machine, for the decisions resolve_runtime makes (nothing runs on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    # resolve_runtime sets process-wide flags for a GPU: put them back afterwards.
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    yield monkeypatch
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = flags


@pytest.mark.parametrize(("native", "expected"), [(True, torch.bfloat16), (False, None)])
def test_auto_precision_uses_bf16_only_where_the_card_has_it(fake_gpu, native, expected):
    # torch's is_bf16_supported() counts emulated bf16 by default (T4, V100): slower than fp32 there.
    def supported(including_emulation: bool = True) -> bool:
        return native or including_emulation

    fake_gpu.setattr(torch.cuda, "is_bf16_supported", supported)
    runtime = resolve_runtime("auto", "auto", task="image-to-image")
    assert runtime.device == torch.device("cuda", 0) and runtime.amp_dtype == expected
    assert resolve_runtime("auto", "fp16").grad_scaler().is_enabled()


@pytest.mark.parametrize(
    ("task", "expected"),
    [("text-to-text", None), ("text-to-image", torch.bfloat16), ("image-to-image", torch.bfloat16)],
)
def test_auto_precision_trains_text_towers_in_fp32(fake_gpu, task, expected):
    # Measured on an H200 (benchmarks/RESULTS.md): text towers at the Jina study's shapes are no faster in bf16 and
    # lose recall; image towers gain. An explicit precision is never overridden.
    fake_gpu.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_runtime("auto", "auto", task=task).amp_dtype == expected
    assert resolve_runtime("auto", "bf16", task="text-to-text").amp_dtype == torch.bfloat16
    assert torch.backends.cuda.matmul.allow_tf32  # fp32 on a GPU means TF32 matmuls


def test_batches_reach_the_gpu_through_pinned_memory(monkeypatch):
    # A copy from pageable memory may wait for the GPU's queue (CUDA stages it); pinned memory is a true
    # asynchronous DMA. Recorded instead of run: this machine has no GPU.
    steps: list[str] = []

    def pin(self):
        steps.append("pin")
        return self

    def to(self, device, non_blocking=False):
        steps.append(f"to {device} non_blocking={non_blocking}")
        return self

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin)
    monkeypatch.setattr(torch.Tensor, "to", to)
    x = torch.zeros(3)
    assert Runtime(device=torch.device("cuda", 0), amp_dtype=None).to_device(x) is x
    assert steps == ["pin", "to cuda:0 non_blocking=True"]
    steps.clear()
    assert resolve_runtime("cpu", "fp32").to_device(x) is x and steps == []  # the CPU path copies nothing
