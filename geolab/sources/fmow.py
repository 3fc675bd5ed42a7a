"""fMoW-rgb as distributed: read a raw tree (images + per-image JSON metadata) into a manifest.

The raw layout (Christie et al., *Functional Map of the World*, CVPR 2018) is::

    ROOT/<split>/<category>/<category>_<n>/<category>_<n>_<t>_rgb.jpg
    ROOT/<split>/<category>/<category>_<n>/<category>_<n>_<t>_rgb.json

with ``<split>`` one of ``train``, ``val``, ``test``, ``seq``. Each image has a JSON metadata
file beside it (same name, ``.json``); the fields geolab reads are

* ``timestamp`` -- UTC acquisition time, e.g. ``"2015-07-10T10:28:23Z"``;
* ``raw_location`` -- the image footprint as a WKT polygon of lon/lat, e.g.
  ``"POLYGON ((30.41 -9.93, 30.42 -9.93, 30.42 -9.94, 30.41 -9.94, 30.41 -9.93))"``;
* ``gsd`` (metres per pixel), ``cloud_cover`` (percent), ``img_width`` / ``img_height``;
* ``bounding_boxes`` -- ``[{"category": ..., "box": [x, y, w, h], "ID": ...}]``.

A **location** is one ``<category>_<n>`` folder within a split: all its images are revisits of
one place (the temporal positives of GASSL). Its lat/lon is the centroid of ``raw_location``.
The released test and seq splits hide the category in the path
(``test/0011978/0011978_0_rgb.jpg``); there the label comes from ``bounding_boxes``.

Nothing is dropped silently: an image without metadata, with unparsable metadata or in an
unexpected place is listed (path and reason) in the build report
(:class:`geolab.sources.build.BuildReport`) and in ``<manifest>.skipped.csv`` beside the manifest.
Fetching a real subset from fMoW's public bucket is :mod:`geolab.sources.fmow_mini`'s job.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from geolab.errors import MissingInputError, UserError
from geolab.sources.build import BuildReport, Skipped, drop_label_conflicts, save_build

#: fMoW's split folders, in the order geolab lists them.
FMOW_SPLITS: tuple[str, ...] = ("train", "val", "test", "seq")

#: The 62 functional categories of fMoW (the ``false_detection`` class of fMoW-full excluded).
FMOW_CATEGORIES: tuple[str, ...] = (
    "airport", "airport_hangar", "airport_terminal", "amusement_park", "aquaculture",
    "archaeological_site", "barn", "border_checkpoint", "burial_site", "car_dealership",
    "construction_site", "crop_field", "dam", "debris_or_rubble", "educational_institution",
    "electric_substation", "factory_or_powerplant", "fire_station", "flooded_road", "fountain",
    "gas_station", "golf_course", "ground_transportation_station", "helipad", "hospital",
    "impoverished_settlement", "interchange", "lake_or_pond", "lighthouse", "military_facility",
    "multi-unit_residential", "nuclear_powerplant", "office_building", "oil_or_gas_facility",
    "park", "parking_lot_or_garage", "place_of_worship", "police_station", "port", "prison",
    "race_track", "railway_bridge", "recreational_facility", "road_bridge", "runway",
    "shipyard", "shopping_mall", "single-unit_residential", "smokestack", "solar_farm",
    "space_facility", "stadium", "storage_tank", "surface_mine", "swimming_pool", "toll_booth",
    "tower", "tunnel_opening", "waste_disposal", "water_treatment_facility", "wind_farm", "zoo",
)

#: Image kinds of the fMoW release: pan-sharpened RGB (fMoW-rgb) and multispectral-as-RGB.
IMAGE_KINDS: tuple[str, ...] = ("rgb", "msrgb")


class FmowMetadataError(UserError, ValueError):
    """One image's metadata JSON is missing a field or holds a value geolab cannot read."""


