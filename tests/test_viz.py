"""Maps, land outline, Leaflet assets and widgets of ``geolab.viz``, without a browser
(the page itself is opened in headless Chromium by ``test_map_browser.py``)."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("folium")
pytest.importorskip("ipywidgets")

from helpers import make_manifest  # noqa: E402

import geolab.viz as viz  # noqa: E402
from geolab.geo import add_geo_clusters  # noqa: E402
from geolab.manifest import load_manifest  # noqa: E402
from geolab.viz import assets as viz_assets  # noqa: E402
from geolab.viz import maps as viz_maps  # noqa: E402
from geolab.viz.folium_map import js_data  # noqa: E402


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """12 locations on six continents (two near the antimeridian), 1-4 revisits each, 4 geo clusters."""
    path = make_manifest(tmp_path_factory.mktemp("viz"), n_locations=12)
    return add_geo_clusters(load_manifest(path), k=4, seed=0)


# ----------------------------------------------------------------------------- tables
def test_location_table_one_row_per_location_in_time_order(manifest: pd.DataFrame) -> None:
    """Markers and popups are per location; popups list revisits oldest first."""
    locs = viz.location_table(manifest)
    assert len(locs) == manifest["location_id"].nunique() == 12
    assert locs["n_images"].sum() == len(manifest)
    for loc in locs.itertuples():
        times = manifest.loc[loc.rows, "timestamp"]
        assert times.is_monotonic_increasing
        assert set(manifest.loc[loc.rows, "location_id"]) == {loc.location_id}


def test_location_table_marks_locations_spanning_splits_as_mixed(manifest: pd.DataFrame) -> None:
    """A location whose revisits sit in two splits is shown as 'mixed', not as its first split."""
    df = manifest.copy()
    rows = df.index[df["location_id"] == "loc003"]
    df.loc[rows[-1], "split"] = "val"  # its others are "test"
    locs = viz.location_table(df).set_index("location_id")
    assert locs.loc["loc003", "split"] == "mixed"
    assert locs.loc["loc002", "split"] == manifest.loc[manifest.location_id == "loc002", "split"].iloc[0]


def test_cluster_accuracy_per_cluster_and_length_check(manifest: pd.DataFrame) -> None:
    """Accuracy per geo cluster is the share of correct rows in it; flags must align with rows."""
    correct = np.asarray(manifest.index % 3 != 0)
    acc = viz.cluster_accuracy(manifest, correct)
    for row in acc.itertuples():
        sel = manifest["geo_cluster"].to_numpy() == row.geo_cluster
        assert row.n == sel.sum()
        assert row.accuracy == pytest.approx(correct[sel].mean())
    with pytest.raises(ValueError, match="one flag per row"):
        viz.cluster_accuracy(manifest, correct[:-1])
    with pytest.raises(KeyError, match="geo_cluster"):
        viz.cluster_accuracy(manifest.drop(columns="geo_cluster"), correct)
    # the map takes the flags directly too (a column of df or one flag per row)
    flagged = manifest.assign(correct=correct)
    by_table = viz.location_map(flagged, accuracy=acc, popups=False, land=False).offline_html()
    assert viz.location_map(flagged, accuracy="correct", popups=False, land=False).offline_html() == by_table
    assert viz.location_map(flagged, accuracy=correct, popups=False, land=False).offline_html() == by_table


# ----------------------------------------------------------------------------- geometry
def _inside(ring: list[list[float]], lon: float, lat: float) -> bool:
    from matplotlib.path import Path as MplPath

    return bool(MplPath(np.asarray(ring)).contains_point((lon, lat)))


def test_cluster_regions_contain_their_locations(manifest: pd.DataFrame) -> None:
    """Each geo cluster's region (hull + margin) covers all its locations, one feature per cluster."""
    regions = viz.cluster_regions(manifest)
    assert [f["properties"]["geo_cluster"] for f in regions["features"]] == sorted(manifest["geo_cluster"].unique())
    for f in regions["features"]:
        k = f["properties"]["geo_cluster"]
        geom = f["geometry"]
        rings = [geom["coordinates"][0]] if geom["type"] == "Polygon" else [p[0] for p in geom["coordinates"]]
        for lat, lon in manifest.loc[manifest.geo_cluster == k, ["lat", "lon"]].drop_duplicates().to_numpy():
            # a location may lie in the copy shifted by 360 degrees
            assert any(_inside(r, lon + s, lat) for r in rings for s in (-360, 0, 360)), (k, lat, lon)


