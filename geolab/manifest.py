"""The manifest: geolab's one data contract (schema, validation, splits, load/save).

A manifest is a table with one row per image. Every data tier (the geoworld simulation,
fMoW-mini, full fMoW, GeoImageNet) is read through one, so everything downstream of it is
the same for all tiers. The user-facing contract is ``data_manifests/SCHEMA.md``.

Required columns (:data:`REQUIRED_COLUMNS`):
    ``image_id`` (unique text), ``location_id`` (text; the images of one place, the
    paper's *revisits*), ``path`` (the image file, absolute or relative to the manifest's
    folder), ``timestamp`` (UTC), ``lat`` in [-90, 90] and ``lon`` in [-180, 180] (degrees,
    WGS84), ``label`` (category name), ``split`` (``train``/``val``/``test`` or any name).
Optional columns (:data:`OPTIONAL_COLUMNS`):
    ``gsd`` (ground sample distance, metres per pixel, > 0) and ``cloud_cover`` (percent,
    0-100). Any other column is kept as it is (geoworld adds ``mask_path``, which is
    resolved like ``path``). ``geo_cluster`` is derived (:func:`geolab.geo.add_geo_clusters`)
    and never required.

Every problem is reported as one :class:`ManifestError` naming the file, the row (0-based
data row; for CSV also the line in the file), the column, and what to do.

The cell-level tests this module validates with (blank, text, number, path) live in
:mod:`geolab.manifest_cells`; the summaries (:func:`manifest_stats`, :func:`format_stats`) in
:mod:`geolab.manifest_stats`, re-exported here.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geolab.errors import UserError
from geolab.io import atomic_write
from geolab.manifest_cells import (
    PATH_CHARACTERS,
    all_text,
    blank_mask,
    outside_root,
    parse_timestamps,
    relative_to_root,
    resolve_paths,
    shorten,
    show_value,
    to_float,
)
from geolab.manifest_stats import format_stats, manifest_stats

__all__ = [
    "DERIVED_COLUMNS",
    "OPTIONAL_COLUMNS",
    "PATH_COLUMNS",
    "REQUIRED_COLUMNS",
    "SPLITS",
    "TEXT_COLUMNS",
    "ManifestError",
    "format_stats",
    "load_manifest",
    "manifest_stats",
    "paths_outside_root",
    "save_manifest",
    "scoring_split",
    "select_split",
    "validate_manifest",
]

REQUIRED_COLUMNS: tuple[str, ...] = (
    "image_id",
    "location_id",
    "path",
    "timestamp",
    "lat",
    "lon",
    "label",
    "split",
)
OPTIONAL_COLUMNS: tuple[str, ...] = ("gsd", "cloud_cover")
#: The splits geolab's own builders write; other names are allowed.
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Text columns (stored as strings after loading).
TEXT_COLUMNS: tuple[str, ...] = ("image_id", "location_id", "path", "label", "split")
#: Columns holding file paths (resolved against the manifest's folder).
PATH_COLUMNS: tuple[str, ...] = ("path", "mask_path")
#: Derived columns that :func:`save_manifest` does not store.
DERIVED_COLUMNS: tuple[str, ...] = ("geo_cluster",)

class ManifestError(UserError, ValueError):
    """A manifest that breaks the contract, with where and what to do.

    Attributes:
        file: the manifest file (or ``"<table>"`` for an in-memory table).
        row: 0-based data row, or None when the problem is not one row's.
        column: the column concerned, or None.
        line: for a CSV manifest, the line in the file (the header is line 1), else None.
        problem: the message without the location prefix.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | os.PathLike | None = None,
        row: int | None = None,
        column: str | None = None,
        line: int | None = None,
    ) -> None:
        self.file = str(file) if file is not None else "<table>"
        self.row = None if row is None else int(row)
        self.column = column
        self.line = None if line is None else int(line)
        self.problem = problem
        where = [self.file]
        if self.row is not None:
            where.append(f"row {self.row}" + (f" (line {self.line})" if self.line is not None else ""))
        if column is not None:
            where.append(f"column '{column}'")
        super().__init__(", ".join(where) + ": " + problem)

    def __reduce__(self):  # keep the attributes across pickling (DataLoader workers)
        return (
            _rebuild_error,
            (self.problem, self.file, self.row, self.column, self.line),
        )


