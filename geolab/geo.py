"""Geo clusters: spherical K-means over the locations' coordinates, and distances.

The paper's geo pretext task (Ayush et al. 2021, Sec. 3.2) clusters the lat/lon of the
training images with K-means (K = 100) and trains a head to predict each image's cluster.
Clustering raw (lat, lon) degrees treats the map as flat: lon 179.9 and -179.9 look 360
degrees apart although they are 20 km apart, and near the poles a degree of longitude is
almost nothing. We cluster the points as unit vectors on the sphere instead
(:func:`latlon_to_unit`), which has neither problem.

Spherical K-means: scikit-learn's ``KMeans`` (k-means++ init, several restarts, seeded)
runs on the unit vectors; its centres are means, which lie inside the sphere, so we
renormalise them onto it and then run a few spherical Lloyd steps in numpy (assign each
point to the centre with the largest cosine, move the centre to the normalised mean) until
the labels stop changing. Points are then assigned with the same rule everywhere, so
``assign`` on the fitted points returns exactly ``labels_``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

from geolab.errors import UserError

#: Mean Earth radius in km (IUGG).
EARTH_RADIUS_KM = 6371.0088
#: The paper's number of geo clusters.
PAPER_K = 100


class GeoClusterError(UserError, ValueError):
    """Geo clusters that cannot be made from the data given (too few training locations for K, no training split)."""


def _as_coords(lat: Any, lon: Any) -> tuple[np.ndarray, np.ndarray]:
    lat = np.asarray(lat, dtype=np.float64).reshape(-1)
    lon = np.asarray(lon, dtype=np.float64).reshape(-1)
    if lat.shape != lon.shape:
        raise ValueError(f"lat and lon must have the same length, got {lat.size} and {lon.size}")
    if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))):
        raise ValueError("lat/lon contain NaN or infinite values; validate the manifest first")
    if np.any(np.abs(lat) > 90) or np.any(np.abs(lon) > 180):
        raise ValueError("lat must be in [-90, 90] and lon in [-180, 180] (decimal degrees)")
    return lat, lon


def latlon_to_unit(lat: Any, lon: Any) -> np.ndarray:
    """Points on the unit sphere (x towards lon 0 on the equator, z towards the north pole).

    Args:
        lat: latitudes in degrees, shape (n,).
        lon: longitudes in degrees, shape (n,).

    Returns:
        float64 array of shape (n, 3), each row of norm 1.
    """
    lat, lon = _as_coords(lat, lon)
    phi, lam = np.radians(lat), np.radians(lon)
    cos_phi = np.cos(phi)
    return np.stack([cos_phi * np.cos(lam), cos_phi * np.sin(lam), np.sin(phi)], axis=1)


def unit_to_latlon(xyz: Any) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`latlon_to_unit` (vectors need not be normalised).

    Args:
        xyz: array (n, 3).

    Returns:
        ``(lat, lon)`` in degrees, lon in [-180, 180].
    """
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    lat = np.degrees(np.arctan2(z, np.hypot(x, y)))
    lon = np.degrees(np.arctan2(y, x))
    return lat, lon


