"""Hugging Face hub datasets by id (``data.format: hub``), through ``datasets.load_dataset``.

The loader reads ``data.hub_split`` (and ``data.hub_eval_split`` when set: its rows get that split name as
their official split, for ``split.method: official``) and maps columns by ``data.structure``:

- ``labeled``: ``data.text_column`` (or, when the dataset has no such column, ``data.image_column``) +
  ``data.label_column``. Class-label ids become their names, so ``exclude_labels: [oos]`` works.
- ``pairs``: ``data.query_column`` + ``data.document_column``; either may be an image column. A query
  column may hold a list of strings (several captions per image: each is a query of that row's
  document), and ``data.query_column`` may name several columns separated by commas
  (``caption_0,caption_1,...``). Identical text documents are one document; every image row is one.

Images arrive as PIL images; each is written once as PNG to
``<cache>/images/<hub id>[/<hub config>]/<split>/<column>/<row>.png`` (the column keeps two image columns
of one row apart) where ``<cache>`` is ``$FINETUNING_BUDGET_CACHE``
or ``~/.cache/finetuning-budget``, so the rest of the pipeline sees image paths. A cached file is reused
(delete the folder after the dataset changes upstream). ``data.max_items`` samples rows before any image is
written, so a 5,000-item sample of CelebA writes 5,000 files, not 200,000.

Only the splits a sweep reads are downloaded when the repository lists its files per split (the parquet
layout of every Jina-study dataset): ``datasets.load_dataset_builder`` resolves the config's files per split (no
data download), and ``load_dataset`` gets just those as ``data_files``; their size (from the hub's file
metadata) is logged before the download, as a warning above ``LARGE_DOWNLOAD_BYTES``. Otherwise (no
per-split files) the whole dataset is loaded as before.

An id is checked with ``huggingface_hub``'s own parser before anything is fetched (a bare ``clinc_oos`` is
refused there, as the hub refuses it); a machine whose DNS cannot resolve the hub fails at once
(``sweeps/dns_check.py``) instead of after ~30 s of retries, unless ``HF_HUB_OFFLINE=1`` asks for the cache.

The Jina study's seven datasets (ids, configs, columns, licences, download sizes, and the offline formats
that read Clinc150 and COCO from their official files): docs/datasets.md.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sweeps.config import KNOWN_HUB_IDS, DataConfig
from sweeps.data.assemble import make_labeled, make_pairs, sample_index, usable_index
from sweeps.data.items import LabeledItems, Modality, Pairs, RetrievalData
from sweeps.dns_check import unreachable_reason
from sweeps.errors import DataError

log = logging.getLogger(__name__)

CACHE_ENV = "FINETUNING_BUDGET_CACHE"
LARGE_DOWNLOAD_BYTES = 1 << 30  # above this, the size of a download is a warning, not an info line


def cache_root() -> Path:
    """``$FINETUNING_BUDGET_CACHE`` or ``~/.cache/finetuning-budget``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "finetuning-budget").expanduser()


def load_hub(cfg: DataConfig) -> RetrievalData:
    """Load ``cfg.hub_id`` and map its columns to ``LabeledItems`` or ``Pairs`` (see the module docstring)."""
    if not cfg.hub_id:
        raise DataError(
            "data.format hub needs a dataset id", field="data.hub_id", fix="set data.hub_id, e.g. clinc/clinc_oos"
        )
    local = Path(cfg.hub_id).expanduser().is_dir()  # load_dataset also reads a local copy of a repository
    if not local:
        check_hub_id(cfg.hub_id)
        offline = unreachable_reason()
        if offline:
            raise DataError(
                f"cannot load hub dataset {cfg.hub_id!r}: no network ({offline})",
                field="data.hub_id",
                fix="connect to the network (or set HF_ENDPOINT to a reachable mirror); if the dataset is already "
                "in the datasets cache, set HF_HUB_OFFLINE=1 to read it from there; or use a local format such as "
                "labeled-csv (docs/datasets.md)",
            )
    splits = [cfg.hub_split] + (
        [cfg.hub_eval_split] if cfg.hub_eval_split and cfg.hub_eval_split != cfg.hub_split else []
    )
    tables = {split: _load_split(cfg, split) for split in splits}
    if cfg.structure == "labeled":
        return _labeled(cfg, tables)
    return _pairs(cfg, tables)


