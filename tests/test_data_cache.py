"""The prepared-data cache: hits skip the build, keys follow content and settings, bad entries are rebuilt."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sweeps.config import TrialConfig
from sweeps.data.cache import MANIFEST, cached_features, content_key
from sweeps.dataclass_io import build
from sweeps.models import build_model
from sweeps.models.text import TokenFeatures, tokenizer_key
from sweeps.prepare import cache_hit_line, prepare_data
from sweeps.sweepfile import resolve_paths

TEXTS = ["turn on the lights", "play some jazz", "what's the weather", "set a timer for ten minutes"]
TINY_TEXT = {"kind": "hf-text", "name": "tiny-bert", "tiny": True, "max_length": 16}


class Counted:
    """``build`` that counts its calls: a hit must not call it."""

    def __init__(self, tower, items):
        self.tower, self.items, self.calls = tower, items, 0

    def __call__(self):
        self.calls += 1
        return self.tower.preprocess(self.items)


@pytest.fixture(scope="module")
def tower():
    return build_model(_model_cfg(TINY_TEXT), task="text-to-text").query_tower


def _model_cfg(model: dict):
    return build(TrialConfig, {"task": "text-to-text", "model": model, "data": {"format": "clinc150"}}, where="t").model


def _cached(tower, items, root: Path):
    build_ = Counted(tower, items)
    features, outcome = cached_features(
        build_, items=items, modality=tower.modality, settings=tower.preprocess_key(), root=root
    )
    return features, outcome, build_.calls


def _same(a: TokenFeatures, b: TokenFeatures) -> bool:
    return np.array_equal(a.flat, b.flat) and np.array_equal(a.offsets, b.offsets)


def test_second_read_is_a_hit_with_identical_features(tower, tmp_path):
    first, out1, calls1 = _cached(tower, TEXTS, tmp_path)
    second, out2, calls2 = _cached(tower, TEXTS, tmp_path)
    assert (calls1, calls2) == (1, 0) and not out1.hit and out2.hit
    assert _same(first, second) and _same(second, tower.preprocess(TEXTS))
    assert out2.seconds == pytest.approx(out1.seconds)  # the time a hit saves is the recorded build time
    assert [p.name for p in tmp_path.iterdir()] == [out1.key]  # no temporary folder left behind


def test_key_follows_texts_order_and_settings(tower):
    settings = tower.preprocess_key()
    key = content_key(TEXTS, modality="text", settings=settings)
    assert key == content_key(list(TEXTS), modality="text", settings=dict(settings))
    assert key != content_key(TEXTS[::-1], modality="text", settings=settings)
    assert key != content_key(["turn on the", "lights", *TEXTS[1:]], modality="text", settings=settings)
    shorter = build_model(_model_cfg({**TINY_TEXT, "max_length": 8}), task="text-to-text").query_tower
    assert shorter.preprocess_key() != settings
    assert key != content_key(TEXTS, modality="text", settings=shorter.preprocess_key())
    # Tokenising leaves truncation settings on the backend tokenizer: the key must not move with them.
    before = tokenizer_key(tower.tokenizer, max_length=16)
    tower.preprocess(TEXTS)
    assert tokenizer_key(tower.tokenizer, max_length=16) == before == settings


def test_image_key_follows_file_content_not_path(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    Image.new("RGB", (20, 20), (200, 10, 10)).save(a / "x.png")
    shutil.copy(a / "x.png", b / "x.png")
    settings = {"image": "spec"}
    key = content_key([str(a / "x.png")], modality="image", settings=settings)
    assert key == content_key([str(b / "x.png")], modality="image", settings=settings)  # moved: same entry
    Image.new("RGB", (20, 20), (10, 200, 10)).save(b / "x.png")
    assert key != content_key([str(b / "x.png")], modality="image", settings=settings)  # edited: another


@pytest.mark.parametrize("damage", ["flip-byte", "truncate", "no-manifest", "bad-manifest", "missing-array"])
def test_corrupt_or_partial_entry_is_rebuilt_never_used(tower, tmp_path, damage):
    _, out, _ = _cached(tower, TEXTS, tmp_path)
    entry = tmp_path / out.key
    array = entry / "flat.npy"
    if damage == "flip-byte":
        raw = bytearray(array.read_bytes())
        raw[-1] ^= 0xFF  # a token id changes; the shape and dtype do not
        array.write_bytes(bytes(raw))
    elif damage == "truncate":
        array.write_bytes(array.read_bytes()[:-7])
    elif damage == "no-manifest":
        (entry / MANIFEST).unlink()
    elif damage == "bad-manifest":
        (entry / MANIFEST).write_text("{")
    else:
        array.unlink()
    features, again, calls = _cached(tower, TEXTS, tmp_path)
    assert calls == 1 and not again.hit and again.rebuilt  # rebuilt, and it says why
    assert _same(features, tower.preprocess(TEXTS))
    _, third, calls = _cached(tower, TEXTS, tmp_path)
    assert third.hit and calls == 0  # the rebuilt entry is whole again


def test_entry_of_other_length_is_rebuilt(tower, tmp_path):
    _, out, _ = _cached(tower, TEXTS, tmp_path)
    manifest = json.loads((tmp_path / out.key / MANIFEST).read_text())
    manifest["fields"]["offsets"]["shape"] = [99]
    (tmp_path / out.key / MANIFEST).write_text(json.dumps(manifest))
    _, again, calls = _cached(tower, TEXTS, tmp_path)
    assert calls == 1 and again.rebuilt


def test_second_prepare_skips_preparation_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FINETUNING_BUDGET_CACHE", str(tmp_path / "cache"))
    rows = [{"text": f"{w} number {i}", "label": w} for i in range(12) for w in ("alpha", "beta", "gamma")]
    (tmp_path / "items.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = resolve_paths(
        build(
            TrialConfig,
            {
                "task": "text-to-text",
                "model": TINY_TEXT,
                "data": {"format": "labeled-jsonl", "name": "toy", "path": "items.jsonl"},
                "split": {"method": "seeded", "eval_fraction": 0.3},
            },
            where="test",
        ),
        base_dir=tmp_path,
    )
    first = prepare_data(cfg)
    assert "features prepared in" in capsys.readouterr().out
    second = prepare_data(cfg)
    line = capsys.readouterr().out
    assert "preparation skipped, features read from the prepared-data cache" in line, line
    assert _same(first.pool.query_features, second.pool.query_features)
    assert _same(first.eval.query_features, second.eval.query_features)
    assert first.data_id == second.data_id

    monkeypatch.setenv("FINETUNING_BUDGET_CACHE", "off")
    prepare_data(cfg)
    assert "[prepare]" not in capsys.readouterr().out  # off: no cache, nothing to say
    assert len(list((tmp_path / "cache" / "prepared").iterdir())) == 2  # the pool's and the evaluation set's entries


def test_the_cache_line_claims_a_saving_only_where_reading_beat_building():
    # A second `make run` on 1,500 short texts read its features in 0.3 s that took 0.2 s to build: no saving.
    small = cache_hit_line("/c", read=0.3, built=0.2)
    assert "saves nothing on data this small" in small and "0.3s" in small and "0.2s" in small, small
    assert "instead of" not in small
    # CLINC150's 19,500 texts (benchmarks/RESULTS.md): 0.044 s read against 1.50 s to tokenise.
    large = cache_hit_line("/c", read=0.044, built=1.5)
    assert large.endswith("in 0.0s instead of the 1.5s building them took"), large
