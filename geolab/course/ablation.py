"""Ablation sweeps (notebook 05): one setting changed at a time around one baseline run.

:func:`sweep_plan` lists the runs (geo clusters K, temporal sampling strategy, geo loss weight
beta, temperature, image size), :func:`run_sweep` trains and records them (every sweep shares
the baseline run), :func:`ablation_table` and :func:`plot_ablation` show the result.
geoworld is a simulation: figures made from geoworld data carry a note saying so.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from geolab.course.experiment import run_experiments
from geolab.stats import bootstrap_interval, paired_difference_interval, seed_mean_std

#: The settings an ablation can change: PretrainConfig field -> short label used in the
#: ``variant`` of a record ("K=8") and in tables. Paper defaults: K=100 geo clusters,
#: any-other temporal positives, beta=1, temperature 0.2 (MoCo-v2; the official GASSL
#: commands used 0.02), 224 px.
KNOBS: dict[str, str] = {
    "geo_k": "K",
    "strategy": "strategy",
    "beta": "beta",
    "temperature": "T",
    "image_size": "image_size",
}

#: What each knob means, for table captions and plots.
KNOB_TITLES: dict[str, str] = {
    "geo_k": "geo clusters K",
    "strategy": "temporal sampling strategy",
    "beta": "geo loss weight beta",
    "temperature": "InfoNCE temperature",
    "image_size": "image size (px)",
}


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def sweep_plan(baseline: Mapping[str, Any], sweeps: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The runs of a one-knob-at-a-time ablation around ``baseline``.

    Each knob's list gets the baseline's own value added when it is missing (in numeric order
    for numbers, first otherwise), so every sweep contains the baseline run, and duplicates
    are dropped. Every run is the baseline
    with exactly one field changed; the baseline itself appears once per knob (it is trained
    once and reused, see :func:`geolab.course.experiment.run_experiment`).

    Args:
        baseline: the baseline's settings; must hold every swept field (``strategy`` may be
            absent or ``None``: it means the method's default, ``"any-other"`` for the TP methods).
        sweeps: field -> values, fields from :data:`KNOBS`. An empty list sweeps nothing.

    Returns:
        One dict per run, in order: ``knob`` (field), ``value``, ``is_baseline``,
        ``experiment`` (``"ablation-<label>"``), ``variant`` (``"<label>=<value>"``) and
        ``config`` (the baseline with the one change).

    Raises:
        ValueError: an unknown knob, or a knob the baseline does not set.
    """
    plan: list[dict[str, Any]] = []
    for knob, values in sweeps.items():
        if knob not in KNOBS:
            raise ValueError(f"unknown ablation knob {knob!r}; choose from {', '.join(KNOBS)}.")
        if knob == "strategy":
            base_value = baseline.get("strategy") or "any-other"
        elif knob in baseline:
            base_value = baseline[knob]
        else:
            raise ValueError(f"the baseline does not set {knob!r}; add it to the baseline settings.")
        if not values:
            continue
        ordered: list[Any] = []
        for v in values:
            if v not in ordered:
                ordered.append(v)
        if base_value not in ordered:
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in [*ordered, base_value])
            ordered = sorted([*ordered, base_value]) if numeric else [base_value, *ordered]
        label = KNOBS[knob]
        for v in ordered:
            plan.append(
                {
                    "knob": knob,
                    "value": v,
                    "is_baseline": v == base_value,
                    "experiment": f"ablation-{label}",
                    "variant": f"{label}={_label(v)}",
                    "config": {**baseline, knob: v},
                }
            )
    return plan


