"""The training loop: every method trains and lowers its loss, checkpoints hold what a resume
needs (loadable with weights_only=True), runs are reproducible, and bad checkpoints or
settings fail with messages that name the problem."""

from __future__ import annotations

import collections
import json
import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from helpers import make_manifest

from geolab.config import METHODS, PretrainConfig
from geolab.io import DiskSpaceError
from geolab.models import build_contrastive_loss, load_memory_bank_state, make_backbone
from geolab.checkpoints import CheckpointError, load_checkpoint, load_state_dict_checked, save_checkpoint
from geolab.distributed import seed_everything
from geolab.models import LossSettings, ModelSettings, build_model, compute_loss
from geolab.train import prepare_data, pretrain


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on the shared 2-core CI machine two OpenMP threads per process
    were 10x slower than one (measured: 6 MoCo steps 28.9 s vs 2.3 s under load)."""
    torch.set_num_threads(1)


def patterned_manifest(root: Path) -> Path:
    """16 locations with 2-3 revisits, 12 in train and 4 in val, 32 px; every location gets its
    own coarse colour pattern (plus per-image noise) so that instances, locations and their
    geo clusters are learnable in a few steps."""
    import numpy as np
    from PIL import Image

    from geolab.manifest import load_manifest

    path = make_manifest(root, n_locations=16, revisits=(2, 3), splits=("train", "train", "train", "val"))
    rng = np.random.default_rng(0)
    df = load_manifest(path)
    patterns = {loc: rng.integers(0, 256, (4, 4, 3)) for loc in df["location_id"].unique()}
    for loc, image in zip(df["location_id"], df["path"]):
        pixels = np.kron(patterns[loc], np.ones((8, 8, 1))) + rng.normal(0, 10, (32, 32, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(image)
    return path


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The patterned manifest of :func:`patterned_manifest`."""
    return patterned_manifest(tmp_path_factory.mktemp("train-data"))


def quick_config(manifest: Path, out: Path, method: str = "moco-tp-geo", **kw) -> PretrainConfig:
    """A few steps of ResNet-18 at 32 px on CPU, batch 8. Learning rates: 0.05 for MoCo,
    0.005 for the classifiers (0.03 x 8 / 256 is the linear-scaling value; larger steps make a
    freshly initialised classifier overshoot)."""
    base = dict(
        method=method, manifest=manifest, out=out, arch="resnet18", image_size=32, epochs=2, batch_size=8,
        max_steps_per_epoch=3, lr=0.05 if method.startswith("moco") else 0.005, queue_size=16, ema_momentum=0.99, geo_k=3, num_workers=0,
        knn_every=0, log_every=1, progress=False, device="cpu",
    )
    base.update(kw)
    return PretrainConfig(**base)


def fixed_batch_loss(cfg: PretrainConfig, state: dict | None, bank: dict | None) -> float:
    """The loss of one fixed batch (same images, augmentations, key shuffle and memory bank)
    for the freshly initialised model (``state=None``) or trained weights."""
    ds, _train, _df, classes = prepare_data(cfg)
    torch.manual_seed(123)
    items = [ds[i] for i in range(8)]
    batch = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}
    seed_everything(cfg.seed)
    model = build_model(ModelSettings.of(cfg), len(classes), bn_splits=2)
    if state is not None:
        model.load_state_dict(state)
    criterion = None
    if cfg.is_moco:
        criterion = build_contrastive_loss(cfg.temperature, cfg.queue_size, cfg.proj_dim)
        load_memory_bank_state(criterion, bank)
    torch.manual_seed(7)
    with torch.no_grad():
        return compute_loss(LossSettings.of(cfg), model, criterion, batch)[1]["loss"]


@pytest.mark.parametrize("method", METHODS)
def test_each_method_trains_and_its_loss_falls(manifest: Path, tmp_path: Path, method: str):
    """Six SGD steps of every method lower its loss on a fixed training batch (for MoCo methods
    with the same memory bank of negatives), and the run writes a usable checkpoint."""
    cfg = quick_config(manifest, tmp_path / method, method)
    path = pretrain(cfg)
    ckpt = load_checkpoint(path)
    assert ckpt["method"] == method and ckpt["epoch"] == 2 and ckpt["finished"]
    before = fixed_batch_loss(cfg, None, ckpt["memory_bank"])
    after = fixed_batch_loss(cfg, ckpt["model"], ckpt["memory_bank"])
    assert after < before, (method, before, after)


