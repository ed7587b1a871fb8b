"""Compile once per worker: a reused Ray actor keeps its (compiled) model for the next cell of the same model.

``obtain_model`` gives a trial its pretrained model. The first cell a worker process runs builds it, moves it to
the device and, under ``train.compile``, compiles its towers behind fixed shapes (``sweeps.shapes``) and warms them
up: one training step's forward and backward and one evaluation forward on real batches, so that every graph the
trial needs is compiled before its training clock starts. Those seconds are the cell's ``compile_seconds``, never
its ``train_seconds``. The next cell of the same model in the same worker gets the same module with the pretrained
weights loaded back (the state dict copied at build time), gradients dropped and eval mode set: the model is then
the one a fresh build gives, bit for bit, and the graphs are reused (``compile_seconds`` 0). The optimiser, the
scheduler, the scaler and the random state are the trial's own (``run_trial`` makes them), so a cell's results do
not depend on what ran before it in its worker (``tests/test_compiled.py``).

Across workers torch's own caches do the work: the first worker to compile a model saves torch's cache artifacts
(``torch.compiler.save_cache_artifacts``: inductor's FX graph and AOT autograd caches, autotuning results) to
``<cache home>/compiled/<key>.bin`` (``sweeps.data.cache.cache_home``), and a worker that starts without a compiled
model loads them first (``load_cache_artifacts``), so its compile is mostly cache hits. On one machine inductor's
on-disk cache already does this; the artifact file carries it to other machines when the cache home is a shared
mount (``FINETUNING_BUDGET_CACHE``). Measured on the CPU in ``benchmarks/compile_once.py`` (RESULTS.md).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from sweeps.config import TrialConfig
from sweeps.data.cache import cache_home
from sweeps.data.items import Pairs
from sweeps.dataclass_io import config_hash, to_dict
from sweeps.device import Runtime
from sweeps.models import RetrievalModel, build_model
from sweeps.prepare import PreparedData
from sweeps.shapes import FixedShapeCall, FixedShapes


@dataclass(frozen=True)
class WorkerModel:
    """The trial's model and what obtaining it cost."""

    model: RetrievalModel
    compile_seconds: float  # compiling and warming up (artifacts loaded included); 0 when the graphs were kept
    mode: str  # the compile mode in effect: off, default, reduce-overhead, max-autotune
    reused: bool  # True: this worker's kept model, pretrained weights loaded back


@dataclass
class _Kept:
    key: str
    model: RetrievalModel
    pretrained: dict[str, torch.Tensor]  # CPU copy of the state dict as built


_KEPT: dict[str, _Kept] = {}  # per process: a Ray actor reused across cells (``reuse_actors=True``)


def obtain_model(
    cfg: TrialConfig, *, runtime: Runtime, prepared: PreparedData, model: RetrievalModel | None = None
) -> WorkerModel:
    """The trial's pretrained model on ``runtime.device``, compiled under ``cfg.train.compile``.

    ``compile: auto`` is resolved by the sweep's driver (``sweeps.compile_plan``); a trial that still holds
    ``auto`` (``roi trial``, one cell) runs eager: one cell rarely repays a compilation.
    ``model``: a caller's own model (tests, benchmarks) is used as it is, compiled if asked, and not kept.
    """
    mode = "off" if cfg.train.compile == "auto" else cfg.train.compile
    if model is not None:
        model = model.to(runtime.device)
        if mode != "off":
            # Every compiled module shares nn.Module._call_impl's code object, whose dynamo cache holds a few
            # entries: graphs of models no longer in use would crowd it (and fall back to eager when full).
            forget()
            torch._dynamo.reset()
        seconds = _compile(model, mode, cfg=cfg, runtime=runtime, prepared=prepared, key=None) if mode != "off" else 0.0
        return WorkerModel(model=model, compile_seconds=seconds, mode=mode, reused=False)
    key = model_key(cfg, runtime=runtime, mode=mode)
    kept = _KEPT.get(key)
    if kept is not None:
        reset_weights(kept.model, kept.pretrained)
        return WorkerModel(model=kept.model, compile_seconds=0.0, mode=mode, reused=True)
    forget()  # one model per worker: another model's weights and graphs go first
    with torch.random.fork_rng(devices=[]):  # a build that draws (random init before loading) leaves no trace
        model = build_model(cfg.model, task=cfg.task).to(runtime.device)
    pretrained = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    seconds = 0.0
    if mode != "off":
        seconds = _compile(model, mode, cfg=cfg, runtime=runtime, prepared=prepared, key=key)
        reset_weights(model, pretrained)  # the warm-up's training forward moved BatchNorm statistics
    _KEPT[key] = _Kept(key=key, model=model, pretrained=pretrained)
    return WorkerModel(model=model, compile_seconds=seconds, mode=mode, reused=False)


