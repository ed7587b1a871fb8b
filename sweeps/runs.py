"""A run folder's lifecycle, the same for ``roi sweep`` (``sweeps.tuner``) and ``roi trial`` (``sweeps.local``).

``open_run`` checks, in one fixed order, everything a user can get wrong, before it writes anything:

1. the run folder can be written (a local folder; an object store reports its errors on first use);
2. no other driver holds the run folder (``sweeps.runlock``; a lock whose driver is gone is taken over);
3. its records are of this version of the tool;
4. its saved config has the same trial settings;
5. a folder with finished trials needs ``--resume``;
6. the data (prepared here unless given) fits every cell's size;
7. the data's content is the one the folder's trials ran on;
8. the runner's own last check (``roi sweep``: Ray is reachable and has the GPUs asked for).

Only then it removes unreadable records (their cells run again, with a warning naming each file) and writes
the metadata (``config.yaml``, a sweep file ``roi sweep`` accepts as it is, and ``versions.json``). A refused
run leaves the folder as it found it. ``close_run`` rebuilds the results table from the records, writes it,
and lets go of the lock. The records and the table themselves are ``sweeps.results``' contract: the drivers
(``sweeps.tuner``, ``sweeps.local``) reach them through the ``Run`` (its records, ``record``, ``record_failure``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from sweeps.config import Cell, SweepConfig, SweepSpec
from sweeps.dataclass_io import to_dict
from sweeps.errors import ConfigError, DataError
from sweeps.results import (
    LOCATION_FIELDS,
    RECORD_VERSION,
    RecordScan,
    RunDir,
    TrialIdentity,
    corrupt_relpath,
    execution_neutral,
    make_record,
    portable_config,
    read_records,
    records_to_table,
    write_query_table,
    write_record,
    write_table,
)
from sweeps.runlock import RunLock
from sweeps.storage import RunFolder
from sweeps.sweepfile import SWEEP_KEYS, parse_yaml, to_sweep_file

if TYPE_CHECKING:  # the analysis half (`roi status`) imports this module without torch
    from sweeps.prepare import PreparedData

DRIVER_STATE = "driver_state.json"  # the cells a running (or interrupted) driver was given
CONFIG_FILE = "config.yaml"
VERSIONS_FILE = "versions.json"


@dataclass
class Run:
    """An opened run folder: what ``open_run`` found and holds until ``close_run``."""

    cfg: SweepConfig
    folder: RunFolder
    prepared: PreparedData
    cells: list[Cell]  # what this call was asked to run
    pending: list[Cell]  # those without a finished record
    lock: RunLock
    checked: Any = None  # what the runner's last check returned (``roi sweep``: GPUs per trial)
    # the records: as scanned by ``open_run`` (ok and failed), then as ``close_run`` read them back
    records: list[dict] = field(default_factory=list)
    ids: dict[Cell, str] = field(default_factory=dict)  # trial id of each cell
    driver_state: bool = False  # this driver wrote DRIVER_STATE (``mark_running``)
    unfinished: list[Cell] = field(default_factory=list)  # pending cells without a record (``close_run``)

    @property
    def identity(self) -> TrialIdentity:
        """What this run's trial records share (small and picklable: what Tune's workers and hooks get)."""
        return TrialIdentity.of(self.cfg, self.prepared)

    def trial_id(self, cell: Cell) -> str:
        if cell not in self.ids:
            self.ids[cell] = self.identity.trial_id(cell)
        return self.ids[cell]

    def record(self, cell: Cell, *, rows: list[dict], num_gpus: float = 0.0) -> None:
        """Write the record of a trial that ran in this process (``sweeps.local``)."""
        write_record(self.folder, make_record(self.identity, cell, rows=rows, num_gpus=num_gpus))


def record_failure(folder: RunFolder, identity: TrialIdentity, cell: Cell, *, error: str, num_gpus: float) -> str:
    """Record ``cell`` as failed with ``error`` (a trial that ended without writing its record); returns its id.

    A function of the folder and the identity, not of a ``Run``: Tune pickles the scheduler that calls it.
    """
    write_record(folder, make_record(identity, cell, rows=[], num_gpus=num_gpus, status="failed", error=error))
    return identity.trial_id(cell)


def run_folder(cfg: SweepConfig, run_dir: RunDir | None = None) -> RunFolder:
    """``<storage>/<name>`` of a sweep, or the folder given."""
    return RunFolder.coerce(run_dir) if run_dir is not None else RunFolder.of(cfg.storage, cfg.name)


def open_run(
    cfg: SweepConfig,
    cells: list[Cell],
    *,
    resume: bool,
    size_field: str,
    prepared: PreparedData | None = None,
    run_dir: RunDir | None = None,
    last_check: Callable[[], Any] | None = None,
) -> Run:
    """Check (in the order of the module docstring), lock, then write the metadata; returns the pending cells.

    Args:
        resume: without it, a run folder that already holds finished trials is refused.
        size_field: what a too-large size is called in the message (``sweep.sizes``, ``--size``).
        last_check: the runner's own check, run after the folder's and the data's; its result is ``Run.checked``.
    """
    folder = run_folder(cfg, run_dir)
    folder.check_writable()
    created = folder.missing_dirs()  # removed again if the run is refused
    lock = RunLock.acquire(folder, name=cfg.name)
    try:
        scan = read_records(folder)
        require_compatible(folder, scan)
        check_saved_config(folder, cfg)
        if not resume and scan.records:
            raise ConfigError(
                f"the run folder {folder} already holds finished trials",
                field="name",
                fix="add --resume to continue or extend it (only cells without a result run), or use a new name",
            )
        if prepared is None:
            from sweeps.prepare import prepare_data

            prepared = prepare_data(cfg.trial)
        check_sizes(cells, prepared, field=size_field)
        check_same_data(scan.records, data_id=prepared.data_id, cfg=cfg)
        checked = last_check() if last_check is not None else None
    except BaseException:
        lock.release()  # a refused run leaves the folder as it found it
        folder.remove_empty(created)
        raise
    try:
        for path in scan.corrupt:
            print(f"[{cfg.name}] warning: unreadable result record {path}: its cell will run again", flush=True)
            folder.delete(corrupt_relpath(path))
        # only where this run adds refit cells (roi trial adds fixed-epoch ones)
        notice = unrefit_notice(cfg.sweep, scan.records) if any(c.refits for c in cells) else None
        if notice:
            print(f"[{cfg.name}] note: {notice}", flush=True)
        write_run_metadata(folder, cfg)
    except BaseException:
        lock.release()
        raise
    run = Run(cfg, folder, prepared, cells=list(cells), pending=[], lock=lock, checked=checked, records=scan.records)
    done = {r["trial_id"] for r in scan.records if r["status"] == "ok"}
    run.pending = [c for c in cells if run.trial_id(c) not in done]
    return run


def unrefit_notice(spec: SweepSpec, records: Iterable[dict]) -> str | None:
    """What to tell a user who extends a run folder of ``train_to: validated`` trials made without ``sweep.refit``
    (before it became the default) with a file that refits: those sizes get new ids and train again, and the
    table will hold both kinds of point. None where nothing of the kind is in the folder."""
    if not (spec.train_to == "validated" and spec.refit):
        return None
    old = sorted(
        {
            r["cell"]["size"]
            for r in records
            if r.get("status") == "ok"
            and isinstance(r.get("cell"), dict)
            and r["cell"].get("train_to") == "validated"
            and not Cell(**r["cell"]).refits
        }
    )
    if not old:
        return None
    return (
        f"this run folder holds train_to: validated trials made without refit (sizes {', '.join(map(str, old))}); "
        "this file resolves sweep.refit: true (the default with validated), so its cells are refit trials with new "
        "ids: they train again and the table holds both kinds of point. To extend the old run as it was, set "
        "sweep.refit: false in the file"
    )


def mark_running(run: Run, *, experiment: str) -> None:
    """Write ``DRIVER_STATE``: the cells this driver was given, which ``roi status`` shows as running (or, once
    the driver is gone without finishing them, interrupted)."""
    state = {"experiment": experiment, "cells": [to_dict(c) for c in run.pending]}
    run.folder.write_text(DRIVER_STATE, json.dumps(state))
    run.driver_state = True


def close_run(run: Run, *, account: Callable[[list[dict]], dict[str, str]] | None = None) -> pd.DataFrame:
    """Records -> results table -> ``results.parquet`` / ``results.csv``; then the lock is let go.

    Args:
        account: the runner's own files from the records, written before the lock is let go (the adaptive
            grid's ``adaptive.json``): records -> {relative path: text}.

    Sets ``run.records`` (as read back) and ``run.unfinished`` (pending cells still without a record);
    ``DRIVER_STATE`` is removed only when there are none, so an interrupted run stays visible as one.
    """
    try:
        records = run.records = read_records(run.folder).records
        table = records_to_table(records, k=run.cfg.trial.eval.k)
        write_table(run.folder, table)  # what finished, also after an interruption: nothing computed is lost
        write_query_table(run.folder, records)  # per-query scores for roi's intervals (when the records have them)
        for rel, text in (account(records) if account is not None else {}).items():
            run.folder.write_text(rel, text)
        recorded = set(table["trial_id"])
        run.unfinished = [c for c in run.pending if run.trial_id(c) not in recorded]
        if run.driver_state and not run.unfinished:
            run.folder.delete(DRIVER_STATE)
        return table
    finally:
        run.lock.release()


def check_sizes(cells: Iterable[Cell], prepared: PreparedData, *, field: str) -> None:
    """Every cell's N must fit the training pool: found before anything runs or is written, never a silent cap."""
    pool = len(prepared.pool.data)
    too_big = sorted({c.size for c in cells if c.size > pool})
    if too_big:
        raise DataError(
            f"asked for {', '.join(map(str, too_big))} training items but the training pool holds {pool}",
            where=getattr(prepared.pool.data, "source", None) or prepared.dataset,
            field=field,
            fix=f"lower the size to at most {pool}, lower split.eval_fraction, or use a larger dataset",
        )


