"""Target: temporal positives (TP) and the geo loss add at most 5% to a MoCo-v2 training step.

Side by side in one run, interleaved round by round so that load on the (shared) machine hits
all four alike: ``moco``, ``moco-tp``, ``moco-geo``, ``moco-tp-geo``, CPU, ResNet-18, 64 px.

Two costs are timed per method and round:

* **model step** -- momentum update, query + key forward (split BN, key shuffle), memory-bank
  InfoNCE (+ geo cross-entropy), backward, SGD step, on one fixed batch of tensors;
* **loader** -- building one batch from the method's dataset in this process
  (``TemporalPairDataset``: read the query image and its positive -- the same image for MoCo,
  another revisit for TP --, two MoCo-v2 views, collate), as one DataLoader worker does.

The table gives medians and ratios to ``moco``; "step + loader" is the serial sum (the cost
with no loader overlap, an upper bound on what TP adds). Data: the geoworld simulation.

Run: ``.venv/bin/python bench/bench_train_step.py [--rounds 15 --batch-size 32]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from geolab.config import PretrainConfig
from geolab.models import build_contrastive_loss
from geolab.models import LossSettings, ModelSettings, auto_bn_splits, build_model, compute_loss
from geolab.train import prepare_data

METHODS = ("moco", "moco-tp", "moco-geo", "moco-tp-geo")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--queue-size", type=int, default=4096)
    ap.add_argument("--geo-k", type=int, default=20)
    ap.add_argument("--locations", type=int, default=120)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: steadier on a shared machine)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from geolab.world import load_world

    manifest = load_world(size=args.image_size, locations=args.locations, progress=False)
    out = Path(tempfile.mkdtemp(prefix="bench-step-"))
    setups = {}
    batch = None
    for m in METHODS:
        cfg = PretrainConfig(
            method=m, manifest=manifest, out=out / m, arch=args.arch, image_size=args.image_size,
            batch_size=args.batch_size, queue_size=args.queue_size, geo_k=args.geo_k, num_workers=0, device="cpu",
        )
        ds, _train, _df, classes = prepare_data(cfg)
        torch.manual_seed(0)
        model = build_model(ModelSettings.of(cfg), len(classes), auto_bn_splits(args.batch_size, 1))
        crit = build_contrastive_loss(cfg.temperature, cfg.queue_size, cfg.proj_dim)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.03, momentum=0.9, weight_decay=1e-4)
        if batch is None:
            items = [ds[i] for i in range(args.batch_size)]
            batch = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}
            batch["geo_cluster"] = batch["geo_cluster"].clamp_min(0)
        setups[m] = (cfg, ds, model, crit, opt)
    print(f"geoworld (simulation) manifest: {manifest}; {len(setups['moco'][1])} train images")
    print(f"{args.arch} @ {args.image_size} px, batch {args.batch_size}, queue {args.queue_size}, "
          f"threads {torch.get_num_threads()}, bn_splits {auto_bn_splits(args.batch_size, 1)}; {args.rounds} rounds")

    def step(m: str) -> float:
        cfg, _ds, model, crit, opt = setups[m]
        t = time.perf_counter()
        model.momentum_update(cfg.ema_momentum)
        loss, _ = compute_loss(LossSettings.of(cfg), model, crit, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t

    rng = random.Random(0)

    def load(m: str) -> float:
        ds = setups[m][1]
        idx = [rng.randrange(len(ds)) for _ in range(args.batch_size)]
        t = time.perf_counter()
        torch.utils.data.default_collate([ds[i] for i in idx])
        return time.perf_counter() - t

    for m in METHODS:  # warm-up
        step(m)
        load(m)
    times = {m: {"step": [], "load": []} for m in METHODS}
    for r in range(args.rounds):
        order = list(METHODS)
        random.Random(r).shuffle(order)
        for m in order:
            times[m]["step"].append(step(m))
            times[m]["load"].append(load(m))

    for name, agg in (("median", statistics.median), ("minimum", min)):
        med = {m: {k: agg(v) for k, v in times[m].items()} for m in METHODS}
        base = med["moco"]
        print(f"\n{name} over rounds")
        print("| method | model step (s) | ratio | loader batch (s) | ratio | step + loader (s) | ratio |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for m in METHODS:
            s, l = med[m]["step"], med[m]["load"]
            tot, btot = s + l, base["step"] + base["load"]
            print(f"| {m} | {s:.3f} | {s / base['step']:.3f} | {l:.3f} | {l / base['load']:.3f} | {tot:.3f} | {tot / btot:.3f} |")
        worst = max((med[m]["step"] + med[m]["load"]) / (base["step"] + base["load"]) for m in METHODS)
        print(f"largest step + loader overhead vs moco ({name}): {100 * (worst - 1):+.1f}% (target <= +5%)")


if __name__ == "__main__":
    main()
