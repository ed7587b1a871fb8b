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
    """Serve {split: Dataset} for any id; record the calls. The repository metadata is "unavailable" (the
    whole split is loaded); HF_HUB_OFFLINE skips the DNS check of the hub (the fake needs no network)."""
    state = {"tables": {}, "calls": []}

    def load_dataset(path, name=None, split=None, **kwargs):
        state["calls"].append((path, name, split))
        return state["tables"][split]

    def no_metadata(*args, **kwargs):
        raise ConnectionError("no metadata in this test")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(datasets, "load_dataset_builder", no_metadata)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
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
        hub_id="clinc/clinc_oos",
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


def test_unreachable_hub_without_a_cached_copy_is_a_data_error(hub, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nope/nothing' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as info:
        load_data(DataConfig(format="hub", hub_id="nope/nothing"))
    message = str(info.value)
    assert "could not load hub dataset 'nope/nothing'" in message and "the hub is unreachable" in message
    assert "fix:" in message and "data.hub_id" in message and "HF_HUB_OFFLINE=1" in message
    assert "malformed" not in message


def test_unknown_id_is_told_apart_from_no_network(hub, monkeypatch):
    def unknown(*args, **kwargs):
        raise datasets.exceptions.DatasetNotFoundError("Dataset 'nope/nothing' doesn't exist on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", unknown)
    with pytest.raises(DataError, match="not found on the hub") as info:
        load_data(DataConfig(format="hub", hub_id="nope/nothing"))
    assert "unreachable" not in str(info.value)


# --- ids: the real huggingface_hub parser, no download ------------------------------------------------


JINA = Path(__file__).resolve().parents[1] / "sweeps" / "configs" / "jina"


def test_bare_ids_fail_the_real_hub_parser_and_name_the_full_id():
    from sweeps.data.hub import check_hub_id

    with pytest.raises(DataError) as info:
        check_hub_id("clinc_oos")
    message = str(info.value)
    assert "data.hub_id" in message and "malformed, not a network problem" in message
    assert "namespace/name" in message and "'clinc/clinc_oos'" in message
    check_hub_id("clinc/clinc_oos")  # no error, no network
    with pytest.raises(DataError, match="malformed"):
        check_hub_id("a/b/c")


def test_jina_study_ids_are_namespaced_for_the_real_hub_parser():
    """Every Jina-study dataset id passes huggingface_hub's parser; every hub model id is 'namespace/name'."""
    from huggingface_hub.utils import validate_repo_id

    from sweeps.data.hub import check_hub_id
    from sweeps.sweepfile import load_sweep_config

    files = sorted(JINA.glob("*.yaml"))
    assert len(files) == 14
    hub_ids, model_names = set(), set()
    for file in files:
        cfg = load_sweep_config(file)
        if cfg.trial.data.format == "hub":
            check_hub_id(cfg.trial.data.hub_id)
            hub_ids.add(cfg.trial.data.hub_id)
        if cfg.trial.model.kind in ("hf-text", "clip"):
            validate_repo_id(cfg.trial.model.name)
            assert cfg.trial.model.name.count("/") == 1, (file.name, cfg.trial.model.name)
            model_names.add(cfg.trial.model.name)
    assert "clinc/clinc_oos" in hub_ids and "google-bert/bert-base-cased" in model_names


def test_config_refuses_a_bare_dataset_id(tmp_path):
    from sweeps.errors import ConfigError
    from sweeps.sweepfile import load_sweep_config

    text = (JINA / "clinc150-data.yaml").read_text().replace("clinc/clinc_oos", "clinc_oos")
    assert "hub_id: clinc_oos" in text
    (tmp_path / "jina.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_sweep_config(tmp_path / "jina.yaml")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'jina.yaml'}: data.hub_id: 'clinc_oos' has no namespace")
    assert "set data.hub_id: clinc/clinc_oos" in message


def test_no_network_fails_at_once_without_touching_datasets(monkeypatch):
    import socket

    looked_up = []

    def unresolvable(host, *args, **kwargs):
        looked_up.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def must_not_run(*args, **kwargs):
        raise AssertionError("datasets was asked to load while the hub cannot be resolved")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
    monkeypatch.setattr(datasets, "load_dataset", must_not_run)
    monkeypatch.setattr(datasets, "load_dataset_builder", must_not_run)
    with pytest.raises(DataError) as info:
        load_data(DataConfig(format="hub", hub_id="clinc/clinc_oos", hub_config="plus"))
    message = str(info.value)
    assert looked_up == ["huggingface.co"]
    assert "no network (huggingface.co could not be resolved" in message and "HF_HUB_OFFLINE=1" in message


# --- only the needed split, with its size said first ---------------------------------------------------


def hub_repo(root: Path) -> Path:
    """A local copy of a hub dataset repository in the parquet layout (README configs, files per split)."""
    features = datasets.Features(
        {"text": datasets.Value("string"), "intent": datasets.ClassLabel(names=["transfer", "balance", "oos"])}
    )
    splits = {
        "train": {"text": ["a", "b", "c", "d", "e"], "intent": [0, 0, 1, 1, 2]},
        "validation": {"text": ["v", "w"], "intent": [0, 0]},
        "test": {"text": ["x", "y", "z"], "intent": [1, 1, 0]},
    }
    (root / "plus").mkdir(parents=True)
    for split, columns in splits.items():
        datasets.Dataset.from_dict(columns, features=features).to_parquet(
            str(root / "plus" / f"{split}-00000-of-00001.parquet")
        )
    card = ["---", "configs:", "- config_name: plus", "  data_files:"]
    for split in splits:
        card += [f"  - split: {split}", f"    path: plus/{split}-*.parquet"]
    (root / "README.md").write_text("\n".join([*card, "---", ""]))
    return root


def test_only_the_needed_splits_are_read_and_their_size_is_said_first(tmp_path, monkeypatch, caplog):
    import logging

    repo = hub_repo(tmp_path / "clinc_oos")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    real_load = datasets.load_dataset
    calls = []

    def spy(path, name=None, **kwargs):
        calls.append((name, kwargs.get("split"), kwargs.get("data_files")))
        return real_load(path, name, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", spy)
    cfg = DataConfig(
        format="hub",
        hub_id=str(repo),
        hub_config="plus",
        label_column="intent",
        hub_eval_split="test",
        exclude_labels=("oos",),
    )
    with caplog.at_level(logging.INFO, logger="sweeps.data"):
        data = load_data(cfg)
    train_file = str(repo / "plus" / "train-00000-of-00001.parquet")
    test_file = str(repo / "plus" / "test-00000-of-00001.parquet")
    assert calls == [("plus", "train", {"train": [train_file]}), ("plus", "test", {"test": [test_file]})]
    assert data.items == ("a", "b", "c", "d", "x", "y", "z")  # read through the real parquet files
    assert data.official_split == ("train",) * 4 + ("test",) * 3
    sizes = {split: Path(f).stat().st_size for split, f in (("train", train_file), ("test", test_file))}
    said = [r.getMessage() for r in caplog.records if "to download" in r.getMessage()]
    assert len(said) == 2 and f"{sizes['train'] / 1000:.1f} KB in 1 file(s)" in said[0] and "'train'" in said[0]
    # The validation split was never prepared: nothing of it in the datasets cache.
    assert not [p for p in (tmp_path / "datasets-cache").rglob("*validation*")]


def test_remote_size_reads_file_system_metadata():
    import fsspec

    from sweeps.data.hub import human_bytes, remote_size

    fs = fsspec.filesystem("memory")
    fs.pipe("/sizes/a.parquet", b"x" * 1500)
    fs.pipe("/sizes/b.parquet", b"y" * 2500)
    assert remote_size(["memory://sizes/a.parquet", "memory://sizes/b.parquet"]) == 4000
    assert remote_size(["memory://sizes/missing.parquet"]) is None
    assert human_bytes(4000) == "4.0 KB" and human_bytes(11_700_000_000) == "11.7 GB" and human_bytes(12) == "12 B"


# --- single-item labels ---------------------------------------------------------------------------------


def test_hub_single_item_labels_follow_data_singletons(hub, caplog):
    texts, labels = ["a", "b", "c", "d", "e"], ["x", "x", "y", "z", "z"]
    hub["tables"]["train"] = datasets.Dataset.from_dict({"text": texts, "label": labels})
    data = load_data(DataConfig(format="hub", hub_id="x/y"))  # default: index
    assert data.labels == ("x", "x", "y", "z", "z")
    assert "1 label(s) have a single item ('y')" in caplog.text and "distractors" in caplog.text
    assert load_data(DataConfig(format="hub", hub_id="x/y", singletons="drop")).labels == ("x", "x", "z", "z")


def test_missing_column_lists_the_columns(hub):
    hub["tables"]["train"] = datasets.Dataset.from_dict({"sentence": ["a", "b"], "label": [0, 0]})
    with pytest.raises(DataError, match=r"'sentence', 'label'"):
        load_data(DataConfig(format="hub", hub_id="x/y"))
    with pytest.raises(DataError, match=r"data.document_column"):
        load_data(DataConfig(format="hub", hub_id="x/y", structure="pairs", query_column="sentence"))


def test_hub_labels_need_two_items_with_singletons_error(hub):
    hub["tables"]["train"] = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": ["x", "x", "y"]})
    with pytest.raises(DataError, match=r"1 label\(s\) have a single item \('y'\)"):
        load_data(DataConfig(format="hub", hub_id="x/y", singletons="error"))


def test_package_import_does_not_load_datasets():
    code = "import sys, sweeps.data, sweeps.data.split, sweeps.data.files, sweeps.data.tables, sweeps.data.hub; print('datasets' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == "False"
