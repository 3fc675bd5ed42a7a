"""MoCo-v2's training step written from scratch, and the batches notebooks 02-04 train it on.

Notebook 02 asks the learner to write the step (InfoNCE against the queue, the momentum update,
backward and SGD, the enqueue) and checks it against geolab's own step
(:func:`geolab.train.train_step`, via :mod:`geolab.course.checks`); notebooks 03 and 04 build on
it. This module is that step as the exercise asks for it, in plain ``torch``: notebooks 03 and 04
show it (``inspect.getsource``) and train with it, and the tests use it as the correct
submission the checks must accept. geolab's loop trains with lightly's blocks instead
(:mod:`geolab.models`); the checks prove the two agree.

The queue is a plain dict, ``{"bank": Tensor (N, D) of L2-normalised keys, "ptr": int}``: the
next batch of keys is written at ``ptr``, which wraps to 0 at the end (MoCo's ring buffer; a
queue whose size is a multiple of the batch, as every geolab profile's, fills exactly).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geolab.datasets import decode_images, label_names
from geolab.evaluate import extract_features, knn
from geolab.geo import add_geo_clusters
from geolab.manifest import select_split
from geolab.models import MoCoModel
from geolab.positives import LocationIndex, Strategy, check_strategy
from geolab.transforms import BatchMoCoV2View


def new_queue(size: int, dim: int = 128, seed: int = 0, device: str | torch.device = "cpu") -> dict[str, Any]:
    """A memory bank of ``size`` random unit keys (as lightly starts one) and its write pointer at 0."""
    g = torch.Generator().manual_seed(seed)
    return {"bank": F.normalize(torch.randn(size, dim, generator=g), dim=1).to(device), "ptr": 0}


def info_nce(q: Tensor, k: Tensor, queue: Tensor, T: float) -> Tensor:
    """InfoNCE of queries ``q`` (B, D) against their keys ``k`` (B, D) and the queued keys (N, D)."""
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)  # (B, 1): each query with its own key
    negatives = q @ queue.T  # (B, N): each query with every queued key
    logits = torch.cat([positive, negatives], dim=1) / T
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))  # the key is class 0


@torch.no_grad()
def momentum_update(query_encoder: nn.Module, key_encoder: nn.Module, m: float) -> None:
    """``theta_k <- m * theta_k + (1 - m) * theta_q``, parameter by parameter, in place."""
    for theta_q, theta_k in zip(query_encoder.parameters(), key_encoder.parameters()):
        theta_k.mul_(m).add_(theta_q, alpha=1 - m)


@torch.no_grad()
def enqueue(queue: dict[str, Any], k: Tensor) -> None:
    """Write the batch's L2-normalised keys at the pointer and move it on (wrapping to 0)."""
    n, b = len(queue["bank"]), len(k)
    ptr = queue["ptr"]
    queue["bank"][ptr : ptr + b] = F.normalize(k, dim=1)[: n - ptr]
    queue["ptr"] = ptr + b if ptr + b < n else 0


def training_step(model: MoCoModel, queue: dict[str, Any], optimizer: torch.optim.Optimizer,
                  batch: dict[str, Tensor], T: float, m: float) -> float:
    """One MoCo-v2 step on a :class:`geolab.models.MoCoModel`; returns the loss."""
    momentum_update(model.backbone, model.backbone_momentum, m)  # the key encoder moves first (MoCo)
    momentum_update(model.projection_head, model.projection_head_momentum, m)
    q = model.projection_head(model.backbone(batch["query"]))  # query encoder, with gradients
    with torch.no_grad():
        k = model.projection_head_momentum(model.backbone_momentum(batch["key"]))  # key encoder
    loss = info_nce(q, k, queue["bank"], T)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    enqueue(queue, k)  # this batch's keys are the next batches' negatives
    return loss.item()