def _rebuild_error(problem, file, row, column, line) -> ManifestError:
    return ManifestError(problem, file=file, row=row, column=column, line=line)


class _Reporter:
    """Builds :class:`ManifestError` s that know the file and, for CSV, the line numbers."""

    def __init__(self, source: str | os.PathLike) -> None:
        self.source = str(source)
        self.is_csv = self.source.lower().endswith(".csv")

    def error(self, problem: str, row: int | None = None, column: str | None = None) -> ManifestError:
        line = row + 2 if (self.is_csv and row is not None) else None  # header is line 1
        return ManifestError(problem, file=self.source, row=row, column=column, line=line)

    def first_bad(self, bad: np.ndarray, problem: str, column: str,
                  values: Sequence[Any] | np.ndarray | None = None) -> None:
        """Raise for the first True in ``bad`` (a boolean array over rows), counting the others."""
        rows = np.flatnonzero(bad)
        if rows.size == 0:
            return
        row = int(rows[0])
        text = problem.format(value=show_value(values[row]) if values is not None else "")
        if rows.size > 1:
            text += f" ({rows.size - 1} more row{'s' if rows.size > 2 else ''} with the same problem)"
        raise self.error(text, row=row, column=column)


# ----------------------------------------------------------------------------- validation
def _check_table_shape(df: pd.DataFrame, rep: _Reporter) -> None:
    """A table with every required column, each once, and at least one row."""
    if not isinstance(df, pd.DataFrame):
        raise rep.error(f"expected a table (pandas DataFrame), got {type(df).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        have = ", ".join(str(c) for c in df.columns) or "none"
        raise rep.error(
            f"missing required column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(the file has: {have}). Add {'them' if len(missing) > 1 else 'it'} or rename the "
            f"matching column; required are {', '.join(REQUIRED_COLUMNS)}; see data_manifests/SCHEMA.md.",
            column=missing[0],
        )
    dupes = pd.Index(df.columns)[pd.Index(df.columns).duplicated()]
    if len(dupes):
        raise rep.error(
            f"column '{dupes[0]}' appears more than once; keep one and rename or drop the others.",
            column=str(dupes[0]),
        )
    if len(df) == 0:
        raise rep.error("the manifest has no rows; it needs one row per image.")


def _normalise_text(out: pd.DataFrame, rep: _Reporter) -> None:
    """Text columns: present, non-empty, stored as str (in place)."""
    for col in TEXT_COLUMNS:
        rep.first_bad(blank_mask(out[col]), f"{col} is empty or missing; every image needs a {col}.", col)
        if all_text(out[col]):
            out[col] = out[col].astype(str)
        else:
            out[col] = pd.Series([str(v) for v in out[col].to_numpy(dtype=object)], index=out.index, dtype=str)


def _check_coordinates(out: pd.DataFrame, rep: _Reporter) -> None:
    """``lat``/``lon``: numbers in range, stored as float64 (in place)."""
    for col, lo, hi in (("lat", -90.0, 90.0), ("lon", -180.0, 180.0)):
        raw = out[col]
        num = to_float(raw)
        rep.first_bad(
            np.isnan(num),
            col + " {value} is missing or not a number; give decimal degrees (WGS84), "
            f"{col} in [{lo:g}, {hi:g}].",
            col,
            raw.to_numpy(dtype=object),
        )
        rep.first_bad(
            (num < lo) | (num > hi),
            col + " {value} is outside " + f"[{lo:g}, {hi:g}]; give decimal degrees (WGS84)"
            + (" (are lat and lon swapped?)" if col == "lat" else "; wrap longitudes above 180 to lon - 360")
            + ".",
            col,
            num,
        )
        out[col] = num


def _check_optional_numbers(out: pd.DataFrame, rep: _Reporter) -> None:
    """``gsd``/``cloud_cover`` when present: missing values allowed, present ones in range, float64 (in place)."""
    optional = (("gsd", 0.0, np.inf, "metres per pixel, > 0"), ("cloud_cover", 0.0, 100.0, "percent, 0-100"))
    for col, lo, hi, unit in optional:
        if col not in out.columns:
            continue
        raw = out[col]
        num = to_float(raw)
        numeric = pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype)
        blank = np.isnan(num) if numeric else blank_mask(raw)
        rep.first_bad(
            np.isnan(num) & ~blank,
            col + " {value} is not a number" + f" ({unit}); leave it empty when unknown.",
            col,
            raw.to_numpy(dtype=object),
        )
        with np.errstate(invalid="ignore"):
            out_of_range = ((num <= lo) if col == "gsd" else (num < lo)) | (num > hi) | np.isinf(num)
        rep.first_bad(out_of_range, col + " {value} is out of range" + f" ({unit}).", col, num)
        out[col] = num


