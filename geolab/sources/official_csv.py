"""The CSVs of the official GASSL code (sustainlab-group/geography-aware-ssl), read into a manifest.

The official loaders (``moco_fmow/data_loader/fmow_dataloader.py``) read a CSV with a header row
and take **column 0 as the label** and **column 1 as the image path** by position; the
temporal loader then globs ``<folder>/<category>_<n>_*_rgb.jpg`` beside each image for its
temporal positive, and the Geo variant reads ``train_100geoclasses.csv`` whose column 0 is the
geo cluster (K=100) instead of the category. Related code (SatMAE) writes the same files with
named columns ``category, location_id, image_id, timestamp, ..., image_path``.

Accepted here:

* label: a column named ``category``, ``label`` or ``class``, else column 0. Category names are
  used as they are; integer labels are fMoW category indices (alphabetical order,
  :data:`geolab.sources.fmow.FMOW_CATEGORIES`) and are checked against the category folder
  in the path when there is one.
* path: ``image_path``, ``path`` or ``img_path``, else column 1. Relative paths are relative to
  the CSV's folder; ``rebase=[(old, new)]`` rewrites the authors' absolute prefixes.
* optional: ``image_id``, ``location_id``, ``timestamp``, ``lat``, ``lon``, ``polygon`` or
  ``raw_location`` (WKT), ``split``, ``gsd``, ``cloud_cover``. What the CSV lacks (lat/lon,
  timestamp, gsd, cloud cover) is read from the fMoW JSON beside the image.
* location: ``location_id`` column, else the image's folder (``<category>_<n>``, exactly the
  folder the official code globs in) within its split.
* split: ``split`` column, else the ``split`` argument, else the ``train``/``val``/``test``/``seq``
  folder in the path.
* geo clusters: ``geo_csvs`` (column 0 = cluster, column 1 = path) add an
  ``official_geo_cluster`` column, so the official assignment can be compared with geolab's own
  (``geo_cluster`` stays derived, as the manifest contract says).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from geolab.errors import MissingInputError, UserError
from geolab.sources.build import BuildReport, Skipped, drop_label_conflicts, save_build
from geolab.sources.fmow import (
    FMOW_CATEGORIES,
    FMOW_SPLITS,
    FmowMetadataError,
    parse_timestamp,
    polygon_centroid,
    read_fmow_metadata,
)

LABEL_COLUMNS = ("category", "label", "class")
PATH_COLUMNS = ("image_path", "path", "img_path")


class OfficialCsvError(UserError, ValueError):
    """An official GASSL CSV (or a --rebase rule) that cannot be read; the message names the file, line and column."""


def _pick(columns: Sequence[str], names: Sequence[str], position: int, what: str, csv: Path) -> str:
    lower = {str(c).strip().lower(): c for c in columns}
    for n in names:
        if n in lower:
            return lower[n]
    if len(columns) <= position:
        raise OfficialCsvError(
            f"{csv}: cannot find the {what} column: no column named {' / '.join(names)} and only "
            f"{len(columns)} column(s) ({', '.join(map(str, columns))}). The official CSVs have the "
            "label in column 0 and the image path in column 1, with a header row."
        )
    return columns[position]


def _rebased(path: str, rebase: Sequence[tuple[str, str]], base: Path) -> Path:
    for old, new in rebase:
        if path.startswith(old):
            path = new + path[len(old):]
            break
    p = Path(os.path.expanduser(path))
    return p if p.is_absolute() else (base / p)


def _split_from_path(path: Path) -> str | None:
    for part in reversed(path.parts[:-1]):
        if part in FMOW_SPLITS:
            return part
    return None


def _category_folder(path: Path) -> str | None:
    """``.../<category>/<category>_<n>/<file>`` -> category, else None."""
    parts = path.parts
    if len(parts) >= 3 and parts[-2].startswith(parts[-3] + "_"):
        return parts[-3]
    return None


def _label(value: Any, path: Path) -> tuple[str | None, str | None]:
    """(label, problem) for a CSV label cell."""
    folder = _category_folder(path)
    text = str(value).strip()
    if text == "" or text.lower() == "nan":
        return (folder, None) if folder else (None, "no label: empty label cell and no category folder")
    try:
        as_int = int(float(text))
        is_int = float(text) == as_int
    except ValueError:
        is_int = False
    if not is_int:
        if folder and folder != text:
            return None, f"label disagreement: CSV says {text!r}, the folder says {folder!r}"
        return text, None
    if not 0 <= as_int < len(FMOW_CATEGORIES):
        return None, f"label {as_int} is not an fMoW category index (0-{len(FMOW_CATEGORIES) - 1})"
    name = FMOW_CATEGORIES[as_int]
    if folder and folder != name:
        return None, (f"label disagreement: index {as_int} is {name!r} in fMoW's alphabetical order, "
                      f"the folder says {folder!r}")
    return name, None


def read_official_csv(
    csv_path: str | os.PathLike,
    geo_csvs: Iterable[str | os.PathLike] = (),
    split: str | None = None,
    rebase: Sequence[tuple[str, str]] = (),
    progress: bool = True,
) -> BuildReport:
    """Read an official GASSL CSV (plus optional geo-cluster CSVs) into a manifest table.

    Args:
        csv_path: e.g. ``train_62classes.csv`` (label in column 0, image path in column 1).
        geo_csvs: geo-cluster CSVs such as ``train_100geoclasses.csv``.
        split: split of every row when the CSV has no ``split`` column and the paths hold no
            split folder.
        rebase: ``(old_prefix, new_prefix)`` pairs applied to image paths (the official CSVs
            hold the authors' absolute paths).
        progress: show a progress bar while reading the JSON metadata.

    Returns:
        A :class:`~geolab.sources.build.BuildReport`; rows that cannot be used (image missing,
        no metadata, no split, label disagreement) are listed in ``skipped``.

    Raises:
        FileNotFoundError: the CSV does not exist.
        ValueError: the CSV has no usable label/path columns, or is a geo-cluster CSV.
    """
    csv_path = Path(csv_path).expanduser()
    if not csv_path.is_file():
        raise MissingInputError(f"CSV {csv_path} not found.")
    if "geoclass" in csv_path.name.lower() and not list(geo_csvs):
        raise OfficialCsvError(
            f"{csv_path.name} looks like a geo-cluster CSV (its column 0 is a cluster, not a "
            "category). Pass the category CSV as CSV and this one with --geo-csv."
        )
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    if table.empty:
        raise OfficialCsvError(f"{csv_path} has no rows.")
    cols = list(table.columns)
    label_col = _pick(cols, LABEL_COLUMNS, 0, "label", csv_path)
    path_col = _pick(cols, PATH_COLUMNS, 1, "image path", csv_path)
    lower = {str(c).strip().lower(): c for c in cols}
    base = csv_path.resolve().parent
    rows: list[dict[str, Any]] = []
    skipped: list[Skipped] = []

    def cell(rec: pd.Series, name: str) -> str:
        c = lower.get(name)
        return str(rec[c]).strip() if c is not None else ""

    for i, rec in tqdm(table.iterrows(), total=len(table), desc="official CSV", unit="row",
                       disable=not progress):
        where = f"{csv_path.name} line {i + 2}"
        raw_path = str(rec[path_col]).strip()
        if not raw_path:
            skipped.append(Skipped(where, "no image path"))
            continue
        path = _rebased(raw_path, rebase, base)
        if not path.is_file():
            skipped.append(Skipped(str(path), f"image not found ({where}); fix the path or pass "
                                   "--rebase OLD=NEW"))
            continue
        label, problem = _label(rec[label_col], path)
        if problem or label is None:  # a label comes without a problem, and a problem without a label
            skipped.append(Skipped(str(path), f"{problem} ({where})"))
            continue
        row_split = cell(rec, "split") or split or _split_from_path(path)
        if not row_split:
            skipped.append(Skipped(str(path), f"no split: no split column, no --split and no "
                                   f"train/val/test folder in the path ({where})"))
            continue
        try:
            rows.append(_row(rec, cell, path, label, row_split))
        except FmowMetadataError as exc:
            skipped.append(Skipped(str(path), f"unparsable metadata: {exc} ({where})"))
    df = pd.DataFrame(rows)
    if not df.empty:
        df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
        dup = df["image_id"].duplicated(keep="first")
        for p in df.loc[dup, "path"]:
            skipped.append(Skipped(p, "duplicate image: the same image_id appears earlier in the CSV"))
        df = df[~dup].reset_index(drop=True)
        df, more = drop_label_conflicts(df)
        skipped += more
        for geo in geo_csvs:
            df = _join_geo(df, Path(geo).expanduser(), rebase, skipped)
    return BuildReport(manifest=df, skipped=skipped, source=str(csv_path))


def _row(rec: pd.Series, cell, path: Path, label: str, split: str) -> dict[str, Any]:
    stem = path.stem
    for kind in ("_rgb", "_msrgb"):
        if stem.endswith(kind):
            stem = stem[: -len(kind)]
    out: dict[str, Any] = {
        "image_id": cell(rec, "image_id") or f"{split}/{stem}",
        "location_id": cell(rec, "location_id") or f"{split}/{path.parent.name}",
        "path": str(path),
        "label": label,
        "split": split,
    }
    lat, lon, ts = cell(rec, "lat"), cell(rec, "lon"), cell(rec, "timestamp")
    wkt = cell(rec, "polygon") or cell(rec, "raw_location")
    gsd, cloud = cell(rec, "gsd"), cell(rec, "cloud_cover")
    meta: dict[str, Any] | None = None
    if not ((lat and lon) or wkt) or not ts or not gsd or not cloud:
        json_path = path.with_suffix(".json")
        if json_path.is_file():
            meta = read_fmow_metadata(json_path)
        elif not ((lat and lon) or wkt) or not ts:
            missing = "lat/lon" if not ((lat and lon) or wkt) else "timestamp"
            raise FmowMetadataError(f"{missing} is not in the CSV and {json_path.name} is missing")
    if lat and lon:
        out["lat"], out["lon"] = float(lat), float(lon)
    elif wkt:
        out["lat"], out["lon"] = polygon_centroid(wkt)
    else:
        out["lat"], out["lon"] = meta["lat"], meta["lon"]  # type: ignore[index]
    out["timestamp"] = parse_timestamp(ts) if ts else meta["timestamp"]  # type: ignore[index]
    out["gsd"] = float(gsd) if gsd else (meta["gsd"] if meta else np.nan)
    out["cloud_cover"] = float(cloud) if cloud else (meta["cloud_cover"] if meta else np.nan)
    return out


def _join_geo(df: pd.DataFrame, geo_csv: Path, rebase: Sequence[tuple[str, str]],
              skipped: list[Skipped]) -> pd.DataFrame:
    """Add ``official_geo_cluster`` from a geo-cluster CSV (column 0 cluster, column 1 path)."""
    if not geo_csv.is_file():
        raise MissingInputError(f"geo-cluster CSV {geo_csv} not found.")
    geo = pd.read_csv(geo_csv, dtype=str, keep_default_na=False)
    if geo.shape[1] < 2:
        raise OfficialCsvError(f"{geo_csv}: expected the geo cluster in column 0 and the image path in "
                         f"column 1, found {geo.shape[1]} column(s).")
    base = geo_csv.resolve().parent
    clusters: dict[str, int] = {}
    for i, (c, p) in enumerate(zip(geo.iloc[:, 0], geo.iloc[:, 1])):
        try:
            k = int(float(c))
        except ValueError:
            raise OfficialCsvError(f"{geo_csv} line {i + 2}, column 0: geo cluster {c!r} is not an "
                             "integer.") from None
        clusters[os.path.normpath(str(_rebased(str(p).strip(), rebase, base)))] = k
    keys = [os.path.normpath(p) for p in df["path"]]
    out = df.copy()
    out["official_geo_cluster"] = pd.array([clusters.get(k) for k in keys], dtype="Int64")
    known = set(keys)
    for p in clusters:
        if p not in known:
            skipped.append(Skipped(p, f"geo-cluster row without a usable image in the CSV ({geo_csv.name})"))
    return out


def build_from_official_csv(
    csv_path: str | os.PathLike,
    out: str | os.PathLike,
    geo_csvs: Iterable[str | os.PathLike] = (),
    split: str | None = None,
    rebase: Sequence[tuple[str, str]] = (),
    progress: bool = True,
) -> BuildReport:
    """Build and save a manifest from official GASSL CSVs (``geolab data from-official-csv``).

    Args:
        csv_path: the category CSV.
        out: the manifest to write (``.parquet`` or ``.csv``); skipped rows go to
            ``<out>.skipped.csv``.
        geo_csvs: geo-cluster CSVs to join as ``official_geo_cluster``.
        split: split for rows whose split cannot be told otherwise.
        rebase: path prefix rewrites ``(old, new)``.
        progress: show a progress bar.

    Returns:
        The :class:`~geolab.sources.build.BuildReport` with ``manifest_path`` set.
    """
    report = read_official_csv(csv_path, geo_csvs=geo_csvs, split=split, rebase=rebase,
                               progress=progress)
    return save_build(report, out)


def parse_rebase(items: Iterable[str]) -> list[tuple[str, str]]:
    """``["OLD=NEW", ...]`` -> ``[(OLD, NEW), ...]`` (for the command line).

    Raises:
        ValueError: an item without ``=``.
    """
    pairs = []
    for item in items:
        if "=" not in item:
            raise OfficialCsvError(f"--rebase expects OLD=NEW, got {item!r}")
        old, new = item.split("=", 1)
        pairs.append((old, new))
    return pairs


__all__ = ["read_official_csv", "build_from_official_csv", "parse_rebase"]
