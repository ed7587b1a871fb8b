"""Loaders for the named file formats; each returns ``LabeledItems`` or ``Pairs``.

Formats (``data.format``):

- ``clinc150``: the CLINC150 ``data_full.json`` (keys train/val/test/oos_*; lists of ``[text, intent]``).
  The official split of every item is kept; out-of-scope items (label ``oos``) are read unless
  ``data.exclude_labels`` lists ``oos``.
- ``coco-captions``: COCO captions JSON + images -> text-to-image pairs (query = caption, document = image).
- ``caption-clusters``: COCO captions JSON without images -> captions labeled by their image id.
- ``image-folder``: ``<folder>/<label>/<image files>``.

CSV and JSONL tables are ``sweeps/data/tables.py``. Every problem a user can cause is a ``DataError`` that
names the file, the line or field, and the fix.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sweeps.data.assemble import (
    IMAGE_EXTENSIONS,
    Singletons,
    is_image_path,
    make_labeled,
    make_pairs,
)
from sweeps.data.items import LabeledItems, Pairs
from sweeps.data.read import read_json, require_path, reraise
from sweeps.errors import DataError

# ---------------------------------------------------------------------------------------------- CLINC150


def load_clinc150(
    path: str | Path, *, exclude_labels: Sequence[str] = (), singletons: Singletons = "index"
) -> LabeledItems:
    """CLINC150 ``data_full.json``: in-scope intents plus ``oos`` (unless excluded), with the official split.

    ``oos_train``/``oos_val``/``oos_test`` items get the official split ``train``/``val``/``test``.
    """
    path = Path(path)
    data = read_json(path)
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
    require_path(path)
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
    data = read_json(file)
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
    require_path(path)
    if not path.is_dir():
        raise DataError(
            "expected a folder with one subfolder per label", where=path, fix="point data.path at the folder"
        )
    items, labels = [], []
    try:
        for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for root, dirs, files in os.walk(folder, onerror=reraise):  # else unreadable folders are skipped silently
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
