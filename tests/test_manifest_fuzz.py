"""Fuzzed manifests (hypothesis): a malformed table always gives a ManifestError, never another
exception, and a valid table round-trips through Parquet and CSV unchanged.

Bounded (50 examples per test, derandomized) so that it runs in seconds and is the same
on every run.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geolab.manifest import REQUIRED_COLUMNS, ManifestError, load_manifest, save_manifest, validate_manifest

FUZZ = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# text as people write it: letters of many scripts, digits, punctuation, CSV's special
# characters (comma, quotes), spaces inside; never blank (blank is malformed)
_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")),
    min_size=1,
    max_size=12,
).filter(lambda s: s.strip() != "")
_TIMES = st.datetimes(
    min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.timezone.utc)
)


@st.composite
def valid_tables(draw) -> pd.DataFrame:
    """A manifest that keeps every rule (files are not checked)."""
    n_loc = draw(st.integers(1, 5))
    locations = draw(st.lists(_TEXT, min_size=n_loc, max_size=n_loc, unique=True))
    rows = []
    ids = iter(draw(st.lists(_TEXT, min_size=40, max_size=40, unique=True)))
    labels: dict[str, str] = {}  # labels that differ only by surrounding spaces are malformed
    for loc in locations:
        label = draw(_TEXT.filter(lambda t: labels.get(t.strip(), t) == t))
        labels[label.strip()] = label
        split = draw(st.sampled_from(["train", "val", "test", "holdout"]))
        lat = draw(st.floats(-90, 90, allow_nan=False))
        lon = draw(st.floats(-180, 180, allow_nan=False))
        for _ in range(draw(st.integers(1, 4))):
            rows.append(
                {
                    "image_id": next(ids),
                    "location_id": loc,
                    "path": f"images/{len(rows)}.png",
                    "timestamp": draw(_TIMES),
                    "lat": lat,
                    "lon": lon,
                    "label": label,
                    "split": split,
                }
            )
    df = pd.DataFrame(rows)
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    if draw(st.booleans()):
        df["gsd"] = draw(st.lists(st.one_of(st.none(), st.floats(0.01, 100)), min_size=len(df), max_size=len(df)))
        df["gsd"] = df["gsd"].astype(float)
    if draw(st.booleans()):
        df["cloud_cover"] = draw(st.lists(st.floats(0, 100), min_size=len(df), max_size=len(df)))
    if draw(st.booleans()):  # an extra column is kept as it is
        df["note"] = draw(st.lists(_TEXT, min_size=len(df), max_size=len(df)))
    return df


@given(df=valid_tables(), fmt=st.sampled_from(["parquet", "csv"]))
@FUZZ
def test_valid_tables_round_trip(df: pd.DataFrame, fmt: str):
    """save_manifest -> load_manifest returns the same table (paths made absolute)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"manifest.{fmt}"
        expected = validate_manifest(df, root=Path(tmp).resolve(), check_files=False)
        save_manifest(df, path)
        back = load_manifest(path, check_files=False)
        back.attrs = {}
        pd.testing.assert_frame_equal(back, expected, check_exact=True)
        # and stable: saving what was loaded gives the same file content
        save_manifest(back, Path(tmp) / f"again.{fmt}")
        again = load_manifest(Path(tmp) / f"again.{fmt}", check_files=False)
        again.attrs = {}
        pd.testing.assert_frame_equal(again, expected, check_exact=True)


# ----------------------------------------------------------------------------- malformed
_JUNK = st.one_of(
    st.none(),
    st.just(np.nan),
    st.just(""),
    st.just("   "),
    st.text(max_size=8),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.just([1, 2]),
    st.just({"a": 1}),
    st.just(dt.time(12, 0)),
)


def _set(df: pd.DataFrame, row: int, col: str, value) -> None:
    """Put any Python value (even a list) into one cell."""
    cells = list(df[col])
    cells[row] = value
    df[col] = pd.Series(cells, index=df.index, dtype=object)