def test_cluster_across_the_antimeridian_is_compact_and_drawn_on_both_sides() -> None:
    """A cluster at lon 179 and -179 is a small region drawn twice (near +180 and near -180),
    not a band around the whole world; single-location clusters still get a region."""
    df = pd.DataFrame({"lat": [-17.0, -18.0, 10.0], "lon": [179.0, -179.0, 20.0], "geo_cluster": [0, 0, 1]})
    regions = {f["properties"]["geo_cluster"]: f for f in viz.cluster_regions(df, margin=1.0)["features"]}
    fiji = regions[0]
    assert fiji["properties"]["crosses_antimeridian"] is True
    assert fiji["geometry"]["type"] == "MultiPolygon"
    for poly in fiji["geometry"]["coordinates"]:
        lons = np.asarray(poly[0])[:, 0]
        assert lons.max() - lons.min() < 6.0  # 2 degrees apart plus the margin, not 358
    centres = sorted(np.asarray(p[0])[:, 0].mean() for p in fiji["geometry"]["coordinates"])
    assert centres[0] < -175 and centres[1] > 175
    single = regions[1]
    assert single["properties"]["crosses_antimeridian"] is False
    assert _inside(single["geometry"]["coordinates"][0], 20.0, 10.0)


def test_land_outline_separates_land_from_sea() -> None:
    """The traced outline puts known land points on land and open ocean at sea, and is cached."""
    outline = viz.land_outline(0.5)
    polys = [f["geometry"]["coordinates"] for f in outline["features"]]

    def on_land(lat: float, lon: float) -> bool:
        # inside an outer ring and in none of its holes
        return any(_inside(p[0], lon, lat) and not any(_inside(h, lon, lat) for h in p[1:]) for p in polys)

    for lat, lon in [(48.85, 2.35), (23.0, 13.0), (-25.0, 134.0), (40.0, -100.0), (-10.0, -55.0), (-80.0, 0.0)]:
        assert on_land(lat, lon), (lat, lon)
    # (GLOBE counts inland waters such as the Caspian Sea as land, so none is tested here.)
    for lat, lon in [(30.0, -40.0), (0.0, -140.0), (-40.0, 80.0), (55.0, -30.0), (35.0, 18.0), (75.0, 0.0)]:
        assert not on_land(lat, lon), (lat, lon)  # the last two: the Mediterranean, the Greenland Sea
    cache = viz_maps_land_cache(0.5)
    assert cache.is_file()
    assert json.loads(cache.read_text())["features"] == outline["features"]


def viz_maps_land_cache(res: float) -> Path:
    from geolab.viz.land import land_cache_path

    return land_cache_path(res)


# ----------------------------------------------------------------------------- maps
def marker_table(m: object) -> dict:
    """The data table of a map's location markers (``LocationMarkers.table``: labels, splits, colours, rows)."""
    stack = [m]
    while stack:
        element = stack.pop()
        if type(element).__name__ == "LocationMarkers":
            return element.table  # type: ignore[attr-defined]
        stack.extend(element._children.values())  # type: ignore[attr-defined]
    raise AssertionError("the map has no LocationMarkers")


def thumbnails_shown(m: object) -> list[int]:
    """Thumbnails in each location's popup, in marker order."""
    return [len(row[10] or []) for row in marker_table(m)["rows"]]


