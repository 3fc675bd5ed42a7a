"""One training loop for every method of the paper, on CPU, one GPU, or many GPUs/nodes.

Methods (:data:`geolab.config.METHODS`):

==============  ==========================================================================
``supervised``  backbone + linear classifier on the category labels (the upper baseline)
``geoloc``      backbone + linear classifier on the geo clusters only (geo pretext alone)
``moco``        MoCo-v2: positive key = another augmentation of the same image
``moco-geo``    MoCo-v2 + geo loss
``moco-tp``     MoCo-v2 with temporal positives: positive key = another image of the same
                location at another time (strategy ``any-other`` by default)
``moco-tp-geo`` both (the paper's best model)
==============  ==========================================================================

Loss of the MoCo methods: ``alpha * InfoNCE(q, k) + beta * CE(geo_head(q), geo_cluster)``
(``beta`` term only for ``*-geo``; alpha = beta = 1 as in the paper).

Run it from Python (:func:`pretrain`), from the command line (``geolab pretrain ...``), or on
several GPUs/nodes with ``torchrun --nproc_per_node=N -m geolab.train ...`` (same arguments).
Under DDP ``batch_size`` is the global batch, split evenly over the ranks; keys are shuffled
across ranks for shuffle BN and the memory bank is filled with the keys of all ranks.

Reproducibility and resuming: every epoch's randomness (sampling order, positives,
augmentations, key shuffles) is seeded from ``(seed, epoch, rank)``, a checkpoint holding
the model, optimizer, memory bank and RNG states is written atomically after every epoch,
and ``resume=True`` continues from it: an interrupted-then-resumed CPU run ends with the same
weights as an uninterrupted one (``tests/test_resume.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from geolab import __version__
from geolab.config import PretrainConfig, add_pretrain_arguments, config_from_args  # noqa: F401 - re-exported
from geolab.distributed import (  # noqa: F401 - DistributedError, resolve_device re-exported until callers move
    DistContext,
    DistributedError,
    ddp_guard,
    epoch_seed,
    init_distributed,
    resolve_device,
    rng_states,
    seed_everything,
    set_rng_states,
)
from geolab.io import atomic_torch_save, atomic_write_json, check_run_folder, ensure_free_space

#: Version of the checkpoint layout written by :func:`save_checkpoint`.
CHECKPOINT_FORMAT = 1
CHECKPOINT_NAME = "last.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here (other architecture, newer geolab, wrong file)."""


# ----------------------------------------------------------------------------- small helpers
def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split("+")[0].split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def lr_at(step: int, total_steps: int, cfg: PretrainConfig) -> float:
    """Learning rate at a global step: ``lr * 0.5 * (1 + cos(pi * step / total))`` when
    ``cfg.cosine`` (MoCo-v2's ``--cos``), else constant."""
    if not cfg.cosine or total_steps <= 0:
        return cfg.lr
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


def auto_bn_splits(per_rank_batch: int, world_size: int) -> int:
    """BN splits used when ``bn_splits=0``: 1 under DDP (each rank is a split), else the largest
    of 8, 4, 2 that divides the batch with at least 4 images per split (MoCo: 8 GPUs x 32)."""
    if world_size > 1:
        return 1
    for s in (8, 4, 2):
        if per_rank_batch % s == 0 and per_rank_batch // s >= 4:
            return s
    return 1


