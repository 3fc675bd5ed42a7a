"""One experiment (pre-train + linear probe + kNN) gives one valid result record, and asking
for the identical experiment again reuses it and says so, instead of training twice."""

from __future__ import annotations

import json

import pytest

from geolab.config import PretrainConfig
from geolab.course.experiment import experiment_key, run_experiment
from geolab.course.records import read_records
from tests.helpers import make_manifest

TINY = dict(arch="resnet18", image_size=32, epochs=1, batch_size=4, queue_size=16, max_steps_per_epoch=2, num_workers=0, device="cpu", geo_k=2)


def test_experiment_records_and_is_reused(tmp_path, capsys):
    manifest = make_manifest(tmp_path / "data", n_locations=12)
    results = tmp_path / "run" / "records" / "02_demo.jsonl"
    first = run_experiment("moco-tp", manifest, seed=0, results_path=results, **TINY)
    assert not first["reused"]
    for k in ("probe_top1", "probe_f1", "knn_top1"):
        assert 0.0 <= first[k] <= 1.0
    assert (tmp_path / "run" / "experiments").is_dir()

    again = run_experiment("moco-tp", manifest, seed=0, results_path=results, **TINY)
    assert again["reused"] and "Reusing moco-tp (seed 0)" in capsys.readouterr().out
    assert again["probe_top1"] == first["probe_top1"] and again["key"] == first["key"]
    assert [r["method"] for r in read_records(results)] == ["moco-tp", "moco-tp"]
    stored = json.loads(next((tmp_path / "run" / "experiments").glob("moco-tp-*/result.json")).read_text())
    assert stored["trained_by"] == "02_demo"
    assert stored["record"]["method"] == "moco-tp"


def test_records_are_collected_from_the_run_and_from_hand_runs(tmp_path, monkeypatch):
    from geolab.course.experiment import collect_records

    monkeypatch.setenv("GEOLAB_RUNS", str(tmp_path / "runs"))
    manifest = make_manifest(tmp_path / "data", n_locations=12)
    run_experiment("supervised", manifest, seed=0, results_path="", **TINY)
    assert [r["method"] for r in collect_records("")] == ["supervised"]
    records = tmp_path / "run" / "records"
    run_experiment("supervised", manifest, seed=1, results_path=records / "02_a.jsonl", **TINY)
    run_experiment("supervised", manifest, seed=2, results_path=records / "03_b.jsonl", **TINY)
    assert sorted(r["seed"] for r in collect_records(records / "08_results.jsonl")) == [1, 2]
    # a later notebook reusing seed 1 records it again: still one seed when collected
    run_experiment("supervised", manifest, seed=1, results_path=records / "04_c.jsonl", **TINY)
    assert sorted(r["seed"] for r in collect_records(records / "08_results.jsonl")) == [1, 2]
    assert len(collect_records(records / "08_results.jsonl", unique=False)) == 3


def test_key_changes_with_what_is_learned_not_with_where_it_is_written(tmp_path):
    manifest = make_manifest(tmp_path, n_locations=6)
    base = PretrainConfig(method="moco", manifest=str(manifest), **TINY)
    assert experiment_key(base) == experiment_key(PretrainConfig(method="moco", manifest=str(manifest), out="elsewhere", **TINY))
    # memory layout is not the maths: a channels-last run is reused by a course that asks for the default layout
    assert experiment_key(base) == experiment_key(
        PretrainConfig(method="moco", manifest=str(manifest), **{**TINY, "channels_last": True}))
    # the kNN monitor reads the model: a run monitored more often, or on fewer images, is the same run
    assert experiment_key(base) == experiment_key(PretrainConfig(
        method="moco", manifest=str(manifest), **{**TINY, "knn_every": 3, "knn_max_images": 1000, "knn_k": 5}))
    assert experiment_key(base) != experiment_key(PretrainConfig(method="moco", manifest=str(manifest), **{**TINY, "epochs": 2}))
    assert experiment_key(base) != experiment_key(PretrainConfig(method="moco-geo", manifest=str(manifest), **TINY))
    tp = PretrainConfig(method="moco-tp", manifest=str(manifest), **TINY)
    assert experiment_key(tp) == experiment_key(PretrainConfig(method="moco-tp", manifest=str(manifest), strategy="any-other", **TINY))


def _rec(method, seed, top1):
    return {"method": method, "seed": seed, "probe_top1": top1, "probe_f1": top1, "knn_top1": top1}


def test_compare_claims_an_effect_only_beyond_the_seed_spread():
    from geolab.stats import compare

    clear = [_rec("a", s, 0.80 + 0.01 * s) for s in range(3)] + [_rec("b", s, 0.60 + 0.01 * s) for s in range(3)]
    assert "larger than the seed spread" in compare(clear, "a", "b")
    noisy = [_rec("a", s, v) for s, v in enumerate((0.5, 0.7, 0.6))] + [_rec("b", s, v) for s, v in enumerate((0.55, 0.65, 0.6))]
    assert "within the seed spread" in compare(noisy, "a", "b")
    assert "no claim" in compare([_rec("a", 0, 0.9), _rec("b", 0, 0.1)], "a", "b")


