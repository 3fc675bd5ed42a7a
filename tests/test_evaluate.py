"""Frozen-feature evaluation: weighted kNN equals a brute-force reference, the linear probe
(both solvers) separates separable features, official GASSL checkpoints load into geolab's
backbone (mismatches name the keys), and a geolab checkpoint is probed end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from test_train import patterned_manifest, quick_config

from geolab.config import ProbeConfig
from geolab.evaluate import evaluate_checkpoint, extract_features, knn, linear_probe, load_backbone
from geolab.finetune import fine_tune
from geolab.manifest import load_manifest, select_split
from geolab.official_weights import OfficialCheckpointError, load_official_backbone
from geolab.checkpoints import CheckpointError
from geolab.train import pretrain


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _separable(n: int, d: int = 16, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, d))
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.normal(0, 1, (n, d))).astype(np.float32), y


def test_knn_matches_bruteforce_weighted_vote():
    """kNN top-1 equals a loop computing cosine similarity, the k nearest, and votes
    weighted by exp(sim / T) on the same random features."""
    rng = np.random.default_rng(1)
    bank, bank_y = rng.normal(size=(50, 8)), rng.integers(0, 4, 50)
    query, query_y = rng.normal(size=(30, 8)), rng.integers(0, 4, 30)
    k, t = 5, 0.07
    correct = 0
    bn = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    for q, y in zip(query, query_y):
        sims = bn @ (q / np.linalg.norm(q))
        nearest = np.argsort(-sims)[:k]
        votes = np.zeros(4)
        for j in nearest:
            votes[bank_y[j]] += np.exp(sims[j] / t)
        correct += int(votes.argmax() == y)
    got = knn(bank, bank_y, query, query_y, k=k, temperature=t, chunk=7)["top1"]
    assert got == pytest.approx(correct / len(query))


@pytest.mark.parametrize("backend", ["sklearn", "torch"])
def test_linear_probe_separates_separable_features(backend: str):
    """Both probe solvers reach high top-1 and macro-F1 on separable clusters, near chance on
    shuffled labels (so the score measures the features)."""
    x, y = _separable(300)
    scores = linear_probe(x[:200], y[:200], x[200:], y[200:], backend=backend, epochs=100)
    assert scores["top1"] > 0.9 and scores["f1"] > 0.9
    shuffled = np.random.default_rng(3).permutation(y[:200])
    assert linear_probe(x[:200], shuffled, x[200:], y[200:], backend=backend, epochs=100)["top1"] < 0.7
    with pytest.raises(ValueError, match="two classes"):
        linear_probe(x[:10], np.zeros(10, dtype=int), x[10:20], y[10:20])


def _official_checkpoint(path: Path, arch: str = "resnet18") -> torchvision.models.ResNet:
    """Write a file with the official GASSL layout (MoCo-v2 code): module.encoder_q.* with an
    MLP fc (fc.0, fc.2), module.encoder_k.*, the queue; return the query ResNet."""
    torch.manual_seed(3)
    net = getattr(torchvision.models, arch)()
    dim = net.fc.in_features
    net.fc = torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.ReLU(), torch.nn.Linear(dim, 128))
    state = {}
    for k, v in net.state_dict().items():
        state[f"module.encoder_q.{k}"] = v
        state[f"module.encoder_k.{k}"] = v.clone()
    state["module.queue"] = torch.randn(128, 64)
    state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    torch.save({"epoch": 200, "arch": arch, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}, path)
    return net


def test_official_checkpoint_loads_into_geolab_backbone(tmp_path: Path):
    """An official-layout .pth.tar loads (weights_only) into geolab's backbone: same weights,
    same pooled features as the original query encoder without its MLP."""
    path = tmp_path / "moco_tp_geo.pth.tar"
    net = _official_checkpoint(path)
    backbone = load_official_backbone(path)
    assert backbone.geolab_meta["arch"] == "resnet18" and backbone.geolab_meta["epoch"] == 200
    net.fc = torch.nn.Identity()
    net.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(backbone(x), net(x), atol=1e-5)
    # evaluate.load_backbone recognises the official layout too
    assert load_backbone(path).geolab_meta["source"] == "official-gassl"


def test_official_checkpoint_mismatch_names_the_keys(tmp_path: Path):
    """Loading a ResNet-18 official checkpoint as ResNet-50, or a file without encoder_q
    keys, fails with messages that name keys."""
    path = tmp_path / "r18.pth.tar"
    _official_checkpoint(path)
    with pytest.raises(OfficialCheckpointError) as err:
        load_official_backbone(path, arch="resnet50")
    assert "layer1.0.conv3.weight" in str(err.value) and "missing" in str(err.value)
    other = tmp_path / "other.pth.tar"
    torch.save({"state_dict": {"encoder.conv1.weight": torch.zeros(1)}}, other)
    with pytest.raises(OfficialCheckpointError, match="encoder.conv1.weight"):
        load_official_backbone(other)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A 2-step moco-geo checkpoint on the patterned manifest (train/val splits only)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("eval")
    manifest = patterned_manifest(root)
    cfg = quick_config(manifest, root / "run", "moco-geo", epochs=1, max_steps_per_epoch=2)
    return manifest, pretrain(cfg)


def test_probe_and_knn_of_a_geolab_checkpoint(trained):
    """evaluate_checkpoint extracts frozen features once, fits the linear probe and kNN on the
    train split and scores the val split when there is no test split (and says so)."""
    manifest, ckpt = trained
    res = evaluate_checkpoint(ProbeConfig(checkpoint=ckpt, manifest=manifest, num_workers=0), progress=False)
    assert res["method"] == "moco-geo" and res["arch"] == "resnet18" and res["image_size"] == 32
    assert res["test_split"] == "val" and res["train_images"] > res["test_images"] > 0
    assert 0.0 <= res["linear_probe"]["top1"] <= 1.0 and 0.0 <= res["linear_probe"]["f1"] <= 1.0
    assert 0.0 <= res["knn"]["top1"] <= 1.0 and res["knn"]["k"] == 20


def test_features_follow_table_order_and_backbone_errors(trained, tmp_path: Path):
    """extract_features returns one row per table row, in order, with the given class order;
    the loaded backbone equals the checkpoint's query encoder; a corrupt arch is refused."""
    manifest, ckpt = trained
    df = load_manifest(manifest)
    backbone = load_backbone(ckpt)
    classes = sorted(df["label"].unique())
    val = select_split(df, "val")
    feats, labels = extract_features(backbone, val, 32, classes=classes, progress=False)
    assert feats.shape == (len(val), 512) and feats.dtype == np.float32
    assert labels.tolist() == [classes.index(v) for v in val["label"]]
    one, _ = extract_features(backbone, val.iloc[[2]], 32, classes=classes, progress=False)
    assert np.allclose(one[0], feats[2], atol=1e-4)

    state = torch.load(ckpt, weights_only=True)
    state["arch"] = "resnet50"
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match="resnet50"):
        load_backbone(bad)


