"""Statistics of result records over seeds and test locations.

:func:`seed_mean_std` is the one mean and sample standard deviation over seeds behind every
table (the course report, :func:`method_table`, the ablation tables); :func:`bootstrap_interval`
and :func:`difference_interval` add the test set's sampling error (a bootstrap over test
locations and seeds); :func:`compare` says in words whether one method beats another;
:func:`label_efficiency_table` and :func:`frozen_finetuned_table` summarise the records of
:mod:`geolab.course.labels` (the probe with a fraction of the labels, fine-tuning).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from geolab.config import RANDOM_INIT
from geolab.paper import PAPER_FMOW_TOP1

#: The ``experiment`` of the records of :mod:`geolab.course.labels` (declared here, below the course, because
#: :func:`label_efficiency_table` and :func:`frozen_finetuned_table` read them): the probe with a fraction of the
#: training labels (``label_fraction`` in (0, 1], ``labelled_images``, ``labelled_locations``, ``probe_C``; ``variant``
#: ``"1% labels"``), and end-to-end fine-tuning on all of them (``finetune_top1``, ``finetune_f1``,
#: ``finetune_hits`` per test location, ``finetune_epochs``, ``finetune_steps``, ``label_fraction`` 1).
LABEL_EXPERIMENT = "label-efficiency"
FINETUNE_EXPERIMENT = "fine-tune"
#: Level of the intervals shown beside every comparison.
CONFIDENCE = 0.95
#: Bootstrap resamples behind each interval.
N_BOOTSTRAP = 2000


#: A run whose probe top-1 is below the mean of random init + this many points is stuck (issue 22).
STUCK_MARGIN = 5.0


def stuck_records(records: list[dict[str, Any]], method: str, metric: str = "probe_top1") -> list[dict[str, Any]]:
    """The records of ``method`` that score below random init's mean + :data:`STUCK_MARGIN` points.

    Empty when ``records`` hold no random-init row (nothing to judge against) or for random init itself.
    """
    init = [r[metric] for r in records if r["method"] == RANDOM_INIT and r.get(metric) is not None]
    if not init or method == RANDOM_INIT:
        return []
    floor = sum(init) / len(init) + STUCK_MARGIN / 100
    return [r for r in records if r["method"] == method and r.get(metric) is not None and r[metric] < floor]


def seed_mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (``ddof=1``) of one metric over seeds.

    Args:
        values: one value per seed; ``None`` and NaN (a metric that was not measured) are left out.

    Returns:
        ``(mean, std)``: ``std`` is ``None`` with fewer than two values, both are ``None`` with none.
    """
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def _group(records: Sequence[Mapping[str, Any]], method: str, variant: str | None = None) -> list[Mapping[str, Any]]:
    return [r for r in records if r["method"] == method and (variant is None or r.get("variant", "") == variant)]


def _hits(group: Sequence[Mapping[str, Any]], metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Correct counts per seed and test location, and the images per location.

    (seeds x test locations) correct counts and the images per location, or None when a
    record lacks them (records of an older geolab) or the records differ in their test set.
    """
    key = {"probe_top1": "probe_hits", "knn_top1": "knn_hits", "finetune_top1": "finetune_hits"}.get(metric)
    if key is None or not group or any(key not in r or "test_location_images" not in r for r in group):
        return None
    sizes = np.asarray(group[0]["test_location_images"], dtype=np.float64)
    if any(len(r[key]) != len(sizes) or r["test_location_images"] != group[0]["test_location_images"] for r in group):
        return None
    return np.asarray([r[key] for r in group], dtype=np.float64), sizes


def _bootstrap(hits: np.ndarray, sizes: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mean accuracy over resampled seeds for each resample of the test locations.

    ``counts`` (B x L) says how often each location is drawn in each resample.
    """
    per_seed = (hits @ counts.T) / np.maximum(sizes @ counts.T, 1)  # (S, B)
    s, b = per_seed.shape
    pick = rng.integers(s, size=(b, s))  # resample the seeds too
    return per_seed[pick, np.arange(b)[:, None]].mean(axis=1)


def bootstrap_interval(
    records: Sequence[Mapping[str, Any]], method: str, metric: str = "probe_top1", variant: str | None = None,
    seed: int = 0
) -> tuple[float, float] | None:
    """A 95% interval for a method's mean accuracy that includes the test set's sampling error.

    Images of one place are correlated (same label, same scene), so the test set is
    resampled by *location*, not by image; the seeds are resampled too (percentile
    bootstrap, :data:`N_BOOTSTRAP` resamples). With one seed the interval is the test set's
    sampling error alone.

    Args:
        records: result records with ``probe_hits``/``knn_hits`` and ``test_location_images``.
        method: the method (and ``variant``) whose records to use.
        metric: ``probe_top1``, ``knn_top1`` or ``finetune_top1`` (records with ``finetune_hits``).
        variant: only the method's records of this variant (``None``: all of them).
        seed: seeds the bootstrap.

    Returns:
        ``(low, high)`` as fractions, or None when the records carry no per-location hits.
    """
    found = _hits(_group(records, method, variant), metric)
    if found is None:
        return None
    hits, sizes = found
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(sizes), np.full(len(sizes), 1 / len(sizes)), size=N_BOOTSTRAP)
    boot = _bootstrap(hits, sizes, counts, rng)
    tail = (1 - CONFIDENCE) / 2
    return float(np.quantile(boot, tail)), float(np.quantile(boot, 1 - tail))


