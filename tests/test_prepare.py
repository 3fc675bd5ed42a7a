"""The prepared cache (`geolab data prepare`): decode once, resize, JPEG 95, new manifest.

Protects: short side resized (never enlarged) with the aspect kept, every manifest column kept
and the original path recorded, unreadable images reported (not silently dropped), resume
(files already done are not rewritten), parallel and serial runs agreeing, and the refusal to
mix cache parameters in one folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from geolab.manifest import load_manifest, save_manifest
from geolab.sources import prepare

SIZES = [(600, 400), (40, 30), (300, 900), (1030, 770), (64, 64), (500, 251)]


def _manifest(tmp_path: Path, sizes=SIZES, fmt: str = "png") -> Path:
    """Write images of the given sizes (smooth gradients + noise) and their manifest."""
    rng = np.random.default_rng(0)
    rows = []
    for i, (w, h) in enumerate(sizes):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full_like(xx, 40 * i % 255)], -1)
        pixels = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        path = tmp_path / "orig" / f"train/loc{i // 2}" / f"img {i}.{fmt}"  # a space: unsafe file name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        rows.append({"image_id": f"train/loc{i // 2}/img {i}", "location_id": f"loc{i // 2}", "path": str(path),
                     "timestamp": pd.Timestamp("2016-01-01T00:00:00Z") + pd.Timedelta(days=90 * i),
                     "lat": 10.0 + i, "lon": -20.0 - i, "label": "port", "split": "train",
                     "gsd": 0.5, "cloud_cover": 3.0, "img_width": float(w), "img_height": float(h)})
    return save_manifest(pd.DataFrame(rows), tmp_path / "orig" / "manifest.parquet")


def test_resize_keeps_aspect_and_never_enlarges():
    """Short side to S, long side scaled; images already small are left at their size."""
    assert prepare.resized_size(2000, 1500, 256) == (341, 256)
    assert prepare.resized_size(300, 900, 256) == (256, 768)
    assert prepare.resized_size(100, 240, 256) == (100, 240)


def test_jpeg_dct_scaled_decode_gives_the_exact_size(tmp_path):
    """A large JPEG decoded through DCT scaling still ends at exactly the target size, RGB."""
    src = tmp_path / "big.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (1500, 2000, 3), dtype=np.uint8)).save(src, quality=80)
    assert prepare.prepare_image(str(src), str(tmp_path / "small.jpg"), 256) == (341, 256)
    with Image.open(tmp_path / "small.jpg") as im:
        assert im.size == (341, 256) and im.mode == "RGB" and im.format == "JPEG"


def test_prepare_cache_writes_small_images_and_a_manifest(tmp_path):
    """The new manifest points at the cache, keeps every column and the original path."""
    src = _manifest(tmp_path)
    report = prepare.prepare_cache(src, tmp_path / "cache", short_side=64, workers=1, progress=False)
    assert report.written == len(SIZES) and report.reused == 0 and not report.failed
    df = load_manifest(report.manifest_path)
    orig = load_manifest(src)
    assert list(df["image_id"]) == list(orig["image_id"])
    for col in ("location_id", "timestamp", "lat", "lon", "label", "split", "gsd", "cloud_cover"):
        assert (df[col] == orig[col]).all(), col
    assert list(df["source_path"]) == list(orig["path"])
    for (w, h), (_, row) in zip(SIZES, df.iterrows()):
        expect = prepare.resized_size(w, h, 64)
        with Image.open(row["path"]) as im:
            assert im.size == expect == (row["img_width"], row["img_height"]) and im.format == "JPEG"
        assert row["path"].startswith(str(tmp_path / "cache" / "images"))
    # the picture is the same picture: mean colour of the big one survives the resize
    with Image.open(orig["path"][0]) as a, Image.open(df["path"][0]) as b:
        assert np.abs(np.asarray(a, float).mean((0, 1)) - np.asarray(b, float).mean((0, 1))).max() < 4


def test_prepare_resumes_and_refuses_other_parameters(tmp_path):
    """A second run rewrites nothing; a lost file is redone; other parameters are refused."""
    src = _manifest(tmp_path)
    out = tmp_path / "cache"
    first = prepare.prepare_cache(src, out, short_side=48, workers=1, progress=False)
    files = sorted((out / "images").rglob("*.jpg"))
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    again = prepare.prepare_cache(src, out, short_side=48, workers=1, progress=False)
    assert (again.written, again.reused) == (0, len(SIZES))
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes
    files[0].unlink()
    third = prepare.prepare_cache(src, out, short_side=48, workers=1, progress=False)
    assert (third.written, third.reused) == (1, len(SIZES) - 1)
    assert load_manifest(first.manifest_path).equals(load_manifest(third.manifest_path))
    with pytest.raises(prepare.PrepareError, match="short_side.*48.*Choose another --out"):
        prepare.prepare_cache(src, out, short_side=96, workers=1, progress=False)


def test_unreadable_images_are_reported(tmp_path):
    """A broken image is listed with its path and error and left out; the rest is prepared."""
    from helpers import break_image

    src = _manifest(tmp_path)
    orig = load_manifest(src)
    break_image(orig["path"][1], "garbage")
    break_image(orig["path"][3], "zero")
    report = prepare.prepare_cache(src, tmp_path / "cache", short_side=32, workers=1, progress=False)
    assert sorted(s.path for s in report.failed) == sorted([orig["path"][1], orig["path"][3]])
    assert all(s.reason.startswith("unreadable image") for s in report.failed)
    assert len(load_manifest(report.manifest_path)) == len(SIZES) - 2
    listed = pd.read_csv(tmp_path / "cache" / "prepare_failed.csv")
    assert len(listed) == 2 and "2 unreadable" in report.summary()


def test_parallel_matches_serial_and_cli(tmp_path, capsys):
    """Several processes give byte-identical files to one process; the command prints a summary."""
    from geolab.cli import main

    src = _manifest(tmp_path, sizes=SIZES * 2)
    serial = prepare.prepare_cache(src, tmp_path / "serial", short_side=40, workers=1, progress=False)
    assert main(["data", "prepare", str(src), "--short-side", "40", "--out", str(tmp_path / "par"),
                 "--workers", "2", "--no-progress"]) == 0
    assert "12 images written" in capsys.readouterr().out
    a = load_manifest(serial.manifest_path)
    b = load_manifest(tmp_path / "par" / "manifest.parquet")
    assert [open(p, "rb").read() for p in a["path"]] == [open(p, "rb").read() for p in b["path"]]


def test_small_jpegs_are_copied_not_reencoded(tmp_path):
    """A JPEG already under the short side is copied byte for byte (no second lossy encode)."""
    src = tmp_path / "small.jpg"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(src, quality=75)
    assert prepare.prepare_image(str(src), str(tmp_path / "out.jpg"), 256) == (70, 50)
    assert (tmp_path / "out.jpg").read_bytes() == src.read_bytes()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(src.read_bytes()[:200])
    with pytest.raises(OSError):
        prepare.prepare_image(str(broken), str(tmp_path / "never.jpg"), 256)
    assert not (tmp_path / "never.jpg").exists()


def test_prepare_never_writes_into_its_input_folder_nor_over_a_foreign_manifest(tmp_path, capsys):
    """Issue 23: `data prepare M --out <M's folder>` replaced the source manifest (and a geoworld
    folder then "reused" the prepared one as the original world). The input's folder is refused
    even with --force; a manifest.parquet in a folder that is not a cache (no prepare.json) is
    refused without --force; a cache folder of its own is reused; --out that is a file is one line."""
    from geolab.cli import main

    src = _manifest(tmp_path)
    before = src.read_bytes()
    for extra in ([], ["--force"]):
        assert main(["data", "prepare", str(src), "--out", str(src.parent), "--workers", "1", "--no-progress",
                     *extra]) == 2
        assert "is the folder of the input" in capsys.readouterr().err
    assert src.read_bytes() == before and not (src.parent / "prepare.json").exists()

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "manifest.parquet").write_bytes(b"someone's manifest")
    with pytest.raises(FileExistsError, match=r"holds .*foreign/manifest\.parquet, which geolab data prepare would "
                       r"replace; pass --force"):
        prepare.prepare_cache(src, foreign, short_side=32, workers=1, progress=False)
    assert (foreign / "manifest.parquet").read_bytes() == b"someone's manifest"
    assert sorted(p.name for p in foreign.iterdir()) == ["manifest.parquet"]
    prepare.prepare_cache(src, foreign, short_side=32, workers=1, progress=False, force=True)
    assert len(load_manifest(foreign / "manifest.parquet")) == len(SIZES)
    again = prepare.prepare_cache(src, foreign, short_side=32, workers=1, progress=False)  # now a cache of its own
    assert again.reused == len(SIZES)

    (tmp_path / "a-file").write_text("x")
    assert main(["data", "prepare", str(src), "--out", str(tmp_path / "a-file"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "a-file is a file, not a folder" in err and "Errno" not in err
