"""Manifest contract: load/save in both formats, and one clear error for every bad manifest.

Every error test checks the error's file, row (0-based data row; for CSV also the line)
and column, so a user can find the problem without a traceback.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import break_image, make_manifest

from geolab.cli import main as cli_main
from geolab.manifest import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    ManifestError,
    format_stats,
    load_manifest,
    manifest_stats,
    save_manifest,
    select_split,
    validate_manifest,
)


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return make_manifest(tmp_path / "m")


def _raw(path: Path) -> pd.DataFrame:
    """The manifest as stored (relative paths), for tampering."""
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)


def _write_raw(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
    return path


# ----------------------------------------------------------------------------- good manifests
def test_columns_contract():
    """The required/optional column names are the documented contract."""
    assert REQUIRED_COLUMNS == ("image_id", "location_id", "path", "timestamp", "lat", "lon", "label", "split")
    assert OPTIONAL_COLUMNS == ("gsd", "cloud_cover")


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_load_types_and_paths(tmp_path: Path, fmt: str):
    """A loaded manifest has the documented dtypes, index, absolute existing paths and source."""
    path = make_manifest(tmp_path, fmt=fmt)
    df = load_manifest(path)
    assert list(df.columns[:8]) == list(REQUIRED_COLUMNS)
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]"
    for col in ("image_id", "location_id", "label", "split", "path"):
        assert all(isinstance(v, str) for v in df[col]), col
    assert df["lat"].dtype == np.float64 and df["lon"].dtype == np.float64
    assert list(df.index) == list(range(len(df)))
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in df["path"])
    assert df.attrs["source"] == str(path.resolve())
    # stored relative to the manifest's folder
    stored = _raw(path)["path"]
    assert all(not Path(p).is_absolute() for p in stored)


def test_parquet_and_csv_agree(tmp_path: Path):
    """The same table saved as Parquet and as CSV loads to the same values."""
    a = load_manifest(make_manifest(tmp_path / "a", fmt="parquet"))
    b = load_manifest(make_manifest(tmp_path / "b", fmt="csv"))
    pd.testing.assert_frame_equal(a.drop(columns="path"), b.drop(columns="path"))


def test_save_load_round_trip_keeps_extra_columns_and_mask_path(tmp_path: Path, good: Path):
    """Extra columns survive save/load; mask_path resolves like path; geo_cluster is not stored."""
    df = load_manifest(good)
    df["mask_path"] = df["path"]
    df["sensor"] = "sim"
    df["geo_cluster"] = 3
    for suffix in (".parquet", ".csv"):
        out = save_manifest(df, good.parent / f"copy{suffix}")
        back = load_manifest(out)
        assert "geo_cluster" not in back.columns
        assert list(back["sensor"]) == ["sim"] * len(df)
        assert list(back["mask_path"]) == list(df["path"])
        pd.testing.assert_frame_equal(back[list(REQUIRED_COLUMNS)], df[list(REQUIRED_COLUMNS)])


def test_relative_paths_resolve_against_manifest_folder(tmp_path: Path, good: Path, monkeypatch):
    """Relative paths are relative to the manifest's folder, not the current folder."""
    monkeypatch.chdir(tmp_path)
    df = load_manifest(good.relative_to(tmp_path))
    assert Path(df["path"].iat[0]).parent.parent.parent == good.parent.resolve()


def test_absolute_paths_outside_folder_kept(tmp_path: Path, good: Path):
    """A path outside the manifest's folder is stored absolute, and loads."""
    df = load_manifest(good)
    other = tmp_path / "elsewhere" / "m.parquet"
    save_manifest(df, other)
    assert Path(_raw(other)["path"].iat[0]).is_absolute()
    assert list(load_manifest(other)["path"]) == list(df["path"])


def test_naive_and_offset_timestamps_become_utc(good: Path):
    """Naive times are taken as UTC; times with an offset are converted to UTC."""
    raw = _raw(good)
    raw["timestamp"] = ["2016-05-18T15:28:47"] + ["2016-05-18T17:28:47+02:00"] * (len(raw) - 1)
    df = validate_manifest(raw, root=good.parent)
    assert (df["timestamp"] == pd.Timestamp("2016-05-18T15:28:47Z")).all()
    raw["timestamp"] = pd.to_datetime(raw["timestamp"].str[:19])  # naive datetime column
    assert str(validate_manifest(raw, root=good.parent)["timestamp"].dtype) == "datetime64[ns, UTC]"


def test_optional_columns_may_be_empty(good: Path):
    """gsd and cloud_cover may be missing for some images (unknown), not nonsense."""
    raw = _raw(good)
    raw.loc[0, "gsd"] = np.nan
    raw.loc[1, "cloud_cover"] = np.nan
    df = validate_manifest(raw, root=good.parent)
    assert np.isnan(df["gsd"].iat[0])


