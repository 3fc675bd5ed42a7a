"""The GPU input pipeline's CPU-testable parts (issue #24): per-image MoCo-v2 parameters drawn
from MoCo-v2's distributions, views replayed exactly from their parameters (on any device), the
prepared cache's JPEGs decoded by torchvision, and temporal positives read from their own file."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

from geolab.jpeg_pipeline import EncodedPairDataset, JpegPairViews, collate_encoded, decode_jpegs
from geolab.manifest import load_manifest
from geolab.transforms import BatchMoCoV2View, crop_boxes

REPO = Path(__file__).resolve().parents[1]


def _images(sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) for h, w in sizes]


def _bytes(path) -> torch.Tensor:
    return torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)


def _slice(params, i):
    """Image ``i``'s parameters (kornia's per-batch entries kept whole)."""
    out = {}
    for k, v in params.items():
        if isinstance(v, dict):
            out[k] = {kk: vv if kk in ("forward_input_shape", "order") else vv[i:i + 1] for kk, vv in v.items()}
        else:
            out[k] = v[i:i + 1]
    return out


def test_each_image_draws_its_own_parameters() -> None:
    torch.manual_seed(0)
    view = BatchMoCoV2View(32)
    p = view.draw([(64, 64)] * 32)
    assert len({tuple(b) for b in p["crop"].tolist()}) > 25
    assert len(set(p["jitter"]["brightness_factor"].tolist())) == 32
    assert len(set(p["blur"]["sigma"].tolist())) == 32
    assert 0 < int(p["flip"]["batch_prob"].sum()) < 32


def test_parameters_follow_moco_v2_distributions() -> None:
    """Crop area 0.2-1 of each image and aspect 3/4-4/3 (log-uniform), as torchvision's
    RandomResizedCrop draws them for the same sizes; jitter p 0.8 with factors 0.6-1.4 and hue
    +-0.1, grey-scale p 0.2, blur p 0.5 with sigma 0.1-2, flip p 0.5."""
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    sizes = [(int(h), int(w)) for h, w in zip(rng.integers(200, 400, 4000), rng.integers(200, 400, 4000))]
    view = BatchMoCoV2View(224)
    p = view.draw(sizes, generator=torch.Generator().manual_seed(2))
    hw = torch.tensor(sizes, dtype=torch.float64)
    box = p["crop"].double()
    assert (box[:, 0] >= 0).all() and (box[:, 1] >= 0).all()
    assert (box[:, 0] + box[:, 2] <= hw[:, 1]).all() and (box[:, 1] + box[:, 3] <= hw[:, 0]).all()
    area = box[:, 2] * box[:, 3] / (hw[:, 0] * hw[:, 1])
    aspect = torch.log(box[:, 2] / box[:, 3])
    assert area.min() > 0.19 and area.max() <= 1.0
    assert aspect.min() > math.log(3 / 4) - 0.02 and aspect.max() < math.log(4 / 3) + 0.02
    # against torchvision's own draw for the same sizes
    rrc = torchvision.transforms.RandomResizedCrop(224, scale=(0.2, 1.0))
    torch.manual_seed(3)
    ref = torch.tensor([rrc.get_params(torch.empty(1, h, w), rrc.scale, rrc.ratio) for h, w in sizes],
                       dtype=torch.float64)  # top, left, height, width
    ref_area = ref[:, 2] * ref[:, 3] / (hw[:, 0] * hw[:, 1])
    ref_aspect = torch.log(ref[:, 3] / ref[:, 2])
    assert abs(float(area.mean() - ref_area.mean())) < 0.02 and abs(float(area.std() - ref_area.std())) < 0.02
    assert abs(float(aspect.mean() - ref_aspect.mean())) < 0.01 and abs(float(aspect.std() - ref_aspect.std())) < 0.01
    # the later augmentations: kornia's draws, per image
    j = p["jitter"]
    assert abs(float(j["batch_prob"].mean()) - 0.8) < 0.03
    for k in ("brightness_factor", "contrast_factor", "saturation_factor"):
        assert 0.6 <= float(j[k].min()) and float(j[k].max()) <= 1.4 and abs(float(j[k].mean()) - 1) < 0.02
    assert -0.1 <= float(j["hue_factor"].min()) and float(j["hue_factor"].max()) <= 0.1
    assert abs(float(p["grayscale"]["batch_prob"].mean()) - 0.2) < 0.03
    assert abs(float(p["blur"]["batch_prob"].mean()) - 0.5) < 0.03
    assert 0.1 <= float(p["blur"]["sigma"].min()) and float(p["blur"]["sigma"].max()) <= 2.0
    assert abs(float(p["flip"]["batch_prob"].mean()) - 0.5) < 0.03


def test_crop_fallback_is_torchvision_s_centre_crop() -> None:
    """An image too narrow for every draw gets the centred box of the ratio range (torchvision)."""
    box = crop_boxes(torch.tensor([400.0]), torch.tensor([20.0]))  # no box of area >= 0.2 and aspect >= 3/4 fits
    top, left, h, w = torchvision.transforms.RandomResizedCrop.get_params(torch.empty(1, 400, 20), [0.2, 1.0],
                                                                          [3 / 4, 4 / 3])
    assert box.tolist() == [[left, top, w, h]] == [[0, 186, 20, 27]]


def test_same_parameters_give_the_same_views_in_any_batch() -> None:
    """Views are a function of (image, its parameters): twice the same, the same alone as in a
    batch, and the same from a list of images of one size as from their stacked tensor."""
    torch.manual_seed(0)
    view = BatchMoCoV2View(48)
    images = _images([(80, 100), (70, 70), (90, 64), (64, 120), (64, 64)])
    p = view.draw([im.shape[-2:] for im in images])
    a, b = view.apply_params(images, p), view.apply_params(images, p)
    assert a.shape == (5, 3, 48, 48) and torch.equal(a, b)
    alone = torch.cat([view.apply_params([im], _slice(p, i)) for i, im in enumerate(images)])
    torch.testing.assert_close(alone, a, atol=1e-3, rtol=0)
    same = _images([(60, 60)] * 4, seed=1)
    q = view.draw([(60, 60)] * 4)
    torch.testing.assert_close(view.apply_params(same, q), view.apply_params(torch.stack(same), q), atol=0, rtol=0)
    other = view.draw([im.shape[-2:] for im in images])
    assert not torch.allclose(view.apply_params(images, other), a)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (gpu_check.py's pipeline stage checks it)")
def test_cpu_and_gpu_views_agree_for_the_same_parameters() -> None:
    torch.manual_seed(0)
    view = BatchMoCoV2View(64)
    images = _images([(80, 100), (70, 70), (90, 64)])
    p = view.draw([im.shape[-2:] for im in images])
    cpu = view.apply_params(images, p)
    gpu = view.to("cuda").apply_params([im.cuda() for im in images], p)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=2e-3, rtol=0)


def test_the_crop_is_the_box_resized() -> None:
    """With jitter, grey-scale, blur and flip off, a view is its box resized bilinearly, normalised."""
    view = BatchMoCoV2View(32)
    images = _images([(50, 70), (40, 40)])
    p = view.draw([im.shape[-2:] for im in images])
    for name in ("jitter", "grayscale", "blur", "flip"):
        p[name]["batch_prob"] = torch.zeros(2)
    p["crop"] = torch.tensor([[5, 3, 40, 30], [0, 0, 40, 40]])
    got = view.apply_params(images, p)
    mean, std = view.normalize.mean, view.normalize.std
    for i, (x0, y0, w, h) in enumerate(p["crop"].tolist()):
        crop = images[i][:, y0:y0 + h, x0:x0 + w].float()[None] / 255
        want = (F.interpolate(crop, size=(32, 32), mode="bilinear", align_corners=True) - mean) / std
        torch.testing.assert_close(got[i:i + 1], want, atol=1e-4, rtol=0)


def test_preloaded_batches_use_kornia_s_crop_and_the_batch_jitter() -> None:
    """``forward`` (geoworld's preloaded batches) draws kornia's own crop, then BatchColorJitter
    and kornia's grey-scale, blur and flip, in that order, from torch's global generator."""
    import kornia.augmentation as K

    from geolab.transforms import BatchColorJitter

    view = BatchMoCoV2View(32)
    ref = torch.nn.Sequential(
        K.RandomResizedCrop((32, 32), scale=(0.2, 1.0)), BatchColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
        K.RandomGrayscale(p=0.2), K.RandomGaussianBlur((3, 3), (0.1, 2.0), p=0.5), K.RandomHorizontalFlip())
    x = torch.stack(_images([(40, 40)] * 6))
    torch.manual_seed(5)
    got = view(x)
    torch.manual_seed(5)
    want = view.normalize(ref(x.float().div(255)))
    assert torch.equal(got, want)


# ---------------------------------------------------------------------------- real files
@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    sys.path.insert(0, str(REPO / "bench"))
    import bench_prepared_cache as bpc

    from geolab.sources.prepare import prepare_cache

    root = tmp_path_factory.mktemp("jpeg")
    src = bpc.make_images(root, 4, 3, 150, 700, seed=0)
    return prepare_cache(src, root / "cache", short_side=256, progress=False).manifest_path


def test_decode_matches_pil(cache: Path) -> None:
    df = load_manifest(cache)
    paths = df["path"].astype(str).tolist()[:4]
    got = decode_jpegs([_bytes(p) for p in paths], "cpu")
    for p, im in zip(paths, got):
        ref = torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)
        assert im.dtype == torch.uint8 and im.shape == ref.shape and min(ref.shape[1:]) <= 256
        assert (im.int() - ref.int()).abs().max() <= 2


def test_key_is_decoded_from_its_own_image(cache: Path) -> None:
    """The key bytes are the temporal positive's file, not the query's."""
    df = load_manifest(cache)
    ds = EncodedPairDataset(df, strategy="any-other", seed=0)
    for i in range(len(ds)):
        item = ds[i]
        k = ds.positive_row(i)
        assert k != i and df["location_id"].iat[k] == df["location_id"].iat[i]
        assert torch.equal(item["query"], _bytes(df["path"].iat[i]))
        assert torch.equal(item["key"], _bytes(df["path"].iat[k]))


def test_a_batch_becomes_the_training_batch(cache: Path) -> None:
    df = load_manifest(cache)
    ds = EncodedPairDataset(df, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=6, collate_fn=collate_encoded)
    batch = next(iter(loader))
    torch.manual_seed(0)
    views = JpegPairViews(40, "cpu", channels_last=True)
    out = views(batch, generator=torch.Generator().manual_seed(0))
    assert out["query"].shape == out["key"].shape == (6, 3, 40, 40)
    assert out["query"].is_contiguous(memory_format=torch.channels_last)
    assert torch.isfinite(out["query"]).all() and -3 < float(out["query"].mean()) < 3
    assert torch.equal(out["index"], batch["index"]) and len(views.last_params["crop"]) == 12
    # the crop boxes lie inside each decoded image (short side 256 in the cache)
    sizes = [tuple(im.shape[-2:]) for im in decode_jpegs(batch["query"] + batch["key"], "cpu")]
    for (x0, y0, w, h), (H, W) in zip(views.last_params["crop"].tolist(), sizes):
        assert min(H, W) <= 256 and x0 + w <= W and y0 + h <= H


def test_unreadable_file_names_path_and_what_to_do(tmp_path: Path, cache: Path) -> None:
    df = load_manifest(cache).copy()
    df.loc[df.index[0], "path"] = str(tmp_path / "gone.jpg")
    ds = EncodedPairDataset(df, strategy="same-image")
    with pytest.raises(FileNotFoundError, match=r"gone\.jpg.*geolab data prepare"):
        ds[0]


def test_a_prepared_cache_is_recognised(cache: Path, tmp_path: Path) -> None:
    from geolab.jpeg_pipeline import is_prepared_cache

    assert is_prepared_cache(cache)
    assert not is_prepared_cache(tmp_path / "manifest.parquet")
