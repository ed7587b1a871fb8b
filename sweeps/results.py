"""Trial records and the results table: the contract between ``sweeps`` and ``roi``.

Each finished (or failed) trial writes one JSON record, atomically (``sweeps.storage.RunFolder``: temporary
name then rename on a local folder, one whole PUT on an object store), named by a hash of its resolved config. The results table (Parquet + CSV, one row per trial per reported epoch)
is always rebuilt from the records, so a crashed driver loses nothing that finished and a sweep can be
extended by running only the cells without a record. Schema: ``docs/results-schema.md``. What a run folder
is allowed to hold and who may write it (checks, lock, metadata) is ``sweeps.runs``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import pandas as pd

from sweeps.config import Cell, SweepConfig, TrialConfig
from sweeps.dataclass_io import config_hash, to_dict
from sweeps.metrics import metric_keys
from sweeps.storage import RunFolder

if TYPE_CHECKING:  # the analysis half (`roi status`) reads records without torch
    from sweeps.prepare import PreparedData

RunDir = RunFolder | Path | str  # a run folder, or where one is (a local path or a URI)

RECORD_VERSION = 2  # 2: trial ids from the data's content, not its path; records carry data_id
RECORDS_DIR = "records"
# The key of a trial's last report that carries its whole record (JSON): written by the trainable on the
# worker, read by the driver's ``tune_ext.RecordCallback``, and by nothing else.
RECORD_KEY = "record_json"

ID_COLUMNS = (
    "sweep",
    "experiment",
    "trial_id",
    "status",
    "task",
    "model",
    "dataset",
    "eval_set",
    "seed",
    "size",
    "epochs",
    "epoch",
)
COST_COLUMNS = (
    "train_seconds",
    "eval_seconds",
    "items_seen",
    "gpu_type",
    "num_gpus",
    "gpu_seconds",
    "peak_memory_mb",
    "compile_seconds",  # compiling the towers for the trial (sweeps/compiled.py): held apart from train_seconds
)
# How long each trial trained and why it stopped (sweeps/budget.py): `steps` (optimizer steps up to the row),
# `train_to` (the budget rule), `min_steps` (the rule's step minimum: the floor of a select_epoch grid's choice),
# `stop_reason` (final rows: epochs, steps, converged, cap), `final` (the trial's last row: the point a data-size
# curve uses), `val_seconds` (validation scoring under converged, validated or select_epoch), `val_score` (the
# row's model on the validation carve-out; NaN without one), `refit` (the row's model was retrained on all N items
# for the length validation chose, sweep.refit).
BUDGET_COLUMNS = ("steps", "train_to", "min_steps", "stop_reason", "final", "val_seconds", "val_score", "refit")


def result_columns(k: int) -> tuple[str, ...]:
    return ID_COLUMNS + COST_COLUMNS + BUDGET_COLUMNS + metric_keys(k) + ("error",)


# Where the data lives is not part of what a trial is: the same files under another checkout, mount point or
# `ray job submit --working-dir` give the same trials. What the files hold is (``data_id``).
LOCATION_FIELDS = ("path", "image_root")


def portable_config(cfg: TrialConfig) -> dict:
    """The trial settings without the data's location (``LOCATION_FIELDS``)."""
    out = to_dict(cfg)
    out["data"] = {k: v for k, v in out["data"].items() if k not in LOCATION_FIELDS}
    out["model"].pop("trust_package", None)  # a permission, not a setting: it changes no number
    return execution_neutral(out)


def execution_neutral(trial: dict) -> dict:
    """``trial`` (a plain trial-settings dict) with ``train.compile`` as ``off``: compiled or eager, auto or not, a
    trial trains the same model (to float rounding, as on another device), so the setting is not part of its id
    and a sweep's saved config matches whatever compile mode it ran under. Ids stay those of eager runs."""
    train = trial.get("train")
    if isinstance(train, dict) and "compile" in train:
        trial = {**trial, "train": {**train, "compile": "off"}}
    return trial


def trial_id(cfg: TrialConfig, cell: Cell, *, data_id: str) -> str:
    """Stable id of a trial: its settings, its cell, and the content of its data (training pool and evaluation,
    ``PreparedData.data_id``): an edited data file gives new trials, a moved one the same."""
    cell_dict = to_dict(cell)
    if cell.train_to == "epochs" and not cell.budget:
        # ids of plain fixed-epoch trials stay what they were before budget rules existed
        cell_dict.pop("train_to")
        cell_dict.pop("budget")
    blob = {"trial": portable_config(cfg), "cell": cell_dict, "data": data_id}
    return f"{cell.label}-{config_hash(blob, length=10)}"