def test_map_page_is_self_contained(manifest: pd.DataFrame) -> None:
    """The saved page inlines Leaflet and the land outline and refers to no CDN or tile server."""
    m = viz.location_map(manifest, tiles=None)
    page = m.offline_html()
    assert "Leaflet 1.9.3" in page  # the library's banner, inlined
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", page)
    for cdn in ("cdn.jsdelivr", "code.jquery", "bootstrapcdn", "cdnjs", "tile.openstreetmap"):
        assert cdn not in page
    assert "url(images/" not in page  # Leaflet's CSS images became data: URIs
    table = marker_table(m)
    assert len(table["rows"]) == 12 and js_data(table)[:-1] in page  # the markers' data, in the page
    assert f"'className':'{viz_maps.CLASS_LOCATION}'" in page
    assert f'"className": "{viz_maps.CLASS_LAND}"' in page
    viz.check_offline_html(page)  # does not raise


def test_markers_and_land_are_compact_data(manifest: pd.DataFrame) -> None:
    """Markers cost a table row each (not folium's ~1 KB of script per marker), the land outline
    is delta-encoded, popups carry WebP thumbnails at most ``thumb_size`` pixels wide, and a
    notebook keeps the page with few escapes (srcdoc)."""
    from PIL import Image

    m = viz.location_map(manifest, thumbs=2, thumb_size=24)
    page = m.offline_html()
    assert "circle_marker_" not in page and page.count("L.circleMarker(") == 1
    for row in marker_table(m)["rows"]:
        for data, _date in row[10]:
            with Image.open(io.BytesIO(base64.b64decode(data))) as im:
                assert im.format == "WEBP" and max(im.size) <= 24
    land = viz_maps.land_outline_cached(0.5)
    points = sum(len(ring) for f in land["features"] for ring in f["geometry"]["coordinates"])
    assert len(page) - len(viz.location_map(manifest, thumbs=2, thumb_size=24, land=False).offline_html()) < 9 * points
    shown = m._repr_html_()  # in srcdoc only & and " are escaped: the markers' single-quoted data stays as it is
    assert js_data(marker_table(m))[:-1] in shown and len(shown) < 1.1 * len(page)
    assert html.unescape(re.search(r'srcdoc="([^"]*)"', shown).group(1)) == page


def test_marker_texts_cannot_break_out_of_the_script(manifest: pd.DataFrame) -> None:
    """A location id or label that holds HTML or a quote is escaped: the page keeps one script end per script."""
    df = manifest.copy()
    df.loc[df["location_id"] == "loc001", "label"] = "it's </script><script>alert(1)</script>"
    page = viz.location_map(df, land=False, popups=False).offline_html()
    assert "alert(1)</script>" not in page and page.count("</script>") == page.count("<script")
    assert js_data(["</b><!--", "it's"]) == "['<\\/b><\\u0021--','it\\'s']"


def test_a_map_rendered_twice_gives_the_same_page(manifest: pd.DataFrame, tmp_path: Path) -> None:
    """Showing a map and then saving it gives one page (every layer added to the map once)."""
    m = viz.location_map(manifest, accuracy=viz.cluster_accuracy(manifest, np.ones(len(manifest), bool)))
    first = m.offline_html()
    m._repr_html_()
    assert viz.save_map(m, tmp_path / "m.html").read_text() == first
    added = re.findall(r"(\w+)\.addTo\(map_\w+\)", first)
    assert len(added) == len(set(added)) == 5  # land, geo clusters, accuracy, locations, legend


def test_same_map_same_bytes(manifest: pd.DataFrame) -> None:
    """Building a map twice gives the same page (no random element ids), so saved maps diff
    cleanly and notebook outputs compare under nbval."""
    a = viz.location_map(manifest, land=False).offline_html()
    b = viz.location_map(manifest, land=False).offline_html()
    assert a == b