def test_method_table_reports_percent_mean_and_std():
    from geolab.stats import method_table

    t = method_table([_rec("a", 0, 0.5), _rec("a", 1, 0.7), _rec("b", 0, 0.4)])
    assert t.loc["a", "probe_top1 mean"] == 60.0 and t.loc["a", "seeds"] == 2
    assert round(t.loc["a", "probe_top1 std"], 2) == 14.14


def test_run_experiments_trains_the_missing_runs_in_parallel_and_keeps_the_order(tmp_path, capsys, monkeypatch):
    """Several runs trained by two worker processes come back as records in the order asked,
    marked as trained now (not reused); a duplicate spec trains once; asking again reuses all
    and the numbers are the stored ones."""
    from geolab.course.experiment import run_experiments, run_methods

    monkeypatch.delenv("GEOLAB_PARALLEL_RUNS", raising=False)
    manifest = make_manifest(tmp_path / "data", n_locations=12)
    results = tmp_path / "run" / "records" / "03_demo.jsonl"
    specs = [dict(method=m, manifest=manifest, seed=s, results_path=results, **TINY)
             for m, s in (("moco", 1), ("random-init", 0), ("moco", 0), ("moco", 1))]
    first = run_experiments(specs, workers=2)
    out = capsys.readouterr().out
    assert "Training 3 run(s), 2 at a time" in out and out.count("trained and evaluated in") == 3
    assert [(r["method"], r["seed"]) for r in first] == [("moco", 1), ("random-init", 0), ("moco", 0), ("moco", 1)]
    assert [r["reused"] for r in first] == [False, False, False, False]
    assert first[0]["key"] == first[3]["key"] and first[0]["probe_top1"] == first[3]["probe_top1"]
    # each run's epoch lines go to its own log beside its folder, not into the notebook
    logs = sorted((tmp_path / "run" / "experiments").glob("*.log"))
    assert len(logs) == 3 and all(log.with_suffix("").is_dir() for log in logs)
    assert all("epoch 1/" in log.read_text() for log in logs if not log.name.startswith("random-init"))
    again = run_methods(("moco",), [0, 1], manifest, results_path=results, **TINY)
    assert all(r["reused"] for r in again) and "Training" not in capsys.readouterr().out
    assert [r["probe_top1"] for r in again] == [first[2]["probe_top1"], first[0]["probe_top1"]]


def test_default_workers_one_run_per_core_on_cpu_one_on_gpu(monkeypatch):
    """On a CPU up to one run per core (at most 4) share the cores; a GPU trains one at a time;
    $GEOLAB_PARALLEL_RUNS overrides and a bad value is a clear error."""
    import pytest

    from geolab.course import experiment

    monkeypatch.delenv("GEOLAB_PARALLEL_RUNS", raising=False)
    monkeypatch.setattr(experiment.os, "sched_getaffinity", lambda _: set(range(2)), raising=False)
    assert experiment.default_workers("cpu", 12) == (2, 1)
    assert experiment.default_workers("cpu", 1) == (1, 2)
    assert experiment.default_workers("cuda", 12) == (1, 2)
    monkeypatch.setattr(experiment.os, "sched_getaffinity", lambda _: set(range(16)), raising=False)
    assert experiment.default_workers("cpu", 12) == (4, 4)
    monkeypatch.setenv("GEOLAB_PARALLEL_RUNS", "1")
    assert experiment.default_workers("cpu", 12) == (1, 16)
    monkeypatch.setenv("GEOLAB_PARALLEL_RUNS", "two")
    with pytest.raises(ValueError, match="GEOLAB_PARALLEL_RUNS"):
        experiment.default_workers("cpu", 12)


