"""The pieces that make self-supervised learning show on a CPU (issue 12).

Narrow encoders (``resnet18-w16``, ``resnet18-w32``), images decoded once into memory
(:func:`geolab.datasets.decode_images`) and augmented a batch at a time
(:class:`geolab.transforms.BatchMoCoV2View`), ``PretrainConfig(preload=True)``, the random-init
baseline (:func:`geolab.checkpoints.save_random_init`), a sanity check that the contrastive engine
learns at all, and the bootstrap intervals behind every comparison of methods
(:mod:`geolab.course.experiment`). Tiny, seeded data made in code; one intra-op thread.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from test_train import patterned_manifest, quick_config

import geolab.train as train_mod
from geolab.config import RANDOM_INIT, PretrainConfig
from geolab.datasets import BadImageWarning, ImageDataset, TemporalPairDataset, decode_images
from geolab.evaluate import load_backbone
from geolab.course.experiment import run_experiment
from geolab.models import ARCHS, MoCoModel, NarrowResNet, build_contrastive_loss, make_backbone
from geolab.checkpoints import checkpoint_path, load_checkpoint, save_random_init
from geolab.distributed import seed_everything
from geolab.models import LossSettings, auto_bn_splits, build_model, compute_loss
from geolab.train import prepare_data, pretrain
from geolab.transforms import BatchMoCoV2View, BatchSupervisedView, _Normalize
from tests.helpers import break_image, manifest_rows


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: steadier on the shared 2-core machine, and the same numbers every run."""
    torch.set_num_threads(1)


def _is_narrow(arch: str) -> bool:
    with torch.device("meta"):  # no memory, no init cost
        net, _ = make_backbone(arch)
    return isinstance(net, NarrowResNet)


#: The narrow archs, derived from ARCHS (never a hard-coded list).
NARROW = [a for a in ARCHS if _is_narrow(a)]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """test_train's patterned manifest: 16 locations, 2-3 revisits, 32 px, train and val."""
    return patterned_manifest(tmp_path_factory.mktemp("ssl-data"))


# ----------------------------------------------------------------------------- narrow encoders
def test_narrow_archs_exist():
    """The CPU course's encoders are in ARCHS (the course profiles name them)."""
    assert {"resnet18-w16", "resnet18-w32"} <= set(NARROW)


@pytest.mark.parametrize("arch", NARROW)
@pytest.mark.parametrize("size", [32, 64])
def test_narrow_forward_shape_and_feature_dim(arch: str, size: int):
    """A narrow backbone maps (N, 3, s, s) to (N, feature_dim) with ARCHS' feature size, at the
    course's image sizes; its stem is 3x3 stride 1 (small images keep their resolution)."""
    torch.manual_seed(0)
    net, dim = make_backbone(arch)
    assert dim == ARCHS[arch][1]
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, size, size))
    assert out.shape == (2, dim) and torch.isfinite(out).all()
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert net.layer4[-1].conv2.out_channels == dim


