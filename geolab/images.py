"""Opening one image file as 8-bit RGB, the same way in training, evaluation and ``data prepare``.

Two things Pillow's plain ``convert("RGB")`` gets wrong for geolab's data, handled here:

* **16-bit images** (``I;16`` PNG/TIFF, and ``I`` images holding 0-65535): Pillow clips them
  to 255, so most pixels of a real 16-bit image come out white. They are rescaled instead:
  ``round(value * 255 / 65535)``, the full 16-bit range onto the full 8-bit range (the same
  mapping for every image, so that brightness compares across images). Floating-point images
  (``F``) and 32-bit integers outside 0-65535 have no agreed range: they are refused.
* **Huge images**: a 121-megapixel file decoded on every training read holds about 2 GB per
  read. Reads for training refuse images above :data:`MAX_PIXELS` (``GEOLAB_MAX_PIXELS``
  changes it) with the advice to make a resized cache once (``geolab data prepare``), which
  decodes JPEGs at a reduced DCT scale.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image

from geolab.errors import UserError

#: Largest image (width x height) a training or evaluation read decodes: 64 megapixels
#: (8000 x 8000). ``GEOLAB_MAX_PIXELS`` overrides it.
MAX_PIXELS = 64_000_000
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


class UnsupportedImageError(UserError, ValueError):
    """An image geolab will not decode (too large, or pixel values with no agreed range)."""


def max_pixels() -> int:
    """:data:`MAX_PIXELS`, or ``$GEOLAB_MAX_PIXELS`` when set."""
    env = os.environ.get("GEOLAB_MAX_PIXELS")
    return int(env) if env else MAX_PIXELS


def check_size(im: Image.Image, path: Any, limit: int | None = None) -> None:
    """Refuse an image above ``limit`` pixels (default :func:`max_pixels`) before decoding it.

    Raises:
        UnsupportedImageError: naming the file, its size and what to do.
    """
    limit = max_pixels() if limit is None else limit
    w, h = im.size
    if w * h > limit:
        raise UnsupportedImageError(
            f"{path} is {w} x {h} pixels ({w * h / 1e6:.0f} megapixels), above the {limit / 1e6:.0f}-megapixel "
            "limit of training reads (decoding it on every read costs gigabytes); make a resized cache once with "
            "`geolab data prepare MANIFEST --out DIR` and use its manifest (or raise GEOLAB_MAX_PIXELS)."
        )


def to_rgb(im: Image.Image, path: Any = "image") -> Image.Image:
    """``im`` as 8-bit RGB, 16-bit images rescaled rather than clipped (see the module doc).

    Raises:
        UnsupportedImageError: a floating-point image, or 32-bit integers outside 0-65535.
    """
    mode = im.mode
    if mode in _SIXTEEN_BIT or mode == "I":
        values = np.asarray(im)
        if mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise UnsupportedImageError(
                f"{path}: 32-bit integer pixels from {values.min()} to {values.max()}, outside the 16-bit range "
                "geolab rescales; convert the image to 8-bit (or 16-bit) RGB first."
            )
        eight = np.round(values.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
        return Image.fromarray(eight, mode="L").convert("RGB")
    if mode == "F":
        raise UnsupportedImageError(
            f"{path}: floating-point pixels have no agreed range to map to 8 bits; convert the image to "
            "8-bit (or 16-bit) RGB first."
        )
    return im.convert("RGB")


def open_rgb(path: str | os.PathLike, limit: int | None = None) -> Image.Image:
    """Open ``path`` and decode it fully as 8-bit RGB (a truncated file fails here).

    Raises:
        UnsupportedImageError: above the size limit, or pixel values with no agreed range.
        OSError / PIL errors: unreadable file.
    """
    with Image.open(path) as im:
        check_size(im, path, limit)
        return to_rgb(im, path)
