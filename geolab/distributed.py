"""Where a process runs: its device, its rank in a DDP job, and its seeded randomness.

One device resolver for the whole package (:func:`resolve_device`), the process-group set-up that
``torchrun`` describes (:func:`init_distributed`), the guard that turns a failed collective into a
:class:`DistributedError` (:func:`ddp_guard`), and the per-``(seed, epoch, rank)`` RNG helpers
that make a run reproducible and resumable.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from geolab.config import PretrainConfig
from geolab.errors import UserError


class DistributedError(UserError, RuntimeError):
    """A DDP collective failed: another rank died or hung."""


class DeviceError(UserError, RuntimeError):
    """A device asked for that this machine does not have."""


# ----------------------------------------------------------------------------- devices
def resolve_device(name: str | torch.device | None, local_rank: int | None = None) -> torch.device:
    """The torch device that a device name asks for.

    Args:
        name: a :class:`torch.device` (returned as it is); ``None`` or ``"auto"``: CUDA when
            available, else CPU; any other torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).
        local_rank: the GPU index that a bare ``"cuda"`` (or ``"auto"`` on a GPU machine) gets: this
            process's rank under torchrun; ``None`` (the default) leaves it unindexed (the current GPU).

    Returns:
        The device.

    Raises:
        DeviceError: a CUDA device asked for on a machine without one (a RuntimeError).
    """
    if isinstance(name, torch.device):
        return name
    if name in (None, "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(
            f"device={name!r} asked for but no CUDA GPU is available; use --device cpu (device='cpu' from Python)."
        )
    if name == "cuda" and local_rank is not None:
        return torch.device("cuda", local_rank)
    return torch.device(name)


# ----------------------------------------------------------------------------- process group
class DistContext:
    """Rank, world size and device of this process (``world_size == 1`` without torchrun)."""

    def __init__(self, rank: int, world_size: int, local_rank: int, device: torch.device, owns_group: bool):
        """Describe one process.

        Args:
            rank: global rank.
            world_size: number of processes.
            local_rank: rank on this node (its GPU index).
            device: this process's device.
            owns_group: whether this process created the process group (and so destroys it).
        """
        self.rank = rank
        self.world_size = world_size
        self.local_rank = local_rank
        self.device = device
        self.owns_group = owns_group

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the one that writes files and logs)."""
        return self.rank == 0


def init_distributed(cfg: PretrainConfig) -> DistContext:
    """Join the process group that ``torchrun`` describes, or use one already initialised.

    Reads env ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; NCCL on GPUs, gloo on CPUs; collectives time
    out after ``cfg.dist_timeout_s`` so that a dead rank ends the job instead of hanging it.

    Args:
        cfg: the run's configuration (``device``, ``dist_timeout_s``).

    Returns:
        This process's :class:`DistContext`.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        return DistContext(rank, world, local, resolve_device(cfg.device, local), owns_group=False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(0, 1, 0, resolve_device(cfg.device, 0), owns_group=False)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(cfg.device, local)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=_dt.timedelta(seconds=cfg.dist_timeout_s))
    return DistContext(dist.get_rank(), dist.get_world_size(), local, device, owns_group=True)


_COLLECTIVE_WORDS = ("gloo", "nccl", "connection", "timed out", "timeout", "peer", "socket", "broken pipe")


def _is_collective_failure(exc: BaseException) -> bool:
    """Whether an exception looks like a failed collective (a torch DistError or a transport error)."""
    dist_error = getattr(dist, "DistError", None)
    if dist_error is not None and isinstance(exc, dist_error):
        return True
    text = str(exc).lower()
    return any(w in text for w in _COLLECTIVE_WORDS)


@contextlib.contextmanager
def ddp_guard(ctx: DistContext, what: str) -> Iterator[None]:
    """Turn a failed collective into a :class:`DistributedError` that says what happened.

    Args:
        ctx: this process.
        what: what was running (``"epoch 1 step 2"``), for the message.

    Yields:
        Nothing; the guarded block runs inside.

    Raises:
        DistributedError: the block raised a collective failure under DDP.
    """
    try:
        yield
    except RuntimeError as exc:
        if not ctx.distributed or isinstance(exc, DistributedError) or not _is_collective_failure(exc):
            raise
        raise DistributedError(
            f"rank {ctx.rank} of {ctx.world_size}: a collective operation failed during {what}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. Another rank has most "
            "likely died or hung (see its own error above); the job stops here instead of hanging."
        ) from exc


# ----------------------------------------------------------------------------- seeding
def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of one epoch on one rank (sampling, positives, augmentations, shuffles)."""
    return (seed * 1_000_003 + epoch * 7919 + rank * 104_729) % (2**31 - 1)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_states() -> dict[str, Any]:
    """RNG states as plain tensors/lists (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state(legacy=False)
    py_version, py_state, py_gauss = random.getstate()
    out: dict[str, Any] = {
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "numpy": {
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_states(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_states`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(Exception):
            torch.cuda.set_rng_state_all(state["cuda"])