def require_compatible(run_dir: RunDir, scan: RecordScan) -> None:
    """Refuse a run folder written by another version of the tool, rather than silently re-running it all."""
    if not scan.incompatible:
        return
    path, version = scan.incompatible[0]
    raise ConfigError(
        f"result record of format version {version!r}, but this version of the tool reads version {RECORD_VERSION} "
        f"({len(scan.incompatible)} such record(s) in {run_dir})",
        where=path,
        fix="give the sweep a new name (name: in the sweep file) to start a new run folder, "
        "or use the version of the tool that wrote this one; never mix versions in one run folder",
    )


def saved_trial_settings(saved: dict) -> dict:
    """The trial settings of a saved ``config.yaml``: a sweep file (trial keys at the top level), or the
    nested ``trial:`` of run folders written before config.yaml became a sweep file."""
    if isinstance(saved.get("trial"), dict):
        return saved["trial"]
    return {k: v for k, v in saved.items() if k not in SWEEP_KEYS}


def check_saved_config(folder: RunFolder, cfg: SweepConfig) -> None:
    """Refuse to mix runs: an existing run folder's saved config must have the same trial settings."""
    if not folder.exists(CONFIG_FILE):
        return
    saved_path = folder.location(CONFIG_FILE)
    try:
        saved = parse_yaml(folder.read_text(CONFIG_FILE), where=saved_path) or {}
    except OSError as exc:
        raise ConfigError(
            f"the run folder's saved config cannot be read ({type(exc).__name__})",
            where=saved_path,
            fix="give the sweep a new name (name: in the file)",
        ) from None
    saved_trial = saved_trial_settings(saved) if isinstance(saved, dict) else {}
    if isinstance(saved_trial.get("data"), dict):
        saved_trial["data"] = {k: v for k, v in saved_trial["data"].items() if k not in LOCATION_FIELDS}
    if isinstance(saved_trial.get("model"), dict):
        saved_trial["model"] = {k: v for k, v in saved_trial["model"].items() if k != "trust_package"}
    diffs = _diff(execution_neutral(saved_trial), portable_config(cfg.trial), "")
    if diffs:
        raise ConfigError(
            f"the run folder {folder} holds results of different trial settings: {'; '.join(diffs[:6])}",
            where=saved_path,
            fix="give the sweep a new name (name: in the file), or restore the old settings",
        )