@pytest.mark.parametrize("arch", NARROW)
def test_narrow_state_dict_has_torchvision_layout(arch: str):
    """A narrow backbone's state dict has exactly the keys of the torchvision ResNet with the same
    blocks per stage (``conv1``, ``bn1``, ``layer1..4``; ``fc`` dropped as in every geolab
    backbone), loads strictly into ``make_backbone(arch)`` (split BN too), and a bare state dict
    of it is recognised as ``arch`` by the weights loader."""
    from geolab.weights import infer_arch

    torch.manual_seed(0)
    net, _ = make_backbone(arch)
    state = net.state_dict()
    blocks = [len(getattr(net, f"layer{i}")) for i in range(1, 5)]
    reference = torchvision.models.ResNet(torchvision.models.resnet.BasicBlock, blocks)
    reference.fc = torch.nn.Identity()
    assert set(state) == set(reference.state_dict())
    assert {k.split(".")[0] for k in state} == {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4"}
    torch.manual_seed(1)
    other, _ = make_backbone(arch, bn_splits=2)
    other.load_state_dict(state, strict=True)
    for k, v in other.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert infer_arch(state) == arch


@pytest.mark.parametrize("arch", NARROW)
def test_narrow_refuses_pretrained_weights(arch: str):
    """There are no pre-trained narrow weights: asking for some is an error that says so."""
    factory = ARCHS[arch][0]
    with pytest.raises(ValueError, match="no pre-trained weights"):
        factory(weights="IMAGENET1K_V1")
    with pytest.raises(ValueError, match="weights=None"):
        NarrowResNet(weights="DEFAULT")


# ----------------------------------------------------------------------------- decode_images
def _pil_rgb(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_decode_images_equals_pil_decode(tmp_path: Path):
    """Each row of the tensor is the PIL decode of that row's file, channels first, uint8."""
    df = manifest_rows(tmp_path, size=24)
    images = decode_images(df, 24, progress=False)
    assert images.shape == (len(df), 3, 24, 24) and images.dtype == torch.uint8
    for i, path in enumerate(df["path"]):
        assert np.array_equal(images[i].permute(1, 2, 0).numpy(), _pil_rgb(path)), path


def test_decode_images_resizes_to_the_training_size(tmp_path: Path):
    """Images of another size are resized (PIL bilinear) to the requested side."""
    from PIL import Image

    df = manifest_rows(tmp_path, size=32)
    images = decode_images(df, 16, progress=False)
    assert images.shape == (len(df), 3, 16, 16)
    for i, path in enumerate(df["path"]):
        want = np.asarray(Image.fromarray(_pil_rgb(path)).resize((16, 16), Image.BILINEAR))
        assert np.array_equal(images[i].permute(1, 2, 0).numpy(), want)


def test_decode_images_refuses_more_than_the_memory_limit(tmp_path: Path):
    """Too many images for memory: one line with the count, the size, the need and what to do,
    before any file is decoded."""
    df = manifest_rows(tmp_path, size=16)
    with pytest.raises(ValueError, match=rf"preloading {len(df)} images at 64 px needs .* GiB .*preload=False"):
        decode_images(df, 64, progress=False, max_bytes=1000)


def test_decode_images_skips_an_unreadable_image(tmp_path: Path):
    """Under ``skip`` an unreadable image is replaced by the next readable row's, with a warning;
    under ``fail`` it is an error naming the file."""
    from geolab.datasets import BadImageError

    df = manifest_rows(tmp_path, size=16)
    break_image(df["path"].iloc[2], "garbage")
    with pytest.warns(BadImageWarning, match="skipping unreadable image"):
        images = decode_images(df, 16, progress=False)
    assert torch.equal(images[2], images[3])
    with pytest.raises(BadImageError, match=Path(df["path"].iloc[2]).name):
        decode_images(df, 16, on_bad_image="fail", progress=False)


def test_datasets_over_preloaded_images_read_no_file(tmp_path: Path, monkeypatch):
    """With ``images=``, ImageDataset and TemporalPairDataset serve the uint8 tensors themselves
    (no transform by default) and never open a file; the key is another revisit's image."""
    import PIL.Image

    df = manifest_rows(tmp_path, size=16)
    images = decode_images(df, 16, progress=False)

    def no_files(*args, **kwargs):
        raise AssertionError("a file was opened")

    monkeypatch.setattr(PIL.Image, "open", no_files)
    single = ImageDataset(df, images=images)
    for i in range(len(df)):
        item = single[i]
        img, label, row = item["query"], item["label"], item["index"]
        assert img.dtype == torch.uint8 and torch.equal(img, images[i]) and row == i
        assert label == single.labels[i]
    pairs = TemporalPairDataset(df, images=images, seed=0)
    for i in range(len(df)):
        item = pairs[i]
        query, key, row = item["query"], item["key"], item["index"]
        assert query.dtype == key.dtype == torch.uint8 and torch.equal(query, images[i]) and row == i
        assert torch.equal(key, images[pairs.positive_row(i)])
        assert df["location_id"].iloc[pairs.positive_row(i)] == df["location_id"].iloc[i]


def test_preloaded_images_must_match_the_rows(tmp_path: Path):
    """A tensor of the wrong length or dtype is refused with what was expected and how to build it."""
    df = manifest_rows(tmp_path, size=16)
    with pytest.raises(ValueError, match=r"decode_images"):
        ImageDataset(df, images=torch.zeros(len(df) - 1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"uint8"):
        TemporalPairDataset(df, images=torch.zeros(len(df), 3, 16, 16))


# ----------------------------------------------------------------------------- batched views
def _noise_images(n: int, size: int = 40, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


VIEWS = {"moco-v2": lambda s: BatchMoCoV2View(s), "supervised": lambda s: BatchSupervisedView(s)}


@pytest.mark.parametrize("name", VIEWS)
def test_batch_view_shape_dtype_and_normalisation(name: str):
    """uint8 (N, 3, H, W) in, float32 (N, 3, s, s) out, ImageNet-normalised: every value lies in
    the range that [0, 1] pixels map to, per channel (a missing /255 or a double normalisation
    falls outside), and the input batch is left unchanged."""
    from lightly.transforms.utils import IMAGENET_NORMALIZE

    x = _noise_images(16)
    before = x.clone()
    torch.manual_seed(0)
    out = VIEWS[name](32)(x)
    assert out.shape == (16, 3, 32, 32) and out.dtype == torch.float32
    mean = torch.tensor(IMAGENET_NORMALIZE["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_NORMALIZE["std"]).view(1, 3, 1, 1)
    low, high = (0 - mean) / std, (1 - mean) / std
    assert (out >= low - 1e-4).all() and (out <= high + 1e-4).all()
    assert out.std() > 0.3  # not collapsed to a constant
    assert torch.equal(x, before)


def test_normalize_matches_torchvision():
    """``_Normalize`` is torchvision's Normalize with lightly's ImageNet statistics."""
    import torchvision.transforms as T
    from lightly.transforms.utils import IMAGENET_NORMALIZE

    x = torch.rand(4, 3, 8, 8)
    want = T.Normalize(IMAGENET_NORMALIZE["mean"], IMAGENET_NORMALIZE["std"])(x)
    assert torch.allclose(_Normalize()(x), want, atol=1e-6)


@pytest.mark.parametrize("name", VIEWS)
def test_batch_view_draws_per_image(name: str):
    """Each image of a batch gets its own random parameters: N copies of one image give N
    different views (one draw for the whole batch would give N equal ones)."""
    x = _noise_images(1).repeat(8, 1, 1, 1)
    torch.manual_seed(0)
    out = VIEWS[name](32)(x).flatten(1)
    dist = torch.cdist(out, out)
    assert (dist + torch.eye(8) * 1e9).min() > 1e-3


@pytest.mark.parametrize("name", VIEWS)
def test_batch_view_follows_torch_seed(name: str):
    """The views come from torch's random state: the same seed gives identical views (what makes
    a resumed preload run equal an uninterrupted one), another seed other views."""
    x = _noise_images(8)
    view = VIEWS[name](32)
    torch.manual_seed(3)
    a = view(x)
    torch.manual_seed(3)
    b = view(x)
    torch.manual_seed(4)
    c = view(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


# ----------------------------------------------------------------------------- preload in training
@pytest.mark.parametrize("method", ["moco-tp-geo", "supervised"])
def test_prepare_data_with_preload_serves_uint8_and_a_batch_view(data: Path, tmp_path: Path, method: str):
    """``preload=True``: the training set's items are the decoded uint8 images and the dataset
    carries the batch view of its method (MoCo-v2 views for MoCo methods, crop + flip for the
    classifiers); without preload there is no batch view and items are float views."""
    cfg = quick_config(data, tmp_path / "run", method, arch="resnet18-w16", preload=True)
    ds, train, _df, _classes = prepare_data(cfg)
    item = ds[0]
    assert item["query"].dtype == torch.uint8 and item["query"].shape == (3, 32, 32)
    want = BatchMoCoV2View if cfg.is_moco else BatchSupervisedView
    assert isinstance(ds.batch_transform, want)
    assert len(ds) == len(train)
    plain, *_ = prepare_data(quick_config(data, tmp_path / "plain", method, arch="resnet18-w16"))
    assert plain.batch_transform is None and plain[0]["query"].dtype == torch.float32


@pytest.mark.parametrize("method", ["moco-tp-geo", "supervised"])
def test_pretrain_with_preload_writes_a_checkpoint(data: Path, tmp_path: Path, method: str):
    """A preload run of a narrow encoder trains a few steps (finite loss) and writes a finished
    checkpoint that the probe can load."""
    cfg = quick_config(data, tmp_path / method, method, arch="resnet18-w16", preload=True, epochs=1, max_steps_per_epoch=2)
    ckpt = load_checkpoint(pretrain(cfg))
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 2 and ckpt["finished"]
    assert ckpt["arch"] == "resnet18-w16" and math.isfinite(ckpt["metrics"]["loss"])
    assert load_backbone(checkpoint_path(cfg.out)).feature_dim == ARCHS["resnet18-w16"][1]


def test_preload_run_interrupted_and_resumed_equals_uninterrupted(data: Path, tmp_path: Path, monkeypatch):
    """A preload run that dies in its second epoch, resumed, ends bit-identical to the
    uninterrupted run (weights, memory bank, optimizer): the batch views are drawn from the
    seeded torch state like everything else. In-process (an exception), as the first test of
    tests/test_resume.py; the next test kills the command-line run instead."""
    from test_resume import assert_same_training_state

    cfg = quick_config(data, tmp_path / "uninterrupted", "moco-tp-geo", arch="resnet18-w16", preload=True,
                       epochs=2, max_steps_per_epoch=2)
    want = load_checkpoint(pretrain(cfg))
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


def test_preload_cli_run_killed_then_resumed_equals_uninterrupted(data: Path, tmp_path: Path):
    """``python -m geolab.train --preload`` killed with SIGKILL in its second epoch keeps the first
    epoch's checkpoint, and ``--resume`` ends with the uninterrupted run's weights (the flag
    reaches the config; the approach of tests/test_resume.py)."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from test_resume import REPO, _cli_args, _env, assert_same_training_state

    cfg = quick_config(data, tmp_path / "uninterrupted", "moco-tp-geo", arch="resnet18-w16", preload=True,
                       epochs=2, max_steps_per_epoch=3)
    want = load_checkpoint(pretrain(cfg))
    cfg = PretrainConfig(**{**cfg.__dict__, "out": tmp_path / "run"})
    metrics = Path(cfg.out) / "metrics.jsonl"
    # a slow compute_loss in the child leaves time to kill it mid-epoch on any machine
    slow = ("import time, geolab.train as t; real = t.compute_loss; "
            "t.compute_loss = lambda *a, **k: (time.sleep(0.5), real(*a, **k))[1]; "
            "import sys; sys.exit(t.main(sys.argv[1:]))")
    proc = subprocess.Popen(
        [sys.executable, "-c", slow, *_cli_args(cfg), "--preload"], env=_env(), cwd=REPO,
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
    ckpt = load_checkpoint(checkpoint_path(cfg.out))
    assert ckpt["epoch"] == 1 and ckpt["config"]["preload"] is True
    got = load_checkpoint(pretrain(PretrainConfig(**{**cfg.__dict__, "resume": True})))
    assert_same_training_state(want, got)


# ----------------------------------------------------------------------------- random init
class _Stop(Exception):
    pass


@pytest.mark.parametrize("method", ["moco-tp", "supervised"])
def test_random_init_is_the_backbone_pretraining_starts_from(data: Path, tmp_path: Path, monkeypatch, method: str):
    """``save_random_init`` writes, as method ``random-init`` at epoch 0, exactly the backbone a
    ``pretrain`` run with the same seed and arch holds when its first step begins (captured
    inside the real loop), which is also ``make_backbone(arch)`` after ``seed_everything(seed)``."""
    cfg = quick_config(data, tmp_path / "run", method, arch="resnet18-w16", seed=3)
    path = save_random_init(PretrainConfig(**{**cfg.__dict__, "out": tmp_path / "init"}))
    ckpt = load_checkpoint(path)
    assert ckpt["method"] == RANDOM_INIT and ckpt["epoch"] == 0 and ckpt["global_step"] == 0
    assert ckpt["arch"] == "resnet18-w16" and ckpt["config"]["epochs"] == 0
    init = load_backbone(path).state_dict()

    seen = {}

    def capture(run, *args, **kwargs):
        seen.update({k: v.detach().clone() for k, v in run.raw_model.backbone.state_dict().items()})
        raise _Stop

    monkeypatch.setattr(train_mod, "_train_epoch", capture)
    with pytest.raises(_Stop):
        pretrain(cfg)
    seed_everything(3)
    made = make_backbone("resnet18-w16")[0].state_dict()
    assert set(init) == set(seen) == set(made)
    for k in init:
        assert torch.equal(init[k], seen[k]) and torch.equal(init[k], made[k]), k
    seed_everything(4)
    assert not torch.equal(make_backbone("resnet18-w16")[0].state_dict()["conv1.weight"], init["conv1.weight"])


# ----------------------------------------------------------------------------- the engine learns
def test_contrastive_engine_learns_near_identity_views():
    """Sanity check of the SSL engine (issue 12): when the two views are the same image plus a
    little noise, geolab's MoCo (``MoCoModel('resnet18-w16')`` with split BN and key shuffle, the
    memory-bank InfoNCE of ``build_contrastive_loss``, ``compute_loss``, the momentum update,
    SGD) must separate 64 random-pattern images: the InfoNCE loss starts at chance,
    ln(queue + 1) = ln 65 = 4.17, and falls far below it.

    Measured (16 px, batch 64 = 8 BN splits of 8, queue 64, T 0.2, lr 0.05, m 0.99, 150 steps,
    one thread, about 6 s): steps 2-11 (once the queue holds real keys) about 3.8; mean of the last 20 steps 1.16-1.18 over
    data seeds 0-3. The floor here is about ln 2 = 0.69, since the queue always holds the
    previous step's key of the same image. Threshold: 0.5 x ln 65 = 2.09.
    (With 4 images per BN split at 16 px the loss only reached 2.3 after 200 steps: the last
    stage is 1x1 there, so BN over 4 images is very noisy.)
    """
    n, size, batch, queue, steps = 64, 16, 64, 64, 150
    seed_everything(0)
    g = torch.Generator().manual_seed(0)
    patterns = torch.rand(n, 3, 4, 4, generator=g)
    images = (torch.nn.functional.interpolate(patterns, size=(size, size), mode="nearest") - 0.5) / 0.25
    cfg = PretrainConfig(method="moco", arch="resnet18-w16", image_size=size, queue_size=queue, temperature=0.2)
    model = MoCoModel("resnet18-w16", proj_dim=cfg.proj_dim, bn_splits=auto_bn_splits(batch, 1))
    criterion = build_contrastive_loss(cfg.temperature, queue, cfg.proj_dim)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9, weight_decay=1e-4)
    losses = []
    for _ in range(steps):
        x = images[torch.randperm(n, generator=g)[:batch]]
        batch_ = {
            "query": x + 0.1 * torch.randn(x.shape, generator=g),
            "key": x + 0.1 * torch.randn(x.shape, generator=g),
            "geo_cluster": torch.zeros(batch, dtype=torch.long),
            "label": torch.zeros(batch, dtype=torch.long),
        }
        model.momentum_update(0.99)
        loss, parts = compute_loss(LossSettings.of(cfg), model, criterion, batch_)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(parts["contrastive"])
    chance = math.log(queue + 1)
    assert np.mean(losses[1:11]) > 0.85 * chance, losses[:11]  # step 1 still sees lightly's random queue
    assert np.mean(losses[-20:]) < 0.5 * chance, losses[-20:]


# ----------------------------------------------------------------------------- bootstrap intervals
def _hit_records(method: str, p: float | np.ndarray, locations: int = 40, per_location: int = 5, seeds=(0,),
                 rng_seed: int = 0) -> list[dict]:
    """Records of ``method`` whose probe got each test image right with probability ``p``
    (a number, or one per location), per-location hits as evaluate_checkpoint stores them."""
    rng = np.random.default_rng(rng_seed)
    sizes = [per_location] * locations
    out = []
    for s in seeds:
        hits = rng.binomial(per_location, np.broadcast_to(p, (locations,))).tolist()
        top1 = sum(hits) / sum(sizes)
        out.append({"method": method, "seed": s, "probe_top1": top1, "probe_f1": top1, "knn_top1": top1,
                    "probe_hits": hits, "knn_hits": hits, "test_location_images": sizes})
    return out


def test_bootstrap_interval_contains_the_mean_and_narrows_with_more_locations():
    """The 95% interval brackets the measured accuracy, and with ten times more test locations
    it is clearly narrower (about 1/sqrt(10)); the metric chooses probe or kNN hits."""
    from geolab.stats import bootstrap_interval

    few, many = _hit_records("a", 0.6, locations=40), _hit_records("a", 0.6, locations=400)
    lo, hi = bootstrap_interval(few, "a")
    assert lo < few[0]["probe_top1"] < hi
    lo2, hi2 = bootstrap_interval(many, "a")
    assert lo2 < many[0]["probe_top1"] < hi2
    assert (hi2 - lo2) < 0.5 * (hi - lo)
    assert 0.03 < hi2 - lo2 < 0.15  # binomial: 2 x 1.96 x sqrt(0.24 / 2000) = 0.043, plus between-location spread
    knn = [{**r, "knn_hits": [0] * 40, "knn_top1": 0.0} for r in few]
    assert bootstrap_interval(knn, "a", metric="knn_top1") == (0.0, 0.0)


def test_bootstrap_interval_resamples_seeds():
    """Seeds that disagree widen the interval beyond the test set's sampling error of one seed;
    the interval is reproducible (seeded)."""
    from geolab.stats import bootstrap_interval

    one = _hit_records("a", 0.6, seeds=(0,))
    spread = one + _hit_records("a", 0.3, seeds=(1,), rng_seed=1) + _hit_records("a", 0.9, seeds=(2,), rng_seed=2)
    lo, hi = bootstrap_interval(one, "a")
    lo3, hi3 = bootstrap_interval(spread, "a")
    assert hi3 - lo3 > 2 * (hi - lo)
    assert bootstrap_interval(spread, "a") == (lo3, hi3)


def test_bootstrap_needs_per_location_hits():
    """Records without hits (an older geolab) or with different test sets give no interval."""
    from geolab.stats import bootstrap_interval, difference_interval

    plain = [{"method": "a", "seed": 0, "probe_top1": 0.5}]
    assert bootstrap_interval(plain, "a") is None
    a, b = _hit_records("a", 0.6), _hit_records("b", 0.6, locations=41)
    assert difference_interval(a + b, "a", "b") is None
    assert bootstrap_interval(a, "a", metric="probe_f1") is None


def test_difference_interval_and_compare_on_clear_and_null_effects():
    """Paired bootstrap: a method better on every test location gets an interval above 0 and
    ``compare`` says it is ahead (either order); identical methods, or two independent draws of
    the same accuracy, get intervals containing 0 and "no difference can be claimed"."""
    from geolab.stats import compare, difference_interval

    rng = np.random.default_rng(5)
    p = rng.uniform(0.2, 0.7, 40)  # locations differ in difficulty
    worse = _hit_records("b", p, rng_seed=1)
    better = [{**r, "method": "a", "probe_hits": [h + 1 for h in r["probe_hits"]],
               "probe_top1": r["probe_top1"] + 40 / 200} for r in worse]
    records = better + worse
    lo, hi = difference_interval(records, "a", "b")
    assert 0 < lo < 0.2 < hi
    assert "a is ahead" in compare(records, "a", "b") and "95% interval" in compare(records, "a", "b")
    assert "a is ahead" in compare(records, "b", "a") and "-20.0 points" in compare(records, "b", "a")

    same = worse + [{**r, "method": "c"} for r in worse]
    assert difference_interval(same, "c", "b") == (0.0, 0.0)
    assert "no difference can be claimed" in compare(same, "c", "b")
    draws = _hit_records("d", p, rng_seed=2) + _hit_records("e", p, rng_seed=3)
    lo, hi = difference_interval(draws, "d", "e")
    assert lo < 0 < hi
    assert "no difference can be claimed" in compare(draws, "d", "e")


def test_compare_reports_seeds_and_falls_back_without_hits():
    """With several paired seeds the sentence says on how many ``a`` was ahead and the seed
    spread; records without hits fall back to the plain seed-spread rule (and one seed to "no claim")."""
    from geolab.stats import compare

    a = _hit_records("a", 0.8, seeds=(0, 1, 2))
    b = _hit_records("b", 0.4, seeds=(0, 1, 2), rng_seed=9)
    text = compare(a + b, "a", "b")
    assert "a is ahead" in text and "ahead on 3 of 3 paired seeds" in text and "seed std" in text
    assert "One seed on a side" not in text
    single = compare(a[:1] + b[:1], "a", "b")  # one seed each: the interval cannot see seed noise, and says so
    assert "a is ahead" in single and "One seed on a side" in single
    strip = [{k: v for k, v in r.items() if not k.endswith("hits")} for r in a + b]
    assert "larger than the seed spread" in compare(strip, "a", "b")
    one = [{k: v for k, v in r.items() if k != "probe_hits"} for r in a[:1] + b[:1]]
    assert "no claim" in compare(one, "a", "b")
    half = a + [{k: v for k, v in r.items() if k != "probe_hits"} for r in b]  # one side without hits
    assert "seed spread" in compare(half, "a", "b")


def test_method_table_shows_intervals_and_training_loss():
    """The table gives each method's 95% interval (``lo-hi`` in percent, around the mean) and
    its mean final training loss; a method without hits or loss gets empty cells."""
    from geolab.stats import method_table

    a = [{**r, "train_loss": 2.0 + r["seed"]} for r in _hit_records("a", 0.8, seeds=(0, 1))]
    plain = [{"method": "random-init", "seed": 0, "probe_top1": 0.3, "probe_f1": 0.3, "knn_top1": 0.3}]
    t = method_table(a + plain)
    lo, hi = (float(v) for v in t.loc["a", "probe_top1 ci"].split("-"))
    assert lo < t.loc["a", "probe_top1 mean"] < hi
    assert t.loc["a", "train loss"] == 2.5
    assert t.loc["random-init", "probe_top1 ci"] == "" and np.isnan(t.loc["random-init", "train loss"])


# ----------------------------------------------------------------------------- run_experiment
TINY = dict(arch="resnet18-w16", image_size=32, epochs=1, batch_size=8, queue_size=16, max_steps_per_epoch=2,
            num_workers=0, device="cpu", geo_k=2)


def test_run_experiment_random_init_records_and_is_reused(data: Path, tmp_path: Path, capsys):
    """``run_experiment("random-init")`` probes the untrained backbone: a record with method
    random-init, epochs 0, per-location hits that add up to its top-1, no training loss; a
    second call (even with other training settings, which do not change untrained weights)
    reuses it, another arch does not. A trained method's record carries its training loss and
    steps, and the two can be compared with an interval."""
    from geolab.stats import compare, method_table

    results = tmp_path / "run" / "records" / "02_demo.jsonl"
    first = run_experiment(RANDOM_INIT, data, seed=0, results_path=results, **TINY)
    assert first["method"] == RANDOM_INIT and first["epochs"] == 0 and not first["reused"]
    assert "train_loss" not in first
    sizes = first["test_location_images"]
    assert len(first["probe_hits"]) == len(sizes) == 4 and sum(sizes) > 0
    assert sum(first["probe_hits"]) / sum(sizes) == pytest.approx(first["probe_top1"])
    assert sum(first["knn_hits"]) / sum(sizes) == pytest.approx(first["knn_top1"])
    assert load_checkpoint(first["checkpoint"])["method"] == RANDOM_INIT

    again = run_experiment(RANDOM_INIT, data, seed=0, results_path=results, **{**TINY, "epochs": 5, "lr": 0.5})
    assert again["reused"] and again["key"] == first["key"] and again["probe_hits"] == first["probe_hits"]
    assert "Reusing random-init (seed 0)" in capsys.readouterr().out
    wider = run_experiment(RANDOM_INIT, data, seed=0, results_path=results, **{**TINY, "arch": "resnet18-w32"})
    assert not wider["reused"] and wider["key"] != first["key"]

    trained = run_experiment("moco-tp", data, seed=0, results_path=results, **TINY)
    assert trained["steps"] == 2 and math.isfinite(trained["train_loss"]) and trained["epochs"] == 1
    records = [first, trained]
    assert "95% interval" in compare(records, "moco-tp", RANDOM_INIT)
    table = method_table(records)
    assert table.loc["moco-tp", "probe_top1 ci"] and table.loc[RANDOM_INIT, "probe_top1 ci"]