# ----------------------------------------------------------------------------- the loss
def compute_loss(
    cfg: PretrainConfig,
    model: nn.Module,
    criterion: nn.Module | None,
    batch: dict[str, Tensor],
    distributed: bool = False,
) -> tuple[Tensor, dict[str, float]]:
    """Loss of one batch for any method.

    Args:
        cfg: the run's configuration (method, alpha, beta).
        model: :class:`~geolab.models.MoCoModel` or :class:`~geolab.models.Classifier`,
            possibly wrapped in DDP.
        criterion: the memory-bank InfoNCE (:func:`geolab.models.build_contrastive_loss`) for
            MoCo methods, else ``None``.
        batch: ``query``, ``key``, ``geo_cluster``, ``label`` tensors on the device (``key``
            only for MoCo methods).
        distributed: shuffle keys across ranks (DDP).

    Returns:
        ``(loss, parts)`` where ``parts`` has ``loss`` and, where they apply,
        ``contrastive`` and ``geo`` (floats).
    """
    amp = bool(cfg.amp) if cfg.amp is not None else batch["query"].device.type == "cuda"  # explicit True: CPU too
    autocast = torch.autocast(batch["query"].device.type, dtype=torch.bfloat16, enabled=amp)
    parts: dict[str, float] = {}
    if cfg.is_moco:
        with autocast:
            q, k, geo = model(batch["query"], batch["key"], distributed=distributed)
        contrastive = criterion(q.float(), k.float())
        loss = cfg.alpha * contrastive
        parts["contrastive"] = float(contrastive.detach())
        if geo is not None:
            geo_loss = F.cross_entropy(geo.float(), batch["geo_cluster"])
            loss = loss + cfg.beta * geo_loss
            parts["geo"] = float(geo_loss.detach())
    else:
        with autocast:
            logits = model(batch["query"])
        target = batch["geo_cluster"] if cfg.method == "geoloc" else batch["label"]
        loss = F.cross_entropy(logits.float(), target)
    parts["loss"] = float(loss.detach())
    return loss, parts


# ----------------------------------------------------------------------------- checkpoints
def checkpoint_path(out: str | os.PathLike) -> Path:
    """Where a run keeps its checkpoint: ``out/checkpoints/last.pt``."""
    return Path(out) / "checkpoints" / CHECKPOINT_NAME


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically (a write killed half-way leaves the previous file usable),
    after checking that the disk has room for it.

    Raises:
        geolab.io.DiskSpaceError: not enough free space.
    """
    path = Path(path)
    nbytes = _state_nbytes(state)
    ensure_free_space(path.parent, int(nbytes * 1.2) + (16 << 20), "checkpoints")
    atomic_torch_save(state, path)
    return path


def _checkpoint_header(arch: str, method: str) -> dict[str, Any]:
    """What every geolab checkpoint starts with (read back by :func:`check_checkpoint`)."""
    return {
        "format": "geolab-checkpoint",
        "format_version": CHECKPOINT_FORMAT,
        "geolab_version": __version__,
        "torch_version": str(torch.__version__),
        "arch": arch,
        "method": method,
    }


def save_random_init(cfg: PretrainConfig) -> Path:
    """The random-init baseline as a geolab checkpoint (method ``"random-init"``): the backbone
    that ``cfg.arch`` builds after ``seed_everything(cfg.seed)``, i.e. the same weights a
    pre-training run with that seed starts from, untrained. Probed like any checkpoint, it is
    the row every comparison of methods needs: what the features give before any learning.

    Returns:
        ``cfg.out/checkpoints/last.pt``.
    """
    from geolab.config import RANDOM_INIT
    from geolab.models import make_backbone

    seed_everything(cfg.seed)
    backbone, dim = make_backbone(cfg.arch)
    state = {
        **_checkpoint_header(cfg.arch, RANDOM_INIT),
        "config": {**cfg.to_dict(), "epochs": 0},
        "epoch": 0,
        "global_step": 0,
        "finished": True,
        "feature_dim": int(dim),
        "classes": [],
        "model": {f"backbone.{k}": v.detach().cpu() for k, v in backbone.state_dict().items()},
        "metrics": {},
    }
    return save_checkpoint(checkpoint_path(cfg.out), state)


def _state_nbytes(obj: Any) -> int:
    if isinstance(obj, Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_state_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_state_nbytes(v) for v in obj)
    return 64


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a geolab checkpoint with ``torch.load(weights_only=True)`` and check its header.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a geolab checkpoint, or written by a newer geolab / format.
    """
    return check_checkpoint(read_checkpoint_file(path), path)


