"""Weights files: the three kinds geolab reads, and the backbone file it writes.

geolab evaluates (``geolab probe`` / ``geolab knn``, :func:`geolab.evaluate.load_backbone`,
the notebooks) any of:

* a **geolab checkpoint** (``runs/<run>/checkpoints/last.pt``, :func:`geolab.train.pretrain`):
  ``{"format": "geolab-checkpoint", "model": {"backbone.*": ...}, ...}``;
* an **official GASSL** ``.pth.tar`` (the MoCo-v2 code of Ayush et al.): the query encoder under
  ``module.encoder_q.*`` (:mod:`geolab.official_weights`);
* a **bare ResNet state dict** in torchvision/timm key layout (``conv1.weight``,
  ``layer1.0.conv1.weight``, ..., ``fc.*``), e.g. torchgeo's ``ResNet50_Weights.FMOW_RGB_GASSL``
  file, a torchvision model's ``state_dict()``, or geolab's own export. ``module.``,
  ``backbone.`` and ``encoder.`` prefixes (DDP, lightly, many SSL repos) are stripped and the
  classifier ``fc.*`` is dropped; a state dict nested under ``"state_dict"`` or ``"model"`` is
  found. Without ``arch``, the architecture is the one of :data:`geolab.models.ARCHS` whose
  keys and shapes match exactly.

:func:`export_backbone` (``geolab export``) writes the query backbone alone as a bare
torchvision ResNet state dict (it loads with ``torch.load(weights_only=True)`` into
``torchvision.models.resnetXX()`` with only ``fc.*`` missing) plus a JSON sidecar
(:func:`sidecar_path`) with what produced it. Everything is read with ``weights_only=True``:
no pickled code runs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from geolab import __version__
from geolab.checkpoints import CheckpointError, check_checkpoint, load_state_dict_checked, read_checkpoint_file
from geolab.errors import UserError
from geolab.io import atomic_torch_save, atomic_write_json, check_output_file
from geolab.models import ARCHS, make_backbone
from geolab.official_weights import QUERY_PREFIX, backbone_from_official, official_query_state
from geolab.transforms import IMAGENET_NORMALIZE

#: Prefixes stripped from bare state-dict keys (DDP's ``module.``, lightly/Lightning's
#: ``backbone.``, ``encoder.`` of many SSL repositories), in any order and combination.
STRIP_PREFIXES: tuple[str, ...] = ("module.", "backbone.", "encoder.")
#: Keys of the classifier that a backbone does not have (dropped).
CLASSIFIER_PREFIX = "fc."
#: Sidecar format written by :func:`export_backbone`.
EXPORT_FORMAT = "geolab-backbone"
EXPORT_FORMAT_VERSION = 1
#: Where the tensors of a nested state dict may sit in a training checkpoint.
_NESTED_KEYS = ("state_dict", "model")
#: The three kinds of files (values of :func:`weights_kind` and of ``geolab_meta["kind"]``).
KINDS = ("geolab-checkpoint", "official-gassl", "state-dict")


class WeightsError(CheckpointError, UserError):
    """A weights file geolab cannot turn into a backbone (the message says why and what to do)."""


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def _nested_state(obj: dict[str, Any]) -> dict[str, Tensor] | None:
    """The state dict itself, or one nested under ``state_dict`` / ``model``."""
    if _is_state_dict(obj):
        return obj
    for key in _NESTED_KEYS:
        if _is_state_dict(obj.get(key)):
            return obj[key]
    return None


def weights_kind(obj: Any, source: str = "<weights>") -> str:
    """Which of :data:`KINDS` a loaded file is.

    Raises:
        WeightsError: none of them; names the top-level keys.
    """
    if isinstance(obj, dict) and obj.get("format") == "geolab-checkpoint":
        return "geolab-checkpoint"
    state = _nested_state(obj) if isinstance(obj, dict) else None
    if state is not None and any(k.startswith(QUERY_PREFIX) for k in state):
        return "official-gassl"
    if state is not None:
        return "state-dict"
    some = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, dict) else type(obj).__name__
    raise WeightsError(
        f"{source}: not a geolab checkpoint, an official GASSL .pth.tar or a ResNet state dict "
        f"(found: {some or 'an empty dict'}). Pass a file of tensors such as torchgeo's "
        "resnet50_fmow_rgb_gassl-*.pth, a `geolab export` output or runs/<run>/checkpoints/last.pt."
    )


def clean_state_dict(
    state: dict[str, Tensor], source: str = "<weights>"
) -> tuple[dict[str, Tensor], dict[str, list[str]]]:
    """A bare state dict in torchvision's backbone layout: prefixes stripped, ``fc.*`` dropped.

    Args:
        state: tensors by key (torchvision/timm ResNet layout, possibly prefixed).
        source: file name for messages.

    Returns:
        ``(backbone_state, report)``; ``report`` has ``"stripped"`` (the prefixes removed) and
        ``"dropped"`` (the classifier keys left out).

    Raises:
        WeightsError: two keys become the same key once their prefixes are stripped.
    """
    out: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    stripped: set[str] = set()
    dropped: list[str] = []
    for key, value in state.items():
        k = key
        while (p := next((p for p in STRIP_PREFIXES if k.startswith(p)), None)) is not None:
            stripped.add(p)
            k = k[len(p):]
        if k.startswith(CLASSIFIER_PREFIX):
            dropped.append(key)
            continue
        if k in out:
            raise WeightsError(
                f"{source}: keys {origin[k]!r} and {key!r} are both {k!r} once the prefixes "
                f"{', '.join(STRIP_PREFIXES)} are stripped; save one encoder's state dict alone."
            )
        out[k], origin[k] = value, key
    return out, {"stripped": sorted(stripped), "dropped": dropped}


@functools.cache
def _arch_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of ``make_backbone(arch)``, built on the meta device (no memory, no init cost)."""
    try:
        with torch.device("meta"):
            net, _dim = make_backbone(arch)
    except Exception:  # noqa: BLE001 - a builder that needs real tensors: build it on the CPU once
        net, _dim = make_backbone(arch)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _optional(key: str) -> bool:
    # BatchNorm fills num_batches_tracked in when a state dict has none (older torchvision files)
    return key.endswith("num_batches_tracked")


