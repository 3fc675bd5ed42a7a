"""The dense task's training: fit a segmentation model, score it, and run it all for one initialisation.

:func:`fit_dense` is the plain training loop, :func:`evaluate_dense` the data-set-level scoring,
:func:`predict_masks` the predictions of a batch, and :func:`train_dense` all of it for one
initialisation of the encoder (what notebook 07 calls).
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from collections.abc import Sequence, Sized
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from geolab.config import DenseConfig
from geolab.dense.data import SegmentationDataset, limit_rows, split_rows
from geolab.dense.metrics import confusion_matrix, mask_class_names, scores_dict
from geolab.dense.model import SegmentationModel
from geolab.distributed import resolve_device
from geolab.evaluate import load_backbone
from geolab.manifest import ManifestError, load_manifest, scoring_split
from geolab.models import make_backbone, set_bn_splits


def fit_dense(
    model: SegmentationModel,
    dataset: Dataset,
    cfg: DenseConfig,
    device: str | torch.device = "cpu",
) -> list[float]:
    """Train ``model`` on ``dataset`` with pixel-wise cross-entropy; a plain, visible loop.

    AdamW (decoder at ``cfg.lr``, encoder at ``cfg.backbone_lr`` unless frozen), cosine decay
    over all steps, shuffling from a generator seeded with ``cfg.seed``.

    Args:
        model: the segmentation model (changed in place).
        dataset: yields ``(image, mask)``.
        cfg: epochs, batch size, learning rates, seed, progress.
        device: where to train.

    Returns:
        The mean training loss of each epoch.
    """
    if not isinstance(dataset, Sized):
        raise TypeError(f"fit_dense needs a data set with a length; got {type(dataset).__name__}")
    dev = resolve_device(device)
    model.to(dev)
    enc = [p for p in model.encoder.parameters() if p.requires_grad]
    groups = [{"params": list(model.decoder.parameters()), "lr": cfg.lr}]
    if enc:
        groups.append({"params": enc, "lr": cfg.lr if cfg.backbone_lr is None else cfg.backbone_lr})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=len(dataset) > cfg.batch_size,  # a 1-image batch would break BatchNorm
        generator=gen,
        num_workers=cfg.num_workers,
        pin_memory=dev.type == "cuda",
    )
    steps = max(1, cfg.epochs * len(loader))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    losses: list[float] = []
    model.train()
    bar = tqdm(range(cfg.epochs), desc="dense fine-tune" if enc else "dense (frozen encoder)", disable=not cfg.progress)
    for _epoch in bar:
        total, n = 0.0, 0
        for x, y in loader:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            loss = F.cross_entropy(model(x), y, ignore_index=cfg.ignore_index)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach().item() * x.shape[0]
            n += x.shape[0]
        losses.append(total / max(n, 1))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    return losses


@torch.no_grad()
def evaluate_dense(
    model: SegmentationModel,
    dataset: Dataset,
    num_classes: int,
    *,
    batch_size: int = 64,
    ignore_index: int | None = 255,
    class_names: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    per_image: bool = False,
) -> dict[str, Any]:
    """mIoU, pixel accuracy and per-class IoU of ``model`` over a whole dataset.

    The confusion matrix is summed over every pixel of every image before IoUs are taken
    (data-set-level IoU, as semseg/PSANet report), not averaged per image.

    Returns:
        See :func:`segmentation_scores`; with ``per_image``, also ``"image_confusion"``: an int64
        array (images, classes, classes) whose sum is the data set's matrix (for intervals that
        resample test locations, :func:`geolab.course.transfer.dense_difference`).
    """
    dev = resolve_device(device)
    model.to(dev).eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    images: list[Tensor] = []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for x, y in tqdm(loader, desc="dense eval", disable=not progress, leave=False):
        pred = model(x.to(dev)).argmax(1).cpu()
        cm += confusion_matrix(pred, y, num_classes, ignore_index)
        if per_image:
            images += [confusion_matrix(p, t, num_classes, ignore_index) for p, t in zip(pred, y)]
    scores = scores_dict(cm, class_names)
    if per_image:
        empty = np.zeros((0, num_classes, num_classes), np.int64)
        scores["image_confusion"] = torch.stack(images).numpy() if images else empty
    return scores


@torch.no_grad()
def predict_masks(model: SegmentationModel, images: Tensor, device: str | torch.device = "cpu") -> Tensor:
    """Predicted class ids (N, H, W) for a batch of normalised images (N, 3, H, W)."""
    dev = resolve_device(device)
    model.to(dev).eval()
    return model(images.to(dev)).argmax(1).cpu()


# ----------------------------------------------------------------------------- one run
def _resolve_backbone(backbone: nn.Module | str | os.PathLike | None, cfg: DenseConfig) -> tuple[nn.Module, str]:
    """A private copy of the initialisation, and a short description of it."""
    if backbone is None or (isinstance(backbone, str) and backbone.lower() == "random"):
        torch.manual_seed(cfg.seed)
        net, _ = make_backbone(cfg.arch)
        return net, f"random ({cfg.arch})"
    if isinstance(backbone, str) and backbone.lower() == "imagenet":
        raise ValueError(
            "ImageNet weights are not available offline (geolab downloads nothing at run time). "
            "Use None/'random', a geolab checkpoint, or an official GASSL .pth.tar you already have."
        )
    if isinstance(backbone, (str, os.PathLike)):
        net = load_backbone(backbone)
        desc = str(backbone)
    elif isinstance(backbone, nn.Module):
        net = copy.deepcopy(backbone)  # the caller's module is never trained
        meta = getattr(backbone, "geolab_meta", None)
        desc = (meta or {}).get("checkpoint") or (meta or {}).get("method") or type(backbone).__name__
    else:
        raise TypeError(
            f"backbone must be an nn.Module, a checkpoint path, 'random' or None; got {type(backbone).__name__}"
        )
    set_bn_splits(net, 1)  # geolab's split BatchNorm behaves as plain BatchNorm here
    return net, str(desc)


def _dense_splits(
    manifest: str | os.PathLike | pd.DataFrame, cfg: DenseConfig
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The training and the scored rows of the manifest, and the scored split's name.

    Raises:
        ManifestError: no ``split`` column, or neither ``cfg.test_split`` nor ``val`` rows.
    """
    df = manifest if isinstance(manifest, pd.DataFrame) else load_manifest(manifest)
    if "split" not in df.columns:
        raise ManifestError(
            "no 'split' column; the dense task trains on one split and scores another.",
            file=df.attrs.get("source"),
            column="split",
        )
    splits = set(df["split"].astype(str))
    eval_split = scoring_split(df, cfg.test_split)
    if eval_split not in splits:
        raise ManifestError(
            f"neither {cfg.test_split!r} nor 'val' rows to score (splits: {', '.join(sorted(splits))}).",
            file=df.attrs.get("source"),
            column="split",
        )
    if eval_split != cfg.test_split:  # stacklevel 3: the caller of train_dense
        warnings.warn(f"no {cfg.test_split!r} split in the manifest; scoring the 'val' split instead", stacklevel=3)
    train_df = limit_rows(split_rows(df, cfg.train_split), cfg.max_train_images, cfg.seed)
    test_df = limit_rows(split_rows(df, eval_split), cfg.max_test_images, cfg.seed)
    for part in (train_df, test_df):
        part.attrs = dict(df.attrs)
    return train_df, test_df, eval_split


