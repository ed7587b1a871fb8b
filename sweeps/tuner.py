"""The sweep driver: Ray Tune over the pending cells of a sweep file, on an embedded or remote Ray.

``run_sweep`` composes ``Tuner(with_resources(with_parameters(fit_cell, ...)), TuneConfig, RunConfig,
param_space)`` over the cells that have no finished record yet, then rebuilds the results table from the
records. It reaches the run folder through ``sweeps.runs`` only (``open_run``: checks, lock, the records it
scanned; ``close_run``: the table), never ``sweeps.results`` itself. The records, not Tune's experiment state, decide what runs: ``--resume`` after a crash and an
extension with new sizes or seeds both start a fresh Tune experiment over the cells without a finished
record. Tune saves its own state only every few seconds, so restoring it (``Tuner.restore``) after a
killed driver would train again cells that had finished since its last save; our trainable keeps no
checkpoints, so a restore would gain nothing; and the state is pickled, so not unpickling it is safer.
The project's extensions of Tune (the hung-trial scheduler, the callbacks, gauges and error text) are
``sweeps.tune_ext``; the run folder's checks, lock and metadata are ``sweeps.runs``. Failure policy:
``docs/reliability.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import ray
from ray import tune

from sweeps.compile_plan import plan_compile, with_compile
from sweeps.config import Cell, SweepConfig, cells_for
from sweeps.dataclass_io import config_hash, to_dict
from sweeps.errors import ConfigError, SweepInterrupted
from sweeps.prepare import PreparedData
from sweeps.runs import Run, close_run, mark_running, open_run, record_failure
from sweeps.tracking import tracking_callbacks
from sweeps.trainable import fit_cell
from sweeps.tune_ext import ProgressCallback, RecordCallback, TrialTimeout, describe_error


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
    # Inside `ray job submit` without --address, the job's cluster (RAY_ADDRESS) is the one to join.
    address = address or os.environ.get("RAY_ADDRESS") or None
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
        # address="local": always a new embedded Ray. With no address ray.init() joins whatever `ray start`
        # left running on this machine (it reads /tmp/ray/ray_current_cluster), then refuses num_cpus.
        ctx = _start_embedded(logical_gpus=logical_gpus, num_cpus=num_cpus, **kwargs)
    url = ctx.dashboard_url or ""
    return f"http://{url}" if url and not url.startswith("http") else url


DASHBOARD_STARTUP_S = 300  # Ray's own default is 60 s, which a busy 2-core machine can miss


def _start_embedded(*, logical_gpus: int | None, num_cpus: int | None, **kwargs):
    """``ray.init`` of a new local Ray with the dashboard, or without it when the dashboard does not come up.

    Ray fails the whole ``ray.init`` when its dashboard process does not report within
    ``RAY_DASHBOARD_STARTUP_TIMEOUT_S`` (60 s by default), which happens on a loaded machine. The dashboard
    is for watching; the sweep does not need it: wait longer (unless the user set the variable), and if it
    still fails, say so and run without it.
    """
    from ray._private import ray_constants

    if "RAY_DASHBOARD_STARTUP_TIMEOUT_S" not in os.environ:  # read by Ray at import: set the constant itself
        ray_constants.RAY_DASHBOARD_STARTUP_TIMEOUT_S = max(
            ray_constants.RAY_DASHBOARD_STARTUP_TIMEOUT_S, DASHBOARD_STARTUP_S
        )
    options = dict(address="local", num_gpus=logical_gpus, num_cpus=num_cpus, _node_ip_address="127.0.0.1", **kwargs)
    with _loopback_node():
        try:
            return ray.init(dashboard_host="127.0.0.1", include_dashboard=True, **options)
        except Exception as exc:  # Ray raises a bare Exception with the dashboard's log lines
            if ray.is_initialized():
                ray.shutdown()
            reason = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
            print(
                f"warning: the Ray dashboard did not start ({reason}); running the sweep without it "
                "(roi status RUN shows progress; set RAY_DASHBOARD_STARTUP_TIMEOUT_S to wait longer)",
                file=sys.stderr,
            )
            return ray.init(include_dashboard=False, **options)


@contextlib.contextmanager
def _loopback_node():
    """Keep the embedded Ray's node address on 127.0.0.1, so every port it opens listens on loopback only.

    Ray binds its servers to the node address (GCS, raylet, object manager, workers; the dashboard agent's
    gRPC and its Prometheus metrics exporter bind to loopback when the node address is loopback), but
    ``ray.init(_node_ip_address="127.0.0.1")`` alone is turned into the machine's own address unless
    ``ray_constants.ENABLE_RAY_CLUSTER`` is off (the switch behind ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``,
    read when Ray is imported, so too late to set in the environment here). Private to Ray 2.60; the test
    that no port listens beyond loopback (tests/test_faults.py) fails if an upgrade moves it.
    """
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False  # only while ray.init resolves the node address
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


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
    cells = cells_for(cfg.sweep)

    def ray_ready() -> float:  # the last check: Ray is reachable and has the GPUs asked for
        dashboard = connect(address, logical_gpus=logical_gpus)
        if dashboard:
            print(f"[{cfg.name}] Ray dashboard: {dashboard}", flush=True)
        return resolve_gpus(cfg, embedded=address is None)

    size_field = "sweep.sizes" if cfg.sweep.experiment == "data_size" else "sweep.size"
    run = open_run(cfg, cells, resume=resume, size_field=size_field, prepared=prepared, last_check=ray_ready)
    gpus, pending, searcher = run.checked, run.pending, None
    adaptive = cfg.sweep.sizes == "auto"  # a Tune Searcher proposes the cells (sweeps/search.py)
    if adaptive:
        from sweeps import search

        done_before = len({r["trial_id"] for r in run.records if r["status"] == "ok"})
        print(f"[{cfg.name}] adaptive grid: {done_before} cells already done", flush=True)
    else:
        done_before = len(cells) - len(pending)
        print(
            f"[{cfg.name}] {len(cells)} cells: {done_before} already done, {len(pending)} to run ({gpus:g} GPU/trial)",
            flush=True,
        )
    fitted = False
    try:
        if adaptive:
            searcher = search.adaptive_searcher(cfg, prepared=run.prepared, records=run.records)
        if searcher is not None or pending:
            _fit(run, gpus=gpus, trainable=trainable, verbose=verbose, search_alg=searcher)
        fitted = True
    finally:
        # the adaptive grid's account (adaptive.json) is written with the table, under the lock, after a fit
        account = (lambda records: search.account(searcher, records)) if adaptive and fitted else None
        table = close_run(run, account=account)
    # Tune catches the first Ctrl-C itself and returns from fit() as if the grid were done; so the records (or
    # the searcher) are the judge. The driver state stays: `roi status` shows the run as interrupted.
    if searcher is None:
        unfinished, total, ran = len(run.unfinished), len(cells), len(pending)
    else:
        unfinished, total, ran = search.left_unfinished(searcher), len(searcher.proposed) or 1, len(searcher.proposed)
    if unfinished:
        raise SweepInterrupted(run.folder.location(), unfinished=unfinished, total=total)
    if searcher is not None:
        final = searcher.final or searcher.plan()
        sizes = search.measured_sizes(run.records)
        print(
            f"[{cfg.name}] adaptive grid: {final.reason} ({searcher.sized_trials()} trials; sizes {sizes})", flush=True
        )
    failed = table.loc[table["status"] != "ok", "trial_id"].nunique()
    return SweepOutcome(run.folder.location(), table, ran=ran, skipped=done_before, failed=failed)


def _longest_first(cells: list[Cell]) -> list[Cell]:
    """The cells in the order Tune should start them: the largest (size, epochs) first, seeds in their order.

    The longest trials first, the short ones filling in behind them (longest-processing-time-first), so the sweep
    does not end on one long trial running alone: `make run`'s second 400-item refit trial ran 221 s alone on one
    of the two cores after everything else had finished (2026-12-07)."""
    return sorted(cells, key=lambda c: (c.size, c.epochs), reverse=True)  # stable: ties keep their order


def _fit(run: Run, *, gpus: float, trainable: Callable, verbose: int, search_alg=None) -> None:
    cfg, pending, folder, prepared = run.cfg, run.pending, run.folder, run.prepared
    # A fresh Tune experiment per call, over the cells without a finished record (see the module docstring).
    experiment = f"tune-{config_hash([to_dict(c) for c in pending], length=8)}-{time.strftime('%Y%m%d-%H%M%S')}"
    # train.compile auto -> a mode, decided once for the cells of this fit and printed (sweeps/compile_plan.py)
    decision = plan_compile(cfg, pending, gpus_per_trial=gpus, cluster_gpus=ray.cluster_resources().get("GPU", 0.0))
    print(f"[{cfg.name}] {decision.line()}", flush=True)
    trainable = tune.with_resources(
        tune.with_parameters(trainable, sweep=with_compile(cfg, decision.mode), prepared=prepared, num_gpus=gpus),
        {"cpu": cfg.resources.cpus, "gpu": gpus},
    )

    identity = run.identity  # not `run` or `prepared`: Tune pickles the scheduler holding this
    written: set[str] = set()  # trial ids recorded during this fit (by the trials, or as failed here)

    def on_failure(cell: Cell, error: str) -> None:
        written.add(record_failure(folder, identity, cell, error=error, num_gpus=gpus))

    mark_running(run, experiment=experiment)
    scheduler = TrialTimeout(cfg.trial_timeout_s, on_timeout=on_failure) if cfg.trial_timeout_s else None
    tuner = tune.Tuner(
        trainable,
        param_space={}
        if search_alg
        else {"cell": tune.grid_search([dataclasses.asdict(c) for c in _longest_first(pending)])},
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
                ProgressCallback(cfg.name, total=len(pending) if not search_alg else cfg.sweep.max_trials + 1),
                # MLflow, TensorBoard (tracking: in the sweep file), keyed by trial id like the records
                *tracking_callbacks(cfg, folder, identity),
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
        if identity.trial_id(cell) not in written:
            on_failure(cell, describe_error(result.error))
