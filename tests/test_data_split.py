"""Evaluation split, nested training order, take, query sample and batches: known answers on real data."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sweeps.config import SplitConfig
from sweeps.data import LabeledItems, Pairs
from sweeps.data.files import load_clinc150, load_coco_captions, load_image_folder
from sweeps.data.order import group_batches, nested_order, take
from sweeps.data.split import Split, sample_queries, split_data
from sweeps.errors import DataError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def need(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data set not present: {path}")
    return path


@pytest.fixture(scope="module")
def clinc() -> LabeledItems:
    return load_clinc150(need("clinc150", "data_full.json"), exclude_labels=("oos",))


@pytest.fixture(scope="module")
def clinc_split(clinc) -> Split:
    return split_data(clinc, SplitConfig(method="official", official_eval="test", official_train="train"))


@pytest.fixture(scope="module")
def faces() -> LabeledItems:
    return load_image_folder(need("att_faces"))


@pytest.fixture(scope="module")
def coco() -> Pairs:
    return load_coco_captions(need("coco_mini"))


def synthetic(sizes: dict[str, int]) -> LabeledItems:
    labels = [label for label, n in sizes.items() for _ in range(n)]
    return LabeledItems(
        items=tuple(f"{label}-{i}" for i, label in enumerate(labels)),
        labels=tuple(labels),
        modality="text",
        source="synthetic",
    )


# ---------------------------------------------------------------------------------------------- split_data


def test_official_split_of_clinc(clinc_split):
    assert len(clinc_split.train) == 15_000 and len(clinc_split.eval) == 4_500
    assert set(clinc_split.train.official_split) == {"train"} and set(clinc_split.eval.official_split) == {"test"}
    assert len(clinc_split.eval_id) == 12


def test_official_eval_id_ignores_seeded_settings(clinc, clinc_split):
    again = split_data(clinc, SplitConfig(method="official", eval_fraction=0.5, seed=9))
    assert again.eval_id == clinc_split.eval_id


def test_official_split_errors(faces, clinc):
    with pytest.raises(DataError, match="no official split"):
        split_data(faces, SplitConfig(method="official"))
    with pytest.raises(DataError, match=r"no official split 'dev'.*'test', 'train', 'val'"):
        split_data(clinc, SplitConfig(method="official", official_eval="dev"))


def test_stratified_rule_on_synthetic_sizes():
    data = synthetic({"a": 2, "b": 3, "c": 4, "d": 5, "e": 10, "f": 30})
    split = split_data(data, SplitConfig(eval_fraction=0.2, seed=3))
    ev, tr = Counter(split.eval.labels), Counter(split.train.labels)
    # n >= 4: round(0.2 n) clamped to [2, n - 2]
    assert (ev["c"], tr["c"]) == (2, 2)
    assert (ev["d"], tr["d"]) == (2, 3)
    assert (ev["e"], tr["e"]) == (2, 8)
    assert (ev["f"], tr["f"]) == (6, 24)
    # n < 4: the whole label on one side
    for label, n in (("a", 2), ("b", 3)):
        assert {ev[label], tr[label]} == {0, n}
    assert set(split.eval.items).isdisjoint(split.train.items)
    assert len(split.eval) + len(split.train) == len(data)


def test_seeded_item_split_of_faces_is_stratified_and_disjoint(faces):
    split = split_data(faces, SplitConfig(eval_fraction=0.2, seed=0))
    assert set(Counter(split.eval.labels).values()) == {2} and len(set(split.eval.labels)) == 40
    assert set(Counter(split.train.labels).values()) == {8}
    assert set(split.eval.items).isdisjoint(split.train.items)


def test_label_split_holds_out_whole_people(faces):
    split = split_data(faces, SplitConfig(by="label", eval_fraction=0.2, seed=0))
    assert len(set(split.eval.labels)) == 8 and len(split.eval) == 80 and len(split.train) == 320
    assert set(split.eval.labels).isdisjoint(split.train.labels)


def test_pairs_split_by_document(coco):
    for by in ("item", "label"):
        split = split_data(coco, SplitConfig(by=by, eval_fraction=0.2, seed=0))
        assert len(split.eval.docs) == 32 and len(split.train.docs) == 127  # round(0.2 * 159)
        assert set(split.eval.docs).isdisjoint(split.train.docs)  # no eval document is ever trained on
        assert len(split.eval) + len(split.train) == 795


def test_split_is_deterministic_for_a_seed(faces, coco):
    for data in (faces, coco):
        a, b = split_data(data, SplitConfig(seed=7)), split_data(data, SplitConfig(seed=7))
        c = split_data(data, SplitConfig(seed=8))
        assert a == b and a.eval_id == b.eval_id
        assert c.eval != a.eval and c.eval_id != a.eval_id
    assert (
        split_data(faces, SplitConfig(seed=7, eval_fraction=0.3)).eval_id
        != split_data(faces, SplitConfig(seed=7)).eval_id
    )


def test_eval_id_does_not_depend_on_where_the_data_lives(faces):
    moved = LabeledItems(
        items=tuple(p.replace(str(DATA), "/mnt/elsewhere/data") for p in faces.items),
        labels=faces.labels,
        modality="image",
        source=faces.source.replace(str(DATA), "/mnt/elsewhere/data"),
    )
    assert split_data(moved, SplitConfig()).eval_id == split_data(faces, SplitConfig()).eval_id


def test_max_eval_caps_and_keeps_positives(clinc_split, clinc, coco):
    split = split_data(clinc, SplitConfig(method="official"), max_eval=1_000)
    assert 900 <= len(split.eval) <= 1_000 and min(Counter(split.eval.labels).values()) >= 2
    assert set(split.eval.items) <= set(clinc_split.eval.items)
    assert split.train == clinc_split.train and split.eval_id != clinc_split.eval_id
    pairs = split_data(coco, SplitConfig(), max_eval=50)
    assert len(pairs.eval) <= 50
    assert set(Counter(pairs.eval.doc_of).values()) == {5}  # whole documents


# ---------------------------------------------------------------------------------------------- nested order and take


def test_nested_order_on_clinc(clinc_split):
    pool = clinc_split.train
    order = nested_order(pool, seed=0, group_size=4)
    assert sorted(order.tolist()) == list(range(len(pool)))
    first = {n: set(order[:n].tolist()) for n in (100, 200, 500)}
    assert first[100] < first[200] < first[500]
    assert Counter(Counter(take(pool, order, 100).labels).values()) == {4: 25}
    assert Counter(Counter(take(pool, order, 600).labels).values()) == {4: 150}
    assert Counter(Counter(take(pool, order, 1_200).labels).values()) == {8: 150}
    np.testing.assert_array_equal(order, nested_order(pool, seed=0, group_size=4))
    other = nested_order(pool, seed=1, group_size=4)
    assert set(Counter(take(pool, other, 100).labels)) != set(Counter(take(pool, order, 100).labels))


def test_nested_order_of_pairs_spreads_documents(coco):
    pool = split_data(coco, SplitConfig(seed=0)).train
    order = nested_order(pool, seed=0, group_size=4)
    n_docs = len(pool.docs)
    assert sorted(order.tolist()) == list(range(len(pool)))
    assert len({pool.doc_of[i] for i in order[:n_docs]}) == n_docs  # the first round: one query per document
    assert len(take(pool, order, 64).docs) == 64


def test_take_never_caps_silently(faces):
    order = nested_order(faces, seed=0, group_size=2)
    assert len(take(faces, order, 400)) == 400
    with pytest.raises(DataError) as info:
        take(faces, order, 401)
    message = str(info.value)
    assert "asked for 401 training items but the training pool holds 400" in message and "fix:" in message


# ---------------------------------------------------------------------------------------------- queries and batches


def test_sample_queries(faces):
    np.testing.assert_array_equal(sample_queries(faces, max_queries=None, seed=0), np.arange(400))
    np.testing.assert_array_equal(sample_queries(faces, max_queries=1_000, seed=0), np.arange(400))
    q = sample_queries(faces, max_queries=50, seed=3)
    assert len(q) == 50 and len(set(q.tolist())) == 50 and np.all(np.diff(q) > 0)
    np.testing.assert_array_equal(q, sample_queries(faces, max_queries=50, seed=3))
    assert not np.array_equal(q, sample_queries(faces, max_queries=50, seed=4))


def test_group_batches_keep_label_groups_together(clinc_split):
    pool = clinc_split.train
    order = nested_order(pool, seed=0, group_size=4)
    labels = list(take(pool, order, 200).labels)  # 50 labels x 4
    batches = group_batches(labels, 200, batch_size=32, group_size=4, seed=0, epoch=1)
    assert [len(b) for b in batches] == [32] * 6 + [8]
    assert sorted(np.concatenate(batches).tolist()) == list(range(200))
    for batch in batches:
        assert min(Counter(labels[i] for i in batch).values()) >= 2  # every anchor has an in-batch positive
    again = group_batches(labels, 200, batch_size=32, group_size=4, seed=0, epoch=1)
    assert all(np.array_equal(x, y) for x, y in zip(batches, again, strict=True))
    epoch2 = group_batches(labels, 200, batch_size=32, group_size=4, seed=0, epoch=2)
    assert not all(np.array_equal(x, y) for x, y in zip(batches, epoch2, strict=False))


def test_group_batches_with_uneven_groups():
    labels = ["a"] * 5 + ["b"] * 3 + ["c"] * 7 + ["d"] * 2
    for epoch in range(1, 6):
        batches = group_batches(labels, len(labels), batch_size=6, group_size=4, seed=1, epoch=epoch)
        flat = np.concatenate(batches).tolist()
        assert len(flat) == len(set(flat)) and len(flat) >= len(labels) - 1
        assert all(2 <= len(b) <= 6 + 4 for b in batches)  # a one-label last batch joins the one before
        for batch in batches:
            counts = Counter(labels[i] for i in batch)
            # Every batch has negatives. Batches this small (6, groups of 4) sometimes have to split a group
            # to get them: at most a lone item at each end, an anchor the loss skips.
            assert len(counts) >= 2
            assert sum(c == 1 for c in counts.values()) <= 2


def test_a_last_batch_of_one_label_joins_the_one_before():
    # 100 items of 25 labels x 4 in batches of 32: the last 4 items are one label, no negatives to contrast.
    labels = [f"l{i // 4}" for i in range(100)]
    for epoch in (1, 2, 3):
        batches = group_batches(labels, 100, batch_size=32, group_size=4, seed=0, epoch=epoch)
        assert [len(b) for b in batches] == [32, 32, 36]
        assert sorted(np.concatenate(batches).tolist()) == list(range(100))
        assert all(len({labels[i] for i in b}) >= 2 for b in batches)


def test_labeled_batches_must_hold_more_than_one_group(tmp_path):
    from sweeps.config import TrialConfig
    from sweeps.dataclass_io import build
    from sweeps.errors import ConfigError
    from sweeps.prepare import check_compatible

    labeled = LabeledItems(items=("a", "b", "c", "d"), labels=("x", "x", "y", "y"), modality="text", source="t")
    model = {"kind": "hf-text", "name": "google-bert/bert-base-cased"}
    data = {"format": "home-assistant-intents"}
    cfg = build(
        TrialConfig,
        {"task": "text-to-text", "model": model, "data": data, "train": {"batch_size": 4, "group_size": 4}},
        where="t",
    )
    with pytest.raises(ConfigError, match="no negatives") as info:
        check_compatible(cfg, labeled)
    assert info.value.field == "train.batch_size"
    check_compatible(
        build(
            TrialConfig, {"task": "text-to-text", "model": model, "data": data, "train": {"batch_size": 5}}, where="t"
        ),
        labeled,
    )


def test_group_batches_for_pairs():
    batches = group_batches(None, 65, batch_size=32, group_size=4, seed=0, epoch=1)
    assert [len(b) for b in batches] == [32, 32]  # a last batch of one item is dropped
    assert len(set(np.concatenate(batches).tolist())) == 64
    batches = group_batches(None, 66, batch_size=32, group_size=4, seed=0, epoch=1)
    assert [len(b) for b in batches] == [32, 32, 2]


# ---------------------------------------------------------------------------------------------- the shipped sweep files

CONFIGS = Path(__file__).resolve().parents[1] / "sweeps" / "configs"


@pytest.mark.parametrize(
    "name", ["clinc150-data", "banking77-data", "coco-captions-data", "coco-mini-t2i", "att-faces-data"]
)
def test_shipped_sweep_files_load_and_split(name):
    from sweeps.data import load_data
    from sweeps.sweepfile import load_sweep_config

    path = CONFIGS / f"{name}.yaml"
    if not path.exists():
        pytest.skip(f"{path} not present")
    cfg = load_sweep_config(path)
    if not Path(cfg.trial.data.path).exists():
        pytest.skip(f"real data set not present: {cfg.trial.data.path}")
    split = split_data(load_data(cfg.trial.data), cfg.trial.split, max_eval=cfg.trial.eval.max_index)
    assert len(split.eval) > 0
    order = nested_order(split.train, seed=0, group_size=cfg.trial.train.group_size)
    for size in cfg.sweep.sizes or (cfg.sweep.size,):
        assert len(take(split.train, order, size)) == size  # every size of the sweep fits the pool


def test_sample_queries_skips_items_with_nothing_to_find():
    from sweeps.data.items import LabeledItems

    data = LabeledItems(
        items=("a", "b", "c", "d", "e"), labels=("x", "x", "lonely", "y", "y"), modality="text", source="t"
    )
    np.testing.assert_array_equal(sample_queries(data, max_queries=None, seed=0), [0, 1, 3, 4])
    assert (
        2 not in sample_queries(data, max_queries=3, seed=1) and len(sample_queries(data, max_queries=3, seed=1)) == 3
    )


# --- single-item labels kept as distractors (data.singletons: index) --------------------------------------


def test_single_item_labels_are_index_distractors_never_queries_or_training(tmp_path):
    from sweeps.config import DataConfig
    from sweeps.data import load_data

    rows = [f"caption {k} of image {i},img{i}" for i in range(6) for k in range(5)]
    rows += ["a caption with a misspelt image id,img3x", "another typo,imgX"]
    f = tmp_path / "captions.csv"
    f.write_text("text,label\n" + "\n".join(rows) + "\n")
    data = load_data(DataConfig(format="labeled-csv", path=str(f)))  # the default: index
    singles = {i for i, label in enumerate(data.labels) if label in ("img3x", "imgX")}
    assert len(data) == 32 and len(singles) == 2
    for cfg in (SplitConfig(eval_fraction=0.2, seed=s) for s in range(4)):
        split = split_data(data, cfg)
        assert not {"img3x", "imgX"} & set(split.train.labels)  # never trained on
        assert {"img3x", "imgX"} <= set(split.eval.labels)  # in the index, as distractors
        queries = sample_queries(split.eval, max_queries=None, seed=0)
        assert not {"img3x", "imgX"} & {split.eval.labels[i] for i in queries}  # never queries
        assert len(split.train) + len(split.eval) == 32
    by_label = split_data(data, SplitConfig(by="label", eval_fraction=0.25, seed=1))
    assert {"img3x", "imgX"} <= set(by_label.eval.labels) and not {"img3x", "imgX"} & set(by_label.train.labels)
    # With an official split, single items leave the training pool and the eval set stays the official one.
    official = LabeledItems(
        items=("a", "b", "c", "d", "e", "f"),
        labels=("x", "x", "lone", "x", "x", "other-lone"),
        modality="text",
        source="t",
        official_split=("train", "train", "train", "test", "test", "test"),
    )
    split = split_data(official, SplitConfig(method="official"))
    assert split.train.items == ("a", "b") and split.eval.items == ("d", "e", "f")


# --- a held-out set that cannot measure retrieval is refused before any training --------------------------


def test_an_evaluation_set_of_one_label_is_refused():
    # two labels, but the official test split holds only one: every result is relevant to every query
    labels = ("a",) * 6 + ("b",) * 6 + ("a",) * 4
    split = ("train",) * 12 + ("test",) * 4
    data = LabeledItems(
        items=tuple(f"t{i}" for i in range(16)), labels=labels, modality="text", source="d.json", official_split=split
    )
    with pytest.raises(DataError, match=r"d.json: split: every query in the evaluation set is answered trivially"):
        split_data(data, SplitConfig(method="official"))


def test_an_evaluation_set_without_a_query_is_refused():
    # every held-out item's label has no other held-out item: nothing to find, every metric 0 whatever the model
    labels = ("a", "a", "b", "b", "c", "d")
    split = ("train",) * 4 + ("test",) * 2
    data = LabeledItems(
        items=tuple(f"t{i}" for i in range(6)), labels=labels, modality="text", source="d.json", official_split=split
    )
    with pytest.raises(DataError, match=r"no query in the evaluation set has a relevant item"):
        split_data(data, SplitConfig(method="official"))


def test_pairs_whose_evaluation_set_holds_one_document_are_refused():
    pairs = Pairs(
        queries=("q1", "q2", "q3", "q4"),
        docs=("d1", "d2"),
        doc_of=(0, 0, 1, 1),
        query_modality="text",
        doc_modality="text",
        source="p.jsonl",
        official_split=("train", "train", "test", "test"),
    )
    with pytest.raises(DataError, match=r"share one document, the only one in the index"):
        split_data(pairs, SplitConfig(method="official"))