def record_relpath(tid: str) -> str:
    return f"{RECORDS_DIR}/{tid}.json"


@dataclass(frozen=True)
class TrialIdentity:
    """What every trial record of one sweep run shares: the sweep, its trial settings and its data.

    Small and picklable (no data, no model): Tune ships it to workers and callbacks. With a cell it gives a
    trial's id (``trial_id``) and its record (``make_record``).
    """

    sweep: str
    experiment: str  # data_size or epochs
    cfg: TrialConfig
    dataset: str
    eval_set: str  # the evaluation set's id (``PreparedData.eval_id``)
    data_id: str  # the data's content (``PreparedData.data_id``)

    @classmethod
    def of(cls, sweep: SweepConfig, prepared: PreparedData) -> TrialIdentity:
        """The identity of a sweep's trials on prepared data."""
        return cls(
            sweep.name, sweep.sweep.experiment, sweep.trial, prepared.dataset, prepared.eval_id, prepared.data_id
        )

    def trial_id(self, cell: Cell) -> str:
        return trial_id(self.cfg, cell, data_id=self.data_id)


def make_record(
    identity: TrialIdentity,
    cell: Cell,
    *,
    rows: list[dict],
    num_gpus: float = 0.0,
    status: str = "ok",
    error: str = "",
    extra: dict | None = None,
) -> dict:
    """A trial record: identity (its id computed here), the config it ran with, and one row per reported epoch.

    Args:
        identity: the sweep run's trials' shared identity; ``cell``: this trial's.
        rows: one dict per reported epoch (``EpochReport.as_row``); empty for a trial that failed before any.
        num_gpus: the GPUs the trial held (0 on the CPU).
        status, error: ``ok``, or ``failed`` with the error's text.
        extra: provenance (GPU ids, start and end times).
    """
    cfg = identity.cfg
    return {
        "version": RECORD_VERSION,
        "sweep": identity.sweep,
        "experiment": identity.experiment,
        "trial_id": identity.trial_id(cell),
        "status": status,
        "error": error,
        "task": cfg.task,
        "model": cfg.model.name or f"{cfg.model.text_tower.name}+{cfg.model.image_tower.name}",
        "dataset": identity.dataset,
        "eval_set": identity.eval_set,
        "data_id": identity.data_id,
        "cell": to_dict(cell),
        "num_gpus": num_gpus,
        "k": cfg.eval.k,
        "config": to_dict(cfg),
        "rows": rows,
        **(extra or {}),
    }


def write_record(run_dir: RunDir, record: dict) -> Path | str:
    folder = RunFolder.coerce(run_dir)
    return folder.write_text(record_relpath(record["trial_id"]), json.dumps(record, indent=1, sort_keys=True))


@dataclass(frozen=True)
class RecordScan:
    records: list[dict]
    corrupt: list[Path | str]  # not loaded: unreadable, truncated, or from an incompatible version
    # the subset of ``corrupt`` that parsed but carries another format version: (path, version). A run
    # folder with any of these is refused (``sweeps.runs.require_compatible``) instead of being silently re-run.
    incompatible: list[tuple[Path | str, object]] = ()


def corrupt_relpath(path: Path | str) -> str:
    """The relative path (for ``RunFolder.delete``) of an entry of ``RecordScan.corrupt``."""
    return f"{RECORDS_DIR}/{PurePosixPath(str(path)).name}"


def read_records(run_dir: RunDir) -> RecordScan:
    folder = RunFolder.coerce(run_dir)
    records, corrupt, incompatible = [], [], []
    for rel in folder.list_files(RECORDS_DIR, ".json"):
        path = folder.location(rel)
        try:
            record = json.loads(folder.read_text(rel))
        except (OSError, ValueError):
            corrupt.append(path)
            continue
        if not isinstance(record, dict) or "version" not in record:
            corrupt.append(path)
        elif record["version"] != RECORD_VERSION:
            corrupt.append(path)
            incompatible.append((path, record["version"]))
        elif (
            not isinstance(record.get("rows"), list)
            or not isinstance(record.get("cell"), dict)
            or "trial_id" not in record
        ):
            corrupt.append(path)
        else:
            records.append(record)
    return RecordScan(records=records, corrupt=corrupt, incompatible=incompatible)


