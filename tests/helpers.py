"""Shared test factories: tiny, real, seeded data made in code (no downloads).

``make_manifest`` writes a handful of small PNG images and a valid manifest that follows
the contract in ``data_manifests/SCHEMA.md``: several revisits per location, timestamps
spread over years and seasons, locations on several continents (both hemispheres, both
sides of the antimeridian), and an image colour that depends on the label so that a
linear probe has something to learn.

Import from tests as ``from helpers import make_manifest`` (pytest puts ``tests/`` on the
path through ``rootdir``-relative imports) or ``from tests.helpers import ...``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

#: (lat, lon) of the places the fake locations are scattered around: several continents,
#: both hemispheres, both sides of the antimeridian.
PLACES: tuple[tuple[float, float], ...] = (
    (48.85, 2.35),  # Paris
    (-33.87, 151.21),  # Sydney
    (40.71, -74.01),  # New York
    (-23.55, -46.63),  # Sao Paulo
    (35.68, 139.69),  # Tokyo
    (-1.29, 36.82),  # Nairobi
    (64.15, -21.94),  # Reykjavik
    (-17.7, 178.4),  # Fiji (near the antimeridian)
    (28.61, 77.21),  # Delhi
    (-36.85, 174.76),  # Auckland
    (61.22, -149.9),  # Anchorage
    (-34.6, -58.38),  # Buenos Aires
)

#: Base RGB colour per label (cycled when there are more labels).
_COLOURS = ((200, 60, 40), (40, 160, 60), (40, 80, 200), (200, 180, 40), (140, 40, 160), (40, 170, 170))

DEFAULT_LABELS: tuple[str, ...] = ("airport", "crop_field", "port")
DEFAULT_SPLITS: tuple[str, ...] = ("train", "train", "val", "test")


def make_manifest(
    tmp_path: str | Path,
    n_locations: int = 6,
    revisits: Sequence[int] = (1, 2, 3, 4),
    size: int = 32,
    labels: Sequence[str] = DEFAULT_LABELS,
    splits: Sequence[str] = DEFAULT_SPLITS,
    seed: int = 0,
    fmt: str = "parquet",
) -> Path:
    """Write tiny PNG images and a valid manifest under ``tmp_path``; return the manifest.

    Location ``i`` gets ``revisits[i % len(revisits)]`` images, label
    ``labels[i % len(labels)]`` and split ``splits[i % len(splits)]`` (with the defaults
    and 6 locations: 4 train, 1 val, 1 test locations; 15 images; one location with a
    single image). Images live in ``tmp_path/images/<location_id>/<image_id>.png`` and the
    manifest stores paths relative to its folder.

    Args:
        tmp_path: folder to write into (pytest's ``tmp_path``).
        n_locations: number of locations.
        revisits: images per location, cycled over locations.
        size: image side in pixels.
        labels: category names, cycled over locations.
        splits: split names, cycled over locations.
        seed: seed for coordinates jitter, times and pixels.
        fmt: ``"parquet"`` or ``"csv"``.

    Returns:
        Path of ``tmp_path/manifest.<fmt>``.
    """
    from geolab.manifest import save_manifest

    tmp_path = Path(tmp_path)
    rng = np.random.default_rng(seed)
    img_dir = tmp_path / "images"
    label_list = list(labels)
    rows = []
    for i in range(n_locations):
        loc = f"loc{i:03d}"
        base_lat, base_lon = PLACES[i % len(PLACES)]
        lat = float(np.clip(base_lat + rng.uniform(-0.5, 0.5), -89.9, 89.9))
        lon = float(((base_lon + rng.uniform(-0.5, 0.5) + 180.0) % 360.0) - 180.0)
        label = label_list[i % len(label_list)]
        split = splits[i % len(splits)]
        colour = np.array(_COLOURS[label_list.index(label) % len(_COLOURS)], dtype=np.float64)
        n = int(revisits[i % len(revisits)])
        # revisits spread over 2014-2020 and over the seasons (about 14 months apart)
        start = pd.Timestamp("2014-01-15T10:30:00Z") + pd.Timedelta(days=int(rng.integers(0, 365)))
        for t in range(n):
            ts = start + pd.Timedelta(days=int(t * 420 + rng.integers(0, 60)), seconds=int(rng.integers(0, 86400)))
            image_id = f"{loc}_{t}"
            rel = Path("images") / loc / f"{image_id}.png"
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            noise = rng.normal(0.0, 20.0, size=(size, size, 3))
            pixels = np.clip(colour * rng.uniform(0.8, 1.2) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="RGB").save(tmp_path / rel)
            rows.append(
                {
                    "image_id": image_id,
                    "location_id": loc,
                    "path": rel.as_posix(),
                    "timestamp": ts,
                    "lat": lat,
                    "lon": lon,
                    "label": label,
                    "split": split,
                    "gsd": float(round(rng.uniform(0.3, 2.0), 3)),
                    "cloud_cover": float(rng.integers(0, 40)),
                }
            )
    df = pd.DataFrame(rows)
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    return save_manifest(df, tmp_path / f"manifest.{fmt}")


def manifest_rows(tmp_path: str | Path, **kwargs) -> pd.DataFrame:
    """:func:`make_manifest`, loaded: a validated DataFrame with absolute paths."""
    from geolab.manifest import load_manifest

    return load_manifest(make_manifest(tmp_path, **kwargs))


def break_image(path: str | Path, how: str) -> None:
    """Damage an image file the ways real data sets do.

    Args:
        path: the image.
        how: ``"zero"`` (zero bytes), ``"truncate"`` (first 40% of the bytes),
            ``"garbage"`` (not an image at all) or ``"missing"`` (deleted).
    """
    path = Path(path)
    if how == "zero":
        path.write_bytes(b"")
    elif how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: max(1, int(len(data) * 0.4))])
    elif how == "garbage":
        path.write_bytes(b"this is not an image\n" * 20)
    elif how == "missing":
        path.unlink()
    else:
        raise ValueError(f"unknown damage {how!r}")


# ----------------------------------------------------------------------------- headless Chromium
# Shared by the browser tests (test_map_browser.py, test_book_browser.py): Debian's chromium and
# chromium-driver (never a downloaded browser) through selenium, with the network cut off.

CHROMIUM = os.environ.get("GEOLAB_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("GEOLAB_CHROMEDRIVER", "/usr/bin/chromedriver")

#: Flags: headless, no sandbox (CI runs as root), nothing in the background, and a proxy
#: that refuses every connection plus a resolver that knows no host, so any request for
#: the network fails instead of reaching it.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--window-size=1200,800",
)


def missing_browser() -> str | None:
    """Why headless Chromium cannot run here (the skip reason), or None when it can."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} not found: install Debian's {package} (apt-get install -y chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (it is in geolab's test extra)"
    return None


@contextmanager
def offline_chromium() -> Iterator[object]:
    """Headless Chromium through chromedriver with every request sent to a dead proxy.

    Selenium Manager never runs: the driver's path is given. The browser and performance logs
    are on (``driver.get_log("browser")``, :func:`requested_urls`).
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="geolab-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def requested_urls(driver: object) -> list[str]:
    """Every URL the browser asked for since the performance log was last read (and empties it)."""
    urls = []
    for entry in driver.get_log("performance"):  # type: ignore[attr-defined]
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def left_the_machine(urls: Sequence[str]) -> list[str]:
    """The URLs that are not ``file://``, ``data:`` or ``chrome://`` (the browser's own bundled resources)."""
    return [u for u in urls if not u.startswith(("file://", "data:", "chrome://"))]
