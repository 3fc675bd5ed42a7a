"""fmow-mini: a real fMoW-rgb subset fetched from fMoW's public bucket, then made a manifest and a cache.

A selection (``data_manifests/fmow-mini.json``: categories, locations per split, where the
bucket is) is listed with ListObjectsV2 (:mod:`geolab.sources.s3`), downloaded in parallel and
resumably (:mod:`geolab.sources.download`), read into a manifest (:mod:`geolab.sources.fmow`) and
turned into the prepared cache that training reads (:mod:`geolab.sources.prepare`)
(``geolab data fmow-download``).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geolab import paths
from geolab.errors import UserError
from geolab.io import atomic_write_json
from geolab.sources.build import BuildReport
from geolab.sources.download import download_objects
from geolab.sources.fmow import FMOW_CATEGORIES, build_fmow_manifest
from geolab.sources.prepare import prepare_cache
from geolab.sources.s3 import ListingError, RetryPolicy, S3Bucket, list_objects


class SelectionError(UserError, ValueError):
    """A selection file that is missing or unreadable, or names unknown categories."""


@dataclass(frozen=True)
class Selection:
    """A chosen fMoW subset: categories, locations per split, where to fetch it, cache size."""

    categories: tuple[str, ...]
    locations: dict[str, int]
    endpoint: str
    bucket: str
    prefix: str
    short_side: int
    estimate: dict[str, Any] = field(default_factory=dict)


def default_selection_path() -> Path:
    """``data_manifests/fmow-mini.json``: the default fmow-mini selection that ships."""
    return paths.manifests_dir() / "fmow-mini.json"


def load_selection(path: str | os.PathLike | None = None) -> Selection:
    """Read a selection file (default: ``data_manifests/fmow-mini.json``).

    Raises:
        SelectionError: no such file, a missing field or an unknown category.
    """
    path = Path(path) if path is not None else default_selection_path()
    if not path.is_file():
        raise SelectionError(
            f"Selection file {path} not found; pass an existing file to --selection, or leave it out (shipped one)."
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        sel = Selection(
            categories=tuple(raw["categories"]),
            locations={str(k): int(v) for k, v in raw["locations_per_category"].items()},
            endpoint=str(raw["endpoint"]),
            bucket=str(raw["bucket"]),
            prefix=str(raw["prefix"]),
            short_side=int(raw.get("short_side", 256)),
            estimate=dict(raw.get("expected_download", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SelectionError(f"{path}: not a valid selection file ({type(exc).__name__}: {exc}); it needs "
                         "categories, locations_per_category, endpoint, bucket and prefix.") from None
    unknown = [c for c in sel.categories if c not in FMOW_CATEGORIES]
    if unknown:
        raise SelectionError(f"{path}: unknown fMoW categories {unknown}; known: {', '.join(FMOW_CATEGORIES)}")
    return sel


@dataclass
class FmowMiniResult:
    """What :func:`download_fmow_subset` produced."""

    out: Path
    objects: int
    total_bytes: int
    locations: int
    manifest: Path | None = None
    raw_manifest: Path | None = None
    download: Any = None
    build: BuildReport | None = None
    prepare: Any = None

    def summary(self) -> str:
        """A few lines for people: what was listed, fetched, built and prepared."""
        lines = [f"fmow-mini in {self.out}: {self.locations} locations, {self.objects} files, "
                 f"{self.total_bytes / 2**20:.1f} MiB"]
        if self.download is not None:
            lines.append("  " + self.download.summary())
        if self.build is not None:
            lines.append("  " + self.build.summary().replace("\n", "\n  "))
        if self.prepare is not None:
            lines.append("  " + self.prepare.summary())
        if self.manifest is not None:
            lines.append(f"  training manifest (prepared cache): {self.manifest}")
        return "\n".join(lines)


def _location_number(prefix: str) -> tuple[int, str]:
    name = prefix.rstrip("/").rsplit("/", 1)[-1]
    tail = name.rsplit("_", 1)[-1]
    return (int(tail) if tail.isdigit() else 1 << 62, name)


def list_fmow_selection(
    bucket: Any,
    prefix: str,
    categories: Sequence[str],
    locations_per_category: dict[str, int],
    workers: int = 8,
    policy: Any = None,
    image_kind: str = "rgb",
) -> tuple[list[Any], list[str], list[str]]:
    """List the chosen locations and all their revisits (images and JSON) in the bucket.

    For each split and category the location folders are listed with a ``/`` delimiter and the
    first ``N`` by number are taken (deterministic); then each location is listed in full.

    Returns:
        ``(objects, location_prefixes, notes)``; ``notes`` says where fewer locations existed
        than asked.

    Raises:
        geolab.sources.s3.ListingError: a category folder with no location at all (a changed
            layout or a wrong prefix), named with its URL.
    """
    policy = policy or RetryPolicy()
    stop = threading.Event()  # set on Ctrl-C or a failed listing: the other threads stop too
    prefix = prefix if (not prefix or prefix.endswith("/")) else prefix + "/"
    wanted = [(s, c, n) for s, n in locations_per_category.items() if n > 0 for c in categories]
    notes: list[str] = []

    def category_locations(job: tuple[str, str, int]) -> list[str]:
        split, cat, n = job
        cat_prefix = f"{prefix}{split}/{cat}/"
        listing = list_objects(bucket, cat_prefix, delimiter="/", policy=policy, stop=stop)
        locs = sorted(listing.prefixes, key=_location_number)
        if not locs:
            raise ListingError(
                f"No location folders under {bucket.base_url}/{cat_prefix} (got {len(listing.objects)} "
                f"loose objects). The fMoW layout <split>/<category>/<category>_<n>/ was expected: "
                "check --prefix/--bucket, or the bucket's layout changed."
            )
        if len(locs) < n:
            notes.append(f"{split}/{cat}: only {len(locs)} locations, not {n}")
        return locs[:n]

    def location_objects(loc_prefix: str) -> list[Any]:
        listing = list_objects(bucket, loc_prefix, policy=policy, stop=stop)
        return [o for o in listing.objects
                if o.key.endswith((f"_{image_kind}.jpg", f"_{image_kind}.json"))]

    # not a `with` block: its exit waits for every running listing, so Ctrl-C would wait too
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="geolab-list")
    try:
        loc_prefixes = [p for locs in pool.map(category_locations, wanted) for p in locs]
        objects = [o for objs in pool.map(location_objects, loc_prefixes) for o in objs]
    except BaseException:
        stop.set()  # running listings end before their next request; queued ones never start
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    for lp in loc_prefixes:
        if not any(o.key.startswith(lp) and o.key.endswith(".jpg") for o in objects):
            notes.append(f"{lp}: no {image_kind} image in this location")
    return objects, loc_prefixes, notes


def download_fmow_subset(
    out: str | os.PathLike | None = None,
    categories: Sequence[str] | None = None,
    locations_per_category: dict[str, int] | None = None,
    endpoint: str | None = None,
    bucket: str | None = None,
    prefix: str | None = None,
    path_style: bool = False,
    workers: int = 8,
    retries: int = 5,
    short_side: int | None = None,
    dry_run: bool = False,
    progress: bool = True,
    prepare_workers: int | None = None,
    log: Any = None,
    check_md5: bool = True,
) -> FmowMiniResult:
    """Download fmow-mini: chosen categories, N locations each, all revisits; then manifest + cache.

    Steps: list (ListObjectsV2) -> check free space -> fetch in parallel (resumable, checked)
    into ``out/raw/`` -> ``out/raw-manifest.parquet`` (original images) -> prepared cache in
    ``out/cache-<short_side>/`` with the training manifest ``out/manifest.parquet``. Run it
    again after an interruption: completed files are not fetched again.

    Args:
        out: folder (default ``<GEOLAB_CACHE>/downloads/fmow-mini``, where the ``fmow-mini``
            data tier looks).
        categories: fMoW categories (default: the shipped selection's).
        locations_per_category: ``{"train": N, "val": M}`` (default: the selection's).
        endpoint: the store's URL (default: the selection's, fMoW's public bucket over HTTPS).
        bucket: the bucket (default: the selection's).
        prefix: the key prefix of fMoW-rgb in it (default: the selection's).
        path_style: ``<endpoint>/<bucket>/<key>`` URLs instead of virtual-hosted ones.
        workers: transfers (and listings) in flight.
        retries: retries per request, with exponential backoff.
        short_side: prepared cache short side (default: the selection's, 256).
        dry_run: list and report the size, fetch nothing.
        progress: progress bars.
        prepare_workers: processes for the cache (default: all cores).
        log: a ``print``-like function for progress messages (default: silent).
        check_md5: verify MD5-shaped ETags against the bodies (off only for mirrors whose
            ETags are not MD5s).

    Returns:
        A :class:`FmowMiniResult`.

    Raises:
        geolab.sources.s3.S3Error / ListingError: the store answered errors or an unexpected
            layout.
        geolab.sources.s3.UnsafeKeyError: a listed key would escape ``out``.
        geolab.io.DiskSpaceError: not enough free space (the message says how much is needed).
        geolab.sources.s3.DownloadError: some files failed after retries (rerun to resume).
    """
    say = log or (lambda *a, **k: None)
    sel = load_selection()
    categories = list(categories or sel.categories)
    unknown = [c for c in categories if c not in FMOW_CATEGORIES]
    if unknown:
        raise SelectionError(f"Unknown fMoW categories {unknown}; known: {', '.join(FMOW_CATEGORIES)}")
    locs = dict(locations_per_category or sel.locations)
    if any(v < 0 for v in locs.values()) or not any(locs.values()):
        raise SelectionError(f"locations per category must be >= 0 and not all 0, got {locs}")
    out = Path(out).expanduser() if out is not None else paths.download_dir() / "fmow-mini"
    store = S3Bucket(endpoint=endpoint or sel.endpoint, bucket=bucket or sel.bucket,
                     addressing="path" if path_style else "virtual")
    prefix = sel.prefix if prefix is None else prefix
    prefix = prefix if (not prefix or prefix.endswith("/")) else prefix + "/"
    policy = RetryPolicy(retries=retries)
    short_side = short_side or sel.short_side

    say(f"listing {len(categories)} categories x {locs} locations in {store.base_url}/{prefix} ...")
    objects, loc_prefixes, notes = list_fmow_selection(store, prefix, categories, locs,
                                                       workers=workers, policy=policy)
    for note in notes:
        say(f"  note: {note}")
    total = sum(o.size for o in objects)
    n_images = sum(o.key.endswith(".jpg") for o in objects)
    say(f"selected {len(loc_prefixes)} locations, {n_images} images, {len(objects)} files, "
        f"{total / 2**20:.1f} MiB")
    result = FmowMiniResult(out=out, objects=len(objects), total_bytes=total,
                            locations=len(loc_prefixes))
    if dry_run:
        return result
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "selection.json", {
        "endpoint": store.endpoint, "bucket": store.bucket, "prefix": prefix,
        "categories": categories, "locations_per_category": locs, "locations": loc_prefixes,
        "files": [{"key": o.key, "size": o.size, "etag": o.etag} for o in objects],
    })
    result.download = download_objects(store, objects, out / "raw", prefix=prefix, workers=workers,
                                       policy=policy, progress=progress, check_md5=check_md5)
    say("download: " + result.download.summary())
    result.raw_manifest = out / "raw-manifest.parquet"
    result.build = build_fmow_manifest(out / "raw", result.raw_manifest, progress=progress)
    result.prepare = prepare_cache(result.raw_manifest, out / f"cache-{short_side}",
                                   short_side=short_side, workers=prepare_workers, progress=progress,
                                   manifest_out=out / "manifest.parquet")
    result.manifest = out / "manifest.parquet"
    return result
