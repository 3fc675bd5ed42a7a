"""Did each run learn? The computed verdicts (geolab.course.health), the paired interval behind
them, the stuck-run caveat of ``compare``, and the two training levers of issue 22 (learning-rate
warm-up, symmetric loss) plus the collapse monitor they are judged by."""

from __future__ import annotations

import json
import pandas as pd
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from geolab.config import PretrainConfig
from geolab.course.health import health_verdict, run_health, world_summary, world_table_markdown
from geolab.models import LossSettings, MoCoModel, build_contrastive_loss, compute_loss, embedding_std
from geolab.stats import compare, difference_interval, paired_difference_interval, stuck_records
from geolab.train import lr_at


def _records(method: str, top1: list[float], locations: int = 40, per_location: int = 5, rng_seed: int = 0,
             shift: np.ndarray | None = None) -> list[dict]:
    """One record per seed; seed s gets each test image right with probability top1[s] (+ shift per location)."""
    rng = np.random.default_rng(rng_seed)
    out = []
    for s, p in enumerate(top1):
        prob = np.clip(p + (shift if shift is not None else 0.0), 0, 1)
        hits = rng.binomial(per_location, np.broadcast_to(prob, (locations,))).tolist()
        acc = sum(hits) / (locations * per_location)
        out.append({"method": method, "seed": s, "probe_top1": acc, "knn_top1": acc, "probe_hits": hits,
                    "knn_hits": hits, "test_location_images": [per_location] * locations})
    return out


def _write_run(tmp_path: Path, record: dict, contrastive: float, std: float, queue: int = 512) -> dict:
    """Give ``record`` a run folder with a last epoch record and a config, as pretrain writes them."""
    folder = tmp_path / f"{record['method']}-{record['seed']}"
    (folder / "checkpoints").mkdir(parents=True)
    epoch = {"kind": "epoch", "epoch": 24, "step": 500, "loss": contrastive, "contrastive": contrastive,
             "embedding_std": std}
    (folder / "metrics.jsonl").write_text(json.dumps(epoch) + "\n")
    (folder / "config.json").write_text(json.dumps({"config": {"queue_size": queue}}))
    return {**record, "checkpoint": str(folder / "checkpoints" / "last.pt")}


def test_stuck_run_is_named_by_run_health_and_compare(tmp_path: Path):
    """A +TP seed that probes below random init + 5 points, with its loss near chance, is STUCK; the
    other runs learned; the verdict sentence and compare's caveat both name that run."""
    init = _records("random-init", [0.40, 0.40, 0.40])
    moco = _records("moco", [0.52, 0.55, 0.53], rng_seed=1)
    tp = _records("moco-tp", [0.41, 0.60, 0.61], rng_seed=2)
    chance = math.log(513)
    moco = [_write_run(tmp_path, r, 4.1, 0.8) for r in moco]
    tp = [_write_run(tmp_path, r, chance - 0.1 if r["seed"] == 0 else 5.3, 0.7) for r in tp]
    records = init + moco + tp
    table = run_health(records)
    assert len(table) == 6
    verdicts = dict(zip(zip(table.method, table.seed), table.verdict))
    assert verdicts[("moco-tp", 0)].startswith("STUCK") and "below chance" in verdicts[("moco-tp", 0)]
    assert all(v == "learned" for k, v in verdicts.items() if k != ("moco-tp", 0))
    assert "moco-tp seed 0" in health_verdict(records) and "1 of 6 runs are STUCK" in health_verdict(records)
    assert "Caveat" in compare(records, "moco-tp", "moco") and "moco-tp seed 0" in compare(records, "moco-tp", "moco")
    assert "Caveat" not in compare(records, "moco", "random-init")
    assert [r["seed"] for r in stuck_records(records, "moco-tp")] == [0]
    # with few labels every probe is lower: which runs are stuck is read from the full-label records
    few = [{**r, "probe_top1": r["probe_top1"] - (0.0 if r["method"] == "random-init" else 0.08)} for r in records]
    assert "moco seed" in compare(few, "moco", "random-init")
    assert "Caveat" not in compare(few, "moco", "random-init", stuck_from=records)
    assert "moco-tp seed 0" in compare(few, "moco-tp", "moco", stuck_from=records)


