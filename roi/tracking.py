"""MLflow, the one module of the project that imports it: the tracking store, a sweep's experiment, and the
report's summary run (``roi report RUN_DIR --mlflow URI``).

MLflow is optional (the ``tracking`` extra): ``roi`` works without it, and ``--mlflow`` without it is one
clear error. The sweep's per-trial runs (``sweeps.tracking``) go through the helpers here too, so both halves
name experiments, metrics and artifact folders the same way. A local store needs no server:
``sqlite:///mlflow.db`` (MLflow's default since 3.7); its artifacts go to ``mlartifacts/`` beside the database
file, so the store is one folder that ``mlflow ui --backend-store-uri sqlite:///mlflow.db`` shows whole.
"""

from __future__ import annotations

import math
import numbers
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roi.errors import RoiInputError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from roi.report import ReportPaths

INSTALL_FIX = "pip install 'finetuning-budget[tracking]' (MLflow, TensorBoard and the S3 test server)"
SUMMARY_RUN = "summary"  # the run name (and ``kind`` tag) of the report's run; trial runs have kind ``trial``
# The summary's numbers per curve, as metrics of the summary run (roi.curves.summarize's columns).
SUMMARY_FIELDS = (
    "baseline",
    "best_value",
    "best_improvement",
    "best_cost",
    "peak_roi",
    "peak_cost",
    "drop_cost",
    "drop_ci_low",
    "drop_ci_high",
    "first_cost",
    "last_cost",
    "n_seeds",
    "forecast_drop_cost",  # past the grid: the fitted learning curve's drop point (roi.forecast)
    "forecast_drop_low",
    "forecast_drop_high",
)
PRIMARY_AXIS = {"data_size": "size", "epochs": "train_seconds"}  # the answer's axis per experiment (roi.answer)


def client(uri: str) -> MlflowClient:
    """An ``MlflowClient`` for ``uri``; ``RoiInputError`` if MLflow is not installed.

    A tracker that does not answer must cost the caller seconds, not MLflow's default of seven retries with
    exponential backoff (minutes): the sweep's driver calls it between trials. The user's own settings win.
    """
    try:
        from mlflow import MlflowClient
    except ModuleNotFoundError:
        raise RoiInputError(f"--mlflow {uri}: MLflow is not installed; fix: {INSTALL_FIX}") from None
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    return MlflowClient(tracking_uri=uri)


def metric_name(key: str) -> str:
    """MLflow allows letters, digits and ``_-. /:`` in names: ``mrr@20`` -> ``mrr_at_20``."""
    return key.replace("@", "_at_")


def experiment_id(mlflow: MlflowClient, name: str) -> str:
    """The id of the experiment ``name``, created (or restored from MLflow's trash) if needed.

    A ``sqlite:///`` store gets its artifacts beside the database (``mlartifacts/<name>``) rather than under
    whichever folder the process happens to run in.
    """
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            mlflow.restore_experiment(found.experiment_id)
        return found.experiment_id
    uri = mlflow.tracking_uri
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///") :]).resolve().parent / "mlartifacts" / name).as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def log_values(
    mlflow: MlflowClient,
    run_id: str,
    *,
    metrics: dict[str, float] | None = None,
    step: int = 0,
    params: dict[str, Any] | None = None,
    tags: dict[str, Any] | None = None,
) -> None:
    """One ``log_batch``: finite metrics at ``step`` (names through ``metric_name``), params and tags as text."""
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    batch_metrics = [
        Metric(metric_name(k), float(v), now, int(step))
        for k, v in (metrics or {}).items()
        if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)  # NaN: not reached, left out
    ]
    mlflow.log_batch(
        run_id,
        metrics=batch_metrics,
        params=[Param(k, str(v)) for k, v in (params or {}).items()],
        tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
    )


def find_runs(mlflow: MlflowClient, exp_id: str, *, sweep: str, kind: str) -> list:
    """The active runs of ``exp_id`` tagged with this sweep and kind (``trial`` or ``summary``), every page."""
    runs, token = [], None
    query = f"tags.sweep = '{sweep}' and tags.kind = '{kind}'"  # sweep names are [A-Za-z0-9._-]: no quoting
    while True:
        page = mlflow.search_runs([exp_id], filter_string=query, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def log_report(paths: ReportPaths, *, uri: str, sweeps: Sequence[str], source: str) -> list[str]:
    """One summary run per sweep of the report: its answer's numbers, the prices, the report as artifacts.

    The run replaces an earlier summary run of the same sweep and source (a report run again), so the
    experiment holds one. Returns the run ids.

    Raises:
        RoiInputError: MLflow missing, or the tracker refused or did not answer (the report is already written).
    """
    mlflow = client(uri)
    analysis = paths.analysis
    spec = analysis.price_spec
    params = {
        "source": source,
        "drop": analysis.drop,
        "metrics": ",".join(analysis.metrics),
        "label_cost": "" if spec.label_cost is None else spec.label_cost,
        "gpu_hour": "" if spec.gpu_hour is None else spec.gpu_hour,
        "currency": spec.currency,
    }
    metrics = summary_metrics(analysis.summary)
    answers = "\n".join(f"- {a.text}" for a in analysis.answers)
    ids = []
    try:
        for sweep in sweeps:
            exp = experiment_id(mlflow, sweep)
            for old in find_runs(mlflow, exp, sweep=sweep, kind=SUMMARY_RUN):
                if old.data.tags.get("source") == source:
                    mlflow.delete_run(old.info.run_id)
            run = mlflow.create_run(exp, run_name=SUMMARY_RUN, tags={"sweep": sweep, "kind": SUMMARY_RUN})
            run_id = run.info.run_id
            log_values(
                mlflow,
                run_id,
                metrics=metrics,
                params=params,
                tags={"source": source, "mlflow.note.content": answers},  # the answer in words, on the run's page
            )
            mlflow.log_artifacts(run_id, str(paths.out_dir))  # report.html, the tables, the figures
            mlflow.set_terminated(run_id, "FINISHED")
            ids.append(run_id)
    except RoiInputError:
        raise
    except Exception as exc:  # noqa: BLE001 -- any tracker failure: one message; the report is on disk already
        raise RoiInputError(
            f"--mlflow {uri}: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}; "
            f"the report itself is written ({paths.out_dir}); fix: check the tracking URI (a server must be "
            "running; sqlite:///path/mlflow.db needs no server) and run the same roi report again"
        ) from None
    return ids


def summary_metrics(summary) -> dict[str, float]:
    """``<curve>.<field>`` for every curve on its experiment's own axis; the curve is named by its metric, and
    by its dataset, model, setting and experiment where the summary has more than one of those."""
    rows = summary[summary["experiment"].map(PRIMARY_AXIS) == summary["cost_axis"]] if not summary.empty else summary
    varying = [
        k
        for k in ("task", "dataset", "model", "eval_set", "setting", "experiment")
        if k in rows and rows[k].nunique() > 1
    ]
    out = {}
    for _, row in rows.iterrows():
        curve = ".".join([*(str(row[k]) for k in varying), metric_name(row["metric"])])
        curve = "".join(c if c.isalnum() or c in "_-./ :" else "_" for c in curve)
        for field in SUMMARY_FIELDS:
            if field in row and row[field] is not None:
                out[f"{curve}.{field}"] = row[field]
    return out
