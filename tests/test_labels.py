"""Label efficiency and fine-tuning (issue 25 item 3): which labels a fraction keeps, what fine-tuning changes, and
the records, tables, report sections and curves made from them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from geolab.config import RANDOM_INIT
from geolab.course.experiment import run_experiment
from geolab.course.labels import label_experiments, label_findings, label_subset
from geolab.course.records import validate_record
from geolab.course.report import report_markdown
from geolab.stats import frozen_finetuned_table, label_efficiency_table
from geolab.evaluate import load_backbone
from geolab.finetune import fine_tune
from geolab.manifest import load_manifest, select_split
from tests.helpers import make_manifest

TINY = dict(arch="resnet18", image_size=32, epochs=1, batch_size=8, queue_size=16, max_steps_per_epoch=2,
            num_workers=0, device="cpu", geo_k=2)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _train_table(n_locations: int = 400, classes: int = 10, seed: int = 0) -> pd.DataFrame:
    """A training split shaped like geoworld's: locations of 1-6 revisits, labels per location."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_locations):
        label = f"c{rng.integers(classes)}" if i >= classes else f"c{i}"
        rows += [{"location_id": f"L{i}", "label": label, "image_id": f"L{i}-{t}"} for t in range(rng.integers(1, 7))]
    return pd.DataFrame(rows).sample(frac=1, random_state=seed).reset_index(drop=True)


