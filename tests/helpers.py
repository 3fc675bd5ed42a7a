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

from collections.abc import Sequence
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
