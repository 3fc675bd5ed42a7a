"""Image decoding shared by training, evaluation and `data prepare` (geolab/images.py): 16-bit
images are rescaled onto 8 bits instead of being clipped to white, images with no agreed range
are refused naming the file, and images above the pixel limit are refused before decoding."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from geolab.images import UnsupportedImageError, open_rgb


def test_16_bit_png_is_rescaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    rgb = np.asarray(open_rgb(tmp_path / "g16.png"))
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[..., 0], np.round(values / 257.0).astype(np.uint8))
    assert (rgb == 255).mean() < 0.01  # Pillow's convert("RGB") makes 99% of these pixels 255


def test_float_images_and_oversized_images_are_refused_naming_the_file(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((4, 4), dtype=np.float32)).save(tmp_path / "f.tiff")
    with pytest.raises(UnsupportedImageError, match=r"f\.tiff: floating-point pixels"):
        open_rgb(tmp_path / "f.tiff")
    Image.new("RGB", (40, 30)).save(tmp_path / "big.png")
    monkeypatch.setenv("GEOLAB_MAX_PIXELS", "1000")
    with pytest.raises(UnsupportedImageError, match=r"big\.png is 40 x 30 pixels .*geolab data prepare"):
        open_rgb(tmp_path / "big.png")


def test_prepare_rescales_16_bit_images(tmp_path):
    """`data prepare` writes the same 8-bit rescaling as training reads."""
    from geolab.sources.prepare import prepare_image

    values = np.full((32, 32), 32896, dtype=np.uint16)  # 128 x 257
    Image.fromarray(values).save(tmp_path / "g16.png")
    prepare_image(str(tmp_path / "g16.png"), str(tmp_path / "out.jpg"), short_side=16)
    assert abs(int(np.asarray(Image.open(tmp_path / "out.jpg")).mean()) - 128) <= 1