@pytest.fixture(scope="module")
def finished_run(manifest: Path, tmp_path_factory: pytest.TempPathFactory):
    """One finished 2-epoch moco-tp-geo run with the kNN monitor on."""
    out = tmp_path_factory.mktemp("run")
    torch.set_num_threads(1)
    cfg = quick_config(manifest, out, epochs=2, max_steps_per_epoch=2, knn_every=1)
    Run = namedtuple("Run", "cfg path")
    return Run(cfg, pretrain(cfg))


def test_the_knn_monitor_never_changes_training(manifest: Path, tmp_path: Path, monkeypatch):
    """How often the kNN monitor runs (never, every epoch, the last epoch only; on a seeded subset)
    changes no loss, no weight, no key in the memory bank and not the RNG state a resumed run
    continues from: the monitor reads the model and leaves the global RNG as it found it."""
    import geolab.evaluate

    torch.set_num_threads(1)
    runs = {}
    for every in (0, 1, 2):
        monkeypatch.setattr(geolab.evaluate, "_EVAL_CACHE", {})  # a first read draws a DataLoader seed
        cfg = quick_config(manifest, tmp_path / f"every{every}", epochs=2, max_steps_per_epoch=2, knn_every=every,
                           knn_max_images=6)
        ckpt = load_checkpoint(pretrain(cfg))
        records = [json.loads(line) for line in (tmp_path / f"every{every}" / "metrics.jsonl").read_text().splitlines()]
        runs[every] = (ckpt, records)
    base, base_records = runs[0]
    assert not any("knn_top1" in r for r in base_records)
    for every, (ckpt, records) in runs.items():
        monitored = [r["epoch"] + 1 for r in records if r["kind"] == "epoch" and "knn_top1" in r]
        assert monitored == {0: [], 1: [1, 2], 2: [2]}[every]
        losses = [r["loss"] for r in records if r["kind"] == "step"]
        assert losses == [r["loss"] for r in base_records if r["kind"] == "step"]
        assert all(torch.equal(ckpt["model"][k], v) for k, v in base["model"].items()), every
        assert torch.equal(ckpt["memory_bank"]["bank"], base["memory_bank"]["bank"])
        assert torch.equal(ckpt["rng"]["torch"], base["rng"]["torch"]), f"knn_every={every} moved the global RNG"
        assert ckpt["rng"]["python"] == base["rng"]["python"]
        assert torch.equal(ckpt["rng"]["numpy"]["key"], base["rng"]["numpy"]["key"])


def test_checkpoint_holds_what_resume_needs_and_loads_weights_only(finished_run):
    """The checkpoint is plain data (weights_only=True) with geolab version, arch, method,
    config, epoch, optimizer, memory bank and RNG states; config.json and metrics.jsonl
    (step and epoch records, kNN monitor) are written beside it."""
    ckpt = torch.load(finished_run.path, map_location="cpu", weights_only=True)
    for key in ("geolab_version", "arch", "method", "config", "epoch", "global_step", "model", "optimizer",
                "memory_bank", "rng", "classes", "feature_dim"):
        assert key in ckpt, key
    assert ckpt["arch"] == "resnet18" and ckpt["epoch"] == 2 and ckpt["global_step"] == 4
    assert ckpt["config"]["temperature"] == finished_run.cfg.temperature
    assert ckpt["memory_bank"]["bank"].shape == (16, 128)
    assert any(k.startswith("geo_head.") for k in ckpt["model"])
    out = Path(finished_run.cfg.out)
    config = json.loads((out / "config.json").read_text())
    assert config["strategy"] == "any-other" and config["bn_splits"] == 2
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [0, 1]
    assert all(0.0 <= r["knn_top1"] <= 1.0 for r in epochs)
    assert {"contrastive", "geo", "loss", "pairs_per_s"} <= set(epochs[0])
    assert sum(r["kind"] == "step" for r in records) == 4


def test_existing_checkpoint_needs_resume_and_finished_run_is_announced(finished_run, capsys):
    """Without resume an existing checkpoint is an error (never silently overwritten); with
    resume a finished run is announced and returned unchanged."""
    with pytest.raises(CheckpointError, match="--resume"):
        pretrain(finished_run.cfg)
    before = finished_run.path.stat().st_mtime_ns
    cfg = PretrainConfig(**{**finished_run.cfg.__dict__, "resume": True})
    assert pretrain(cfg) == finished_run.path
    assert finished_run.path.stat().st_mtime_ns == before
    assert "already holds the finished run" in capsys.readouterr().err