def _check_unique_ids(out: pd.DataFrame, rep: _Reporter) -> None:
    """Every ``image_id`` once."""
    dup = out["image_id"].duplicated(keep="first").to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero((out["image_id"] == out["image_id"].iat[row]).to_numpy())[0])
        raise rep.error(
            f"image_id {show_value(out['image_id'].iat[row])} is used again (first at row {first}"
            + (f", line {first + 2}" if rep.is_csv else "")
            + "); image ids must be unique: drop the duplicate row or give it a new id.",
            row=row,
            column="image_id",
        )


def _check_one_per_location(out: pd.DataFrame, rep: _Reporter) -> None:
    """One label and one split per location.

    Labels (and splits) that differ only by surrounding spaces would silently be two classes; a location's
    rows must share one label (a location is one place with one category) and one split (otherwise temporal
    positives would leak between splits).
    """
    for col in ("label", "split"):
        _check_space_variants(out[col], col, rep)
    for col, why in (
        ("label", "a location is one place with one category"),
        ("split", "otherwise temporal positives would leak between splits"),
    ):
        first_val = out.groupby("location_id", sort=False)[col].transform("first")
        bad = (out[col] != first_val).to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            loc = out["location_id"].iat[row]
            first_row = int(np.flatnonzero((out["location_id"] == loc).to_numpy())[0])
            at = f"row {first_row}" + (f" (line {first_row + 2})" if rep.is_csv else "")
            raise rep.error(
                f"location {show_value(loc)} has {col} {show_value(out[col].iat[row])} here but "
                f"{show_value(first_val.iat[row])} at "
                f"{at}; all images of a location must share one {col} ({why}). "
                f"Fix the {col} or give these images their own location_id.",
                row=row,
                column=col,
            )


def _check_paths(out: pd.DataFrame, rep: _Reporter, root: str | os.PathLike | None, check_files: bool,
                 confine_to_root: bool) -> None:
    """``path`` (and ``mask_path``) resolved against ``root`` (in place).

    Files must exist when ``check_files``, and lie inside ``root`` when ``confine_to_root``.
    """
    for col in PATH_COLUMNS:
        if col not in out.columns:
            continue
        values = out[col].to_numpy(dtype=object)
        # path is never blank here (checked with the text columns); mask_path may be
        blank = blank_mask(out[col]) if col != "path" else np.zeros(len(values), dtype=bool)
        resolved = resolve_paths(values, blank, root)
        if check_files:
            bad = np.fromiter(
                (p is not None and not os.path.isfile(p) for p in resolved), dtype=bool, count=len(resolved)
            )
            rows = np.flatnonzero(bad)
            if rows.size:
                row = int(rows[0])
                more = f" ({rows.size - 1} more missing)" if rows.size > 1 else ""
                base = f" relative to {root}" if root is not None and not os.path.isabs(str(values[row])) else ""
                raise rep.error(
                    f"file not found: {shorten(str(resolved[row]), PATH_CHARACTERS)}{more}. The {col} is "
                    f"{show_value(values[row], PATH_CHARACTERS)}{base}; "
                    "paths are absolute or relative to the manifest's folder. Fix the path, restore "
                    "the file, or validate with check_files=False (`--no-check-files`).",
                    row=row,
                    column=col,
                )
        if confine_to_root and root is not None:
            _check_confined(resolved, values, col, root, rep)
        if col == "path":
            out[col] = pd.Series(resolved, index=out.index, dtype=str)
        else:
            out[col] = pd.Series(resolved, index=out.index, dtype=object)


