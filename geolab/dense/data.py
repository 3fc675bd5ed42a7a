"""The dense task's data: (image, mask) pairs of one manifest split, and the row selection that feeds them.

geoworld writes, next to each image, a PNG mask of class ids (0 background, 1 building, 2 water,
3 road) whose path is in the manifest column ``mask_path``; :class:`SegmentationDataset` reads them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from geolab.images import open_rgb
from geolab.manifest import ManifestError
from geolab.transforms import IMAGENET_NORMALIZE

#: geoworld's mask classes, in id order (``geolab.world.canvas.MASK_CLASSES``).
GEOWORLD_MASK_CLASSES: tuple[str, ...] = ("background", "building", "water", "road")


def split_rows(df: pd.DataFrame, split: str | None) -> pd.DataFrame:
    """The rows of one split (``None``: every row).

    Raises:
        ManifestError: the table has no ``split`` column, or the split has no rows.
    """
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
        rows = split_rows(df, split)
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
        self._mean = torch.tensor(IMAGENET_NORMALIZE["mean"]).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_NORMALIZE["std"]).view(3, 1, 1)
        self._images: list[Tensor] | None = None
        self._masks: list[Tensor] | None = None
        if preload:
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
        except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError...
            raise self._error(i, "path", f"cannot read image {self.paths[i]} ({type(exc).__name__}: {exc}).") from None
        try:
            with Image.open(self.mask_paths[i]) as im:
                im.load()
                mask = im
        except Exception as exc:  # noqa: BLE001 - any unreadable mask gets the same advice
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


def limit_rows(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """At most ``n`` rows of ``df`` (a seeded sample, in index order); ``None``: all of them."""
    if n is None or len(df) <= n:
        return df
    return df.sample(n=n, random_state=seed).sort_index()
