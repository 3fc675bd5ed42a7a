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


def test_user_facing_errors_are_user_errors_and_keep_their_base():
    """The errors whose message is the whole story derive from geolab.errors.UserError (what the
    CLI prints without a traceback) and still from the base that callers already catch."""
    from geolab.course.checks import CheckFailed
    from geolab.datasets import BadImageError, DataSetError
    from geolab.errors import UserError
    from geolab.geo import GeoClusterError
    from geolab.images import UnsupportedImageError
    from geolab.jpeg_pipeline import PreparedCacheError
    from geolab.manifest import ManifestError
    from geolab.positives import StrategyError, check_strategy
    from geolab.tiers import TierDataMissing, TierError
    from geolab.world import WorldError

    for cls, base in [(CheckFailed, AssertionError), (BadImageError, ManifestError), (UnsupportedImageError, ValueError),
                      (StrategyError, ValueError), (TierError, ValueError), (TierDataMissing, FileNotFoundError),
                      (WorldError, RuntimeError), (GeoClusterError, ValueError), (DataSetError, ValueError),
                      (PreparedCacheError, FileNotFoundError)]:
        assert issubclass(cls, UserError) and issubclass(cls, base), cls
    with pytest.raises(UserError, match="choose one of"):
        tiers.check_tier("fmow-big")
    with pytest.raises(UserError, match="unknown temporal sampling strategy"):
        check_strategy("any_other")


def test_the_results_schema_lists_the_tiers():
    """A new tier is declared in tiers.Tier; the results schema's enum of `data` must follow it."""
    import json
    from pathlib import Path

    schema = json.loads((Path(__file__).parents[1] / "data_manifests" / "results.schema.json").read_text())
    enums = []

    def walk(node):
        if isinstance(node, dict):
            if "data" in node.get("properties", {}):
                enums.append(node["properties"]["data"].get("enum"))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    assert enums and all(e == list(tiers.TIERS) for e in enums if e is not None), enums
