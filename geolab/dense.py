"""Transfer to a dense task: semantic segmentation of geoworld masks, each pre-training as the
initialisation of the encoder (Ayush et al. 2021, Sec. 5.2).

The paper transfers its fMoW pre-trainings to two dense tasks: object detection on xView
(RetinaNet, AP50) and building segmentation on SpaceNet (PSANet, mIoU); their numbers are in
:data:`geolab.paper.PAPER_TRANSFER`. Neither data set is available offline, so the course's dense task is
geoworld's: next to each image, geoworld writes a PNG mask of class ids (0 background,
1 building, 2 water, 3 road) whose path is in the manifest column ``mask_path``. geoworld is a
simulation; numbers measured here show the trend of the comparison, not the paper's values.

The pieces:

* :class:`SegmentationDataset` -- (normalised image, mask) pairs of one split; training flips
  the image and its mask together.
* :class:`SegmentationModel` -- the ResNet backbone's stages as encoder plus a light decoder
  (FPN-lite by default, or the classic FCN head); ``freeze_backbone`` gives the dense analogue
  of a linear probe.
* :func:`confusion_matrix`, :func:`scores_from_confusion`, :func:`segmentation_scores` --
  per-class IoU, mIoU and pixel accuracy over a whole split.
* :func:`fit_dense`, :func:`evaluate_dense` -- the plain training loop and the evaluation.
* :func:`train_dense` -- all of it for one initialisation (what notebook 07 calls).
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from geolab.config import DenseConfig
from geolab.images import open_rgb
from geolab.manifest import ManifestError

#: geoworld's mask classes, in id order (``geolab.world.scene.MASK_CLASSES``).
GEOWORLD_MASK_CLASSES: tuple[str, ...] = ("background", "building", "water", "road")

#: ImageNet normalisation, the same as :func:`geolab.transforms.eval_transform` (lightly's
#: ``IMAGENET_NORMALIZE``), so that a pre-trained encoder sees inputs as in pre-training.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)

# ----------------------------------------------------------------------------- data
def _split_rows(df: pd.DataFrame, split: str | None) -> pd.DataFrame:
    if split is None:
        return df
    if "split" not in df.columns:
        raise ManifestError(
            f"the table has no 'split' column, so split {split!r} cannot be selected; pass split=None "
            "to use every row.",
            file=df.attrs.get("source"),
            column="split",
        )
    out = df[df["split"].astype(str) == split]
    if out.empty:
        have = ", ".join(sorted(df["split"].astype(str).unique())) or "none"
        raise ManifestError(
            f"split {split!r} has no rows (splits present: {have}). Choose one of those or add rows.",
            file=df.attrs.get("source"),
            column="split",
        )
    return out


class SegmentationDataset(Dataset):
    """(image, mask) pairs of one split of a manifest with a ``mask_path`` column.

    Images are read as RGB, resized to ``image_size`` (bilinear) and normalised with ImageNet's
    mean/std (as :func:`geolab.transforms.eval_transform`); masks are single-channel PNGs of
    class ids, resized with nearest neighbours (ids never blend). In training
    (``augment=True``), a random horizontal flip and a random vertical flip are drawn per
    sample and applied to the image *and* its mask, so every pixel keeps its label.
    Random draws use torch's global generator (seed it, or let the DataLoader seed workers).

    Args:
        df: a loaded manifest (:func:`geolab.manifest.load_manifest`) with ``path`` and
            ``mask_path``; the index is taken as the manifest row in error messages.
        image_size: side of the output in pixels.
        split: rows of this split only (``None``: every row).
        augment: flips on or off; ``None`` = on for ``split == "train"`` only.
        num_classes: when given, mask values must be below it (or equal ``ignore_index``).
        ignore_index: mask value that is not a class (kept as is, not scored).
        preload: decode everything once into memory (uint8); otherwise read per item.
        progress: tqdm bar while preloading.

    Raises:
        ManifestError: no ``mask_path`` column, an empty split, an unreadable mask, a mask
            that is not single-channel, a mask whose size differs from its image's, or a class
            id out of range; each names the manifest, row and column.
    """

    def __init__(
        self,
        df: pd.DataFrame,
        image_size: int,
        split: str | None = None,
        *,
        augment: bool | None = None,
        num_classes: int | None = None,
        ignore_index: int = 255,
        preload: bool = True,
        progress: bool = False,
    ) -> None:
        self.source = df.attrs.get("source")
        if "mask_path" not in df.columns:
            raise ManifestError(
                "no 'mask_path' column: the dense task needs a per-pixel mask next to each image. "
                "geoworld manifests have one (`geolab data world`); real fMoW has no masks.",
                file=self.source,
                column="mask_path",
            )
        rows = _split_rows(df, split)
        missing = rows["mask_path"].isna().to_numpy() | (rows["mask_path"].astype(str).str.strip() == "").to_numpy()
        if missing.any():
            raise ManifestError(
                "mask_path is empty; every image of the dense task needs a mask (drop the row or add its mask).",
                file=self.source,
                row=int(rows.index[int(np.argmax(missing))]),
                column="mask_path",
            )
        self.image_size = int(image_size)
        self.split = split
        self.augment = (split == "train") if augment is None else bool(augment)
        self.num_classes = num_classes
        self.ignore_index = int(ignore_index)
        self.rows = rows.index.to_numpy()
        self.paths = rows["path"].astype(str).tolist()
        self.mask_paths = rows["mask_path"].astype(str).tolist()
        self._mean = torch.tensor(_MEAN).view(3, 1, 1)
        self._std = torch.tensor(_STD).view(3, 1, 1)
        self._images: list[Tensor] | None = None
        self._masks: list[Tensor] | None = None
        if preload:
            from tqdm.auto import tqdm

            pairs = [self._read(i) for i in tqdm(range(len(self)), desc="masks", disable=not progress, leave=False)]
            self._images = [p[0] for p in pairs]
            self._masks = [p[1] for p in pairs]

    def __len__(self) -> int:
        return len(self.paths)

    def _error(self, i: int, column: str, problem: str) -> ManifestError:
        return ManifestError(problem, file=self.source, row=int(self.rows[i]), column=column)

    def _read(self, i: int) -> tuple[Tensor, Tensor]:
        """Decode item ``i``: (uint8 image (3, S, S), int64 mask (S, S)), resized."""
        size = (self.image_size, self.image_size)
        try:
            image = open_rgb(self.paths[i])  # 16-bit rescaled, size capped (geolab.images)
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError...
            raise self._error(i, "path", f"cannot read image {self.paths[i]} ({type(exc).__name__}: {exc}).") from None
        try:
            with Image.open(self.mask_paths[i]) as im:
                im.load()
                mask = im
        except Exception as exc:
            raise self._error(
                i, "mask_path", f"cannot read mask {self.mask_paths[i]} ({type(exc).__name__}: {exc}); regenerate it."
            ) from None
        if mask.mode not in ("L", "P", "1", "I", "I;16", "I;16B", "I;16L"):
            raise self._error(
                i,
                "mask_path",
                f"mask {self.mask_paths[i]} has mode {mask.mode} ({len(mask.getbands())} channels); a mask must "
                "be a single-channel PNG whose pixel values are class ids (0 background, 1, 2, ...).",
            )
        if mask.size != image.size:
            raise self._error(
                i,
                "mask_path",
                f"mask {self.mask_paths[i]} is {mask.size[0]}x{mask.size[1]} but its image is "
                f"{image.size[0]}x{image.size[1]}; a mask must cover its image pixel for pixel.",
            )
        if image.size != size:
            image = image.resize(size, Image.Resampling.BILINEAR)
        m = np.asarray(mask).astype(np.int64)
        if m.shape[::-1] != size:
            # nearest neighbour: class ids are labels, never averaged
            m = np.asarray(Image.fromarray(m.astype(np.int32)).resize(size, Image.Resampling.NEAREST)).astype(np.int64)
        if self.num_classes is not None:
            bad = (m >= self.num_classes) | (m < 0)
            bad &= m != self.ignore_index
            if bad.any():
                values = sorted({int(v) for v in np.unique(m[bad])})[:5]
                raise self._error(
                    i,
                    "mask_path",
                    f"mask {self.mask_paths[i]} has class ids {values} outside 0..{self.num_classes - 1}; "
                    f"raise num_classes or mark unlabelled pixels with {self.ignore_index}.",
                )
        img = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()
        return img, torch.from_numpy(m)

    def raw(self, i: int) -> tuple[Tensor, Tensor]:
        """Item ``i`` before normalisation and flips: (uint8 image (3, S, S), mask (S, S))."""
        if self._images is not None and self._masks is not None:
            return self._images[i], self._masks[i]
        return self._read(i)

    def max_class_id(self) -> int:
        """The largest class id in the masks (``ignore_index`` excluded); -1 if none."""
        top = -1
        for i in range(len(self)):
            m = self.raw(i)[1]
            m = m[m != self.ignore_index]
            if m.numel():
                top = max(top, int(m.max()))
        return top

    def normalise(self, image: Tensor) -> Tensor:
        """uint8 (3, H, W) -> float, ImageNet-normalised."""
        return (image.float() / 255.0 - self._mean) / self._std

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        image, mask = self.raw(i)
        x = self.normalise(image)
        y = mask
        if self.augment:
            hflip, vflip = (torch.rand(2) < 0.5).tolist()
            if hflip:
                x, y = x.flip(-1), y.flip(-1)
            if vflip:
                x, y = x.flip(-2), y.flip(-2)
        return x, y.long().contiguous()


# ----------------------------------------------------------------------------- model
_STAGES = ("layer1", "layer2", "layer3", "layer4")


class ResNetEncoder(nn.Module):
    """The stages of a torchvision-style ResNet as a feature pyramid.

    Uses the backbone's own modules (``conv1, bn1, relu, maxpool, layer1..layerN``), so its
    weights are the pre-trained ones; the pooling and ``fc`` are not used.

    Args:
        backbone: a torchvision ResNet (e.g. :func:`geolab.evaluate.load_backbone`).
        depth: last stage, ``"layer3"`` (output stride 16) or ``"layer4"`` (stride 32).

    Raises:
        TypeError: the backbone lacks a ResNet's stem or stages.
    """

    def __init__(self, backbone: nn.Module, depth: str = "layer4") -> None:
        super().__init__()
        if depth not in ("layer3", "layer4"):
            raise ValueError(f"depth must be 'layer3' or 'layer4', got {depth!r}")
        names = ("conv1", "bn1", "relu", "maxpool") + _STAGES[: _STAGES.index(depth) + 1]
        missing = [n for n in names if not hasattr(backbone, n)]
        if missing:
            raise TypeError(
                f"the backbone ({type(backbone).__name__}) has no {', '.join(missing)}: the dense task needs a "
                "torchvision-style ResNet (geolab.models.make_backbone or geolab.evaluate.load_backbone)."
            )
        self.stem = nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool)
        self.stages = nn.ModuleList(getattr(backbone, n) for n in _STAGES[: _STAGES.index(depth) + 1])
        self.strides = [4, 8, 16, 32][: len(self.stages)]
        self.channels = self._probe_channels()

    @torch.no_grad()
    def _probe_channels(self) -> list[int]:
        was = self.training
        self.eval()  # no BatchNorm statistics change
        p = next(self.parameters())
        feats = self(torch.zeros(1, 3, 64, 64, dtype=p.dtype, device=p.device))
        self.train(was)
        return [int(f.shape[1]) for f in feats]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class FPNLiteDecoder(nn.Module):
    """A light Feature Pyramid Network decoder (Lin et al. 2017, without its extra levels).

    A 1x1 lateral conv brings each stage to ``channels``; from the deepest stage down, the
    coarser map is upsampled (nearest) and added to the next lateral; a 3x3 conv + BN + ReLU
    and a 1x1 classifier then act at stride 4.
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = 64) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.fuse = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: list[Tensor]) -> Tensor:
        p = self.lateral[-1](feats[-1])
        for lat, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            p = lat(f) + F.interpolate(p, size=f.shape[-2:], mode="nearest")
        return self.classifier(self.fuse(p))


