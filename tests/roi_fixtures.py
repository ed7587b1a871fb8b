"""Results tables with designed curves whose ROI, peak and drop point are known by hand.

Every metric value is baseline x (1 + I) for a chosen relative improvement I, so ROI = I / cost exactly.

- PEAK_MID (data size): sizes 100, 200, 500, 1000, 2000 and I = 0.1, 0.4, 0.6, 0.5, 0.4, so average ROI =
  0.001, 0.002, 0.0012, 0.0005, 0.0002: the peak is 0.002 at 200 (not the first point); 30% of it is 0.0006,
  crossed between 500 (0.0012) and 1000 (0.0005) at 500 + 500 x 0.0006/0.0007 = 6500/7 ~ 928.57 items.
  With gpu_seconds = 0.01 x size, the GPU-seconds drop point is 65/7.
- PEAK_FIRST (data size): sizes 100, 500, 1000 and I = 0.2, 0.3, 0.4: ROI 0.002, 0.0006, 0.0004; peak at the
  first point, the drop reached exactly at the grid point 500, where the gain is 1.5x the gain at 100.
- NEVER (data size): sizes 100, 200, 400 and I = 0.1, 0.18, 0.3: ROI 0.001, 0.0009, 0.00075, never below 30%.
- EPOCH_NEG (epochs, 1,000 items): cumulative train seconds 10..50, I = 0.2, 0.3, 0.35, 0.3, 0.25: average ROI
  0.02, 0.015, 0.01167, 0.0075, 0.005 (drop at 40 + 10 x 0.6 = 46 s), marginal ROI -, 0.01, 0.005, -0.005, -0.005.
- NO_POSITIVE (data size): I = -0.1, -0.2 at 100, 200.
- Seeds: SEED_OFFSETS shift I by -0.03, 0, +0.03, so the mean is the designed curve, std 0.03, min/max +-0.03.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

METRICS = ("mrr@20", "map@20", "recall@20")
BASELINE = {"mrr@20": 0.5, "map@20": 0.4, "recall@20": 0.3}
# Every metric gets the same improvement times this factor: drop points do not depend on a constant factor.
METRIC_FACTOR = {"mrr@20": 1.0, "map@20": 0.5, "recall@20": 2.0}
SECONDS_PER_ITEM = 0.01

PEAK_MID = {"sizes": [100, 200, 500, 1000, 2000], "improvement": [0.1, 0.4, 0.6, 0.5, 0.4]}
PEAK_MID_DROP = 6500 / 7
PEAK_FIRST = {"sizes": [100, 500, 1000], "improvement": [0.2, 0.3, 0.4]}
NEVER = {"sizes": [100, 200, 400], "improvement": [0.1, 0.18, 0.3]}
NO_POSITIVE = {"sizes": [100, 200], "improvement": [-0.1, -0.2]}
EPOCH_NEG = {"size": 1000, "seconds": [10.0, 20.0, 30.0, 40.0, 50.0], "improvement": [0.2, 0.3, 0.35, 0.3, 0.25]}
EPOCH_NEG_DROP = 46.0
SEED_OFFSETS = (-0.03, 0.0, 0.03)

SCHEMA_COLUMNS = (
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
    "train_seconds",
    "eval_seconds",
    "items_seen",
    "gpu_type",
    "num_gpus",
    "gpu_seconds",
    "peak_memory_mb",
    *METRICS,
    "error",
)


def _row(
    *, experiment: str, dataset: str, seed: int, size: int, epochs: int, epoch: int, seconds: float, values: dict, **kw
) -> dict:
    num_gpus = kw.pop("num_gpus", 1.0)
    row = {
        "sweep": f"{dataset}-{experiment}",
        "experiment": experiment,
        "trial_id": kw.pop("trial_id", f"{dataset}-{experiment}-n{size}-e{epochs}-s{seed}"),
        "status": "ok",
        "task": "text-to-text",
        "model": "package:tiny",
        "dataset": dataset,
        "eval_set": f"eval-{dataset}",
        "seed": seed,
        "size": size,
        "epochs": epochs,
        "epoch": epoch,
        "train_seconds": seconds,
        "eval_seconds": 1.0,
        "items_seen": size * epoch,
        "gpu_type": "NVIDIA H100" if num_gpus else "cpu",
        "num_gpus": num_gpus,
        "gpu_seconds": seconds * num_gpus,
        "peak_memory_mb": 100.0,
        "error": "",
    }
    row.update(values)
    row.update(kw)
    return row


def metric_values(improvement: float) -> dict[str, float]:
    """Metric values that are ``improvement`` x the metric's factor above the baseline."""
    return {m: BASELINE[m] * (1 + improvement * METRIC_FACTOR[m]) for m in METRICS}


