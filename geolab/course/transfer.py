"""Dense transfer (notebook 07): segmentation results per initialisation, beside the paper's.

geoworld's segmentation results per initialisation as course records and next to the paper's
xView / SpaceNet numbers, and figures of predicted masks.

geoworld is a simulation: figures made from geoworld data carry a note saying so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from geolab.dense import GEOWORLD_MASK_CLASSES, SegmentationDataset, predict_masks
from geolab.dense.metrics import scores_from_confusion
from geolab.paper import paper_transfer_table
from geolab.stats import CONFIDENCE, N_BOOTSTRAP
from geolab.transforms import IMAGENET_NORMALIZE


def dense_record(
    method: str,
    result: Mapping[str, Any],
    *,
    data: str,
    arch: str,
    image_size: int,
    epochs: int,
    seed: int = 0,
    variant: str = "",
) -> dict[str, Any]:
    """A course result record for one dense transfer run (for :func:`geolab.course.record_result`).

    Args:
        method: the initialisation (``random``, ``supervised``, ``moco``, ``moco-tp-geo`` ...).
        result: :func:`geolab.dense.train_dense`'s output.
        data: the data tier.
        arch: the backbone.
        image_size: the dense task's input size.
        epochs: pre-training epochs of the initialisation (0 for a random one).
        seed: the dense run's seed.
        variant: e.g. ``"frozen"`` for a frozen encoder.

    Returns:
        ``{method, data, arch, image_size, epochs, seed, experiment: "transfer", miou,
        pixel_acc, dense_epochs, freeze_backbone, wall_time_s}`` (+ ``variant``).
    """
    rec: dict[str, Any] = {
        "experiment": "transfer",
        "method": method,
        "data": data,
        "arch": arch,
        "image_size": int(image_size),
        "epochs": int(epochs),
        "seed": int(seed),
        "miou": float(result["miou"]),
        "pixel_acc": float(result["pixel_acc"]),
        "dense_epochs": int(result.get("epochs", 0)),
        "freeze_backbone": bool(result.get("freeze_backbone", False)),
        "wall_time_s": float(result.get("wall_s", 0.0)),
    }
    if variant:
        rec["variant"] = variant
    return rec


def dense_difference(
    a: np.ndarray, b: np.ndarray, locations: Sequence[Any], seed: int = 0
) -> dict[str, tuple[float, float, float]]:
    """``a - b`` in mIoU and pixel accuracy (points), each with a 95% interval over test locations.

    Both runs scored the same test images (``a`` and ``b`` are :func:`geolab.dense.train.evaluate_dense`'s
    per-image confusion matrices, in the same order). A bootstrap resamples the test *locations*
    (the images of one place are correlated) and recomputes both data-set-level scores from the
    summed matrices, paired: the same resample for both runs.

    Args:
        a: the first run's int array (images, classes, classes).
        b: the second run's, the same shape.
        locations: each image's location id.
        seed: bootstrap seed.

    Returns:
        ``{"miou": (diff, low, high), "pixel_acc": (diff, low, high)}`` in percentage points.

    Raises:
        ValueError: the runs scored different numbers of images, or ``locations`` does not match.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or len(locations) != len(a):
        raise ValueError(f"per-image matrices {a.shape} and {b.shape} with {len(locations)} locations: "
                         "score both runs on the same test images (train_dense(..., per_image=True)).")
    codes, loc = np.unique(np.asarray(locations), return_inverse=True)
    sum_a = np.zeros((len(codes),) + a.shape[1:], np.int64)
    sum_b = np.zeros_like(sum_a)
    np.add.at(sum_a, loc, a)
    np.add.at(sum_b, loc, b)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(codes), np.full(len(codes), 1 / len(codes)), size=N_BOOTSTRAP)

    def scores(per_loc: np.ndarray, w: np.ndarray) -> tuple[float, float]:
        _, miou, acc = scores_from_confusion(np.tensordot(w, per_loc, axes=1))
        return 100 * miou, 100 * acc

    full = np.ones(len(codes))
    point = np.subtract(scores(sum_a, full), scores(sum_b, full))
    boot = np.array([np.subtract(scores(sum_a, w), scores(sum_b, w)) for w in counts])
    tail = (1 - CONFIDENCE) / 2
    lo, hi = np.nanquantile(boot, tail, axis=0), np.nanquantile(boot, 1 - tail, axis=0)
    return {k: (float(point[i]), float(lo[i]), float(hi[i])) for i, k in enumerate(("miou", "pixel_acc"))}


def transfer_verdicts(
    image_confusion: Mapping[str, np.ndarray], locations: Sequence[Any], baseline: str = "random"
) -> pd.DataFrame:
    """Each initialisation against ``baseline`` in mIoU and pixel accuracy, with intervals and a verdict.

    One seed per initialisation: the intervals hold the test set's sampling error only (not how
    far a run moves with its seed), so "ahead" needs both metrics' intervals above 0, and a result
    where mIoU and pixel accuracy disagree in sign is called mixed.

    Returns:
        DataFrame indexed by initialisation (``baseline`` left out) with ``Δ mIoU``, ``mIoU ci``,
        ``Δ pixel acc``, ``pixel acc ci`` (points) and ``verdict``.
    """
    rows = {}
    for init, cm in image_confusion.items():
        if init == baseline:
            continue
        d = dense_difference(cm, image_confusion[baseline], locations)
        (dm, lm, hm), (da, la, ha) = d["miou"], d["pixel_acc"]
        if lm > 0 and la > 0:
            verdict = f"ahead of {baseline} init on both"
        elif hm < 0 and ha < 0:
            verdict = f"behind {baseline} init on both"
        elif (dm > 0) != (da > 0):
            verdict = "mixed: mIoU and pixel accuracy disagree; no claim"
        else:
            verdict = "no difference can be claimed"
        rows[init] = {"Δ mIoU": round(dm, 1), "mIoU ci": f"{lm:+.1f} to {hm:+.1f}", "Δ pixel acc": round(da, 1),
                      "pixel acc ci": f"{la:+.1f} to {ha:+.1f}", "verdict": verdict}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("init")