def test_label_subset_keeps_every_class_whole_locations_and_nests():
    """Every class at every fraction (1 % of ~1,400 images is ~14, fewer than one per class by count), whole
    locations only, a smaller fraction a subset of a larger one, about the asked share of images, seeded."""
    train = _train_table()
    subsets = {f: label_subset(train, f, seed=3) for f in (0.01, 0.1, 0.5, 1.0)}
    for f, sub in subsets.items():
        assert set(sub["label"]) == set(train["label"]), f
        kept = set(sub["location_id"])
        assert (train["location_id"].isin(kept) == train.index.isin(sub.index)).all(), "a location was split"
    for small, large in [(0.01, 0.1), (0.1, 0.5), (0.5, 1.0)]:
        assert set(subsets[small].index) <= set(subsets[large].index)
        assert len(subsets[small]) <= len(subsets[large])
    assert len(subsets[1.0]) == len(train)
    assert abs(len(subsets[0.5]) / len(train) - 0.5) < 0.05
    assert abs(len(subsets[0.1]) / len(train) - 0.1) < 0.05
    assert label_subset(train, 0.1, seed=3).equals(subsets[0.1])
    assert not label_subset(train, 0.1, seed=4).index.equals(subsets[0.1].index)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        label_subset(train, 0.0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """random init, supervised and MoCo-v2+TP trained for two steps on a tiny manifest; their records."""
    tmp = tmp_path_factory.mktemp("labels")
    manifest = make_manifest(tmp / "data", n_locations=24, labels=("a", "b", "c"), splits=("train", "train", "val",
                                                                                            "test"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEOLAB_RUNS", str(tmp / "runs"))
        return manifest, [run_experiment(m, manifest, seed=0, results_path="", **TINY)
                          for m in (RANDOM_INIT, "supervised", "moco-tp")]


def test_fine_tuning_changes_a_copy_of_the_backbone(runs):
    """fine_tune trains a copy (the backbone passed in is unchanged, the returned one changed), stops at max_steps,
    and its scores are fractions; the preloaded path trains too."""
    manifest, records = runs
    df = load_manifest(manifest)
    backbone = load_backbone(records[-1]["checkpoint"])
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    for preload in (False, True):
        out = fine_tune(backbone, select_split(df, "train"), select_split(df, "test"), 32, epochs=3, batch_size=4,
                        max_steps=2, device="cpu", progress=False, preload=preload, return_model=True,
                        return_predictions=True)
        assert out["steps"] == 2 and 0 <= out["top1"] <= 1 and 0 <= out["f1"] <= 1
        assert len(out["predictions"]) == len(select_split(df, "test"))
        tuned = out["model"][0].state_dict()
        assert any(not torch.equal(before[k], tuned[k]) for k in before if before[k].is_floating_point())
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())


def test_label_experiments_records(runs, tmp_path):
    """One record per run and fraction (at 1 the run's own probe, below 1 a probe of its own), one fine-tuning record
    per run of the seeds asked for; all valid records with hits per test location; written to results_path."""
    _, records = runs
    results = tmp_path / "records" / "08_results.jsonl"
    labelled, tuned = label_experiments(records, (0.1, 1.0), finetune_max_steps=2, finetune_batch_size=4,
                                        results_path=results, workers=1)
    assert [(r["method"], r["label_fraction"]) for r in labelled] == [
        (m, f) for m in (RANDOM_INIT, "supervised", "moco-tp") for f in (0.1, 1.0)]
    for r in labelled + tuned:
        validate_record(r)
        assert len(r["test_location_images"]) == len(records[0]["test_location_images"])
    for run, full in zip(records, [r for r in labelled if r["label_fraction"] == 1]):
        assert (full["probe_top1"], full["probe_hits"]) == (run["probe_top1"], run["probe_hits"])
    few = [r for r in labelled if r["label_fraction"] < 1]
    assert all(r["labelled_images"] < len(select_split(load_manifest(runs[0]), "train")) for r in few)
    assert all(r["variant"] == "10% labels" and 0 <= r["probe_top1"] <= 1 for r in few)
    assert [r.get("encoder_labels") for r in few] == [None, 1.0, None]
    assert [r["method"] for r in tuned] == [RANDOM_INIT, "supervised", "moco-tp"]
    assert all(r["finetune_steps"] == 2 and 0 <= r["finetune_top1"] <= 1 and r["label_fraction"] == 1 for r in tuned)
    assert all(sum(r["finetune_hits"]) == round(r["finetune_top1"] * sum(r["test_location_images"])) for r in tuned)
    assert len(results.read_text().splitlines()) == len(labelled) + len(tuned)
    assert label_experiments(records, (0.1,), finetune_seeds=(), workers=1)[1] == []


def _synthetic(method: str, fraction: float, seed: int, acc: float, metric: str = "probe") -> dict:
    sizes = [2] * 50
    hits = [2 if i < acc * 50 else 0 for i in range(50)]
    base = {"method": method, "data": "geoworld", "arch": "resnet18", "image_size": 32, "epochs": 1, "seed": seed,
            "notebook": "08_results", "test_location_images": sizes, "label_fraction": fraction}
    if metric == "probe":
        return {**base, "experiment": "label-efficiency", "variant": f"{100 * fraction:g}% labels",
                "probe_top1": acc, "probe_f1": acc, "knn_top1": acc, "probe_hits": hits, "knn_hits": hits,
                "labelled_images": int(2000 * fraction)}
    return {**base, "experiment": "fine-tune", "finetune_top1": acc, "finetune_hits": hits, "finetune_steps": 20}


def _records() -> list[dict]:
    accs = {RANDOM_INIT: (0.2, 0.3, 0.4), "moco": (0.3, 0.5, 0.6), "supervised": (0.7, 0.8, 0.8)}
    recs = [_synthetic(m, f, s, a) for m, a3 in accs.items() for s in (0, 1) for f, a in zip((0.01, 0.1, 1.0), a3)]
    return recs + [_synthetic(m, 1.0, 0, a3[2] + 0.04, "finetune") for m, a3 in accs.items()]


def test_tables_findings_and_report_sections():
    """The tables give the means with intervals around them; the report gets both sections (and the main table none
    of these rows); the findings' sentences carry the computed numbers."""
    recs = _records()
    table = label_efficiency_table(recs)
    assert len(table) == 9 and set(table["label_fraction"]) == {0.01, 0.1, 1.0}
    row = table[(table["method"] == "moco") & (table["label_fraction"] == 0.1)].iloc[0]
    assert row["mean"] == pytest.approx(50) and row["ci low"] <= 50 <= row["ci high"] and row["seeds"] == 2
    ft = frozen_finetuned_table(recs)
    assert ft.index[0] == RANDOM_INIT and ft.loc["moco", "fine-tuned"].startswith("64.0 [")
    assert ft.loc["moco", "paper fine-tuned (fMoW)"] == pytest.approx(64.34)
    lines = label_findings(recs, [("moco", RANDOM_INIT)])
    assert lines[1] == "moco: 30.0% with 1% of the labels (~20 images), 60.0% with 100%: it keeps 50% of it."
    assert any(line.startswith("with 1% of the labels, moco - random-init: +10.0 points") for line in lines)
    assert any(line.startswith("fine-tuned, moco - random-init: +20.0 points") for line in lines)
    results = {"profile": "smoke", "data": "geoworld", "simulation": True, "geolab_version": "0", "created": "now",
               "records": recs, "notebooks": [{"notebook": "08_results", "status": "ok"}]}
    md = report_markdown(results)
    assert "## Label efficiency" in md and "| moco | 30.0 [" in md and "## Frozen and fine-tuned" in md
    assert "| moco | 60.0 [" in md and "| 60.69 | 64.34 |" in md
    assert "## Linear probe and kNN" in md and "| label-efficiency |" not in md


def test_label_efficiency_curves():
    """One line per method on a log x axis at the fractions, a band per line, random init grey and dotted,
    supervised dashed and named for what it is."""
    import matplotlib.pyplot as plt

    from geolab import viz

    ax = viz.label_efficiency_curves(_records(), title="t", note=viz.SIMULATION_NOTE)
    try:
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert set(lines) == {RANDOM_INIT, "moco", "supervised (encoder saw all labels)"}
        assert ax.get_xscale() == "log" and list(lines["moco"].get_xdata()) == [1.0, 10.0, 100.0]
        assert lines[RANDOM_INIT].get_linestyle() == ":" and lines["supervised (encoder saw all labels)"].get_linestyle() == "--"
        assert len(ax.collections) == 3  # the bands
    finally:
        plt.close(ax.figure)
