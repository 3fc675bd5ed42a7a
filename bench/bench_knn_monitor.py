"""Cost of the kNN monitor over one run, on one CPU thread: the default settings beside the cpu profile's.

For each setting a fresh process (so the eval cache starts empty, as in a new worker) calls
``geolab.train.knn_monitor`` at every monitored epoch of a run (``(epoch + 1) % knn_every == 0``
and the last), then extracts the features that the final evaluation reads (the whole train and
test splits; the cache may already hold the train split from the monitor). The model is
resnet18-w16 at its random initialisation (the monitor's cost does not depend on the weights), on
the course's world (geoworld, 1000 locations, 32 px). Prints a table of medians over ``--repeats``.

A measurement, kept with the other benchmarks' results in BENCHMARKS.md ("The kNN monitor's cost");
it belongs in bench/ beside them. Usage:

    python bench/bench_knn_monitor.py [--epochs 25] [--repeats 2] [--settings 10:5000 3:1000 2:500]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def one(every: int, max_images: int, epochs: int, manifest: str) -> dict[str, float]:
    """Monitor calls and the final evaluation's features of one run, in this process."""
    import torch

    torch.set_num_threads(1)
    from geolab.config import PretrainConfig
    from geolab.datasets import label_names
    from geolab.evaluate import extract_features
    from geolab.manifest import load_manifest
    from geolab.models import ModelSettings, build_model
    from geolab.train import knn_monitor

    cfg = PretrainConfig(method="moco-tp", manifest=manifest, out="unused", arch="resnet18-w16", image_size=32,
                         epochs=epochs, batch_size=128, queue_size=512, head_bn=True, bn_splits=1, device="cpu",
                         knn_every=every, knn_max_images=max_images)
    df = load_manifest(manifest)
    classes = label_names(df)
    torch.manual_seed(0)
    model = build_model(ModelSettings.of(cfg), len(classes), bn_splits=1)
    points = [e for e in range(epochs) if (e + 1) % every == 0 or e + 1 == epochs]
    t0 = time.perf_counter()
    for _ in points:
        knn_monitor(model, df, cfg, classes, torch.device("cpu"))
    monitor = time.perf_counter() - t0
    t0 = time.perf_counter()
    for split in ("train", "test"):
        part = df[df["split"] == split].reset_index(drop=True)
        extract_features(model.backbone, part, 32, classes=classes, device="cpu", progress=False)
    final = time.perf_counter() - t0
    return {"points": len(points), "monitor_s": monitor, "final_features_s": final, "total_s": monitor + final}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--settings", nargs="+", default=["10:5000", "3:1000"], metavar="EVERY:MAX_IMAGES")
    p.add_argument("--manifest", default="", help="default: the course's world (geoworld, 1000 locations, 32 px)")
    p.add_argument("--one", default="", help=argparse.SUPPRESS)  # a child process: EVERY:MAX_IMAGES
    a = p.parse_args()
    if a.one:
        every, max_images = (int(v) for v in a.one.split(":"))
        print(json.dumps(one(every, max_images, a.epochs, a.manifest)))
        return
    if not a.manifest:
        from geolab import tiers

        a.manifest = str(tiers.resolve_manifest("geoworld", world_locations=1000, world_size=32, world_seed=0))
    rows = []
    for setting in a.settings:
        runs = []
        for _ in range(a.repeats):
            out = subprocess.run([sys.executable, __file__, "--one", setting, "--epochs", str(a.epochs),
                                  "--manifest", a.manifest], capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        rows.append((setting, {k: statistics.median(r[k] for r in runs) for k in runs[0]}))
    base = rows[0][1]["total_s"]
    print(f"kNN monitor over one {a.epochs}-epoch run, one thread, median of {a.repeats}")
    print("| knn_every:knn_max_images | points | monitor (s) | final evaluation's features (s) | total (s) | vs first |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for setting, r in rows:
        print(f"| {setting} | {r['points']:.0f} | {r['monitor_s']:.2f} | {r['final_features_s']:.2f} | "
              f"{r['total_s']:.2f} | {r['total_s'] - base:+.2f} |")


if __name__ == "__main__":
    main()