def _mismatch(state: dict[str, Tensor], arch: str) -> tuple[list[str], list[str], list[str]]:
    own = _arch_shapes(arch)
    missing = [k for k in own if k not in state and not _optional(k)]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {own[k]}" for k in own if k in state and tuple(state[k].shape) != own[k]]
    return missing, unexpected, shapes


def infer_arch(state: dict[str, Tensor], source: str = "<weights>") -> str:
    """The architecture of :data:`geolab.models.ARCHS` whose backbone has exactly these keys and shapes.

    Block counts and widths tell ResNet-18, -34, -50 and narrower encoders apart.

    Args:
        state: a cleaned backbone state dict (:func:`clean_state_dict`).
        source: file name for messages.

    Returns:
        The first matching key of ``ARCHS``.

    Raises:
        WeightsError: no architecture fits; names the closest one and what differs.
    """
    scored = []
    for arch in ARCHS:
        missing, unexpected, shapes = _mismatch(state, arch)
        if not (missing or unexpected or shapes):
            return arch
        scored.append((len(missing) + len(unexpected) + len(shapes), arch, missing, unexpected, shapes))
    _n, arch, missing, unexpected, shapes = min(scored)
    raise WeightsError(
        f"{source}: these weights fit none of geolab's architectures ({', '.join(ARCHS)}); the closest, "
        f"{arch}, has {_describe(missing, unexpected, shapes)}. geolab reads ResNet backbones in "
        "torchvision/timm key layout."
    )


def _describe(missing: list[str], unexpected: list[str], shapes: list[str]) -> str:
    return "; ".join(
        f"{len(keys)} {what}: {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
        for what, keys in (
            ("missing", missing), ("unexpected", unexpected), ("with other shapes (file vs model)", shapes)
        )
        if keys
    )


