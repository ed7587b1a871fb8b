"""Speed levers on a real trial: throughput, compile cost and fine-tuned metrics with and without each (speed issue).

Usage (from the repository root, after `make install`):
    .venv/bin/python benchmarks/levers.py sweeps/configs/clinc150-epochs.yaml --size 500 --epochs 2 \\
        --seeds 0 1 --variants fp32 fp32+compile
On the GPU machine (see benchmarks/gpu_session.sh): ``--data`` and ``--model`` point at the carried CLINC150
file and MiniLM folder, and the variants are fp32, bf16, bf16+compile, bf16+cudagraphs.

Each variant runs the real trial core (``sweeps.trial.run_trial``: the file's data, nested subsets, batching,
loss, optimiser and evaluation) for every seed. Reported per variant: training items/s of epoch 1 (which pays
``torch.compile``'s compilation) and of the later epochs (steady state), peak memory, and the final metrics as
mean and spread over the seeds. A lever keeps the metrics when its mean differs from the reference variant's
(the first) by no more than the seed-to-seed spread: dropout masks and reduced precision change the exact
trajectory, so bit-for-bit equality is not the test (``tests/test_trial.py`` checks exactness without dropout).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from sweeps.config import TrialConfig
from sweeps.device import resolve_runtime
from sweeps.evaluate import embed, evaluate
from sweeps.models import build_model
from sweeps.prepare import prepare_data
from sweeps.sweepfile import load_sweep_config
from sweeps.trial import run_trial

# name -> TrainConfig overrides; "+compile" = inductor, "+cudagraphs" = inductor with CUDA graphs.
VARIANTS: dict[str, dict] = {
    "fp32": {"precision": "fp32", "compile": "off"},
    "fp32+compile": {"precision": "fp32", "compile": "default"},
    "bf16": {"precision": "bf16", "compile": "off"},
    "bf16+compile": {"precision": "bf16", "compile": "default"},
    "bf16+cudagraphs": {"precision": "bf16", "compile": "reduce-overhead"},
    # pairs through a shared tower: each side in its own forward pass instead of one joint pass of 2B rows
    "fp32+separate": {"precision": "fp32", "compile": "off", "joint_pair_forward": False},
    "bf16+separate": {"precision": "bf16", "compile": "off", "joint_pair_forward": False},
}


def _trial_config(cfg: TrialConfig, *, data: str | None, model: str | None, batch_size: int | None) -> TrialConfig:
    if data:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=str(Path(data).resolve())))
    if model:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name=model))
    if batch_size:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=batch_size))
    return cfg


def run_variant(cfg: TrialConfig, prepared, *, name: str, size: int, epochs: int, seeds: list[int]) -> dict:
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **VARIANTS[name]))
    runs = []  # run_trial resets the compiler state for each compiled trial: each pays its own compilation
    for seed in seeds:
        wall = time.perf_counter()
        reports = run_trial(cfg, prepared=prepared, size=size, epochs=epochs, seed=seed)
        wall = time.perf_counter() - wall
        seconds = [r.train_seconds for r in reports]
        per_epoch = [seconds[0]] + [b - a for a, b in zip(seconds, seconds[1:], strict=False)]
        runs.append(
            {
                "seed": seed,
                "epoch_seconds": per_epoch,
                "metrics": reports[-1].metrics,
                "peak_memory_mb": reports[-1].peak_memory_mb,
                "wall_s": wall,
            }
        )
        print(f"  {name} seed {seed}: epochs {[f'{s:.2f}s' for s in per_epoch]} {reports[-1].metrics}", flush=True)
    first = [r["epoch_seconds"][0] for r in runs]
    later = [s for r in runs for s in r["epoch_seconds"][1:]]
    keys = list(runs[0]["metrics"])
    return {
        "variant": name,
        "settings": VARIANTS[name],
        "runs": runs,
        "epoch1_items_per_s": size / statistics.mean(first),
        "steady_items_per_s": size / statistics.mean(later) if later else None,
        "peak_memory_mb": max(r["peak_memory_mb"] for r in runs),
        "mean": {k: statistics.mean(r["metrics"][k] for r in runs) for k in keys},
        "spread": {k: max(r["metrics"][k] for r in runs) - min(r["metrics"][k] for r in runs) for k in keys},
    }


def eval_vs_encode(cfg: TrialConfig, prepared, *, repeats: int = 3) -> dict:
    """Evaluation (embed the held-out set + exact top-k + metrics) against embedding alone, same model and
    batches (target 2: search must not be the bottleneck). Best of ``repeats`` for each, after a warm-up."""
    runtime = resolve_runtime(cfg.device, cfg.train.precision, task=cfg.task)
    model = build_model(cfg.model, task=cfg.task).to(runtime.device)
    ev_set, kwargs = prepared.eval, dict(batch_size=cfg.eval.batch_size, runtime=runtime)

    def encode_only() -> None:  # exactly what evaluate() embeds
        if prepared.structure == "labeled":
            embed(model.query_tower, ev_set.query_features, np.arange(len(ev_set.data)), **kwargs)
        else:
            embed(model.doc_tower, ev_set.doc_features, np.arange(len(ev_set.data.docs)), **kwargs)
            embed(model.query_tower, ev_set.query_features, np.asarray(prepared.queries), **kwargs)

    encode_s, eval_s = [], []
    for _ in range(repeats + 1):
        runtime.synchronize()
        t = time.perf_counter()
        encode_only()
        runtime.synchronize()
        encode_s.append(time.perf_counter() - t)
        ev = evaluate(
            model,
            ev_set.data,
            query_features=ev_set.query_features,
            doc_features=ev_set.doc_features,
            queries=prepared.queries,
            k=cfg.eval.k,
            **kwargs,
        )
        eval_s.append(ev.seconds)
    encode, full = min(encode_s[1:]), min(eval_s[1:])
    return {"index_items": ev.n_index, "queries": ev.n_queries, "encode_s": encode, "eval_s": full}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--data", default=None, help="override data.path (e.g. the carried CLINC150 file)")
    parser.add_argument("--model", default=None, help="override model.name (e.g. a local model folder)")
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", nargs="+", default=["fp32", "bf16", "bf16+compile"], choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--eval-repeats", type=int, default=3, help="timed evaluations (best of, after a warm-up) against encode-only"
    )
    parser.add_argument("--deadline-s", type=float, default=None, help="skip the variants that would start after this")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()

    sweep = load_sweep_config(args.config)
    cfg = _trial_config(sweep.trial, data=args.data, model=args.model, batch_size=args.batch_size)
    prepared = prepare_data(cfg)
    device = resolve_runtime(cfg.device, "fp32").device_name
    print(f"{sweep.name}: {cfg.model.name} on {device}, {args.size} items x {args.epochs} epochs, seeds {args.seeds}")
    ev = eval_vs_encode(cfg, prepared, repeats=args.eval_repeats)
    print(
        f"evaluation of the pretrained model: {ev['index_items']:,} items embedded + {ev['queries']:,} queries searched "
        f"exactly (top-{cfg.eval.k}) + metrics in {ev['eval_s']:.3f}s; embedding alone {ev['encode_s']:.3f}s: "
        f"evaluation runs at {ev['encode_s'] / ev['eval_s']:.0%} of encode-only throughput (target >= 80%)",
        flush=True,
    )
    rows = []
    for name in args.variants:
        if args.deadline_s is not None and time.perf_counter() - start > args.deadline_s:
            print(f"  {name}: skipped (past --deadline-s {args.deadline_s:g})")
            continue
        rows.append(run_variant(cfg, prepared, name=name, size=args.size, epochs=args.epochs, seeds=args.seeds))

    if not rows:
        return
    keys = list(rows[0]["mean"])
    ref = rows[0]
    print(
        f"\n{'variant':<18} {'epoch-1 it/s':>12} {'steady it/s':>11} {'vs ' + ref['variant']:>10} {'peak MB':>8}  metrics: mean (spread over seeds)"
    )
    for r in rows:
        steady_ok = r["steady_items_per_s"] and ref["steady_items_per_s"]
        speedup = r["steady_items_per_s"] / ref["steady_items_per_s"] if steady_ok else None
        shown = "  ".join(f"{k} {r['mean'][k]:.4f} ({r['spread'][k]:.4f})" for k in keys)
        agree = all(abs(r["mean"][k] - ref["mean"][k]) <= max(r["spread"][k], ref["spread"][k], 1e-6) for k in keys)
        r["agrees_with_reference"] = agree
        r["steady_speedup_vs_reference"] = speedup
        steady = f"{r['steady_items_per_s']:>11,.0f}" if r["steady_items_per_s"] else f"{'-':>11}"
        print(
            f"{r['variant']:<18} {r['epoch1_items_per_s']:>12,.0f} {steady} {f'{speedup:.2f}x' if speedup else '-':>10} "
            f"{r['peak_memory_mb']:>8.0f}  "
            f"{shown}  {'agrees' if agree else 'DIFFERS beyond the seed spread'}"
        )
    if args.out:
        args.out.write_text(
            json.dumps(
                {"config": str(args.config), "model": cfg.model.name, "device": device, "eval": ev, "rows": rows},
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
