"""Loaders for local files and folders; each returns ``LabeledItems`` or ``Pairs``.

Formats (``data.format``):

- ``clinc150``: the CLINC150 ``data_full.json`` (keys train/val/test/oos_*; lists of ``[text, intent]``).
  The official split of every item is kept; out-of-scope items (label ``oos``) are read unless
  ``data.exclude_labels`` lists ``oos``.
- ``labeled-csv`` / ``labeled-jsonl``: one item per row, ``data.text_column`` + ``data.label_column``.
- ``pairs-csv`` / ``pairs-jsonl``: one (query, document) pair per row, ``data.query_column`` +
  ``data.document_column``; identical document strings are one document.
- ``coco-captions``: COCO captions JSON + images -> text-to-image pairs (query = caption, document = image).
- ``caption-clusters``: COCO captions JSON without images -> captions labeled by their image id.
- ``image-folder``: ``<folder>/<label>/<image files>``.

Tables (CSV/JSONL): ``data.path`` may be one file or a folder of files with that extension; in a folder,
each file's name (``train.csv`` -> ``train``) becomes the official split of its rows, so BANKING77's
``train.csv``/``test.csv`` can be used with ``split.method: official``. A column whose values are all image
paths (by extension) is an image column; the paths are relative to the file's folder. That is how
image-to-image pairs (Totally-Looks-Like) and image/label tables are read.

Every problem a user can cause is a ``DataError`` that names the file, the line or field, and the fix.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from sweeps.data.assemble import (
    IMAGE_EXTENSIONS,
    Singletons,
    column_modality,
    is_image_path,
    make_labeled,
    make_pairs,
    resolve_images,
)
from sweeps.data.items import LabeledItems, Pairs
from sweeps.errors import DataError

TableKind = Literal["csv", "jsonl"]


# ---------------------------------------------------------------------------------------------- tables


def load_labeled_table(
    path: str | Path,
    *,
    kind: TableKind,
    text_column: str = "text",
    label_column: str = "label",
    exclude_labels: Sequence[str] = (),
    singletons: Singletons = "index",
    delimiter: str = "",
) -> LabeledItems:
    """Labeled items from a CSV/JSONL file (or a folder of them: one official split per file)."""
    path = Path(path)
    items: list[str] = []
    labels: list[str] = []
    splits: list[str] = []
    modality = None
    for file, split in _table_files(path, kind):
        (texts, labs), lines = _read_table(
            file, kind, {"data.text_column": text_column, "data.label_column": label_column}, delimiter=delimiter
        )
        file_modality = column_modality(texts, lines, where=file, column=text_column)
        if file_modality == "image":
            texts = resolve_images(texts, lines, base=file.parent, where=file, column=text_column)
        if modality is not None and file_modality != modality:
            raise DataError(
                f"column {text_column!r} holds {file_modality}s here but {modality}s in the other files",
                where=file,
                fix="keep texts and image paths in separate datasets",
            )
        modality = file_modality
        items += texts
        labels += labs
        splits += [split] * len(texts)
    return make_labeled(
        items,
        labels,
        modality=modality or "text",
        source=str(path),
        official_split=splits if path.is_dir() else None,
        exclude_labels=exclude_labels,
        singletons=singletons,
    )


def load_pairs_table(
    path: str | Path,
    *,
    kind: TableKind,
    query_column: str = "query",
    document_column: str = "document",
    delimiter: str = "",
) -> Pairs:
    """(query, document) pairs from a CSV/JSONL file (or a folder of them: one official split per file).

    A column whose values are image paths (relative to the file) is read as images, so the same format
    serves text-to-text, text-to-image and image-to-image pairs.
    """
    path = Path(path)
    queries: list[str] = []
    docs: list[str] = []
    splits: list[str] = []
    modalities = None
    for file, split in _table_files(path, kind):
        (qs, ds), lines = _read_table(
            file,
            kind,
            {"data.query_column": query_column, "data.document_column": document_column},
            delimiter=delimiter,
        )
        q_mod = column_modality(qs, lines, where=file, column=query_column)
        d_mod = column_modality(ds, lines, where=file, column=document_column)
        if q_mod == "image":
            qs = resolve_images(qs, lines, base=file.parent, where=file, column=query_column)
        if d_mod == "image":
            ds = resolve_images(ds, lines, base=file.parent, where=file, column=document_column)
        if modalities is not None and (q_mod, d_mod) != modalities:
            raise DataError(
                "the files disagree on which columns hold images", where=file, fix="use one layout for all files"
            )
        modalities = (q_mod, d_mod)
        queries += qs
        docs += ds
        splits += [split] * len(qs)
    q_mod, d_mod = modalities or ("text", "text")
    return make_pairs(
        queries,
        docs,
        query_modality=q_mod,
        doc_modality=d_mod,
        source=str(path),
        official_split=splits if path.is_dir() else None,
    )


def _table_files(path: Path, kind: TableKind) -> list[tuple[Path, str]]:
    """(file, official split name) for a file, or for every ``*.<kind>`` file of a folder."""
    _require(path)
    if not path.is_dir():
        return [(path, path.stem)]
    try:
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == f".{kind}" and p.is_file())
    except PermissionError:
        raise DataError("cannot read the folder (permission denied)", where=path, fix="make it readable") from None
    if not files:
        raise DataError(
            f"the folder holds no .{kind} files",
            where=path,
            fix=f"point data.path at a .{kind} file or a folder of them",
        )
    return [(f, f.stem) for f in files]


def _read_table(
    file: Path, kind: TableKind, columns: dict[str, str], *, delimiter: str = ""
) -> tuple[list[list[str]], list[int]]:
    """The values of ``columns`` ({config field: column name}) per row, and each row's line number."""
    text = _read_text(file)
    rows = _csv_rows(file, text, columns, delimiter=delimiter) if kind == "csv" else _jsonl_rows(file, text, columns)
    if not rows:
        raise DataError("the file has no data rows", where=file, fix="add rows, or point data.path at another file")
    lines = [line for line, _ in rows]
    values = [[row[i] for _, row in rows] for i in range(len(columns))]
    return values, lines


DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def sniff_delimiter(text: str, columns: Sequence[str]) -> str:
    """The delimiter among , ; tab | whose header row holds every one of ``columns``.

    When none does (a wrong column name), ``csv.Sniffer`` guesses from the first lines, so the message about
    the missing column shows the file's real columns; a comma when even that fails.
    """
    lines = text.splitlines()
    header = next((line for line in lines if line.strip()), "")
    for delimiter in DELIMITERS:
        names = [h.strip() for h in next(csv.reader([header], delimiter=delimiter), [])]
        if all(c in names for c in columns):
            return delimiter
    try:
        return csv.Sniffer().sniff("\n".join(lines[:20]), delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        return ","


def _describe(delimiter: str, *, detected: bool) -> str:
    name = DELIMITERS.get(delimiter, repr(delimiter))
    return f"read as {name}-separated, " + ("detected" if detected else "from data.delimiter")


def _csv_rows(file: Path, text: str, columns: dict[str, str], *, delimiter: str = "") -> list[tuple[int, list[str]]]:
    detected = not delimiter
    delimiter = delimiter or sniff_delimiter(text, list(columns.values()))
    reader = csv.reader(text.splitlines(keepends=True), strict=True, delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            raise DataError("the file is empty (no header row)", where=file, fix="add a header row naming the columns")
        header = [h.strip() for h in header]
        positions = []
        for field, name in columns.items():
            if name not in header:
                raise DataError(
                    f"no column {name!r}; the file has columns {', '.join(map(repr, header))} "
                    f"({_describe(delimiter, detected=detected)})",
                    where=file,
                    field=field,
                    fix=f"set {field} to one of the file's columns, or set data.delimiter if the columns are "
                    "separated by another character",
                )
            positions.append(header.index(name))
        rows = []
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if len(row) != len(header):
                raise DataError(
                    f"line {reader.line_num}: expected {len(header)} fields, found {len(row)} "
                    f"({_describe(delimiter, detected=detected)})",
                    where=file,
                    fix=f'quote fields that contain the delimiter, e.g. "hello{delimiter} world"',
                )
            values = [row[p].strip() for p in positions]
            for (_field, name), value in zip(columns.items(), values, strict=True):
                if not value:
                    raise DataError(
                        f"line {reader.line_num}: column {name!r} is empty",
                        where=file,
                        fix="fill in the value or delete the row",
                    )
            rows.append((reader.line_num, values))
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):  # csv's own cap on one field (128 KiB by default)
            raise DataError(
                f"line {reader.line_num}: a field is longer than {csv.field_size_limit():,} characters",
                where=file,
                fix="shorten the text (the model reads only its first model.max_length tokens); if it is not meant "
                'to be that long, a quote (") opened before it is not closed',
            ) from None
        raise DataError(
            f"line {reader.line_num}: malformed CSV: {exc}", where=file, fix="check the quoting on that line"
        ) from None
    return rows


def _jsonl_rows(file: Path, text: str, columns: dict[str, str]) -> list[tuple[int, list[str]]]:
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"line {line_no}: invalid JSON at column {exc.colno}: {exc.msg}",
                where=file,
                fix="write one JSON object per line (JSON Lines)",
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"line {line_no}: expected a JSON object, got {type(record).__name__}",
                where=file,
                fix="write one JSON object per line",
            )
        values = []
        for field, name in columns.items():
            if name not in record:
                raise DataError(
                    f"line {line_no}: no key {name!r}; the line has keys {', '.join(map(repr, record))}",
                    where=file,
                    field=field,
                    fix=f"set {field} to one of the keys, or add the key to every line",
                )
            value = record[name]
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise DataError(
                    f"line {line_no}: key {name!r} must be a string, got {json.dumps(value)[:60]}",
                    where=file,
                    fix="write the value as a string",
                )
            value = str(value).strip()
            if not value:
                raise DataError(
                    f"line {line_no}: key {name!r} is empty", where=file, fix="fill in the value or delete the line"
                )
            values.append(value)
        rows.append((line_no, values))
    return rows


