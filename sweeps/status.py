"""What a run folder holds: cells done, failed, in progress (or interrupted) and left; and whether the run
finished. No Ray needed.

A run has not finished while any of these holds: a cell of its fixed grid has no record; the adaptive search
(``sizes: auto``) has not reached its end (``adaptive.json`` missing or its phase not ``done``); the driver's
``driver_state.json`` is still there (a driver removes it only once every cell it was given has a record).
With no live driver holding the folder's lock such a run is *interrupted*; ``roi sweep CONFIG --resume`` goes
on. ``roi report`` (``roi.run_state``) reads the same verdict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sweeps.config import Cell, SweepConfig, cells_for
from sweeps.errors import ConfigError
from sweeps.results import RunDir, read_records
from sweeps.runlock import driver_running, lock_state
from sweeps.runs import DRIVER_STATE, require_compatible
from sweeps.storage import RunFolder
from sweeps.sweepfile import parse_yaml, saved_sweep

PLAN_FILE = "adaptive.json"  # the adaptive search's plan (sweeps.search writes it; that module needs Ray)


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
    # why the run has not finished (empty: it has); "state" says whether a driver is still at it
    unfinished: list[str] = field(default_factory=list)
    state: str = "finished"  # finished | running | interrupted | not started
    resume: str = ""  # the command that goes on

    @property
    def finished(self) -> bool:
        return not self.unfinished


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
        problem, field_ = exc.problem, exc.field
        raise ConfigError(
            f"the run folder's saved config does not fit this version of the tool: {problem}",
            where=config_path,
            field=field_,
            fix="read it with the version of the tool that wrote it, or re-run the sweep file under a new name",
        ) from None
    by_cell = {Cell(**r["cell"]): r for r in scan.records}
    active, state_note = _driver_cells(folder)
    cells = cells_for(cfg.sweep)
    plan_note = None
    if cfg.sweep.sizes == "auto":  # the adaptive grid's cells are those its searcher proposed: the records'
        plan, plan_note = _adaptive_plan(folder)
        proposed = {Cell(**c) for c in (plan or {}).get("proposed_this_run", ())}
        extra = {c for c in (set(by_cell) | active | proposed) if c.size > 0}
        cells += sorted(extra, key=lambda c: (c.seed, c.size))
    # A cell the driver was given is in progress even if an earlier attempt left a failed record (a resume).
    finished = {c: r for c, r in by_cell.items() if r["status"] == "ok" or c not in active}
    done = [c for c in cells if c in finished and finished[c]["status"] == "ok"]
    failed = [(c, finished[c]["error"]) for c in cells if c in finished and finished[c]["status"] != "ok"]
    in_progress = [c for c in cells if c not in finished and c in active]
    left = [c for c in cells if c not in finished and c not in active]
    unfinished = []
    if left or in_progress:
        unfinished.append(f"{len(left) + len(in_progress)} of {len(cells)} cells have no result")
    if plan_note and by_cell:
        unfinished.append(plan_note)
    if state_note:
        unfinished.append(state_note)
    running = driver_running(folder)
    if not unfinished:
        state = "finished"
    elif running:
        state = "running"
    elif not by_cell and state_note is None:
        state = "not started"
    else:
        state = "interrupted"
    return RunStatus(
        name=cfg.name,
        total=len(cells),
        done=done,
        failed=failed,
        in_progress=in_progress,
        left=left,
        corrupt=scan.corrupt,
        driver=lock_state(folder),
        unfinished=unfinished,
        state=state,
        resume=f"roi sweep {config_path} --resume" if unfinished else "",
    )


def _driver_cells(folder: RunFolder) -> tuple[set[Cell], str | None]:
    """The cells in the driver state, and a note when one is there (None: no driver, or it finished)."""
    try:
        text = folder.read_text(DRIVER_STATE)
    except FileNotFoundError:  # no driver, or it finished (and removed the file) just now
        return set(), None
    try:
        state = json.loads(text)
        cells = {Cell(**c) for c in state["cells"]}
    except (ValueError, KeyError, TypeError):  # cut off or edited: the driver was stopped while writing it
        return set(), f"the driver state {DRIVER_STATE} is unreadable (cut off): a driver was stopped"
    return cells, f"the driver state {DRIVER_STATE} is still there: a driver has not finished its cells"


def _adaptive_plan(folder: RunFolder) -> tuple[dict | None, str | None]:
    """``adaptive.json`` and, when the search has not reached its end, why."""
    try:
        plan = json.loads(folder.read_text(PLAN_FILE))
    except FileNotFoundError:
        return None, f"the adaptive search has not written {PLAN_FILE} yet: it has not reached its end"
    except ValueError:
        return None, f"{PLAN_FILE} is unreadable (cut off): the adaptive search has not reached its end"
    if not isinstance(plan, dict) or plan.get("phase") != "done":
        phase = plan.get("phase") if isinstance(plan, dict) else None
        return plan if isinstance(plan, dict) else None, (
            f"the adaptive search has not reached its end ({PLAN_FILE}: phase {phase!r}, not 'done')"
        )
    return plan, None


def format_status(status: RunStatus) -> str:
    lines = [
        f"{status.name}: {len(status.done)}/{status.total} done, {len(status.failed)} failed, "
        f"{len(status.in_progress)} running or interrupted, {len(status.left)} not started"
    ]
    if status.state == "interrupted":
        lines.append(f"  interrupted: {'; '.join(status.unfinished)}")
        lines.append(f"  resume: {status.resume}")
    elif status.state == "running":
        lines.append(f"  running: {'; '.join(status.unfinished)}")
    elif status.state == "not started":
        lines.append(f"  not started: {status.resume}")
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