def _source(cfg: DataConfig) -> str:
    return f"{cfg.hub_id} ({cfg.hub_config})" if cfg.hub_config else cfg.hub_id


def check_hub_id(hub_id: str) -> None:
    """Refuse an id the hub cannot resolve, with ``huggingface_hub``'s own parser (no network).

    The parser is the one ``datasets`` goes through for ``hf://datasets/<id>`` paths; a single-segment id
    (``clinc_oos``) fails there, so a rename of this kind fails here and in the tests, not in a sweep.
    """
    from huggingface_hub.utils import validate_repo_id

    try:
        from huggingface_hub.utils import parse_hf_uri
    except ImportError:  # huggingface_hub < 2: the namespace the hub now requires, checked here

        def parse_hf_uri(uri: str) -> None:
            if "/" not in uri.removeprefix("hf://datasets/"):
                raise ValueError(f"Repository id must be 'namespace/name', got {uri.removeprefix('hf://datasets/')!r}")

    try:
        parse_hf_uri(f"hf://datasets/{hub_id}")
        validate_repo_id(hub_id)  # characters, length, and no third segment (a/b/c parses as a path in a/b)
    except ValueError as exc:  # HfUriError and HFValidationError are ValueErrors
        known = KNOWN_HUB_IDS.get(hub_id.lower())
        raise DataError(
            f"{hub_id!r} is not a valid hub dataset id (malformed, not a network problem): {_first_line(exc)}",
            field="data.hub_id",
            fix=f"use {known!r}" if known else "copy the 'namespace/name' id from the dataset's page on huggingface.co",
        ) from None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def split_files(cfg: DataConfig, split: str) -> tuple[list[str] | None, int | None]:
    """(the data files of ``split`` alone, their bytes) when the repository lists files per split, else (None, None).

    ``load_dataset_builder`` reads only the repository's metadata (README, file list), no data. The size is
    None when the file system cannot say.
    """
    import datasets

    try:
        builder = datasets.load_dataset_builder(cfg.hub_id, cfg.hub_config or None)
    except Exception:  # noqa: BLE001 - the load itself reports the problem, with the classified message
        return None, None
    data_files = getattr(builder.config, "data_files", None) or {}
    files = [str(f) for f in data_files.get(split, [])]
    if not files:
        return None, None  # no per-split files (or no such split: load_dataset names the splits there are)
    return files, remote_size(files)


def remote_size(files: Sequence[str]) -> int | None:
    """Total bytes of ``files`` (``hf://``, local or any fsspec URL), from file-system metadata only."""
    import fsspec

    total = 0
    try:
        for url in files:
            fs, path = fsspec.core.url_to_fs(url)
            total += int(fs.info(path)["size"])
    except Exception:  # noqa: BLE001 - a size we cannot learn is not a reason to stop the load
        return None
    return total


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _load_split(cfg: DataConfig, split: str) -> Any:
    import datasets  # lazy: importing datasets takes seconds, and only this format needs it

    files, size = split_files(cfg, split)
    if files is not None:
        what = f"{human_bytes(size)} in {len(files)} file(s)" if size is not None else f"{len(files)} file(s)"
        level = logging.WARNING if size is not None and size >= LARGE_DOWNLOAD_BYTES else logging.INFO
        log.log(
            level,
            "%s: split %r: %s to download (only this split; cached after the first run)",
            _source(cfg),
            split,
            what,
        )
    try:
        if files is None:
            return datasets.load_dataset(cfg.hub_id, cfg.hub_config or None, split=split)
        return datasets.load_dataset(cfg.hub_id, cfg.hub_config or None, split=split, data_files={split: files})
    except Exception as exc:  # noqa: BLE001 - the hub raises many types (ConnectionError, ValueError, HfHubHTTPError...)
        raise _load_error(cfg, split, exc) from None


