"""The datasets of the training loop and of feature extraction, and the images they read.

:class:`ImageDataset` (one view per image) and :class:`TemporalPairDataset` (query and its
temporal positive, drawn by :class:`geolab.positives.LocationIndex`) return the batch dict of
the training loop; unreadable images are skipped or fail (:data:`BAD_IMAGE_POLICIES`);
:func:`decode_images` preloads a split. Temporal positive strategies and seasons live in
:mod:`geolab.positives`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from geolab.errors import UserError
from geolab.images import open_rgb
from geolab.manifest import ManifestError
from geolab.positives import LocationIndex, Strategy, check_strategy, need_columns
from geolab.transforms import eval_transform, moco_v2_view

BAD_IMAGE_POLICIES: tuple[str, ...] = ("skip", "fail")


def label_names(df: pd.DataFrame) -> list[str]:
    """The class order used everywhere: the manifest's labels, sorted.

    Build it from the whole manifest (not one split) so that every split's datasets use
    the same label indices.

    Args:
        df: manifest rows.

    Returns:
        Sorted unique label names.
    """
    return sorted(df["label"].astype(str).unique().tolist())


# ----------------------------------------------------------------------------- images
class BadImageError(ManifestError, UserError):
    """An image that cannot be read (missing, zero bytes, truncated, not an image).

    Raised with ``on_bad_image="fail"``; names the image path and its manifest row. When it
    comes back from a DataLoader worker (which re-creates it from text), the worker's
    traceback is dropped and only the original message is kept.
    """

    _WORKER = re.compile(r"^Caught BadImageError (in DataLoader worker process \d+)\.", re.S)

    def __init__(self, problem: str, **kwargs: Any) -> None:
        m = self._WORKER.match(problem)
        if m and "BadImageError: " in problem:
            original = problem.rsplit("BadImageError: ", 1)[1].strip()
            row = re.search(r"row (\d+)", original)
            ValueError.__init__(self, f"{original} [{m.group(1)}]")
            # the worker's text names the file: the attribute keeps ManifestError's "no file" value
            self.file, self.column, self.line, self.problem = "<table>", "path", None, original
            self.row = int(row.group(1)) if row else None
            return
        super().__init__(problem, **kwargs)


class DataSetError(UserError, ValueError):
    """A data set that cannot be made as asked (images too large to preload, labels outside the classes given)."""


class BadImageWarning(UserWarning):
    """An unreadable image was skipped (``on_bad_image="skip"``)."""


class _PackedStrings:
    """Strings packed into one uint8 buffer plus offsets.

    A list or object array of Python strings is copied page by page into every forked
    DataLoader worker as reference counts change; two numpy arrays are not.
    """

    def __init__(self, items: Sequence[str]) -> None:
        encoded = [str(s).encode("utf-8") for s in items]
        self._offsets = np.concatenate([[0], np.cumsum([len(b) for b in encoded])]).astype(np.int64)
        self._data = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else np.zeros(0, np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self._data[self._offsets[i] : self._offsets[i + 1]].tobytes().decode("utf-8")


class _ImageReader:
    """Opens manifest images as RGB and applies the bad-image policy.

    The set of bad rows lives in a shared-memory tensor, so DataLoader workers and the main
    process see one count and each bad path is warned about once.
    """

    def __init__(self, df: pd.DataFrame, on_bad_image: str) -> None:
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ValueError(f"on_bad_image must be one of {BAD_IMAGE_POLICIES}, got {on_bad_image!r}")
        self.policy = on_bad_image
        self.paths = _PackedStrings(df["path"].astype(str).tolist())
        self.source = df.attrs.get("source")
        self.bad = torch.zeros(len(df), dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, row: int) -> Image.Image | None:
        """The image of ``row`` as RGB; None if unreadable under ``skip``; raises under ``fail``."""
        if self.policy == "skip" and bool(self.bad[row]):
            return None
        path = self.paths[row]
        try:
            return open_rgb(path)  # full decode (truncation shows here); 16-bit rescaled; size capped
        except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
            reason = f"{type(exc).__name__}: {exc}"
            if self.policy == "fail":
                raise BadImageError(
                    f"cannot read image {path} ({reason}). Replace the file, drop the row from the "
                    "manifest, or use on_bad_image='skip' to substitute the next readable image.",
                    file=self.source,
                    row=row,
                    column="path",
                ) from None
            if not bool(self.bad[row]):
                self.bad[row] = True
                warnings.warn(
                    f"skipping unreadable image {path} (manifest row {row}; {reason}); "
                    "using the next readable image instead",
                    BadImageWarning,
                    stacklevel=3,
                )
            return None

    def readable(self, row: int) -> tuple[int, Image.Image]:
        """``row``'s image or, if unreadable, the next readable row's (wrapping around)."""
        n = len(self)
        for step in range(n):
            r = (row + step) % n
            img = self.load(r)
            if img is not None:
                return r, img
        raise BadImageError(
            f"none of the {n} images could be read (first: {self.paths[0]}); check the image folder.",
            file=self.source,
            column="path",
        )


class _ImageSource(Protocol):
    """Where a data set's items come from.

    :class:`_ImageReader`, :class:`_TensorImages`, :class:`geolab.jpeg_pipeline._EncodedImages`.
    """

    policy: str  #: the bad-image policy
    bad: torch.Tensor  #: bool per row: found unreadable

    def __len__(self) -> int: ...

    def load(self, row: int) -> Any: ...

    def readable(self, row: int) -> tuple[int, Any]: ...


class _TensorImages:
    """Images already decoded into one uint8 tensor ``(N, 3, H, W)`` (see :func:`decode_images`).

    The same interface as :class:`_ImageReader`, without any file access.
    """

    def __init__(self, images: torch.Tensor, n_rows: int) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3 or images.shape[0] != n_rows:
            raise ValueError(
                f"preloaded images must be a uint8 tensor of shape ({n_rows}, 3, H, W), one per manifest row; "
                f"got {tuple(images.shape)} {images.dtype}. Build it with geolab.datasets.decode_images(df, size)."
            )
        self.images = images
        self.policy = "skip"
        self.bad = torch.zeros(n_rows, dtype=torch.bool)  # decode_images already replaced unreadable images

    def __len__(self) -> int:
        return self.images.shape[0]

    def load(self, row: int) -> torch.Tensor:
        return self.images[row]

    def readable(self, row: int) -> tuple[int, torch.Tensor]:
        return row, self.images[row]


def decode_images(
    df: pd.DataFrame, size: int, on_bad_image: str = "skip", progress: bool = True, max_bytes: int = 4 << 30
) -> torch.Tensor:
    """Decode every image of ``df`` once into one uint8 tensor ``(N, 3, size, size)``.

    For small data sets (geoworld: a few thousand images of 32-64 px, a few tens of MB) this
    replaces a PNG decode and a PIL augmentation per image and per step by one decode in
    all; the MoCo-v2 augmentation is then applied to whole batches of tensors
    (:class:`geolab.transforms.BatchMoCoV2View`). Images are resized (bilinear, antialiased)
    to ``size`` when they have another size.

    Args:
        df: manifest rows (``path`` absolute, as :func:`geolab.manifest.load_manifest` gives).
        size: side of the stored images in pixels (the training ``image_size``).
        on_bad_image: ``"skip"`` (an unreadable image is replaced by the next readable one,
            with a warning) or ``"fail"`` (raise :class:`BadImageError`).
        progress: show a progress bar.
        max_bytes: refuse to hold more than this in memory.

    Returns:
        uint8 tensor, row ``i`` the image of ``df.iloc[i]``.

    Raises:
        DataSetError: the images would need more than ``max_bytes`` of memory (a ValueError).
        BadImageError: an unreadable image under ``"fail"``.
    """
    need = len(df) * 3 * size * size
    if need > max_bytes:
        raise DataSetError(
            f"preloading {len(df)} images at {size} px needs {need / 2**30:.1f} GiB of memory (limit "
            f"{max_bytes / 2**30:.1f} GiB); train without preload (preload=False, no --preload), "
            "which reads images as it goes."
        )
    reader = _ImageReader(df, on_bad_image)
    out = torch.empty((len(df), 3, size, size), dtype=torch.uint8)
    for i in tqdm(range(len(df)), desc="decoding images", unit="img", disable=not progress, leave=False):
        _row, img = reader.readable(i)
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        out[i] = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
    return out


class _ManifestDataset(Dataset):
    """What both datasets share: labels, geo clusters, images, epoch and bad-image count."""

    def __init__(
        self,
        df: pd.DataFrame,
        transform: Callable | None,
        default_transform: Callable[[], Callable],
        on_bad_image: str,
        classes: Sequence[str] | None,
        seed: int,
        images: torch.Tensor | None = None,
    ) -> None:
        need_columns(df, ("path", "label"), type(self).__name__)
        self.classes = list(classes) if classes is not None else label_names(df)
        lookup = {name: k for k, name in enumerate(self.classes)}
        unknown = sorted(set(df["label"].astype(str)) - set(lookup))
        if unknown:
            raise DataSetError(f"labels {unknown[:5]} are not in classes; pass classes=label_names(full_manifest)")
        self.labels = np.array([lookup[v] for v in df["label"].astype(str)], dtype=np.int64)
        if "geo_cluster" in df.columns:
            self.geo_clusters = df["geo_cluster"].to_numpy(dtype=np.int64)
        else:
            self.geo_clusters = np.full(len(df), -1, dtype=np.int64)
        self.seed = int(seed)
        if images is not None:  # decoded once (decode_images); items are uint8 tensors, augmented per batch
            self._images: _ImageSource = _TensorImages(images, len(df))
            self.transform = transform if transform is not None else _identity
        else:
            self._images = _ImageReader(df, on_bad_image)
            self.transform = transform if transform is not None else default_transform()
        # epoch and this epoch's uniform numbers live in shared memory: persistent
        # DataLoader workers see set_epoch() without being re-created
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._u = torch.zeros(len(df), dtype=torch.float64).share_memory_()
        self._u_np = self._u.numpy()
        self.set_epoch(0)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def on_bad_image(self) -> str:
        return self._images.policy

    @property
    def bad_images(self) -> int:
        """Number of distinct unreadable images met so far (all workers together)."""
        return int(self._images.bad.sum())

    @property
    def bad_image_rows(self) -> list[int]:
        """Manifest rows of the unreadable images met so far."""
        return np.flatnonzero(self._images.bad.numpy()).tolist()

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws for a new epoch (seen by persistent workers too).

        Args:
            epoch: the epoch number (>= 0).
        """
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch[0] = int(epoch)
        # one uniform number per row from (seed, epoch): reproducible, different for every
        # epoch, and the same whichever worker reads row i (O(1) per item, no generator to
        # build per sample)
        self._u_np[:] = np.random.default_rng([self.seed, int(epoch)]).random(len(self._u_np))

    def _uniform(self, index: int) -> float:
        return float(self._u_np[index])

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_u_np", None)  # a numpy view of shared memory: rebuilt after unpickling
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._u_np = self._u.numpy()


