"""Evaluation on frozen features: linear probe (the paper's protocol), kNN, fine-tuning.

* :func:`load_backbone` -- the query backbone of a geolab checkpoint, an official GASSL
  ``.pth.tar`` or a bare ResNet state dict such as torchgeo's GASSL weights
  (:mod:`geolab.weights`; ``torch.load(weights_only=True)`` for all).
* :func:`extract_features` -- frozen features (global-average-pooled, 2048-d for ResNet-50)
  of every image of a manifest table, with the deterministic eval transform.
* :func:`linear_probe` -- a linear classifier on frozen features; top-1 and macro-F1.
  Default solver: scikit-learn's ``LogisticRegression`` (multinomial, L-BFGS) on
  standardised features. Why: it is a convex problem solved to convergence, deterministic,
  and with no learning rate or epoch count to tune, so probe numbers compare methods rather
  than probe training schedules; for geoworld and fmow-mini it takes seconds. For full fMoW
  (hundreds of thousands x 2048) ``backend="torch"`` trains the same linear layer with Adam
  on cached features (on the GPU when there is one).
* :func:`knn` -- weighted kNN on cosine similarity (k=20, weights ``exp(sim / 0.07)``),
  the monitor of InstDisc (Wu et al. 2018) and MoCo.
* end-to-end fine-tuning (backbone + linear layer) is :func:`geolab.finetune.fine_tune`.
* :func:`evaluate_backbone` -- the pipeline, once: features -> probe (its C chosen on val by
  :func:`probe_C`, the one rule) and kNN; the two entry points below are thin:
* :func:`evaluate_checkpoint` -- one checkpoint and manifest (what ``geolab probe`` /
  ``geolab knn`` and the course's records call).
* :func:`probe_weights` -- several weights files of any kind on one table, one row each
  (official GASSL or torchgeo weights beside your own runs).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from tqdm.auto import tqdm

from geolab.config import PROBE_C_GRID, ProbeConfig
from geolab.datasets import ImageDataset, label_names
from geolab.distributed import resolve_device
from geolab.errors import UserError
from geolab.manifest import load_manifest, scoring_split, select_split
from geolab.manifest_cells import shorten
from geolab.transforms import eval_transform
from geolab.weights import backbone_meta, check_arch, load_weights


class EvalSplitError(UserError, ValueError):
    """Splits that cannot be evaluated as asked; the message names them, their classes and what to do."""


# ----------------------------------------------------------------------------- backbones
def load_backbone(checkpoint: str | os.PathLike, arch: str | None = None) -> nn.Module:
    """The query backbone of a weights file, in eval mode, on the CPU.

    Accepts the three kinds of :mod:`geolab.weights`: geolab checkpoints
    (:func:`geolab.train.pretrain`), official GASSL ``.pth.tar`` files (keys
    ``module.encoder_q.*``) and bare torchvision/timm ResNet state dicts (torchgeo's GASSL
    weights, ``geolab export`` files; ``module.``/``backbone.``/``encoder.`` prefixes stripped,
    ``fc.*`` dropped). The returned module has ``feature_dim`` and ``geolab_meta`` (kind,
    source, arch, method, image_size, ...) attributes.

    Args:
        checkpoint: the file.
        arch: for official files and state dicts (default: the file's ``arch`` entry or the
            export's sidecar, else inferred from the weights' shapes); a geolab checkpoint
            always uses its own.

    Raises:
        FileNotFoundError: no such file.
        geolab.checkpoints.CheckpointError: a geolab checkpoint whose weights do not fit (names the keys),
            a newer geolab's checkpoint, an unreadable file; :class:`geolab.weights.WeightsError`
            (a subclass) for a state dict that fits no architecture or not ``arch``.
        geolab.official_weights.OfficialCheckpointError: an official one that does not fit.
    """
    return load_weights(checkpoint, arch)


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    df,
    image_size: int,
    *,
    classes: list[str] | None = None,
    batch_size: int = 128,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Frozen features of every row of ``df`` (in row order) and their label indices.

    Args:
        backbone: returns (N, D) features (e.g. from :func:`load_backbone`).
        df: manifest rows (``path``, ``label``).
        image_size: eval size (resize + centre crop).
        classes: class order (default :func:`geolab.datasets.label_names` of ``df``); give the
            full manifest's so that train and test subsets share indices.
        batch_size: images per forward pass.
        num_workers: DataLoader workers.
        device: ``None``/``"auto"``: CUDA when available (bf16 autocast there).
        progress: tqdm bar.

    Returns:
        ``(features float32 (N, D), labels int64 (N,))``.
    """
    dev = resolve_device(device)
    classes = classes if classes is not None else label_names(df)
    df = df.reset_index(drop=True)
    if len(df) * 3 * image_size**2 * 4 <= _EVAL_CACHE_BYTES // 4:  # small tables: decoded once per process
        images, targets = _eval_inputs(df, image_size, classes, num_workers)
        batches: Any = [{"query": images[i:i + batch_size], "label": targets[i:i + batch_size]}
                        for i in range(0, len(images), batch_size)]
    else:
        ds = ImageDataset(df, transform=eval_transform(image_size), classes=classes)
        batches = torch.utils.data.DataLoader(
            ds, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=dev.type == "cuda"
        )
    was_training = backbone.training
    backbone.eval().to(dev)
    feats: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    try:
        for batch in tqdm(batches, desc="features", disable=not progress, leave=False):
            images, label = batch["query"].to(dev, non_blocking=True), batch["label"]
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                f = backbone(images)
            feats.append(f.float().cpu().numpy())
            labels.append(np.asarray(label, dtype=np.int64))
    finally:
        backbone.train(was_training)
    if not feats:
        return np.zeros((0, int(getattr(backbone, "feature_dim", 0))), dtype=np.float32), np.zeros(0, dtype=np.int64)
    # rows in table order (an unreadable image under on_bad_image="skip" is replaced by the
    # next readable one, with that image's label)
    return np.concatenate(feats), np.concatenate(labels)


