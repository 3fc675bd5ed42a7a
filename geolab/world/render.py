"""Rendering one revisit of a location: the scene seen on one date, by one sensor, through one atmosphere.

What differs between two revisits of a location is grouped into five *nuisances*, each a
set of fields of :class:`Conditions` drawn from the date and the place
(:func:`draw_conditions`):

* **season**: phenology by hemisphere, month and climate zone (green-up, dry season, leaf-off
  forests), the crop calendar of every field, snow in cold winters, frozen lakes, the
  lake's seasonal drawdown;
* **sun**: elevation and azimuth for a sun-synchronous morning pass (about 10:30 local
  solar time) at that latitude and date; they set brightness and the length and direction
  of every shadow (buildings, trees, wind turbines, bridges, stands);
* **atmosphere**: haze (airlight) and clouds with their displaced shadows;
* **sensor**: the satellite's colour response, exposure, ground sample distance (the crop's
  scale), small misregistration, blur and noise;
* **change**: slow change on the ground by year (houses, terminals, piers, panels and
  turbines that get built; crop rotation; the lake's multi-year level) and the vehicles,
  aircraft, ships and containers present that day.

:func:`render` draws the image and the dense mask from a :class:`~geolab.world.scene.Scene`
and a :class:`Conditions`. Replacing one group of fields by another revisit's
(:func:`swap_nuisance`) renders "the same image with one nuisance changed", which the
benchmark uses to attribute the pixel difference between revisits to each nuisance.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from scipy import ndimage

from geolab.world.canvas import MARGIN, MASK_CLASS, fbm
from geolab.world.canvas import M as MAT
from geolab.world.geography import Site
from geolab.world.scene import Scene

#: The nuisance groups and the :class:`Conditions` fields each one sets.
NUISANCES: dict[str, tuple[str, ...]] = {
    "season": ("doy", "season", "greenness", "snow", "lake_season_m"),
    "sun": ("sun_elevation", "sun_azimuth"),
    "atmosphere": ("haze", "cloud_target", "atmos_seed"),
    "sensor": ("sensor", "gain", "exposure", "zoom", "shift_x", "shift_y", "blur", "noise", "sensor_seed"),
    "change": ("year", "vehicle_seed", "occupancy"),
}

#: Sensors of fMoW-rgb's period with the years they flew, and a colour response each.
SENSORS: dict[str, tuple[float, float, tuple[float, float, float]]] = {
    "QB02": (2001.8, 2015.0, (0.94, 1.00, 1.09)),
    "GE01": (2008.7, 2100.0, (1.03, 0.97, 0.99)),
    "WV02": (2009.8, 2100.0, (1.00, 1.00, 1.00)),
    "WV03": (2014.6, 2100.0, (1.07, 1.01, 0.93)),
}

AIRLIGHT = np.array([0.74, 0.78, 0.86], dtype=np.float32)
CLOUD = np.array([0.95, 0.95, 0.97], dtype=np.float32)


@dataclass
class Conditions:
    """Everything that makes one revisit differ from another (see the module docstring).

    Attributes:
        doy: day of year (1..366) of the acquisition.
        season: meteorological season at the location's hemisphere.
        greenness: 0..1 vegetation vigour (phenology).
        snow: 0..1 share of snow-covered open ground.
        lake_season_m: the lake's seasonal shoreline retreat in metres.
        sun_elevation, sun_azimuth: degrees (azimuth clockwise from north).
        haze: 0..1 airlight fraction.
        cloud_target: 0..1 cloud fraction the cloud field is drawn for.
        atmos_seed: seeds the cloud field.
        sensor: satellite name (:data:`SENSORS`); gain its RGB response.
        exposure: overall brightness scale of the sensor's processing.
        zoom: view half-width in scene units (1 = the object's box; gsd scales with it).
        shift_x, shift_y: misregistration in output pixels.
        blur: Gaussian blur sigma in output pixels (optics + processing).
        noise: sensor noise sigma (reflectance units).
        sensor_seed: seeds the noise.
        year: decimal year (construction, crop rotation, lake trend).
        vehicle_seed: seeds which vehicle slots are taken.
        occupancy: 0..1 share of car/container slots taken that day.
    """

    doy: int
    season: str
    greenness: float
    snow: float
    lake_season_m: float
    sun_elevation: float
    sun_azimuth: float
    haze: float
    cloud_target: float
    atmos_seed: int
    sensor: str
    gain: tuple[float, float, float]
    exposure: float
    zoom: float
    shift_x: float
    shift_y: float
    blur: float
    noise: float
    sensor_seed: int
    year: float
    vehicle_seed: int
    occupancy: float


def swap_nuisance(a: Conditions, b: Conditions, group: str) -> Conditions:
    """``a`` with the fields of nuisance ``group`` taken from ``b``."""
    return dataclasses.replace(a, **{f: getattr(b, f) for f in NUISANCES[group]})


# ----------------------------------------------------------------------------- the sky
def sun_position(lat: float, lon: float, when: datetime) -> tuple[float, float]:
    """Solar elevation and azimuth (degrees; azimuth clockwise from north) at a UTC time.

    The usual declination / hour-angle approximation (accurate to about a degree), enough
    for shadow lengths and directions.
    """
    doy = when.timetuple().tm_yday
    hours = when.hour + when.minute / 60 + when.second / 3600
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365)
    solar_time = hours + lon / 15.0
    h = math.radians(15.0 * (solar_time - 12.0))
    phi = math.radians(lat)
    sin_el = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(h)
    el = math.asin(max(-1.0, min(1.0, sin_el)))
    az = math.atan2(
        -math.cos(decl) * math.sin(h), math.sin(decl) * math.cos(phi) - math.cos(decl) * math.cos(h) * math.sin(phi)
    )
    return math.degrees(el), math.degrees(az) % 360.0


def _local_doy(doy: int, lat: float) -> float:
    """Day of year shifted half a year in the southern hemisphere (seasons follow the sun)."""
    return (doy + (182.5 if lat < 0 else 0.0)) % 365.0


def greenness(koeppen: str, doy: int, lat: float) -> float:
    """Vegetation vigour 0..1 by climate zone and (hemisphere-adjusted) day of year."""
    d = _local_doy(doy, lat)
    summer = math.cos(2 * math.pi * (d - 200) / 365)  # +1 mid-July in the north
    g, z = koeppen[0], koeppen
    if z == "Af":
        v = 0.9
    elif g == "A":
        v = 0.55 + (0.12 if z == "Am" else 0.33) * math.cos(2 * math.pi * (d - 230) / 365)
    elif z in ("BWh", "BWk"):
        v = 0.08 + 0.05 * summer
    elif g == "B":
        v = 0.3 + 0.2 * math.cos(2 * math.pi * (d - 150) / 365)
    elif z.startswith("Cs") or z.startswith("Ds"):
        v = 0.5 + 0.3 * math.cos(2 * math.pi * (d - 110) / 365)  # green spring, dry summer
    elif g == "C":
        v = 0.58 + 0.32 * summer
    elif g == "D":
        v = 0.45 + 0.5 * summer
    else:
        v = 0.15 + 0.2 * summer
    return float(min(0.97, max(0.03, v)))


def season_name(doy: int, lat: float) -> str:
    """Meteorological season at the hemisphere of ``lat`` (winter = Dec-Feb in the north)."""
    d = _local_doy(doy, lat)
    names = ("winter", "spring", "summer", "autumn")
    return names[int(((d + 31) % 365) // 91.25) % 4]


def _snow(koeppen: str, doy: int, lat: float, rng: np.random.Generator) -> float:
    """Snow cover 0..1 for a cold-winter climate on this day (zero most places)."""
    d = _local_doy(doy, lat)
    winter = max(0.0, math.cos(2 * math.pi * (d - 20) / 365))  # 1 in late January (north)
    g, z = koeppen[0], koeppen
    if g == "E":
        p, lo = 0.5 + 0.5 * winter, 0.5
    elif g == "D":
        p, lo = (0.95 if z[2] in "cd" else 0.8) * winter**0.8, 0.4
    elif z in ("Cfb", "Cfc", "Cwb", "Cwc", "Csb"):
        p, lo = 0.12 * winter**2, 0.15
    elif z in ("BSk", "BWk"):
        p, lo = 0.3 * winter**2, 0.1
    else:
        return 0.0
    if rng.random() >= p:
        return 0.0
    return float(rng.uniform(lo, 1.0) * (0.4 + 0.6 * winter))



def _rgb_triple(values: np.ndarray) -> tuple[float, float, float]:
    """Three numbers (red, green, blue) as Python floats."""
    return float(values[0]), float(values[1]), float(values[2])


def draw_conditions(site: Site, when: datetime, rng: np.random.Generator, knobs: dict[str, float]) -> Conditions:
    """Draw the nuisances of one revisit from its date and place.

    Args:
        site: the location's place (latitude, climate zone).
        when: acquisition time (UTC).
        rng: the revisit's random generator.
        knobs: :class:`geolab.config.WorldConfig` nuisance knobs (``haze_max``,
            ``cloud_prob``, ``zoom_jitter``, ``misregistration_px``, ``noise_max``).

    Returns:
        The :class:`Conditions`.
    """
    doy = when.timetuple().tm_yday
    year = when.year + (doy - 0.5) / 365.25
    el, az = sun_position(site.lat, site.lon, when)
    g = site.climate_group
    cloud_p = knobs["cloud_prob"] * {"A": 1.6, "B": 0.4, "C": 1.0, "D": 1.0, "E": 1.2}[g]
    cloud = float(rng.uniform(0.03, 0.45)) if rng.random() < cloud_p else 0.0
    dust = 1.4 if g == "B" else 1.0
    haze = float(min(0.8, knobs["haze_max"] * dust * rng.beta(1.3, 3.0)))
    sensors = [s for s, (a, b, _) in SENSORS.items() if a <= year < b] or ["WV02"]
    sensor = str(rng.choice(sensors))
    d = _local_doy(doy, site.lat)
    return Conditions(
        doy=doy,
        season=season_name(doy, site.lat),
        greenness=round(greenness(site.koeppen, doy, site.lat) + float(rng.normal(0, 0.04)), 4),
        snow=round(_snow(site.koeppen, doy, site.lat, rng), 4),
        lake_season_m=float(0.5 + 0.5 * math.cos(2 * math.pi * (d - 250) / 365)),
        sun_elevation=round(el, 3),
        sun_azimuth=round(az, 3),
        haze=round(haze, 4),
        cloud_target=round(cloud, 4),
        atmos_seed=int(rng.integers(2**31)),
        sensor=sensor,
        gain=_rgb_triple(np.array(SENSORS[sensor][2]) * rng.normal(1, 0.02, 3)),
        exposure=float(rng.uniform(0.9, 1.1)),
        zoom=float(np.exp(rng.uniform(-1, 1) * knobs["zoom_jitter"])),
        shift_x=float(rng.uniform(-1, 1) * knobs["misregistration_px"]),
        shift_y=float(rng.uniform(-1, 1) * knobs["misregistration_px"]),
        blur=float(rng.uniform(0.3, 0.8)),
        noise=float(rng.uniform(0.25, 1.0) * knobs["noise_max"]),
        sensor_seed=int(rng.integers(2**31)),
        year=round(year, 4),
        vehicle_seed=int(rng.integers(2**31)),
        occupancy=float(rng.uniform(0.1, 0.95)),
    )


# ----------------------------------------------------------------------------- the ground
_GREEN = {"A": (0.14, 0.30, 0.10), "B": (0.30, 0.36, 0.17), "C": (0.20, 0.37, 0.13), "D": (0.19, 0.33, 0.13),
          "E": (0.28, 0.34, 0.20)}  # fmt: skip
_DRY = {"A": (0.55, 0.47, 0.30), "B": (0.70, 0.60, 0.42), "C": (0.52, 0.47, 0.33), "D": (0.46, 0.42, 0.33),
        "E": (0.45, 0.43, 0.38)}  # fmt: skip
_SOIL = {"A": (0.58, 0.37, 0.25), "B": (0.80, 0.68, 0.50), "C": (0.50, 0.41, 0.31), "D": (0.43, 0.37, 0.29),
         "E": (0.46, 0.44, 0.41)}  # fmt: skip
_DECIDUOUS = {"A": 0.0, "B": 0.3, "C": 0.6, "D": 0.35, "E": 0.2}
_FIXED = {
    "asphalt": (0.24, 0.24, 0.25),
    "concrete": (0.66, 0.65, 0.62),
    "flat_roof": (0.78, 0.78, 0.76),
    "solar_panel": (0.09, 0.12, 0.22),
    "turf": (0.22, 0.50, 0.18),
    "track": (0.66, 0.33, 0.25),
    "sand": (0.80, 0.74, 0.60),
    "gravel": (0.62, 0.59, 0.54),
    "turbine": (0.93, 0.93, 0.93),
    "roof": (0.60, 0.60, 0.60),
}
# Crop stages along the year: ploughed soil, emergence, full canopy, ripe, stubble.
_CROP_T = np.array([0.0, 0.12, 0.3, 0.5, 0.66, 0.8, 1.0])
_CROP_RGB = np.array(
    [[0.45, 0.36, 0.27], [0.45, 0.36, 0.27], [0.34, 0.44, 0.20], [0.17, 0.40, 0.11], [0.74, 0.64, 0.32],
     [0.62, 0.55, 0.40], [0.45, 0.36, 0.27]]  # fmt: skip
)
#: How much snow settles on each material (roads are cleared, canopies hold some).
_SNOW_HOLD = np.zeros(len(MASK_CLASS), dtype=np.float32)
for _name, _v in {"grass": 1, "soil": 1, "crop": 1, "sand": 1, "turf": 0.8, "gravel": 0.9, "track": 0.9, "forest": 0.45,
                  "roof": 0.85, "flat_roof": 0.85, "solar_panel": 0.5, "asphalt": 0.15, "concrete": 0.2,
                  "turbine": 0.0}.items():  # fmt: skip
    _SNOW_HOLD[MAT[_name]] = _v


def _shift(a: np.ndarray, dx: int, dy: int, fill: float = 0.0) -> np.ndarray:
    """``a`` moved by (dx, dy) pixels (x right, y down), filled at the edges."""
    out = np.full_like(a, fill)
    h, w = a.shape[:2]
    if abs(dx) >= w or abs(dy) >= h:
        return out
    src = a[max(0, -dy) : h + min(0, -dy), max(0, -dx) : w + min(0, -dx)]
    out[max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)] = src
    return out


def ground(scene: Scene, site: Site, cond: Conditions, loc_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reflectance, heights and mask classes of the scene on the date (canonical grid).

    Applies change (construction, water level, crop rotation, vehicles) and season
    (phenology, crop calendar, snow, ice).

    Returns:
        ``(rgb (C, C, 3) float32, height (C, C) float32, mask class (C, C) uint8)``.
    """
    g = site.climate_group
    mat = np.where(scene.built <= cond.year, scene.mat, scene.pre_mat)
    height = np.where(scene.built <= cond.year, scene.height, 0.0).astype(np.float32)
    lake = ~np.isnan(scene.shore)
    if lake.any():
        # Shoreline retreat: seasonal drawdown plus a multi-year trend (drought years).
        trend = 0.5 + 0.5 * math.sin(2 * math.pi * (cond.year - 2009) / 9.0 + loc_seed % 7)
        retreat = scene.lake_drawdown_m * (0.6 * cond.lake_season_m + 0.4 * trend)
        mat = np.where(lake & (scene.shore <= retreat), MAT["sand"], mat)
    n1, n2 = scene.noise[..., 0], scene.noise[..., 1]
    rgb: np.ndarray = np.empty(mat.shape + (3,), dtype=np.float32)
    gr = cond.greenness
    grass = (1 - gr) * np.array(_DRY[g]) + gr * np.array(_GREEN[g])
    dec = _DECIDUOUS[g]
    leaf_off = np.array([0.30, 0.27, 0.22])
    forest = (1 - dec) * np.array([0.08, 0.19, 0.08]) + dec * ((1 - gr) * leaf_off + gr * np.array([0.10, 0.26, 0.09]))
    table = np.zeros((len(MASK_CLASS), 3), dtype=np.float32)
    for name, col in _FIXED.items():
        table[MAT[name]] = col
    table[MAT["grass"]] = grass
    table[MAT["forest"]] = forest
    table[MAT["soil"]] = _SOIL[g]
    table[MAT["water"]] = scene.water_rgb
    table[MAT["solar_panel"]] += 0.22 * math.exp(-(((cond.sun_elevation - 50) / 14) ** 2))  # glint
    rgb[:] = table[mat]
    # Crop calendar: each field has its own crop (offset) that rotates from year to year.
    crop = mat == MAT["crop"]
    if crop.any():
        rot = np.random.default_rng([loc_seed, 7, int(cond.year)]).uniform(-0.18, 0.18, 4096)
        base = np.random.default_rng([loc_seed, 8]).uniform(-0.1, 0.1, 4096)
        per_year = 2.0 if g == "A" else 1.0  # two harvests a year in the tropics
        phase = (_local_doy(cond.doy, site.lat) - 75) / 365 * per_year
        stage = np.mod(phase + base[scene.field_id[crop] % 4096] + rot[scene.field_id[crop] % 4096], 1.0)
        rgb[crop] = np.stack([np.interp(stage, _CROP_T, _CROP_RGB[:, k]) for k in range(3)], -1)
        if g == "B":  # irrigated: greener than the land around it
            rgb[crop] = 0.6 * rgb[crop] + 0.4 * np.array(_GREEN["C"], dtype=np.float32)
    # Texture: low-frequency variation on natural cover, canopy grain on forests.
    natural = (mat == MAT["grass"]) | (mat == MAT["soil"]) | (mat == MAT["crop"]) | (mat == MAT["sand"])
    tex = 1 + np.where(natural, 0.10 * n1 + 0.05 * n2, np.where(mat == MAT["forest"], 0.22 * n2, 0.04 * n2))
    rgb *= tex[..., None]
    rgb *= scene.tint
    # Vehicles, aircraft, ships and containers present that day (not in the mask).
    _vehicles(rgb, height, scene, cond)
    # Snow and ice.
    if cond.snow > 0:
        field = 0.6 * n1 + 0.4 * n2
        thr = np.quantile(field, cond.snow)
        cover = np.clip((thr - field) / 0.25 + 0.5, 0, 1) * _SNOW_HOLD[mat]
        snow_rgb = np.array([0.90, 0.92, 0.95], dtype=np.float32)
        rgb = rgb * (1 - cover[..., None]) + snow_rgb * cover[..., None]
        if g in "DE" and cond.snow > 0.4:
            ice = mat == MAT["water"]
            rgb[ice] = 0.5 * rgb[ice] + 0.5 * np.array([0.80, 0.84, 0.88], dtype=np.float32)
    return rgb, height, MASK_CLASS[mat]


CAR_COLOURS = np.array(
    [[0.9, 0.9, 0.9], [0.1, 0.1, 0.1], [0.55, 0.55, 0.58], [0.6, 0.1, 0.1], [0.15, 0.2, 0.45], [0.8, 0.8, 0.75]],
    dtype=np.float32,
)
_VEHICLE_HEIGHT = np.array([1.5, 8.0, 12.0, 2.6], dtype=np.float32)
_CONTAINER_COLOURS = np.array(
    [[0.7, 0.2, 0.15], [0.15, 0.3, 0.6], [0.2, 0.5, 0.3], [0.8, 0.5, 0.1], [0.85, 0.85, 0.85]], dtype=np.float32
)
_SHIP_COLOURS = np.array([[0.25, 0.22, 0.24], [0.25, 0.22, 0.24], [0.55, 0.18, 0.15]], dtype=np.float32)


def _vehicles(rgb: np.ndarray, height: np.ndarray, scene: Scene, cond: Conditions) -> None:
    """Paint the vehicles present that day (cars, aircraft, ships, containers), vectorised."""
    if len(scene.slots) == 0:
        return
    rng = np.random.default_rng(cond.vehicle_seed)
    n = rgb.shape[0]
    kinds = scene.slots[:, 5].astype(int)
    p_take = np.array([cond.occupancy, 0.5, 0.35 + 0.5 * cond.occupancy, cond.occupancy])
    take = rng.random(len(scene.slots)) < p_take[kinds]
    palette = {
        0: CAR_COLOURS, 1: np.array([[0.88, 0.88, 0.9]], dtype=np.float32), 2: _SHIP_COLOURS, 3: _CONTAINER_COLOURS
    }
    for k in range(4):
        s = scene.slots[take & (kinds == k)]
        if len(s) == 0:
            continue
        colours = palette[k][rng.integers(len(palette[k]), size=len(s))]
        x, y, ln, wd, ang = (s[:, i, None, None] for i in range(5))
        r = int(np.ceil(0.5 * float(np.hypot(s[:, 2], s[:, 3]).max()))) + 1
        off = np.arange(-r, r + 1, dtype=np.float32)
        cx, cy = np.round(x), np.round(y)
        dx, dy = cx + off[None, None, :] - x, cy + off[None, :, None] - y
        ca, sa = np.cos(ang), np.sin(ang)
        a, b = dx * ca + dy * sa, -dx * sa + dy * ca
        if k == 1:  # aircraft: fuselage plus wings
            fuselage = (np.abs(a) <= ln / 2) & (np.abs(b) <= np.maximum(wd * 0.12, 0.6))
            m = fuselage | ((np.abs(b) <= wd / 2) & (np.abs(a) <= np.maximum(ln * 0.1, 0.6)))
        else:
            m = (np.abs(a) <= np.maximum(ln, 0.6) / 2) & (np.abs(b) <= np.maximum(wd, 0.6) / 2)
        rows = (cy + off[None, :, None]).astype(int) + np.zeros_like(m, dtype=int)
        cols = (cx + off[None, None, :]).astype(int) + np.zeros_like(m, dtype=int)
        m &= (rows >= 0) & (rows < n) & (cols >= 0) & (cols < n)
        idx = np.nonzero(m)
        rgb[rows[idx], cols[idx]] = colours[idx[0]]
        height[rows[idx], cols[idx]] = np.maximum(height[rows[idx], cols[idx]], _VEHICLE_HEIGHT[k])


def shade(rgb: np.ndarray, height: np.ndarray, pixel_m: float, elevation: float, azimuth: float) -> np.ndarray:
    """Illuminate the ground: brightness by sun elevation, shadows cast from heights.

    A pixel is in shadow when something between it and the sun, ``k`` pixels away along
    the sun's azimuth, stands taller than the ray (``k * pixel_m * tan(elevation)``).
    """
    el = max(elevation, 5.0)
    tan_el = math.tan(math.radians(el))
    az = math.radians(azimuth)
    dx, dy = math.sin(az), -math.cos(az)  # one pixel towards the sun (x east, y south)
    steps = int(min(80, math.ceil(float(height.max()) / (tan_el * pixel_m)))) if height.max() > 0 else 0
    shadow = np.zeros(height.shape, dtype=bool)
    for k in range(1, steps + 1):
        occ = _shift(height, -int(round(k * dx)), -int(round(k * dy)))
        shadow |= occ - height > k * pixel_m * tan_el + 0.3
    sin_el = math.sin(math.radians(el))
    direct = 0.95 * sin_el / math.sin(math.radians(60))
    light = 0.32 + direct * (1 - 0.8 * shadow)
    return rgb * (light / (0.32 + 0.95))[..., None].astype(np.float32)


# ----------------------------------------------------------------------------- the view
def render(
    scene: Scene, site: Site, cond: Conditions, size: int, loc_seed: int
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Render one revisit.

    Args:
        scene: the location's static scene.
        site: its place.
        cond: the revisit's nuisances.
        size: output side in pixels.
        loc_seed: the location's seed (crop rotation, lake trend).

    Returns:
        ``(image uint8 (size, size, 3), mask uint8 (size, size), gsd metres/pixel,
        cloud cover percent)``.
    """
    rgb, height, cls = ground(scene, site, cond, loc_seed)
    rgb = shade(rgb, height, scene.pixel_m, cond.sun_elevation, cond.sun_azimuth)
    # Sensor geometry: the view's half-width is `zoom` scene units, shifted by misregistration.
    c = scene.size
    half = cond.zoom
    out_px = 2 * half / size  # scene units per output pixel
    centres = (np.arange(size) + 0.5) * out_px - half
    ux = centres + cond.shift_x * out_px
    uy = centres + cond.shift_y * out_px
    to_can = lambda u: (u + MARGIN) * c / (2 * MARGIN) - 0.5  # noqa: E731
    ratio = out_px * c / (2 * MARGIN)  # canonical pixels per output pixel
    if ratio > 1.2:  # anti-aliasing before resampling
        rgb = ndimage.gaussian_filter(rgb, sigma=(0.45 * ratio, 0.45 * ratio, 0), mode="nearest")
    rows, cols = np.meshgrid(to_can(uy), to_can(ux), indexing="ij")
    img = np.stack([ndimage.map_coordinates(rgb[..., k], [rows, cols], order=1, mode="nearest") for k in range(3)], -1)
    mask = ndimage.map_coordinates(cls, [rows, cols], order=0, mode="nearest").astype(np.uint8)
    gsd = out_px * scene.half_extent_m
    # Atmosphere: haze, then clouds and their shadows (displaced away from the sun).
    rng = np.random.default_rng(cond.atmos_seed)
    cover = 0.0
    if cond.cloud_target > 0:
        pad = size // 2
        field = fbm(rng, size + 2 * pad, ((3, 1.0), (6, 0.5), (12, 0.25), (24, 0.12)))
        thr = np.quantile(field[pad:-pad, pad:-pad], 1 - cond.cloud_target)
        alpha = np.clip((field - thr) / 0.7 + 0.35, 0, 1) ** 1.5
        el = math.radians(max(cond.sun_elevation, 5.0))
        off = min(pad, 1500.0 / math.tan(el) / gsd)
        az = math.radians(cond.sun_azimuth)
        sx, sy = int(round(-math.sin(az) * off)), int(round(math.cos(az) * off))
        a = alpha[pad:-pad, pad:-pad]
        sh = alpha[pad - sy : pad - sy + size, pad - sx : pad - sx + size]
        cover = float(a.mean())
    img = img * (1 - cond.haze) + cond.haze * AIRLIGHT
    if cond.cloud_target > 0:
        img = img * (1 - 0.6 * sh[..., None])
        img = img * (1 - a[..., None]) + a[..., None] * CLOUD
    # Sensor: blur, colour response, exposure, noise, 8 bits.
    img = ndimage.gaussian_filter(img, sigma=(cond.blur, cond.blur, 0), mode="nearest")
    img = img * (np.array(cond.gain, dtype=np.float32) * cond.exposure * 1.15)
    img = img + np.random.default_rng(cond.sensor_seed).normal(0, cond.noise, img.shape)
    img = np.clip(img, 0, 1) ** (1 / 1.25)
    return (img * 255 + 0.5).astype(np.uint8), mask, float(gsd), 100.0 * cover
