"""``bench/gpu_check.py``, the one prepared GPU check (``make gpu-check``).

GPU time is rare here, so the script must already work when a GPU is lent: its
``--cpu-dry-run`` runs every stage at toy size on the CPU and must report each one ``ok`` in
``gpu_check.json``; a stage past its time limit is reported ``timeout`` while the report is
still written and the run goes on; and on a machine without a GPU the real check says so in
one line instead of running the GPU stages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_check.py"
STAGES = ["env", "throughput", "amp", "torchrun", "course", "dataloader", "pipeline", "compile"]


def _check(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_cpu_dry_run_reports_every_stage_ok(tmp_path: Path) -> None:
    """Every stage runs at toy size on the CPU and is ``ok``, with its numbers: two throughput
    modes and the compiled one (its own, last stage), bf16 within tolerance of fp32, a killed-and-resumed torchrun run bit-identical to an
    uninterrupted one and a DDP step equal to a plain one, a course notebook's results.json, and
    the input pipeline's rate; a one-line summary per stage and the table are printed."""
    out, work = tmp_path / "check", tmp_path / "work"
    res = _check("--out", str(out), "--work", str(work), "--cpu-dry-run", timeout=2400)
    report = json.loads((out / "gpu_check.json").read_text())
    stages = report["stages"]
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert report["mode"] == "cpu-dry-run" and report["ok"] is True
    assert list(stages) == STAGES
    for name, st in stages.items():
        assert st["status"] == "ok", (name, st)
        assert st["seconds"] > 0 and st["numbers"] and st["summary"], name
        assert f"\n{name}: ok in " in "\n" + res.stdout
        assert f"| {name} | ok |" in res.stdout

    modes = stages["throughput"]["numbers"]["modes"]
    assert len(modes) == 2 and all(m["pairs_per_s"] > 0 for m in modes.values())
    compiled = stages["compile"]["numbers"]
    assert list(compiled["modes"]) == ["bf16 + channels_last + torch.compile"] and compiled["best_pairs_per_s"] > 0
    assert compiled["speedup_over_throughput_best"] > 0
    amp = stages["amp"]["numbers"]
    assert amp["loss_rel_diff"] <= amp["loss_rtol"] and amp["bf16_steps"] == amp["steps"] and amp["weights_finite"]
    assert set(amp["update_norm_ratios"]) == set(amp["update_cosines"]) == {"backbone", "projection_head", "geo_head"}
    assert amp["backbone_dtype_bf16_run"] == "bfloat16" and amp["weight_dtypes_bf16_run"] == ["float32"]
    run = stages["torchrun"]["numbers"]
    assert run["weights_max_abs_diff"] == 0 and run["epochs_steps_ptr_equal"] and run["killed_at_step"] is not None
    assert run["ddp_backend"] == "gloo" and run["ddp_loss_rel_diff"] == 0 and run["ddp_problems"] == []
    course = stages["course"]["numbers"]
    assert course["profile"] == "smoke" and course["records"] >= 1 and course["devices"] == ["cpu"]
    assert Path(course["results"]).is_file() and Path(course["results"]).is_relative_to(work)
    loader = stages["dataloader"]["numbers"]
    assert loader["pairs_per_s"] > 0 and loader["model_pairs_per_s"] == stages["throughput"]["numbers"]["best_pairs_per_s"]
    pipe = stages["pipeline"]["numbers"]
    assert pipe["pairs_per_s"] > 0 and pipe["pairs_per_s_input"] > 0 and pipe["decode_device"] == "cpu"
    assert pipe["model_pairs_per_s"] == stages["throughput"]["numbers"]["best_pairs_per_s"]
    assert pipe["views_device_vs_cpu_max_abs"] == 0 and pipe["cache_bytes_per_image"] > 0


