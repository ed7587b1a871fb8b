"""Throughput of the project's own training and evaluation loops at the reference loops' shapes (speed issue).

What runs is the real code: ``sweeps.train.train_one_epoch`` (collate with dynamic padding, the tower's
forward under the runtime's autocast, the contrastive loss, fused AdamW, the constant schedule) and
``sweeps.evaluate.evaluate`` (embed, exact top-20 search, metrics). The models are the seed's architectures,
randomly initialised from their configs and loaded through the normal ``build_model`` path (a local folder,
a torchvision name with ``weights: none``), since no weights can be downloaded on the GPU machine.

Run it on the GPU machine in the SAME call as the reference loops and report ratios, e.g.:
    python ../shared/bench/reference_loops.py 2>&1 | tee $OUT/reference.txt
    python benchmarks/gpu_throughput.py --out $OUT/project.json [--clinc data/clinc150/data_full.json]
``--tiny`` runs the same code with tiny twins on the CPU in seconds (what CI-like checks can do here).

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
from sweeps.device import resolve_runtime
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
        tok = offline_bert_tokenizer()
        BertModel(BertConfig(vocab_size=len(tok))).save_pretrained(folder)
    else:
        # Defaults: the ViT-B/32 vision tower and CLIP's 12-layer, 512-wide text tower with its 49,408-token
        # embedding; the benchmark feeds random token ids, so the small offline tokenizer only fills the folder.
        tok = offline_clip_tokenizer()
        CLIPModel(CLIPConfig()).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _model(kind: str, *, tiny: bool, task: str, **options):
    """The seed's architecture at full size from a saved random folder, or the project's own tiny twin."""
    if tiny:  # the tiny twins the tests use (sweeps.models), no folder needed
        name = {"hf-text": "bert-base-cased", "clip": "openai/clip-vit-base-patch32"}[kind]
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
    return ImageFeatures(pixels=pixels.contiguous(memory_format=torch.channels_last))


def _time_training(model, query_features, doc_features, *, batch: int, steps: int, lr: float, runtime) -> dict:
    n = batch * (steps + 3)
    ids = np.arange(n)
    train_set = TrainSet(positions=ids, label_ids=ids, doc_positions=ids, labels_for_batching=None)
    cfg = TrainConfig(batch_size=batch, lr=lr)
    optimizer = build_optimizer(model, cfg, runtime=runtime)
    scheduler = build_scheduler(optimizer, cfg, total_steps=steps + 3)
    batches = [ids[i * batch : (i + 1) * batch] for i in range(steps + 3)]
    kwargs = dict(
        train_set=train_set,
        query_features=query_features,
        doc_features=doc_features,
        cfg=cfg,
        optimizer=optimizer,
        scheduler=scheduler,
        runtime=runtime,
    )
    with FlopCounterMode(display=False) as counter:  # one real step, counted
        train_one_epoch(model, batches[:1], **kwargs)
    train_one_epoch(model, batches[1:3], **kwargs)  # warm-up (allocator, cuDNN autotune)
    runtime.reset_peak_memory()
    stats = train_one_epoch(model, batches[3:], **kwargs)
    return {
        "items_per_s": stats.items / stats.seconds,
        "step_ms": 1e3 * stats.seconds / stats.steps,
        "flops_per_step": counter.get_total_flops(),
        "peak_mb": runtime.peak_memory_mb(),
        "loss": stats.loss,
    }


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
        "encode_items_per_s": n / encode_s,
        "eval_items_per_s": n / ev.seconds,
        "eval_vs_encode": encode_s / ev.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny twins and small shapes: a CPU check of the code path")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the card's dense bf16 peak (H100 SXM: 989)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    runtime = resolve_runtime("auto", "auto")
    scale = 8 if args.tiny else 1
    rows: dict[str, dict] = {}

    bert = _model("hf-text", tiny=args.tiny, task="text-to-text", max_length=32).to(runtime.device)
    vocab = bert.query_tower.encoder.config.vocab_size if hasattr(bert.query_tower, "encoder") else 1000
    b = 128 // scale
    rows["bert-base pairs B128 L32"] = _time_training(
        bert,
        _tokens(b * (args.steps + 3), 32, vocab, 0),
        _tokens(b * (args.steps + 3), 32, vocab, 1),
        batch=b,
        steps=args.steps,
        lr=2e-5,
        runtime=runtime,
    )
    rows["bert-base pairs B128 L32"].update(
        _time_eval(bert, _tokens(20000 // scale, 32, vocab, 2), n=20000 // scale, batch=1024 // scale, runtime=runtime)
    )
    del bert

    size = 32 if args.tiny else 224
    resnet = build_model(
        ModelConfig(kind="torchvision", name="resnet50", weights="none", image_size=size, tiny=args.tiny),
        task="image-to-image",
    ).to(runtime.device)
    b = 128 // scale
    rows["resnet50 pairs B128 224px"] = _time_training(
        resnet,
        _pixels(b * (args.steps + 3), size, 0),
        _pixels(b * (args.steps + 3), size, 1),
        batch=b,
        steps=args.steps,
        lr=1e-4,
        runtime=runtime,
    )
    del resnet

    clip = _model("clip", tiny=args.tiny, task="text-to-image", max_length=32).to(runtime.device)
    b = 256 // scale
    clip_size = 32 if args.tiny else 224
    rows["CLIP ViT-B/32 pairs B256"] = _time_training(
        clip,
        _tokens(b * (args.steps + 3), 32, 500, 0),
        _pixels(b * (args.steps + 3), clip_size, 1),
        batch=b,
        steps=args.steps,
        lr=1e-5,
        runtime=runtime,
    )
    del clip

    print(f"device: {runtime.device_name}, autocast: {runtime.amp_dtype}")
    print(f"{'loop':<28} {'pairs/s':>10} {'step ms':>8} {'TFLOP/step':>10} {'MFU':>6} {'peak MB':>8}")
    for name, r in rows.items():
        r["mfu"] = (
            r["flops_per_step"]
            * r["items_per_s"]
            / (128 if "B128" in name else 256)
            * scale
            / (args.peak_tflops * 1e12)
        )
        print(
            f"{name:<28} {r['items_per_s']:>10,.0f} {r['step_ms']:>8.1f} {r['flops_per_step'] / 1e12:>10.3f} {r['mfu']:>6.1%} {r['peak_mb']:>8.0f}"
        )
    ev = rows["bert-base pairs B128 L32"]
    print(
        f"evaluation (bert-base, {20000 // scale} items, exact top-20): encode {ev['encode_items_per_s']:,.0f}/s, "
        f"embed+search+metrics {ev['eval_items_per_s']:,.0f}/s = {ev['eval_vs_encode']:.0%} of encode-only (target >= 80%)"
    )
    if args.out:
        args.out.write_text(json.dumps({"device": runtime.device_name, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
