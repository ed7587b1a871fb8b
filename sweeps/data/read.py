"""Reading a user's data file: every way it can fail is one ``DataError`` that names the file and the fix.

Shared by the table loaders (``sweeps/data/tables.py``) and the named formats (``sweeps/data/files.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sweeps.errors import DataError


def reraise(exc: OSError) -> None:
    """``os.walk``'s ``onerror``: a folder it cannot read is an error, not a folder skipped."""
    raise exc


def require_path(path: Path) -> None:
    if not path.exists():
        raise DataError(
            "not found",
            where=path,
            field="data.path",
            fix="check data.path (relative paths are relative to the config file)",
        )


def read_text(file: Path) -> str:
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


def read_json(file: Path) -> Any:
    text = read_text(file)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            where=file,
            fix="repair the file (it may be truncated)",
        ) from None
