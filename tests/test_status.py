"""``roi status`` and ``roi report`` on a run that did not finish (``sweeps/status.py``, ``roi/run_state.py``).

Run folders are written here record by record (no Ray, no training): the known answer is which cells exist.
A fixed grid with cells missing and its driver state left behind, an adaptive search whose ``adaptive.json``
is not at its end, a cut-off ``driver_state.json``: each is "interrupted", with the command that goes on;
``roi report`` says "incomplete run: N of M cells" before anything else, and ``--require-complete`` refuses.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from sweeps.cli import main
from sweeps.config import Cell, SweepConfig, cell_rule, cells_for
from sweeps.results import TrialIdentity, make_record, read_records, records_to_table, write_record, write_table
from sweeps.runs import DRIVER_STATE, write_run_metadata
from sweeps.status import PLAN_FILE, format_status, run_status
from sweeps.storage import RunFolder
from sweeps.sweepfile import load_sweep_config

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "sweeps" / "configs" / "smoke.yaml"


def _config(storage: Path, *, sizes=(50, 100, 200), seeds=(0, 1), auto: bool = False) -> SweepConfig:
    cfg = load_sweep_config(SMOKE)
    sweep = dataclasses.replace(cfg.sweep, sizes="auto" if auto else tuple(sizes), seeds=tuple(seeds))
    if auto:
        sweep = dataclasses.replace(sweep, min_size=50)
    return dataclasses.replace(cfg, name="run", storage=str(storage), sweep=sweep)


def _write(cfg: SweepConfig, cells: list[Cell]) -> RunFolder:
    """A run folder holding finished records of ``cells`` (metrics rise with the size) and its table."""
    folder = RunFolder.of(cfg.storage, cfg.name)
    write_run_metadata(folder, cfg)
    for cell in cells:
        value = 0.5 + 0.3 * cell.size / (cell.size + 100)
        rows = [
            {"epoch": e, "train_seconds": cell.size * e / 10, "mrr@20": value, "map@20": value, "recall@20": value}
            for e in ([0] if cell.size == 0 else range(1, cell.epochs + 1))
        ]
        record = make_record(TrialIdentity(cfg.name, "data_size", cfg.trial, "d", "e", "data"), cell, rows=rows)
        write_record(folder, record)
    write_table(folder, records_to_table(read_records(folder).records, k=20))
    return folder


def _status(capsys, run_dir) -> tuple[int, str, str]:
    code = main(["status", str(run_dir)])
    out, err = capsys.readouterr()
    return code, out, err


def _report(capsys, run_dir, *extra: str) -> tuple[int, str, str]:
    code = main(["report", str(run_dir), "--n-boot", "10", "--no-png", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_fixed_grid_cut_short_is_interrupted_and_the_report_says_so_first(tmp_path, capsys):
    cfg = _config(tmp_path)
    cells = cells_for(cfg.sweep)  # the baseline and 3 sizes x 2 seeds
    folder = _write(cfg, cells[:5])
    left = [dataclasses.asdict(c) for c in cells[5:]]
    folder.write_text(DRIVER_STATE, json.dumps({"experiment": "tune-x", "cells": left}))  # a killed driver's
    status = run_status(folder.root)
    assert (status.state, len(status.done), status.total) == ("interrupted", 5, 7)
    code, out, err = _status(capsys, folder.root)
    assert code == 0 and "Traceback" not in err
    assert "  interrupted: 2 of 7 cells have no result" in out
    assert f"  resume: roi sweep {folder.root / 'config.yaml'} --resume" in out

    code, out, err = _report(capsys, folder.root)
    assert code == 0, err
    first = out.splitlines()[:2]
    assert first[0].startswith("incomplete run: 5 of 7 cells (interrupted: 2 of 7 cells have no result"), out
    assert "--resume" in first[1]
    html = (folder.root / "report" / "report.html").read_text()
    assert "incomplete run: 5 of 7 cells" in html  # the saved report says it too

    code, out, err = _report(capsys, folder.root, "--require-complete", "--out", str(tmp_path / "strict"))
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: ") and "incomplete run: 5 of 7 cells" in err
    assert f"\n  fix: roi sweep {folder.root / 'config.yaml'} --resume" in err
    assert not (tmp_path / "strict").exists()


def test_a_finished_grid_is_not_flagged(tmp_path, capsys):
    cfg = _config(tmp_path)
    folder = _write(cfg, cells_for(cfg.sweep))
    status = run_status(folder.root)
    assert status.finished and status.state == "finished" and len(status.done) == status.total == 7
    assert "interrupted:" not in format_status(status) and "resume:" not in format_status(status)
    code, out, err = _report(capsys, folder.root, "--require-complete")
    assert code == 0, err
    assert "incomplete run" not in out


def test_an_adaptive_search_not_at_its_end_is_interrupted_though_every_cell_it_ran_is_done(tmp_path, capsys):
    # The case that read "3/3 done, 0 running": the driver state was gone, adaptive.json waited for its next size.
    cfg = _config(tmp_path, seeds=(0,), auto=True)
    cells = [Cell(size=0, epochs=0, seed=0)] + [
        Cell(size=s, epochs=cfg.sweep.epochs, seed=0, **cell_rule(cfg.sweep)) for s in (50, 100)
    ]
    folder = _write(cfg, cells)
    plan = {"sizes": [50, 100], "phase": "extend", "found": False, "proposed_this_run": []}
    folder.write_text(PLAN_FILE, json.dumps(plan))
    status = run_status(folder.root)
    assert len(status.done) == status.total == 3
    assert status.state == "interrupted" and "phase 'extend', not 'done'" in " ".join(status.unfinished)
    code, out, err = _status(capsys, folder.root)
    assert "  interrupted: the adaptive search has not reached its end" in out and "--resume" in out
    code, out, err = _report(capsys, folder.root)
    assert code == 0 and out.startswith("incomplete run: 3 of 3 cells (interrupted: the adaptive search"), out
    # At its end, the same records are a finished run.
    folder.write_text(PLAN_FILE, json.dumps({**plan, "phase": "done", "found": True}))
    assert run_status(folder.root).finished


@pytest.mark.parametrize("damage", ["cut off", "not an object", "empty"])
def test_a_damaged_driver_state_is_an_interruption_not_a_traceback(tmp_path, capsys, damage):
    cfg = _config(tmp_path)
    cells = cells_for(cfg.sweep)
    folder = _write(cfg, cells[:3])
    text = json.dumps({"experiment": "x", "cells": [dataclasses.asdict(c) for c in cells[3:]]})
    folder.write_text(DRIVER_STATE, {"cut off": text[: len(text) // 2], "not an object": "[1, 2]", "empty": ""}[damage])
    code, out, err = _status(capsys, folder.root)
    assert code == 0 and err == "", err
    assert "interrupted:" in out and f"the driver state {DRIVER_STATE} is unreadable" in out
    assert "resume: roi sweep" in out


def test_a_run_folders_config_with_a_key_given_twice_is_refused_naming_both_lines(tmp_path, capsys):
    cfg = _config(tmp_path)
    folder = _write(cfg, cells_for(cfg.sweep)[:2])
    text = (folder.root / "config.yaml").read_text()
    (folder.root / "config.yaml").write_text(text + "train:\n  lr: 5.0\n")  # a hand edit that YAML would keep
    line = text.splitlines().index("train:") + 1
    code, out, err = _status(capsys, folder.root)
    assert code == 2 and "Traceback" not in err
    assert f"key 'train' is given twice, at lines {line} and {len(text.splitlines()) + 1}" in err
    assert "config.yaml" in err and "\n  fix: " in err