def records_to_table(records: Iterable[dict], *, k: int) -> pd.DataFrame:
    """One row per trial per reported epoch, in the documented schema, ordered by cell and epoch."""
    rows = []
    for rec in records:
        cell = rec["cell"]
        base = {
            col: rec[col]
            for col in ("sweep", "experiment", "trial_id", "status", "task", "model", "dataset", "eval_set", "error")
        }
        base.update(
            seed=cell["seed"],
            size=cell["size"],
            epochs=cell["epochs"] if cell["size"] else 0,
            num_gpus=float(rec["num_gpus"]),
            train_to=cell.get("train_to", "epochs") if cell["size"] else "",
            min_steps=Cell(**cell).min_steps,
        )
        if not rec["rows"]:  # a failed trial that reported nothing: one row that carries the failure
            rows.append(
                {
                    **base,
                    "epoch": 0,
                    "steps": 0,
                    "final": True,
                    "stop_reason": "",
                    "val_seconds": 0.0,
                    "val_score": None,
                    "compile_seconds": 0.0,
                    "refit": False,
                }
            )
            continue
        for i, r in enumerate(rec["rows"]):
            row = dict(base)
            row.update(
                {key: r.get(key) for key in ("epoch", "train_seconds", "eval_seconds", "items_seen", "peak_memory_mb")}
            )
            if cell["size"] and "epochs" in r:  # what the trial ran (converged, validated: up to its stop)
                row["epochs"] = r["epochs"]
            final = r.get("final", i == len(rec["rows"]) - 1)
            row.update(
                steps=int(r.get("steps", 0)),
                final=bool(final),
                stop_reason=r.get("stop_reason", "epochs" if final and cell["size"] else ""),
                val_seconds=float(r.get("val_seconds", 0.0)),
                val_score=r.get("val_score"),
                compile_seconds=float(r.get("compile_seconds", 0.0)),  # records before compile-once: 0
                refit=bool(r.get("refit", False)),  # records before sweep.refit: no refit
            )
            row["gpu_type"] = r.get("device", "cpu")
            row.update({key: r.get(key) for key in metric_keys(k)})
            rows.append(row)
    df = pd.DataFrame(rows, columns=list(result_columns(k)))
    df["gpu_seconds"] = df["train_seconds"].astype(float) * df["num_gpus"].astype(float)
    df["error"] = df["error"].fillna("")
    df["status"] = df["status"].fillna("ok")
    df["train_to"] = df["train_to"].fillna("")
    df["stop_reason"] = df["stop_reason"].fillna("")
    df["final"] = df["final"].fillna(False).astype(bool)
    df["refit"] = df["refit"].fillna(False).astype(bool)
    df["steps"] = df["steps"].fillna(0).astype("int64")
    df["min_steps"] = df["min_steps"].fillna(0).astype("int64")
    df["val_score"] = pd.to_numeric(df["val_score"], errors="coerce").astype("float64")  # None -> NaN
    return df.sort_values(
        ["dataset", "model", "experiment", "seed", "size", "epochs", "epoch"], kind="stable"
    ).reset_index(drop=True)


def write_table(run_dir: RunDir, df: pd.DataFrame) -> tuple[Path | str, Path | str]:
    """Write ``results.parquet`` and ``results.csv`` atomically; returns where they are."""
    return RunFolder.coerce(run_dir).write_table(df)


QUERY_TABLE = "queries.parquet"  # per-query scores beside results.parquet (docs/results-schema.md)
QUERY_COLUMNS = ("trial_id", "epoch", "query", "rr", "ap", "recall")


def records_to_query_table(records: Iterable[dict]) -> pd.DataFrame:
    """One row per (trial, reported epoch, held-out query): the per-query RR, AP and recall behind the means.

    ``query`` is the query's position in the evaluated sample, the same for every trial of one eval_set, so
    ``roi`` can resample queries for the baseline and every trial alike. Records written before the field
    existed contribute nothing.
    """
    frames = []
    for rec in records:
        if rec.get("status", "ok") != "ok":
            continue
        for r in rec["rows"]:
            scores = r.get("query_scores") or {}
            if not all(scores.get(name) for name in QUERY_COLUMNS[3:]):
                continue
            n = len(scores["rr"])
            frames.append(
                pd.DataFrame(
                    {
                        "trial_id": rec["trial_id"],
                        "epoch": int(r["epoch"]),
                        "query": range(n),
                        **{name: pd.array(scores[name], dtype="float32") for name in QUERY_COLUMNS[3:]},
                    }
                )
            )
    if not frames:
        return pd.DataFrame(columns=list(QUERY_COLUMNS))
    out = pd.concat(frames, ignore_index=True)
    return out.astype({"epoch": "int32", "query": "int32"})


def write_query_table(run_dir: RunDir, records: Iterable[dict]) -> Path | str | None:
    """Write ``queries.parquet`` when the records carry per-query scores; None (nothing written) otherwise."""
    table = records_to_query_table(records)
    if table.empty:
        return None
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    return RunFolder.coerce(run_dir).write_bytes(QUERY_TABLE, buf.getvalue())
