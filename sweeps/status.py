"""What a run folder holds: cells done, failed, in progress (or interrupted) and left. No Ray needed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sweeps.config import Cell, SweepConfig, cells_for
from sweeps.errors import ConfigError
from sweeps.results import RunDir, read_records
from sweeps.runlock import lock_state
from sweeps.runs import DRIVER_STATE, require_compatible
from sweeps.storage import RunFolder
from sweeps.sweepfile import parse_yaml, saved_sweep


@dataclass(frozen=True)
class RunStatus:
    name: str
    total: int
    done: list[Cell]
    failed: list[tuple[Cell, str]]
    in_progress: list[Cell]  # cells of a driver that is running or was interrupted
    left: list[Cell]
    corrupt: list[Path | str]
    driver: str | None = None  # who holds the run folder's lock (sweeps.runlock), None when nobody does


def run_status(run_dir: RunDir) -> RunStatus:
    folder = RunFolder.coerce(run_dir)
    config_path = folder.location("config.yaml")
    if not folder.exists("config.yaml"):
        raise ConfigError("no config.yaml here: not a sweep's run folder", where=folder, fix="pass runs/<sweep name>")
    scan = read_records(folder)
    require_compatible(folder, scan)
    raw = parse_yaml(folder.read_text("config.yaml"), where=config_path)  # a duplicate key or bad YAML: its own error
    try:
        cfg: SweepConfig = saved_sweep(raw, where=str(config_path))
    except ConfigError as exc:
        problem, field = exc.problem, exc.field
        raise ConfigError(
            f"the run folder's saved config does not fit this version of the tool: {problem}",
            where=config_path,
            field=field,
            fix="read it with the version of the tool that wrote it, or re-run the sweep file under a new name",
        ) from None
    by_cell = {Cell(**r["cell"]): r for r in scan.records}
    cells = cells_for(cfg.sweep)
    if cfg.sweep.sizes == "auto":  # the adaptive grid's cells are those its searcher proposed: the records'
        cells += sorted((c for c in by_cell if c.size > 0), key=lambda c: (c.seed, c.size))
    active = _driver_cells(folder)
    # A cell the driver was given is in progress even if an earlier attempt left a failed record (a resume).
    finished = {c: r for c, r in by_cell.items() if r["status"] == "ok" or c not in active}
    done = [c for c in cells if c in finished and finished[c]["status"] == "ok"]
    failed = [(c, finished[c]["error"]) for c in cells if c in finished and finished[c]["status"] != "ok"]
    in_progress = [c for c in cells if c not in finished and c in active]
    left = [c for c in cells if c not in finished and c not in active]
    return RunStatus(
        name=cfg.name,
        total=len(cells),
        done=done,
        failed=failed,
        in_progress=in_progress,
        left=left,
        corrupt=scan.corrupt,
        driver=lock_state(folder),
    )


def _driver_cells(folder: RunFolder) -> set[Cell]:
    try:
        state = json.loads(folder.read_text(DRIVER_STATE))
    except FileNotFoundError:  # no driver, or it finished (and removed the file) just now
        return set()
    return {Cell(**c) for c in state["cells"]}


def format_status(status: RunStatus) -> str:
    lines = [
        f"{status.name}: {len(status.done)}/{status.total} done, {len(status.failed)} failed, "
        f"{len(status.in_progress)} running or interrupted, {len(status.left)} not started"
    ]
    if status.driver:
        lines.append(f"  driver: {status.driver}")
    for cell, error in status.failed:
        lines.append(f"  failed  {cell.label}: {error.splitlines()[0] if error else ''}")
    for cell in status.in_progress:
        lines.append(f"  running {cell.label} (or interrupted: roi sweep FILE --resume)")
    for cell in status.left:
        lines.append(f"  left    {cell.label}")
    for path in status.corrupt:
        lines.append(f"  corrupt record {path} (its cell re-runs on --resume)")
    return "\n".join(lines)
