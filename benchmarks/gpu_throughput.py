"""Throughput of the project's own training and evaluation loops at the reference loops' shapes (speed issue).

What runs is the real code: ``sweeps.train.train_one_epoch`` (collate with dynamic padding, the tower's
forward under the runtime's autocast, the contrastive loss, fused AdamW, the constant schedule) and
``sweeps.evaluate.evaluate`` (embed, exact top-20 search, metrics). The models are the Jina study's architectures,
randomly initialised from their configs and loaded through the normal ``build_model`` path (a local folder,
a torchvision name with ``weights: none``), since no weights can be downloaded on the GPU machine.

Run it on the GPU machine in the SAME call as the reference loops and report ratios: ``benchmarks/gpu_session.sh``
does both (and the packing and levers benchmarks). Alone:
    python benchmarks/gpu_throughput.py --compile off reduce-overhead --out $OUT/throughput.json
``--pageable`` times the same rows with batches copied from pageable memory (the baseline of the pinned copies).
Each (architecture, compile mode) row builds a fresh model; ``warm-up s`` is the first four steps (for a compiled
row: the compilation and CUDA-graph recording a trial pays in its first epoch). On a GPU, two training steps also
run under CUDA's sync debug mode and every place that made the host wait is printed.
``--tiny`` runs the same code with tiny twins on the CPU in seconds (``tests/test_benchmarks.py`` does).

Shapes (as reference_loops.py): bert-base pairs B128 x L32; resnet50 pairs at 224 px B128; CLIP ViT-B/32
pairs B256 (text L32). Items/s counts pairs per second, as the reference rows do. MFU = model FLOPs per step
(counted with torch.utils.flop_counter on one real step) x steps / seconds / the card's peak (``--peak-tflops``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from sweeps.config import ModelConfig, TrainConfig
from sweeps.data.items import LabeledItems
from sweeps.device import Runtime, resolve_runtime
from sweeps.evaluate import embed, evaluate
from sweeps.models import build_model
from sweeps.models.text import TokenFeatures
from sweeps.train import TrainSet, build_optimizer, build_scheduler, train_one_epoch


def _random_folder(kind: str) -> str:
    """Save a randomly initialised bert-base or CLIP ViT-B/32 (config defaults) with an offline tokenizer."""
    from transformers import BertConfig, BertModel, CLIPConfig, CLIPModel

    from sweeps.models._hub import offline_bert_tokenizer, offline_clip_tokenizer

    folder = tempfile.mkdtemp(prefix=f"bench-{kind}-")
    if kind == "bert":
        # BertConfig() as the reference loop builds it (30,522 tokens) whatever the offline tokenizer's size:
        # the benchmark feeds random ids, and a smaller embedding table would shrink the optimiser's work.
        tok = offline_bert_tokenizer()
        BertModel(BertConfig()).save_pretrained(folder)
    else:
        # Defaults: the ViT-B/32 vision tower and CLIP's 12-layer, 512-wide text tower with its 49,408-token
        # embedding; the benchmark feeds random token ids, so the small offline tokenizer only fills the folder.
        tok = offline_clip_tokenizer()
        CLIPModel(CLIPConfig()).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _model(kind: str, *, tiny: bool, task: str, **options):
    """The Jina study's architecture at full size from a saved random folder, or the project's own tiny twin."""
    if tiny:  # the tiny twins the tests use (sweeps.models), no folder needed
        name = {"hf-text": "google-bert/bert-base-cased", "clip": "openai/clip-vit-base-patch32"}[kind]
        return build_model(ModelConfig(kind=kind, name=name, tiny=True, **options), task=task)
    folder = _random_folder("bert" if kind == "hf-text" else "clip")
    return build_model(ModelConfig(kind=kind, name=folder, **options), task=task)


def _tokens(n: int, length: int, vocab: int, seed: int) -> TokenFeatures:
    rng = np.random.default_rng(seed)
    flat = rng.integers(5, vocab, size=n * length, dtype=np.int32)
    return TokenFeatures(flat=flat, offsets=np.arange(0, n * length + 1, length, dtype=np.int64))


def _pixels(n: int, size: int, seed: int):
    from sweeps.models._images import ImageFeatures

    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return ImageFeatures.from_tensor(pixels)


def _time_training(
    model, query_features, doc_features, *, batch: int, steps: int, lr: float, runtime, compile_mode: str
) -> dict:
    warm = 3
    n = batch * (steps + warm + 1)
    ids = np.arange(n)
    train_set = TrainSet(positions=ids, label_ids=ids, doc_positions=ids, labels_for_batching=None)
    cfg = TrainConfig(batch_size=batch, lr=lr, compile=compile_mode)
    optimizer = build_optimizer(model, cfg, runtime=runtime)
    scheduler = build_scheduler(optimizer, cfg, total_steps=steps + warm + 1)
    batches = [ids[i * batch : (i + 1) * batch] for i in range(steps + warm + 1)]
    kwargs = dict(
        train_set=train_set,
        query_features=query_features,
        doc_features=doc_features,
        cfg=cfg,
        optimizer=optimizer,
        scheduler=scheduler,
        runtime=runtime,
    )
    flops = None
    if compile_mode == "off":
        with FlopCounterMode(display=False) as counter:  # one real step, counted (eager: the same math)
            first = train_one_epoch(model, batches[:1], **kwargs)
        flops = counter.get_total_flops()
    else:
        model.compile_towers(compile_mode)  # what run_trial does for train.compile
        first = train_one_epoch(model, batches[:1], **kwargs)
    # Warm-up: the allocator, cuDNN autotuning, and for compiled towers the compilation and CUDA-graph
    # recording (which a real trial pays in its first epoch: reported, not hidden).
    warmup = train_one_epoch(model, batches[1 : 1 + warm], **kwargs)
    syncs = _host_syncs(lambda: train_one_epoch(model, batches[1 : 1 + 2], **kwargs), runtime)
    runtime.reset_peak_memory()
    stats = train_one_epoch(model, batches[1 + warm :], **kwargs)
    return {
        "compile": compile_mode,
        "items_per_s": stats.items / stats.seconds,
        "step_ms": 1e3 * stats.seconds / stats.steps,
        "warmup_s": first.seconds + warmup.seconds,  # first step (compilation) + 3 steps
        "flops_per_step": flops,
        "peak_mb": runtime.peak_memory_mb(),
        "loss": stats.loss,
        "host_syncs": syncs,
    }


def _host_syncs(run, runtime) -> list[str] | None:
    """The places that made the host wait for the GPU during ``run`` (CUDA's sync debug mode), or None on
    the CPU. A training step should have none; the epoch's own synchronize() calls (the timer) are expected."""
    if not runtime.is_cuda:
        return None
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    # Where in Python each came from; sweeps/device.py's synchronize() is the epoch timer's, expected twice.
    return sorted({f"{Path(w.filename).name}:{w.lineno}: {str(w.message).splitlines()[0][:120]}" for w in caught})


def _time_eval(model, features, *, n: int, batch: int, runtime) -> dict:
    labels = tuple(str(i % 100) for i in range(n))
    eval_set = LabeledItems(items=("",) * n, labels=labels, modality=model.query_tower.modality, source="bench")
    index = np.arange(n)
    embed(model.query_tower, features, index[: batch * 2], batch_size=batch, runtime=runtime)  # warm-up
    runtime.synchronize()
    start = time.perf_counter()
    embed(model.query_tower, features, index, batch_size=batch, runtime=runtime)
    runtime.synchronize()
    encode_s = time.perf_counter() - start
    ev = evaluate(
        model,
        eval_set,
        query_features=features,
        doc_features=None,
        queries=index,
        k=20,
        batch_size=batch,
        runtime=runtime,
    )
    return {
        "eval_items": n,
        "encode_items_per_s": n / encode_s,
        "eval_items_per_s": n / ev.seconds,
        "eval_vs_encode": encode_s / ev.seconds,
    }


def _arch_rows(args, runtime, scale: int) -> dict[str, dict]:
    """Train every architecture in every compile mode; a fresh model (and dynamo state) per row."""
    rows: dict[str, dict] = {}
    start = time.perf_counter()
    steps, tiny = args.steps, args.tiny
    size = 32 if tiny else 224

    def bert():
        model = _model("hf-text", tiny=tiny, task="text-to-text", max_length=32).to(runtime.device)
        vocab = model.query_tower.encoder.config.vocab_size
        b = 128 // scale
        return model, _tokens(b * (steps + 4), 32, vocab, 0), _tokens(b * (steps + 4), 32, vocab, 1), b, 2e-5

    def resnet():
        cfg = ModelConfig(kind="torchvision", name="resnet50", weights="none", image_size=size, tiny=tiny)
        model = build_model(cfg, task="image-to-image").to(runtime.device)
        b = 128 // scale
        return model, _pixels(b * (steps + 4), size, 0), _pixels(b * (steps + 4), size, 1), b, 1e-4

    def clip():
        model = _model("clip", tiny=tiny, task="text-to-image", max_length=32).to(runtime.device)
        b = 256 // scale
        return model, _tokens(b * (steps + 4), 32, 500, 0), _pixels(b * (steps + 4), size, 1), b, 1e-5

    archs = {"bert": ("bert-base pairs B128 L32", bert), "resnet": ("resnet50 pairs B128 224px", resnet)}
    archs["clip"] = ("CLIP ViT-B/32 pairs B256", clip)
    for key in args.archs:
        label, make = archs[key]
        for mode in args.compile:
            tags = ["eager" if mode == "off" else mode] + ["pageable"] * args.pageable
            tags += [args.precision] * (args.precision != "auto")
            name = f"{label} [{', '.join(tags)}]"
            if args.deadline_s is not None and time.perf_counter() - start > args.deadline_s:
                print(f"{name}: skipped (past --deadline-s {args.deadline_s:g})", flush=True)
                continue
            torch._dynamo.reset()
            model, queries, docs, batch, lr = make()
            row = _time_training(
                model, queries, docs, batch=batch, steps=steps, lr=lr, runtime=runtime, compile_mode=mode
            )
            row["batch"] = batch
            if key == "bert" and mode == "off":
                n = 20000 // scale
                row.update(
                    _time_eval(
                        model,
                        _tokens(n, 32, model.query_tower.encoder.config.vocab_size, 2),
                        n=n,
                        batch=1024 // scale,
                        runtime=runtime,
                    )
                )
            rows[name] = row
            print(f"{name}: {row['items_per_s']:,.0f} pairs/s, warm-up {row['warmup_s']:.1f}s", flush=True)
            for sync in row["host_syncs"] or []:
                print(f"  host sync in the training step: {sync}", flush=True)
            del model
            release = getattr(torch.cuda, "empty_cache", None)
            if runtime.is_cuda and release:
                release()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny twins and small shapes: a CPU check of the code path")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--archs", nargs="+", default=["bert", "resnet", "clip"], choices=["bert", "resnet", "clip"])
    parser.add_argument(
        "--compile",
        nargs="+",
        default=["off", "default"],
        choices=["off", "default", "reduce-overhead", "max-autotune"],
        help="train.compile modes to time (off = eager)",
    )
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the card's dense bf16 peak (H100 SXM: 989)")
    parser.add_argument("--deadline-s", type=float, default=None, help="skip the rows that would start after this")
    parser.add_argument(
        "--pageable",
        action="store_true",
        help="copy batches to the GPU from pageable memory: the baseline of Runtime.to_device's pinned copies",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="train.precision of every row (auto = bf16 autocast on a GPU; fp32 = TF32 matmuls, no autocast)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    runtime = resolve_runtime("auto", args.precision)
    if args.pageable:  # the copy as it was before the pinned staging: same values, only the host's waiting differs
        Runtime.to_device = lambda self, tensor: tensor.to(self.device, non_blocking=True)
    scale = 8 if args.tiny else 1
    rows = _arch_rows(args, runtime, scale)

    print(f"device: {runtime.device_name}, autocast: {runtime.amp_dtype}")
    print(f"{'loop':<44} {'pairs/s':>10} {'step ms':>8} {'warm-up s':>9} {'TFLOP/step':>10} {'MFU':>6} {'peak MB':>8}")
    flops_of = {name.split(" [")[0]: r["flops_per_step"] for name, r in rows.items() if r["flops_per_step"]}
    for name, r in rows.items():
        flops = flops_of.get(name.split(" [")[0])  # the eager count: compiling does not change the math
        r["mfu"] = flops * r["items_per_s"] / r["batch"] / (args.peak_tflops * 1e12) if flops else None
        mfu = f"{r['mfu']:>6.1%}" if r["mfu"] is not None else f"{'-':>6}"
        tflops = f"{flops / 1e12:>10.3f}" if flops else f"{'-':>10}"
        print(
            f"{name:<44} {r['items_per_s']:>10,.0f} {r['step_ms']:>8.1f} {r['warmup_s']:>9.1f} {tflops} {mfu} {r['peak_mb']:>8.0f}"
        )
    for name, ev in rows.items():
        if "eval_vs_encode" in ev:
            print(
                f"evaluation ({name.split(' pairs')[0]}, {ev['eval_items']:,} items, exact top-20): encode "
                f"{ev['encode_items_per_s']:,.0f}/s, embed+search+metrics {ev['eval_items_per_s']:,.0f}/s = "
                f"{ev['eval_vs_encode']:.0%} of encode-only (target >= 80%)"
            )
    if args.out:
        args.out.write_text(json.dumps({"device": runtime.device_name, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
