"""Geo clusters on the sphere: antimeridian, poles, determinism, assign == fit, train-only fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import make_manifest

from geolab.geo import (
    GeoClusterer,
    add_geo_clusters,
    haversine_km,
    latlon_to_unit,
    location_coords,
    unit_to_latlon,
)
from geolab.manifest import load_manifest


def _random_points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))  # uniform on the sphere
    lon = rng.uniform(-180, 180, n)
    return lat, lon


def test_unit_vectors_round_trip():
    """latlon_to_unit gives unit vectors; unit_to_latlon inverts it (lon 180 == -180)."""
    lat, lon = _random_points(200)
    xyz = latlon_to_unit(lat, lon)
    assert np.allclose(np.linalg.norm(xyz, axis=1), 1.0)
    lat2, lon2 = unit_to_latlon(xyz)
    assert np.allclose(lat2, lat) and np.allclose(lon2, lon)
    assert np.allclose(latlon_to_unit([0], [180]), latlon_to_unit([0], [-180]))


def test_haversine_known_distances():
    """Great-circle distances: across the antimeridian is short; pole to pole is half the globe."""
    assert haversine_km(0, 179.9, 0, -179.9) == pytest.approx(22.24, abs=0.01)
    assert haversine_km(90, 0, -90, 0) == pytest.approx(np.pi * 6371.0088)
    # Paris-New York, about 5837 km
    assert haversine_km(48.8566, 2.3522, 40.7128, -74.0060) == pytest.approx(5837, rel=0.005)


def test_antimeridian_points_cluster_together():
    """lon 179.9 and -179.9 are 22 km apart: they share a cluster; raw-degree K-means would split them."""
    lat = np.array([10.0, 10.0, 10.2, 9.8, -40.0, -40.0, 50.0, 50.5])
    lon = np.array([179.9, -179.9, 179.95, -179.95, 20.0, 20.5, -100.0, -100.2])
    g = GeoClusterer(k=3, seed=0).fit(lat, lon)
    assert len(set(g.labels_[:4])) == 1
    assert len(set(g.labels_)) == 3
    # the centre of that cluster sits on the antimeridian, not at lon 0
    c = g.centers_latlon[g.labels_[0]]
    assert abs(abs(c[1]) - 180) < 0.5 and abs(c[0] - 10) < 0.5


def test_poles_cluster_together():
    """Near a pole, points at any longitude are close: they form one cluster."""
    lat = np.array([89.9, 89.9, 89.95, 89.8, -89.9, -89.85, 0.0, 0.5])
    lon = np.array([0.0, 180.0, -90.0, 90.0, 45.0, -135.0, 0.0, 0.5])
    g = GeoClusterer(k=3, seed=1).fit(lat, lon)
    assert len(set(g.labels_[:4])) == 1
    assert len(set(g.labels_[4:6])) == 1
    assert g.labels_[0] != g.labels_[4]


def test_deterministic_for_a_seed():
    """The same seed gives the same clusters (labels and centres)."""
    lat, lon = _random_points(600)
    a = GeoClusterer(k=12, seed=3).fit(lat, lon)
    b = GeoClusterer(k=12, seed=3).fit(lat, lon)
    assert np.array_equal(a.labels_, b.labels_)
    assert np.allclose(a.centers_, b.centers_)


def test_assign_matches_fit_labels_and_centres_on_sphere():
    """assign() on the fitted points gives labels_; centres are unit vectors; ids in [0, k)."""
    lat, lon = _random_points(500, seed=1)
    g = GeoClusterer(k=20, seed=0).fit(lat, lon)
    assert np.array_equal(g.assign(lat, lon), g.labels_)
    assert np.allclose(np.linalg.norm(g.centers_, axis=1), 1.0)
    assert g.centers_latlon.shape == (20, 2)
    new = g.assign([10.0, -50.0], [179.99, -179.99])
    assert new.dtype == np.int64 and ((0 <= new) & (new < 20)).all()


def test_assign_is_nearest_centre_by_great_circle():
    """A new point goes to the centre with the smallest great-circle distance."""
    lat, lon = _random_points(300, seed=2)
    g = GeoClusterer(k=8, seed=0).fit(lat, lon)
    q_lat, q_lon = _random_points(50, seed=9)
    got = g.assign(q_lat, q_lon)
    c = g.centers_latlon
    d = haversine_km(q_lat[:, None], q_lon[:, None], c[None, :, 0], c[None, :, 1])
    assert np.array_equal(got, d.argmin(axis=1))


def test_too_few_locations_says_lower_k():
    """K larger than the number of (distinct) locations is a clear error telling the user to lower K."""
    with pytest.raises(ValueError, match="lower K to at most 5"):
        GeoClusterer(k=100).fit(*_random_points(5))
    with pytest.raises(ValueError, match="distinct"):
        GeoClusterer(k=3).fit([1.0, 1.0, 1.0, 2.0], [5.0, 5.0, 5.0, 6.0])
    with pytest.raises(RuntimeError, match="not fitted"):
        GeoClusterer(k=3).assign([0.0], [0.0])
    with pytest.raises(ValueError, match="NaN"):
        GeoClusterer(k=1).fit([np.nan], [0.0])


def test_add_geo_clusters_fits_on_train_locations_only(tmp_path: Path):
    """geo_cluster is fitted on one point per train location and assigned to every row per location."""
    df = load_manifest(make_manifest(tmp_path, n_locations=12))
    out = add_geo_clusters(df, k=4, seed=0)
    assert "geo_cluster" not in df.columns and out["geo_cluster"].dtype == np.int64
    assert out.groupby("location_id")["geo_cluster"].nunique().max() == 1
    assert out.attrs["geo_clusters"]["k"] == 4
    # same clusters as fitting by hand on the train locations
    train = location_coords(df[df["split"] == "train"])
    g = GeoClusterer(k=4, seed=0).fit(train["lat"], train["lon"])
    allc = location_coords(df)
    expect = dict(zip(allc.index, g.assign(allc["lat"], allc["lon"])))
    assert list(out["geo_cluster"]) == [expect[loc] for loc in df["location_id"]]
    # moving a val location does not move the centres (fit ignores val/test)
    moved = df.copy()
    moved.loc[moved["split"] == "val", "lat"] = -60.0
    again = add_geo_clusters(moved, k=4, seed=0)
    assert np.allclose(again.attrs["geo_clusters"]["centers_latlon"], out.attrs["geo_clusters"]["centers_latlon"])
    n_train = df.loc[df["split"] == "train", "location_id"].nunique()
    with pytest.raises(ValueError, match=f"lower K to at most {n_train}"):
        add_geo_clusters(df, k=n_train + 1)
