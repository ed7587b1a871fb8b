"""Decoded images reach every trial on a node as one shared, read-only copy (Ray's object store), not a private one.

Ray deserialises a NumPy array inside an object zero-copy, as a view of the store's shared memory; a torch
tensor would be unpickled into a private copy in every worker (benchmarks/RESULTS.md, "Decoded images at scale").
The probe below finds the memory mapping that holds an array's buffer in the worker's /proc/self/maps: the
object store's mapping is a shared one ("s" in its permissions) of a file that both workers map (same device and
inode); a private copy lies in an anonymous, private mapping. A torch tensor sent the same way is the control.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

from sweeps.config import TrialConfig
from sweeps.dataclass_io import build
from sweeps.models._images import ImageFeatures
from sweeps.sweepfile import resolve_paths

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")


def mapping_of(array: np.ndarray) -> dict:
    """The /proc/self/maps line holding ``array``'s first byte: permissions, device:inode and path."""
    address = array.__array_interface__["data"][0]
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            low, high = (int(v, 16) for v in fields[0].split("-"))
            if low <= address < high:
                return {
                    "shared": fields[1][3] == "s",
                    "file": f"{fields[3]}:{fields[4]}",
                    "path": fields[5].strip() if len(fields) > 5 else "",
                }
    raise AssertionError(f"address {address:#x} is in no mapping of process {os.getpid()}")


def test_read_only_cache_gathers_writable_channels_last_batches():
    nhwc = np.arange(4 * 5 * 5 * 3, dtype=np.uint8).reshape(4, 5, 5, 3)
    nhwc.flags.writeable = False  # as Ray hands it out
    features = ImageFeatures(nhwc=nhwc)
    batch = features.batch(np.array([2, 0]))
    assert batch.shape == (2, 3, 5, 5) and batch.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batch[0], torch.from_numpy(nhwc[2].copy()).permute(2, 0, 1))
    batch += 1  # a private copy: the shared cache is untouched
    assert features.nhwc[2, 0, 0, 0] == nhwc[2, 0, 0, 0] == 2 * 75
    assert features.pixels.shape == (4, 3, 5, 5) and features.pixels.is_contiguous(memory_format=torch.channels_last)
    assert np.shares_memory(features.pixels.numpy(), nhwc)  # the full view copies nothing
    round_trip = ImageFeatures.from_tensor(features.pixels)
    assert np.array_equal(round_trip.nhwc, nhwc) and round_trip.nhwc.flags.c_contiguous


def test_image_features_refuse_other_layouts():
    with pytest.raises(ValueError, match=r"\(N, S, S, 3\) uint8"):
        ImageFeatures(nhwc=np.zeros((2, 3, 8, 8), dtype=np.uint8))  # NCHW
    with pytest.raises(ValueError, match=r"\(N, S, S, 3\) uint8"):
        ImageFeatures(nhwc=np.zeros((2, 8, 8, 3), dtype=np.float32))


@pytest.fixture(scope="module")
def prepared_faces(shared_data):
    from sweeps.prepare import prepare_data

    cfg = build(
        TrialConfig,
        {
            "task": "image-to-image",
            "model": {"kind": "torchvision", "name": "resnet50", "tiny": True},
            "data": {"format": "image-folder", "path": "att_faces"},
            "split": {"method": "seeded", "by": "label", "eval_fraction": 0.25},
            "eval": {"batch_size": 64},
            "train": {"batch_size": 16, "lr": 1e-3},
        },
        where="test",
    )
    cfg = resolve_paths(cfg, base_dir=shared_data)
    return cfg, prepare_data(cfg)


@pytest.fixture(scope="module")
def ray_two_cpus(ray_local):
    # Workers cannot import the tests folder: ship this module's probe by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.mark.slow  # two Ray workers, one trains
@pytest.mark.ray
def test_two_trials_share_one_read_only_copy_of_the_decoded_images(prepared_faces, ray_two_cpus):
    cfg, prepared = prepared_faces
    pool = prepared.pool.query_features
    assert isinstance(pool, ImageFeatures) and pool.nhwc.shape == (300, 32, 32, 3)
    control = torch.from_numpy(pool.nhwc.copy())  # the same pixels as a torch tensor: the old, private form
    # As tune.with_parameters ships it: one ray.put on the driver, a reference handed to every trial.
    ref = ray.put({"prepared": prepared, "control": control})

    @ray.remote(num_cpus=1)
    def trial(box: dict, *, train: bool) -> dict:
        from sweeps.trial import run_trial

        features = box["prepared"].pool.query_features
        out = {
            "pool": mapping_of(features.nhwc),
            "eval": mapping_of(box["prepared"].eval.query_features.nhwc),
            "writeable": features.nhwc.flags.writeable,
            "owndata": features.nhwc.flags.owndata,
            "control": mapping_of(box["control"].numpy()),
            "control_writeable": box["control"].numpy().flags.writeable,
            "sum": int(features.nhwc.sum(dtype=np.int64)),
            "batch": features.batch(np.array([5, 0, 299])).numpy(),
        }
        if train:  # what a trial does with the data: gathers batches of the shared, read-only cache and trains
            reports = run_trial(cfg, prepared=box["prepared"], size=32, epochs=1, seed=0)
            out["items_seen"] = reports[-1].items_seen
        return out

    first, second = ray.get([trial.remote(ref, train=True), trial.remote(ref, train=False)])
    for seen in (first, second):
        for side in ("pool", "eval"):
            assert seen[side]["shared"] and "plasma" in seen[side]["path"], seen[side]  # the object store's memory
        assert not seen["writeable"] and not seen["owndata"]  # a read-only view, no private copy
        assert seen["sum"] == int(pool.nhwc.sum(dtype=np.int64))
        assert np.array_equal(seen["batch"], pool.batch(np.array([5, 0, 299])).numpy())
        # The control: a torch tensor arrives as a private, writable copy outside the store.
        assert not seen["control"]["shared"] and "plasma" not in seen["control"]["path"] and seen["control_writeable"]
    assert first["pool"]["file"] == second["pool"]["file"]  # both trials map the same store file
    assert first["items_seen"] == 32
