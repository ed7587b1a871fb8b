"""CSV and JSONL tables (``data.format``: ``labeled-csv``, ``labeled-jsonl``, ``pairs-csv``, ``pairs-jsonl``).

- ``labeled-*``: one item per row, ``data.text_column`` + ``data.label_column``.
- ``pairs-*``: one (query, document) pair per row, ``data.query_column`` + ``data.document_column``;
  identical document strings are one document.

``data.path`` may be one file or a folder of files with that extension; in a folder, each file's name
(``train.csv`` -> ``train``) becomes the official split of its rows, so BANKING77's ``train.csv``/``test.csv``
can be used with ``split.method: official``. A column whose values are all image paths (by extension) is an
image column; the paths are relative to the file's folder. That is how image-to-image pairs
(Totally-Looks-Like) and image/label tables are read. The CSV delimiter is sniffed from the header unless
``data.delimiter`` names it.

Every problem a user can cause is a ``DataError`` that names the file, the line or field, and the fix.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from sweeps.data.assemble import (
    Singletons,
    column_modality,
    make_labeled,
    make_pairs,
    resolve_images,
)
from sweeps.data.items import LabeledItems, Pairs
from sweeps.data.read import read_text, require_path
from sweeps.errors import DataError

TableKind = Literal["csv", "jsonl"]


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
    require_path(path)
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
    text = read_text(file)
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
