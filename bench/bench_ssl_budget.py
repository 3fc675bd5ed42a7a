"""Target: within the CPU course's step budget, MoCo-v2 and MoCo-v2+TP features probe clearly
better than the untrained network (issue 12: the course must show what the paper is about).

The learning curve, side by side in one run: linear-probe top-1 (frozen backbone features,
logistic regression fitted on ``train``, scored on ``val`` and ``test``; geolab.evaluate's
``extract_features`` + ``linear_probe``) of

* **random init**: the backbone every run starts from (``save_random_init``, same seed), and
* **MoCo-v2** (``moco``) and **MoCo-v2+TP** (``moco-tp``), pre-trained for each number of
  optimizer steps in ``--steps``

by geolab's own loop (``geolab.train.pretrain``, ``preload=True`` by default). Two ways to get
the curve:

* default, one run per budget: each budget is its own run with the whole cosine schedule
  (what a course profile with that many steps gets); steps per epoch are the largest divisor
  of the budget that fits in one pass over the training split;
* ``--snapshots``: one run per method and seed with a constant learning rate (``cosine=False``),
  extended budget by budget with ``resume`` (cheaper: the cost of the largest budget only;
  checkpoints along one run, not runs that end at each budget).

Prints a table of probe top-1 (%; mean over ``--seeds`` and, with several seeds, the standard
deviation) and the final training loss of each run (chance InfoNCE: ln(queue + 1)).

Run: ``.venv/bin/python bench/bench_ssl_budget.py`` (geoworld, 300 locations at 32 px,
``resnet18-w16``, steps 0 100 200 400; about 10 min on 2 cores);
``--quick`` is the toy size the tests run.
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from geolab.config import RANDOM_INIT, PretrainConfig

CURVE_METHODS = ("moco", "moco-tp")


def steps_per_epoch(budget: int, per_pass: int) -> int:
    """The largest divisor of ``budget`` that is at most ``per_pass`` (batches in one pass)."""
    return max(d for d in range(1, min(budget, per_pass) + 1) if budget % d == 0)


def probe(checkpoint: Path, df, classes: list[str], image_size: int, splits: list[str], seed: int, device: str) -> dict:
    """Linear-probe top-1 of ``checkpoint``'s backbone on each of ``splits`` (fitted on train)."""
    from geolab.evaluate import extract_features, linear_probe, load_backbone
    from geolab.manifest import select_split

    backbone = load_backbone(checkpoint)
    common = dict(classes=classes, batch_size=256, num_workers=0, device=device, progress=False)
    tx, ty = extract_features(backbone, select_split(df, "train"), image_size, **common)
    out = {}
    for split in splits:
        vx, vy = extract_features(backbone, select_split(df, split), image_size, **common)
        out[split] = linear_probe(tx, ty, vx, vy, seed=seed)["top1"]
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", default=None, help="a manifest instead of the geoworld simulation")
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--world-locations", type=int, default=300)
    ap.add_argument("--world-size", type=int, default=32, help="geoworld image side in pixels")
    ap.add_argument("--arch", default="resnet18-w16")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--queue-size", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=0.06)
    ap.add_argument("--temperature", type=float, default=0.2)
    ap.add_argument("--ema-momentum", type=float, default=0.99)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[0, 100, 200, 400], help="optimizer-step budgets")
    ap.add_argument("--methods", nargs="+", default=list(CURVE_METHODS), help="pre-training methods to compare")
    ap.add_argument("--snapshots", action="store_true", help="one constant-LR run per method, probed at each budget")
    ap.add_argument("--no-preload", action="store_true", help="the PIL input pipeline instead of preload")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--out", default=None, help="keep the runs in this folder (default: a temporary one, deleted)")
    ap.add_argument("--quick", action="store_true", help="toy size (tests): batch 8, queue 16, steps 0 2 4")
    args = ap.parse_args(argv)
    if args.quick:
        args.batch_size, args.queue_size = 8, 16
        args.steps = args.steps if argv and "--steps" in argv else [0, 2, 4]
    if any(s < 0 for s in args.steps):
        ap.error("--steps: budgets must be >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)

    from geolab.datasets import label_names
    from geolab.manifest import load_manifest, select_split
    from geolab.checkpoints import load_checkpoint, save_random_init
    from geolab.train import pretrain

    if args.manifest:
        manifest, data = Path(args.manifest), str(args.manifest)
    else:
        from geolab.world import load_world

        manifest = load_world(seed=args.world_seed, locations=args.world_locations, size=args.world_size, progress=False)
        data = f"geoworld (simulation) seed {args.world_seed}, {args.world_locations} locations, {args.world_size} px"
    df = load_manifest(manifest)
    classes = label_names(df)
    splits = [s for s in ("val", "test") if (df["split"] == s).any()]
    if not splits:
        raise SystemExit(f"{manifest}: no 'val' or 'test' split to score the probe on.")
    per_pass = len(select_split(df, "train")) // args.batch_size
    if per_pass == 0:
        raise SystemExit(f"{manifest}: fewer training images than one batch of {args.batch_size}; use a smaller --batch-size.")
    budgets = sorted(set(args.steps))
    trained = [b for b in budgets if b > 0]
    snap_spe = steps_per_epoch(math.gcd(*trained), per_pass) if trained else 1

    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-ssl-budget-"))
    base = dict(
        manifest=str(manifest), arch=args.arch, image_size=args.image_size, batch_size=args.batch_size,
        queue_size=args.queue_size, lr=args.lr, temperature=args.temperature, ema_momentum=args.ema_momentum,
        preload=not args.no_preload, num_workers=0, device=args.device, knn_every=0, log_every=0, progress=False,
        tensorboard=False, geo_k=max(2, min(20, df["location_id"].nunique() // 4)),
    )
    print(f"data: {data}; {args.arch} @ {args.image_size} px, batch {args.batch_size}, queue {args.queue_size}, "
          f"lr {args.lr}, T {args.temperature}, m {args.ema_momentum}, {'preload' if base['preload'] else 'PIL'}, "
          f"threads {torch.get_num_threads()}; {per_pass} batches per pass over train; "
          f"{'snapshots of one constant-LR run' if args.snapshots else 'one cosine run per budget'}", flush=True)
    results: list[dict] = []
    t_all = time.perf_counter()
    try:
        for seed in args.seeds:
            init = save_random_init(PretrainConfig(method="moco", seed=seed, out=str(work / f"init-{seed}"), **base))
            scores = probe(init, df, classes, args.image_size, splits, seed, args.device)
            init_row = {"method": RANDOM_INIT, "seed": seed, "steps": 0, **scores, "loss": None, "seconds": 0.0}
            results.append(init_row)
            print(f"  seed {seed} random init: " + ", ".join(f"{s} {100 * v:.1f}%" for s, v in scores.items()), flush=True)
            for method in args.methods:
                if 0 in budgets:  # no step taken: the random init itself (same arch, same seed)
                    results.append({**init_row, "method": method})
                for b in trained:
                    t0 = time.perf_counter()
                    if args.snapshots:
                        out = work / f"{method}-seed{seed}"
                        cfg = PretrainConfig(method=method, seed=seed, out=str(out), epochs=b // snap_spe,
                                             max_steps_per_epoch=snap_spe, cosine=False, resume=True, **base)
                    else:
                        spe = steps_per_epoch(b, per_pass)
                        cfg = PretrainConfig(method=method, seed=seed, out=str(work / f"{method}-seed{seed}-{b}"),
                                             epochs=b // spe, max_steps_per_epoch=spe, **base)
                    ckpt = pretrain(cfg)
                    loss = float(load_checkpoint(ckpt)["metrics"]["loss"])
                    seconds = time.perf_counter() - t0
                    scores = probe(ckpt, df, classes, args.image_size, splits, seed, args.device)
                    results.append({"method": method, "seed": seed, "steps": b, **scores, "loss": loss, "seconds": seconds})
                    print(f"  seed {seed} {method} {b} steps: loss {loss:.3f}, "
                          + ", ".join(f"{s} {100 * v:.1f}%" for s, v in scores.items()) + f" ({seconds:.0f} s)", flush=True)
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)
    print_tables(results, budgets, args.methods, splits, args.queue_size, len(args.seeds))
    print(f"total {time.perf_counter() - t_all:.0f} s")
    return results


def _cell(values: list[float], seeds: int) -> str:
    if not values:
        return ""
    m = 100 * float(np.mean(values))
    return f"{m:.1f}" + (f" ± {100 * float(np.std(values, ddof=1)):.1f}" if seeds > 1 and len(values) > 1 else "")


def print_tables(results: list[dict], budgets: list[int], methods: list[str], splits: list[str], queue: int, seeds: int) -> None:
    """Probe top-1 per budget and method (``split`` columns), and the final training losses."""
    init = [r for r in results if r["method"] == RANDOM_INIT]
    print(f"\nlinear probe top-1 (%), {' / '.join(splits)}; random init: "
          + " / ".join(_cell([r[s] for r in init], seeds) for s in splits))
    print("| steps | " + " | ".join(f"{m} ({' / '.join(splits)})" for m in methods) + " |")
    print("| ---: |" + " ---: |" * len(methods))
    for b in budgets:
        cells = []
        for m in methods:
            rows = [r for r in results if r["method"] == m and r["steps"] == b]
            cells.append(" / ".join(_cell([r[s] for r in rows], seeds) for s in splits))
        print(f"| {b}{' (random init)' if b == 0 else ''} | " + " | ".join(cells) + " |")
    print(f"\nfinal training loss (mean over the last epoch's steps; chance ln({queue} + 1) = {math.log(queue + 1):.2f})")
    print("| steps | " + " | ".join(methods) + " |")
    print("| ---: |" + " ---: |" * len(methods))
    for b in budgets:
        if b == 0:
            continue
        cells = [f"{np.mean([r['loss'] for r in results if r['method'] == m and r['steps'] == b]):.3f}" for m in methods]
        print(f"| {b} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
