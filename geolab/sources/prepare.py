"""The prepared cache: every image decoded once, resized, re-encoded small (``geolab data prepare``).

fMoW-rgb images range from about a hundred to several thousand pixels a side. Training reads
each image many times (every epoch, two views per temporal pair), and decoding a 3000 x 3000 JPEG
costs far more than the MoCo-v2 augmentation of a 224-pixel crop. The cache pays that decode
once: each image is resized so its short side is ``short_side`` (never enlarged) and written as
JPEG quality 95, and a new manifest points at the cache. Training then reads files of a few
tens of kilobytes.

Decoding uses libjpeg's DCT scaling (Pillow's ``Image.draft``): a large JPEG is decoded directly
at 1/2, 1/4 or 1/8 of its size (never below the target) before the final high-quality resize,
which is several times faster than decoding at full size.

The work runs in parallel over the CPU cores and is resumable: each cache file is written
atomically, so a file that exists is complete and is skipped on the next run. The parameters of
a cache (short side, quality) are recorded in ``prepare.json``; reusing a folder with other
parameters is refused rather than mixing sizes. ``prepare.json`` is also how a folder is
recognised as a cache (:mod:`geolab.io`'s output rule): in a folder without it, a
``manifest.parquet``, ``images/`` or ``prepare_failed.csv`` is someone else's and is not replaced
without ``force``; the folder of the source manifest is never written into (the prepared manifest
would replace the source's, and a geoworld folder would then "reuse" it as the original world).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm.auto import tqdm

from geolab.errors import UserError
from geolab.images import to_rgb
from geolab.io import atomic_write, atomic_write_json, atomic_write_text, check_output_folder, ensure_free_space
from geolab.manifest import load_manifest, save_manifest
from geolab.processes import process_pool
from geolab.sources.build import Skipped

CACHE_VERSION = 1
#: Paper-scale default: 224-pixel crops (RandomResizedCrop) are cut from images of short side 256.
DEFAULT_SHORT_SIDE = 256
JPEG_QUALITY = 95
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
#: What :func:`prepare_cache` writes directly inside its folder; ``prepare.json`` marks the folder as a cache.
CACHE_MARKER = "prepare.json"
CACHE_FILES = frozenset({CACHE_MARKER, "manifest.parquet", "images", "prepare_failed.csv"})


class PrepareError(UserError, RuntimeError):
    """The cache cannot be made as asked (folder made with other parameters, nothing readable)."""


@dataclass
class PrepareReport:
    """What :func:`prepare_cache` did."""

    manifest_path: Path
    written: int = 0
    reused: int = 0
    failed: list[Skipped] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for people: images written, reused and unreadable (the first five named)."""
        text = (f"prepared cache -> {self.manifest_path}: {self.written} images written, "
                f"{self.reused} already there")
        if self.failed:
            text += f", {len(self.failed)} unreadable (listed in {self.manifest_path.parent / 'prepare_failed.csv'})"
            for s in self.failed[:5]:
                text += f"\n    {s.path}: {s.reason}"
        return text


