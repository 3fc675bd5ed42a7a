"""The static scene of one location: what stands on the ground, drawn once per location.

A scene is a set of rasters on a square *canonical grid* in scene units: ``[-1, 1]`` is the
object's box (an airport, a stadium...), the grid covers ``[-MARGIN, MARGIN]`` so that
revisits can zoom out or shift a little, and one unit is :attr:`Scene.half_extent_m`
metres. Every revisit of the location is rendered from the same scene, so its layout stays
put; what changes over time is encoded in it too (a building's construction year, a lake's
shore depth, the fields' crop calendar, where vehicles can park) and read by
:mod:`geolab.world.render` at the image's date.

Each category has one painter (:mod:`geolab.world.painters`) that draws the object with the
primitives of :class:`geolab.world.canvas.Canvas` (rotated rectangles, thick polylines, ellipses,
noisy blobs, stripes). The drawing is plain numpy on the canonical grid; small objects are painted
inside their bounding box only, so a scene with hundreds of houses takes milliseconds. This module
holds the categories, the :class:`Scene` and :func:`build_scene`, which puts them together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geolab.world.canvas import MARGIN, Canvas, fbm
from geolab.world.geography import Site
from geolab.world.painters import PAINTERS, paint_background, water_colour

#: The categories, named after fMoW's (Christie et al. 2018).
CATEGORIES: tuple[str, ...] = (
    "airport",
    "crop_field",
    "lake_or_pond",
    "parking_lot_or_garage",
    "port",
    "road_bridge",
    "single-unit_residential",
    "solar_farm",
    "stadium",
    "wind_farm",
)

HALF_EXTENT_M: dict[str, tuple[float, float]] = {
    "airport": (700.0, 1600.0),
    "crop_field": (250.0, 700.0),
    "lake_or_pond": (80.0, 600.0),
    "parking_lot_or_garage": (50.0, 130.0),
    "port": (200.0, 700.0),
    "road_bridge": (80.0, 300.0),
    "single-unit_residential": (80.0, 220.0),
    "solar_farm": (120.0, 500.0),
    "stadium": (90.0, 200.0),
    "wind_farm": (250.0, 700.0),
}



@dataclass
class Scene:
    """The static rasters of one location (see the module docstring).

    Attributes:
        category: the location's label.
        half_extent_m: metres per scene unit.
        mat: material id per canonical pixel (the finished scene).
        pre_mat: material before construction (where ``built`` is later than the date).
        built: decimal year a pixel's material appears (``-inf``: always there).
        height: metres above ground (casts shadows).
        tint: RGB multiplier per pixel (roof colours, field variety), float32 (C, C, 3).
        field_id: id of the field or object a pixel belongs to (crop calendars), int32.
        shore: for lakes, metres inside the shoreline (water where it exceeds the day's
            drawdown); ``nan`` elsewhere.
        noise: two texture fields (C, C, 2), zero mean, unit variance.
        slots: vehicle slots, rows ``(x, y, length, width, angle, kind)`` in canonical
            pixels/radians; kind 0 car, 1 aircraft, 2 ship, 3 container.
        water_rgb: this location's water colour (turbidity).
        lake_drawdown_m: seasonal and trend amplitude of the lake's shoreline change.
    """

    category: str
    half_extent_m: float
    mat: np.ndarray
    pre_mat: np.ndarray
    built: np.ndarray
    height: np.ndarray
    tint: np.ndarray
    field_id: np.ndarray
    shore: np.ndarray
    noise: np.ndarray
    slots: np.ndarray
    water_rgb: np.ndarray
    lake_drawdown_m: float = 0.0

    @property
    def size(self) -> int:
        """Side of the canonical grid in pixels."""
        return self.mat.shape[0]

    @property
    def pixel_m(self) -> float:
        """Metres per canonical pixel."""
        return 2 * MARGIN * self.half_extent_m / self.size


def build_scene(category: str, site: Site, rng: np.random.Generator, size: int) -> Scene:
    """Draw the static scene of one location.

    Args:
        category: one of :data:`CATEGORIES`.
        site: the place (climate, continent, coast, urban).
        rng: the location's own random generator (the same seed gives the same layout).
        size: side of the canonical grid in pixels.

    Returns:
        The :class:`Scene`.
    """
    if category not in PAINTERS:
        raise ValueError(f"Unknown geoworld category {category!r}; choose one of {', '.join(CATEGORIES)}.")
    lo, hi = HALF_EXTENT_M[category]
    cv = Canvas(size=size, half_extent_m=float(rng.uniform(lo, hi)), rng=rng)
    noise = np.stack([fbm(rng, size, ((4, 1.0), (8, 0.6), (16, 0.35))), fbm(rng, size, ((16, 1.0), (32, 0.7)))], -1)
    paint_background(cv, site, noise[..., 0], fbm(rng, size, ((3, 1.0), (6, 0.5))))
    PAINTERS[category](cv, site)
    slots = np.array(cv.slots, dtype=np.float32).reshape(-1, 6)
    return Scene(
        category=category,
        half_extent_m=cv.half_extent_m,
        mat=cv.mat,
        pre_mat=cv.pre_mat,
        built=cv.built,
        height=cv.height,
        tint=cv.tint,
        field_id=cv.field_id,
        shore=cv.shore,
        noise=noise.astype(np.float32),
        slots=slots,
        water_rgb=water_colour(rng, site),
        lake_drawdown_m=float(rng.uniform(2, 25)) if category == "lake_or_pond" else 0.0,
    )
