"""The geolab checkpoint: its format, where a run keeps it, writing, reading and checking it, resume checks.

A checkpoint is plain data (tensors, numbers, strings, lists, dicts) loadable with
``torch.load(weights_only=True)``: a header (:func:`checkpoint_header`), the run's config and
manifest fingerprint, epoch and step, the model, optimizer and memory-bank states and the RNG
states. :func:`geolab.train.pretrain` writes one after every epoch; ``--resume`` continues
from it only with settings that make the resumed run equal an uninterrupted one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from geolab import __version__
from geolab.config import PRETRAIN_ROLES, RANDOM_INIT, PretrainConfig, RecordMethod, pair_strategy
from geolab.distributed import seed_everything
from geolab.errors import UserError
from geolab.io import MissingFileError, atomic_torch_save, ensure_free_space
from geolab.models import make_backbone, memory_bank_state
from geolab.paths import RunFolder, manifest_fingerprint

#: Version of the checkpoint layout written by :func:`save_checkpoint`.
CHECKPOINT_FORMAT = 1
CHECKPOINT_NAME = RunFolder(".").checkpoint.name


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be used here (other architecture, newer geolab, wrong file)."""


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split("+")[0].split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


# ----------------------------------------------------------------------------- writing
def checkpoint_path(out: str | os.PathLike) -> Path:
    """Where a run keeps its checkpoint: ``out/checkpoints/last.pt`` (:attr:`geolab.paths.RunFolder.checkpoint`)."""
    return RunFolder(out).checkpoint


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically, after checking that the disk has room for it.

    A write killed half-way leaves the previous file usable.

    Raises:
        geolab.io.DiskSpaceError: not enough free space.
    """
    path = Path(path)
    nbytes = _state_nbytes(state)
    ensure_free_space(path.parent, int(nbytes * 1.2) + (16 << 20), "checkpoints")
    atomic_torch_save(state, path)
    return path


def checkpoint_header(arch: str, method: RecordMethod) -> dict[str, Any]:
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
    """The random-init baseline as a geolab checkpoint (method ``"random-init"``).

    The backbone that ``cfg.arch`` builds after ``seed_everything(cfg.seed)``, i.e. the same weights a pre-training
    run with that seed starts from, untrained. Probed like any checkpoint, it is the row every comparison of methods
    needs: what the features give before any learning.

    Returns:
        ``cfg.out/checkpoints/last.pt``.
    """
    seed_everything(cfg.seed)
    backbone, dim = make_backbone(cfg.arch)
    state = {
        **checkpoint_header(cfg.arch, RANDOM_INIT),
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


def training_state(cfg: PretrainConfig, manifest_id: dict[str, str], *, epoch: int, global_step: int,
                   model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module | None,
                   classes: list[str], rng: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint of a training run after ``epoch`` epochs: all a resumed run needs to go on exactly.

    Args:
        cfg: the run's settings.
        manifest_id: the manifest's :func:`manifest_record`, taken when the run started.
        epoch: epochs done.
        global_step: optimizer steps done.
        model: the model itself (not a DDP wrapper).
        optimizer: its optimizer (SGD momentum buffers).
        criterion: the memory-bank InfoNCE of the contrastive methods (its queue), else ``None``.
        classes: the class order of the labels.
        rng: every random generator's state (:func:`geolab.distributed.rng_states`).
        metrics: the epoch's record.

    Returns:
        Plain data for :func:`save_checkpoint` (``torch.load(weights_only=True)`` reads it back).
    """
    return {
        **checkpoint_header(cfg.arch, cfg.method),
        "config": cfg.to_dict(),
        "manifest": manifest_id,
        "epoch": epoch,
        "global_step": global_step,
        "finished": epoch == cfg.epochs,
        "feature_dim": int(getattr(model, "feature_dim", 0)),
        "classes": list(classes),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "memory_bank": memory_bank_state(criterion) if criterion is not None else {},
        "rng": rng,
        "metrics": metrics,
    }


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
        raise MissingFileError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(_unreadable_checkpoint_message(path, exc)) from exc


def _unreadable_checkpoint_message(path: Path, exc: BaseException) -> str:
    """One line on why ``torch.load(path, weights_only=True)`` failed and what to do.

    Never torch's advice to load with ``weights_only=False``: that runs whatever code the file holds.
    """
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


