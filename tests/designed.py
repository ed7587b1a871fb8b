"""A designed trainable for driver tests: the real record protocol, a known learning curve, no model.

It stands in for ``sweeps.trainable.fit_cell`` (same signature, same final ``RECORD_KEY`` report), so the
driver, the records and the results table are tested against exact expected values. It leaves one marker
file per execution under ``<storage>/markers`` so tests can count how often each cell ran, and it can
kill its own worker process once per cell (``<storage>/kill_once/<cell label>``) to test retries, or hang
once (``<storage>/hang/<cell label>``: no report for ten minutes) to test ``trial_timeout_s``, or raise
``RuntimeError(<the marker's text>)`` on every attempt (``<storage>/raise/<cell label>``).

``fit_cell_with_faults`` runs the REAL ``sweeps.trainable.fit_cell`` and injects a
``torch.cuda.OutOfMemoryError`` from inside the trial (``<storage>/oom/<cell label>``); it counts
executions and accelerator releases the same way. ``DesignedPrepared`` stands in for ``PreparedData``
where the trainable is the designed one (no data or model to prepare).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import tune

from sweeps.config import Cell
from sweeps.results import RECORD_KEY, TrialIdentity, make_record


def designed_metrics(size: int, epoch: int) -> dict[str, float]:
    """mrr rises with size (saturating) and a little with each epoch."""
    mrr = 0.5 + 0.3 * (1.0 - math.exp(-size / 200.0)) + 0.01 * epoch
    return {"mrr@20": mrr, "map@20": mrr - 0.1, "recall@20": mrr / 2}


def designed_train_seconds(size: int, epoch: int) -> float:
    return size / 100.0 * epoch


def executions(storage: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for marker in (Path(storage) / "markers").glob("*"):
        label = marker.name.split(".")[0]
        counts[label] = counts.get(label, 0) + 1
    return counts


def releases(storage: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for marker in (Path(storage) / "released").glob("*"):
        label = marker.name.split(".")[0]
        counts[label] = counts.get(label, 0) + 1
    return counts


@dataclass(frozen=True)
class _Pool:
    data: range
    source: str = "designed-pool"


@dataclass(frozen=True)
class DesignedPrepared:
    """What the driver reads of ``PreparedData`` (dataset, eval_id, data_id, the pool's size) and nothing more."""

    dataset: str = "designed"
    eval_id: str = "designed-eval"
    data_id: str = "designed-data"
    pool_size: int = 10_000

    @property
    def pool(self) -> _Pool:
        return _Pool(data=range(self.pool_size))


def local_storage(storage: str) -> Path:
    """The local folder of a sweep's storage: its path, or that of a ``file://`` URI (tests of the URI path)."""
    return Path(storage[len("file://") :]) if storage.startswith("file://") else Path(storage)


def _mark(storage: Path, folder: str, label: str) -> None:
    (storage / folder).mkdir(parents=True, exist_ok=True)
    (storage / folder / f"{label}.{uuid.uuid4().hex}").touch()


def designed_cell(config: dict, *, sweep, prepared, num_gpus: float) -> None:
    cell = Cell(**config["cell"])
    storage = local_storage(sweep.storage)
    started = time.time()
    _mark(storage, "markers", cell.label)
    delay = float((storage / "delay").read_text()) if (storage / "delay").exists() else 0.0
    kill = storage / "kill_once" / cell.label
    hang = storage / "hang" / cell.label
    boom = storage / "raise" / cell.label
    if boom.exists():
        raise RuntimeError(boom.read_text())  # a trial that crashes (every attempt, while the marker exists)
    if hang.exists():
        hang.unlink()
        time.sleep(600)  # reports nothing: the driver's trial_timeout_s must stop it
    epochs = [0] if cell.size == 0 else list(range(1, cell.epochs + 1))
    rows = []
    for epoch in epochs:
        time.sleep(delay)
        if kill.exists():
            kill.unlink()
            os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-trial, as on a lost node
        row = {
            "epoch": epoch,
            "size": cell.size,
            "epochs": cell.epochs,
            "seed": cell.seed,
            "train_seconds": designed_train_seconds(cell.size, epoch),
            "eval_seconds": 0.5,
            "items_seen": cell.size * epoch,
            "loss": None,
            "peak_memory_mb": 1.0,
            "device": "cpu",
            **designed_metrics(cell.size, epoch),
        }
        rows.append(row)
        tune.report({**row, "cell": cell.label})
    record = make_record(
        TrialIdentity.of(sweep, prepared),
        cell,
        rows=rows,
        num_gpus=num_gpus,
        extra={"gpu_ids": [str(g) for g in ray.get_gpu_ids()], "started_at": started, "finished_at": time.time()},
    )
    tune.report({"cell": cell.label, "status": "ok", "error": "", RECORD_KEY: json.dumps(record)})


def fit_cell_with_faults(config: dict, *, sweep, prepared, num_gpus: float) -> None:
    """The real ``fit_cell``, with an out-of-memory error raised inside the trial where a marker asks for one."""
    import torch

    import sweeps.trainable as trainable
    from sweeps.device import Runtime

    cell = Cell(**config["cell"])
    storage = local_storage(sweep.storage)
    _mark(storage, "markers", cell.label)
    real_run_trial, real_release = trainable.run_trial, Runtime.release
    oom = storage / "oom" / cell.label

    def run_trial(*args, on_epoch=None, **kwargs):
        def report_then_run_out(rep):
            on_epoch(rep)  # the first epoch is reported, then the next allocation fails, as on a GPU
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by the test)")

        return real_run_trial(*args, on_epoch=report_then_run_out if oom.exists() else on_epoch, **kwargs)

    def release(runtime):
        real_release(runtime)
        _mark(storage, "released", cell.label)

    trainable.run_trial, Runtime.release = run_trial, release
    try:
        trainable.fit_cell(config, sweep=sweep, prepared=prepared, num_gpus=num_gpus)
    finally:  # the actor is reused for other cells: leave the modules as they were
        trainable.run_trial, Runtime.release = real_run_trial, real_release