def test_collapse_is_caught_even_when_the_probe_is_fine(tmp_path: Path):
    """An embedding std near 0 (every query on one point) is a collapse whatever the probe says;
    without random-init rows nothing is called stuck for the probe."""
    rec = _write_run(tmp_path, _records("moco", [0.6])[0], 4.0, 0.05)
    assert run_health([rec]).verdict[0].startswith("STUCK") and "collapsed" in run_health([rec]).verdict[0]
    ok = _write_run(tmp_path / "b", _records("moco", [0.6])[0], 4.0, 0.9)
    assert run_health([ok]).verdict[0] == "learned"


def test_paired_interval_cancels_what_seeds_share():
    """Two methods whose seeds differ a lot but a - b is the same on every seed: the paired interval
    (seeds resampled together) is much narrower than the unpaired one and excludes 0."""
    rng = np.random.default_rng(3)
    shift = rng.uniform(-0.2, 0.2, 40)
    b = _records("b", [0.35, 0.55, 0.45], rng_seed=4, shift=shift)
    a = [{**r, "method": "a", "probe_hits": [h + 1 for h in r["probe_hits"]],
          "probe_top1": r["probe_top1"] + 0.2} for r in b]
    lo, hi = paired_difference_interval(a + b, "a", "b")
    ulo, uhi = difference_interval(a + b, "a", "b")
    assert 0 < lo <= 0.2 <= hi and (hi - lo) < 0.5 * (uhi - ulo)
    assert paired_difference_interval(a + b, "a", "b") == (lo, hi)  # seeded
    # unequal seed sets fall back to the unpaired interval
    assert paired_difference_interval(a[:2] + b, "a", "b") == difference_interval(a[:2] + b, "a", "b")


def test_world_summary_and_table(tmp_path: Path):
    """The per-world summary has every method's mean, the +TP - MoCo-v2 difference with its interval
    and seeds ahead, and the markdown table counts the stuck runs."""
    records = (_records("random-init", [0.4] * 3) + _records("moco", [0.56] * 3, rng_seed=1)
               + _records("moco-tp", [0.6, 0.6, 0.42], rng_seed=2) + _records("supervised", [0.8] * 3, rng_seed=3))
    s = world_summary(records, 7)
    assert set(s["means"]) == {"random-init", "moco", "moco-tp", "supervised"}
    d = s["differences"]["+TP - MoCo-v2"]
    assert d["ci"][0] < d["diff"] < d["ci"][1] and d["seeds_ahead"] == "2/3"
    assert s["stuck"] == ["moco-tp seed 2"]
    md = world_table_markdown([s], "t", "cpu")
    assert "| 7 |" in md and "1 (moco-tp seed 2) of 9" in md and "1 of 9 trained runs" in md
    assert "Stuck runs" in md and "supervised - best SSL" in md


def test_warmup_rises_linearly_then_cosine_decays():
    """warmup_epochs=2 of 10 steps each: lr/20 at step 0, lr at step 19, then the cosine over the
    remaining steps, ending near 0; with no warm-up the schedule is MoCo-v2's cosine exactly."""
    cfg = PretrainConfig(method="moco", manifest="m", lr=0.1, epochs=10, warmup_epochs=2)
    lrs = [lr_at(s, 100, cfg, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1 / 20) and lrs[19] == pytest.approx(0.1)
    assert all(a < b for a, b in zip(lrs[:19], lrs[1:20]))
    assert lrs[20] == pytest.approx(0.1) and lrs[99] < 0.001
    plain = PretrainConfig(method="moco", manifest="m", lr=0.1, epochs=10)
    assert lr_at(50, 100, plain, 10) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="warmup_epochs"):
        PretrainConfig(method="moco", manifest="m", epochs=3, warmup_epochs=4)


