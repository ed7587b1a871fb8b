"""Run a few cells in this process, without Ray: the ``roi trial`` command and quick checks.

Writes the same records and results table as a sweep, so a cell run here is never trained again by a
sweep of the same file (its record is found by the same config hash). The run folder is opened and closed
as a sweep's is (``sweeps.runs``): the same checks, in the same order, and the same lock.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from sweeps.budget import Budget
from sweeps.config import Cell, SweepConfig
from sweeps.prepare import PreparedData
from sweeps.progress import EpochReport
from sweeps.results import RunDir
from sweeps.runs import close_run, open_run
from sweeps.trial import run_trial


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
    # A trial run adds cells to the sweep's folder, like --resume: same version and trial settings only.
    run = open_run(cfg, cells, resume=True, size_field="--size", prepared=prepared, run_dir=run_dir)
    try:
        for cell in run.pending:
            reports = run_trial(
                cfg.trial,
                prepared=run.prepared,
                size=cell.size,
                epochs=cell.epochs,
                seed=cell.seed,
                on_epoch=(lambda rep, c=cell: on_epoch(c, rep)) if on_epoch else None,
                budget=Budget.for_cell(
                    cfg.sweep,
                    epochs=cell.epochs,
                    train_to=cell.train_to,
                    select_epoch=cell.selects_epoch,
                    refit=cell.refits,
                ),
            )
            run.record(cell, rows=[r.as_row() for r in reports], num_gpus=0.0 if reports[-1].device == "cpu" else 1.0)
    finally:
        table = close_run(run)
    return table