def haversine_km(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> np.ndarray:
    """Great-circle distance in km (broadcasts like numpy).

    Args:
        lat1: latitudes of the first points, degrees.
        lon1: longitudes of the first points, degrees.
        lat2: latitudes of the second points, degrees.
        lon2: longitudes of the second points, degrees.

    Returns:
        Distances in km on a sphere of radius :data:`EARTH_RADIUS_KM`.
    """
    p1, p2 = np.radians(np.asarray(lat1, dtype=np.float64)), np.radians(np.asarray(lat2, dtype=np.float64))
    dphi = p2 - p1
    dlam = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlam / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


class GeoClusterer:
    """Spherical K-means over coordinates: the paper's geo clusters.

    Args:
        k: number of clusters (paper: 100). Must not exceed the number of distinct points.
        seed: seed of scikit-learn's k-means++ initialisation (same seed, same clusters).
        n_init: k-means restarts (the best inertia is kept).
        max_spherical_iter: spherical Lloyd steps after the Euclidean fit.

    Attributes:
        centers_: (k, 3) unit vectors, after :meth:`fit`.
        labels_: cluster of each fitted point.
    """

    def __init__(self, k: int = PAPER_K, seed: int = 0, n_init: int = 4, max_spherical_iter: int = 50) -> None:
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = int(k)
        self.seed = int(seed)
        self.n_init = int(n_init)
        self.max_spherical_iter = int(max_spherical_iter)
        self.centers_: np.ndarray | None = None
        self.labels_: np.ndarray | None = None

    def fit(self, lat: Any, lon: Any) -> GeoClusterer:
        """Cluster the points (one per location: duplicates would weight busy places).

        Args:
            lat: latitudes in degrees.
            lon: longitudes in degrees.

        Returns:
            self.

        Raises:
            GeoClusterError: fewer points (or distinct points) than ``k`` (a ValueError).
            ValueError: bad coordinates.
        """
        x = latlon_to_unit(lat, lon)
        n = len(x)
        distinct = len(np.unique(np.round(x, 9), axis=0)) if n else 0
        if n < self.k or distinct < self.k:
            what = f"{n} points" if n < self.k else f"{distinct} distinct places among {n} points"
            raise GeoClusterError(
                f"cannot make {self.k} geo clusters from {what} (one point per training location); "
                f"lower K to at most {min(n, distinct)} (e.g. geo_k={max(1, min(n, distinct) // 2)}) "
                "or add training locations. The paper uses K=100 on ~80k fMoW locations."
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            km = KMeans(n_clusters=self.k, n_init=self.n_init, random_state=self.seed).fit(x)
        centers = _normalise(km.cluster_centers_)
        labels = self._nearest(x, centers)
        for _ in range(self.max_spherical_iter):
            new_centers = centers.copy()
            sums = np.zeros_like(centers)
            np.add.at(sums, labels, x)
            norms = np.linalg.norm(sums, axis=1)
            ok = norms > 1e-12  # an emptied cluster keeps its centre
            new_centers[ok] = sums[ok] / norms[ok, None]
            new_labels = self._nearest(x, new_centers)
            centers = new_centers
            if np.array_equal(new_labels, labels):
                break
            labels = new_labels
        self.centers_ = centers
        self.labels_ = self._nearest(x, centers)
        return self

    @staticmethod
    def _nearest(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
        # largest cosine = smallest great-circle distance; ties go to the lower index
        return np.argmax(x @ centers.T, axis=1).astype(np.int64)

    def _check_fitted(self) -> np.ndarray:
        if self.centers_ is None:
            raise RuntimeError("GeoClusterer is not fitted; call fit(lat, lon) first")
        return self.centers_

    def assign(self, lat: Any, lon: Any) -> np.ndarray:
        """Geo cluster of each coordinate (nearest centre on the sphere).

        Args:
            lat: latitudes in degrees.
            lon: longitudes in degrees.

        Returns:
            int64 array of cluster ids in [0, k).
        """
        return self._nearest(latlon_to_unit(lat, lon), self._check_fitted())

    @property
    def centers_latlon(self) -> np.ndarray:
        """Cluster centres as an array (k, 2) of (lat, lon) degrees."""
        lat, lon = unit_to_latlon(self._check_fitted())
        return np.stack([lat, lon], axis=1)


def _normalise(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    out = v / np.where(norms > 1e-12, norms, 1.0)
    # a centre at the origin (antipodal points averaging out) gets an arbitrary direction
    out[norms[:, 0] <= 1e-12] = np.array([1.0, 0.0, 0.0])
    return out


def location_coords(df: pd.DataFrame) -> pd.DataFrame:
    """One (lat, lon) per location: the spherical mean of its images' coordinates.

    Args:
        df: manifest rows.

    Returns:
        DataFrame indexed by ``location_id`` (first-appearance order) with ``lat``, ``lon``.
    """
    xyz = latlon_to_unit(df["lat"].to_numpy(), df["lon"].to_numpy())
    sums = pd.DataFrame(xyz, columns=["x", "y", "z"]).groupby(df["location_id"].to_numpy(), sort=False).sum()
    lat, lon = unit_to_latlon(sums.to_numpy())
    return pd.DataFrame({"lat": lat, "lon": lon}, index=sums.index.rename("location_id"))


def add_geo_clusters(
    df: pd.DataFrame, k: int = PAPER_K, seed: int = 0, fit_split: str = "train"
) -> pd.DataFrame:
    """Add the derived ``geo_cluster`` column: K-means fitted on training locations only.

    One point per location of ``split == fit_split`` (so revisited places do not weigh
    more, and nothing is learnt from val/test coordinates); every location, of every
    split, is then assigned to its nearest centre, and its rows get that cluster.

    Args:
        df: a loaded manifest.
        k: number of geo clusters (paper: 100).
        seed: K-means seed.
        fit_split: the split whose locations the clusters are fitted on.

    Returns:
        A copy of ``df`` with an int64 ``geo_cluster`` column; ``attrs["geo_clusters"]``
        records ``k``, ``seed`` and the centres' (lat, lon).

    Raises:
        GeoClusterError: no rows in ``fit_split``, or fewer training locations than ``k``
            (the message says to lower K); a ValueError.
    """
    train = df[df["split"] == fit_split]
    if len(train) == 0:
        have = ", ".join(sorted(df["split"].astype(str).unique()))
        raise GeoClusterError(
            f"no rows with split == '{fit_split}' to fit geo clusters on (splits present: {have}); "
            "geo clusters are fitted on training locations only."
        )
    coords = location_coords(train)
    clusterer = GeoClusterer(k=k, seed=seed).fit(coords["lat"].to_numpy(), coords["lon"].to_numpy())
    every = location_coords(df)
    per_location = pd.Series(
        clusterer.assign(every["lat"].to_numpy(), every["lon"].to_numpy()), index=every.index
    )
    out = df.copy()
    # per location, so that all revisits of a place (a temporal pair) share one geo cluster
    out["geo_cluster"] = per_location.reindex(df["location_id"].to_numpy()).to_numpy(dtype=np.int64)
    out.attrs = dict(df.attrs)
    out.attrs["geo_clusters"] = {
        "k": int(k),
        "seed": int(seed),
        "fit_split": fit_split,
        "centers_latlon": clusterer.centers_latlon.round(6).tolist(),
    }
    return out
