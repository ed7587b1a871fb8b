"""Decoded images at scale: memory per trial and the driver's preparation time, before and after, in one run.

A labeled image set of ``--n`` images (default 20,000, real photos repeated through symlinks: the AT&T faces,
small like CelebA's aligned crops) at 224 px goes through the real ``prepare_data`` (image-folder loader, split
by label, resnet50's 224-px eval transform) and then through a Tune sweep of ``--trials`` concurrent trials,
shipped as ``run_sweep`` ships it (``tune.with_parameters``: one ``ray.put``, every trial gets it). Each trial
does with the data what a trial does: it gathers every training batch (``ImageFeatures.batch``, 128 rows, in a
seeded order) and every evaluation batch (512 rows); the model's forward is left out (resnet50 on 20,000 images
is hours on two CPU cores; its memory is the same in both variants). The trials wait for each other before and
after reading, so their peaks overlap. Each samples its own memory every 20 ms (psutil: RSS, USS = memory only
this process holds, PSS, shared).

- before: the previous code, kept here as the baseline: decoding on up to 8 threads into a torch tensor
  (``ImageFeatures`` held a (N, 3, S, S) torch tensor); Ray unpickles a tensor into a private copy per worker.
- after: ``sweeps`` as it is: worker processes decode into one shared map, NumPy pixels, which Ray hands to each
  worker as a read-only view of the object store's one copy.
- decode-only (``--serial``): the same paths decoded in this process alone, the baseline of the parallel decode.

    .venv/bin/python benchmarks/image_scale.py --n 20000 --trials 2 --serial --out benchmarks/results/image_scale_cpu.json

The driver drops its own copy of the prepared data once the sweep has it (the trials' numbers do not depend on
it) so that both variants fit a 24 GB machine; ``run_sweep`` keeps it, one more private copy on the driver.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import psutil
import torch

from sweeps.config import TrialConfig
from sweeps.dataclass_io import build
from sweeps.models._images import ImageSpec, decode_images, default_workers, load_image
from sweeps.prepare import PreparedData, prepare_data

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "att_faces"
MB = 2**20


# --- the baseline: the previous decoding and feature class -------------------------------------------


@dataclass(frozen=True)
class TorchImageFeatures:
    """The previous ``ImageFeatures``: a (N, 3, S, S) uint8 torch tensor, channels-last."""

    pixels: torch.Tensor

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    def batch(self, index: np.ndarray) -> torch.Tensor:
        nhwc = self.pixels.permute(0, 2, 3, 1).numpy()
        return torch.from_numpy(nhwc[np.asarray(index, dtype=np.int64)]).permute(0, 3, 1, 2)


def decode_before(paths, spec: ImageSpec, *, workers: int | None = None) -> TorchImageFeatures:
    """The previous ``decode_images``: up to 8 threads into one array, returned as a torch tensor."""
    out = np.empty((len(paths), spec.size, spec.size, 3), dtype=np.uint8)

    def fill(i: int) -> None:
        out[i] = load_image(str(paths[i]), spec)

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(fill, range(len(paths))):
            pass
    return TorchImageFeatures(pixels=torch.from_numpy(out).permute(0, 3, 1, 2))


# --- data ---------------------------------------------------------------------------------------------


def make_image_folder(root: Path, *, n: int, per_label: int) -> Path:
    """``root/<label>/<i>.pgm``: ``n`` symlinks to the source photos, cycled, ``per_label`` per label."""
    photos = sorted(SOURCE.glob("*/*.pgm"))
    if not photos:
        raise SystemExit(f"no photos under {SOURCE}: the benchmark needs ../shared/data/att_faces")
    for i in range(n):
        folder = root / f"l{i // per_label:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:06d}.pgm").symlink_to(photos[i % len(photos)])
    return root


def trial_config(folder: Path) -> TrialConfig:
    return build(
        TrialConfig,
        {
            "task": "image-to-image",
            "model": {"kind": "torchvision", "name": "resnet50", "weights": "none", "image_size": 224},
            "data": {"format": "image-folder", "path": str(folder), "name": "repeated-faces"},
            "split": {"method": "seeded", "by": "label", "eval_fraction": 0.1},
            "eval": {"max_queries": 2000, "batch_size": 512},
            "train": {"batch_size": 128},
        },
        where="image_scale",
    )


# --- the trial -------------------------------------------------------------------------------------------


class Sampler:
    """Peak memory of this process, sampled every ``every`` seconds in a thread, plus named snapshots."""

    def __init__(self, every: float = 0.02):
        self.proc = psutil.Process()
        self.peak: dict[str, float] = {}
        self.points: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def now(self) -> dict[str, float]:
        full = self.proc.memory_full_info()
        return {"rss": full.rss / MB, "uss": full.uss / MB, "pss": full.pss / MB, "shared": full.shared / MB}

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            for key, value in self.now().items():
                self.peak[key] = max(self.peak.get(key, 0.0), value)
            time.sleep(every)

    def mark(self, name: str) -> None:
        self.points[name] = self.now()

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {"peak_mib": self.peak, "at_mib": self.points}


def _wait_for(folder: Path, stage: str, trials: int, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while len(list(folder.glob(f"{stage}-*"))) < trials:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the other trials never reached {stage}")
        time.sleep(0.05)


def gather_trial(config: dict, *, prepared: PreparedData) -> None:
    """What a trial does with the data, without the model: every training and evaluation batch, gathered."""
    from ray import tune

    sampler = Sampler()
    sampler.mark("received")  # with_parameters has already fetched (and, for a tensor, copied) the data
    sync, trials, index = Path(config["sync"]), config["trials"], config["trial"]
    (sync / f"received-{index}").touch()
    _wait_for(sync, "received", trials)
    start = time.perf_counter()
    pool, held_out = prepared.pool.query_features, prepared.eval.query_features
    checksum = 0
    order = np.random.default_rng(index).permutation(len(pool))
    for begin in range(0, len(order), 128):  # one epoch over the whole pool
        checksum += int(pool.batch(order[begin : begin + 128])[:, 0, 0, 0].sum())
    for begin in range(0, len(held_out), 512):  # one evaluation
        checksum += int(held_out.batch(np.arange(begin, min(begin + 512, len(held_out))))[:, 0, 0, 0].sum())
    seconds = time.perf_counter() - start
    sampler.mark("read_all")
    (sync / f"read-{index}").touch()
    _wait_for(sync, "read", trials)  # keep this trial's memory alive until every trial has read everything
    sampler.mark("all_read")
    memory = sampler.stop()
    tune.report(
        {
            "trial": index,
            "pid": os.getpid(),
            "gather_seconds": seconds,
            "checksum": checksum,
            "kind": type(pool).__name__,
            "memory_json": json.dumps(memory),
        }
    )


# --- one variant --------------------------------------------------------------------------------------


def run_variant(name: str, cfg: TrialConfig, *, trials: int, work: Path) -> dict:
    import ray
    from ray import tune

    driver = Sampler(every=0.1)
    start = time.perf_counter()
    if name == "before":
        with mock.patch("sweeps.models.image.decode_images", decode_before):
            prepared = prepare_data(cfg)
    else:
        prepared = prepare_data(cfg)
    prepare_s = time.perf_counter() - start
    driver.mark("prepared")
    pixels_mib = (
        sum(
            f.nhwc.nbytes if hasattr(f, "nhwc") else f.pixels.numel()
            for f in (prepared.pool.query_features, prepared.eval.query_features)
        )
        / MB
    )

    for attempt in range(3):  # Ray gives its raylet 30 s to register; a loaded machine may need another try
        try:
            # address="local": a fresh Ray of our own, even where other Ray instances run on the machine
            ray.init(address="local", num_cpus=trials, include_dashboard=False, log_to_driver=False)
            break
        except Exception as exc:  # Ray raises a bare Exception for the timeout
            if attempt == 2 or "timed out" not in str(exc):
                raise
            ray.shutdown()
            print(f"ray.init: {exc}; trying again", flush=True)
    try:
        start = time.perf_counter()
        # As tuner._fit does it: with_parameters puts `prepared` into the object store once.
        trainable = tune.with_resources(tune.with_parameters(gather_trial, prepared=prepared), {"cpu": 1})
        put_s = time.perf_counter() - start
        driver.mark("put")
        del prepared
        gc.collect()
        driver.mark("dropped")
        sync = work / f"sync-{name}"
        sync.mkdir()
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(list(range(trials))), "trials": trials, "sync": str(sync)},
            tune_config=tune.TuneConfig(max_concurrent_trials=trials, reuse_actors=False),
            run_config=tune.RunConfig(name=name, storage_path=str(work / "tune"), verbose=0),
        )
        start = time.perf_counter()
        results = tuner.fit()
        sweep_s = time.perf_counter() - start
    finally:
        ray.shutdown()
    rows = []
    for result in results:
        if result.error is not None:
            raise RuntimeError(f"{name}: a trial failed: {result.error}")
        metrics = result.metrics
        rows.append({k: metrics[k] for k in ("trial", "pid", "gather_seconds", "checksum", "kind")})
        rows[-1]["memory"] = json.loads(metrics["memory_json"])
    rows.sort(key=lambda r: r["trial"])
    return {
        "variant": name,
        "pixels_mib": pixels_mib,
        "prepare_seconds": prepare_s,
        "put_seconds": put_s,
        "sweep_seconds": sweep_s,
        "driver": driver.stop(),
        "trials": rows,
    }


def summarise(variant: dict) -> dict:
    """Per trial: peak RSS and its split (USS private, the rest shared); total = sum of private + one shared store."""
    per_trial = [t["memory"]["peak_mib"] for t in variant["trials"]]
    private = sum(p["uss"] for p in per_trial)
    return {
        "peak_rss_per_trial_mib": [round(p["rss"]) for p in per_trial],
        "peak_uss_per_trial_mib": [round(p["uss"]) for p in per_trial],
        "peak_shared_per_trial_mib": [round(p["rss"] - p["uss"]) for p in per_trial],
        # the object store's copy of the pixels is counted once, whoever maps it
        "total_trials_private_plus_store_mib": round(private + variant["pixels_mib"]),
        "driver_uss_after_prepare_mib": round(variant["driver"]["at_mib"]["prepared"]["uss"]),
        "driver_peak_uss_mib": round(variant["driver"]["peak_mib"]["uss"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="images (labeled, 10 per label)")
    parser.add_argument("--trials", type=int, default=2, help="concurrent trials")
    parser.add_argument("--variants", nargs="+", default=["after", "before"], choices=["after", "before"])
    parser.add_argument("--serial", action="store_true", help="also decode all images in one process (baseline)")
    parser.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="image-scale-"))
    folder = make_image_folder(work / "images", n=args.n, per_label=10)
    cfg = trial_config(folder)
    out: dict = {
        "machine": f"{platform.machine()} {psutil.cpu_count()} vCPU {psutil.virtual_memory().total / 2**30:.0f} GiB",
        "cores_used_for_decoding": default_workers(),
        "torch": torch.__version__,
        "load_average_at_start": os.getloadavg(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "variants": {},
    }
    for name in args.variants:
        # The before variant's peak: the store's copy, and per trial the unpickled bytes and the tensor built
        # from them (private); the after variant's: the store's and the driver's copies.
        pixels = args.n * 224 * 224 * 3
        need = pixels * (1 + 2 * args.trials if name == "before" else 2) + 2 * 2**30
        available = psutil.virtual_memory().available
        if available < need:
            raise SystemExit(
                f"{name}: needs ~{need / 2**30:.1f} GiB free, {available / 2**30:.1f} GiB is; use a smaller --n"
            )
        print(f"--- {name}", flush=True)
        variant = run_variant(name, cfg, trials=args.trials, work=work)
        variant["summary"] = summarise(variant)
        out["variants"][name] = variant
        print(json.dumps({k: variant[k] for k in ("prepare_seconds", "put_seconds", "sweep_seconds")}), flush=True)
        print(json.dumps(variant["summary"]), flush=True)
        gc.collect()
        if args.out:  # after each variant: a refused or failed later step loses nothing
            args.out.write_text(json.dumps(out, indent=2))
    if args.serial:
        paths = sorted(str(p) for p in folder.glob("*/*.pgm"))
        spec = ImageSpec.scaled(224)
        timings = {}
        for label, run in (
            ("serial", lambda: decode_images(paths, spec, workers=1, progress=None)),
            ("processes", lambda: decode_images(paths, spec, progress=None)),
            ("threads_before", lambda: decode_before(paths, spec)),
        ):
            start = time.perf_counter()
            features = run()
            timings[label] = time.perf_counter() - start
            del features
            gc.collect()
            print(f"decode {len(paths):,} images, {label}: {timings[label]:.1f} s", flush=True)
        timings["processes_speedup"] = timings["serial"] / timings["processes"]
        timings["threads_before_speedup"] = timings["serial"] / timings["threads_before"]
        out["decode"] = {
            "images": len(paths),
            "workers": default_workers(),
            "seconds": timings,
            "load_average_after": os.getloadavg(),
        }
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