def _load_error(cfg: DataConfig, split: str, exc: Exception) -> DataError:
    """A malformed id, no network, an unknown id or split: each with its own fix."""
    detail = _first_line(exc)
    names = {c.__name__ for c in type(exc).__mro__}
    what = f"hub dataset {cfg.hub_id!r} (config {cfg.hub_config or 'default'!r}, split {split!r})"
    if "namespace/name" in detail or "Repo id must" in detail or names & {"HfUriError", "HFValidationError"}:
        return DataError(
            f"could not load {what}: the id is malformed (not a network problem): {detail}",
            field="data.hub_id",
            fix="copy the 'namespace/name' id from the dataset's page on huggingface.co",
        )
    if names & {
        "ConnectionError",
        "OfflineModeIsEnabled",
        "ConnectError",
        "TimeoutException",
        "LocalEntryNotFoundError",
    }:
        return DataError(
            f"could not load {what}: the hub is unreachable and the dataset is not in the datasets cache: {detail}",
            field="data.hub_id",
            fix="connect to the network (or pre-download the dataset into the datasets cache and set "
            "HF_HUB_OFFLINE=1), or use a local format such as labeled-csv",
        )
    if names & {"DatasetNotFoundError", "RepositoryNotFoundError", "FileNotFoundError", "GatedRepoError"}:
        return DataError(
            f"could not load {what}: not found on the hub (unknown id or config, or a gated/private dataset): {detail}",
            field="data.hub_id",
            fix="check the id and data.hub_config on huggingface.co/datasets; for a gated dataset, accept its terms "
            "and log in (hf auth login)",
        )
    return DataError(
        f"could not load {what}: {detail}",
        field="data.hub_split" if "split" in detail.lower() else "data.hub_id",
        fix="check the id, config and split names on huggingface.co/datasets",
    )


def _column(cfg: DataConfig, table: Any, name: str, *, field: str, split: str) -> None:
    if name not in table.column_names:
        raise DataError(
            f"split {split!r} has no column {name!r}; its columns are {', '.join(map(repr, table.column_names))}",
            where=_source(cfg),
            field=field,
            fix=f"set {field} to one of these columns",
        )


def _is_image(table: Any, name: str) -> bool:
    import datasets

    return isinstance(table.features[name], datasets.Image)


def _labeled(cfg: DataConfig, tables: dict[str, Any]) -> LabeledItems:
    import datasets

    source = _source(cfg)
    first_split, first = next(iter(tables.items()))
    if cfg.text_column and cfg.text_column in first.column_names:
        item_column, field = cfg.text_column, "data.text_column"
    elif cfg.image_column and cfg.image_column in first.column_names:
        item_column, field = cfg.image_column, "data.image_column"
    else:
        raise DataError(
            f"has neither a text column {cfg.text_column!r} nor an image column {cfg.image_column!r}; "
            f"its columns are {', '.join(map(repr, first.column_names))}",
            where=source,
            field="data.text_column",
            fix="set data.text_column (text items) or data.image_column (image items) to one of these columns",
        )
    modality: Modality = "image" if _is_image(first, item_column) else "text"
    rows: list[tuple[str, int]] = []  # (split, row) of every usable item
    labels: list[str] = []
    texts: list[str] = []
    skipped = 0
    for split, table in tables.items():
        _column(cfg, table, item_column, field=field, split=split)
        _column(cfg, table, cfg.label_column, field="data.label_column", split=split)
        feature = table.features[cfg.label_column]
        names = feature.names if isinstance(feature, datasets.ClassLabel) else None
        raw_labels = list(table[cfg.label_column])
        # An image column is not read here: that would load every image's bytes (gigabytes for CelebA);
        # only the sampled rows' images are read, when they are written to the cache.
        values = [True] * len(table) if modality == "image" else list(table[item_column])
        for row, (value, label) in enumerate(zip(values, raw_labels, strict=True)):
            # ClassLabel -1 marks an unlabeled row (e.g. a hidden test split).
            missing = label is None or (names is not None and label < 0)
            if missing or value is None or (modality == "text" and not str(value).strip()):
                skipped += 1
                continue
            rows.append((split, row))
            labels.append(names[label] if names is not None else str(label))
            texts.append("" if modality == "image" else str(value).strip())
    if skipped:
        log.warning("%s: skipped %d rows with a missing item or label", source, skipped)
    # Exclusion and single-item labels first (their checks need all labels), then the seeded sample,
    # before any image is written.
    kept = usable_index(labels, source=source, exclude_labels=cfg.exclude_labels, singletons=cfg.singletons)
    chosen = [kept[i] for i in sample_index(len(kept), cfg.max_items, labels=[labels[i] for i in kept])]
    if modality == "image":
        items = _save_images(cfg, tables, item_column, [rows[i] for i in chosen])
    else:
        items = [texts[i] for i in chosen]
    return make_labeled(
        items,
        [labels[i] for i in chosen],
        modality=modality,
        source=source,
        official_split=[rows[i][0] for i in chosen] if len(tables) > 1 else None,
        label_field="data.label_column",
        singletons="index",  # usable_index applied data.singletons above; what remains is wanted
        report=False,
    )


