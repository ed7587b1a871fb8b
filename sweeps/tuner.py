"""The sweep driver: Ray Tune over the pending cells of a sweep file, on an embedded or remote Ray.

``run_sweep`` composes ``Tuner(with_resources(with_parameters(fit_cell, ...)), TuneConfig, RunConfig,
param_space)`` over the cells that have no finished record yet, then rebuilds the results table from the
records. The records, not Tune's experiment state, decide what runs: ``--resume`` after a crash and an
extension with new sizes or seeds both start a fresh Tune experiment over the cells without a finished
record. Tune saves its own state only every few seconds, so restoring it (``Tuner.restore``) after a
killed driver would train again cells that had finished since its last save; our trainable keeps no
checkpoints, so a restore would gain nothing; and the state is pickled, so not unpickling it is safer.
Failure policy: ``docs/reliability.md``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import ray
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler

from sweeps.config import SweepConfig, config_hash, to_dict
from sweeps.errors import ConfigError, SweepInterrupted
from sweeps.local import check_sizes
from sweeps.prepare import PreparedData, prepare_data
from sweeps.results import (
    DRIVER_STATE,
    Cell,
    cells_for,
    check_run_dir,
    check_same_data,
    corrupt_relpath,
    make_record,
    read_records,
    records_to_table,
    trial_id,
    write_record,
    write_run_metadata,
    write_table,
)
from sweeps.storage import RunFolder
from sweeps.trainable import fit_cell

log = logging.getLogger("sweeps.tuner")


@dataclass(frozen=True)
class SweepOutcome:
    run_dir: Path | str  # a local Path, or the URI of a run folder in object storage
    table: pd.DataFrame
    ran: int  # cells run by this call
    skipped: int  # cells that already had a finished record
    failed: int  # cells recorded as failed


def connect(address: str | None, *, logical_gpus: int | None = None, num_cpus: int | None = None) -> str:
    """Start an embedded Ray (dashboard on 127.0.0.1, token auth left on) or join a cluster; returns the dashboard URL."""
    if ray.is_initialized():  # e.g. tests, or a Ray job that already connected
        return ""
    kwargs = {"log_to_driver": True}
    if address:
        try:
            ctx = ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            raise ConfigError(
                f"no Ray cluster at {address!r}: {str(exc).splitlines()[0][:200]}",
                field="--address",
                fix="start the cluster first (ray up cluster.yaml), or leave out --address for an embedded Ray",
            ) from None
    else:
        # Ray turns on token auth for local clusters; we keep it, and keep the dashboard off the network.
        ctx = ray.init(
            num_gpus=logical_gpus, num_cpus=num_cpus, dashboard_host="127.0.0.1", include_dashboard=True, **kwargs
        )
    url = ctx.dashboard_url or ""
    return f"http://{url}" if url and not url.startswith("http") else url


def resolve_gpus(cfg: SweepConfig, *, embedded: bool) -> float:
    """GPUs per trial; ``auto`` is 1 where the cluster has GPUs.

    On the embedded Ray, asking for more GPUs than the machine has is an error now rather than a sweep
    pending forever. A remote cluster may autoscale GPU workers from zero, so there it is a warning.
    """
    cluster_gpus = max((n["Resources"].get("GPU", 0.0) for n in ray.nodes() if n.get("Alive")), default=0.0)
    want = cfg.resources.gpus
    if want == "auto":
        return 1.0 if cluster_gpus >= 1 else 0.0
    if want > cluster_gpus:
        problem = f"each trial asks for {want:g} GPU(s) but the largest node has {cluster_gpus:g}"
        if embedded:
            raise ConfigError(
                problem,
                field="resources.gpus",
                fix="lower resources.gpus (0 or auto trains on the CPU), or run on a GPU cluster with --address",
            )
        print(f"warning: {problem}; trials wait until the autoscaler adds GPU nodes", flush=True)
    return float(want)


def run_sweep(
    cfg: SweepConfig,
    *,
    address: str | None = None,
    resume: bool = False,
    logical_gpus: int | None = None,
    prepared: PreparedData | None = None,
    trainable: Callable = fit_cell,
    verbose: int = 0,
) -> SweepOutcome:
    """Run every cell of ``cfg`` that has no finished record, and rebuild the results table.

    Args:
        address: a Ray cluster to join (``auto``); None starts an embedded Ray.
        resume: continue an interrupted run or extend a finished one; without it an existing run folder
            with finished trials is refused.
        logical_gpus: embedded Ray only: the number of GPUs to declare (tests of GPU packing on a CPU).
        prepared: already-prepared data (default: prepared here, once for the whole sweep).
        trainable: the Tune function trainable (default ``fit_cell``); tests pass designed ones.
        verbose: Tune's own console output (0: only this driver's progress lines).
    """
    folder = RunFolder.of(cfg.storage, cfg.name)
    # Everything a user can get wrong is checked before the run folder is written (or Ray started):
    # a refused sweep leaves nothing behind.
    check_run_dir(folder, cfg, resume=resume)
    prepared = prepared or prepare_data(cfg.trial)
    cells = cells_for(cfg.sweep)
    check_sizes(cells, prepared, field="sweep.sizes" if cfg.sweep.experiment == "data_size" else "sweep.size")
    dashboard = connect(address, logical_gpus=logical_gpus)
    if dashboard:
        print(f"[{cfg.name}] Ray dashboard: {dashboard}", flush=True)
    gpus = resolve_gpus(cfg, embedded=address is None)
    write_run_metadata(folder, to_dict(cfg))

    scan = read_records(folder)
    check_same_data(scan.records, data_id=prepared.data_id, cfg=cfg)
    for path in scan.corrupt:
        print(f"[{cfg.name}] warning: unreadable result record {path}: its cell will run again", flush=True)
        folder.delete(corrupt_relpath(path))
    if cfg.sweep.sizes == "auto":  # the adaptive grid: a Tune Searcher proposes the cells (sweeps/search.py)
        from sweeps.search import run_adaptive

        def fit(alg) -> None:
            _fit(
                cfg,
                [],
                folder=folder,
                prepared=prepared,
                gpus=gpus,
                trainable=trainable,
                verbose=verbose,
                search_alg=alg,
            )

        searcher, records = run_adaptive(cfg, folder=folder, prepared=prepared, records=scan.records, fit=fit)
        folder.delete(DRIVER_STATE)
        failed = sum(1 for r in records if r["status"] != "ok")
        table = records_to_table(records, k=cfg.trial.eval.k)
        return SweepOutcome(folder.location(), table, ran=len(searcher.proposed), skipped=0, failed=failed)
    done = {r["trial_id"] for r in scan.records if r["status"] == "ok"}
    pending = [c for c in cells if trial_id(cfg.trial, c, data_id=prepared.data_id) not in done]
    print(
        f"[{cfg.name}] {len(cells)} cells: {len(cells) - len(pending)} already done, {len(pending)} to run ({gpus:g} GPU/trial)",
        flush=True,
    )

    if pending:
        _fit(cfg, pending, folder=folder, prepared=prepared, gpus=gpus, trainable=trainable, verbose=verbose)

    records = read_records(folder).records
    table = records_to_table(records, k=cfg.trial.eval.k)
    write_table(folder, table)  # what finished, also after an interruption: nothing computed is lost
    recorded = {r["trial_id"] for r in records}
    ids = {c: trial_id(cfg.trial, c, data_id=prepared.data_id) for c in pending}
    unfinished = [c for c in pending if ids[c] not in recorded]
    if unfinished:
        # Tune catches the first Ctrl-C itself and returns from fit() as if the grid were done; so the records
        # are the judge. The driver state stays: `roi status` shows the run as interrupted.
        raise SweepInterrupted(folder.location(), unfinished=len(unfinished), total=len(cells))
    folder.delete(DRIVER_STATE)
    failed = sum(1 for r in records if r["status"] != "ok")
    return SweepOutcome(
        run_dir=folder.location(), table=table, ran=len(pending), skipped=len(cells) - len(pending), failed=failed
    )


def _fit(
    cfg: SweepConfig,
    pending: list[Cell],
    *,
    folder: RunFolder,
    prepared: PreparedData,
    gpus: float,
    trainable: Callable,
    verbose: int,
    search_alg=None,
) -> None:
    # A fresh Tune experiment per call, over the cells without a finished record (see the module docstring).
    experiment = f"tune-{config_hash([to_dict(c) for c in pending], length=8)}-{time.strftime('%Y%m%d-%H%M%S')}"
    trainable = tune.with_resources(
        tune.with_parameters(trainable, sweep=cfg, prepared=prepared, num_gpus=gpus),
        {"cpu": cfg.resources.cpus, "gpu": gpus},
    )

    # not `prepared`: Tune pickles the scheduler holding this
    dataset, eval_id, data_id = prepared.dataset, prepared.eval_id, prepared.data_id

    written: set[str] = set()  # trial ids recorded during this fit (by the trials, or as failed here)

    def record_failure(cell: Cell, error: str) -> None:
        written.add(trial_id(cfg.trial, cell, data_id=data_id))
        write_record(
            folder,
            make_record(
                sweep=cfg.name,
                experiment=cfg.sweep.experiment,
                tid=trial_id(cfg.trial, cell, data_id=data_id),
                cfg=cfg.trial,
                cell=cell,
                dataset=dataset,
                eval_set=eval_id,
                data_id=data_id,
                num_gpus=gpus,
                rows=[],
                status="failed",
                error=error,
            ),
        )

    folder.write_text(DRIVER_STATE, json.dumps({"experiment": experiment, "cells": [to_dict(c) for c in pending]}))
    scheduler = TrialTimeout(cfg.trial_timeout_s, on_timeout=record_failure) if cfg.trial_timeout_s else None
    tuner = tune.Tuner(
        trainable,
        param_space={} if search_alg else {"cell": tune.grid_search([dataclasses.asdict(c) for c in pending])},
        tune_config=tune.TuneConfig(
            search_alg=search_alg,  # the adaptive grid's searcher proposes cells until it says FINISHED
            num_samples=-1 if search_alg else 1,
            max_concurrent_trials=cfg.resources.max_concurrent or None,
            reuse_actors=True,  # one actor (imports, CUDA context) serves many cells
            scheduler=scheduler,
            trial_name_creator=lambda t: f"{cfg.name}-{Cell(**t.config['cell']).label}",
            trial_dirname_creator=lambda t: f"{Cell(**t.config['cell']).label}-{t.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=experiment,
            storage_path=folder.tune_storage_path,
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
            callbacks=[
                RecordCallback(folder, written),
                ProgressCallback(cfg.name, total=len(pending) or cfg.sweep.max_trials + 1),
            ],
            verbose=verbose,
        ),
    )
    results = tuner.fit()
    # Trials that crashed past their retries wrote no record this time: record them as failed, with the error
    # that ended them (replacing a failed record of an earlier attempt, whose error may be another one).
    for result in results:
        if result.error is None or not result.config:
            continue
        cell = Cell(**result.config["cell"])
        if trial_id(cfg.trial, cell, data_id=data_id) not in written:
            record_failure(cell, describe_error(result.error))


class TrialTimeout(FIFOScheduler):
    """FIFO scheduling plus ``trial_timeout_s``: a running trial that reports nothing for that long is stopped.

    A ``Stopper`` only sees results, so it can never stop a trial that stopped reporting; the scheduler is
    asked which trial to run at every step of Tune's event loop (about ten times a second), which is where
    this checks the running trials. A timed-out trial is recorded as failed at once (``on_timeout``), is
    failed through Tune's own error path with no retry (a hang at the same settings tends to hang again,
    and each retry would cost the whole timeout), and its actor is killed so that its GPU is free at once.
    """

    def __init__(self, timeout_s: float, *, on_timeout: Callable[[Cell, str], None]):
        super().__init__()
        self.timeout_s = float(timeout_s)
        self.on_timeout = on_timeout
        self._last: dict[tuple[str, int], float] = {}  # (trial id, failures so far) -> last sign of life

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        self._last[(trial.trial_id, trial.run_metadata.num_failures)] = time.monotonic()
        return super().on_trial_result(tune_controller, trial, result)

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        self._stop_hung(tune_controller)
        return super().choose_trial_to_run(tune_controller)

    def _stop_hung(self, tune_controller) -> None:
        now = time.monotonic()
        running = {
            (t.trial_id, t.run_metadata.num_failures): t
            for t in tune_controller.get_trials()
            if t.status == Trial.RUNNING
        }
        for key in list(self._last):
            if key not in running:
                del self._last[key]
        for key, trial in running.items():
            since = self._last.setdefault(key, now)
            if now - since <= self.timeout_s:
                continue
            reason = f"no report for {now - since:.0f} s (trial_timeout_s = {self.timeout_s:g}): stopped as hung, not retried"
            print(f"[trial {Cell(**trial.config['cell']).label}] {reason}", flush=True)
            self.on_timeout(Cell(**trial.config["cell"]), f"TrialTimeout: {reason}")
            del self._last[key]
            actor = trial.temporary_state.ray_actor
            controller = getattr(tune_controller, "_tune_controller", tune_controller)  # past the scheduler's API guard
            trial.max_failures = 0  # this trial only: fail now, no retry
            controller._process_trial_failure(trial, exception=TimeoutError(reason))
            if actor is not None:
                ray.kill(actor, no_restart=True)  # else Tune waits TUNE_FORCE_TRIAL_CLEANUP_S (600 s) for a hung actor

    def __getstate__(self) -> dict:  # Tune pickles its scheduler with the experiment state
        return {**self.__dict__, "_last": {}}


_DRIVER_GAUGES: dict = {}


def _driver_gauge(key: str):
    # Module-level, so the gauges live as long as the driver process: a collected Gauge stops exporting.
    if key not in _DRIVER_GAUGES:
        from ray.util.metrics import Gauge

        _DRIVER_GAUGES[key] = Gauge(
            f"finetuning_budget_trials_{key}", description=f"trials {key} in the sweep", tag_keys=("sweep",)
        )
    return _DRIVER_GAUGES[key]


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def describe_error(error: BaseException) -> str:
    """One readable line for a trial's error: the cause inside Ray's wrapper (``RayTaskError(RuntimeError)``
    prints its own header first, with colour codes), as ``Type: message``."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        error = cause
    lines = [line for line in _ANSI.sub("", str(error)).splitlines() if line.strip()] or [""]
    return f"{type(error).__name__}: {lines[0].strip()[:500]}"


