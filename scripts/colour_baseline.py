"""How much of a geoworld's category can be read from colour statistics alone, with no network.

A diagnostic for issue 22 (why MoCo-v2's margin over random init is thin on geoworld): each image
becomes a few colour numbers (mean and std of R, G, B; a 4x4x4 RGB histogram; as a control, a
16-bin grey-level histogram, which has no colour), and the same linear probe as the course's
(:func:`geolab.evaluate.linear_probe`, standardised features, ``C`` chosen on the val split) reads
the category from them. The table puts the result beside the committed benchmark's random-init
and MoCo-v2 probes on the same world and test split (``docs/reference/bench_worlds_cpu.jsonl``).
Intervals are 95% bootstrap intervals over test locations (images of one place are correlated).

geoworld is a simulation: this says how the simulated categories are drawn, not anything about
fMoW.

Usage: ``python scripts/colour_baseline.py --worlds 101 102 103 104 105 2718`` (about 1 min a
world on 2 cores; worlds are generated and cached on first use, as the course does).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from geolab.evaluate import linear_probe
from geolab.world import load_world

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "docs" / "reference" / "bench_worlds_cpu.jsonl"
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
FEATURES = ("mean+std RGB (6)", "RGB histogram 4x4x4 (64)", "grey histogram + std (17, no colour)")


def colour_features(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three feature vectors of one image (pixels scaled to [0, 1])."""
    px = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).reshape(-1, 3) / 255.0
    moments = np.r_[px.mean(0), px.std(0)]
    q = np.minimum((px * 4).astype(int), 3)
    rgb_hist = np.bincount(q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2], minlength=64) / len(px)
    grey = px @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    grey_hist = np.r_[np.bincount(np.minimum((grey * 16).astype(int), 15), minlength=16) / len(px), grey.std()]
    return moments, rgb_hist, grey_hist


def location_interval(correct: np.ndarray, locations: np.ndarray, seed: int = 0, n: int = 2000) -> tuple[float, float]:
    """95% bootstrap interval of the accuracy, resampling test locations (not images)."""
    ids, inv = np.unique(locations, return_inverse=True)
    hits = np.bincount(inv, weights=correct)
    sizes = np.bincount(inv)
    draws = np.random.default_rng(seed).integers(0, len(ids), size=(n, len(ids)))
    acc = hits[draws].sum(1) / sizes[draws].sum(1)
    return float(np.percentile(acc, 2.5)), float(np.percentile(acc, 97.5))


def probe_world(seed: int, size: int) -> list[dict]:
    """The three colour probes on one world's test split."""
    folder = load_world(seed, size=size).parent
    df = pd.read_parquet(folder / "manifest.parquet")
    classes = sorted(df["label"].unique())
    y = df["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    feats = [np.stack(f) for f in zip(*(colour_features(folder / p) for p in df["path"]))]
    tr, va, te = ((df["split"] == s).to_numpy() for s in ("train", "val", "test"))
    rows = []
    for name, x in zip(FEATURES, feats):
        best_c = max(C_GRID, key=lambda c: linear_probe(x[tr], y[tr], x[va], y[va], C=c)["top1"])
        r = linear_probe(x[tr], y[tr], x[te], y[te], C=best_c, return_predictions=True)
        lo, hi = location_interval(r["predictions"] == y[te], df.loc[te, "location_id"].to_numpy())
        rows.append({"world": seed, "features": name, "C": best_c, "top1": 100 * r["top1"],
                     "low": 100 * lo, "high": 100 * hi})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worlds", type=int, nargs="+", default=[101, 102, 103, 104, 105, 2718])
    ap.add_argument("--size", type=int, default=32, help="image side in pixels (the cpu profile's: 32)")
    ap.add_argument("--csv", type=Path, help="also write the rows here")
    args = ap.parse_args()
    rows = [r for w in args.worlds for r in probe_world(w, args.size)]
    table = pd.DataFrame(rows)
    if BENCH.exists():
        bench = pd.read_json(BENCH, lines=True)
        means = bench.groupby(["world", "method"])["probe_top1"].mean().unstack() * 100
        for method, col in (("random-init", "random init"), ("moco", "MoCo-v2")):
            table[col] = table["world"].map(means[method]) if method in means else np.nan
    if args.csv:
        table.to_csv(args.csv, index=False)
    print("geoworld is a simulation. Linear probe top-1 (%) on each world's test split, 95% interval over test locations;")
    print("random init and MoCo-v2: the committed benchmark's mean over seeds 0-2 (docs/reference/bench_worlds_cpu.jsonl).\n")
    print("| world | features | probe | interval | random init | MoCo-v2 |")
    print("| --- | --- | ---: | --- | ---: | ---: |")
    for r in table.to_dict("records"):
        print(f"| {r['world']} | {r['features']} | {r['top1']:.1f} | {r['low']:.1f} to {r['high']:.1f} | "
              f"{r.get('random init', float('nan')):.1f} | {r.get('MoCo-v2', float('nan')):.1f} |")


if __name__ == "__main__":
    main()
