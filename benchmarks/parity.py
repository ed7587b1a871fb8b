"""Parity with the standard recipe: the tool's trial vs sentence-transformers' trainer on the SAME items.

Usage (from the repository root, after `make install` and `uv pip install -e '.[bench]'`):
    .venv/bin/python benchmarks/parity.py sweeps/configs/clinc150-data.yaml --sizes 500 2000 --seeds 0 1 \
        --group-sizes 4 2 --out benchmarks/results/parity_clinc150_cpu.json

For each (size N, seed) and each group size g of ``--group-sizes``:

- tool: ``sweeps.trial.run_trial`` with the file's trial settings and ``train.group_size = g`` (one epoch,
  or ``--tool-epochs``): supcon on batches of 32 // g labels x g items, the first N items of the tool's
  nested ordering for (seed, g).
- recipe: sentence-transformers' trainer with its standard recipe on the SAME N items: one (anchor, positive)
  pair per item whose label has another item among the N (the positive drawn, seeded, from those),
  MultipleNegativesRankingLoss (scale 20, cosine), AdamW lr 2e-5, constant LR, no warmup, batch 32 pairs,
  ``BatchSamplers.NO_DUPLICATES`` (what the loss's documentation recommends), one epoch, max length as the file's.

Both are scored by the tool's own evaluation (``sweeps.evaluate``, called through ``run_trial`` with size 0 on the
trained weights) on the same held-out queries. Training seconds: the tool's synchronised training loop time; the
recipe's ``trainer.train()`` wall time (its data loading included, evaluation excluded). Each finished cell is
appended to ``--out`` at once, so a run stopped half-way keeps what it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sweeps.config import SweepConfig, TrialConfig
from sweeps.data.order import nested_order
from sweeps.models import build_model
from sweeps.models._hub import resolve_name
from sweeps.prepare import PreparedData, prepare_data
from sweeps.sweepfile import load_sweep_config
from sweeps.trial import run_trial


def recipe_pairs(texts: list[str], labels: list[str], *, seed: int) -> tuple[list[str], list[str]]:
    """One (anchor, positive) pair per item whose label has another item here; positive drawn seeded."""
    rng = np.random.default_rng([seed, 7])
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    anchors, positives = [], []
    for i, label in enumerate(labels):
        others = [j for j in by_label[label] if j != i]
        if others:
            anchors.append(texts[i])
            positives.append(texts[others[int(rng.integers(len(others)))]])
    return anchors, positives


def train_recipe(
    cfg: TrialConfig, texts: list[str], labels: list[str], *, seed: int, epochs: int = 1
) -> tuple[dict, float, int]:
    """sentence-transformers' standard MNRL recipe; returns (encoder state dict, train seconds, steps)."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
        models,
    )
    from sentence_transformers.training_args import BatchSamplers

    torch.manual_seed(seed)
    path = resolve_name(cfg.model.name)
    word = models.Transformer(path, max_seq_length=cfg.model.max_length)
    pool = models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[word, pool], device="cpu" if not torch.cuda.is_available() else "cuda")
    anchors, positives = recipe_pairs(texts, labels, seed=seed)
    train = Dataset.from_dict({"anchor": anchors, "positive": positives})
    loss = losses.MultipleNegativesRankingLoss(model, scale=20.0)
    with tempfile.TemporaryDirectory() as out:
        args = SentenceTransformerTrainingArguments(
            output_dir=out,
            num_train_epochs=epochs,
            per_device_train_batch_size=32,
            learning_rate=2e-5,
            lr_scheduler_type="constant",
            warmup_ratio=0.0,
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            seed=seed,
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            disable_tqdm=True,
        )
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=loss)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        steps = int(trainer.state.global_step)
    state = {k: v.detach().cpu() for k, v in word.auto_model.state_dict().items() if not k.startswith("pooler.")}
    return state, seconds, steps


def score_weights(cfg: TrialConfig, prepared: PreparedData, state: dict) -> dict[str, float]:
    """The tool's metrics of the tool's model carrying ``state`` (size 0 = evaluate only)."""
    model = build_model(cfg.model, task=cfg.task)
    missing, unexpected = model.query_tower.encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"weights do not fit the tool's encoder: missing {missing[:3]}, unexpected {unexpected[:3]}")
    (report,) = run_trial(cfg, prepared=prepared, size=0, epochs=0, seed=0, model=model)
    return report.metrics


