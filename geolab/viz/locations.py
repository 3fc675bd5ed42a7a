"""What a map of a manifest shows, as data: one row per location, accuracy per geo cluster, cluster regions.

No drawing here: :mod:`geolab.viz.maps` draws these tables and GeoJSON regions (folium or matplotlib).

Antimeridian: a cluster is unwrapped around the circular mean of its longitudes before its
hull is taken, so a cluster around Fiji (lon 178 and -179) is one small region, not a band
around the world; a hull that crosses +-180 degrees is drawn twice, shifted by 360 degrees, so
it shows at both edges of the map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import ConvexHull


# ----------------------------------------------------------------------------- tables
def location_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per location: where it is, what it is, how often it was revisited.

    Args:
        df: a manifest (``geolab.manifest.load_manifest``), optionally with ``geo_cluster``.

    Returns:
        DataFrame indexed 0..n-1 with ``location_id, lat, lon, label, split`` (``"mixed"``
        when a location's images sit in several splits), ``n_images, first, last``,
        ``rows`` (the manifest's index labels of its images, in time order) and
        ``geo_cluster`` when ``df`` has it. Sorted by ``location_id``.

    Raises:
        KeyError: a required column is missing (the message names it).
    """
    require_columns(df, ("location_id", "lat", "lon", "label", "split", "timestamp"))
    ordered = df.sort_values(["location_id", "timestamp"], kind="stable")
    grouped = ordered.groupby("location_id", sort=True)
    out = grouped.agg(
        lat=("lat", "first"),
        lon=("lon", "first"),
        label=("label", "first"),
        n_images=("timestamp", "size"),
        first=("timestamp", "min"),
        last=("timestamp", "max"),
    )
    # vectorised (no Python call per location: full fMoW has ~80k locations)
    out["split"] = grouped["split"].first().where(grouped["split"].nunique() == 1, "mixed")
    if "geo_cluster" in df.columns:
        out["geo_cluster"] = grouped["geo_cluster"].first().astype(int)
    positions = grouped.indices  # location -> positions in ``ordered`` (time order kept)
    labels = ordered.index.to_numpy()
    out["rows"] = [labels[positions[loc]].tolist() for loc in out.index]
    return out.reset_index()


def cluster_accuracy(df: pd.DataFrame, correct: str | Sequence[bool] | np.ndarray = "correct") -> pd.DataFrame:
    """Accuracy of a model per geo cluster.

    Args:
        df: rows that were evaluated, with ``geo_cluster``.
        correct: name of a boolean column of ``df``, or one flag per row (True = the
            model's prediction was right).

    Returns:
        DataFrame with ``geo_cluster, n, n_correct, accuracy`` (0..1), sorted by cluster.

    Raises:
        KeyError: ``geo_cluster`` or the ``correct`` column is missing.
        ValueError: the flags do not match ``df`` in length.
    """
    require_columns(df, ("geo_cluster",))
    if isinstance(correct, str):
        require_columns(df, (correct,))
        flags = df[correct].to_numpy()
    else:
        flags = np.asarray(correct)
        if len(flags) != len(df):
            raise ValueError(f"correct has {len(flags)} flags for {len(df)} rows; give one flag per row.")
    table = pd.DataFrame({"geo_cluster": df["geo_cluster"].to_numpy().astype(int), "ok": flags.astype(bool)})
    out = table.groupby("geo_cluster").agg(n=("ok", "size"), n_correct=("ok", "sum")).reset_index()
    out["accuracy"] = out["n_correct"] / out["n"]
    return out


def accuracy_table(df: pd.DataFrame, accuracy: Any) -> pd.DataFrame | None:
    """``accuracy`` as :func:`cluster_accuracy`'s table: given as that table, or as a column name or flags of ``df``."""
    if accuracy is None or isinstance(accuracy, pd.DataFrame):
        return accuracy
    return cluster_accuracy(df, accuracy)


# ----------------------------------------------------------------------------- geometry
def _wrap(lon: np.ndarray | float) -> np.ndarray:
    return (np.asarray(lon, dtype=float) + 180.0) % 360.0 - 180.0


def _circular_mean_lon(lon: np.ndarray) -> float:
    rad = np.radians(lon)
    return float(np.degrees(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean())))


def cluster_regions(df: pd.DataFrame, margin: float = 2.5) -> dict[str, Any]:
    """Each geo cluster's region: the convex hull of its locations, widened by ``margin``.

    The hull is taken in (lon, lat) after unwrapping the cluster's longitudes around their
    circular mean, so clusters that straddle the antimeridian stay compact. Clusters with one
    or two locations (or all on a line) still get a region, since every location is first
    replaced by a small octagon of radius ``margin``.

    Args:
        df: manifest rows or a :func:`location_table`, with ``lat, lon, geo_cluster``.
        margin: degrees added around the locations (default 2.5, visible on a world map).

    Returns:
        GeoJSON FeatureCollection, one feature per cluster (a Polygon, or a MultiPolygon of
        two copies 360 degrees apart when the hull crosses +-180), with properties
        ``geo_cluster``, ``n_locations`` and ``crosses_antimeridian``.
    """
    require_columns(df, ("lat", "lon", "geo_cluster"))
    pts = df[["lat", "lon", "geo_cluster"]].drop_duplicates()
    angles = np.linspace(0.0, 2 * np.pi, 8, endpoint=False)
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1) * margin
    features = []
    for cluster, group in pts.groupby("geo_cluster", sort=True):
        lon = group["lon"].to_numpy(dtype=float)
        lat = group["lat"].to_numpy(dtype=float)
        centre = _circular_mean_lon(lon)
        lon_unwrapped = centre + _wrap(lon - centre)
        cloud = (np.stack([lon_unwrapped, lat], axis=1)[:, None, :] + ring[None, :, :]).reshape(-1, 2)
        cloud[:, 1] = np.clip(cloud[:, 1], -89.9, 89.9)
        hull = cloud[ConvexHull(cloud).vertices]
        coords = np.round(np.vstack([hull, hull[:1]]), 3)
        crosses = bool(coords[:, 0].max() > 180.0 or coords[:, 0].min() < -180.0)
        if crosses:
            shift = -360.0 if coords[:, 0].max() > 180.0 else 360.0
            other = coords.copy()
            other[:, 0] += shift
            geometry = {"type": "MultiPolygon", "coordinates": [[coords.tolist()], [other.tolist()]]}
        else:
            geometry = {"type": "Polygon", "coordinates": [coords.tolist()]}
        features.append(
            {
                "type": "Feature",
                "properties": {
                    "geo_cluster": int(cluster),
                    "n_locations": int(group[["lat", "lon"]].drop_duplicates().shape[0]),
                    "crosses_antimeridian": crosses,
                },
                "geometry": geometry,
            }
        )
    return {"type": "FeatureCollection", "features": features}


# ----------------------------------------------------------------------------- helpers
def require_columns(df: pd.DataFrame, columns: Sequence[str], hint: str | None = None) -> None:
    """Raise a :class:`KeyError` naming the table, the missing columns and ``hint`` when ``df`` lacks any."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        source = df.attrs.get("source", "the table")
        msg = (
            f"{source} has no column {', '.join(repr(c) for c in missing)} "
            f"(columns: {', '.join(map(str, df.columns))})"
        )
        raise KeyError(msg + (f"; {hint}." if hint else "."))
