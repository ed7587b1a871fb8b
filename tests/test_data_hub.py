"""The hub loader offline: ``datasets.load_dataset`` is replaced by one returning real in-memory ``datasets.Dataset``s."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sweeps.config import DataConfig
from sweeps.data import load_data
from sweeps.data.hub import CACHE_ENV, cache_root
from sweeps.errors import DataError

datasets = pytest.importorskip("datasets")
from PIL import Image  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def hub(monkeypatch):
    """Serve {split: Dataset} for any id; record the calls."""
    state = {"tables": {}, "calls": []}

    def load_dataset(path, name=None, split=None, **kwargs):
        state["calls"].append((path, name, split))
        return state["tables"][split]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return state


def faces(people: int = 3, per: int = 2) -> tuple[list[Image.Image], list[int], list[Path]]:
    root = DATA / "att_faces"
    if not root.exists():
        pytest.skip(f"real data set not present: {root}")
    files = [root / f"s{p}" / f"{k}.pgm" for p in range(1, people + 1) for k in range(1, per + 1)]
    return [Image.open(f).copy() for f in files], [p for p in range(1, people + 1) for _ in range(per)], files


def test_cache_root_follows_env(cache):
    assert cache_root() == cache


def test_celeba_like_images_are_cached_once_as_png(hub, cache):
    images, ids, files = faces()
    features = datasets.Features({"image": datasets.Image(), "celeb_id": datasets.Value("int64")})
    hub["tables"]["train"] = datasets.Dataset.from_dict({"image": images, "celeb_id": ids}, features=features)
    cfg = DataConfig(
        format="hub",
        hub_id="flwrlabs/celeba",
        hub_config="img_align+identity+attr",
        text_column="",
        label_column="celeb_id",
    )
    data = load_data(cfg)
    assert hub["calls"] == [("flwrlabs/celeba", "img_align+identity+attr", "train")]
    assert data.modality == "image" and data.labels == ("1", "1", "2", "2", "3", "3")
    assert data.official_split is None and data.source == "flwrlabs/celeba (img_align+identity+attr)"
    for k, (path, original) in enumerate(zip(data.items, files, strict=True)):
        assert path == str(
            cache / "images" / "flwrlabs" / "celeba" / "img_align+identity+attr" / "train" / "image" / f"{k}.png"
        )
        np.testing.assert_array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(original)))  # lossless
    stamps = [Path(p).stat().st_mtime_ns for p in data.items]
    assert load_data(cfg) == data
    assert [Path(p).stat().st_mtime_ns for p in data.items] == stamps  # written once, reused after


def test_max_items_writes_only_the_sampled_images(hub, cache):
    images, ids, _ = faces(people=4, per=4)
    features = datasets.Features({"image": datasets.Image(), "celeb_id": datasets.Value("int64")})
    hub["tables"]["train"] = datasets.Dataset.from_dict({"image": images, "celeb_id": ids}, features=features)
    data = load_data(DataConfig(format="hub", hub_id="x/faces", label_column="celeb_id", max_items=8))
    assert len(data) <= 8 and min(np.unique(data.labels, return_counts=True)[1]) >= 2
    written = sorted(str(p) for p in cache.rglob("*.png"))
    assert written == sorted(data.items)


def test_clinc_like_class_labels_exclusion_and_eval_split(hub, cache):
    features = datasets.Features(
        {"text": datasets.Value("string"), "intent": datasets.ClassLabel(names=["transfer", "oos", "balance"])}
    )
    hub["tables"]["train"] = datasets.Dataset.from_dict(
        {"text": ["a", "b", "c", "d", "e", "f"], "intent": [0, 0, 1, 1, 2, 2]}, features=features
    )
    hub["tables"]["test"] = datasets.Dataset.from_dict(
        {"text": ["g", "h", "i", "j", "unlabeled"], "intent": [0, 0, 2, 2, -1]},
        features=features,  # -1: skipped
    )
    cfg = DataConfig(
        format="hub",
        hub_id="clinc_oos",
        hub_config="plus",
        label_column="intent",
        hub_eval_split="test",
        exclude_labels=("oos",),
    )
    data = load_data(cfg)
    assert [c[2] for c in hub["calls"]] == ["train", "test"]
    assert data.items == ("a", "b", "e", "f", "g", "h", "i", "j")
    assert data.labels == ("transfer", "transfer", "balance", "balance", "transfer", "transfer", "balance", "balance")
    assert data.official_split == ("train",) * 4 + ("test",) * 4
    assert not list(cache.rglob("*"))  # text data writes nothing


def test_image_caption_pairs_with_list_and_several_columns(hub, cache):
    images, _, _ = faces(people=2, per=1)
    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Sequence(datasets.Value("string"))})
    hub["tables"]["test"] = datasets.Dataset.from_dict(
        {"image": images, "caption": [["a man", "a face"], ["a woman", "a person"]]}, features=features
    )
    data = load_data(
        DataConfig(
            format="hub",
            hub_id="lmms-lab/flickr30k",
            hub_split="test",
            structure="pairs",
            query_column="caption",
            document_column="image",
        )
    )
    assert (data.query_modality, data.doc_modality) == ("text", "image")
    assert data.queries == ("a man", "a face", "a woman", "a person") and data.doc_of == (0, 0, 1, 1)
    assert all(Path(d).is_file() for d in data.docs) and len(data.docs) == 2

    flat = datasets.Features(
        {"image": datasets.Image(), "caption_0": datasets.Value("string"), "caption_1": datasets.Value("string")}
    )
    hub["tables"]["train"] = datasets.Dataset.from_dict(
        {"image": images, "caption_0": ["x0", "y0"], "caption_1": ["x1", "y1"]}, features=flat
    )
    data = load_data(
        DataConfig(
            format="hub",
            hub_id="jxie/flickr8k",
            structure="pairs",
            query_column="caption_0, caption_1",
            document_column="image",
        )
    )
    assert data.queries == ("x0", "x1", "y0", "y1") and data.doc_of == (0, 0, 1, 1)


def test_text_pairs_share_identical_documents(hub, cache):
    hub["tables"]["train"] = datasets.Dataset.from_dict(
        {"anchor": ["q1", "q2", "q3"], "positive": ["same", "other", "same"]}
    )
    data = load_data(
        DataConfig(
            format="hub",
            hub_id="sentence-transformers/quora-duplicates",
            hub_config="pair",
            structure="pairs",
            query_column="anchor",
            document_column="positive",
        )
    )
    assert data.docs == ("same", "other") and data.doc_of == (0, 1, 0)


def test_offline_or_unknown_id_is_a_data_error(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nope/nothing' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as info:
        load_data(DataConfig(format="hub", hub_id="nope/nothing"))
    message = str(info.value)
    assert "could not load hub dataset 'nope/nothing'" in message and "no network or unknown id" in message
    assert "fix:" in message and "data.hub_id" in message


def test_missing_column_lists_the_columns(hub):
    hub["tables"]["train"] = datasets.Dataset.from_dict({"sentence": ["a", "b"], "label": [0, 0]})
    with pytest.raises(DataError, match=r"'sentence', 'label'"):
        load_data(DataConfig(format="hub", hub_id="x/y"))
    with pytest.raises(DataError, match=r"data.document_column"):
        load_data(DataConfig(format="hub", hub_id="x/y", structure="pairs", query_column="sentence"))


def test_hub_labels_need_two_items(hub):
    hub["tables"]["train"] = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": ["x", "x", "y"]})
    with pytest.raises(DataError, match=r"1 label\(s\) have a single item \('y'\)"):
        load_data(DataConfig(format="hub", hub_id="x/y"))


def test_package_import_does_not_load_datasets():
    code = "import sys, sweeps.data, sweeps.data.split, sweeps.data.files, sweeps.data.hub; print('datasets' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == "False"
