"""Hub model loading without network: fail at once when the hub's host cannot be resolved, and quiet loads.

No real network: ``socket.getaddrinfo`` is replaced by one that cannot resolve anything, as on an offline machine.
"""

from __future__ import annotations

import socket

import pytest

from sweeps.dns_check import unreachable_reason
from sweeps.errors import ModelError
from sweeps.models._hub import load_pretrained

transformers = pytest.importorskip("transformers")


@pytest.fixture
def no_dns(monkeypatch):
    """Every lookup fails as it does without network; the hosts asked for are recorded."""
    asked: list[tuple[str, int]] = []

    def unresolvable(host, port, *args, **kwargs):
        asked.append((host, port))
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    return asked


def test_unresolvable_hub_is_named(no_dns, monkeypatch):
    assert unreachable_reason() == "huggingface.co could not be resolved (Name or service not known)"
    assert no_dns == [("huggingface.co", 443)]
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.mirror.internal:8080")
    assert unreachable_reason().startswith("hub.mirror.internal could not be resolved")
    assert no_dns[-1] == ("hub.mirror.internal", 8080)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline mode: nothing is fetched, so nothing is looked up
    assert unreachable_reason() is None and len(no_dns) == 2


def test_resolvable_hub_is_reachable(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda *args, **kwargs: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 443))]
    )
    assert unreachable_reason() is None


def test_hub_model_without_network_fails_at_once_from_the_cache_only(no_dns, monkeypatch, tmp_path):
    """The load asks the local cache only (no ~30 s of retries) and ends in the no-network message."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache
    asked = []

    def from_pretrained(name, **kwargs):
        asked.append(kwargs)
        return transformers.AutoConfig.from_pretrained(name, cache_dir=str(tmp_path / "hub"), **kwargs)

    with pytest.raises(ModelError) as info:
        load_pretrained(from_pretrained, "google-bert/bert-base-cased")
    assert asked == [{"local_files_only": True}]
    err = info.value
    assert err.field == "model.name"
    assert err.problem.startswith("cannot load model google-bert/bert-base-cased: no network (huggingface.co could")
    assert "not in the local Hugging Face cache" in err.problem and "HF_ENDPOINT" in err.fix


def test_paths_and_folders_are_not_looked_up(no_dns, tmp_path):
    with pytest.raises(ModelError, match="not a local folder"):
        load_pretrained(transformers.AutoConfig.from_pretrained, str(tmp_path / "missing" / "model"))
    assert no_dns == []


def test_model_loading_prints_no_progress_bars(tmp_path, capfd):
    """A trial's model load writes nothing: no "Loading weights" bar between the sweep's log lines."""
    from transformers import BertConfig, BertModel
    from transformers.utils import logging as hf_logging

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertModel(config).save_pretrained(tmp_path / "bert")
    hf_logging.enable_progress_bar()  # the library's default, whatever an earlier test did
    capfd.readouterr()
    model = load_pretrained(transformers.AutoModel.from_pretrained, str(tmp_path / "bert"))
    out, err = capfd.readouterr()
    assert model.config.hidden_size == 16
    assert "Loading weights" not in err + out and "it/s" not in err + out, err