def difference_interval(
    records: Sequence[Mapping[str, Any]], a: str, b: str, metric: str = "probe_top1", seed: int = 0
) -> tuple[float, float] | None:
    """A 95% interval for the difference of two methods' mean accuracies.

    A 95% interval for ``mean(a) - mean(b)``: both scored on the *same* resampled test
    locations (a paired bootstrap, so the test set's shared difficulty cancels out), seeds
    of each resampled independently. None without per-location hits.
    """
    ha, hb = _hits(_group(records, a), metric), _hits(_group(records, b), metric)
    if ha is None or hb is None or len(ha[1]) != len(hb[1]) or not np.array_equal(ha[1], hb[1]):
        return None
    rng = np.random.default_rng(seed)
    sizes = ha[1]
    counts = rng.multinomial(len(sizes), np.full(len(sizes), 1 / len(sizes)), size=N_BOOTSTRAP)
    diff = _bootstrap(ha[0], sizes, counts, rng) - _bootstrap(hb[0], sizes, counts, rng)
    tail = (1 - CONFIDENCE) / 2
    return float(np.quantile(diff, tail)), float(np.quantile(diff, 1 - tail))


def _seed(record: Mapping[str, Any]) -> Any:
    """A record's seed (what pairs the runs of two methods)."""
    return record.get("seed")


def paired_difference_interval(
    records: Sequence[Mapping[str, Any]], a: str, b: str, metric: str = "probe_top1", seed: int = 0
) -> tuple[float, float] | None:
    """A 95% interval for ``mean(a) - mean(b)`` with seeds *and* test locations paired.

    Like :func:`difference_interval`, but a resample draws the seeds once for both methods
    (seed s of ``a`` beside seed s of ``b``: they share the initial weights and the data
    order) as well as the test locations. With unequal seed sets it falls back to
    :func:`difference_interval`. None without per-location hits.
    """
    ga, gb = _group(records, a), _group(records, b)
    sa, sb = [_seed(r) for r in ga], [_seed(r) for r in gb]
    if sorted(sa) != sorted(sb) or len(set(sa)) != len(sa):
        return difference_interval(records, a, b, metric, seed)
    ga = sorted(ga, key=_seed)
    gb = sorted(gb, key=_seed)
    ha, hb = _hits(ga, metric), _hits(gb, metric)
    if ha is None or hb is None or len(ha[1]) != len(hb[1]) or not np.array_equal(ha[1], hb[1]):
        return None
    rng = np.random.default_rng(seed)
    sizes = ha[1]
    counts = rng.multinomial(len(sizes), np.full(len(sizes), 1 / len(sizes)), size=N_BOOTSTRAP)
    denom = np.maximum(sizes @ counts.T, 1)
    per_seed = (ha[0] @ counts.T) / denom - (hb[0] @ counts.T) / denom  # (S, B) paired differences
    s = per_seed.shape[0]
    pick = rng.integers(s, size=(N_BOOTSTRAP, s))
    boot = per_seed[pick, np.arange(N_BOOTSTRAP)[:, None]].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2
    return float(np.quantile(boot, tail)), float(np.quantile(boot, 1 - tail))