def cache_name(image_id: str) -> str:
    """A file name under the cache for ``image_id``: its ``/``-parts made safe, plus ``.jpg``.

    Characters other than letters, digits, ``._-`` become ``_``; when that changes the id, a
    short hash of the id is appended so two ids never share a file.
    """
    parts = [_SAFE.sub("_", p) for p in str(image_id).split("/")]
    parts = [p if p not in ("", ".", "..") else "_" for p in parts]
    name = "/".join(parts)
    if name != image_id:
        name += "-" + hashlib.sha1(str(image_id).encode()).hexdigest()[:8]
    return name + ".jpg"


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Size with the short side at ``short_side``, aspect kept; images are never enlarged."""
    short = min(width, height)
    if short <= short_side:
        return width, height
    scale = short_side / short
    return max(1, round(width * scale)), max(1, round(height * scale))


def prepare_image(src: str, dest: str, short_side: int, quality: int = JPEG_QUALITY) -> tuple[int, int]:
    """Decode ``src`` once (DCT-scaled for JPEG), resize, write ``dest`` atomically as JPEG.

    An RGB JPEG already at or below the target size is copied as it is (after a full decode
    that proves it readable) instead of being encoded a second time.

    Args:
        src: the original image.
        dest: the cache file.
        short_side: target short side in pixels (never enlarged).
        quality: JPEG quality (95).

    Returns:
        ``(width, height)`` written.

    Raises:
        OSError: unreadable or truncated image (PIL's errors are OSError subclasses).
    """
    with Image.open(src) as im:
        target = resized_size(im.width, im.height, short_side)
        if target == im.size and im.format == "JPEG" and im.mode == "RGB":
            # already small and already an RGB JPEG: copy the bytes (no second lossy encode)
            im.load()  # a truncated or corrupt file fails here, as it would below
            with open(src, "rb") as fin, atomic_write(dest, "wb") as fh:
                fh.write(fin.read())
            return im.size
        if target != im.size:
            # decode at the smallest DCT scale still >= target (libjpeg scaling; JPEG only)
            im.draft("RGB", target)
        rgb = to_rgb(im, src)  # 16-bit images rescaled, not clipped
        if rgb.size != target:
            rgb = rgb.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
        with atomic_write(dest, "wb") as fh:
            rgb.save(fh, "JPEG", quality=quality)
        return rgb.size


def _work(job: tuple[int, str, str, int, int]) -> tuple[int, Any]:
    i, src, dest, short_side, quality = job
    try:
        return i, prepare_image(src, dest, short_side, quality)
    except Exception as exc:  # noqa: BLE001 - any decode failure is this image's, reported below
        return i, f"{type(exc).__name__}: {exc}"


def _check_params(out_dir: Path, short_side: int, quality: int) -> None:
    params = {"version": CACHE_VERSION, "short_side": short_side, "quality": quality}
    p = out_dir / CACHE_MARKER
    if p.exists():
        try:
            old = json.loads(p.read_text())
        except (OSError, ValueError):
            old = None
        if old != params:
            raise PrepareError(
                f"{out_dir} holds a cache made with {old}, not {params}. Choose another --out or "
                "delete that folder; mixing image sizes in one cache is refused."
            )
    else:
        atomic_write_json(p, params)


def prepare_cache(
    manifest: str | os.PathLike,
    out_dir: str | os.PathLike,
    short_side: int = DEFAULT_SHORT_SIDE,
    quality: int = JPEG_QUALITY,
    workers: int | None = None,
    progress: bool = True,
    manifest_out: str | os.PathLike | None = None,
    force: bool = False,
) -> PrepareReport:
    """Build (or complete) the prepared cache of ``manifest`` and a manifest that points at it.

    Args:
        manifest: the source manifest (original-size images).
        out_dir: the cache folder (``images/`` below it).
        short_side: short side of cached images in pixels (default 256, from which MoCo-v2's
            224-pixel crops are cut; never enlarged).
        quality: JPEG quality (95).
        workers: processes (default: all CPU cores).
        progress: show a progress bar.
        manifest_out: the new manifest (default ``out_dir/manifest.parquet``).
        force: in a folder that is not a cache (no ``prepare.json``), replace the
            ``manifest.parquet``, ``images/`` and ``prepare_failed.csv`` found there (files already
            under ``images/`` are then taken as cache files).

    Returns:
        A :class:`PrepareReport`. Unreadable images are left out of the new manifest and listed
        in ``out_dir/prepare_failed.csv``. The new manifest keeps every column, points ``path``
        at the cache, keeps the original in ``source_path`` and sets ``img_width``/``img_height``
        to the cached size.

    Raises:
        PrepareError: ``out_dir`` holds a cache with other parameters, or no image was readable.
        geolab.io.OutputRefusedError: ``out_dir`` is the folder of ``manifest``, or a folder that is not a
            cache and holds files of the cache's names (without ``force``).
        NotADirectoryError: ``out_dir`` is a file, or a file stands where a folder above it would be.
        geolab.io.DiskSpaceError: not enough room for the cache (estimate).
        geolab.manifest.ManifestError: the source manifest is invalid.
    """
    if short_side < 8:
        raise ValueError(f"short_side must be at least 8 pixels, got {short_side}")
    given = Path(out_dir)
    check_output_folder(given, own=CACHE_FILES, ours=(given / CACHE_MARKER).is_file(), command="geolab data prepare",
                        inputs=[manifest], force=force)
    df = load_manifest(manifest, check_files=False)
    out_dir = given.expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_params(out_dir, short_side, quality)
    manifest_out = Path(manifest_out) if manifest_out is not None else out_dir / "manifest.parquet"

    dests = [out_dir / "images" / cache_name(i) for i in df["image_id"]]
    todo = [i for i, d in enumerate(dests) if not d.is_file()]
    # about 0.5 byte per pixel at quality 95, aspect up to 2:1
    ensure_free_space(out_dir, int(len(todo) * short_side * short_side * 2 * 0.5) + (8 << 20),
                      f"the prepared cache ({len(todo)} images at short side {short_side})")
    sizes: dict[int, tuple[int, int]] = {}
    failed: dict[int, str] = {}
    jobs = [(i, str(df["path"].iat[i]), str(dests[i]), short_side, quality) for i in todo]
    n_workers = max(1, workers or os.cpu_count() or 1)
    bar = tqdm(total=len(jobs), desc="prepare", unit="img", disable=not progress)
    try:
        if n_workers == 1 or len(jobs) < 8:
            results = map(_work, jobs)
            for i, res in results:
                (sizes.__setitem__(i, res) if isinstance(res, tuple) else failed.__setitem__(i, res))
                bar.update(1)
        else:
            with process_pool(n_workers, start_method=None) as pool:  # the platform's default, as before
                chunk = max(1, min(32, math.ceil(len(jobs) / (n_workers * 4))))
                for i, res in pool.map(_work, jobs, chunksize=chunk):
                    (sizes.__setitem__(i, res) if isinstance(res, tuple) else failed.__setitem__(i, res))
                    bar.update(1)
    finally:
        bar.close()

    reused = [i for i in range(len(df)) if i not in sizes and i not in failed]
    if reused:
        for i in reused:  # header read only: cheap
            with Image.open(dests[i]) as im:
                sizes[i] = im.size
    if not sizes:
        raise PrepareError(f"No image of {manifest} could be read; first error: "
                           f"{next(iter(failed.values()), 'none')}")
    keep = sorted(sizes)
    out = df.iloc[keep].copy()
    out["source_path"] = out["path"]
    out["path"] = [str(dests[i]) for i in keep]
    out["img_width"] = [float(sizes[i][0]) for i in keep]
    out["img_height"] = [float(sizes[i][1]) for i in keep]
    out = out.reset_index(drop=True)
    out.attrs = {}
    save_manifest(out, manifest_out)
    failures = [Skipped(str(df["path"].iat[i]), f"unreadable image: {msg}") for i, msg in sorted(failed.items())]
    if failures:
        lines = ["path,reason"] + [f'"{s.path}","{s.reason.replace(chr(34), chr(39))}"' for s in failures]
        atomic_write_text(out_dir / "prepare_failed.csv", "\n".join(lines) + "\n")
    return PrepareReport(manifest_path=manifest_out, written=len(todo) - len(failed),
                         reused=len(reused), failed=failures)
