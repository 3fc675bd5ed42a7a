"""The geoworld category painters: how each category's object and its surroundings are drawn.

Each category has one painter (``_paint_<category>``, listed in :data:`PAINTERS`) that draws the
object on a :class:`~geolab.world.canvas.Canvas` with its primitives; :func:`paint_background` draws
the natural land cover and urban clutter around it, and :func:`water_colour` picks the location's
water. Layout parameters (counts, sizes, orientations, shapes) are drawn per location so that
locations of one category differ widely; the place (climate zone, continent, urban or rural,
coast) decides the background and parts of the style.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from geolab.world.canvas import FULL, MARGIN, Canvas, M
from geolab.world.geography import Site

ROOF_PALETTES: dict[str, tuple[tuple[float, float, float], ...]] = {
    "EU": ((0.62, 0.30, 0.22), (0.55, 0.27, 0.20), (0.45, 0.42, 0.42), (0.70, 0.38, 0.28)),
    "NA": ((0.45, 0.45, 0.46), (0.35, 0.33, 0.32), (0.55, 0.52, 0.48), (0.30, 0.32, 0.36)),
    "SA": ((0.66, 0.36, 0.24), (0.75, 0.72, 0.66), (0.58, 0.32, 0.25), (0.50, 0.50, 0.52)),
    "AF": ((0.60, 0.58, 0.55), (0.72, 0.64, 0.52), (0.45, 0.40, 0.38), (0.38, 0.45, 0.55)),
    "AS": ((0.35, 0.45, 0.60), (0.70, 0.70, 0.70), (0.55, 0.30, 0.25), (0.30, 0.50, 0.55)),
    "OC": ((0.50, 0.52, 0.55), (0.65, 0.35, 0.25), (0.75, 0.75, 0.72), (0.30, 0.35, 0.40)),
}


# ----------------------------------------------------------------------------- background
def paint_background(cv: Canvas, site: Site, n1: np.ndarray, n2: np.ndarray) -> None:
    """Natural land cover by climate (forest, grass, bare soil), plus urban clutter."""
    g = site.climate_group
    forest = {"A": 0.45, "B": 0.02, "C": 0.25, "D": 0.45, "E": 0.08}[g]
    soil = {"A": 0.08, "B": 0.55, "C": 0.06, "D": 0.04, "E": 0.25}[g]
    forest *= 1.0 - 0.7 * site.urban
    cv.mat[:] = M["grass"]
    cv.mat[n1 > np.quantile(n1, 1 - forest)] = M["forest"] if forest > 0.01 else M["grass"]
    cv.mat[n2 > np.quantile(n2, 1 - soil)] = M["soil"]
    cv.pre_mat[:] = cv.mat
    cv.height[cv.mat == M["forest"]] = 12.0
    cv.tint[:] = (1.0 + 0.06 * cv.rng.standard_normal(3)).astype(np.float32)
    # Urban clutter: surrounding streets and houses, more of them nearer a large city.
    rng = cv.rng
    if rng.random() < site.urban:
        for _ in range(1 + int(3 * site.urban)):
            a = rng.uniform(0, np.pi)
            off = rng.uniform(-1.2, 1.2)
            p0 = (off * np.sin(a) - 2 * np.cos(a), -off * np.cos(a) - 2 * np.sin(a))
            p1 = (off * np.sin(a) + 2 * np.cos(a), -off * np.cos(a) + 2 * np.sin(a))
            cv.paint(cv.polyline([p0, p1], cv.m(rng.uniform(7, 16))), mat=M["asphalt"])
        pal = ROOF_PALETTES.get(site.continent, ROOF_PALETTES["EU"])
        for _ in range(int(rng.integers(0, 40) * site.urban)):
            cx, cy = rng.uniform(-MARGIN, MARGIN, 2)
            if max(abs(cx), abs(cy)) < 0.95:
                continue
            s = cv.m(rng.uniform(8, 30))
            cv.building(cx, cy, s, s * rng.uniform(0.5, 1), rng.uniform(0, np.pi), rng.uniform(5, 20), M["roof"],
                        tint=np.array(pal[rng.integers(len(pal))]) / 0.6)  # fmt: skip


# ----------------------------------------------------------------------------- categories
def _paint_airport(cv: Canvas, site: Site) -> None:
    rng = cv.rng
    ang = rng.uniform(0, np.pi)
    d = np.array([np.cos(ang), np.sin(ang)])
    nrm = np.array([-d[1], d[0]])
    n_rw = int(rng.choice([1, 1, 2, 2, 3]))
    length = rng.uniform(1.5, 2.2)
    width = cv.m(rng.uniform(45, 60))
    sep = rng.uniform(0.25, 0.6)
    for k in range(n_rw):
        a = ang + (rng.uniform(0.5, 1.2) if (k == 2 or (k == 1 and rng.random() < 0.4)) else 0.0)
        dk = np.array([np.cos(a), np.sin(a)])
        c = nrm * sep * (k - (n_rw - 1) / 2) * (a == ang)
        ln = length * rng.uniform(0.7, 1.0)
        cv.paint(cv.polyline([tuple(c - dk * ln / 2), tuple(c + dk * ln / 2)], width), mat=M["concrete"])
        # parallel taxiway
        t = c + nrm * rng.choice([-1, 1]) * cv.m(rng.uniform(150, 220))
        cv.paint(cv.polyline([tuple(t - dk * ln / 2.2), tuple(t + dk * ln / 2.2)], width * 0.45), mat=M["asphalt"])
    # apron and terminal on one side
    side = rng.choice([-1, 1])
    apc = nrm * side * rng.uniform(0.45, 0.7) + d * rng.uniform(-0.4, 0.4)
    aw, ah = rng.uniform(0.5, 0.9), rng.uniform(0.15, 0.3)
    m, win = cv.rect(apc[0], apc[1], aw, ah, ang)
    cv.paint(m, win, mat=M["concrete"])
    tc = apc + nrm * side * (ah / 2 + cv.m(40))
    cv.building(
        tc[0], tc[1], aw * rng.uniform(0.5, 0.9), cv.m(rng.uniform(40, 80)), ang, rng.uniform(12, 25), M["flat_roof"]
    )
    # A terminal extension built during the time series (slow change on the ground).
    if rng.random() < 0.5:
        ec = tc + d * aw * 0.55
        cv.building(ec[0], ec[1], aw * 0.3, cv.m(50), ang, 15.0, M["flat_roof"], built=rng.uniform(2011, 2017))
    for k in range(int(rng.integers(3, 9))):
        p = apc + d * aw * (k / 8 - 0.45) - nrm * side * ah * 0.1
        cv.slot(p[0], p[1], rng.uniform(35, 60), rng.uniform(30, 55), ang + np.pi / 2, 1)
    # access road and grass infield stays
    far = apc + nrm * side * 2.0
    cv.paint(cv.polyline(cv.road_pts(tuple(apc), tuple(far), rng.uniform(-0.2, 0.2)), cv.m(15)), mat=M["asphalt"])


def _paint_crop_field(cv: Canvas, site: Site) -> None:
    rng = cv.rng
    g = site.climate_group
    pivots = g == "B" or (g in "CD" and rng.random() < 0.15)
    cv.paint(np.ones_like(cv.mat, dtype=bool), mat=M["crop"])
    if pivots:  # centre-pivot irrigation circles in dry land
        cv.paint(np.ones_like(cv.mat, dtype=bool), mat=M["soil"])
        r = rng.uniform(0.35, 0.6)
        for i in range(-2, 3):
            for j in range(-2, 3):
                if rng.random() < 0.8:
                    m = cv.ellipse(i * 2.05 * r, j * 2.05 * r, r, r)
                    fid = cv.new_id()
                    cv.paint(m, mat=M["crop"], fid=fid)
                    if rng.random() < 0.5:  # half-circle in another crop
                        half = m & ((cv.x - i * 2.05 * r) * np.cos(fid) + (cv.y - j * 2.05 * r) * np.sin(fid) > 0)
                        cv.paint(half, fid=cv.new_id())
        return
    ang = rng.uniform(0, np.pi)
    ca, sa = np.cos(ang), np.sin(ang)
    u = cv.x * ca + cv.y * sa
    v = -cv.x * sa + cv.y * ca
    # Parcels: irregular strips along u, split along v; small in Asia/Europe, large in NA/OC.
    big = site.continent in ("NA", "OC", "SA")
    edges_u = np.cumsum(rng.uniform(*(0.25, 0.7) if big else (0.08, 0.35), 40)) - 2.0
    edges_v = np.cumsum(rng.uniform(*(0.4, 1.0) if big else (0.2, 0.7), 20)) - 2.0
    iu = np.searchsorted(edges_u, u)
    iv = np.searchsorted(edges_v, v)
    fid = (iu * 97 + iv).astype(np.int32) + 2
    cv.field_id[:] = fid
    # paddy-like water fields in the wet tropics
    if g == "A" and rng.random() < 0.4:
        cv.tint[:] = (0.85, 1.0, 0.95)
    # boundaries: tracks between fields, hedges in Europe
    bu = np.minimum(np.abs(u[..., None] - edges_u).min(-1), 1)
    bv = np.minimum(np.abs(v[..., None] - edges_v).min(-1), 1)
    edge = np.minimum(bu, bv) < cv.m(3.0)
    cv.paint(edge, mat=M["forest"] if site.continent == "EU" and rng.random() < 0.5 else M["grass"])
    cv.paint(
        cv.polyline(cv.road_pts((-2 * ca, -2 * sa), (2 * ca, 2 * sa), rng.uniform(-0.1, 0.1)), cv.m(6)), mat=M["gravel"]
    )
    # a farmstead
    fx, fy = rng.uniform(-0.9, 0.9, 2)
    for _ in range(int(rng.integers(1, 4))):
        cv.building(fx + rng.uniform(-0.06, 0.06), fy + rng.uniform(-0.06, 0.06), cv.m(rng.uniform(15, 40)),
                    cv.m(rng.uniform(10, 20)), ang, 6.0, M["flat_roof"])  # fmt: skip


def _paint_lake_or_pond(cv: Canvas, site: Site) -> None:
    rng = cv.rng
    depth = cv.blob(rng.uniform(-0.15, 0.15), rng.uniform(-0.15, 0.15), rng.uniform(0.55, 0.9),
                    wobble=rng.uniform(0.2, 0.6), ang_scale=(1.0, rng.uniform(0.5, 1.0)),
                    rot=rng.uniform(0, np.pi))  # fmt: skip
    water = depth > 0
    beach = (depth > -cv.m(rng.uniform(3, 15))) & ~water
    cv.paint(beach, mat=M["sand"] if rng.random() < 0.5 else M["grass"])
    cv.paint(water, mat=M["water"])
    cv.shore[water] = depth[water] * cv.half_extent_m
    if rng.random() < 0.3:  # an island
        isl = cv.blob(rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), rng.uniform(0.08, 0.2)) > 0
        cv.paint(isl & water, mat=M["forest"], height=10.0)
    if rng.random() < 0.5:  # a jetty
        a = rng.uniform(0, 2 * np.pi)
        p0 = np.array([np.cos(a), np.sin(a)]) * 0.95
        cv.paint(cv.polyline([tuple(p0), tuple(p0 * 0.7)], cv.m(4)), mat=M["concrete"])
    if rng.random() < 0.5:
        a = rng.uniform(0, np.pi)
        p = (1.1 * np.cos(a), 1.1 * np.sin(a))
        cv.paint(cv.polyline(cv.road_pts((-p[1] - p[0], p[0] - p[1]), (p[1] - p[0], -p[0] - p[1])), cv.m(7))
                 & (depth < -cv.m(10)), mat=M["asphalt"])  # fmt: skip


def _paint_parking_lot_or_garage(cv: Canvas, site: Site) -> None:
    rng = cv.rng
    ang = rng.uniform(0, np.pi) if rng.random() < 0.5 else 0.0
    w, h = rng.uniform(1.3, 1.9), rng.uniform(1.0, 1.8)
    lot, _ = cv.rect(0, 0, w, h, ang, win=FULL)
    cv.paint(lot, mat=M["asphalt"])
    ca, sa = np.cos(ang), np.sin(ang)
    stall_l, stall_w, aisle = cv.m(5.0), cv.m(2.6), cv.m(7.0)
    row_pitch = 2 * stall_l + aisle
    # stall lines (bright paint) as tint stripes; slots for cars in each stall
    u = cv.x * ca + cv.y * sa
    v = -cv.x * sa + cv.y * ca
    stripes = lot & (np.mod(u, stall_w) < cv.m(0.35)) & (np.mod(v + h / 2, row_pitch) < 2 * stall_l)
    cv.tint[stripes] = 2.4
    garage = rng.random() < 0.35
    if garage:  # a multi-storey garage covering part of the lot
        gx = rng.uniform(-0.3, 0.3)
        cv.building(gx * ca, gx * sa, w * rng.uniform(0.3, 0.5), h * rng.uniform(0.4, 0.7), ang, rng.uniform(8, 20),
                    M["flat_roof"], tint=np.full(3, rng.uniform(0.7, 0.9)), built=rng.uniform(2008, 2019),
                    pre=M["asphalt"])  # fmt: skip
    occupancy_rows = np.arange(-h / 2 + stall_l / 2, h / 2, row_pitch)
    for r0 in occupancy_rows:
        for rv in (r0, r0 + stall_l):
            if rv > h / 2:
                continue
            for uu in np.arange(-w / 2 + stall_w / 2, w / 2, stall_w):
                cx, cy = uu * ca - rv * sa, uu * sa + rv * ca
                cv.slot(cx, cy, 4.5, 1.9, ang + np.pi / 2, 0)
    # trees on islands and the lot's edge, a feeding road
    for _ in range(int(rng.integers(0, 10))):
        tx, ty = rng.uniform(-w / 2, w / 2), rng.choice([-h / 2, h / 2])
        m = cv.ellipse(tx * ca - ty * sa, tx * sa + ty * ca, cv.m(4), cv.m(4))
        cv.paint(m, mat=M["forest"], height=8.0)
    cv.paint(cv.polyline([(-2 * sa, 2 * ca), (2 * sa, -2 * ca)], cv.m(10)) & ~lot, mat=M["asphalt"])


def _paint_port(cv: Canvas, site: Site) -> None:
    rng = cv.rng
    a = rng.uniform(0, 2 * np.pi)  # the sea lies in direction a
    n = np.array([np.cos(a), np.sin(a)])
    s = cv.x * n[0] + cv.y * n[1]
    t = -cv.x * n[1] + cv.y * n[0]
    coast = rng.uniform(-0.2, 0.3) + 0.05 * np.sin(t * rng.uniform(2, 6) + rng.uniform(0, 6))
    sea = s > coast
    cv.paint(sea, mat=M["water"])
    # quays and piers reaching into the water
    quay_w = cv.m(rng.uniform(40, 90))
    yard = (s > coast - rng.uniform(0.4, 0.8)) & ~sea
    cv.paint(yard, mat=M["concrete"])
    n_piers = int(rng.integers(1, 5))
    for k in range(n_piers):
        tk = rng.uniform(-0.9, 0.9)
        ln = rng.uniform(0.3, 0.8)
        p0 = n * (coast.mean() - 0.05) + np.array([-n[1], n[0]]) * tk
        cv.paint(cv.polyline([tuple(p0), tuple(p0 + n * ln)], quay_w), mat=M["concrete"],
                 built=rng.uniform(2006, 2019) if k == n_piers - 1 and rng.random() < 0.4 else None,
                 pre=M["water"])  # fmt: skip
        for _j in range(int(rng.integers(1, 4))):  # ship berths along the pier
            side = rng.choice([-1, 1])
            q = p0 + n * ln * rng.uniform(0.3, 0.9) + np.array([-n[1], n[0]]) * side * (quay_w / 2 + cv.m(20))
            cv.slot(q[0], q[1], rng.uniform(80, 220), rng.uniform(15, 32), a, 2)
    # warehouses and container stacks on the yard
    for _ in range(int(rng.integers(2, 8))):
        tk, sk = rng.uniform(-1, 1), rng.uniform(-0.4, -0.05)
        p = n * (coast.mean() + sk) + np.array([-n[1], n[0]]) * tk
        cv.building(
            p[0], p[1], cv.m(rng.uniform(40, 120)), cv.m(rng.uniform(20, 50)), a + np.pi / 2, rng.uniform(8, 16),
            M["flat_roof"],
        )
    for _ in range(int(rng.integers(10, 60))):
        tk, sk = rng.uniform(-1, 1), rng.uniform(-0.45, -0.02)
        p = n * (coast.mean() + sk) + np.array([-n[1], n[0]]) * tk
        cv.slot(p[0], p[1], 12.2, 2.5 * rng.integers(2, 6), a + np.pi / 2, 3)
    land_road = (s < coast - 0.5) & (np.abs(t - rng.uniform(-0.5, 0.5)) < cv.m(8))
    cv.paint(land_road, mat=M["asphalt"])


def _paint_road_bridge(cv: Canvas, site: Site) -> None:
    rng = cv.rng
    a = rng.uniform(0, np.pi)
    d = np.array([np.cos(a), np.sin(a)])
    u = cv.x * d[0] + cv.y * d[1]
    v = -cv.x * d[1] + cv.y * d[0]
    width = rng.uniform(0.3, 1.2)
    centre = rng.uniform(0.05, 0.15) * np.sin(u * rng.uniform(1, 3) + rng.uniform(0, 6))
    river = np.abs(v - centre) < width / 2
    banks = np.abs(v - centre) < width / 2 + cv.m(rng.uniform(5, 30))
    cv.paint(banks & ~river, mat=M["grass"] if rng.random() < 0.5 else M["forest"], height=None)
    cv.paint(river, mat=M["water"])
    # the bridge: a road crossing the river at an angle, raised above the water
    b = a + np.pi / 2 + rng.uniform(-0.5, 0.5)
    e = np.array([np.cos(b), np.sin(b)])
    off = rng.uniform(-0.3, 0.3)
    p0, p1 = tuple(e * -2 + d * off), tuple(e * 2 + d * off)
    rw = cv.m(rng.uniform(10, 30))
    road = cv.polyline([p0, p1], rw)
    cv.paint(road, mat=M["asphalt"])
    cv.paint(road & river, height=rng.uniform(8, 20))
    for _k in range(int(rng.integers(0, 12))):
        q = np.array(p0) + (np.array(p1) - np.array(p0)) * rng.uniform(0.1, 0.9)
        cv.slot(q[0], q[1], 4.5, 1.9, b, 0)
    if rng.random() < 0.5:  # roads along the banks
        for side in (-1, 1):
            bank_road = np.abs(v - centre - side * (width / 2 + cv.m(40))) < cv.m(5)
            cv.paint(bank_road, mat=M["asphalt"])
    if rng.random() < 0.3:  # a second bridge built later
        off2 = off + rng.choice([-1, 1]) * rng.uniform(0.3, 0.6)
        road2 = cv.polyline([tuple(e * -2 + d * off2), tuple(e * 2 + d * off2)], rw * 0.8)
        cv.paint(road2 & river, mat=M["concrete"], height=12.0, built=rng.uniform(2010, 2018), pre=M["water"])


def _paint_single_unit_residential(cv: Canvas, site: Site) -> None:
    rng = cv.rng
    pal = ROOF_PALETTES.get(site.continent, ROOF_PALETTES["EU"])
    grid = site.continent in ("NA", "OC", "SA") or rng.random() < 0.3
    ang = rng.uniform(0, np.pi)
    ca, sa = np.cos(ang), np.sin(ang)
    block = rng.uniform(0.35, 0.7)
    house = cv.m(rng.uniform(9, 16) * (1.3 if site.continent == "NA" else 1.0))
    road_w = cv.m(rng.uniform(6, 12))
    u = cv.x * ca + cv.y * sa
    v = -cv.x * sa + cv.y * ca
    if grid:
        wv = np.sin(u * rng.uniform(0, 2)) * rng.uniform(0, 0.1)
        roads = (np.abs(np.mod(u + block / 2, block) - block / 2) < road_w / 2) | (
            np.abs(np.mod(v + wv + block, 2 * block) - block) < road_w / 2
        )
    else:  # organic streets: a few curving roads
        roads = np.zeros_like(cv.mat, dtype=bool)
        for _ in range(int(rng.integers(3, 7))):
            p0, p1 = rng.uniform(-1.4, 1.4, 2), rng.uniform(-1.4, 1.4, 2)
            roads |= cv.polyline(cv.road_pts(tuple(p0), tuple(p1), rng.uniform(-0.3, 0.3)), road_w)
    cv.paint(roads, mat=M["asphalt"])
    dist = ndimage.distance_transform_edt(~roads) / cv.px(1.0)  # scene units to the nearest road
    pool = site.climate_group in "AB" or (site.koeppen.startswith("Cs") or site.koeppen == "Cfa")
    later = rng.uniform(0.05, 0.4)  # share of houses built during the time series
    n_try = int(rng.uniform(0.6, 1.2) * (2 * MARGIN) ** 2 / (house * 2.2) ** 2)
    for _ in range(n_try):
        cx, cy = rng.uniform(-MARGIN, MARGIN, 2)
        c, r = cv.to_px(cx, cy)
        r, c = int(np.clip(r, 0, cv.size - 1)), int(np.clip(c, 0, cv.size - 1))
        dd = dist[r, c]
        near_road = road_w / 2 + house * 0.3 < dd < road_w / 2 + house * 1.6
        if not near_road or cv.mat[r, c] not in (M["grass"], M["forest"], M["soil"]):
            continue
        tint = np.array(pal[rng.integers(len(pal))]) * rng.uniform(0.85, 1.15) / 0.6
        built = rng.uniform(2009, 2019) if rng.random() < later else None
        hang = ang if grid else rng.uniform(0, np.pi)
        cv.building(cx, cy, house * rng.uniform(0.8, 1.3), house * rng.uniform(0.6, 1.0), hang, rng.uniform(4, 9),
                    M["roof"], tint=tint, built=built, pre=M["soil"])  # fmt: skip
        if pool and rng.random() < 0.25:
            m, win = cv.rect(cx + house * 0.9, cy + house * 0.3, house * 0.4, house * 0.25, hang)
            cv.paint(m, win, mat=M["water"], built=built, pre=M["grass"])
        if rng.random() < 0.4:  # a garden tree
            m, win = cv.rect(cx - house, cy + house * 0.8, house * 0.6, house * 0.6, 0)
            cv.paint(m & (cv.mat[win] == M["grass"]), win, mat=M["forest"], height=7.0)
        cv.slot(cx + house * 0.8, cy - house * 0.7, 4.5, 1.9, hang, 0)


def _paint_solar_farm(cv: Canvas, site: Site) -> None:
    rng = cv.rng
    cv.paint(cv.ellipse(0, 0, 1.6, 1.6), mat=M["gravel"] if rng.random() < 0.5 else M["soil"])
    # Panels face the equator: rows run east-west, pitched towards the sun.
    ang = rng.normal(0, 0.15)
    pitch = cv.m(rng.uniform(6, 12))
    fill = rng.uniform(0.4, 0.7)
    v = -cv.x * np.sin(ang) + cv.y * np.cos(ang)
    rows = np.mod(v, pitch) < pitch * fill
    n_blocks = int(rng.integers(1, 5))
    start = rng.uniform(2003, 2014.5)
    for k in range(n_blocks):
        bx, by = rng.uniform(-0.5, 0.5, 2)
        bw, bh = rng.uniform(0.6, 1.3), rng.uniform(0.5, 1.2)
        m, win = cv.rect(bx, by, bw, bh, ang)
        cv.paint(m & rows[win], win, mat=M["solar_panel"], height=2.0, built=start + k * rng.uniform(0, 1.5),
                 pre=cv.mat[win][m & rows[win]][0] if (m & rows[win]).any() else M["soil"])  # fmt: skip
        cv.building(bx + bw / 2 + cv.m(8), by, cv.m(8), cv.m(5), ang, 3.0, M["flat_roof"], built=start)
    cv.paint(
        cv.polyline([(-2, rng.uniform(-1, 1)), (2, rng.uniform(-1, 1))], cv.m(6)) & (cv.mat != M["solar_panel"]),
        mat=M["gravel"],
    )


def _paint_stadium(cv: Canvas, site: Site) -> None:
    rng = cv.rng
    ang = rng.uniform(0, np.pi)
    a = rng.uniform(0.55, 0.8)
    b = a * rng.uniform(0.65, 0.85)
    oval = rng.random() < 0.7
    if oval:
        outer = cv.ellipse(0, 0, a, b, ang)
        inner = cv.ellipse(0, 0, a * 0.72, b * 0.66, ang)
    else:
        outer, _ = cv.rect(0, 0, 2 * a, 2 * b, ang, win=FULL)
        inner, _ = cv.rect(0, 0, 1.45 * a, 1.3 * b, ang, win=FULL)
    # parking around the stadium
    park = cv.ellipse(0, 0, a * 1.6, b * 1.7, ang) & ~outer
    cv.paint(park, mat=M["asphalt"])
    for _ in range(int(rng.integers(20, 120))):
        t = rng.uniform(0, 2 * np.pi)
        rr = rng.uniform(1.15, 1.55)
        cx, cy = a * rr * np.cos(t), b * rr * np.sin(t)
        cv.slot(
            cx * np.cos(ang) - cy * np.sin(ang), cx * np.sin(ang) + cy * np.cos(ang), 4.5, 1.9, rng.uniform(0, np.pi), 0
        )
    roof = rng.uniform(0.55, 0.95)
    cv.paint(outer & ~inner, mat=M["flat_roof"], height=rng.uniform(18, 40), tint=np.full(3, roof))
    track = rng.random() < 0.5
    if track:
        cv.paint(inner, mat=M["track"])
        pitch = cv.ellipse(0, 0, a * 0.6, b * 0.52, ang) if oval else cv.rect(0, 0, 1.2 * a, 1.05 * b, ang, win=FULL)[0]
        cv.paint(pitch, mat=M["turf"])
    else:
        cv.paint(inner, mat=M["turf"])
    # pitch stripes from mowing
    u = cv.x * np.cos(ang) + cv.y * np.sin(ang)
    stripes = (cv.mat == M["turf"]) & (np.mod(u, cv.m(10)) < cv.m(5))
    cv.tint[stripes] = 0.9
    cv.paint(
        cv.polyline([(-2, rng.uniform(-1.3, 1.3)), (2, rng.uniform(-1.3, 1.3))], cv.m(14)) & ~outer, mat=M["asphalt"]
    )


def _paint_wind_farm(cv: Canvas, site: Site) -> None:
    rng = cv.rng
    if rng.random() < 0.5:  # turbines often stand in farmland
        ang = rng.uniform(0, np.pi)
        u = cv.x * np.cos(ang) + cv.y * np.sin(ang)
        cv.field_id[:] = (np.floor(u / rng.uniform(0.2, 0.5)) + 50).astype(np.int32)
        cv.paint(cv.mat != M["forest"], mat=M["crop"])
    n = int(rng.integers(4, 14))
    layout_ang = rng.uniform(0, np.pi)
    spacing = rng.uniform(0.35, 0.6)
    pts = []
    rows = int(np.ceil(np.sqrt(n)))
    for k in range(n):
        i, j = k % rows, k // rows
        p = np.array([i - (rows - 1) / 2, j - (rows - 1) / 2]) * spacing + rng.normal(0, 0.06, 2)
        p = np.array([
            p[0] * np.cos(layout_ang) - p[1] * np.sin(layout_ang),
            p[0] * np.sin(layout_ang) + p[1] * np.cos(layout_ang),
        ])
        if np.abs(p).max() < 1.15:
            pts.append(p)
    hub = rng.uniform(70, 120)
    rotor = rng.uniform(40, 60)
    pts = sorted(pts, key=lambda p: float(p[0]))
    for k in range(1, len(pts)):  # access roads first, so that no road covers a turbine
        cv.paint(cv.polyline([tuple(pts[k - 1]), tuple(pts[k])], cv.m(5)), mat=M["gravel"])
    if pts:
        cv.paint(cv.polyline([tuple(pts[0]), (-2.0, float(pts[0][1]))], cv.m(6)), mat=M["gravel"])
    for p in pts:
        built = rng.uniform(2009, 2018) if rng.random() < 0.25 else None
        pad = cv.ellipse(p[0], p[1], cv.m(22), cv.m(22))
        cv.paint(pad, mat=M["gravel"], built=built, pre=cv.mat[pad][0] if pad.any() else M["grass"])
        # tower and blades: tall and thin, seen mostly through its long shadow
        m, win = cv.rect(p[0], p[1], cv.m(6), cv.m(6), 0)
        cv.paint(m, win, mat=M["turbine"], height=hub, built=built, pre=M["gravel"])
        b = rng.uniform(0, np.pi)
        for blade in range(3):
            bb = b + blade * 2 * np.pi / 3
            q = p + np.array([np.cos(bb), np.sin(bb)]) * cv.m(rotor) / 2
            m, win = cv.rect(q[0], q[1], cv.m(rotor), cv.m(3), bb)
            cv.paint(
                m, win, mat=M["turbine"], height=hub, built=built, pre=cv.mat[win][m][0] if m.any() else M["grass"]
            )


PAINTERS = {
    "airport": _paint_airport,
    "crop_field": _paint_crop_field,
    "lake_or_pond": _paint_lake_or_pond,
    "parking_lot_or_garage": _paint_parking_lot_or_garage,
    "port": _paint_port,
    "road_bridge": _paint_road_bridge,
    "single-unit_residential": _paint_single_unit_residential,
    "solar_farm": _paint_solar_farm,
    "stadium": _paint_stadium,
    "wind_farm": _paint_wind_farm,
}


def water_colour(rng: np.random.Generator, site: Site) -> np.ndarray:
    """Water colour: deep blue, green (algae, tropics) or brown (silt), by place and chance."""
    blue = np.array([0.10, 0.20, 0.32])
    green = np.array([0.16, 0.26, 0.22])
    brown = np.array([0.33, 0.28, 0.20])
    w = np.array([1.0, 0.6 if site.climate_group in "AC" else 0.3, 0.5 if site.climate_group in "AB" else 0.2])
    mix = rng.dirichlet(w * 3)
    return (mix[0] * blue + mix[1] * green + mix[2] * brown).astype(np.float32)