class RecordCallback(tune.Callback):
    """Writes each trial's record (its last report) to the run folder as soon as the driver receives it.

    ``written`` collects the trial ids recorded during this fit (shared with the driver's failure handling).
    """

    def __init__(self, folder: RunFolder, written: set[str] | None = None):
        self.folder = folder
        self.written = written if written is not None else set()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if "record_json" in result:
            record = json.loads(result["record_json"])
            write_record(self.folder, record)
            self.written.add(record["trial_id"])


class ProgressCallback(tune.Callback):
    """One line per finished trial: done/total, best metric so far, elapsed and estimated time left."""

    def __init__(self, name: str, *, total: int):
        self.name, self.total = name, total
        self.done = self.failed = 0
        self.best: dict[str, float] = {}
        self.start = time.perf_counter()

    def _publish(self) -> None:
        for key, value in (
            ("done", self.done),
            ("failed", self.failed),
            ("left", self.total - self.done - self.failed),
        ):
            _driver_gauge(key).set(value, tags={"sweep": self.name})

    def setup(self, **info) -> None:
        self._publish()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        for key, value in result.items():
            if "@" in key and isinstance(value, float) and result.get("size", 0) > 0:
                self.best[key] = max(self.best.get(key, float("-inf")), value)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        failed = trial.last_result.get("status") == "failed"
        self.failed += failed
        self.done += not failed
        self._report()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.failed += 1
        self._report()

    def _report(self) -> None:
        self._publish()
        finished = self.done + self.failed
        elapsed = time.perf_counter() - self.start
        eta = elapsed / finished * (self.total - finished) if finished else float("nan")
        best = " ".join(f"best {k} {v:.4f}" for k, v in sorted(self.best.items()))
        print(
            f"[{self.name}] trials {finished}/{self.total} ({self.failed} failed) {best} elapsed {elapsed:.0f}s, ~{eta:.0f}s left",
            flush=True,
        )
