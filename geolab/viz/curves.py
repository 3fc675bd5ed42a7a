"""Training curves of the runs a notebook compares: the loss and the kNN monitor per epoch.

A probe number alone cannot tell a run that learned from one that did not: the contrastive
loss of a run that learns falls well below ln(queue + 1) (its value for random features),
and the kNN monitor (top-1 on the val split, every ``knn_every`` epochs) rises. Both are in
each run's ``metrics.jsonl`` (written by :func:`geolab.train.pretrain`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd


def run_folder(record: Mapping[str, Any]) -> Path | None:
    """The run folder of a result record (its checkpoint's ``../..``), or None without one."""
    ckpt = record.get("checkpoint")
    return Path(ckpt).parent.parent if ckpt else None


def training_history(record: Mapping[str, Any]) -> pd.DataFrame:
    """One row per trained epoch of ``record``'s run: ``epoch`` (1-based), ``step``, ``loss``
    and ``knn_top1`` (NaN on epochs without the monitor). Empty for an untrained backbone
    (``random-init``) or a run whose ``metrics.jsonl`` is missing."""
    folder = run_folder(record)
    path = folder / "metrics.jsonl" if folder else None
    rows = []
    if path is not None and path.exists():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("kind") == "epoch":
                rows.append({"epoch": rec["epoch"] + 1, "step": rec.get("step"), "loss": rec.get("loss"),
                             "knn_top1": rec.get("knn_top1")})
    return pd.DataFrame(rows, columns=["epoch", "step", "loss", "knn_top1"]).astype(float)


def training_curves(records: Sequence[Mapping[str, Any]], *, note: str | None = None, ax=None):
    """Plot the loss (left) and the kNN monitor (right) of every trained run in ``records``,
    one line per run, one colour per method; untrained rows (random init) are skipped.

    Args:
        records: result records (from :func:`geolab.experiment.run_experiment`).
        note: a line under the title (e.g. :data:`geolab.viz.SIMULATION_NOTE`).
        ax: two matplotlib axes to draw on (default: a new figure).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=(11, 3.4))
    fig = ax[0].figure
    colours: dict[str, Any] = {}
    for rec in records:
        hist = training_history(rec)
        if hist.empty:
            continue
        method = rec["method"]
        colour = colours.setdefault(method, f"C{len(colours)}")
        label = method if method not in [line.get_label() for line in ax[0].get_lines()] else None
        ax[0].plot(hist["step"], hist["loss"], color=colour, alpha=0.8, label=label)
        knn = hist.dropna(subset=["knn_top1"])
        ax[1].plot(knn["step"], 100 * knn["knn_top1"], "o-", color=colour, alpha=0.8)
    ax[0].set(xlabel="optimizer step", ylabel="training loss", title="loss per epoch (each line a seed)")
    ax[1].set(xlabel="optimizer step", ylabel="kNN top-1 on val (%)", title="kNN monitor")
    if colours:
        ax[0].legend(fontsize=8)
    if note:
        fig.suptitle(note, fontsize=9, y=1.02)
    fig.tight_layout()
    return fig
