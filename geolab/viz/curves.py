"""Training curves and result bars of the runs a notebook compares.

A probe number alone cannot tell a run that learned from one that did not: the contrastive
loss of a run that learns falls well below ln(queue + 1) (its value for random features),
the geo loss below ln(K) (guessing among K geo clusters), and the kNN monitor (top-1 on the
val split, every ``knn_every`` epochs) rises. All three are in each run's ``metrics.jsonl``
(written by :func:`geolab.train.pretrain`). :func:`method_bars` draws each method's mean
with its 95% interval over test locations and seeds, never a bare standard deviation, and
:func:`label_efficiency_curves` its probe against the fraction of training labels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from geolab.config import RANDOM_INIT
from geolab.paths import RunFolder
from geolab.stats import bootstrap_interval, label_efficiency_table


def run_folder(record: Mapping[str, Any]) -> Path | None:
    """The run folder of a result record (the run of its checkpoint), or None without one."""
    ckpt = record.get("checkpoint")
    return RunFolder.of_checkpoint(ckpt).root if ckpt else None


COLUMNS = ["epoch", "step", "loss", "contrastive", "geo", "knn_top1"]


def run_config(record: Mapping[str, Any]) -> dict[str, Any]:
    """The run's training settings, from its ``config.json``.

    The run's training settings (``PretrainConfig`` fields: queue size, geo K, ...) from its
    ``config.json``, or ``{}`` when it has none.
    """
    folder = run_folder(record)
    path = RunFolder(folder).config if folder else None
    if path is None or not path.exists():
        return {}
    stored = json.loads(path.read_text())
    return stored.get("config", stored)


def training_history(record: Mapping[str, Any]) -> pd.DataFrame:
    """One row per trained epoch of ``record``'s run.

    ``epoch`` (1-based), ``step``, ``loss`` (what the optimizer minimised), its parts ``contrastive`` and ``geo``
    (NaN where a method has none) and ``knn_top1`` (NaN on epochs without the monitor). Empty for an untrained
    backbone (``random-init``) or a run whose ``metrics.jsonl`` is missing.
    """
    folder = run_folder(record)
    path = RunFolder(folder).metrics if folder else None
    rows = []
    if path is not None and path.exists():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("kind") == "epoch":
                rows.append({"epoch": rec["epoch"] + 1, "step": rec.get("step"), "loss": rec.get("loss"),
                             "contrastive": rec.get("contrastive"), "geo": rec.get("geo"),
                             "knn_top1": rec.get("knn_top1")})
    return pd.DataFrame(rows, columns=COLUMNS).astype(float)


#: The panels of :func:`training_curves`: (column of the history, y label, title).
PANELS = {
    "contrastive": ("InfoNCE loss", "contrastive loss (each line a seed)"),
    "geo": ("cross-entropy", "geo loss (methods with a geo head)"),
    "knn_top1": ("kNN top-1 on val (%)", "kNN monitor"),
}


def training_curves(records: Sequence[Mapping[str, Any]], *, note: str | None = None, ax=None):
    """Training curves of the runs behind ``records``: a panel for each thing that ran.

    Plot, for every trained run in ``records`` (one line per run, one colour per method;
    untrained rows such as random init are skipped): the contrastive loss against its
    chance level ln(queue + 1), the geo loss against ln(K) and the kNN monitor. A panel is
    drawn only when some run has its curve: no geo-loss panel without a method with a geo head,
    no kNN panel when the monitor never ran. A supervised run has neither loss; its kNN line is drawn.

    Args:
        records: result records (from :func:`geolab.course.experiment.run_experiment`).
        note: a line under the title (e.g. :data:`geolab.viz.SIMULATION_NOTE`).
        ax: matplotlib axes to draw on, at least one per panel drawn (default: a new figure);
            axes left over are hidden.

    Returns:
        The matplotlib figure (a single note "no trained run" when no run has a curve).
    """
    runs = [(rec, hist) for rec in records if not (hist := training_history(rec)).empty]
    panels = [p for p in PANELS if any(hist[p].notna().any() for _, hist in runs)]
    if ax is None:
        fig, ax = plt.subplots(1, max(1, len(panels)), figsize=(4.7 * max(1, len(panels)), 3.4), squeeze=False)
        ax = ax[0]
    if len(ax) < len(panels):
        raise ValueError(f"training_curves draws {len(panels)} panels ({', '.join(panels)}) but got {len(ax)} axes.")
    fig = ax[0].figure
    for extra in ax[len(panels):]:
        extra.set_visible(False)
    if not panels:
        ax[0].set_visible(True)
        ax[0].axis("off")
        ax[0].text(0.5, 0.5, "no trained run: no training curves", ha="center", va="center")
    axes = dict(zip(panels, ax))
    colours: dict[str, Any] = {}
    chance: dict[str, set[float]] = {"contrastive": set(), "geo": set()}
    for rec, hist in runs:
        method = rec["method"]
        new = method not in colours
        colour = colours.setdefault(method, f"C{len(colours)}")
        cfg = run_config(rec)
        for part, size in (("contrastive", cfg.get("queue_size")), ("geo", cfg.get("geo_k"))):
            if hist[part].notna().any():
                axes[part].plot(hist["step"], hist[part], color=colour, alpha=0.8, label=method if new else None)
                if size:
                    chance[part].add(float(np.log(size + 1 if part == "contrastive" else size)))
        knn = hist.dropna(subset=["knn_top1"])
        if len(knn):
            axes["knn_top1"].plot(knn["step"], 100 * knn["knn_top1"], "o-", color=colour, alpha=0.8,
                                  label=method if new else None)
    for part, what in (("contrastive", "ln(queue + 1)"), ("geo", "ln(K)")):
        for level in sorted(chance[part]):
            axes[part].axhline(level, color="grey", ls=":", lw=1)
            axes[part].annotate(f"{what} = {level:.2f}: chance", (0.99, level), xycoords=("axes fraction", "data"),
                                ha="right", va="top", fontsize=7, color="grey")
    for part, a in axes.items():
        a.set(xlabel="optimizer step", ylabel=PANELS[part][0], title=PANELS[part][1])
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
    if note:
        fig.suptitle(note, fontsize=9, y=1.02)
    fig.tight_layout()
    return fig


def method_bars(records: Sequence[Mapping[str, Any]], metric: str = "probe_top1", *, title: str = "",
                note: str | None = None, names: Mapping[str, str] | None = None, ax=None):
    """One bar per method (or variant) with its 95% interval.

    One bar per method, or per variant where records have one (in the order they first
    appear): the mean of ``metric`` over its seeds, with the 95% interval of
    :func:`geolab.stats.bootstrap_interval` (test locations and seeds resampled) as the
    error bar; none where records carry no per-location hits.

    Args:
        records: result records of the methods (or variants) compared, one experiment.
        metric: ``probe_top1`` or ``knn_top1``.
        title: the plot's title.
        note: a line under the title (e.g. :data:`geolab.viz.SIMULATION_NOTE`).
        names: display names per method (e.g. the paper's, ``geolab.paper.PAPER_METHOD_NAMES``).
        ax: the matplotlib axes to draw on (default: a new figure).

    Returns:
        The matplotlib axes.
    """
    groups = list(dict.fromkeys((r["method"], r.get("variant")) for r in records))
    means: list[float] = []
    err: list[list[float]] = [[], []]
    for m, variant in groups:
        mean = 100 * float(np.mean([r[metric] for r in records if (r["method"], r.get("variant")) == (m, variant)]))
        ci = bootstrap_interval(records, m, metric, variant=variant)
        low, high = (mean, mean) if ci is None else (100 * ci[0], 100 * ci[1])
        means.append(mean)
        err[0].append(mean - low)
        err[1].append(high - mean)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(5, 1.2 * len(groups)), 3.6))
    ax.bar(range(len(groups)), means, yerr=err, capsize=4, color=[f"C{i}" for i in range(len(groups))])
    labels = [variant or (names or {}).get(m, m) for m, variant in groups]
    ax.set_xticks(range(len(groups)), labels, rotation=20, ha="right")
    label = {"probe_top1": "linear probe top-1 (%)", "knn_top1": "kNN top-1 (%)"}.get(metric, metric)
    ax.set(ylabel=label + ", 95% interval", title=title)
    if note:
        ax.figure.suptitle(note, fontsize=9, y=1.02)
    return ax


def label_efficiency_curves(records: Sequence[Mapping[str, Any]], metric: str = "probe_top1", *, title: str = "",
                            note: str | None = None, names: Mapping[str, str] | None = None, ax=None):
    """Probe top-1 against the fraction of training labels (log x), one line per method with its 95% band.

    The paper's and UvA's label-efficiency curves, from the ``label-efficiency`` records
    (:func:`geolab.course.labels.label_efficiency`): the mean over seeds at each fraction, the band
    the 95% interval over test locations and seeds (:func:`geolab.stats.label_efficiency_table`).
    Random init is a grey line (the floor every method must clear); supervised is dashed, because
    its encoder was trained on every label and only its probe sees the fraction.

    Args:
        records: result records (others than ``label-efficiency`` are ignored).
        metric: ``probe_top1`` or ``knn_top1``.
        title: the plot's title.
        note: a line under the title (e.g. :data:`geolab.viz.SIMULATION_NOTE`).
        names: display names per method (e.g. ``geolab.paper.PAPER_METHOD_NAMES``).
        ax: the matplotlib axes to draw on (default: a new figure).

    Returns:
        The matplotlib axes.
    """
    table = label_efficiency_table(records, metric)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.8))
    for i, (method, rows) in enumerate(table.groupby("method", sort=False)):
        rows = rows.sort_values("label_fraction")
        x = 100 * rows["label_fraction"].to_numpy(float)
        name = (names or {}).get(method, method)
        style = dict(color="0.45", ls=":") if method == RANDOM_INIT else dict(color=f"C{i}", ls="-")
        if method == "supervised":
            style, name = dict(color=f"C{i}", ls="--"), f"{name} (encoder saw all labels)"
        ax.plot(x, rows["mean"], marker="o", label=name, **style)
        if rows["ci low"].notna().all():
            ax.fill_between(x, rows["ci low"].astype(float), rows["ci high"].astype(float), color=style["color"],
                            alpha=0.15, lw=0)
    fractions = sorted(table["label_fraction"].unique())
    images = table.groupby("label_fraction")["labelled images"].mean()
    ax.set_xscale("log")
    ax.set_xticks([100 * f for f in fractions], [f"{100 * f:g}%\n~{images[f]:.0f} images" for f in fractions])
    ax.minorticks_off()
    label = {"probe_top1": "linear probe top-1 (%)", "knn_top1": "kNN top-1 (%)"}.get(metric, metric)
    ax.set(xlabel="training labels used by the probe (whole locations, every class)",
           ylabel=label + ", 95% band", title=title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    if note:
        ax.figure.suptitle(note, fontsize=9, y=1.02)
    return ax