def test_training_curves_show_every_trained_run_and_skip_random_init(tmp_path):
    """The curves notebooks 02-04 draw: one contrastive-loss line per trained run (coloured by
    method) against the chance level ln(queue + 1), a geo-loss line only for methods with a
    geo head against ln(K), the kNN monitor where it ran, nothing for the random-init row."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    from geolab.viz import training_curves, training_history

    manifest = make_manifest(tmp_path / "data", n_locations=12)
    results = tmp_path / "run" / "records" / "02_demo.jsonl"
    settings = {**TINY, "epochs": 2, "knn_every": 1}
    records = [run_experiment(m, manifest, seed=s, results_path=results, **settings)
               for m, s in (("random-init", 0), ("moco", 0), ("moco", 1), ("moco-geo", 0))]
    assert training_history(records[0]).empty
    hist = training_history(records[1])
    assert list(hist["epoch"]) == [1.0, 2.0] and hist["loss"].notna().all() and hist["knn_top1"].notna().all()
    assert hist["contrastive"].notna().all() and hist["geo"].isna().all()
    assert training_history(records[3])["geo"].notna().all()
    fig = training_curves(records, note="geoworld: simulated")
    contrastive_ax, geo_ax, knn_ax = fig.axes
    assert len(contrastive_ax.get_lines()) == 3 + 1 and len(knn_ax.get_lines()) == 3  # + the chance line
    assert len(geo_ax.get_lines()) == 1 + 1
    chance = [line.get_ydata()[0] for line in contrastive_ax.get_lines() if line.get_linestyle() == ":"]
    assert chance == [math.log(TINY.get("queue_size", 256) + 1)]
    assert [t.get_text() for t in contrastive_ax.get_legend().get_texts()] == ["moco", "moco-geo"]
    assert [t.get_text() for t in geo_ax.get_legend().get_texts()] == ["moco-geo"]


def _fake_run(folder, method, epochs, geo=False, knn_every=0, queue_size=16, geo_k=4):
    """A run folder with config.json and metrics.jsonl as pretrain writes them; its result record."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"config": {"queue_size": queue_size, "geo_k": geo_k}}))
    lines = []
    for e in range(epochs):
        rec = {"kind": "epoch", "epoch": e, "step": 10 * (e + 1), "loss": 5.0 - e, "contrastive": 4.0 - e}
        if geo:
            rec["geo"] = 1.0
        if knn_every and ((e + 1) % knn_every == 0 or e + 1 == epochs):
            rec["knn_top1"] = 0.1 * (e + 1)
        lines.append(json.dumps(rec))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return {"method": method, "checkpoint": str(folder / "checkpoints" / "last.pt")}


def test_training_curves_draw_a_panel_only_for_what_ran(tmp_path):
    """No geo-loss panel when no plotted run has a geo head, no kNN panel when the monitor never
    ran; the kNN panel shows every monitored epoch; given axes left over are hidden."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from geolab.viz import training_curves

    moco = [_fake_run(tmp_path / f"moco{s}", "moco", epochs=6, knn_every=2) for s in (0, 1)]
    fig = training_curves([{"method": "random-init"}, *moco])
    assert [a.get_title() for a in fig.axes] == ["contrastive loss (each line a seed)", "kNN monitor"]
    assert [len(line.get_xdata()) for line in fig.axes[1].get_lines()] == [3, 3]  # epochs 2, 4, 6
    plain = _fake_run(tmp_path / "plain", "moco", epochs=2)
    geo = _fake_run(tmp_path / "geo", "moco-geo", epochs=2, geo=True)
    assert [a.get_title() for a in training_curves([plain]).axes] == ["contrastive loss (each line a seed)"]
    titles = [a.get_title() for a in training_curves([plain, geo]).axes]
    assert titles == ["contrastive loss (each line a seed)", "geo loss (methods with a geo head)"]
    _, axes = plt.subplots(1, 3)
    fig = training_curves([plain], ax=axes)
    assert [a.get_visible() for a in axes] == [True, False, False]
    with pytest.raises(ValueError, match="2 panels"):
        training_curves([plain, geo], ax=axes[:1])
    empty = training_curves([{"method": "random-init"}])  # a note, not an error
    assert [t.get_text() for t in empty.axes[0].texts] == ["no trained run: no training curves"]


def test_method_bars_show_the_mean_and_its_bootstrap_interval(tmp_path):
    """Each bar is a method's mean over seeds and its error bar spans exactly the 95%
    interval of bootstrap_interval (test locations and seeds resampled), in records' order."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    from geolab.stats import bootstrap_interval
    from geolab.viz import method_bars

    manifest = make_manifest(tmp_path / "data", n_locations=12)
    results = tmp_path / "run" / "records" / "02_demo.jsonl"
    records = [run_experiment(m, manifest, seed=s, results_path=results, **TINY)
               for m, s in (("random-init", 0), ("random-init", 1), ("moco", 0), ("moco", 1))]
    ax = method_bars(records, title="t", names={"moco": "MoCo-v2"})
    bars = ax.patches
    assert [t.get_text() for t in ax.get_xticklabels()] == ["random-init", "MoCo-v2"]
    for bar, method in zip(bars, ("random-init", "moco")):
        mean = 100 * np.mean([r["probe_top1"] for r in records if r["method"] == method])
        assert bar.get_height() == pytest.approx(mean)
    (caps_low, caps_high) = ax.lines[0].get_ydata(), ax.lines[1].get_ydata()
    for i, method in enumerate(("random-init", "moco")):
        low, high = bootstrap_interval(records, method)
        assert caps_low[i] == pytest.approx(100 * low) and caps_high[i] == pytest.approx(100 * high)
