"""Real data on a GPU: the prepared cache's JPEGs decoded in batches on the device, then MoCo-v2 views.

The PIL pipeline (``TemporalPairDataset`` with lightly's view, in DataLoader workers) decodes
and augments every image on the CPU: on the first H200 check (2026-12-04) 16 workers gave
964 pairs/s, against a model step of 1,745-1,983. Here the workers only *read* the files (a
few tens of KB each in the prepared cache); the training process decodes a whole batch of
queries and keys in one call (:func:`decode_jpegs`, nvJPEG on CUDA) and draws the views on the
device with :meth:`geolab.transforms.BatchMoCoV2View.views`, each image with its own parameters.

Why decode on the device: a JPEG's Huffman decoding and IDCT are what the CPU pipeline spends
most of its time on, and nvJPEG does them for a whole batch at once on the GPU. On the CPU the
same torchvision call decodes with libjpeg-turbo, one image after another, in the process that
calls it; that is what the tests and the CPU dry run use (CPU training keeps decoding in the
DataLoader workers: the PIL fallback, or geoworld's preloaded tensors).

The cache written by ``geolab data prepare`` (:mod:`geolab.sources.prepare`: baseline JPEG,
quality 95, short side 256) is what nvJPEG's batched path decodes; an image the prepare step
copied unchanged (already small) may be progressive, which torchvision's GPU decoder also takes.
Bad images: the prepared cache was written by PIL after a full decode, so its files decode; a
file that does not fails the batch with its path in the error (this path has no ``skip`` policy:
run ``geolab data prepare`` again, or train with the PIL pipeline).

torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec, which is not
among geolab's dependencies yet; ``torchvision.io.decode_jpeg`` is still the batched nvJPEG call.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torchvision
from torch import Tensor

from geolab.datasets import TemporalPairDataset
from geolab.errors import UserError
from geolab.positives import Strategy
from geolab.sources.prepare import CACHE_MARKER
from geolab.transforms import BatchMoCoV2View


class PreparedCacheError(UserError, FileNotFoundError):
    """A prepared cache's JPEG that cannot be read (the cache is incomplete or moved)."""


class _EncodedImages:
    """The rows' files as undecoded bytes (uint8 1-D tensors).

    The reader interface of :class:`geolab.datasets.TemporalPairDataset` (``load``, ``readable``,
    ``bad``, ``policy``).
    """

    policy = "fail"

    def __init__(self, df: pd.DataFrame) -> None:
        self.paths = df["path"].astype(str).tolist()
        self.bad = torch.zeros(len(df), dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, row: int) -> Tensor:
        try:
            with open(self.paths[row], "rb") as fh:
                return torch.frombuffer(bytearray(fh.read()), dtype=torch.uint8)
        except OSError as exc:
            raise PreparedCacheError(
                f"cannot read {self.paths[row]} (manifest row {row}: {exc}); run `geolab data prepare` again "
                "or point the manifest at the prepared cache."
            ) from None

    def readable(self, row: int) -> tuple[int, Tensor]:
        return row, self.load(row)


def is_prepared_cache(manifest: str | os.PathLike) -> bool:
    """Whether ``manifest`` is the manifest of a prepared cache (``geolab data prepare`` wrote it)."""
    return (Path(manifest).expanduser().parent / CACHE_MARKER).is_file()


def _unchanged(x: Any) -> Any:
    return x


class EncodedPairDataset(TemporalPairDataset):
    """:class:`~geolab.datasets.TemporalPairDataset` whose query and key are the files' JPEG bytes.

    The same temporal positives (the key is its own image, drawn by the same
    :class:`~geolab.positives.LocationIndex` and uniform numbers), nothing decoded: batch it with
    :func:`collate_encoded` and turn the batch into views with :class:`JpegPairViews`.

    Args:
        df: manifest rows whose ``path`` are JPEGs (the prepared cache).
        strategy, seed, classes: as :class:`~geolab.datasets.TemporalPairDataset`.
    """

    def __init__(self, df: pd.DataFrame, strategy: Strategy | str = "any-other", seed: int = 0,
                 classes: Sequence[str] | None = None) -> None:
        super().__init__(df, strategy=strategy, transform=_unchanged, seed=seed, on_bad_image="fail",
                         classes=classes, images=None)
        self._images = _EncodedImages(df)


def collate_encoded(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch of :class:`EncodedPairDataset` items: lists of byte tensors, stacked integers."""
    out: dict[str, Any] = {"query": [it["query"] for it in items], "key": [it["key"] for it in items]}
    for k in ("geo_cluster", "label", "index"):
        out[k] = torch.tensor([it[k] for it in items], dtype=torch.long)
    return out


def decode_jpegs(data: Sequence[Tensor], device: torch.device | str) -> list[Tensor]:
    """Decode JPEG bytes into RGB uint8 ``(3, H, W)`` tensors on ``device`` (torchvision).

    On CUDA one call decodes the whole list with nvJPEG (batched); on the CPU the same call
    decodes with libjpeg-turbo. ``ImageReadMode.RGB`` turns grey-scale files into three channels.
    """
    device = torch.device(device)
    with warnings.catch_warnings():  # torchvision 0.29 points at TorchCodec (not installed here); the call works
        warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
        return torchvision.io.decode_jpeg(list(data), mode=torchvision.io.ImageReadMode.RGB, device=device)


class JpegPairViews:
    """A batch of :func:`collate_encoded` -> the training loop's batch dict, on ``device``.

    Queries and keys are decoded in one call, then each image gets its own MoCo-v2 view
    (:class:`~geolab.transforms.BatchMoCoV2View`: the same augmentation as geoworld's preloaded
    batches, crop drawn per image size); the views are channels_last where the model is.

    Args:
        input_size, min_scale, cj_strength: as :class:`~geolab.transforms.BatchMoCoV2View`.
        device: where to decode and augment (``"cuda"``: nvJPEG and the GPU).
        channels_last: memory format of the views (default: on CUDA).
    """

    def __init__(self, input_size: int, device: torch.device | str, min_scale: float = 0.2,
                 cj_strength: float = 1.0, channels_last: bool | None = None) -> None:
        self.device = torch.device(device)
        self.view = BatchMoCoV2View(input_size, min_scale, cj_strength).to(self.device)
        self.channels_last = self.device.type == "cuda" if channels_last is None else bool(channels_last)
        self.last_params: dict[str, Any] | None = None  #: parameters of the last batch's views (tests, checks)

    def __call__(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Decode, draw each image's parameters (``generator``: the crop boxes'), apply; on ``device``."""
        n = len(batch["query"])
        images = decode_jpegs(list(batch["query"]) + list(batch["key"]), self.device)
        params = self.view.draw([(int(im.shape[-2]), int(im.shape[-1])) for im in images], generator)
        views = self.view.apply_params(images, params)
        if self.channels_last:
            views = views.contiguous(memory_format=torch.channels_last)
        self.last_params = params
        out = {"query": views[:n], "key": views[n:]}
        for k in ("geo_cluster", "label", "index"):
            out[k] = batch[k].to(self.device, non_blocking=True)
        return out
