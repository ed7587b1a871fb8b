"""Local-file loaders on the real data sets in ../shared/data, and every malformed-input case on tmp files."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sweeps.config import DataConfig
from sweeps.data import LabeledItems, Pairs, load_data
from sweeps.data.files import (
    load_caption_clusters,
    load_clinc150,
    load_coco_captions,
    load_image_folder,
)
from sweeps.data.tables import load_labeled_table, load_pairs_table
from sweeps.errors import DataError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def need(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data set not present: {path}")
    return path


# ---------------------------------------------------------------------------------------------- real data sets


@pytest.fixture(scope="module")
def clinc() -> LabeledItems:
    return load_clinc150(need("clinc150", "data_full.json"), exclude_labels=("oos",))


def test_clinc150_in_scope_counts_and_official_split(clinc):
    assert len(clinc) == 22_500 and clinc.modality == "text"
    assert Counter(clinc.official_split) == {"train": 15_000, "val": 3_000, "test": 4_500}
    assert len(set(clinc.labels)) == 150 and "oos" not in clinc.labels
    per_label = Counter(zip(clinc.labels, clinc.official_split, strict=True))
    for split, n in (("train", 100), ("val", 20), ("test", 30)):
        assert {per_label[(label, split)] for label in set(clinc.labels)} == {n}
    assert clinc.items[clinc.labels.index("translate")]  # texts are kept verbatim (stripped)


def test_clinc150_includes_oos_unless_excluded():
    data = load_clinc150(need("clinc150", "data_full.json"))
    assert len(data) == 22_500 + 100 + 100 + 1_000
    oos = [s for s, label in zip(data.official_split, data.labels, strict=True) if label == "oos"]
    assert Counter(oos) == {"train": 100, "val": 100, "test": 1_000}


def test_banking77_folder_gives_one_official_split_per_file():
    data = load_labeled_table(need("banking77"), kind="csv", text_column="text", label_column="category")
    assert len(data) == 13_083
    assert Counter(data.official_split) == {"train": 10_003, "test": 3_080}
    assert len(set(data.labels)) == 77
    single = load_labeled_table(need("banking77", "test.csv"), kind="csv", label_column="category")
    assert len(single) == 3_080 and single.official_split is None
    assert single.items[0] and single.labels[0] in set(data.labels)


def test_coco_mini_text_to_image_pairs():
    data = load_coco_captions(need("coco_mini"))
    assert isinstance(data, Pairs)
    assert (data.query_modality, data.doc_modality) == ("text", "image")
    assert len(data.docs) == 159 and len(data) == 795
    assert Counter(data.official_split) == {"train2017": 400, "val2017": 395}
    assert all(Path(d).is_file() and d.endswith(".jpg") for d in data.docs)
    assert set(Counter(data.doc_of).values()) == {5}
    # A caption's document is the image its annotation names.
    ann = json.loads(need("coco_mini", "captions_train2017.json").read_text())
    files = {im["id"]: im["file_name"] for im in ann["images"]}
    first = ann["annotations"][0]
    i = data.queries.index(" ".join(first["caption"].split()))
    assert Path(data.docs[data.doc_of[i]]).name == files[first["image_id"]]


def test_coco_mini_single_json_has_no_official_split():
    data = load_coco_captions(need("coco_mini", "captions_val2017.json"))
    assert len(data.docs) == 79 and len(data) == 395 and data.official_split is None
    assert all("/images/val2017/" in d for d in data.docs)


def test_caption_clusters_label_captions_by_image():
    data = load_caption_clusters(need("coco_captions_val2017", "captions_val2017.json"))
    assert len(data) == 25_014 and len(set(data.labels)) == 5_000
    assert Counter(Counter(data.labels).values()) == {5: 4_987, 6: 12, 7: 1}


def test_att_faces_image_folder():
    data = load_image_folder(need("att_faces"))
    assert len(data) == 400 and data.modality == "image"
    assert len(set(data.labels)) == 40 and set(Counter(data.labels).values()) == {10}
    assert all(p.endswith(".pgm") for p in data.items)  # README.txt / README.upstream ignored
    assert Path(data.items[0]).parent.name == data.labels[0]


def test_caltech_image_folder():
    data = load_image_folder(need("caltech101_subset"))
    assert Counter(data.labels) == {
        "ceiling_fan": 46,
        "cup": 57,
        "dollar_bill": 52,
        "laptop": 81,
        "pizza": 52,
        "scissors": 37,
    }


def test_load_data_resolves_relative_paths_and_samples(tmp_path):
    base = need("banking77").parent
    cfg = DataConfig(format="labeled-csv", path="banking77/test.csv", label_column="category", max_items=500)
    a = load_data(cfg, base_dir=base)
    b = load_data(cfg, base_dir=base)
    assert a == b  # seeded: the same sample every time
    assert 480 <= len(a) <= 500  # labels left with one item by the sample are dropped
    assert min(Counter(a.labels).values()) >= 2
    full = load_data(
        DataConfig(format="labeled-csv", path=str(base / "banking77" / "test.csv"), label_column="category")
    )
    assert set(a.items) <= set(full.items)


def test_load_data_dispatches_every_local_format():
    base = need()
    cases = {
        DataConfig(format="clinc150", path="clinc150/data_full.json", exclude_labels=("oos",)): 22_500,
        DataConfig(format="coco-captions", path="coco_mini"): 795,
        DataConfig(format="caption-clusters", path="coco_captions_val2017/captions_val2017.json"): 25_014,
        DataConfig(format="image-folder", path="att_faces"): 400,
    }
    for cfg, n in cases.items():
        assert len(load_data(cfg, base_dir=base)) == n, cfg.format


def test_load_data_without_path():
    with pytest.raises(DataError, match="data.path"):
        load_data(DataConfig(format="labeled-csv"))


# ---------------------------------------------------------------------------------------------- tmp-file formats


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_labeled_jsonl_with_numeric_labels(tmp_path):
    f = write(
        tmp_path / "d.jsonl", '{"t": "a", "y": 1}\n\n{"t": "b", "y": 1}\n{"t": "c", "y": 2}\n{"t": "d", "y": 2}\n'
    )
    data = load_labeled_table(f, kind="jsonl", text_column="t", label_column="y")
    assert data.items == ("a", "b", "c", "d") and data.labels == ("1", "1", "2", "2")


def test_pairs_csv_stores_identical_documents_once(tmp_path):
    f = write(tmp_path / "p.csv", 'query,document\nq1,doc A\nq2,"doc B, with comma"\nq3,doc A\n')
    data = load_pairs_table(f, kind="csv")
    assert data.docs == ("doc A", "doc B, with comma") and data.doc_of == (0, 1, 0)
    assert (data.query_modality, data.doc_modality) == ("text", "text")


def test_pairs_csv_of_image_paths_is_image_to_image(tmp_path):
    faces = need("att_faces")
    for person in ("s1", "s2"):
        for k in ("1", "2"):
            shutil.copy(faces / person / f"{k}.pgm", tmp_path / f"{person}_{k}.pgm")
    write(tmp_path / "pairs" / "tll.csv", "left,right\n../s1_1.pgm,../s1_2.pgm\n../s2_1.pgm,../s2_2.pgm\n")
    data = load_pairs_table(tmp_path / "pairs" / "tll.csv", kind="csv", query_column="left", document_column="right")
    assert (data.query_modality, data.doc_modality) == ("image", "image")
    assert data.queries[0] == str((tmp_path / "s1_1.pgm").resolve())
    assert data.docs[1] == str((tmp_path / "s2_2.pgm").resolve())


def test_pairs_jsonl_text_to_image(tmp_path):
    img = need("coco_mini", "images", "val2017")
    name = sorted(p.name for p in img.iterdir())[0]
    f = write(tmp_path / "p.jsonl", json.dumps({"query": "a photo", "document": str(img / name)}) + "\n")
    data = load_pairs_table(f, kind="jsonl")
    assert (data.query_modality, data.doc_modality) == ("text", "image")


# ---------------------------------------------------------------------------------------------- errors


def raises(fn, *parts: str) -> str:
    with pytest.raises(DataError) as info:
        fn()
    message = str(info.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    assert "fix:" in message
    return message


def test_missing_file_and_folder(tmp_path):
    raises(lambda: load_clinc150(tmp_path / "nope.json"), "nope.json", "not found")
    raises(lambda: load_image_folder(tmp_path / "nofolder"), "nofolder", "not found")
    raises(lambda: load_labeled_table(tmp_path / "x.csv", kind="csv"), "x.csv", "not found")


def test_unreadable_folder(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", denied)  # we run as root in CI, where chmod 000 does not stop reads
    raises(lambda: load_image_folder(tmp_path), str(tmp_path), "Permission denied")
    monkeypatch.undo()

    def walk_denied(top, onerror=None, **kwargs):
        onerror(PermissionError(13, "Permission denied", str(top)))
        yield from ()

    monkeypatch.setattr("sweeps.data.files.os.walk", walk_denied)
    raises(lambda: load_image_folder(tmp_path), str(tmp_path / "a"), "Permission denied")


def test_malformed_json_names_line(tmp_path):
    f = write(tmp_path / "data_full.json", '{"train": [["hi", "greet"],\n  ["yo" "greet"]]}\n')
    raises(lambda: load_clinc150(f), "data_full.json", "line 2", "invalid JSON")


def test_clinc_wrong_entry_names_field(tmp_path):
    f = write(tmp_path / "c.json", json.dumps({"train": [["a", "x"], ["b"]]}))
    raises(lambda: load_clinc150(f), "c.json", "train[1]")


def test_csv_row_with_extra_field_names_line(tmp_path):
    f = write(tmp_path / "d.csv", "text,label\na,x\nb,x\nc, d,y\n")
    raises(lambda: load_labeled_table(f, kind="csv"), "d.csv", "line 4", "expected 2 fields, found 3")


def test_csv_bad_quoting_names_line(tmp_path):
    f = write(tmp_path / "d.csv", 'text,label\na,x\n"b"c,x\n')
    raises(lambda: load_labeled_table(f, kind="csv"), "d.csv", "line 3", "malformed CSV")


def test_csv_empty_value_names_line_and_column(tmp_path):
    f = write(tmp_path / "d.csv", "text,label\na,x\n,x\n")
    raises(lambda: load_labeled_table(f, kind="csv"), "d.csv", "line 3", "'text'")


def test_missing_columns_lists_existing_ones(tmp_path):
    f = write(tmp_path / "b.csv", "text,category\na,x\nb,x\n")
    message = raises(
        lambda: load_labeled_table(f, kind="csv"), "b.csv", "data.label_column", "'label'", "'text', 'category'"
    )
    assert "set data.label_column" in message
    g = write(tmp_path / "p.jsonl", '{"q": "a", "document": "b"}\n')
    raises(lambda: load_pairs_table(g, kind="jsonl"), "p.jsonl", "line 1", "'query'", "'q', 'document'")


def test_malformed_jsonl_line(tmp_path):
    f = write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": x}\n')
    raises(lambda: load_labeled_table(f, kind="jsonl"), "d.jsonl", "line 2", "invalid JSON")
    g = write(tmp_path / "e.jsonl", '["a", "x"]\n')
    raises(lambda: load_labeled_table(g, kind="jsonl"), "e.jsonl", "line 1", "JSON object")


def test_empty_dataset(tmp_path):
    f = write(tmp_path / "d.csv", "text,label\n")
    raises(lambda: load_labeled_table(f, kind="csv"), "d.csv", "no data rows")
    g = write(tmp_path / "e.csv", "")
    raises(lambda: load_labeled_table(g, kind="csv"), "e.csv", "empty")


def test_single_item_labels_are_an_error_listing_them(tmp_path):
    rows = "".join(f"t{i},L{i}\n" for i in range(7)) + "a,ok\nb,ok\n"
    f = write(tmp_path / "d.csv", "text,label\n" + rows)
    message = raises(
        lambda: load_labeled_table(f, kind="csv", singletons="error"),
        "d.csv",
        "7 label(s) have a single item",
        "'L0'",
        "'L4'",
        "...",
        "exclude_labels",
        "data.singletons",
    )
    assert "'L5'" not in message  # at most five are listed


def test_excluding_an_unknown_label(tmp_path):
    f = write(tmp_path / "d.csv", "text,label\na,x\nb,x\n")
    raises(
        lambda: load_labeled_table(f, kind="csv", exclude_labels=("oops",)), "d.csv", "data.exclude_labels", "'oops'"
    )


def test_image_folder_without_images(tmp_path):
    write(tmp_path / "faces" / "README.txt", "no images")
    write(tmp_path / "faces" / "s1" / "notes.txt", "still none")
    raises(lambda: load_image_folder(tmp_path / "faces"), "faces", "no images")


def test_missing_image_in_pairs_names_line(tmp_path):
    f = write(tmp_path / "p.csv", "query,document\ncat,a.jpg\ndog,b.jpg\n")
    raises(lambda: load_pairs_table(f, kind="csv"), "p.csv", "line 2", "'a.jpg'", "2 missing")


def test_mixed_image_and_text_column(tmp_path):
    f = write(tmp_path / "p.csv", "query,document\na,x.jpg\nb,y.png\nc,plain text\n")
    raises(lambda: load_pairs_table(f, kind="csv"), "p.csv", "line 4", "'plain text'")


def test_not_utf8(tmp_path):
    f = tmp_path / "d.csv"
    f.write_bytes(b"text,label\n\xff\xfe,x\n")
    raises(lambda: load_labeled_table(f, kind="csv"), "d.csv", "UTF-8")


def test_coco_errors(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg"}]
    f = write(
        tmp_path / "captions_val2017.json",
        json.dumps({"images": images, "annotations": [{"image_id": 1, "caption": "x"}]}),
    )
    raises(lambda: load_coco_captions(f), "captions_val2017.json", "'a.jpg'", "data.image_root")
    g = write(tmp_path / "c2.json", json.dumps({"images": images, "annotations": [{"image_id": 2, "caption": "x"}]}))
    raises(lambda: load_coco_captions(g), "c2.json", "annotations[0].image_id")
    h = write(tmp_path / "c3.json", json.dumps({"images": images}))
    raises(lambda: load_caption_clusters(h), "c3.json", "annotations")
    raises(lambda: load_coco_captions(tmp_path / "empty_dir_missing"), "not found")
    (tmp_path / "nojson").mkdir()
    raises(lambda: load_coco_captions(tmp_path / "nojson"), "captions_*.json")


def test_coco_image_root(tmp_path):
    src = need("coco_mini")
    ann = json.loads((src / "captions_val2017.json").read_text())
    ann["images"] = ann["images"][:2]
    keep = {im["id"] for im in ann["images"]}
    ann["annotations"] = [a for a in ann["annotations"] if a["image_id"] in keep]
    f = write(tmp_path / "ann" / "captions_val2017.json", json.dumps(ann))
    data = load_coco_captions(f, image_root=src / "images")  # <root>/<split>/<file_name>
    assert len(data.docs) == 2 and len(data) == len(ann["annotations"])
    data2 = load_data(
        DataConfig(format="coco-captions", path="ann/captions_val2017.json", image_root=str(src)), base_dir=tmp_path
    )
    assert data2.docs == data.docs
    assert np.all(np.asarray(data.doc_of) < 2)


# --- single-item labels (data.singletons) ---------------------------------------------------------------


def captions_with_a_misspelt_id(tmp_path: Path) -> Path:
    """Caption clusters as a CSV: three images with three captions each, one caption with a misspelt id."""
    rows = [f"caption {k} of image {i},img{i}" for i in range(3) for k in range(3)]
    rows.append("a caption whose image id has a typo,img1x")
    return write(tmp_path / "captions.csv", "text,label\n" + "\n".join(rows) + "\n")


def test_single_item_labels_index_drop_error(tmp_path, caplog):
    f = captions_with_a_misspelt_id(tmp_path)
    data = load_data(DataConfig(format="labeled-csv", path=str(f)))  # default: index
    assert len(data) == 10 and data.labels[-1] == "img1x"
    assert "1 label(s) have a single item ('img1x')" in caplog.text and "distractors" in caplog.text
    dropped = load_data(DataConfig(format="labeled-csv", path=str(f), singletons="drop"))
    assert len(dropped) == 9 and "img1x" not in dropped.labels
    raises(
        lambda: load_data(DataConfig(format="labeled-csv", path=str(f), singletons="error")),
        "captions.csv",
        "data.label_column",
        "1 label(s) have a single item ('img1x')",
        "data.singletons",
    )


def test_max_items_keeps_single_item_labels_as_distractors(tmp_path):
    f = captions_with_a_misspelt_id(tmp_path)
    data = load_data(DataConfig(format="labeled-csv", path=str(f), max_items=7))
    # The seed-0 sample of 7 draws one caption of img2: a label the sample leaves alone is dropped (it
    # could only be an unanswerable query); img1x had one item before sampling and stays a distractor.
    assert data.labels == ("img0", "img0", "img0", "img1", "img1", "img1", "img1x")


# --- CSV delimiters ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("delimiter", "name"), [(";", "semicolon"), ("\t", "tab"), ("|", "pipe")])
def test_csv_delimiter_is_detected_from_the_header(tmp_path, delimiter, name):
    rows = [f"text{delimiter}label"] + [
        f"request {j}, about {i}{delimiter}topic{i}" for i in range(2) for j in range(2)
    ]
    f = write(tmp_path / "items.csv", "\n".join(rows) + "\n")
    data = load_labeled_table(f, kind="csv")
    assert data.items == ("request 0, about 0", "request 1, about 0", "request 0, about 1", "request 1, about 1")
    assert data.labels == ("topic0", "topic0", "topic1", "topic1")
    # A wrong column name: the message shows the real columns and says how the file was read.
    raises(
        lambda: load_labeled_table(f, kind="csv", label_column="intent"),
        "no column 'intent'; the file has columns 'text', 'label'",
        f"read as {name}-separated, detected",
        "data.delimiter",
    )


def test_csv_delimiter_can_be_set(tmp_path):
    f = write(tmp_path / "items.csv", "text;label\na;x\nb;x\nc;y\nd;y\n")  # two labels: one cannot be measured
    data = load_data(DataConfig(format="labeled-csv", path=str(f), delimiter=";"))
    assert data.items == ("a", "b", "c", "d") and data.labels == ("x", "x", "y", "y")
    raises(
        lambda: load_data(DataConfig(format="labeled-csv", path=str(f), delimiter=",")),
        "no column 'text'; the file has columns 'text;label'",
        "read as comma-separated, from data.delimiter",
    )
    pairs = write(tmp_path / "pairs.csv", "query|document\nq1|d1\nq2|d2\n")
    assert load_pairs_table(pairs, kind="csv").queries == ("q1", "q2")
