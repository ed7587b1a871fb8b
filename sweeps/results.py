"""Trial records and the results table: the contract between ``sweeps`` and ``roi``.

Each finished (or failed) trial writes one JSON record, atomically (``sweeps.storage.RunFolder``: temporary
name then rename on a local folder, one whole PUT on an object store), named by a hash of its resolved config. The results table (Parquet + CSV, one row per trial per reported epoch)
is always rebuilt from the records, so a crashed driver loses nothing that finished and a sweep can be
extended by running only the cells without a record. Schema: ``docs/results-schema.md``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from sweeps.config import SweepConfig, SweepSpec, TrialConfig, config_hash, to_dict
from sweeps.errors import ConfigError
from sweeps.metrics import metric_keys
from sweeps.storage import RunFolder

RunDir = RunFolder | Path | str  # a run folder, or where one is (a local path or a URI)

RECORD_VERSION = 2  # 2: trial ids from the data's content, not its path; records carry data_id
RECORDS_DIR = "records"
DRIVER_STATE = "driver_state.json"  # the cells a running (or interrupted) driver was given

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
COST_COLUMNS = ("train_seconds", "eval_seconds", "items_seen", "gpu_type", "num_gpus", "gpu_seconds", "peak_memory_mb")
# How long each trial trained and why it stopped (sweeps/budget.py): `steps` (optimizer steps up to the row),
# `train_to` (the budget rule), `stop_reason` (final rows: epochs, steps, converged, cap), `final` (the trial's
# last row: the point a data-size curve uses), `val_seconds` (validation scoring under converged).
BUDGET_COLUMNS = ("steps", "train_to", "stop_reason", "final", "val_seconds")


def result_columns(k: int) -> tuple[str, ...]:
    return ID_COLUMNS + COST_COLUMNS + BUDGET_COLUMNS + metric_keys(k) + ("error",)


@dataclass(frozen=True)
class Cell:
    """One point of a sweep's grid."""

    size: int
    epochs: int  # epochs rule: the epochs; steps, converged: the minimum epochs
    seed: int
    train_to: str = "epochs"  # the budget rule (sweeps/budget.py)
    budget: str = ""  # the rule's settings when it is not epochs ("min_steps=100,epoch_cap=20"): part of the id

    @property
    def label(self) -> str:
        rule = "" if self.train_to == "epochs" else f"-{self.train_to}"
        return f"n{self.size}-e{self.epochs}-s{self.seed}{rule}"


def budget_key(spec: SweepSpec) -> str:
    """The settings of ``spec``'s budget rule as a short string (empty for ``epochs``)."""
    from sweeps.budget import Budget

    ident = Budget.for_cell(spec, epochs=spec.epochs, train_to=spec.train_to).identity()
    return ",".join(f"{k}={v}" for k, v in sorted(ident.items()) if k != "train_to")


def cells_for(spec: SweepSpec) -> list[Cell]:
    """The grid of a sweep, baseline first. The baseline is evaluated once: it does not depend on the seed."""
    cells = [Cell(size=0, epochs=0, seed=spec.seeds[0])]
    if spec.experiment == "data_size":
        rule = {} if spec.train_to == "epochs" else {"train_to": spec.train_to, "budget": budget_key(spec)}
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


# Where the data lives is not part of what a trial is: the same files under another checkout, mount point or
# `ray job submit --working-dir` give the same trials. What the files hold is (``data_id``).
LOCATION_FIELDS = ("path", "image_root")


def portable_config(cfg: TrialConfig) -> dict:
    """The trial settings without the data's location (``LOCATION_FIELDS``)."""
    out = to_dict(cfg)
    out["data"] = {k: v for k, v in out["data"].items() if k not in LOCATION_FIELDS}
    return out


def trial_id(cfg: TrialConfig, cell: Cell, *, data_id: str) -> str:
    """Stable id of a trial: its settings, its cell, and the content of its data (training pool and evaluation,
    ``PreparedData.data_id``): an edited data file gives new trials, a moved one the same."""
    cell_dict = to_dict(cell)
    if cell.train_to == "epochs":  # ids of fixed-epoch trials stay what they were before budget rules existed
        cell_dict.pop("train_to")
        cell_dict.pop("budget")
    blob = {"trial": portable_config(cfg), "cell": cell_dict, "data": data_id}
    return f"{cell.label}-{config_hash(blob, length=10)}"


def record_relpath(tid: str) -> str:
    return f"{RECORDS_DIR}/{tid}.json"


def record_path(run_dir: RunDir, tid: str) -> Path | str:
    return RunFolder.coerce(run_dir).location(record_relpath(tid))


def make_record(
    *,
    sweep: str,
    experiment: str,
    tid: str,
    cfg: TrialConfig,
    cell: Cell,
    dataset: str,
    eval_set: str,
    data_id: str,
    num_gpus: float,
    rows: list[dict],
    status: str = "ok",
    error: str = "",
    extra: dict | None = None,
) -> dict:
    """A trial record: identity, the config it ran with, and one row per reported epoch."""
    return {
        "version": RECORD_VERSION,
        "sweep": sweep,
        "experiment": experiment,
        "trial_id": tid,
        "status": status,
        "error": error,
        "task": cfg.task,
        "model": cfg.model.name or f"{cfg.model.text_tower.name}+{cfg.model.image_tower.name}",
        "dataset": dataset,
        "eval_set": eval_set,
        "data_id": data_id,
        "cell": to_dict(cell),
        "num_gpus": num_gpus,
        "k": cfg.eval.k,
        "config": to_dict(cfg),
        "rows": rows,
        **(extra or {}),  # provenance: GPU ids, start and end times
    }


