"""Analyses behind the later course notebooks: ablation sweeps (05), what a representation keeps
and ignores (06), and the dense transfer comparison (07).

Notebooks call these so that each of their cells stays a few lines; everything here works on
plain arrays, manifest tables and result records, so it can be tested without training.

* Ablations: :func:`sweep_plan`, :func:`run_sweep`, :func:`ablation_table`, :func:`plot_ablation`
  -- one setting (geo clusters K, temporal sampling strategy, geo loss weight beta,
  temperature, image size) changed at a time around one baseline run, which every sweep shares.
* Embeddings: :func:`probe_predictions` (the linear probe's prediction per test row, for maps),
  :func:`pick_query`, :func:`neighbour_table` (nearest neighbours across time and space),
  :func:`pair_similarities` (revisits vs other locations), :func:`nuisance_probe` (how well a
  linear model reads season, clouds, snow, sun and haze from the features),
  :func:`invariance_table` (both, for several methods).
* Transfer: :func:`dense_record`, :func:`transfer_table`, :func:`plot_transfer` -- geoworld's
  segmentation results per initialisation next to the paper's xView / SpaceNet numbers.

geoworld is a simulation: figures made here from geoworld data carry a note saying so.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

# ============================================================================ ablations
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
    once and reused, see :func:`geolab.experiment.run_experiment`).

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
        seeds: seeds of every run.
        results_path: the course runner's records file (``""`` by hand).
        run: the function that runs one experiment (default
            :func:`geolab.experiment.run_experiment`; tests pass a fake).

    Returns:
        The stored records, each with ``knob``, ``value`` and ``is_baseline`` added.
    """
    plan = [(step, seed) for step in sweep_plan(baseline, sweeps) for seed in seeds]
    specs = [dict(method=method, manifest=manifest, data=data, seed=seed, results_path=results_path,
                  experiment=step["experiment"], variant=step["variant"], **step["config"]) for step, seed in plan]
    if run is None:  # the missing runs train several at a time
        from geolab.experiment import run_experiments

        stored = run_experiments(specs)
    else:
        stored = [run(spec.pop("method"), spec.pop("manifest"), **spec) for spec in specs]
    records = []
    for (step, _), rec in zip(plan, stored):
        records.append({**rec, "knob": step["knob"], "value": step["value"], "is_baseline": step["is_baseline"]})
    return records


def ablation_table(records: Sequence[Mapping[str, Any]], metrics: Sequence[str] = ("probe_top1", "knn_top1")) -> pd.DataFrame:
    """Mean (and std over seeds) of each setting of each knob, in percent, with the change
    against the baseline in points.

    Args:
        records: from :func:`run_sweep` (with ``knob``, ``value``, ``is_baseline``).
        metrics: record keys (fractions) to summarise.

    Returns:
        DataFrame indexed by (knob title, setting) in sweep order with ``seeds``,
        ``<metric> (%)``, ``<metric> std`` (NaN with one seed), ``<metric> ci low`` / ``ci high``
        (the 95% interval over test locations and seeds, :func:`geolab.experiment.bootstrap_interval`;
        NaN without per-location hits), ``Δ <metric> (points)`` against the knob's baseline
        row, and ``baseline`` (bool).

    Raises:
        ValueError: no records, or records without ``knob``/``value`` (not from :func:`run_sweep`).
    """
    from geolab.experiment import bootstrap_interval

    if not records:
        raise ValueError("no records: run the sweep first (analysis.run_sweep).")
    df = pd.DataFrame(list(records))
    for col in ("knob", "value", "is_baseline"):
        if col not in df:
            raise ValueError(f"records lack {col!r}; make them with analysis.run_sweep.")
    df["setting"] = df["value"].map(_label)
    rows = []
    for (knob, setting), g in df.groupby(["knob", "setting"], sort=False):
        row: dict[str, Any] = {"knob": KNOB_TITLES.get(knob, knob), "setting": setting, "seeds": len(g)}
        group = g.to_dict("records")  # this setting's records only, so no variant filter is needed
        for m in metrics:
            vals = 100 * g[m].astype(float)
            row[f"{m} (%)"] = round(vals.mean(), 2)
            row[f"{m} std"] = round(vals.std(ddof=1), 2) if len(vals) > 1 else np.nan
            ci = bootstrap_interval(group, g["method"].iloc[0], m) if "method" in g else None
            row[f"{m} ci low"], row[f"{m} ci high"] = (np.nan, np.nan) if ci is None else (round(100 * ci[0], 1), round(100 * ci[1], 1))
        row["baseline"] = bool(g["is_baseline"].iloc[0])
        rows.append(row)
    out = pd.DataFrame(rows)
    for m in metrics:
        base = out[out["baseline"]].set_index("knob")[f"{m} (%)"]
        out[f"Δ {m} (points)"] = (out[f"{m} (%)"] - out["knob"].map(base)).round(2)
    return out.set_index(["knob", "setting"])


