"""Loading throughput: prepared cache vs. original-size JPEGs of fMoW-like sizes, side by side.

What is measured is what training pays per temporal pair: read + decode two images and apply
the MoCo-v2 view (lightly's, 224 px, the paper's) to each, through geolab's
``TemporalPairDataset`` (strategy ``any-other``), in one process. The only difference between the
two rows of the table is the manifest: original JPEGs vs. the prepared cache
(``geolab data prepare``, short side 256, JPEG 95).

The images are synthetic but sized like fMoW-rgb (about a hundred to several thousand pixels a
side): sides drawn log-uniformly between ``--min-side`` and ``--max-side``, aspect 0.75-1.33,
smooth structure plus sensor-like noise, saved as JPEG quality 90. Target: cache >= 3x.

Run: ``.venv/bin/python bench/bench_prepared_cache.py`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def make_images(root: Path, n_locations: int, revisits: int, min_side: int, max_side: int,
                seed: int) -> Path:
    """Write fMoW-like JPEGs and their manifest; return the manifest path."""
    from geolab.manifest import save_manifest

    rng = np.random.default_rng(seed)
    rows = []
    for loc in range(n_locations):
        lat, lon = rng.uniform(-60, 60), rng.uniform(-180, 180)
        for t in range(revisits):
            side = float(np.exp(rng.uniform(np.log(min_side), np.log(max_side))))
            aspect = rng.uniform(0.75, 1.33)
            w, h = max(32, int(side * aspect ** 0.5)), max(32, int(side / aspect ** 0.5))
            # smooth "land cover" at low resolution, upsampled, plus noise: JPEG sizes like imagery
            low = rng.integers(30, 220, size=(max(2, h // 64), max(2, w // 64), 3), dtype=np.uint8)
            img = np.asarray(Image.fromarray(low).resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16)
            img = np.clip(img + rng.normal(0, 10, size=(h, w, 1)).astype(np.int16), 0, 255).astype(np.uint8)
            path = root / "orig" / f"loc{loc:03d}" / f"loc{loc:03d}_{t}_rgb.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(path, quality=90)
            rows.append({"image_id": f"loc{loc:03d}_{t}", "location_id": f"loc{loc:03d}", "path": str(path),
                         "timestamp": pd.Timestamp("2015-01-01T00:00:00Z") + pd.Timedelta(days=200 * t),
                         "lat": lat, "lon": lon, "label": f"class{loc % 4}", "split": "train",
                         "img_width": float(w), "img_height": float(h)})
    return save_manifest(pd.DataFrame(rows), root / "orig" / "manifest.parquet")


def pairs_per_second(manifest: Path, input_size: int, passes: int, seed: int) -> tuple[float, float]:
    """(pairs/s, seconds) for ``passes`` over every row of the manifest, in this process."""
    import torch

    from geolab.datasets import TemporalPairDataset
    from geolab.manifest import load_manifest
    from geolab.transforms import moco_v2_view

    torch.manual_seed(seed)
    df = load_manifest(manifest)
    ds = TemporalPairDataset(df, strategy="any-other", transform=moco_v2_view(input_size), seed=seed,
                             on_bad_image="fail")
    ds[0]  # warm-up (imports, first allocation)
    t0 = time.perf_counter()
    n = 0
    for p in range(passes):
        ds.set_epoch(p)
        for i in range(len(ds)):
            item = ds[i]
            q, k = item["query"], item["key"]
            assert q.shape == k.shape == (3, input_size, input_size)
            n += 1
    dt = time.perf_counter() - t0
    return n / dt, dt


def batched_pairs_per_second(manifest: Path, input_size: int, passes: int, seed: int,
                             batch_size: int = 32) -> tuple[float, float]:
    """(pairs/s, seconds) of the GPU input pipeline's code run on the CPU, in this process: the
    files' bytes (``EncodedPairDataset``), one batched ``decode_jpegs`` and the per-image views
    of ``BatchMoCoV2View`` per batch (``JpegPairViews``); on a GPU the decode and views run there."""
    import torch

    from geolab.jpeg_pipeline import EncodedPairDataset, JpegPairViews, collate_encoded
    from geolab.manifest import load_manifest

    torch.manual_seed(seed)
    ds = EncodedPairDataset(load_manifest(manifest), seed=seed)
    views = JpegPairViews(input_size, "cpu")
    views(collate_encoded([ds[0], ds[1]]))  # warm-up (kornia's import, first allocation)
    t0 = time.perf_counter()
    n = 0
    for p in range(passes):
        ds.set_epoch(p)
        for start in range(0, len(ds), batch_size):
            out = views(collate_encoded([ds[i] for i in range(start, min(start + batch_size, len(ds)))]))
            assert out["query"].shape[1:] == (3, input_size, input_size)
            n += out["query"].shape[0]
    dt = time.perf_counter() - t0
    return n / dt, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--locations", type=int, default=16)
    ap.add_argument("--revisits", type=int, default=3)
    ap.add_argument("--min-side", type=int, default=150)
    ap.add_argument("--max-side", type=int, default=3000)
    ap.add_argument("--short-side", type=int, default=256)
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="processes for the prepare step")
    args = ap.parse_args()

    import torch

    from geolab.sources.prepare import prepare_cache

    torch.set_num_threads(1)  # one loader process, as a DataLoader worker would be
    root = Path(tempfile.mkdtemp(prefix="geolab-bench-cache-"))
    try:
        t0 = time.perf_counter()
        src = make_images(root, args.locations, args.revisits, args.min_side, args.max_side, args.seed)
        gen = time.perf_counter() - t0
        df = pd.read_parquet(src)
        sides = np.minimum(df["img_width"], df["img_height"])
        orig_mb = sum(os.path.getsize(root / "orig" / p) for p in df["path"]) / 2**20
        t0 = time.perf_counter()
        rep = prepare_cache(src, root / "cache", short_side=args.short_side, workers=args.workers, progress=False)
        prep = time.perf_counter() - t0
        cache_mb = sum(p.stat().st_size for p in (root / "cache" / "images").rglob("*.jpg")) / 2**20

        orig_rate, orig_s = pairs_per_second(src, args.input_size, args.passes, args.seed)
        cache_rate, cache_s = pairs_per_second(rep.manifest_path, args.input_size, args.passes, args.seed)
        batch_rate, batch_s = batched_pairs_per_second(rep.manifest_path, args.input_size, args.passes, args.seed)
        cache_files = sorted((root / "cache" / "images").rglob("*.jpg"))
        from PIL import Image as _Image  # noqa: PLC0415

        pixels = [np.prod(_Image.open(f).size) for f in cache_files]

        n = len(df)
        print(f"{n} fMoW-like JPEGs ({args.locations} locations x {args.revisits} revisits), short side "
              f"{int(sides.min())}-{int(sides.max())} px (median {int(sides.median())}), {orig_mb:.1f} MiB; "
              f"generated in {gen:.1f} s")
        print(f"prepare (decode once, short side {args.short_side}, JPEG 95): {prep:.1f} s, "
              f"{cache_mb:.1f} MiB cache, {os.cpu_count()} cores")
        print(f"cache: {cache_mb * 2**20 / n / 1e3:.1f} kB per image on disk; decoded (uint8 RGB) "
              f"{3 * float(np.mean(pixels)) / 1e3:.0f} kB per image")
        print(f"loading: TemporalPairDataset(any-other) + moco_v2_view({args.input_size}), 1 process, "
              f"{args.passes} passes")
        print()
        print(f"| source | pairs/s | seconds | speed-up |")
        print(f"| --- | ---: | ---: | ---: |")
        print(f"| original JPEGs | {orig_rate:.1f} | {orig_s:.1f} | 1.0x |")
        print(f"| prepared cache ({args.short_side} px) | {cache_rate:.1f} | {cache_s:.1f} | "
              f"{cache_rate / orig_rate:.1f}x |")
        print(f"| prepared cache, batched decode + per-image batch views (geolab.jpeg_pipeline, CPU) | "
              f"{batch_rate:.1f} | {batch_s:.1f} | {batch_rate / orig_rate:.1f}x |")
        print()
        verdict = "PASS" if cache_rate / orig_rate >= 3.0 else "FAIL"
        print(f"target: prepared cache >= 3x the original JPEGs -> {verdict} ({cache_rate / orig_rate:.1f}x)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
