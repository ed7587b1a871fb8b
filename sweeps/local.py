"""Run a few cells in this process, without Ray: the ``roi trial`` command and quick checks.

Writes the same records and results table as a sweep, so a cell run here is never trained again by a
sweep of the same file (its record is found by the same config hash).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from sweeps.budget import Budget
from sweeps.config import SweepConfig, to_dict
from sweeps.errors import DataError
from sweeps.prepare import PreparedData, prepare_data
from sweeps.results import (
    Cell,
    RunDir,
    check_run_dir,
    check_same_data,
    make_record,
    read_records,
    records_to_table,
    trial_id,
    write_record,
    write_run_metadata,
    write_table,
)
from sweeps.storage import RunFolder
from sweeps.trial import EpochReport, run_trial


def run_dir_of(cfg: SweepConfig) -> Path | str:
    """Where a sweep's run folder is: an absolute local path, or a URI."""
    return RunFolder.of(cfg.storage, cfg.name).location()


def check_sizes(cells: list[Cell], prepared: PreparedData, *, field: str) -> None:
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


def run_cells(
    cfg: SweepConfig,
    cells: list[Cell],
    *,
    run_dir: RunDir | None = None,
    prepared: PreparedData | None = None,
    on_epoch: Callable[[Cell, EpochReport], None] | None = None,
) -> pd.DataFrame:
    """Run ``cells`` one after another (skipping those with a record) and rebuild the results table.

    Everything a user can get wrong (the run folder's version, the data, the model, a size larger than the
    pool) is checked before the run folder is written: a failed check leaves nothing behind.
    """
    folder = RunFolder.coerce(run_dir) if run_dir is not None else RunFolder.of(cfg.storage, cfg.name)
    # A trial run adds cells to the sweep's folder, like --resume: same version and trial settings only.
    check_run_dir(folder, cfg, resume=True)
    scan = read_records(folder)
    prepared = prepared or prepare_data(cfg.trial)
    check_sizes(cells, prepared, field="--size")
    check_same_data(scan.records, data_id=prepared.data_id, cfg=cfg)
    write_run_metadata(folder, to_dict(cfg))
    done = {r["trial_id"] for r in scan.records if r["status"] == "ok"}
    for cell in cells:
        tid = trial_id(cfg.trial, cell, data_id=prepared.data_id)
        if tid in done:
            continue
        reports = run_trial(
            cfg.trial,
            prepared=prepared,
            size=cell.size,
            epochs=cell.epochs,
            seed=cell.seed,
            on_epoch=(lambda rep, c=cell: on_epoch(c, rep)) if on_epoch else None,
            budget=Budget.for_cell(cfg.sweep, epochs=cell.epochs, train_to=cell.train_to),
        )
        record = make_record(
            sweep=cfg.name,
            experiment=cfg.sweep.experiment,
            tid=tid,
            cfg=cfg.trial,
            cell=cell,
            dataset=prepared.dataset,
            eval_set=prepared.eval_id,
            data_id=prepared.data_id,
            num_gpus=0.0 if reports[-1].device == "cpu" else 1.0,
            rows=[r.as_row() for r in reports],
        )
        write_record(folder, record)
    table = records_to_table(read_records(folder).records, k=cfg.trial.eval.k)
    write_table(folder, table)
    return table
