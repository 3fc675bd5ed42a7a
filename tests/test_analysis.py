"""geolab.course.ablation, invariance and transfer: the computations behind notebooks 05 (ablations), 06 (maps and embeddings)
and 07 (transfer), on small seeded fake tables and features made in code (no training)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geolab.course import ablation, invariance, transfer
from geolab.course.records import record_result
from geolab.evaluate import linear_probe

SEASONS = np.array(["winter", "spring", "summer", "autumn"])


def fake_manifest(n_locations: int = 40, revisits: int = 3, n_labels: int = 4, seed: int = 0) -> pd.DataFrame:
    """Locations with ``revisits`` images each, labels cycling over locations, location-level
    splits (train/test alternating in blocks) and random nuisances per image."""
    rng = np.random.default_rng(seed)
    rows = []
    for loc in range(n_locations):
        split = "test" if loc % 5 == 4 else "train"
        for t in range(revisits):
            rows.append(
                {
                    "image_id": f"l{loc}_t{t}",
                    "location_id": f"l{loc}",
                    "label": f"c{loc % n_labels}",
                    "split": split,
                    "season": SEASONS[rng.integers(4)],
                    "haze": float(rng.uniform(0, 0.4)),
                    "cloud_cover": float(rng.uniform(0, 50)),
                    "snow": 0.0,
                    "path": f"img_{loc}_{t}.png",
                }
            )
    return pd.DataFrame(rows)


def location_features(df: pd.DataFrame, noise: float = 0.1, dim: int = 32, seed: int = 0) -> np.ndarray:
    """Features = category direction + location direction + small per-image noise: revisits are
    closest, then other locations of the category, then other categories."""
    rng = np.random.default_rng(seed)
    cat = {c: rng.normal(size=dim) for c in df["label"].unique()}
    loc = {c: rng.normal(size=dim) for c in df["location_id"].unique()}
    return np.stack([2 * cat[r.label] + loc[r.location_id] + noise * rng.normal(size=dim) for r in df.itertuples()]).astype(np.float32)


# ------------------------------------------------------------------------------ ablations
BASE = {"geo_k": 8, "temperature": 0.2, "beta": 1.0, "image_size": 32, "strategy": None, "epochs": 1}


def test_sweep_plan_adds_the_baseline_once_per_knob_and_changes_one_field():
    """Every knob's sweep contains the baseline (added in numeric order, or first for names, when
    missing), duplicates are dropped, an empty list sweeps nothing, and each run differs from
    the baseline in one field."""
    plan = ablation.sweep_plan(BASE, {"geo_k": [4, 4, 16], "temperature": [0.2, 0.02], "beta": [], "strategy": ["same-image"]})
    assert [(p["knob"], p["value"]) for p in plan] == [
        ("geo_k", 4), ("geo_k", 8), ("geo_k", 16), ("temperature", 0.2), ("temperature", 0.02),
        ("strategy", "any-other"), ("strategy", "same-image"),
    ]  # fmt: skip
    assert [p["is_baseline"] for p in plan] == [False, True, False, True, False, True, False]
    assert plan[1]["experiment"] == "ablation-K" and plan[1]["variant"] == "K=8"
    assert plan[4]["variant"] == "T=0.02"
    for p in plan:
        changed = {k for k in p["config"] if p["config"][k] != BASE.get(k)}
        assert changed <= {p["knob"]}
        assert p["is_baseline"] == (not changed or p["config"]["strategy"] == "any-other")


def test_sweep_plan_rejects_unknown_or_unset_knobs():
    """A typo in a knob or a knob the baseline does not set is a clear error."""
    with pytest.raises(ValueError, match="unknown ablation knob 'K'"):
        ablation.sweep_plan(BASE, {"K": [4]})
    with pytest.raises(ValueError, match="does not set 'beta'"):
        ablation.sweep_plan({"geo_k": 8}, {"beta": [0.5]})


def fake_run(calls):
    def run(method, manifest, *, data, seed, results_path, experiment, variant, **config):
        calls.append((method, seed, experiment, variant, dict(config)))
        acc = 0.5 + 0.01 * config["geo_k"] - (0.1 if config["temperature"] < 0.1 else 0) + 0.01 * seed
        return {"method": method, "seed": seed, "experiment": experiment, "variant": variant, "probe_top1": acc, "knn_top1": acc - 0.1}

    return run


def test_run_sweep_runs_each_setting_per_seed_and_tags_records():
    """run_sweep trains every planned setting for every seed with the sweep's experiment/variant,
    the baseline once per knob with the identical configuration (so run_experiment reuses it)."""
    calls: list = []
    recs = ablation.run_sweep("moco-tp-geo", "m.parquet", BASE, {"geo_k": [4, 8], "temperature": [0.02]},
                              seeds=[0, 1], run=fake_run(calls))  # fmt: skip
    assert len(calls) == len(recs) == 8
    baseline_configs = [c[4] for c, r in zip(calls, recs) if r["is_baseline"]]
    assert len(baseline_configs) == 4 and all(c == baseline_configs[0] for c in baseline_configs)
    assert {(r["experiment"], r["variant"]) for r in recs} == {("ablation-K", "K=8"), ("ablation-K", "K=4"),
                                                            ("ablation-T", "T=0.2"), ("ablation-T", "T=0.02")}  # fmt: skip


def test_ablation_table_deltas_against_the_baseline_and_seed_spread():
    """The table reports each setting's mean in percent, its std over seeds and the change in
    points against that knob's baseline row (0 for the baseline itself)."""
    recs = ablation.run_sweep("moco-tp-geo", "m", BASE, {"geo_k": [4, 8], "temperature": [0.02]}, seeds=[0, 1], run=fake_run([]))
    table = ablation.ablation_table(recs)
    assert list(table.index) == [("geo clusters K", "4"), ("geo clusters K", "8"), ("InfoNCE temperature", "0.02"), ("InfoNCE temperature", "0.2")]
    assert table.loc[("geo clusters K", "8"), "probe_top1 (%)"] == pytest.approx(58.5)
    assert table.loc[("geo clusters K", "4"), "Δ probe_top1 (points)"] == pytest.approx(-4.0)
    assert table.loc[("InfoNCE temperature", "0.02"), "Δ probe_top1 (points)"] == pytest.approx(-10.0)
    assert table.loc[("InfoNCE temperature", "0.2"), "Δ knn_top1 (points)"] == 0
    assert table.loc[("geo clusters K", "4"), "probe_top1 std"] == pytest.approx(100 * np.std([0.54, 0.55], ddof=1), abs=0.01)
    with pytest.raises(ValueError, match="run_sweep"):
        ablation.ablation_table([{"probe_top1": 0.5}])


