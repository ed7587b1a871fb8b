"""Can the Hugging Face hub be reached? One DNS lookup of its host, so an offline machine fails in a moment.

Without this, ``huggingface_hub`` retries every request (about 30 s in all) before a model or dataset load
reports what a DNS lookup knows at once. Honours ``HF_ENDPOINT`` (a mirror: its host is checked) and
``HF_HUB_OFFLINE`` (set: nothing is fetched, so nothing is checked and loads read the local cache).
Used by the model loaders (``sweeps/models/_hub.py``) and the hub dataset loader (``sweeps/data/hub.py``).
"""

from __future__ import annotations

import os
import socket
import threading
from urllib.parse import urlparse

DEFAULT_ENDPOINT = "https://huggingface.co"
LOOKUP_TIMEOUT_S = 5.0  # a resolver that does not answer is as unreachable as one that says no


def hub_endpoint() -> str:
    """``$HF_ENDPOINT`` or https://huggingface.co."""
    return os.environ.get("HF_ENDPOINT", "").strip() or DEFAULT_ENDPOINT


def offline_mode() -> bool:
    """True when ``HF_HUB_OFFLINE`` asks the Hugging Face libraries to use only their cache."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def unreachable_reason() -> str | None:
    """Why the hub cannot be reached ("huggingface.co could not be resolved: ..."), or None when its host resolves.

    None too in offline mode: then the libraries fetch nothing, and a load reads the cache or says it cannot.
    """
    if offline_mode():
        return None
    parsed = urlparse(hub_endpoint())
    host = parsed.hostname
    if not host:
        return f"HF_ENDPOINT={hub_endpoint()!r} names no host"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    outcome: list[BaseException | None] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            outcome.append(None)
        except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
            outcome.append(exc)

    # A daemon thread: a resolver that hangs must not hold the process (or the load) past the timeout.
    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(LOOKUP_TIMEOUT_S)
    if not outcome:
        return f"{host} could not be resolved (no DNS answer within {LOOKUP_TIMEOUT_S:g} s)"
    if outcome[0] is not None:
        exc = outcome[0]
        detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return f"{host} could not be resolved ({detail})"
    return None