def validate_manifest(
    df: pd.DataFrame,
    source: str | os.PathLike = "<table>",
    root: str | os.PathLike | None = None,
    check_files: bool = True,
    require_splits: Sequence[str] = (),
    confine_to_root: bool = False,
) -> pd.DataFrame:
    """Check a manifest table against the contract and return a normalised copy.

    The copy has the index 0..n-1 in the input's order, text columns as strings,
    ``lat``/``lon`` (and ``gsd``/``cloud_cover`` when present) as float64, ``timestamp`` as
    ``datetime64[ns, UTC]`` (naive times are taken as UTC), and ``path`` (and ``mask_path``)
    as absolute paths when ``root`` is given.

    Args:
        df: the table, one row per image.
        source: the manifest's file name, used in error messages (and, when it ends in
            ``.csv``, to report line numbers).
        root: folder that relative paths are relative to (the manifest's folder). None
            leaves paths as they are (relative ones are then relative to the current folder).
        check_files: check that every image (and mask) file exists.
        require_splits: splits that must have at least one row (e.g. ``("train", "val")``).
        confine_to_root: refuse paths that lie outside ``root`` once symbolic links are
            followed (for manifests you did not write); needs ``root``.

    Returns:
        The validated, normalised copy.

    Raises:
        ManifestError: the first problem found, naming file, row, column and what to do.
    """
    rep = _Reporter(source)
    _check_table_shape(df, rep)
    out = df.reset_index(drop=True).copy()
    _normalise_text(out, rep)
    _check_coordinates(out, rep)
    _check_optional_numbers(out, rep)
    out["timestamp"] = parse_timestamps(out["timestamp"], rep)
    _check_unique_ids(out, rep)
    _check_one_per_location(out, rep)
    _check_paths(out, rep, root, check_files, confine_to_root)
    for split in require_splits:
        _check_split_present(out, split, rep)
    return out


def _check_space_variants(series: pd.Series, col: str, rep: _Reporter) -> None:
    """Refuse two values of ``col`` that are equal once surrounding spaces are removed."""
    uniques = pd.unique(series)
    if len(uniques) == len({str(v).strip() for v in uniques}):
        return
    by_stripped: dict[str, str] = {}
    for value in uniques:
        other = by_stripped.setdefault(str(value).strip(), value)
        if other != value:
            spaced = value if value != value.strip() else other
            row = int(np.flatnonzero((series == spaced).to_numpy())[0])
            raise rep.error(
                f"{col} {show_value(spaced)} differs from {col} {show_value(spaced.strip())} only by surrounding "
                f"spaces, which would make them two {'classes' if col == 'label' else 'splits'}; write "
                f"{show_value(spaced.strip())}.",
                row=row,
                column=col,
            )


def _check_confined(resolved: list[str | None], values: np.ndarray, col: str, root: str | os.PathLike,
                    rep: _Reporter) -> None:
    bad = outside_root(resolved, root, follow_links=True)
    rows = np.flatnonzero(bad)
    if rows.size:
        row = int(rows[0])
        more = f" ({rows.size - 1} more rows like it)" if rows.size > 1 else ""
        raise rep.error(
            f"{col} {show_value(values[row], PATH_CHARACTERS)} resolves to "
            f"{shorten(os.path.realpath(str(resolved[row])), PATH_CHARACTERS)}, outside "
            "the manifest's "
            f"folder {os.path.realpath(root)}{more}; with --confine-to-root every image must lie inside it. "
            "Move the images under the manifest's folder, or drop --confine-to-root for a manifest you trust.",
            row=row,
            column=col,
        )


