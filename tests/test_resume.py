"""Reliability of training: an interrupted run (an exception, or SIGKILL of the training
process mid-epoch) resumed with ``--resume`` ends with exactly the weights of an uninterrupted
run, and a checkpoint write killed half-way leaves the previous checkpoint usable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from test_train import patterned_manifest, quick_config

import geolab.train as train_mod
from geolab.checkpoints import checkpoint_path
from geolab.config import PretrainConfig
from geolab.train import load_checkpoint, pretrain

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread (see tests/test_train.py), the same as the subprocesses use."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory):
    """An uninterrupted 3-epoch moco-tp-geo run (2 steps per epoch) and its config."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("resume")
    manifest = patterned_manifest(root)
    cfg = quick_config(manifest, root / "uninterrupted", "moco-tp-geo", epochs=3, max_steps_per_epoch=2)
    return cfg, load_checkpoint(pretrain(cfg))


def assert_same_training_state(a: dict, b: dict) -> None:
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert torch.equal(a["memory_bank"]["bank"], b["memory_bank"]["bank"])
    assert torch.equal(a["memory_bank"]["ptr"], b["memory_bank"]["ptr"])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert a["epoch"] == b["epoch"] and a["global_step"] == b["global_step"]


def test_exception_mid_epoch_then_resume_matches_uninterrupted(reference, tmp_path: Path, monkeypatch):
    """A run that dies in the middle of its second epoch, resumed, ends bit-identical to the
    uninterrupted run (weights, memory bank, optimizer), and metrics.jsonl holds each epoch once."""
    cfg, want = reference
    cfg = PretrainConfig(**{**cfg.__dict__, "out": tmp_path / "run"})
    real = train_mod.compute_loss
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # epoch 2, step 2
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "compute_loss", dying)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg)
    assert load_checkpoint(checkpoint_path(cfg.out))["epoch"] == 1
    monkeypatch.setattr(train_mod, "compute_loss", real)
    got = load_checkpoint(pretrain(PretrainConfig(**{**cfg.__dict__, "resume": True})))
    assert_same_training_state(want, got)
    records = [json.loads(line) for line in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [0, 1, 2]


def _cli_args(cfg: PretrainConfig) -> list[str]:
    return [
        "--method", cfg.method, "--manifest", str(cfg.manifest), "--out", str(cfg.out), "--arch", cfg.arch,
        "--image-size", str(cfg.image_size), "--epochs", str(cfg.epochs), "--batch-size", str(cfg.batch_size),
        "--lr", str(cfg.lr), "--queue-size", str(cfg.queue_size), "--ema-momentum", str(cfg.ema_momentum),
        "--geo-k", str(cfg.geo_k), "--num-workers", "0", "--knn-every", "0", "--log-every", "1",
        "--max-steps-per-epoch", str(cfg.max_steps_per_epoch), "--device", "cpu", "--no-progress",
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(reference, tmp_path: Path):
    """``python -m geolab.train`` killed with SIGKILL during its second epoch keeps the
    first epoch's checkpoint; ``--resume`` then ends with the uninterrupted run's weights."""
    cfg, want = reference
    cfg = PretrainConfig(**{**cfg.__dict__, "out": tmp_path / "run"})
    metrics = Path(cfg.out) / "metrics.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "geolab.train", *_cli_args(cfg)], env=_env(), cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if metrics.exists() and any(
                json.loads(line).get("kind") == "step" and json.loads(line)["epoch"] == 1
                for line in metrics.read_text().splitlines() if line.strip()
            ):
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(checkpoint_path(cfg.out))["epoch"] == 1
    got = load_checkpoint(pretrain(PretrainConfig(**{**cfg.__dict__, "resume": True})))
    assert_same_training_state(want, got)


def test_checkpoint_write_killed_half_way_keeps_previous_checkpoint(tmp_path: Path):
    """A process killed while writing a checkpoint (half the bytes written) leaves the
    previous checkpoint whole and loadable; only a stray temporary file remains."""
    path = tmp_path / "checkpoints" / "last.pt"
    script = textwrap.dedent(
        f"""
        import io, sys, time, torch
        from geolab.checkpoints import save_checkpoint
        path = {str(path)!r}
        save_checkpoint(path, {{"format": "geolab-checkpoint", "format_version": 1, "geolab_version": "0.0.1",
                               "epoch": 1, "w": torch.arange(100000.0)}})
        real_save = torch.save
        def half_save(obj, fh, *a, **k):
            buf = io.BytesIO(); real_save(obj, buf)
            data = buf.getvalue(); fh.write(data[: len(data) // 2]); fh.flush()
            print("HALF", flush=True); time.sleep(60)
        torch.save = half_save
        save_checkpoint(path, {{"format": "geolab-checkpoint", "epoch": 2, "w": torch.zeros(100000)}})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode()
        assert line.strip() == "HALF", proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 1 and torch.equal(ckpt["w"], torch.arange(100000.0))
    leftovers = [p.name for p in path.parent.iterdir() if p.name != "last.pt"]
    assert len(leftovers) == 1 and leftovers[0].endswith(".tmp")
