"""Bad inputs through the ``roi`` CLI, end to end: one clear message, exit code 2, no traceback, nothing written.

Each case writes a sweep file (``sweeps/configs/smoke.yaml`` with one thing wrong) and, where the data is the
problem, a small data file or folder under ``tmp_path``; then runs ``roi sweep`` / ``roi trial`` /
``roi status`` in this process and asserts: exit code 2; ``error: ...`` on stderr naming the file and/or the
field; a ``fix:`` line; no ``Traceback``; and no partial output (no run folder, records or table). One case
runs the installed ``roi`` in a subprocess to prove that no traceback reaches the terminal. The loaders'
own unit tests are in ``tests/test_data_*.py``, ``tests/test_models_*.py`` and ``tests/test_config.py``;
``docs/reliability.md`` lists them all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sweeps.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "sweeps" / "configs" / "smoke.yaml"


def sweep_file(tmp_path: Path, text: str | None = None, **sections) -> Path:
    """smoke.yaml with ``sections`` replaced (a dict per top-level key; None deletes it), or ``text`` verbatim."""
    path = tmp_path / "sweep.yaml"
    if text is None:
        raw = yaml.safe_load(SMOKE.read_text())
        for key, value in sections.items():
            if value is None:
                raw.pop(key, None)
            elif isinstance(value, dict) and isinstance(raw.get(key), dict):
                raw[key] = {**raw[key], **value}
            else:
                raw[key] = value
        text = yaml.safe_dump(raw, sort_keys=False)
    path.write_text(text)
    return path


def labeled_csv(path: Path, *, labels: int = 10, per_label: int = 4, header: str = "text,label") -> Path:
    rows = [header] + [f"request number {j} about topic {i},topic{i}" for i in range(labels) for j in range(per_label)]
    path.write_text("\n".join(rows) + "\n")
    return path


def csv_data(path: Path) -> dict:
    return {"format": "labeled-csv", "path": str(path), "name": "bad"}


def image_folder(root: Path, *, labels: int = 3, per_label: int = 4) -> Path:
    from PIL import Image

    for i in range(labels):
        (root / f"class{i}").mkdir(parents=True)
        for j in range(per_label):
            Image.new("RGB", (16, 16), (40 * i, 30 * j, 100)).save(root / f"class{i}" / f"img{j}.png")
    return root


IMAGE_MODEL = {"kind": "torchvision", "name": "resnet50", "tiny": True, "image_size": 32}


def run_cli(capsys, tmp_path: Path, *argv: str) -> tuple[int, str, str]:
    storage = tmp_path / "runs"
    full = [*argv, "--storage", str(storage)] if argv[0] in ("sweep", "trial") else list(argv)
    code = main(full)
    out, err = capsys.readouterr()
    return code, out, err


def assert_clear_error(code: int, err: str, *named: str) -> None:
    assert code == 2, err
    assert err.startswith("error: "), err
    assert "Traceback" not in err
    assert "\n  fix: " in err, err
    for text in named:
        assert text in err, f"{text!r} not in {err!r}"


def assert_nothing_written(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.rglob("*")), sorted(runs.rglob("*"))


# ------------------------------------------------------------------------------ the sweep file


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("case", "kwargs", "named"),
    [
        ("invalid YAML", {"text": "name: smoke\nsweep: [unclosed\n"}, ["sweep.yaml", "invalid YAML at line"]),
        (
            "unknown key",
            {"train": {"batch_sise": 8}},
            ["sweep.yaml", "train", "unknown key(s) batch_sise", "allowed keys here"],
        ),
        ("negative size", {"sweep": {"sizes": [32, -5]}}, ["sweep.yaml", "sweep.sizes must be >= 0"]),
        ("zero batch size", {"train": {"batch_size": 0}}, ["sweep.yaml", "train.batch_size must be >= 2"]),
        (
            "zero size (epochs experiment)",
            {"sweep": {"experiment": "epochs", "size": 0, "sizes": []}},
            ["sweep.yaml", "sweep.size must be >= 1"],
        ),
        ("epochs 0", {"sweep": {"epochs": 0}}, ["sweep.yaml", "sweep.epochs", "must be >= 1"]),
        ("missing sweep section", {"sweep": None}, ["sweep.yaml", "sweep: is required", "add a sweep: section"]),
        ("wrong type", {"resources": {"cpus": "two"}}, ["sweep.yaml", "resources.cpus", "expected a number"]),
        (
            "hub id without a namespace",
            {"data": {"format": "hub", "path": "", "hub_id": "clinc_oos"}},
            ["sweep.yaml: data.hub_id: 'clinc_oos' has no namespace", "set data.hub_id: clinc/clinc_oos"],
        ),
        (
            "delimiter of two characters",
            {"data": {"delimiter": ";;"}},
            ["sweep.yaml: data.delimiter: ';;' is not a single-character delimiter"],
        ),
        (
            # YAML keeps the last of two keys silently: the first train: section (batch size 16) was dropped
            "a section given twice",
            {"text": SMOKE.read_text() + "train:\n  lr: 5.0\n"},
            ["sweep.yaml", "key 'train' is given twice, at lines 16 and 27", "merge"],
        ),
        ("a key given twice", {"text": "name: a\nname: b\n"}, ["sweep.yaml", "key 'name'", "lines 1 and 2"]),
        ("negative lr", {"train": {"lr": -0.001}}, ["sweep.yaml", "train.lr must be > 0, got -0.001"]),
        ("NaN lr", {"text": SMOKE.read_text().replace("lr: 1.0e-3", "lr: .nan")}, ["train.lr", "got nan"]),
        ("infinite lr", {"train": {"lr": "inf"}}, ["train.lr", "expected a finite number, got 'inf'"]),
        ("run name ..", {"name": ".."}, ["sweep.yaml: name: '..' cannot name a folder", "one path component"]),
        ("run name with a separator", {"name": "a/b"}, ["sweep.yaml: name: 'a/b' cannot name a folder"]),
        ("run name with a leading dot", {"name": ".hidden"}, ["'.hidden' cannot name a folder", "no leading dot"]),
        # found by the full fuzz tier: a 6,000-character name reached the file system (OSError: File name too long)
        (
            "run name too long",
            {"name": "a" * 6000},
            ["name: a name of 6,000 characters cannot name a folder", "at most 100"],
        ),
        (
            "a package model that is not on the list",
            {"model": {"name": "package:evil_weights", "tiny": False}},
            ["sweep.yaml: model.trust_package", "package:evil_weights would import", "model.trust_package: true"],
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_sweep_file(capsys, tmp_path, case, kwargs, named):
    path = sweep_file(tmp_path, **kwargs)
    code, out, err = run_cli(capsys, tmp_path, "sweep", str(path))
    assert_clear_error(code, err, *named)
    assert out == ""
    assert_nothing_written(tmp_path)


@pytest.mark.timeout(60)
def test_missing_sweep_file(capsys, tmp_path):
    code, out, err = run_cli(capsys, tmp_path, "sweep", str(tmp_path / "nope.yaml"))
    assert_clear_error(code, err, "nope.yaml", "file not found")
    assert_nothing_written(tmp_path)


@pytest.mark.timeout(60)
def test_sweep_file_that_is_not_utf8(capsys, tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_bytes(b"\xff\xfe name: smoke\n")  # e.g. saved as UTF-16 by an editor
    code, out, err = run_cli(capsys, tmp_path, "sweep", str(path))
    assert_clear_error(code, err, "sweep.yaml", "not UTF-8 text", "save the file as UTF-8")
    assert_nothing_written(tmp_path)


def _ray_must_not_start(monkeypatch):
    import ray

    def init(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)


@pytest.mark.timeout(60)
def test_storage_that_cannot_be_written_is_refused_before_ray(capsys, tmp_path, monkeypatch):
    _ray_must_not_start(monkeypatch)
    blocker = tmp_path / "results.yaml"
    blocker.write_text("a file where the results folder would go\n")
    code = main(["sweep", str(sweep_file(tmp_path)), "--storage", str(blocker)])
    err = capsys.readouterr().err
    assert_clear_error(code, err, str(blocker), "is a file, not a folder", "--storage")


@pytest.mark.timeout(60)
def test_no_cluster_at_the_address(capsys, tmp_path, monkeypatch):
    import ray

    def init(*args, address=None, **kwargs):
        raise ConnectionError("Could not find any running Ray instance. Please specify the one to connect to.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    code, out, err = run_cli(capsys, tmp_path, "sweep", str(sweep_file(tmp_path)), "--address", "auto")
    assert_clear_error(code, err, "--address", "no Ray cluster at 'auto'", "ray up cluster.yaml")
    assert_nothing_written(tmp_path)


# ------------------------------------------------------------------------------ the data


def _malformed_csv(tmp_path: Path) -> tuple[dict, list[str]]:
    f = labeled_csv(tmp_path / "items.csv")
    f.write_text(f.read_text() + "hello, world,topic1\n")
    return csv_data(f), ["items.csv", "line 42: expected 2 fields, found 3", "quote fields"]


def _malformed_jsonl(tmp_path: Path) -> tuple[dict, list[str]]:
    f = tmp_path / "items.jsonl"
    f.write_text('{"text": "turn on the light", "label": "on"}\n{"text": "turn off", "label": \n')
    return {"format": "labeled-jsonl", "path": str(f)}, ["items.jsonl", "line 2: invalid JSON", "JSON Lines"]


def _malformed_json(tmp_path: Path) -> tuple[dict, list[str]]:
    f = tmp_path / "data_full.json"
    f.write_text('{"train": [["hi", "greet"], ["hello", "greet"]], "test": [["yo", "gre')  # truncated
    return {"format": "clinc150", "path": str(f)}, ["data_full.json", "invalid JSON at line 1", "truncated"]


def _missing_label_column(tmp_path: Path) -> tuple[dict, list[str]]:
    f = labeled_csv(tmp_path / "items.csv", header="text,intent")
    return csv_data(f), ["items.csv", "data.label_column", "no column 'label'", "'intent'"]


def _missing_text_column(tmp_path: Path) -> tuple[dict, list[str]]:
    f = tmp_path / "items.jsonl"
    f.write_text("".join(json.dumps({"utterance": f"t{i}", "label": f"l{i % 3}"}) + "\n" for i in range(12)))
    return {"format": "labeled-jsonl", "path": str(f)}, ["items.jsonl", "data.text_column", "no key 'text'"]


def _missing_pair_column(tmp_path: Path) -> tuple[dict, list[str]]:
    f = tmp_path / "pairs.jsonl"
    f.write_text("".join(json.dumps({"query": f"q{i}", "doc": f"d{i}"}) + "\n" for i in range(12)))
    return {"format": "pairs-jsonl", "path": str(f)}, ["pairs.jsonl", "data.document_column", "no key 'document'"]


def _empty_dataset(tmp_path: Path) -> tuple[dict, list[str]]:
    f = tmp_path / "items.csv"
    f.write_text("text,label\n")
    return csv_data(f), ["items.csv", "the file has no data rows"]


def _single_example_label(tmp_path: Path) -> tuple[dict, list[str]]:
    f = labeled_csv(tmp_path / "items.csv")
    f.write_text(f.read_text() + "a lonely request,loner\n")
    return {**csv_data(f), "singletons": "error"}, [
        "items.csv",
        "data.label_column",
        "1 label(s) have a single item ('loner')",
    ]


def _semicolon_csv_with_a_wrong_column(tmp_path: Path) -> tuple[dict, list[str]]:
    f = labeled_csv(tmp_path / "items.csv", header="text;intent")
    f.write_text(f.read_text().replace(",topic", ";topic"))
    return csv_data(f), [
        "items.csv",
        "data.label_column",
        "no column 'label'; the file has columns 'text', 'intent' (read as semicolon-separated, detected)",
    ]


def _one_label(tmp_path: Path) -> tuple[dict, list[str]]:
    # every metric was 1.0000 at the baseline and at every size, and the report drew ROI curves from it
    f = labeled_csv(tmp_path / "items.csv", labels=1, per_label=40)
    return csv_data(f), ["items.csv", "data.label_column", "every item has the label 'topic0'", "at least two labels"]


def _a_text_of_one_megabyte(tmp_path: Path) -> tuple[dict, list[str]]:
    f = labeled_csv(tmp_path / "items.csv")
    f.write_text(f.read_text() + "x" * 1_000_000 + ",topic1\n")
    return csv_data(f), ["items.csv", "line 42: a field is longer than 131,072 characters", "shorten the text"]


def _missing_data_file(tmp_path: Path) -> tuple[dict, list[str]]:
    return csv_data(tmp_path / "absent.csv"), ["absent.csv", "data.path", "not found"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "make",
    [
        _malformed_csv,
        _malformed_jsonl,
        _malformed_json,
        _missing_label_column,
        _missing_text_column,
        _missing_pair_column,
        _empty_dataset,
        _single_example_label,
        _semicolon_csv_with_a_wrong_column,
        _one_label,
        _a_text_of_one_megabyte,
        _missing_data_file,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_bad_data_file(capsys, tmp_path, make):
    data, named = make(tmp_path)
    path = sweep_file(tmp_path, data=data)
    code, out, err = run_cli(capsys, tmp_path, "sweep", str(path))
    assert_clear_error(code, err, *named)
    assert out == ""
    assert_nothing_written(tmp_path)


@pytest.mark.timeout(120)
def test_more_items_than_the_pool_holds_is_refused_before_anything_runs(capsys, tmp_path):
    data = csv_data(labeled_csv(tmp_path / "items.csv"))  # 40 items, 2 of each label held out: a pool of 20
    path = sweep_file(tmp_path, data=data, sweep={"sizes": [16, 500]})
    code, out, err = run_cli(capsys, tmp_path, "sweep", str(path))
    assert_clear_error(
        code,
        err,
        "items.csv",
        "sweep.sizes",
        "asked for 500 training items but the training pool holds 20",
        "at most 20",
    )
    assert_nothing_written(tmp_path)
    # roi trial: the same check before the baseline runs (it used to write the baseline's record first).
    code, out, err = run_cli(capsys, tmp_path, "trial", str(path), "--size", "500")
    assert_clear_error(code, err, "items.csv", "--size", "asked for 500 training items")
    assert_nothing_written(tmp_path)


@pytest.mark.slow  # 23 s: waits out the hub client without a network
@pytest.mark.timeout(60)
def test_unknown_model_id_without_network(capsys, tmp_path):
    data = csv_data(labeled_csv(tmp_path / "items.csv"))
    path = sweep_file(tmp_path, data=data, model={"name": "no-such-org/no-such-model-4711", "tiny": False})
    code, out, err = run_cli(capsys, tmp_path, "sweep", str(path))
    assert_clear_error(
        code,
        err,
        "model.name",
        "no-such-org/no-such-model-4711",
        "hub is unreachable or does not have it",
        "huggingface-cli download",
    )
    assert_nothing_written(tmp_path)


@pytest.mark.timeout(120)
def test_corrupt_image(capsys, tmp_path):
    folder = image_folder(tmp_path / "faces")
    bad = folder / "class1" / "img2.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    path = sweep_file(
        tmp_path,
        task="image-to-image",
        model=IMAGE_MODEL,
        data={"format": "image-folder", "path": str(folder), "name": "faces"},
        sweep={"sizes": [4]},
        train={"batch_size": 8},
    )
    code, out, err = run_cli(capsys, tmp_path, "sweep", str(path))
    assert_clear_error(code, err, str(bad), "cannot decode image", "replace the file with a valid image")
    assert_nothing_written(tmp_path)


@pytest.mark.timeout(60)
def test_unreadable_folder(capsys, tmp_path, monkeypatch):
    folder = image_folder(tmp_path / "faces")
    (folder / "class2").chmod(0)

    def walk_denied(top, onerror=None, **kwargs):  # we run as root in CI, where chmod 0 does not stop reads
        if Path(top).name == "class2":
            onerror(PermissionError(13, "Permission denied", str(top)))
            return
        yield from real_walk(top, onerror=onerror, **kwargs)

    import os

    real_walk = os.walk
    monkeypatch.setattr("sweeps.data.files.os.walk", walk_denied)
    path = sweep_file(
        tmp_path,
        task="image-to-image",
        model=IMAGE_MODEL,
        data={"format": "image-folder", "path": str(folder), "name": "faces"},
    )
    try:
        code, out, err = run_cli(capsys, tmp_path, "sweep", str(path))
    finally:
        (folder / "class2").chmod(0o755)
    assert_clear_error(code, err, str(folder), "class2", "Permission denied", "make the folder readable")
    assert_nothing_written(tmp_path)


# ------------------------------------------------------------------------------ command-line values


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--size", "-3"], ["--size", "must be >= 0, got -3"]),
        (["--size", "32", "--epochs", "-1"], ["--epochs", "must be >= 0, got -1"]),
        (["--size", "32", "--epochs", "0"], ["--epochs", "is the pretrained baseline", "--epochs 1 or more"]),
    ],
    ids=["negative size", "negative epochs", "epochs 0"],
)
def test_bad_trial_arguments(capsys, tmp_path, argv, named):
    code, out, err = run_cli(capsys, tmp_path, "trial", str(SMOKE), *argv)
    assert_clear_error(code, err, *named)
    assert out == ""
    assert_nothing_written(tmp_path)


# ------------------------------------------------------------------------------ a results folder of another version


def _old_run_folder(tmp_path: Path, *, record_version=1, config_extra: dict | None = None) -> tuple[Path, Path]:
    from sweeps.dataclass_io import to_dict
    from sweeps.sweepfile import load_sweep_config

    path = sweep_file(tmp_path)
    run_dir = tmp_path / "runs" / "smoke"
    (run_dir / "records").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(
        yaml.safe_dump({**to_dict(load_sweep_config(path)), **(config_extra or {})}, sort_keys=False)
    )
    (run_dir / "records" / "n32-e1-s0-0123456789.json").write_text(
        json.dumps({"version": record_version, "trial_id": "n32-e1-s0-0123456789", "cells": {"n": 32}})
    )
    return path, run_dir


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.timeout(60)
def test_results_folder_of_an_incompatible_version_is_refused(capsys, tmp_path):
    path, run_dir = _old_run_folder(tmp_path)
    before = _listing(tmp_path / "runs")
    record = run_dir / "records" / "n32-e1-s0-0123456789.json"
    for argv in (["sweep", str(path), "--resume"], ["sweep", str(path)]):
        code, out, err = run_cli(capsys, tmp_path, *argv)
        assert_clear_error(code, err, str(record), "format version 1", "reads version 2", "new name")
        assert out == ""
    code, out, err = run_cli(capsys, tmp_path, "status", str(run_dir))
    assert_clear_error(code, err, str(record), "format version 1", "reads version 2")
    assert out == ""
    assert _listing(tmp_path / "runs") == before  # nothing deleted, re-run or added


@pytest.mark.timeout(60)
def test_results_folder_whose_config_another_version_wrote_is_refused_by_status(capsys, tmp_path):
    from sweeps.results import RECORD_VERSION

    _, run_dir = _old_run_folder(tmp_path, record_version=RECORD_VERSION, config_extra={"budget_hours": 3})
    (run_dir / "records" / "n32-e1-s0-0123456789.json").unlink()
    code, out, err = run_cli(capsys, tmp_path, "status", str(run_dir))
    assert_clear_error(code, err, str(run_dir / "config.yaml"), "does not fit this version", "budget_hours")


# ------------------------------------------------------------------------------ the real command, in a subprocess


@pytest.mark.timeout(120)
def test_installed_roi_prints_no_traceback(tmp_path):
    roi = Path(sys.executable).parent / "roi"
    command = [str(roi)] if roi.exists() else [sys.executable, "-m", "sweeps"]
    path = sweep_file(tmp_path, data=csv_data(labeled_csv(tmp_path / "items.csv", header="text,intent")))
    proc = subprocess.run(
        [*command, "sweep", str(path), "--storage", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.stderr.startswith("error: ") and "data.label_column" in proc.stderr and "\n  fix: " in proc.stderr
    assert proc.stdout == ""
    assert_nothing_written(tmp_path)


@pytest.mark.timeout(120)
def test_trial_into_a_run_folder_of_other_settings_is_refused(capsys, tmp_path):
    code, out, err = run_cli(capsys, tmp_path, "trial", str(sweep_file(tmp_path)), "--size", "16", "--no-baseline")
    assert code == 0, err
    records = sorted((tmp_path / "runs" / "smoke" / "records").glob("*.json"))
    assert len(records) == 1
    changed = sweep_file(tmp_path, train={"lr": 0.5})
    code, out, err = run_cli(capsys, tmp_path, "trial", str(changed), "--size", "16", "--no-baseline")
    assert_clear_error(code, err, "config.yaml", "train.lr: 0.001 -> 0.5")
    assert sorted((tmp_path / "runs" / "smoke" / "records").glob("*.json")) == records  # nothing added


@pytest.mark.timeout(120)
def test_moved_data_keeps_its_trials_and_edited_data_is_refused(capsys, tmp_path):
    # The same CSV under two checkouts (a/ and b/, relative data paths): the same trials, so the second
    # `roi trial` finds its record. Then b's file is edited: its trials would be other ones, refused in this folder.
    for side in ("a", "b"):
        (tmp_path / side).mkdir()
        labeled_csv(tmp_path / side / "items.csv")
        (tmp_path / side / "sweep.yaml").write_text(
            sweep_file(
                tmp_path / side, data={"format": "labeled-csv", "path": "items.csv", "name": "items"}
            ).read_text()
        )
    argv = ("--size", "16", "--no-baseline")
    code, out, err = run_cli(capsys, tmp_path, "trial", str(tmp_path / "a" / "sweep.yaml"), *argv)
    assert code == 0, err
    records = sorted((tmp_path / "runs" / "smoke" / "records").glob("*.json"))
    before = [p.read_bytes() for p in records]
    code, out, err = run_cli(capsys, tmp_path, "trial", str(tmp_path / "b" / "sweep.yaml"), *argv)
    assert code == 0, err
    after = sorted((tmp_path / "runs" / "smoke" / "records").glob("*.json"))
    assert after == records and [p.read_bytes() for p in after] == before  # found, not re-run

    edited = tmp_path / "b" / "items.csv"
    edited.write_text(edited.read_text().replace("request number 0 about topic 0", "a new request about topic 0"))
    code, out, err = run_cli(capsys, tmp_path, "trial", str(tmp_path / "b" / "sweep.yaml"), *argv)
    assert_clear_error(code, err, str(edited), "the data changed", "new name")
    assert sorted((tmp_path / "runs" / "smoke" / "records").glob("*.json")) == records


@pytest.mark.timeout(120)
def test_trial_of_size_0_evaluates_the_baseline_once(capsys, tmp_path):
    code, out, err = run_cli(capsys, tmp_path, "trial", str(sweep_file(tmp_path)), "--size", "0")
    assert code == 0, err
    assert out.count("baseline:") == 1
    records = list((tmp_path / "runs" / "smoke" / "records").glob("*.json"))
    assert [p.name.split("-")[:2] for p in records] == [["n0", "e0"]]
