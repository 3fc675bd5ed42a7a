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

import torchvision.transforms as T
from lightly.transforms import MoCoV2Transform
from lightly.transforms.utils import IMAGENET_NORMALIZE
from PIL import Image

#: The paper's input size (fMoW images resized to 224 x 224).
PAPER_INPUT_SIZE = 224

Transform = Callable[[Image.Image], "object"]


def moco_v2_view(input_size: int = PAPER_INPUT_SIZE) -> Transform:
    """One MoCo-v2 view: PIL image -> normalised float tensor (3, input_size, input_size).

    Args:
        input_size: output side in pixels (paper: 224; geoworld: 64).

    Returns:
        lightly's ``MoCoV2Transform(input_size=input_size).transforms[0]``.
    """
    return MoCoV2Transform(input_size=input_size).transforms[0]


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
