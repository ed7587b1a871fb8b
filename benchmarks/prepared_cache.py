"""The prepared-data cache, measured: a sweep file's preparation built, then read back from the cache.

Two fresh processes, as two ``roi sweep`` runs on the same data are (a second ``make run``, or the epoch sweep
after the data-size sweep): the first prepares and caches, the second reads. Printed per run: ``prepare_data``'s
wall seconds (loading, splitting, the model for its tokenizer, and the features) and the features' part alone.

    nice -n 15 .venv/bin/python benchmarks/prepared_cache.py sweeps/configs/clinc150-data.yaml \
        --out benchmarks/results/prepared_cache_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(config: str) -> dict:
    from sweeps import prepare
    from sweeps.sweepfile import load_sweep_config

    cfg = load_sweep_config(config)
    outcomes = []
    cached = prepare.cached_features

    def spy(*args, **kwargs):  # the cache's own report of each collection: hit or built, and its seconds
        features, outcome = cached(*args, **kwargs)
        outcomes.append(outcome)
        return features, outcome

    prepare.cached_features = spy
    start = time.perf_counter()
    encode = prepare._encode

    def timed_encode(*args, **kwargs):
        t, c = time.perf_counter(), _cpu_seconds()
        out = encode(*args, **kwargs)
        timed_encode.seconds += time.perf_counter() - t
        timed_encode.cpu_seconds += _cpu_seconds() - c
        return out

    timed_encode.seconds = timed_encode.cpu_seconds = 0.0
    prepare._encode = timed_encode
    prepared = prepare.prepare_data(cfg.trial)
    return {
        "prepare_seconds": time.perf_counter() - start,
        "features_seconds": timed_encode.seconds,
        "features_cpu_seconds": timed_encode.cpu_seconds,  # comparable on a shared machine, unlike wall seconds
        "hit": all(o.hit for o in outcomes),
        "built_seconds_recorded": sum(o.seconds for o in outcomes),
        "texts": len(prepared.pool.data) + len(prepared.eval.data),
    }


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run(args.config)))
        return
    runs = []
    with tempfile.TemporaryDirectory(prefix="prepared-cache-") as home:
        env = dict(os.environ, FINETUNING_BUDGET_CACHE=home)
        for _ in range(2):
            proc = subprocess.run(
                [sys.executable, __file__, args.config, "--child"], env=env, capture_output=True, text=True, cwd=ROOT
            )
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-3000:])
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    first, second = runs
    result = {
        "command": "nice -n 15 .venv/bin/python benchmarks/prepared_cache.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), load {os.getloadavg()[0]:.1f}",
        "first (build and cache)": first,
        "second (cache hit)": second,
        "features_hit_vs_build": second["features_seconds"] / first["features_seconds"],
        "features_cpu_hit_vs_build": second["features_cpu_seconds"] / first["features_cpu_seconds"],
        "prepare_hit_vs_build": second["prepare_seconds"] / first["prepare_seconds"],
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