def model_key(cfg: TrialConfig, *, runtime: Runtime, mode: str) -> str:
    """What a kept model must match: the model, the task, the device and precision, how it is compiled, and the
    settings that shape its inputs (batch sizes, pair forward)."""
    blob = {
        "model": to_dict(cfg.model),
        "task": cfg.task,
        "device": str(runtime.device),
        "gpu": runtime.device_name,
        "amp": str(runtime.amp_dtype),
        "mode": mode,
        "shapes": [cfg.train.batch_size, cfg.train.group_size, cfg.eval.batch_size, cfg.train.joint_pair_forward],
        "torch": torch.__version__,
    }
    return config_hash(blob, length=16)


def reset_weights(model: RetrievalModel, pretrained: dict[str, torch.Tensor]) -> None:
    """Back to the model a fresh build gives: pretrained weights and buffers, no gradients, eval mode."""
    model.load_state_dict(pretrained)  # in place: the compiled graphs keep their parameters
    for param in model.parameters():
        param.grad = None
    model.eval()


def forget() -> None:
    """Drop this process's kept model and dynamo's compiled graphs (a new model, or tests)."""
    if _KEPT:
        _KEPT.clear()
        torch._dynamo.reset()


def compile_towers(model: RetrievalModel, mode: str, *, cfg: TrialConfig, pairs: bool) -> None:
    """``torch.compile`` each tower in place (a shared tower once) behind its ``FixedShapes``."""
    towers = [model.query_tower] if model.symmetric else [model.query_tower, model.doc_tower]
    for tower in towers:
        compiled = torch.compile(tower._call_impl, mode=None if mode == "default" else mode)
        # nn.Module.compile sets this same attribute; the wrapper pads before and cuts after the compiled call.
        tower._compiled_call_impl = FixedShapeCall(compiled, FixedShapes.for_tower(tower, cfg, pairs=pairs))


def _compile(
    model: RetrievalModel, mode: str, *, cfg: TrialConfig, runtime: Runtime, prepared: PreparedData, key: str | None
) -> float:
    """Compile and warm up; returns the seconds (device synchronised). Loads and saves torch's cache artifacts."""
    runtime.synchronize()
    start = time.perf_counter()
    path = artifact_path(key) if key is not None else None
    if path is not None and path.is_file():
        with contextlib.suppress(Exception):  # a stale or foreign file only costs the cache hits
            torch.compiler.load_cache_artifacts(path.read_bytes())
    compile_towers(model, mode, cfg=cfg, pairs=isinstance(prepared.pool.data, Pairs))
    warm_up(model, prepared, cfg=cfg, runtime=runtime)
    runtime.synchronize()
    seconds = time.perf_counter() - start
    if path is not None and not path.is_file():
        _save_artifacts(path)
    return seconds


def warm_up(model: RetrievalModel, prepared: PreparedData, *, cfg: TrialConfig, runtime: Runtime) -> None:
    """One training forward and backward and one evaluation forward per tower, on the pool's first items.

    Under the trial's autocast and in the grad modes training and evaluation use, so the graphs made here are the
    ones the trial calls. The random state is restored afterwards: dropout in the warm-up draws nothing the trial
    would otherwise have drawn (a cell's results do not depend on whether its worker had compiled already).
    """
    pool = prepared.pool
    sides = [(model.query_tower, pool.query_features)]
    if not model.symmetric and pool.doc_features is not None:
        sides.append((model.doc_tower, pool.doc_features))
    devices = [runtime.device] if runtime.is_cuda else []
    with torch.random.fork_rng(devices=devices):
        for tower, features in sides:
            rows = np.arange(min(len(features), cfg.train.batch_size))
            batch = {k: runtime.to_device(v) for k, v in tower.collate(features, rows).items()}
            tower.train()
            with runtime.autocast():
                out = tower(batch)
            out.float().sum().backward()
            tower.eval()
            with torch.inference_mode(), runtime.autocast():
                tower(batch)
    for param in model.parameters():
        param.grad = None
    model.eval()


def artifact_path(key: str):
    home = cache_home()
    return home / "compiled" / f"{key}.bin" if home is not None else None


def _save_artifacts(path) -> None:
    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        return
    data, _info = saved
    with contextlib.suppress(OSError):  # a read-only cache home only costs the next worker its hits
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # whole or absent, for a worker reading it at the same time
