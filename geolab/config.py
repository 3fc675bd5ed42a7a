"""All configuration dataclasses of geolab live here."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

from geolab.argtypes import (
    ARCH_CHOICES,
    BAD_IMAGE_CHOICES,
    DEVICE_CHOICES,
    STRATEGY_CHOICES,
    ConfigError,
    add_dataclass_arguments,
    check_fields,
    dataclass_from_args,
    non_negative_float,
    non_negative_int,
    option,
    positive_float,
    positive_int,
    roles,
)

if TYPE_CHECKING:  # geolab.positives imports pandas, which the command line's start-up does without
    from geolab.positives import Strategy

# --------------------------------------------------------------------------- engine
#: Training methods of the paper, one loop for all (see :mod:`geolab.train`).
Method = Literal["supervised", "geoloc", "moco", "moco-geo", "moco-tp", "moco-tp-geo"]
METHODS: tuple[Method, ...] = get_args(Method)


@dataclass(frozen=True)
class MethodParts:
    """What one training method is made of (the one place that reads a method's name).

    Attributes:
        contrastive: MoCo-v2: query and key encoders, the memory-bank InfoNCE loss.
        temporal: the positive key is another image of the same location (temporal positive),
            not another augmentation of the same image.
        geo: a geo head predicts the geo cluster of the image's lat/lon (cross-entropy loss).
        labels: a classifier on the category labels (the supervised baseline).
    """

    contrastive: bool
    temporal: bool
    geo: bool
    labels: bool


#: Each method of :data:`METHODS` as its parts.
METHOD_PARTS: dict[str, MethodParts] = {
    "supervised": MethodParts(contrastive=False, temporal=False, geo=False, labels=True),
    "geoloc": MethodParts(contrastive=False, temporal=False, geo=True, labels=False),
    "moco": MethodParts(contrastive=True, temporal=False, geo=False, labels=False),
    "moco-geo": MethodParts(contrastive=True, temporal=False, geo=True, labels=False),
    "moco-tp": MethodParts(contrastive=True, temporal=True, geo=False, labels=False),
    "moco-tp-geo": MethodParts(contrastive=True, temporal=True, geo=True, labels=False),
}



def pair_strategy(method: str, strategy: str | None = None) -> Strategy:
    """``strategy``, else the one place that says a method's default temporal positive strategy.

    ``"any-other"`` (another image of the location) for the temporal methods, else ``"same-image"`` (MoCo-v2).
    """
    if strategy is not None:
        return cast("Strategy", strategy)
    parts = METHOD_PARTS.get(method)
    return "any-other" if parts is not None and parts.temporal else "same-image"


#: The untrained baseline of every comparison: the backbone with its random initialisation
#: (seeded), probed like the pre-trained ones. Not a training method; a result record's method.
RANDOM_INIT: Literal["random-init"] = "random-init"
#: A result record's method: a training method or :data:`RANDOM_INIT`.
RecordMethod = Literal[Method, "random-init"]

#: Temperature of the official GASSL training commands (``--moco-t 0.02``).
GASSL_OFFICIAL_TEMPERATURE = 0.02
#: Temperature of MoCo-v2 (Chen et al. 2020), geolab's default.
MOCO_V2_TEMPERATURE = 0.2


@dataclass
class PretrainConfig:
    """Everything one pre-training run needs; ``geolab pretrain`` and the notebooks build one.

    Defaults are the paper's (ResNet-50, batch 256, SGD lr 0.03, momentum 0.9, weight decay
    1e-4, cosine schedule, 200 epochs, memory bank 65536, K=100 geo clusters, alpha=beta=1),
    except the temperature: 0.2 as in MoCo-v2; the official GASSL commands used 0.02
    (:data:`GASSL_OFFICIAL_TEMPERATURE`). Quick CPU runs override arch (resnet18), image size
    (32-64 px), epochs and the memory bank (1024-4096).

    Attributes:
        method: one of :data:`METHODS`.
        manifest: the manifest file (Parquet or CSV).
        out: run folder (checkpoints, ``metrics.jsonl``, ``config.json``).
        arch: backbone, ``resnet18``, ``resnet34`` or ``resnet50`` (paper: resnet50).
        image_size: side of the training crops in pixels (paper: 224).
        epochs: number of passes over the training split (paper: 200).
        batch_size: global batch size, split evenly over DDP ranks (paper: 256).
        lr: base SGD learning rate for the whole batch, not rescaled (paper: 0.03).
        momentum: SGD momentum (0.9).
        weight_decay: SGD weight decay (1e-4).
        cosine: cosine learning-rate decay over all steps (paper: on).
        warmup_epochs: linear warm-up from 0 over this many epochs, then the decay (0: none, as the paper).
        temperature: InfoNCE temperature (0.2 MoCo-v2; 0.02 in the official GASSL commands).
        queue_size: memory bank size, the MoCo queue of negative keys (paper: 65536).
        proj_dim: output size of the MoCo projection head (128).
        head_bn: BatchNorm in the projection head's layers, as MoCo v3 (MoCo-v2: none); short runs then start
            off a plateau where every projection points the same way (:class:`geolab.models.MoCoModel`).
        ema_momentum: momentum of the key encoder update (MoCo: 0.999).
        geo_k: number of geo clusters for the geo loss and ``geoloc`` (paper: 100).
        alpha: weight of the contrastive loss (1).
        beta: weight of the geo cross-entropy (1).
        symmetric: both views of a pair are query and key (``InfoNCE(q1, k2)``, ``InfoNCE(q2, k1)``, both keys
            enqueued, geo loss on both queries): twice the signal per step (MoCo v3, BYOL; paper: off).
        strategy: temporal positive sampling strategy; ``None``: the method's default (:func:`pair_strategy`).
        seed: seeds everything; a CPU run with the same seed is reproducible.
        num_workers: DataLoader worker processes.
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``.
        amp: bf16 autocast (``None`` = on for CUDA, off on the CPU; ``True`` also on the CPU).
        channels_last: ``None`` = on for CUDA, off on CPU.
        compile: ``torch.compile`` the encoders (``nn.Module.compile``, state-dict keys unchanged).
        bn_splits: BatchNorm splits on one device (shuffle BN's stand-in); 0 = automatic (1 under DDP).
        knn_every: run the kNN monitor every this many epochs (0 = never).
        knn_k: neighbours of the kNN monitor (20).
        knn_max_images: at most this many images per split in the kNN monitor.
        log_every: write a step record to ``metrics.jsonl`` every this many steps.
        max_steps_per_epoch: cap on steps per epoch (``None`` = the whole split).
        train_split: split used for training.
        val_split: split used by the kNN monitor (as queries; the train split is the bank).
        resume: continue from ``out/checkpoints/last.pt`` if it exists.
        progress: show a tqdm progress bar.
        tensorboard: also write TensorBoard events when ``tensorboard`` is installed.
        dist_timeout_s: timeout of DDP collectives: a dead rank ends the job with an error, not a hang.
        on_bad_image: ``"skip"`` or ``"fail"`` (see :mod:`geolab.datasets`).
        crop_min_scale: smallest area of MoCo-v2's random resized crop (MoCo-v2: 0.2).
        jitter_strength: multiplies MoCo-v2's colour jitter (0.4, 0.4, 0.4, 0.1; MoCo-v2: 1).
        preload: decode the training images once into memory and augment whole batches of tensors
            (:class:`geolab.transforms.BatchMoCoV2View`): several times faster for small sets such as geoworld.
    """

    # Each field is an option of ``geolab pretrain`` (geolab.argtypes.add_dataclass_arguments) and declares its
    # role once (geolab.argtypes.Role): its part, and learns=False where it does not change the learned weights.
    method: Method = option("moco", required=True, choices=METHODS, part="run")
    manifest: str | Path = option("", "manifest (Parquet or CSV)", required=True, part="run")
    out: str | Path = option("runs/pretrain", "run folder (checkpoints, metrics.jsonl)", required=True, part="run",
                             learns=False)
    arch: str = option("resnet50", "a key of geolab.models.ARCHS (default %(default)s)", choices=ARCH_CHOICES,
                       metavar="ARCH", part="model")
    image_size: int = option(224, type=positive_int, part="data")
    epochs: int = option(200, type=positive_int, part="optimiser")
    batch_size: int = option(256, "global batch (split over DDP ranks)", type=positive_int, part="optimiser")
    lr: float = option(0.03, part="optimiser")
    momentum: float = option(0.9, "SGD momentum (0.9)", part="optimiser")
    weight_decay: float = option(1e-4, part="optimiser")
    cosine: bool = option(True, "constant learning rate", part="optimiser")
    warmup_epochs: float = option(0.0, "linear learning-rate warm-up over this many epochs (0 = none)",
                                  type=non_negative_float, part="optimiser")
    temperature: float = option(MOCO_V2_TEMPERATURE, "0.2 MoCo-v2 (default); 0.02 official GASSL", type=positive_float,
                                part="loss")
    queue_size: int = option(65536, "memory bank size (paper 65536)", type=positive_int, part="loss")
    proj_dim: int = option(128, "output size of the MoCo projection head (128)", type=positive_int, part="model")
    head_bn: bool = option(False, "BatchNorm in the projection head's layers (MoCo v3's head; MoCo-v2: none)",
                           part="model")
    ema_momentum: float = option(0.999, "key encoder momentum (0.999)", part="optimiser")
    geo_k: int = option(100, "geo clusters (paper 100)", type=positive_int, part="model")
    alpha: float = option(1.0, "weight of the contrastive loss", part="loss")
    beta: float = option(1.0, "weight of the geo loss", part="loss")
    symmetric: bool = option(False, "symmetric loss: both views of a pair are queries (MoCo v3, BYOL)", part="loss")
    strategy: str | None = option(None, "temporal positive strategy, one of geolab.positives.STRATEGIES "
                                  "(default any-other for -tp)", choices=STRATEGY_CHOICES, metavar="STRATEGY",
                                  part="data")
    seed: int = option(0, type=non_negative_int, part="run")
    num_workers: int = option(4, type=non_negative_int, part="runtime", learns=False)
    device: str = option("auto", choices=DEVICE_CHOICES, part="runtime", learns=False)
    amp: bool | None = option(None, "bf16 autocast (default on GPU)", part="runtime")
    channels_last: bool | None = option(None, part="runtime", learns=False)
    compile: bool = option(False, "torch.compile the encoders", part="runtime", learns=False, keyed=True)
    bn_splits: int = option(0, "split BN on one device (0 = auto)", type=non_negative_int, part="model")
    knn_every: int = option(10, "kNN monitor every N epochs (0 = off)", type=non_negative_int, part="runtime",
                            learns=False)
    knn_k: int = option(20, "neighbours of the kNN monitor (20)", type=positive_int, part="runtime", learns=False)
    knn_max_images: int = option(5000, "at most this many images per split in the kNN monitor", type=positive_int,
                                 part="runtime", learns=False)
    log_every: int = option(10, type=non_negative_int, part="runtime", learns=False)
    max_steps_per_epoch: int | None = option(None, type=positive_int, part="optimiser")
    train_split: str = option("train", "split used for training", part="data")
    val_split: str = option("val", "split the kNN monitor queries (the train split is its bank)", part="data",
                            learns=False, keyed=True)
    resume: bool = option(False, "continue from OUT/checkpoints/last.pt", part="run", learns=False)
    progress: bool = option(True, part="run", learns=False)
    tensorboard: bool = option(True, "metrics.jsonl only, no TensorBoard events", part="runtime", learns=False)
    dist_timeout_s: float = option(1800.0, "seconds before a stuck DDP job fails", flag="--dist-timeout",
                                   part="runtime", learns=False, keyed=True)
    on_bad_image: str = option("skip", "an unreadable image: skip it (the next readable one is used) or fail",
                               choices=BAD_IMAGE_CHOICES, metavar="POLICY", part="data", learns=False, keyed=True)
    crop_min_scale: float = option(0.2, "random resized crop's smallest area (0.2)", part="data")
    jitter_strength: float = option(1.0, "multiplies MoCo-v2's colour jitter (1)", part="data")
    preload: bool = option(False, "decode images once into memory, augment batches of tensors", part="data")

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"Unknown method {self.method!r}; choose one of {', '.join(METHODS)}.")
        check_fields(self)  # the options' rules (types, choices) and finite numbers
        if not 0 < self.crop_min_scale <= 1:
            raise ConfigError(f"PretrainConfig.crop_min_scale must be in (0, 1], got {self.crop_min_scale}.")
        if self.jitter_strength < 0:
            raise ConfigError(f"PretrainConfig.jitter_strength must be >= 0, got {self.jitter_strength}.")
        if self.warmup_epochs > self.epochs:  # >= 0: its option's rule
            raise ConfigError(
                f"PretrainConfig.warmup_epochs must be in [0, epochs={self.epochs}], got {self.warmup_epochs}."
            )
        if self.parts.contrastive and self.bn_splits and self.batch_size % self.bn_splits:  # as pretrain refuses it
            raise ConfigError(f"PretrainConfig.batch_size={self.batch_size} is not divisible by "
                             f"bn_splits={self.bn_splits} (BatchNorm splits of equal size).")
        if self.uses_geo and self.geo_k < 2:
            raise ConfigError(f"Method {self.method!r} needs geo_k >= 2 geo clusters, got {self.geo_k}.")

    @property
    def parts(self) -> MethodParts:
        """What the method is made of (:data:`METHOD_PARTS`)."""
        return METHOD_PARTS[self.method]

    @property
    def is_moco(self) -> bool:
        """True for the four contrastive methods."""
        return self.parts.contrastive

    @property
    def uses_geo(self) -> bool:
        """True when the method predicts geo clusters (``geoloc``, ``moco-geo``, ``moco-tp-geo``)."""
        return self.parts.geo

    @property
    def pair_strategy(self) -> Strategy:
        """The temporal positive strategy actually used (see :attr:`strategy`)."""
        return pair_strategy(self.method, self.strategy)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (paths as strings) for JSON files and ``weights_only`` checkpoints."""
        d = dataclasses.asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PretrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys (from another geolab version) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


#: Each :class:`PretrainConfig` field's role, as the field declares it (:class:`geolab.argtypes.Role`).
PRETRAIN_ROLES = roles(PretrainConfig)


def training_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """A notebook's training settings for :func:`geolab.course.experiment.run_experiment`, from its parameters.

    Every :class:`PretrainConfig` field in ``params`` (a notebook's ``globals()``), except the run's own (part
    ``"run"``: method, manifest, seed, given per run); other names are ignored. Field order.
    """
    return {name: params[name] for name, role in PRETRAIN_ROLES.items() if role.part != "run" and name in params}


#: Inverse L2 strengths the linear probe chooses from on the val split (ProbeConfig.C=None).
#: Why a search: the best strength depends on the features (geoworld dev world 101, val,
#: resnet18-w32: random init is best at C=0.1, a MoCo-v2 encoder at C=0.01, by 4.6 points
#: over C=0.1; BENCHMARKS.md "Linear probe regularisation"); one fixed C favours one of them.
PROBE_C_GRID: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 1.0)