def _dense_datasets(
    train_df: pd.DataFrame, test_df: pd.DataFrame, cfg: DenseConfig
) -> tuple[SegmentationDataset, SegmentationDataset, int]:
    """The training (augmented) and test data sets, and the number of classes.

    ``cfg.num_classes`` or, when None, one more than the largest class id in either split (at least 2).
    """
    train_ds, test_ds = (
        SegmentationDataset(part, cfg.image_size, augment=augment, num_classes=cfg.num_classes,
                            ignore_index=cfg.ignore_index, preload=cfg.preload, progress=cfg.progress)
        for part, augment in ((train_df, True), (test_df, False))
    )
    num_classes = cfg.num_classes
    if num_classes is None:
        num_classes = max(2, max(train_ds.max_class_id(), test_ds.max_class_id()) + 1)
        train_ds.num_classes = test_ds.num_classes = num_classes
    return train_ds, test_ds, num_classes


def train_dense(
    backbone: nn.Module | str | os.PathLike | None,
    manifest: str | os.PathLike | pd.DataFrame,
    cfg: DenseConfig | None = None,
    *,
    return_model: bool = False,
    per_image: bool = False,
) -> dict[str, Any]:
    """Fine-tune (or, frozen, probe) a backbone on the dense task and score it.

    Trains on ``cfg.train_split`` and scores ``cfg.test_split`` (``"val"`` when the manifest
    has no such split). Seeded: on the CPU the same inputs and thread count give the same numbers.

    Args:
        backbone: the initialisation: a ResNet module (copied, never changed), a checkpoint
            path (:func:`geolab.evaluate.load_backbone`), or ``None``/``"random"`` for a random
            ``cfg.arch``. ``"imagenet"`` raises: no download happens offline.
        manifest: manifest path or loaded table, with ``mask_path``.
        cfg: settings (default :class:`~geolab.config.DenseConfig`).
        return_model: also return the trained model under ``"model"`` (not JSON-serialisable).
        per_image: also return each test image's confusion matrix under ``"image_confusion"``
            (an array, not JSON-serialisable; see :func:`evaluate_dense`).

    Returns:
        ``{"miou", "pixel_acc", "per_class_iou": {class: IoU or None}, "epochs", "wall_s",
        "train_loss": [per epoch], "num_classes", "class_names", "eval_split", "n_train",
        "n_test", "freeze_backbone", "decoder", "init"}``.

    Raises:
        ManifestError: no masks, a missing split, a bad mask (named by row).
        ValueError: ``"imagenet"`` asked for.
    """
    cfg = cfg or DenseConfig()
    t0 = time.perf_counter()
    train_df, test_df, eval_split = _dense_splits(manifest, cfg)
    train_ds, test_ds, num_classes = _dense_datasets(train_df, test_df, cfg)
    names = mask_class_names(num_classes, cfg.class_names)

    net, desc = _resolve_backbone(backbone, cfg)
    dev = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)  # decoder initialisation and flips
    model = SegmentationModel(
        net,
        num_classes,
        decoder=cfg.decoder,
        encoder_depth=cfg.encoder_depth,
        decoder_channels=cfg.decoder_channels,
        freeze_backbone=cfg.freeze_backbone,
    )
    losses = fit_dense(model, train_ds, cfg, dev)
    scores = evaluate_dense(
        model,
        test_ds,
        num_classes,
        batch_size=max(cfg.batch_size, 64),
        ignore_index=cfg.ignore_index,
        class_names=names,
        device=dev,
        progress=cfg.progress,
        per_image=per_image,
    )
    out: dict[str, Any] = {
        **scores,
        "epochs": cfg.epochs,
        "wall_s": round(time.perf_counter() - t0, 3),
        "train_loss": [round(v, 6) for v in losses],
        "num_classes": num_classes,
        "class_names": names,
        "eval_split": eval_split,
        "n_train": len(train_ds),
        "n_test": len(test_ds),
        "freeze_backbone": cfg.freeze_backbone,
        "decoder": cfg.decoder,
        "init": desc,
    }
    if return_model:
        out["model"] = model.cpu().eval()
    return out
