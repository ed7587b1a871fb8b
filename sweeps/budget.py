"""How long one trial trains: the per-size training budget a user would choose (``sweep.train_to``).

- ``epochs``: exactly ``sweep.epochs`` epochs at every size (the Jina study's protocol). At 100 items and batch 32
  that is 4 optimizer steps: the small end of a data-size curve then measures how little was trained.
- ``steps``: at least ``sweep.epochs`` epochs and at least ``sweep.min_steps`` optimizer steps, in whole
  epochs (small sizes repeat their items), at most ``sweep.epoch_cap`` epochs.
- ``converged``: early stopping. ``sweep.val_fraction`` of the N items is carved out as validation (never
  the held-out set, see ``sweeps.validation``); after each epoch the model is scored on it, and training stops
  when the score has not improved for ``sweep.patience`` epochs, or at ``sweep.epoch_cap``. The trial reports
  the best epoch's model (weights restored), and the training seconds of every epoch it ran: the epochs
  after the best are what early stopping costs a user too.
- ``validated`` (the data-size default): at least ``sweep.min_steps`` optimizer steps (the step minimum),
  then on while the validation score improves (``sweep.patience``), at most ``sweep.epoch_cap`` epochs; the
  reported model is the best validated epoch at or after the step minimum. Why the floor also bounds the choice:
  at 100 items the carve-out is 20 queries and their score wandered within 0.006 map over epochs 1-7 while the
  held-out score rose steadily (CLINC150, benchmarks/RESULTS.md): validation that small cannot rank epochs, and
  the step minimum is the length measured to serve small sizes. Where the step minimum already reaches the cap
  there is nothing left to choose, so nothing is carved out: all N items train, exactly as under ``steps``.
  Otherwise the carve-out is drawn within labels (one item of a two-item label validates by finding its
  sibling, which trains), at most ``sweep.val_queries`` items: a few hundred queries rank epochs, and every
  carved item is one that does not train.
- ``refit`` (``sweep.refit``, with ``converged`` or ``validated``; on by default with ``validated``): once validation has
  chosen the length, train all N items (the carve-out included) from the pretrained weights for exactly the
  chosen epochs, and report that model, as scikit-learn's ``GridSearchCV(refit=True)`` does. The carve-out then
  costs no labels, only compute: about (chosen epochs x N) more item-passes, the search's epochs still paid. The
  refit is a fresh fixed-epoch run of the chosen length (same items, seed, batches, optimizer and schedule), so
  it trains the model an ``epochs`` trial of that length would. Where nothing was carved out (the step minimum
  reaches the cap) the searched model already trained all N items and there is no refit. Why it is the default:
  without it the carve-out's items never train, and the middle of a data-size curve (the sizes that carve out 20%)
  read below the same length trained on all N items, which moved the curve's answers (benchmarks/RESULTS.md, "Each
  size trained to its validated length").

An ``epochs`` budget with ``select_epoch`` (``sweep.select_epoch: validation``) is the data x epochs grid with a
validation score per epoch: the carve-out of ``converged`` (the same items, the same score), but no stopping;
every epoch is evaluated on the held-out set and carries its validation score, so the report picks the best epoch
per size on validation (``roi.epoch_grid``). The carved items do not train, as under ``converged``. The choice has
the step floor of ``validated`` (``sweep.min_steps``): no epoch below that many optimizer steps is chosen (only the
last where none reaches it); the floor changes nothing the trial trains, it travels to ``roi`` in the results
table's ``min_steps`` column.

Why a trial stopped (``stop_reason`` in the results table): ``epochs`` (its fixed epochs), ``steps`` (the step
minimum set the epoch count), ``converged`` (no improvement for ``patience`` epochs), ``cap`` (``epoch_cap``).
The trial loop asks a ``Stopping`` policy (``Budget.stopping``) after every epoch whether to go on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

TrainTo = Literal["epochs", "steps", "converged", "validated"]
# sweep.min_steps when the sweep file leaves it out. A select_epoch grid's cells name their floor only when it is
# another one, so the ids of grids run before the floor existed (all at this default) stay what they were.
DEFAULT_MIN_STEPS = 100
StopReason = Literal["epochs", "steps", "converged", "cap"]


@dataclass(frozen=True)
class Budget:
    """One trial's training budget; built from the sweep spec (``Budget.for_cell``) or ``Budget.fixed(epochs)``."""

    train_to: TrainTo = "epochs"
    epochs: int = 1  # epochs: exactly this; steps: at least this
    min_steps: int = 0  # steps: train at least this many; validated: stop no earlier; select_epoch: choose no earlier
    patience: int = 2  # converged, validated
    epoch_cap: int = 20  # steps, converged, validated
    val_fraction: float = 0.2  # converged, validated, select_epoch
    val_queries: int = 0  # validated: at most this many validation items (0: no cap)
    monitor: str = "map"  # converged, validated, select_epoch: the validation metric (mrr, map or recall at eval k)
    select_epoch: bool = False  # epochs: carve out validation and score it after every epoch (no stopping)
    refit: bool = False  # converged, validated: after the choice, train all N items for the chosen epochs

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.epoch_cap < 1 or self.patience < 1 or self.min_steps < 0 or self.val_queries < 0:
            raise ValueError("budget: epochs, epoch_cap and patience must be >= 1, min_steps and val_queries >= 0")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"budget: val_fraction must be between 0 and 1, got {self.val_fraction}")
        if self.select_epoch and self.train_to != "epochs":
            raise ValueError("budget: select_epoch applies to train_to epochs (converged chooses its epoch itself)")
        if self.refit and not self.stops_on_validation:
            raise ValueError(
                "budget: refit applies to train_to converged and validated (the rules that choose a length)"
            )

    @property
    def validates(self) -> bool:
        """Whether the trial carves a validation share out of its N items (and trains on the rest)."""
        return self.train_to in ("converged", "validated") or self.select_epoch

    @property
    def stops_on_validation(self) -> bool:
        """Whether validation decides the length (the held-out set is then evaluated once, on the chosen model)."""
        return self.train_to in ("converged", "validated")

    def for_items(self, n: int, *, batch_size: int) -> Budget:
        """The budget a trial of ``n`` items runs: ``validated`` whose step minimum reaches the cap even without a
        carve-out is ``steps`` (validation could choose nothing, and so there is nothing to refit); every other
        budget is itself."""
        if self.train_to != "validated" or n < 1:
            return self
        carved = int(n * self.val_fraction + 0.5)
        carved = min(carved, self.val_queries) if self.val_queries else carved
        if math.ceil(self.min_steps / math.ceil((n - carved) / min(batch_size, n))) < self.epoch_cap:
            return self
        return Budget(train_to="steps", epochs=self.epochs, min_steps=self.min_steps, epoch_cap=self.epoch_cap)

    @classmethod
    def fixed(cls, epochs: int) -> Budget:
        return cls(train_to="epochs", epochs=epochs)

    @classmethod
    def for_cell(
        cls, spec, *, epochs: int, train_to: str, select_epoch: bool | None = None, refit: bool | None = None
    ) -> Budget:
        """The budget of one grid cell of ``spec`` (a ``SweepSpec``): its epochs and rule, the spec's settings.

        ``select_epoch``: whether the cell carves out validation (``Cell.selects_epoch``); ``refit``: whether it
        refits all N items after the choice (``Cell.refits``); None = as ``spec`` says. A trial runs what its cell
        (and so its id) says, even where a cell was made without the spec's rule.
        """
        if select_epoch is None:
            select_epoch = spec.select_epoch == "validation"
        if refit is None:
            refit = spec.refit
        if train_to == "epochs":
            if select_epoch:
                return cls(
                    epochs=max(1, epochs),
                    min_steps=spec.min_steps,
                    select_epoch=True,
                    val_fraction=spec.val_fraction,
                    monitor=spec.monitor,
                )
            return cls.fixed(max(1, epochs))
        return cls(
            train_to=train_to,
            epochs=max(1, epochs),
            min_steps=spec.min_steps,
            patience=spec.patience,
            epoch_cap=spec.epoch_cap,
            val_fraction=spec.val_fraction,
            val_queries=spec.val_queries if train_to == "validated" else 0,
            monitor=spec.monitor,
            refit=refit,
        )

    def planned_epochs(self, steps_per_epoch: int) -> int:
        """Epochs to plan the learning-rate schedule for: the exact count (epochs, steps) or the cap."""
        if self.train_to == "epochs":
            return self.epochs
        if self.train_to != "steps":
            return self.epoch_cap
        return min(max(self.epochs, math.ceil(self.min_steps / max(1, steps_per_epoch))), self.epoch_cap)

    def stopping(self) -> Stopping:
        """A fresh stopping policy for one trial under this budget."""
        return Stopping(self)

    def identity(self) -> dict:
        """What of the budget shapes a trial's outcome (part of its id when the rule is not ``epochs``)."""
        if self.train_to == "epochs" and self.select_epoch:
            # the carve-out changes what trains: a grid with validation is not the same trial as one without
            ident = {
                "train_to": "epochs",
                "select_epoch": "validation",
                "val_fraction": self.val_fraction,
                "monitor": self.monitor,
            }
            # The step floor of the epoch choice trains nothing differently, but the records are what the results
            # table is rebuilt from, so it is named with the cell: only when it is not the default, so the grids
            # run before the floor existed keep their ids (and their default floor).
            if self.min_steps != DEFAULT_MIN_STEPS:
                ident["min_steps"] = self.min_steps
            return ident
        if self.train_to == "epochs":
            return {"train_to": "epochs"}
        if self.train_to == "steps":
            return {"train_to": "steps", "min_steps": self.min_steps, "epoch_cap": self.epoch_cap}
        ident = {
            "train_to": self.train_to,
            "patience": self.patience,
            "epoch_cap": self.epoch_cap,
            "val_fraction": self.val_fraction,
            "monitor": self.monitor,
        }
        if self.train_to == "validated":
            ident.update(min_steps=self.min_steps, val_queries=self.val_queries)
        if self.refit:  # only when on: the ids of trials without a refit stay what they were
            ident["refit"] = True
        return ident


