"""Reading a manifest's cells: blank, text and number tests, and paths against the manifest's folder.

The column-level helpers :mod:`geolab.manifest` validates with. They know nothing of the schema (which
columns exist, what they mean): they tell which cells are blank, turn a column into numbers or UTC
times, resolve and relativise paths, and quote a value for an error message. The one that can find a
bad cell (:func:`parse_timestamps`) reports it through the :class:`Reporter` it is given. Vectorised where they can
be, because fMoW's manifest has 363k rows.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

_EXAMPLE_TIME = "2016-05-18T15:28:47Z"


class Reporter(Protocol):
    """Where a cell parser reports a bad cell (``geolab.manifest``'s reporter, which raises ManifestError)."""

    def error(self, problem: str, row: int | None = None, column: str | None = None) -> Exception:
        """The error for ``problem`` at ``row`` and ``column``, for the caller to raise."""

    def first_bad(self, bad: np.ndarray, problem: str, column: str, values: Sequence[Any] | None = None) -> None:
        """Raise for the first True in ``bad``, counting the others."""


#: Characters of a value an error message quotes before it shortens it (:func:`shorten`).
SHOWN_CHARACTERS = 80
#: The same for file paths, which people need whole to find the file (deep folders are long).
PATH_CHARACTERS = 300


def shorten(text: str, limit: int = SHOWN_CHARACTERS) -> str:
    """``text`` as an error message quotes it: whole up to ``limit`` characters, else its start and the length.

    One home for this, so that a 1 MB label or path never fills a terminal:
    ``shorten("x" * 1000)`` is ``"xxx...x... (1000 characters)"`` (the first ``limit`` characters).
    """
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def show_value(value: Any, limit: int = SHOWN_CHARACTERS) -> str:
    """A cell's value as an error message quotes it: text in quotes, shortened as by :func:`shorten`."""
    if isinstance(value, str):
        return f"'{value}'" if len(value) <= limit else f"'{value[:limit]}...' ({len(value)} characters)"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return repr(float(value)) if isinstance(value, (float, np.floating)) else str(int(value))
    return shorten(repr(value), limit)


def is_blank(value: Any) -> bool:
    """True for a missing cell: None, NaN/NaT, or text that is empty or only spaces."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # arrays and other containers are not blank
        return False


def all_text(series: pd.Series) -> bool:
    """True when every non-missing cell is a string (the fast, vectorised case)."""
    if not (pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype)):
        return False
    return pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")


def blank_mask(series: pd.Series) -> np.ndarray:
    """Missing or whitespace-only cells."""
    if all_text(series):
        missing = series.isna().to_numpy(dtype=bool)
        empty = series.str.strip().eq("").to_numpy(dtype=bool, na_value=False)
        return missing | empty
    values = series.to_numpy(dtype=object)
    return np.fromiter((is_blank(v) for v in values), dtype=bool, count=len(values))


def to_float(series: pd.Series) -> np.ndarray:
    """Numbers as float64; anything that is not a number becomes NaN."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return np.full(len(series), np.nan)
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    values = series.to_numpy(dtype=object)
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if isinstance(v, (bool, np.bool_)):
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError, OverflowError):
            out[i] = np.nan
    return out


def resolve_paths(values: np.ndarray, blank: np.ndarray, root: str | os.PathLike | None) -> list[str | None]:
    """:func:`resolve_path` for a column (``None`` for blank cells).

    The common case (plain relative or absolute paths) is done with string operations only (os.path per row
    costs seconds on fMoW's 363k rows).
    """
    if os.name != "posix":
        return [None if b else resolve_path(str(v), root) for v, b in zip(values, blank)]
    prefix = None if root is None else os.path.abspath(os.fspath(root)).rstrip("/") + "/"
    out: list[str | None] = []
    for v, b in zip(values, blank):
        if b:
            out.append(None)
            continue
        p = str(v)
        if p.startswith("~") or "/." in p or "//" in p or p.startswith(".") or p.endswith("/"):
            out.append(resolve_path(p, root))  # needs expanduser / normpath
        elif p.startswith("/") or prefix is None:
            out.append(p)
        else:
            out.append(prefix + p)
    return out


