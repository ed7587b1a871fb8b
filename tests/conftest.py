from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (CI puts it there); tests that need it skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not there")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # No test may reach a model hub: CI has no network beyond package registries.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@dataclass(frozen=True)
class LocalRay:
    """The shared embedded Ray: 2 CPUs, 2 logical GPUs (GPU packing tested on a CPU), metrics on ``metrics_port``."""

    metrics_port: int
    gcs_address: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_SHARED: dict[str, LocalRay] = {}
_RAY_MODULES: set[str] = set()  # the modules with a test that asks for ``ray_local``


def _shutdown_shared_ray() -> None:
    ray = sys.modules.get("ray")
    shared = _SHARED.get("ray")
    if ray is not None and shared is not None and ray.is_initialized():
        if ray.get_runtime_context().gcs_address == shared.gcs_address:  # ours, not a module's own Ray
            ray.shutdown()


def pytest_collection_modifyitems(session, config, items):
    _RAY_MODULES.update(item.module.__name__ for item in items if "ray_local" in getattr(item, "fixturenames", ()))
    # The modules that share the Ray run last and one after another, so one Ray start serves them all; the order
    # inside each group is kept (a stable sort).
    items[:] = sorted(
        items, key=lambda item: getattr(item, "module", None) is not None and item.module.__name__ in _RAY_MODULES
    )


def pytest_runtest_setup(item):
    # The shared Ray lives across consecutive modules that use it, never into one that does not: a module that
    # runs a sweep through the CLI must get the driver's own embedded Ray (``sweeps.tuner.connect``), as a user does.
    module = getattr(item, "module", None)
    if module is None or module.__name__ not in _RAY_MODULES:
        _shutdown_shared_ray()


@pytest.fixture(scope="session")
def _ray_session():
    """Shut the shared Ray down once, after the last module that used it."""
    yield _free_port()
    _shutdown_shared_ray()


@pytest.fixture(scope="module")
def ray_local(_ray_session) -> LocalRay:
    """One embedded Ray for every test that needs a Ray but is not about the driver's own (``connect``).

    Starting Ray costs seconds; consecutive modules that use this fixture share one instead of starting one
    each. It is shut down before a test of a module that does not use it (``pytest_runtest_setup``), and a
    module that tests the driver's own Ray (tests/test_faults.py) starts its own; the next module that asks
    for this fixture then gets a fresh one on the same metrics port.
    """
    ray = pytest.importorskip("ray")
    shared = _SHARED.get("ray")
    if ray.is_initialized() and shared is not None and ray.get_runtime_context().gcs_address == shared.gcs_address:
        return shared
    if ray.is_initialized():  # someone else's Ray (a sweep's embedded one): not the shape these tests expect
        ray.shutdown()
    # address="local": always a new Ray, never one that `ray start` left running on this machine.
    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=2,
        include_dashboard=False,
        _metrics_export_port=_ray_session,
        log_to_driver=False,
    )
    shared = LocalRay(metrics_port=_ray_session, gcs_address=ray.get_runtime_context().gcs_address)
    _SHARED["ray"] = shared
    return shared


@pytest.fixture(autouse=True)
def _prepared_cache(monkeypatch, tmp_path_factory):
    # The prepared-data cache (sweeps/data/cache.py) of a test session lives in its temp folder, never in ~/.cache.
    monkeypatch.setenv("FINETUNING_BUDGET_CACHE", str(tmp_path_factory.getbasetemp() / "prepared-cache"))
