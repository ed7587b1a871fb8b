"""Experiment trackers beside the run folder: one MLflow run per trial, TensorBoard scalars per trial.

The driver writes both (``TrackingCallback``, a Tune callback, like ``tune_ext.RecordCallback``), from the
reports that make the records: MLflow gets the trial's parameters when it starts, its metrics after every
epoch (the epoch is the step) and, when its record arrives, its training and evaluation seconds and status;
TensorBoard gets the record's rows as one event file per trial. Nothing changes in the trial function.

Ray ships ``MLflowLoggerCallback`` and ``TBXLoggerCallback``. Both key a run by Tune's trial, which is new in
every Tune experiment (each ``roi sweep --resume`` starts one, see ``sweeps.tuner``) and at every retry, and
log every number Tune adds to a result. Here the trial id (``sweeps.results.trial_id``) is the key: a trial
that runs again replaces its unfinished run, so a store holds one run per trial of a run folder, and ``sync``
fills in, from the records, any trial the tracker missed (it was down, or the driver was killed between the
record and the run). The records stay the source of truth: a tracker that fails warns once, is left alone
for the rest of the sweep, and the sweep goes on.

MLflow itself is imported in ``roi.tracking`` only (the report's summary run uses it too); tensorboardX here.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune

from sweeps.config import Cell, SweepConfig
from sweeps.metrics import metric_keys
from sweeps.results import RECORD_KEY, TrialIdentity, make_record, read_records
from sweeps.storage import RunFolder

TENSORBOARD_DIR = "tensorboard"  # <run folder>/tensorboard/<trial id>/events.out.tfevents.*
TRIAL_RUN = "trial"  # the ``kind`` tag of a trial's MLflow run (the report's run is ``summary``)
# Per-epoch numbers besides the retrieval metrics; train_seconds is cumulative, eval_seconds this evaluation's.
ROW_SCALARS = ("train_seconds", "eval_seconds", "items_seen", "steps", "loss", "val_score", "val_seconds")


def row_scalars(row: dict, *, k: int) -> dict[str, float]:
    """The numbers of one reported row (an epoch) that trackers plot: metrics@k, seconds, items, steps."""
    out = {}
    for key in (*metric_keys(k), *ROW_SCALARS):
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def trial_params(record: dict) -> dict[str, Any]:
    """A trial's MLflow params (from its record, or the identity part of one): what to group and filter by."""
    cell = record["cell"]
    return {
        "trial_id": record["trial_id"],
        "size": cell["size"],
        "epochs": cell["epochs"],
        "seed": cell["seed"],
        "train_to": cell.get("train_to", "epochs") if cell["size"] else "",  # the budget rule
        "budget": cell.get("budget", ""),
        "model": record["model"],
        "dataset": record["dataset"],
        "eval_set": record["eval_set"],
        "task": record["task"],
    }


def trial_tags(record: dict, *, folder: str) -> dict[str, str]:
    cell = Cell(**record["cell"])
    return {
        "sweep": record["sweep"],
        "kind": TRIAL_RUN,
        "trial_id": record["trial_id"],
        "run_folder": folder,  # one store may hold two run folders of one sweep name (local and s3://)
        # the cell without its seed: the runs that average into one point of a curve share it
        "cell_group": cell.label.replace(f"-s{cell.seed}", ""),
    }


def _warn(message: str) -> None:
    print(message, flush=True)