# ----------------------------------------------------------------------------- bad manifests
def _expect(fn, *, row, column, contains, line=None) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        fn()
    err = info.value
    assert err.row == row, str(err)
    assert err.column == column, str(err)
    assert contains in str(err), str(err)
    if line is not None:
        assert err.line == line and f"line {line}" in str(err), str(err)
    return err


def _tamper(good: Path, fmt: str, edit) -> Path:
    raw = load_manifest(good, check_files=False)
    raw["path"] = _raw(good)["path"]  # relative again
    raw = raw.astype(object)
    edit(raw)
    return _write_raw(raw, good.parent / f"bad.{fmt}")


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_missing_column(good: Path, fmt: str):
    """A missing required column is named, with what the file has instead."""
    bad = _tamper(good, fmt, lambda d: d.__delitem__("lat"))
    err = _expect(lambda: load_manifest(bad), row=None, column="lat", contains="missing required column lat")
    assert err.file == str(bad) and "SCHEMA.md" in str(err)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize(
    "column,value,contains",
    [
        ("lat", np.nan, "missing or not a number"),
        ("lat", 91.0, "outside [-90, 90]"),
        ("lon", -180.5, "outside [-180, 180]"),
        ("lat", "north", "not a number"),
    ],
)
def test_bad_coordinates(good: Path, fmt: str, column: str, value, contains: str):
    """NaN, text and out-of-range lat/lon are reported at their row, with line for CSV."""

    def edit(d):
        if isinstance(value, str):  # a text column (Parquet cannot mix text and numbers)
            d[column] = d[column].astype(str)
        d.loc[4, column] = value

    bad = _tamper(good, fmt, edit)
    _expect(lambda: load_manifest(bad), row=4, column=column, contains=contains, line=6 if fmt == "csv" else None)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_unparsable_timestamp(good: Path, fmt: str):
    """An unparsable time names the row and gives an ISO 8601 example."""

    def edit(d):
        d["timestamp"] = d["timestamp"].map(lambda t: t.isoformat())
        d.loc[2, "timestamp"] = "18/05/2016 3pm"

    bad = _tamper(good, fmt, edit)
    err = _expect(lambda: load_manifest(bad), row=2, column="timestamp", contains="cannot be parsed")
    assert "ISO 8601" in str(err) and "'18/05/2016 3pm'" in str(err)


def test_missing_timestamp(good: Path):
    """An empty time is reported as missing at its row."""

    def edit(d):
        d["timestamp"] = d["timestamp"].map(lambda t: t.isoformat())
        d.loc[3, "timestamp"] = None

    bad = _tamper(good, "csv", edit)
    _expect(lambda: load_manifest(bad), row=3, column="timestamp", contains="missing", line=5)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_duplicate_image_id(good: Path, fmt: str):
    """A repeated image_id names the second row and where the first one is."""

    def edit(d):
        d.loc[5, "image_id"] = d.loc[1, "image_id"]

    bad = _tamper(good, fmt, edit)
    err = _expect(lambda: load_manifest(bad), row=5, column="image_id", contains="used again (first at row 1")
    assert "unique" in str(err)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_missing_image_file(good: Path, fmt: str):
    """A path that does not exist is reported with the resolved path; check_files=False skips it."""
    df = load_manifest(good)
    break_image(df["path"].iat[3], "missing")
    bad = _tamper(good, fmt, lambda d: None)
    err = _expect(lambda: load_manifest(bad), row=3, column="path", contains="file not found")
    assert df["path"].iat[3] in str(err) and "--no-check-files" in str(err)
    assert len(load_manifest(bad, check_files=False)) == len(df)


def test_missing_mask_file(good: Path):
    """mask_path is checked like path when present."""

    def edit(d):
        d["mask_path"] = d["path"]
        d.loc[2, "mask_path"] = "images/nope.png"

    bad = _tamper(good, "parquet", edit)
    _expect(lambda: load_manifest(bad), row=2, column="mask_path", contains="file not found")


@pytest.mark.parametrize("column", ["label", "split"])
def test_location_disagrees(good: Path, column: str):
    """A location whose rows disagree on label or split names the location and both rows."""
    df = load_manifest(good)
    loc = df["location_id"].value_counts().index[0]  # a location with several images
    rows = np.flatnonzero(df["location_id"] == loc)

    def edit(d):
        d.loc[rows[1], column] = "something_else"

    bad = _tamper(good, "csv", edit)
    err = _expect(lambda: load_manifest(bad), row=int(rows[1]), column=column, contains=f"location '{loc}'")
    assert f"row {rows[0]}" in str(err) and "something_else" in str(err)