#: Eval inputs kept in this process (at most this many bytes): a course run's kNN monitor and its
#: final probe read the same splits again and again (a geoworld split at 32 px: ~12 KB an image).
_EVAL_CACHE_BYTES = 512 << 20
_EVAL_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _stamp(path: str) -> tuple[int, int] | None:
    """A file's size and modification time (``None`` when it cannot be read: a bad image)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _eval_inputs(df: pd.DataFrame, image_size: int, classes: list[str], num_workers: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every row's eval-transformed image and label index, read once per process and then reused.

    The same tensors as :class:`ImageDataset` gives item by item (a bad image replaced by the
    next readable one, with its label). The key holds each file's path, size and modification
    time, so a file rewritten on disk is read again; least recently used tables are dropped
    beyond :data:`_EVAL_CACHE_BYTES`.
    """
    paths = tuple(os.path.abspath(p) for p in df["path"])
    key = (paths, tuple(_stamp(p) for p in paths), int(image_size), tuple(classes))
    if key in _EVAL_CACHE:
        _EVAL_CACHE[key] = _EVAL_CACHE.pop(key)  # most recently used last
        return _EVAL_CACHE[key]
    ds = ImageDataset(df, transform=eval_transform(image_size), classes=classes)
    loader = torch.utils.data.DataLoader(ds, batch_size=256, shuffle=False, num_workers=num_workers)
    parts = list(loader)
    value = (torch.cat([b["query"] for b in parts]), torch.cat([torch.as_tensor(b["label"]) for b in parts]))
    _EVAL_CACHE[key] = value
    while sum(v[0].nelement() * v[0].element_size() for v in _EVAL_CACHE.values()) > _EVAL_CACHE_BYTES:
        _EVAL_CACHE.pop(next(iter(_EVAL_CACHE)))
    return value