def run_sweep(
    method: str,
    manifest: str | os.PathLike,
    baseline: Mapping[str, Any],
    sweeps: Mapping[str, Sequence[Any]],
    *,
    data: str = "geoworld",
    seeds: Sequence[int] = (0,),
    variant_seeds: Sequence[int] | None = None,
    results_path: str | os.PathLike | None = "",
    run: Callable[..., dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Train and evaluate every run of :func:`sweep_plan` for each seed, recording each.

    The baseline is trained once per seed; the other sweeps reuse it (the output says
    "Reusing ...") and record it again under their own experiment, so every sweep's table
    and the course report have it as their reference row.

    Args:
        method: the method every run trains (e.g. ``"moco-tp-geo"``).
        manifest: the manifest.
        baseline: baseline :class:`~geolab.config.PretrainConfig` fields.
        sweeps: knob -> values (see :func:`sweep_plan`).
        data: the data tier (for the records).
        seeds: seeds of the baseline (and of every run when ``variant_seeds`` is empty).
        variant_seeds: seeds of the changed settings, when fewer than the baseline's: the baseline's
            extra seeds measure how far a run moves with its seed alone (see :func:`setting_verdicts`).
        results_path: the course runner's records file (``""`` by hand).
        run: the function that runs one experiment (default
            :func:`geolab.course.experiment.run_experiment`; tests pass a fake).

    Returns:
        The stored records, each with ``knob``, ``value`` and ``is_baseline`` added.
    """
    plan = [(step, seed) for step in sweep_plan(baseline, sweeps)
            for seed in (seeds if step["is_baseline"] or not variant_seeds else variant_seeds)]
    specs = [dict(method=method, manifest=manifest, data=data, seed=seed, results_path=results_path,
                  experiment=step["experiment"], variant=step["variant"], **step["config"]) for step, seed in plan]
    if run is None:  # the missing runs train several at a time
        stored = run_experiments(specs)
    else:
        stored = [run(spec.pop("method"), spec.pop("manifest"), **spec) for spec in specs]
    records = []
    for (step, _), rec in zip(plan, stored):
        records.append({**rec, "knob": step["knob"], "value": step["value"], "is_baseline": step["is_baseline"]})
    return records


def ablation_table(
    records: Sequence[Mapping[str, Any]], metrics: Sequence[str] = ("probe_top1", "knn_top1")
) -> pd.DataFrame:
    """Mean and std over seeds of each setting of each knob, with the change against the baseline.

    Mean (and std over seeds) of each setting of each knob, in percent, with the change
    against the baseline in points.

    Args:
        records: from :func:`run_sweep` (with ``knob``, ``value``, ``is_baseline``).
        metrics: record keys (fractions) to summarise.

    Returns:
        DataFrame indexed by (knob title, setting) in sweep order with ``seeds``,
        ``<metric> (%)``, ``<metric> std`` (NaN with one seed), ``<metric> ci low`` / ``ci high``
        (the 95% interval over test locations and seeds, :func:`geolab.stats.bootstrap_interval`;
        NaN without per-location hits), ``Δ <metric> (points)`` against the knob's baseline
        row, and ``baseline`` (bool).

    Raises:
        ValueError: no records, or records without ``knob``/``value`` (not from :func:`run_sweep`).
    """
    if not records:
        raise ValueError("no records: run the sweep first (ablation.run_sweep).")
    df = pd.DataFrame(list(records))
    for col in ("knob", "value", "is_baseline"):
        if col not in df:
            raise ValueError(f"records lack {col!r}; make them with ablation.run_sweep.")
    df["setting"] = df["value"].map(_label)
    rows = []
    for (knob, setting), g in df.groupby(["knob", "setting"], sort=False):
        row: dict[str, Any] = {"knob": KNOB_TITLES.get(knob, knob), "setting": setting, "seeds": len(g)}
        group = g.to_dict("records")  # this setting's records only, so no variant filter is needed
        for m in metrics:
            mean, std = seed_mean_std(100 * g[m].astype(float))  # numpy's rounding, as pandas rounds
            row[f"{m} (%)"] = np.nan if mean is None else round(np.float64(mean), 2)
            row[f"{m} std"] = np.nan if std is None else round(np.float64(std), 2)
            ci = bootstrap_interval(group, g["method"].iloc[0], m) if "method" in g else None
            row[f"{m} ci low"], row[f"{m} ci high"] = (
                (np.nan, np.nan) if ci is None else (round(100 * ci[0], 1), round(100 * ci[1], 1))
            )
        row["baseline"] = bool(g["is_baseline"].iloc[0])
        rows.append(row)
    out = pd.DataFrame(rows)
    for m in metrics:
        base = out[out["baseline"]].set_index("knob")[f"{m} (%)"]
        out[f"Δ {m} (points)"] = (out[f"{m} (%)"] - out["knob"].map(base)).round(2)
    return out.set_index(["knob", "setting"])


def _paired(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], metric: str) -> tuple[float, float] | None:
    """The paired 95% interval (seeds and test locations) of ``mean(a) - mean(b)``, in points, on a's seeds."""
    seeds = {r["seed"] for r in a}
    if not seeds <= {r["seed"] for r in b}:
        return None
    recs = [{**r, "method": "a"} for r in a] + [{**r, "method": "b"} for r in b if r["seed"] in seeds]
    ci = paired_difference_interval(recs, "a", "b", metric)
    return None if ci is None else (100 * ci[0], 100 * ci[1])


def setting_verdicts(
    records: Sequence[Mapping[str, Any]], random_init: Sequence[Mapping[str, Any]], metric: str = "probe_top1"
) -> pd.DataFrame:
    """Each changed setting read against its baseline, the baseline's seed noise and random init.

    A setting counts as different from its baseline only when the paired 95% interval of the
    difference (the same seeds of both, test locations resampled;
    :func:`~geolab.stats.paired_difference_interval`)
    excludes 0 **and** the difference exceeds twice the baseline's standard deviation over its seeds:
    with fewer seeds than the baseline, the interval alone cannot see how far a run moves with its
    seed. Every setting, the baseline included, is also read against random init at the same seeds.

    Args:
        records: from :func:`run_sweep`.
        random_init: random-init records (one per seed at least for every seed of ``records``).
        metric: a top-1 record key with per-location hits.

    Returns:
        DataFrame indexed like :func:`ablation_table` with ``seeds``, ``Δ vs baseline``, its ``ci``,
        ``baseline seed std`` (points), ``vs baseline`` (verdict), ``Δ vs random init``, its ``ci``
        and ``vs random init`` (verdict).
    """
    df = pd.DataFrame(list(records))
    rows = []
    for knob, g in df.groupby("knob", sort=False):
        base = [r for r in g.to_dict("records") if r["is_baseline"]]
        base_std = seed_mean_std(100 * np.array([r[metric] for r in base], dtype=float))[1]
        for value, s in g.groupby(g["value"].map(_label), sort=False):
            mine = s.to_dict("records")
            seeds = sorted({r["seed"] for r in mine})
            mean = 100 * float(np.mean([r[metric] for r in mine]))
            row: dict[str, Any] = {"knob": KNOB_TITLES.get(knob, knob), "setting": value, "seeds": len(seeds)}
            if mine[0]["is_baseline"]:
                row.update({"Δ vs baseline": 0.0, "Δ vs baseline ci": "", "vs baseline": "the baseline"})
            else:
                paired_base = [r for r in base if r["seed"] in seeds]
                delta = mean - 100 * float(np.mean([r[metric] for r in paired_base]))
                ci = _paired(mine, base, metric)
                noise = 2 * base_std if base_std is not None else None
                if ci is None:
                    verdict = "no interval (no per-location hits)"
                elif ci[0] <= 0 <= ci[1]:
                    verdict = "no difference can be claimed"
                elif noise is None:
                    verdict = "interval excludes 0; one baseline seed, so its seed noise is unknown: no claim"
                elif abs(delta) <= noise:
                    verdict = f"within the baseline's seed noise (2 std = {noise:.1f} points)"
                else:
                    verdict = "higher than the baseline" if delta > 0 else "lower than the baseline"
                row.update({"Δ vs baseline": round(delta, 1),
                            "Δ vs baseline ci": "" if ci is None else f"{ci[0]:+.1f} to {ci[1]:+.1f}",
                            "vs baseline": verdict})
            row["baseline seed std"] = np.nan if base_std is None else round(base_std, 1)
            rand = [r for r in random_init if r["seed"] in seeds]
            rci = _paired(mine, rand, metric) if rand else None
            row["Δ vs random init"] = (round(mean - 100 * float(np.mean([r[metric] for r in rand])), 1)
                                       if rand else np.nan)
            row["Δ vs random init ci"] = "" if rci is None else f"{rci[0]:+.1f} to {rci[1]:+.1f}"
            row["vs random init"] = ("no random-init record at these seeds" if not rand else
                                     "no interval" if rci is None else
                                     "above random init" if rci[0] > 0 else "NOT above random init")
            rows.append(row)
    return pd.DataFrame(rows).set_index(["knob", "setting"])


def plot_ablation(
    table: pd.DataFrame, metric: str = "probe_top1", note: str | None = None, ylabel: str | None = None
) -> Any:
    """One panel per knob: the metric of each setting with its 95% interval, the baseline's bar highlighted.

    Args:
        table: :func:`ablation_table`'s output.
        metric: which metric's ``(%)`` column to plot.
        note: a line under the figure (e.g. :data:`geolab.viz.SIMULATION_NOTE` for geoworld).
        ylabel: the y axis label (default: ``"<metric> (%)"``).

    Returns:
        The matplotlib Figure.
    """
    knobs = list(dict.fromkeys(table.index.get_level_values(0)))
    fig, axes = plt.subplots(1, max(1, len(knobs)), figsize=(3.2 * max(1, len(knobs)), 3.2), squeeze=False, sharey=True)
    col = f"{metric} (%)"
    for ax, knob in zip(axes[0], knobs):
        part = table.loc[knob]
        err = None  # the 95% interval (test locations and seeds), where the records allow one
        if f"{metric} ci low" in part and part[f"{metric} ci low"].notna().all():
            err = [part[col] - part[f"{metric} ci low"], part[f"{metric} ci high"] - part[col]]
        colours = ["#C44E52" if b else "#4C72B0" for b in part["baseline"]]
        ax.bar(range(len(part)), part[col], yerr=err, color=colours, capsize=3)
        ax.set_xticks(range(len(part)), part.index, rotation=30 if len(part) > 3 else 0, fontsize=8)
        ax.set_title(knob, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(ylabel or col)
    fig.suptitle("ablations around the baseline (red bar)", fontsize=10)
    fig.tight_layout(rect=(0, 0.05 if note else 0, 1, 1))
    if note:
        fig.text(0.99, 0.005, note, ha="right", va="bottom", fontsize=8, color="#8a1c1c", style="italic")
    return fig
