"""The dense task's scores: per-class IoU, mean IoU and pixel accuracy from a pixel confusion matrix."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from geolab.dense.data import GEOWORLD_MASK_CLASSES


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """Pixel confusion matrix, rows = target class, columns = predicted class (int64).

    Pixels whose target is ``ignore_index`` (or outside ``0..num_classes-1``) are not counted.
    """
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    keep = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        keep &= target != ignore_index
    pred, target = pred[keep], target[keep]
    if (pred < 0).any() or (pred >= num_classes).any():
        raise ValueError(f"predictions must be class ids in 0..{num_classes - 1}")
    return torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    ).cpu()


def scores_from_confusion(cm: Tensor | np.ndarray) -> tuple[np.ndarray, float, float]:
    """IoU per class, mean IoU and pixel accuracy from a confusion matrix.

    ``IoU_c = TP_c / (TP_c + FP_c + FN_c)``. A class absent from both the targets and the
    predictions has ``0 / 0``: its IoU is NaN (undefined) and it is **left out of the mean**
    (the usual convention, e.g. of the semseg/PSANet code the paper used), so a scene without
    water neither rewards nor punishes a model for water. A class present in only one of the
    two has IoU 0 and counts.

    Returns:
        ``(iou per class with NaN for absent classes, mIoU over the defined classes,
        pixel accuracy)``; mIoU is NaN when no class is defined (no pixels at all).
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    total = cm.sum()
    miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
    acc = float(tp.sum() / total) if total > 0 else float("nan")
    return iou, miou, acc


def mask_class_names(num_classes: int, names: Sequence[str] | None = None) -> list[str]:
    """A name for each of ``num_classes`` classes: ``names`` (default geoworld's), then ``class_<i>``."""
    base = list(names) if names is not None else list(GEOWORLD_MASK_CLASSES)
    return [base[c] if c < len(base) else f"class_{c}" for c in range(num_classes)]


def scores_dict(cm: Tensor, class_names: Sequence[str] | None) -> dict[str, Any]:
    """The scores of a confusion matrix as a JSON-ready dict (see :func:`segmentation_scores`)."""
    iou, miou, acc = scores_from_confusion(cm)
    names = mask_class_names(len(iou), class_names)
    return {
        "miou": miou,
        "pixel_acc": acc,
        # JSON has no NaN: an undefined IoU (class absent from targets and predictions) is None
        "per_class_iou": {n: (None if math.isnan(v) else float(v)) for n, v in zip(names, iou)},
    }


def segmentation_scores(
    pred: Tensor,
    target: Tensor,
    num_classes: int,
    ignore_index: int | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """mIoU, pixel accuracy and per-class IoU of predicted vs target class-id maps.

    Args:
        pred: predicted class ids, any shape.
        target: true class ids, same shape.
        num_classes: number of classes.
        ignore_index: target value not scored.
        class_names: names for ``per_class_iou`` (default: geoworld's, then ``class_<i>``).

    Returns:
        ``{"miou", "pixel_acc", "per_class_iou": {name: IoU or None}}`` (None: the class is in
        neither map, excluded from ``miou``; see :func:`scores_from_confusion`).
    """
    return scores_dict(confusion_matrix(pred, target, num_classes, ignore_index), class_names)
