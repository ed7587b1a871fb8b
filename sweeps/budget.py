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

An ``epochs`` budget with ``select_epoch`` (``sweep.select_epoch: validation``) is the data x epochs grid with a
validation score per epoch: the carve-out of ``converged`` (the same items, the same score), but no stopping;
every epoch is evaluated on the held-out set and carries its validation score, so the report picks the best epoch
per size on validation (``roi.epoch_grid``). The carved items do not train, as under ``converged``.

Why a trial stopped (``stop_reason`` in the results table): ``epochs`` (its fixed epochs), ``steps`` (the step
minimum set the epoch count), ``converged`` (no improvement for ``patience`` epochs), ``cap`` (``epoch_cap``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

TrainTo = Literal["epochs", "steps", "converged"]
StopReason = Literal["epochs", "steps", "converged", "cap"]


@dataclass(frozen=True)
class Budget:
    """One trial's training budget; built from the sweep spec (``Budget.for_cell``) or ``Budget.fixed(epochs)``."""

    train_to: TrainTo = "epochs"
    epochs: int = 1  # epochs: exactly this; steps: at least this
    min_steps: int = 0  # steps
    patience: int = 2  # converged
    epoch_cap: int = 20  # steps, converged
    val_fraction: float = 0.2  # converged
    monitor: str = "map"  # converged, select_epoch: the validation metric (mrr, map or recall at the eval k)
    select_epoch: bool = False  # epochs: carve out validation and score it after every epoch (no stopping)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.epoch_cap < 1 or self.patience < 1 or self.min_steps < 0:
            raise ValueError("budget: epochs, epoch_cap and patience must be >= 1 and min_steps >= 0")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"budget: val_fraction must be between 0 and 1, got {self.val_fraction}")
        if self.select_epoch and self.train_to != "epochs":
            raise ValueError("budget: select_epoch applies to train_to epochs (converged chooses its epoch itself)")

    @property
    def validates(self) -> bool:
        """Whether the trial carves a validation share out of its N items (and trains on the rest)."""
        return self.train_to == "converged" or self.select_epoch

    @classmethod
    def fixed(cls, epochs: int) -> Budget:
        return cls(train_to="epochs", epochs=epochs)

    @classmethod
    def for_cell(cls, spec, *, epochs: int, train_to: str, select_epoch: bool | None = None) -> Budget:
        """The budget of one grid cell of ``spec`` (a ``SweepSpec``): its epochs and rule, the spec's settings.

        ``select_epoch``: whether the cell carves out validation (``Cell.selects_epoch``); None = as ``spec`` says.
        A trial runs what its cell (and so its id) says, even where a cell was made without the spec's rule.
        """
        if select_epoch is None:
            select_epoch = spec.select_epoch == "validation"
        if train_to == "epochs":
            if select_epoch:
                return cls(
                    epochs=max(1, epochs), select_epoch=True, val_fraction=spec.val_fraction, monitor=spec.monitor
                )
            return cls.fixed(max(1, epochs))
        return cls(
            train_to=train_to,
            epochs=max(1, epochs),
            min_steps=spec.min_steps,
            patience=spec.patience,
            epoch_cap=spec.epoch_cap,
            val_fraction=spec.val_fraction,
            monitor=spec.monitor,
        )

    def planned_epochs(self, steps_per_epoch: int) -> int:
        """Epochs to schedule before training: the exact count (epochs, steps) or the cap (converged)."""
        if self.train_to == "epochs":
            return self.epochs
        if self.train_to == "converged":
            return self.epoch_cap
        needed = math.ceil(self.min_steps / max(1, steps_per_epoch))
        return min(max(self.epochs, needed), self.epoch_cap)

    def fixed_reason(self, steps_per_epoch: int) -> StopReason:
        """Why an ``epochs`` or ``steps`` trial ends where it does (known before it starts)."""
        if self.train_to == "epochs":
            return "epochs"
        needed = max(self.epochs, math.ceil(self.min_steps / max(1, steps_per_epoch)))
        if needed > self.epoch_cap:
            return "cap"
        return "steps" if needed > self.epochs else "epochs"

    def identity(self) -> dict:
        """What of the budget shapes a trial's outcome (part of its id when the rule is not ``epochs``)."""
        if self.train_to == "epochs" and self.select_epoch:
            # the carve-out changes what trains: a grid with validation is not the same trial as one without
            return {
                "train_to": "epochs",
                "select_epoch": "validation",
                "val_fraction": self.val_fraction,
                "monitor": self.monitor,
            }
        if self.train_to == "epochs":
            return {"train_to": "epochs"}
        if self.train_to == "steps":
            return {"train_to": "steps", "min_steps": self.min_steps, "epoch_cap": self.epoch_cap}
        return {
            "train_to": "converged",
            "patience": self.patience,
            "epoch_cap": self.epoch_cap,
            "val_fraction": self.val_fraction,
            "monitor": self.monitor,
        }


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
