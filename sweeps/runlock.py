"""One driver per run folder: a lock file with the driver's host, pid, start time and a heartbeat.

Two ``roi sweep --resume`` on one run folder (a user who thinks the first one died, two people on a shared
mount) would both run the same pending cells: twice the compute, no warning. ``RunLock.acquire`` creates
``driver.lock`` only if it is not there (``RunFolder.create_exclusive``: a local folder, a shared mount or an
object store, like every other file of the run folder) and refuses a second driver with a message naming
the running one. A background thread renews the heartbeat every ``HEARTBEAT_S`` seconds. A lock whose
driver is gone is taken over with a warning: on the same host when its pid is not running (a killed
driver), on any host when its heartbeat is older than ``STALE_AFTER_S`` (hosts' clocks are assumed to agree
within that). Taking over is best effort: two drivers that both find the same stale lock within the same
instant can both take it; each heartbeat checks that the lock is still its own and warns if it is not.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone

from sweeps.errors import ConfigError
from sweeps.storage import RunFolder

LOCK_FILE = "driver.lock"
HEARTBEAT_S = 15.0
STALE_AFTER_S = 120.0  # eight missed heartbeats


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def stale_reason(holder: dict, *, now: float, stale_after_s: float) -> str | None:
    """Why the driver that wrote ``holder`` is gone, or None if it may still be running."""
    age = now - float(holder.get("heartbeat_at", 0.0))
    if holder.get("host") == socket.gethostname() and not _pid_running(int(holder.get("pid", -1))):
        return f"pid {holder.get('pid')} is not running on this host"
    if age > stale_after_s:
        return f"no heartbeat for {age:.0f} s (a driver renews it every {HEARTBEAT_S:g} s)"
    return None


def describe(holder: dict) -> str:
    return f"host {holder.get('host')}, pid {holder.get('pid')}, started {holder.get('started_at')}"


class RunLock:
    """The lock of one run folder, held by this process from ``acquire`` to ``release``."""

    def __init__(self, folder: RunFolder, info: dict, *, heartbeat_s: float):
        self.folder, self.info, self.heartbeat_s = folder, info, heartbeat_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
        self._thread.start()

    @classmethod
    def acquire(
        cls,
        folder: RunFolder,
        *,
        name: str = "",
        heartbeat_s: float = HEARTBEAT_S,
        stale_after_s: float = STALE_AFTER_S,
    ) -> RunLock:
        """Take the run folder's lock, or raise a ``ConfigError`` naming the driver that holds it."""
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "heartbeat_at": time.time(),
            "token": uuid.uuid4().hex,
        }
        for _ in range(5):  # a few rounds: a lock may be released or taken over between our reads
            info["heartbeat_at"] = time.time()
            if folder.create_exclusive(LOCK_FILE, json.dumps(info).encode()):
                return cls(folder, info, heartbeat_s=heartbeat_s)
            holder = _read(folder)
            if holder is None:  # released just now
                continue
            reason = stale_reason(holder, now=time.time(), stale_after_s=stale_after_s) if holder else "unreadable"
            if reason is None:
                age = time.time() - float(holder.get("heartbeat_at", 0.0))
                raise ConfigError(
                    f"another driver is running on this run folder ({describe(holder)}; "
                    f"last heartbeat {age:.0f} s ago)",
                    where=folder.location(LOCK_FILE),
                    fix=f"wait for it to finish (roi status {folder} shows its progress) or stop it; "
                    f"a driver that died is taken over at once on its own host, elsewhere after "
                    f"{stale_after_s:g} s without a heartbeat",
                )
            gone = describe(holder) if holder else "unknown"
            print(
                f"[{name or folder}] warning: taking over the run folder's lock from a driver that is gone "
                f"({gone}: {reason})",
                flush=True,
            )
            if _read(folder) == holder:  # still the stale one: not taken over by another driver meanwhile
                folder.delete(LOCK_FILE)
        raise ConfigError(
            "the run folder's lock kept changing hands: several drivers are starting on it",
            where=folder.location(LOCK_FILE),
            fix="start one driver per run folder",
        )

    def owned(self) -> bool:
        holder = _read(self.folder)
        return bool(holder) and holder.get("token") == self.info["token"]

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                if not self.owned():
                    print(f"warning: another driver took over the lock of {self.folder}", flush=True)
                    return
                self.info["heartbeat_at"] = time.time()
                self.folder.write_text(LOCK_FILE, json.dumps(self.info))
            except Exception as exc:  # a storage hiccup must not end the sweep; the next beat tries again
                print(f"warning: cannot renew the lock of {self.folder}: {exc}", flush=True)

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still this driver's; safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        if self.owned():
            self.folder.delete(LOCK_FILE)


def lock_state(folder: RunFolder, *, now: float | None = None) -> str | None:
    """One line on who holds ``folder``'s lock (for ``roi status``), or None when no driver holds it."""
    holder = _read(folder)
    if holder is None:
        return None
    if not holder:
        return f"a {LOCK_FILE} that cannot be read: a driver may be running (the next one takes it over if not)"
    now = time.time() if now is None else now
    gone = stale_reason(holder, now=now, stale_after_s=STALE_AFTER_S)
    if gone:
        return f"the driver that held it is gone ({describe(holder)}; {gone}): roi sweep FILE --resume goes on"
    age = now - float(holder.get("heartbeat_at", now))
    return f"a driver is running ({describe(holder)}; heartbeat {age:.0f} s ago)"


def driver_running(folder: RunFolder, *, now: float | None = None) -> bool:
    """True while a driver holds ``folder``'s lock (an unreadable lock counts: a driver may be writing it)."""
    holder = _read(folder)
    if holder is None:
        return False
    if not holder:
        return True
    return not stale_reason(holder, now=time.time() if now is None else now, stale_after_s=STALE_AFTER_S)


def _read(folder: RunFolder) -> dict | None:
    """The lock's content; None if there is no lock, {} if it cannot be read."""
    try:
        holder = json.loads(folder.read_text(LOCK_FILE))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}