def test_eval_inputs_are_read_once_and_again_after_a_file_changes(trained, tmp_path: Path, monkeypatch):
    """Small tables are decoded once per process: the second pass reads no file and gives the same
    features as streaming every image; an image rewritten on disk is read again."""
    import shutil

    import geolab.evaluate as ev
    from PIL import Image

    manifest, ckpt = trained
    df = load_manifest(manifest)
    val = select_split(df, "val").copy()
    copies = tmp_path / "images"
    copies.mkdir()
    val["path"] = [shutil.copy(p, copies / f"{i}.png") for i, p in enumerate(val["path"])]
    backbone, classes = load_backbone(ckpt), sorted(df["label"].unique())
    monkeypatch.setattr(ev, "_EVAL_CACHE", {})
    first, labels = extract_features(backbone, val, 32, classes=classes, progress=False)
    opened = []
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a) or pytest.fail("read a file again"))
    again, _ = extract_features(backbone, val, 32, classes=classes, progress=False)
    monkeypatch.undo()
    assert np.array_equal(first, again) and not opened
    monkeypatch.setattr(ev, "_EVAL_CACHE_BYTES", 0)  # too big to keep: the DataLoader path
    streamed, streamed_labels = extract_features(backbone, val, 32, classes=classes, progress=False)
    assert np.array_equal(first, streamed) and np.array_equal(labels, streamed_labels)
    monkeypatch.undo()
    monkeypatch.setattr(ev, "_EVAL_CACHE", dict(ev._EVAL_CACHE))
    Image.new("RGB", (32, 32), (255, 0, 0)).save(val["path"].iloc[0])  # a new size on disk
    changed, _ = extract_features(backbone, val, 32, classes=classes, progress=False)
    assert not np.allclose(changed[0], first[0]) and np.array_equal(changed[1:], first[1:])


def test_fine_tune_runs_end_to_end(trained):
    """Fine-tuning copies the backbone (the original is unchanged) and reports top-1 and F1."""
    manifest, ckpt = trained
    df = load_manifest(manifest)
    backbone = load_backbone(ckpt)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    scores = fine_tune(backbone, select_split(df, "train"), select_split(df, "val"), 32, epochs=1, batch_size=8,
                       device="cpu", progress=False)
    assert set(scores) == {"top1", "f1", "steps"}
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())


