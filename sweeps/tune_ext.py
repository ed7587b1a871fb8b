"""The project's extensions of Ray Tune, used by the driver (``sweeps.tuner``): what a Ray user would not
expect to find in a plain ``Tuner(...)`` script.

- ``TrialTimeout``: FIFO scheduling that stops a trial reporting nothing for ``trial_timeout_s``;
- ``RecordCallback``: writes each trial's record (its last report, ``results.RECORD_KEY``) to the run folder;
- ``ProgressCallback``: one line per finished trial, and the driver's gauges (done, failed, left);
- ``describe_error``: one readable line for a trial's error.

The only calls into Tune's private API are in ``fail_without_retry``, checked against ``RAY_CHECKED``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

import ray
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler

from sweeps.config import Cell
from sweeps.results import RECORD_KEY, write_record
from sweeps.storage import RunFolder

RAY_CHECKED = "2.60"  # the Ray version whose private API ``fail_without_retry`` was checked against


def fail_without_retry(tune_controller, trial: Trial, error: Exception) -> None:
    """Fail ``trial`` now through Tune's own error path, with no retry, and kill its actor.

    Tune has no public call for this: a scheduler may only answer CONTINUE/PAUSE/STOP for a trial that
    reports, and a hung trial does not. Two private parts of Ray 2.60 are used, here only: the
    controller behind the scheduler's API guard (``_tune_controller``) and ``_process_trial_failure``
    (the path a crashed trial takes: error recorded, callbacks called, resources freed). The Ray pin in
    pyproject.toml stops below the next minor version; moving it up means checking these two names again.
    """
    controller = getattr(tune_controller, "_tune_controller", tune_controller)  # past the scheduler's API guard
    process_failure = getattr(controller, "_process_trial_failure", None)
    if process_failure is None:
        raise RuntimeError(
            f"ray {ray.__version__} has no TuneController._process_trial_failure (checked against ray "
            f"2.60): trial_timeout_s needs the Ray version of pyproject.toml's pin"
        )
    actor = trial.temporary_state.ray_actor
    trial.max_failures = 0  # this trial only: fail now, no retry
    process_failure(trial, exception=error)
    if actor is not None:
        ray.kill(actor, no_restart=True)  # else Tune waits TUNE_FORCE_TRIAL_CLEANUP_S (600 s) for a hung actor


class TrialTimeout(FIFOScheduler):
    """FIFO scheduling plus ``trial_timeout_s``: a running trial that reports nothing for that long is stopped.

    A ``Stopper`` only sees results, so it can never stop a trial that stopped reporting; the scheduler is
    asked which trial to run at every step of Tune's event loop (about ten times a second), which is where
    this checks the running trials. A timed-out trial is recorded as failed at once (``on_timeout``), is
    failed through Tune's own error path with no retry (a hang at the same settings tends to hang again,
    and each retry would cost the whole timeout), and its actor is killed so that its GPU is free at once.
    """

    def __init__(self, timeout_s: float, *, on_timeout: Callable[[Cell, str], None]):
        super().__init__()
        self.timeout_s = float(timeout_s)
        self.on_timeout = on_timeout
        self._last: dict[tuple[str, int], float] = {}  # (trial id, failures so far) -> last sign of life

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        self._last[(trial.trial_id, trial.run_metadata.num_failures)] = time.monotonic()
        return super().on_trial_result(tune_controller, trial, result)

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        self._stop_hung(tune_controller)
        return super().choose_trial_to_run(tune_controller)

    def _stop_hung(self, tune_controller) -> None:
        now = time.monotonic()
        running = {
            (t.trial_id, t.run_metadata.num_failures): t
            for t in tune_controller.get_trials()
            if t.status == Trial.RUNNING
        }
        for key in list(self._last):
            if key not in running:
                del self._last[key]
        for key, trial in running.items():
            since = self._last.setdefault(key, now)
            if now - since <= self.timeout_s:
                continue
            reason = f"no report for {now - since:.0f} s (trial_timeout_s = {self.timeout_s:g}): stopped as hung, not retried"
            print(f"[trial {Cell(**trial.config['cell']).label}] {reason}", flush=True)
            self.on_timeout(Cell(**trial.config["cell"]), f"TrialTimeout: {reason}")
            del self._last[key]
            fail_without_retry(tune_controller, trial, TimeoutError(reason))

    def __getstate__(self) -> dict:  # Tune pickles its scheduler with the experiment state
        return {**self.__dict__, "_last": {}}


_DRIVER_GAUGES: dict = {}


def _driver_gauge(key: str):
    # Module-level, so the gauges live as long as the driver process: a collected Gauge stops exporting.
    if key not in _DRIVER_GAUGES:
        from ray.util.metrics import Gauge

        _DRIVER_GAUGES[key] = Gauge(
            f"finetuning_budget_trials_{key}", description=f"trials {key} in the sweep", tag_keys=("sweep",)
        )
    return _DRIVER_GAUGES[key]


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def describe_error(error: BaseException) -> str:
    """One readable line for a trial's error: the cause inside Ray's wrapper (``RayTaskError(RuntimeError)``
    prints its own header first, with colour codes), as ``Type: message``."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        error = cause
    lines = [line for line in _ANSI.sub("", str(error)).splitlines() if line.strip()] or [""]
    return f"{type(error).__name__}: {lines[0].strip()[:500]}"


class RecordCallback(tune.Callback):
    """Writes each trial's record (its last report) to the run folder as soon as the driver receives it.

    ``written`` collects the trial ids recorded during this fit (shared with the driver's failure handling).
    """

    def __init__(self, folder: RunFolder, written: set[str] | None = None):
        self.folder = folder
        self.written = written if written is not None else set()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if RECORD_KEY in result:
            record = json.loads(result[RECORD_KEY])
            write_record(self.folder, record)
            self.written.add(record["trial_id"])


class ProgressCallback(tune.Callback):
    """One line per finished trial: done/total, best metric so far, elapsed and estimated time left."""

    def __init__(self, name: str, *, total: int):
        self.name, self.total = name, total
        self.done = self.failed = 0
        self.best: dict[str, float] = {}
        self.start = time.perf_counter()

    def _publish(self) -> None:
        for key, value in (
            ("done", self.done),
            ("failed", self.failed),
            ("left", self.total - self.done - self.failed),
        ):
            _driver_gauge(key).set(value, tags={"sweep": self.name})

    def setup(self, **info) -> None:
        self._publish()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        for key, value in result.items():
            if "@" in key and isinstance(value, float) and result.get("size", 0) > 0:
                self.best[key] = max(self.best.get(key, float("-inf")), value)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        failed = trial.last_result.get("status") == "failed"
        self.failed += failed
        self.done += not failed
        self._report(trial, "failed" if failed else "done")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.failed += 1
        self._report(trial, "failed")

    def _report(self, trial: Trial, what: str) -> None:
        self._publish()
        finished = self.done + self.failed
        elapsed = time.perf_counter() - self.start
        eta = elapsed / finished * (self.total - finished) if finished else float("nan")
        best = " ".join(f"best {k} {v:.4f}" for k, v in sorted(self.best.items()))
        print(
            f"[{self.name}] {trial} {what}: trials {finished}/{self.total} ({self.failed} failed) {best} elapsed {elapsed:.0f}s, ~{eta:.0f}s left",
            flush=True,
        )