def test_symmetric_loss_is_the_mean_of_both_directions_against_one_bank():
    """symmetric=True: the loss is the mean of InfoNCE(q1, k2) and InfoNCE(q2, k1), both against the
    memory bank as it was before the step (a batch never meets its own keys), then 2B keys are
    enqueued; the geo loss covers both queries."""
    torch.manual_seed(0)
    model = MoCoModel("resnet18-w16", proj_dim=16, geo_k=4).eval()  # eval: BN stats do not depend on the batch
    x1, x2 = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    batch = {"query": x1, "key": x2, "geo_cluster": torch.tensor([0, 1, 2, 3])}
    cfg = PretrainConfig(method="moco-geo", manifest="m", geo_k=4, symmetric=True, proj_dim=16)
    crit = build_contrastive_loss(0.2, 32, 16)
    bank0 = crit.memory_bank.bank.clone() if crit.memory_bank.bank.numel() else None
    loss, parts = compute_loss(LossSettings.of(cfg), model, crit, batch)
    # reference: both directions, each against a fresh copy of the same initial bank
    ref = []
    for q_in, k_in in ((x1, x2), (x2, x1)):
        c = build_contrastive_loss(0.2, 32, 16)
        if bank0 is not None:
            c.memory_bank.bank.copy_(bank0)
        c.memory_bank.bank_ptr.copy_(torch.zeros(1, dtype=torch.long))
        q, k, _ = model(q_in, k_in)
        ref.append(float(c(q, k).detach()))
    assert parts["contrastive"] == pytest.approx(sum(ref) / 2, rel=1e-4)
    assert int(crit.memory_bank.bank_ptr) == 8  # both views' keys enqueued
    assert "geo" in parts and 0 < parts["embedding_std"] <= 2


def test_embedding_std_tells_collapse_from_spread():
    """About 1 for random directions, 0 when every embedding is the same vector (SimSiam 4.1)."""
    torch.manual_seed(0)
    assert embedding_std(torch.randn(512, 128)) == pytest.approx(1.0, abs=0.05)
    assert embedding_std(torch.ones(512, 128) + 1e-6 * torch.randn(512, 128)) < 0.01


def test_a_seed_far_behind_its_siblings_is_lagging(tmp_path: Path):
    """Above random init + 5 but with under half the probe gain of its best sibling seed (the issue-22
    failure: 45% beside 58-59%, random init 38.6%): LAGGING, and the verdict sentence says so."""
    init = _records("random-init", [0.37] * 3, locations=200)
    tp = [_write_run(tmp_path, r, 5.5, 0.8) for r in _records("moco-tp", [0.451, 0.586, 0.579], locations=200, rng_seed=2)]
    table = run_health(init + tp)
    assert table.verdict[0].startswith("LAGGING") and list(table.verdict[1:]) == ["learned", "learned"]
    assert "LAGGING (moco-tp seed 0)" in health_verdict(init + tp)
    assert world_summary(init + tp, 9)["lagging"] == ["moco-tp seed 0"]


def test_expected_ranges_place_a_run_within_or_below(tmp_path: Path):
    """Benchmark records of two worlds give each method its range of world means and of single runs;
    a run's mean is placed within or below it, and runs with other settings get no range."""
    from geolab.course.health import beside_expected, expected_ranges

    rows = []
    for world, base in ((101, 0.50), (102, 0.56)):
        for seed, d in enumerate((-0.02, 0.0, 0.02)):
            for method, off in (("random-init", -0.12), ("moco", 0.0), ("moco-tp", 0.08)):
                rows.append({"world": world, "method": method, "seed": seed, "probe_top1": base + off + d,
                             "arch": "resnet18-w16", "image_size": 32, "epochs": 0 if method == "random-init" else 25})
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ranges = expected_ranges(path)
    assert list(ranges.index) == ["random-init", "moco", "moco-tp"]
    assert ranges.loc["moco", "world mean min"] == 50.0 and ranges.loc["moco", "world mean max"] == 56.0
    assert ranges.loc["moco", "run min"] == 48.0 and ranges.loc["moco", "runs"] == 6
    mine = [{"method": "moco", "seed": s, "probe_top1": 0.53, "arch": "resnet18-w16", "image_size": 32, "epochs": 25}
            for s in range(3)] + [{"method": "moco-tp", "seed": 0, "probe_top1": 0.45, "arch": "resnet18-w16",
                                   "image_size": 32, "epochs": 25}]
    table = beside_expected(mine, path)
    assert table.loc["moco", "this run is"] == "within" and table.loc["moco-tp", "this run is"] == "below"
    assert beside_expected([{**r, "epochs": 3} for r in mine], path) is None
    assert expected_ranges(tmp_path / "missing.jsonl") is None