def _pairs(cfg: DataConfig, tables: dict[str, Any]) -> Pairs:
    source = _source(cfg)
    query_columns = [c.strip() for c in cfg.query_column.split(",") if c.strip()]
    first = next(iter(tables.values()))
    for split, table in tables.items():
        for name in query_columns:
            _column(cfg, table, name, field="data.query_column", split=split)
        _column(cfg, table, cfg.document_column, field="data.document_column", split=split)
    query_image = any(_is_image(first, c) for c in query_columns)
    if query_image and len(query_columns) > 1:
        raise DataError(
            "several query columns must all be text",
            where=source,
            field="data.query_column",
            fix="name one image column",
        )
    doc_image = _is_image(first, cfg.document_column)
    # (split, row, query text) per pair; image sides are materialised after sampling.
    entries: list[tuple[str, int, str]] = []
    doc_texts: list[str] = []
    for split, table in tables.items():
        doc_values = None if doc_image else list(table[cfg.document_column])
        columns = [None] if query_image else [list(table[c]) for c in query_columns]
        for row in range(len(table)):
            doc = None if doc_values is None else doc_values[row]
            if not doc_image and (doc is None or not str(doc).strip()):
                continue
            for column in columns:
                value = None if column is None else column[row]
                for query in [""] if column is None else value if isinstance(value, (list, tuple)) else [value]:
                    if column is not None and (query is None or not str(query).strip()):
                        continue
                    entries.append((split, row, "" if column is None else str(query).strip()))
                    doc_texts.append("" if doc_image else str(doc).strip())
    if not entries:
        raise DataError(
            "the dataset is empty (no pairs with both sides)",
            where=source,
            fix="check data.query_column and data.document_column",
        )
    chosen = sample_index(len(entries), cfg.max_items)
    entries = [entries[i] for i in chosen]
    rows = [(split, row) for split, row, _ in entries]
    if query_image:
        queries = _save_images(cfg, tables, query_columns[0], rows)
    else:
        queries = [q for _, _, q in entries]
    if doc_image:
        unique = list(dict.fromkeys(rows))
        paths = dict(zip(unique, _save_images(cfg, tables, cfg.document_column, unique), strict=True))
        docs = [paths[r] for r in rows]
    else:
        docs = [doc_texts[i] for i in chosen]
    return make_pairs(
        queries,
        docs,
        query_modality="image" if query_image else "text",
        doc_modality="image" if doc_image else "text",
        source=source,
        official_split=[split for split, _ in rows] if len(tables) > 1 else None,
    )


def _save_images(cfg: DataConfig, tables: dict[str, Any], column: str, rows: Sequence[tuple[str, int]]) -> list[str]:
    """Write the images at ``rows`` once as PNG under the cache; return their paths."""
    import datasets
    from PIL import Image

    folder = cache_root() / "images" / cfg.hub_id
    if cfg.hub_config:
        folder = folder / cfg.hub_config
    raw = {split: table.cast_column(column, datasets.Image(decode=False)) for split, table in tables.items()}
    out = []
    for split, row in rows:
        path = folder / split / column / f"{row}.png"
        if not path.is_file():
            value = raw[split][row][column]
            if not value or not (value.get("bytes") or value.get("path")):
                raise DataError(
                    f"split {split!r}, row {row}: column {column!r} holds no image",
                    where=_source(cfg),
                    fix="pick another image column, or filter such rows out of the dataset",
                )
            try:
                image = Image.open(io.BytesIO(value["bytes"])) if value.get("bytes") else Image.open(value["path"])
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                image.save(tmp, format="PNG")
                tmp.replace(path)  # atomic: an interrupted run never leaves a truncated file that looks cached
            except (OSError, ValueError) as exc:
                raise DataError(
                    f"split {split!r}, row {row}: column {column!r} could not be decoded or saved: {exc}",
                    where=_source(cfg),
                    fix=f"check the dataset; images are cached under {folder} (is it writable? set ${CACHE_ENV})",
                ) from None
        out.append(str(path))
    return out