def plot_ablation(table: pd.DataFrame, metric: str = "probe_top1", note: str | None = None, ylabel: str | None = None) -> Any:
    """One panel per knob: the metric of each setting with its 95% interval, the baseline's
    bar highlighted.

    Args:
        table: :func:`ablation_table`'s output.
        metric: which metric's ``(%)`` column to plot.
        note: a line under the figure (e.g. :data:`geolab.viz.SIMULATION_NOTE` for geoworld).
        ylabel: the y axis label (default: ``"<metric> (%)"``).

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

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


# ============================================================================ embeddings
#: geoworld's nuisance columns: what changes between revisits of one location.
NUISANCE_COLUMNS: tuple[str, ...] = ("season", "cloud_cover", "snow", "sun_elevation", "haze")


def probe_predictions(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, *, C: float = 1.0, seed: int = 0) -> np.ndarray:
    """The linear probe's predicted class index for every test row.

    The same classifier as :func:`geolab.evaluate.linear_probe`'s default backend
    (LogisticRegression on standardised features, L-BFGS, ``max_iter=2000``), so its accuracy
    equals the probe's top-1 on the same features; here each row's prediction is kept, for
    per-cluster maps and error analysis.

    Args:
        train_x, train_y: training features (N, D) and label indices.
        test_x: features to predict (M, D).
        C: inverse L2 strength.
        seed: solver seed.

    Returns:
        int64 array (M,) of predicted label indices.

    Raises:
        ValueError: fewer than two classes in ``train_y``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(train_y)) < 2:
        raise ValueError("the linear probe needs at least two classes in the training split.")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))
    clf.fit(train_x, train_y)
    return clf.predict(test_x).astype(np.int64)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _check_features(features: np.ndarray, df: pd.DataFrame, name: str = "features") -> np.ndarray:
    x = np.asarray(features)
    if x.ndim != 2 or len(x) != len(df):
        raise ValueError(f"{name} has shape {x.shape}; expected ({len(df)}, d): one row per manifest row, in the same order.")
    return x


def pick_query(df: pd.DataFrame, min_revisits: int = 3, split: str | None = "test") -> int:
    """A row position to use as a retrieval query: the first image (in table order) of the first
    location of ``split`` with at least ``min_revisits`` images (fewer if none has that many).

    Args:
        df: a manifest table (positions are ``df``'s row positions).
        min_revisits: wanted images of the query's location.
        split: restrict to this split (``None``: any).

    Returns:
        A row position.

    Raises:
        ValueError: ``df`` (or the split) is empty.
    """
    pool = df if split is None or "split" not in df else df[df["split"] == split]
    if len(pool) == 0:
        raise ValueError(f"no rows{'' if split is None else f' in split {split!r}'} to pick a query from.")
    counts = df.groupby("location_id")["location_id"].transform("size").to_numpy()
    positions = np.flatnonzero(df.index.isin(pool.index))
    for need in range(max(1, min_revisits), 0, -1):
        ok = positions[counts[positions] >= need]
        if len(ok):
            return int(ok[0])
    return int(positions[0])


