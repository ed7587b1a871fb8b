"""The adaptive data-size grid (``sweep.sizes: auto``) as a Ray Tune ``Searcher``.

The searcher proposes cells (size, epochs, seed) one at a time, as Tune asks for trials; Tune's
concurrency limit (``resources.max_concurrent``) wraps it in a ``ConcurrencyLimiter`` like any searcher,
so it runs on a cluster with many trials in flight and shows in the dashboard like any sweep. What to try
next is decided by ``roi.grid`` (pure, no Ray), the same rule the report uses, on the results table built
from the trial records: the baseline first, then every seed of ``min_size``, then doubling until the
elasticity of the gain (the next item against the average item, ``roi.elasticity``) has fallen to 1 - drop
persistently (halving instead when it already has at the smallest size), then geometric means between the
bracketing sizes until their ratio is at most ``bracket_ratio``, or the budget (``max_trials``,
``max_gpu_hours``) is spent.

The records are the source of truth, as for a fixed grid: the searcher starts from the run folder's records
(as the driver scanned them: ``sweeps.runs.Run.records``; it reads no file and writes no table), completes any
size that lacks a seed, and then proposes sizes from the records alone. A killed sweep resumed
with ``--resume`` therefore asks for the same sizes as an undisturbed one. Its own state is not saved
(``save`` writes nothing): there is nothing in it that the records do not hold.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from ray.tune.search import Searcher

from roi.grid import GridPlan, plan_table
from roi.load import validate_table
from sweeps.config import Cell, SweepConfig, SweepSpec, cell_rule
from sweeps.errors import DataError
from sweeps.prepare import PreparedData
from sweeps.results import records_to_table
from sweeps.status import PLAN_FILE  # the plan the search leaves beside the results


@dataclass(frozen=True)
class Adaptive:
    """The resolved settings of an adaptive grid."""

    min_size: int
    max_size: int
    max_trials: int
    max_gpu_hours: float | None
    ratio: float
    drop: float


def resolve_adaptive(spec: SweepSpec, prepared: PreparedData) -> Adaptive:
    """Defaults from the data: ``min_size`` = 4 items per label (100 for pair data), ``max_size`` = the pool.

    Raises:
        DataError: a ``max_size`` (or ``min_size``) larger than the training pool.
    """
    pool = len(prepared.pool.data)
    labels = getattr(prepared.pool.data, "labels", None)
    default_min = 4 * len(set(labels)) if labels else 100
    min_size = spec.min_size or min(default_min, pool)
    max_size = spec.max_size or pool
    for name, value in (("sweep.min_size", min_size), ("sweep.max_size", max_size)):
        if value > pool:
            raise DataError(
                f"{name} is {value} but the training pool holds {pool} items",
                where=getattr(prepared.pool.data, "source", None) or prepared.dataset,
                field=name,
                fix=f"lower it to at most {pool}, or leave sweep.max_size out (default: the whole pool)",
            )
    return Adaptive(
        min_size, max(max_size, min_size), spec.max_trials, spec.max_gpu_hours, spec.bracket_ratio, spec.drop
    )


class AdaptiveSizeSearcher(Searcher):
    """Proposes the cells of the adaptive data-size grid; see the module docstring.

    Args:
        records: the run folder's records when the sweep starts (ok and failed).
        seeds, epochs: every size runs with each seed, for this many epochs (the minimum under ``steps``).
        adaptive: the resolved settings.
        k: the metrics' cut-off (``eval.k``), to rebuild the results table.
        train_to, budget: the budget rule every size trains under and its settings (``Cell.train_to``,
            ``Cell.budget``; see ``sweeps.config.cells_for``): one curve, one rule.
    """

    def __init__(
        self,
        *,
        records: list[dict],
        seeds: tuple[int, ...],
        epochs: int,
        adaptive: Adaptive,
        k: int,
        train_to: str = "epochs",
        budget: str = "",
    ):
        super().__init__(metric=None, mode=None)
        self.seeds, self.epochs, self.adaptive, self.k = tuple(seeds), int(epochs), adaptive, int(k)
        self.train_to, self.budget = train_to, budget if train_to != "epochs" else ""
        self.records: dict[Cell, dict] = {}
        for rec in records:
            self._keep(rec)
        self.in_flight: dict[str, Cell] = {}  # Tune trial id -> cell
        self.queue: list[Cell] = []
        self.failed_here: set[Cell] = set()  # cells that ended without an ok record in this run: not retried here
        self.proposed: list[Cell] = []  # in order, for the log and adaptive.json
        self.final: GridPlan | None = None
        self.finished = False

    # -------------------------------------------------------------------------------------------- Tune's API
    def suggest(self, trial_id: str) -> dict | None:
        if self.finished:
            return Searcher.FINISHED
        if not self.queue:
            self._refill()
        if self.queue:
            cell = self.queue.pop(0)
            self.in_flight[trial_id] = cell
            self.proposed.append(cell)
            return {"cell": dataclasses.asdict(cell)}
        if self.final is not None and not self.in_flight:
            self.finished = True
            return Searcher.FINISHED
        return None  # waiting for trials in flight

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if "record_json" in result:
            self._keep(json.loads(result["record_json"]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result and "record_json" in result:
            self._keep(json.loads(result["record_json"]))
        cell = self.in_flight.pop(trial_id, None)
        if cell is not None and not self._ok(cell):
            self.failed_here.add(cell)

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the records hold everything the searcher decides from (see the module docstring)."""

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore: a resumed sweep starts a new searcher from the records."""

    # -------------------------------------------------------------------------------------------- decisions
    def _keep(self, rec: dict) -> None:
        cell = Cell(**rec["cell"])
        if cell.size and (cell.epochs, cell.train_to, cell.budget) != (self.epochs, self.train_to, self.budget):
            return  # a record of another epochs setting or budget rule (an earlier file's grid): not this curve
        if rec.get("status") == "ok" or cell not in self.records:
            self.records[cell] = rec

    def _cell(self, size: int, seed: int) -> Cell:
        return Cell(size, self.epochs, seed, train_to=self.train_to, budget=self.budget)

    def _ok(self, cell: Cell) -> bool:
        rec = self.records.get(cell)
        return rec is not None and rec.get("status") == "ok"

    def _available(self, cell: Cell) -> bool:
        return not self._ok(cell) and cell not in self.failed_here and cell not in self.in_flight.values()

    def sized_trials(self) -> int:
        """Trials counted against ``max_trials``: sized cells with a record or in flight."""
        cells = {c for c in self.records if c.size > 0} | {c for c in self.in_flight.values() if c.size > 0}
        return len(cells)

    def gpu_hours(self) -> float:
        total = 0.0
        for rec in self.records.values():
            rows = rec.get("rows") or []
            if rows:
                total += float(rows[-1].get("train_seconds") or 0.0) * float(rec.get("num_gpus") or 0.0)
        return total / 3600.0

    def plan(self) -> GridPlan:
        """The rule's plan from the records so far (pending: sizes in flight; tried: sizes failed in this run)."""
        ok = [r for c, r in self.records.items() if r.get("status") == "ok"]
        pending = sorted({c.size for c in self.in_flight.values() if c.size > 0})
        failed_sizes = {c.size for c in self.failed_here if c.size > 0}
        tried = sorted(s for s in failed_sizes if not any(self._ok(self._cell(s, seed)) for seed in self.seeds))
        a = self.adaptive
        if not ok:
            table = None
        else:
            table = validate_table(records_to_table(ok, k=self.k), source="the sweep's records")
        if table is None or table.empty:
            from roi.grid import plan_sizes

            return plan_sizes(
                {}, min_size=a.min_size, max_size=a.max_size, drop=a.drop, ratio=a.ratio, pending=pending, tried=tried
            )
        plan, _ = plan_table(
            table, min_size=a.min_size, max_size=a.max_size, drop=a.drop, ratio=a.ratio, pending=pending, tried=tried
        )
        return plan

    def _refill(self) -> None:
        if self.final is not None:
            return
        baseline = Cell(size=0, epochs=0, seed=self.seeds[0])
        if not self._ok(baseline):
            if baseline in self.failed_here:
                self.final = GridPlan("done", (), False, None, None, "the baseline failed: nothing to compare with")
            elif self._available(baseline):
                self.queue.append(baseline)
            return  # every decision needs the baseline
        # Sizes the records hold for some seeds but not all (a killed run, a failed seed): complete them first.
        sized = sorted({c.size for c in self.records if c.size > 0 and self._ok(c)})
        missing = [self._cell(s, seed) for s in sized for seed in self.seeds]
        self.queue += [c for c in missing if self._available(c)]
        if self.queue or any(c.size in sized for c in self.in_flight.values()):
            return
        plan = self.plan()
        if plan.phase == "wait":
            return
        if plan.done:
            self.final = plan
            return
        new = [self._cell(s, seed) for s in plan.next_sizes for seed in self.seeds]
        new = [c for c in new if self._available(c)]
        a = self.adaptive
        if self.sized_trials() + len(new) > a.max_trials:
            self.final = dataclasses.replace(
                plan, phase="done", next_sizes=(), reason=f"{plan.reason}; stopped: max_trials {a.max_trials} reached"
            )
            return
        if a.max_gpu_hours is not None and self.gpu_hours() >= a.max_gpu_hours:
            self.final = dataclasses.replace(
                plan,
                phase="done",
                next_sizes=(),
                reason=f"{plan.reason}; stopped: max_gpu_hours {a.max_gpu_hours:g} spent",
            )
            return
        if not new:  # the rule asks for cells that all failed in this run
            self.final = dataclasses.replace(
                plan, phase="done", next_sizes=(), reason=f"{plan.reason}; those cells failed"
            )
            return
        self.queue += new