def test_run_sweep_trains_the_changed_settings_on_their_own_seeds():
    """variant_seeds: the baseline trains on every seed (its spread is the seed noise), a changed
    setting only on the seeds asked for."""
    calls: list = []
    recs = ablation.run_sweep("moco-tp-geo", "m", BASE, {"geo_k": [4], "temperature": [0.02]}, seeds=[0, 1, 2],
                              variant_seeds=[0], run=fake_run(calls))
    seeds = {(r["variant"], r["seed"]) for r in recs}
    assert seeds == {("K=8", 0), ("K=8", 1), ("K=8", 2), ("K=4", 0), ("T=0.2", 0), ("T=0.2", 1), ("T=0.2", 2), ("T=0.02", 0)}


def _hit_records(acc: dict, seeds, locations: int = 60, per_location: int = 3) -> list:
    """Records with per-location hits: acc maps (method, variant) to its accuracy, the same for every seed."""
    rng = np.random.default_rng(0)
    out = []
    for (method, variant), (p, spread) in acc.items():
        for s in seeds[(method, variant)]:
            hits = rng.binomial(per_location, min(1.0, p + spread * (s - 1)), size=locations).tolist()
            out.append({"method": method, "variant": variant, "seed": s, "knob": "geo_k" if variant else None,
                        "value": {"K=8": 8, "K=4": 4, "K=16": 16}.get(variant), "is_baseline": variant == "K=8",
                        "probe_top1": sum(hits) / (locations * per_location), "probe_hits": hits,
                        "test_location_images": [per_location] * locations})
    return out