def check_same_data(records: Iterable[dict], *, data_id: str, cfg: SweepConfig) -> None:
    """Refuse to add trials on other data to a run folder: its records were made from data whose content
    (training pool or evaluation set) differs from what the data files hold now."""
    other = sorted({r["data_id"] for r in records if r.get("data_id") != data_id})
    if other:
        raise ConfigError(
            "the data changed since this run folder's trials ran (its content differs, not only its location)",
            where=cfg.trial.data.path or cfg.trial.data.hub_id,
            field="data",
            fix="restore the data the run used, or give the sweep a new name (name: in the file)",
        )


def package_versions() -> dict[str, str]:
    """Versions of what determines the numbers: written beside every run's results."""
    import platform
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in (
        "finetuning-budget",
        "torch",
        "torchvision",
        "transformers",
        "ray",
        "faiss-cpu",
        "faiss-gpu",
        "numpy",
        "pandas",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def write_run_metadata(run_dir: RunDir, cfg: SweepConfig) -> None:
    """The resolved config (``config.yaml``, a sweep file) and package versions (``versions.json``)."""
    import yaml

    folder = RunFolder.coerce(run_dir)
    folder.write_text(CONFIG_FILE, yaml.safe_dump(to_sweep_file(cfg), sort_keys=False))
    folder.write_text(VERSIONS_FILE, json.dumps(package_versions(), indent=1))


def _diff(old, new, prefix: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += _diff(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else key)
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]