def adaptive_searcher(cfg: SweepConfig, *, prepared: PreparedData, records: list[dict]) -> AdaptiveSizeSearcher:
    """The searcher of an adaptive sweep, started from the run folder's records (``sweeps.runs.Run.records``).

    Raises:
        DataError: ``sweep.max_size`` (or ``min_size``) larger than the training pool.
    """
    adaptive = resolve_adaptive(cfg.sweep, prepared)
    searcher = AdaptiveSizeSearcher(
        records=records,
        seeds=cfg.sweep.seeds,
        epochs=cfg.sweep.epochs,
        adaptive=adaptive,
        k=cfg.trial.eval.k,
        **cell_rule(cfg.sweep),  # the sweep's budget rule: its sizes are one curve under it
    )
    print(
        f"[{cfg.name}] adaptive grid: from {adaptive.min_size:,} items up to {adaptive.max_size:,}, doubling until "
        f"the elasticity falls to {1 - adaptive.drop:.2g} (halving if it already has), then narrowing to a ratio of {adaptive.ratio:g}; "
        f"at most {adaptive.max_trials} trials",
        flush=True,
    )
    return searcher


def account(searcher: AdaptiveSizeSearcher, records: list[dict]) -> dict[str, str]:
    """The adaptive grid's own account after Tune returned: ``{PLAN_FILE: json}`` (``sweeps.runs.close_run``
    writes it beside the table). ``records``: the run folder's, read back by the driver; the searcher takes
    those it did not see (failures recorded after Tune returned)."""
    for rec in records:
        searcher._keep(rec)
    final = searcher.final or searcher.plan()
    summary = {
        "sizes": measured_sizes(records),
        "proposed_this_run": [dataclasses.asdict(c) for c in searcher.proposed],
        "trials": searcher.sized_trials(),
        "phase": final.phase,
        "found": final.found,
        "bracket": list(final.bracket) if final.bracket else None,
        "answer_cost": final.answer_cost if final.answer_cost is None or math.isfinite(final.answer_cost) else None,
        "reason": final.reason,
        "settings": dataclasses.asdict(searcher.adaptive),
    }
    return {PLAN_FILE: json.dumps(summary, indent=1)}


def measured_sizes(records: list[dict]) -> list[int]:
    """The sizes with an ok record."""
    return sorted({r["cell"]["size"] for r in records if r["status"] == "ok" and r["cell"]["size"] > 0})


def left_unfinished(searcher: AdaptiveSizeSearcher) -> int:
    """0 when the searcher finished; else the proposed cells still without a record (at least 1): Tune returned
    before the searcher was done (Ctrl-C), and ``--resume`` goes on."""
    if searcher.finished or searcher.final is not None:
        return 0
    return max(sum(1 for c in searcher.proposed if not searcher._ok(c) and c not in searcher.failed_here), 1)
