"""DDP on CPU (gloo): two ranks compute the same gradients and memory bank as one process on
the same global batch (shuffle BN across ranks == split BN with shuffled keys on one device);
a rank that dies ends the job with a clear error instead of a hang; ``torchrun -m
geolab.train`` trains end to end."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from geolab.config import PretrainConfig
from geolab.models import MoCoModel, build_contrastive_loss, load_memory_bank_state, memory_bank_state
from geolab.checkpoints import load_checkpoint
from geolab.distributed import DistContext, DistributedError, ddp_guard
from geolab.models import LossSettings, compute_loss

REPO = Path(__file__).resolve().parents[1]
GLOBAL_BATCH, QUEUE, GEO_K = 8, 16, 3
CFG = PretrainConfig(method="moco-tp-geo", arch="resnet18", image_size=32, batch_size=GLOBAL_BATCH,
                     queue_size=QUEUE, geo_k=GEO_K, device="cpu")


def _global_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(42)
    return {
        "query": torch.randn(GLOBAL_BATCH, 3, 32, 32, generator=g),
        "key": torch.randn(GLOBAL_BATCH, 3, 32, 32, generator=g),
        "geo_cluster": torch.randint(0, GEO_K, (GLOBAL_BATCH,), generator=g),
        "label": torch.zeros(GLOBAL_BATCH, dtype=torch.long),
    }


def _bank() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return {"bank": F.normalize(torch.randn(QUEUE, 128, generator=g), dim=1), "ptr": torch.zeros(1, dtype=torch.long)}


def _one_step(model, criterion, batch, distributed: bool) -> float:
    torch.manual_seed(123)  # the key shuffle permutation (drawn on rank 0 under DDP)
    loss, _ = compute_loss(LossSettings.of(CFG), model, criterion, batch, distributed=distributed)
    loss.backward()
    return float(loss.detach())


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    """One DDP step (saved for the gradient check), then rank 1 dies and rank 0 tries the
    next step: both tests below read what this one spawn leaves in ``out``."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=dt.timedelta(seconds=20))
    per = GLOBAL_BATCH // world
    batch = {k: v[rank * per:(rank + 1) * per] for k, v in _global_batch().items()}
    torch.manual_seed(0)
    model = MoCoModel("resnet18", geo_k=GEO_K, bn_splits=1)
    criterion = build_contrastive_loss(0.2, QUEUE, 128, distributed=True)
    load_memory_bank_state(criterion, _bank())
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    loss = _one_step(ddp, criterion, batch, distributed=True)
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    torch.save({"loss": loss, "grads": grads, "bank": memory_bank_state(criterion)}, f"{out}/rank{rank}.pt")
    dist.barrier()
    if rank == 1:
        os._exit(3)  # dies without a word, as an OOM-killed rank does
    ctx = DistContext(rank, world, 0, torch.device("cpu"), owns_group=True)
    try:
        with ddp_guard(ctx, "epoch 1 step 2"):
            compute_loss(LossSettings.of(CFG), ddp, criterion, batch, distributed=True)[0].backward()
        Path(out, "rank0.txt").write_text("no error")
    except DistributedError as exc:
        Path(out, "rank0.txt").write_text(str(exc))
    except BaseException:  # noqa: BLE001 - the test reports whatever else happened
        Path(out, "rank0.txt").write_text("other: " + traceback.format_exc())


def _spawn(target, world: int, *args, timeout: float = 180) -> list[int]:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=target, args=(r, world, *args)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, "a rank hung"
    return [p.exitcode for p in procs]


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    """Spawned ranks use one thread each (2 shared cores)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """Spawn the two gloo ranks of :func:`_worker` once; their output folder and exit codes."""
    out = tmp_path_factory.mktemp("ddp")
    os.environ["OMP_NUM_THREADS"] = "1"
    return out, _spawn(_worker, 2, str(out / "init"), str(out), timeout=180)


def test_two_gloo_ranks_match_one_process_on_the_global_batch(ddp_run):
    """One DDP step on 2 ranks (keys shuffled across ranks, each rank's BN over its half)
    gives the same averaged gradients, mean loss and memory bank (keys gathered from both
    ranks) as one process with 2 BN splits and the same key shuffle on the whole batch."""
    out, _codes = ddp_run
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]

    torch.manual_seed(0)
    model = MoCoModel("resnet18", geo_k=GEO_K, bn_splits=2)
    criterion = build_contrastive_loss(0.2, QUEUE, 128)
    load_memory_bank_state(criterion, _bank())
    loss = _one_step(model, criterion, _global_batch(), distributed=False)

    assert loss == pytest.approx((ranks[0]["loss"] + ranks[1]["loss"]) / 2, rel=1e-5)
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(grads) == set(ranks[0]["grads"]) and any(n.startswith("geo_head") for n in grads)
    for name, g in grads.items():
        for r in ranks:
            assert torch.allclose(r["grads"][name], g, rtol=1e-3, atol=1e-5), name
    want_bank = memory_bank_state(criterion)
    for r in ranks:
        assert torch.allclose(r["bank"]["bank"], want_bank["bank"], atol=1e-5)
        assert int(r["bank"]["ptr"]) == GLOBAL_BATCH


def test_dead_rank_ends_the_job_with_a_clear_error(ddp_run):
    """When rank 1 dies, rank 0's next collective fails within the process-group timeout
    with a DistributedError that names its rank and says another rank died (no hang)."""
    out, codes = ddp_run
    assert codes == [0, 3]
    msg = (out / "rank0.txt").read_text()
    assert msg.startswith("rank 0 of 2: a collective operation failed during epoch 1 step 2"), msg
    assert "Another rank has most likely died" in msg


def test_torchrun_trains_two_ranks_end_to_end(tmp_path: Path):
    """``torchrun --nproc_per_node=2 -m geolab.train`` (gloo on CPU) trains moco-tp-geo with a
    DistributedSampler, writes one checkpoint from rank 0 and records the world size."""
    from test_train import patterned_manifest

    manifest = patterned_manifest(tmp_path / "data")
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "geolab.train",
        "--method", "moco-tp-geo", "--manifest", str(manifest), "--out", str(out), "--arch", "resnet18",
        "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--queue-size", "16", "--geo-k", "3",
        "--num-workers", "0", "--knn-every", "0", "--max-steps-per-epoch", "2", "--device", "cpu",
        "--no-progress", "--log-every", "1",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 2
    # 2 steps x 8 keys gathered from both ranks fill the 16-key bank, whose pointer wraps to 0
    assert int(ckpt["memory_bank"]["ptr"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2 and config["bn_splits"] == 1
