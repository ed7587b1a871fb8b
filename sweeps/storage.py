"""The run folder's filesystem: a local folder (or NFS mount) or an object-store URI, behind one small API.

Every read and write of a run folder goes through ``RunFolder``, so the rest of the tool never knows where
the records live. A local folder keeps the atomic write (temporary file, fsync, ``os.replace``): a crash
never leaves half a file. An object store (``s3://``, ``gs://``, ... through ``pyarrow.fs``) has no rename,
but a PUT is atomic: readers see the old object or the whole new one, so each file is built in memory and
written in one stream. Only the driver writes here. Credentials come from the environment or the instance
role, never from sweep files.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from sweeps.errors import ConfigError

# Schemes pyarrow.fs.FileSystem.from_uri opens. Checked by name only: building an S3 filesystem already
# contacts the network (it resolves the bucket's region), so connection problems surface at run time.
URI_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "file")
_UMASK = os.umask(0)  # read once at import (umask can only be read by setting it)
os.umask(_UMASK)
WRITE_FIX = "choose a writable results folder with --storage (or storage: in the sweep file)"


def _unwritable(path: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"cannot write {path}: {exc.strerror or exc}", field="storage", fix=WRITE_FIX)


CREDENTIALS_FIX = (
    "check the URI and that the bucket exists; credentials come from the environment (AWS_PROFILE or "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS, ...) or the instance role, "
    "never from the sweep file; or give a local folder or shared mount"
)


def is_uri(storage: str | os.PathLike) -> bool:
    return "://" in str(storage)


def check_storage(storage: str) -> None:
    """Refuse a storage URI pyarrow cannot open, or one carrying secrets, without touching the network."""
    if not is_uri(storage):
        return
    parsed = urlsplit(storage)
    if parsed.scheme.lower() not in URI_SCHEMES:
        raise ConfigError(
            f"storage scheme {parsed.scheme!r}:// is not supported ({storage})",
            field="storage",
            fix=f"use a local folder, a shared mount, or a URI of {', '.join(s + '://' for s in URI_SCHEMES)}",
        )
    if parsed.password is not None or any(k in parsed.query.lower() for k in ("secret", "key", "token")):
        # the URI would be saved in config.yaml and printed in messages
        raise ConfigError(
            "the storage URI carries credentials", field="storage", fix=f"remove them from the URI; {CREDENTIALS_FIX}"
        )


class RunFolder:
    """``<storage>/<sweep name>``: files addressed by relative POSIX paths (``records/<id>.json``)."""

    def __init__(self, location: str | os.PathLike):
        self.is_local = not is_uri(location)
        self.root: Path | str = Path(location) if self.is_local else str(location).rstrip("/")
        self._fs: Any = None  # pyarrow filesystem, opened on first use (URI only)
        self._base = ""

    @classmethod
    def of(cls, storage: str, name: str) -> RunFolder:
        check_path_component(name, where=None, field="name")  # also for a SweepConfig built in code
        if is_uri(storage):
            return cls(f"{storage.rstrip('/')}/{name}")
        return cls(Path(storage).expanduser().resolve() / name)

    @classmethod
    def coerce(cls, where: RunFolder | str | os.PathLike) -> RunFolder:
        return where if isinstance(where, RunFolder) else cls(where)

    def location(self, relpath: str = "") -> Path | str:
        """What messages show: a ``Path`` inside a local folder, the full URI otherwise."""
        if self.is_local:
            return self.root / relpath if relpath else self.root
        return f"{self.root}/{relpath}" if relpath else self.root

    def __str__(self) -> str:
        return str(self.location())

    @property
    def tune_storage_path(self) -> str:
        """Tune's ``RunConfig(storage_path=...)``: a local path or a URI, both taken by Ray as they are."""
        return str(self.location("tune"))

    def __getstate__(self) -> dict:  # pickled with Tune's scheduler: reopen the filesystem on the other side
        return {**self.__dict__, "_fs": None}

    @contextlib.contextmanager
    def _remote(self, relpath: str) -> Iterator[tuple[Any, str]]:
        """The pyarrow filesystem and the path of ``relpath``; its errors become one clear ``ConfigError``."""
        try:
            if self._fs is None:
                import pyarrow.fs

                self._fs, self._base = pyarrow.fs.FileSystem.from_uri(self.root)
            yield self._fs, f"{self._base.rstrip('/')}/{relpath}".rstrip("/")
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:  # pyarrow's errors subclass these (ArrowInvalid is a ValueError)
            raise ConfigError(
                f"cannot use the storage {self.root}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                field="storage",
                fix=CREDENTIALS_FIX,
            ) from None

    def check_writable(self) -> None:
        """``ConfigError`` now if a local run folder could not be created or written (a file in the way, no
        permission), before data preparation and Ray; object stores report their errors on first use."""
        if not self.is_local:
            return
        existing = self.root
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        problem = None
        if not existing.is_dir():
            problem = f"{existing} is a file, not a folder"
        elif not os.access(existing, os.W_OK | os.X_OK):
            problem = f"no permission to write in {existing}"
        if problem:
            raise ConfigError(f"cannot write the run folder {self.root}: {problem}", field="storage", fix=WRITE_FIX)

    def write_bytes(self, relpath: str, data: bytes) -> Path | str:
        """Write ``data`` so that readers see the old file or the whole new one, never a part."""
        if self.is_local:
            self._write_local(relpath, data, exclusive=False)
        else:
            with self._remote(relpath) as (fs, path):
                try:
                    stream = fs.open_output_stream(path)
                except FileNotFoundError:  # file:// and the like need their folders; object stores have none
                    fs.create_dir(str(PurePosixPath(path).parent), recursive=True)
                    stream = fs.open_output_stream(path)
                with stream as f:
                    f.write(data)  # one stream, one PUT: the object appears whole on close
        return self.location(relpath)

    def create_exclusive(self, relpath: str, data: bytes) -> bool:
        """Write ``data`` to ``relpath`` only if no file is there; True if this call made it.

        A local folder or a shared mount: the whole file is written under a temporary name and hard-linked
        into place, which fails if the name exists (atomic on local filesystems and on NFS, the classic NFS
        lock; readers never see half a file). An object store has no create-if-absent in ``pyarrow.fs``:
        check, write, then read back; of two writers racing within one PUT the one whose content is
        read back wins, and the other sees another content and answers False.
        """
        if self.is_local:
            return self._write_local(relpath, data, exclusive=True)
        if self.exists(relpath):
            return False
        self.write_bytes(relpath, data)
        time.sleep(0.5)  # let a racing PUT land before reading back
        try:
            return self.read_bytes(relpath) == data
        except FileNotFoundError:
            return False

    def _write_local(self, relpath: str, data: bytes, *, exclusive: bool) -> bool:
        """The whole file under a temporary name (written, fsynced), then renamed into place (``os.replace``)
        or, ``exclusive``, hard-linked there, which fails if the name exists: then False."""
        path = self.root / relpath
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        except OSError as exc:  # a file in the way, a read-only mount, no permission, a full disk
            raise _unwritable(path, exc) from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            # mkstemp creates 0600; results on a shared mount must be readable as any new file would be.
            os.chmod(tmp, 0o666 & ~_UMASK)
            if exclusive:
                os.link(tmp, path)
            else:
                os.replace(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            raise _unwritable(path, exc) from None
        finally:
            Path(tmp).unlink(missing_ok=True)  # gone already after os.replace; the extra name after os.link

    def missing_dirs(self) -> list[Path]:
        """Local: the folders a first write would create (the run folder and missing parents), deepest first."""
        if not self.is_local:
            return []
        out, folder = [], self.root
        while not folder.exists() and folder != folder.parent:
            out.append(folder)
            folder = folder.parent
        return out

    def remove_empty(self, folders: list[Path]) -> None:
        """Remove those of ``folders`` (deepest first) that are empty: undo ``missing_dirs`` after a refusal."""
        for folder in folders:
            try:
                folder.rmdir()
            except OSError:  # not empty (or gone): leave it, and its parents
                return

    def write_text(self, relpath: str, text: str) -> Path | str:
        return self.write_bytes(relpath, text.encode())

    def read_bytes(self, relpath: str) -> bytes:
        if self.is_local:
            return (self.root / relpath).read_bytes()
        with self._remote(relpath) as (fs, path), fs.open_input_stream(path) as f:
            return f.read()

    def read_text(self, relpath: str) -> str:
        return self.read_bytes(relpath).decode()

    def exists(self, relpath: str) -> bool:
        if self.is_local:
            return (self.root / relpath).exists()
        import pyarrow.fs

        with self._remote(relpath) as (fs, path):
            return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound

    def list_files(self, subdir: str, suffix: str) -> list[str]:
        """Relative paths of the files directly in ``subdir`` ending in ``suffix``, sorted; [] if it is not there."""
        if self.is_local:
            names = [p.name for p in (self.root / subdir).glob(f"*{suffix}") if p.is_file()]
        else:
            import pyarrow.fs

            with self._remote(subdir) as (fs, path):
                infos = fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
            names = [i.base_name for i in infos if i.type == pyarrow.fs.FileType.File and i.base_name.endswith(suffix)]
        return sorted(f"{subdir}/{n}" for n in names if not n.startswith("."))

    def delete(self, relpath: str) -> None:
        """Remove a file; nothing happens if it is not there."""
        if self.is_local:
            (self.root / relpath).unlink(missing_ok=True)
            return
        with contextlib.suppress(FileNotFoundError), self._remote(relpath) as (fs, path):
            fs.delete_file(path)

    def write_table(self, df) -> tuple[Path | str, Path | str]:
        """``results.parquet`` and ``results.csv``, each built in memory and written whole."""
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return self.write_bytes("results.parquet", buf.getvalue()), self.write_text(
            "results.csv", df.to_csv(index=False)
        )


MAX_NAME = 100  # leaves room for the trial names Ray Tune builds from it (name-n100-e1-s0-...)


def check_path_component(name: str, *, where: str | os.PathLike | None, field: str) -> str:
    """A user-given name that becomes a folder (``<storage>/<name>``) must be one plain path component: no
    separator, not ``.`` or ``..`` and no leading dot (``name: ".."`` would write beside ``--storage``, not in it)."""
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", name):
        raise ConfigError(
            f"{name!r} cannot name a folder: it must be one path component (no '/' or '\\', not '.' or '..', "
            "no leading dot)",
            where=where,
            field=field,
            fix="use letters, digits, '.', '_' and '-', starting with a letter, digit, '_' or '-'",
        )
    if len(name) > MAX_NAME:  # file systems cap a path component at 255 bytes, and trial folders append to it
        raise ConfigError(
            f"a name of {len(name):,} characters cannot name a folder: at most {MAX_NAME}",
            where=where,
            field=field,
            fix=f"shorten {field} to {MAX_NAME} characters or fewer",
        )
    return name