def test_setting_verdicts_read_each_setting_against_baseline_noise_and_random_init():
    """A setting far from its baseline is called higher or lower; one a few points off, within the
    baseline's seed spread, is not claimed however narrow its single-seed interval; a setting at
    random init's level is flagged NOT above random init."""
    seeds = {("moco-tp-geo", "K=8"): [0, 1, 2], ("moco-tp-geo", "K=4"): [0], ("random-init", ""): [0, 1, 2]}
    recs = _hit_records({("moco-tp-geo", "K=8"): (0.70, 0.06), ("moco-tp-geo", "K=4"): (0.40, 0.0),
                         ("random-init", ""): (0.40, 0.0)}, seeds)
    # K=16: the baseline's seed-0 run with one more correct image at 15 of 60 locations (about +8 points, never worse)
    base0 = next(r for r in recs if r["variant"] == "K=8" and r["seed"] == 0)
    hits = [h + (1 if i < 15 and h < 3 else 0) for i, h in enumerate(base0["probe_hits"])]
    recs.append({**base0, "variant": "K=16", "value": 16, "is_baseline": False, "probe_hits": hits, "probe_top1": sum(hits) / 180})
    sweep = [r for r in recs if r["method"] != "random-init"]
    rand = [r for r in recs if r["method"] == "random-init"]
    v = ablation.setting_verdicts(sweep, rand)
    assert v.loc[("geo clusters K", "8"), "vs baseline"] == "the baseline"
    assert v.loc[("geo clusters K", "8"), "vs random init"] == "above random init"
    assert v.loc[("geo clusters K", "4"), "vs baseline"] == "lower than the baseline"
    assert v.loc[("geo clusters K", "4"), "vs random init"] == "NOT above random init"
    assert v.loc[("geo clusters K", "16"), "baseline seed std"] > 2
    assert float(v.loc[("geo clusters K", "16"), "Δ vs baseline ci"].split(" to ")[0]) > 0  # the interval alone would claim it
    assert v.loc[("geo clusters K", "16"), "vs baseline"].startswith("within the baseline's seed noise")
    assert v.loc[("geo clusters K", "4"), "seeds"] == 1


def test_plot_ablation_one_panel_per_knob_with_note():
    """The figure has one panel per knob and carries the simulation note when given."""
    recs = ablation.run_sweep("moco-tp-geo", "m", BASE, {"geo_k": [4], "temperature": [0.02], "beta": [0.5]}, run=fake_run([]))
    fig = ablation.plot_ablation(ablation.ablation_table(recs), note="geoworld: simulated data, not real imagery")
    assert len(fig.axes) == 3
    assert any("simulated" in t.get_text() for t in fig.texts)


