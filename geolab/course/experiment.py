"""One experiment = one pre-training run + its frozen-feature evaluation = one result record.

The course's notebooks compare methods by calling :func:`run_experiment`. Several notebooks
ask for the same run (MoCo-v2 with seed 0 is the baseline of notebooks 02, 03 and 04), so a
finished experiment is kept in the run's ``experiments/`` folder under a key made from its
whole configuration, the manifest and the geolab version; asking again reuses it and says
so, with where and when it was trained (nothing is reused silently). A run interrupted
half-way resumes from its last checkpoint.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits

from geolab import __version__, paths
from geolab.argtypes import ConfigError
from geolab.checkpoints import save_random_init
from geolab.config import PRETRAIN_ROLES, RANDOM_INIT, Method, PretrainConfig, ProbeConfig, RecordMethod
from geolab.course.records import read_records, record_result
from geolab.evaluate import evaluate_checkpoint
from geolab.io import atomic_write_json
from geolab.paths import RunFolder, manifest_fingerprint
from geolab.processes import process_pool
from geolab.tiers import Tier
from geolab.train import pretrain

#: What the key holds of each PretrainConfig field, derived from the roles the fields declare
#: (:class:`geolab.argtypes.Role`): a field that changes the learned weights, its value; one that does not
#: but was always in the key (``keyed``), its default; any other (where it runs, how tensors are laid out,
#: the kNN monitor, logging) nothing.
_KEY_DEFAULTS = {f.name: f.default for f in dataclasses.fields(PretrainConfig)
                 if not PRETRAIN_ROLES[f.name].learns and PRETRAIN_ROLES[f.name].keyed}


def experiments_dir(results_path: str | os.PathLike | None = "") -> Path:
    """Where the experiments of this notebook run live.

    ``<run>/experiments`` in a course run (the runner's ``results_path`` is ``<run>/records/<notebook>.jsonl``),
    else ``<runs>/interactive/experiments``.
    """
    if results_path:
        return RunFolder.of_records(results_path).experiments
    return RunFolder(paths.runs_dir() / "interactive").experiments


def experiment_key(cfg: PretrainConfig) -> str:
    """A short hash of everything that decides what ``cfg`` learns (see :data:`_KEY_DEFAULTS`)."""
    d = {k: v for k, v in cfg.to_dict().items() if PRETRAIN_ROLES[k].learns}
    d.update(_KEY_DEFAULTS)
    d["strategy"] = cfg.pair_strategy  # None and the method's default strategy are the same run
    d["manifest"] = manifest_fingerprint(cfg.manifest)
    d["geolab"] = __version__
    return _short_hash(d)


def run_experiment(
    method: RecordMethod,
    manifest: str | os.PathLike,
    *,
    data: Tier = "geoworld",
    seed: int = 0,
    results_path: str | os.PathLike | None = "",
    experiment: str = "main",
    variant: str = "",
    progress: bool = False,
    _trained_now: bool = False,
    **config: Any,
) -> dict[str, Any]:
    """Pre-train ``method`` (or reuse the identical finished run), evaluate it, record it.

    Args:
        method: one of :data:`geolab.config.METHODS`, or ``"random-init"``
            (:data:`geolab.config.RANDOM_INIT`): the backbone that a run with this ``arch``
            and ``seed`` starts from, probed untrained; the baseline of every comparison.
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
        probe_f1, knn_top1 (fractions), the hits per test location behind them (for
        :func:`~geolab.stats.bootstrap_interval`), the training loss of the last epoch, wall_time_s,
        checkpoint, key, reused.
    """
    cfg, key, folder = _plan(method, manifest, seed, progress, config, results_path)
    done = RunFolder(folder).result
    reused = done.exists() and not _trained_now
    if not done.exists():
        _train_and_store(method, manifest, seed, results_path, progress, config)
    stored = json.loads(done.read_text())
    if reused:
        print(
            f"Reusing {method} (seed {seed}): trained at {stored['finished_at']} by "
            f"{stored['trained_by'] or 'a hand run'} with the same configuration (key {key})."
        )
    untrained = method == RANDOM_INIT
    ev = stored["evaluation"]
    record = {
        "experiment": experiment,
        "variant": variant,
        "method": method,
        "data": data,
        "arch": cfg.arch,
        "image_size": cfg.image_size,
        "epochs": 0 if untrained else cfg.epochs,
        "seed": seed,
        "probe_top1": ev["linear_probe"]["top1"],
        "probe_f1": ev["linear_probe"]["f1"],
        "knn_top1": ev["knn"]["top1"],
        **{k: v for k, v in stored.get("training", {}).items()
           if k in ("train_loss", "train_contrastive", "train_geo", "steps")},
        "test_location_images": ev.get("test_location_images"),
        "probe_hits": ev["linear_probe"].get("hits"),
        "knn_hits": ev["knn"].get("hits"),
        "wall_time_s": stored["wall_time_s"],
        "checkpoint": stored["checkpoint"],
        "key": key,
        "reused": reused,
    }
    if not variant:
        record.pop("variant")
    record = {k: v for k, v in record.items() if v is not None}
    stored_record = record_result(results_path, record)
    if not reused:  # keep the record beside the run, so hand runs can be collected too
        atomic_write_json(done, {**stored, "record": stored_record})
    return stored_record


def _plan(method: RecordMethod, manifest: str | os.PathLike, seed: int, progress: bool, config: dict[str, Any],
          results_path: str | os.PathLike | None) -> tuple[PretrainConfig, str, Path]:
    """The run's configuration, its key and its folder under :func:`experiments_dir`."""
    trained: Method = "supervised" if method == RANDOM_INIT else method  # random init: a supervised run's backbone
    cfg = PretrainConfig(method=trained, manifest=str(manifest), seed=seed, progress=progress, **config)
    if method == RANDOM_INIT:  # only what decides the untrained weights and their evaluation
        key = _short_hash({"arch": cfg.arch, "seed": seed, "image_size": cfg.image_size, "init": True,
                           "manifest": manifest_fingerprint(manifest), "geolab": __version__})
    else:
        key = experiment_key(cfg)
    return cfg, key, experiments_dir(results_path) / f"{method}-seed{seed}-{key}"


def _train_and_store(method: RecordMethod, manifest: str | os.PathLike, seed: int,
                     results_path: str | os.PathLike | None, progress: bool, config: dict[str, Any]) -> float:
    """Train (or resume) one run, evaluate it and write its ``result.json``; the seconds it took.

    Runs in the notebook's process, or in a worker of :func:`run_experiments`.
    """
    cfg, _, folder = _plan(method, manifest, seed, progress, config, results_path)
    t0 = time.perf_counter()
    run = dataclasses.replace(cfg, out=str(folder), resume=True)
    checkpoint = save_random_init(run) if method == RANDOM_INIT else pretrain(run)
    evaluation = evaluate_checkpoint(
        ProbeConfig(checkpoint=str(checkpoint), manifest=str(manifest), image_size=cfg.image_size,
                    num_workers=cfg.num_workers, device=cfg.device, seed=seed),
        progress=progress,
    )
    stored: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "evaluation": evaluation,
        "training": {} if method == RANDOM_INIT else _training_summary(folder),
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "trained_by": Path(results_path).stem if results_path else "",
    }
    atomic_write_json(RunFolder(folder).result, stored)
    return float(stored["wall_time_s"])