def paths_outside_root(df: pd.DataFrame, root: str | os.PathLike) -> int:
    """How many rows of a loaded manifest have a ``path`` outside ``root``.

    ``..`` is resolved, symbolic links are not followed. ``geolab data validate`` reports it.
    """
    return int(outside_root(list(df["path"].astype(str)), root, follow_links=False).sum())


def _check_split_present(df: pd.DataFrame, split: str, rep: _Reporter) -> None:
    if not (df["split"] == split).any():
        counts = df["split"].value_counts()
        have = ", ".join(f"{shorten(k)} ({v} images)" for k, v in counts.items()) or "none"
        raise rep.error(
            f"split '{split}' is empty: no row has split == '{split}' (the manifest has {have}). "
            f"Assign some locations to '{split}' or choose one of the splits present.",
            column="split",
        )


def select_split(df: pd.DataFrame, split: str | Sequence[str]) -> pd.DataFrame:
    """The rows of one split (or several), index reset; an empty split is an error.

    Args:
        df: a loaded manifest.
        split: a split name, e.g. ``"train"``, or several names.

    Returns:
        The rows of that split, index 0..n-1, ``attrs`` kept.

    Raises:
        ManifestError: when a split asked for has no rows.
    """
    names = [split] if isinstance(split, str) else list(split)
    rep = _Reporter(df.attrs.get("source", "<table>"))
    for name in names:
        _check_split_present(df, name, rep)
    out = df[df["split"].isin(names)].reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out


def scoring_split(df: pd.DataFrame, wanted: str | None = "test") -> str:
    """The split an evaluation scores: ``wanted`` when ``df`` has rows of it, else ``"val"`` when it has those.

    Every evaluation (linear probe, kNN, dense transfer, nuisance probes) scores the test split and
    falls back to val on a manifest without one (geoworld's quick tiers, fMoW subsets); this is that rule,
    once.

    Args:
        df: a loaded manifest (its ``split`` column).
        wanted: the split asked for; ``None`` means ``"test"``.

    Returns:
        ``wanted``, or ``"val"`` when ``wanted`` has no rows and val has; otherwise ``wanted`` unchanged (the
        caller's own check then reports the empty split).
    """
    wanted = wanted or "test"
    splits = set(df["split"].astype(str)) if "split" in df.columns else set()
    return "val" if wanted not in splits and "val" in splits else wanted


