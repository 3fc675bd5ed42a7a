"""The course's static site (``make book``) in a real browser with the network off.

Headless Chromium (Debian's, through selenium; ``helpers.offline_chromium``) opens every page of
the site built from ``test_book.make_course_run``'s tiny run from ``file://``, with every request
sent to a dead proxy, and checks what a reader would see: each page loads with no console error,
its figures decode, the math is MathML, the folium map draws its markers inside its frame, and no
request left ``file://``/``data:``. A last test shows that the same check fails for a page that
asks a CDN for MathJax (the check can fail).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

#: page -> least number of decoded images on it
FIGURES = {"00_intro": 0, "01_figures": 4, "02_map": 0, "results": 1, "world_card": 0, "index": 0, "search": 0}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The tiny run's site: its folder and the number of locations on its map."""
    from test_book import make_course_run

    from geolab.course.book import build_book

    run, n_locations = make_course_run(tmp_path_factory.mktemp("book-browser"))
    return build_book(run).parent, n_locations


def _open(driver: object, page: Path) -> None:
    driver.get_log("performance")  # type: ignore[attr-defined]  # drop what came before
    driver.get_log("browser")  # type: ignore[attr-defined]
    driver.get(page.as_uri())  # type: ignore[attr-defined]
    deadline = time.monotonic() + 15
    while driver.execute_script("return document.readyState") != "complete" and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.1)
    time.sleep(0.3)  # deferred scripts of the theme


def _map_markers(driver: object, timeout: float = 15.0) -> int:
    """Markers drawn inside the page's map frame (waits for Leaflet)."""
    from geolab.viz import maps

    driver.switch_to.frame(driver.find_element("css selector", "iframe"))  # type: ignore[attr-defined]
    try:
        deadline = time.monotonic() + timeout
        while True:
            n = int(driver.execute_script(  # type: ignore[attr-defined]
                "return document.querySelectorAll(arguments[0]).length;", f"path.{maps.CLASS_LOCATION}"))  # fmt: skip
            if n or time.monotonic() > deadline:
                return n
            time.sleep(0.1)
    finally:
        driver.switch_to.default_content()  # type: ignore[attr-defined]


def test_every_page_loads_offline_with_its_figures(browser: object, site: tuple[Path, int]) -> None:
    """Each page: no console error or warning, its images decoded, no request off the machine;
    the intro's math is MathML; the map page's frame draws one marker per location."""
    from helpers import left_the_machine, requested_urls

    folder, n_locations = site
    for name, least in FIGURES.items():
        _open(browser, folder / f"{name}.html")
        errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]  # type: ignore[attr-defined]
        assert errors == [], (name, errors)
        images = browser.execute_script(  # type: ignore[attr-defined]
            "return Array.from(document.querySelectorAll('article img')).map(i => i.complete && i.naturalWidth > 0);"
        )
        assert len(images) >= least and all(images), (name, images)
        if name == "00_intro":
            assert browser.execute_script("return document.querySelectorAll('article math').length;") >= 3  # type: ignore[attr-defined]
        if name == "02_map":
            assert _map_markers(browser) == n_locations
        urls = requested_urls(browser)
        assert any(u.startswith("file://") for u in urls), (name, urls)
        assert left_the_machine(urls) == [], (name, left_the_machine(urls)[:5])


def test_a_page_asking_a_cdn_is_caught(browser: object, site: tuple[Path, int], tmp_path: Path) -> None:
    """The same checks fail for a copy of a page that loads MathJax from a CDN."""
    from helpers import left_the_machine, requested_urls

    folder, _ = site
    copy = tmp_path / "site"
    shutil.copytree(folder, copy)
    page = copy / "00_intro.html"
    cdn = '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'
    page.write_text(page.read_text(encoding="utf-8").replace("</head>", cdn + "</head>"), encoding="utf-8")
    _open(browser, page)
    assert any("mathjax" in u for u in left_the_machine(requested_urls(browser)))
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[attr-defined]