def _train_logged(folder: Path, **job: Any) -> float:
    """Train one run with its log in a file beside the run folder.

    :func:`_train_and_store` with the training log (a line per epoch, warnings) written to
    ``<folder>.log`` beside the run's ``folder`` instead of the notebook: with several runs at
    once their lines interleave into noise, and the notebook plots the same curves from
    ``metrics.jsonl``.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)  # beside the run folder, which must hold only the run
    with open(RunFolder(folder).log, "a") as log, contextlib.redirect_stderr(log):
        return _train_and_store(**job)


#: A worker's threadpoolctl limits (:func:`_worker_init`), kept for the worker process's lifetime.
_WORKER_LIMITS: list[Any] = []


def _worker_init(threads: int) -> None:
    """Limit a worker's torch and BLAS/OpenMP threads to its share of the cores.

    Each worker keeps to its share of the cores: torch's and the BLAS/OpenMP pools that
    scikit-learn's probe uses (threadpoolctl), so two workers never oversubscribe them.
    """
    torch.set_num_threads(threads)
    _WORKER_LIMITS.append(threadpool_limits(threads))  # kept alive for the worker's lifetime


def default_workers(device: str = "cpu", pending: int = 1) -> tuple[int, int]:
    """(parallel runs, threads per run) for ``pending`` runs still to train on ``device``.

    The course's CPU encoders are small: on 2 cores two runs of one thread each train ~1.9x
    as many steps per minute as one run of two threads (bench/bench_parallel_runs.py), so
    a CPU trains up to one run per core, at most 4 at once, sharing the cores out. A GPU
    trains one run at a time. ``$GEOLAB_PARALLEL_RUNS`` overrides the number of runs.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    env = os.environ.get("GEOLAB_PARALLEL_RUNS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ConfigError(f"GEOLAB_PARALLEL_RUNS={env!r}: expected a whole number >= 1 (runs trained at once).")
        workers = int(env)
    else:
        workers = 1 if not str(device).startswith("cpu") else min(cores, 4)
    workers = max(1, min(workers, pending))
    return workers, max(1, cores // workers)


def run_experiments(specs: list[dict[str, Any]], workers: int | None = None) -> list[dict[str, Any]]:
    """Run many experiments, training the missing runs several at a time.

    :func:`run_experiment` for each spec (a dict of its keyword arguments), training the
    missing runs several at a time; the records come back in the order of ``specs``.

    Runs already finished are reused, as by :func:`run_experiment`. The others train in
    worker processes (``workers`` at once; default and threads per run from
    :func:`default_workers`), each printing one line when it ends. A run that fails stops
    the rest and raises its error.
    """
    folders: list[Path] = []
    pending: dict[Path, tuple[str, dict[str, Any]]] = {}
    for spec in specs:
        config = {k: v for k, v in spec.items() if k not in _RUN_ARGS}
        seed, results_path = spec.get("seed", 0), spec.get("results_path", "")
        cfg, _, folder = _plan(spec["method"], spec["manifest"], seed, False, config, results_path)
        folders.append(folder)
        if not RunFolder(folder).result.exists():
            pending.setdefault(folder, (cfg.device, dict(method=spec["method"], manifest=spec["manifest"], seed=seed,
                                                         results_path=results_path, progress=False, config=config)))
    if pending:
        device = next(iter(pending.values()))[0]
        n, threads = default_workers(device, len(pending))
        if workers is not None:
            n = max(1, min(workers, len(pending)))
            threads = max(1, default_workers("cpu", 1)[1] // n)
        jobs = [dict(job, folder=folder) for folder, (_, job) in pending.items()]
        print(f"Training {len(jobs)} run(s), {n} at a time ({threads} thread(s) each).", flush=True)

        def done(i: int, job: dict[str, Any], secs: float) -> None:
            print(f"  [{i}/{len(jobs)}] {job['method']} seed {job['seed']} trained and evaluated in {secs:.0f} s",
                  flush=True)

        print("Each run's training log: <run folder>.log under experiments/.", flush=True)
        if n == 1:
            for i, job in enumerate(jobs, 1):
                done(i, job, _train_logged(**job))
        else:
            with process_pool(n, initializer=_worker_init, initargs=(threads,)) as pool:
                futures = {pool.submit(_train_logged, **job): job for job in jobs}
                try:
                    for i, fut in enumerate(cf.as_completed(futures), 1):
                        done(i, futures[fut], fut.result())
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    return [run_experiment(**spec, _trained_now=folder in pending) for spec, folder in zip(specs, folders)]


#: run_experiment's own arguments (the rest of a spec is PretrainConfig fields).
_RUN_ARGS = {"method", "manifest", "seed", "results_path", "progress", "data", "experiment", "variant"}


def run_methods(methods: Sequence[RecordMethod], seeds: Sequence[int], manifest: str | os.PathLike,
                *, workers: int | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    """Every method with every seed (method-major order), via :func:`run_experiments`."""
    specs = [dict(method=m, manifest=manifest, seed=s, **kwargs) for m in methods for s in seeds]
    return run_experiments(specs, workers)

def _short_hash(d: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _training_summary(folder: Path) -> dict[str, Any]:
    """The last epoch's losses and the number of optimizer steps, from ``metrics.jsonl``."""
    path = RunFolder(folder).metrics
    epochs = []
    if path.exists():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("kind") == "epoch":
                epochs.append(rec)
    if not epochs:
        return {}
    last = epochs[-1]
    out = {"train_loss": last.get("loss"), "steps": last.get("step")}
    if "contrastive" in last:
        out["train_contrastive"] = last["contrastive"]
    if "geo" in last:
        out["train_geo"] = last["geo"]
    return {k: v for k, v in out.items() if v is not None}


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
    if results_path:
        folder = RunFolder.of_records(results_path).records
        records = [r for f in sorted(folder.glob("*.jsonl")) for r in read_records(f)]
    else:
        records = []
        for f in sorted(experiments_dir("").glob(f"*/{RunFolder('.').result.name}")):
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