def test_a_stage_past_its_limit_is_reported_as_timeout(tmp_path: Path) -> None:
    """A stage that outlives its limit is killed and recorded as ``timeout`` with its seconds;
    stages not selected are ``skipped`` with the reason; the exit code is 1."""
    out = tmp_path / "check"
    res = _check("--out", str(out), "--cpu-dry-run", "--only", "env", "--limit", "env=0.01", timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    report = json.loads((out / "gpu_check.json").read_text())
    env = report["stages"]["env"]
    assert env["status"] == "timeout" and env["limit_s"] == 0.01 and env["seconds"] >= 0.01
    assert "did not finish within its 0.01 s limit" in env["error"]
    assert all(report["stages"][s]["status"] == "skipped" for s in STAGES[1:])
    assert report["stages"]["amp"]["reason"] == "not selected (--only)"
    assert report["ok"] is False and report["finished"]
    assert "env: timeout in " in res.stdout


def test_bad_limit_option_is_one_clear_line(tmp_path: Path) -> None:
    """``--limit`` with an unknown stage stops before anything runs, naming the option and the stages."""
    res = _check("--out", str(tmp_path / "x"), "--limit", "nope=3", timeout=60)
    assert res.returncode == 2
    assert "--limit 'nope=3': write STAGE=SECONDS with STAGE one of env, throughput" in res.stderr
    assert not (tmp_path / "x").exists()


def test_without_a_gpu_the_check_says_so_and_skips_the_gpu_stages(tmp_path: Path) -> None:
    """On a machine without CUDA the real check fails its env stage with what to do, and reports
    the other stages as skipped instead of running them on the CPU at GPU sizes."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: the real check would run")
    out = tmp_path / "check"
    res = _check("--out", str(out), timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    report = json.loads((out / "gpu_check.json").read_text())
    env = report["stages"]["env"]
    assert env["status"] == "failed" and env["numbers"]["cuda_available"] is False
    assert env["error"].startswith("no CUDA GPU visible") and "--cpu-dry-run" in env["error"]
    for name in STAGES[1:]:
        assert report["stages"][name] == {**report["stages"][name], "status": "skipped", "reason": "no CUDA GPU (see env)"}


def test_stage_limits_fit_in_eight_minutes_on_a_gpu() -> None:
    """The GPU limits of all stages add up to less than 8 minutes, so one lent GPU (15 minutes
    with start-up) runs the whole check with time to rerun it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the script loads
    try:
        spec.loader.exec_module(mod)
    finally:
        del sys.modules[spec.name]
    assert [s.name for s in mod.STAGES] == STAGES
    assert sum(s.gpu_limit_s for s in mod.STAGES) < 8 * 60


def test_gpu_resume_is_judged_against_the_measured_run_to_run_spread() -> None:
    """On a GPU two uninterrupted runs already differ (cuDNN autotuning, bf16), so the resumed
    run may be as far from the reference as twice that spread, and never less than 10 % of the
    last epoch's change; without a measured spread the fixed 10 % holds."""
    sys.path.insert(0, str(SCRIPT.parent))
    import gpu_check

    assert gpu_check.resume_tolerance(None) == gpu_check.RESUME_GPU_RTOL == 0.10
    assert gpu_check.resume_tolerance(0.01) == 0.10
    assert gpu_check.resume_tolerance(0.3) == 0.6


@pytest.mark.parametrize("broken, caught", [
    (None, None),
    ("bf16-weights", "keeps its weights in ['bfloat16']"),
    ("no-autocast", "the backbone ran in float32 in the bf16 run"),
])
def test_amp_comparison_fails_a_broken_bf16_path(broken, caught) -> None:
    """The amp stage's comparison (after fp32 warm-up, bf16 vs fp32 from the same state with the
    same shuffles) passes the real bf16 path and fails two broken ones injected into it."""
    import torch

    sys.path.insert(0, str(SCRIPT.parent))
    import gpu_check

    res = gpu_check.amp_compare(gpu_check._dry_arch(), 32, 8, 64, 4, 3, 5, torch.device("cpu"), broken=broken)
    if caught is None:
        assert res["problems"] == [], res["problems"]
        assert res["loss_rel_diff"] <= gpu_check.AMP_LOSS_RTOL and len(res["losses_bf16"]) == 5
    else:
        assert any(caught in p for p in res["problems"]), res["problems"]