def test_resume_with_other_settings_is_refused(finished_run, tmp_path: Path):
    """Resuming with another architecture or queue size names what differs."""
    out = tmp_path / "other"
    shutil.copytree(finished_run.cfg.out, out)
    cfg = PretrainConfig(**{**finished_run.cfg.__dict__, "out": out, "resume": True, "epochs": 3})
    with pytest.raises(CheckpointError, match="resnet18"):
        pretrain(PretrainConfig(**{**cfg.__dict__, "arch": "resnet34"}))
    with pytest.raises(CheckpointError, match="queue_size"):
        pretrain(PretrainConfig(**{**cfg.__dict__, "queue_size": 32}))


def test_resume_refuses_another_manifest_or_loss_and_optimizer_settings(finished_run, tmp_path: Path):
    """A resumed run must equal an uninterrupted one: another manifest (path), the same manifest
    with other content (its fingerprint, size and mtime, recorded at the start of the run), and other
    loss or optimizer settings are refused with every difference named; config.json is left as it was."""
    out = tmp_path / "other"
    shutil.copytree(finished_run.cfg.out, out)
    config_before = (out / "config.json").read_text()
    cfg = PretrainConfig(**{**finished_run.cfg.__dict__, "out": out, "resume": True})
    recorded = json.loads(config_before)["manifest"]["fingerprint"]
    assert recorded == load_checkpoint(finished_run.path)["manifest"]["fingerprint"]
    changed = dict(temperature=0.5, lr=0.1, momentum=0.8, weight_decay=0.0, alpha=2.0, beta=0.5, ema_momentum=0.9,
                   cosine=False, strategy="nearest")
    with pytest.raises(CheckpointError) as err:
        pretrain(PretrainConfig(**{**cfg.__dict__, **changed}))
    for name in changed:
        assert f"{name}: checkpoint" in str(err.value), name
    with pytest.raises(CheckpointError, match=r"epochs: checkpoint 2, now 3 \(the cosine schedule"):
        pretrain(PretrainConfig(**{**cfg.__dict__, "epochs": 3}))

    copy = tmp_path / "data" / Path(finished_run.cfg.manifest).name
    shutil.copytree(Path(finished_run.cfg.manifest).parent, copy.parent)
    with pytest.raises(CheckpointError, match=r"manifest: checkpoint .*, now .*data/"):
        pretrain(PretrainConfig(**{**cfg.__dict__, "manifest": copy}))
    same_path = PretrainConfig(**{**cfg.__dict__, "epochs": 3})
    original, stat = Path(same_path.manifest).read_bytes(), Path(same_path.manifest).stat()
    Path(same_path.manifest).write_bytes(original + b"\n")  # content changes, path does not
    try:
        with pytest.raises(CheckpointError, match=r"manifest content: .* changed since the run started"):
            pretrain(same_path)
    finally:
        Path(same_path.manifest).write_bytes(original)
        os.utime(same_path.manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as it was, for the other tests
    assert (out / "config.json").read_text() == config_before


def test_out_folder_with_other_files_or_a_file_is_refused(manifest: Path, tmp_path: Path, monkeypatch):
    """--out that holds someone's files and is not a run's, or that is a file, is refused before
    anything is written, by geolab.io's output rule (one rule for every command): a run's folder is
    recognised by its checkpoint or by the config.json it writes first, not by the file's name, so
    someone's config.json is not taken for a run's and replaced (issue 23); never the manifest's
    folder. A run that cannot hold its checkpoint stops before epoch 1."""
    import geolab.train as train_mod

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"--out .*mine is not a folder made by geolab pretrain, but it holds "
                       r".*notes\.txt; .*choose another --out"):
        pretrain(quick_config(manifest, mine))
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "config.json").write_text('{"my": "settings"}\n')  # a name a run writes, but not a run's file
    with pytest.raises(FileExistsError, match=r"not a folder made by geolab pretrain, but it holds .*config\.json"):
        pretrain(quick_config(manifest, theirs))
    assert (theirs / "config.json").read_text() == '{"my": "settings"}\n'
    with pytest.raises(FileExistsError, match=r"is the folder of the input .*; geolab pretrain never writes into"):
        pretrain(quick_config(manifest, manifest.parent))
    unfinished = tmp_path / "unfinished"  # a run killed before its first checkpoint: its own, rerun into it
    pretrain(quick_config(manifest, unfinished, max_steps_per_epoch=1))
    shutil.rmtree(unfinished / "checkpoints")
    (unfinished / "notes.txt").write_text("a note beside my run")
    assert pretrain(quick_config(manifest, unfinished, max_steps_per_epoch=1)).is_file()
    afile = tmp_path / "a-file"
    afile.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        pretrain(quick_config(manifest, afile))

    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: Usage(10, 10, 0))
    monkeypatch.setattr(train_mod, "compute_loss", lambda *a, **k: pytest.fail("trained before checking the disk"))
    with pytest.raises(DiskSpaceError, match="checkpoints"):
        pretrain(quick_config(manifest, tmp_path / "full"))