def method_table(records: list[dict[str, Any]], metrics: tuple[str, ...] = ("probe_top1", "probe_f1", "knn_top1")):
    """Mean, standard deviation over seeds and a 95% interval of each method's metrics, in percent.

    The interval (``<metric> ci``, for top-1 metrics) includes the test set's sampling error
    (bootstrap over test locations and seeds, :func:`bootstrap_interval`); the standard
    deviation is over seeds only. ``train loss`` is the mean final training loss (empty for
    ``random-init``, which is not trained).

    Args:
        records: result records (from :func:`geolab.course.experiment.run_experiment`).
        metrics: record keys to summarise.

    Returns:
        A pandas DataFrame indexed by method (and variant when records have one) with
        ``seeds``, ``<metric> mean``, ``<metric> std``, ``<metric> ci`` and ``train loss`` columns.
    """
    df = pd.DataFrame(records)
    has_variant = "variant" in df and df["variant"].notna().any()
    if has_variant:
        df["variant"] = df["variant"].fillna("")
    keys = ["method"] + (["variant"] if has_variant else [])
    g = df.groupby(keys, sort=False)
    out = pd.DataFrame({"seeds": g.size()})
    for m in metrics:
        mean_std = g[m].apply(list).map(seed_mean_std)  # the same numbers as the report's
        out[f"{m} mean"] = (100 * mean_std.map(lambda t: t[0]).astype(float)).round(2)
        out[f"{m} std"] = (100 * mean_std.map(lambda t: t[1]).astype(float)).round(2)
        if m in ("probe_top1", "knn_top1"):
            cis = []
            for idx in out.index:
                method, variant = (idx if has_variant else (idx, None))
                ci = bootstrap_interval(records, method, m, variant=variant)
                cis.append("" if ci is None else f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}")
            out[f"{m} ci"] = cis
    if "train_loss" in df:
        out["train loss"] = g["train_loss"].mean().round(3)
    return out


def compare(records: list[dict[str, Any]], a: str, b: str, metric: str = "probe_top1",
            stuck_from: list[dict[str, Any]] | None = None) -> str:
    """Say in words whether method ``a`` beats ``b``, against the test set's sampling error and the seeds.

    The difference of the means counts as an effect only when its 95% interval
    (:func:`paired_difference_interval`: a bootstrap that resamples the test locations and the
    seeds together for both methods) excludes zero. The sentence also gives the seed spread and
    on how many seeds ``a`` was ahead, and names any run of ``a`` or ``b`` that is stuck (probes
    below random init + :data:`STUCK_MARGIN` points, when the records hold random init): a
    verdict that rests on a run that did not learn says so.
    Records without per-location hits fall back to the plain rule "larger than the sum of
    the two standard deviations over seeds". ``stuck_from``: the records that decide which runs are
    stuck (default ``records``), e.g. the full-label probes when ``records`` probe with 1 % of the labels.

    Returns:
        One sentence with the numbers in percentage points.
    """
    va = np.array([r[metric] for r in records if r["method"] == a]) * 100
    vb = np.array([r[metric] for r in records if r["method"] == b]) * 100
    if len(va) == 0 or len(vb) == 0:
        raise ValueError(f"no records for {a if len(va) == 0 else b!r}")
    diff = va.mean() - vb.mean()
    ci = paired_difference_interval(records, a, b, metric)
    seeds = f"{len(va)} and {len(vb)} seeds"
    stuck = [f"{m} seed {r.get('seed')}" for m in (a, b) for r in stuck_records(stuck_from or records, m)]
    caveat = (f" Caveat: it rests on stuck run(s) {', '.join(stuck)} (below random init + {STUCK_MARGIN:g} points)."
              if stuck else "")
    if ci is not None:
        lo, hi = 100 * ci[0], 100 * ci[1]
        verdict = (
            f"{a} is ahead" if lo > 0 else f"{b} is ahead" if hi < 0 else "no difference can be claimed"
        )
        wins = ""
        if len(va) == len(vb) and len(va) > 1:
            wins = f"; {a} ahead on {int((va > vb).sum())} of {len(va)} paired seeds"
        spread = f", seed std {va.std(ddof=1):.1f} / {vb.std(ddof=1):.1f}" if min(len(va), len(vb)) > 1 else ""
        if min(len(va), len(vb)) < 2:  # the bootstrap cannot resample seeds it does not have
            caveat += " One seed on a side: the interval holds the test set's sampling error, not a run's seed noise."
        return (
            f"{a} - {b}: {diff:+.1f} points ({metric}; {seeds}), 95% interval {lo:+.1f} to {hi:+.1f} "
            f"(test locations and seeds resampled{spread}{wins}): {verdict}.{caveat}"
        )
    if min(len(va), len(vb)) < 2:
        return f"{a} - {b}: {diff:+.1f} points ({metric}) from a single seed: no claim either way."
    spread = va.std(ddof=1) + vb.std(ddof=1)
    verdict = "larger than" if abs(diff) > spread else "within"
    return (
        f"{a} - {b}: {diff:+.1f} points ({metric}; {seeds}), "
        f"{verdict} the seed spread ({spread:.1f} points).{caveat}"
    )