@dataclass
class ProbeConfig:
    """Frozen-feature evaluation (linear probe and kNN), as in the paper's protocol.

    Attributes:
        checkpoint: a geolab checkpoint, an official GASSL ``.pth.tar`` or a ResNet state dict.
        manifest: the manifest whose ``train`` split fits the probe and ``test`` split scores it.
        image_size: evaluation size (``None``: the checkpoint's training size, else 224).
        train_split: split the linear probe / kNN bank is fitted on.
        test_split: split scored (``"test"``, falling back to ``"val"`` when absent).
        batch_size: feature-extraction batch size.
        num_workers: DataLoader workers.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        backend: linear probe solver, ``"sklearn"`` (LogisticRegression on standardized
            features) or ``"torch"`` (a linear layer trained on cached features, for big sets).
        C: inverse L2 strength of the probe. ``None`` (default): chosen per encoder on the
            ``val`` split from :data:`PROBE_C_GRID` (best val top-1), then scored on
            ``test_split``, as linear-evaluation protocols tune the probe's regularisation on
            held-out data. The same search for every encoder, random init included, so no
            method gets a better-tuned probe than another. A number fixes it.
        k: neighbours of the kNN classifier (20, as InstDisc/MoCo's monitor).
        knn_temperature: weight ``exp(sim / T)`` of each neighbour (0.07).
        seed: seeds the probe.
        arch: the weights' architecture (``None``: the file's, else inferred; :mod:`geolab.weights`); for
            a geolab checkpoint it must be the checkpoint's own (:func:`geolab.weights.check_arch`).
    """

    # Each field is an option of ``geolab probe`` / ``geolab knn`` (see PretrainConfig).
    checkpoint: str | Path = option("", "geolab checkpoint, official GASSL .pth.tar, or ResNet state dict "
                                    "(torchgeo, geolab export)", required=True)
    manifest: str | Path = option("", required=True)
    image_size: int | None = option(None, "default: the checkpoint's training size", type=positive_int)
    train_split: str = "train"
    test_split: str = option("test", "scored split (val when there is no test split)")
    batch_size: int = option(128, type=positive_int)
    num_workers: int = option(2, type=non_negative_int)
    device: str = option("auto", choices=DEVICE_CHOICES)
    backend: str = option("sklearn", choices=("sklearn", "torch"))
    C: float | None = option(None, "inverse L2 strength of the probe (default: chosen on the val split from 0.001-1)",
                             type=positive_float)
    k: int = option(20, "neighbours (default 20)", type=positive_int)
    knn_temperature: float = option(0.07, "weight exp(similarity / T) of each neighbour (0.07)", type=positive_float)
    seed: int = option(0, "seeds the probe", type=non_negative_int)
    arch: str | None = option(None, "architecture of an official file or state dict (default: inferred); "
                              "a geolab checkpoint's own, or an error")

    def __post_init__(self) -> None:
        check_fields(self)


