"""Did each run learn? A computed verdict per run, and the robustness summary of one world.

A probe number alone cannot tell a run that learned from one that got stuck. Every trained run
of a comparison is checked against the untrained backbone of the same comparison (random init)
and against chance:

- **probe gain**: its probe top-1 minus random init's mean, in points. A run below
  :data:`STUCK_MARGIN` points is **stuck** (the issue-22 criterion: it probes no better than
  random init + 5).
- **kNN gain**: the same for the kNN top-1.
- **loss below chance**: ``ln(queue + 1)`` minus the final contrastive loss. Features that tell no
  image apart score exactly chance; a run whose loss stays within :data:`NEAR_CHANCE` of it has
  not started to learn.
- **embedding std**: the collapse monitor of SimSiam (Chen & He 2021, section 4.1), which
  torchgeo's SSL trainers also log: the per-dimension standard deviation of the L2-normalised
  query embeddings, times ``sqrt(d)``, averaged over the last epoch. About 1 for embeddings spread
  over the sphere, 0 for a collapse to one point; below :data:`COLLAPSED_STD` the run collapsed.
- **lagging**: a run that learned, but less than :data:`LAGGING_SHARE` of the probe gain of the
  best seed of its method in the same comparison (same data, same settings; only the seed differs).
  The failure of issue 22 looked like this: a +TP seed whose loss left chance ~150 steps late and
  probed 45% beside 58-59% for its siblings, above random init + 5 but not a result of the method.

:func:`run_health` gives the table, :func:`health_verdict` the sentence a notebook prints,
:func:`world_summary` / :func:`world_table_markdown` the per-world rows of
``bench/bench_worlds.py``, and :func:`beside_expected` sets a run's means beside the range that
benchmark measured over development worlds, so that a learner on any world can tell a normal
result from an unlucky one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from geolab import paths
from geolab.config import METHOD_PARTS, METHODS, RANDOM_INIT, Method
from geolab.stats import STUCK_MARGIN, paired_difference_interval, seed_mean_std

#: A contrastive loss within this much of ln(queue + 1) at the end of training has not left chance.
NEAR_CHANCE = 0.25
#: Normalised embedding std below this: the embeddings collapsed (SimSiam section 4.1).
COLLAPSED_STD = 0.2
#: A run with less than this share of its best sibling seed's probe gain is lagging.
LAGGING_SHARE = 0.5
#: The SSL methods of the main comparison: every contrastive method of geolab.config.METHOD_PARTS, in
#: the paper's table order (MoCo-v2, +TP, +Geo, +TP+Geo: without the geo loss first, then without
#: temporal positives first).
SSL_METHODS: tuple[Method, ...] = tuple(
    sorted((m for m in METHODS if METHOD_PARTS[m].contrastive),
           key=lambda m: (METHOD_PARTS[m].geo, METHOD_PARTS[m].temporal))
)


def _run_folder(record: Mapping[str, Any]) -> Path | None:
    ckpt = record.get("checkpoint")
    return Path(ckpt).parent.parent if ckpt else None


def _last_epoch(record: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's last epoch record and its config (both ``{}`` when the run folder is gone)."""
    folder = _run_folder(record)
    if folder is None or not (folder / "metrics.jsonl").exists():
        return {}, {}
    last: dict[str, Any] = {}
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "epoch":
            last = rec
    cfg_path = folder / "config.json"
    cfg = json.loads(cfg_path.read_text()).get("config", {}) if cfg_path.exists() else {}
    return last, cfg