def test_thumbnail_budget_keeps_pages_small(manifest: pd.DataFrame) -> None:
    """With more locations than the thumbnail budget allows, each popup shows fewer revisits
    (at least one) and the legend says so; with fewer thumbnails than locations a seeded sample
    of popups shows one and the others list dates only."""
    m = viz.location_map(manifest, land=False, clusters=False, thumbs=3, max_thumbnails=12)
    assert thumbnails_shown(m) == [1] * 12
    assert "popups show 1 revisit(s) each" in m.offline_html()
    m = viz.location_map(manifest, land=False, clusters=False, thumbs=3, max_thumbnails=5)
    assert sorted(thumbnails_shown(m)) == [0] * 7 + [1] * 5
    assert thumbnails_shown(m) == thumbnails_shown(
        viz.location_map(manifest, land=False, clusters=False, thumbs=3, max_thumbnails=5))
    assert "(5 of 12 popups, a seeded sample; the others list dates only)" in m.offline_html()
    assert all(row[10] == [] for row in marker_table(viz.location_map(manifest, land=False, thumbs=0))["rows"])


def test_offline_check_rejects_plugins_that_need_the_network(manifest: pd.DataFrame) -> None:
    """A folium plugin that loads its JS from a CDN makes saving fail with a clear error."""
    from folium.plugins import MarkerCluster

    m = viz.location_map(manifest, popups=False, land=False)
    MarkerCluster().add_to(m)
    with pytest.raises(viz.OfflineMapError, match="outside the file"):
        m.offline_html()


def test_map_layers_popups_legend_and_accuracy(manifest: pd.DataFrame, tmp_path: Path) -> None:
    """Popups carry the revisits as PNG thumbnails (at most ``thumbs``), cluster regions and the
    accuracy layer have one shape per geo cluster, and the legend names the colours."""
    acc = viz.cluster_accuracy(manifest, np.asarray(manifest.index % 2 == 0))
    m = viz.location_map(manifest, color_by="split", accuracy=acc, thumbs=2, land=False)
    path = viz.save_map(m, tmp_path / "map.html")
    page = path.read_text()
    table = marker_table(m)
    assert len(table["rows"]) == 12
    expected = viz.location_table(manifest)["n_images"].clip(upper=2).tolist()
    assert thumbnails_shown(m) == expected  # markers in location order
    row = table["rows"][3]  # loc003: 4 revisits, the first and the last shown
    assert row[3] == "loc003" and row[7] == 4 and [date for _, date in row[10]] == [row[8], row[9]]
    k = manifest["geo_cluster"].nunique()
    assert page.count('"geo_cluster": ') >= 2 * k  # features of both region layers
    assert f'"className": "{viz_maps.CLASS_REGION}"' in page
    assert f'"className": "{viz_maps.CLASS_ACCURACY}"' in page
    assert "accuracy per geo cluster" in page
    for split in ("train", "val", "test"):
        assert viz_maps.SPLIT_COLOURS[split] in page
    assert "land outline" not in page  # land=False


def test_map_needs_geo_clusters_for_cluster_colours(manifest: pd.DataFrame) -> None:
    """Colouring by geo cluster without the column says how to add it."""
    with pytest.raises(KeyError, match="add_geo_clusters"):
        viz.location_map(manifest.drop(columns="geo_cluster"), color_by="geo_cluster")
    with pytest.raises(ValueError, match="color_by"):
        viz.location_map(manifest, color_by="season")


def test_geoworld_maps_say_they_are_simulated(manifest: pd.DataFrame) -> None:
    """Every map and widget of the geoworld simulation says so (legend, static figure, captions)."""
    df = manifest.copy()
    df.attrs["source"] = "/cache/geoworld/v1-abc/manifest.parquet"
    page = viz.location_map(df, popups=False, land=False).offline_html()
    assert viz.SIMULATION_NOTE in page
    fig = viz.static_map(df)
    assert any(viz.SIMULATION_NOTE in t.get_text() for t in fig.axes[0].texts)
    real = viz.location_map(manifest, popups=False, land=False).offline_html()
    assert viz.SIMULATION_NOTE not in real
    assert viz.SIMULATION_NOTE in viz.revisit_viewer(df).caption.value
    assert any(viz.SIMULATION_NOTE in t.get_text() for t in viz.image_grid(df, rows=[0]).texts)
    assert viz.SIMULATION_NOTE not in viz.revisit_viewer(manifest).caption.value


