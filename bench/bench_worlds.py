"""Does the course's main comparison hold on any world? The robustness benchmark over world seeds.

For each world seed it generates that geoworld (a simulation) with the chosen profile's world
settings and trains the main comparison of notebooks 02-04 with the profile's training settings,
through the course's own code (:func:`geolab.course.experiment.run_methods`): random init,
MoCo-v2, MoCo-v2+TP, MoCo-v2+Geo, MoCo-v2+Geo+TP and supervised, 3 seeds each. Then, per world:
each method's mean probe top-1, the paired differences (+TP - MoCo-v2, +Geo - MoCo-v2,
supervised - best SSL, each SSL method - random init) with 95% intervals that resample seeds and
test locations together, and every run's "did it learn" verdict
(:func:`geolab.course.health.run_health`). A stuck run is one whose probe is below random
init + 5 points.

Development worlds only: never world 0 (the course's, held out) and never tuned on test.

    .venv/bin/python bench/bench_worlds.py --worlds 101 102 103 104 105 --tag after \
        [--profile cpu] [--set lr=0.03 ...] [--methods moco moco-tp] [--seeds 0 1 2]

Runs go to ``runs/bench-worlds/<tag>/world-<seed>/`` (a rerun reuses finished runs;
``--collect`` only rebuilds the tables from the finished runs found there); every
record (without per-location hits) goes to ``docs/reference/bench_worlds_<tag>.jsonl`` and the
tables to ``docs/reference/bench_worlds_<tag>.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from geolab import paths, tiers
from geolab.config import PROFILES
from geolab.course.experiment import run_methods
from geolab.course.health import world_summary, world_table_markdown

MAIN_METHODS = ("random-init", "moco", "moco-tp", "moco-geo", "moco-tp-geo", "supervised")
#: profile keys that describe the world or the notebook, not a training run
_NOT_TRAINING = {"data", "manifest", "world_locations", "world_size", "world_seed", "seeds"}


def _trained_settings(path: Path, stored: dict, method: str, train: dict) -> dict:
    """arch, image_size and epochs of a finished run: its record, else its config.json, else (random init,
    which has neither when it was reused) the profile's arch and image size with 0 epochs."""
    conf_file = path.parent / "config.json"
    conf = json.loads(conf_file.read_text()).get("config", {}) if conf_file.exists() else {}
    rec = stored.get("record") or {}
    out = {k: rec.get(k, conf.get(k, train.get(k))) for k in ("arch", "image_size", "epochs")}
    if method == "random-init":
        out["epochs"] = 0
    return out


def collected_records(experiments: Path, train: dict | None = None) -> list[dict]:
    """Records rebuilt from every finished run (``result.json``) under ``experiments``.

    What :func:`~geolab.course.experiment.run_experiment` records, read back by folder
    (``<method>-seed<N>-<key>``) whatever the key, so tables survive a change of geolab's version;
    ``train`` (the profile's settings) fills what a reused random-init run did not store.
    """
    out = []
    for path in sorted(experiments.glob("*/result.json")):
        stored = json.loads(path.read_text())
        method, _, rest = path.parent.name.rpartition("-seed")
        ev = stored["evaluation"]
        out.append({"method": method, "seed": int(rest.split("-")[0]), "probe_top1": ev["linear_probe"]["top1"],
                    "knn_top1": ev["knn"]["top1"], "probe_hits": ev["linear_probe"].get("hits"),
                    "knn_hits": ev["knn"].get("hits"), "test_location_images": ev.get("test_location_images"),
                    "checkpoint": stored["checkpoint"], **stored.get("training", {}),
                    # what the run trained (health.same_settings_as_benchmark compares a course run's with these)
                    **_trained_settings(path, stored, method, train or {})})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worlds", type=int, nargs="+", default=[101, 102, 103, 104, 105])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--methods", nargs="+", default=list(MAIN_METHODS))
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the profile's seeds")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a training setting")
    p.add_argument("--tag", default="dev")
    p.add_argument("--collect", action="store_true", help="no training: tables from the runs already in the folders")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "reference"))
    a = p.parse_args()
    if 0 in a.worlds:
        p.error("world 0 is the course's held-out world: benchmark development worlds only")
    common = dict(PROFILES[a.profile]["common"])
    for item in a.set:
        key, _, value = item.partition("=")
        try:
            common[key] = json.loads(value)  # as `geolab course run --set`
        except json.JSONDecodeError:
            common[key] = value
    train = {k: v for k, v in common.items() if k not in _NOT_TRAINING}
    seeds = a.seeds or list(common.get("seeds", [0, 1, 2]))
    methods = ["random-init", *[m for m in a.methods if m != "random-init"]]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    records_file = out / f"bench_worlds_{a.tag}.jsonl"
    summaries = []
    for world in a.worlds:
        t0 = time.perf_counter()
        manifest = tiers.resolve_manifest("geoworld", world_locations=common["world_locations"],
                                          world_size=common["world_size"], world_seed=world)
        folder = paths.runs_dir() / "bench-worlds" / a.tag / f"world-{world}"
        results = folder / "records" / "main.jsonl"
        results.parent.mkdir(parents=True, exist_ok=True)
        if a.collect:
            records = collected_records(folder / "experiments", train)
        else:
            records = run_methods(methods, seeds, manifest, data="geoworld", results_path=str(results), **train)
        summary = world_summary(records, world)
        summary["seconds"] = round(time.perf_counter() - t0)
        summaries.append(summary)
        print(json.dumps({k: v for k, v in summary.items() if k != "runs"}), flush=True)
        with open(records_file, "a") as fh:
            for r in records:
                slim = {k: v for k, v in r.items() if not k.endswith("_hits") and k != "checkpoint"}
                fh.write(json.dumps({"tag": a.tag, "world": world, "settings": a.set, **slim}) + "\n")
        (out / f"bench_worlds_{a.tag}.md").write_text(world_table_markdown(summaries, a.tag, a.profile, a.set))
    print(world_table_markdown(summaries, a.tag, a.profile, a.set))


if __name__ == "__main__":
    main()
