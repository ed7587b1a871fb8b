"""The Ray Tune trainable: one grid cell (size, epochs, seed) run by ``run_trial`` inside a Ray actor.

Runs on the workers. It reports every epoch to Tune (so the dashboard and Tune's progress see it), logs
lines that name the cell, exports live metrics through ``ray.util.metrics``, and finally reports the
trial's whole record (``results.RECORD_KEY``). The driver writes it to the run folder
(``tune_ext.RecordCallback``), so workers need no access to the results storage, and the record, not Tune's
experiment state, is what a resumed or extended sweep trusts.

Failure policy: errors a user must fix (bad data, a size larger than the pool) and running out of GPU
memory are recorded as failed trials with their reason and are NOT retried (a retry at the same settings
would fail the same way, and a retry at a smaller batch would measure another configuration: the batch
size shapes the in-batch-negative loss, so the cell would no longer be comparable with its neighbours);
any other crash propagates so that Tune retries the trial (``max_failures``). Either way the accelerator's
cached memory is released (``Runtime.release``) before the actor (reused across cells) runs its next trial. See
``docs/reliability.md``.
"""

from __future__ import annotations

import json
import logging
import time
import traceback

import ray
import torch
from ray import tune
from ray.util import metrics as ray_metrics

from sweeps.budget import Budget
from sweeps.config import Cell, SweepConfig
from sweeps.device import Runtime, resolve_runtime
from sweeps.errors import UserError
from sweeps.prepare import PreparedData
from sweeps.progress import EpochReport
from sweeps.results import RECORD_KEY, TrialIdentity, make_record
from sweeps.trial import run_trial

log = logging.getLogger("sweeps.trial")

_GAUGES: dict[str, ray_metrics.Gauge] = {}


def _gauge(name: str, description: str) -> ray_metrics.Gauge:
    # One metric object per process: Ray aggregates by name and tags.
    if name not in _GAUGES:
        _GAUGES[name] = ray_metrics.Gauge(name, description=description, tag_keys=("sweep", "cell"))
    return _GAUGES[name]


def _log_to_console() -> None:
    # Worker processes start with Python's default WARNING level; Ray forwards their stderr to the
    # driver's terminal and to the dashboard's log view, so one INFO handler makes epoch lines visible.
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def fit_cell(config: dict, *, sweep: SweepConfig, prepared: PreparedData, num_gpus: float) -> None:
    """Tune function trainable for one cell; ``config`` holds only the cell (the searched space)."""
    _log_to_console()
    started_at = time.time()
    cell = Cell(**config["cell"])
    identity = TrialIdentity.of(sweep, prepared)
    tid = identity.trial_id(cell)
    tags = {"sweep": sweep.name, "cell": f"{prepared.dataset}-{cell.label}"}
    prefix = f"[{sweep.name} {prepared.dataset} size={cell.size} epochs={cell.epochs} seed={cell.seed}]"
    reports: list[EpochReport] = []
    last = {"train_seconds": 0.0, "items_seen": 0}

    def on_epoch(rep: EpochReport) -> None:
        reports.append(rep)
        # Since the last report: under a step minimum the one report follows several epochs.
        delta = rep.train_seconds - last["train_seconds"]
        items = rep.items_seen - last["items_seen"]
        last.update(train_seconds=rep.train_seconds, items_seen=rep.items_seen)
        throughput = items / delta if delta > 0 and items > 0 else 0.0
        shown = " ".join(f"{k}={v:.4f}" for k, v in rep.metrics.items())
        log.info(
            "%s epoch %d/%d %s train=%.1fs (%.0f items/s) eval=%.1fs",
            prefix,
            rep.epoch,
            rep.epochs,
            shown,
            rep.train_seconds,
            throughput,
            rep.eval_seconds,
        )
        _gauge("finetuning_budget_items_per_second", "training items per second of the trial's last epoch").set(
            throughput, tags=tags
        )
        _gauge("finetuning_budget_latest_mrr", "latest mrr@k of the cell on the held-out set").set(
            rep.metrics[f"mrr@{sweep.trial.eval.k}"], tags=tags
        )
        row = {k: v for k, v in rep.as_row().items() if k != "query_scores"}  # per-query lists go to the record only
        tune.report({**row, "cell": cell.label, "trial_id": tid, "items_per_second": throughput})

    status, error = "ok", ""
    start = time.perf_counter()
    runtime: Runtime | None = None
    try:
        runtime = resolve_runtime(sweep.trial.device, sweep.trial.train.precision, task=sweep.trial.task)
        runtime.limit_memory(num_gpus)
        run_trial(
            sweep.trial,
            prepared=prepared,
            size=cell.size,
            epochs=cell.epochs,
            seed=cell.seed,
            runtime=runtime,
            on_epoch=on_epoch,
            budget=Budget.for_cell(
                sweep.sweep,
                epochs=cell.epochs,
                train_to=cell.train_to,
                select_epoch=cell.selects_epoch,
                refit=cell.refits,
            ),
        )
    except UserError as exc:
        status, error = "failed", exc.message
    except torch.OutOfMemoryError:  # the same class as torch.cuda.OutOfMemoryError
        status = "failed"
        error = (
            f"out of GPU memory at train.batch_size={sweep.trial.train.batch_size}, eval.batch_size={sweep.trial.eval.batch_size} "
            f"with {num_gpus:g} GPU per trial (a fraction also caps the trial's share of GPU memory; "
            "not retried: the same settings would run out again); "
            "fix: lower train.batch_size or eval.batch_size, or raise resources.gpus, then roi sweep FILE --resume"
        )
        log.error("%s %s\n%s", prefix, error, traceback.format_exc(limit=3))
    finally:
        # Leave nothing on the accelerator for the next trial this (possibly reused) actor runs. run_trial
        # released it too, but while an error was still in flight its traceback held the trial's tensors;
        # here the error has been handled.
        if runtime is not None:
            runtime.release()
    record = make_record(
        identity,
        cell,
        rows=[r.as_row() for r in reports] if status == "ok" else [],
        num_gpus=num_gpus if runtime is not None and runtime.is_cuda else 0.0,
        status=status,
        error=error,
        extra={"gpu_ids": [str(g) for g in ray.get_gpu_ids()], "started_at": started_at, "finished_at": time.time()},
    )
    if status != "ok":
        log.error("%s failed: %s", prefix, error)
    else:
        log.info("%s done in %.1fs wall", prefix, time.perf_counter() - start)
    tune.report({"cell": cell.label, "trial_id": tid, "status": status, "error": error, RECORD_KEY: json.dumps(record)})
