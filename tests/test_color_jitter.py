"""BatchColorJitter: torchvision's colour jitter per image, with a YIQ hue rotation (geolab.transforms)."""

from __future__ import annotations

import math

import kornia.color as KC
import kornia.enhance as KE
import pytest
import torch

from geolab.transforms import BatchColorJitter, _rotate_hue


def _colours(n: int = 16, seed: int = 0) -> torch.Tensor:
    """Mid-range colours (no channel near 0 or 1), so that small jitters never clip."""
    return 0.25 + 0.5 * torch.rand(n, 3, 6, 6, generator=torch.Generator().manual_seed(seed))


def _params(jitter: BatchColorJitter, n: int, **fixed: float) -> dict[str, torch.Tensor]:
    p = jitter.forward_parameters(torch.Size((n, 3, 6, 6)))
    p["batch_prob"] = torch.ones(n)
    for k in ("brightness_factor", "contrast_factor", "saturation_factor"):
        p[k] = torch.ones(n)
    p["hue_factor"] = torch.zeros(n)
    for k, v in fixed.items():
        p[k + "_factor"] = torch.full((n,), v)
    return p


def test_neutral_factors_leave_images_unchanged() -> None:
    x, jitter = _colours(), BatchColorJitter(0.4, 0.4, 0.4, 0.1)
    torch.testing.assert_close(jitter(x, _params(jitter, len(x))), x, atol=1e-6, rtol=0)


def test_brightness_contrast_saturation_follow_torchvision() -> None:
    """Brightness scales, contrast blends with the mean grey, saturation 0 gives the grey image."""
    x, jitter = _colours(), BatchColorJitter(0.4, 0.4, 0.4, 0.1)
    torch.testing.assert_close(jitter(x, _params(jitter, len(x), brightness=1.2)), (x * 1.2).clamp(0, 1))
    grey = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    flat = jitter(x, _params(jitter, len(x), contrast=0.0))
    torch.testing.assert_close(flat, grey.mean(dim=(1, 2, 3), keepdim=True).expand_as(x))
    torch.testing.assert_close(jitter(x, _params(jitter, len(x), saturation=0.0)), grey.expand_as(x))


def test_hue_rotation_keeps_luma_and_grey_and_undoes_itself() -> None:
    x = _colours()
    turns = torch.linspace(-0.1, 0.1, len(x))
    y = _rotate_hue(x, turns)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    torch.testing.assert_close((y * luma).sum(1), (x * luma).sum(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(_rotate_hue(y, -turns), x, atol=1e-5, rtol=0)
    grey = torch.full((2, 3, 4, 4), 0.4)
    torch.testing.assert_close(_rotate_hue(grey, torch.tensor([0.1, -0.07])), grey, atol=1e-6, rtol=0)


@pytest.mark.parametrize("turns", [0.02, -0.05, 0.1])
def test_hue_turns_colours_as_hsv_does(turns: float) -> None:
    """The same direction round the colour wheel as kornia's HSV shift, and within 15% of its angle."""
    x = _colours(64, seed=1)
    t = torch.full((len(x),), turns)
    h0 = KC.rgb_to_hsv(x)[:, 0]

    def moved(y: torch.Tensor) -> float:
        return float((torch.remainder(KC.rgb_to_hsv(y)[:, 0] - h0 + math.pi, 2 * math.pi) - math.pi).mean())

    ours, hsv = moved(_rotate_hue(x, t)), moved(KE.adjust_hue(x, t * 2 * math.pi))
    assert math.copysign(1, ours) == math.copysign(1, hsv) == math.copysign(1, turns)
    assert abs(ours - hsv) < 0.15 * abs(hsv)


def test_each_image_draws_its_own_factors_with_probability_p() -> None:
    torch.manual_seed(0)
    jitter = BatchColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8)
    p = jitter.forward_parameters(torch.Size((4000, 3, 6, 6)))
    assert abs(float(p["batch_prob"].mean()) - 0.8) < 0.03
    for k in ("brightness_factor", "contrast_factor", "saturation_factor"):
        assert 0.6 <= float(p[k].min()) and float(p[k].max()) <= 1.4 and abs(float(p[k].mean()) - 1) < 0.02
    assert -0.1 <= float(p["hue_factor"].min()) and float(p["hue_factor"].max()) <= 0.1
    assert sorted(p["order"].tolist()) == [0, 1, 2, 3]
    x = _colours(len(p["batch_prob"]))
    y = jitter(x, p)
    off = ~p["batch_prob"].bool()
    assert torch.equal(y[off], x[off])  # images not drawn are untouched
    assert (y[~off] - x[~off]).abs().amax(dim=(1, 2, 3)).min() > 0


def test_hue_range_is_checked() -> None:
    with pytest.raises(ValueError, match="hue must be in"):
        BatchColorJitter(hue=0.7)