class FCNDecoder(nn.Module):
    """The classic FCN head (Long et al. 2015, FCN-32s/16s): a 1x1 conv classifier on the
    deepest stage only; the caller upsamples its logits bilinearly to the input size."""

    def __init__(self, in_channels: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Conv2d(in_channels[-1], num_classes, 1)

    def forward(self, feats: list[Tensor]) -> Tensor:
        return self.classifier(feats[-1])


class SegmentationModel(nn.Module):
    """ResNet encoder + light decoder -> per-pixel class logits at the input's size.

    Why this shape: the paper's dense transfer uses heavy heads (PSANet, RetinaNet) on
    224-416 px inputs and GPUs. On 32-64 px geoworld images on a CPU, the deepest ResNet stage
    is 1x1-2x2 pixels, so the classic FCN head (1x1 conv on it + bilinear upsampling, kept as
    ``decoder="fcn"``) can only paint blobs; geoworld's buildings and roads are a few pixels
    wide. The default FPN-lite decoder adds the higher-resolution stages (layer1 at stride 4)
    through 1x1 laterals and a top-down sum, for about 0.1 M parameters with 64 channels, so
    the encoder (the thing being compared) stays almost all of the model and each
    initialisation is judged on features at every scale, as in a real dense task.

    Args:
        backbone: a torchvision-style ResNet; its modules become the encoder (not copied).
        num_classes: classes of the masks.
        decoder: ``"fpn"`` or ``"fcn"``.
        encoder_depth: ``"layer3"`` or ``"layer4"``.
        decoder_channels: FPN-lite width.
        freeze_backbone: encoder weights get no gradient and its BatchNorm layers stay in eval
            mode (running statistics unchanged), like a linear probe's frozen features.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        decoder: str = "fpn",
        encoder_depth: str = "layer4",
        decoder_channels: int = 64,
        freeze_backbone: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.encoder = ResNetEncoder(backbone, encoder_depth)
        if decoder == "fpn":
            self.decoder: nn.Module = FPNLiteDecoder(self.encoder.channels, num_classes, decoder_channels)
        elif decoder == "fcn":
            self.decoder = FCNDecoder(self.encoder.channels, num_classes)
        else:
            raise ValueError(f"Unknown decoder {decoder!r}; choose 'fpn' or 'fcn'.")
        self.num_classes = num_classes
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            for p in self.encoder.parameters():
                p.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode: bool = True) -> SegmentationModel:
        super().train(mode)
        if self.freeze_backbone:
            self.encoder.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        if self.freeze_backbone:
            with torch.no_grad():
                feats = self.encoder(x)
        else:
            feats = self.encoder(x)
        logits = self.decoder(feats)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


# ----------------------------------------------------------------------------- metrics
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


def _class_names(num_classes: int, names: Sequence[str] | None = None) -> list[str]:
    base = list(names) if names is not None else list(GEOWORLD_MASK_CLASSES)
    return [base[c] if c < len(base) else f"class_{c}" for c in range(num_classes)]


def _scores_dict(cm: Tensor, class_names: Sequence[str] | None) -> dict[str, Any]:
    iou, miou, acc = scores_from_confusion(cm)
    names = _class_names(len(iou), class_names)
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
    return _scores_dict(confusion_matrix(pred, target, num_classes, ignore_index), class_names)


# ----------------------------------------------------------------------------- loops
def _device(name: str | torch.device) -> torch.device:
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={name!r} asked for but no CUDA GPU is available; use device='cpu'.")
    return torch.device(name)


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
    from tqdm.auto import tqdm

    dev = _device(device)
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
) -> dict[str, Any]:
    """mIoU, pixel accuracy and per-class IoU of ``model`` over a whole dataset.

    The confusion matrix is summed over every pixel of every image before IoUs are taken
    (data-set-level IoU, as semseg/PSANet report), not averaged per image.

    Returns:
        See :func:`segmentation_scores`.
    """
    from tqdm.auto import tqdm

    dev = _device(device)
    model.to(dev).eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for x, y in tqdm(loader, desc="dense eval", disable=not progress, leave=False):
        pred = model(x.to(dev)).argmax(1).cpu()
        cm += confusion_matrix(pred, y, num_classes, ignore_index)
    return _scores_dict(cm, class_names)


@torch.no_grad()
def predict_masks(model: SegmentationModel, images: Tensor, device: str | torch.device = "cpu") -> Tensor:
    """Predicted class ids (N, H, W) for a batch of normalised images (N, 3, H, W)."""
    dev = _device(device)
    model.to(dev).eval()
    return model(images.to(dev)).argmax(1).cpu()


# ----------------------------------------------------------------------------- one run
def _resolve_backbone(backbone: nn.Module | str | os.PathLike | None, cfg: DenseConfig) -> tuple[nn.Module, str]:
    """A private copy of the initialisation, and a short description of it."""
    from geolab.models import make_backbone, set_bn_splits

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
        from geolab.evaluate import load_backbone

        net = load_backbone(backbone)
        desc = str(backbone)
    elif isinstance(backbone, nn.Module):
        net = copy.deepcopy(backbone)  # the caller's module is never trained
        meta = getattr(backbone, "geolab_meta", None)
        desc = (meta or {}).get("checkpoint") or (meta or {}).get("method") or type(backbone).__name__
    else:
        raise TypeError(f"backbone must be an nn.Module, a checkpoint path, 'random' or None; got {type(backbone).__name__}")
    set_bn_splits(net, 1)  # geolab's split BatchNorm behaves as plain BatchNorm here
    return net, str(desc)


def _limit(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    if n is None or len(df) <= n:
        return df
    return df.sample(n=n, random_state=seed).sort_index()


def train_dense(
    backbone: nn.Module | str | os.PathLike | None,
    manifest: str | os.PathLike | pd.DataFrame,
    cfg: DenseConfig | None = None,
    *,
    return_model: bool = False,
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

    Returns:
        ``{"miou", "pixel_acc", "per_class_iou": {class: IoU or None}, "epochs", "wall_s",
        "train_loss": [per epoch], "num_classes", "class_names", "eval_split", "n_train",
        "n_test", "freeze_backbone", "decoder", "init"}``.

    Raises:
        ManifestError: no masks, a missing split, a bad mask (named by row).
        ValueError: ``"imagenet"`` asked for.
    """
    from geolab.manifest import load_manifest

    cfg = cfg or DenseConfig()
    t0 = time.perf_counter()
    if isinstance(manifest, pd.DataFrame):
        df = manifest
    else:
        df = load_manifest(manifest)
    if "split" not in df.columns:
        raise ManifestError("no 'split' column; the dense task trains on one split and scores another.", file=df.attrs.get("source"), column="split")
    splits = set(df["split"].astype(str))
    eval_split = cfg.test_split
    if eval_split not in splits:
        if "val" in splits:
            warnings.warn(f"no {eval_split!r} split in the manifest; scoring the 'val' split instead", stacklevel=2)
            eval_split = "val"
        else:
            raise ManifestError(
                f"neither {cfg.test_split!r} nor 'val' rows to score (splits: {', '.join(sorted(splits))}).",
                file=df.attrs.get("source"),
                column="split",
            )
    train_df = _limit(_split_rows(df, cfg.train_split), cfg.max_train_images, cfg.seed)
    test_df = _limit(_split_rows(df, eval_split), cfg.max_test_images, cfg.seed)
    for part in (train_df, test_df):
        part.attrs = dict(df.attrs)

    common = dict(ignore_index=cfg.ignore_index, preload=cfg.preload, progress=cfg.progress)
    train_ds = SegmentationDataset(train_df, cfg.image_size, augment=True, num_classes=cfg.num_classes, **common)
    test_ds = SegmentationDataset(test_df, cfg.image_size, augment=False, num_classes=cfg.num_classes, **common)
    num_classes = cfg.num_classes
    if num_classes is None:
        num_classes = max(2, max(train_ds.max_class_id(), test_ds.max_class_id()) + 1)
        train_ds.num_classes = test_ds.num_classes = num_classes
    names = _class_names(num_classes, cfg.class_names)

    net, desc = _resolve_backbone(backbone, cfg)
    dev = _device(cfg.device)
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


__all__ = [
    "GEOWORLD_MASK_CLASSES",
    "FCNDecoder",
    "FPNLiteDecoder",
    "ResNetEncoder",
    "SegmentationDataset",
    "SegmentationModel",
    "confusion_matrix",
    "evaluate_dense",
    "fit_dense",
    "predict_masks",
    "scores_from_confusion",
    "segmentation_scores",
    "train_dense",
]