# ----------------------------------------------------------------------------- metadata
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RING_RE = re.compile(r"\(\s*(" + _NUM + r"\s+" + _NUM + r"(?:\s+" + _NUM + r")?"
                      r"(?:\s*,\s*" + _NUM + r"\s+" + _NUM + r"(?:\s+" + _NUM + r")?)*)\s*\)")


def parse_wkt_polygon(wkt: str) -> list[list[list[tuple[float, float]]]]:
    """Parse a WKT ``POLYGON`` or ``MULTIPOLYGON`` of lon/lat into polygons of rings.

    A small parser instead of shapely: fMoW needs only the centroid of one simple polygon per
    image, and shapely (GEOS) would be a compiled dependency for that alone.

    Args:
        wkt: e.g. ``"POLYGON ((lon lat, lon lat, ...))"``; a third coordinate is ignored.

    Returns:
        A list of polygons; each is a list of rings (outer ring first, then holes); each ring
        a list of ``(lon, lat)``.

    Raises:
        FmowMetadataError: when the text is not a polygon this parser understands.
    """
    text = wkt.strip()
    if text.upper().endswith("EMPTY"):
        raise FmowMetadataError("raw_location is an empty polygon")
    head = text.split("(", 1)[0].strip().upper()
    if head not in ("POLYGON", "MULTIPOLYGON", "POLYGON Z", "MULTIPOLYGON Z"):
        raise FmowMetadataError(f"raw_location is not a WKT POLYGON: {text[:60]!r}")
    if text.count("(") != text.count(")"):
        raise FmowMetadataError(f"raw_location has unbalanced parentheses: {text[:60]!r}")
    body = text[len(text.split("(", 1)[0]):]
    polygons: list[list[list[tuple[float, float]]]] = []
    if head.startswith("MULTI"):
        # split ((ring),(ring)),((ring)) at depth-1 commas
        depth, start, parts = 0, 0, []
        inner = body.strip()[1:-1]
        for i, ch in enumerate(inner):
            depth += ch == "("
            depth -= ch == ")"
            if ch == "," and depth == 0:
                parts.append(inner[start:i])
                start = i + 1
        parts.append(inner[start:])
    else:
        parts = [body]
    for part in parts:
        rings = []
        for m in _RING_RE.finditer(part):
            coords = []
            for pair in m.group(1).split(","):
                vals = pair.split()
                coords.append((float(vals[0]), float(vals[1])))
            rings.append(coords)
        if not rings:
            raise FmowMetadataError(f"raw_location has no coordinates: {text[:60]!r}")
        polygons.append(rings)
    return polygons