class EarlyStopping:
    """Best-so-far tracking on a validation score (higher is better) with patience.

    ``update(epoch, score)`` returns True when ``score`` is a new best (the caller then keeps the weights);
    ``should_stop`` turns True once ``patience`` epochs in a row brought no improvement. Ties are no
    improvement: the earlier (cheaper) model wins.
    """

    def __init__(self, *, patience: int, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience = patience
        self.min_delta = min_delta
        self.best_epoch = 0
        self.best_score = -math.inf
        self.bad_epochs = 0

    def update(self, epoch: int, score: float) -> bool:
        # The first epoch is the best so far whatever its score (a NaN score must not leave no model to report).
        if self.best_epoch == 0 or score > self.best_score + self.min_delta:
            self.best_epoch, self.best_score, self.bad_epochs = epoch, float(score), 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience


@dataclass(frozen=True)
class Verdict:
    """The stopping policy's answer after one epoch."""

    keep: bool  # this epoch's model is the one to report so far (validation rules: a new best)
    stop: bool  # train no further
    reason: StopReason | None = None  # set when ``stop``: the results table's ``stop_reason``


class Stopping:
    """When a trial stops, asked after every epoch with the optimizer steps so far and the validation score.

    - ``epochs``: after ``budget.epochs`` epochs.
    - ``steps``: after at least ``budget.epochs`` epochs once ``budget.min_steps`` steps are done (counted as they
      happen, so the epoch count needs no batches built ahead), or at the cap.
    - ``converged``: when ``budget.patience`` epochs in a row brought no validation improvement, or at the cap.
    - ``validated``: as ``converged``, counting only the epochs once ``budget.min_steps`` steps are done (the
      epochs before are neither scored nor chosen).
    ``keep`` marks a new best (validation rules) or the epoch a fixed rule reports.
    """

    def __init__(self, budget: Budget):
        self.budget = budget
        self.early = EarlyStopping(patience=budget.patience) if budget.stops_on_validation else None

    def scores(self, steps: int) -> bool:
        """Whether this epoch needs a validation score (at ``steps`` optimizer steps so far)."""
        b = self.budget
        return b.stops_on_validation and (b.train_to == "converged" or steps >= b.min_steps)

    def after_epoch(self, epoch: int, *, steps: int, score: float | None = None) -> Verdict:
        b = self.budget
        cap = epoch >= b.epoch_cap
        if b.train_to == "epochs":
            done = epoch >= b.epochs
            return Verdict(keep=True, stop=done, reason="epochs" if done else None)
        if b.train_to == "steps":
            if epoch >= b.epochs and steps >= b.min_steps:
                return Verdict(keep=True, stop=True, reason="steps" if epoch > b.epochs else "epochs")
            return Verdict(keep=True, stop=cap, reason="cap" if cap else None)
        if not self.scores(steps):  # validated, below the step minimum
            return Verdict(keep=False, stop=cap, reason="cap" if cap else None)
        keep = self.early.update(epoch, score)
        if self.early.should_stop:
            return Verdict(keep=keep, stop=True, reason="converged")
        return Verdict(keep=keep, stop=cap, reason="cap" if cap else None)