# ----------------------------------------------------------------------------- classifiers
def classification_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """``{"top1": accuracy, "f1": macro-F1 over the labels present in y_true}`` (every evaluation's two scores)."""
    return {
        "top1": float(accuracy_score(y_true, y_pred)),
        "f1": float(f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true), zero_division=0)),
    }


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    backend: str = "sklearn",
    C: float = 1.0,
    seed: int = 0,
    epochs: int = 100,
    device: str | torch.device | None = None,
    return_predictions: bool = False,
) -> dict[str, Any]:
    """Linear classifier on frozen features (the paper's protocol); top-1 and macro-F1 on test.

    Args:
        train_x: features (N, D) of the training split.
        train_y: their label indices.
        test_x: features of the scored split.
        test_y: their label indices.
        backend: ``"sklearn"`` (LogisticRegression on standardised features; default, see the
            module docstring for why) or ``"torch"`` (Adam on cached features, for big sets).
        C: inverse L2 strength (sklearn); the torch backend uses weight decay ``1 / (C * N)``.
        seed: seeds the solver.
        epochs: torch backend epochs.
        device: torch backend device.
        return_predictions: also return the predicted label of every test row
            (``"predictions"``, an int array).

    Returns:
        ``{"top1": accuracy, "f1": macro-F1 over the test labels present}``.

    Raises:
        ValueError: fewer than two classes in the training split, or an unknown backend.
    """
    if len(np.unique(train_y)) < 2:
        raise ValueError("the linear probe needs at least two classes in the training split.")
    if backend == "sklearn":
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))
        clf.fit(train_x, train_y)
        pred = clf.predict(test_x)
    elif backend == "torch":
        pred = _torch_probe_predict(train_x, train_y, test_x, C, seed, epochs, resolve_device(device))
    else:
        raise ValueError(f"unknown linear probe backend {backend!r}; use 'sklearn' or 'torch'.")
    out: dict[str, Any] = classification_scores(test_y, pred)
    if return_predictions:
        out["predictions"] = np.asarray(pred)
    return out


