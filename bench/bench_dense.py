"""Dense transfer on the CPU: wall time and mIoU of ``geolab.dense.train_dense``, side by side.

Target: the quick run of notebook 07 (about 300 geoworld images at 64 px, ResNet-18 encoder,
FPN-lite decoder, fine-tuned from a random init, ``DenseConfig`` defaults) takes about 20 s on
2 CPU cores. Rows, all on the same world and seed:

* ``fine-tune, fpn, preload`` -- the quick run (images and masks decoded once into memory);
* ``fine-tune, fpn, from disk`` -- the baseline without preloading (every epoch re-reads and
  re-decodes each PNG pair; a data-only pass over the split is timed both ways first);
* ``frozen, fpn`` -- the encoder frozen (the dense linear probe), decoder only;
* ``fine-tune, fcn`` -- the classic FCN head instead of FPN-lite (same cost, coarser masks).

geoworld is a simulation; the mIoU column shows the decoders' relative quality, not the
paper's SpaceNet numbers.

Run: ``.venv/bin/python bench/bench_dense.py`` (about 2-4 minutes on 2 shared cores; the
world is generated into the geolab cache on first use). ``--manifest`` uses another manifest.
"""

from __future__ import annotations

import argparse
import os

# On a shared 2-core machine OpenMP's default busy-waiting threads slow torch down many times
# over when other processes compete for the cores; passive waiting does not (measured:
# ResNet-18 step at 32 px, batch 16: 2-4 s active vs 0.25-0.4 s passive under load ~8).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", default=None, help="a manifest with mask_path (default: a 100-location geoworld)")
    parser.add_argument("--locations", type=int, default=100, help="geoworld locations (100 -> about 330 images)")
    parser.add_argument("--size", type=int, default=64, help="geoworld image size")
    parser.add_argument("--epochs", type=int, default=None, help="override DenseConfig.epochs")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from geolab.config import DenseConfig
    from geolab.dense import train_dense
    from geolab.manifest import load_manifest

    torch.set_num_threads(args.threads)
    if args.manifest is None:
        from geolab.world import load_world

        manifest = load_world(seed=0, size=args.size, locations=args.locations, progress=False)
    else:
        manifest = args.manifest
    df = load_manifest(manifest)
    base = DenseConfig(device="cpu", progress=False, image_size=args.size)
    if args.epochs is not None:
        base.epochs = args.epochs
    rows = [
        ("fine-tune, fpn, preload", {}),
        ("fine-tune, fpn, from disk", {"preload": False}),
        ("frozen, fpn", {"freeze_backbone": True}),
        ("fine-tune, fcn", {"decoder": "fcn"}),
    ]
    print(f"manifest: {manifest} ({len(df)} images; geoworld is a simulation)")
    print(f"config: {base.arch}, {base.image_size} px, {base.epochs} epochs, batch {base.batch_size}, "
          f"{args.threads} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    print()
    # data alone: one pass over the training split (what every epoch pays before the model)
    import time

    from geolab.dense import SegmentationDataset

    print("| data pass over the train split | seconds |")
    print("| --- | ---: |")
    for label, preload in (("from disk (decode every PNG pair)", False), ("preloaded (decoded once)", True)):
        ds = SegmentationDataset(df, base.image_size, split=base.train_split, preload=preload)
        t = time.perf_counter()
        for i in range(len(ds)):
            ds[i]
        print(f"| {label} | {time.perf_counter() - t:.3f} |")
    print()
    print("| run | train / test images | wall s | s per epoch | mIoU | pixel acc |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, over in rows:
        cfg = DenseConfig(**{**base.to_dict(), **over})
        r = train_dense(None, df, cfg)
        print(
            f"| {name} | {r['n_train']} / {r['n_test']} | {r['wall_s']:.1f} | {r['wall_s'] / r['epochs']:.2f} "
            f"| {r['miou']:.3f} | {r['pixel_acc']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