def test_temporal_positives_on_singletons_warn(tmp_path: Path):
    """moco-tp on locations that each have one image is plain MoCo in all but name: a warning
    gives the singleton share; a manifest with revisits gives none."""
    single = make_manifest(tmp_path / "single", n_locations=8, revisits=(1,), size=16)
    with pytest.warns(UserWarning, match=r"100% of the 'train' images are the only image of their location.*plain MoCo-v2"):
        prepare_data(quick_config(single, tmp_path / "a", "moco-tp", image_size=16))
    revisited = make_manifest(tmp_path / "revisited", n_locations=8, revisits=(2, 3), size=16)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        prepare_data(quick_config(revisited, tmp_path / "b", "moco-tp", image_size=16))


def test_one_timestamp_per_location_warns(tmp_path: Path):
    """Issue 23: locations with several images that all carry one timestamp (a manifest dated by
    location, or duplicated images) were accepted without a word, though their temporal positives
    are never of another time. The revisit warning names the manifest, the share of such locations
    and what it means; a manifest with real revisits, or a run without temporal positives, says nothing."""
    import warnings

    from geolab.manifest import load_manifest, save_manifest

    revisited = make_manifest(tmp_path / "revisited", n_locations=8, revisits=(2, 3), size=16)
    df = load_manifest(revisited)
    first = df["location_id"] == df["location_id"].iloc[0]  # keeps its revisits at different times
    df.loc[~first, "timestamp"] = df[~first].groupby("location_id")["timestamp"].transform("min")
    one_time = tmp_path / "revisited" / "one-time.parquet"
    save_manifest(df, one_time)
    n = int((df[df.split == "train"].groupby("location_id").size() > 1).sum())
    assert df.loc[first, "split"].iloc[0] == "train" and n > 2
    with pytest.warns(UserWarning, match=rf"one-time\.parquet: {round(100 * (n - 1) / n)}% of the 'train' locations "
                      rf"with several images \({n - 1} of {n}\) have one timestamp for all of them, so their "
                      r"temporal positives are other "
                      r"images of the same moment, not of another time \('any-other'.*timestamp column"):
        prepare_data(quick_config(one_time, tmp_path / "a", "moco-tp", image_size=16))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        prepare_data(quick_config(revisited, tmp_path / "b", "moco-tp", image_size=16))
        prepare_data(quick_config(one_time, tmp_path / "c", "moco", image_size=16))  # same-image: no time involved


def test_mismatched_weights_name_the_keys():
    """Loading a ResNet-18 state into a ResNet-50 lists missing/unexpected/shape-mismatched keys."""
    small, _ = make_backbone("resnet18")
    big, _ = make_backbone("resnet50")
    with pytest.raises(CheckpointError) as err:
        load_state_dict_checked(big, small.state_dict(), "small.pt")
    msg = str(err.value)
    assert "small.pt" in msg and "missing in the checkpoint" in msg and "layer1.0.conv3.weight" in msg
    assert "shape mismatch" in msg and "conv1.weight" not in msg.split("shape mismatch")[0].split("missing")[0]


def test_newer_geolab_checkpoint_and_garbage_files_are_refused(finished_run, tmp_path: Path):
    """A checkpoint from a newer geolab says to upgrade; a non-checkpoint says what it is not."""
    ckpt = load_checkpoint(finished_run.path)
    ckpt["geolab_version"] = "99.0.0"
    newer = tmp_path / "newer.pt"
    torch.save(ckpt, newer)
    with pytest.raises(CheckpointError, match="newer than this geolab"):
        load_checkpoint(newer)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a geolab checkpoint"):
        load_checkpoint(other)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(finished_run.path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(broken)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty \(0 bytes\)"):
        load_checkpoint(empty)
    pickled = tmp_path / "pickled.pt"
    torch.save({"model": collections.OrderedDict(a=Path("x"))}, pickled)  # a pathlib object: pickled code
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(pickled)
    assert "pickled Python objects" in str(err.value)
    assert "weights_only" not in str(err.value) and "earlier checkpoint" not in str(err.value)


def test_checkpoint_refused_when_disk_is_full(tmp_path: Path, monkeypatch):
    """save_checkpoint checks free space first and leaves the previous checkpoint intact."""
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"format": "geolab-checkpoint", "x": torch.zeros(10)})
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: Usage(10, 10, 0))
    with pytest.raises(DiskSpaceError, match="checkpoints"):
        save_checkpoint(path, {"format": "geolab-checkpoint", "x": torch.ones(10)})
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.zeros(10))


