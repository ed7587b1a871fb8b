"""Read and validate a results table (schema: ``docs/results-schema.md``).

Only the columns the analysis needs are required, so a table exported from another tool works; the other
schema columns get neutral defaults. Failed trials are dropped here, and counted, so every later stage
sees ``status == "ok"`` rows only.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from roi.errors import RoiInputError

SCHEMA_DOC = "docs/results-schema.md"

REQUIRED_COLUMNS: tuple[str, ...] = (
    "experiment",
    "status",
    "task",
    "model",
    "dataset",
    "eval_set",
    "seed",
    "size",
    "epochs",
    "epoch",
    "train_seconds",
)
STRING_COLUMNS: tuple[str, ...] = ("experiment", "status", "task", "model", "dataset", "eval_set")
INT_COLUMNS: tuple[str, ...] = ("seed", "size", "epochs", "epoch")
FLOAT_COLUMNS: tuple[str, ...] = ("train_seconds",)
# Schema columns the analysis can do without; a foreign table may omit them.
OPTIONAL_FLOAT_COLUMNS: tuple[str, ...] = (
    "eval_seconds",
    "items_seen",
    "num_gpus",
    "gpu_seconds",
    "peak_memory_mb",
    "steps",
    # the budget rule's step minimum; for a select_epoch grid the floor of the epoch choice (roi.epoch_grid). NaN
    # in tables written before it existed (their grids used the default floor, roi.epoch_grid.DEFAULT_MIN_STEPS)
    "min_steps",
    "val_seconds",
    "val_score",  # the row's model on the validation carve-out of its N items; NaN without one
    "compile_seconds",  # compiling the towers for the trial, apart from train_seconds; 0 in older tables
)
OPTIONAL_STRING_COLUMNS: tuple[str, ...] = ("sweep", "trial_id", "gpu_type", "error", "train_to", "stop_reason")
# `final`: the trial's last row (the data-size curve's point); derived as epoch == epochs for tables without it.
# `refit`: the row's model was retrained on all N items for the length validation chose (sweep.refit); False for
# tables without it.
OPTIONAL_BOOL_COLUMNS: tuple[str, ...] = ("final", "refit")
STOP_REASONS: tuple[str, ...] = ("", "epochs", "steps", "converged", "cap")
EXPERIMENTS: tuple[str, ...] = ("data_size", "epochs")
METRIC_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*@\d+$")

# Where validate_table leaves what it dropped, for the report's notes (pandas keeps attrs through copies).
NOTES_ATTR = "roi_notes"
SOURCE_ATTR = "roi_source"


def metric_columns(df: pd.DataFrame) -> list[str]:
    """Columns named like ``name@k`` (``mrr@20``, ``recall@10``), in table order."""
    return [str(c) for c in df.columns if METRIC_PATTERN.match(str(c))]


def find_table(path: str | Path) -> Path:
    """The table file for ``path``: the file itself, or ``results.parquet`` / ``results.csv`` in a run directory."""
    path = Path(path)
    if path.is_dir():
        for name in ("results.parquet", "results.csv"):
            if (path / name).is_file():
                return path / name
        raise RoiInputError(
            f"{path}: no results.parquet or results.csv in this folder; run the sweep first (`roi sweep ...`) "
            f"or pass the table file itself"
        )
    if not path.exists():
        raise RoiInputError(
            f"{path}: no such file or folder; pass a run folder (runs/<sweep>) or a .parquet/.csv table"
        )
    if path.suffix.lower() not in (".parquet", ".csv"):
        raise RoiInputError(f"{path}: unknown table format {path.suffix!r}; export the table as .parquet or .csv")
    return path


def is_uri(path: str | Path) -> bool:
    """``s3://...``, ``gs://...``, ``file://...``: a run folder or table on a filesystem pyarrow opens."""
    return "://" in str(path)


