"""The weights people already have: bare torchvision/timm ResNet state dicts (torchgeo's GASSL
file), prefixed ones and geolab's own export are probed like the checkpoint they came from;
the architecture is inferred from the shapes; `geolab export` writes a small torchvision
state dict with a JSON sidecar; `torch.hub.load(..., source="local")` returns the backbone;
files that do not fit fail with messages that name the keys."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from test_evaluate import _official_checkpoint
from test_train import patterned_manifest, quick_config

from geolab.cli import main
from geolab.evaluate import extract_features, load_backbone
from geolab.manifest import load_manifest
from geolab.models import ARCHS, make_backbone
from geolab.train import pretrain
from geolab.weights import WeightsError, clean_state_dict, export_backbone, infer_arch, sidecar_path, weights_kind

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A 2-step moco-geo ResNet-18 checkpoint on the patterned manifest, and its backbone
    as a torchvision ResNet-18 with a random 1000-class fc (what torchvision/timm save)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("weights")
    manifest = patterned_manifest(root)
    ckpt = pretrain(quick_config(manifest, root / "run", "moco-geo", epochs=1, max_steps_per_epoch=2))
    net = torchvision.models.resnet18()
    missing, unexpected = net.load_state_dict(load_backbone(ckpt).state_dict(), strict=False)
    assert missing == ["fc.weight", "fc.bias"] and not unexpected
    return manifest, ckpt, net.state_dict()


def _features(backbone, manifest: Path) -> np.ndarray:
    df = load_manifest(manifest)
    return extract_features(backbone, df, 32, classes=sorted(df["label"].unique()), progress=False)[0]


def _cli(command: str, weights: Path, manifest: Path, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / f"{command}-{weights.stem}.json"
    argv = [command, "--checkpoint", str(weights), "--manifest", str(manifest), "--num-workers", "0",
            "--image-size", "32", "--json", str(out), *extra]
    assert main(argv) == 0
    return json.loads(out.read_text())


def test_bare_prefixed_and_exported_weights_probe_like_the_checkpoint(trained, tmp_path: Path):
    """`geolab probe` and `geolab knn` accept a bare torchvision state dict (with its fc), a
    DDP `module.`-prefixed one and a `geolab export` file, infer resnet18 from the shapes, and
    give exactly the checkpoint's scores (same weights, same features)."""
    manifest, ckpt, state = trained
    bare, prefixed, exported = tmp_path / "bare.pth", tmp_path / "ddp.pth", tmp_path / "backbone.pth"
    torch.save(state, bare)
    torch.save({f"module.{k}": v for k, v in state.items()}, prefixed)
    assert main(["export", str(ckpt), "--out", str(exported)]) == 0
    reference = {c: _cli(c, ckpt, manifest, tmp_path) for c in ("probe", "knn")}
    assert reference["probe"]["weights"] == "geolab"
    for weights, kind in ((bare, "state-dict"), (prefixed, "state-dict"), (exported, "geolab-export")):
        probe, knn = _cli("probe", weights, manifest, tmp_path), _cli("knn", weights, manifest, tmp_path)
        assert probe["weights"] == knn["weights"] == kind and probe["arch"] == "resnet18"
        assert probe["linear_probe"] == reference["probe"]["linear_probe"], weights.name
        assert knn["knn"] == reference["knn"]["knn"], weights.name
    # the export's sidecar supplies what a bare file cannot say
    assert probe["method"] == "moco-geo" and probe["epoch"] == 1