# ----------------------------------------------------------------------------- load / save
def load_manifest(
    path: str | os.PathLike,
    check_files: bool = True,
    require_splits: Sequence[str] = (),
    confine_to_root: bool = False,
) -> pd.DataFrame:
    """Read a manifest (Parquet or CSV, by suffix) and validate it.

    Args:
        path: ``.parquet`` / ``.pq`` or ``.csv`` file.
        check_files: check that every image file exists (a stat per row, no image opened).
        require_splits: splits that must be non-empty, e.g. ``("train", "val")``.
        confine_to_root: refuse image paths outside the manifest's folder (symbolic links
            followed), for manifests you did not write.

    Returns:
        The validated table (see :func:`validate_manifest`); ``path``/``mask_path`` absolute;
        ``df.attrs["source"]`` is the manifest's path.

    Raises:
        ManifestError: unreadable file or any breach of the contract.
    """
    path = Path(path).expanduser()
    rep = _Reporter(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*") if p.suffix.lower() in (".parquet", ".pq", ".csv"))
        hint = f" (this folder holds {', '.join(inside[:3])})" if inside else ""
        raise rep.error(
            f"is a folder, not a manifest file; give the manifest file itself (Parquet or CSV), e.g. "
            f"{path / (inside[0] if inside else 'manifest.parquet')}{hint}."
        )
    if not path.is_file():
        raise rep.error(
            "manifest file not found. Check the path; `geolab data world` builds the default "
            "manifest and data_manifests/SCHEMA.md describes the format."
        )
    df = _read_table(path, rep)
    out = validate_manifest(
        df, source=path, root=path.resolve().parent, check_files=check_files, require_splits=require_splits,
        confine_to_root=confine_to_root,
    )
    out.attrs["source"] = str(path.resolve())
    return out


def _read_table(path: Path, rep: _Reporter) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many types for a damaged file
            raise rep.error(
                f"cannot be read as Parquet ({type(exc).__name__}: {exc}). Is the file complete? "
                "Rewrite it with geolab.manifest.save_manifest or pandas.DataFrame.to_parquet."
            ) from exc
    if suffix == ".csv":
        _check_csv_header(path, rep)
        try:
            header = pd.read_csv(path, nrows=0).columns
            return pd.read_csv(
                path,
                dtype={c: str for c in header if c in TEXT_COLUMNS or c in ("timestamp", "mask_path")},
                keep_default_na=False,
                na_values={c: [""] for c in header},
            )
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
            raise rep.error(
                f"cannot be read as CSV ({type(exc).__name__}: {exc}). Write UTF-8 CSV with a "
                f"header row naming the columns ({', '.join(REQUIRED_COLUMNS)})."
            ) from exc
    raise rep.error(f"unknown manifest format '{path.suffix}'; use .parquet (preferred) or .csv.")


def _check_csv_header(path: Path, rep: _Reporter) -> None:
    """A column named twice in a CSV header (pandas would silently rename it ``lat.1``)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
    except (UnicodeDecodeError, csv.Error):
        return  # pandas reports an unreadable file below
    seen: dict[str, int] = {}
    for i, name in enumerate(header, start=1):
        if name in seen:
            raise rep.error(
                f"column '{name}' appears twice in the header (columns {seen[name]} and {i}); "
                "keep one and rename or drop the other.",
                column=name,
            )
        seen[name] = i


def save_manifest(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a manifest atomically (Parquet or CSV, by suffix) after validating it.

    Absolute paths under the manifest's folder are written relative to it (so the folder
    can be moved); other paths are kept. Relative paths in ``df`` are taken as relative to
    the manifest's folder. The derived ``geo_cluster`` column is not stored (it depends on
    K and the seed; :func:`geolab.geo.add_geo_clusters` recomputes it).

    Args:
        df: the table (image files are not checked).
        path: target ``.parquet`` or ``.csv``.

    Returns:
        The path written.

    Raises:
        ManifestError: the table breaks the contract or the suffix is unknown.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv"):
        raise ManifestError(f"unknown manifest format '{path.suffix}'; use .parquet or .csv.", file=path)
    root = path.resolve().parent
    out = validate_manifest(df, source=path, root=None, check_files=False)
    out = out.drop(columns=[c for c in DERIVED_COLUMNS if c in out.columns])
    prefix = str(root).rstrip(os.sep) + os.sep
    for col in PATH_COLUMNS:
        if col in out.columns:
            rel = [
                v[len(prefix) :].replace(os.sep, "/")
                if isinstance(v, str) and v.startswith(prefix)
                else relative_to_root(v, root)
                for v in out[col].to_numpy(dtype=object)
            ]
            out[col] = pd.Series(rel, index=out.index, dtype=str if col == "path" else object)
    out.attrs = {}
    if suffix == ".csv":
        # "\n" line ends, unless a text cell holds a carriage return: then "\r\n" (RFC 4180),
        # which makes the writer quote that cell so that it reads back intact
        has_cr = any(
            out[c].str.contains("\r", regex=False).any()
            if all_text(out[c])
            else out[c].map(lambda v: isinstance(v, str) and "\r" in v).any()
            for c in out.columns
            if not (pd.api.types.is_numeric_dtype(out[c].dtype) or pd.api.types.is_datetime64_any_dtype(out[c].dtype))
        )
        text = out.to_csv(index=False, lineterminator="\r\n" if has_cr else "\n")
        with atomic_write(path, "wb") as fh:  # bytes: no newline translation on any platform
            fh.write(text.encode("utf-8"))
    else:
        with atomic_write(path, "wb") as fh:
            out.to_parquet(fh, index=False)
    return path