def fetch_uri_table(uri: str) -> tuple[str, bytes]:
    """(the table's URI, its bytes) for a run folder or table file at ``uri`` on object storage.

    pyarrow (already a dependency, for Parquet) opens the URI; credentials come from the environment, as
    for the sweep that wrote it. The table is small, so it is read whole.
    """
    import pyarrow.fs as pafs

    hint = "check the URI and the credentials in the environment, or copy results.parquet down and pass that file"
    try:
        fs, base = pafs.FileSystem.from_uri(uri)
        info = fs.get_file_info(base)
        if info.type == pafs.FileType.Directory:
            found = [n for n in ("results.parquet", "results.csv") if fs.get_file_info(f"{base}/{n}").is_file]
            if not found:
                raise RoiInputError(f"{uri}: no results.parquet or results.csv in this folder; run the sweep first")
            base, uri = f"{base}/{found[0]}", f"{uri.rstrip('/')}/{found[0]}"
        elif info.type == pafs.FileType.NotFound:
            raise RoiInputError(f"{uri}: no such file or folder; {hint}")
        if Path(base).suffix.lower() not in (".parquet", ".csv"):
            raise RoiInputError(f"{uri}: unknown table format; export the table as .parquet or .csv")
        with fs.open_input_file(base) as handle:
            return uri, handle.read()
    except RoiInputError:
        raise
    except Exception as exc:  # unknown scheme, no credentials, no network: name the URI and the way out
        raise RoiInputError(f"{uri}: cannot read ({type(exc).__name__}: {exc}); {hint}") from exc


def load_results(path: str | Path) -> pd.DataFrame:
    """Read and validate a results table.

    Args:
        path: a run directory (reads ``results.parquet``, else ``results.csv``) or a ``.parquet``/``.csv`` file;
            local, or a URI on object storage (``s3://bucket/prefix/<sweep>``, ``gs://...``).

    Returns:
        The ``status == "ok"`` rows with normalised dtypes; ``df.attrs["roi_notes"]`` says what was dropped.

    Raises:
        RoiInputError: unreadable file, missing columns, wrong dtypes, no metric column.
    """
    if is_uri(path):
        source, data = fetch_uri_table(str(path))
        table: str | Path | io.BytesIO = io.BytesIO(data)
        suffix = Path(source).suffix.lower()
    else:
        table = find_table(path)
        source, suffix = str(table), table.suffix.lower()
    try:
        if suffix == ".parquet":
            raw = pd.read_parquet(table)
        else:  # ids stay text: an eval_set hash like "0123" must not become the number 123
            raw = pd.read_csv(table, dtype={c: str for c in STRING_COLUMNS + OPTIONAL_STRING_COLUMNS})
    except Exception as exc:  # any reader failure is the file's fault here: say which file, not a traceback
        raise RoiInputError(
            f"{source}: cannot read the table ({type(exc).__name__}: {exc}); if a sweep is rewriting it, retry"
        ) from exc
    return validate_table(raw, source=source)


