"""fMoW readers: the raw fMoW-rgb tree, the official GASSL CSVs and the GeoImageNet folder.

The trees are made in code and follow the real layouts: fMoW's
``<split>/<category>/<category>_<n>/<category>_<n>_<t>_rgb.{jpg,json}`` with the real JSON
field names, and the official GeoImageNet downloader's ``imagenet_images/<class>/<id>.jpg`` plus
a header-less ``metadata.csv``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from geolab.manifest import load_manifest
from geolab.sources import build, fmow

# (category, n) -> (centre lat, centre lon, revisits); near the equator, the antimeridian, a pole
LOCATIONS = {
    ("train", "airport", 0): (-9.93, 30.41, 3),
    ("train", "airport", 1): (52.30, 4.76, 2),
    ("train", "crop_field", 0): (-17.70, 179.99, 2),  # footprint crosses the antimeridian
    ("train", "crop_field", 7): (41.90, -93.60, 1),
    ("val", "airport", 0): (35.55, 139.78, 2),
    ("val", "crop_field", 3): (-34.60, -58.38, 2),
}


def fmow_json(category: str, n: int, t: int, lat: float, lon: float, width: int, height: int,
              day: int = 0) -> dict:
    """A metadata record with fMoW's real field names and value formats."""
    d = 0.004
    ring = [(lon - d, lat - d), (lon + d, lat - d), (lon + d, lat + d), (lon - d, lat + d), (lon - d, lat - d)]
    ring = [(((x + 180.0) % 360.0) - 180.0, y) for x, y in ring]
    wkt = "POLYGON ((" + ", ".join(f"{x:.6f} {y:.6f}" for x, y in ring) + "))"
    ts = pd.Timestamp("2014-03-02T10:28:23Z") + pd.Timedelta(days=200 * t + day)
    return {
        "gsd": 0.5 + 0.1 * t,
        "img_filename": f"{category}_{n}_{t}_rgb.jpg",
        "img_width": width,
        "img_height": height,
        "img_bands": 3,
        "bounding_boxes": [{"category": category, "box": [10, 12, width // 2, height // 2], "ID": 1000 + n}],
        "utm": "36L",
        "country_code": "TZA",
        "cloud_cover": 5 * t,
        "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "scan_direction": "Forward",
        "pan_resolution_dbl": 0.5,
        "multi_resolution_dbl": 2.0,
        "target_azimuth_dbl": 120.5,
        "sun_azimuth_dbl": 40.2,
        "sun_elevation_dbl": 60.1,
        "off_nadir_angle_dbl": 21.0,
        "approximate_wavelengths": [0.48, 0.545, 0.66],
        "raw_location": wkt,
    }


def make_fmow_tree(root: Path, size: tuple[int, int] = (40, 32), locations: dict = LOCATIONS) -> Path:
    """Write a tiny fMoW-rgb tree (real layout, real JSON fields) under ``root``; return root."""
    rng = np.random.default_rng(0)
    for (split, cat, n), (lat, lon, revisits) in locations.items():
        loc_dir = root / split / cat / f"{cat}_{n}"
        loc_dir.mkdir(parents=True, exist_ok=True)
        for t in range(revisits):
            w, h = size[0] + 4 * t, size[1] + 2 * t
            pixels = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(loc_dir / f"{cat}_{n}_{t}_rgb.jpg", quality=90)
            (loc_dir / f"{cat}_{n}_{t}_rgb.json").write_text(json.dumps(fmow_json(cat, n, t, lat, lon, w, h)))
    return root


# ----------------------------------------------------------------------------- metadata parsing
def test_polygon_centroid_of_real_footprints():
    """lat/lon is the footprint's centroid (WKT lon/lat order), also across the antimeridian."""
    lat, lon = fmow.polygon_centroid("POLYGON ((30.40 -9.94, 30.42 -9.94, 30.42 -9.92, 30.40 -9.92, 30.40 -9.94))")
    assert lat == pytest.approx(-9.93) and lon == pytest.approx(30.41)
    lat, lon = fmow.polygon_centroid("POLYGON ((179.99 -17.7, -179.99 -17.7, -179.99 -17.6, 179.99 -17.6, 179.99 -17.7))")
    assert lat == pytest.approx(-17.65) and abs(abs(lon) - 180.0) < 1e-6
    lat, lon = fmow.polygon_centroid("MULTIPOLYGON (((0 0, 2 0, 2 2, 0 2, 0 0)), ((10 10, 12 10, 12 12, 10 12, 10 10)))")
    assert (lat, lon) == pytest.approx((6.0, 6.0))
    with pytest.raises(fmow.FmowMetadataError, match="not a WKT POLYGON"):
        fmow.polygon_centroid("POINT (1 2)")
    with pytest.raises(fmow.FmowMetadataError):
        fmow.polygon_centroid("POLYGON ((1 2, 3 4")


def test_timestamp_is_utc():
    """fMoW's ``...Z`` times become UTC; offsets are converted; junk is an error."""
    assert fmow.parse_timestamp("2015-07-10T10:28:23Z") == pd.Timestamp("2015-07-10T10:28:23", tz="UTC")
    assert fmow.parse_timestamp("2015-07-10T12:28:23.5+02:00") == pd.Timestamp("2015-07-10T10:28:23.5", tz="UTC")
    with pytest.raises(fmow.FmowMetadataError, match="ISO 8601"):
        fmow.parse_timestamp("10/07/2015")


# ----------------------------------------------------------------------------- the raw tree
def test_fmow_tree_to_manifest(tmp_path):
    """Every image of the tree becomes one row: location = folder, lat/lon = centroid, UTC time."""
    root = make_fmow_tree(tmp_path / "fmow-rgb")
    report = fmow.build_fmow_manifest(root, tmp_path / "m.parquet", progress=False)
    assert report.skipped == []
    df = load_manifest(tmp_path / "m.parquet")
    assert len(df) == sum(v[2] for v in LOCATIONS.values()) == 12
    assert df["location_id"].nunique() == len(LOCATIONS)
    assert set(df["split"]) == {"train", "val"}
    row = df[df["image_id"] == "train/airport_0_1"].iloc[0]
    assert row["location_id"] == "train/airport_0" and row["label"] == "airport"
    assert row["lat"] == pytest.approx(-9.93, abs=1e-6) and row["lon"] == pytest.approx(30.41, abs=1e-6)
    assert row["timestamp"] == pd.Timestamp("2014-09-18T10:28:23Z")
    assert row["gsd"] == pytest.approx(0.6) and row["cloud_cover"] == 5
    assert (row["img_width"], row["img_height"]) == (44, 34)
    assert Path(row["path"]).name == "airport_0_1_rgb.jpg" and Path(row["path"]).is_file()
    # the same folder name in train and val is two locations
    assert {"train/airport_0", "val/airport_0"} <= set(df["location_id"])


def test_bad_metadata_is_reported_not_dropped(tmp_path):
    """Images without JSON or with unparsable JSON are listed with path and reason, and counted."""
    root = make_fmow_tree(tmp_path / "fmow-rgb")
    loc = root / "train" / "airport" / "airport_0"
    (loc / "airport_0_0_rgb.json").unlink()  # no metadata
    (loc / "airport_0_1_rgb.json").write_text("{not json")  # unreadable
    meta = json.loads((loc / "airport_0_2_rgb.json").read_text())
    meta["raw_location"] = "POLYGON EMPTY"
    (loc / "airport_0_2_rgb.json").write_text(json.dumps(meta))
    bad_time = root / "train" / "airport" / "airport_1" / "airport_1_0_rgb.json"
    meta = json.loads(bad_time.read_text())
    meta["timestamp"] = "sometime in 2015"
    bad_time.write_text(json.dumps(meta))
    (root / "val" / "airport" / "airport_0" / "airport_0_9_rgb.json").write_text("{}")  # JSON, no image
    misplaced = root / "train" / "airport" / "stray_rgb.jpg"
    Image.new("RGB", (8, 8)).save(misplaced)

    report = fmow.build_fmow_manifest(root, tmp_path / "m.csv", progress=False)
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert reasons["airport_0_0_rgb.jpg"].startswith("no metadata")
    assert reasons["airport_0_1_rgb.jpg"].startswith("unparsable metadata") and "JSON" in reasons["airport_0_1_rgb.jpg"]
    assert "empty polygon" in reasons["airport_0_2_rgb.jpg"]
    assert "timestamp" in reasons["airport_1_0_rgb.jpg"]
    assert reasons["airport_0_9_rgb.json"].startswith("metadata without image")
    assert reasons["stray_rgb.jpg"].startswith("unexpected place")
    assert len(report.skipped) == 6 and report.n_images == 12 - 4
    assert report.skipped_by_reason() == {"metadata without image": 1, "no metadata": 1,
                                          "unexpected place in the layout": 1, "unparsable metadata": 3}
    listed = pd.read_csv(build.skipped_report_path(tmp_path / "m.csv"))
    assert len(listed) == 6 and set(listed.columns) == {"path", "reason"}
    text = report.summary()
    assert "skipped 6 files" in text and "airport_0_0_rgb.jpg" in text


def test_hidden_category_and_label_disagreement(tmp_path):
    """test/seq layout takes the label from bounding_boxes; a folder/JSON disagreement is reported."""
    root = make_fmow_tree(tmp_path / "fmow-rgb")
    loc = root / "test" / "0011978"
    loc.mkdir(parents=True)
    for t in range(2):
        Image.new("RGB", (16, 16)).save(loc / f"0011978_{t}_rgb.jpg")
        (loc / f"0011978_{t}_rgb.json").write_text(json.dumps(fmow_json("port", 0, t, 1.0, 2.0, 16, 16)))
    wrong = root / "train" / "crop_field" / "crop_field_7" / "crop_field_7_0_rgb.json"
    meta = json.loads(wrong.read_text())
    meta["bounding_boxes"][0]["category"] = "airport"
    wrong.write_text(json.dumps(meta))
    report = fmow.scan_fmow_tree(root, progress=False)
    df = report.manifest
    test_rows = df[df["split"] == "test"]
    assert list(test_rows["label"]) == ["port", "port"] and set(test_rows["location_id"]) == {"test/0011978"}
    assert any("label disagreement" in s.reason and "crop_field_7_0" in s.path for s in report.skipped)
    only_train = fmow.scan_fmow_tree(root, splits=["train"], categories=["airport"], progress=False).manifest
    assert set(only_train["split"]) == {"train"} and set(only_train["label"]) == {"airport"}


def test_no_split_folder_is_a_clear_error(tmp_path):
    """Pointing at the wrong folder says what was expected and what to do."""
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match="No fMoW split folder.*fmow-download"):
        fmow.scan_fmow_tree(tmp_path, progress=False)


def test_cli_fmow_manifest(tmp_path, capsys):
    """`geolab data fmow-manifest ROOT --out M` writes a valid manifest and prints the summary."""
    from geolab.cli import main

    root = make_fmow_tree(tmp_path / "fmow-rgb")
    (root / "train" / "airport" / "airport_1" / "airport_1_1_rgb.json").unlink()
    assert main(["data", "fmow-manifest", str(root), "--out", str(tmp_path / "m.parquet"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "11 images" in out and "skipped 1 files" in out and "airport_1_1_rgb.jpg" in out
    assert len(load_manifest(tmp_path / "m.parquet")) == 11
    assert main(["data", "fmow-manifest", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.parquet")]) == 2


# ----------------------------------------------------------------------------- official CSVs
def test_official_csv_positional_columns_and_geo_csv(tmp_path):
    """The official layout (label col 0, path col 1, header) reads like the tree; geo CSV joins."""
    from geolab.sources.official_csv import build_from_official_csv

    root = make_fmow_tree(tmp_path / "fmow-rgb")
    images = sorted((root / "train").rglob("*_rgb.jpg"))
    # the authors' CSVs: integer category index, their absolute paths
    index = {c: i for i, c in enumerate(fmow.FMOW_CATEGORIES)}
    old = "/atlas/u/authors/fmow-rgb"
    lines = ["category,image_path"] + [
        f"{index[p.parent.parent.name]},{old}/{p.relative_to(root).as_posix()}" for p in images
    ]
    lines.append(f"5,{old}/train/airport/airport_0/airport_0_0_rgb.jpg")  # wrong index for the folder
    lines.append(f"0,{old}/train/airport/airport_99/airport_99_0_rgb.jpg")  # image not there
    (tmp_path / "train_62classes.csv").write_text("\n".join(lines) + "\n")
    geo = ["geoclass,image_path"] + [f"{k % 3},{old}/{p.relative_to(root).as_posix()}" for k, p in enumerate(images)]
    (tmp_path / "train_100geoclasses.csv").write_text("\n".join(geo) + "\n")

    report = build_from_official_csv(
        tmp_path / "train_62classes.csv", tmp_path / "m.parquet",
        geo_csvs=[tmp_path / "train_100geoclasses.csv"], rebase=[(old, str(root))], progress=False,
    )
    df = load_manifest(tmp_path / "m.parquet")
    tree = fmow.scan_fmow_tree(root, splits=["train"], progress=False).manifest
    assert len(df) == len(images) == len(tree) == 8
    merged = df.merge(tree, on="image_id", suffixes=("", "_tree"))
    assert (merged["location_id"] == merged["location_id_tree"]).all()
    assert (merged["label"] == merged["label_tree"]).all()
    assert merged["lat"].to_numpy() == pytest.approx(merged["lat_tree"].to_numpy())
    assert (merged["timestamp"] == merged["timestamp_tree"]).all()
    expected = {str(p): k % 3 for k, p in enumerate(images)}
    assert [int(c) for c in df["official_geo_cluster"]] == [expected[p] for p in df["path"]]
    reasons = " | ".join(s.reason for s in report.skipped)
    assert "label disagreement" in reasons and "image not found" in reasons
    with pytest.raises(ValueError, match="geo-cluster CSV"):
        build_from_official_csv(tmp_path / "train_100geoclasses.csv", tmp_path / "x.parquet", progress=False)


def test_official_csv_named_columns_and_split(tmp_path):
    """Named columns (SatMAE-style) win over positions; lat/lon/timestamp in the CSV need no JSON."""
    from geolab.sources.official_csv import read_official_csv

    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8)).save(img_dir / f"site_{i}.jpg")
    csv_text = "image_path,category,location_id,timestamp,polygon,lat,lon\n"
    csv_text += "imgs/site_0.jpg,port,L1,2016-01-02T03:04:05Z,,10.0,20.0\n"
    csv_text += "imgs/site_1.jpg,port,L1,2017-01-02T03:04:05Z,\"POLYGON ((1 1, 3 1, 3 3, 1 3, 1 1))\",,\n"
    csv_text += "imgs/site_2.jpg,port,L2,,,10.0,20.0\n"  # no time, no JSON beside
    (tmp_path / "satmae.csv").write_text(csv_text)
    report = read_official_csv(tmp_path / "satmae.csv", split="val", progress=False)
    df = report.manifest
    assert list(df["location_id"]) == ["L1", "L1"] and set(df["split"]) == {"val"}
    assert (df["lat"].iloc[1], df["lon"].iloc[1]) == pytest.approx((2.0, 2.0))
    assert len(report.skipped) == 1 and "timestamp is not in the CSV" in report.skipped[0].reason
    no_split = read_official_csv(tmp_path / "satmae.csv", progress=False)
    assert len(no_split.manifest) == 0 and all(s.reason.startswith("no split") for s in no_split.skipped)


# ----------------------------------------------------------------------------- GeoImageNet
def make_geoimagenet(root: Path) -> Path:
    """The official downloader's output: imagenet_images/<class>/<flickr id>.jpg + metadata.csv."""
    rows = {"1001": (48.85, 2.35), "1002": (-33.87, 151.21), "1003": (-1000.0, -1000.0), "2001": (35.68, 139.69)}
    classes = {"1001": "sea_lion", "1002": "sea_lion", "1003": "sea_lion", "2001": "golden_retriever", "3001": "golden_retriever"}
    for pid, cls in classes.items():
        (root / "imagenet_images" / cls).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (224, 224), (10, 20, 30)).save(root / "imagenet_images" / cls / f"{pid}.jpg")
    lines = [f"{pid},{lat},{lon},Paris,France,Ile-de-France,Paris" for pid, (lat, lon) in rows.items()]
    lines.append("4001,10.0,10.0,,,,")  # metadata whose image is gone
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def test_geoimagenet_manifest(tmp_path, capsys):
    """One image per location (no temporal positives), label = class folder, gaps reported."""
    from geolab.cli import main
    from geolab.sources.geoimagenet import NO_TIME, scan_geoimagenet

    root = make_geoimagenet(tmp_path / "gin")
    report = scan_geoimagenet(root, val_fraction=0.5, progress=False)
    df = report.manifest
    assert sorted(df["image_id"]) == ["golden_retriever/2001", "sea_lion/1001", "sea_lion/1002"]
    assert (df["location_id"] == df["image_id"]).all() and not df["timestamp_known"].any()
    assert (df["timestamp"] == NO_TIME).all()
    assert df.set_index("image_id").loc["sea_lion/1002", ["lat", "lon"]].tolist() == [-33.87, 151.21]
    reasons = {Path(s.path).name if "/" in s.path else s.path: s.reason for s in report.skipped}
    assert reasons["1003.jpg"].startswith("no geotag")
    assert reasons["3001.jpg"].startswith("no metadata")
    assert any(r.startswith("metadata without image") for r in reasons.values())
    again = scan_geoimagenet(root, val_fraction=0.5, progress=False).manifest
    assert list(again["split"]) == list(df["split"])  # stable split
    out = tmp_path / "gin.parquet"
    assert main(["data", "geoimagenet-manifest", str(root), "--out", str(out), "--no-progress"]) == 0
    assert "3 images, 3 locations" in capsys.readouterr().out
    assert load_manifest(out)["location_id"].is_unique
