"""Image transforms: MoCo-v2 views (from lightly) and the evaluation transform.

MoCo-v2's augmentation (Chen et al. 2020, "Improved Baselines with Momentum Contrastive
Learning"): random resized crop (scale 0.2-1), colour jitter (0.4, 0.4, 0.4, 0.1) with
p=0.8, grayscale p=0.2, Gaussian blur p=0.5, horizontal flip, ImageNet normalisation. The
paper (Ayush et al. 2021) uses it unchanged. lightly's ``MoCoV2Transform`` returns two
views of *one* image; a temporal pair needs one view of each of *two* images, so we take
its single-view transform (``.transforms[0]``) and apply it to each image independently.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import torch
import torchvision.transforms as T
from lightly.transforms import MoCoV2Transform
from lightly.transforms.utils import IMAGENET_NORMALIZE
from PIL import Image
from torch import Tensor, nn

#: The paper's input size (fMoW images resized to 224 x 224).
PAPER_INPUT_SIZE = 224

Transform = Callable[[Image.Image], "object"]


def moco_v2_view(input_size: int = PAPER_INPUT_SIZE, min_scale: float = 0.2, cj_strength: float = 1.0) -> Transform:
    """One MoCo-v2 view: PIL image -> normalised float tensor (3, input_size, input_size).

    Args:
        input_size: output side in pixels (paper: 224; geoworld: 32-64).
        min_scale: smallest crop area (MoCo-v2: 0.2).
        cj_strength: multiplies the colour jitter (MoCo-v2: 1).

    Returns:
        lightly's ``MoCoV2Transform(input_size, min_scale=..., cj_strength=...).transforms[0]``.
    """
    return MoCoV2Transform(input_size=input_size, min_scale=min_scale, cj_strength=cj_strength).transforms[0]


def eval_transform(input_size: int = PAPER_INPUT_SIZE) -> Transform:
    """Deterministic transform for features and linear probes: resize, centre crop, normalise.

    The image is resized so that its short side is ``input_size / 0.875`` (256 for 224, the
    ImageNet convention) and the centre ``input_size`` square is kept.

    Args:
        input_size: output side in pixels.

    Returns:
        A torchvision ``Compose``.
    """
    return T.Compose(
        [
            T.Resize(round(input_size / 0.875)),
            T.CenterCrop(input_size),
            T.ToTensor(),
            T.Normalize(mean=IMAGENET_NORMALIZE["mean"], std=IMAGENET_NORMALIZE["std"]),
        ]
    )


def supervised_transform(input_size: int = PAPER_INPUT_SIZE) -> Transform:
    """Training augmentation of the supervised baseline: random resized crop and flip.

    Args:
        input_size: output side in pixels.

    Returns:
        A torchvision ``Compose``.
    """
    return T.Compose(
        [
            T.RandomResizedCrop(input_size, scale=(0.2, 1.0)),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean=IMAGENET_NORMALIZE["mean"], std=IMAGENET_NORMALIZE["std"]),
        ]
    )


def _blur_kernel(input_size: int) -> int:
    """SimCLR's (and MoCo-v2's) blur kernel: 10% of the image side, odd, at least 3 px."""
    k = max(3, int(0.1 * input_size))
    return k if k % 2 else k + 1


#: RGB -> YIQ (NTSC). Hue is the angle of the (I, Q) chroma plane; luma Y is kept by a rotation.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


class BatchColorJitter(nn.Module):
    """torchvision's ``ColorJitter`` with each image's own factors, for float batches ``(N, 3, H, W)`` in [0, 1].

    Brightness, contrast, saturation as torchvision defines them (blend with black, with the
    image's mean grey, with its grey-scale), applied with probability ``p`` per image and in a
    random order per batch. Hue: a rotation of the chroma plane in YIQ space by ``2 pi h``, the
    hue operator of NVIDIA DALI, instead of torchvision's and kornia's shift in HSV space.

    Why not kornia's ``ColorJitter``: its hue step converts every pixel to HSV and back, 18 of the
    ~25 ms a 128-image, 32-px view cost on one CPU thread (a third of a geoworld pre-training step;
    BENCHMARKS.md, "A cheaper view"); the YIQ rotation is one 3 x 3 matrix per image. Both turn
    hues around the colour wheel and keep grey pixels grey; the YIQ rotation keeps luma, the HSV
    shift keeps each pixel's max and min. Parameters come as kornia's dicts (``forward_parameters``,
    ``params=``), so :meth:`BatchMoCoV2View.draw` and ``apply_params`` replay them on any device.
    """

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0, hue: float = 0.0,
                 p: float = 1.0) -> None:
        super().__init__()
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5] (turns of the colour wheel), got {hue}")
        self.ranges = {"brightness_factor": (max(0.0, 1 - brightness), 1 + brightness),
                       "contrast_factor": (max(0.0, 1 - contrast), 1 + contrast),
                       "saturation_factor": (max(0.0, 1 - saturation), 1 + saturation),
                       "hue_factor": (-hue, hue)}
        self.p = float(p)

    def forward_parameters(self, shape: torch.Size) -> dict[str, Tensor]:
        """Each image's factors and whether it is jittered (``batch_prob``), plus the order of the four steps."""
        n = shape[0]
        params = {"batch_prob": (torch.rand(n) < self.p).float()}
        for key, (lo, hi) in self.ranges.items():
            params[key] = lo + (hi - lo) * torch.rand(n)
        params["order"] = torch.randperm(4)
        return params

    @torch.no_grad()
    def forward(self, x: Tensor, params: dict[str, Tensor] | None = None) -> Tensor:
        """Jitter ``x`` with ``params`` (drawn now when ``None``); images not drawn stay as they are."""
        params = self.forward_parameters(x.shape) if params is None else params
        on = params["batch_prob"].to(x.device).bool().view(-1, 1, 1, 1)
        f = {k: params[k].to(x.device, x.dtype).view(-1, 1, 1, 1) for k in self.ranges}
        x0 = x
        for step in params["order"].tolist():
            if step == 0:
                x = (x * f["brightness_factor"]).clamp_(0, 1)
            elif step == 1:
                mean = _grey(x).mean(dim=(-3, -2, -1), keepdim=True)
                x = (f["contrast_factor"] * x + (1 - f["contrast_factor"]) * mean).clamp_(0, 1)
            elif step == 2:
                x = (f["saturation_factor"] * x + (1 - f["saturation_factor"]) * _grey(x)).clamp_(0, 1)
            else:
                x = _rotate_hue(x, f["hue_factor"].view(-1)).clamp_(0, 1)
        return torch.where(on, x, x0)


def _grey(x: Tensor) -> Tensor:
    """ITU-R 601 luma of ``(N, 3, H, W)``, as ``(N, 1, H, W)`` (torchvision's ``rgb_to_grayscale``)."""
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _rotate_hue(x: Tensor, turns: Tensor) -> Tensor:
    """Rotate each image's chroma (I, Q) by ``2 pi turns`` in YIQ space: one 3 x 3 RGB matrix per image."""
    to_yiq, to_rgb = _RGB_TO_YIQ.to(x.device, x.dtype), _YIQ_TO_RGB.to(x.device, x.dtype)
    angle = 2 * math.pi * turns
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(len(turns), 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    # clockwise in the (I, Q) plane: a positive turn moves red towards yellow and green, as HSV's hue does
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, sin, -sin, cos
    matrix = to_rgb @ rot @ to_yiq  # (N, 3, 3)
    return torch.einsum("nij,njhw->nihw", matrix, x)


class BatchMoCoV2View(nn.Module):
    """MoCo-v2's view, applied to a whole batch of uint8 tensors at once.

    Each image gets its own random parameters (kornia's augmentations; the colour jitter is
    :class:`BatchColorJitter`, whose hue step is a YIQ rotation).

    The same recipe as :func:`moco_v2_view` (random resized crop 0.2-1, colour jitter
    0.4/0.4/0.4/0.1 with p=0.8, grayscale p=0.2, Gaussian blur p=0.5 with sigma 0.1-2,
    horizontal flip, ImageNet normalisation), for images already decoded into memory
    (:func:`geolab.datasets.decode_images`). Per image in PIL, the augmentation and the PNG
    decode cost more than a small encoder's step on a CPU; on a batch tensor they cost a
    few milliseconds, and run on the GPU when the batch is there. Differences to lightly's
    PIL pipeline: the jitter's four parts are applied in one random order per batch
    (torchvision draws one per image), its hue is a YIQ rotation, and the blur kernel is
    10% of the image side as in SimCLR (PIL's blur has no kernel size).

    Args:
        input_size: output side in pixels.
        min_scale: smallest crop area (MoCo-v2: 0.2).
        cj_strength: multiplies the colour jitter's brightness, contrast, saturation and hue.

    Input: uint8 ``(N, 3, H, W)``. Output: float ``(N, 3, input_size, input_size)``, normalised.
    """

    def __init__(self, input_size: int = PAPER_INPUT_SIZE, min_scale: float = 0.2, cj_strength: float = 1.0) -> None:
        super().__init__()
        import kornia.augmentation as K  # noqa: PLC0415 - start-up cost (~0.4 s): only preloaded runs need kornia

        self.input_size = int(input_size)
        self.crop_scale, self.crop_ratio = (float(min_scale), 1.0), (3 / 4, 4 / 3)  # kornia's and torchvision's ratio
        s = cj_strength
        self.augment = nn.Sequential(
            K.RandomResizedCrop((input_size, input_size), scale=self.crop_scale, ratio=self.crop_ratio),
            BatchColorJitter(0.4 * s, 0.4 * s, 0.4 * s, 0.1 * s, p=0.8),
            K.RandomGrayscale(p=0.2),
            K.RandomGaussianBlur((_blur_kernel(input_size),) * 2, (0.1, 2.0), p=0.5),
            K.RandomHorizontalFlip(),
        )
        self.normalize = _Normalize()

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """Augment and normalise a uint8 batch ``(N, 3, H, W)``."""
        return self.normalize(self.augment(images.float().div_(255)))

    # ------------------------------------------------------------------ images of many sizes
    # Real data (the prepared cache, decoded on the GPU) comes as a list of images of different
    # sizes, which kornia's RandomResizedCrop cannot take (its parameter generator assumes one
    # size for the batch). So the crop's parameters are drawn here, per image, relative to each
    # image's own size (torchvision's RandomResizedCrop.get_params, vectorised), and applied with
    # kornia's crop_and_resize (bilinear with aligned corners, as kornia's crop); the colour
    # jitter, grey-scale, blur and flip are this module's own kornia augmentations, their
    # per-image parameters drawn by kornia and replayed with ``params=``. ``forward`` (the
    # preloaded geoworld batches) is left as it was, so that runs keep their numbers.

    def draw(self, sizes: Sequence[tuple[int, int]], generator: torch.Generator | None = None) -> dict[str, Any]:
        """Each image's own random parameters, on the CPU (so any device replays the same views).

        Args:
            sizes: ``(height, width)`` of each image.
            generator: for the crop boxes (default torch's global generator; kornia's draws of
                jitter, grey-scale, blur and flip always use the global generator).

        Returns:
            ``{"crop": (N, 4) int64 boxes x0, y0, width, height}`` and kornia's parameter dict of
            each later augmentation (``"jitter"``, ``"grayscale"``, ``"blur"``, ``"flip"``).
        """
        hw = torch.as_tensor(list(sizes), dtype=torch.float64).reshape(-1, 2)
        params: dict[str, Any] = {"crop": crop_boxes(hw[:, 0], hw[:, 1], self.crop_scale, self.crop_ratio, generator)}
        shape = torch.Size((len(hw), 3, self.input_size, self.input_size))
        for name, mod in self._later_steps():
            params[name] = mod.forward_parameters(shape)
        return params

    def _later_steps(self) -> list[tuple[str, _Replayable]]:
        """The augmentations after the crop, by their names in the parameter dicts."""
        return [(name, cast(_Replayable, mod)) for name, mod in zip(_LATER, self.augment[1:])]

    @torch.no_grad()
    def apply_params(self, images: Sequence[Tensor] | Tensor, params: dict[str, Any]) -> Tensor:
        """The views of ``images`` (uint8 ``(3, H, W)`` each, any sizes, one device) under ``params``.

        Returns:
            float ``(N, 3, input_size, input_size)`` on the images' device, normalised.
        """
        from kornia.geometry.transform import crop_and_resize  # noqa: PLC0415 - kornia only where views are drawn

        n = len(images)
        if n != len(params["crop"]):
            raise ValueError(f"{n} images but parameters for {len(params['crop'])}; draw them for these images")
        device = images[0].device
        boxes = params["crop"].to(device=device, dtype=torch.float32)
        if isinstance(images, Tensor):
            padded = images.float().div_(255)
        else:  # one float batch, each image at its top-left corner: the crop boxes stay inside it
            padded = images[0].new_zeros((n, 3, max(im.shape[1] for im in images), max(im.shape[2] for im in images)),
                                         dtype=torch.float32)
            for i, im in enumerate(images):
                padded[i, :, : im.shape[1], : im.shape[2]] = im
            padded.div_(255)
        x0, y0 = boxes[:, 0], boxes[:, 1]
        x1, y1 = x0 + boxes[:, 2] - 1, y0 + boxes[:, 3] - 1
        corners = torch.stack([torch.stack([x0, y0], 1), torch.stack([x1, y0], 1), torch.stack([x1, y1], 1),
                               torch.stack([x0, y1], 1)], 1)
        x = crop_and_resize(padded, corners, (self.input_size, self.input_size), mode="bilinear", align_corners=True)
        for name, mod in self._later_steps():
            x = mod(x, params={k: v.to(device) if isinstance(v, Tensor) else v for k, v in params[name].items()})
        return self.normalize(x)

    def views(self, images: Sequence[Tensor] | Tensor, generator: torch.Generator | None = None) -> Tensor:
        """:meth:`draw` then :meth:`apply_params`: one MoCo-v2 view of each image, with its own parameters."""
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        return self.apply_params(images, self.draw(sizes, generator))


#: BatchMoCoV2View.augment's modules after the crop, as named in its parameter dicts.
_LATER = ("jitter", "grayscale", "blur", "flip")


class _Replayable(Protocol):
    """An augmentation whose per-image parameters are drawn, then replayed (kornia's, :class:`BatchColorJitter`)."""

    def forward_parameters(self, shape: torch.Size) -> dict[str, Any]: ...

    def __call__(self, x: Tensor, params: dict[str, Any]) -> Tensor: ...


def crop_boxes(heights: Tensor, widths: Tensor, scale: tuple[float, float] = (0.2, 1.0),
               ratio: tuple[float, float] = (3 / 4, 4 / 3), generator: torch.Generator | None = None,
               attempts: int = 10) -> Tensor:
    """Random resized crop boxes, one per image: torchvision's ``RandomResizedCrop.get_params`` for a batch.

    Per image: up to ``attempts`` draws of an area (uniform in ``scale`` x the image's area) and an
    aspect ratio (log-uniform in ``ratio``); the first that fits is kept, at a uniform position;
    if none fits, the central crop of the largest box inside ``ratio`` (torchvision's fallback).

    Returns:
        ``(N, 4)`` int64: x0, y0, width, height.
    """
    h, w = heights.double(), widths.double()
    n = len(h)
    u = torch.rand((n, attempts, 4), generator=generator, dtype=torch.float64)
    area = h[:, None] * w[:, None] * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * u[..., 1])
    cw, ch = torch.round(torch.sqrt(area * aspect)), torch.round(torch.sqrt(area / aspect))
    fits = (cw > 0) & (ch > 0) & (cw <= w[:, None]) & (ch <= h[:, None])
    first = fits.to(torch.int8).argmax(1)
    pick = torch.arange(n)
    cw, ch, u = cw[pick, first], ch[pick, first], u[pick, first]
    x0 = torch.floor(u[:, 2] * (w - cw + 1)).clamp(max=w - cw)
    y0 = torch.floor(u[:, 3] * (h - ch + 1)).clamp(max=h - ch)
    # torchvision's fallback: the whole image, narrowed to the ratio range, centred
    in_ratio = w / h
    fw = torch.where(in_ratio < ratio[0], w, torch.where(in_ratio > ratio[1], torch.round(h * ratio[1]), w))
    fh = torch.where(in_ratio < ratio[0], torch.round(w / ratio[0]), h)
    none = ~fits.any(1)
    cw, ch = torch.where(none, fw, cw), torch.where(none, fh, ch)
    x0 = torch.where(none, torch.div(w - fw, 2, rounding_mode="floor"), x0)
    y0 = torch.where(none, torch.div(h - fh, 2, rounding_mode="floor"), y0)
    return torch.stack([x0, y0, cw, ch], 1).long()


class BatchSupervisedView(nn.Module):
    """:func:`supervised_transform` (random resized crop 0.2-1, flip, normalisation) on a batch of uint8 tensors.

    Each image gets its own crop (kornia).
    """

    def __init__(self, input_size: int = PAPER_INPUT_SIZE) -> None:
        super().__init__()
        import kornia.augmentation as K  # noqa: PLC0415 - start-up cost (~0.4 s): only preloaded runs need kornia

        self.augment = nn.Sequential(
            K.RandomResizedCrop((input_size, input_size), scale=(0.2, 1.0)), K.RandomHorizontalFlip()
        )
        self.normalize = _Normalize()

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """Augment and normalise a uint8 batch ``(N, 3, H, W)``."""
        return self.normalize(self.augment(images.float().div_(255)))


class _Normalize(nn.Module):
    """ImageNet normalisation of ``(N, 3, H, W)`` floats in [0, 1]."""

    mean: Tensor
    std: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_NORMALIZE["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_NORMALIZE["std"]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device)
