"""Target: the preloaded, batch-augmented input pipeline trains MoCo-v2+TP several times faster
than the PIL pipeline, and the CPU course's narrow encoder many times faster than the old course.

Side by side in one run, the same MoCo-v2+TP training steps (``moco-tp``: momentum update,
query + key forward with split BN and key shuffle, memory-bank InfoNCE, backward, SGD) fed by
geolab's two input pipelines:

* **PIL**: ``preload=False``; each image is read from its PNG and augmented in PIL
  (lightly's MoCo-v2 view) by the DataLoader, with ``num_workers`` 0 and 1;
* **preload**: ``preload=True``; the training split is decoded once into a uint8 tensor and
  each batch is augmented at once (``BatchMoCoV2View``, kornia) in the training process.

Each pipeline feeds ``resnet18-w16`` and ``resnet18`` at 32 px (batch 128), and the old course
setting (``resnet18``, 64 px, batch 64, PIL, no workers) is the "before" row every ratio is
taken against. Per configuration: the same number of timed steps after warm-up steps; the
table gives pairs/s and the seconds per step spent getting the batch (loader + batch views)
and in the model step. The one-time decode of ``preload`` is printed apart (it is paid once
per run, not per step). Built from geolab.train's own pieces (``prepare_data``,
``build_model``, ``compute_loss``, ``_to_device``), as ``bench/bench_train_step.py``.

Data: a geoworld simulation (default 300 locations, rendered at 32 and 64 px) or ``--manifest``.

Run: ``.venv/bin/python bench/bench_input_pipeline.py`` (about 3 min on 2 cores);
``--quick`` is the toy size the tests run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from geolab.config import PretrainConfig
from geolab.models import build_contrastive_loss
from geolab.distributed import resolve_device, seed_everything
from geolab.models import LossSettings, ModelSettings, auto_bn_splits, build_model, compute_loss
from geolab.train import _to_device, prepare_data


@dataclass(frozen=True)
class Setting:
    """One row of the table."""

    name: str
    arch: str
    image_size: int
    batch_size: int
    preload: bool
    num_workers: int


def settings(batch_size: int, old_batch_size: int, archs: list[str]) -> list[Setting]:
    """The "before" row (the old course), then each arch at 32 px with each pipeline."""
    rows = [Setting("before: old course (PIL, 0 workers)", "resnet18", 64, old_batch_size, False, 0)]
    for arch in archs:
        for preload, workers in ((False, 0), (False, 1), (True, 0)):
            pipe = "preload + batch views" if preload else f"PIL, {workers} worker{'s' if workers != 1 else ''}"
            rows.append(Setting(f"{arch} @ 32 px, {pipe}", arch, 32, batch_size, preload, workers))
    return rows


def measure(s: Setting, manifest: Path, out: Path, steps: int, warmup: int, queue_size: int, device: str) -> dict:
    """Train ``warmup + steps`` steps of moco-tp with setting ``s``; time the last ``steps``."""
    cfg = PretrainConfig(
        method="moco-tp", manifest=str(manifest), out=str(out), arch=s.arch, image_size=s.image_size,
        batch_size=s.batch_size, queue_size=queue_size, num_workers=s.num_workers, preload=s.preload,
        device=device, progress=False, tensorboard=False,
    )
    dev = resolve_device(cfg.device)
    t0 = time.perf_counter()
    ds, *_rest, classes = prepare_data(cfg)
    prepare_s = time.perf_counter() - t0
    seed_everything(0)
    model = build_model(ModelSettings.of(cfg), len(classes), auto_bn_splits(s.batch_size, 1)).to(dev)
    criterion = build_contrastive_loss(cfg.temperature, cfg.queue_size, cfg.proj_dim).to(dev)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, momentum=0.9, weight_decay=1e-4)
    transform = getattr(ds, "batch_transform", None)
    if transform is not None:
        transform = transform.to(dev)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=s.batch_size, shuffle=True, num_workers=s.num_workers, drop_last=True,
        pin_memory=dev.type == "cuda", generator=torch.Generator().manual_seed(0),
    )
    if len(loader) == 0:
        raise SystemExit(f"{manifest}: {len(ds)} training images, fewer than one batch of {s.batch_size}; use --batch-size.")

    def batches():
        epoch = 0
        while True:  # a new iterator (and new workers) per epoch, as the training loop does
            ds.set_epoch(epoch)
            yield from loader
            epoch += 1

    it = batches()
    data_s = model_s = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            data_s = model_s = 0.0
            if dev.type == "cuda":
                torch.cuda.synchronize()
        t = time.perf_counter()
        batch = _to_device(next(it), dev, False, transform)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        model.momentum_update(cfg.ema_momentum)
        loss, _parts = compute_loss(LossSettings.of(cfg), model, criterion, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        data_s += t1 - t
        model_s += time.perf_counter() - t1
    del it  # ends the workers
    total = data_s + model_s
    return {
        "pairs_per_s": steps * s.batch_size / total,
        "data_s_per_step": data_s / steps,
        "model_s_per_step": model_s / steps,
        "prepare_s": prepare_s,
        "train_images": len(ds),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", default=None, help="a manifest instead of the geoworld simulation")
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--world-locations", type=int, default=300)
    ap.add_argument("--archs", nargs="+", default=["resnet18-w16", "resnet18"], help="encoders at 32 px")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--old-batch-size", type=int, default=64, help="batch of the 'before' row (the old cpu profile's)")
    ap.add_argument("--queue-size", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per configuration")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (worker start-up, allocator)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="toy size (tests): batch 8, queue 64, 2+1 steps, no 'resnet18' rows")
    args = ap.parse_args(argv)
    if args.quick:
        args.batch_size, args.old_batch_size, args.queue_size, args.steps, args.warmup = 8, 8, 64, 2, 1
        args.archs = args.archs if argv and "--archs" in argv else ["resnet18-w16"]
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.manifest:
        manifests = {32: Path(args.manifest), 64: Path(args.manifest)}
        data = str(args.manifest)
    else:
        from geolab.world import load_world

        manifests = {
            size: load_world(seed=args.world_seed, locations=args.world_locations, size=size, progress=False)
            for size in (32, 64)
        }
        data = f"geoworld (simulation) seed {args.world_seed}, {args.world_locations} locations"
    rows = settings(args.batch_size, args.old_batch_size, args.archs)
    work = Path(tempfile.mkdtemp(prefix="bench-input-"))
    print(f"data: {data}; moco-tp, queue {args.queue_size}, {args.warmup} warm-up + {args.steps} timed steps per row, "
          f"threads {torch.get_num_threads()}, device {args.device}", flush=True)
    results = []
    for i, s in enumerate(rows):
        r = measure(s, manifests[s.image_size], work / str(i), args.steps, args.warmup, args.queue_size, args.device)
        results.append({"setting": s, **r})
        print(f"  {s.name}: {r['pairs_per_s']:.1f} pairs/s", flush=True)
    before = results[0]["pairs_per_s"]
    print("\n| config | batch | pairs/s | data s/step | model s/step | vs before |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        s = r["setting"]
        print(f"| {s.name} | {s.batch_size} | {r['pairs_per_s']:.1f} | {r['data_s_per_step']:.3f} | "
              f"{r['model_s_per_step']:.3f} | {r['pairs_per_s'] / before:.2f}x |")
    for r in results:
        if r["setting"].preload:
            print(f"one-time decode for {r['setting'].name}: {r['prepare_s']:.1f} s ({r['train_images']} images)")
    for arch in args.archs:
        pil = next(r for r in results if r["setting"].arch == arch and not r["setting"].preload and r["setting"].image_size == 32
                   and r["setting"].num_workers == 0)
        pre = next(r for r in results if r["setting"].arch == arch and r["setting"].preload)
        print(f"{arch} @ 32 px: preload is {pre['pairs_per_s'] / pil['pairs_per_s']:.1f}x the PIL pipeline (0 workers)")
    return results


if __name__ == "__main__":
    main()
