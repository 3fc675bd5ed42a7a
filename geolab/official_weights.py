"""Official GASSL checkpoints (Ayush et al. 2021) loaded into geolab's backbone.

The official code is MoCo-v2's: a checkpoint is a ``.pth.tar`` dict with ``epoch``, ``arch``,
``optimizer`` and ``state_dict``; the state dict was saved from a DDP-wrapped MoCo model, so
its keys read ``module.encoder_q.<resnet key>`` for the query encoder, whose ``fc`` is the
2-layer MLP projection (``fc.0`` Linear, ``fc.1`` ReLU, ``fc.2`` Linear); the key encoder
(``module.encoder_k.*``), the queue and any geo head are ignored for feature extraction.

geolab never downloads these files (they are on the authors' Google Drive); point
:func:`load_official_backbone` at a copy you already have. Everything is read with
``torch.load(weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from geolab.checkpoints import CheckpointError, load_state_dict_checked
from geolab.errors import UserError
from geolab.models import ARCHS, make_backbone

#: Prefix of the query encoder in the official checkpoints.
QUERY_PREFIX = "module.encoder_q."


class OfficialCheckpointError(UserError, ValueError):
    """The file is not an official GASSL/MoCo checkpoint that fits the asked backbone."""


def official_query_state(
    ckpt: dict[str, Any], source: str = "<checkpoint>"
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Split an official checkpoint into backbone weights and projection (``fc``) weights.

    Args:
        ckpt: the loaded ``.pth.tar`` dict (or a bare state dict).
        source: file name for messages.

    Returns:
        ``(backbone_state, projection_state)`` with the ``module.encoder_q.`` prefix removed;
        projection keys are renamed ``fc.0``/``fc.2`` -> ``layers.0``/``layers.2`` (lightly's
        :class:`~lightly.models.modules.MoCoProjectionHead`).

    Raises:
        OfficialCheckpointError: no ``module.encoder_q.`` keys.
    """
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise OfficialCheckpointError(
            f"{source}: no 'state_dict' dict in this file; is it an official GASSL checkpoint?"
        )
    query = {k[len(QUERY_PREFIX):]: v for k, v in state.items() if k.startswith(QUERY_PREFIX)}
    if not query:
        some = ", ".join(list(state)[:5])
        raise OfficialCheckpointError(
            f"{source}: no '{QUERY_PREFIX}*' keys (first keys: {some}). Official GASSL/MoCo checkpoints keep "
            "the query encoder under 'module.encoder_q.'; geolab.evaluate.load_backbone (and `geolab probe`) "
            "also reads geolab checkpoints and bare ResNet state dicts."
        )
    backbone = {k: v for k, v in query.items() if not k.startswith("fc.")}
    projection = {"layers." + k[len("fc."):]: v for k, v in query.items() if k.startswith("fc.")}
    return backbone, projection


def backbone_from_official(ckpt: dict[str, Any], arch: str | None = None, source: str = "<checkpoint>") -> nn.Module:
    """Geolab's backbone (torchvision ResNet, ``fc = Identity``) with the official query weights.

    Args:
        ckpt: the loaded ``.pth.tar`` dict.
        arch: ``resnet50`` (the paper's) etc.; ``None`` reads the checkpoint's ``arch`` entry
            and falls back to ``resnet50``.
        source: file name for messages.

    Returns:
        The backbone in eval mode, with ``feature_dim`` and ``geolab_meta`` attributes.

    Raises:
        OfficialCheckpointError: keys or shapes do not fit ``arch``; the message names them.
    """
    arch = arch or str(ckpt.get("arch") or "resnet50")
    if arch not in ARCHS:
        raise OfficialCheckpointError(f"{source}: architecture {arch!r} is not one geolab builds ({', '.join(ARCHS)}).")
    backbone_state, projection = official_query_state(ckpt, source)
    backbone, dim = make_backbone(arch)
    try:
        load_state_dict_checked(backbone, backbone_state, f"{source} (query encoder as {arch})")
    except CheckpointError as exc:
        raise OfficialCheckpointError(str(exc)) from exc
    # plain attributes, as geolab.weights.describe_backbone sets them (read with geolab.weights.backbone_meta)
    vars(backbone).update(feature_dim=dim, geolab_meta={
        "source": "official-gassl",
        "checkpoint": source,
        "arch": arch,
        "epoch": ckpt.get("epoch"),
        "method": "official",
        "image_size": 224,
        "has_projection": bool(projection),
    })
    return backbone.eval()


def load_official_backbone(path: str | os.PathLike, arch: str | None = None) -> nn.Module:
    """Load an official GASSL ``.pth.tar`` into geolab's backbone (``weights_only=True``).

    Args:
        path: the checkpoint file (e.g. ``moco_tp_geo_200.pth.tar``).
        arch: backbone architecture (default: the file's ``arch``, else ``resnet50``).

    Returns:
        The backbone in eval mode; ``backbone(x)`` gives (N, 2048) features for ResNet-50.

    Raises:
        FileNotFoundError: no such file.
        OfficialCheckpointError: not an official checkpoint, or keys/shapes that do not fit.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"official checkpoint not found: {path}. geolab does not download it; get the file from the "
            "GASSL authors' release and pass its path."
        )
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return backbone_from_official(ckpt, arch, str(path))
