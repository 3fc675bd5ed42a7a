"""One training loop for every method of the paper, on CPU, one GPU, or many GPUs/nodes.

Methods (:data:`geolab.config.METHODS`):

==============  ==========================================================================
``supervised``  backbone + linear classifier on the category labels (the upper baseline)
``geoloc``      backbone + linear classifier on the geo clusters only (geo pretext alone)
``moco``        MoCo-v2: positive key = another augmentation of the same image
``moco-geo``    MoCo-v2 + geo loss
``moco-tp``     MoCo-v2 with temporal positives: positive key = another image of the same
                location at another time (strategy ``any-other`` by default)
``moco-tp-geo`` both (the paper's best model)
==============  ==========================================================================

Loss of the MoCo methods: ``alpha * InfoNCE(q, k) + beta * CE(geo_head(q), geo_cluster)``
(``beta`` term only for ``*-geo``; alpha = beta = 1 as in the paper).

Run it from Python (:func:`pretrain`), from the command line (``geolab pretrain ...``), or on
several GPUs/nodes with ``torchrun --nproc_per_node=N -m geolab.train ...`` (same arguments).
Under DDP ``batch_size`` is the global batch, split evenly over the ranks; keys are shuffled
across ranks for shuffle BN and the memory bank is filled with the keys of all ranks.

Reproducibility and resuming: every epoch's randomness (sampling order, positives,
augmentations, key shuffles) is seeded from ``(seed, epoch, rank)``, a checkpoint holding
the model, optimizer, memory bank and RNG states is written atomically after every epoch,
and ``resume=True`` continues from it: an interrupted-then-resumed CPU run ends with the same
weights as an uninterrupted one (``tests/test_resume.py``).

The loop only: models and losses in :mod:`geolab.models`, checkpoints in :mod:`geolab.checkpoints`,
DDP and seeding in :mod:`geolab.distributed`, a run folder's layout in :class:`geolab.paths.RunFolder`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from geolab import __version__
from geolab.argtypes import ConfigError
from geolab.checkpoints import (
    CheckpointError,
    check_checkpoint_space,
    check_resume_config,
    load_checkpoint,
    load_state_dict_checked,
    manifest_record,
    save_checkpoint,
    training_state,
)
from geolab.config import PretrainConfig, add_pretrain_arguments, config_from_args
from geolab.datasets import ImageDataset, TemporalPairDataset, decode_images, label_names
from geolab.distributed import (
    DistContext,
    ddp_guard,
    epoch_seed,
    init_distributed,
    rng_states,
    seed_everything,
    set_rng_states,
)
from geolab.evaluate import extract_features, knn
from geolab.geo import add_geo_clusters
from geolab.io import atomic_write_json, atomic_write_text
from geolab.jpeg_pipeline import EncodedPairDataset, JpegPairViews, collate_encoded, is_prepared_cache
from geolab.manifest import load_manifest, select_split
from geolab.models import (
    LossSettings,
    MoCoModel,
    ModelSettings,
    auto_bn_splits,
    build_contrastive_loss,
    build_model,
    compute_loss,
    load_memory_bank_state,
    sgd,
)
from geolab.paths import RunFolder, check_run_out
from geolab.positives import LocationIndex
from geolab.transforms import BatchMoCoV2View, BatchSupervisedView, moco_v2_view, supervised_transform


def lr_at(step: int, total_steps: int, cfg: PretrainConfig, steps_per_epoch: int = 0) -> float:
    """Learning rate at a global step.

    A linear warm-up from ``lr / warmup`` to ``lr`` over the first ``cfg.warmup_epochs`` epochs
    (``steps_per_epoch`` of them each), then ``lr * 0.5 * (1 + cos(pi * t))`` with ``t`` going
    from 0 to 1 over the remaining steps when ``cfg.cosine`` (MoCo-v2's ``--cos``), else constant.
    Without warm-up this is MoCo-v2's schedule exactly.
    """
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if warmup > 0 and step < warmup:
        return cfg.lr * (step + 1) / warmup
    if not cfg.cosine or total_steps <= 0:
        return cfg.lr
    step, total_steps = step - warmup, total_steps - warmup
    if total_steps <= 0:
        return cfg.lr
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


# ----------------------------------------------------------------------------- data
def _decode_on_device(cfg: PretrainConfig, device: torch.device | None) -> bool:
    """Whether the run decodes and augments JPEG bytes on the GPU (:mod:`geolab.jpeg_pipeline`).

    Yes for a MoCo method on CUDA over a prepared cache (``geolab data prepare`` wrote its
    manifest, so every image is a JPEG that decoded when it was written; ``on_bad_image`` has
    nothing left to skip). Otherwise the PIL pipeline (the fallback) or geoworld's preloaded batches.
    """
    return (device is not None and device.type == "cuda" and cfg.parts.contrastive and not cfg.preload
            and is_prepared_cache(cfg.manifest))


def prepare_data(cfg: PretrainConfig, device: torch.device | None = None):
    """Load the manifest, add geo clusters, and build the training dataset.

    On ``device`` CUDA over a prepared cache the dataset yields JPEG bytes and carries
    ``batch_views`` (decode + views on the GPU) and ``collate_fn`` (see :func:`_decode_on_device`).

    Returns:
        ``(dataset, train_df, full_df, classes)``.

    Raises:
        geolab.manifest.ManifestError: bad manifest or empty train split.
        ValueError: fewer train locations than geo clusters.
    """
    df = load_manifest(cfg.manifest, require_splits=(cfg.train_split,))
    if cfg.parts.geo:
        train_locs = df.loc[df["split"] == cfg.train_split, "location_id"].nunique()
        if train_locs < cfg.geo_k:
            raise ConfigError(
                f"{cfg.manifest}: geo_k={cfg.geo_k} geo clusters asked for, but the '{cfg.train_split}' split "
                f"has only {train_locs} locations. Use --geo-k {max(2, train_locs // 2)} or fewer."
            )
        df = add_geo_clusters(df, k=cfg.geo_k, seed=cfg.seed, fit_split=cfg.train_split)
    train = select_split(df, cfg.train_split)
    classes = label_names(df)
    # preload: decode once, augment whole batches in the loop (ds.batch_transform); else PIL per image in the loader
    images = decode_images(train, cfg.image_size, cfg.on_bad_image, progress=cfg.progress) if cfg.preload else None
    ds: Any  # the loop's batch transform (on the GPU: views, collate) travels as the dataset's attribute
    if cfg.parts.contrastive:
        ds = TemporalPairDataset(
            train, strategy=cfg.pair_strategy,
            transform=None if cfg.preload else moco_v2_view(cfg.image_size, cfg.crop_min_scale, cfg.jitter_strength),
            seed=cfg.seed, on_bad_image=cfg.on_bad_image, classes=classes, images=images,
        )
        ds.batch_transform = BatchMoCoV2View(cfg.image_size, cfg.crop_min_scale, cfg.jitter_strength) if cfg.preload \
            else None
        _warn_revisits(cfg, ds.index)
    else:
        ds = ImageDataset(
            train, transform=None if cfg.preload else supervised_transform(cfg.image_size),
            on_bad_image=cfg.on_bad_image, classes=classes, images=images,
        )
        ds.batch_transform = BatchSupervisedView(cfg.image_size) if cfg.preload else None
    if device is not None and _decode_on_device(cfg, device):  # the same pairs as JPEG bytes, decoded on the GPU
        ds = EncodedPairDataset(train, strategy=cfg.pair_strategy, seed=cfg.seed, classes=classes)
        ds.batch_views = JpegPairViews(cfg.image_size, device, cfg.crop_min_scale, cfg.jitter_strength,
                                       channels_last=cfg.channels_last)
        ds.collate_fn = collate_encoded
    return ds, train, df, classes


def _warn_revisits(cfg: PretrainConfig, index: LocationIndex) -> None:
    """Temporal positives need revisits: images of one location taken at different times.

    Say when many training images have none (their key is the same image, as in plain MoCo), when the run is
    plain MoCo in all but name, and when most locations with several images give them all one timestamp (their
    positives are other images of the same moment: a manifest that dates its images by location, or a
    duplicated image, not the paper's revisits).
    """
    if cfg.pair_strategy == "same-image":
        return
    share = index.singleton_share
    if share >= 0.5:
        what = ("every location has a single image, so this run is plain MoCo-v2 (two augmentations of one image)"
                if share >= 1.0 else "their temporal positive falls back to the same image")
        warnings.warn(
            f"{cfg.manifest}: {share:.0%} of the '{cfg.train_split}' images are the only image of their location; "
            f"{what}. Temporal positives need locations imaged several times.",
            stacklevel=3,
        )
    multi, one_time = index.multi_image_locations, index.one_time_locations
    if multi and one_time / multi >= 0.5:
        warnings.warn(
            f"{cfg.manifest}: {one_time / multi:.0%} of the '{cfg.train_split}' locations with several images "
            f"({one_time} of {multi}) have one timestamp for all of them, so their temporal positives are other "
            f"images of the same moment, not of another time ('{cfg.pair_strategy}' has no time to choose by); "
            "check the manifest's timestamp column (the acquisition time of each image).",
            stacklevel=3,
        )


# ----------------------------------------------------------------------------- logging
class _Metrics:
    """``metrics.jsonl`` (one JSON object per line) and, when installed, TensorBoard."""

    def __init__(self, folder: RunFolder, enabled: bool, tensorboard: bool, keep_before_epoch: int | None):
        self.path = folder.metrics
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        if keep_before_epoch is not None and self.path.exists():
            # a resumed run drops the records of the epoch that was interrupted
            kept = []
            for line in self.path.read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    rec = json.loads(line)
                    if rec.get("epoch", 0) < keep_before_epoch:
                        kept.append(line)
            atomic_write_text(self.path, "".join(k + "\n" for k in kept))
        elif self.path.exists():
            self.path.unlink()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 - optional extra

                self.tb = SummaryWriter(str(folder.tensorboard))
            except ImportError:
                self.tb = None
                print("[geolab] tensorboard is not installed: metrics.jsonl only "
                      "(pip install tensorboard, or tensorboard=False)", file=sys.stderr)

    def write(self, record: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    self.tb.add_scalar(f"{record.get('kind', 'train')}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ----------------------------------------------------------------------------- the loop
def pretrain(cfg: PretrainConfig) -> Path:
    """Train ``cfg.method`` and return the final checkpoint (``out/checkpoints/last.pt``).

    Works on CPU, one GPU, and under ``torchrun`` (DDP). Writes ``out/config.json``,
    ``out/metrics.jsonl`` (step and epoch records, kNN monitor) and a checkpoint after every
    epoch. With ``cfg.resume`` it continues from the checkpoint in ``out`` (a finished run is
    announced and returned as is); without it, an existing checkpoint is an error rather
    than being overwritten.

    Args:
        cfg: the run's :class:`~geolab.config.PretrainConfig`.

    Returns:
        Path of the checkpoint.

    Raises:
        CheckpointError: incompatible or newer checkpoint when resuming; existing checkpoint
            without ``resume``.
        geolab.manifest.ManifestError: bad manifest.
        DistributedError: another DDP rank died.
    """
    ctx = init_distributed(cfg)
    try:
        with ddp_guard(ctx, "training"):
            return _pretrain(cfg, ctx)
    finally:
        if ctx.owns_group and dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()


def _log(ctx: DistContext, msg: str) -> None:
    if ctx.is_main:
        print(f"[geolab] {msg}", file=sys.stderr, flush=True)


def _pretrain(cfg: PretrainConfig, ctx: DistContext) -> Path:
    folder = RunFolder(cfg.out)
    per_rank, bn_splits = _batch_layout(cfg, ctx)
    check_run_out(folder.root, cfg.manifest)  # new, empty or a run's; never the manifest's folder
    manifest_id = manifest_record(cfg.manifest)  # at the start: what this run trains on
    ckpt = _checkpoint_to_resume(cfg, ctx, folder.checkpoint, manifest_id)
    if ckpt is not None and int(ckpt["epoch"]) >= cfg.epochs:
        _log(ctx, f"{folder.checkpoint} already holds the finished run ({ckpt['epoch']} epochs of {cfg.method}); "
                  "nothing to do.")
        return folder.checkpoint

    dataset, _train_df, full_df, classes = prepare_data(cfg, ctx.device)
    if getattr(dataset, "batch_views", None) is not None:
        _log(ctx, "input: JPEG bytes of the prepared cache, decoded and augmented on the GPU (geolab.jpeg_pipeline)")
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    raw_model, criterion, optimizer = _build(cfg, ctx, len(classes), bn_splits)
    start_epoch, global_step = 0, 0
    if ckpt is not None:
        load_state_dict_checked(raw_model, ckpt["model"], str(folder.checkpoint))
        optimizer.load_state_dict(ckpt["optimizer"])
        if criterion is not None:
            load_memory_bank_state(criterion, ckpt["memory_bank"])
        start_epoch, global_step = int(ckpt["epoch"]), int(ckpt["global_step"])
    model = _compiled_and_wrapped(cfg, ctx, raw_model)
    sampler, loader, loader_gen, steps_per_epoch = _loader(cfg, ctx, dataset, per_rank)

    if ctx.is_main:
        atomic_write_json(folder.config, {
            "config": cfg.to_dict(), "manifest": manifest_id, "geolab_version": __version__,
            "world_size": ctx.world_size, "bn_splits": bn_splits,
            "strategy": cfg.pair_strategy if cfg.parts.contrastive else None, "device": str(ctx.device),
            "train_images": len(dataset), "singleton_share": getattr(dataset, "singleton_share", None),
            "classes": classes,
        })
    metrics = _Metrics(folder, ctx.is_main, cfg.tensorboard, keep_before_epoch=None if ckpt is None else start_epoch)
    if ckpt is not None:
        set_rng_states(ckpt["rng"])
    if ctx.is_main:
        check_checkpoint_space(folder.checkpoint, raw_model, criterion)  # before epoch 1, not after it

    run = _Run(
        cfg=cfg, ctx=ctx, model=model, raw_model=raw_model, criterion=criterion, optimizer=optimizer, loader=loader,
        loader_gen=loader_gen, sampler=sampler, dataset=dataset, steps_per_epoch=steps_per_epoch,
        total_steps=steps_per_epoch * cfg.epochs, metrics=metrics,
    )
    try:
        for epoch in range(start_epoch, cfg.epochs):
            epoch_record = _train_epoch(run, epoch, global_step)
            global_step += steps_per_epoch
            if ctx.is_main and cfg.knn_every and ((epoch + 1) % cfg.knn_every == 0 or epoch + 1 == cfg.epochs):
                knn_top1 = knn_monitor(raw_model, full_df, cfg, classes, ctx.device)
                if knn_top1 is not None:
                    epoch_record["knn_top1"] = knn_top1
            metrics.write(epoch_record, global_step)
            if ctx.is_main:
                save_checkpoint(folder.checkpoint, training_state(
                    cfg, manifest_id, epoch=epoch + 1, global_step=global_step, model=raw_model, optimizer=optimizer,
                    criterion=criterion, classes=classes, rng=rng_states(), metrics=epoch_record))
            if ctx.distributed:
                dist.barrier()
    finally:
        metrics.close()
    _log(ctx, f"done: {folder.checkpoint}")
    return folder.checkpoint


def _batch_layout(cfg: PretrainConfig, ctx: DistContext) -> tuple[int, int]:
    """``(per-rank batch, BatchNorm splits)``; split BN guards MoCo against the BN leak (the classifiers: 1).

    Raises:
        ValueError: a batch that the ranks or the splits do not divide.
    """
    if cfg.batch_size % ctx.world_size:
        raise ConfigError(f"batch_size={cfg.batch_size} must be divisible by the {ctx.world_size} DDP ranks.")
    per_rank = cfg.batch_size // ctx.world_size
    contrastive = cfg.parts.contrastive
    bn_splits = (cfg.bn_splits or auto_bn_splits(per_rank, ctx.world_size)) if contrastive else 1
    if contrastive and bn_splits == 1 and not cfg.bn_splits and not ctx.distributed:  # 1 asked for: no warning
        warnings.warn(f"batch {per_rank} is too small to split BatchNorm: MoCo's BN leak is not prevented; "
                      "use a batch of 8 or more.", stacklevel=3)
    if per_rank % bn_splits:
        raise ConfigError(f"per-rank batch {per_rank} is not divisible by bn_splits={bn_splits}.")
    return per_rank, bn_splits


def _checkpoint_to_resume(cfg: PretrainConfig, ctx: DistContext, ckpt_file: Path,
                          manifest_id: dict[str, str]) -> dict[str, Any] | None:
    """The checkpoint this run continues from (checked against ``cfg``), or ``None`` to start afresh.

    Raises:
        CheckpointError: a checkpoint exists without ``resume``, or does not fit ``cfg``.
    """
    if not ckpt_file.exists():
        if cfg.resume:
            _log(ctx, f"no checkpoint in {ckpt_file.parent}; starting from scratch")
        return None
    if not cfg.resume:
        raise CheckpointError(f"{ckpt_file} already exists. Pass --resume (resume=True) to continue that run, "
                              "or choose another --out.")
    ckpt = load_checkpoint(ckpt_file)
    check_resume_config(ckpt, cfg, ckpt_file, manifest_id)
    if int(ckpt["epoch"]) < cfg.epochs:
        _log(ctx, f"resuming {cfg.method} from {ckpt_file} after epoch {ckpt['epoch']}")
    return ckpt


def _build(cfg: PretrainConfig, ctx: DistContext, num_classes: int,
           bn_splits: int) -> tuple[nn.Module, nn.Module | None, torch.optim.Optimizer]:
    """The model (identical on every rank: seeded), its criterion (contrastive methods) and its SGD optimizer."""
    seed_everything(cfg.seed)
    model = build_model(ModelSettings.of(cfg), num_classes, bn_splits).to(ctx.device)
    if _channels_last(cfg, ctx.device):
        model = model.to(memory_format=torch.channels_last)
    criterion = None
    if cfg.parts.contrastive:
        criterion = build_contrastive_loss(cfg.temperature, cfg.queue_size, cfg.proj_dim, distributed=ctx.distributed)
        criterion = criterion.to(ctx.device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = sgd(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)  # fused on CUDA
    return model, criterion, optimizer


def _compiled_and_wrapped(cfg: PretrainConfig, ctx: DistContext, model: nn.Module) -> nn.Module:
    """What the step calls: the encoders compiled (``cfg.compile``), the model in DDP under torchrun."""
    if cfg.compile:
        for name in ("backbone", "backbone_momentum"):
            if hasattr(model, name):
                getattr(model, name).compile()
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids) if ctx.distributed else model


def _loader(cfg: PretrainConfig, ctx: DistContext, dataset: Any, per_rank: int) -> tuple[
        torch.utils.data.DistributedSampler, torch.utils.data.DataLoader, torch.Generator, int]:
    """``(sampler, loader, loader's generator, steps per epoch)`` of the training split.

    Raises:
        ValueError: the split holds less than one batch.
    """
    sampler: torch.utils.data.DistributedSampler = torch.utils.data.DistributedSampler(
        dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    loader_gen = torch.Generator()
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=per_rank, sampler=sampler, num_workers=cfg.num_workers,
        pin_memory=ctx.device.type == "cuda", drop_last=True, generator=loader_gen,
        collate_fn=getattr(dataset, "collate_fn", None),  # lists of JPEG bytes when decoded on the GPU
        persistent_workers=False,  # each epoch's workers seeded from (seed, epoch, rank): a resumed run is exact
    )
    steps_per_epoch = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise ConfigError(
            f"{cfg.manifest}: the '{cfg.train_split}' split has {len(dataset)} images, fewer than one batch of "
            f"{cfg.batch_size}. Use a smaller --batch-size."
        )
    return sampler, loader, loader_gen, steps_per_epoch


def _channels_last(cfg: PretrainConfig, device: torch.device) -> bool:
    """The memory layout of the run's images and weights (``None``: channels-last on CUDA)."""
    return cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"


def _to_device(
    batch: dict[str, Any], device: torch.device, channels_last: bool, batch_transform: nn.Module | None = None
) -> dict[str, Tensor]:
    out = {}
    for k, v in batch.items():
        v = v.to(device, non_blocking=True)
        if v.ndim == 4 and batch_transform is not None:  # preloaded uint8 images: augment the batch here
            v = batch_transform(v)
        if v.ndim == 4 and channels_last:
            v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


def _sync_each_step(device: torch.device) -> bool:
    """Read the step's loss back every step (CPU: free) or only at log steps (GPU: each read waits)."""
    return device.type != "cuda"


def _check_finite(parts: Mapping[str, float | Tensor], epoch: int, i: int, every: int = 1) -> None:
    if not math.isfinite(parts["loss"]):
        when = f"step {i + 1}" if every <= 1 else f"step {i + 1} (checked every {every} steps on a GPU)"
        raise FloatingPointError(f"loss became {parts['loss']} at epoch {epoch + 1} {when}; "
                                 "lower --lr or raise --temperature.")


def train_step(cfg: PretrainConfig, model: nn.Module, criterion: nn.Module | None, optimizer: torch.optim.Optimizer,
               batch: dict[str, Tensor], raw_model: nn.Module | None = None, distributed: bool = False,
               sync: bool = True, at: tuple[int, int] | None = None) -> dict[str, Any]:
    """The loop's step (notebook 02's is checked against it): momentum update, loss and enqueue, backward, SGD."""
    if cfg.parts.contrastive:  # the key encoder moves first (raw_model: the model inside DDP)
        cast(MoCoModel, raw_model if raw_model is not None else model).momentum_update(cfg.ema_momentum)
    loss, parts = compute_loss(LossSettings.of(cfg), model, criterion, batch, distributed=distributed, sync=sync)
    if at is not None:  # the loop's (epoch, step): a non-finite loss stops the run before it reaches the weights
        _check_finite(parts, *at)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return parts


@dataclass
class _Run:
    """What every epoch of one run uses (built once by :func:`_pretrain`)."""

    cfg: PretrainConfig
    ctx: DistContext
    model: nn.Module  #: what the step calls (DDP-wrapped under torchrun)
    raw_model: nn.Module  #: the model itself (momentum update, checkpoints)
    criterion: nn.Module | None  #: the memory-bank InfoNCE of the contrastive methods
    optimizer: torch.optim.Optimizer
    loader: torch.utils.data.DataLoader
    loader_gen: torch.Generator  #: the loader's generator, reseeded every epoch
    sampler: torch.utils.data.DistributedSampler
    dataset: Any  #: ImageDataset | TemporalPairDataset | EncodedPairDataset, with prepare_data's attributes
    steps_per_epoch: int
    total_steps: int
    metrics: _Metrics


def _train_epoch(run: _Run, epoch: int, global_step: int) -> dict[str, Any]:
    """One epoch; returns the epoch record (mean losses, throughput)."""
    cfg, ctx, model, dataset, steps_per_epoch = run.cfg, run.ctx, run.model, run.dataset, run.steps_per_epoch
    contrastive = cfg.parts.contrastive
    seed = epoch_seed(cfg.seed, epoch, ctx.rank)
    seed_everything(seed)
    run.loader_gen.manual_seed(seed)
    run.sampler.set_epoch(epoch)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    model.train()
    channels_last = _channels_last(cfg, ctx.device)
    sums: dict[str, float] = {}
    n_images = 0
    t0 = time.perf_counter()
    bar = tqdm(
        total=steps_per_epoch, desc=f"{cfg.method} epoch {epoch + 1}/{cfg.epochs}",
        disable=not (cfg.progress and ctx.is_main), leave=False,
    )
    it = iter(run.loader)
    # on a GPU the step's numbers stay there (no wait per step) until a log step or the epoch's end
    sync = _sync_each_step(ctx.device)
    for i in range(steps_per_epoch):
        with ddp_guard(ctx, f"epoch {epoch + 1} step {i + 1}"):
            if (views := getattr(dataset, "batch_views", None)) is not None:  # JPEG bytes: decoded on the GPU
                batch = views(next(it))
            else:
                batch = _to_device(next(it), ctx.device, channels_last, getattr(dataset, "batch_transform", None))
            step = global_step + i
            lr = lr_at(step, run.total_steps, cfg, steps_per_epoch)
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            parts = train_step(cfg, model, run.criterion, run.optimizer, batch, run.raw_model, ctx.distributed, sync,
                               at=(epoch, i) if sync else None)
        bs = batch["query"].shape[0] * ctx.world_size
        n_images += bs
        for k, v in parts.items():  # float64 on the device: the same sums as Python's floats
            sums[k] = sums.get(k, 0.0) + (v if sync else v.double())
        log_step = bool(cfg.log_every and (i + 1) % cfg.log_every == 0)
        if not sync and (log_step or i + 1 == steps_per_epoch):
            parts = {k: float(v) for k, v in parts.items()}
            _check_finite(parts, epoch, i, cfg.log_every)
        rate = n_images / max(time.perf_counter() - t0, 1e-9)
        if isinstance(parts["loss"], float):
            bar.set_postfix({"loss": f"{parts['loss']:.3f}", "pairs/s" if contrastive else "img/s": f"{rate:.0f}"})
        bar.update(1)
        if log_step:
            run.metrics.write({"kind": "step", "epoch": epoch, "step": step + 1, "lr": lr, **parts}, step + 1)
    bar.close()
    seconds = time.perf_counter() - t0
    record: dict[str, Any] = {
        "kind": "epoch", "epoch": epoch, "step": global_step + steps_per_epoch, "seconds": seconds,
    }
    record.update({k: float(v) / steps_per_epoch for k, v in sums.items()})
    record["pairs_per_s" if contrastive else "images_per_s"] = n_images / max(seconds, 1e-9)
    bad = dataset.bad_images
    if bad:
        record["bad_images"] = int(bad)  # unreadable images skipped so far (on_bad_image="skip")
    _log(ctx, f"epoch {epoch + 1}/{cfg.epochs}: loss {record['loss']:.4f} ({seconds:.1f} s)")
    return record


def knn_monitor(model: nn.Module, df, cfg: PretrainConfig, classes: list[str], device: torch.device) -> float | None:
    """KNN top-1 of the query backbone.

    Train split as the bank, ``val_split`` as queries (cosine, k=``cfg.knn_k``, weighted; InstDisc/MoCo's monitor).
    ``None`` without a val split.

    At most ``cfg.knn_max_images`` images per split (a seeded subset, the same at every call); the global RNG
    and the backbone's train mode are left as they were, so how often it runs never changes training.
    """
    if not (df["split"] == cfg.val_split).any():
        return None
    rng = np.random.default_rng(cfg.seed)

    def subset(split: str):
        part = df[df["split"] == split].reset_index(drop=True)
        if len(part) > cfg.knn_max_images:
            part = part.iloc[np.sort(rng.choice(len(part), cfg.knn_max_images, replace=False))].reset_index(drop=True)
        return part

    # extract_features puts the backbone back in its mode; fork_rng restores the CPU generator (DataLoaders draw there)
    extract = functools.partial(extract_features, classes=classes, device=device, progress=False)
    with torch.random.fork_rng(devices=[]):
        fb, lb = extract(model.get_submodule("backbone"), subset(cfg.train_split), cfg.image_size)
        fq, lq = extract(model.get_submodule("backbone"), subset(cfg.val_split), cfg.image_size)
    return float(knn(fb, lb, fq, lq, k=cfg.knn_k)["top1"])


# ----------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    """``python -m geolab.train ...`` (what ``torchrun`` launches on every rank)."""
    parser = argparse.ArgumentParser(prog="python -m geolab.train", description="geolab pre-training (one rank)")
    add_pretrain_arguments(parser)
    args = parser.parse_args(argv)
    path = pretrain(config_from_args(args))
    if int(os.environ.get("RANK", "0")) == 0:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