def resolve_path(path: str, root: str | os.PathLike | None) -> str:
    """One path, ``~`` expanded, relative ones joined to ``root``; normalised and absolute unless both are relative."""
    path = os.path.expanduser(path)
    if root is not None and not os.path.isabs(path):
        path = os.path.join(os.fspath(root), path)
    return os.path.normpath(os.path.abspath(path)) if (root is not None or os.path.isabs(path)) else path


def outside_root(resolved: list[str | None], root: str | os.PathLike, follow_links: bool) -> np.ndarray:
    """Rows whose resolved path lies outside ``root`` (blank cells are never outside)."""
    base = os.path.realpath(root) if follow_links else os.path.abspath(os.fspath(root))
    prefix = base.rstrip(os.sep) + os.sep
    norm = os.path.realpath if follow_links else os.path.normpath
    return np.fromiter(
        (p is not None and not norm(p).startswith(prefix) for p in resolved), dtype=bool, count=len(resolved)
    )


def relative_to_root(value: Any, root: Path) -> Any:
    """An absolute path under ``root`` as a POSIX path relative to it; other values as they are."""
    if is_blank(value):
        return value
    text = str(value)
    if not os.path.isabs(text):
        return text
    try:
        return Path(os.path.normpath(text)).relative_to(root).as_posix()
    except ValueError:
        return text


def parse_timestamps(raw: pd.Series, rep: Reporter) -> pd.Series:
    """Parse ``timestamp`` into ``datetime64[ns, UTC]``; naive times are taken as UTC.

    Args:
        raw: the ``timestamp`` column as loaded (text, date-times, or a mix).
        rep: reports the first bad cell (:class:`Reporter`).

    Returns:
        The times, UTC, nanosecond unit, with ``raw``'s index.
    """
    hint = f"write it in ISO 8601, e.g. {_EXAMPLE_TIME} (UTC; naive times are taken as UTC)."
    if isinstance(raw.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(raw.dtype):
        ts = raw.dt.tz_localize("UTC") if raw.dt.tz is None else raw.dt.tz_convert("UTC")
    elif all_text(raw):
        values = raw.to_numpy(dtype=object)
        rep.first_bad(blank_mask(raw), "timestamp is missing; " + hint, "timestamp")
        parsed = pd.to_datetime(raw.str.strip(), utc=True, format="ISO8601", errors="coerce")
        rep.first_bad(parsed.isna().to_numpy(), "timestamp {value} cannot be parsed; " + hint, "timestamp", values)
        ts = parsed
    else:
        values = raw.to_numpy(dtype=object)
        texts: list[Any] = []
        for i, v in enumerate(values):
            if is_blank(v):
                raise rep.error(f"timestamp is missing; {hint}", row=i, column="timestamp")
            if isinstance(v, (datetime.datetime, datetime.date, np.datetime64)):
                texts.append(pd.Timestamp(v).isoformat())
            elif isinstance(v, str):
                texts.append(v.strip())
            else:
                raise rep.error(
                    f"timestamp {show_value(v)} is not a date-time; {hint}", row=i, column="timestamp"
                )
        parsed = pd.to_datetime(pd.Series(texts, dtype=object), utc=True, format="ISO8601", errors="coerce")
        bad = parsed.isna().to_numpy()
        rep.first_bad(bad, "timestamp {value} cannot be parsed; " + hint, "timestamp", values)
        ts = parsed
    bad = ts.isna().to_numpy()
    rep.first_bad(bad, "timestamp is missing; " + hint, "timestamp")
    years = ts.dt.year.to_numpy()
    rep.first_bad(
        (years < 1678) | (years > 2261),
        "timestamp {value} is outside the supported years 1678-2261; " + hint,
        "timestamp",
        raw.to_numpy(dtype=object),
    )
    return ts.dt.as_unit("ns").set_axis(raw.index)