def _ring_area_centroid(ring: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    """Planar signed area and centroid of a ring (shoelace formula)."""
    a = cx = cy = 0.0
    n = len(ring)
    for i in range(n):
        x0, y0 = ring[i]
        x1, y1 = ring[(i + 1) % n]
        cross = x0 * y1 - x1 * y0
        a += cross
        cx += (x0 + x1) * cross
        cy += (y0 + y1) * cross
    a *= 0.5
    if abs(a) < 1e-18:
        return 0.0, sum(p[0] for p in ring) / n, sum(p[1] for p in ring) / n
    return a, cx / (6 * a), cy / (6 * a)


def polygon_centroid(wkt: str) -> tuple[float, float]:
    """Centroid ``(lat, lon)`` of a WKT polygon of lon/lat.

    Planar (lon/lat) centroid, which is exact enough for fMoW footprints (a few km wide); holes
    are subtracted; a footprint that crosses the antimeridian is unwrapped first. A degenerate
    polygon (zero area) gives the mean of its vertices.

    Raises:
        FmowMetadataError: unparsable text, or a centroid outside lat [-90, 90] / lon [-180, 180].
    """
    polygons = parse_wkt_polygon(wkt)
    lon0 = polygons[0][0][0][0]

    def unwrap(ring: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [((x - lon0 + 180.0) % 360.0 - 180.0 + lon0, y) for x, y in ring]

    total = sx = sy = 0.0
    verts: list[tuple[float, float]] = []
    for rings in polygons:
        for k, ring in enumerate(rings):
            ring = unwrap(ring)
            verts += ring
            a, cx, cy = _ring_area_centroid(ring)
            w = abs(a) if k == 0 else -abs(a)
            total += w
            sx += w * cx
            sy += w * cy
    if abs(total) < 1e-18:
        lon = sum(p[0] for p in verts) / len(verts)
        lat = sum(p[1] for p in verts) / len(verts)
    else:
        lon, lat = sx / total, sy / total
    lon = (lon + 180.0) % 360.0 - 180.0 if not -180.0 <= lon <= 180.0 else lon
    if not (math.isfinite(lat) and math.isfinite(lon)) or not -90.0 <= lat <= 90.0:
        raise FmowMetadataError(f"raw_location centroid ({lat}, {lon}) is not a lat/lon")
    return lat, lon


def parse_timestamp(value: Any) -> pd.Timestamp:
    """Parse fMoW's ``timestamp`` (ISO 8601, ``Z`` = UTC) into a UTC ``pandas.Timestamp``.

    A time without a zone is taken as UTC (fMoW documents its timestamps as UTC).

    Raises:
        FmowMetadataError: when the value is not an ISO 8601 time.
    """
    if not isinstance(value, str) or not value.strip():
        raise FmowMetadataError(f"timestamp is not a string: {value!r}")
    text = value.strip()
    try:
        dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise FmowMetadataError(f"timestamp is not ISO 8601: {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return pd.Timestamp(dt).tz_convert("UTC")


def _optional_float(meta: dict, key: str) -> float:
    v = meta.get(key)
    if v is None or v == "":
        return float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise FmowMetadataError(f"{key} is not a number: {v!r}") from None


def read_fmow_metadata(json_path: str | os.PathLike) -> dict[str, Any]:
    """Read the fields geolab uses from one fMoW metadata JSON.

    Args:
        json_path: the ``..._rgb.json`` beside an image.

    Returns:
        ``{"timestamp", "lat", "lon", "gsd", "cloud_cover", "img_width", "img_height",
        "category"}``; ``category`` is the first bounding box's category or ``None``; missing
        optional numbers are NaN.

    Raises:
        FmowMetadataError: unreadable JSON, or a missing/unparsable ``timestamp`` or
            ``raw_location``.
    """
    try:
        with open(json_path, encoding="utf-8") as fh:
            meta = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FmowMetadataError(f"unreadable JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise FmowMetadataError("the JSON is not an object")
    for key in ("timestamp", "raw_location"):
        if key not in meta:
            raise FmowMetadataError(f"no {key!r} field")
    if not isinstance(meta["raw_location"], str):
        raise FmowMetadataError(f"raw_location is not a string: {meta['raw_location']!r}")
    lat, lon = polygon_centroid(meta["raw_location"])
    category = None
    boxes = meta.get("bounding_boxes")
    if isinstance(boxes, list) and boxes and isinstance(boxes[0], dict):
        category = boxes[0].get("category")
    return {
        "timestamp": parse_timestamp(meta["timestamp"]),
        "lat": lat,
        "lon": lon,
        "gsd": _optional_float(meta, "gsd"),
        "cloud_cover": _optional_float(meta, "cloud_cover"),
        "img_width": _optional_float(meta, "img_width"),
        "img_height": _optional_float(meta, "img_height"),
        "category": category,
    }


# ----------------------------------------------------------------------------- the tree
def _split_dirs(root: Path, splits: Iterable[str] | None) -> list[tuple[str, Path]]:
    wanted = list(splits) if splits else list(FMOW_SPLITS)
    found = [(s, root / s) for s in wanted if (root / s).is_dir()]
    if not found:
        present = sorted(p.name for p in root.iterdir() if p.is_dir())[:10] if root.is_dir() else []
        raise MissingInputError(
            f"No fMoW split folder ({', '.join(wanted)}) in {root} (found: {present or 'nothing'}). "
            "Point ROOT at the folder that holds train/ val/ test/ as distributed "
            "(e.g. .../fmow-rgb), or fetch a subset with `geolab data fmow-download`."
        )
    return found


def scan_fmow_tree(
    root: str | os.PathLike,
    splits: Iterable[str] | None = None,
    image_kind: str = "rgb",
    categories: Iterable[str] | None = None,
    progress: bool = True,
) -> BuildReport:
    """Read a raw fMoW tree (images + JSON metadata) into a manifest table, nothing written.

    Args:
        root: the folder holding the split folders (``train/``, ``val/``, ...).
        splits: splits to read (default: all of ``train, val, test, seq`` that exist).
        image_kind: ``"rgb"`` (fMoW-rgb, ``*_rgb.jpg``) or ``"msrgb"`` (``*_msrgb.jpg``).
        categories: keep only these categories (default: all).
        progress: show a progress bar.

    Returns:
        A :class:`BuildReport`: one row per image (``image_id = "<split>/<category>_<n>_<t>"``,
        ``location_id = "<split>/<category>_<n>"``, lat/lon from the footprint centroid, UTC
        timestamp, label, split, gsd, cloud_cover, img_width, img_height), plus every image or
        JSON left out with its reason.

    Raises:
        FileNotFoundError: when ``root`` holds no split folder.
        ValueError: for an unknown ``image_kind``.
    """
    if image_kind not in IMAGE_KINDS:
        raise ValueError(f"image_kind must be one of {IMAGE_KINDS}, not {image_kind!r}")
    root = Path(root).expanduser().resolve()
    keep = set(categories) if categories else None
    todo, skipped = _find_images(root, splits, image_kind, keep)
    rows: list[dict[str, Any]] = []
    for split, path, parts in tqdm(todo, desc="fMoW metadata", unit="img", disable=not progress):
        row = _image_row(split, path, parts, image_kind, keep)
        if isinstance(row, Skipped):
            skipped.append(row)
        elif row is not None:
            rows.append(row)
    df = _frame(rows)
    df, more = drop_label_conflicts(df)
    return BuildReport(manifest=df, skipped=skipped + more, source=str(root))


def _find_images(root: Path, splits: Iterable[str] | None, image_kind: str, keep: set[str] | None
                 ) -> tuple[list[tuple[str, Path, list[str]]], list[Skipped]]:
    """The images of ``image_kind`` in the split folders, and the files left out on the way.

    Returns:
        ``([(split, image path, its parts under the split folder)], skipped)``: a JSON without its image and an
        image file whose name is not fMoW's are left out with their reason; other kinds' files are passed over.
    """
    suffix = f"_{image_kind}.jpg"
    json_suffix = f"_{image_kind}.json"
    other_kinds = tuple(f"_{k}." for k in IMAGE_KINDS if k != image_kind)
    skipped: list[Skipped] = []
    todo: list[tuple[str, Path, list[str]]] = []  # (split, image path, parts under split)
    for split, sdir in _split_dirs(root, splits):
        for dirpath, dirnames, filenames in os.walk(sdir):
            dirnames.sort()
            names = set(filenames)
            for name in sorted(filenames):
                path = Path(dirpath) / name
                parts = list(path.relative_to(sdir).parts)
                if keep is not None and len(parts) == 3 and parts[0] not in keep:
                    continue
                if name.endswith(suffix):
                    todo.append((split, path, parts))
                elif name.endswith(json_suffix):
                    if name[: -len(json_suffix)] + suffix not in names:
                        skipped.append(Skipped(str(path), "metadata without image: no "
                                               f"{name[: -len(json_suffix)] + suffix} beside it"))
                elif name.lower().endswith((".jpg", ".jpeg", ".png", ".tif")) and not any(
                    k in name for k in other_kinds
                ):
                    skipped.append(Skipped(str(path), f"not an fMoW image name: expected "
                                           f"<location>_<t>{suffix}"))
    return todo, skipped


def _image_row(split: str, path: Path, parts: list[str], image_kind: str, keep: set[str] | None
               ) -> dict[str, Any] | Skipped | None:
    """One image's manifest row from its place in the layout and its JSON metadata.

    Returns:
        The row; a :class:`Skipped` with the reason (the layout, missing or unparsable metadata, no category or
        one that disagrees with the folder); ``None`` for a category not in ``keep``.
    """
    suffix = f"_{image_kind}.jpg"
    json_suffix = f"_{image_kind}.json"
    stem = path.name[: -len(suffix)]
    if len(parts) == 3:
        folder_category, location = parts[0], parts[1]
    elif len(parts) == 2:
        folder_category, location = None, parts[0]
    else:
        return Skipped(str(path), "unexpected place in the layout: expected "
                       f"{split}/<category>/<category>_<n>/<category>_<n>_<t>{suffix}")
    if not stem.startswith(location + "_"):
        return Skipped(str(path), f"unexpected place in the layout: {path.name} is "
                       f"not in its location folder ({location}/)")
    json_path = path.with_name(stem + json_suffix)
    if not json_path.exists():
        return Skipped(str(path), f"no metadata: {json_path.name} missing")
    try:
        meta = read_fmow_metadata(json_path)
    except FmowMetadataError as exc:
        return Skipped(str(path), f"unparsable metadata: {json_path.name}: {exc}")
    label = folder_category or meta["category"]
    if not label:
        return Skipped(str(path), "no category: neither a category folder nor "
                       f"bounding_boxes[0].category in {json_path.name}")
    if folder_category and meta["category"] and meta["category"] != folder_category:
        return Skipped(str(path), f"label disagreement: folder says {folder_category!r}, "
                       f"{json_path.name} says {meta['category']!r}")
    if keep is not None and label not in keep:
        return None
    return {
        "image_id": f"{split}/{stem}",
        "location_id": f"{split}/{location}",
        "path": str(path),
        "timestamp": meta["timestamp"],
        "lat": meta["lat"],
        "lon": meta["lon"],
        "label": label,
        "split": split,
        "gsd": meta["gsd"],
        "cloud_cover": meta["cloud_cover"],
        "img_width": meta["img_width"],
        "img_height": meta["img_height"],
    }


_COLUMNS = ["image_id", "location_id", "path", "timestamp", "lat", "lon", "label", "split",
            "gsd", "cloud_cover", "img_width", "img_height"]


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=_COLUMNS)
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    for c in ("lat", "lon", "gsd", "cloud_cover", "img_width", "img_height"):
        df[c] = df[c].astype("float64")
    return df.sort_values(["split", "location_id", "timestamp", "image_id"], kind="stable",
                          ignore_index=True)


def build_fmow_manifest(
    root: str | os.PathLike,
    out: str | os.PathLike,
    splits: Iterable[str] | None = None,
    image_kind: str = "rgb",
    categories: Iterable[str] | None = None,
    progress: bool = True,
) -> BuildReport:
    """Build and save a manifest from a raw fMoW tree (``geolab data fmow-manifest``).

    Args:
        root: the folder holding ``train/``, ``val/``, ... as distributed.
        out: the manifest to write (``.parquet`` or ``.csv``); the skipped files are listed in
            ``<out>.skipped.csv``.
        splits: splits to read (default: all present).
        image_kind: ``"rgb"`` or ``"msrgb"``.
        categories: keep only these categories.
        progress: show a progress bar.

    Returns:
        The :class:`BuildReport` (with ``manifest_path`` set).

    Raises:
        FileNotFoundError: no split folder under ``root``.
        ValueError: no usable image at all.
    """
    report = scan_fmow_tree(root, splits=splits, image_kind=image_kind,
                            categories=categories, progress=progress)
    return save_build(report, out)