def validate_table(raw: pd.DataFrame, *, source: str = "results table") -> pd.DataFrame:
    """Check a results table against the schema and keep its ``ok`` rows.

    Args:
        raw: the table as read.
        source: where it came from, for messages.

    Returns:
        A copy with typed columns, defaults for absent optional columns, and only ``ok`` rows.

    Raises:
        RoiInputError: what is wrong, the column, and the fix.
    """
    notes = list(raw.attrs.get(NOTES_ATTR, []))
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise RoiInputError(
            f"{source}: missing column(s) {', '.join(missing)}; a results table needs {', '.join(REQUIRED_COLUMNS)} "
            f"and metric columns named like mrr@20 (see {SCHEMA_DOC})"
        )
    metrics = metric_columns(raw)
    if not metrics:
        raise RoiInputError(
            f"{source}: no metric column; metric columns are named name@k, e.g. mrr@20, map@20, recall@20 (see {SCHEMA_DOC})"
        )
    if raw.empty:
        raise RoiInputError(f"{source}: the table has no rows; wait for the sweep to finish its first trials")
    df = raw.copy()
    for col in STRING_COLUMNS + OPTIONAL_STRING_COLUMNS:
        if col in df.columns:
            df[col] = df[col].where(df[col].notna(), "").astype(str)
    df["status"] = df["status"].str.strip().str.lower()
    bad_status = sorted(set(df["status"]) - {"ok", "failed"})
    if bad_status:
        raise RoiInputError(f"{source}: column status has value(s) {bad_status}; allowed: ok, failed")
    for col in INT_COLUMNS + FLOAT_COLUMNS + tuple(metrics) + OPTIONAL_FLOAT_COLUMNS:
        if col in df.columns:
            df[col] = _numeric(df[col], col, source)

    failed = df["status"] != "ok"
    n_failed = int(failed.sum())
    if n_failed:
        notes.append(f"{n_failed} failed row(s) (status == failed) dropped from the analysis")
    df = df[~failed].copy()
    if df.empty:
        raise RoiInputError(f"{source}: every row has status failed; nothing to analyse (see the error column)")

    for col in INT_COLUMNS:
        values = df[col]
        bad = values.isna() | (values != np.round(values)) | (values < 0)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise RoiInputError(
                f"{source}: column {col} must hold integers >= 0 in ok rows; row {df.index[row]} has {values.iloc[row]}"
            )
        df[col] = values.astype("int64")
    unknown = sorted(set(df.loc[df["size"] > 0, "experiment"]) - set(EXPERIMENTS))
    if unknown:
        raise RoiInputError(f"{source}: column experiment has value(s) {unknown}; allowed: {', '.join(EXPERIMENTS)}")

    # Defaults for optional schema columns, so later stages never branch on their presence.
    for col in OPTIONAL_STRING_COLUMNS:
        if col not in df.columns:
            df[col] = ""
    if "num_gpus" not in df.columns:
        df["num_gpus"] = np.nan
    if "gpu_seconds" not in df.columns:
        df["gpu_seconds"] = df["train_seconds"] * df["num_gpus"]
    for col in OPTIONAL_FLOAT_COLUMNS:
        if col not in df.columns:
            df[col] = 0.0 if col in ("val_seconds", "compile_seconds") else np.nan
    df = _budget_columns(df, source)
    no_id = df["trial_id"] == ""
    if no_id.any():  # a foreign table without trial ids: one trial = one configured cell
        key = df.loc[no_id, ["experiment", "model", "dataset", "eval_set", "seed", "size", "epochs"]].astype(str)
        df.loc[no_id, "trial_id"] = key.agg("|".join, axis=1)

    df = df.reset_index(drop=True)
    df.attrs[NOTES_ATTR] = notes
    df.attrs[SOURCE_ATTR] = source
    return df