def backbone_from_state_dict(
    state: dict[str, Tensor], arch: str | None = None, source: str = "<weights>"
) -> tuple[nn.Module, dict[str, Any]]:
    """Geolab's backbone (``fc = Identity``) with the weights of a bare ResNet state dict.

    Args:
        state: tensors in torchvision/timm ResNet layout (prefixes and ``fc.*`` allowed).
        arch: a key of :data:`geolab.models.ARCHS`; ``None`` infers it (:func:`infer_arch`).
        source: file name for messages.

    Returns:
        ``(backbone in eval mode with feature_dim, report)``; ``report`` has ``arch``,
        ``arch_inferred``, ``stripped`` and ``dropped``.

    Raises:
        WeightsError: unknown ``arch``, no architecture fits, or the weights do not fit ``arch``
            (missing, unexpected and mis-shaped keys named).
    """
    clean, report = clean_state_dict(state, source)
    if arch is not None and arch not in ARCHS:
        raise WeightsError(f"{source}: --arch {arch!r} is not one geolab builds ({', '.join(ARCHS)}).")
    inferred = arch is None
    arch = arch or infer_arch(clean, source)
    missing, unexpected, shapes = _mismatch(clean, arch)
    if missing or unexpected or shapes:
        try:
            hint = f"The file fits {infer_arch(clean, source)}: pass that arch, or none to infer it."
        except WeightsError:
            hint = (f"It fits none of {', '.join(ARCHS)}; only the ResNet body may be in the file "
                    "(no projection head or momentum encoder).")
        raise WeightsError(f"{source}: the weights do not fit {arch}: {_describe(missing, unexpected, shapes)}. {hint}")
    backbone, dim = make_backbone(arch)
    own = backbone.state_dict()
    for k in own:  # see _optional
        if _optional(k) and k not in clean:
            clean[k] = own[k]
    backbone.load_state_dict(clean)
    describe_backbone(backbone, dim)
    return backbone.eval(), {"arch": arch, "arch_inferred": inferred, **report}


# ----------------------------------------------------------------------------- loading
def describe_backbone(backbone: nn.Module, dim: int | None = None, meta: dict[str, Any] | None = None) -> nn.Module:
    """Attach what a loaded backbone says about itself: ``feature_dim`` and ``geolab_meta``.

    Plain attributes (in the module's ``__dict__``, beside its submodules), read back with :func:`backbone_meta`.

    Args:
        backbone: the backbone just built.
        dim: its feature dimension (``None``: leave it).
        meta: ``kind``, ``source``, ``checkpoint``, ``arch``, ``method``, ``epoch``, ``image_size``, ...
            (``None``: leave it).

    Returns:
        ``backbone``.
    """
    if dim is not None:
        vars(backbone)["feature_dim"] = dim
    if meta is not None:
        vars(backbone)["geolab_meta"] = meta
    return backbone


def feature_dim(backbone: nn.Module) -> int:
    """The width of a backbone's features (its ``feature_dim``, set by :func:`describe_backbone` or by hand)."""
    return int(vars(backbone)["feature_dim"])


def backbone_meta(backbone: nn.Module) -> dict[str, Any]:
    """The ``geolab_meta`` of a backbone from :func:`load_weights` (``{}`` for one that has none)."""
    meta = vars(backbone).get("geolab_meta")
    return meta if isinstance(meta, dict) else {}


def sidecar_path(weights: str | os.PathLike) -> Path:
    """The JSON beside an exported backbone: ``backbone.pth`` -> ``backbone.json``."""
    return Path(weights).with_suffix(".json")


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    """The export's JSON, only when it describes this very file (same sha256)."""
    side = sidecar_path(path)
    if side == path or not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT or meta.get("sha256") != _sha256(path):
        return None  # another file's, or the weights were replaced since
    return meta


