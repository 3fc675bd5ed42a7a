"""A coarse land outline of the Earth, drawn under maps that have no tiles.

Source: the ``global-land-mask`` package (GLOBE's 1-km land/sea raster, shipped in its wheel;
a geolab dependency already, since geoworld places its locations with it). The raster is
averaged into cells of ``resolution`` degrees (fraction of land per cell), and contourpy (the
contouring library under matplotlib) traces the 0.5 level into filled polygons with holes.
The result is a GeoJSON FeatureCollection cached under ``GEOLAB_CACHE/viz/``: the first call
takes a few seconds (decompressing the raster, streamed in bands of a few MB), later calls
read a small file.
"""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path
from typing import Any, cast

import contourpy
import numpy as np

from geolab import paths
from geolab.io import atomic_write_text

#: Bump when the tracing changes, so old caches are not reused.
LAND_VERSION = 1
_MASK_FILE = "globe_combined_mask_compressed.npz"


def land_cache_path(resolution: float) -> Path:
    """Cache file of the land outline at ``resolution`` degrees."""
    return paths.cache_dir() / "viz" / f"land-v{LAND_VERSION}-{resolution:g}deg.geojson"


def _land_fraction(resolution: float) -> tuple[np.ndarray, float]:
    """Share of land in each ``resolution``-degree cell, rows from north to south.

    The raster (21600 x 43200 booleans, True = ocean, 1/120 degree, rows from 90N) is streamed
    out of the package's ``.npz`` one band of cells at a time, so tracing needs a few MB of
    memory instead of the ~1 GB that ``global_land_mask.globe`` keeps loaded.
    """
    try:
        # find_spec locates the package without importing it: its __init__ loads the raster
        spec = importlib.util.find_spec("global_land_mask")
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError("global_land_mask")
        file = Path(list(spec.submodule_search_locations)[0]) / _MASK_FILE
        with zipfile.ZipFile(file) as zf, zf.open("mask.npy") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran_order, dtype = read_header(fh)
            if fortran_order or dtype != np.bool_ or len(shape) != 2:
                raise RuntimeError(
                    f"{_MASK_FILE} holds a {dtype} array of shape {shape}; expected a C-order bool raster."
                )
            n_rows, n_cols = shape
            cells_per_degree = n_cols / 360.0
            factor = int(round(resolution * cells_per_degree))
            if factor < 1 or n_rows % factor or n_cols % factor:
                raise ValueError(
                    f"resolution={resolution} degrees does not divide the 1/120-degree land raster "
                    "evenly; use e.g. 0.25, 0.5, 1 or 2."
                )
            sea = np.empty((n_rows // factor, n_cols // factor), dtype=np.uint32)
            band_bytes = factor * n_cols
            for i in range(sea.shape[0]):
                band = np.frombuffer(fh.read(band_bytes), dtype=np.bool_).reshape(factor, n_cols // factor, factor)
                sea[i] = band.sum(axis=(0, 2), dtype=np.uint32)
    except (ModuleNotFoundError, FileNotFoundError, KeyError) as exc:
        raise RuntimeError(
            "The land outline needs the package global-land-mask (a geolab dependency) and its "
            f"{_MASK_FILE}: `pip install global-land-mask`."
        ) from exc
    return 1.0 - sea / float(factor * factor), factor / cells_per_degree


def trace_land(resolution: float = 0.5) -> dict[str, Any]:
    """Trace the land outline (no cache; see :func:`land_outline`).

    Args:
        resolution: cell size in degrees (0.5 gives about 12k vertices, ~250 KB of JSON).

    Returns:
        A GeoJSON FeatureCollection of Polygons (outer ring first, then holes), lon/lat in
        degrees rounded to 0.01, every ring closed; polygons touching the antimeridian are
        split there (the grid is padded with sea on all sides).
    """
    frac, step = _land_fraction(resolution)
    padded = np.zeros((frac.shape[0] + 2, frac.shape[1] + 2))
    padded[1:-1, 1:-1] = frac
    # Cell centres; the padding rows/columns sit just outside [-180, 180] x [-90, 90] and are
    # clamped onto the edge so outlines close along it.
    lon = -180.0 + (np.arange(padded.shape[1]) - 0.5) * step
    lat = 90.0 - (np.arange(padded.shape[0]) - 0.5) * step
    lon = np.clip(lon, -180.0, 180.0)
    lat = np.clip(lat, -90.0, 90.0)
    gen = contourpy.contour_generator(x=lon, y=lat, z=padded, fill_type="OuterOffset")
    # fill_type OuterOffset: (points per polygon, ring offsets per polygon); contourpy's stub gives the union of
    # every fill type's return
    polys, offsets = cast("tuple[list[np.ndarray], list[np.ndarray]]", gen.filled(0.5, 2.0))
    features = []
    for points, offs in zip(polys, offsets):
        rings = []
        for a, b in zip(offs[:-1], offs[1:]):
            ring = np.round(points[a:b], 2)
            if len(ring) < 4:
                continue
            ring_list = ring.tolist()
            if ring_list[0] != ring_list[-1]:
                ring_list.append(ring_list[0])
            rings.append(ring_list)
        if rings:
            features.append(
                {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": rings}}
            )
    return {
        "type": "FeatureCollection",
        "features": features,
        "properties": {
            "source": "global-land-mask (GLOBE 1-km land/sea mask), traced by geolab",
            "resolution_deg": resolution,
        },
    }


def land_outline(resolution: float = 0.5, cache: bool = True) -> dict[str, Any]:
    """The land outline as GeoJSON, traced once and then read from the cache.

    Args:
        resolution: cell size in degrees (default 0.5).
        cache: read/write ``GEOLAB_CACHE/viz/land-*.geojson``.

    Returns:
        See :func:`trace_land`.
    """
    path = land_cache_path(resolution)
    if cache and path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            pass  # a damaged cache is traced again below
    outline = trace_land(resolution)
    if cache:
        atomic_write_text(path, json.dumps(outline, separators=(",", ":")))
    return outline