def run_health(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per trained run: its gains over random init, its loss against chance, its verdict.

    Args:
        records: result records of one comparison, random-init rows included (they are the
            reference; without them the gains are NaN and only loss and collapse are judged).

    Returns:
        Columns ``method, seed, probe_top1, probe_gain, knn_gain`` (points), ``loss_below_chance``,
        ``embedding_std`` (NaN where not logged) and ``verdict`` (``learned``, or ``STUCK: ...`` /
        ``check: ...`` with the reasons).
    """
    init = [r for r in records if r["method"] == RANDOM_INIT]
    init_probe = seed_mean_std(r["probe_top1"] for r in init)[0]
    init_knn = seed_mean_std(r.get("knn_top1") for r in init)[0]
    best_gain: dict[tuple[str, str], float] = {}
    if init_probe is not None:
        for r in records:
            if r["method"] != RANDOM_INIT:
                key = (r["method"], r.get("variant", ""))
                best_gain[key] = max(best_gain.get(key, -math.inf), 100 * (r["probe_top1"] - init_probe))
    rows = []
    for r in records:
        if r["method"] == RANDOM_INIT:
            continue
        last, cfg = _last_epoch(r)
        probe_gain = 100 * (r["probe_top1"] - init_probe) if init_probe is not None else math.nan
        knn = r.get("knn_top1")
        knn_gain = 100 * (knn - init_knn) if init_knn is not None and knn is not None else math.nan
        contrastive = last.get("contrastive", r.get("train_contrastive"))
        queue = cfg.get("queue_size")
        below = math.log(queue + 1) - contrastive if contrastive is not None and queue else math.nan
        std = last.get("embedding_std", math.nan)
        stuck, check = [], []
        if probe_gain < STUCK_MARGIN:
            stuck.append(f"probe {probe_gain:+.1f} points over random init (< {STUCK_MARGIN:g})")
        if below < NEAR_CHANCE:
            stuck.append(f"loss {below:.2f} below chance ln(queue+1)")
        if std < COLLAPSED_STD:
            stuck.append(f"embeddings collapsed (std {std:.2f})")
        lagging = []
        best = best_gain.get((r["method"], r.get("variant", "")), math.nan)
        if not stuck and best > 0 and probe_gain < LAGGING_SHARE * best:
            lagging.append(f"probe gain {probe_gain:.1f} points, under {LAGGING_SHARE:.0%} of its best seed's "
                           f"{best:.1f}")
        if knn_gain < 0:
            check.append(f"kNN {knn_gain:+.1f} points, below random init")
        if stuck:
            verdict = "STUCK: " + "; ".join(stuck + check)
        elif lagging:
            verdict = "LAGGING: " + "; ".join(lagging + check)
        else:
            verdict = ("check: " + "; ".join(check)) if check else "learned"
        rows.append({"method": r["method"], "variant": r.get("variant", ""), "seed": r.get("seed"),
                     "probe_top1": 100 * r["probe_top1"], "probe_gain": probe_gain, "knn_gain": knn_gain,
                     "loss_below_chance": below, "embedding_std": std, "verdict": verdict})
    cols = ["method", "variant", "seed", "probe_top1", "probe_gain", "knn_gain", "loss_below_chance",
            "embedding_std", "verdict"]
    table = pd.DataFrame(rows, columns=cols)
    if not table["variant"].astype(bool).any():
        table = table.drop(columns="variant")
    return table.round(2)


def stuck_runs(records: Sequence[Mapping[str, Any]], kind: str = "STUCK") -> list[str]:
    """``"method seed N"`` for every run of ``records`` whose verdict is ``kind`` (``STUCK`` or ``LAGGING``)."""
    table = run_health(records)
    return [f"{row.method} seed {row.seed}" for row in table.itertuples() if str(row.verdict).startswith(kind)]


def health_verdict(records: Sequence[Mapping[str, Any]]) -> str:
    """One sentence: did every run learn, and which comparison rests on a stuck run."""
    table = run_health(records)
    if table.empty:
        return "No trained runs to check."
    stuck, lagging = stuck_runs(records), stuck_runs(records, "LAGGING")
    n = len(table)
    if not stuck and not lagging:
        return (f"All {n} trained runs learned: each probes >= random init + {STUCK_MARGIN:g} points, its "
                "loss left chance, and no seed fell far behind its siblings. Their comparison can be read.")
    out = []
    if stuck:
        methods = sorted({s.rsplit(" seed ", 1)[0] for s in stuck})
        out.append(f"{len(stuck)} of {n} runs are STUCK ({', '.join(stuck)}): a comparison involving "
                   f"{', '.join(methods)} rests on a run that did not learn; read it as a failed run, "
                   "not as an effect.")
    if lagging:
        out.append(f"{len(lagging)} of {n} runs are LAGGING ({', '.join(lagging)}): they learned less than "
                   f"{LAGGING_SHARE:.0%} of what their method's best seed did, so their method's mean understates it.")
    return " ".join(out)


# ------------------------------------------------------------------ the robustness benchmark
#: The paired differences each world reports: (name, a, b); "best-ssl" is the best SSL mean.
DIFFERENCES = (("+TP - MoCo-v2", "moco-tp", "moco"), ("+Geo - MoCo-v2", "moco-geo", "moco"),
               ("+Geo+TP - MoCo-v2", "moco-tp-geo", "moco"), ("supervised - best SSL", "supervised", "best-ssl"))


def world_summary(records: Sequence[Mapping[str, Any]], world: int) -> dict[str, Any]:
    """Means, paired differences with 95% intervals, and stuck runs of one world's comparison."""
    recs = [dict(r) for r in records]  # the statistics take dicts
    methods = list(dict.fromkeys(r["method"] for r in recs))
    means: dict[str, float] = {}
    for m in methods:
        mean = seed_mean_std(r["probe_top1"] for r in recs if r["method"] == m)[0]
        means[m] = math.nan if mean is None else 100 * mean
    ssl: list[str] = [m for m in SSL_METHODS if m in means]
    best = max(ssl, key=means.__getitem__) if ssl else None
    diffs = {}
    for name, a, b_or_best in DIFFERENCES:
        b = best if b_or_best == "best-ssl" else b_or_best
        if b is not None and a in means and b in means:
            ci = paired_difference_interval(recs, a, b)
            diffs[name] = {"diff": means[a] - means[b],
                           "ci": [100 * ci[0], 100 * ci[1]] if ci else None,
                           "seeds_ahead": _seeds_ahead(recs, a, b)}
    for m in ssl:
        ci = paired_difference_interval(recs, m, RANDOM_INIT) if RANDOM_INIT in means else None
        diffs[f"{m} - random init"] = {"diff": means[m] - means.get(RANDOM_INIT, math.nan),
                                       "ci": [100 * ci[0], 100 * ci[1]] if ci else None}
    health = run_health(recs)
    return {"world": world, "means": means, "differences": diffs, "stuck": stuck_runs(recs),
            "lagging": stuck_runs(recs, "LAGGING"), "runs": len(health), "health": health.to_dict("records")}


def _seeds_ahead(records: Sequence[Mapping[str, Any]], a: str, b: str) -> str:
    pa = {r["seed"]: r["probe_top1"] for r in records if r["method"] == a}
    pb = {r["seed"]: r["probe_top1"] for r in records if r["method"] == b}
    common = sorted(set(pa) & set(pb))
    return f"{sum(pa[s] > pb[s] for s in common)}/{len(common)}"


def _names(runs: Sequence[str]) -> str:
    return f"{len(runs)}" + (f" ({', '.join(runs)})" if runs else "")


def world_table_markdown(summaries: Sequence[Mapping[str, Any]], tag: str, profile: str,
                         settings: Sequence[str] = ()) -> str:
    """The benchmark's tables: worlds x methods (probe top-1), the paired differences, stuck runs."""
    methods = [m for m in (RANDOM_INIT, *SSL_METHODS, "supervised") if any(m in s["means"] for s in summaries)]
    header = ["world", *methods, "stuck runs", "lagging runs"]
    lines = [f"# bench_worlds: {tag}", "",
             f"Profile `{profile}`{', settings ' + ' '.join(settings) if settings else ''}; geoworld (a simulation); "
             "probe top-1 (%) on each world's test split, mean over seeds.", "",
             "| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for s in summaries:
        cells = [str(s["world"]), *(f"{s['means'][m]:.1f}" if m in s["means"] else "-" for m in methods),
                 f"{_names(s['stuck'])} of {s['runs']}", _names(s.get("lagging", []))]
        lines.append("| " + " | ".join(cells) + " |")
    names = list(dict.fromkeys(n for s in summaries for n in s["differences"]))
    lines += ["", "Paired differences in points, with 95% intervals (seeds and test locations resampled together)"
              " and seeds ahead:", "", "| world | " + " | ".join(names) + " |",
              "| --- | " + " | ".join("---" for _ in names) + " |"]
    for s in summaries:
        cells = []
        for n in names:
            d = s["differences"].get(n)
            if d is None:
                cells.append("-")
                continue
            ci = f" ({d['ci'][0]:+.1f} to {d['ci'][1]:+.1f})" if d.get("ci") else ""
            ahead = f", {d['seeds_ahead']}" if d.get("seeds_ahead") else ""
            cells.append(f"{d['diff']:+.1f}{ci}{ahead}")
        lines.append(f"| {s['world']} | " + " | ".join(cells) + " |")
    total = sum(s["runs"] for s in summaries)
    stuck = sum(len(s["stuck"]) for s in summaries)
    lagging = sum(len(s.get("lagging", [])) for s in summaries)
    lines += ["", f"Stuck runs (probe < random init + {STUCK_MARGIN:g} points, or loss within {NEAR_CHANCE} of chance, "
              f"or collapsed): {stuck} of {total} trained runs. Lagging runs (under {LAGGING_SHARE:.0%} of the probe "
              f"gain of their method's best seed): {lagging} of {total}.", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------ expected ranges
#: The robustness benchmark's records (``bench/bench_worlds.py --tag cpu``) and the profile they measure.
EXPECTED_FILE = "bench_worlds_cpu.jsonl"
EXPECTED_PROFILE = "cpu"


def expected_ranges(path: str | Path | None = None) -> pd.DataFrame | None:
    """Per method, the range of probe top-1 over the benchmark's development worlds (points).

    Args:
        path: the benchmark's records (default ``docs/reference/`` + :data:`EXPECTED_FILE`).

    Returns:
        Index ``method``; columns ``worlds``, ``runs``, ``world mean min``/``max`` (the range of the
        per-world means over seeds), ``run min``/``max`` (the range of single runs). None when the
        file is missing (an installed geolab without the repository's docs).
    """
    path = Path(path) if path is not None else paths.reference_dir() / EXPECTED_FILE
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    df = pd.DataFrame(rows)
    df["probe"] = 100 * df["probe_top1"]
    per_world = df.groupby(["method", "world"])["probe"].mean().groupby("method")
    per_run = df.groupby("method")["probe"]
    out = pd.DataFrame({"worlds": per_world.size(), "runs": per_run.size(),
                        "world mean min": per_world.min(), "world mean max": per_world.max(),
                        "run min": per_run.min(), "run max": per_run.max()})
    order = [m for m in (RANDOM_INIT, *SSL_METHODS, "supervised") if m in out.index]
    return out.loc[order].round(1)


def same_settings_as_benchmark(records: Sequence[Mapping[str, Any]], path: str | Path | None = None) -> bool:
    """True when every trained record's (arch, image size, epochs) is among the benchmark's."""
    path = Path(path) if path is not None else paths.reference_dir() / EXPECTED_FILE
    if not path.exists():
        return False
    bench = {(r.get("arch"), r.get("image_size"), r.get("epochs"))
             for r in map(json.loads, path.read_text().splitlines()) if r.get("epochs")}
    mine = {(r.get("arch"), r.get("image_size"), r.get("epochs")) for r in records if r.get("epochs")}
    return bool(mine) and mine <= bench


def beside_expected(records: Sequence[Mapping[str, Any]], path: str | Path | None = None) -> pd.DataFrame | None:
    """This run's mean probe top-1 per method beside the development worlds' range, with a word on each.

    ``within`` the range of world means, ``below``/``above`` it (a method below the range on this
    world: look for a stuck run in the health check before reading an effect into it). None without
    the benchmark's records, or when this run's trained settings (arch, image size, epochs) are not
    the benchmark's (another profile: its ranges do not apply).
    """
    ranges = expected_ranges(path)
    if ranges is None or not same_settings_as_benchmark(records, path):
        return None
    rows = []
    for method in ranges.index:
        vals = [100 * r["probe_top1"] for r in records if r["method"] == method and r.get("probe_top1") is not None]
        if not vals:
            continue
        mean = sum(vals) / len(vals)
        lo, hi = ranges.loc[method, "world mean min"], ranges.loc[method, "world mean max"]
        where = "within" if lo <= mean <= hi else "below" if mean < lo else "above"
        rows.append({"method": method, "this run": round(mean, 1), "seeds": len(vals),
                     "dev worlds": int(ranges.loc[method, "worlds"]), "range of world means": f"{lo:.1f}-{hi:.1f}",
                     "range of single runs": f"{ranges.loc[method, 'run min']:.1f}-{ranges.loc[method, 'run max']:.1f}",
                     "this run is": where})
    return pd.DataFrame(rows).set_index("method") if rows else None


# ------------------------------------------------------------------ the converged picture
#: The ``cpu-long`` profile's reference run, committed under ``docs/reference/`` (its results.json,
#: report.md and training curves): ``geolab course run --profile cpu-long``, run once end to end.
REFERENCE_RUN = "cpu_long"


def converged_picture(records: Sequence[Mapping[str, Any]], path: str | Path | None = None) -> pd.DataFrame | None:
    """This run's mean probe top-1 per method beside the committed ``cpu-long`` reference run's.

    The reference trains a wider encoder for longer on the course's world 0 (its settings are in
    the table's ``attrs``): where the quick run and the reference agree on an ordering, the quick
    run shows what longer training shows; where they differ, the quick run is too short to say.

    Args:
        records: this run's main-comparison records.
        path: the reference run's ``results.json`` (default ``docs/reference/cpu_long/results.json``).

    Returns:
        Index ``method``; columns ``this run``, ``seeds``, ``reference``, ``reference seeds``,
        ``reference - this run`` (points). None when the reference is not there (an installed
        geolab without the repository's docs).
    """
    path = Path(path) if path is not None else paths.reference_dir() / REFERENCE_RUN / "results.json"
    if not path.exists():
        return None
    stored = json.loads(path.read_text())
    # Notebooks 02-05 each record the main comparison's runs they read: one run counts once (method, seed).
    reference = list({(r["method"], r.get("seed")): r for r in stored.get("records", [])
                      if r.get("experiment", "main") == "main" and r.get("probe_top1") is not None}.values())

    def means(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        df = pd.DataFrame([{"method": r["method"], "probe": 100 * r["probe_top1"]} for r in rows
                           if r.get("probe_top1") is not None], columns=["method", "probe"])
        return df.groupby("method")["probe"].agg(["mean", "size"])

    ref, mine = means(reference), means(records)
    order = [m for m in (RANDOM_INIT, *SSL_METHODS, "supervised") if m in ref.index or m in mine.index]
    table = pd.DataFrame({"this run": mine["mean"], "seeds": mine["size"], "reference": ref["mean"],
                          "reference seeds": ref["size"]}).reindex(order)
    table["reference - this run"] = table["reference"] - table["this run"]
    table.index.name = "method"
    trained = [r for r in reference if r.get("epochs")]
    table.attrs["reference"] = {"profile": stored.get("profile"), "arch": trained[0].get("arch") if trained else None,
                                "epochs": trained[0].get("epochs") if trained else None, "file": str(path)}
    return table.round(1)