def write_record(run_dir: RunDir, record: dict) -> Path | str:
    folder = RunFolder.coerce(run_dir)
    return folder.write_text(record_relpath(record["trial_id"]), json.dumps(record, indent=1, sort_keys=True))


@dataclass(frozen=True)
class RecordScan:
    records: list[dict]
    corrupt: list[Path | str]  # not loaded: unreadable, truncated, or from an incompatible version
    # the subset of ``corrupt`` that parsed but carries another format version: (path, version). A run
    # folder with any of these is refused (``require_compatible``) instead of being silently re-run.
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


def require_compatible(run_dir: RunDir, scan: RecordScan) -> None:
    """Refuse a run folder written by another version of the tool, rather than silently re-running it all."""
    if not scan.incompatible:
        return
    path, version = scan.incompatible[0]
    raise ConfigError(
        f"result record of format version {version!r}, but this version of the tool reads version {RECORD_VERSION} "
        f"({len(scan.incompatible)} such record(s) in {run_dir})",
        where=path,
        fix="give the sweep a new name (name: in the sweep file) to start a new run folder, "
        "or use the version of the tool that wrote this one; never mix versions in one run folder",
    )


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
        )
        if not rec["rows"]:  # a failed trial that reported nothing: one row that carries the failure
            rows.append({**base, "epoch": 0, "steps": 0, "final": True, "stop_reason": "", "val_seconds": 0.0})
            continue
        for i, r in enumerate(rec["rows"]):
            row = dict(base)
            row.update(
                {key: r.get(key) for key in ("epoch", "train_seconds", "eval_seconds", "items_seen", "peak_memory_mb")}
            )
            if cell["size"] and "epochs" in r:  # what the trial ran (converged: up to its stop)
                row["epochs"] = r["epochs"]
            final = r.get("final", i == len(rec["rows"]) - 1)
            row.update(
                steps=int(r.get("steps", 0)),
                final=bool(final),
                stop_reason=r.get("stop_reason", "epochs" if final and cell["size"] else ""),
                val_seconds=float(r.get("val_seconds", 0.0)),
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
    df["steps"] = df["steps"].fillna(0).astype("int64")
    return df.sort_values(
        ["dataset", "model", "experiment", "seed", "size", "epochs", "epoch"], kind="stable"
    ).reset_index(drop=True)


def write_table(run_dir: RunDir, df: pd.DataFrame) -> tuple[Path | str, Path | str]:
    """Write ``results.parquet`` and ``results.csv`` atomically; returns where they are."""
    return RunFolder.coerce(run_dir).write_table(df)


def package_versions() -> dict[str, str]:
    """Versions of what determines the numbers: written beside every run's results."""
    import platform
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in (
        "finetuning-budget",
        "torch",
        "torchvision",
        "transformers",
        "ray",
        "faiss-cpu",
        "faiss-gpu",
        "numpy",
        "pandas",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def write_run_metadata(run_dir: RunDir, cfg_dict: dict) -> None:
    """The resolved config (``config.yaml``) and package versions (``versions.json``) beside the results."""
    import yaml

    folder = RunFolder.coerce(run_dir)
    folder.write_text("config.yaml", yaml.safe_dump(cfg_dict, sort_keys=False))
    folder.write_text("versions.json", json.dumps(package_versions(), indent=1))


def check_run_dir(run_dir: RunDir, cfg: SweepConfig, *, resume: bool) -> None:
    """Refuse to mix runs: an existing folder must hold records of this version, the same trial settings, and needs --resume."""
    folder = RunFolder.coerce(run_dir)
    folder.check_writable()
    scan = read_records(folder)
    require_compatible(folder, scan)
    saved_path = folder.location("config.yaml")
    if not folder.exists("config.yaml"):
        return
    import yaml

    try:
        saved = yaml.safe_load(folder.read_text("config.yaml")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"the run folder's saved config cannot be read ({type(exc).__name__})",
            where=saved_path,
            fix="give the sweep a new name (name: in the file)",
        ) from None
    saved_trial = saved.get("trial", {})
    if isinstance(saved_trial.get("data"), dict):
        saved_trial["data"] = {k: v for k, v in saved_trial["data"].items() if k not in LOCATION_FIELDS}
    diffs = _diff(saved_trial, portable_config(cfg.trial), "")
    if diffs:
        raise ConfigError(
            f"the run folder {folder} holds results of different trial settings: {'; '.join(diffs[:6])}",
            where=saved_path,
            fix="give the sweep a new name (name: in the file), or restore the old settings",
        )
    if not resume and scan.records:
        raise ConfigError(
            f"the run folder {folder} already holds finished trials",
            field="name",
            fix="add --resume to continue or extend it (only cells without a result run), or use a new name",
        )


def check_same_data(records: Iterable[dict], *, data_id: str, cfg: SweepConfig) -> None:
    """Refuse to add trials on other data to a run folder: its records were made from data whose content
    (training pool or evaluation set) differs from what the data files hold now."""
    other = sorted({r["data_id"] for r in records if r.get("data_id") != data_id})
    if other:
        raise ConfigError(
            "the data changed since this run folder's trials ran (its content differs, not only its location)",
            where=cfg.trial.data.path or cfg.trial.data.hub_id,
            field="data",
            fix="restore the data the run used, or give the sweep a new name (name: in the file)",
        )


def _diff(old, new, prefix: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += _diff(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else key)
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]