# ------------------------------------------------------------------------------ embeddings
def test_probe_predictions_match_the_linear_probe_accuracy():
    """Per-row predictions come from the same classifier as geolab.evaluate.linear_probe, so their
    accuracy is the probe's top-1 on the same features."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 10))
    y = (x[:, 0] + 0.5 * rng.normal(size=120) > 0).astype(int) + (x[:, 1] > 1).astype(int)
    pred = invariance.probe_predictions(x[:80], y[:80], x[80:])
    assert pred.dtype == np.int64 and pred.shape == (40,)
    assert (pred == y[80:]).mean() == pytest.approx(linear_probe(x[:80], y[:80], x[80:], y[80:])["top1"])
    with pytest.raises(ValueError, match="two classes"):
        invariance.probe_predictions(x[:5], np.zeros(5, dtype=int), x)


def test_probe_correct_chooses_C_on_val_as_the_records_do():
    """06's per-image mask uses the C the records use (best on val), so its mean is the probe's top-1
    with that C, not with the default C=1."""
    from geolab.evaluate import select_probe_C

    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 40))
    y = (x[:, 0] + 1.5 * rng.normal(size=300) > 0).astype(int)
    df = pd.DataFrame({"split": ["train"] * 150 + ["val"] * 75 + ["test"] * 75})
    correct, C = invariance.probe_correct(x, y, df, "test")
    best, _ = select_probe_C(x[:150], y[:150], x[150:225], y[150:225])
    assert C == best != 1.0 and correct.shape == (75,)
    assert correct.mean() == pytest.approx(linear_probe(x[:150], y[:150], x[225:], y[225:], C=best)["top1"])
    assert invariance.probe_correct(x, y, df, "val")[1] == 1.0  # nothing left to choose C on


def test_pick_query_prefers_a_revisited_test_location():
    """The query is a test-split image whose location has the wanted number of revisits."""
    df = fake_manifest(n_locations=8, revisits=1)
    df = pd.concat([df, df[df.location_id == "l4"].assign(image_id="extra1"), df[df.location_id == "l4"].assign(image_id="extra2")],
                   ignore_index=True)  # fmt: skip
    q = invariance.pick_query(df, min_revisits=3)
    assert df.iloc[q].location_id == "l4" and df.iloc[q].split == "test"
    assert df.iloc[invariance.pick_query(df, min_revisits=5)].split == "test"  # falls back to fewer revisits
    with pytest.raises(ValueError, match="no rows in split 'val'"):
        invariance.pick_query(df, split="val")


def test_neighbour_table_across_time_and_space():
    """Across time the query's revisits come first (features encode the location); across space
    no neighbour is from the query's location; one block of k+1 rows per method, query first."""
    df = fake_manifest()
    x = location_features(df)
    feats = {"moco": x, "moco-tp": x[:, ::-1].copy()}
    t = invariance.neighbour_table(df, feats, query=0, k=4)
    assert len(t) == 10 and list(t["rank"][:5]) == [0, 1, 2, 3, 4] and list(t["method"][::5]) == ["moco", "moco-tp"]
    assert t["same_location"].iloc[1:3].all()  # the two other revisits of l0
    assert t.iloc[0]["caption"].startswith("moco: query") and "same loc" in t.iloc[1]["caption"]
    far = invariance.neighbour_table(df, feats, query=0, k=4, exclude_same_location=True)
    assert not far[far["rank"] > 0]["same_location"].any()
    assert far[far["rank"] > 0]["same_label"].mean() > 0.5  # the category still dominates
    with pytest.raises(ValueError, match="one row per manifest row"):
        invariance.neighbour_table(df, {"bad": x[:5]}, query=0)