#: Decoders of the dense transfer task (see :mod:`geolab.dense`).
DENSE_DECODERS: tuple[str, ...] = ("fpn", "fcn")


@dataclass
class DenseConfig:
    """Dense transfer: geoworld masks segmented from a pre-trained backbone (:func:`geolab.dense.train_dense`).

    The paper fine-tunes a ResNet-50 inside PSANet on SpaceNet buildings (and RetinaNet on
    xView); that schedule is not published in full and does not fit a CPU, so the defaults
    here are the quick CPU run (ResNet-18 encoder, 64 px, a light decoder, a few epochs), the
    same for every initialisation so that only the initialisation differs.

    Attributes:
        arch: backbone built when no backbone is given (random init); ``resnet18`` on CPU.
        image_size: side of the input in pixels (images and masks are resized to it).
        num_classes: mask classes; ``None`` = read from the masks (largest class id in the
            training and scored masks + 1; geoworld has 4: background, building, water, road).
        class_names: names of the classes (``None``: geoworld's names, ``class_<i>`` beyond).
        decoder: ``"fpn"`` (FPN-lite over layer1..layer4) or ``"fcn"`` (1x1 conv on the last
            stage + bilinear upsampling, the classic FCN head).
        encoder_depth: last ResNet stage used, ``"layer3"`` or ``"layer4"``.
        decoder_channels: width of the FPN-lite decoder.
        freeze_backbone: keep the encoder fixed (weights and BatchNorm statistics), the dense
            analogue of a linear probe; ``False`` fine-tunes everything, as the paper does.
        epochs: passes over the training split.
        batch_size: images per step.
        lr: AdamW learning rate of the decoder.
        backbone_lr: AdamW learning rate of the encoder when fine-tuning (``None`` = ``lr``).
        weight_decay: AdamW weight decay.
        ignore_index: mask value that is not scored (e.g. unlabelled pixels).
        train_split: split trained on.
        test_split: split scored (falls back to ``"val"`` when absent).
        max_train_images: use at most this many training images (``None`` = all).
        max_test_images: score at most this many images (``None`` = all).
        preload: decode all images and masks into memory once (fast epochs for small sets).
        seed: seeds weights of the decoder, shuffling and flips; a CPU run is reproducible.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        num_workers: DataLoader workers.
        progress: tqdm progress bars.
    """

    arch: str = "resnet18"
    image_size: int = 64
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    decoder: str = "fpn"
    encoder_depth: str = "layer4"
    decoder_channels: int = 64
    freeze_backbone: bool = False
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr: float | None = None
    weight_decay: float = 1e-4
    ignore_index: int = 255
    train_split: str = "train"
    test_split: str = "test"
    max_train_images: int | None = None
    max_test_images: int | None = None
    preload: bool = True
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        check_fields(self)
        if self.decoder not in DENSE_DECODERS:
            raise ConfigError(f"Unknown decoder {self.decoder!r}; choose one of {', '.join(DENSE_DECODERS)}.")
        if self.encoder_depth not in ("layer3", "layer4"):
            raise ConfigError(f"encoder_depth must be 'layer3' or 'layer4', got {self.encoder_depth!r}.")
        for name in ("epochs", "batch_size", "image_size", "decoder_channels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"DenseConfig.{name} must be >= 1, got {getattr(self, name)}.")
        if self.num_classes is not None and self.num_classes < 2:
            raise ConfigError(
                f"DenseConfig.num_classes must be >= 2 (or None to read it from the masks), got {self.num_classes}."
            )
        if self.class_names is not None:
            self.class_names = tuple(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON files and result records."""
        d = dataclasses.asdict(self)
        if d["class_names"] is not None:
            d["class_names"] = list(d["class_names"])
        return d


# --------------------------------------------------------------------------- course profiles
# Parameter sets that ``geolab course run --profile P`` injects into the notebooks (see
# :mod:`geolab.course`). ``common`` goes to every notebook, ``notebooks[<name>]`` overrides it
# for one notebook; each notebook receives only the names its ``parameters`` cell declares
# (the runner warns about keys that no notebook declares). ``--data``/``--manifest``/``--set``
# beat the profile. Names follow :class:`PretrainConfig`; ``seeds`` lists the seeds of a
# notebook's main comparison (the report shows mean +- std over them).
#: Settings the geoworld profiles share (cpu, cpu-long, gpu): the SSL recipe searched on
#: development world 101 (BENCHMARKS.md "SSL recipe"); each profile adds its scale.
_GEOWORLD_RECIPE: dict[str, Any] = {
    "data": "geoworld",
    "manifest": "",
    "world_seed": 0,
    # BatchNorm in the projection head (MoCo v3's head; issue 22, BENCHMARKS.md "Stuck runs"): without
    # it a small ResNet's projections start nearly parallel (normalised std ~0.15), the InfoNCE loss
    # sits near chance for ~150 steps, and one +TP seed in three took off too late to learn (dev worlds
    # 101, 102: 2 of 6 +TP runs under half their best sibling's gain). The positives and losses are the paper's.
    "head_bn": True,
    "queue_size": 512,
    "lr": 0.03,
    "ema_momentum": 0.99,
    "temperature": MOCO_V2_TEMPERATURE,
    "crop_min_scale": 0.4,
    "jitter_strength": 0.5,
    "seeds": [0, 1, 2],
    "max_steps_per_epoch": None,
    "preload": True,
    "num_workers": 0,
    # Memory layout only (the same maths): a pre-training epoch 4.4 -> 3.65 s on a 2-core CPU (issue 22).
    "channels_last": True,
}

#: Notebook 08 on a CPU (issue 25): one epoch of fine-tuning (~21 steps) per method, two runs evaluated at once.
_LABELS_CPU: dict[str, Any] = {"finetune_epochs": 1, "finetune_max_steps": None, "eval_workers": None}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "description": "the tiniest run, for tests: every notebook executes end to end in seconds",
        "common": {
            "data": "geoworld", "manifest": "", "world_locations": 60, "world_size": 32, "world_seed": 0,
            "arch": "resnet18-w16", "image_size": 32, "epochs": 1, "batch_size": 16, "queue_size": 64,
            "temperature": MOCO_V2_TEMPERATURE, "geo_k": 4, "seeds": [0], "max_steps_per_epoch": 2, "preload": True,
            "num_workers": 0, "device": "cpu",
        },
        "notebooks": {"08_results": {"finetune_max_steps": 2}},
    },
    "cpu": {
        "description": "`make course`: the whole course on geoworld on a 2-core CPU (target: under 20 min)",
        # Why these settings (searched on development world 101, never on world 0, the
        # course's; BENCHMARKS.md "SSL recipe"): the queue (512) stays well below the ~2,700
        # training images (no image meets its own older keys), the key encoder follows faster
        # (m=0.99) in so short a run, and crops and colour jitter are milder than MoCo-v2's
        # (area >= 0.4, jitter x0.5): at 32 px MoCo-v2's full strength left the loss near
        # ln(queue+1) and the features below random init. resnet18-w16 at batch 128 for 25
        # epochs (~500 steps) with one BatchNorm over the batch (bn_splits=1: cheaper, and
        # on the dev world at least as good as 4 splits) is what fits 12 runs in the budget;
        # the course trains two runs at once, one per core (geolab.course.experiment.run_experiments).
        "common": {
            **_GEOWORLD_RECIPE,
            "world_locations": 1000,
            "world_size": 32,
            "arch": "resnet18-w16",
            "image_size": 32,
            # 25 one-way epochs: 13 symmetric ones cost 83% of the time and matched MoCo-v2, but on dev
            # world 101 they halved +TP's lead (+7.6 against +15.8; BENCHMARKS.md "Robustness over worlds").
            "epochs": 25,
            "batch_size": 128,
            "bn_splits": 1,
            "geo_k": 20,
            "device": "cpu",
            # the kNN monitor every 3 epochs (9 points a run, 3 with the default 10) on a seeded 1000 images
            # per split: +1.5 s a run on one thread (BENCHMARKS.md "The kNN monitor's cost")
            "knn_every": 3,
            "knn_max_images": 1000,
        },
        # scratch_steps: the learner's own step trained in 02-04 (~0.2 s a step on a free 2-core CPU). 05 reads the
        # paper's ablation from 02-04's runs and sweeps K and T around 04's 3-seed MoCo-v2+Geo+TP (reused; its
        # spread is the seed noise), one 25-epoch run per setting (12-epoch one-seed sweeps measured noise).
        "notebooks": {"02_supervised_gap": {"scratch_steps": 120}, "03_temporal_positives": {"scratch_steps": 15},
                      "04_geo_pretext": {"scratch_steps": 15}, "08_results": _LABELS_CPU,
                      "05_ablations": {"variant_seeds": [0], "geo_k_values": [8], "temperature_values": [0.02],
                                       "strategy_values": [], "beta_values": []}},
    },
    "cpu-long": {
        "description": "the converged picture on a 2-core CPU (target: under 2 h): the reference run",
        "common": {
            **_GEOWORLD_RECIPE, "world_locations": 1000, "world_size": 32, "arch": "resnet18-w32", "image_size": 32,
            "epochs": 45, "batch_size": 128, "bn_splits": 1, "geo_k": 20, "device": "cpu",
        },
        "notebooks": {"05_ablations": {"variant_seeds": [0]}, "08_results": _LABELS_CPU},
    },
    "gpu": {
        "description": "a bigger geoworld on one GPU in minutes (target: under 10 min on one H200)",
        "common": {
            **_GEOWORLD_RECIPE, "world_locations": 3000, "world_size": 64, "arch": "resnet18", "image_size": 64,
            "epochs": 60, "batch_size": 256, "queue_size": 4096, "lr": 0.06, "geo_k": 50, "device": "cuda",
        },
        "notebooks": {"05_ablations": {"seeds": [0], "epochs": 20},
                      "08_results": {"finetune_epochs": 5, "finetune_max_steps": None}},
    },
    "gpu-full": {
        "description": "fMoW with the paper's settings on a GPU (pass --manifest)",
        "common": {
            "data": "fmow", "manifest": "", "arch": "resnet50", "image_size": 224, "epochs": 200, "batch_size": 256,
            "lr": 0.03, "queue_size": 65536, "ema_momentum": 0.999, "temperature": GASSL_OFFICIAL_TEMPERATURE,
            "crop_min_scale": 0.2, "jitter_strength": 1.0, "geo_k": 100, "seeds": [0], "max_steps_per_epoch": None,
            "preload": False, "num_workers": 8, "device": "cuda",
        },
        "notebooks": {},
    },
}


# --------------------------------------------------------------------------- geoworld
@dataclass
class WorldConfig:
    """The knobs of the geoworld simulation (see ``data_manifests/WORLD_CARD.md``).

    Every field enters the world's cache key: change one and a new world is generated.

    Attributes:
        seed: decides everything (sites, categories, layouts, dates, nuisances).
        size: image side in pixels (64 for the CPU course; 224 as in the paper).
        locations: number of locations (the default world has about 3.6 images each).
        years: first and last year of acquisitions (fMoW-rgb spans 2002-2017).
        revisit_weights: relative frequency of 1, 2, 3... revisits per location, shaped like
            fMoW's (many with 2-5, some with 1, a tail up to 15).
        split_fractions: train/val/test shares of locations, per category (no location in
            two splits).
        geo_prior_strength: exponent on the place-driven category priors (0: category
            independent of geography; 1: the default; larger: geography more telling).
        regional_strength: weight of a smooth random regional preference per category
            (log-scale standard deviation; 0: none).
        city_exponent: sites are drawn near cities with weight ``population ** city_exponent``.
        haze_max: largest haze (airlight fraction) in a clear climate.
        cloud_prob: chance that an image has clouds (scaled by climate zone).
        zoom_jitter: log-range of the crop's scale between revisits (gsd varies by about
            this fraction).
        misregistration_px: largest shift between revisits, in output pixels.
        noise_max: largest sensor noise sigma (reflectance units).
    """

    seed: int = 0
    size: int = 64
    locations: int = 1000
    years: tuple[int, int] = (2010, 2017)
    revisit_weights: tuple[float, ...] = (12, 22, 20, 15, 10, 6, 4, 3, 2, 1.5, 1.2, 1, 0.8, 0.6, 0.5)
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    geo_prior_strength: float = 1.5
    regional_strength: float = 1.5
    city_exponent: float = 0.5
    haze_max: float = 0.35
    cloud_prob: float = 0.25
    zoom_jitter: float = 0.1
    misregistration_px: float = 1.5
    noise_max: float = 0.02

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"WorldConfig.seed: the world seed must be >= 0, got {self.seed}.")
        if self.size < 16:
            raise ConfigError(f"WorldConfig.size must be >= 16 pixels, got {self.size}.")
        if self.locations < 10:
            raise ConfigError(f"WorldConfig.locations must be >= 10 (one per category), got {self.locations}.")
        if len(self.split_fractions) != 3 or abs(sum(self.split_fractions) - 1) > 1e-6 or min(self.split_fractions) < 0:
            raise ConfigError(
                f"WorldConfig.split_fractions must be three shares summing to 1, got {self.split_fractions}."
            )
        if not self.revisit_weights or min(self.revisit_weights) < 0 or sum(self.revisit_weights) <= 0:
            raise ConfigError("WorldConfig.revisit_weights must be non-negative with a positive sum.")
        if self.years[0] > self.years[1]:
            raise ConfigError(f"WorldConfig.years must be (first, last), got {self.years}.")
        self.years = (int(self.years[0]), int(self.years[1]))
        self.revisit_weights = tuple(float(w) for w in self.revisit_weights)
        share = self.split_fractions  # three, checked above
        self.split_fractions = (float(share[0]), float(share[1]), float(share[2]))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists) for ``world.json`` and the cache key."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


# --------------------------------------------------------------------------- engine command line
def add_pretrain_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``geolab pretrain`` and ``python -m geolab.train``: one per :class:`PretrainConfig` field."""
    add_dataclass_arguments(p, PretrainConfig)


def config_from_args(args: argparse.Namespace) -> PretrainConfig:
    """:class:`PretrainConfig` from the parsed arguments of :func:`add_pretrain_arguments`."""
    return dataclass_from_args(PretrainConfig, args)