def test_cli_probe_knn_and_pretrain_errors(trained, tmp_path: Path, capsys):
    """`geolab probe` / `geolab knn` print and write the same result as the library; a
    missing checkpoint or an existing run without --resume exits 2 with a one-line message."""
    import json

    from geolab.cli import main

    manifest, ckpt = trained
    out = tmp_path / "probe.json"
    assert main(["probe", "--checkpoint", str(ckpt), "--manifest", str(manifest), "--num-workers", "0",
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert "linear_probe" in res and "knn" not in res and res["test_split"] == "val"
    assert main(["knn", "--checkpoint", str(ckpt), "--manifest", str(manifest), "--num-workers", "0", "--k", "5"]) == 0
    assert '"k": 5' in capsys.readouterr().out
    assert main(["knn", "--checkpoint", str(tmp_path / "nope.pt"), "--manifest", str(manifest)]) == 2
    run_dir = ckpt.parent.parent
    argv = ["pretrain", "--method", "moco-geo", "--manifest", str(manifest), "--out", str(run_dir), "--arch", "resnet18"]
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err


def test_json_replaces_only_a_result_it_wrote(trained, tmp_path: Path, capsys):
    """Issue 23: `probe --json PATH` silently replaced whatever PATH held. By geolab.io's output rule
    it now writes (atomically) a new file or one it wrote (recognised by its "format"), refuses
    someone's file before any work (one line, exit 2, the file unchanged) and replaces it with
    --force; the manifest itself is refused even with --force."""
    import json

    from geolab.cli import main

    manifest, ckpt = trained
    argv = ["knn", "--checkpoint", str(ckpt), "--manifest", str(manifest), "--num-workers", "0", "--k", "5", "--json"]
    theirs = tmp_path / "theirs.json"
    theirs.write_text('{"my": "numbers"}\n')
    assert main([*argv, str(theirs)]) == 2
    err = capsys.readouterr().err
    assert f"--json {theirs} already exists and was not written by geolab knn; pass --force" in err
    assert theirs.read_text() == '{"my": "numbers"}\n'
    assert main([*argv, str(theirs), "--force"]) == 0
    assert json.loads(theirs.read_text())["format"] == "geolab-evaluation"
    assert main([*argv, str(theirs)]) == 0  # now its own: rewritten without --force
    assert main(["probe", *argv[1:-3], "--json", str(theirs)]) == 0  # probe's and knn's results are one kind
    capsys.readouterr()
    assert main([*argv, str(manifest), "--force"]) == 2
    assert "is the input" in capsys.readouterr().err


def test_select_probe_C_picks_the_best_val_score_and_breaks_ties_toward_small_C(monkeypatch):
    """Every grid value is fitted once and scored on val; the best val top-1 wins, and a tie
    goes to the stronger regularisation (the smaller C), whatever the grid's order."""
    from geolab import evaluate

    val_top1 = {0.001: 0.40, 0.01: 0.55, 0.1: 0.55, 1.0: 0.50}
    fitted = []

    def fake_probe(tx, ty, vx, vy, *, backend, C, seed):
        fitted.append(C)
        return {"top1": val_top1[C]}

    monkeypatch.setattr(evaluate, "linear_probe", fake_probe)
    x, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    C, search = evaluate.select_probe_C(x, y, x, y, grid=(1.0, 0.1, 0.001, 0.01))
    assert C == 0.01 and sorted(fitted) == sorted(val_top1)
    assert search == {"0.001": 0.4, "0.01": 0.55, "0.1": 0.55, "1.0": 0.5}


def test_the_probe_chooses_C_on_val_and_scores_test(trained):
    """evaluate_checkpoint with C=None searches the grid on the val split and says which C
    scored test; a fixed C is used as given, with no search."""
    from geolab.manifest import save_manifest

    manifest, ckpt = trained
    df = load_manifest(manifest)
    val_locations = sorted(df.loc[df.split == "val", "location_id"].astype(str).unique())
    df.loc[df.location_id.astype(str).isin(val_locations[::2]), "split"] = "test"
    manifest = save_manifest(df, Path(manifest).with_name("with_test.csv"))
    chosen = evaluate_checkpoint(ProbeConfig(checkpoint=str(ckpt), manifest=str(manifest), num_workers=0, device="cpu"),
                                 knn_eval=False, progress=False)["linear_probe"]
    from geolab.config import PROBE_C_GRID

    assert set(chosen["val_top1_by_C"]) == {str(c) for c in PROBE_C_GRID}
    assert chosen["val_top1_by_C"][str(chosen["C"])] == max(chosen["val_top1_by_C"].values())
    fixed = evaluate_checkpoint(ProbeConfig(checkpoint=str(ckpt), manifest=str(manifest), num_workers=0, device="cpu", C=0.5),
                                knn_eval=False, progress=False)["linear_probe"]
    assert fixed["C"] == 0.5 and "val_top1_by_C" not in fixed
