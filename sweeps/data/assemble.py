"""Raw rows -> the two shapes: label exclusion, the checks every loader shares, image-path columns, sampling.

Every loader (local files and hub) ends here, so the rules are the same whatever the source:
an excluded label must exist, an empty result is an error, and in labeled data a label with a single item
(an item's relevant results are the *other* items of its label, so it can never be a positive for anything)
is handled as ``data.singletons`` says, with the count printed, never silently: ``index`` (the default) keeps
it as a distractor in the evaluation index (``split.py`` keeps it out of the training pool, and it is never a
query), ``drop`` removes it, ``error`` refuses the data.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from sweeps.data.items import LabeledItems, Modality, Pairs
from sweeps.errors import DataError

log = logging.getLogger(__name__)

Singletons = Literal["error", "drop", "index"]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pbm", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)


def is_image_path(value: str) -> bool:
    """True when ``value`` names an image file by its extension (decoding happens later, in the model)."""
    return Path(value).suffix.lower() in IMAGE_EXTENSIONS


def column_modality(values: Sequence[str], lines: Sequence[int], *, where: str | Path, column: str) -> Modality:
    """ "image" when every value of a column is an image path, "text" when (nearly) none is.

    A column where most values are image paths but some are not is an error rather than a guess: mixing
    texts and images in one tower would fail far from the cause.
    """
    flags = [is_image_path(v) for v in values]
    n_images = sum(flags)
    if n_images == len(values) and values:
        return "image"
    if n_images * 2 > len(values):
        bad = flags.index(False)
        raise DataError(
            f"line {lines[bad]}: column {column!r} holds image paths, but {values[bad]!r} is not one",
            where=where,
            fix=f"use image paths ending in one of {', '.join(sorted(IMAGE_EXTENSIONS))} throughout the column",
        )
    return "text"


def resolve_images(
    values: Sequence[str], lines: Sequence[int], *, base: Path, where: str | Path, column: str
) -> list[str]:
    """Image paths relative to ``base`` (the data file's folder) made absolute; every file must exist."""
    out, missing = [], []
    for value, line in zip(values, lines, strict=True):
        path = Path(value).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            missing.append((line, value))
        out.append(str(path.resolve()))
    if missing:
        line, value = missing[0]
        raise DataError(
            f"line {line}: column {column!r}: image file {value!r} not found under {base} ({len(missing)} missing in all)",
            where=where,
            fix="image paths are relative to the data file's folder; fix the paths or move the images there",
        )
    return out


def usable_index(
    labels: Sequence[str],
    *,
    source: str,
    exclude_labels: Sequence[str] = (),
    singletons: Singletons = "index",
    label_field: str = "data.label_column",
    report: bool = True,
) -> list[int]:
    """Positions of the items to keep: excluded labels dropped, single-item labels as ``singletons`` says.

    Args:
        report: print the count of single-item labels (a warning); off where a loader checks twice.
    """
    present = set(labels)
    unknown = [label for label in exclude_labels if label not in present]
    if unknown:
        raise DataError(
            f"excluded label(s) {', '.join(map(repr, unknown))} do not occur in the data",
            where=source,
            field="data.exclude_labels",
            fix=f"check the spelling; labels look like {', '.join(map(repr, sorted(present)[:5]))}",
        )
    drop = set(exclude_labels)
    keep = [i for i, label in enumerate(labels) if label not in drop]
    if not keep:
        raise DataError(
            "the dataset is empty" + (" after excluding labels" if drop else ""),
            where=source,
            fix="point data.path at a file with items",
        )
    counts = Counter(labels[i] for i in keep)
    if len(counts) < 2:  # every item is relevant to every query: each metric is 1.0 whatever the model
        only = next(iter(counts))
        raise DataError(
            f"every item has the label {only!r}: retrieval cannot be measured with one label (every result is "
            "relevant to every query, so every metric is 1.0 whatever the model)",
            where=source,
            field=label_field,
            fix=f"check {label_field} names the column of labels; the data needs at least two labels"
            + (" (data.exclude_labels left one)" if drop else ""),
        )
    singles = sorted(label for label, c in counts.items() if c < 2)
    if not singles:
        return keep
    shown = ", ".join(map(repr, singles[:5])) + (" ..." if len(singles) > 5 else "")
    if singletons == "error":
        raise DataError(
            f"{len(singles)} label(s) have a single item ({shown}); relevance needs at least two items per label",
            where=source,
            field=label_field,
            fix="set data.singletons: index (keep them as distractors in the evaluation index) or drop, "
            "or merge their labels into others, or list the labels in data.exclude_labels",
        )
    if report:
        fate = (
            "dropped"
            if singletons == "drop"
            else "kept in the evaluation index as distractors (never queries, never trained on)"
        )
        log.warning(
            "%s: %d label(s) have a single item (%s): %s; data.singletons: %s (error | drop | index)",
            source,
            len(singles),
            shown,
            fate,
            singletons,
        )
    if singletons == "drop":
        keep = [i for i in keep if counts[labels[i]] > 1]
        if not keep:
            raise DataError(
                "the dataset is empty after dropping single-item labels",
                where=source,
                field=label_field,
                fix="check data.label_column: every label has one item",
            )
    return keep


def make_labeled(
    items: Sequence[str],
    labels: Sequence[str],
    *,
    modality: Modality,
    source: str,
    official_split: Sequence[str] | None = None,
    exclude_labels: Sequence[str] = (),
    label_field: str = "data.label_column",
    singletons: Singletons = "index",
    report: bool = True,
) -> LabeledItems:
    """Drop excluded labels, then handle single-item labels (``usable_index``): the items usable for retrieval."""
    keep = usable_index(
        labels,
        source=source,
        exclude_labels=exclude_labels,
        singletons=singletons,
        label_field=label_field,
        report=report,
    )
    return LabeledItems(
        items=tuple(items[i] for i in keep),
        labels=tuple(labels[i] for i in keep),
        modality=modality,
        source=source,
        official_split=None if official_split is None else tuple(official_split[i] for i in keep),
    )


def make_pairs(
    queries: Sequence[str],
    doc_keys: Sequence[str],
    *,
    query_modality: Modality,
    doc_modality: Modality,
    source: str,
    official_split: Sequence[str] | None = None,
) -> Pairs:
    """Pairs with identical document strings stored once (first-appearance order)."""
    if not queries:
        raise DataError("the dataset is empty (no pairs)", where=source, fix="point data.path at a file with pairs")
    index: dict[str, int] = {}
    doc_of = tuple(index.setdefault(key, len(index)) for key in doc_keys)
    return Pairs(
        queries=tuple(queries),
        docs=tuple(index),
        doc_of=doc_of,
        query_modality=query_modality,
        doc_modality=doc_modality,
        source=source,
        official_split=None if official_split is None else tuple(official_split),
    )


def sample_index(n: int, max_items: int | None, *, labels: Sequence[str] | None = None, seed: int = 0) -> np.ndarray:
    """Sorted positions of a seeded sample of ``max_items`` of ``n`` items (all when ``max_items`` is None or >= n).

    With ``labels``, labels the sample leaves with a single item are dropped too (they could only be
    queries without an answer), so the result may hold slightly fewer than ``max_items``; a label that had
    one item before sampling (``data.singletons: index``) stays a distractor.
    """
    if max_items is None or max_items >= n:
        return np.arange(n, dtype=np.int64)
    if max_items < 1:
        raise DataError(
            f"must be >= 1, got {max_items}", field="data.max_items", fix="set a positive number, or null for all items"
        )
    keep = np.sort(np.random.default_rng(seed).choice(n, size=max_items, replace=False))
    if labels is None:
        return keep
    counts = Counter(labels[i] for i in keep)
    before = Counter(labels)
    return np.array([i for i in keep if counts[labels[i]] > 1 or before[labels[i]] == 1], dtype=np.int64)
