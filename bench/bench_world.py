"""Benchmark of the geoworld simulation: its design criteria and its generation time.

geoworld is a simulation; these numbers describe the simulation, not real imagery.

Prints four tables:

1. **Generation** (``--time-generation``): the default world generated from scratch into a
   fresh cache on this machine's CPUs, then loaded from the cache.
2. **Learnable but not trivial**: a supervised ResNet-18 (torchvision, random init,
   standard stem) trained on the train split, against a linear probe on the features of a
   randomly initialised ResNet-18 and a linear probe on colour statistics; top-1 on the
   scored split. (A short torchvision loop of this script, not ``geolab.train``: the
   engine was not committed when this benchmark was written.)
3. **Geography carries information, but not all of it**: the majority label of each geo
   cluster (spherical K-means on the train locations' lat/lon, ``geolab.geo``) as a
   classifier, for several K, against chance (the most frequent class).
4. **Revisits differ for real reasons**: for pairs of revisits of one location, the mean
   absolute pixel difference caused by each nuisance alone (the first revisit re-rendered
   with one nuisance group taken from the second), next to the full difference.

Tuning protocol: the world's knobs were tuned on development seeds 101 and 102 (train and
val splits only); the world card reports seed 0, scored on ``val`` and ``test`` once.

Usage::

    python bench/bench_world.py --seed 0 --splits val test --time-generation   # the reported run
    python bench/bench_world.py --seed 101 --epochs 6                # a tuning run (val only)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _table(title: str, header: list[str], rows: list[list[object]]) -> str:
    cols = [header] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cols) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |"  # noqa: E731
    out = [f"\n{title}", line(header), "|" + "|".join("-" * (x + 2) for x in w) + "|"]
    out += [line([str(c) for c in r]) for r in rows]
    return "\n".join(out)


# ----------------------------------------------------------------------------- generation
def bench_generation(args: argparse.Namespace) -> dict:
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, GEOLAB_CACHE=tmp)
        code = (
            "import time; t=time.perf_counter(); from geolab.world import load_world; "
            f"load_world(seed={args.seed}, size={args.size}, locations={args.locations}, workers={args.workers}, progress=False); "
            "print(time.perf_counter()-t)"
        )
        # geography table first (once per cache), timed apart from the world itself
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "from geolab.world.geography import geography_table; geography_table(progress=False)"], env=env, check=True)
        t_table = time.perf_counter() - t0
        gen = float(subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout.split()[-1])
        load_code = (
            "import time; t=time.perf_counter(); from geolab.world import load_world; from geolab.manifest import load_manifest; "
            f"df=load_manifest(load_world(seed={args.seed}, size={args.size}, locations={args.locations}, progress=False)); "
            "print(time.perf_counter()-t, len(df))"
        )
        out = subprocess.run([sys.executable, "-c", load_code], env=env, check=True, capture_output=True, text=True).stdout.split()
        load_s, n = float(out[-2]), int(out[-1])
        size_mb = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file()) / 2**20
    res = {"geography_table_s": t_table, "generate_s": gen, "load_from_cache_s": load_s, "images": n, "disk_mib": size_mb}
    print(
        _table(
            f"Generation (seed {args.seed}, {args.size} px, {args.locations} locations, {args.workers} workers; simulation)",
            ["step", "seconds", "target"],
            [
                ["geography table (once per cache)", f"{t_table:.1f}", "-"],
                [f"generate world ({n} images, {size_mb:.0f} MiB)", f"{gen:.1f}", "< 120"],
                ["load from cache (load_world + load_manifest)", f"{load_s:.2f}", "seconds"],
            ],
        )
    )
    return res


# ----------------------------------------------------------------------------- learnability
def _load_images(df, size: int) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size))) for p in df["path"]])


def _resnet18(num_classes: int):
    import torchvision

    return torchvision.models.resnet18(weights=None, num_classes=num_classes)


def _features(model, x: np.ndarray, batch: int = 256) -> np.ndarray:
    import torch

    model.eval()
    feats = []
    body = torch.nn.Sequential(*list(model.children())[:-1])
    with torch.no_grad():
        for i in range(0, len(x), batch):
            t = _to_tensor(x[i : i + batch])
            feats.append(body(t).flatten(1).numpy())
    return np.concatenate(feats)


_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _to_tensor(x: np.ndarray):
    import torch

    return torch.from_numpy(((x.astype(np.float32) / 255 - _MEAN) / _STD).transpose(0, 3, 1, 2).copy())


def _probe(ftr, ytr, fte, yte) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(ftr)
    clf = LogisticRegression(max_iter=2000, C=1.0).fit(sc.transform(ftr), ytr)
    return float((clf.predict(sc.transform(fte)) == yte).mean())


def _colour_stats(x: np.ndarray) -> np.ndarray:
    f = x.astype(np.float32) / 255
    hist = [np.stack([np.histogram(im[..., c], bins=8, range=(0, 1))[0] for c in range(3)]).ravel() for im in f]
    return np.concatenate([f.mean((1, 2)), f.std((1, 2)), np.array(hist, dtype=np.float32) / (f.shape[1] * f.shape[2])], 1)


def bench_learnability(df, args: argparse.Namespace) -> dict:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    classes = sorted(df["label"].unique())
    y_of = {c: i for i, c in enumerate(classes)}
    tr = df[df["split"] == "train"]
    xtr, ytr = _load_images(tr, args.size), tr["label"].map(y_of).to_numpy()
    scored = {s: df[df["split"] == s] for s in args.splits}
    xs = {s: _load_images(d, args.size) for s, d in scored.items()}
    ys = {s: d["label"].map(y_of).to_numpy() for s, d in scored.items()}
    xte, yte = xs[args.splits[0]], ys[args.splits[0]]
    res: dict = {"classes": len(classes), "train_images": len(tr), "scored_images": {s: len(d) for s, d in scored.items()}}

    ctr = _colour_stats(xtr)
    rnd = _resnet18(len(classes))
    ftr = _features(rnd, xtr)
    for s in args.splits:
        res[f"colour_probe_top1_{s}"] = _probe(ctr, ytr, _colour_stats(xs[s]), ys[s])
        res[f"random_resnet18_probe_top1_{s}"] = _probe(ftr, ytr, _features(rnd, xs[s]), ys[s])

    model = _resnet18(len(classes))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    steps = args.epochs * int(np.ceil(len(xtr) / args.batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps, pct_start=0.15)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for ep in range(args.epochs):
        model.train()
        order = rng.permutation(len(xtr))
        for i in range(0, len(order), args.batch):
            idx = order[i : i + args.batch]
            xb = xtr[idx]
            # flips and 90-degree turns: satellite views have no "up" for the category
            if rng.random() < 0.5:
                xb = xb[:, :, ::-1]
            xb = np.rot90(xb, k=int(rng.integers(4)), axes=(1, 2))
            loss = torch.nn.functional.cross_entropy(model(_to_tensor(xb)), torch.from_numpy(ytr[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            pred = np.concatenate([model(_to_tensor(xte[i : i + 256])).argmax(1).numpy() for i in range(0, len(xte), 256)])
        acc = float((pred == yte).mean())
        print(f"  supervised epoch {ep + 1}/{args.epochs}: loss {loss.item():.3f}, {args.splits[0]} top-1 {acc:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    res["supervised_train_seconds"] = time.perf_counter() - t0
    for s in args.splits:
        with torch.no_grad():
            p = np.concatenate([model(_to_tensor(xs[s][i : i + 256])).argmax(1).numpy() for i in range(0, len(xs[s]), 256)])
        res[f"supervised_resnet18_top1_{s}"] = float((p == ys[s]).mean())
        if s == args.splits[0]:
            pred = p
    res["per_class_top1"] = {c: float((pred[yte == i] == i).mean()) for i, c in enumerate(classes) if (yte == i).any()}
    sp = args.splits
    print(
        _table(
            f"Learnable but not trivial (seed {args.seed}, {args.size} px, top-1 per split, {len(classes)} classes; simulation)",
            ["classifier"] + list(sp),
            [
                [f"supervised ResNet-18, {args.epochs} epochs ({res['supervised_train_seconds']:.0f} s)"] + [f"{res[f'supervised_resnet18_top1_{s}']:.3f}" for s in sp],
                ["linear probe on a random-init ResNet-18's features"] + [f"{res[f'random_resnet18_probe_top1_{s}']:.3f}" for s in sp],
                ["linear probe on colour statistics (mean, std, histograms)"] + [f"{res[f'colour_probe_top1_{s}']:.3f}" for s in sp],
                ["chance (1 / classes)"] + [f"{1 / len(classes):.3f}" for s in sp],
            ],
        )
    )
    print("  per class:", ", ".join(f"{c} {v:.2f}" for c, v in res["per_class_top1"].items()))
    return res


# ----------------------------------------------------------------------------- geography
def bench_geography(df, args: argparse.Namespace) -> dict:
    from geolab.geo import add_geo_clusters

    loc = df.drop_duplicates("location_id")
    trl = loc[loc["split"] == "train"]
    sp = args.splits
    res: dict = {}
    rows = []
    for k in args.geo_k:
        d = add_geo_clusters(loc, k=k, seed=0)
        trd = d[d["split"] == "train"]
        maj = trd.groupby("geo_cluster")["label"].agg(lambda s: s.value_counts().index[0])
        row = [f"majority label of the geo cluster, K={k}"]
        for s in sp:
            ted = d[d["split"] == s]
            pred = ted["geo_cluster"].map(maj).fillna(trd["label"].mode()[0])
            res[f"geo_cluster_majority_top1_k{k}_{s}"] = float((pred.to_numpy() == ted["label"].to_numpy()).mean())
            row.append(f"{res[f'geo_cluster_majority_top1_k{k}_{s}']:.3f}")
        rows.append(row)
    # What the place itself says: a classifier on climate zone, coast distance and urban setting.
    from sklearn.ensemble import GradientBoostingClassifier

    def feats(t):
        z = np.array([[ord(k[0]) - 65, 1 if len(k) > 1 and k[1] in "sfw" else 0] for k in t["koeppen"]])
        return np.column_stack([z, t["coast_km"], t["urban"], np.abs(t["lat"])])

    clf = GradientBoostingClassifier(random_state=0).fit(feats(trl), trl["label"])
    row, row_c = ["gradient boosting on the place (climate, coast km, urban, |lat|)"], ["most frequent class"]
    for s in sp:
        te = loc[loc["split"] == s]
        res[f"place_features_top1_{s}"] = float((clf.predict(feats(te)) == te["label"].to_numpy()).mean())
        res[f"majority_class_top1_{s}"] = float((te["label"] == trl["label"].mode()[0]).mean())
        row.append(f"{res[f'place_features_top1_{s}']:.3f}")
        row_c.append(f"{res[f'majority_class_top1_{s}']:.3f}")
    rows += [row, row_c]
    print(_table(f"Geography carries information (seed {args.seed}, per location, top-1 per split; simulation)", ["classifier"] + list(sp), rows))
    return res


# ----------------------------------------------------------------------------- nuisances
def bench_nuisances(df, args: argparse.Namespace) -> dict:
    from geolab.config import WorldConfig
    from geolab.world.generate import canonical_size, plan
    from geolab.world.geography import geography_table
    from geolab.world.render import NUISANCES, draw_conditions, render, swap_nuisance
    from geolab.world.scene import build_scene

    cfg = WorldConfig(seed=args.seed, size=args.size, locations=args.locations)
    knobs = {k: getattr(cfg, k) for k in ("haze_max", "cloud_prob", "zoom_jitter", "misregistration_px", "noise_max")}
    locs = plan(cfg, geography_table(progress=False))
    locs = locs[(locs["split"] == "train") & (locs["dates"].map(len) >= 2)].head(args.pairs)
    groups = list(NUISANCES)
    diffs = {g: [] for g in groups + ["all (the real revisit)"]}
    for _, row in locs.iterrows():
        loc = int(row["loc"])
        loc_seed = int(np.random.default_rng([cfg.seed, 5, loc]).integers(2**31))
        scene = build_scene(row["label"], row["site"], np.random.default_rng([cfg.seed, 6, loc]), canonical_size(cfg.size))
        a = draw_conditions(row["site"], row["dates"][0], np.random.default_rng([cfg.seed, 7, loc, 0]), knobs)
        b = draw_conditions(row["site"], row["dates"][1], np.random.default_rng([cfg.seed, 7, loc, 1]), knobs)
        img_a = render(scene, row["site"], a, cfg.size, loc_seed)[0].astype(np.float32)
        for g in groups:
            img_g = render(scene, row["site"], swap_nuisance(a, b, g), cfg.size, loc_seed)[0].astype(np.float32)
            diffs[g].append(float(np.abs(img_g - img_a).mean()))
        img_b = render(scene, row["site"], b, cfg.size, loc_seed)[0].astype(np.float32)
        diffs["all (the real revisit)"].append(float(np.abs(img_b - img_a).mean()))
    mean = {g: float(np.mean(v)) for g, v in diffs.items()}
    total = sum(mean[g] for g in groups)
    knob_text = {
        "season": "date (hemisphere, month), Koeppen zone",
        "sun": "date, latitude, ~10:30 solar time",
        "atmosphere": f"haze_max={cfg.haze_max}, cloud_prob={cfg.cloud_prob}",
        "sensor": f"zoom_jitter={cfg.zoom_jitter}, misregistration_px={cfg.misregistration_px}, noise_max={cfg.noise_max}",
        "change": "year (construction, crops, lake), vehicles",
    }
    rows = [[g, f"{mean[g]:.1f}", f"{100 * mean[g] / total:.0f}%", knob_text[g]] for g in groups]
    rows.append(["all (the real revisit)", f"{mean['all (the real revisit)']:.1f}", "-", "everything at once"])
    print(
        _table(
            f"Revisits differ for real reasons (seed {args.seed}, {len(locs)} train locations, first two revisits; simulation)",
            ["nuisance varied alone", "mean |pixel diff| (0-255)", "share of the sum", "knobs"],
            rows,
        )
    )
    return {"pairs": len(locs), "mean_abs_diff": mean}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--locations", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--splits", nargs="+", default=["val"], choices=["val", "test"], help="splits scored (the first is printed per epoch)")
    p.add_argument("--geo-k", type=int, nargs="+", default=[10, 30, 100])
    p.add_argument("--pairs", type=int, default=150)
    p.add_argument("--time-generation", action="store_true", help="also time generation in a fresh cache")
    p.add_argument("--skip", nargs="*", default=[], choices=["learn", "geo", "nuisance"])
    p.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = p.parse_args(argv)

    from geolab.manifest import load_manifest
    from geolab.world import load_world

    print(f"geoworld benchmark -- geoworld is a simulation. {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs")
    res: dict = {"seed": args.seed, "size": args.size, "locations": args.locations, "splits": args.splits}
    if args.time_generation:
        res["generation"] = bench_generation(args)
    df = load_manifest(load_world(seed=args.seed, size=args.size, locations=args.locations, workers=args.workers))
    if "geo" not in args.skip:
        res["geography"] = bench_geography(df, args)
    if "nuisance" not in args.skip:
        res["nuisances"] = bench_nuisances(df, args)
    if "learn" not in args.skip:
        res["learnability"] = bench_learnability(df, args)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
