"""The ``sweep:`` section of a sweep file (``SweepSpec``) and the grid of cells it expands to (``cells_for``).

A ``Cell`` is one trial's point of the grid: size, epochs, seed and the budget rule it trains under; its
``label`` starts every trial id (``sweeps.results.trial_id``). Validated once, like the rest of the sweep file
(``sweeps.config``, which re-exports these names).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sweeps.budget import DEFAULT_MIN_STEPS
from sweeps.errors import ConfigError

Experiment = Literal["data_size", "epochs"]


@dataclass(frozen=True)
class SweepSpec:
    """Which experiment a sweep runs: the data-size axis or the epoch axis."""

    experiment: Experiment
    # data_size: labeled items per trial (0 = baseline, always added), or "auto": the adaptive grid
    # (sweeps/search.py) doubles from min_size until the drop point is found, then narrows its bracket.
    sizes: tuple[int, ...] | Literal["auto"] = ()
    min_size: int | None = None  # auto: the first size (default: 4 items per label; 100 pairs)
    max_size: int | None = None  # auto: the largest size (default: the training pool)
    max_trials: int = 40  # auto: at most this many trials (sizes x seeds, baseline not counted)
    max_gpu_hours: float | None = None  # auto: no new size once the records hold this many GPU-hours
    bracket_ratio: float = 1.25  # auto: done when the drop point's bracket (upper / lower size) is this tight
    drop: float = 0.7  # auto: the drop the search looks for (ROI fallen to 30% of its peak), as in roi report
    epochs: int = 1  # data_size: epochs per trial
    size: int = 1000  # epochs: the fixed number of labeled items
    max_epochs: int = 10  # epochs: evaluate after each epoch up to this many
    # epochs: "single" = one run per seed evaluated after every epoch (ten points for the price of one
    # 10-epoch run; equal to independent runs under a constant learning rate); "independent" = one run per
    # epoch count, as ten separate fine-tuning jobs would be.
    epoch_runs: Literal["single", "independent"] = "single"
    seeds: tuple[int, ...] = (0,)
    # data_size: how long each size trains (sweeps/budget.py). epochs: exactly sweep.epochs at every size;
    # steps: at least sweep.epochs epochs and sweep.min_steps optimizer steps (small sizes repeat their items);
    # converged: early stopping on a validation carve-out of the N items (never the held-out set) after
    # sweep.patience epochs without improvement of sweep.monitor; validated: converged with the carve-out drawn
    # within labels (at most sweep.val_queries items) and no stop before sweep.min_steps steps. steps,
    # converged and validated stop at sweep.epoch_cap. min_steps is also the floor of a select_epoch grid's choice:
    # no epoch below that many optimizer steps is chosen (only the last where none reaches it).
    # Default (None): validated for data_size, measured (benchmarks/RESULTS.md, "Each size trained to its
    # validated length"): steps trains every size past ~800 items 1-2 epochs and under-trains them; epochs for
    # the epochs experiment, which sets its epochs itself.
    train_to: Literal["epochs", "steps", "converged", "validated"] | None = None
    min_steps: int = DEFAULT_MIN_STEPS
    patience: int = 2
    epoch_cap: int = 20
    val_fraction: float = 0.2
    # validated: at most this many validation items. A few hundred queries rank epochs stably; every carved item
    # is one that does not train, so 20% of 5,000 items would cost the large sizes 1,000 labels.
    val_queries: int = 250
    monitor: Literal["mrr", "map", "recall"] = "map"
    # data_size, train_to: epochs, epochs > 1: a data x epochs grid (every epoch is evaluated on the held-out set).
    # "validation" also carves sweep.val_fraction of each trial's N items out as validation (as converged does;
    # those items do not train) and scores sweep.monitor on it after every epoch (results column val_score), so
    # `roi report` picks the best epoch per size on validation, never on the held-out set, and never one below
    # sweep.min_steps optimizer steps (a 20-40 item carve-out cannot rank the first few). "none": no carve-out.
    select_epoch: Literal["none", "validation"] = "none"
    # converged, validated: once validation has chosen a size's length, train all N items (the carve-out included)
    # from the pretrained weights for the chosen epochs and report that model (scikit-learn's GridSearchCV
    # refit=True). Costs about chosen epochs x N more item-passes per trial. Default (None): on with validated (the
    # data-size default), off otherwise. Measured (benchmarks/RESULTS.md, "Each size trained to its validated
    # length"): without it the 20% carve-out does not train, so the middle of the curve (500-2,000 items) read
    # 0.006-0.016 mAP@20 below the same length trained on all N items, and the answer moved with it.
    refit: bool | None = None

    def __post_init__(self) -> None:
        if self.train_to is None:  # resolved here, once: the saved config.yaml names the rule a run used
            # A data x epochs grid (select_epoch) is fixed epochs by definition; other data-size sweeps get validated.
            grid = self.experiment != "data_size" or self.select_epoch != "none"
            object.__setattr__(self, "train_to", "epochs" if grid else "validated")
        if self.refit is None:  # resolved once too: a run's config.yaml says whether its points were refit
            object.__setattr__(self, "refit", self.train_to == "validated")
        if self.sizes == "auto":
            if self.experiment != "data_size":
                raise ValueError("sweep.sizes: auto is for the data_size experiment")
            if (self.min_size is not None and self.min_size < 1) or (
                self.max_size is not None and self.max_size < (self.min_size or 1)
            ):
                raise ValueError("sweep.min_size must be >= 1 and sweep.max_size >= sweep.min_size")
            if self.max_trials < 1 or not self.bracket_ratio > 1.0 or not 0.0 < self.drop <= 1.0:
                raise ValueError("sweep.max_trials must be >= 1, sweep.bracket_ratio > 1, sweep.drop in (0, 1]")
            if self.max_gpu_hours is not None and not self.max_gpu_hours > 0:
                raise ValueError("sweep.max_gpu_hours must be > 0 (or left out)")
        elif self.experiment == "data_size" and not self.sizes:
            raise ValueError("sweep.sizes must list at least one size for a data_size sweep (or say auto)")
        if self.sizes != "auto" and any(s < 0 for s in self.sizes):
            raise ValueError(f"sweep.sizes must be >= 0, got {list(self.sizes)}")
        if len(set(self.sizes)) != len(self.sizes):
            raise ValueError(f"sweep.sizes has duplicates: {list(self.sizes)}")
        if self.epochs < 1 or self.max_epochs < 1:
            raise ValueError("sweep.epochs and sweep.max_epochs must be >= 1")
        if self.size < 1:
            raise ValueError("sweep.size must be >= 1")
        if self.experiment == "epochs" and self.train_to != "epochs":
            raise ValueError("sweep.train_to applies to data_size sweeps; an epochs sweep sets its epochs itself")
        if self.min_steps < 0 or self.patience < 1 or self.epoch_cap < 1 or self.val_queries < 1:
            raise ValueError("sweep.min_steps must be >= 0, sweep.patience, sweep.epoch_cap and sweep.val_queries >= 1")
        if self.train_to != "epochs" and self.epoch_cap < self.epochs:
            raise ValueError(f"sweep.epoch_cap ({self.epoch_cap}) must be >= sweep.epochs ({self.epochs})")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"sweep.val_fraction must be between 0 and 1, got {self.val_fraction}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"sweep.seeds must be a non-empty list of distinct seeds, got {list(self.seeds)}")
        if self.select_epoch != "none":
            self._check_select_epoch()
        if self.refit and self.train_to not in ("converged", "validated"):
            raise ConfigError(
                f"refit trains all N items for the length validation chose; train_to: {self.train_to} chooses none",
                field="sweep.refit",
                fix="set sweep.train_to: validated (the data-size default) or converged, or remove sweep.refit",
            )

    def _check_select_epoch(self) -> None:
        # One message per way to get it wrong, each with the fix: the grid needs fixed epochs > 1 on listed sizes.
        if self.experiment != "data_size" or self.sizes == "auto":
            raise ConfigError(
                "select_epoch needs a data_size sweep with listed sizes",
                field="sweep.select_epoch",
                fix="set sweep.experiment: data_size and list sweep.sizes (not auto), or remove sweep.select_epoch",
            )
        if self.train_to != "epochs":
            raise ConfigError(
                f"select_epoch picks among fixed epochs; train_to: {self.train_to} already decides them",
                field="sweep.select_epoch",
                fix="set sweep.train_to: epochs (or leave it out: with select_epoch it defaults to epochs), or remove sweep.select_epoch",
            )
        if self.epochs < 2:
            raise ConfigError(
                f"select_epoch needs more than one epoch to choose from (sweep.epochs is {self.epochs})",
                field="sweep.epochs",
                fix="set sweep.epochs to the most epochs any size may need, e.g. 5",
            )


@dataclass(frozen=True)
class Cell:
    """One point of a sweep's grid."""

    size: int
    epochs: int  # epochs rule: the epochs; steps, converged, validated: the minimum epochs
    seed: int
    train_to: str = "epochs"  # the budget rule (sweeps/budget.py)
    # the rule's settings when it is not epochs ("min_steps=100,epoch_cap=20"), or the validation carve-out of
    # an epochs grid (select_epoch: validation; with min_steps only when it is not DEFAULT_MIN_STEPS): part of the id
    budget: str = ""

    @property
    def label(self) -> str:
        rule = "" if self.train_to == "epochs" else f"-{self.train_to}"
        if self.selects_epoch:
            rule = "-val"  # an epoch grid that carves out validation: it trains on fewer of its N items
        if self.refits:
            rule += "-refit"
        return f"n{self.size}-e{self.epochs}-s{self.seed}{rule}"

    @property
    def settings(self) -> dict[str, str]:
        """The budget string as {setting: value} (the one place it is parsed; values stay strings)."""
        return dict(part.split("=", 1) for part in self.budget.split(",") if "=" in part)

    @property
    def refits(self) -> bool:
        """A validation rule that trains all N items for the chosen length afterwards (``sweep.refit``)."""
        return self.settings.get("refit") == "True"

    @property
    def selects_epoch(self) -> bool:
        """An epoch grid with a validation carve-out (``sweep.select_epoch: validation``)."""
        return self.train_to == "epochs" and self.settings.get("select_epoch") == "validation"

    @property
    def min_steps(self) -> int:
        """The step floor the cell trains (``steps``, ``validated``) or chooses (a ``select_epoch`` grid) under:
        the one its budget names, the default for a ``select_epoch`` grid that names none (its floor is named only
        when it is another), 0 for the other rules and the baseline."""
        if not self.size:
            return 0
        if "min_steps" in self.settings:
            return int(self.settings["min_steps"])
        return DEFAULT_MIN_STEPS if self.selects_epoch else 0


