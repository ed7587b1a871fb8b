"""The data stage: load a labeled dataset (``load_data``), hold out an evaluation set, order the training pool.

``load_data`` dispatches on ``data.format`` to the loaders in ``files`` (local files), ``hub`` (Hugging Face
hub) and ``packaged`` (data shipped in pip packages); ``split`` holds the evaluation split, the nested
training order and the per-epoch batches. See ``docs/datasets.md`` for every format.
"""

from __future__ import annotations

from pathlib import Path

from sweeps.config import DataConfig
from sweeps.data.assemble import sample_index
from sweeps.data.items import LabeledItems, Modality, Pairs, RetrievalData
from sweeps.errors import DataError

__all__ = ["LabeledItems", "Modality", "Pairs", "RetrievalData", "load_data", "MAX_ITEMS_SEED"]

MAX_ITEMS_SEED = 0  # data.max_items draws the same sample in every run and sweep


def load_data(cfg: DataConfig, *, base_dir: Path | None = None) -> RetrievalData:
    """Load ``cfg`` as ``LabeledItems`` or ``Pairs``.

    Args:
        cfg: the data section of a sweep file.
        base_dir: the config file's folder; relative ``data.path``/``data.image_root`` resolve against it
            (None: the current directory, for configs whose paths ``sweepfile.resolve_paths`` made absolute).

    ``data.max_items`` keeps a seeded sample (seed ``MAX_ITEMS_SEED``) of that many items; in labeled data,
    labels the sample leaves with one item are dropped, so slightly fewer may remain.
    """
    from sweeps.data import files, tables  # local imports keep `import sweeps.data` light for the analysis half

    path = _resolve(cfg.path, base_dir)
    fmt = cfg.format
    if fmt == "hub":
        from sweeps.data.hub import load_hub

        return load_hub(cfg)  # samples max_items itself, before writing any image
    if fmt == "home-assistant-intents":
        from sweeps.data.packaged import load_home_assistant_intents

        data: RetrievalData = load_home_assistant_intents(cfg)
        if cfg.exclude_labels:
            from sweeps.data.assemble import make_labeled

            data = make_labeled(
                data.items,
                data.labels,
                modality="text",
                source=data.source,
                exclude_labels=cfg.exclude_labels,
                singletons=cfg.singletons,
            )
        return _limit(data, cfg.max_items)
    if path is None:
        raise DataError(
            f"data.format {fmt} reads a file or folder, but data.path is not set",
            field="data.path",
            fix="set data.path",
        )
    if fmt == "clinc150":
        data = files.load_clinc150(path, exclude_labels=cfg.exclude_labels, singletons=cfg.singletons)
    elif fmt in ("labeled-csv", "labeled-jsonl"):
        data = tables.load_labeled_table(
            path,
            kind="csv" if fmt == "labeled-csv" else "jsonl",
            text_column=cfg.text_column,
            label_column=cfg.label_column,
            exclude_labels=cfg.exclude_labels,
            singletons=cfg.singletons,
            delimiter=cfg.delimiter,
        )
    elif fmt in ("pairs-csv", "pairs-jsonl"):
        data = tables.load_pairs_table(
            path,
            kind="csv" if fmt == "pairs-csv" else "jsonl",
            query_column=cfg.query_column,
            document_column=cfg.document_column,
            delimiter=cfg.delimiter,
        )
    elif fmt == "coco-captions":
        data = files.load_coco_captions(path, image_root=_resolve(cfg.image_root, base_dir))
    elif fmt == "caption-clusters":
        data = files.load_caption_clusters(path, exclude_labels=cfg.exclude_labels, singletons=cfg.singletons)
    elif fmt == "image-folder":
        data = files.load_image_folder(path, exclude_labels=cfg.exclude_labels, singletons=cfg.singletons)
    else:  # config validation makes this unreachable for files it built
        raise DataError(f"unknown format {fmt!r}", field="data.format", fix="see docs/datasets.md for the formats")
    return _limit(data, cfg.max_items)


def _resolve(path: str, base_dir: Path | None) -> Path | None:
    if not path:
        return None
    p = Path(path).expanduser()
    return p if p.is_absolute() or base_dir is None else Path(base_dir) / p


def _limit(data: RetrievalData, max_items: int | None) -> RetrievalData:
    labels = data.labels if isinstance(data, LabeledItems) else None
    keep = sample_index(len(data), max_items, labels=labels, seed=MAX_ITEMS_SEED)
    return data if len(keep) == len(data) else data.subset(keep)