def load_weights(path: str | os.PathLike, arch: str | None = None) -> nn.Module:
    """The backbone of any of the three kinds of weights files (see the module docstring).

    Args:
        path: the file.
        arch: the architecture; used for official files and bare state dicts (``None``: the
            file's ``arch`` entry, the export's sidecar, else inferred from the shapes); a
            geolab checkpoint always uses its own.

    Returns:
        The backbone in eval mode on the CPU, with ``feature_dim`` and ``geolab_meta``
        (``kind``, ``source``, ``checkpoint``, ``arch``, ``method``, ``epoch``, ``image_size``,
        ``classes``; a bare state dict's also ``arch_inferred``, ``stripped``, ``dropped``).

    Raises:
        FileNotFoundError: no such file.
        geolab.checkpoints.CheckpointError: unreadable file; a geolab checkpoint that does not fit or is
            newer than this geolab (:class:`WeightsError`, a subclass, for bare state dicts).
        geolab.official_weights.OfficialCheckpointError: an official file that does not fit.
    """
    path = Path(path)
    obj = read_checkpoint_file(path)
    kind = weights_kind(obj, str(path))
    if kind == "official-gassl":
        official = obj if "state_dict" in obj else {"state_dict": _nested_state(obj)}
        if arch is None and not official.get("arch"):  # backbone_from_official would assume resnet50
            arch = infer_arch(clean_state_dict(official_query_state(official, str(path))[0], str(path))[0], str(path))
        backbone = backbone_from_official(official, arch, str(path))
        backbone_meta(backbone)["kind"] = kind
        return backbone
    if kind == "geolab-checkpoint":
        return _from_geolab_checkpoint(obj, path)
    side = _read_sidecar(path)
    state = _nested_state(obj)
    assert state is not None, "weights_kind said 'state-dict': the file holds one"
    backbone, report = backbone_from_state_dict(state, arch or (side or {}).get("arch"), str(path))
    return describe_backbone(backbone, meta={
        "kind": kind,
        "source": "geolab-export" if side else "state-dict",
        "checkpoint": str(path),
        "method": (side or {}).get("method"),
        "epoch": (side or {}).get("epochs"),
        "image_size": (side or {}).get("image_size"),
        "classes": None,
        **report,
    })


def check_arch(backbone: nn.Module, arch: str | None) -> nn.Module:
    """Refuse an ``arch`` the loaded weights were not built as (one file, one ``--arch``).

    :func:`load_weights` applies ``arch`` to official files and bare state dicts only: a geolab
    checkpoint carries its own, so ``geolab probe --arch resnet50`` on a ResNet-18 checkpoint used
    to be silently ignored, and the result read as a ResNet-50's. Where one file meets one
    ``--arch`` (``geolab probe`` / ``knn`` / ``export``), a disagreement is an error;
    :func:`geolab.evaluate.probe_weights` keeps the convention (one ``arch`` for a mix of files).

    Returns:
        ``backbone``, when ``arch`` is ``None`` or the one it was built as.

    Raises:
        WeightsError: naming the file, both architectures and what to pass.
    """
    meta = backbone_meta(backbone)
    if arch is not None and meta.get("arch") != arch:
        raise WeightsError(
            f"{meta.get('checkpoint')}: --arch {arch} disagrees with the file, a {meta.get('kind')} of "
            f"{meta.get('arch')} (a geolab checkpoint carries its own architecture); drop --arch or pass "
            f"--arch {meta.get('arch')}."
        )
    return backbone


def _from_geolab_checkpoint(ckpt: dict[str, Any], path: Path) -> nn.Module:
    ckpt = check_checkpoint(ckpt, path)  # header checks (format, version) with a clear error
    state = {k[len("backbone."):]: v for k, v in ckpt["model"].items() if k.startswith("backbone.")}
    if not state:
        raise CheckpointError(f"{path}: the checkpoint has no 'backbone.*' weights.")
    backbone, dim = make_backbone(ckpt["arch"])
    load_state_dict_checked(backbone, state, f"{path} (backbone as {ckpt['arch']})")
    config = ckpt.get("config", {})
    return describe_backbone(backbone, dim, {
        "kind": "geolab-checkpoint",
        "source": "geolab",
        "checkpoint": str(path),
        "arch": ckpt["arch"],
        "method": ckpt["method"],
        "epoch": ckpt.get("epoch"),
        "image_size": config.get("image_size"),
        "classes": ckpt.get("classes"),
        "config": config,
    }).eval()


# ----------------------------------------------------------------------------- export
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _normalisation() -> dict[str, Any]:
    return {
        "scale": "RGB pixel values / 255",
        "mean": [float(v) for v in IMAGENET_NORMALIZE["mean"]],
        "std": [float(v) for v in IMAGENET_NORMALIZE["std"]],
        "resize": (
            "geolab.transforms.eval_transform(image_size): short side to image_size / 0.875, centre crop image_size"
        ),
    }