def budget_key(spec: SweepSpec) -> str:
    """The settings of ``spec``'s budget rule as a short string (empty for ``epochs``)."""
    from sweeps.budget import Budget  # sweeps.budget reads these dataclasses

    ident = Budget.for_cell(spec, epochs=spec.epochs, train_to=spec.train_to).identity()
    return ",".join(f"{k}={v}" for k, v in sorted(ident.items()) if k != "train_to")


def cell_rule(spec: SweepSpec) -> dict[str, str]:
    """The budget fields of a data-size cell: none for plain fixed epochs (ids as before budget rules existed)."""
    if spec.train_to == "epochs" and spec.select_epoch == "none":
        return {}
    return {"train_to": spec.train_to, "budget": budget_key(spec)}


def cells_for(spec: SweepSpec) -> list[Cell]:
    """The grid of a sweep, baseline first. The baseline is evaluated once: it does not depend on the seed."""
    cells = [Cell(size=0, epochs=0, seed=spec.seeds[0])]
    if spec.experiment == "data_size" and spec.sizes == "auto":
        pass  # the adaptive grid's sizes come from its searcher (sweeps/search.py) as results arrive
    elif spec.experiment == "data_size":
        rule = cell_rule(spec)
        cells += [
            Cell(size=s, epochs=spec.epochs, seed=seed, **rule)
            for seed in spec.seeds
            for s in sorted(spec.sizes)
            if s > 0
        ]
    elif spec.epoch_runs == "single":
        cells += [Cell(size=spec.size, epochs=spec.max_epochs, seed=seed) for seed in spec.seeds]
    else:
        cells += [
            Cell(size=spec.size, epochs=e, seed=seed) for seed in spec.seeds for e in range(1, spec.max_epochs + 1)
        ]
    return cells