@pytest.mark.parametrize("column", ["image_id", "location_id", "label", "split", "path"])
def test_empty_text_cell(good: Path, column: str):
    """An empty id, label, split or path is reported at its row."""

    def edit(d):
        d.loc[1, column] = ""

    bad = _tamper(good, "csv", edit)
    _expect(lambda: load_manifest(bad), row=1, column=column, contains="empty or missing", line=3)


def test_empty_split(good: Path):
    """A split that is asked for but has no rows is an error listing the splits present."""
    err = _expect(
        lambda: load_manifest(good, require_splits=("train", "holdout")),
        row=None,
        column="split",
        contains="split 'holdout' is empty",
    )
    assert "train (" in str(err)
    df = load_manifest(good)
    with pytest.raises(ManifestError, match="'holdout' is empty"):
        select_split(df, "holdout")
    assert set(select_split(df, "train")["split"]) == {"train"}


def test_bad_optional_values(good: Path):
    """Negative gsd and cloud cover above 100 percent are rejected at their row."""

    def edit(d):
        d.loc[2, "cloud_cover"] = 140.0

    bad = _tamper(good, "parquet", edit)
    _expect(lambda: load_manifest(bad), row=2, column="cloud_cover", contains="percent")

    def edit2(d):
        d.loc[0, "gsd"] = -1.0

    bad = _tamper(good, "parquet", edit2)
    _expect(lambda: load_manifest(bad), row=0, column="gsd", contains="out of range")


def test_unreadable_files(tmp_path: Path):
    """Missing, damaged, empty and wrongly-named manifest files give a ManifestError naming the file."""
    for name, content in [
        ("nothing.parquet", None),
        ("broken.parquet", b"PAR1 this is not parquet"),
        ("empty.csv", b""),
        ("manifest.json", b"{}"),
        ("header_only.csv", b"image_id,location_id,path,timestamp,lat,lon,label,split\n"),
    ]:
        p = tmp_path / name
        if content is not None:
            p.write_bytes(content)
        with pytest.raises(ManifestError) as info:
            load_manifest(p)
        assert info.value.file == str(p), name


def test_a_folder_given_as_manifest_says_so(good: Path):
    """Issue 23: a folder gave "manifest file not found"; now it says it is a folder and which
    manifest file (Parquet/CSV) it holds."""
    err = _expect(lambda: load_manifest(good.parent), row=None, column=None, contains="is a folder, not a manifest")
    assert f"e.g. {good}" in str(err) and "Parquet or CSV" in str(err) and "not found" not in str(err)


def test_long_values_are_shortened_in_errors(good: Path):
    """Issue 23: a 1 MB label was echoed whole on the error line. Quoted values are cut to 80
    characters plus their length (geolab.manifest_cells.shorten), the rest of the message kept."""
    from geolab.manifest_cells import shorten

    assert shorten("x" * 80) == "x" * 80 and shorten("y" * 1000) == "y" * 80 + "... (1000 characters)"
    df = load_manifest(good)
    loc = df["location_id"].value_counts().index[0]
    rows = np.flatnonzero(df["location_id"] == loc)
    big = "z" * 1_000_000

    def edit(d):
        d.loc[rows[1], "label"] = big

    err = str(_expect(lambda: load_manifest(_tamper(good, "csv", edit)), row=int(rows[1]), column="label",
                      contains="(1000000 characters)"))
    assert len(err) < 600 and "z" * 81 not in err and "give these images their own location_id" in err


def test_many_bad_rows_are_counted(good: Path):
    """The first bad row is named and the others counted (fix all at once)."""

    def edit(d):
        d.loc[[2, 3, 4], "lat"] = 100.0

    bad = _tamper(good, "parquet", edit)
    _expect(lambda: load_manifest(bad), row=2, column="lat", contains="2 more rows")


# ----------------------------------------------------------------------------- stats and CLI
def test_stats(good: Path):
    """Counts per split and label, revisits per location and time spans match the table."""
    df = load_manifest(good)
    st = manifest_stats(df)
    assert st["images"] == 13 and st["locations"] == 6
    assert st["splits"]["train"] == {"images": 6, "locations": 4}
    assert sum(v["images"] for v in st["per_label"].values()) == 13
    assert st["images_per_location"]["histogram"] == {1: 2, 2: 2, 3: 1, 4: 1}
    assert st["singleton_share"] == pytest.approx(2 / 13)
    spans = df.groupby("location_id")["timestamp"].agg(lambda s: (s.max() - s.min()).total_seconds() / 86400)
    assert st["time_span_days"]["max"] == pytest.approx(spans.max())
    text = format_stats(df)
    assert "train" in text and "singleton share" in text and "time span per location" in text


