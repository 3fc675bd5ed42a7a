"""The dense task's model: a ResNet's stages as encoder plus a light decoder, giving per-pixel class logits.

:class:`SegmentationModel` puts :class:`ResNetEncoder` under an FPN-lite (default) or FCN decoder;
``freeze_backbone`` gives the dense analogue of a linear probe.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
        self.stem = nn.Sequential(*(backbone.get_submodule(n) for n in ("conv1", "bn1", "relu", "maxpool")))
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
        """The feature map of each stage, shallowest first."""
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
        """Class logits at the shallowest stage's resolution (stride 4)."""
        p = self.lateral[-1](feats[-1])
        for lat, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            p = lat(f) + F.interpolate(p, size=f.shape[-2:], mode="nearest")
        return self.classifier(self.fuse(p))


class FCNDecoder(nn.Module):
    """The classic FCN head (Long et al. 2015, FCN-32s/16s): a 1x1 conv classifier on the deepest stage only.

    The caller upsamples its logits bilinearly to the input size.
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Conv2d(in_channels[-1], num_classes, 1)

    def forward(self, feats: list[Tensor]) -> Tensor:
        """Class logits at the deepest stage's resolution."""
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
        """Set training mode; a frozen encoder stays in eval mode (its BatchNorm statistics unchanged)."""
        super().train(mode)
        if self.freeze_backbone:
            self.encoder.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        """Per-pixel class logits (N, C, H, W) at the input's size."""
        if self.freeze_backbone:
            with torch.no_grad():
                feats = self.encoder(x)
        else:
            feats = self.encoder(x)
        logits = self.decoder(feats)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