SMOKE = Path(__file__).resolve().parents[1] / "sweeps" / "configs" / "smoke.yaml"


def designed_config(
    storage,
    *,
    name="designed",
    sizes=(50, 100),
    seeds=(0,),
    epochs=2,
    gpus=0.0,
    cpus=1.0,
    max_failures=2,
    trial_timeout_s=None,
    max_concurrent=0,
):
    """The smoke sweep file with another grid and storage: the base of the fault tests and their driver scripts."""
    import dataclasses

    from sweeps.sweepfile import load_sweep_config

    cfg = load_sweep_config(SMOKE)
    return dataclasses.replace(
        cfg,
        name=name,
        storage=str(storage),
        max_failures=max_failures,
        trial_timeout_s=trial_timeout_s,
        sweep=dataclasses.replace(cfg.sweep, sizes=tuple(sizes), seeds=tuple(seeds), epochs=epochs),
        resources=dataclasses.replace(cfg.resources, gpus=gpus, cpus=cpus, max_concurrent=max_concurrent),
    )


def designed_table(cfg):
    """The results table a designed sweep of ``cfg`` must produce: seed, size, epoch, train_seconds, metrics."""
    import pandas as pd

    from sweeps.config import cells_for

    rows = []
    for cell in cells_for(cfg.sweep):
        for epoch in [0] if cell.size == 0 else range(1, cell.epochs + 1):
            rows.append(
                {
                    "seed": cell.seed,
                    "size": cell.size,
                    "epoch": epoch,
                    "train_seconds": designed_train_seconds(cell.size, epoch),
                    **designed_metrics(cell.size, epoch),
                }
            )
    return pd.DataFrame(rows).sort_values(["seed", "size", "epoch"]).reset_index(drop=True)


def designed_adaptive_config(storage, *, name="adaptive", min_size=100, seeds=(0, 1), max_trials=40, max_concurrent=0):
    """The smoke sweep file with ``sweep.sizes: auto``: the designed curve's drop point is known (tests/test_search.py)."""
    import dataclasses

    cfg = designed_config(storage, name=name, seeds=seeds, epochs=1, max_concurrent=max_concurrent)
    sweep = dataclasses.replace(cfg.sweep, sizes="auto", min_size=min_size, max_trials=max_trials)
    return dataclasses.replace(cfg, sweep=sweep)