# ----------------------------------------------------------------------------- batches to train on
def pair_batches(
    df: pd.DataFrame,
    steps: int,
    batch_size: int,
    image_size: int,
    positive: Callable[[int, float], int] | Strategy = "same-image",
    geo_k: int = 0,
    seed: int = 0,
    crop_min_scale: float = 0.2,
    jitter_strength: float = 1.0,
    split: str = "train",
    device: str | torch.device = "cpu",
) -> Iterator[dict[str, Tensor]]:
    """``steps`` batches of positive pairs from ``df``'s ``split``, made as geolab's loop makes them.

    Each batch has ``query`` and ``key`` (MoCo-v2 views of the query's image and of its key's
    image, :class:`geolab.transforms.BatchMoCoV2View`), ``rows`` and ``key_rows`` (positions in
    ``df``, on the CPU) and, with ``geo_k``, ``geo_cluster``. Query rows go through the split in a
    seeded random order (a new order each pass).

    Args:
        df: a manifest (positions, not index labels, name the rows).
        steps: number of batches.
        batch_size: pairs per batch.
        image_size: side of the views.
        positive: a strategy of :data:`geolab.positives.STRATEGIES` or a function
            ``(row, u) -> key row`` given a uniform ``u`` in [0, 1) (the learner's temporal positive).
        geo_k: geo clusters to add (0: none).
        seed: seeds the order, the draws and the views.
        crop_min_scale: smallest random-crop area (``PretrainConfig.crop_min_scale``).
        jitter_strength: multiplies MoCo-v2's colour jitter (``PretrainConfig.jitter_strength``).
        split: the rows to draw queries from.
        device: where the views are made and the batches live.

    Only the images the batches use are decoded (the whole of fMoW would not fit in memory).
    """
    df = df.reset_index(drop=True)
    if geo_k:
        df = add_geo_clusters(df, k=geo_k, seed=seed, fit_split=split)
    rows = np.flatnonzero(df["split"].to_numpy() == split)
    if len(rows) < batch_size:
        raise ValueError(f"the {split!r} split has {len(rows)} images, fewer than one batch of {batch_size}.")
    if isinstance(positive, str):
        index, strategy = LocationIndex(df), check_strategy(positive)
        positive = lambda i, u: index.draw(i, strategy, u)  # noqa: E731 - one line
    rng = np.random.default_rng(seed)
    passes = -(-steps * batch_size // len(rows))  # enough seeded orders of the split for every batch
    order = np.concatenate([rng.permutation(rows) for _ in range(passes)] or [rows[:0]])
    queries = order[: steps * batch_size].reshape(steps, batch_size)
    keys = np.array([int(positive(int(i), float(u))) for i, u in zip(queries.ravel(), rng.random(queries.size))],
                    dtype=np.int64).reshape(queries.shape)
    needed = np.unique(np.concatenate([queries.ravel(), keys.ravel()]))  # decode only the images the batches use
    images = decode_images(df.iloc[needed], image_size, progress=False)
    slot = {int(r): j for j, r in enumerate(needed)}
    view = BatchMoCoV2View(image_size, crop_min_scale, jitter_strength).to(device)
    torch.manual_seed(seed)
    clusters = df["geo_cluster"].to_numpy() if geo_k else None
    for q_rows, k_rows in zip(queries, keys):
        batch = {"query": view(images[[slot[int(r)] for r in q_rows]].to(device)),
                 "key": view(images[[slot[int(r)] for r in k_rows]].to(device)),
                 "rows": torch.from_numpy(q_rows), "key_rows": torch.from_numpy(k_rows)}
        if clusters is not None:
            batch["geo_cluster"] = torch.from_numpy(clusters[q_rows]).to(device)
        yield batch


def knn_top1(backbone: nn.Module, df: pd.DataFrame, image_size: int, device: str | torch.device = "cpu",
             bank: str = "train", queries: str = "val", max_images: int | None = 1000, seed: int = 0) -> float:
    """The kNN top-1 of ``backbone``'s frozen features: the ``bank`` split's against the ``queries`` split's.

    k=20, cosine similarity, weighted votes (MoCo's monitor, :func:`geolab.evaluate.knn`), on at most
    ``max_images`` images per split (a seeded subset, as the training loop's monitor).
    """
    classes = label_names(df)

    def features(split: str) -> tuple[np.ndarray, np.ndarray]:
        part = select_split(df, split)
        if max_images is not None and len(part) > max_images:
            part = part.sample(n=max_images, random_state=seed).reset_index(drop=True)
        return extract_features(backbone, part, image_size, classes=classes, device=device, progress=False)

    (bx, by), (qx, qy) = features(bank), features(queries)
    return float(knn(bx, by, qx, qy)["top1"])
