"""End-to-end fine-tuning: a pre-trained backbone and a new linear layer trained together on labels.

Beside the frozen linear probe (:mod:`geolab.evaluate`), the paper reports fine-tuned top-1; the course's
notebook 08 (:mod:`geolab.course.labels`) compares the two. The scores are :mod:`geolab.evaluate`'s
(top-1 and macro-F1 of the same test rows, features through :func:`geolab.evaluate.extract_features`).
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from geolab.datasets import ImageDataset, decode_images, label_names
from geolab.distributed import resolve_device
from geolab.evaluate import classification_scores, extract_features
from geolab.transforms import BatchSupervisedView, supervised_transform
from geolab.weights import feature_dim


def fine_tune(
    backbone: nn.Module,
    train_df,
    test_df,
    image_size: int,
    *,
    classes: list[str] | None = None,
    epochs: int = 10,
    lr: float = 0.01,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
    max_steps: int | None = None,
    preload: bool = False,
    return_predictions: bool = False,
    return_model: bool = False,
) -> dict[str, Any]:
    """End-to-end fine-tuning (backbone + a new linear layer, SGD, cosine) and its test scores.

    The backbone is copied, never changed in place.

    Args:
        backbone: a pre-trained backbone (:func:`geolab.evaluate.load_backbone`), ``feature_dim`` attribute.
        train_df: manifest rows to train on.
        test_df: manifest rows to score.
        image_size: crop size.
        classes: class order (default: labels of both tables).
        epochs: SGD epochs (momentum 0.9, weight decay 1e-4).
        lr: SGD learning rate.
        batch_size: SGD batch size.
        num_workers: DataLoader workers.
        device: ``None``/``"auto"``: CUDA when available.
        seed: seeds initialisation and sampling.
        progress: tqdm bar.
        max_steps: stop after this many SGD steps in all (the cosine schedule spans them); ``None``: every epoch.
        preload: decode ``train_df`` once and augment whole batches of tensors
            (:class:`~geolab.transforms.BatchSupervisedView`, the same augmentation) instead of per image in PIL.
        return_predictions: also return each test row's predicted label index (``"predictions"``).
        return_model: also return the fine-tuned network (``"model"``: backbone then linear layer).

    Returns:
        ``{"top1", "f1", "steps"}`` on ``test_df`` (and what was asked for).
    """
    dev = resolve_device(device)
    classes = classes or label_names(pd.concat([train_df, test_df]))
    torch.manual_seed(seed)
    net = nn.Sequential(copy.deepcopy(backbone), nn.Linear(feature_dim(backbone), len(classes))).to(dev)
    train_df = train_df.reset_index(drop=True)
    images = decode_images(train_df, image_size, progress=False) if preload else None
    augment = BatchSupervisedView(image_size) if preload else None
    ds = ImageDataset(train_df, transform=None if preload else supervised_transform(image_size), classes=classes,
                      images=images)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=True, num_workers=num_workers, drop_last=len(ds) > batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    total = epochs * len(loader) if max_steps is None else min(epochs * len(loader), max_steps)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, total))
    net.train()
    step = 0
    for _ in tqdm(range(epochs), desc="fine-tune", disable=not progress or total == 0, leave=False):
        for batch in itertools.islice(loader, total - step):
            x = batch["query"].to(dev)
            loss = F.cross_entropy(net(augment(x) if augment is not None else x), batch["label"].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
    fx, fy = extract_features(net, test_df, image_size, classes=classes, device=dev, progress=False)
    out: dict[str, Any] = {**classification_scores(fy, fx.argmax(1)), "steps": step}
    if return_predictions:
        out["predictions"] = fx.argmax(1)
    if return_model:
        out["model"] = net.cpu().eval()
    return out