@st.composite
def malformed_tables(draw) -> pd.DataFrame:
    """A valid table with exactly one defect of a kind the contract forbids."""
    df = draw(valid_tables()).astype(object)
    n = len(df)
    row = draw(st.integers(0, n - 1))
    kind = draw(
        st.sampled_from(
            [
                "drop_column",
                "blank_text",
                "bad_lat",
                "bad_lon",
                "bad_time",
                "duplicate_id",
                "location_label",
                "location_split",
                "empty",
                "bad_optional",
            ]
        )
    )
    if kind == "drop_column":
        df = df.drop(columns=[draw(st.sampled_from(REQUIRED_COLUMNS))])
    elif kind == "blank_text":
        col = draw(st.sampled_from(["image_id", "location_id", "path", "label", "split"]))
        _set(df, row, col, draw(st.sampled_from([None, np.nan, "", "  ", "\t"])))
    elif kind in ("bad_lat", "bad_lon"):
        col, limit = ("lat", 90) if kind == "bad_lat" else ("lon", 180)
        _set(df, row, col, draw(
            st.one_of(
                st.sampled_from([None, np.nan, np.inf, -np.inf, "", "north", True, [1, 2]]),
                st.floats(limit, 1e300, exclude_min=True),
                st.floats(-1e300, -limit, exclude_max=True),
            )
        ))
    elif kind == "bad_time":
        _set(df, row, "timestamp", draw(
            st.one_of(
                st.sampled_from([None, np.nan, "", "yesterday", "2016-13-45", "18/05/2016 3pm", "99999-01-01", True]),
                st.integers(-(10**6), 10**6),
                st.floats(allow_nan=True),
                st.just(dt.time(1, 2)),
                st.just([2016, 5, 1]),
            )
        ))
    elif kind == "duplicate_id":
        if n < 2:
            df = pd.concat([df, df], ignore_index=True)
        else:
            _set(df, row, "image_id", df["image_id"].iat[(row + 1) % n])
    elif kind in ("location_label", "location_split"):
        col = kind.split("_")[1]
        twin = df.loc[[row]].copy()
        twin["image_id"] = "fuzz-twin-" + str(row)
        twin[col] = str(twin[col].iat[0]) + "-other"
        df = pd.concat([df, twin], ignore_index=True)
    elif kind == "empty":
        df = df.iloc[0:0]
    elif kind == "bad_optional":
        col = draw(st.sampled_from(["gsd", "cloud_cover"]))
        df[col] = 1.0
        bad = [-1.0, np.inf, "cloudy", [1]] + ([0.0] if col == "gsd" else [101.0])
        _set(df, row, col, draw(st.sampled_from(bad)))
    return df


@given(df=malformed_tables())
@FUZZ
def test_malformed_tables_raise_manifest_error(df: pd.DataFrame):
    """validate_manifest raises ManifestError (with the file named) for every kind of defect."""
    with pytest.raises(ManifestError) as info:
        validate_manifest(df, source="fuzz.parquet", check_files=False)
    assert info.value.file == "fuzz.parquet"


@given(df=malformed_tables(), fmt=st.sampled_from(["parquet", "csv"]))
@FUZZ
def test_malformed_files_raise_manifest_error(df: pd.DataFrame, fmt: str):
    """Written to disk and loaded, a malformed table gives ManifestError, never another exception."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"bad.{fmt}"
        try:
            if fmt == "parquet":
                df.to_parquet(path, index=False)
            else:
                df.to_csv(path, index=False)
        except Exception:  # Parquet cannot store some mixed cells: write those as CSV instead
            path = path.with_suffix(".csv")
            df.astype(str).to_csv(path, index=False)
        try:
            load_manifest(path, check_files=False)
        except ManifestError as exc:
            assert exc.file == str(path)
        else:
            # only possible when writing turned the defect into valid data (e.g. a CSV
            # cannot tell the number 5 from the text "5"); then the table must reload cleanly
            load_manifest(path, check_files=False)


_ANY_CELL = st.one_of(
    st.none(), st.text(max_size=6), st.integers(-5, 5), st.floats(allow_nan=True), st.booleans()
)


@given(
    columns=st.lists(st.sampled_from(list(REQUIRED_COLUMNS) + ["gsd", "cloud_cover", "extra"]), unique=True),
    data=st.data(),
)
@FUZZ
def test_arbitrary_tables_never_crash(columns: list[str], data):
    """Any table of junk either validates or raises ManifestError; nothing else escapes."""
    n = data.draw(st.integers(0, 5))
    table = pd.DataFrame({c: data.draw(st.lists(_ANY_CELL, min_size=n, max_size=n)) for c in columns})
    try:
        validate_manifest(table, check_files=False)
    except ManifestError:
        pass


@given(blob=st.binary(max_size=300), fmt=st.sampled_from(["parquet", "csv"]))
@FUZZ
def test_random_bytes_raise_manifest_error(blob: bytes, fmt: str):
    """A file of random bytes is a ManifestError naming the file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"m.{fmt}"
        path.write_bytes(blob)
        with pytest.raises(ManifestError) as info:
            load_manifest(path, check_files=False)
        assert info.value.file == str(path)