def baseline_rows(
    dataset: str, *, experiment: str = "data_size", seeds: Iterable[int] = (0,), values: dict | None = None
) -> list[dict]:
    vals = dict(BASELINE if values is None else values)
    return [
        _row(experiment=experiment, dataset=dataset, seed=s, size=0, epochs=0, epoch=0, seconds=0.0, values=vals)
        for s in seeds
    ]


def data_size_rows(
    dataset: str, curve: dict, *, seeds: Sequence[int] = (0,), offsets: Sequence[float] = (0.0,), epochs: int = 1, **kw
) -> list[dict]:
    """Final-epoch rows (plus the earlier epoch rows when epochs > 1) of a data-size sweep."""
    rows = []
    for seed, offset in zip(seeds, offsets, strict=True):
        for size, imp in zip(curve["sizes"], curve["improvement"], strict=True):
            for epoch in range(1, epochs + 1):
                # Earlier epochs get a different value, so using them by mistake changes the answers.
                value = imp + offset if epoch == epochs else imp / 2
                seconds = SECONDS_PER_ITEM * size * epoch / epochs
                rows.append(
                    _row(
                        experiment="data_size",
                        dataset=dataset,
                        seed=seed,
                        size=size,
                        epochs=epochs,
                        epoch=epoch,
                        seconds=seconds,
                        values=metric_values(value),
                        **kw,
                    )
                )
    return rows


def epoch_rows(
    dataset: str,
    curve: dict,
    *,
    seeds: Sequence[int] = (0,),
    offsets: Sequence[float] = (0.0,),
    seconds_scale: Sequence[float] | None = None,
    **kw,
) -> list[dict]:
    """One trial per seed that reports every epoch (``epoch_runs: single``)."""
    rows = []
    scales = seconds_scale or [1.0] * len(seeds)
    n = len(curve["improvement"])
    for seed, offset, scale in zip(seeds, offsets, scales, strict=True):
        for epoch, (secs, imp) in enumerate(zip(curve["seconds"], curve["improvement"], strict=True), start=1):
            rows.append(
                _row(
                    experiment="epochs",
                    dataset=dataset,
                    seed=seed,
                    size=curve["size"],
                    epochs=n,
                    epoch=epoch,
                    seconds=secs * scale,
                    values=metric_values(imp + offset),
                    **kw,
                )
            )
    return rows


def table(rows: Iterable[dict]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows))
    return df[[c for c in SCHEMA_COLUMNS if c in df.columns] + [c for c in df.columns if c not in SCHEMA_COLUMNS]]


def full_table() -> pd.DataFrame:
    """A realistic run: three seeds on a mid-peak data-size curve, one dataset that never drops, an epoch sweep
    with negative marginal ROI, a NaN row and a failed row."""
    rows = baseline_rows("clinc150", seeds=(0,))
    rows += data_size_rows("clinc150", PEAK_MID, seeds=(0, 1, 2), offsets=SEED_OFFSETS)
    rows += baseline_rows("banking77")
    rows += data_size_rows("banking77", NEVER)
    rows += baseline_rows("clinc150", experiment="epochs")
    rows += epoch_rows("clinc150", EPOCH_NEG)
    nan_row = _row(
        experiment="data_size",
        dataset="clinc150",
        seed=0,
        size=300,
        epochs=1,
        epoch=1,
        seconds=3.0,
        values=dict.fromkeys(METRICS, np.nan),
    )
    failed = _row(
        experiment="data_size",
        dataset="clinc150",
        seed=1,
        size=300,
        epochs=1,
        epoch=0,
        seconds=np.nan,
        values=dict.fromkeys(METRICS, np.nan),
        status="failed",
        error="CUDA out of memory",
    )
    return table([*rows, nan_row, failed])


def write_run(path, df: pd.DataFrame, *, fmt: str = "parquet"):
    """A run folder holding ``results.<fmt>``, like ``sweeps`` writes it."""
    path.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        df.to_parquet(path / "results.parquet", index=False)
    else:
        df.to_csv(path / "results.csv", index=False)
    return path


def brentq(f, lo: float, hi: float) -> float:
    """The root of a continuous f with a sign change on [lo, hi], by bisection (no scipy in the test deps):
    the hand-side answer for designed curves whose drop point has no closed form."""
    f_lo = f(lo)
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if (f(mid) > 0) == (f_lo > 0):
            lo, f_lo = mid, f(mid)
        else:
            hi = mid
    return (lo + hi) / 2.0
