"""``train.compile: auto``: compile the towers when the sweep's workers train long enough to repay it.

Compiled towers run faster steps on a GPU (launch-bound loops: CUDA graphs) but a worker first pays the
compilation, once (``sweeps.compiled`` keeps the compiled model for the worker's later cells). It pays when

    steps per worker x (eager step seconds - compiled step seconds) > compile seconds,

i.e. when a worker's steps exceed the break-even ``compile seconds / seconds saved per step``. The driver decides
once per sweep from the cells it is about to run (their planned optimizer steps under the budget rule), the
workers they spread over, and the measured costs of the nearest measured architecture below; it prints the choice
and its numbers. On the CPU it stays eager: compiled steps measured no faster there (0.96x) and compiling costs
more than a small trial's training (benchmarks/RESULTS.md, "Levers on the CPU"). Pure Python: no torch here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from sweeps.budget import Budget
from sweeps.config import Cell, SweepConfig


@dataclass(frozen=True)
class CompileCost:
    """One architecture under ``reduce-overhead`` against eager, from one measured run."""

    compile_s: float  # the first compilation in a worker (cold caches)
    eager_per_s: float  # training pairs per second, eager
    compiled_per_s: float  # the same loop compiled
    batch: int  # the batch (pairs per step) of the measurement
    source: str

    def saved_per_step(self, batch_size: int) -> float:
        """Seconds a compiled step saves at ``batch_size``, scaled linearly from the measured batch."""
        return batch_size * (1.0 / self.eager_per_s - 1.0 / self.compiled_per_s)


_H200 = "benchmarks/RESULTS.md, 'Training throughput against the reference loop' (H200)"
# Measured on one H200 (the project's loops, bf16, reduce-overhead): compile cost from the first steps' extra
# seconds; throughput in steady state. A model without its own row uses its family's.
MEASURED: dict[str, CompileCost] = {
    "text": CompileCost(25.4, 3067.0, 7368.0, 128, f"bert-base-cased, {_H200}"),
    "image": CompileCost(35.6, 2106.0, 3071.0, 128, f"resnet50, {_H200}"),
    "clip": CompileCost(47.2, 3203.0, 7235.0, 256, f"CLIP ViT-B/32, {_H200}"),
}


@dataclass(frozen=True)
class CompileDecision:
    mode: str  # what the trials run: off or a torch.compile mode
    reason: str
    steps_per_worker: float = 0.0
    break_even_steps: float = 0.0

    def line(self) -> str:
        return f"train.compile {self.mode}: {self.reason}"


def decide_compile(
    *, requested: str, cuda: bool, steps_per_worker: float, batch_size: int, cost: CompileCost
) -> CompileDecision:
    """The compile mode for ``requested`` (``auto`` or a mode the sweep file set, which is kept)."""
    if requested != "auto":
        return CompileDecision(mode=requested, reason="as the sweep file sets it")
    if not cuda:
        return CompileDecision(mode="off", reason="eager on the CPU (compiled steps measured no faster there)")
    saved = cost.saved_per_step(batch_size)
    break_even = cost.compile_s / saved if saved > 0 else math.inf
    numbers = (
        f"{steps_per_worker:,.0f} steps per worker against a break-even of {break_even:,.0f} "
        f"({cost.compile_s:.0f} s to compile / {saved * 1e3:.1f} ms saved per step; {cost.source})"
    )
    if steps_per_worker >= break_even:
        return CompileDecision("reduce-overhead", f"compiled once per worker: {numbers}", steps_per_worker, break_even)
    return CompileDecision("off", f"eager, too few steps to repay compiling: {numbers}", steps_per_worker, break_even)


def planned_steps(cfg: SweepConfig, cell: Cell) -> int:
    """Optimizer steps a cell will run (its budget's planned epochs; ``converged``: up to its cap)."""
    if cell.size == 0:
        return 0
    batch = min(cfg.trial.train.batch_size, cell.size)
    per_epoch = math.ceil(cell.size / batch)
    budget = Budget.for_cell(
        cfg.sweep, epochs=cell.epochs, train_to=cell.train_to, select_epoch=cell.selects_epoch, refit=cell.refits
    )
    # a refit trains the chosen length again (at most the planned epochs, on all N items)
    return per_epoch * budget.planned_epochs(per_epoch) * (2 if budget.refit else 1)


def plan_compile(cfg: SweepConfig, cells: list[Cell], *, gpus_per_trial: float, cluster_gpus: float) -> CompileDecision:
    """The sweep's compile mode: ``decide_compile`` over the cells to run, spread over the workers that run them."""
    slots = int(cluster_gpus // gpus_per_trial) if gpus_per_trial > 0 else 0
    if cfg.resources.max_concurrent:
        slots = min(slots, cfg.resources.max_concurrent) if slots else cfg.resources.max_concurrent
    workers = max(1, min(len(cells), slots or 1))
    steps = sum(planned_steps(cfg, c) for c in cells)
    return decide_compile(
        requested=cfg.trial.train.compile,
        cuda=gpus_per_trial > 0,
        steps_per_worker=steps / workers,
        batch_size=cfg.trial.train.batch_size,
        cost=MEASURED[family(cfg.trial.model.kind)],
    )


def family(kind: str) -> str:
    """The measured architecture family of a ``model.kind``."""
    return {"hf-text": "text", "clip": "clip", "dual": "clip"}.get(kind, "image")


def with_compile(cfg: SweepConfig, mode: str) -> SweepConfig:
    """``cfg`` with the decided mode in ``train.compile`` (the trials' ids do not change: see ``execution_neutral``)."""
    train = dataclasses.replace(cfg.trial.train, compile=mode)
    return dataclasses.replace(cfg, trial=dataclasses.replace(cfg.trial, train=train))
