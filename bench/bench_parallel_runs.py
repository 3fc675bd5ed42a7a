"""Target: on a 2-core CPU, the course's runs train faster two at a time (one thread each)
than one at a time (two threads each).

The course trains many small runs (methods x seeds). A narrow encoder at 32 px does not keep
two cores busy within one step (small convolutions, BatchNorm, the loss, the optimizer are
partly serial), so running two runs side by side, each on one core, should finish the set
sooner. Measured here with geolab's own ``run_experiments`` on one geoworld simulation: the
same runs (``--runs`` MoCo-v2 seeds), trained and evaluated once with ``workers=1`` and once
with ``workers=2``, into separate folders; the table gives the wall time and the runs per
minute side by side, and the ratio.

Run: ``.venv/bin/python bench/bench_parallel_runs.py`` (about 4 min on 2 cores);
``--quick`` is the toy size the tests run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> list[dict]:
    from geolab.course.experiment import run_experiments

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", default="", help="default: a 300-location geoworld at 32 px")
    p.add_argument("--runs", type=int, default=4, help="MoCo-v2 runs (seeds) in each mode")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--quick", action="store_true", help="toy size (tests)")
    a = p.parse_args(argv)
    if not a.manifest:
        from geolab.world import load_world

        a.manifest = str(load_world(seed=0, locations=60 if a.quick else 300, size=32))
    train = dict(arch="resnet18-w16", image_size=32, epochs=1 if a.quick else a.epochs, batch_size=8 if a.quick else 128,
                 queue_size=32 if a.quick else 512, preload=True, num_workers=0, device="cpu",
                 max_steps_per_epoch=2 if a.quick else None)
    runs = 2 if a.quick else a.runs
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            results_path = Path(tmp) / f"w{workers}" / "records" / "bench.jsonl"
            specs = [dict(method="moco", manifest=a.manifest, seed=s, results_path=results_path, **train) for s in range(runs)]
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                records = run_experiments(specs, workers=workers)
            wall = time.perf_counter() - t0
            results.append({"workers": workers, "threads": max(1, (os.cpu_count() or 1) // workers), "runs": len(records),
                            "wall_s": wall, "runs_per_min": 60 * len(records) / wall})
    base = results[0]["runs_per_min"]
    print(f"{runs} MoCo-v2 runs (resnet18-w16, 32 px), trained and evaluated by run_experiments on {os.cpu_count()} cores")
    print("| runs at once | threads each | wall (s) | runs/min | vs one at a time |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['workers']} | {r['threads']} | {r['wall_s']:.0f} | {r['runs_per_min']:.2f} | {r['runs_per_min'] / base:.2f}x |")
    return results


if __name__ == "__main__":
    main()
