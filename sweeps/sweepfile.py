"""Sweep files: YAML -> a validated ``SweepConfig``, and a ``SweepConfig`` -> the sweep file that gives it back.

A sweep file is one YAML mapping: the trial settings (``task``, ``model``, ``data``, ``split``, ``eval``,
``train``, ``device``) at the top level beside the sweep's own keys (``SWEEP_KEYS``). The dataclasses and
their checks are ``sweeps.config``; this module reads and writes the file. ``to_sweep_file`` is what a run
folder saves as ``config.yaml``: ``roi sweep runs/<name>/config.yaml`` reads it as it is.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from sweeps.config import SweepConfig, TrialConfig
from sweeps.dataclass_io import build, to_dict
from sweeps.errors import ConfigError
from sweeps.storage import check_path_component, is_uri

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
    check_path_component(cfg.name, where=where, field="name")
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but a key given twice in one mapping is an error: YAML parsers keep the last
    duplicate silently, so a second ``train:`` section holding only ``lr`` would drop the first one's keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:  # before super() flattens merge keys (<<), whose keys may be overridden
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key (a list or mapping as key): super() raises PyYAML's own error
                continue
            line = key_node.start_mark.line + 1
            if first is not None:
                raise DuplicateKeyError(key, first, line)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: Any, first: int, second: int):
        super().__init__(f"duplicate key {key!r} at lines {first} and {second}")
        self.key, self.first, self.second = key, first, second


def parse_yaml(text: str, *, where: str | Path) -> Any:
    """YAML text -> Python data; syntax errors and duplicate keys become a ``ConfigError`` naming the line(s)."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except DuplicateKeyError as exc:
        raise ConfigError(
            f"key {exc.key!r} is given twice, at lines {exc.first} and {exc.second} (YAML would keep only the last)",
            where=where,
            fix=f"keep one {exc.key}: and merge the settings of both into it",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise ConfigError(
            f"invalid YAML{line}: {problem}",
            where=where,
            fix="check the indentation and the quoting around that line (strings with ':' or '#' need quotes)",
        ) from None


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
    data = parse_yaml(text, where=path)
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