class MlflowTrials:
    """One MLflow run per trial id of a run folder, in the experiment named after the sweep."""

    def __init__(self, uri: str, *, sweep: str, folder: str, k: int, warn: Callable[[str], None] = _warn):
        self.uri, self.sweep, self.folder, self.k, self.warn = uri, sweep, folder, k, warn
        self.failed = False  # the tracker failed once: left alone for the rest of the sweep
        self._client: Any = None
        self._exp = ""
        self._live: dict[str, tuple[int, str]] = {}  # trial id -> (Tune attempt, run id) logged by this driver

    def __getstate__(self) -> dict:  # Tune pickles its callbacks with the experiment state
        return {**self.__dict__, "_client": None, "_live": {}}

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        if self.failed:
            return None
        try:
            if self._client is None:
                from roi.tracking import client, experiment_id

                self._client = client(self.uri)
                self._exp = experiment_id(self._client, self.sweep)
            return fn()
        except Exception as exc:  # noqa: BLE001 -- any tracker failure: warn once, never fail the sweep
            self.failed = True
            message = str(exc).splitlines()[0][:300] if str(exc) else ""
            self.warn(
                f"[{self.sweep}] warning: MLflow at {self.uri} failed ({what}: {type(exc).__name__}: {message}); "
                "the sweep goes on without it and its records are kept: a later `roi sweep --resume` with the "
                "tracker up fills in the missing runs"
            )
            return None

    def _runs_by_trial(self) -> dict[str, list]:
        from roi.tracking import find_runs

        out: dict[str, list] = {}
        for run in find_runs(self._client, self._exp, sweep=self.sweep, kind=TRIAL_RUN):
            if run.data.tags.get("run_folder") == self.folder:
                out.setdefault(run.data.tags.get("trial_id", ""), []).append(run)
        return out

    def _new_run(self, identity: dict) -> str:
        """A fresh run for the trial, after removing any earlier one of it (an interrupted or failed attempt)."""
        from roi.tracking import log_values

        tid = identity["trial_id"]
        for old in self._runs_by_trial().get(tid, []):
            self._client.delete_run(old.info.run_id)
        run = self._client.create_run(
            self._exp, run_name=Cell(**identity["cell"]).label, tags=trial_tags(identity, folder=self.folder)
        )
        log_values(self._client, run.info.run_id, params=trial_params(identity))
        return run.info.run_id

    def epoch(self, identity: dict, row: dict, *, attempt: int) -> None:
        """Log one epoch's row of a running trial (``identity``: its record without rows)."""

        def log() -> None:
            from roi.tracking import log_values

            tid = identity["trial_id"]
            if tid not in self._live or self._live[tid][0] != attempt:  # its first report in this attempt
                self._live[tid] = (attempt, self._new_run(identity))
            log_values(self._client, self._live[tid][1], metrics=row_scalars(row, k=self.k), step=row["epoch"])

        self._call("logging an epoch", log)

    def finish(self, record: dict) -> None:
        """The trial's record arrived: its seconds and status, and the run ends (made whole if it is new)."""

        def log() -> None:
            from roi.tracking import log_values

            tid = record["trial_id"]
            live = self._live.pop(tid, None)
            run_id = live[1] if live else self._new_run(record)
            if not live:  # a run made from the record: every epoch now
                for row in record["rows"]:
                    log_values(self._client, run_id, metrics=row_scalars(row, k=self.k), step=row["epoch"])
            rows = record["rows"]
            totals = {}
            if rows:
                totals = {
                    "total_train_seconds": float(rows[-1].get("train_seconds") or 0.0),
                    "total_eval_seconds": float(sum(r.get("eval_seconds") or 0.0 for r in rows)),
                }
            step = rows[-1]["epoch"] if rows else 0
            tags = {"status": record["status"], "error": record.get("error", "")[:5000]}
            log_values(self._client, run_id, metrics=totals, step=step, tags=tags)
            self._client.set_terminated(run_id, "FINISHED" if record["status"] == "ok" else "FAILED")

        self._call("finishing a trial's run", log)

    def crashed(self, tid: str) -> None:
        """A trial ended in an error without a record: its run (if it has one) ends as FAILED."""
        live = self._live.pop(tid, None)
        if live:
            self._call("ending a crashed trial's run", lambda: self._client.set_terminated(live[1], "FAILED"))

    def sync(self, records: list[dict]) -> int:
        """Make a run from each record that has no finished run of its status; returns how many were made."""

        def fill() -> int:
            runs = self._runs_by_trial()
            made = 0
            for record in records:
                want = "FINISHED" if record["status"] == "ok" else "FAILED"
                have = runs.get(record["trial_id"], [])
                if len(have) == 1 and have[0].info.status == want:
                    continue
                self.finish(record)
                made += 1
            return made

        return self._call("filling in runs from the records", fill) or 0