def test_export_is_a_small_torchvision_state_dict_with_a_sidecar(trained, tmp_path: Path):
    """The export loads with weights_only=True into torchvision.models.resnet18() with only
    fc.* missing, gives the checkpoint's features, is under half the checkpoint's size, and its
    JSON says method, arch, image size, normalisation, epochs, data and version."""
    manifest, ckpt, _state = trained
    weights, sidecar = export_backbone(ckpt, tmp_path / "r18.pth")
    assert sidecar == sidecar_path(weights) == tmp_path / "r18.json"
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net = torchvision.models.resnet18()
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert missing == ["fc.weight", "fc.bias"] and unexpected == []
    assert weights.stat().st_size < ckpt.stat().st_size / 2
    net.fc = torch.nn.Identity()
    assert np.allclose(_features(net.eval(), manifest), _features(load_backbone(ckpt), manifest), atol=1e-5)
    meta = json.loads(sidecar.read_text())
    assert (meta["method"], meta["arch"], meta["image_size"], meta["epochs"]) == ("moco-geo", "resnet18", 32, 1)
    assert meta["torchvision_model"] == "torchvision.models.resnet18" and meta["feature_dim"] == 512
    assert meta["normalisation"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert meta["data"]["manifest"] == str(manifest) and meta["geolab_version"]
    import hashlib

    assert meta["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert main(["export", str(ckpt), "--out", str(ckpt)]) == 2  # never overwrite the checkpoint
    # a sidecar left beside other weights is not believed
    torch.save({k: v + 1 if v.is_floating_point() else v for k, v in state.items()}, weights)
    assert load_backbone(weights).geolab_meta["source"] == "state-dict"


def test_export_never_replaces_files_it_did_not_write(trained, tmp_path: Path, capsys):
    """Issue 23: exporting into a geoworld folder as world.pth would have replaced its world.json,
    and an existing .pth was overwritten silently. Now a .pth or .json that an earlier export did
    not write is refused (one line naming it and --force) before anything is loaded or written;
    a file the export wrote itself (its sidecar's format and sha256) is replaced; --force replaces."""
    _manifest, ckpt, _state = trained
    world = tmp_path / "geoworld"
    world.mkdir()
    (world / "world.json").write_text('{"seed": 0}\n')
    assert main(["export", str(ckpt), "--out", str(world / "world.pth")]) == 2
    err = capsys.readouterr().err
    assert "world.json (written beside --out" in err and "not written by geolab export; pass --force" in err
    assert (world / "world.json").read_text() == '{"seed": 0}\n' and not (world / "world.pth").exists()

    theirs = tmp_path / "theirs.pth"
    theirs.write_bytes(b"someone's weights")
    assert main(["export", str(ckpt), "--out", str(theirs)]) == 2
    assert "--out" in capsys.readouterr().err and theirs.read_bytes() == b"someone's weights"
    assert not sidecar_path(theirs).exists()

    weights, sidecar = export_backbone(ckpt, tmp_path / "mine.pth")
    export_backbone(ckpt, weights)  # its own export: replaced without --force
    weights.write_bytes(b"edited since the export")  # the sidecar's sha256 no longer matches: not ours
    with pytest.raises(FileExistsError, match=r"mine\.pth already exists and was not written by geolab export"):
        export_backbone(ckpt, weights)
    assert main(["export", str(ckpt), "--out", str(world / "world.pth"), "--force"]) == 0
    assert json.loads((world / "world.json").read_text())["format"] == "geolab-backbone"
    assert main(["export", str(ckpt), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a folder; give a file name" in err and ".tmp" not in err


def test_an_arch_that_disagrees_with_a_geolab_checkpoint_is_an_error(trained, tmp_path: Path, capsys):
    """Issue 23: `probe --arch resnet50` on a ResNet-18 geolab checkpoint was silently ignored (the
    result then read as a ResNet-50's). For one file and one --arch (probe, knn, export) a
    disagreement is one line naming both archs; the checkpoint's own arch, or none, is fine;
    probe_weights keeps applying arch to official files and state dicts only."""
    manifest, ckpt, state = trained
    for argv in (["probe", "--checkpoint", str(ckpt), "--manifest", str(manifest), "--num-workers", "0"],
                 ["knn", "--checkpoint", str(ckpt), "--manifest", str(manifest), "--num-workers", "0"],
                 ["export", str(ckpt), "--out", str(tmp_path / "b.pth")]):
        assert main([*argv, "--arch", "resnet50"]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--arch resnet50 disagrees with the file" in err[0], err
        assert "drop --arch or pass --arch resnet18" in err[0]
    assert not (tmp_path / "b.pth").exists()
    weights, _side = export_backbone(ckpt, tmp_path / "b.pth", arch="resnet18")
    assert load_backbone(weights, arch="resnet18").geolab_meta["arch"] == "resnet18"


def test_torch_hub_local_returns_the_backbone(trained, tmp_path: Path):
    """torch.hub.load(<checkout>, "resnet18_gassl", source="local", weights=PATH) returns the
    exported backbone (no network); the ResNet-50 entry point refuses ResNet-18 weights and
    no weights at all, saying what to pass."""
    manifest, ckpt, _state = trained
    weights, _ = export_backbone(ckpt, tmp_path / "hub.pth")
    hub = torch.hub.load(str(ROOT), "resnet18_gassl", source="local", weights=str(weights))
    assert hub.geolab_meta["source"] == "geolab-export" and hub.feature_dim == 512
    assert np.allclose(_features(hub, manifest), _features(load_backbone(ckpt), manifest), atol=1e-5)
    assert {f"{a}_gassl" for a in ARCHS if a.isidentifier()} <= set(dir(_hubconf()))
    with pytest.raises(WeightsError, match="fits resnet18"):
        torch.hub.load(str(ROOT), "resnet50_gassl", source="local", weights=str(weights))
    with pytest.raises(ValueError, match="weights=PATH"):
        torch.hub.load(str(ROOT), "resnet50_gassl", source="local")


def _hubconf():
    import importlib.util

    spec = importlib.util.spec_from_file_location("geolab_hubconf", ROOT / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("arch", list(ARCHS))
def test_arch_is_inferred_from_the_shapes(arch: str):
    """Every architecture of geolab.models.ARCHS is recognised from a state dict of its
    shapes (torchvision layout with a classifier, built on the meta device: no memory)."""
    with torch.device("meta"):
        net, dim = make_backbone(arch)
        state = {**net.state_dict(), "fc.weight": torch.empty(1000, dim), "fc.bias": torch.empty(1000)}
    clean, report = clean_state_dict({f"backbone.{k}": v for k, v in state.items()})
    assert report == {"stripped": ["backbone."], "dropped": ["backbone.fc.weight", "backbone.fc.bias"]}
    found = infer_arch(clean)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in make_backbone(found)[0].state_dict().items()}
    assert shapes == {k: v.shape for k, v in net.state_dict().items()}


def test_nested_old_and_official_layouts(trained, tmp_path: Path):
    """A lightly/Lightning-style file ({"state_dict": {"backbone.*"}}), a torchvision file
    without num_batches_tracked (older releases) and an official GASSL file without an `arch`
    entry all load with the same weights (the official one's arch inferred, not assumed)."""
    _manifest, ckpt, state = trained
    reference = load_backbone(ckpt).state_dict()
    nested, old = tmp_path / "lightning.ckpt", tmp_path / "old.pth"
    torch.save({"epoch": 3, "state_dict": {f"backbone.{k}": v for k, v in state.items() if not k.startswith("fc.")}}, nested)
    torch.save({k: v for k, v in state.items() if "num_batches_tracked" not in k}, old)
    for path in (nested, old):
        loaded = load_backbone(path).state_dict()
        assert all(torch.equal(loaded[k], reference[k]) for k in reference if "num_batches_tracked" not in k), path
    official = tmp_path / "moco.pth.tar"
    _official_checkpoint(official, "resnet18")
    raw = torch.load(official, weights_only=True)
    del raw["arch"]
    torch.save(raw, official)
    assert weights_kind(raw) == "official-gassl"
    assert load_backbone(official).geolab_meta["arch"] == "resnet18"


def test_weights_that_do_not_fit_name_the_keys(trained, tmp_path: Path, capsys):
    """A state dict with a projection head, one loaded as the wrong arch, two keys that
    collide once prefixes are stripped, and a file of no tensors fail with messages naming
    the keys; `geolab probe` turns them into exit status 2 without a traceback."""
    manifest, _ckpt, state = trained
    with_head = tmp_path / "with_head.pth"
    torch.save({**state, "projection_head.layers.0.weight": torch.zeros(4, 512)}, with_head)
    with pytest.raises(WeightsError, match=r"1 unexpected: projection_head\.layers\.0\.weight"):
        load_backbone(with_head)
    r18 = tmp_path / "r18.pth"
    torch.save(state, r18)
    with pytest.raises(WeightsError, match=r"do not fit resnet50: .*layer1\.0\.conv3\.weight.*fits resnet18"):
        load_backbone(r18, arch="resnet50")
    collide = tmp_path / "collide.pth"
    torch.save({"conv1.weight": state["conv1.weight"], "module.conv1.weight": state["conv1.weight"]}, collide)
    with pytest.raises(WeightsError, match="'conv1.weight' and 'module.conv1.weight'"):
        load_backbone(collide)
    junk = tmp_path / "junk.pth"
    torch.save({"epoch": 3, "note": "no tensors"}, junk)
    with pytest.raises(WeightsError, match="found: epoch, note"):
        load_backbone(junk)
    for bad in (with_head, junk):
        assert main(["probe", "--checkpoint", str(bad), "--manifest", str(manifest)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("geolab: error: ") and "Traceback" not in err
    with pytest.raises(WeightsError, match="not one geolab builds"):
        load_backbone(r18, arch="vit_b_16")


def test_probe_weights_puts_every_kind_in_one_table(trained, tmp_path: Path):
    """probe_weights (the notebooks' call) gives one row per file with its kind, arch and
    scores; the same weights as checkpoint, export and torchvision state dict score alike."""
    from geolab.evaluate import probe_weights

    manifest, ckpt, state = trained
    exported, _ = export_backbone(ckpt, tmp_path / "e.pth")
    bare = tmp_path / "tv.pth"
    torch.save(state, bare)
    table = probe_weights({"run": ckpt, "export": exported, "torchvision": bare}, load_manifest(manifest), 32, k=5)
    assert list(table.index) == ["run", "export", "torchvision"]
    assert table["weights"].tolist() == ["geolab", "geolab-export", "state-dict"]
    assert set(table["arch"]) == {"resnet18"} and table.loc["export", "method"] == "moco-geo"
    for col in ("probe_top1", "probe_f1", "knn_top1"):
        assert table[col].nunique() == 1 and 0.0 <= table[col].iloc[0] <= 1.0