def test_seeded_cpu_runs_are_reproducible(manifest: Path, tmp_path: Path):
    """Two CPU runs with the same seed end with identical weights; another seed differs."""
    states = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg = quick_config(manifest, tmp_path / name, "moco-tp", max_steps_per_epoch=1, seed=seed)
        states.append(load_checkpoint(pretrain(cfg))["model"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_bad_settings_are_explained(manifest: Path, tmp_path: Path):
    """Too many geo clusters for the train locations, or an unknown method, say what to change."""
    with pytest.raises(ValueError, match="--geo-k"):
        pretrain(quick_config(manifest, tmp_path / "k", "moco-geo", geo_k=50))
    with pytest.raises(ValueError, match="Unknown method"):
        quick_config(manifest, tmp_path / "m", "simclr")


def test_gpu_loop_without_per_step_reads_logs_the_same_numbers(manifest: Path, tmp_path: Path, monkeypatch):
    """The GPU loop keeps each step's losses on the device and reads them only at log steps and the
    epoch's end (no host synchronisation per step); run on the CPU, it logs the same step records,
    epoch means and weights as the loop that reads every step, and still stops on a NaN loss."""
    import geolab.train as train_mod

    runs = {}
    for sync in (True, False):
        monkeypatch.setattr(train_mod, "_sync_each_step", lambda device, sync=sync: sync)
        cfg = quick_config(manifest, tmp_path / f"sync{sync}", "moco-tp-geo", max_steps_per_epoch=3, log_every=2)
        path = pretrain(cfg)
        recs = [json.loads(line) for line in (cfg.out / "metrics.jsonl").read_text().splitlines()]
        runs[sync] = ([{k: v for k, v in r.items() if k not in ("seconds", "pairs_per_s")} for r in recs],
                      load_checkpoint(path)["model"])
    assert runs[True][0] == runs[False][0] and any(r["kind"] == "step" for r in runs[False][0])
    assert all(torch.equal(runs[True][1][k], runs[False][1][k]) for k in runs[True][1])

    real = train_mod.compute_loss

    def nan_loss(*args, **kwargs):
        loss, parts = real(*args, **kwargs)
        return loss * float("nan"), {**parts, "loss": parts["loss"] * float("nan")}

    monkeypatch.setattr(train_mod, "compute_loss", nan_loss)
    with pytest.raises(FloatingPointError, match=r"at epoch 1 step 2 \(checked every 2 steps on a GPU\)"):
        pretrain(quick_config(manifest, tmp_path / "nan", "moco-tp-geo", max_steps_per_epoch=3, log_every=2))


def test_a_prepared_cache_on_cuda_is_decoded_and_augmented_on_the_device(tmp_path: Path, monkeypatch):
    """Real data on a GPU: over a prepared cache the run reads JPEG bytes and decodes and augments
    them where the model is (geolab.jpeg_pipeline); elsewhere the PIL pipeline stays. The loop is
    run here on the CPU with the choice forced: it trains, and every batch went through the views."""
    import sys

    import geolab.jpeg_pipeline as jp
    import geolab.train as train_mod
    from geolab.sources.prepare import prepare_cache

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import bench_prepared_cache as bpc

    src = bpc.make_images(tmp_path / "src", 8, 2, 60, 120, seed=0)
    cache = prepare_cache(src, tmp_path / "cache", short_side=48, progress=False).manifest_path
    cfg = quick_config(cache, tmp_path / "run", "moco-tp-geo", arch="resnet18-w16", epochs=1, max_steps_per_epoch=2,
                       batch_size=8, geo_k=2)
    assert train_mod._decode_on_device(cfg, torch.device("cuda"))
    assert not train_mod._decode_on_device(cfg, torch.device("cpu"))
    assert not train_mod._decode_on_device(quick_config(src, tmp_path / "r2"), torch.device("cuda"))
    assert not train_mod._decode_on_device(PretrainConfig(**{**cfg.__dict__, "method": "supervised"}),
                                           torch.device("cuda"))

    calls = []
    real_call = jp.JpegPairViews.__call__

    def spy(self, batch, generator=None):
        calls.append(len(batch["query"]))
        assert all(t.dtype == torch.uint8 and t.ndim == 1 for t in batch["query"])  # undecoded bytes
        return real_call(self, batch, generator)

    monkeypatch.setattr(jp.JpegPairViews, "__call__", spy)
    monkeypatch.setattr(train_mod, "_decode_on_device", lambda cfg, device: device is not None)
    ckpt = load_checkpoint(pretrain(cfg))
    assert calls == [8, 8] and ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if torch.is_floating_point(v))
