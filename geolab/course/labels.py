"""Label efficiency and fine-tuning: each run's probe with a fraction of the training labels, and fine-tuned.

Notebook 08 (and the report) put every run of the main comparison through two more evaluations:

* label efficiency -- the linear probe (and kNN) on frozen features with 1 %, 10 % and
  100 % of the training labels (:data:`LABEL_FRACTIONS`), one record per run and fraction
  (``experiment="label-efficiency"``, ``label_fraction``). The probe's C is still chosen on the
  whole val split; the test split is scored whole, so the interval over test locations is the
  same bootstrap as everywhere (:mod:`geolab.stats`).
* fine-tuning -- end-to-end fine-tuning of a run's backbone with a new linear layer on
  all the training labels (:func:`geolab.finetune.fine_tune`), short and seeded
  (``experiment="fine-tune"``, ``finetune_top1`` with its hits per test location). Random init
  fine-tuned is the from-scratch row.

:func:`label_experiments` does both, several runs at a time.

Which labels a fraction keeps (:func:`label_subset`): **whole training locations, drawn per
class**. A label is a property of a place (every revisit of a location carries its label; the
manifest rejects a location whose rows disagree), so labelling a place labels its revisits with it,
and the images of one place are correlated: drawing images one by one would count a place's
revisits as independent labels. Each class's locations are put in one seeded order (the run's
seed), and a fraction ``f`` keeps the prefix of that order whose images come closest to ``f`` x the
class's training images, at least one location per class. So every class is present at every
fraction (1 % of geoworld's ~2,700 training images is ~27 images, about 3 per class: mostly the
first location of each class, whose revisits can take the count above 1 %; each record says how
many images and locations it kept), and the subsets are nested: a smaller fraction never uses
more labels, and never a label the larger one lacks. Val and test are other locations (geoworld's
splits share no location), so the probe never sees a revisit of a held-out place.

The supervised row at ``f < 1``: supervised pre-training is not repeated at each fraction (a
whole training run per fraction, beyond the course's time budget). Its records are the
supervised encoder, which was trained on *all* the training labels, probed with ``f`` of them
(``encoder_labels=1.0`` in the record): a reference for what the probe can read from features
made with every label, not a model trained on ``f`` labels. The label-efficient rows are the
self-supervised ones, whose encoders saw no label.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from geolab.checkpoints import load_checkpoint
from geolab.course.experiment import _worker_init, default_workers
from geolab.course.records import record_result
from geolab.datasets import label_names
from geolab.evaluate import extract_features, knn, linear_probe, load_backbone, select_probe_C
from geolab.finetune import fine_tune
from geolab.manifest import load_manifest, scoring_split, select_split
from geolab.processes import process_pool
from geolab.stats import FINETUNE_EXPERIMENT, LABEL_EXPERIMENT, compare, frozen_finetuned_table, label_efficiency_table

#: The fractions of the training labels behind the label-efficiency curves (the paper's and UvA's 1, 10, 100 %).
LABEL_FRACTIONS: tuple[float, ...] = (0.01, 0.1, 1.0)
#: Fine-tuning decodes the training images once when they fit in this many bytes (geoworld: a few MB).
_PRELOAD_BYTES = 1 << 30


def fraction_variant(fraction: float) -> str:
    """The record's ``variant`` for a fraction of the labels (``0.01 -> "1% labels"``)."""
    return f"{100 * fraction:g}% labels"


def label_subset(train: pd.DataFrame, fraction: float, seed: int = 0) -> pd.DataFrame:
    """The labelled part of a training table at ``fraction`` of its labels: whole locations, per class.

    See the module docstring for why locations. For each class, its locations in a seeded order;
    the prefix (at least one location) whose images come closest to ``fraction`` x the class's
    images. The order depends on ``seed`` only, so the subsets of one seed are nested.

    Args:
        train: the training split's rows (``location_id``, ``label``).
        fraction: in (0, 1]; 1 keeps every row.
        seed: seeds the order of the locations.

    Returns:
        The kept rows, in ``train``'s order and index.

    Raises:
        ValueError: ``fraction`` outside (0, 1].
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"a fraction of the labels must be in (0, 1], got {fraction}.")
    if fraction == 1:
        return train
    per_location = train.groupby("location_id", sort=True).agg(label=("label", "first"), images=("label", "size"))
    order = np.random.default_rng(seed).permutation(len(per_location))
    shuffled = per_location.iloc[order]
    keep: list[str] = []
    for _, group in shuffled.groupby("label", sort=True):
        cumulative = group["images"].cumsum().to_numpy()
        # the prefix (of at least one location) whose images come closest to the target, the shorter on a tie:
        # it grows with the fraction, so the subsets are nested
        n = 1 + int(np.argmin(np.abs(cumulative - fraction * cumulative[-1])))
        keep += list(group.index[:n])
    return train[train["location_id"].isin(keep)]


def _location_hits(test: pd.DataFrame) -> tuple[np.ndarray, list[int]]:
    """Each test row's location index and the images per test location (in one fixed order)."""
    locations, loc_index = np.unique(test["location_id"].astype(str).to_numpy(), return_inverse=True)
    return loc_index, np.bincount(loc_index, minlength=len(locations)).tolist()


