"""Target: the MoCo-v2 view of a preloaded geoworld batch costs well under a training step.

Side by side in one run, interleaved round by round so that load on the (shared) machine hits
both alike: the colour jitter of :class:`geolab.transforms.BatchMoCoV2View` as geolab draws it
(:class:`geolab.transforms.BatchColorJitter`, hue as a YIQ rotation) against kornia's
``ColorJitter`` (hue through HSV), alone and inside the whole view (crop, jitter, grey-scale,
blur, flip, normalisation), on one CPU thread, for the cpu profile's batch: 128 uint8 images of
32 px, crop area >= 0.4, jitter x0.5. A training step of the cpu profile (resnet18-w16, batch 128)
takes ~210 ms on this machine's one thread; it needs two views.

Run: ``.venv/bin/python bench/bench_view.py [--rounds 20 --batch-size 128 --size 32]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--size", type=int, default=32)
    args = p.parse_args()
    torch.set_num_threads(1)
    import kornia.augmentation as K

    from geolab.transforms import BatchColorJitter, BatchMoCoV2View

    s = 0.5  # the cpu profile's jitter_strength
    ours = BatchColorJitter(0.4 * s, 0.4 * s, 0.4 * s, 0.1 * s, p=0.8)
    theirs = K.ColorJitter(0.4 * s, 0.4 * s, 0.4 * s, 0.1 * s, p=0.8)
    view_ours = BatchMoCoV2View(args.size, 0.4, s)
    view_kornia = BatchMoCoV2View(args.size, 0.4, s)
    view_kornia.augment[1] = theirs
    torch.manual_seed(0)
    images = torch.randint(0, 256, (args.batch_size, 3, args.size, args.size), dtype=torch.uint8)
    floats = images.float() / 255
    cases = {"jitter, BatchColorJitter": lambda: ours(floats), "jitter, kornia ColorJitter": lambda: theirs(floats),
             "whole view, BatchColorJitter": lambda: view_ours(images),
             "whole view, kornia ColorJitter": lambda: view_kornia(images)}
    times: dict[str, list[float]] = {k: [] for k in cases}
    for f in cases.values():  # warm-up
        f()
    for _ in range(args.rounds):
        for name, f in cases.items():
            t0 = time.perf_counter()
            for _ in range(5):
                f()
            times[name].append((time.perf_counter() - t0) / 5 * 1000)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.batch_size} images of {args.size} px, one thread, median of {args.rounds} rounds:")
    print("| case | ms | ratio to kornia |\n| --- | ---: | ---: |")
    for name in cases:
        ref = med["jitter, kornia ColorJitter"] if name.startswith("jitter") else med["whole view, kornia ColorJitter"]
        print(f"| {name} | {med[name]:.1f} | {med[name] / ref:.2f} |")


if __name__ == "__main__":
    main()