def write_tensorboard(folder: RunFolder, record: dict, *, k: int) -> None:
    """The trial's rows as one TensorBoard event file, ``tensorboard/<trial id>/``, written whole through the
    run folder (one PUT on an object store), replacing an earlier attempt's."""
    from tensorboardX import SummaryWriter

    from roi.tracking import metric_name  # TensorBoard's tags and MLflow's names alike: mrr@20 -> mrr_at_20

    tid = record["trial_id"]
    with tempfile.TemporaryDirectory(prefix="tb-") as tmp:
        writer = SummaryWriter(logdir=tmp, flush_secs=3600)
        for row in record["rows"]:
            for key, value in row_scalars(row, k=k).items():
                writer.add_scalar(metric_name(key), value, global_step=int(row["epoch"]))
        writer.add_text("trial", json.dumps(trial_params(record), indent=1).replace("\n", "  \n"))
        writer.close()
        for old in folder.list_files(f"{TENSORBOARD_DIR}/{tid}", ""):
            folder.delete(old)
        for path in sorted(Path(tmp).iterdir()):
            folder.write_bytes(f"{TENSORBOARD_DIR}/{tid}/{path.name}", path.read_bytes())


class TrackingCallback(tune.Callback):
    """Feeds a sweep's trials to MLflow and/or TensorBoard (``tracking:`` of the sweep file).

    ``setup`` first fills in what the records hold and the trackers lack (a resumed sweep after a kill, a
    tracker that was down), then each trial is logged as it reports.
    """

    def __init__(self, cfg: SweepConfig, folder: RunFolder, identity: TrialIdentity):
        self.cfg, self.folder, self.identity = cfg, folder, identity
        self.k = cfg.trial.eval.k
        self.mlflow = (
            MlflowTrials(cfg.tracking.mlflow, sweep=cfg.name, folder=str(folder.location()), k=self.k)
            if cfg.tracking.mlflow
            else None
        )
        self.tensorboard = cfg.tracking.tensorboard
        self._tb_failed = False

    def _identity(self, trial) -> dict:
        """The trial's record without rows: its id, cell, model and dataset, as the trial will record them."""
        return make_record(self.identity, Cell(**trial.config["cell"]), rows=[])

    def setup(self, **info) -> None:
        records = read_records(self.folder).records
        if self.mlflow is not None:
            made = self.mlflow.sync(records)
            if made:
                print(f"[{self.cfg.name}] MLflow: {made} run(s) made from records the tracker lacked", flush=True)
        if self.tensorboard:
            for record in records:
                if record["status"] == "ok" and not self.folder.exists(f"{TENSORBOARD_DIR}/{record['trial_id']}"):
                    self._tensorboard(record)

    def _tensorboard(self, record: dict) -> None:
        if self._tb_failed or record["status"] != "ok":
            return
        try:
            write_tensorboard(self.folder, record, k=self.k)
        except Exception as exc:  # noqa: BLE001 -- TensorBoard files are a view: never fail the sweep for them
            self._tb_failed = True
            print(f"[{self.cfg.name}] warning: TensorBoard files not written ({type(exc).__name__}: {exc})", flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if RECORD_KEY in result:
            record = json.loads(result[RECORD_KEY])
            if self.mlflow is not None:
                self.mlflow.finish(record)
            if self.tensorboard:
                self._tensorboard(record)
        elif "epoch" in result and self.mlflow is not None:
            self.mlflow.epoch(self._identity(trial), result, attempt=trial.run_metadata.num_failures)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        if self.mlflow is not None:
            self.mlflow.crashed(self._identity(trial)["trial_id"])


def tracking_callbacks(cfg: SweepConfig, folder: RunFolder, identity: TrialIdentity) -> list:
    """``[TrackingCallback]`` when the sweep file (or ``--mlflow``/``--tensorboard``) asks for a tracker, else []."""
    if not cfg.tracking.mlflow and not cfg.tracking.tensorboard:
        return []
    return [TrackingCallback(cfg, folder, identity)]