def _mean_ci(records: Sequence[Mapping[str, Any]], method: str, metric: str, variant: str | None = None
             ) -> tuple[float | None, tuple[float, float] | None]:
    group = [r for r in records if r["method"] == method and (variant is None or r.get("variant") == variant)]
    mean, _ = seed_mean_std(r.get(metric) for r in group)
    return mean, bootstrap_interval(group, method, metric) if group else None


def label_efficiency_table(records: Sequence[Mapping[str, Any]], metric: str = "probe_top1") -> pd.DataFrame:
    """Probe top-1 (%) per method and fraction of the labels, with its 95% interval.

    One row per (method, fraction) of the ``label-efficiency`` records: ``method``, ``label_fraction``,
    ``seeds``, ``labelled images`` (mean over seeds), ``mean``, ``ci low``, ``ci high`` (bootstrap over
    test locations and seeds, :func:`geolab.stats.bootstrap_interval`), in percent.
    """
    recs = [dict(r) for r in records if r.get("experiment") == LABEL_EXPERIMENT]
    rows = []
    for method, fraction in dict.fromkeys((r["method"], r["label_fraction"]) for r in recs):
        group = [r for r in recs if r["method"] == method and r["label_fraction"] == fraction]
        mean, ci = _mean_ci(group, method, metric)
        rows.append({"method": method, "label_fraction": fraction, "seeds": len(group),
                     "labelled images": float(np.mean([r["labelled_images"] for r in group])),
                     "mean": None if mean is None else 100 * mean,
                     "ci low": None if ci is None else 100 * ci[0], "ci high": None if ci is None else 100 * ci[1]})
    return pd.DataFrame(rows, columns=["method", "label_fraction", "seeds", "labelled images", "mean", "ci low",
                                       "ci high"])


def _cell(mean: float | None, ci: tuple[float, float] | None) -> str:
    if mean is None:
        return "-"
    return f"{100 * mean:.1f}" + ("" if ci is None else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]")


def frozen_finetuned_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Frozen probe and fine-tuned top-1 (%) per method with 95% intervals, beside the paper's two columns.

    ``frozen`` is the probe with all the labels (the ``label-efficiency`` records at fraction 1, else the
    ``main`` records), ``fine-tuned`` the ``fine-tune`` records; each cell ``mean [low, high]``. The paper's
    columns are fMoW's (:data:`geolab.paper.PAPER_FMOW_TOP1`): a different data set, not a target.
    """
    recs = [dict(r) for r in records]
    frozen = [r for r in recs if r.get("experiment") == LABEL_EXPERIMENT and r.get("label_fraction") == 1]
    frozen = frozen or [r for r in recs if r.get("experiment", "main") == "main"]
    tuned = [r for r in recs if r.get("experiment") == FINETUNE_EXPERIMENT]
    rows = {}
    for method in dict.fromkeys(r["method"] for r in frozen + tuned):
        paper = PAPER_FMOW_TOP1.get(method, {})
        rows[method] = {
            "frozen probe": _cell(*_mean_ci(frozen, method, "probe_top1")),
            "fine-tuned": _cell(*_mean_ci(tuned, method, "finetune_top1")),
            "fine-tuned seeds": sum(r["method"] == method for r in tuned),
            "paper frozen (fMoW)": paper.get("linear_probe"),
            "paper fine-tuned (fMoW)": paper.get("fine_tuned"),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    if RANDOM_INIT in table.index:  # the baseline first
        table = table.loc[[RANDOM_INIT, *[m for m in table.index if m != RANDOM_INIT]]]
    return table
