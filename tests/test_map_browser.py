"""A saved map renders in a real browser with the network off.

Headless Chromium (Debian's ``chromium`` and ``chromium-driver``; never a downloaded browser)
opens the map page from ``file://`` with every network request sent to a dead proxy, and the
test checks what a learner would see: one marker per location, one region per geo cluster,
the accuracy layer, the land outline, the legend and layer control, a popup with thumbnails,
no console errors, and no request that left ``file://``/``data:``.

With ``GEOLAB_SCREENSHOTS=1`` a last test remakes the README's pictures in ``docs/img/`` from
a small geoworld (make_manifest's images are noise, geoworld's look like places).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def map_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    """A map of 12 locations in 4 geo clusters with an accuracy layer, saved to a file."""
    from helpers import make_manifest

    import geolab.viz as viz
    from geolab.geo import add_geo_clusters
    from geolab.manifest import load_manifest

    folder = tmp_path_factory.mktemp("browser")
    df = add_geo_clusters(load_manifest(make_manifest(folder, n_locations=12)), k=4, seed=0)
    acc = viz.cluster_accuracy(df, np.asarray(df.index % 3 != 0))
    m = viz.location_map(df, color_by="label", accuracy=acc, thumbs=3)
    page = viz.save_map(m, folder / "map.html")
    return page, df["location_id"].nunique(), df["geo_cluster"].nunique()


def _count(driver: object, css: str) -> int:
    return int(driver.execute_script("return document.querySelectorAll(arguments[0]).length;", css))  # type: ignore[attr-defined]


def _wait_for(driver: object, css: str, n: int, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        got = _count(driver, css)
        if got >= n or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def _check_page(driver: object, page: Path, n_locations: int, n_clusters: int, popup: int, shot: Path) -> None:
    """Open ``page`` offline and check what it shows; open marker ``popup``'s popup; screenshot."""
    from helpers import left_the_machine, requested_urls

    from geolab.viz import maps

    driver.get_log("performance")  # type: ignore[attr-defined]  # drop the browser's start-up requests
    driver.get_log("browser")  # type: ignore[attr-defined]
    driver.get(page.as_uri())  # type: ignore[attr-defined]

    assert _wait_for(driver, f"path.{maps.CLASS_LOCATION}", n_locations) == n_locations
    assert _count(driver, f"path.{maps.CLASS_REGION}") == n_clusters
    assert _count(driver, f"path.{maps.CLASS_ACCURACY}") == n_clusters
    assert _count(driver, f"path.{maps.CLASS_LAND}") > 50  # continents and islands
    assert _count(driver, ".geolab-legend") == 1
    assert _count(driver, ".leaflet-control-layers-overlays input") == 4  # land, clusters, accuracy, locations

    # markers are added in location order, so marker ``popup`` is the location_table's row
    driver.execute_script(  # type: ignore[attr-defined]
        "document.querySelectorAll(arguments[0])[arguments[1]].dispatchEvent(new MouseEvent('click', {bubbles: true}));",
        f"path.{maps.CLASS_LOCATION}",
        popup,
    )
    assert _wait_for(driver, ".leaflet-popup-content img", 1) >= 1
    images_ok = driver.execute_script(  # type: ignore[attr-defined]
        "return Array.from(document.querySelectorAll('.leaflet-popup-content img'))"
        ".every(i => i.complete && i.naturalWidth > 0);"
    )
    assert images_ok, "a popup thumbnail did not decode"
    time.sleep(0.6)  # let Leaflet finish panning the popup into view before the screenshot

    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]  # type: ignore[attr-defined]
    assert errors == [], errors

    requests = requested_urls(driver)
    assert requests, "the performance log recorded no request at all (the page load itself is one)"
    # chrome:// is the browser's own bundled resources (Chromium sometimes loads an icon of its
    # UI there while the page is open); it never leaves the machine, unlike http(s)
    outside = left_the_machine(requests)
    assert outside == [], f"requests left the file: {outside[:5]}"

    shot.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(shot))  # type: ignore[attr-defined]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_map_renders_offline_with_markers_regions_and_no_errors(browser: object, map_page: tuple[Path, int, int]) -> None:
    """Offline, the page draws one marker per location, one region per geo cluster (and one
    accuracy region each), the land outline, legend and layer control; a popup shows the
    revisits as thumbnails; the console has no errors; every request stayed on file:// or
    data: (or chrome://, the browser's own resources): nothing went to the network."""
    page, n_locations, n_clusters = map_page
    _check_page(browser, page, n_locations, n_clusters, popup=3, shot=page.with_suffix(".png"))
    popup_text = browser.execute_script("return document.querySelector('.leaflet-popup-content').textContent;")  # type: ignore[attr-defined]
    assert "loc003" in popup_text and "4 revisits" in popup_text
    assert _count(browser, ".leaflet-popup-content img") == 3  # thumbs=3 of its 4 revisits


@pytest.mark.skipif(not os.environ.get("GEOLAB_SCREENSHOTS"), reason="set GEOLAB_SCREENSHOTS=1 to remake docs/img/")
def test_readme_screenshots_from_geoworld(browser: object, tmp_path: Path) -> None:
    """Remake the README's pictures from a small geoworld (same checks as above):
    docs/img/map.png (this page in Chromium) and docs/img/revisit_viewer.png (the revisit
    viewer's state rendered with matplotlib, ``RevisitViewer.snapshot``)."""
    from PIL import Image

    import geolab.viz as viz
    from geolab.geo import add_geo_clusters
    from geolab.manifest import load_manifest
    from geolab.world import load_world

    df = add_geo_clusters(load_manifest(load_world(seed=0, locations=60, progress=False)), k=8, seed=0)
    correct = np.random.default_rng(0).random(len(df)) < np.where(df["lat"] > 0, 0.8, 0.45)  # illustrative flags
    m = viz.location_map(df, color_by="label", accuracy=viz.cluster_accuracy(df, correct), thumbs=4, thumb_size=56)
    page = viz.save_map(m, tmp_path / "map.html")
    locs = viz.location_table(df)
    richest = int(locs["n_images"].to_numpy().argmax())
    shot = REPO / "docs" / "img" / "map.png"
    _check_page(browser, page, len(locs), df["geo_cluster"].nunique(), popup=richest, shot=shot)
    # a palette PNG keeps the committed picture small
    Image.open(shot).convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(shot, optimize=True)

    viewer = viz.revisit_viewer(df, size=160)
    viewer.slider.value = min(2, viewer.slider.max)
    picture = viz.save_figure(viewer.snapshot(), REPO / "docs" / "img" / "revisit_viewer.png", dpi=70)
    Image.open(picture).convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(picture, optimize=True)


def test_a_page_that_needs_the_network_is_caught(browser: object, tmp_path: Path) -> None:
    """The same checks fail for a folium page left with its CDN links: Leaflet does not load
    offline, so no marker appears and the console reports errors (the checks can fail)."""
    import folium

    m = folium.Map(location=[0, 0], zoom_start=1, tiles=None)
    folium.CircleMarker([10, 10], radius=5, class_name="geolab-location").add_to(m)
    page = tmp_path / "online.html"
    m.save(str(page))
    driver = browser
    driver.get_log("performance")  # type: ignore[attr-defined]
    driver.get(page.as_uri())  # type: ignore[attr-defined]
    time.sleep(0.5)
    assert _count(driver, "path.geolab-location") == 0
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[attr-defined]
    from helpers import requested_urls

    urls = requested_urls(driver)
    assert any(u.startswith("https://") for u in urls)