def test_converged_picture_sets_this_run_beside_the_reference(tmp_path: Path):
    """The cpu-long reference run's main records give each method's mean beside this run's; a run that
    several notebooks record counts once (its seeds are not multiplied), records of other experiments
    are left out, a method only one side has keeps an empty cell, no file gives None."""
    from geolab.course.health import converged_picture

    ref = [{"method": m, "seed": s, "probe_top1": p + 0.01 * s, "experiment": "main", "arch": "resnet18-w32",
            "epochs": 0 if m == "random-init" else 45}
           for m, p in (("random-init", 0.40), ("moco", 0.60), ("moco-tp", 0.70)) for s in range(3)]
    ref.append({"method": "moco", "seed": 0, "probe_top1": 0.10, "experiment": "ablation", "epochs": 15})
    ref += [dict(r, notebook="04_geo_pretext") for r in ref[:6]]  # a later notebook records the same runs again
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"profile": "cpu-long", "records": ref}))
    mine = [{"method": "moco", "seed": s, "probe_top1": 0.5} for s in range(3)] + \
           [{"method": "supervised", "seed": 0, "probe_top1": 0.8}]
    table = converged_picture(mine, path)
    assert list(table.index) == ["random-init", "moco", "moco-tp", "supervised"]
    assert table.loc["moco", "reference"] == 61.0 and table.loc["moco", "reference seeds"] == 3
    assert table.loc["random-init", "reference seeds"] == 3
    assert table.loc["moco", "this run"] == 50.0 and table.loc["moco", "reference - this run"] == 11.0
    assert pd.isna(table.loc["supervised", "reference"]) and pd.isna(table.loc["moco-tp", "this run"])
    assert table.attrs["reference"]["arch"] == "resnet18-w32" and table.attrs["reference"]["epochs"] == 45
    assert converged_picture(mine, tmp_path / "missing.json") is None


def test_the_committed_benchmark_applies_to_the_cpu_profile():
    """docs/reference's benchmark records carry what each run trained (arch, image size, epochs), so a
    `make course` run's records are set beside the development worlds' ranges; without them 08 and the
    report silently printed no ranges (the --collect rebuild of 2026-12-06 had dropped them)."""
    from geolab.config import PROFILES
    from geolab.course.health import beside_expected, same_settings_as_benchmark

    cpu = PROFILES["cpu"]["common"]
    mine = [{"method": m, "seed": s, "probe_top1": 0.5, "arch": cpu["arch"], "image_size": cpu["image_size"],
             "epochs": 0 if m == "random-init" else cpu["epochs"]} for m in ("random-init", "moco") for s in (0, 1, 2)]
    assert same_settings_as_benchmark(mine)
    assert set(beside_expected(mine).index) == {"random-init", "moco"}


@pytest.mark.parametrize("records, expected", [("all", "report_expected.md"), ("none", "report_expected_empty.md")])
def test_report_markdown_is_byte_identical(records: str, expected: str):
    """The course report of a trimmed course run (tests/data/report_results.json: every section,
    a failed notebook) is byte-identical to the text recorded before report_markdown was split
    by section (issue 27); with no records it says so."""
    from geolab.course.report import report_markdown

    data = Path(__file__).parent / "data"
    results = json.loads((data / "report_results.json").read_text())
    if records == "none":
        results = {**results, "records": []}
    figures = {("03_temporal_positives", "main"): "figures/a.png", ("08_results", "label-efficiency"): "figures/l.png"}
    text = report_markdown(results, figures if records == "all" else None)
    assert text == (data / expected).read_text()


def test_ssl_methods_are_the_contrastive_methods_in_the_papers_order():
    """health.SSL_METHODS is derived from config.METHOD_PARTS; the tables keep the paper's order."""
    from geolab.course.health import SSL_METHODS

    assert SSL_METHODS == ("moco", "moco-tp", "moco-geo", "moco-tp-geo")
