"""A designed trainable for driver tests: the real record protocol, a known learning curve, no model.

It stands in for ``sweeps.trainable.fit_cell`` (same signature, same final ``record_json`` report), so the
driver, the records and the results table are tested against exact expected values. It leaves one marker
file per execution under ``<storage>/markers`` so tests can count how often each cell ran, and it can
kill its own worker process once per cell (``<storage>/kill_once/<cell label>``) to test retries.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
import uuid
from pathlib import Path

import ray
from ray import tune

from sweeps.results import Cell, make_record, trial_id


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


def designed_cell(config: dict, *, sweep, prepared, num_gpus: float) -> None:
    cell = Cell(**config["cell"])
    storage = Path(sweep.storage)
    started = time.time()
    (storage / "markers").mkdir(parents=True, exist_ok=True)
    (storage / "markers" / f"{cell.label}.{uuid.uuid4().hex}").touch()
    delay = float((storage / "delay").read_text()) if (storage / "delay").exists() else 0.0
    kill = storage / "kill_once" / cell.label
    epochs = [0] if cell.size == 0 else list(range(1, cell.epochs + 1))
    rows = []
    for epoch in epochs:
        time.sleep(delay)
        if kill.exists():
            kill.unlink()
            os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-trial, as on a lost node
        row = {
            "epoch": epoch, "size": cell.size, "epochs": cell.epochs, "seed": cell.seed,
            "train_seconds": designed_train_seconds(cell.size, epoch), "eval_seconds": 0.5, "items_seen": cell.size * epoch,
            "loss": None, "peak_memory_mb": 1.0, "device": "cpu", **designed_metrics(cell.size, epoch),
        }
        rows.append(row)
        tune.report({**row, "cell": cell.label})
    tid = trial_id(sweep.trial, cell, eval_id=prepared.eval_id)
    record = make_record(
        sweep=sweep.name, experiment=sweep.sweep.experiment, tid=tid, cfg=sweep.trial, cell=cell, dataset=prepared.dataset,
        eval_set=prepared.eval_id, num_gpus=num_gpus, rows=rows,
        extra={"gpu_ids": [str(g) for g in ray.get_gpu_ids()], "started_at": started, "finished_at": time.time()},
    )
    tune.report({"cell": cell.label, "status": "ok", "error": "", "record_json": json.dumps(record)})
