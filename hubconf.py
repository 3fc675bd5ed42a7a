"""torch.hub entry points: a geolab checkout gives GASSL backbones to any PyTorch code.

    backbone = torch.hub.load("path/to/geolab", "resnet50_gassl", source="local", weights="backbone.pth")
    features = backbone(images)  # (N, 2048), images normalised as in the weights' JSON sidecar

One entry point ``<arch>_gassl`` per architecture geolab builds (:data:`geolab.models.ARCHS`:
``resnet18_gassl``, ``resnet50_gassl``, ...). ``weights`` is any file geolab evaluates
(:mod:`geolab.weights`): a ``geolab export`` file, a geolab checkpoint, an official GASSL
``.pth.tar`` or a bare ResNet state dict such as torchgeo's ``resnet50_fmow_rgb_gassl-*.pth``.
geolab hosts no weights, so nothing is downloaded.
"""

from __future__ import annotations

import re

dependencies = ["torch", "torchvision", "lightly"]

from geolab.evaluate import load_backbone  # noqa: E402 - torch.hub checks `dependencies` first
from geolab.models import ARCHS  # noqa: E402 - torch.hub checks `dependencies` first


def _entry_point(arch: str):
    def entry(weights: str | None = None, **kwargs):
        if kwargs:
            raise TypeError(f"{arch}_gassl() takes only weights=PATH, not {', '.join(kwargs)}")
        if weights is None:
            raise ValueError(
                f"{arch}_gassl needs weights=PATH: geolab downloads no weights. Pass a `geolab export` file, a geolab "
                "checkpoint, an official GASSL .pth.tar or torchgeo's GASSL file (see docs/REAL_DATA.md)."
            )
        backbone = load_backbone(weights, arch=arch)
        if backbone.geolab_meta["arch"] != arch:  # a geolab checkpoint keeps its own arch
            entry_name = re.sub(r"\W", "_", backbone.geolab_meta["arch"]) + "_gassl"
            raise ValueError(f"{weights} holds a {backbone.geolab_meta['arch']} backbone, not {arch}; "
                             f"load it with {entry_name}.")
        return backbone

    entry.__name__ = entry.__qualname__ = re.sub(r"\W", "_", f"{arch}_gassl")
    entry.__doc__ = (
        f"{arch} backbone (torchvision ResNet, ``fc = Identity``) with the weights of the file ``weights``,\n"
        "in eval mode on the CPU; its ``geolab_meta`` says where the weights came from."
    )
    return entry


for _arch in ARCHS:
    _fn = _entry_point(_arch)
    globals()[_fn.__name__] = _fn
del _arch, _fn