# ---------------------------------------------------------------------------------------------- CLINC150


def load_clinc150(
    path: str | Path, *, exclude_labels: Sequence[str] = (), singletons: Singletons = "index"
) -> LabeledItems:
    """CLINC150 ``data_full.json``: in-scope intents plus ``oos`` (unless excluded), with the official split.

    ``oos_train``/``oos_val``/``oos_test`` items get the official split ``train``/``val``/``test``.
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict):
        raise DataError(
            f"expected a JSON object with keys train/val/test, got {type(data).__name__}",
            where=path,
            fix="use CLINC150's data_full.json, or a labeled-csv/jsonl file",
        )
    splits_found = [k for k in data if isinstance(k, str) and re.fullmatch(r"(oos_)?(train|val|test)", k)]
    if not splits_found:
        raise DataError(
            f"no train/val/test keys; the file has keys {', '.join(map(repr, data))}",
            where=path,
            fix="use CLINC150's data_full.json (or data_small/data_imbalanced.json), or a labeled-csv/jsonl file",
        )
    items, labels, splits = [], [], []
    for key in splits_found:
        entries = data[key]
        if not isinstance(entries, list):
            raise DataError(
                f"expected a list of [text, intent], got {type(entries).__name__}",
                where=path,
                field=key,
                fix="repair the file",
            )
        split = key.removeprefix("oos_")
        for i, entry in enumerate(entries):
            if not (
                isinstance(entry, list) and len(entry) == 2 and all(isinstance(v, str) and v.strip() for v in entry)
            ):
                raise DataError(
                    f"expected [text, intent], got {json.dumps(entry)[:80]}",
                    where=path,
                    field=f"{key}[{i}]",
                    fix="repair or delete the entry",
                )
            items.append(entry[0].strip())
            labels.append(entry[1])
            splits.append(split)
    return make_labeled(
        items,
        labels,
        modality="text",
        source=str(path),
        official_split=splits,
        exclude_labels=exclude_labels,
        label_field="intent",
        singletons=singletons,
    )


# ---------------------------------------------------------------------------------------------- COCO captions


def load_coco_captions(path: str | Path, *, image_root: str | Path | None = None) -> Pairs:
    """Text-to-image pairs from COCO captions JSON: query = caption, document = image path.

    ``path`` is one ``captions_*.json`` or a folder holding several; with a folder, the official split of a
    caption is its file's name without ``captions_`` (``captions_val2017.json`` -> ``val2017``). Images are
    looked up under ``image_root`` (default: the JSON's folder) as ``images/<split>/<file_name>``,
    ``<split>/<file_name>``, ``images/<file_name>`` or ``<file_name>``, whichever holds the first image.
    """
    path = Path(path)
    queries, docs, splits = [], [], []
    for file in _caption_files(path):
        images, annotations = _read_coco(file, need_images=True)
        stem = file.stem.removeprefix("captions_")
        folder = _image_folder(
            file, images, annotations, stem=stem, image_root=Path(image_root) if image_root else file.parent
        )
        captioned = {image_id for image_id, _ in annotations}  # images without captions are not documents
        paths = {image_id: str((folder / images[image_id]).resolve()) for image_id in captioned}
        missing = sorted(images[i] for i in captioned if not (folder / images[i]).is_file())
        if missing:
            raise DataError(
                f"image file {missing[0]!r} not found in {folder} ({len(missing)} missing in all)",
                where=file,
                fix="download the missing images, or set data.image_root to the folder that holds them",
            )
        split = stem
        for image_id, caption in annotations:
            queries.append(caption)
            docs.append(paths[image_id])
            splits.append(split)
    return make_pairs(
        queries,
        docs,
        query_modality="text",
        doc_modality="image",
        source=str(path),
        official_split=splits if path.is_dir() else None,
    )


def load_caption_clusters(
    path: str | Path, *, exclude_labels: Sequence[str] = (), singletons: Singletons = "index"
) -> LabeledItems:
    """Captions labeled by their image id (relevant = the other captions of the same image); no images needed."""
    path = Path(path)
    items, labels, splits = [], [], []
    for file in _caption_files(path):
        _, annotations = _read_coco(file, need_images=False)
        split = file.stem.removeprefix("captions_")
        for image_id, caption in annotations:
            items.append(caption)
            labels.append(str(image_id))
            splits.append(split)
    return make_labeled(
        items,
        labels,
        modality="text",
        source=str(path),
        official_split=splits if path.is_dir() else None,
        exclude_labels=exclude_labels,
        label_field="annotations[].image_id",
        singletons=singletons,
    )


def _caption_files(path: Path) -> list[Path]:
    _require(path)
    if not path.is_dir():
        return [path]
    try:
        files = sorted(path.glob("captions_*.json"))
    except PermissionError:
        raise DataError("cannot read the folder (permission denied)", where=path, fix="make it readable") from None
    if not files:
        raise DataError(
            "the folder holds no captions_*.json files",
            where=path,
            fix="point data.path at a COCO captions JSON file or its folder",
        )
    return files


def _read_coco(file: Path, *, need_images: bool) -> tuple[dict[Any, str], list[tuple[Any, str]]]:
    """({image id: file name}, [(image id, caption)]) from a COCO captions JSON, checked."""
    data = _read_json(file)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataError(
            "not a COCO captions file: no 'annotations' list", where=file, fix="use a COCO captions_*.json file"
        )
    images: dict[Any, str] = {}
    if need_images:
        if not isinstance(data.get("images"), list):
            raise DataError(
                "not a COCO captions file: no 'images' list",
                where=file,
                field="images",
                fix="use a COCO captions_*.json file",
            )
        for i, image in enumerate(data["images"]):
            if not (isinstance(image, dict) and "id" in image and isinstance(image.get("file_name"), str)):
                raise DataError(
                    "expected an object with 'id' and 'file_name'",
                    where=file,
                    field=f"images[{i}]",
                    fix="repair or delete the entry",
                )
            images[image["id"]] = image["file_name"]
    annotations = []
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise DataError(
                "expected an object with 'image_id' and 'caption'",
                where=file,
                field=f"annotations[{i}]",
                fix="fix or delete the annotation",
            )
        caption = ann.get("caption")
        if not isinstance(caption, str) or not caption.strip():
            raise DataError(
                "the caption is missing or empty",
                where=file,
                field=f"annotations[{i}].caption",
                fix="fix or delete the annotation",
            )
        if need_images and ann["image_id"] not in images:
            raise DataError(
                f"image_id {ann['image_id']!r} is not listed in 'images'",
                where=file,
                field=f"annotations[{i}].image_id",
                fix="add the image to 'images' or delete the annotation",
            )
        annotations.append((ann["image_id"], " ".join(caption.split())))
    return images, annotations


def _image_folder(
    file: Path, images: dict[Any, str], annotations: list[tuple[Any, str]], *, stem: str, image_root: Path
) -> Path:
    """The folder that holds this JSON's images (COCO layouts differ between downloads)."""
    if not annotations:
        return image_root
    first = images[annotations[0][0]]
    candidates = [image_root / "images" / stem, image_root / stem, image_root / "images", image_root]
    for folder in candidates:
        if (folder / first).is_file():
            return folder
    raise DataError(
        f"image file {first!r} not found in any of {', '.join(str(c) for c in candidates)}",
        where=file,
        field="data.image_root",
        fix="set data.image_root to the folder that holds the images (or its images/<split> parent)",
    )


# ---------------------------------------------------------------------------------------------- image folders


def load_image_folder(
    path: str | Path, *, exclude_labels: Sequence[str] = (), singletons: Singletons = "index"
) -> LabeledItems:
    """``<path>/<label>/**/<image>``: one label per subfolder; files that are not images (README.txt) are ignored."""
    path = Path(path)
    _require(path)
    if not path.is_dir():
        raise DataError(
            "expected a folder with one subfolder per label", where=path, fix="point data.path at the folder"
        )
    items, labels = [], []
    try:
        for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for root, dirs, files in os.walk(folder, onerror=_raise):  # else unreadable folders are skipped silently
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # deterministic order
                for name in sorted(files):
                    if is_image_path(name) and not name.startswith("."):
                        items.append(str((Path(root) / name).resolve()))
                        labels.append(folder.name)
    except OSError as exc:
        raise DataError(
            f"cannot read {exc.filename}: {exc.strerror or exc}", where=path, fix="make the folder readable"
        ) from None
    if not items:
        raise DataError(
            "found no images in label subfolders",
            where=path,
            fix=f"put images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in one subfolder per label: <folder>/<label>/<image>",
        )
    return make_labeled(
        items,
        labels,
        modality="image",
        source=str(path),
        exclude_labels=exclude_labels,
        label_field="subfolder",
        singletons=singletons,
    )


# ---------------------------------------------------------------------------------------------- helpers


def _raise(exc: OSError) -> None:
    raise exc


def _require(path: Path) -> None:
    if not path.exists():
        raise DataError(
            "not found",
            where=path,
            field="data.path",
            fix="check data.path (relative paths are relative to the config file)",
        )


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8-sig")  # -sig: tolerate the BOM that spreadsheet exports add
    except IsADirectoryError:
        raise DataError(
            "is a folder, expected a file", where=file, field="data.path", fix="point data.path at the file"
        ) from None
    except FileNotFoundError:
        raise DataError(
            "not found",
            where=file,
            field="data.path",
            fix="check data.path (relative paths are relative to the config file)",
        ) from None
    except PermissionError:
        raise DataError("cannot read the file (permission denied)", where=file, fix="make it readable") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text (byte {exc.start})", where=file, fix="save the file as UTF-8") from None


def _read_json(file: Path) -> Any:
    text = _read_text(file)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            where=file,
            fix="repair the file (it may be truncated)",
        ) from None
