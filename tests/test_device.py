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
