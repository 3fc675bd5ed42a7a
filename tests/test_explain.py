"""The widgets that explain (geolab.viz.explain): the temperature slider sharpens InfoNCE's softmax,
the K slider re-clusters the map, both carry a static picture for notebooks saved without a
kernel, and the live loss curve stays one display however many steps it shows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("ipywidgets")

from helpers import make_manifest

from geolab.course import scratch
from geolab.manifest import load_manifest
from geolab.viz import explain

PNG = b"\x89PNG"


@pytest.fixture
def toy():
    """One query, a key like it and 64 queued keys; seeded."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(32, generator=g)
    return q, q + 0.5 * torch.randn(32, generator=g), torch.randn(64, 32, generator=g)


def test_softmax_is_infonce_s_and_sharpens_as_the_temperature_falls(toy):
    q, k, queue = toy
    probs = {T: explain.softmax_over_candidates(q, k, queue, T) for T in (1.0, 0.2, 0.05)}
    for T, p in probs.items():
        assert p.shape == (65,) and math.isclose(p.sum(), 1.0, rel_tol=1e-5)
        loss = scratch.info_nce(q[None], k[None], F.normalize(queue, dim=1), T)  # InfoNCE of this one query
        assert math.isclose(-math.log(p[0]), float(loss), rel_tol=1e-4, abs_tol=1e-5)
    assert probs[1.0][0] < probs[0.2][0] < probs[0.05][0]  # the positive is the closest: it takes over


def test_temperature_slider_redraws_and_shows_a_static_picture(toy):
    widget = explain.temperature_explorer(*toy, T=0.2)
    before, image = widget.probabilities.copy(), widget.image.value
    widget.slider.value = 0.02
    assert widget.probabilities[0] > before[0] and widget.image.value != image
    assert "2.000%" not in widget.caption.value and "At T = 0.020" in widget.caption.value
    bundle = widget._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and bundle["image/png"].startswith(PNG)
    fig = widget.snapshot()
    assert [ax.get_title().split(":")[0] for ax in fig.axes] == ["T = 0.02", "T = 0.2", "T = 1"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return load_manifest(make_manifest(tmp_path_factory.mktemp("explain"), n_locations=12))


def test_k_slider_reclusters_and_keeps_only_ks_that_fit(manifest):
    n_train = manifest.loc[manifest.split == "train", "location_id"].nunique()
    widget = explain.geo_cluster_explorer(manifest, ks=(2, 3, n_train + 1), k=3)
    assert list(widget.slider.options) == [2, 3]  # K above the training locations is left out
    assert widget.clustered["geo_cluster"].nunique() <= 3 and widget.caption.value.startswith("K = 3:")
    widget.slider.value = 2
    assert set(widget.clustered["geo_cluster"]) == {0, 1} and widget.caption.value.startswith("K = 2:")
    png = bytes(widget.image.value)
    assert widget._repr_mimebundle_()["image/png"] == png and png.startswith(PNG)
    with pytest.raises(ValueError, match="no K of"):
        explain.geo_cluster_explorer(manifest, ks=(n_train + 5,))


def test_live_loss_updates_one_display(monkeypatch):
    shown, updates = [], []

    class Handle:
        def update(self, obj):
            updates.append(obj)

    def display(obj, display_id=False):
        shown.append(obj)
        return Handle()

    monkeypatch.setattr("IPython.display.display", display)
    curve = explain.LiveLoss("test", chance=math.log(65), every_s=3600)
    for loss in np.linspace(5, 3, 50):
        curve.add(loss)
    assert curve.close() == pytest.approx(list(np.linspace(5, 3, 50)))
    assert len(shown) == 1  # one display, redrawn in place: the saved notebook keeps one figure
    assert 1 <= len(updates) <= 2 and updates[-1].data.startswith(PNG)