def emit_row(rows: list[dict], row: dict, *, out: Path | None) -> None:
    """Keep, print and append one measured row to ``out`` at once (a stopped run keeps what it measured)."""
    rows.append(row)
    shown = " ".join(f"{k}={v:.4f}" for k, v in row["metrics"].items())
    print(
        f"{row['dataset']} N={row['size']} seed={row['seed']} {row['method']}: {shown} "
        f"train={row['train_seconds']:.1f}s epochs={row.get('epochs', '-')} steps={row['steps']}",
        flush=True,
    )
    if out is not None:
        old = json.loads(out.read_text()) if out.exists() else {"rows": []}
        old["rows"].append(row)
        old["machine"] = (
            f"{platform.node()} {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}"
        )
        out.write_text(json.dumps(old, indent=1))


def run(sweep: SweepConfig, *, sizes, seeds, group_sizes, tool_epochs: int, skip_recipe: bool, out: Path | None):
    cfg = sweep.trial
    prepared = prepare_data(cfg)
    pool = prepared.pool.data
    results: list[dict] = []

    def emit(row: dict) -> None:
        emit_row(results, row, out=out)

    if not skip_recipe:  # the trainer imports much of its stack lazily in its first steps: pay that untimed
        train_recipe(cfg, [f"warm-up text {i}" for i in range(8)], [str(i // 2) for i in range(8)], seed=0)
    (base,) = run_trial(cfg, prepared=prepared, size=0, epochs=0, seed=0)
    common = {"dataset": prepared.dataset, "eval_set": prepared.eval_id, "config": sweep.name}
    emit(
        {
            **common,
            "method": "pretrained",
            "size": 0,
            "seed": 0,
            "group_size": 0,
            "metrics": base.metrics,
            "train_seconds": 0.0,
            "steps": 0,
        }
    )
    for size in sizes:
        for seed in seeds:
            for g in group_sizes:
                tcfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, group_size=g))
                reports = run_trial(
                    tcfg, prepared=prepared, size=size, epochs=tool_epochs, seed=seed, eval_epochs={tool_epochs}
                )
                last = reports[-1]
                emit(
                    {
                        **common,
                        "method": f"tool supcon g{g} lr {cfg.train.lr:g} x{tool_epochs}ep",
                        "size": size,
                        "seed": seed,
                        "group_size": g,
                        "metrics": last.metrics,
                        "train_seconds": last.train_seconds,
                        "steps": getattr(last, "steps", -1),
                        "items_seen": last.items_seen,
                    }
                )
                if skip_recipe:
                    continue
                order = nested_order(pool, seed=seed, group_size=g)[:size]
                texts = [pool.items[i] for i in order]
                labels = [pool.labels[i] for i in order]
                state, seconds, steps = train_recipe(cfg, texts, labels, seed=seed)
                emit(
                    {
                        **common,
                        "method": f"recipe mnrl (items of g{g} order)",
                        "size": size,
                        "seed": seed,
                        "group_size": g,
                        "metrics": score_weights(cfg, prepared, state),
                        "train_seconds": seconds,
                        "steps": steps,
                    }
                )
    return results


def run_against(run_dir: Path, *, sizes, seeds, recipe_epochs: str, out: Path | None) -> list[dict]:
    """The recipe against a finished sweep's own trials: the tool's rows are the run's records (nothing retrained).

    For each (size, seed) of the run's data-size records, the recipe trains on the same items (the trial's nested
    order under the run's ``train.group_size``) for as many epochs as the tool's trial trained (``recipe_epochs``
    ``same``: equal epochs, hence about equal optimizer steps, since both take batches of 32 from the N items), or
    for its standard one epoch (``one``), or both; all are scored by the tool's evaluation on the same queries.
    """
    sweep = load_sweep_config(run_dir / "config.yaml")
    cfg = sweep.trial
    prepared = prepare_data(cfg)
    pool = prepared.pool.data
    g = cfg.train.group_size
    records = sorted(
        (json.loads(p.read_text()) for p in (run_dir / "records").glob("*.json")),
        key=lambda r: (r["cell"]["size"], r["cell"]["seed"]),
    )
    records = [r for r in records if r["status"] == "ok"]
    common = {"dataset": prepared.dataset, "eval_set": prepared.eval_id, "config": sweep.name, "run": str(run_dir)}
    rows: list[dict] = []

    def emit(row: dict) -> None:
        emit_row(rows, row, out=out)

    # A stopped run goes on where it stopped: the (method, size, seed) rows already in --out are kept, not re-run.
    done = set()
    if out is not None and out.exists():
        done = {(r["method"], r["size"], r["seed"]) for r in json.loads(out.read_text())["rows"]}
    train_recipe(cfg, [f"warm-up text {i}" for i in range(8)], [str(i // 2) for i in range(8)], seed=0)
    for rec in records:
        cell, last = rec["cell"], rec["rows"][-1]
        metrics = {k: v for k, v in last.items() if "@" in k}
        if cell["size"] == 0:
            if ("pretrained", 0, 0) in done:
                continue
            emit(
                {
                    **common,
                    "method": "pretrained",
                    "size": 0,
                    "seed": 0,
                    "group_size": 0,
                    "metrics": metrics,
                    "train_seconds": 0.0,
                    "steps": 0,
                    "epochs": 0,
                }
            )
            continue
        if cell["size"] not in sizes or cell["seed"] not in seeds:
            continue
        size, seed, epochs = cell["size"], cell["seed"], int(last["epochs"])
        rule = cell.get("train_to", "epochs")
        tool = f"tool supcon g{g} lr {cfg.train.lr:g} ({rule})"
        if (tool, size, seed) not in done:
            emit(
                {
                    **common,
                    "method": tool,
                    "size": size,
                    "seed": seed,
                    "group_size": g,
                    "metrics": metrics,
                    "train_seconds": last["train_seconds"],
                    "steps": last.get("steps", -1),
                    "epochs": epochs,
                }
            )
        order = nested_order(pool, seed=seed, group_size=g)[:size]
        texts = [pool.items[i] for i in order]
        labels = [pool.labels[i] for i in order]
        plan = {"same": [epochs], "one": [1], "both": sorted({1, epochs})}[recipe_epochs]
        for e in plan:
            if (f"recipe mnrl x{e}ep", size, seed) in done:
                continue
            state, seconds, steps = train_recipe(cfg, texts, labels, seed=seed, epochs=e)
            emit(
                {
                    **common,
                    "method": f"recipe mnrl x{e}ep",
                    "size": size,
                    "seed": seed,
                    "group_size": g,
                    "metrics": score_weights(cfg, prepared, state),
                    "train_seconds": seconds,
                    "steps": steps,
                    "epochs": e,
                }
            )
    return rows


def markdown(paths: list[Path]) -> str:
    """The measured rows of ``paths`` as one Markdown table, with each method's gain over the pretrained model."""
    rows = [r for p in paths for r in json.loads(p.read_text())["rows"]]
    base = {r["dataset"]: r["metrics"] for r in rows if r["method"] == "pretrained"}
    lines = [
        "| dataset | N | seed | method | mRR / mAP / recall@20 | gain over pretrained (mRR / mAP / recall) | train s "
        "| epochs | steps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["dataset"], r["size"], r["group_size"], r["seed"], r["method"])):
        m, b = r["metrics"], base[r["dataset"]]
        keys = sorted(m, key=lambda k: ("mrr", "map", "recall").index(k.split("@")[0]))
        vals = " / ".join(f"{m[k]:.4f}" for k in keys)
        gains = " / ".join(f"{m[k] - b[k]:+.4f}" for k in keys)
        lines.append(
            f"| {r['dataset']} | {r['size']} | {r['seed']} | {r['method']} | {vals} | {gains} | "
            f"{r['train_seconds']:.1f} | {r.get('epochs', 0 if r['size'] == 0 else 1)} | {r['steps']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, nargs="?")
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--group-sizes", type=int, nargs="+", default=[4, 2])
    parser.add_argument("--tool-epochs", type=int, default=1)
    parser.add_argument("--skip-recipe", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--table", type=Path, nargs="+", default=None, help="print measured JSON files as Markdown")
    parser.add_argument(
        "--from-run", type=Path, default=None, help="a finished data-size run folder: its records are the tool's rows"
    )
    parser.add_argument("--recipe-epochs", choices=["same", "one", "both"], default="same")
    args = parser.parse_args()
    if args.table:
        print(markdown(args.table))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.from_run:
        run_against(args.from_run, sizes=args.sizes, seeds=args.seeds, recipe_epochs=args.recipe_epochs, out=args.out)
        return
    sweep = load_sweep_config(args.config)
    run(
        sweep,
        sizes=args.sizes,
        seeds=args.seeds,
        group_sizes=args.group_sizes,
        tool_epochs=args.tool_epochs,
        skip_recipe=args.skip_recipe,
        out=args.out,
    )


if __name__ == "__main__":
    main()
