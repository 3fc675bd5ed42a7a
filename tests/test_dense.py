"""Tests of the dense transfer task (:mod:`geolab.dense`): masks stay aligned with their
images, the model learns a learnable mask, a frozen encoder stays frozen, and IoU is right.

The data is made here: small PNG images whose masks follow their pixels (bright squares are
class 1 "building", blue discs are class 2 "water"), written with a valid manifest.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from geolab.config import DenseConfig
from geolab.dense import (
    GEOWORLD_MASK_CLASSES,
    SegmentationDataset,
    SegmentationModel,
    confusion_matrix,
    evaluate_dense,
    fit_dense,
    scores_from_confusion,
    segmentation_scores,
    train_dense,
)
from geolab.paper import PAPER_TRANSFER, paper_transfer_table
from geolab.manifest import ManifestError, load_manifest, save_manifest
from geolab.models import make_backbone


def _scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A noisy green-brown ground with bright squares (class 1) and blue discs (class 2)."""
    img = np.empty((size, size, 3), dtype=np.float64)
    img[..., 0] = rng.uniform(60, 110)
    img[..., 1] = rng.uniform(90, 140)
    img[..., 2] = rng.uniform(40, 80)
    img += rng.normal(0, 8, size=img.shape)
    mask = np.zeros((size, size), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(int(rng.integers(1, 3))):  # water
        cy, cx, r = rng.integers(4, size - 4), rng.integers(4, size - 4), rng.integers(3, max(4, size // 6))
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img[disc] = (30, 60, 170) + rng.normal(0, 8, size=(int(disc.sum()), 3))
        mask[disc] = 2
    for _ in range(int(rng.integers(2, 5))):  # buildings
        s = int(rng.integers(4, max(5, size // 4)))
        y, x = rng.integers(0, size - s), rng.integers(0, size - s)
        img[y : y + s, x : x + s] = (235, 225, 215) + rng.normal(0, 6, size=(s, s, 3))
        mask[y : y + s, x : x + s] = 1
    return np.clip(img, 0, 255).astype(np.uint8), mask


def make_seg_manifest(tmp_path: Path, n_train: int = 48, n_test: int = 16, size: int = 32, seed: int = 0) -> Path:
    """Write images, their masks and a manifest (train and test splits) under ``tmp_path``."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_train + n_test):
        img, mask = _scene(rng, size)
        d = tmp_path / "images"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"im{i:03d}.png")
        Image.fromarray(mask).save(d / f"im{i:03d}_mask.png")
        rows.append(
            {
                "image_id": f"im{i:03d}",
                "location_id": f"loc{i:03d}",
                "path": f"images/im{i:03d}.png",
                "mask_path": f"images/im{i:03d}_mask.png",
                "timestamp": pd.Timestamp("2018-06-01T12:00:00Z") + pd.Timedelta(days=i),
                "lat": float(rng.uniform(-60, 60)),
                "lon": float(rng.uniform(-170, 170)),
                "label": "single-unit_residential",
                "split": "train" if i < n_train else "test",
            }
        )
    return save_manifest(pd.DataFrame(rows), tmp_path / "manifest.parquet")


QUICK = dict(image_size=32, batch_size=16, epochs=1, progress=False, device="cpu", arch="resnet18")


# ----------------------------------------------------------------------------- data
def test_flips_keep_mask_aligned_with_image(tmp_path):
    """Training flips move the image and its mask together: after any flip, the mask is
    still the image's red channel thresholded (an asymmetric picture, so a flip of only one of
    the two would show), and both flipped and unflipped samples occur."""
    size = 16
    rng = np.random.default_rng(1)
    red = np.zeros((size, size), dtype=np.uint8)
    red[2:7, 1:12] = 250  # an off-centre bar and a corner block: no flip symmetry
    red[10:15, 12:15] = 250
    img = np.stack([red, rng.integers(0, 255, (size, size)), rng.integers(0, 255, (size, size))], -1).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray((red > 128).astype(np.uint8)).save(tmp_path / "a_mask.png")
    df = pd.DataFrame({"path": [str(tmp_path / "a.png")], "mask_path": [str(tmp_path / "a_mask.png")], "split": ["train"]})
    ds = SegmentationDataset(df, size, split="train")
    assert ds.augment
    mean_r, std_r = 0.485, 0.229
    seen = set()
    torch.manual_seed(0)
    for _ in range(40):
        x, y = ds[0]
        assert x.shape == (3, size, size) and y.shape == (size, size) and y.dtype == torch.long
        r = (x[0] * std_r + mean_r) * 255.0  # undo the normalisation of the red channel
        assert torch.equal((r > 128).long(), y)
        seen.add(bool(torch.equal(y, torch.from_numpy((red > 128).astype(np.int64)))))
    assert seen == {True, False}  # both unflipped and flipped samples were drawn

    ev = SegmentationDataset(df, size, split="train", augment=False)
    for _ in range(5):
        assert torch.equal(ev[0][1], torch.from_numpy((red > 128).astype(np.int64)))


def test_dataset_resizes_masks_with_nearest_neighbours(tmp_path):
    """A mask resized to the model's input keeps class ids only (no blended ids like 0.5)."""
    manifest = make_seg_manifest(tmp_path, n_train=2, n_test=1, size=32)
    ds = SegmentationDataset(load_manifest(manifest), 20, split="train", augment=False)
    x, y = ds[0]
    assert x.shape == (3, 20, 20) and y.shape == (20, 20)
    assert set(torch.unique(y).tolist()) <= {0, 1, 2}


def test_dataset_errors_name_row_and_column(tmp_path):
    """Bad masks are reported with the manifest, row and column: an RGB mask, a class id out
    of range, a table without mask_path."""
    manifest = make_seg_manifest(tmp_path, n_train=3, n_test=1, size=16)
    df = load_manifest(manifest)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(df.loc[1, "mask_path"])
    with pytest.raises(ManifestError, match="single-channel") as err:
        SegmentationDataset(df, 16, split="train")
    assert err.value.row == 1 and err.value.column == "mask_path"

    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(df.loc[1, "mask_path"])
    with pytest.raises(ManifestError, match="outside 0..3") as err:
        SegmentationDataset(df, 16, split="train", num_classes=4)
    assert err.value.row == 1

    with pytest.raises(ManifestError, match="mask_path"):
        SegmentationDataset(df.drop(columns="mask_path"), 16, split="train")


# ----------------------------------------------------------------------------- metrics
def test_iou_matches_hand_computed_example():
    """IoU per class, mIoU and pixel accuracy on a 2x4 example worked by hand; class 3 is in
    neither the prediction nor the target, so its IoU is undefined (None) and left out of the
    mean; ignored pixels (255) are not counted."""
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 0, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 3]])
    # counted pixels (7): (t,p) = (0,0) (0,1) (1,1) (1,1) (2,2) (2,0) (0,0)
    # class 0: TP 2, FP 1 (the 2 predicted as 0), FN 1 (the 0 predicted as 1) -> 2/4
    # class 1: TP 2, FP 1, FN 0 -> 2/3;  class 2: TP 1, FP 0, FN 1 -> 1/2;  class 3: 0/0
    s = segmentation_scores(pred, target, num_classes=4, ignore_index=255)
    assert s["per_class_iou"] == {
        "background": pytest.approx(0.5),
        "building": pytest.approx(2 / 3),
        "water": pytest.approx(0.5),
        "road": None,
    }
    assert s["miou"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert s["pixel_acc"] == pytest.approx(5 / 7)
    cm = confusion_matrix(pred, target, 4, 255)
    assert cm.tolist() == [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    iou, miou, _ = scores_from_confusion(cm)
    assert math.isnan(iou[3]) and miou == pytest.approx(s["miou"])
    json.dumps(s)  # JSON-ready: no NaN


def test_class_predicted_but_absent_counts_as_zero():
    """A class only predicted (never true) has IoU 0 and does lower the mean."""
    s = segmentation_scores(torch.tensor([1, 1]), torch.tensor([0, 0]), num_classes=2)
    assert s["per_class_iou"] == {"background": 0.0, "building": 0.0} and s["miou"] == 0.0


# ----------------------------------------------------------------------------- model and training
def _model(freeze: bool, num_classes: int = 3) -> SegmentationModel:
    torch.manual_seed(0)
    net, _ = make_backbone("resnet18")
    return SegmentationModel(net, num_classes, freeze_backbone=freeze)


def test_model_output_is_per_pixel_logits():
    """Both decoders give (N, classes, H, W) logits at the input's size, for layer3 and layer4;
    the encoder reads its stage widths from the backbone (ResNet-18 and the paper's ResNet-50)."""
    net, _ = make_backbone("resnet18")
    for decoder in ("fpn", "fcn"):
        for depth in ("layer3", "layer4"):
            m = SegmentationModel(net, 5, decoder=decoder, encoder_depth=depth)
            assert m(torch.zeros(2, 3, 32, 48)).shape == (2, 5, 32, 48)
    r50, _ = make_backbone("resnet50")  # the paper's backbone: Bottleneck stages, 4x wider
    assert SegmentationModel(r50, 2).encoder.channels == [256, 512, 1024, 2048]


def test_frozen_backbone_keeps_its_weights_while_the_decoder_learns(tmp_path):
    """freeze_backbone: every encoder parameter and BatchNorm statistic is unchanged after
    training, while the decoder changed; without it, the encoder changes too."""
    ds = SegmentationDataset(load_manifest(make_seg_manifest(tmp_path, n_train=16, n_test=2)), 32, split="train")
    cfg = DenseConfig(**{**QUICK, "epochs": 1, "batch_size": 8})
    for freeze in (True, False):
        model = _model(freeze)
        enc0 = {k: v.clone() for k, v in model.encoder.state_dict().items()}
        dec0 = {k: v.clone() for k, v in model.decoder.state_dict().items()}
        torch.manual_seed(0)
        fit_dense(model, ds, cfg)
        enc_same = all(torch.equal(enc0[k], v) for k, v in model.encoder.state_dict().items())
        assert enc_same is freeze
        assert not all(torch.equal(dec0[k], v) for k, v in model.decoder.state_dict().items())


def test_training_learns_a_learnable_mask(tmp_path):
    """On images whose masks follow their pixels, four epochs of fine-tuning from a random
    init lower the loss and lift the test mIoU well above that of the untrained model
    (measured: loss 1.15 -> 0.67, mIoU 0.09 -> 0.53)."""
    df = load_manifest(make_seg_manifest(tmp_path, n_train=32, n_test=16))
    train = SegmentationDataset(df, 32, split="train")
    test = SegmentationDataset(df, 32, split="test")
    model = _model(freeze=False)
    before = evaluate_dense(model, test, 3)["miou"]
    torch.manual_seed(0)
    losses = fit_dense(model, train, DenseConfig(**{**QUICK, "epochs": 4, "lr": 3e-3}))
    after = evaluate_dense(model, test, 3)
    assert losses[-1] < 0.7 * losses[0]
    assert after["miou"] > before + 0.2
    assert after["per_class_iou"]["building"] > 0.3


def test_train_dense_end_to_end_is_seeded_and_leaves_the_backbone_alone(tmp_path):
    """train_dense reads the manifest, infers 3 classes from the masks, scores the test split,
    returns JSON-ready results, gives the same numbers twice on the CPU, and never trains the
    caller's backbone (it works on a copy)."""
    manifest = make_seg_manifest(tmp_path, n_train=24, n_test=8)
    net, _ = make_backbone("resnet18")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cfg = DenseConfig(**{**QUICK, "epochs": 2})
    a = train_dense(net, manifest, cfg)
    b = train_dense(net, manifest, cfg)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert a["num_classes"] == 3 and a["eval_split"] == "test" and (a["n_train"], a["n_test"]) == (24, 8)
    assert set(a["per_class_iou"]) == {"background", "building", "water"}
    assert a["miou"] == b["miou"] and a["train_loss"] == b["train_loss"]
    assert 0.0 <= a["miou"] <= 1.0 and a["epochs"] == 2 and a["wall_s"] > 0
    json.dumps(a)
    c = train_dense(net, manifest, cfg, per_image=True)  # one confusion matrix per test image, summing to the scores
    assert c["image_confusion"].shape == (8, 3, 3) and c["miou"] == a["miou"]
    assert scores_from_confusion(c["image_confusion"].sum(0))[1] == pytest.approx(a["miou"])


def test_train_dense_init_choices(tmp_path):
    """None means a random backbone, 'imagenet' is refused with a reason (offline), and a
    manifest without a test split is scored on val."""
    manifest = make_seg_manifest(tmp_path, n_train=8, n_test=4)
    with pytest.raises(ValueError, match="offline"):
        train_dense("imagenet", manifest, DenseConfig(**QUICK))
    df = load_manifest(manifest)
    df.loc[df["split"] == "test", "split"] = "val"
    with pytest.warns(UserWarning, match="'val'"):
        r = train_dense(None, df, DenseConfig(**{**QUICK, "freeze_backbone": True, "num_classes": 4}))
    assert r["eval_split"] == "val" and r["init"].startswith("random")
    assert r["num_classes"] == 4 and list(r["per_class_iou"]) == list(GEOWORLD_MASK_CLASSES)


def test_train_dense_from_a_geolab_checkpoint(tmp_path):
    """A checkpoint path is loaded with the engine's load_backbone: the dense run from the path
    is the dense run from the loaded module (same numbers), and names its initialisation."""
    from geolab.config import PretrainConfig
    from geolab.evaluate import load_backbone
    from geolab.train import pretrain

    manifest = make_seg_manifest(tmp_path, n_train=24, n_test=8)
    ckpt = pretrain(
        PretrainConfig(
            method="moco", manifest=manifest, out=tmp_path / "run", arch="resnet18", image_size=32, epochs=1,
            batch_size=8, queue_size=16, max_steps_per_epoch=1, num_workers=0, device="cpu", knn_every=0,
            progress=False, tensorboard=False,
        )
    )
    cfg = DenseConfig(**{**QUICK, "epochs": 1})
    from_path = train_dense(ckpt, manifest, cfg)
    from_module = train_dense(load_backbone(ckpt), manifest, cfg)
    assert from_path["init"] == str(ckpt) == from_module["init"]
    assert from_path["miou"] == from_module["miou"] and from_path["train_loss"] == from_module["train_loss"]


# ----------------------------------------------------------------------------- the paper's numbers
def test_paper_transfer_table_is_the_papers():
    """The paper's transfer numbers as data: xView AP50 (Table 3) and SpaceNet mIoU (Table 4),
    with the source; the temporal-positive pre-training beats MoCo-v2, which beats random
    initialisation, on both tasks; unverified rows are absent, not invented."""
    det = PAPER_TRANSFER["tasks"]["xview_detection"]
    seg = PAPER_TRANSFER["tasks"]["spacenet_segmentation"]
    assert "2011.09980" in PAPER_TRANSFER["source"]
    assert det["metric"] == "AP50" and det["results"]["moco-tp-geo"] == 17.74 and det["results"]["random"] == 10.75
    assert seg["metric"] == "mIoU" and seg["results"]["moco-tp"] == 78.48
    for task in (det, seg):
        r = task["results"]
        assert r["moco-tp"] > r["moco"] > r["random"]
        assert not set(task["not_verified"]) & set(r)
    table = paper_transfer_table()
    assert table.loc["moco-tp-geo", "xView AP50"] == 17.74 and np.isnan(table.loc["moco-tp-geo", "SpaceNet mIoU"])


def test_mask_class_names_match_geoworld():
    """The default class names are geoworld's, in id order."""
    canvas = pytest.importorskip("geolab.world.canvas")
    assert tuple(canvas.MASK_CLASSES) == GEOWORLD_MASK_CLASSES
