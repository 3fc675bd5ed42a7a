"""Image transforms: MoCo-v2 views (from lightly) and the evaluation transform.

MoCo-v2's augmentation (Chen et al. 2020, "Improved Baselines with Momentum Contrastive
Learning"): random resized crop (scale 0.2-1), colour jitter (0.4, 0.4, 0.4, 0.1) with
p=0.8, grayscale p=0.2, Gaussian blur p=0.5, horizontal flip, ImageNet normalisation. The
paper (Ayush et al. 2021) uses it unchanged. lightly's ``MoCoV2Transform`` returns two
views of *one* image; a temporal pair needs one view of each of *two* images, so we take
its single-view transform (``.transforms[0]``) and apply it to each image independently.
"""

from __future__ import annotations

from collections.abc import Callable

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


class BatchMoCoV2View(nn.Module):
    """MoCo-v2's view, applied to a whole batch of uint8 tensors at once.

    Each image gets its own random parameters (kornia's augmentations).

    The same recipe as :func:`moco_v2_view` (random resized crop 0.2-1, colour jitter
    0.4/0.4/0.4/0.1 with p=0.8, grayscale p=0.2, Gaussian blur p=0.5 with sigma 0.1-2,
    horizontal flip, ImageNet normalisation), for images already decoded into memory
    (:func:`geolab.datasets.decode_images`). Per image in PIL, the augmentation and the PNG
    decode cost more than a small encoder's step on a CPU; on a batch tensor they cost a
    few milliseconds, and run on the GPU when the batch is there. Differences to lightly's
    PIL pipeline: the jitter's four parts are applied in a fixed order (torchvision draws
    one per image), and the blur kernel is 10% of the image side as in SimCLR (PIL's blur
    has no kernel size).

    Args:
        input_size: output side in pixels.
        min_scale: smallest crop area (MoCo-v2: 0.2).
        cj_strength: multiplies the colour jitter's brightness, contrast, saturation and hue.

    Input: uint8 ``(N, 3, H, W)``. Output: float ``(N, 3, input_size, input_size)``, normalised.
    """

    def __init__(self, input_size: int = PAPER_INPUT_SIZE, min_scale: float = 0.2, cj_strength: float = 1.0) -> None:
        super().__init__()
        import kornia.augmentation as K  # noqa: PLC0415 - start-up cost (~0.4 s): only preloaded runs need kornia

        s = cj_strength
        self.augment = nn.Sequential(
            K.RandomResizedCrop((input_size, input_size), scale=(min_scale, 1.0)),
            K.ColorJitter(0.4 * s, 0.4 * s, 0.4 * s, 0.1 * s, p=0.8),
            K.RandomGrayscale(p=0.2),
            K.RandomGaussianBlur((_blur_kernel(input_size),) * 2, (0.1, 2.0), p=0.5),
            K.RandomHorizontalFlip(),
        )
        self.normalize = _Normalize()

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """Augment and normalise a uint8 batch ``(N, 3, H, W)``."""
        return self.normalize(self.augment(images.float().div_(255)))


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

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_NORMALIZE["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_NORMALIZE["std"]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device)