def _budget_columns(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """``final``, ``refit``, ``train_to`` and ``stop_reason``, typed; derived for tables written before they
    existed."""
    tuned = df["size"] > 0
    # Empty cells are rows of an older table concatenated with a newer one (docs/clinc150/results.csv is four
    # tables): they read as the column's absence does, final derived and refit False.
    older = {"final": df["epoch"] == df["epochs"], "refit": pd.Series(False, index=df.index)}
    for col in OPTIONAL_BOOL_COLUMNS:
        if col in df.columns:
            empty = df[col].isna()
            df[col] = _bools(df[col].where(~empty, "false"), col, source).where(~empty, older[col])
        else:
            df[col] = older[col]
    df.loc[tuned & (df["train_to"] == ""), "train_to"] = "epochs"
    derive = tuned & df["final"] & (df["stop_reason"] == "") & (df["train_to"] == "epochs")
    df.loc[derive, "stop_reason"] = "epochs"
    bad = sorted(set(df["stop_reason"]) - set(STOP_REASONS))
    if bad:
        raise RoiInputError(
            f"{source}: column stop_reason has value(s) {bad}; allowed: {', '.join(STOP_REASONS[1:])} or empty"
        )
    return df


def _bools(raw: pd.Series, col: str, source: str) -> pd.Series:
    """A true/false column as written to Parquet (bool) or CSV (text), as bools; anything else is an error."""
    text = raw.astype(str).str.strip().str.lower()
    known = text.isin(["true", "false", "1", "0", "1.0", "0.0"])
    if not known.all():
        row = int(np.flatnonzero(~known.to_numpy())[0])
        raise RoiInputError(
            f"{source}: column {col} must hold true or false; row {raw.index[row]} has {raw.iloc[row]!r}"
        )
    return text.isin(["true", "1", "1.0"])


def resolve_metrics(df: pd.DataFrame, requested: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """The metric columns to analyse, and notes on the ones skipped.

    Args:
        df: a validated table.
        requested: column names (``mrr@20``) or bare names (``mrr`` = every ``mrr@k``); None = all with values.

    Returns:
        (metrics, notes).

    Raises:
        RoiInputError: an unknown metric, a requested metric with no values, or no metric with values at all.
    """
    source = df.attrs.get(SOURCE_ATTR, "results table")
    available = metric_columns(df)
    fine_tuned = df[df["size"] > 0]
    if fine_tuned.empty:
        raise RoiInputError(
            f"{source}: no fine-tuned rows (size > 0, status ok), only the baseline; wait for the sweep's first trials"
        )
    has_values = {m for m in available if fine_tuned[m].notna().any()}
    notes: list[str] = []
    if requested:
        chosen: list[str] = []
        for name in requested:
            matches = [m for m in available if m == name or m.split("@")[0] == name]
            if not matches:
                raise RoiInputError(f"{source}: no metric column {name!r}; available: {', '.join(available)}")
            chosen += [m for m in matches if m not in chosen]
        empty = [m for m in chosen if m not in has_values]
        if empty:
            raise RoiInputError(
                f"{source}: metric column(s) {', '.join(empty)} are NaN in every fine-tuned ok row; "
                f"choose others with --metric (available: {', '.join(sorted(has_values)) or 'none'})"
            )
        return chosen, notes
    chosen = [m for m in available if m in has_values]
    if not chosen:
        raise RoiInputError(
            f"{source}: every metric column ({', '.join(available)}) is NaN in every fine-tuned ok row; "
            f"nothing to analyse (did the trials evaluate? see the error column)"
        )
    skipped = [m for m in available if m not in has_values]
    if skipped:
        notes.append(f"metric(s) {', '.join(skipped)} skipped: NaN in every fine-tuned row")
    return chosen, notes


def _numeric(values: pd.Series, col: str, source: str) -> pd.Series:
    """Column as float; a value that is present but not a number is an error, not a silent NaN."""
    out = pd.to_numeric(values, errors="coerce")
    bad = out.isna() & values.notna() & (values.astype(str).str.strip() != "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise RoiInputError(f"{source}: column {col} must be numeric; row {values.index[row]} has {values.iloc[row]!r}")
    return out.astype("float64")


QUERY_TABLE = "queries.parquet"
QUERY_SCORES = {"mrr": "rr", "map": "ap", "recall": "recall"}  # metric name -> per-query column


def query_table_path(path: str | Path) -> Path | None:
    """Where the per-query scores of a results table are: ``queries.parquet`` in a run folder or beside
    ``results.*``, ``<name>.queries.parquet`` beside ``<name>.results.*``; None for a URI or when absent."""
    if is_uri(path):
        return None
    path = Path(path)
    if path.is_dir():
        candidate = path / QUERY_TABLE
    elif path.name.startswith("results."):
        candidate = path.with_name(QUERY_TABLE)
    else:
        stem = path.name[: -len(path.suffix)]
        candidate = path.with_name(f"{stem.removesuffix('.results')}.{QUERY_TABLE}")
    return candidate if candidate.is_file() else None


def load_query_scores(path: str | Path) -> pd.DataFrame | None:
    """The per-query scores beside a results table (trial_id, epoch, query, rr, ap, recall), or None.

    None (the report then gives seeds-only intervals and says so) when there is no such file, as for tables
    written before sweeps stored per-query scores, or when it cannot be read.
    """
    found = query_table_path(path)
    if found is None:
        return None
    try:
        table = pd.read_parquet(found)
    except Exception:  # noqa: BLE001 -- optional input: an unreadable file means seeds-only intervals, not a failure
        return None
    needed = {"trial_id", "epoch", "query", *QUERY_SCORES.values()}
    return table if needed <= set(table.columns) and not table.empty else None
