"""What a trial reports: ``EpochReport`` after each evaluated epoch (one results-table row), and ``Progress``, where
the trial stands between reports (``sweeps.trial`` moves it along epoch by epoch, through validation and refit)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sweeps.train import EpochStats


@dataclass(frozen=True)
class EpochReport:
    """What a trial reports after each evaluated epoch (epoch 0: the pretrained baseline).

    Under ``converged`` and ``validated`` the one report is the best epoch's model: ``epoch``, ``steps`` and
    ``val_score`` are that model's, ``epochs``, ``items_seen`` and ``train_seconds`` what the trial ran (the
    epochs after the best included). With ``refit`` the model is the one retrained on all N items for ``epoch``
    epochs: ``steps`` and ``loss`` are the refit's, ``val_score`` the searched model's that chose the length,
    ``epochs`` the search's, ``items_seen`` and ``train_seconds`` search and refit together. Flat on purpose: a new
    field is one line here and one column in the table.
    """

    size: int
    epochs: int  # epochs the trial trains (converged, validated: the epochs it ran before stopping)
    epoch: int
    seed: int
    train_seconds: float  # cumulative, training only, device synchronised
    eval_seconds: float  # this evaluation
    items_seen: int
    loss: float | None  # mean training loss of this epoch
    peak_memory_mb: float
    device: str
    metrics: dict[str, float] = field(default_factory=dict)
    steps: int = 0  # optimizer steps of the reported model
    final: bool = False  # the trial's last report: the point a data-size curve uses
    train_to: str = ""  # the budget rule (empty for the baseline)
    stop_reason: str = ""  # final report: epochs, steps, converged or cap
    val_seconds: float = 0.0  # cumulative validation scoring (validation rules, select_epoch), not in train_seconds
    # the reported model's validation score (budget.monitor): validation rules (the best epoch's), select_epoch (this
    # epoch's)
    val_score: float | None = None
    query_scores: dict[str, list[float]] = field(default_factory=dict)  # rr, ap, recall per held-out query
    compile_seconds: float = 0.0  # compiling and warming up the towers for this trial (sweeps.compiled); not training
    refit: bool = False  # the reported model was retrained on all N items for the chosen epochs (budget.refit)

    def as_row(self) -> dict:
        row = asdict(self)
        row.update(row.pop("metrics"))
        return row


@dataclass(frozen=True)
class Progress:
    """Where a trial stands: the fields of its next ``EpochReport`` that the held-out evaluation does not give."""

    size: int
    epochs: int
    seed: int
    epoch: int = 0
    train_seconds: float = 0.0
    items_seen: int = 0
    loss: float | None = None
    steps: int = 0
    final: bool = False
    train_to: str = ""
    stop_reason: str = ""
    val_seconds: float = 0.0
    val_score: float | None = None
    refit: bool = False

    def after(self, stats: EpochStats) -> Progress:
        """The progress one more trained epoch later (not yet validated)."""
        return replace(
            self,
            epoch=self.epoch + 1,
            train_seconds=self.train_seconds + stats.seconds,
            items_seen=self.items_seen + stats.items,
            loss=stats.loss,
            steps=self.steps + stats.steps,
            val_score=None,
        )

    def validated(self, score: float, seconds: float) -> Progress:
        return replace(self, val_score=score, val_seconds=self.val_seconds + seconds)

    def refitted(self, chosen: Progress, refit: EpochStats) -> Progress:
        """The searched trial (``self``, stopped) after refitting all N items for ``chosen.epoch`` epochs.

        The model is the refit's (its steps and last loss); the cost is search and refit together (the user pays
        both); ``val_score`` stays the chosen epoch's, the score that chose the length (the refit trained on the
        carved items, so its own score on them would not be validation).
        """
        return replace(
            self,
            epoch=chosen.epoch,
            steps=refit.steps,
            loss=refit.loss,
            train_seconds=self.train_seconds + refit.seconds,
            items_seen=self.items_seen + refit.items,
            val_score=chosen.val_score,
            refit=True,
        )
