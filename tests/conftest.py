from __future__ import annotations

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


@pytest.fixture(autouse=True)
def _prepared_cache(monkeypatch, tmp_path_factory):
    # The prepared-data cache (sweeps/data/cache.py) of a test session lives in its temp folder, never in ~/.cache.
    monkeypatch.setenv("FINETUNING_BUDGET_CACHE", str(tmp_path_factory.getbasetemp() / "prepared-cache"))