def test_sampling_caps_the_number_of_markers(manifest: pd.DataFrame) -> None:
    """max_locations keeps a seeded sample and the legend says how many were left out."""
    m = viz.location_map(manifest, popups=False, land=False, clusters=False, max_locations=5)
    assert len(marker_table(m)["rows"]) == 5
    assert "5 of 12 locations" in m.offline_html()


def test_notebook_display_uses_the_offline_page(manifest: pd.DataFrame) -> None:
    """In a notebook the map shows the same offline page (srcdoc iframe, no CDN)."""
    shown = viz.location_map(manifest, popups=False, land=False)._repr_html_()
    assert shown.startswith("<div") and "srcdoc=" in shown
    assert "cdn.jsdelivr" not in shown


def test_static_map_draws_land_points_and_regions(manifest: pd.DataFrame, tmp_path: Path) -> None:
    """The matplotlib fallback has the land, one point per location and a region per cluster."""
    acc = viz.cluster_accuracy(manifest, np.ones(len(manifest), dtype=bool))
    fig = viz.static_map(manifest, color_by="geo_cluster", accuracy=acc)
    ax = fig.axes[0]
    assert ax.collections[0].get_offsets().shape == (12, 2)
    n_land = len(viz.land_outline(0.5)["features"])
    assert len(ax.patches) >= n_land + 2 * manifest["geo_cluster"].nunique()
    out = viz.save_figure(fig, tmp_path / "map.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- assets
def test_leaflet_assets_come_from_a_registry_package() -> None:
    """By default Leaflet 1.9.3 comes from the xstatic-leaflet wheel (or npm, or the env var)."""
    a = viz.leaflet_assets()
    assert a.version == viz_assets.LEAFLET_VERSION
    assert a.source in ("pypi", "npm", "env")
    assert "data:image/png;base64," in a.css()


def test_env_folder_wins_and_missing_assets_explain_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GEOLAB_LEAFLET_DIR is used first; with no Leaflet anywhere the error names the fixes."""
    (tmp_path / "leaflet.js").write_text("/* @preserve\n * Leaflet 1.9.9, test copy */")
    (tmp_path / "leaflet.css").write_text(".leaflet-container{}")
    monkeypatch.setenv("GEOLAB_LEAFLET_DIR", str(tmp_path))
    a = viz.leaflet_assets()
    assert (a.source, a.version, a.folder) == ("env", "1.9.9", tmp_path)
    monkeypatch.setattr(viz_assets, "_candidates", lambda: [("env", None), ("npm", tmp_path / "nope"), ("pypi", None)])
    with pytest.raises(viz.AssetError, match="pip install xstatic-leaflet.*fetch-assets --source npm"):
        viz.leaflet_assets()


def _tgz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_npm_tarball_extraction_keeps_only_leaflet_dist(tmp_path: Path) -> None:
    """From an ``npm pack`` tarball only dist's JS/CSS/images are kept, paths cannot escape,
    and a tarball without Leaflet is refused."""
    tgz = _tgz(
        tmp_path / "leaflet-1.9.3.tgz",
        {
            "package/dist/leaflet.js": b"/* Leaflet 1.9.3 */",
            "package/dist/leaflet.css": b".x{background:url(images/layers.png)}",
            "package/dist/images/layers.png": b"\x89PNG fake",
            "package/dist/leaflet-src.js": b"not needed",
            "package/../../evil.js": b"boom",
            "package/LICENSE": b"BSD-2-Clause",
        },
    )
    dest = viz_assets.extract_npm_tarball(tgz, tmp_path / "assets" / "leaflet")
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == ["LICENSE", "SOURCE.json", "images/layers.png", "leaflet.css", "leaflet.js"]
    assert not (tmp_path / "evil.js").exists()
    css = viz_assets.LeafletAssets(dest, "npm", "1.9.3").css()
    assert "url(data:image/png;base64," in css
    bad = _tgz(tmp_path / "other.tgz", {"package/dist/leaflet.js": b"x"})
    with pytest.raises(viz.AssetError, match="leaflet.css"):
        viz_assets.extract_npm_tarball(bad, tmp_path / "assets2")


def test_cli_writes_an_offline_map_and_png(manifest: pd.DataFrame, tmp_path: Path) -> None:
    """``geolab viz map`` writes the HTML page and the static PNG of a manifest."""
    from geolab.cli import main
    from geolab.manifest import save_manifest

    src = save_manifest(manifest.drop(columns="geo_cluster"), tmp_path / "m.parquet")
    rc = main(["viz", "map", str(src), "--out", str(tmp_path / "m.html"), "--k", "3",
               "--color-by", "geo_cluster", "--png", str(tmp_path / "m.png")])  # fmt: skip
    assert rc == 0
    viz.check_offline_html((tmp_path / "m.html").read_text())
    assert (tmp_path / "m.png").stat().st_size > 1000
    assert main(["viz", "map", str(src), "--out", str(tmp_path / "x.html"), "--color-by", "geo_cluster"]) == 2


# ----------------------------------------------------------------------------- widgets
def test_season_is_hemisphere_aware() -> None:
    """January is winter in Paris and summer in Sydney."""
    assert viz.season("2020-01-15", 48.8) == "winter"
    assert viz.season("2020-01-15", -33.9) == "summer"
    assert viz.season("2020-04-15", -33.9) == "autumn"


def test_revisit_viewer_slider_changes_the_shown_image(manifest: pd.DataFrame) -> None:
    """Moving the slider shows the next revisit (image bytes, row and date change); picking
    another location restarts at its first revisit."""
    v = viz.revisit_viewer(manifest)
    assert v.location.value == "loc003"  # the most revisited location (4 images) comes first
    assert v.slider.max == 3 and v.current_row == v.rows[0]
    first_png, first_caption = v.image.value, v.caption.value
    v.slider.value = 2
    assert v.current_row == v.rows[2]
    assert v.image.value != first_png
    from geolab.viz.pictures import load_image, png_bytes

    assert v.image.value == png_bytes(load_image(manifest.loc[v.rows[2], "path"], v.size))
    date = f"{manifest.loc[v.rows[2], 'timestamp']:%Y-%m-%d}"
    assert date in v.caption.value and v.caption.value != first_caption
    assert "revisit 3 of 4" in v.caption.value
    v.location.value = "loc000"  # a single image
    assert (v.slider.max, v.slider.value, len(v.rows)) == (0, 0, 1)
    assert v.current["location_id"] == "loc000"
    with pytest.raises(ValueError, match="not in the manifest"):
        viz.revisit_viewer(manifest, location_id="nowhere")


def test_revisit_viewer_snapshot(manifest: pd.DataFrame, tmp_path: Path) -> None:
    """The viewer's state renders as a figure: the shown revisit, then one framed thumbnail per
    revisit (the README's picture is made from geoworld by test_map_browser.py)."""
    v = viz.revisit_viewer(manifest, size=160)
    v.slider.value = 1
    fig = v.snapshot()
    assert len(fig.axes) == 1 + len(v.rows)
    assert "revisit 2 of 4" in fig.axes[0].get_title()
    out = viz.save_figure(fig, tmp_path / "rv.png", dpi=80)
    assert out.stat().st_size > 1000


def test_augmentation_explorer_pairs_views_with_a_temporal_positive(manifest: pd.DataFrame) -> None:
    """MoCo-v2 views come from the query image; the temporal positive is another image of the
    same location; 'new views' draws different augmentations."""
    from geolab.positives import LocationIndex

    df = manifest.reset_index(drop=True)
    i = int(df.index[df.location_id == "loc003"][0])
    e = viz.augmentation_explorer(df, input_size=32, index=i, seed=0)
    assert set(e.views) == set(e.PANELS)
    assert e.views["MoCo-v2 view 1 (query)"].size == (32, 32)
    j = e.positive_index
    assert j != i and df.loc[j, "location_id"] == "loc003"
    expected = LocationIndex(df).positive(i, "any-other", np.random.default_rng(0))
    assert j == expected
    before = np.asarray(e.views["MoCo-v2 view 1 (query)"]).copy()
    e.resample.click()
    assert e.draw == 1
    assert not np.array_equal(before, np.asarray(e.views["MoCo-v2 view 1 (query)"]))
    e.strategy.value = "same-image"
    assert e.positive_index == i
    assert len(e.snapshot().axes) == len(e.PANELS)


def test_nearest_neighbours_match_brute_force() -> None:
    """Cosine neighbours agree with a direct computation and respect exclusions."""
    x = np.random.default_rng(0).normal(size=(30, 5))
    idx, sims = viz.nearest_neighbours(x, 4, k=6)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = xn @ xn[4]
    s[4] = -np.inf
    assert idx.tolist() == np.argsort(-s, kind="stable")[:6].tolist()
    assert np.allclose(sims, s[idx])
    idx2, _ = viz.nearest_neighbours(x, 4, k=6, exclude=idx[:2])
    assert idx2.tolist() == np.argsort(-s, kind="stable")[2:8].tolist()


def test_retrieval_explorer_follows_the_query(manifest: pd.DataFrame) -> None:
    """Changing the query or skipping its location updates every method's neighbours."""
    df = manifest.reset_index(drop=True)
    codes = df["label"].astype("category").cat.codes.to_numpy()
    rng = np.random.default_rng(0)
    places = df["location_id"].astype("category").cat.codes.to_numpy()
    by_label = np.hstack([np.eye(3)[codes], 0.5 * np.eye(12)[places]]) + 0.01 * rng.normal(size=(len(df), 15))
    feats = {"by label": by_label, "random": rng.normal(size=(len(df), 4))}
    r = viz.retrieval_explorer(df, feats, k=3)
    assert r.label_precision()["by label"] == 1.0
    q = int(df.index[df.location_id == "loc003"][0])
    r.query.value = q
    assert q not in r.neighbours["random"]
    with_loc = r.neighbours["by label"]
    assert all(df.loc[j, "location_id"] == "loc003" for j in with_loc)  # its 3 other revisits
    r.exclude_same_location.value = True
    assert all(df.loc[j, "location_id"] != "loc003" for m in r.neighbours.values() for j in m)
    assert r.neighbours["by label"] != with_loc
    assert len(r.snapshot().axes) == 2 * 4
    with pytest.raises(ValueError, match="one row per manifest row"):
        viz.retrieval_explorer(df, {"bad": np.zeros((3, 2))})


def test_image_grid(manifest: pd.DataFrame) -> None:
    """The grid shows the asked rows with their captions."""
    fig = viz.image_grid(manifest, rows=[0, 3, 5], ncols=2, caption="location_id", title="geoworld: simulated data")
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == [manifest.iloc[i]["location_id"] for i in (0, 3, 5)]


def test_image_grid_draws_small_images_at_their_own_resolution(manifest: pd.DataFrame, tmp_path: Path) -> None:
    """A 32-px image is drawn as its 32 x 32 pixels (each a block, no enlarged copy: a lighter PNG in
    the notebook); a bigger one is shrunk to ``size``; an unreadable one becomes a grey tile."""
    from PIL import Image

    big = tmp_path / "big.png"
    Image.new("RGB", (200, 150), (10, 200, 30)).save(big)
    df = manifest.head(2).copy()
    df.loc[df.index[1], "path"] = str(big)
    df = pd.concat([df, df.head(1).assign(path=str(tmp_path / "missing.png"))], ignore_index=True)
    fig = viz.image_grid(df, rows=[0, 1, 2], ncols=3, size=96)
    small, shrunk, missing = (ax.images[0] for ax in fig.axes if ax.images)
    assert small.get_array().shape == (32, 32, 3) and small.get_interpolation() == "nearest"
    assert shrunk.get_array().shape == (96, 96, 3) and shrunk.get_interpolation() != "nearest"
    assert missing.get_array().shape == (96, 96, 3)