def neighbour_table(
    df: pd.DataFrame,
    features: Mapping[str, np.ndarray],
    query: int,
    k: int = 5,
    exclude_same_location: bool = False,
) -> pd.DataFrame:
    """The query and its ``k`` nearest neighbours (cosine similarity) per method, as manifest rows
    ready for :func:`geolab.viz.image_grid` (one grid row per method, the query first).

    With ``exclude_same_location=False`` the neighbours show retrieval *across time* (revisits
    of the query's own location tend to come first for a model that learnt to match them);
    with ``True`` they show retrieval *across space* (other locations only).

    Args:
        df: the rows the features were extracted from, in the same order.
        features: method -> (n, d) features.
        query: row position of the query.
        k: neighbours per method.
        exclude_same_location: leave out the query's own location.

    Returns:
        Rows of ``df`` (``attrs`` kept) with ``method``, ``rank`` (0 = the query),
        ``similarity``, ``same_location``, ``same_label`` and ``caption``, and the original row
        position in ``position``.

    Raises:
        ValueError: a feature matrix without one row per manifest row, or a bad query.
    """
    from geolab.viz import nearest_neighbours

    if not 0 <= query < len(df):
        raise ValueError(f"query {query} is not a row position of the table (0..{len(df) - 1}).")
    loc = df["location_id"].to_numpy()
    labels = df["label"].to_numpy()
    exclude = np.flatnonzero(loc == loc[query]) if exclude_same_location else None
    parts = []
    for method, x in features.items():
        x = _check_features(x, df, f"features[{method!r}]")
        rows, sims = nearest_neighbours(x, query, k=k, exclude=exclude)
        positions = [query, *rows.tolist()]
        part = df.iloc[positions].copy()
        part["position"] = positions
        part["method"] = method
        part["rank"] = range(len(positions))
        part["similarity"] = [1.0, *np.round(sims, 3).tolist()]
        part["same_location"] = loc[positions] == loc[query]
        part["same_label"] = labels[positions] == labels[query]
        part["caption"] = [f"{method}: query\n{labels[query]}"] + [
            f"#{r} {s:.2f} {'same loc' if sl else 'other loc'}\n{lab}"
            for r, s, sl, lab in zip(range(1, len(positions)), sims, part["same_location"].iloc[1:], labels[rows])
        ]
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out.attrs = dict(df.attrs)
    return out


def revisit_retrieval(features: Mapping[str, np.ndarray], df: pd.DataFrame, k: int = 5,
                      split: str | None = "test") -> pd.DataFrame:
    """Retrieval across time, measured on every query instead of shown on one: for each image
    of ``split`` whose location has other images, is one of its ``k`` nearest neighbours (cosine
    similarity, among all other rows) a revisit of its own location?

    Args:
        features: method -> (n, d) features aligned with ``df``.
        df: the rows the features were extracted from.
        k: neighbours looked at.
        split: the queries' split (None: every row).

    Returns:
        One row per method: ``queries``, ``revisit in top-k`` (share of queries) and
        ``chance`` (the share expected if neighbours were drawn at random among the other rows).
    """
    loc = df["location_id"].to_numpy()
    counts = pd.Series(loc).map(pd.Series(loc).value_counts()).to_numpy()
    queries = np.flatnonzero((counts > 1) & ((df["split"].to_numpy() == split) if split is not None else True))
    n = len(df)
    # chance: 1 - P(none of k random other rows is one of the c - 1 revisits), per query
    others = counts[queries] - 1
    chance = float(np.mean(1 - np.exp(sum(np.log1p(-others / (n - 1 - j)) for j in range(k))))) if len(queries) else np.nan
    rows = {}
    for method, x in features.items():
        x = _unit(_check_features(x, df, f"features[{method!r}]"))
        hits = []
        for start in range(0, len(queries), 512):  # blocks bound the similarity matrix's memory
            q = queries[start:start + 512]
            sims = x[q] @ x.T
            sims[np.arange(len(q)), q] = -np.inf  # not the query itself
            top = np.argpartition(-sims, k, axis=1)[:, :k]
            hits.append((loc[top] == loc[q][:, None]).any(axis=1))
        hit = np.concatenate(hits) if hits else np.array([], dtype=bool)
        rows[method] = {"queries": len(queries), f"revisit in top-{k}": float(hit.mean()) if len(hit) else np.nan,
                        "chance": chance}
    return pd.DataFrame.from_dict(rows, orient="index")


