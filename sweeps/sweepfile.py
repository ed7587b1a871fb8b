"""Sweep files: YAML -> a validated ``SweepConfig``, and a ``SweepConfig`` -> the sweep file that gives it back.

A sweep file is one YAML mapping: the trial settings (``task``, ``model``, ``data``, ``split``, ``eval``,
``train``, ``device``) at the top level beside the sweep's own keys (``SWEEP_KEYS``). The dataclasses and
their checks are ``sweeps.config``; this module reads and writes the file. ``to_sweep_file`` is what a run
folder saves as ``config.yaml``: ``roi sweep runs/<name>/config.yaml`` reads it as it is.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

from sweeps.config import SweepConfig, TrialConfig, build, to_dict
from sweeps.errors import ConfigError
from sweeps.storage import is_uri

# The keys of a sweep file that are not trial settings; every other top-level key is one of TrialConfig.
SWEEP_KEYS = ("name", "sweep", "resources", "storage", "max_failures", "trial_timeout_s", "cost", "tracking")


def load_sweep_config(path: str | Path) -> SweepConfig:
    """Read and validate a sweep file; relative data paths resolve against the file's folder."""
    path = Path(path)
    raw = read_yaml(path)
    where = str(path)
    return sweep_from_dict(raw, where=where, base_dir=path.resolve().parent, default_name=path.stem)


def sweep_from_dict(raw: dict[str, Any], *, where: str, base_dir: Path, default_name: str) -> SweepConfig:
    """Validate a parsed sweep file; relative data paths resolve against ``base_dir``."""
    trial_raw = {k: v for k, v in raw.items() if k not in SWEEP_KEYS}
    sweep_raw = {k: v for k, v in raw.items() if k in SWEEP_KEYS}
    sweep_raw.setdefault("name", default_name)
    if "sweep" not in sweep_raw:
        raise ConfigError(
            "is required", where=where, field="sweep", fix="add a sweep: section (experiment, sizes, seeds)"
        )
    trial = build(TrialConfig, trial_raw, where=where)
    trial = resolve_paths(trial, base_dir=base_dir)
    cfg = build(SweepConfig, {**sweep_raw, "trial": to_dict(trial)}, where=where)
    if not re.fullmatch(r"[A-Za-z0-9._-]+", cfg.name):
        raise ConfigError(
            f"{cfg.name!r} is not a valid run name",
            where=where,
            field="name",
            fix="use letters, digits, '.', '_' and '-'",
        )
    return cfg


def resolve_paths(trial: TrialConfig, *, base_dir: Path) -> TrialConfig:
    """Make data paths absolute (relative to ``base_dir``) and fill in the dataset name."""
    data = trial.data
    path = data.path
    if path and "://" not in path and not Path(path).is_absolute():
        path = str((base_dir / path).resolve())
    image_root = data.image_root
    if image_root and not Path(image_root).is_absolute():
        image_root = str((base_dir / image_root).resolve())
    name = data.name or (Path(path).stem if path else data.hub_id.replace("/", "_"))
    return dataclasses.replace(trial, data=dataclasses.replace(data, path=path, image_root=image_root, name=name))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML mapping, turning I/O and syntax problems into ``ConfigError``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", where=path, fix="check the path of the config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", where=path, fix="save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", where=path) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"invalid YAML{line}: {getattr(exc, 'problem', exc)}", where=path) from None
    if not isinstance(data, dict):
        raise ConfigError("the file must hold a YAML mapping of sections", where=path)
    return data


def saved_sweep(raw: Any, *, where: str) -> SweepConfig:
    """The ``SweepConfig`` of a run folder's ``config.yaml``: a sweep file (``to_sweep_file``), or the nested
    ``trial:`` form that run folders written before config.yaml became a sweep file hold."""
    if isinstance(raw, dict) and isinstance(raw.get("trial"), dict):
        return build(SweepConfig, raw, where=where)
    if not isinstance(raw, dict):
        raise ConfigError("the file must hold a YAML mapping of sections", where=where)
    # its data paths are absolute already (``resolve_paths`` ran when the sweep file was first read)
    return sweep_from_dict(raw, where=where, base_dir=Path.cwd(), default_name=str(raw.get("name", "")))


def to_sweep_file(cfg: SweepConfig) -> dict[str, Any]:
    """The sweep file of ``cfg`` (trial settings at the top level), for ``config.yaml`` in its run folder.

    Data paths are already absolute (``resolve_paths``); a local ``storage`` is made absolute too, so the
    file names its own run folder wherever it is read from.
    """
    out = to_dict(cfg)
    trial = out.pop("trial")
    if not is_uri(cfg.storage):
        out["storage"] = str(Path(cfg.storage).expanduser().resolve())
    return {"name": out.pop("name"), **trial, **out}
