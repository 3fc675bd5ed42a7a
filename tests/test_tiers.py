"""A notebook's `data` parameter maps to one manifest, and a missing real data set gets an
error that says how to make it."""

from __future__ import annotations

import pytest

from geolab import tiers


def test_unknown_tier_is_refused():
    with pytest.raises(ValueError, match="choose one of"):
        tiers.resolve_manifest("imagenet")


@pytest.mark.parametrize("tier, hint", [("fmow", "fmow-manifest"), ("geoimagenet", "geoimagenet-manifest"), ("fmow-mini", "fmow-download")])
def test_real_tier_without_manifest_says_how_to_make_one(tier, hint):
    with pytest.raises(FileNotFoundError, match=hint):
        tiers.resolve_manifest(tier)


def test_explicit_manifest_wins(tmp_path):
    m = tmp_path / "m.parquet"
    m.write_bytes(b"")
    assert tiers.resolve_manifest("fmow", m) == m
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tiers.resolve_manifest("fmow", tmp_path / "missing.parquet")


def test_only_geoworld_is_simulated():
    assert tiers.is_simulated("geoworld") and not tiers.is_simulated("fmow")