def _hits(loc_index: np.ndarray, correct: np.ndarray, n_locations: int) -> list[int]:
    return np.bincount(loc_index, weights=correct.astype(np.float64), minlength=n_locations).astype(int).tolist()


def run_manifest(record: Mapping[str, Any]) -> str:
    """The manifest a run was trained and evaluated on (its ``config.json``, else its checkpoint's config)."""
    config = Path(record["checkpoint"]).parent.parent / "config.json"
    manifest = json.loads(config.read_text())["manifest"] if config.is_file() else None
    if isinstance(manifest, dict):  # config.json: {"path", "sha256"}
        manifest = manifest.get("path")
    return str(manifest or load_checkpoint(record["checkpoint"])["config"]["manifest"])


def _base(run: Mapping[str, Any], experiment: str) -> dict[str, Any]:
    """The run's identity in a record of this module (``run`` carries its ``manifest`` here, left out)."""
    keys = ("method", "data", "arch", "image_size", "epochs", "seed")
    return {"experiment": experiment, **{k: run[k] for k in keys}, "checkpoint": run["checkpoint"]}


def label_experiments(
    runs: Iterable[Mapping[str, Any]],
    fractions: Sequence[float] = LABEL_FRACTIONS,
    *,
    finetune_epochs: int = 1,
    finetune_max_steps: int | None = None,
    finetune_seeds: Sequence[int] = (0,),
    finetune_lr: float = 0.1,
    finetune_batch_size: int = 128,
    results_path: str | os.PathLike | None = "",
    device: str | None = "cpu",
    workers: int | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Label efficiency of every run and fine-tuning of the runs of ``finetune_seeds``, recorded.

    Two evaluations of finished runs (records of :func:`geolab.course.experiment.run_experiment`, with
    ``checkpoint``); they train nothing that the runs' keys know of, and change no run.

    * Label efficiency, one record per run and fraction: at fraction 1 the run's own evaluation
      (the same protocol on the same rows, not computed twice); below 1 the probe and the kNN bank
      see :func:`label_subset` of the training split (seeded with the run's seed), the probe's C is
      chosen on the val split (:func:`geolab.evaluate.select_probe_C`), the whole test split is scored.
    * Fine-tuning, one record per run of ``finetune_seeds``: :func:`geolab.finetune.fine_tune` from the
      run's backbone (random init's: training from scratch) on all the training labels, seeded with the
      run's seed, the images decoded once and augmented in batches.

    The runs are evaluated several at a time in worker processes on a CPU, as the course trains them
    (:func:`geolab.course.experiment.default_workers`; ``workers`` overrides).

    Args:
        runs: the runs to evaluate (one record per run: pass unique runs, e.g. ``collect_records``'s).
        fractions: fractions of the training labels, in (0, 1].
        finetune_epochs: fine-tuning epochs.
        finetune_max_steps: a cap on fine-tuning's SGD steps (``None``: every epoch).
        finetune_seeds: the seeds whose runs are fine-tuned (one keeps it at one fine-tuning per method).
        finetune_lr: fine-tuning's SGD learning rate (momentum 0.9, cosine); 0.1 was the best of 0.01-0.4 for one
            epoch of geoworld (dev world 101, scored on val; 0.01 left the new linear layer far from trained).
        finetune_batch_size: fine-tuning's batch size.
        results_path: the notebook's records file (``""`` by hand: records checked, not written).
        device: where features are extracted and fine-tuning trains.
        workers: runs evaluated at once (default: one per core on a CPU, one on a GPU).

    Returns:
        ``(label-efficiency records, fine-tuning records)`` as stored. Label efficiency: the run's method,
        data, arch, image_size, epochs, seed; ``experiment="label-efficiency"``, ``variant`` (``"1% labels"``),
        ``label_fraction``, ``labelled_images``, ``labelled_locations``, ``probe_top1``, ``probe_f1``,
        ``knn_top1``, their hits per test location, ``probe_C``, and ``encoder_labels`` (1.0 for supervised:
        its encoder saw every label). Fine-tuning: ``experiment="fine-tune"``, ``label_fraction=1.0``,
        ``finetune_top1``, ``finetune_f1``, ``finetune_hits``, ``test_location_images``, ``finetune_epochs``,
        ``finetune_steps``, ``finetune_wall_s``.
    """
    runs = list(runs)
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError(f"a fraction of the labels must be in (0, 1], got {f}.")
    tune: dict[str, Any] = dict(epochs=finetune_epochs, max_steps=finetune_max_steps, lr=finetune_lr,
                                batch_size=finetune_batch_size, device=device)
    runs = [{**run, "manifest": run_manifest(run)} for run in runs]
    jobs: list[tuple[Callable[..., list[dict[str, Any]]], Mapping[str, Any], dict[str, Any]]]
    jobs = [(_fine_tune_one, run, tune) for run in runs if run["seed"] in finetune_seeds]  # the longest first
    jobs += [(_label_efficiency_one, run, dict(fractions=tuple(fractions), device=device)) for run in runs]
    done = _run_jobs(jobs, device, workers)
    labelled = [record_result(results_path, r) for (fn, _, _), recs in zip(jobs, done) if fn is _label_efficiency_one
                for r in recs]
    tuned = [record_result(results_path, r) for (fn, _, _), recs in zip(jobs, done) if fn is _fine_tune_one
             for r in recs]
    return labelled, tuned


def _run_jobs(jobs: list[tuple[Any, Mapping[str, Any], dict[str, Any]]], device: str | None,
              workers: int | None) -> list[list[dict[str, Any]]]:
    """Each job's records, in the order of ``jobs``: here with one worker, else in worker processes."""
    n, threads = default_workers(str(device or "cpu"), len(jobs))
    if workers is not None:
        n, threads = max(1, min(workers, len(jobs))), max(1, default_workers("cpu", 1)[1] // max(1, workers))
    if n <= 1:
        # one thread, as in a worker: on evaluations this small a second thread mostly waits (on a shared or
        # busy CPU, two threads made the smoke profile's evaluations 2.5x slower, 2026-12-06)
        before = torch.get_num_threads()
        torch.set_num_threads(1 if str(device or "cpu").startswith("cpu") else before)
        try:
            return [fn(dict(run), **kw) for fn, run, kw in jobs]
        finally:
            torch.set_num_threads(before)
    with process_pool(n, initializer=_worker_init, initargs=(threads,)) as pool:
        futures = [pool.submit(fn, dict(run), **kw) for fn, run, kw in jobs]
        return [f.result() for f in futures]


def _label_efficiency_one(run: dict[str, Any], fractions: tuple[float, ...], device: str | None,
                          batch_size: int = 256) -> list[dict[str, Any]]:
    """One run's label-efficiency records (not yet recorded)."""
    df = load_manifest(run["manifest"])
    classes = label_names(df)
    test_split = scoring_split(df, None)
    train, test = select_split(df, "train"), select_split(df, test_split)
    val = df[df["split"] == "val"] if test_split != "val" else df.iloc[:0]
    seed = int(run["seed"])
    # the subsets are nested: the largest one below 1 holds every training row a probe here needs
    # (at fraction 1 the run's own evaluation is reused), so only those rows' features are extracted
    below = [f for f in fractions if f < 1 or run.get("probe_hits") is None]
    needed = label_subset(train, max(below), seed) if below else train.iloc[:0]
    backbone = load_backbone(run["checkpoint"])
    feats = {name: extract_features(backbone, part, run["image_size"], classes=classes, batch_size=batch_size,
                                    device=device, progress=False)
             for name, part in (("train", needed), ("val", val), ("test", test)) if len(part)} if below else {}
    loc_index, sizes = _location_hits(test)
    out = []
    for f in fractions:
        sub = label_subset(train, f, seed)
        rec = {**_base(run, LABEL_EXPERIMENT), "variant": fraction_variant(f), "label_fraction": float(f),
               "labelled_images": len(sub), "labelled_locations": int(sub["location_id"].nunique()),
               "key": f"{run.get('key', '')}/labels={f:g}"}
        if run["method"] == "supervised":
            rec["encoder_labels"] = 1.0
        if f == 1 and run.get("probe_hits") is not None:
            rec.update({k: run[k] for k in ("probe_top1", "probe_f1", "knn_top1", "probe_hits", "knn_hits",
                                            "test_location_images") if k in run})
        else:
            rec.update(_probe_subset(feats, needed.index.get_indexer(sub.index), loc_index, sizes, seed))
        out.append(rec)
    return out


def _probe_subset(feats: dict[str, tuple[np.ndarray, np.ndarray]], rows: np.ndarray, loc_index: np.ndarray,
                  sizes: list[int], seed: int) -> dict[str, Any]:
    tx, ty = feats["train"][0][rows], feats["train"][1][rows]
    sx, sy = feats["test"]
    C = 1.0
    # one BLAS thread: L-BFGS on a probe this small spends its time waking BLAS threads (30x slower with two)
    with threadpool_limits(1, user_api="blas"):
        if "val" in feats:
            C, _ = select_probe_C(tx, ty, *feats["val"], seed=seed)
        probe = linear_probe(tx, ty, sx, sy, C=C, seed=seed, return_predictions=True)
    near = knn(tx, ty, sx, sy, k=min(20, len(tx)), return_predictions=True)
    return {"probe_top1": probe["top1"], "probe_f1": probe["f1"], "knn_top1": near["top1"], "probe_C": C,
            "probe_hits": _hits(loc_index, probe["predictions"] == sy, len(sizes)),
            "knn_hits": _hits(loc_index, near["predictions"] == sy, len(sizes)), "test_location_images": sizes}


def _fine_tune_one(run: dict[str, Any], epochs: int, max_steps: int | None, lr: float, batch_size: int,
                   device: str | None) -> list[dict[str, Any]]:
    """One run's fine-tuning record (not yet recorded), in a list."""
    df = load_manifest(run["manifest"])
    classes = label_names(df)
    train, test = select_split(df, "train"), select_split(df, scoring_split(df, None))
    t0 = time.perf_counter()
    size = int(run["image_size"])
    tuned = fine_tune(load_backbone(run["checkpoint"]), train, test, size, classes=classes, epochs=epochs,
                      max_steps=max_steps, lr=lr, batch_size=batch_size, device=device, seed=int(run["seed"]),
                      progress=False, return_predictions=True,
                      preload=len(train) * 3 * size**2 <= _PRELOAD_BYTES)  # geoworld; fMoW per image in PIL
    loc_index, sizes = _location_hits(test)
    correct = tuned["predictions"] == test["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    return [{**_base(run, FINETUNE_EXPERIMENT), "label_fraction": 1.0, "finetune_top1": tuned["top1"],
             "finetune_f1": tuned["f1"], "finetune_hits": _hits(loc_index, correct, len(sizes)),
             "test_location_images": sizes, "finetune_epochs": epochs, "finetune_steps": tuned["steps"],
             "finetune_wall_s": round(time.perf_counter() - t0, 1), "key": f"{run.get('key', '')}/fine-tune"}]


def label_findings(records: Sequence[Mapping[str, Any]], pairs: Sequence[tuple[str, str]]) -> list[str]:
    """The label-efficiency and fine-tuning results in sentences, every number computed from ``records``.

    For each method, its probe with the fewest labels beside its probe with all of them (the share it
    keeps); then each pair ``(a, b)`` of ``pairs`` compared with :func:`geolab.stats.compare`
    (95% interval over test locations and seeds) at the fewest labels and fine-tuned.

    Args:
        records: the ``label-efficiency`` and ``fine-tune`` records (others are ignored).
        pairs: the comparisons to state, e.g. ``[("moco-tp", "moco"), ("moco", "random-init")]``.

    Returns:
        One line per method and per comparison (empty without such records).
    """
    table = label_efficiency_table(records)
    lines: list[str] = []
    if len(table):
        low, high = table["label_fraction"].min(), table["label_fraction"].max()
        for method, grp in table.groupby("method", sort=False):
            a, b = grp[grp["label_fraction"] == low], grp[grp["label_fraction"] == high]
            if len(a) and len(b) and a["mean"].iloc[0] is not None and b["mean"].iloc[0]:
                lines.append(f"{method}: {a['mean'].iloc[0]:.1f}% with {100 * low:g}% of the labels "
                             f"(~{a['labelled images'].iloc[0]:.0f} images), {b['mean'].iloc[0]:.1f}% with "
                             f"{100 * high:g}%: it keeps {100 * a['mean'].iloc[0] / b['mean'].iloc[0]:.0f}% of it.")
        few = [dict(r) for r in records if r.get("experiment") == LABEL_EXPERIMENT and r.get("label_fraction") == low]
        present = {r["method"] for r in few}
        full = [dict(r) for r in records if r.get("experiment") == LABEL_EXPERIMENT and r.get("label_fraction") == 1]
        # a run is stuck by its full-label probe: fewer labels lower every method, not the run's learning
        lines += [f"with {100 * low:g}% of the labels, {compare(few, a, b, stuck_from=full or None)}"
                  for a, b in pairs if {a, b} <= present]
    tuned = [dict(r) for r in records if r.get("experiment") == FINETUNE_EXPERIMENT]
    if tuned:
        found: set[Any] = {r.get("finetune_steps") for r in tuned}
        steps = sorted(found)
        lines.append(f"fine-tuned end to end for {', '.join(map(str, steps))} SGD step(s) on all the labels:")
        ft = frozen_finetuned_table(records)
        lines += [f"  {m}: frozen {row['frozen probe']}, fine-tuned {row['fine-tuned']}" for m, row in ft.iterrows()]
        present = {r["method"] for r in tuned}
        lines += [f"fine-tuned, {compare(tuned, a, b, 'finetune_top1')}" for a, b in pairs if {a, b} <= present]
    return lines