def invariance_verdict(table: pd.DataFrame, base: str, other: str) -> list[str]:
    """Sentences that read :func:`invariance_table` against what temporal positives are meant
    to do: ``other`` (e.g. MoCo-v2+TP) should make each nuisance *less* readable than ``base``
    (MoCo-v2), keep the category at least as readable, and widen the revisit gap.

    One seed, no interval: each sentence says which way the number moved and whether that is
    the expected way, never that an effect is established.

    Returns:
        One sentence per measure, then a count of the measures that moved the expected way.
    """
    out, expected = [], 0
    measures = [i for i in table.index if i.startswith("readable:") or i.startswith("revisit gap")]
    for measure in measures:
        a, b = float(table.loc[measure, base]), float(table.loc[measure, other])
        if measure.endswith("(nuisance)"):
            wish, ok = "lower", b < a
        elif measure.startswith("revisit gap"):
            wish, ok = "higher", b > a
        else:  # the category: kept
            wish, ok = "as high or higher", b >= a
        expected += ok
        moved = "lower" if b < a else "higher" if b > a else "unchanged"
        out.append(f"{measure}: {other} {b:.3f} vs {base} {a:.3f}, {moved} ({'as expected' if ok else 'NOT as expected'}:"
                   f" {wish})")
    out.append(f"{expected} of {len(measures)} measures moved the way temporal positives should move them "
               "(one seed, no interval: a direction, not an established effect).")
    return out


def sample_locations(df: pd.DataFrame, max_locations: int | None, seed: int = 0) -> pd.DataFrame:
    """All rows of a seeded sample of ``max_locations`` locations (every revisit of each), for
    analyses that do not need the whole data set (maps, neighbours, probes of nuisances).

    Args:
        df: a manifest table.
        max_locations: locations to keep; ``None`` (or at least the number of locations) keeps all.
        seed: sampling seed.

    Returns:
        The rows in their original order, index reset to 0..n-1, ``attrs`` kept.

    Raises:
        ValueError: ``max_locations`` < 1.
    """
    if max_locations is not None and max_locations < 1:
        raise ValueError(f"max_locations must be >= 1 or None, got {max_locations}.")
    locations = pd.unique(df["location_id"])
    if max_locations is None or len(locations) <= max_locations:
        out = df.reset_index(drop=True)
    else:
        keep = np.random.default_rng(seed).choice(locations, size=max_locations, replace=False)
        out = df[df["location_id"].isin(keep)].reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out


def _sample_locations(df: pd.DataFrame, max_images: int, seed: int) -> np.ndarray:
    """Row positions of whole locations (all their revisits), a seeded sample of at most
    ``max_images`` rows (all rows when the table is small enough)."""
    if len(df) <= max_images:
        return np.arange(len(df))
    rng = np.random.default_rng(seed)
    groups = pd.Series(np.arange(len(df))).groupby(df["location_id"].to_numpy()).apply(list)
    keep: list[int] = []
    for i in rng.permutation(len(groups)):
        if len(keep) + len(groups.iloc[i]) > max_images:
            continue
        keep.extend(groups.iloc[i])
    return np.sort(np.asarray(keep, dtype=int))


#: Pair kinds of :func:`pair_similarities`, in display order.
PAIR_KINDS: tuple[str, ...] = ("revisits of one location", "same category, other location", "other category")


