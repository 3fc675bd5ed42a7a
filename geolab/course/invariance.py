"""What a representation keeps and ignores (notebook 06), on features aligned with manifest rows.

:func:`probe_predictions` (the linear probe's prediction per test row, for maps; :func:`probe_correct`
with the probe's C chosen on val as the course's records choose it),
:func:`pick_query` and :func:`neighbour_table` (nearest neighbours across time and space),
:func:`revisit_retrieval`, :func:`pair_similarities` (revisits vs other locations),
:func:`nuisance_probe` (how well a linear model reads season, clouds, snow, sun and haze from
the features), :func:`invariance_table` (both, for several methods) and
:func:`invariance_verdict`; :func:`sample_locations` keeps analyses small. Everything works on
plain arrays and manifest tables, so it is tested without training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, RidgeClassifierCV, RidgeCV
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from geolab.evaluate import probe_C
from geolab.manifest import scoring_split
from geolab.viz.pictures import nearest_neighbours

#: geoworld's nuisance columns: what changes between revisits of one location.
NUISANCE_COLUMNS: tuple[str, ...] = ("season", "cloud_cover", "snow", "sun_elevation", "haze")


def probe_predictions(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, *, C: float = 1.0, seed: int = 0
) -> np.ndarray:
    """The linear probe's predicted class index for every test row.

    The same classifier as :func:`geolab.evaluate.linear_probe`'s default backend
    (LogisticRegression on standardised features, L-BFGS, ``max_iter=2000``), so its accuracy
    equals the probe's top-1 on the same features; here each row's prediction is kept, for
    per-cluster maps and error analysis.

    Args:
        train_x: training features (N, D).
        train_y: their label indices (N,).
        test_x: features to predict (M, D).
        C: inverse L2 strength.
        seed: solver seed.

    Returns:
        int64 array (M,) of predicted label indices.

    Raises:
        ValueError: fewer than two classes in ``train_y``.
    """
    if len(np.unique(train_y)) < 2:
        raise ValueError("the linear probe needs at least two classes in the training split.")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))
    clf.fit(train_x, train_y)
    return clf.predict(test_x).astype(np.int64)


def probe_correct(
    x: np.ndarray, y: np.ndarray, df: pd.DataFrame, test_split: str, seed: int = 0
) -> tuple[np.ndarray, float]:
    """Whether the linear probe gets each ``test_split`` row right, with C chosen as the records choose it.

    The course's records score the probe with the inverse L2 strength C that is best on the val split
    (:func:`geolab.evaluate.probe_C`, the one rule: 1.0 when val is the scored split or absent), so on the same
    features the mean of this mask is the record's probe top-1.

    Args:
        x: features aligned with ``df``'s rows (N, D).
        y: label indices (N,).
        df: the manifest rows (``split`` column).
        test_split: the scored split.
        seed: solver seed.

    Returns:
        ``(correct, C)``: a bool array over the ``test_split`` rows in order, and the C used.
    """
    split = df["split"].to_numpy()
    tr, te = split == "train", split == test_split
    C, _ = probe_C(x[tr], y[tr], split, y, test_split, lambda val: (x[val], y[val]), seed=seed)
    return probe_predictions(x[tr], y[tr], x[te], C=C, seed=seed) == y[te], C


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _check_features(features: np.ndarray, df: pd.DataFrame, name: str = "features") -> np.ndarray:
    x = np.asarray(features)
    if x.ndim != 2 or len(x) != len(df):
        raise ValueError(
            f"{name} has shape {x.shape}; expected ({len(df)}, d): one row per manifest row, in the same order."
        )
    return x


def pick_query(df: pd.DataFrame, min_revisits: int = 3, split: str | None = "test") -> int:
    """A row position to use as a retrieval query.

    A row position to use as a retrieval query: the first image (in table order) of the first
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
    """The query and its ``k`` nearest neighbours per method, as manifest rows.

    The query and its ``k`` nearest neighbours (cosine similarity) per method, as manifest rows
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
    """How often a revisit of the query's location is among its nearest neighbours, per method.

    Retrieval across time, measured on every query instead of shown on one: for each image
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
    chance = (
        float(np.mean(1 - np.exp(sum(np.log1p(-others / (n - 1 - j)) for j in range(k))))) if len(queries) else np.nan
    )
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
    """Sentences that read :func:`invariance_table` against what temporal positives are meant to do.

    ``other`` (e.g. MoCo-v2+TP) should make each nuisance *less* readable than ``base`` (MoCo-v2), keep the category
    at least as readable, and widen the revisit gap.

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
        verdict = "as expected" if ok else "NOT as expected"
        out.append(f"{measure}: {other} {b:.3f} vs {base} {a:.3f}, {moved} ({verdict}:"
                   f" {wish})")
    out.append(f"{expected} of {len(measures)} measures moved the way temporal positives should move them "
               "(one seed, no interval: a direction, not an established effect).")
    return out


def sample_locations(df: pd.DataFrame, max_locations: int | None, seed: int = 0) -> pd.DataFrame:
    """All rows of a seeded sample of whole locations.

    All rows of a seeded sample of ``max_locations`` locations (every revisit of each), for
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
    """Row positions of a seeded sample of whole locations.

    Row positions of whole locations (all their revisits), a seeded sample of at most
    ``max_images`` rows (all rows when the table is small enough).
    """
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
    """How well a linear model reads each column from the features (train on one split, score another).

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
    x = _check_features(features, df)
    splits = set(df["split"].astype(str))
    test_split = scoring_split(df, test_split)
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
        gap = sims.loc[PAIR_KINDS[0], "mean"] - sims.loc[PAIR_KINDS[1], "mean"]
        col["revisit gap (revisits - same category)"] = gap
        probe = nuisance_probe(x, df, columns=columns)
        for c in probe.index:
            col[f"readable: {c} ({'kept' if c == 'label' else 'nuisance'})"] = probe.loc[c, "score above chance"]
        out[method] = col
    table = pd.DataFrame(out).astype(float).round(3)
    return table.dropna(how="all")  # a column constant in a split (e.g. no snow) cannot be probed
