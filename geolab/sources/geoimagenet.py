"""GeoImageNet as written by the official downloader (``geography-aware-ssl/geoimagenet_downloader``).

The downloader keeps only Flickr images that have a geotag and writes::

    DATA_ROOT/imagenet_images/<class_name>/<flickr_photo_id>.jpg   (class name, spaces -> "_")
    DATA_ROOT/metadata.csv    # no header: id, lat, lon, locality, country, region, county

where ``id`` is the Flickr photo id (the image's file stem) and lat/lon come from Flickr's
``photos.geo.getLocation`` (``-1000`` when Flickr had none).

**No temporal positives here.** Each GeoImageNet image is a separate photo with its own
geotag; nothing ties two photos to one place over time. So every image is its own location
(``location_id = image_id``) and a temporal-positive pair falls back to two augmentations of the
same image (``singleton_share`` is 100%): on GeoImageNet only the geo pretext task (K-means
clusters of lat/lon) adds anything over MoCo-v2, as in the paper's GeoImageNet experiments.
Flickr gives no acquisition time either: ``timestamp`` is a placeholder (1970-01-01T00:00:00Z)
and the column ``timestamp_known`` is ``False`` on every row so nothing mistakes it for data.

The data set has no official split; geolab assigns ``val`` to a stable share of images by a hash
of the image id (same answer on every machine and run).
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from geolab.errors import MissingInputError
from geolab.sources.build import BuildReport, Skipped, save_build

#: Placeholder time for data without acquisition times (see the module docstring).
NO_TIME = pd.Timestamp("1970-01-01T00:00:00Z")
METADATA_FIELDS = ("id", "lat", "lon", "locality", "country", "region", "county")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _hash_fraction(text: str) -> float:
    """A stable number in [0, 1) from ``text`` (same on every machine and Python run)."""
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16) / 2**32


def _find_layout(root: Path) -> tuple[Path, Path]:
    """(images folder, metadata.csv) for a downloader output folder."""
    candidates = [(root / "imagenet_images", root / "metadata.csv"),
                  (root, root / "metadata.csv"), (root, root.parent / "metadata.csv")]
    for images, meta in candidates:
        if images.is_dir() and meta.is_file():
            return images, meta
    raise MissingInputError(
        f"No GeoImageNet download in {root}: expected {root / 'imagenet_images'}/<class>/<id>.jpg and "
        f"{root / 'metadata.csv'} as the official downloader writes them "
        "(python downloader.py -data_root ROOT ...)."
    )


def _read_metadata(path: Path, skipped: list[Skipped]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row or (lineno == 1 and row[0].strip().lower() == "id"):
                continue  # blank line, or a header someone added
            where = f"{path.name} line {lineno}"
            if len(row) < 3:
                skipped.append(Skipped(where, f"unparsable metadata: {len(row)} fields, expected "
                                       f"{', '.join(METADATA_FIELDS)}"))
                continue
            rec: dict[str, Any] = dict(zip(METADATA_FIELDS, (v.strip() for v in row)))
            try:
                lat, lon = float(rec["lat"]), float(rec["lon"])
            except ValueError:
                skipped.append(Skipped(where, f"unparsable metadata: lat/lon {rec['lat']!r}, {rec['lon']!r}"))
                continue
            rec["lat"], rec["lon"], rec["line"] = lat, lon, where
            prev = out.get(rec["id"])
            if prev is not None and (prev["lat"], prev["lon"]) != (lat, lon):
                skipped.append(Skipped(where, f"conflicting metadata: photo {rec['id']} already at "
                                       f"({prev['lat']}, {prev['lon']}) on {prev['line']}; the first is kept"))
                continue
            out.setdefault(rec["id"], rec)
    return out


def scan_geoimagenet(root: str | os.PathLike, val_fraction: float = 0.1,
                     progress: bool = True) -> BuildReport:
    """Read a GeoImageNet download folder into a manifest table (nothing written).

    Args:
        root: the downloader's ``-data_root`` (holding ``imagenet_images/`` and ``metadata.csv``).
        val_fraction: share of images put in ``val`` by a stable hash of the image id.
        progress: show a progress bar.

    Returns:
        A :class:`~geolab.sources.build.BuildReport`: one row per geotagged image
        (``image_id = location_id = "<class>/<photo id>"``, label = class folder, placeholder
        timestamp, ``timestamp_known = False``, plus ``country``, ``region``, ``locality``);
        images without a usable geotag and metadata rows without an image are in ``skipped``.

    Raises:
        FileNotFoundError: ``root`` is not a downloader output folder.
        ValueError: ``val_fraction`` outside [0, 1).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    root = Path(root).expanduser().resolve()
    images_dir, meta_path = _find_layout(root)
    skipped: list[Skipped] = []
    meta = _read_metadata(meta_path, skipped)
    used: set[str] = set()
    rows: list[dict[str, Any]] = []
    class_dirs = sorted(p for p in images_dir.iterdir() if p.is_dir())
    for cdir in tqdm(class_dirs, desc="GeoImageNet classes", unit="class", disable=not progress):
        for img in sorted(cdir.iterdir()):
            if not img.is_file():
                continue
            if img.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append(Skipped(str(img), "not an image (expected .jpg)"))
                continue
            rec = meta.get(img.stem)
            if rec is None:
                skipped.append(Skipped(str(img), f"no metadata: photo id {img.stem} is not in {meta_path.name}"))
                continue
            used.add(img.stem)
            lat, lon = rec["lat"], rec["lon"]
            if lat <= -1000 or lon <= -1000:
                skipped.append(Skipped(str(img), f"no geotag: Flickr gave none ({rec['line']})"))
                continue
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                skipped.append(Skipped(str(img), f"unparsable metadata: ({lat}, {lon}) is not a "
                                       f"lat/lon ({rec['line']})"))
                continue
            image_id = f"{cdir.name}/{img.stem}"
            rows.append({
                "image_id": image_id,
                "location_id": image_id,
                "path": str(img),
                "timestamp": NO_TIME,
                "lat": lat,
                "lon": lon,
                "label": cdir.name,
                "split": "val" if _hash_fraction(img.stem) < val_fraction else "train",
                "timestamp_known": False,
                "country": rec.get("country", ""),
                "region": rec.get("region", ""),
                "locality": rec.get("locality", ""),
            })
    for pid, rec in meta.items():
        if pid not in used:
            skipped.append(Skipped(rec["line"], f"metadata without image: photo {pid} has no file "
                                   f"in {images_dir.name}/<class>/"))
    df = pd.DataFrame(rows)
    if not df.empty:
        df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    return BuildReport(manifest=df, skipped=skipped, source=str(root))


def build_geoimagenet_manifest(root: str | os.PathLike, out: str | os.PathLike,
                               val_fraction: float = 0.1, progress: bool = True) -> BuildReport:
    """Build and save a GeoImageNet manifest (``geolab data geoimagenet-manifest``).

    Args:
        root: the downloader's output folder.
        out: manifest to write; skipped files go to ``<out>.skipped.csv``.
        val_fraction: share of images in ``val`` (stable hash of the id).
        progress: show a progress bar.

    Returns:
        The :class:`~geolab.sources.build.BuildReport` with ``manifest_path`` set.
    """
    return save_build(scan_geoimagenet(root, val_fraction=val_fraction, progress=progress), out)