def pair_similarities(features: np.ndarray, df: pd.DataFrame, max_images: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Mean cosine similarity of three kinds of image pairs.

    * revisits of one location (what a temporal positive pairs up: same place, other time);
    * different locations of the same category (what the category shares);
    * different categories.

    A representation that ignores what changes over time puts revisits closer together than
    other locations of the same category. Every pair of distinct images is counted once; on
    big tables a seeded sample of whole locations (at most ``max_images`` images) is used.

    Args:
        features: (n, d), one row per row of ``df``.
        df: rows with ``location_id`` and ``label``.
        max_images: cap on the images compared (all pairs of them: ``max_images**2`` floats).
        seed: sampling seed.

    Returns:
        DataFrame indexed by pair kind (:data:`PAIR_KINDS`) with ``mean``, ``std`` and ``pairs``
        (NaN mean where there is no such pair, e.g. no revisits).

    Raises:
        ValueError: features do not match ``df``.
    """
    x = _check_features(features, df)
    keep = _sample_locations(df, max_images, seed)
    z = _unit(x[keep])
    sims = z @ z.T
    loc = df["location_id"].to_numpy()[keep]
    lab = df["label"].to_numpy()[keep]
    upper = np.triu(np.ones(sims.shape, dtype=bool), k=1)
    same_loc = loc[:, None] == loc[None, :]
    same_lab = lab[:, None] == lab[None, :]
    masks = {
        PAIR_KINDS[0]: upper & same_loc,
        PAIR_KINDS[1]: upper & ~same_loc & same_lab,
        PAIR_KINDS[2]: upper & ~same_lab,
    }
    rows = []
    for kind, m in masks.items():
        v = sims[m]
        rows.append({"pair": kind, "mean": float(v.mean()) if len(v) else np.nan,
                     "std": float(v.std()) if len(v) else np.nan, "pairs": int(len(v))})  # fmt: skip
    return pd.DataFrame(rows).set_index("pair")


def nuisance_probe(
    features: np.ndarray,
    df: pd.DataFrame,
    columns: Sequence[str] = NUISANCE_COLUMNS,
    train_split: str = "train",
    test_split: str = "test",
) -> pd.DataFrame:
    """How well a linear model reads each column from the features (train on one split, score
    another).

    A representation that ignores a nuisance (season, clouds, snow, sun elevation, haze) predicts
    it poorly; one that keeps the category predicts the ``label`` well. Categorical columns
    (strings, e.g. ``season``, ``label``) get a ridge classifier and are scored by accuracy
    against the majority class of the training split; numeric ones get ridge regression and
    are scored by R² on the test split (0 = no better than the training mean). The ridge
    penalty is chosen by efficient leave-one-out cross-validation on the training split
    (``RidgeCV`` / ``RidgeClassifierCV``, features standardised): closed-form and deterministic,
    so the probe takes well under a second for geoworld. ``score above chance`` puts both on
    one scale: ``(accuracy - chance) / (1 - chance)`` or R² (1 = perfectly readable, 0 = not).

    Args:
        features: (n, d), one row per row of ``df``.
        df: rows with ``split`` and the columns.
        columns: columns to probe; those missing from ``df`` are skipped (geoworld has all of
            :data:`NUISANCE_COLUMNS`; real data may have only ``cloud_cover``).
        train_split: split the probes are fitted on.
        test_split: split scored (``"val"`` when ``df`` has no such split).

    Returns:
        DataFrame indexed by column with ``kind`` (categorical/numeric), ``metric``,
        ``score``, ``chance``, ``score above chance`` and ``n_test``; NaN scores where a
        column is constant or missing in a split.

    Raises:
        ValueError: features do not match ``df``, or no training/test rows.
    """
    from sklearn.linear_model import RidgeClassifierCV, RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = _check_features(features, df)
    splits = set(df["split"].astype(str))
    if test_split not in splits and "val" in splits:
        test_split = "val"
    tr = (df["split"] == train_split).to_numpy()
    te = (df["split"] == test_split).to_numpy()
    if not tr.any() or not te.any():
        raise ValueError(f"need rows in both {train_split!r} and {test_split!r} (splits: {', '.join(sorted(splits))}).")
    alphas = np.logspace(-2, 5, 15)
    rows = []
    for col in columns:
        if col not in df.columns:
            continue
        y = df[col].to_numpy()
        numeric = pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col])
        ok = pd.notna(df[col]).to_numpy()
        a, b = tr & ok, te & ok
        row: dict[str, Any] = {"column": col, "kind": "numeric" if numeric else "categorical",
                               "metric": "R²" if numeric else "accuracy", "n_test": int(b.sum())}  # fmt: skip
        if numeric:
            ya, yb = y[a].astype(float), y[b].astype(float)
            if a.sum() < 3 or b.sum() < 2 or np.ptp(ya) == 0 or np.ptp(yb) == 0:
                row.update(score=np.nan, chance=0.0)
            else:
                model = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas)).fit(x[a], ya)
                row.update(score=float(r2_score(yb, model.predict(x[b]))), chance=0.0)
            row["score above chance"] = row["score"]
        else:
            ya, yb = y[a].astype(str), y[b].astype(str)
            values, counts = np.unique(ya, return_counts=True)
            majority = values[np.argmax(counts)] if len(values) else None
            chance = float((yb == majority).mean()) if len(yb) else np.nan
            if len(values) < 2 or len(yb) == 0:
                row.update(score=np.nan, chance=chance)
            else:
                model = make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=alphas)).fit(x[a], ya)
                row.update(score=float((model.predict(x[b]) == yb).mean()), chance=chance)
            row["score above chance"] = (row["score"] - chance) / (1 - chance) if chance < 1 else np.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("column") if rows else pd.DataFrame(
        columns=["kind", "metric", "score", "chance", "score above chance", "n_test"]
    )


def invariance_table(
    features: Mapping[str, np.ndarray],
    df: pd.DataFrame,
    columns: Sequence[str] = (*NUISANCE_COLUMNS, "label"),
    max_images: int = 3000,
) -> pd.DataFrame:
    """What each representation keeps and ignores, one column per method.

    Rows: the mean cosine similarity of each pair kind (:func:`pair_similarities`), the
    ``revisit gap`` (revisits minus other locations of the same category: positive when the
    representation treats a place over time as closer than its look-alikes), and for each
    column the ``score above chance`` of :func:`nuisance_probe` (``label`` = what is kept).

    Args:
        features: method -> (n, d) features aligned with ``df``.
        df: the manifest rows.
        columns: columns to probe.
        max_images: see :func:`pair_similarities`.

    Returns:
        DataFrame (rows: measures; columns: methods), rounded to 3 decimals; measures that no
        method could compute (a column that does not vary within a split) are left out.
    """
    out = {}
    for method, x in features.items():
        sims = pair_similarities(x, df, max_images=max_images)
        col: dict[str, float] = {f"cos sim: {k}": sims.loc[k, "mean"] for k in PAIR_KINDS}
        col["revisit gap (revisits - same category)"] = sims.loc[PAIR_KINDS[0], "mean"] - sims.loc[PAIR_KINDS[1], "mean"]
        probe = nuisance_probe(x, df, columns=columns)
        for c in probe.index:
            col[f"readable: {c} ({'kept' if c == 'label' else 'nuisance'})"] = probe.loc[c, "score above chance"]
        out[method] = col
    table = pd.DataFrame(out).astype(float).round(3)
    return table.dropna(how="all")  # a column constant in a split (e.g. no snow) cannot be probed


# ============================================================================ transfer
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
    from geolab.paper import paper_transfer_table

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
    """Two panels: mIoU measured here per initialisation, and the paper's SpaceNet mIoU and xView
    AP50 for the same initialisations (the paper's panel is labelled as the paper's).

    Args:
        table: :func:`transfer_table`'s output.
        note: a line for the left panel (e.g. :data:`geolab.viz.SIMULATION_NOTE`).

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

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
    import matplotlib.pyplot as plt
    import torch
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from lightly.transforms.utils import IMAGENET_NORMALIZE

    from geolab.dense import GEOWORLD_MASK_CLASSES, SegmentationDataset, predict_masks

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
                ax.imshow(np.where(img < n_colours, img, 0), cmap=cmap, vmin=-0.5, vmax=n_colours - 0.5, interpolation="nearest")
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


__all__ = [
    "MASK_COLOURS",
    "KNOBS",
    "KNOB_TITLES",
    "NUISANCE_COLUMNS",
    "PAIR_KINDS",
    "ablation_table",
    "dense_record",
    "invariance_table",
    "neighbour_table",
    "nuisance_probe",
    "pair_similarities",
    "pick_query",
    "plot_ablation",
    "plot_transfer",
    "probe_predictions",
    "run_sweep",
    "sample_locations",
    "segmentation_examples",
    "sweep_plan",
    "transfer_table",
]