def _identity(x: Any) -> Any:
    return x


class ImageDataset(_ManifestDataset):
    """One view per image: ``{"query", "label", "geo_cluster", "index"}`` (features, linear probe, supervised).

    Args:
        df: manifest rows (e.g. one split); ``path`` absolute or relative to the cwd.
        transform: PIL RGB image -> tensor (default :func:`geolab.transforms.eval_transform`
            at 224 px).
        on_bad_image: ``"skip"`` (warn once per path, count in :attr:`bad_images`, use the
            next readable image) or ``"fail"`` (raise :class:`BadImageError`).
        classes: class order (default ``label_names(df)``; pass the whole manifest's).
        images: the rows' images already decoded (:func:`decode_images`); items are then
            uint8 tensors passed through ``transform`` (default: unchanged), and no file is read.

    Returns (per item):
        ``{"query": image, "label", "geo_cluster", "index"}`` (the batch dict of the training loop):
        ``geo_cluster`` is -1 without a ``geo_cluster`` column; ``index`` is the row actually read
        (differs from the requested one only when a bad image was substituted).
    """

    def __init__(
        self,
        df: pd.DataFrame,
        transform: Callable | None = None,
        on_bad_image: str = "skip",
        classes: Sequence[str] | None = None,
        images: torch.Tensor | None = None,
    ) -> None:
        super().__init__(df, transform, eval_transform, on_bad_image, classes, seed=0, images=images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row, img = self._images.readable(int(index))
        return {"query": self.transform(img), "label": int(self.labels[row]),
                "geo_cluster": int(self.geo_clusters[row]), "index": row}


class TemporalPairDataset(_ManifestDataset):
    """Query/key pairs for MoCo-v2 with temporal positives (and the geo cluster).

    Each item is the query image (row ``index``) and its temporal positive drawn by
    :class:`LocationIndex` with ``strategy``; the MoCo-v2 view transform is applied to each
    of the two images independently.

    The positive draw of row ``i`` uses the ``i``-th number of a uniform sequence seeded by
    ``(seed, epoch)``: the same seed gives the same pairs, a new epoch (:meth:`set_epoch`)
    gives new ones, and the draw does not depend on which DataLoader worker reads the row.
    The augmentations use torch's random state (seeded per worker by the DataLoader).

    Args:
        df: manifest rows (e.g. the train split), with ``geo_cluster`` from
            :func:`geolab.geo.add_geo_clusters` if the geo loss is used (else -1 is returned).
        strategy: one of :data:`geolab.positives.STRATEGIES` (paper: ``"any-other"``; ``"same-image"`` is
            plain MoCo-v2).
        transform: single-view transform (default :func:`geolab.transforms.moco_v2_view`
            at 224 px, the paper's).
        seed: seed of the positive draws.
        on_bad_image: ``"skip"`` or ``"fail"`` (see :class:`ImageDataset`). Under ``skip`` an
            unreadable query is replaced by the next readable row, an unreadable key by
            the query image (a same-image positive).
        classes: class order (default ``label_names(df)``).
        images: the rows' images already decoded (:func:`decode_images`); the views are then
            the uint8 images themselves (``transform`` default: unchanged), to be augmented
            a batch at a time (:class:`geolab.transforms.BatchMoCoV2View`).

    Returns (per item):
        ``{"query": query view, "key": key view, "geo_cluster", "label", "index"}`` (the batch dict
        of the training loop); ``index`` is the query's row.
    """

    def __init__(
        self,
        df: pd.DataFrame,
        strategy: Strategy | str = "any-other",  # checked here (check_strategy): configs hold a str
        transform: Callable | None = None,
        seed: int = 0,
        on_bad_image: str = "skip",
        classes: Sequence[str] | None = None,
        images: torch.Tensor | None = None,
    ) -> None:
        self.strategy = check_strategy(strategy)
        super().__init__(df, transform, moco_v2_view, on_bad_image, classes, seed=seed, images=images)
        self.index = LocationIndex(df)

    @property
    def singleton_share(self) -> float:
        """Share of rows whose location has one image (their positive is the same image)."""
        return self.index.singleton_share

    def positive_row(self, index: int) -> int:
        """The key row drawn for query row ``index`` in the current epoch (no image read)."""
        return self.index.draw(int(index), self.strategy, self._uniform(index))

    def __getitem__(self, index: int) -> dict[str, Any]:
        row, query = self._images.readable(int(index))
        key_row = self.index.draw(row, self.strategy, self._uniform(row))
        key = query if key_row == row else self._images.load(key_row)
        if key is None:  # unreadable key under "skip": fall back to a same-image positive
            key = query
        return {"query": self.transform(query), "key": self.transform(key), "geo_cluster": int(self.geo_clusters[row]),
                "label": int(self.labels[row]), "index": row}