def read_checkpoint_file(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with errors that say what to do.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable (truncated, not a torch file, or holding pickled code).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise CheckpointError(_unreadable_checkpoint_message(path, exc)) from exc


def _unreadable_checkpoint_message(path: Path, exc: BaseException) -> str:
    """One line on why ``torch.load(path, weights_only=True)`` failed and what to do (never
    torch's advice to load with ``weights_only=False``: that runs whatever code the file holds)."""
    import re

    size = path.stat().st_size if path.exists() else 0
    if size == 0:
        return (f"{path}: the file is empty (0 bytes), not a checkpoint: its copy or write was cut short. "
                "Copy it again from where it came from, or retrain.")
    text = str(exc)
    pickled = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if pickled or "Weights only load failed" in text:
        what = f" ({pickled.group(1)})" if pickled else ""
        return (f"{path}: holds pickled Python objects{what}, not only weights; geolab loads tensors only "
                "and never runs code from a file. Save the weights as a plain state dict "
                "(torch.save(model.state_dict(), ...)) or retrain.")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    reason = f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__
    return (f"{path}: cannot be read as a checkpoint ({reason}); the file is truncated or not a "
            "PyTorch checkpoint. Copy it again from where it came from, or retrain.")


def check_checkpoint(ckpt: Any, path: str | os.PathLike) -> dict[str, Any]:
    """The header checks of :func:`load_checkpoint` on an already loaded object.

    Raises:
        CheckpointError: not a geolab checkpoint, or written by a newer geolab / format.
    """
    if not isinstance(ckpt, dict) or ckpt.get("format") != "geolab-checkpoint":
        raise CheckpointError(
            f"{path}: not a geolab checkpoint (no 'format': 'geolab-checkpoint' entry). To evaluate official "
            "GASSL files or bare ResNet state dicts use geolab.evaluate.load_backbone (`geolab probe`)."
        )
    if int(ckpt.get("format_version", 0)) > CHECKPOINT_FORMAT or _version_tuple(
        str(ckpt.get("geolab_version", "0"))
    ) > _version_tuple(__version__):
        raise CheckpointError(
            f"{path}: written by geolab {ckpt.get('geolab_version')} (checkpoint format "
            f"{ckpt.get('format_version')}), newer than this geolab {__version__} (format {CHECKPOINT_FORMAT}). "
            "Upgrade geolab to load it."
        )
    return ckpt


def load_state_dict_checked(module: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """``module.load_state_dict(state)`` that, on any mismatch, names the keys.

    Raises:
        CheckpointError: missing keys, unexpected keys or shape mismatches, listed (first 8
            of each) with counts, and ``source`` named.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and isinstance(state[k], Tensor) and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        lines = [f"{source}: the weights do not fit this model."]
        for title, keys in (
            ("missing in the checkpoint", missing),
            ("unexpected in the checkpoint", unexpected),
            ("shape mismatch (checkpoint vs model)", shapes),
        ):
            if keys:
                more = f" ... and {len(keys) - 8} more" if len(keys) > 8 else ""
                lines.append(f"  {len(keys)} {title}: {', '.join(keys[:8])}{more}")
        lines.append("  Check that --arch, --method, --geo-k and --queue-size match the checkpoint's run.")
        raise CheckpointError("\n".join(lines))
    module.load_state_dict(state)


#: Settings a resumed run must share with its checkpoint: everything that changes the data,
#: the model, the loss or the optimizer's path, so that a resumed run equals an uninterrupted
#: one. The manifest is compared by path and content (:func:`manifest_fingerprint`), the
#: temporal strategy by the one actually used. ``epochs`` may only grow, and only with a
#: constant learning rate (``cosine=False``): the cosine schedule depends on the total steps.
#: Free to change: workers, device, progress, logging, the kNN monitor, ``amp``,
#: ``channels_last``, ``compile``, ``dist_timeout_s``, ``on_bad_image``.
_RESUME_MUST_MATCH = ("method", "arch", "batch_size", "proj_dim", "geo_k", "queue_size", "seed", "image_size",
                      "temperature", "lr", "momentum", "weight_decay", "alpha", "beta", "ema_momentum", "cosine",
                      "bn_splits", "max_steps_per_epoch", "train_split", "preload",
                      "crop_min_scale", "jitter_strength")


def manifest_fingerprint(manifest: str | os.PathLike) -> dict[str, str]:
    """``{"path": absolute path, "sha256": hash of the file's bytes}`` of a manifest: what a
    checkpoint records so that ``--resume`` can refuse another or a changed manifest."""
    import hashlib

    path = Path(manifest).expanduser().resolve()
    h = hashlib.sha256()
    with contextlib.suppress(OSError):  # a missing manifest is reported by load_manifest
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return {"path": str(path), "sha256": h.hexdigest()}


def _check_resume_config(ckpt: dict[str, Any], cfg: PretrainConfig, path: Path,
                         manifest_id: dict[str, str] | None = None) -> None:
    """Refuse to resume ``ckpt`` with settings that would make the run differ from an
    uninterrupted one, naming every difference (see :data:`_RESUME_MUST_MATCH`)."""
    old = ckpt.get("config", {})
    if ckpt.get("arch") != cfg.arch or ckpt.get("method") != cfg.method:
        raise CheckpointError(
            f"{path}: checkpoint is {ckpt.get('method')} / {ckpt.get('arch')}, this run is "
            f"{cfg.method} / {cfg.arch}. Resume with the same --method and --arch, or use another --out."
        )
    diffs = [f"{k}: checkpoint {old.get(k)!r}, now {getattr(cfg, k)!r}" for k in _RESUME_MUST_MATCH if k in old and old[k] != getattr(cfg, k)]
    if cfg.is_moco and "method" in old:
        was = old.get("strategy") or ("any-other" if "-tp" in str(old["method"]) else "same-image")
        if was != cfg.pair_strategy:
            diffs.append(f"strategy: checkpoint {was!r}, now {cfg.pair_strategy!r}")
    done = int(ckpt.get("epoch", 0))
    if "epochs" in old and old["epochs"] != cfg.epochs and (cfg.cosine or old.get("cosine") or cfg.epochs < done):
        why = f"the checkpoint already holds {done} epochs" if cfg.epochs < done else "the cosine schedule depends on the total"
        diffs.append(f"epochs: checkpoint {old['epochs']!r}, now {cfg.epochs!r} ({why})")
    before = ckpt.get("manifest") or {}
    if manifest_id is not None and before.get("path") and before["path"] != manifest_id["path"]:
        diffs.append(f"manifest: checkpoint {before['path']}, now {manifest_id['path']}")
    elif manifest_id is not None and before.get("sha256") and before["sha256"] != manifest_id["sha256"]:
        diffs.append(f"manifest content: {manifest_id['path']} changed since the run started "
                     f"(sha256 {before['sha256'][:12]}..., now {manifest_id['sha256'][:12]}...)")
    elif manifest_id is not None and not before and old.get("manifest"):
        was_path = str(Path(str(old["manifest"])).expanduser().resolve())  # checkpoints without a fingerprint
        if was_path != manifest_id["path"]:
            diffs.append(f"manifest: checkpoint {old['manifest']}, now {manifest_id['path']}")
    if diffs:
        raise CheckpointError(
            f"{path}: cannot resume with other settings ({'; '.join(diffs)}). A resumed run must equal an "
            "uninterrupted one: resume with the checkpoint's settings, or train into another --out."
        )


def _check_out_folder(out: Path, ckpt_file: Path) -> None:
    """Refuse an ``--out`` that is a file, or a folder holding files that are not a geolab run's
    (see :func:`geolab.io.check_run_folder`)."""
    from geolab.paths import RUN_FILES

    check_run_folder(out, set(RUN_FILES), ckpt_file)


def _check_checkpoint_space(ckpt_file: Path, model: nn.Module, criterion: nn.Module | None) -> None:
    """Before epoch 1: the disk must hold a checkpoint (weights, SGD momentum, memory bank)."""
    from geolab.models import memory_bank_state

    params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    nbytes = _state_nbytes(model.state_dict()) + params
    if criterion is not None:
        nbytes += _state_nbytes(memory_bank_state(criterion))
    ensure_free_space(ckpt_file.parent, int(nbytes * 1.2) + (16 << 20), "checkpoints")


# ----------------------------------------------------------------------------- data
class _SingleViewDataset(torch.utils.data.Dataset):
    """``ImageDataset`` items as dicts with the geo cluster (supervised / geoloc)."""

    def __init__(self, base, geo_cluster: np.ndarray):
        self.base = base
        self.geo_cluster = geo_cluster

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image, label, index = self.base[i]
        return {"query": image, "label": int(label), "geo_cluster": int(self.geo_cluster[int(index)]), "index": int(index)}


class _PairDataset(torch.utils.data.Dataset):
    """``TemporalPairDataset`` items as dicts."""

    def __init__(self, base):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        query, key, geo, label, index = self.base[i]
        return {"query": query, "key": key, "geo_cluster": int(geo), "label": int(label), "index": int(index)}

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)


def prepare_data(cfg: PretrainConfig):
    """Load the manifest, add geo clusters, and build the training dataset.

    Returns:
        ``(dataset, train_df, full_df, classes)``.

    Raises:
        geolab.manifest.ManifestError: bad manifest or empty train split.
        ValueError: fewer train locations than geo clusters.
    """
    from geolab.datasets import ImageDataset, TemporalPairDataset, decode_images, label_names
    from geolab.geo import add_geo_clusters
    from geolab.manifest import load_manifest, select_split
    from geolab.transforms import BatchMoCoV2View, BatchSupervisedView, moco_v2_view, supervised_transform

    df = load_manifest(cfg.manifest, require_splits=(cfg.train_split,))
    if cfg.uses_geo:
        train_locs = df.loc[df["split"] == cfg.train_split, "location_id"].nunique()
        if train_locs < cfg.geo_k:
            raise ValueError(
                f"{cfg.manifest}: geo_k={cfg.geo_k} geo clusters asked for, but the '{cfg.train_split}' split "
                f"has only {train_locs} locations. Use --geo-k {max(2, train_locs // 2)} or fewer."
            )
        df = add_geo_clusters(df, k=cfg.geo_k, seed=cfg.seed, fit_split=cfg.train_split)
    train = select_split(df, cfg.train_split)
    classes = label_names(df)
    # preload: decode the split once and augment whole batches of tensors in the loop
    # (ds.batch_transform); otherwise each image is read and augmented in PIL by the DataLoader
    images = decode_images(train, cfg.image_size, cfg.on_bad_image, progress=cfg.progress) if cfg.preload else None
    if cfg.is_moco:
        base = TemporalPairDataset(
            train, strategy=cfg.pair_strategy,
            transform=None if cfg.preload else moco_v2_view(cfg.image_size, cfg.crop_min_scale, cfg.jitter_strength),
            seed=cfg.seed, on_bad_image=cfg.on_bad_image, classes=classes, images=images,
        )
        ds: torch.utils.data.Dataset = _PairDataset(base)
        ds.batch_transform = BatchMoCoV2View(cfg.image_size, cfg.crop_min_scale, cfg.jitter_strength) if cfg.preload else None
        _warn_singletons(cfg, base.singleton_share)
    else:
        base = ImageDataset(
            train, transform=None if cfg.preload else supervised_transform(cfg.image_size),
            on_bad_image=cfg.on_bad_image, classes=classes, images=images,
        )
        geo = train["geo_cluster"].to_numpy() if "geo_cluster" in train else np.full(len(train), -1)
        ds = _SingleViewDataset(base, geo)
        ds.batch_transform = BatchSupervisedView(cfg.image_size) if cfg.preload else None
    return ds, train, df, classes


def _warn_singletons(cfg: PretrainConfig, share: float) -> None:
    """Temporal positives need revisits: say when many training images have none (their key
    is the same image, as in plain MoCo) and when the run is plain MoCo in all but name."""
    if cfg.pair_strategy == "same-image" or share < 0.5:
        return
    what = ("every location has a single image, so this run is plain MoCo-v2 (two augmentations of one image)"
            if share >= 1.0 else "their temporal positive falls back to the same image")
    warnings.warn(
        f"{cfg.manifest}: {share:.0%} of the '{cfg.train_split}' images are the only image of their location; "
        f"{what}. Temporal positives need locations imaged several times.",
        stacklevel=3,
    )


# ----------------------------------------------------------------------------- model
def build_model(cfg: PretrainConfig, num_classes: int, bn_splits: int) -> nn.Module:
    """The model of ``cfg.method`` (see :mod:`geolab.models`)."""
    from geolab.models import Classifier, MoCoModel

    if cfg.is_moco:
        return MoCoModel(cfg.arch, proj_dim=cfg.proj_dim, geo_k=cfg.geo_k if cfg.uses_geo else 0, bn_splits=bn_splits)
    n = cfg.geo_k if cfg.method == "geoloc" else num_classes
    return Classifier(cfg.arch, n, bn_splits=1)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ----------------------------------------------------------------------------- logging
class _Metrics:
    """``metrics.jsonl`` (one JSON object per line) and, when installed, TensorBoard."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool, keep_before_epoch: int | None):
        self.path = out / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        if keep_before_epoch is not None and self.path.exists():
            # a resumed run drops the records of the epoch that was interrupted
            kept = []
            for line in self.path.read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    rec = json.loads(line)
                    if rec.get("epoch", 0) < keep_before_epoch:
                        kept.append(line)
            from geolab.io import atomic_write_text

            atomic_write_text(self.path, "".join(k + "\n" for k in kept))
        elif self.path.exists():
            self.path.unlink()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                self.tb = None
                print("[geolab] tensorboard is not installed: metrics.jsonl only (pip install tensorboard, or tensorboard=False)", file=sys.stderr)

    def write(self, record: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    self.tb.add_scalar(f"{record.get('kind', 'train')}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ----------------------------------------------------------------------------- the loop
def pretrain(cfg: PretrainConfig) -> Path:
    """Train ``cfg.method`` and return the final checkpoint (``out/checkpoints/last.pt``).

    Works on CPU, one GPU, and under ``torchrun`` (DDP). Writes ``out/config.json``,
    ``out/metrics.jsonl`` (step and epoch records, kNN monitor) and a checkpoint after every
    epoch. With ``cfg.resume`` it continues from the checkpoint in ``out`` (a finished run is
    announced and returned as is); without it, an existing checkpoint is an error rather
    than being overwritten.

    Args:
        cfg: the run's :class:`~geolab.config.PretrainConfig`.

    Returns:
        Path of the checkpoint.

    Raises:
        CheckpointError: incompatible or newer checkpoint when resuming; existing checkpoint
            without ``resume``.
        geolab.manifest.ManifestError: bad manifest.
        DistributedError: another DDP rank died.
    """
    ctx = init_distributed(cfg)
    try:
        with ddp_guard(ctx, "training"):
            return _pretrain(cfg, ctx)
    finally:
        if ctx.owns_group and dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()


def _log(ctx: DistContext, msg: str) -> None:
    if ctx.is_main:
        print(f"[geolab] {msg}", file=sys.stderr, flush=True)


def _pretrain(cfg: PretrainConfig, ctx: DistContext) -> Path:
    from geolab.models import build_contrastive_loss, load_memory_bank_state, memory_bank_state

    out = Path(cfg.out)
    ckpt_file = checkpoint_path(out)
    if cfg.batch_size % ctx.world_size:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the {ctx.world_size} DDP ranks.")
    per_rank = cfg.batch_size // ctx.world_size
    # split BN guards MoCo against the BN leak; the classifiers use plain BatchNorm
    bn_splits = (cfg.bn_splits or auto_bn_splits(per_rank, ctx.world_size)) if cfg.is_moco else 1
    if cfg.is_moco and bn_splits == 1 and not cfg.bn_splits and not ctx.distributed:  # 1 asked for: no warning
        warnings.warn(
            f"batch {per_rank} is too small to split BatchNorm: MoCo's BN leak is not prevented; "
            "use a batch of 8 or more.",
            stacklevel=2,
        )
    if per_rank % bn_splits:
        raise ValueError(f"per-rank batch {per_rank} is not divisible by bn_splits={bn_splits}.")

    _check_out_folder(out, ckpt_file)
    manifest_id = manifest_fingerprint(cfg.manifest)  # at the start: what this run trains on
    ckpt = None
    if ckpt_file.exists():
        if not cfg.resume:
            raise CheckpointError(
                f"{ckpt_file} already exists. Pass --resume (resume=True) to continue that run, "
                "or choose another --out."
            )
        ckpt = load_checkpoint(ckpt_file)
        _check_resume_config(ckpt, cfg, ckpt_file, manifest_id)
        if int(ckpt["epoch"]) >= cfg.epochs:
            _log(ctx, f"{ckpt_file} already holds the finished run ({ckpt['epoch']} epochs of {cfg.method}); nothing to do.")
            return ckpt_file
        _log(ctx, f"resuming {cfg.method} from {ckpt_file} after epoch {ckpt['epoch']}")
    elif cfg.resume:
        _log(ctx, f"no checkpoint in {ckpt_file.parent}; starting from scratch")

    dataset, _train_df, full_df, classes = prepare_data(cfg)

    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    # identical weights (and memory bank) on every rank
    seed_everything(cfg.seed)
    model = build_model(cfg, len(classes), bn_splits).to(ctx.device)
    channels_last = cfg.channels_last if cfg.channels_last is not None else ctx.device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = None
    if cfg.is_moco:
        criterion = build_contrastive_loss(cfg.temperature, cfg.queue_size, cfg.proj_dim, distributed=ctx.distributed)
        criterion = criterion.to(ctx.device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    start_epoch, global_step = 0, 0
    if ckpt is not None:
        load_state_dict_checked(model, ckpt["model"], str(ckpt_file))
        optimizer.load_state_dict(ckpt["optimizer"])
        if criterion is not None:
            load_memory_bank_state(criterion, ckpt["memory_bank"])
        start_epoch, global_step = int(ckpt["epoch"]), int(ckpt["global_step"])

    if cfg.compile:
        for name in ("backbone", "backbone_momentum"):
            if hasattr(model, name):
                getattr(model, name).compile()
    raw_model = model
    if ctx.distributed:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
        )

    sampler = torch.utils.data.DistributedSampler(
        dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    loader_gen = torch.Generator()
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=per_rank,
        sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=ctx.device.type == "cuda",
        drop_last=True,
        generator=loader_gen,
        # not persistent: each epoch's workers are seeded from (seed, epoch, rank), which is
        # what makes a resumed run identical to an uninterrupted one
        persistent_workers=False,
    )
    steps_per_epoch = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise ValueError(
            f"{cfg.manifest}: the '{cfg.train_split}' split has {len(dataset)} images, fewer than one batch of "
            f"{cfg.batch_size}. Use a smaller --batch-size."
        )
    total_steps = steps_per_epoch * cfg.epochs

    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            out / "config.json",
            {
                "config": cfg.to_dict(),
                "manifest": manifest_id,
                "geolab_version": __version__,
                "world_size": ctx.world_size,
                "bn_splits": bn_splits,
                "strategy": cfg.pair_strategy if cfg.is_moco else None,
                "device": str(ctx.device),
                "train_images": len(dataset),
                "singleton_share": getattr(getattr(dataset, "base", None), "singleton_share", None),
                "classes": classes,
            },
        )
    metrics = _Metrics(out, ctx.is_main, cfg.tensorboard, keep_before_epoch=start_epoch if ckpt is not None else None)
    if ckpt is not None:
        set_rng_states(ckpt["rng"])
    if ctx.is_main:
        _check_checkpoint_space(ckpt_file, raw_model, criterion)  # before epoch 1, not after it

    try:
        for epoch in range(start_epoch, cfg.epochs):
            epoch_record = _train_epoch(
                cfg, ctx, model, raw_model, criterion, optimizer, loader, loader_gen, sampler, dataset,
                epoch, global_step, steps_per_epoch, total_steps, metrics,
            )
            global_step += steps_per_epoch
            if ctx.is_main and cfg.knn_every and ((epoch + 1) % cfg.knn_every == 0 or epoch + 1 == cfg.epochs):
                knn_top1 = knn_monitor(raw_model, full_df, cfg, classes, ctx.device)
                if knn_top1 is not None:
                    epoch_record["knn_top1"] = knn_top1
            metrics.write(epoch_record, global_step)
            if ctx.is_main:
                state = {
                    **_checkpoint_header(cfg.arch, cfg.method),
                    "config": cfg.to_dict(),
                    "manifest": manifest_id,
                    "epoch": epoch + 1,
                    "global_step": global_step,
                    "finished": epoch + 1 == cfg.epochs,
                    "feature_dim": int(raw_model.feature_dim),
                    "classes": list(classes),
                    "model": {k: v.detach().cpu() for k, v in raw_model.state_dict().items()},
                    "optimizer": optimizer.state_dict(),
                    "memory_bank": memory_bank_state(criterion) if criterion is not None else {},
                    "rng": rng_states(),
                    "metrics": epoch_record,
                }
                save_checkpoint(ckpt_file, state)
            if ctx.distributed:
                dist.barrier()
    finally:
        metrics.close()
    _log(ctx, f"done: {ckpt_file}")
    return ckpt_file


def _to_device(
    batch: dict[str, Any], device: torch.device, channels_last: bool, batch_transform: nn.Module | None = None
) -> dict[str, Tensor]:
    out = {}
    for k, v in batch.items():
        v = v.to(device, non_blocking=True)
        if v.ndim == 4 and batch_transform is not None:  # preloaded uint8 images: augment the batch here
            v = batch_transform(v)
        if v.ndim == 4 and channels_last:
            v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


def _train_epoch(
    cfg, ctx, model, raw_model, criterion, optimizer, loader, loader_gen, sampler, dataset,
    epoch, global_step, steps_per_epoch, total_steps, metrics,
) -> dict[str, Any]:
    """One epoch; returns the epoch record (mean losses, throughput)."""
    from tqdm.auto import tqdm

    seed = epoch_seed(cfg.seed, epoch, ctx.rank)
    seed_everything(seed)
    loader_gen.manual_seed(seed)
    sampler.set_epoch(epoch)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    model.train()
    channels_last = cfg.channels_last if cfg.channels_last is not None else ctx.device.type == "cuda"
    sums: dict[str, float] = {}
    n_images = 0
    t0 = time.perf_counter()
    bar = tqdm(
        total=steps_per_epoch, desc=f"{cfg.method} epoch {epoch + 1}/{cfg.epochs}",
        disable=not (cfg.progress and ctx.is_main), leave=False,
    )
    it = iter(loader)
    for i in range(steps_per_epoch):
        with ddp_guard(ctx, f"epoch {epoch + 1} step {i + 1}"):
            batch = _to_device(next(it), ctx.device, channels_last, getattr(dataset, "batch_transform", None))
            step = global_step + i
            lr = lr_at(step, total_steps, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if cfg.is_moco:
                raw_model.momentum_update(cfg.ema_momentum)
            loss, parts = compute_loss(cfg, model, criterion, batch, distributed=ctx.distributed)
            if not math.isfinite(parts["loss"]):
                raise FloatingPointError(
                    f"loss became {parts['loss']} at epoch {epoch + 1} step {i + 1}; lower --lr or raise --temperature."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        bs = batch["query"].shape[0] * ctx.world_size
        n_images += bs
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
        rate = n_images / max(time.perf_counter() - t0, 1e-9)
        bar.set_postfix({"loss": f"{parts['loss']:.3f}", "pairs/s" if cfg.is_moco else "img/s": f"{rate:.0f}"})
        bar.update(1)
        if cfg.log_every and (i + 1) % cfg.log_every == 0:
            metrics.write({"kind": "step", "epoch": epoch, "step": step + 1, "lr": lr, **parts}, step + 1)
    bar.close()
    seconds = time.perf_counter() - t0
    record: dict[str, Any] = {"kind": "epoch", "epoch": epoch, "step": global_step + steps_per_epoch, "seconds": seconds}
    record.update({k: v / steps_per_epoch for k, v in sums.items()})
    record["pairs_per_s" if cfg.is_moco else "images_per_s"] = n_images / max(seconds, 1e-9)
    bad = getattr(getattr(dataset, "base", None), "bad_images", 0)
    if bad:
        record["bad_images"] = int(bad)  # unreadable images skipped so far (on_bad_image="skip")
    _log(ctx, f"epoch {epoch + 1}/{cfg.epochs}: loss {record['loss']:.4f} ({seconds:.1f} s)")
    return record


def knn_monitor(model: nn.Module, df, cfg: PretrainConfig, classes: list[str], device: torch.device) -> float | None:
    """kNN top-1 of the query backbone: train split as the bank, ``val_split`` as queries
    (cosine, k=``cfg.knn_k``, weighted; InstDisc/MoCo's monitor). ``None`` without a val split.

    Uses at most ``cfg.knn_max_images`` images per split (a seeded subset) and no global RNG.
    """
    from geolab.evaluate import extract_features, knn

    if not (df["split"] == cfg.val_split).any():
        return None
    rng = np.random.default_rng(cfg.seed)

    def subset(split: str):
        part = df[df["split"] == split].reset_index(drop=True)
        if len(part) > cfg.knn_max_images:
            part = part.iloc[np.sort(rng.choice(len(part), cfg.knn_max_images, replace=False))].reset_index(drop=True)
        return part

    backbone = model.backbone
    was_training = backbone.training
    try:
        fb, lb = extract_features(backbone, subset(cfg.train_split), cfg.image_size, classes=classes, device=device, progress=False)
        fq, lq = extract_features(backbone, subset(cfg.val_split), cfg.image_size, classes=classes, device=device, progress=False)
    finally:
        backbone.train(was_training)
    return float(knn(fb, lb, fq, lq, k=cfg.knn_k)["top1"])


# ----------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    """``python -m geolab.train ...`` (what ``torchrun`` launches on every rank)."""
    parser = argparse.ArgumentParser(prog="python -m geolab.train", description="geolab pre-training (one rank)")
    add_pretrain_arguments(parser)
    args = parser.parse_args(argv)
    path = pretrain(config_from_args(args))
    if int(os.environ.get("RANK", "0")) == 0:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
