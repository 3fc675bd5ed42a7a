"""The checks of notebooks 02-04 (geolab.course.checks) accept a correct submission, reject each
common slip with a message that names it, and compare against geolab's real step; the from-scratch
step and the batches it trains on (geolab.course.scratch) are what the notebooks say they are."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from geolab.course import checks, scratch
from geolab.positives import LocationIndex


# ----------------------------------------------------------------------------- InfoNCE
def test_info_nce_from_scratch_passes():
    assert checks.check_info_nce(scratch.info_nce).startswith("✓")


def _no_temperature(q, k, queue, T):
    return scratch.info_nce(q, k, queue, 1.0)


def _not_normalised(q, k, queue, T):
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], dim=1) / T
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))


def _positive_last(q, k, queue, T):
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = torch.cat([q @ queue.T, (q * k).sum(1, keepdim=True)], dim=1) / T
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))


def _detached(q, k, queue, T):
    return scratch.info_nce(q, k, queue, T).item()


@pytest.mark.parametrize(("wrong", "hint"), [
    (_no_temperature, "without dividing the similarities by the temperature"),
    (_not_normalised, "without L2-normalising q and k"),
    (_positive_last, "the positive is not class 0"),
    (_detached, "no gradient"),
])
def test_info_nce_slips_fail_and_are_named(wrong, hint):
    with pytest.raises(checks.CheckFailed, match=hint):
        checks.check_info_nce(wrong)


# ----------------------------------------------------------------------------- momentum update
def test_momentum_update_from_scratch_passes():
    assert checks.check_momentum_update(scratch.momentum_update).startswith("✓")


def _swapped(query, key, m):
    scratch.momentum_update(query, key, 1 - m)


def _rebinds(query, key, m):
    for theta_q, theta_k in zip(query.parameters(), key.parameters()):
        theta_k = m * theta_k + (1 - m) * theta_q


def _moves_query(query, key, m):
    scratch.momentum_update(key, query, m)


@pytest.mark.parametrize(("wrong", "hint"), [
    (_swapped, "swapped m and 1 - m"), (_rebinds, "did not move"), (_moves_query, "changed the query encoder"),
])
def test_momentum_update_slips_fail_and_are_named(wrong, hint):
    with pytest.raises(checks.CheckFailed, match=hint):
        checks.check_momentum_update(wrong)


# ----------------------------------------------------------------------------- the training step
def _step(encode_keys_first=False, zero_grad=True, enqueue=True, geo=False):
    """A MoCo step from scratch with one slip switched on (all off: the correct step)."""

    def step(model, queue, optimizer, batch, T, m, alpha=1.0, beta=1.0):
        if encode_keys_first:
            with torch.no_grad():
                k = model.projection_head_momentum(model.backbone_momentum(batch["key"]))
        scratch.momentum_update(model.backbone, model.backbone_momentum, m)
        scratch.momentum_update(model.projection_head, model.projection_head_momentum, m)
        q = model.projection_head(model.backbone(batch["query"]))
        if not encode_keys_first:
            with torch.no_grad():
                k = model.projection_head_momentum(model.backbone_momentum(batch["key"]))
        loss = alpha * scratch.info_nce(q, k, queue["bank"], T)
        if geo:
            loss = loss + beta * F.cross_entropy(model.geo_head(q), batch["geo_cluster"])
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if enqueue:
            scratch.enqueue(queue, k)
        return loss.item()

    return step


def test_training_step_from_scratch_matches_geolabs_step():
    msg = checks.check_training_step(scratch.training_step)
    assert msg.startswith("✓") and "geolab.train.train_step" in msg


def test_geo_step_matches_geolabs_moco_geo_step_and_the_plain_step_does_not():
    assert checks.check_training_step(_step(geo=True), geo=True, alpha=1.0, beta=0.5).startswith("✓")
    with pytest.raises(checks.CheckFailed, match="without the geo loss"):
        checks.check_training_step(_step(geo=False), geo=True)


@pytest.mark.parametrize(("wrong", "hint"), [
    (_step(encode_keys_first=True), "before its momentum update"),
    (_step(zero_grad=False), "Step 2: .*optimizer.zero_grad"),
    (_step(enqueue=False), r"Step 1: queue\['ptr'\] is 16, geolab's 0"),
])
def test_training_step_slips_fail_and_are_named(wrong, hint):
    with pytest.raises(checks.CheckFailed, match=hint):
        checks.check_training_step(wrong)


def test_a_step_that_enqueues_the_queries_is_caught():
    def step(model, queue, optimizer, batch, T, m):
        q = model.projection_head(model.backbone(batch["query"]))
        loss = _step()(model, {"bank": queue["bank"].clone(), "ptr": queue["ptr"]}, optimizer, batch, T, m)
        scratch.enqueue(queue, q.detach())  # the slip: queries in the memory bank
        return loss

    with pytest.raises(checks.CheckFailed, match="memory bank differs"):
        checks.check_training_step(step)


def test_the_check_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    checks.check_training_step(scratch.training_step)
    assert torch.equal(torch.rand(3), expected)


def test_enqueue_wraps_like_lightlys_memory_bank():
    queue = {"bank": torch.zeros(6, 2), "ptr": 4}
    scratch.enqueue(queue, torch.tensor([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]]))
    assert queue["ptr"] == 0  # lightly drops what does not fit and starts again at 0
    assert torch.allclose(queue["bank"][4:], torch.tensor([[0.6, 0.8], [0.0, 1.0]]))


# ----------------------------------------------------------------------------- temporal positives, geo clusters
@pytest.fixture
def places() -> pd.DataFrame:
    """Four locations seen 1, 2, 3 and 4 times, in shuffled row order; seeded."""
    rng = np.random.default_rng(0)
    rows = [(f"L{n}", pd.Timestamp("2015-01-01", tz="UTC") + pd.Timedelta(days=int(d)))
            for n in range(4) for d in rng.choice(2000, size=n + 1, replace=False)]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    lat = {f"L{n}": v for n, v in enumerate((10.0, -30.0, 50.0, 65.0))}
    lon = {f"L{n}": v for n, v in enumerate((20.0, 150.0, -100.0, 179.5))}
    return pd.DataFrame({
        "image_id": [f"i{j}" for j in range(len(rows))], "location_id": [r[0] for r in rows],
        "timestamp": [r[1] for r in rows], "lat": [lat[r[0]] for r in rows], "lon": [lon[r[0]] for r in rows],
        "split": "train", "label": "x",
    })


def test_temporal_positive_check_accepts_geolabs_draw_and_names_the_slips(places):
    index = LocationIndex(places)
    assert checks.check_temporal_positive(lambda i, u: index.draw(i, "any-other", u), places).startswith("✓")
    assert checks.check_temporal_positive(lambda i: index.draw(i, "nearest", 0.0), places, "nearest").startswith("✓")
    with pytest.raises(checks.CheckFailed, match="is the query itself"):
        checks.check_temporal_positive(lambda i, u: i if len(index.revisits(i)) == 2 else index.draw(i, "any-other", u),
                                       places)
    with pytest.raises(checks.CheckFailed, match="not an image of the same location"):
        checks.check_temporal_positive(lambda i, u: (i + 1) % len(places), places)


def test_geo_assignment_check_accepts_the_sphere_and_rejects_raw_degrees(places):
    def on_sphere(lat, lon, centres):
        def unit(la, lo):
            la, lo = np.radians(la), np.radians(lo)
            return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)
        return np.argmax(unit(lat, lon) @ unit(centres[:, 0], centres[:, 1]).T, axis=1)

    assert checks.check_geo_assignment(on_sphere, places, k=3).startswith("✓")
    with pytest.raises(checks.CheckFailed, match="agrees with geolab's for"):
        checks.check_geo_assignment(lambda lat, lon, c: np.zeros(len(lat), dtype=int) + 7, places, k=3)


def test_pair_batches_draw_keys_with_the_given_positive_from_the_split(places, monkeypatch):
    places = places.assign(split=np.where(places.location_id == "L0", "val", "train"))
    decoded = []

    def fake_decode(df, size, progress=True):  # row i's image is filled with the value i
        decoded.append(len(df))
        return torch.stack([torch.full((3, size, size), int(i), dtype=torch.uint8) for i in df.index])

    monkeypatch.setattr(scratch, "decode_images", fake_decode)
    index = LocationIndex(places)
    calls = []

    def positive(i, u):
        calls.append(u)
        return index.draw(i, "any-other", u)

    batches = list(scratch.pair_batches(places, 4, 3, 8, positive, seed=1))
    assert len(batches) == 4 and len(calls) == 12 and all(0 <= u < 1 for u in calls)
    train = set(np.flatnonzero(places.split == "train"))
    for b in batches:
        assert set(b["rows"].tolist()) <= train and b["query"].shape == (3, 3, 8, 8)
        loc = places.location_id.to_numpy()
        assert (loc[b["rows"]] == loc[b["key_rows"]]).all()  # a key is a revisit of its query's place
    assert decoded == [len(np.unique(np.concatenate([np.r_[b["rows"], b["key_rows"]] for b in batches])))]