def _torch_probe_predict(train_x, train_y, test_x, C, seed, epochs, dev) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(train_x, dtype=torch.float32)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x = ((x - mean) / std).to(dev)
    y = torch.as_tensor(train_y, dtype=torch.long).to(dev)
    n_classes = int(max(train_y.max(), 0)) + 1
    torch.manual_seed(seed)
    layer = nn.Linear(x.shape[1], n_classes).to(dev)
    opt = torch.optim.AdamW(layer.parameters(), lr=1e-2, weight_decay=1.0 / (C * len(x)))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    batch = 1024
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g).to(dev)
        for i in range(0, len(x), batch):
            idx = perm[i : i + batch]
            loss = F.cross_entropy(layer(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    with torch.no_grad():
        t = ((torch.as_tensor(test_x, dtype=torch.float32) - mean) / std).to(dev)
        return layer(t).argmax(1).cpu().numpy()


def knn(
    bank_x: np.ndarray,
    bank_y: np.ndarray,
    query_x: np.ndarray,
    query_y: np.ndarray,
    *,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
    return_predictions: bool = False,
) -> dict[str, Any]:
    """Weighted kNN classifier on cosine similarity (InstDisc / MoCo's monitor).

    Each query's ``k`` most similar bank features vote for their class with weight
    ``exp(sim / temperature)``; the class with the largest total wins.

    Args:
        bank_x: features of the bank (the training split).
        bank_y: their labels.
        query_x: features to classify.
        query_y: their labels.
        k: neighbours (20).
        temperature: vote temperature (0.07).
        chunk: queries per similarity block (memory bound).
        return_predictions: also return each query's predicted label (``"predictions"``).

    Returns:
        ``{"top1": accuracy}``.

    Raises:
        ValueError: ``k < 1`` or an empty bank.
    """
    if k < 1:
        raise ValueError(f"kNN needs k >= 1 neighbours, got k={k}.")
    if len(bank_x) == 0:
        raise ValueError("kNN needs a non-empty bank of training features.")
    bank = F.normalize(torch.as_tensor(bank_x, dtype=torch.float32), dim=1)
    labels = torch.as_tensor(bank_y, dtype=torch.long)
    n_classes = int(max(int(labels.max()), int(np.max(query_y)) if len(query_y) else 0)) + 1
    k = min(k, len(bank))
    preds = []
    for i in range(0, len(query_x), chunk):
        q = F.normalize(torch.as_tensor(query_x[i : i + chunk], dtype=torch.float32), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        votes = torch.zeros(len(q), n_classes).scatter_add_(1, labels[idx], (sim / temperature).exp())
        preds.append(votes.argmax(1))
    pred = torch.cat(preds).numpy() if preds else np.zeros(0, dtype=np.int64)
    out: dict[str, Any] = {"top1": float((pred == np.asarray(query_y)).mean()) if len(pred) else float("nan")}
    if return_predictions:
        out["predictions"] = pred
    return out


# ----------------------------------------------------------------------------- one call
def _check_eval_splits(train: pd.DataFrame, test: pd.DataFrame, source: str, train_split: str, test_split: str,
                       linear: bool) -> None:
    """Before any feature is extracted.

    The probe needs two training classes, and a scored class that the training split lacks could never be predicted
    (its images would silently count as errors).

    Args:
        train: the rows of ``train_split``.
        test: the rows of ``test_split``.
        source: the manifest, for messages.
        train_split: the split that fits the probe (and is the kNN bank).
        test_split: the scored split.
        linear: whether a linear probe follows (it needs two classes).

    Raises:
        EvalSplitError: naming the splits, the classes and what to do.
    """
    train_classes = set(train["label"])
    if linear and len(train_classes) < 2:
        raise EvalSplitError(
            f"{source}: the '{train_split}' split has {len(train_classes)} class "
            f"({', '.join(map(shorten, sorted(train_classes)))}); a linear probe needs at least two. Use a manifest "
            "whose training split holds several labels."
        )
    unseen = test.loc[~test["label"].isin(train_classes), "label"]
    if len(unseen):
        names = sorted(unseen.unique())
        shown = ", ".join(map(shorten, names[:5])) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise EvalSplitError(
            f"{source}: {len(unseen)} of the {len(test)} '{test_split}' images have classes absent from the "
            f"'{train_split}' split ({shown}); no classifier trained on '{train_split}' can predict them. "
            f"Add training images of those classes or drop those rows from '{test_split}'."
        )


def select_probe_C(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    grid: tuple[float, ...] | None = None,
    *,
    backend: str = "sklearn",
    seed: int = 0,
) -> tuple[float, dict[str, float]]:
    """The probe's inverse L2 strength with the best top-1 on the val split.

    Fits :func:`linear_probe` on the training features once per ``C`` in ``grid`` (default
    :data:`geolab.config.PROBE_C_GRID`) and scores val; a tie goes to the stronger
    regularisation (the smaller C). Returns ``(C, {str(C): val top-1})``.
    """
    scores = {}
    best_C, best = 1.0, -1.0
    for C in sorted(grid or PROBE_C_GRID):
        top1 = linear_probe(train_x, train_y, val_x, val_y, backend=backend, C=C, seed=seed)["top1"]
        scores[str(C)] = round(float(top1), 4)
        if top1 > best:
            best_C, best = C, top1
    return float(best_C), scores


#: The probe's C where there is no val split to choose it on (val scored, absent, or with unseen classes).
DEFAULT_PROBE_C = 1.0


def probe_C(
    train_x: np.ndarray,
    train_y: np.ndarray,
    split: np.ndarray,
    labels: np.ndarray,
    test_split: str,
    val_features: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    *,
    C: float | None = None,
    train_split: str = "train",
    backend: str = "sklearn",
    seed: int = 0,
) -> tuple[float, dict[str, float] | None]:
    """The probe's C as every evaluation chooses it: the one rule behind records, ``geolab probe`` and notebook 06.

    ``C`` when given; else :func:`select_probe_C` on the val split when val is not the scored split, has rows,
    and holds no class that ``train_split`` lacks; else :data:`DEFAULT_PROBE_C`. Val's features are asked for
    only when they are used.

    Args:
        train_x: training features (N, D).
        train_y: their label indices.
        split: every row's split (the whole table's ``split`` column).
        labels: every row's label (names or indices), aligned with ``split``.
        test_split: the scored split.
        val_features: ``(x, y)`` of the rows a boolean mask over the table selects (the val rows).
        C: a fixed C (no search).
        train_split: the split that fits the probe.
        backend: the probe's solver.
        seed: seeds the solver.

    Returns:
        ``(C, {str(C): val top-1} or None when nothing was searched)``.
    """
    if C is not None:
        return C, None
    split, labels = np.asarray(split), np.asarray(labels)
    val = split == "val"
    if test_split == "val" or not val.any() or not np.isin(labels[val], labels[split == train_split]).all():
        return DEFAULT_PROBE_C, None
    val_x, val_y = val_features(val)
    return select_probe_C(train_x, train_y, val_x, val_y, backend=backend, seed=seed)


def evaluate_backbone(
    backbone: nn.Module,
    df: pd.DataFrame,
    image_size: int,
    *,
    train_split: str = "train",
    test_split: str | None = None,
    linear: bool = True,
    knn_eval: bool = True,
    C: float | None = None,
    backend: str = "sklearn",
    k: int = 20,
    knn_temperature: float = 0.07,
    seed: int = 0,
    batch_size: int = 128,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The evaluation pipeline, once: frozen features -> linear probe (C by :func:`probe_C`) and/or kNN.

    What :func:`evaluate_checkpoint` (one file, ``geolab probe`` / ``knn``, the course's records) and
    :func:`probe_weights` (several files, notebook 06) both run on a loaded backbone.

    Args:
        backbone: returns (N, D) features (e.g. from :func:`load_backbone`).
        df: the manifest rows (every split; ``df.attrs["source"]`` names it in messages).
        image_size: evaluation size.
        train_split: fits the probe and is the kNN bank.
        test_split: the scored split (``None``/absent ``test``: ``val``, :func:`geolab.manifest.scoring_split`).
        linear: run the linear probe.
        knn_eval: run kNN.
        C: the probe's inverse L2 strength (``None``: chosen on val).
        backend: the probe's solver (``"sklearn"`` or ``"torch"``).
        k: kNN neighbours.
        knn_temperature: kNN vote temperature.
        seed: seeds the probe.
        batch_size: feature extraction's batch size.
        num_workers: feature extraction's DataLoader workers.
        device: feature extraction's device.
        progress: feature extraction's tqdm bars.

    Returns:
        ``train_split``, ``test_split``, ``train_images``, ``test_images``, ``classes``, ``test_locations``,
        ``test_location_images``, and ``linear_probe`` ``{"top1", "f1", "backend", "C", "hits"[, "val_top1_by_C"]}``
        and/or ``knn`` ``{"top1", "k", "hits"}`` (hits: correct images per test location, in one fixed order).

    Raises:
        geolab.manifest.ManifestError: an empty split.
        ValueError: fewer than two training classes for the probe, or scored classes the training split lacks.
    """
    test_split = scoring_split(df, test_split)
    train, test = select_split(df, train_split), select_split(df, test_split)
    _check_eval_splits(train, test, str(df.attrs.get("source", "<table>")), train_split, test_split, linear)
    classes = label_names(df)

    def features(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return extract_features(backbone, rows, image_size, classes=classes, batch_size=batch_size,
                                num_workers=num_workers, device=device, progress=progress)

    tx, ty = features(train)
    vx, vy = features(test)
    result: dict[str, Any] = {
        "train_split": train_split,
        "test_split": test_split,
        "train_images": len(train),
        "test_images": len(test),
        "classes": len(classes),
    }
    # Images of one place are correlated, so the test set's sampling error is over locations:
    # keep each method's hits per test location (in one fixed order) for a bootstrap over
    # locations (geolab.stats.bootstrap_interval).
    locations, loc_index = np.unique(test["location_id"].astype(str).to_numpy(), return_inverse=True)
    result["test_locations"] = len(locations)
    result["test_location_images"] = np.bincount(loc_index, minlength=len(locations)).tolist()

    def hits(pred: np.ndarray) -> list[int]:
        hits = np.bincount(loc_index, weights=(pred == vy).astype(np.float64), minlength=len(locations))
        return hits.astype(int).tolist()

    if linear:
        C, search = probe_C(tx, ty, df["split"].to_numpy(), df["label"].to_numpy(), test_split,
                            lambda val: features(df[val]), C=C, train_split=train_split, backend=backend, seed=seed)
        scores = linear_probe(tx, ty, vx, vy, backend=backend, C=C, seed=seed, return_predictions=True)
        pred = scores.pop("predictions")
        result["linear_probe"] = {**scores, "backend": backend, "C": C, "hits": hits(pred)}
        if search is not None:
            result["linear_probe"]["val_top1_by_C"] = search
    if knn_eval:
        scores = knn(tx, ty, vx, vy, k=k, temperature=knn_temperature, return_predictions=True)
        pred = scores.pop("predictions")
        result["knn"] = {**scores, "k": k, "hits": hits(pred)}
    return result


def evaluate_checkpoint(
    cfg: ProbeConfig, linear: bool = True, knn_eval: bool = True, progress: bool = True
) -> dict[str, Any]:
    """Linear probe and/or kNN of one checkpoint on one manifest (``geolab probe`` / ``knn``).

    Features of ``cfg.train_split`` fit the probe (and are the kNN bank); ``cfg.test_split``
    is scored (``val`` when the manifest has no ``test`` split; the result says which).
    The pipeline is :func:`evaluate_backbone`.

    Args:
        cfg: :class:`~geolab.config.ProbeConfig`.
        linear: run the linear probe.
        knn_eval: run kNN.
        progress: tqdm bars.

    Returns:
        A JSON-ready dict: checkpoint, method, arch, image_size, splits and sizes, and
        ``linear_probe`` ``{"top1", "f1"}`` and/or ``knn`` ``{"top1", "k"}``.
    """
    backbone = check_arch(load_backbone(cfg.checkpoint, cfg.arch), cfg.arch)  # --arch must not be ignored
    meta = backbone_meta(backbone)
    image_size = int(cfg.image_size or meta.get("image_size") or 224)
    df = load_manifest(cfg.manifest)
    result: dict[str, Any] = {
        "checkpoint": str(cfg.checkpoint),
        "weights": meta.get("source"),
        "method": meta.get("method"),
        "arch": meta.get("arch"),
        "epoch": meta.get("epoch"),
        "image_size": image_size,
        "manifest": str(cfg.manifest),
    }
    result.update(evaluate_backbone(
        backbone, df, image_size, train_split=cfg.train_split, test_split=cfg.test_split, linear=linear,
        knn_eval=knn_eval, C=cfg.C, backend=cfg.backend, k=cfg.k, knn_temperature=cfg.knn_temperature, seed=cfg.seed,
        batch_size=cfg.batch_size, num_workers=cfg.num_workers, device=cfg.device, progress=progress,
    ))
    return result


def probe_weights(
    weights: Mapping[str, str | os.PathLike],
    df: pd.DataFrame,
    image_size: int,
    *,
    arch: str | None = None,
    test_split: str | None = None,
    k: int = 20,
    batch_size: int = 128,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Linear probe and kNN of several weights files on one table, one row per file.

    Any mix of the three kinds of :mod:`geolab.weights` (geolab checkpoints, official GASSL
    ``.pth.tar``, bare ResNet state dicts such as torchgeo's GASSL file or ``geolab export``
    output), evaluated with one protocol: the same rows, image size and splits for all, and the
    same pipeline (:func:`evaluate_backbone`) as ``geolab probe`` / ``geolab knn`` for one file.

    Args:
        weights: display name -> file.
        df: manifest rows (``train`` fits the probe and is the kNN bank).
        image_size: evaluation size for every file (224 for weights trained on fMoW).
        arch: for official files and state dicts (default: each file's own or inferred).
        test_split: scored split (default ``test``, else ``val``).
        k: kNN neighbours.
        batch_size: feature extraction's batch size.
        num_workers: feature extraction's DataLoader workers.
        device: feature extraction's device.
        progress: feature extraction's tqdm bars.
        seed: seeds the probe.

    Returns:
        A ``pandas.DataFrame`` indexed by name: ``weights`` (geolab, official-gassl,
        state-dict, geolab-export), ``arch``, ``method``, ``epoch``, ``probe_C``, ``probe_top1``,
        ``probe_f1``, ``knn_top1`` (fractions), ``test_images``.
    """
    rows = {}
    for name, path in weights.items():
        backbone = load_backbone(Path(path).expanduser(), arch)
        meta = backbone_meta(backbone)
        res = evaluate_backbone(backbone, df, image_size, test_split=test_split, k=k, batch_size=batch_size,
                                num_workers=num_workers, device=device, seed=seed, progress=progress)
        rows[name] = {
            "weights": meta.get("source"), "arch": meta.get("arch"), "method": meta.get("method"),
            "epoch": meta.get("epoch"), "probe_C": res["linear_probe"]["C"], "probe_top1": res["linear_probe"]["top1"],
            "probe_f1": res["linear_probe"]["f1"], "knn_top1": res["knn"]["top1"], "test_images": res["test_images"],
        }
    return pd.DataFrame.from_dict(rows, orient="index")
