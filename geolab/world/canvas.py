"""The canonical grid of a geoworld scene: materials, mask classes, texture noise and the painting canvas.

The grid is square and covers ``[-MARGIN, MARGIN]`` scene units (the object's box is ``[-1, 1]``);
:class:`Canvas` holds the rasters a scene is drawn into and paints primitives (rotated rectangles,
thick polylines, ellipses, noisy blobs) on it in scene units. :mod:`geolab.world.painters` draws
the categories with it, :mod:`geolab.world.scene` turns a finished canvas into a
:class:`~geolab.world.scene.Scene`, and :mod:`geolab.world.render` reads the materials.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

#: The canonical grid covers [-MARGIN, MARGIN] scene units (the object's box is [-1, 1]).
MARGIN = 1.3

# Materials: (name, class in the dense mask). Mask classes: 0 background, 1 building,
# 2 water, 3 road or pavement.
MATERIALS: tuple[tuple[str, int], ...] = (
    ("grass", 0),
    ("forest", 0),
    ("soil", 0),
    ("crop", 0),
    ("water", 2),
    ("asphalt", 3),
    ("concrete", 3),
    ("roof", 1),
    ("flat_roof", 1),
    ("solar_panel", 1),
    ("turf", 0),
    ("track", 0),
    ("sand", 0),
    ("gravel", 3),
    ("turbine", 1),
)
M = {name: i for i, (name, _) in enumerate(MATERIALS)}
#: Material id -> mask class.
MASK_CLASS = np.array([c for _, c in MATERIALS], dtype=np.uint8)
MASK_CLASSES: tuple[str, ...] = ("background", "building", "water", "road")
#: The whole canonical grid as a window.
FULL = (slice(None), slice(None))



def fbm(rng: np.random.Generator, size: int, octaves: tuple[tuple[int, float], ...]) -> np.ndarray:
    """Smooth random texture: a sum of upsampled random grids (value noise), zero mean, unit std.

    Args:
        rng: random generator.
        size: output side in pixels.
        octaves: ``(grid cells, amplitude)`` pairs, coarse to fine.
    """
    out = np.zeros((size, size), dtype=np.float32)
    for cells, amp in octaves:
        g = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
        # Pillow's bicubic resize of a float image: a fast, deterministic upsampler.
        out += amp * np.asarray(Image.fromarray(g, "F").resize((size, size), Image.Resampling.BICUBIC))
    out -= out.mean()
    return out / (out.std() + 1e-6)


@dataclass
class Canvas:
    """Mutable rasters plus helpers that paint primitives in scene units."""

    size: int
    half_extent_m: float
    rng: np.random.Generator
    x: np.ndarray = field(init=False)
    y: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = self.size
        c = (np.arange(n, dtype=np.float32) + 0.5) / n * 2 * MARGIN - MARGIN
        self.x, self.y = np.meshgrid(c, c)  # x east, y south (image rows)
        self.mat = np.full((n, n), M["grass"], dtype=np.uint8)
        self.pre_mat = np.full((n, n), M["grass"], dtype=np.uint8)
        self.built = np.full((n, n), -np.inf, dtype=np.float32)
        self.height = np.zeros((n, n), dtype=np.float32)
        self.tint = np.ones((n, n, 3), dtype=np.float32)
        self.field_id = np.zeros((n, n), dtype=np.int32)
        self.shore = np.full((n, n), np.nan, dtype=np.float32)
        self.slots: list[tuple[float, float, float, float, float, int]] = []
        self._next_id = 1

    # ------------------------------------------------------------------ coordinates
    def px(self, u: float) -> float:
        """Scene units -> canonical pixels (lengths)."""
        return u * self.size / (2 * MARGIN)

    def to_px(self, u: float, v: float) -> tuple[float, float]:
        """Scene point -> canonical pixel coordinates (col, row)."""
        return (u + MARGIN) * self.size / (2 * MARGIN) - 0.5, (v + MARGIN) * self.size / (2 * MARGIN) - 0.5

    def m(self, metres: float) -> float:
        """Metres -> scene units."""
        return metres / self.half_extent_m

    def new_id(self) -> int:
        """A fresh object id (for ``field_id``)."""
        self._next_id += 1
        return self._next_id

    def window(self, cx: float, cy: float, r: float) -> tuple[slice, slice]:
        """Rows/cols of the canonical grid within ``r`` scene units of (cx, cy)."""
        n = self.size
        c0, r0 = self.to_px(cx - r, cy - r)
        c1, r1 = self.to_px(cx + r, cy + r)
        return (
            slice(max(0, int(np.floor(r0))), min(n, int(np.ceil(r1)) + 1)),
            slice(max(0, int(np.floor(c0))), min(n, int(np.ceil(c1)) + 1)),
        )

    # ------------------------------------------------------------------ shapes (bool masks)
    def rect(self, cx: float, cy: float, w: float, h: float, ang: float, win=None) -> tuple[np.ndarray, tuple]:
        """Rotated rectangle (centre, width along ``ang``, height across), scene units."""
        win = win or self.window(cx, cy, 0.5 * np.hypot(w, h) + 1e-3)
        dx, dy = self.x[win] - cx, self.y[win] - cy
        ca, sa = np.cos(ang), np.sin(ang)
        a, b = dx * ca + dy * sa, -dx * sa + dy * ca
        return (np.abs(a) <= w / 2) & (np.abs(b) <= h / 2), win

    def segment_dist(self, p0, p1, win=None) -> tuple[np.ndarray, tuple]:
        """Distance (scene units) to the segment p0-p1."""
        if win is None:
            win = (slice(None), slice(None))
        x, y = self.x[win], self.y[win]
        d = np.array(p1, dtype=np.float32) - np.array(p0, dtype=np.float32)
        t = np.clip(((x - p0[0]) * d[0] + (y - p0[1]) * d[1]) / max(float(d @ d), 1e-9), 0, 1)
        return np.hypot(x - p0[0] - t * d[0], y - p0[1] - t * d[1]), win

    def polyline(self, pts, width: float) -> np.ndarray:
        """Full-grid mask of a thick polyline (roads, runways, rivers)."""
        out = np.zeros((self.size, self.size), dtype=bool)
        for p0, p1 in zip(pts[:-1], pts[1:]):
            d, _ = self.segment_dist(p0, p1)
            out |= d <= width / 2
        return out

    def ellipse(self, cx, cy, a, b, ang=0.0) -> np.ndarray:
        """Full-grid ellipse mask (semi-axes a along ``ang``, b across)."""
        dx, dy = self.x - cx, self.y - cy
        ca, sa = np.cos(ang), np.sin(ang)
        u, v = dx * ca + dy * sa, -dx * sa + dy * ca
        return (u / a) ** 2 + (v / b) ** 2 <= 1

    def blob(self, cx, cy, r, wobble=0.25, ang_scale=(1.0, 1.0), rot=0.0) -> np.ndarray:
        """Signed depth (scene units, > 0 inside) of a noisy closed shape (lakes, islands)."""
        dx, dy = self.x - cx, self.y - cy
        ca, sa = np.cos(rot), np.sin(rot)
        u, v = (dx * ca + dy * sa) / ang_scale[0], (-dx * sa + dy * ca) / ang_scale[1]
        th, rr = np.arctan2(v, u), np.hypot(u, v)
        rad = np.ones_like(th)
        for k in range(2, 6):
            rad += wobble / k * self.rng.uniform(-1, 1) * np.cos(k * th + self.rng.uniform(0, 2 * np.pi))
        return r * rad - rr

    def road_pts(self, p0, p1, bend: float = 0.0, n: int = 8) -> list[tuple[float, float]]:
        """Points of a gently curving road from p0 to p1."""
        t = np.linspace(0, 1, n)
        d = np.array(p1) - np.array(p0)
        nrm = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9)
        off = bend * np.sin(np.pi * t) * np.hypot(*d)
        return [tuple(np.array(p0) + ti * d + oi * nrm) for ti, oi in zip(t, off)]

    # ------------------------------------------------------------------ painting
    def paint(self, mask, win=None, mat=None, height=None, tint=None, built=None, pre=None, fid=None) -> None:
        """Set the given fields where ``mask`` (within window ``win``) is true."""
        win = win if win is not None else (slice(None), slice(None))
        if mat is not None:
            self.mat[win][mask] = mat
            self.pre_mat[win][mask] = pre if pre is not None else mat
            self.built[win][mask] = -np.inf if built is None else built
            self.height[win][mask] = 0.0 if height is None else height
            self.tint[win][mask] = 1.0
            self.shore[win][mask] = np.nan
        elif height is not None:
            self.height[win][mask] = height
        if tint is not None:
            self.tint[win][mask] = tint
        if fid is not None:
            self.field_id[win][mask] = fid

    def building(self, cx, cy, w, h, ang, height, mat, tint=None, built=None, pre=None) -> None:
        """One building footprint (a rotated rectangle) with height and roof tint."""
        m, win = self.rect(cx, cy, w, h, ang)
        if not m.any():
            return
        self.paint(m, win, mat=mat, height=height, built=built, pre=pre if pre is not None else M["soil"])
        if tint is not None:
            self.tint[win][m] = tint

    def slot(self, cx, cy, length_m, width_m, ang, kind) -> None:
        """A place where a vehicle may stand (cars, aircraft, ships, containers)."""
        c, r = self.to_px(cx, cy)
        if 0 <= c < self.size and 0 <= r < self.size:
            self.slots.append((c, r, self.px(self.m(length_m)), self.px(self.m(width_m)), ang, kind))