def _our_sidecar(side: Path, weights: Path) -> bool:
    """``side`` is the JSON sidecar ``geolab export`` wrote for ``weights`` (its ``format``, ``weights`` entries)."""
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == EXPORT_FORMAT and meta.get("weights") == weights.name


def check_export_out(checkpoint: str | os.PathLike, out: str | os.PathLike, force: bool = False) -> tuple[Path, Path]:
    """Check ``geolab export``'s two output files by the output rule of :mod:`geolab.io`, before any work.

    An export is recognised by its sidecar: a JSON with ``"format": "geolab-backbone"`` naming the
    weights file, and the weights file whose SHA-256 that sidecar records. Anything else at
    either path (a geoworld's ``world.json``, someone's ``.pth``) is not replaced without ``force``.

    Returns:
        ``(weights file, sidecar)``.

    Raises:
        WeightsError: ``out`` ends in ``.json`` (the sidecar would be the file itself).
        geolab.io.OutputRefusedError: ``out`` is the checkpoint, or a file there is not an export's
            and ``force`` is off (named, with what to do).
        IsADirectoryError, NotADirectoryError: a folder where a file goes, or a file where a folder goes.
    """
    src, out = Path(checkpoint), Path(out)
    side = sidecar_path(out)
    if side == out:
        raise WeightsError(f"--out {out}: choose a new file name ending in .pth (not .json: the JSON sidecar "
                           "takes the same name with .json).")
    check_output_file(out, ours=_read_sidecar(out) is not None, command="geolab export", inputs=[src], force=force)
    check_output_file(side, ours=_our_sidecar(side, out), command="geolab export", given=out, inputs=[src],
                      force=force)
    return out, side


def export_backbone(
    checkpoint: str | os.PathLike, out: str | os.PathLike, arch: str | None = None, force: bool = False
) -> tuple[Path, Path]:
    """Write the query backbone of ``checkpoint`` as a bare torchvision ResNet state dict.

    The file holds only the backbone's tensors (no ``fc``, no momentum encoder, optimizer or
    memory bank), loads with ``torch.load(weights_only=True)`` and fits
    ``torchvision.models.resnetXX()`` with only ``fc.weight`` / ``fc.bias`` missing. A JSON
    sidecar (:func:`sidecar_path`) records method, arch, image size, normalisation, epochs,
    data, the source file and the geolab version. Both are written atomically.

    Args:
        checkpoint: any of the three kinds of weights files (:func:`load_weights`).
        out: the backbone file to write (e.g. ``backbone.pth``).
        arch: as in :func:`load_weights`; for a geolab checkpoint it must be the checkpoint's own
            (:func:`check_arch`).
        force: replace files at ``out`` and its sidecar that an earlier export did not write.

    Returns:
        ``(weights file, sidecar)``.

    Raises:
        Everything :func:`check_export_out` (checked first) and :func:`load_weights` raise.
    """
    src = Path(checkpoint)
    out, side = check_export_out(src, out, force=force)
    backbone = check_arch(load_weights(src, arch), arch)
    meta = backbone_meta(backbone)
    state = {k: v.detach().cpu().clone().contiguous() for k, v in backbone.state_dict().items()}
    atomic_torch_save(state, out)
    factory = ARCHS[meta["arch"]][0]
    config = meta.get("config") or {}
    sidecar = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "geolab_version": __version__,
        "torch_version": str(torch.__version__),
        "weights": out.name,
        "sha256": _sha256(out),
        "arch": meta["arch"],
        "feature_dim": feature_dim(backbone),
        "torchvision_model": (
            f"torchvision.models.{factory.__name__}"
            if getattr(factory, "__module__", "").startswith("torchvision") else None
        ),
        "missing_in_torchvision_model": ["fc.weight", "fc.bias"],
        "method": meta.get("method"),
        "epochs": meta.get("epoch"),
        "epochs_planned": config.get("epochs"),
        "image_size": meta.get("image_size"),
        "normalisation": _normalisation(),
        "data": {k: config.get(k) for k in ("manifest", "train_split")} if config else None,
        "source": {"kind": meta.get("kind"), "file": str(src)},
        "load": f"torch.load({out.name!r}, weights_only=True) -> model.load_state_dict(state, strict=False)",
    }
    atomic_write_json(side, sidecar)
    return out, side
