"""Data tiers: which manifest a notebook's ``data`` parameter stands for.

| tier | manifest |
| --- | --- |
| ``geoworld`` | generated on first use and cached (:func:`geolab.world.load_world`) |
| ``fmow-mini`` | ``<cache>/downloads/fmow-mini/manifest.parquet`` made by ``geolab data fmow-download`` |
| ``fmow``, ``geoimagenet`` | a manifest you built from data on your disk (``manifest`` parameter) |
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from geolab import paths, world
from geolab.errors import UserError

#: A data tier (DESIGN.md, "Data tiers").
Tier = Literal["geoworld", "fmow-mini", "fmow", "geoimagenet"]
TIERS: tuple[Tier, ...] = get_args(Tier)
#: Tiers that are simulations: every result shown from them says so.
SIMULATED = frozenset({"geoworld"})


class TierError(UserError, ValueError):
    """A data tier that is not one of :data:`TIERS`."""


class TierDataMissing(UserError, FileNotFoundError):
    """A tier's manifest that is not where it was asked for or expected, with how to make it."""


def check_tier(data: str) -> Tier:
    """``data`` when it is one of :data:`TIERS`.

    Raises:
        TierError: (a ValueError) ``Unknown data tier 'x'; choose one of geoworld, fmow-mini, fmow, geoimagenet.``
    """
    for known in TIERS:
        if data == known:
            return known
    raise TierError(f"Unknown data tier {data!r}; choose one of {', '.join(TIERS)}.")


def fmow_mini_manifest() -> Path:
    """Where ``geolab data fmow-download`` writes the fmow-mini manifest by default."""
    return paths.download_dir() / "fmow-mini" / "manifest.parquet"


def resolve_manifest(
    data: Tier = "geoworld",
    manifest: str | Path = "",
    *,
    world_locations: int | None = None,
    world_size: int | None = None,
    world_seed: int = 0,
) -> Path:
    """The manifest for a data tier, generating geoworld when needed.

    Args:
        data: one of :data:`TIERS`.
        manifest: an explicit manifest; wins over the tier's default location.
        world_locations: geoworld's number of locations (``None``: its default).
        world_size: geoworld's image side in pixels (``None``: its default).
        world_seed: geoworld's seed.

    Returns:
        Path of the manifest file.

    Raises:
        TierError: unknown tier (a ValueError).
        TierDataMissing: a real tier's manifest is missing, with how to make it (a FileNotFoundError).
    """
    check_tier(data)
    if manifest:
        path = Path(manifest).expanduser()
        if not path.exists():
            raise TierDataMissing(f"Manifest {path} (data={data!r}) does not exist.")
        return path
    if data == "geoworld":
        given = dict(locations=world_locations, size=world_size)
        kwargs: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        return Path(world.load_world(seed=world_seed, **kwargs))
    if data == "fmow-mini":
        path = fmow_mini_manifest()
        if not path.exists():
            raise TierDataMissing(
                f"No fmow-mini manifest at {path}. Download the subset first: "
                "`geolab data fmow-download --out <dir>` (see docs/REAL_DATA.md), "
                "or pass manifest=<path>."
            )
        return path
    how = f"geolab data {'fmow' if data == 'fmow' else 'geoimagenet'}-manifest ROOT --out M"
    raise TierDataMissing(
        f"data={data!r} needs a manifest of your copy of the data set: build one with `{how}` and pass manifest=M."
    )


def is_simulated(data: Tier | str) -> bool:
    """True when results on ``data`` come from a simulation (and must say so)."""
    return data in SIMULATED
