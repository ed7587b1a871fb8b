"""Prepared features cached on disk, per collection of items, shared by sweep files and reruns.

Tokenising a text set or decoding an image set is the same work for every sweep file and every rerun on the same
data with the same preprocessing, so ``prepare_data`` asks this cache first. An entry is keyed by

- the content of the items, in order: the texts themselves, or the bytes of each image file (not its path: the
  same files under another mount or checkout hit the same entry; an edited file misses);
- the tower's preprocessing settings (``Tower.preprocess_key``: the tokenizer's full serialisation and
  ``max_length``; the image spec and the PIL version);
- ``FORMAT``, raised when the preprocessing code or the entry layout changes.

An entry is a folder ``<root>/<key>/`` with one ``.npy`` per array field of the features and a ``manifest.json``
(the class, each file's sha256, shape and dtype, the seconds the build took). It is written under a temporary
name and renamed into place in one step, so a reader sees a whole entry or none; an entry whose manifest is
missing or unreadable, or whose files do not match their checksums, shapes or dtypes, is removed and rebuilt,
never used. Only plain arrays are stored and read back (``allow_pickle=False``): a tampered entry cannot run code.

Where: ``<home>/prepared`` with home ``$FINETUNING_BUDGET_CACHE`` if set (``off`` disables the cache), else
``$XDG_CACHE_HOME/finetuning-budget`` (``~/.cache/finetuning-budget``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1
ENV_VAR = "FINETUNING_BUDGET_CACHE"
MANIFEST = "manifest.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class CacheOutcome:
    """What the cache did for one collection."""

    key: str
    hit: bool  # True: read from disk, the build was skipped
    seconds: float  # hit: what building it took when it was cached (the time saved); miss: this build
    rebuilt: str = ""  # why an existing entry was discarded (corrupt, partial), empty otherwise


def cache_home() -> Path | None:
    """The tool's cache folder (``$FINETUNING_BUDGET_CACHE``, else ``$XDG_CACHE_HOME/finetuning-budget``), or None
    when set to ``off``. It holds ``prepared/`` (this module) and ``compiled/`` (``sweeps.compiled``)."""
    configured = os.environ.get(ENV_VAR, "").strip()
    if configured.lower() in ("off", "none", "0"):
        return None
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "finetuning-budget"


def cache_root() -> Path | None:
    """The prepared-data cache folder, ``<cache_home()>/prepared``; None when the cache is off."""
    home = cache_home()
    return home / "prepared" if home is not None else None


def content_key(items: Sequence[str], *, modality: str, settings: dict) -> str:
    """sha256 of (``FORMAT``, ``settings``, the items' content in order): texts, or image files' bytes."""
    digest = hashlib.sha256(json.dumps({"format": FORMAT, "settings": settings}, sort_keys=True).encode())
    for item in items:
        if modality == "image":
            _hash_file(digest, Path(item))
        else:
            encoded = str(item).encode("utf-8")
            digest.update(len(encoded).to_bytes(8, "little"))  # length-prefixed: ["ab", "c"] != ["a", "bc"]
            digest.update(encoded)
    return digest.hexdigest()[:32]


def cached_features(
    build: Callable[[], Any],
    *,
    items: Sequence[str],
    modality: str,
    settings: dict,
    root: Path,
) -> tuple[Any, CacheOutcome]:
    """The features of ``items`` from the cache, or ``build()``-ed and stored there.

    Args:
        build: the preprocessing (``tower.preprocess(items)``); its result must be a dataclass of NumPy arrays.
        settings: JSON-able preprocessing settings (``Tower.preprocess_key()``).
        root: the cache folder (``cache_root()``).
    """
    try:
        key = content_key(items, modality=modality, settings=settings)
    except OSError:  # an image file is missing or unreadable: building names it in a clear error
        return build(), CacheOutcome(key="", hit=False, seconds=0.0)
    entry = root / key
    rebuilt = ""
    if entry.is_dir():
        try:
            features, seconds = read_entry(entry, expected_len=len(items))
            return features, CacheOutcome(key=key, hit=True, seconds=seconds)
        except CorruptEntry as exc:
            rebuilt = str(exc)
            shutil.rmtree(entry, ignore_errors=True)
    start = time.perf_counter()
    features = build()
    seconds = time.perf_counter() - start
    write_entry(entry, features, seconds=seconds)
    return features, CacheOutcome(key=key, hit=False, seconds=seconds, rebuilt=rebuilt)


class CorruptEntry(Exception):
    """A cache entry that is partial or does not match its manifest; it is rebuilt."""


def write_entry(entry: Path, features: Any, *, seconds: float) -> bool:
    """Write ``features`` (a dataclass of NumPy arrays) as ``entry`` atomically; False if it could not be cached.

    Not cacheable (other field types) or not writable (read-only home, full disk): the features are still
    used, only not stored, so a cache problem never fails a sweep.
    """
    if not dataclasses.is_dataclass(features) or not all(
        isinstance(getattr(features, f.name), np.ndarray) for f in dataclasses.fields(features)
    ):
        return False
    tmp = entry.with_name(f".{entry.name}.tmp-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        fields = {}
        for f in dataclasses.fields(features):
            array = np.ascontiguousarray(getattr(features, f.name))
            path = tmp / f"{f.name}.npy"
            np.save(path, array, allow_pickle=False)
            fields[f.name] = {"sha256": _file_sha256(path), "shape": list(array.shape), "dtype": array.dtype.str}
        cls = type(features)
        manifest = {
            "format": FORMAT,
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "fields": fields,
            "build_seconds": seconds,
            "created": time.time(),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        try:
            os.rename(tmp, entry)  # one step: readers see the whole entry or none
        except OSError:  # another process cached the same entry first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        return True
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return False


def read_entry(entry: Path, *, expected_len: int) -> tuple[Any, float]:
    """(features, the seconds their build took) from ``entry``; ``CorruptEntry`` if anything does not match."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        if manifest["format"] != FORMAT:
            raise CorruptEntry(f"format {manifest['format']} is not {FORMAT}")
        cls = _features_class(manifest["class"])
        arrays = {}
        for name, meta in manifest["fields"].items():
            path = entry / f"{name}.npy"
            if _file_sha256(path) != meta["sha256"]:
                raise CorruptEntry(f"{path.name} does not match its checksum")
            array = np.load(path, allow_pickle=False)
            if list(array.shape) != meta["shape"] or array.dtype.str != meta["dtype"]:
                raise CorruptEntry(f"{path.name} has shape {array.shape} {array.dtype}, not {meta['shape']}")
            arrays[name] = array
        features = cls(**arrays)
        seconds = float(manifest["build_seconds"])
    except CorruptEntry:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:  # missing files, bad JSON, a truncated .npy
        raise CorruptEntry(f"unreadable ({type(exc).__name__}: {exc})") from None
    if len(features) != expected_len:
        raise CorruptEntry(f"holds {len(features)} items, not {expected_len}")
    return features, seconds


def _features_class(name: str) -> type:
    module, _, qualname = name.partition(":")
    if not module.startswith("sweeps."):  # only the tool's own feature classes are built from an entry
        raise CorruptEntry(f"unexpected class {name}")
    cls = getattr(importlib.import_module(module), qualname, None)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise CorruptEntry(f"unknown class {name}")
    return cls


def _hash_file(digest, path: Path) -> None:
    size = path.stat().st_size  # a missing file raises here, as decoding it would
    digest.update(size.to_bytes(8, "little"))
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