def test_pair_similarities_orders_revisits_category_and_others():
    """Revisits > same category (other location) > other category for features built that way;
    pair counts are the exact combinatorics of the table."""
    df = fake_manifest(n_locations=12, revisits=3, n_labels=3)
    sims = invariance.pair_similarities(location_features(df), df)
    assert list(sims.index) == list(invariance.PAIR_KINDS)
    assert sims["pairs"].tolist() == [12 * 3, 3 * (4 * 3) * (4 * 3 - 3) // 2, (36 * 35) // 2 - 36 - 3 * (12 * 9) // 2]
    m = sims["mean"]
    assert m.iloc[0] > m.iloc[1] > m.iloc[2]


def test_pair_similarities_samples_whole_locations_on_big_tables():
    """With a cap, whole locations are sampled (revisit pairs stay complete), deterministically."""
    df = fake_manifest(n_locations=40, revisits=3)
    x = location_features(df)
    a = invariance.pair_similarities(x, df, max_images=30, seed=1)
    b = invariance.pair_similarities(x, df, max_images=30, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert a.loc[invariance.PAIR_KINDS[0], "pairs"] == 10 * 3  # 10 whole locations of 3 images


def test_nuisance_probe_reads_what_the_features_encode():
    """A nuisance written into the features is readable (high score above chance); one that is
    not is near chance; constant and absent columns give NaN / are skipped."""
    df = fake_manifest(n_locations=80, revisits=3)
    rng = np.random.default_rng(1)
    season_onehot = (df["season"].to_numpy()[:, None] == SEASONS[None, :]).astype(float)
    x = np.hstack([season_onehot + 0.05 * rng.normal(size=season_onehot.shape), rng.normal(size=(len(df), 20))])
    t = invariance.nuisance_probe(x, df, columns=("season", "haze", "snow", "sun_elevation"))
    assert list(t.index) == ["season", "haze", "snow"]  # sun_elevation is not in the table
    assert t.loc["season", "kind"] == "categorical" and t.loc["season", "score"] > 0.95
    assert t.loc["season", "score above chance"] > 0.9
    assert t.loc["haze", "kind"] == "numeric" and t.loc["haze", "score"] < 0.2
    assert np.isnan(t.loc["snow", "score"])
    x2 = np.hstack([x, df[["haze"]].to_numpy() * 10])
    assert invariance.nuisance_probe(x2, df, columns=("haze",)).loc["haze", "score"] > 0.95


def test_invariance_table_one_column_per_method():
    """The summary has one column per method and the similarity, gap and probe rows."""
    df = fake_manifest()
    x = location_features(df)
    t = invariance.invariance_table({"moco": x, "noise": np.random.default_rng(0).normal(size=x.shape)}, df, columns=("season", "label"))
    assert list(t.columns) == ["moco", "noise"]
    assert "revisit gap (revisits - same category)" in t.index and "readable: label (kept)" in t.index
    assert t.loc["revisit gap (revisits - same category)", "moco"] > t.loc["revisit gap (revisits - same category)", "noise"]
    assert t.loc["readable: label (kept)", "moco"] > 0.7 > t.loc["readable: label (kept)", "noise"]


# ------------------------------------------------------------------------------ transfer
def test_dense_record_is_a_valid_course_record():
    """A dense result becomes a record the course schema accepts, with fractions and experiment
    'transfer'; percentages are refused by the schema."""
    result = {"miou": 0.41, "pixel_acc": 0.8, "epochs": 2, "wall_s": 3.5, "freeze_backbone": False}
    rec = record_result("", transfer.dense_record("random", result, data="geoworld", arch="resnet18", image_size=32, epochs=0))
    assert rec["experiment"] == "transfer" and rec["miou"] == 0.41 and rec["dense_epochs"] == 2
    bad = transfer.dense_record("moco", {**result}, data="geoworld", arch="resnet18", image_size=32, epochs=1)
    bad["probe_top1"] = 41.0
    with pytest.raises(ValueError):
        record_result("", bad)


def test_transfer_table_puts_the_papers_numbers_beside_ours():
    """Our mIoU in percent per initialisation, with the paper's verified numbers (NaN where it has
    none); the figure has both panels."""
    results = {"random": {"miou": 0.3, "pixel_acc": 0.7}, "moco-tp-geo": {"miou": 0.35, "pixel_acc": 0.72}, "other": {"miou": 0.1, "pixel_acc": 0.5}}
    t = transfer.transfer_table(results)
    assert t.loc["random", "mIoU (%)"] == 30.0
    assert t.loc["random", "paper: SpaceNet mIoU"] == pytest.approx(74.93)
    assert t.loc["moco-tp-geo", "paper: xView AP50"] == pytest.approx(17.74)
    assert np.isnan(t.loc["moco-tp-geo", "paper: SpaceNet mIoU"]) and np.isnan(t.loc["other", "paper: xView AP50"])
    fig = transfer.plot_transfer(t, note="geoworld: simulated")
    assert len(fig.axes) == 2 and "simulated" in fig.axes[0].get_title()


def test_segmentation_examples_shows_image_truth_and_each_model(tmp_path):
    """The figure has one row per example and the columns image, truth and one per model, with a
    class legend and the simulation note."""
    import torch
    from PIL import Image

    from geolab.dense import SegmentationModel
    from geolab.models import make_backbone

    rng = np.random.default_rng(0)
    rows = []
    for i in range(2):
        img, mask = tmp_path / f"i{i}.png", tmp_path / f"m{i}.png"
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(img)
        Image.fromarray(rng.integers(0, 4, (32, 32), dtype=np.uint8)).save(mask)
        rows.append({"path": str(img), "mask_path": str(mask), "split": "test"})
    df = pd.DataFrame(rows)
    torch.manual_seed(0)
    models = {name: SegmentationModel(make_backbone("resnet18")[0], 4) for name in ("random", "moco")}
    fig = transfer.segmentation_examples(models, df, [0, 1], 32, note="geoworld: simulated")
    assert len(fig.axes) == 2 * 4
    assert [ax.get_title() for ax in fig.axes[:4]] == ["image", "truth", "random", "moco"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["background", "building", "water", "road"]
    assert any("simulated" in t.get_text() for t in fig.texts)


def test_sample_locations_keeps_whole_locations():
    """A sample keeps every revisit of the chosen locations, is seeded, keeps attrs, and keeps the
    whole table when it is small enough."""
    df = fake_manifest(n_locations=20, revisits=3)
    df.attrs["source"] = "m.parquet"
    s = invariance.sample_locations(df, 5, seed=3)
    assert s.location_id.nunique() == 5 and len(s) == 15 and list(s.index) == list(range(15))
    assert s.attrs["source"] == "m.parquet"
    pd.testing.assert_frame_equal(s, invariance.sample_locations(df, 5, seed=3))
    assert len(invariance.sample_locations(df, None)) == len(invariance.sample_locations(df, 100)) == 60
    with pytest.raises(ValueError, match="max_locations"):
        invariance.sample_locations(df, 0)


def test_revisit_retrieval_counts_queries_whose_neighbours_hold_a_revisit():
    """Features that put each place's images together find a revisit for every query (far
    above chance); random features are near the chance the function reports."""
    from geolab.course.invariance import revisit_retrieval

    rng = np.random.default_rng(0)
    locations = np.repeat(np.arange(60), 3)
    df = pd.DataFrame({"location_id": locations.astype(str), "split": np.where(locations < 40, "train", "test")})
    place = rng.normal(size=(60, 16))
    together = place[locations] + 0.01 * rng.normal(size=(len(df), 16))
    random = rng.normal(size=(len(df), 16))
    out = revisit_retrieval({"together": together, "random": random}, df, k=5, split="test")
    assert out.loc["together", "queries"] == 60 and out.loc["together", "revisit in top-5"] == 1.0
    chance = out.loc["random", "chance"]
    assert chance == pytest.approx(1 - np.prod([1 - 2 / (len(df) - 1 - j) for j in range(5)]))
    assert out.loc["random", "revisit in top-5"] < 0.3


def test_invariance_verdict_reads_each_measure_against_what_temporal_positives_should_do():
    """A nuisance that became less readable, a kept label and a wider revisit gap count as
    expected; a nuisance that became more readable does not; the last line counts them and
    says one seed gives a direction only."""
    from geolab.course.invariance import invariance_verdict

    table = pd.DataFrame({"moco": [0.05, 0.5, 0.1, 0.4], "moco-tp": [0.09, 0.2, 0.3, 0.5]},
                         index=["revisit gap (revisits - same category)", "readable: season (nuisance)",
                                "readable: snow (nuisance)", "readable: label (kept)"])
    lines = invariance_verdict(table, "moco", "moco-tp")
    assert "season (nuisance): moco-tp 0.200 vs moco 0.500, lower (as expected" in lines[1]
    assert "snow (nuisance)" in lines[2] and "NOT as expected" in lines[2]
    assert "(as expected" in lines[0] and "(as expected" in lines[3]
    assert lines[-1].startswith("3 of 4 measures") and "not an established effect" in lines[-1]


def test_ablation_table_and_plot_carry_the_95_percent_interval_of_each_setting():
    """Records with per-location hits give each setting its bootstrap interval (test locations
    and seeds resampled), equal to geolab.stats.bootstrap_interval on that setting's
    records; the ablation plot draws it as the error bar."""
    from geolab.stats import bootstrap_interval

    rng = np.random.default_rng(0)

    def run_with_hits(method, manifest, *, data, seed, results_path, experiment, variant, **config):
        hits = rng.integers(0, 3, size=20)  # 20 test locations of 2 images each
        return {"method": method, "seed": seed, "experiment": experiment, "variant": variant,
                "probe_top1": hits.sum() / 40, "knn_top1": hits.sum() / 40, "probe_hits": hits.tolist(),
                "knn_hits": hits.tolist(), "test_location_images": [2] * 20}

    recs = ablation.run_sweep("moco-tp-geo", "m", BASE, {"geo_k": [4]}, seeds=[0, 1], run=run_with_hits)
    table = ablation.ablation_table(recs)
    for (knob, setting), row in table.iterrows():
        mine = [r for r in recs if r["variant"] == f"K={setting}"]
        low, high = bootstrap_interval(mine, "moco-tp-geo")
        assert (row["probe_top1 ci low"], row["probe_top1 ci high"]) == (round(100 * low, 1), round(100 * high, 1))
        assert row["probe_top1 ci low"] <= row["probe_top1 (%)"] <= row["probe_top1 ci high"]
    from matplotlib.container import ErrorbarContainer

    fig = ablation.plot_ablation(table)
    assert any(isinstance(c, ErrorbarContainer) for c in fig.axes[0].containers)  # the interval is drawn
    # records without hits: no interval, and no error bar rather than a made-up one
    plain = ablation.ablation_table(ablation.run_sweep("moco-tp-geo", "m", BASE, {"geo_k": [4]}, run=fake_run([])))
    assert plain["probe_top1 ci low"].isna().all()


def _image_cms(correct_share: np.ndarray, pixels: int = 100) -> np.ndarray:
    """Per-image 2-class confusion matrices: half the pixels of each class, ``correct_share`` of them right."""
    cms = np.zeros((len(correct_share), 2, 2), np.int64)
    for i, p in enumerate(correct_share):
        right = int(round(p * pixels / 2))
        cms[i] = [[right, pixels // 2 - right], [pixels // 2 - right, right]]
    return cms


def test_dense_difference_resamples_locations_and_is_zero_for_the_same_run():
    """The same predictions differ by exactly 0; a run better on every image is ahead on both
    metrics with an interval above 0; images of one location move together in the bootstrap."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 0.8, size=40)
    locations = np.repeat(np.arange(20), 2)
    same = transfer.dense_difference(_image_cms(base), _image_cms(base), locations)
    assert same["miou"] == (0.0, 0.0, 0.0) and same["pixel_acc"] == (0.0, 0.0, 0.0)
    better = transfer.dense_difference(_image_cms(base + 0.1), _image_cms(base), locations)
    assert better["pixel_acc"][0] == pytest.approx(10.0, abs=0.5) and better["pixel_acc"][1] > 0
    with pytest.raises(ValueError, match="same test images"):
        transfer.dense_difference(_image_cms(base), _image_cms(base[:10]), locations)


def test_transfer_verdicts_call_mixed_and_noisy_results_what_they_are():
    """An initialisation better everywhere is ahead; one whose mIoU and pixel accuracy disagree in
    sign is 'mixed' and not claimed; a difference inside the noise is not claimed."""
    rng = np.random.default_rng(1)
    base = rng.uniform(0.4, 0.9, size=60)
    locations = np.repeat(np.arange(30), 2)
    noisy = np.clip(base + rng.normal(0, 0.15, size=60), 0, 1)
    mixed = _image_cms(base).copy()
    lost = (mixed[:, 1, 1] * 8) // 10  # class 1 mostly missed (its IoU, and mIoU, fall) ...
    mixed[:, 1, 1] -= lost
    mixed[:, 1, 0] += lost
    mixed[:, 0, 0] += 100  # ... while many more background pixels are right (pixel accuracy rises)
    cms = {"random": _image_cms(base), "better": _image_cms(np.clip(base + 0.08, 0, 1)),
           "noisy": _image_cms(noisy), "mixed": mixed}
    v = transfer.transfer_verdicts(cms, locations)
    assert list(v.index) == ["better", "noisy", "mixed"]
    assert v.loc["better", "verdict"] == "ahead of random init on both"
    assert v.loc["noisy", "verdict"] == "no difference can be claimed"
    assert v.loc["mixed", "verdict"].startswith("mixed")
