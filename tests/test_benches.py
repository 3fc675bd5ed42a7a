"""The benchmark scripts of issue 12 keep working: each runs end to end at toy size (``--quick``)
on a tiny manifest made in code, prints its table, and returns numbers of the right shape.
No timing is asserted (see BENCHMARKS.md for the measurements)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import make_manifest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread, as the benches' own default on this machine."""
    torch.set_num_threads(1)


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 locations with 2-4 revisits (train, val and test), 32 px."""
    return make_manifest(tmp_path_factory.mktemp("bench-data"), n_locations=12, revisits=(2, 3, 4))


def test_bench_input_pipeline_quick(manifest: Path, capsys):
    """bench_input_pipeline --quick measures every row (the old course as "before", then each
    arch at 32 px with PIL and 0 or 1 workers, and with preload) and prints the table with the
    ratio to "before" (1.00x on its own row)."""
    bench = _bench("bench_input_pipeline")
    results = bench.main(["--quick", "--manifest", str(manifest)])
    names = [r["setting"].name for r in results]
    assert names[0].startswith("before") and len(names) == 4
    assert [(r["setting"].preload, r["setting"].num_workers) for r in results[1:]] == [(False, 0), (False, 1), (True, 0)]
    for r in results:
        assert r["pairs_per_s"] > 0 and r["data_s_per_step"] >= 0 and r["model_s_per_step"] > 0
    out = capsys.readouterr().out
    assert "| config | batch | pairs/s |" in out and "| 1.00x |" in out and "preload is" in out


def test_bench_ssl_budget_quick(manifest: Path, capsys):
    """bench_ssl_budget --quick probes random init and both methods at every budget on val and
    test, with finite training losses; at 0 steps a method is its random init; the tables are
    printed. ``--snapshots`` extends one run per method through the budgets."""
    bench = _bench("bench_ssl_budget")
    results = bench.main(["--quick", "--manifest", str(manifest)])
    for method in ("moco", "moco-tp"):
        rows = {r["steps"]: r for r in results if r["method"] == method}
        assert sorted(rows) == [0, 2, 4]
        init = next(r for r in results if r["method"] == "random-init")
        assert rows[0]["val"] == init["val"] and rows[0]["test"] == init["test"]
        for b in (2, 4):
            assert 0 <= rows[b]["val"] <= 1 and 0 <= rows[b]["test"] <= 1 and math.isfinite(rows[b]["loss"])
    out = capsys.readouterr().out
    assert "linear probe top-1 (%), val / test" in out and "| 0 (random init) |" in out and "final training loss" in out

    snaps = bench.main(["--quick", "--manifest", str(manifest), "--snapshots", "--methods", "moco", "--steps", "2", "4"])
    assert [(r["method"], r["steps"]) for r in snaps] == [("random-init", 0), ("moco", 2), ("moco", 4)]


def test_steps_per_epoch_divides_the_budget():
    """Each budget is split into epochs of whole steps that fit in one pass over the data."""
    bench = _bench("bench_ssl_budget")
    assert bench.steps_per_epoch(100, 5) == 5 and bench.steps_per_epoch(100, 7) == 5
    assert bench.steps_per_epoch(7, 5) == 1 and bench.steps_per_epoch(4, 10) == 4


def test_bench_parallel_runs_quick(manifest: Path, capsys):
    """bench_parallel_runs --quick trains the same runs one at a time and two at a time with
    run_experiments and prints both rows, the first as the 1.00x reference."""
    bench = _bench("bench_parallel_runs")
    results = bench.main(["--quick", "--manifest", str(manifest)])
    assert [(r["workers"], r["runs"]) for r in results] == [(1, 2), (2, 2)]
    assert all(r["wall_s"] > 0 and r["runs_per_min"] > 0 for r in results)
    out = capsys.readouterr().out
    assert "| runs at once | threads each |" in out and "| 1.00x |" in out


def test_profile_step_cpu_smoke_writes_trace_and_counts_host_reads(tmp_path: Path, capsys):
    """``bench/profile_step.py`` (issue 24: profile the bf16 step) runs its CPU smoke: the top-ops
    table, a Chrome trace, and the host reads per step, which are only the memory-bank pointer's."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: the script would profile the full GPU step")
    sys.path.insert(0, str(REPO / "bench"))
    prof = _bench("profile_step")
    assert prof.main(["--cpu-smoke", "--out", str(tmp_path), "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "aten::convolution" in out and "host synchronisations per step" in out
    import json

    res = json.loads((tmp_path / "profile.json").read_text())
    assert res["steps_recorded"] == 2 and res["amp"] is True and res["channels_last"] is True
    assert res["syncs_per_step"] == {"aten::_local_scalar_dense": 1.0}
    assert (tmp_path / "trace.json").stat().st_size > 0 and "Self CPU time" in (tmp_path / "top_ops.txt").read_text()


def test_bench_view_prints_both_jitters_side_by_side(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench_view.py", "--rounds", "1", "--batch-size", "8", "--size", "16"])
    _bench("bench_view").main()
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "ms" not in line and "---" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["jitter, BatchColorJitter", "jitter, kornia ColorJitter",
                                                       "whole view, BatchColorJitter", "whole view, kornia ColorJitter"]
    assert all(float(r.split("|")[2]) > 0 for r in rows)


def test_bench_labels_quick(manifest: Path, tmp_path: Path, monkeypatch, capsys):
    """bench_labels times notebook 08's label efficiency and fine-tuning on a run folder's main records."""
    from geolab.course.experiment import run_experiment

    monkeypatch.setenv("GEOLAB_RUNS", str(tmp_path / "runs"))
    tiny = dict(arch="resnet18", image_size=32, epochs=1, batch_size=8, queue_size=16, max_steps_per_epoch=1,
                num_workers=0, device="cpu", geo_k=2)
    for method in ("random-init", "moco"):
        run_experiment(method, manifest, seed=0, results_path=tmp_path / "run" / "records" / "02_x.jsonl", **tiny)
    out = _bench("bench_labels").main([str(tmp_path / "run"), "--workers", "1", "--finetune-max-steps", "1"])
    assert (out["runs"], out["label-efficiency records"], out["fine-tuned runs"]) == (2, 6, 2)
    assert out["fine-tuning steps"] == [1] and out["wall s"] > 0 and "cpu s" in capsys.readouterr().out