def test_cli_validate_and_stats(good: Path, capsys):
    """`geolab data validate/stats` print OK/stats, and a bad manifest exits 2 without a traceback."""
    assert cli_main(["data", "validate", str(good)]) == 0
    assert "OK (13 images, 6 locations; images per split: test 4, train 6, val 3" in capsys.readouterr().out
    assert cli_main(["data", "stats", str(good)]) == 0
    assert "images per location" in capsys.readouterr().out
    df = load_manifest(good)
    break_image(df["path"].iat[0], "missing")
    assert cli_main(["data", "validate", str(good)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("geolab: error:") and "row 0" in err and "Traceback" not in err
    assert cli_main(["data", "validate", "--no-check-files", str(good)]) == 0


def test_path_spellings_resolve_to_the_same_file(tmp_path: Path, good: Path):
    """'./a', 'a//b', 'x/../a' and absolute spellings of one file all resolve to one normalised path."""
    df = load_manifest(good)
    target = df["path"].iat[0]
    rel = Path(target).relative_to(good.parent.resolve()).as_posix()
    raw = _raw(good)
    spellings = ["./" + rel, rel.replace("/", "//", 1), "images/../" + rel, target]
    for spelling in spellings:
        raw.loc[0, "path"] = spelling
        assert validate_manifest(raw, root=good.parent.resolve())["path"].iat[0] == target, spelling


def test_repeated_csv_header_and_space_variant_labels_are_refused(tmp_path):
    """A CSV header naming a column twice (pandas would rename it lat.1) and labels or splits that
    differ only by surrounding spaces (they would silently be two classes) are ManifestErrors
    naming the column and row."""
    import pandas as pd

    from geolab.manifest import ManifestError, load_manifest, validate_manifest

    header = "image_id,location_id,path,timestamp,lat,lon,label,split,lat\n"
    (tmp_path / "m.csv").write_text(header + "a,l,a.png,2016-01-01T00:00:00Z,1,2,port,train,3\n")
    with pytest.raises(ManifestError, match=r"column 'lat'.*appears twice in the header \(columns 5 and 9\)"):
        load_manifest(tmp_path / "m.csv", check_files=False)
    rows = [dict(image_id=f"i{i}", location_id=f"l{i}", path="x.png", timestamp="2016-01-01T00:00:00Z",
                 lat=0.0, lon=0.0, label=label, split="train") for i, label in enumerate(["port", "airport", "port "])]
    with pytest.raises(ManifestError, match=r"row 2, column 'label': label 'port ' differs from label 'port' only"):
        validate_manifest(pd.DataFrame(rows), check_files=False)
    rows[2]["label"], rows[2]["split"] = "port", "train "
    with pytest.raises(ManifestError, match=r"column 'split': split 'train ' differs"):
        validate_manifest(pd.DataFrame(rows), check_files=False)


def test_paths_outside_the_manifest_folder_are_counted_and_refused_on_request(tmp_path):
    """`data validate` counts image paths outside the manifest's folder; --confine-to-root (for
    manifests you did not write) refuses them, symbolic links followed."""
    import os

    from helpers import make_manifest

    from geolab.manifest import ManifestError, load_manifest, paths_outside_root, save_manifest

    path = make_manifest(tmp_path / "data", n_locations=3, revisits=(1, 1))
    df = load_manifest(path)
    assert paths_outside_root(df, path.parent) == 0
    load_manifest(path, confine_to_root=True)
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(Path(df["path"][0]).read_bytes())
    os.symlink(outside, path.parent / "link.png")
    df.loc[0, "path"] = "../elsewhere.png"
    df.loc[1, "path"] = str(path.parent / "link.png")
    save_manifest(df, path)
    assert paths_outside_root(load_manifest(path), path.parent) == 1  # the link is not followed here
    with pytest.raises(ManifestError, match=r"row 0, column 'path': path '\.\./elsewhere\.png' resolves to .*"
                       r"outside the manifest's folder .*\(1 more rows like it\)"):
        load_manifest(path, confine_to_root=True)


def test_scoring_split_prefers_the_asked_split_and_falls_back_to_val():
    """Every evaluation scores test, or val on a manifest without test rows (one rule, geolab.manifest)."""
    from geolab.manifest import scoring_split

    assert scoring_split(pd.DataFrame({"split": ["train", "val", "test"]})) == "test"
    assert scoring_split(pd.DataFrame({"split": ["train", "val"]})) == "val"
    assert scoring_split(pd.DataFrame({"split": ["train", "val"]}), None) == "val"
    assert scoring_split(pd.DataFrame({"split": ["train", "val", "holdout"]}), "holdout") == "holdout"
    assert scoring_split(pd.DataFrame({"split": ["train"]})) == "test"  # nothing to fall back to: the caller reports it