#: Settings a resumed run must share with its checkpoint, so that a resumed run equals an uninterrupted one:
#: every field that changes the learned weights (its declared role, :data:`geolab.config.PRETRAIN_ROLES`),
#: except the three compared by their own rule in :func:`check_resume_config`: the manifest (path and
#: :func:`geolab.paths.manifest_fingerprint`), the temporal strategy (the one actually used) and ``epochs``
#: (may only grow, and only with a constant learning rate: the cosine schedule depends on the total steps).
#: Free to change: whatever does not change the weights (workers, device, progress, logging, the kNN
#: monitor, ``channels_last``, ``compile``, ``dist_timeout_s``, ``on_bad_image``).
RESUME_MUST_MATCH: tuple[str, ...] = tuple(
    name for name, role in PRETRAIN_ROLES.items() if role.learns and name not in ("manifest", "strategy", "epochs"))


def check_resume_config(ckpt: dict[str, Any], cfg: PretrainConfig, path: Path,
                        manifest_id: dict[str, str] | None = None) -> None:
    """Refuse to resume ``ckpt`` with settings that would make the run differ from an uninterrupted one.

    Args:
        ckpt: the loaded checkpoint.
        cfg: the resumed run's settings.
        path: the checkpoint's file (for the message).
        manifest_id: the manifest's :func:`manifest_record` now (``None``: not compared).

    Raises:
        CheckpointError: naming every difference (see :data:`RESUME_MUST_MATCH`).
    """
    old = ckpt.get("config", {})
    if ckpt.get("arch") != cfg.arch or ckpt.get("method") != cfg.method:
        raise CheckpointError(
            f"{path}: checkpoint is {ckpt.get('method')} / {ckpt.get('arch')}, this run is "
            f"{cfg.method} / {cfg.arch}. Resume with the same --method and --arch, or use another --out."
        )
    diffs = [f"{k}: checkpoint {old.get(k)!r}, now {getattr(cfg, k)!r}"
             for k in RESUME_MUST_MATCH if k in old and old[k] != getattr(cfg, k)]
    if cfg.parts.contrastive and "method" in old:
        was = pair_strategy(str(old["method"]), old.get("strategy"))
        if was != cfg.pair_strategy:
            diffs.append(f"strategy: checkpoint {was!r}, now {cfg.pair_strategy!r}")
    done = int(ckpt.get("epoch", 0))
    if "epochs" in old and old["epochs"] != cfg.epochs and (cfg.cosine or old.get("cosine") or cfg.epochs < done):
        why = (f"the checkpoint already holds {done} epochs" if cfg.epochs < done
               else "the cosine schedule depends on the total")
        diffs.append(f"epochs: checkpoint {old['epochs']!r}, now {cfg.epochs!r} ({why})")
    if manifest_id is not None:
        diffs += _manifest_diffs(ckpt, old, manifest_id)
    if diffs:
        raise CheckpointError(
            f"{path}: cannot resume with other settings ({'; '.join(diffs)}). A resumed run must equal an "
            "uninterrupted one: resume with the checkpoint's settings, or train into another --out."
        )


def manifest_record(manifest: str | os.PathLike) -> dict[str, str]:
    """``{"path": absolute path, "fingerprint": geolab.paths.manifest_fingerprint}``: what a run records.

    Written into ``config.json`` and every checkpoint at the start of a run, so that ``--resume`` can refuse
    another manifest, or the same one changed since.
    """
    return {"path": str(Path(manifest).expanduser().resolve()), "fingerprint": manifest_fingerprint(manifest)}


def _manifest_diffs(ckpt: dict[str, Any], old: dict[str, Any], now: dict[str, str]) -> list[str]:
    """How the manifest differs from the checkpoint's: its path, else its fingerprint."""
    before = ckpt.get("manifest") or {}
    was = before.get("path")
    if not was and old.get("manifest"):  # a checkpoint without a manifest record: the config's path
        was = str(Path(str(old["manifest"])).expanduser().resolve())
    if was and was != now["path"]:
        return [f"manifest: checkpoint {was}, now {now['path']}"]
    # checkpoints written before issue 27 recorded a sha256 instead: only their path is compared
    if before.get("fingerprint") and before["fingerprint"] != now["fingerprint"]:
        return [f"manifest content: {now['path']} changed since the run started (its size or modification time "
                "differs)"]
    return []


def check_checkpoint_space(ckpt_file: Path, model: nn.Module, criterion: nn.Module | None) -> None:
    """Before epoch 1: the disk must hold a checkpoint (weights, SGD momentum, memory bank)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    nbytes = _state_nbytes(model.state_dict()) + params
    if criterion is not None:
        nbytes += _state_nbytes(memory_bank_state(criterion))
    ensure_free_space(ckpt_file.parent, int(nbytes * 1.2) + (16 << 20), "checkpoints")