def transfer_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Our dense results per initialisation beside the paper's transfer results.

    Args:
        results: initialisation (``random``, ``supervised``, ``moco``, ``moco-tp-geo`` ...) ->
            :func:`geolab.dense.train_dense`'s output on geoworld (or another data set).

    Returns:
        DataFrame indexed by initialisation: ``mIoU (%)``, ``pixel acc (%)`` measured here, and
        the paper's ``xView AP50`` and ``SpaceNet mIoU`` (NaN where the paper has no row, or where
        :data:`geolab.paper.PAPER_TRANSFER` could not verify it).
    """
    paper = paper_transfer_table()
    rows = []
    for method, r in results.items():
        rows.append(
            {
                "init": method,
                "mIoU (%)": round(100 * float(r["miou"]), 2),
                "pixel acc (%)": round(100 * float(r["pixel_acc"]), 2),
                "paper: xView AP50": paper["xView AP50"].get(method, np.nan),
                "paper: SpaceNet mIoU": paper["SpaceNet mIoU"].get(method, np.nan),
            }
        )
    return pd.DataFrame(rows).set_index("init")


def plot_transfer(table: pd.DataFrame, note: str | None = None) -> Any:
    """Dense transfer measured here beside the paper's transfer numbers, as a figure.

    Two panels: mIoU measured here per initialisation, and the paper's SpaceNet mIoU and xView
    AP50 for the same initialisations (the paper's panel is labelled as the paper's).

    Args:
        table: :func:`transfer_table`'s output.
        note: a line for the left panel (e.g. :data:`geolab.viz.SIMULATION_NOTE`).

    Returns:
        The matplotlib Figure.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    xs = np.arange(len(table))
    left.bar(xs, table["mIoU (%)"], color="#4C72B0")
    left.set_xticks(xs, table.index, fontsize=8)
    left.set_ylabel("segmentation mIoU (%)")
    left.set_title("this run" + (f"\n({note})" if note else ""), fontsize=9)
    left.grid(axis="y", alpha=0.3)
    w = 0.38
    right.bar(xs - w / 2, table["paper: SpaceNet mIoU"], w, label="SpaceNet mIoU", color="#55A868")
    right.bar(xs + w / 2, table["paper: xView AP50"], w, label="xView AP50", color="#C44E52")
    right.set_xticks(xs, table.index, fontsize=8)
    right.set_title("the paper (fMoW pre-training, ResNet-50; missing bar = no verified number)", fontsize=9)
    right.legend(fontsize=8)
    right.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


#: Colours of geoworld's mask classes (background, building, water, road) in figures.
MASK_COLOURS: tuple[str, ...] = ("#e8e4d8", "#C44E52", "#4C72B0", "#555555")


def segmentation_examples(
    models: Mapping[str, Any],
    df: pd.DataFrame,
    rows: Sequence[int],
    image_size: int,
    class_names: Sequence[str] | None = None,
    note: str | None = None,
) -> Any:
    """A figure of a few images, their true masks and each model's predicted masks.

    Args:
        models: name -> trained :class:`geolab.dense.SegmentationModel` (``train_dense(...,
            return_model=True)["model"]``).
        df: manifest rows with ``path`` and ``mask_path``.
        rows: row positions of ``df`` to show (one figure row each).
        image_size: the models' input size.
        class_names: legend names (default: geoworld's background, building, water, road).
        note: a line under the figure (e.g. the simulation note).

    Returns:
        The matplotlib Figure: columns image, truth, then one per model.
    """
    part = df.iloc[list(rows)]
    part.attrs = dict(df.attrs)
    ds = SegmentationDataset(part, image_size, augment=False, preload=False)
    images, masks = zip(*(ds[i] for i in range(len(ds))))
    images_t = torch.stack(images)
    preds = {name: predict_masks(model, images_t).numpy() for name, model in models.items()}
    names = list(class_names or GEOWORLD_MASK_CLASSES)
    n_colours = max(len(names), len(MASK_COLOURS))
    cmap = ListedColormap([MASK_COLOURS[i % len(MASK_COLOURS)] for i in range(n_colours)])
    cols = ["image", "truth", *preds]
    fig, axes = plt.subplots(len(ds), len(cols), figsize=(1.7 * len(cols), 1.7 * len(ds) + 0.6), squeeze=False)
    mean = torch.tensor(IMAGENET_NORMALIZE["mean"]).view(3, 1, 1)  # the dense task's normalisation
    std = torch.tensor(IMAGENET_NORMALIZE["std"]).view(3, 1, 1)
    for r in range(len(ds)):
        shown = [(images[r] * std + mean).clamp(0, 1).permute(1, 2, 0).numpy(), masks[r].numpy(),
                 *(p[r] for p in preds.values())]  # fmt: skip
        for c, (ax, img) in enumerate(zip(axes[r], shown)):
            if c == 0:
                ax.imshow(img)
            else:
                ax.imshow(np.where(img < n_colours, img, 0), cmap=cmap, vmin=-0.5, vmax=n_colours - 0.5,
                          interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=8)
    fig.legend(handles=[Patch(color=cmap(i), label=n) for i, n in enumerate(names)], loc="lower center",
               ncol=len(names), fontsize=7, frameon=False)  # fmt: skip
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    if note:
        fig.text(0.99, 0.005, note, ha="right", va="bottom", fontsize=7, color="#8a1c1c", style="italic")
    return fig
