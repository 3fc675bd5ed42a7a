"""One experiment = one pre-training run + its frozen-feature evaluation = one result record.

The course's notebooks compare methods by calling :func:`run_experiment`. Several notebooks
ask for the same run (MoCo-v2 with seed 0 is the baseline of notebooks 02, 03 and 04), so a
finished experiment is kept in the run's ``experiments/`` folder under a key made from its
whole configuration, the manifest and the geolab version; asking again reuses it and says
so, with where and when it was trained (nothing is reused silently). A run interrupted
half-way resumes from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from geolab import __version__, paths
from geolab.config import PretrainConfig, ProbeConfig
from geolab.io import atomic_write_json

#: PretrainConfig fields that do not change what is learned (left out of the key).
_NOT_IN_KEY = {"out", "resume", "progress", "tensorboard", "num_workers", "log_every", "knn_every", "device"}


def experiments_dir(results_path: str | os.PathLike | None = "") -> Path:
    """Where experiments of this notebook run live: ``<run>/experiments`` in a course run
    (the runner's ``results_path`` is ``<run>/records/<notebook>.jsonl``), else
    ``<runs>/interactive/experiments``."""
    if results_path:
        return Path(results_path).resolve().parent.parent / "experiments"
    return paths.runs_dir() / "interactive" / "experiments"


def _manifest_fingerprint(manifest: str | os.PathLike) -> str:
    st = Path(manifest).stat()
    return f"{Path(manifest).resolve()}:{st.st_size}:{st.st_mtime_ns}"


def experiment_key(cfg: PretrainConfig) -> str:
    """A short hash of everything that decides what ``cfg`` learns."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_IN_KEY}
    d["strategy"] = cfg.pair_strategy  # None and the method's default strategy are the same run
    d["manifest"] = _manifest_fingerprint(cfg.manifest)
    d["geolab"] = __version__
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_experiment(
    method: str,
    manifest: str | os.PathLike,
    *,
    data: str = "geoworld",
    seed: int = 0,
    results_path: str | os.PathLike | None = "",
    experiment: str = "main",
    variant: str = "",
    progress: bool = False,
    **config: Any,
) -> dict[str, Any]:
    """Pre-train ``method`` (or reuse the identical finished run), evaluate it, record it.

    Args:
        method: one of :data:`geolab.config.METHODS`.
        manifest: the data set's manifest.
        data: the data tier (goes into the record; ``geoworld`` marks it as a simulation).
        seed: the run's seed.
        results_path: the course runner's records file; ``""`` when run by hand.
        experiment: groups records in the report (``main``, ``strategies``, ``ablation-K`` ...).
        variant: the setting that tells records of one experiment apart (``"K=10"``).
        progress: show training and feature-extraction progress bars.
        **config: any other :class:`~geolab.config.PretrainConfig` field (arch, image_size,
            epochs, batch_size, queue_size, temperature, geo_k, strategy, alpha, beta ...).

    Returns:
        The stored record: method, data, arch, image_size, epochs, seed, probe_top1,
        probe_f1, knn_top1 (fractions), wall_time_s, checkpoint, key, reused.
    """
    from geolab.course import record_result
    from geolab.evaluate import evaluate_checkpoint
    from geolab.train import pretrain

    cfg = PretrainConfig(method=method, manifest=str(manifest), seed=seed, progress=progress, **config)
    key = experiment_key(cfg)
    folder = experiments_dir(results_path) / f"{method}-seed{seed}-{key}"
    done = folder / "result.json"
    if done.exists():
        stored = json.loads(done.read_text())
        print(
            f"Reusing {method} (seed {seed}): trained at {stored['finished_at']} by "
            f"{stored['trained_by'] or 'a hand run'} with the same configuration (key {key})."
        )
        reused = True
    else:
        t0 = time.perf_counter()
        checkpoint = pretrain(dataclasses.replace(cfg, out=str(folder), resume=True))
        evaluation = evaluate_checkpoint(
            ProbeConfig(
                checkpoint=str(checkpoint),
                manifest=str(manifest),
                image_size=cfg.image_size,
                num_workers=cfg.num_workers,
                device=cfg.device,
                seed=seed,
            ),
            progress=progress,
        )
        stored = {
            "checkpoint": str(checkpoint),
            "evaluation": evaluation,
            "wall_time_s": round(time.perf_counter() - t0, 1),
            "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "trained_by": Path(results_path).stem if results_path else "",
        }
        atomic_write_json(done, stored)
        reused = False
    ev = stored["evaluation"]
    record = {
        "experiment": experiment,
        "variant": variant,
        "method": method,
        "data": data,
        "arch": cfg.arch,
        "image_size": cfg.image_size,
        "epochs": cfg.epochs,
        "seed": seed,
        "probe_top1": ev["linear_probe"]["top1"],
        "probe_f1": ev["linear_probe"]["f1"],
        "knn_top1": ev["knn"]["top1"],
        "wall_time_s": stored["wall_time_s"],
        "checkpoint": stored["checkpoint"],
        "key": key,
        "reused": reused,
    }
    if not variant:
        record.pop("variant")
    stored_record = record_result(results_path, record)
    if not reused:  # keep the record beside the run, so hand runs can be collected too
        atomic_write_json(done, {**stored, "record": stored_record})
    return stored_record


def collect_records(results_path: str | os.PathLike | None = "", unique: bool = True) -> list[dict[str, Any]]:
    """Every result record of this run so far.

    In a course run, the records the notebooks wrote (``<run>/records/*.jsonl``, the
    current notebook's own file included); by hand (empty ``results_path``), the records
    stored with the finished experiments in ``<runs>/interactive/experiments``.

    Args:
        results_path: the course runner's records file of the calling notebook, or ``""``.
        unique: keep one record per trained run (its ``key``): a run reused by a later
            notebook is recorded again there, and must not count as another seed.
    """
    from geolab.course import read_records

    if results_path:
        folder = Path(results_path).resolve().parent
        records = [r for f in sorted(folder.glob("*.jsonl")) for r in read_records(f)]
    else:
        records = []
        for f in sorted(experiments_dir("").glob("*/result.json")):
            stored = json.loads(f.read_text())
            if "record" in stored:
                records.append(stored["record"])
    if not unique:
        return records
    seen: set[str] = set()
    out = []
    for r in records:
        if r.get("key") in seen:
            continue
        if r.get("key"):
            seen.add(r["key"])
        out.append(r)
    return out


def method_table(records: list[dict[str, Any]], metrics: tuple[str, ...] = ("probe_top1", "probe_f1", "knn_top1")):
    """Mean and standard deviation over seeds of each method's metrics, in percent.

    Args:
        records: result records (from :func:`run_experiment`).
        metrics: record keys to summarise.

    Returns:
        A pandas DataFrame indexed by method (and variant when records have one) with
        ``<metric> mean``, ``<metric> std`` and ``seeds`` columns.
    """
    import pandas as pd

    df = pd.DataFrame(records)
    keys = ["method"] + (["variant"] if "variant" in df and df["variant"].notna().any() else [])
    g = df.groupby(keys, sort=False)
    out = pd.DataFrame({"seeds": g.size()})
    for m in metrics:
        out[f"{m} mean"] = (100 * g[m].mean()).round(2)
        out[f"{m} std"] = (100 * g[m].std(ddof=1)).round(2)
    return out


def compare(records: list[dict[str, Any]], a: str, b: str, metric: str = "probe_top1") -> str:
    """Say in words whether method ``a`` beats ``b`` by more than the spread over seeds.

    The difference of the means counts as an effect only when it is larger than the sum of
    the two standard deviations (a deliberately plain rule; with one seed nothing can be
    claimed, and the sentence says so).

    Returns:
        One sentence with the numbers in percentage points.
    """
    import numpy as np

    va = np.array([r[metric] for r in records if r["method"] == a]) * 100
    vb = np.array([r[metric] for r in records if r["method"] == b]) * 100
    if len(va) == 0 or len(vb) == 0:
        raise ValueError(f"no records for {a if len(va) == 0 else b!r}")
    diff = va.mean() - vb.mean()
    if min(len(va), len(vb)) < 2:
        return f"{a} - {b}: {diff:+.1f} points ({metric}) from a single seed: no claim either way."
    spread = va.std(ddof=1) + vb.std(ddof=1)
    verdict = "larger than" if abs(diff) > spread else "within"
    return (
        f"{a} - {b}: {diff:+.1f} points ({metric}; {len(va)} and {len(vb)} seeds), "
        f"{verdict} the seed spread ({spread:.1f} points)."
    )
