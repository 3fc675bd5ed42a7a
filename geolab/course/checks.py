"""Checks of the learner's code in notebooks 02-04 against geolab's own.

Each check runs geolab's code and the learner's on copies of the same state and inputs and
compares what comes out. It returns a one-line confirmation, or raises :class:`CheckFailed` (an
``AssertionError``, so nbgrader's autograder counts the check cell as failed) saying what differs
and, where a common slip explains the difference, which slip ("your loss is 6.91, geolab's 6.24:
it is what InfoNCE gives without dividing by the temperature").

- :func:`check_info_nce`: InfoNCE against the queue, against lightly's ``NTXentLoss`` with a memory
  bank (what :func:`geolab.models.build_contrastive_loss` builds), value and gradient.
- :func:`check_momentum_update`: against lightly's ``update_momentum`` (what
  :meth:`geolab.models.MoCoModel.momentum_update` calls).
- :func:`check_training_step`: two steps of the learner's step against two of
  :func:`geolab.train.train_step` on copies of one model, memory bank and optimizer: the losses,
  every weight of both encoders (and the geo head), the bank and its pointer.
- :func:`check_temporal_positive`: a temporal-positive draw against :class:`geolab.positives.LocationIndex`.
- :func:`check_geo_assignment`: spherical K-means' assignment against :class:`geolab.geo.GeoClusterer`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from lightly.models.utils import update_momentum
from torch import Tensor, nn

from geolab.config import PretrainConfig
from geolab.errors import UserError
from geolab.geo import GeoClusterer, location_coords
from geolab.models import MoCoModel, ModelSettings, build_contrastive_loss, build_model, load_memory_bank_state, sgd
from geolab.positives import LocationIndex, Strategy, uses_uniform
from geolab.train import train_step

RTOL, ATOL = 1e-4, 1e-5  # float32, and geolab's key shuffle changes the order of a few sums


class CheckFailed(UserError, AssertionError):
    """The learner's code disagrees with geolab's; the message says where and, if it can, why."""


def _close(a: float, b: float, rtol: float = RTOL) -> bool:
    return bool(np.isclose(a, b, rtol=rtol, atol=ATOL))


def _as_float(value: Any, what: str) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise CheckFailed(f"{what} should be one number (a 0-d tensor), not of shape {tuple(value.shape)}.")
        return float(value.detach())
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what} should be a number or a 0-d tensor, got {type(value).__name__}.") from None


def _slip(value: float, candidates: dict[str, float]) -> str:
    """The first slip whose value matches, as a sentence, or ''."""
    for why, v in candidates.items():
        if np.isfinite(v) and _close(value, v, 1e-3):
            return f" It is what {why}."
    return ""


# ----------------------------------------------------------------------------- InfoNCE
def _nce(q: Tensor, k: Tensor, queue: Tensor, T: float) -> float:
    """InfoNCE as the equation gives it (the reference for the slips below)."""
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], dim=1) / T
    return float(F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long)))


def _info_nce_variants(q: Tensor, k: Tensor, queue: Tensor, T: float) -> dict[str, float]:
    """InfoNCE computed with the usual slips, keyed by the sentence that names each."""
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    zero = torch.zeros(len(q), dtype=torch.long)

    def ce(qq: Tensor, kk: Tensor, t: float, positive_first: bool = True, reduction: str = "mean") -> float:
        pos, neg = (qq * kk).sum(1, keepdim=True), qq @ queue.T
        logits = torch.cat([pos, neg] if positive_first else [neg, pos], dim=1) / t
        return float(F.cross_entropy(logits, zero, reduction=reduction))

    pos, neg = (qn * kn).sum(1) / T, qn @ queue.T / T
    return {
        "InfoNCE gives without dividing the similarities by the temperature T": ce(qn, kn, 1.0),
        "InfoNCE gives with the similarities multiplied by T instead of divided": ce(qn, kn, 1.0 / T),
        "InfoNCE gives without L2-normalising q and k (F.normalize(x, dim=1))": ce(q, k, T),
        "InfoNCE gives when the positive is not class 0 of the cross-entropy (put q.k+ first)":
            ce(qn, kn, T, positive_first=False),
        "InfoNCE gives with the positive left out of the denominator": float((-pos + torch.logsumexp(neg, 1)).mean()),
        "the sum over the batch gives: take the mean": ce(qn, kn, T, reduction="sum"),
    }


def check_info_nce(info_nce: Callable[[Tensor, Tensor, Tensor, float], Tensor], seed: int = 0) -> str:
    """Check ``info_nce(q, k, queue, T)`` against lightly's memory-bank loss, value and gradient.

    Raises:
        CheckFailed: a value or a gradient differs (the message names the likely slip).
    """
    g = torch.Generator().manual_seed(seed)
    B, N, D = 8, 32, 16
    q, k = 3 * torch.randn(B, D, generator=g), 3 * torch.randn(B, D, generator=g)  # not unit vectors
    k = k + q  # keys that resemble their queries, as after some training
    queue = F.normalize(torch.randn(N, D, generator=g), dim=1)
    for T in (0.2, 0.07):
        criterion = build_contrastive_loss(T, queue_size=N, dim=D)
        load_memory_bank_state(criterion, {"bank": queue.clone(), "ptr": torch.zeros(1, dtype=torch.long)})
        q_ref = q.clone().requires_grad_(True)
        geolab = criterion(q_ref, k.clone())  # a query with gradients enqueues its keys: on this copy only
        geolab.backward()
        q_mine = q.clone().requires_grad_(True)
        out = info_nce(q_mine, k.clone(), queue.clone(), T)
        mine = _as_float(out, "info_nce(q, k, queue, T)")
        if not _close(mine, float(geolab.detach())):
            raise CheckFailed(f"At T = {T} your loss is {mine:.4f}, geolab's {float(geolab.detach()):.4f}."
                              + _slip(mine, _info_nce_variants(q, k, queue, T)))
        if not (isinstance(out, Tensor) and out.requires_grad):
            raise CheckFailed("Your loss has the right value but no gradient: return a tensor computed from q "
                              "(no .item(), float() or .detach()), so that backward() can train the query encoder.")
        out.backward()
        assert q_ref.grad is not None, "geolab's loss has a gradient with respect to q"
        if q_mine.grad is None or not torch.allclose(q_mine.grad, q_ref.grad, rtol=RTOL, atol=ATOL):
            raise CheckFailed("Your loss has the right value but its gradient with respect to q differs from geolab's.")
    return f"✓ info_nce matches geolab's InfoNCE (lightly's NTXentLoss, memory bank) at T = 0.2 and 0.07: {mine:.4f}"


# ----------------------------------------------------------------------------- momentum update
def check_momentum_update(momentum_update: Callable[[nn.Module, nn.Module, float], Any], m: float = 0.9) -> str:
    """Check ``momentum_update(query_encoder, key_encoder, m)`` against lightly's ``update_momentum``.

    Raises:
        CheckFailed: the key encoder's weights differ, or the query encoder's changed.
    """
    torch.manual_seed(0)
    query = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    key = copy.deepcopy(query)
    with torch.no_grad():
        for p in query.parameters():
            p.add_(1.0)  # as if SGD had moved the query encoder since the key encoder copied it
    before_q = [p.detach().clone() for p in query.parameters()]
    before_k = [p.detach().clone() for p in key.parameters()]
    ref = copy.deepcopy(key)
    update_momentum(query, ref, m)
    momentum_update(query, key, m)
    if any(not torch.equal(p, b) for p, b in zip(query.parameters(), before_q)):
        raise CheckFailed("Your update changed the query encoder: only the key encoder moves (theta_k).")
    got = [p.detach() for p in key.parameters()]
    want = [p.detach() for p in ref.parameters()]
    if all(torch.allclose(a, b, rtol=RTOL, atol=ATOL) for a, b in zip(got, want)):
        return f"✓ momentum_update matches lightly's update_momentum: theta_k <- {m} theta_k + {1 - m:.1f} theta_q"
    if all(torch.equal(a, b) for a, b in zip(got, before_k)):
        raise CheckFailed("The key encoder did not move. Change its parameters in place (p.mul_(...).add_(...), "
                          "or p.data = ...): assigning a new tensor to a loop variable changes nothing.")
    swapped = [(1 - m) * bk + m * bq for bk, bq in zip(before_k, before_q)]
    if all(torch.allclose(a, b, rtol=RTOL, atol=ATOL) for a, b in zip(got, swapped)):
        raise CheckFailed(f"You swapped m and 1 - m: the key encoder keeps m = {m} of its own weights "
                          f"and takes {1 - m:.1f} of the query encoder's.")
    if all(torch.allclose(a, b) for a, b in zip(got, before_q)):
        raise CheckFailed("The key encoder became a copy of the query encoder: it moves only 1 - m of the way.")
    raise CheckFailed(f"The key encoder's weights differ from m * theta_k + (1 - m) * theta_q with m = {m}.")


# ----------------------------------------------------------------------------- the training step
def _state(model: nn.Module) -> dict[str, Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _first_difference(mine: dict[str, Tensor], ref: dict[str, Tensor], prefixes: tuple[str, ...]) -> str | None:
    for name, want in ref.items():
        if name.startswith(prefixes) and not torch.allclose(mine[name], want, rtol=1e-3, atol=1e-5):
            return name
    return None


def _same(mine: dict[str, Tensor], ref: dict[str, Tensor], prefixes: tuple[str, ...]) -> bool:
    return all(torch.equal(mine[n], ref[n]) for n in ref if n.startswith(prefixes))


QUERY, KEY, GEO = ("backbone.", "projection_head."), ("backbone_momentum.", "projection_head_momentum."), ("geo_head.",)


def _step_setup(geo: bool, T: float, m: float, alpha: float, beta: float, seed: int):
    cfg = PretrainConfig(method="moco-geo" if geo else "moco", manifest="-", out="-", arch="resnet18-w16",
                         image_size=16, batch_size=8, queue_size=24, temperature=T, ema_momentum=m, lr=0.1,
                         alpha=alpha, beta=beta, geo_k=4, bn_splits=1, amp=False, channels_last=False)
    torch.manual_seed(seed)
    model = build_model(ModelSettings.of(cfg), num_classes=1, bn_splits=1)
    if not isinstance(model, MoCoModel):
        raise TypeError(f"{cfg.method} builds a {type(model).__name__}, not the MoCoModel this check steps")
    with torch.no_grad():  # as if training had moved the query encoder away from the key encoder
        for p in list(model.backbone.parameters()) + list(model.projection_head.parameters()):
            p.add_(0.05 * torch.randn_like(p))
    bank = F.normalize(torch.randn(cfg.queue_size, cfg.proj_dim), dim=1)
    batches = [{"query": torch.randn(8, 3, 16, 16), "key": torch.randn(8, 3, 16, 16),
                "geo_cluster": torch.randint(0, 4, (8,))} for _ in range(2)]
    return cfg, model, bank, batches


def _reference_run(cfg, model, bank, batches, start: int) -> list[dict[str, Any]]:
    """Two steps of geolab's (:func:`geolab.train.train_step`) on copies; the state after each."""
    model = copy.deepcopy(model)
    criterion = build_contrastive_loss(cfg.temperature, cfg.queue_size, cfg.proj_dim)
    load_memory_bank_state(criterion, {"bank": bank.clone(), "ptr": torch.tensor([start])})
    optimizer = sgd([p for p in model.parameters() if p.requires_grad], cfg.lr, cfg.momentum, cfg.weight_decay)
    out = []
    for batch in batches:
        parts = train_step(cfg, model, criterion, optimizer, batch)
        out.append({"loss": parts["loss"], "weights": _state(model), "bank": criterion.memory_bank.bank.clone(),
                    "ptr": int(criterion.memory_bank.bank_ptr)})
    return out


def _loss_slips(cfg, model: MoCoModel, bank: Tensor, batch: dict[str, Tensor], geo: bool) -> dict[str, float]:
    """The first step's loss computed with the usual slips of a MoCo step."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        return _loss_slips_of(cfg, model, bank, batch, geo)


def _loss_slips_of(cfg, model: MoCoModel, bank: Tensor, batch: dict[str, Tensor], geo: bool) -> dict[str, float]:
    k_before = model.projection_head_momentum(model.backbone_momentum(batch["key"])).detach()
    model.momentum_update(cfg.ema_momentum)
    q = model.projection_head(model.backbone(batch["query"])).detach()
    k = model.projection_head_momentum(model.backbone_momentum(batch["key"])).detach()
    ce = float(F.cross_entropy(model.geo_head(q), batch["geo_cluster"])) if geo and model.geo_head is not None else 0.0
    T, a, b = cfg.temperature, cfg.alpha, cfg.beta
    bank_with_k = bank.clone()
    bank_with_k[16:24] = F.normalize(k, dim=1)

    def total(nce: float) -> float:
        return a * nce + b * ce

    slips = {why: total(v) for why, v in _info_nce_variants(q, k, bank, T).items()}
    slips.update({
        "the step gives with the keys from the key encoder before its momentum update (move it first, "
        "then encode the keys, as geolab and MoCo do)": total(_nce(q, k_before, bank, T)),
        "the step gives when the batch's keys are already in the queue (enqueue after the loss)":
            total(_nce(q, k, bank_with_k, T)),
    })
    if geo:
        nce = _nce(q, k, bank, T)
        slips.update({
            "the step gives without the geo loss beta * CE(geo_head(q), geo_cluster)": a * nce,
            "the step gives with alpha and beta swapped": b * nce + a * ce,
            "the step gives with the geo loss alone (alpha * InfoNCE is missing)": b * ce,
        })
    return slips


def check_training_step(training_step: Callable[..., Any], geo: bool = False, alpha: float = 1.0, beta: float = 1.0,
                        T: float = 0.2, m: float = 0.99, seed: int = 0) -> str:
    """Two steps of the learner's ``training_step`` against two of :func:`geolab.train.train_step`.

    Both start from copies of one seeded model (a small ResNet, one BatchNorm over the batch), one
    memory bank (its pointer one batch from the end, so the first enqueue wraps) and a fresh SGD
    optimizer (geolab's: momentum 0.9, weight decay 1e-4), and take the same two batches. The learner's
    step is called as ``training_step(model, queue, optimizer, batch, T, m)`` (plus ``alpha=``, ``beta=``
    with ``geo``), with ``queue = {"bank": (24, 128) unit keys, "ptr": 16}``, and returns the loss.

    Args:
        training_step: the learner's step.
        geo: a model with a geo head and the loss ``alpha * InfoNCE + beta * CE`` (MoCo-v2+Geo).
        alpha: weight of InfoNCE.
        beta: weight of the geo cross-entropy.
        T: temperature.
        m: key encoder momentum.
        seed: seeds the model, the bank and the batches.

    Raises:
        CheckFailed: a loss, a weight, the bank or its pointer differs (the message says which and why if it can).
    """
    with torch.random.fork_rng():
        cfg, model, bank, batches = _step_setup(geo, T, m, alpha, beta, seed)
        start = cfg.queue_size - cfg.batch_size
        ref = _reference_run(cfg, model, bank, batches, start)
        slips = _loss_slips(cfg, model, bank, batches[0], geo)
        mine = copy.deepcopy(model)
        optimizer = sgd([p for p in mine.parameters() if p.requires_grad], cfg.lr, cfg.momentum, cfg.weight_decay)
        queue = {"bank": bank.clone(), "ptr": start}
        kwargs = {"alpha": alpha, "beta": beta} if geo else {}
        losses = []
        for step, (batch, want) in enumerate(zip(batches, ref), 1):
            before = _state(mine)
            loss = _as_float(training_step(mine, queue, optimizer, dict(batch), T, m, **kwargs),
                             "training_step's return value (the loss)")
            losses.append(loss)
            problem = _step_problem(step, loss, _state(mine), before, want, slips if step == 1 else {}, geo, m)
            problem = problem or _queue_problem(step, queue, want, cfg.queue_size)
            if problem:
                raise CheckFailed(f"Step {step}: {problem}")
    parts = "both encoders, the geo head" if geo else "both encoders"
    return (f"✓ your training step matches geolab's (geolab.train.train_step) over two steps: losses "
            f"{losses[0]:.4f} and {losses[1]:.4f}; {parts}, the memory bank and its pointer agree")


def _step_problem(step: int, loss: float, got: dict[str, Tensor], before: dict[str, Tensor], want: dict[str, Any],
                  slips: dict[str, float], geo: bool, m: float) -> str | None:
    """What differs after one step of the learner's (loss, then weights), or None."""
    if not _close(loss, want["loss"]):
        hint = _slip(loss, slips) if slips else (
            " The first step matched: the second sees the queue and encoders the first left behind "
            "(did the batch's keys go into the queue, and did the optimizer step?).")
        return f"your loss is {loss:.4f}, geolab's {want['loss']:.4f}.{hint}"
    if _same(got, before, KEY):
        return ("the key encoder did not move: apply the momentum update to backbone_momentum and "
                "projection_head_momentum before encoding the keys.")
    name = _first_difference(got, want["weights"], KEY)
    if name:
        return (f"the key encoder's {name} differs from geolab's: both backbone_momentum and "
                f"projection_head_momentum move by m * theta_k + (1 - m) * theta_q with m = {m}.")
    if _same(got, before, QUERY):
        return "the query encoder did not move: optimizer.zero_grad(), loss.backward(), optimizer.step()."
    if geo and _same(got, before, GEO):
        return "the geo head did not learn: the loss to backpropagate includes beta * CE(geo_head(q), geo_cluster)."
    name = _first_difference(got, want["weights"], QUERY + GEO)
    if name:
        hint = ("gradients add up across steps unless you call optimizer.zero_grad() before loss.backward()"
                if step == 2 else "backpropagate the loss you return, and step the optimizer you were given once")
        return f"your loss matches but {name} differs from geolab's after the SGD step: {hint}."
    return None


def _queue_problem(step: int, queue: dict[str, Any], want: dict[str, Any], size: int) -> str | None:
    """What differs in the learner's memory bank after one step, or None."""
    if int(queue["ptr"]) != want["ptr"]:
        return (f"queue['ptr'] is {int(queue['ptr'])}, geolab's {want['ptr']}: move it on by the batch size, "
                f"back to 0 when it reaches the end of the bank ({size} keys).")
    if not torch.allclose(queue["bank"], want["bank"], rtol=1e-3, atol=ATOL):
        return ("the memory bank differs from geolab's: write the batch's L2-normalised keys (from the key "
                "encoder, not the queries) at queue['ptr'].")
    return None


# ----------------------------------------------------------------------------- temporal positives
def check_temporal_positive(positive: Callable[..., int], df: pd.DataFrame, strategy: Strategy = "any-other",
                            us: tuple[float, ...] = (0.0, 0.3, 0.7, 0.999)) -> str:
    """Check a temporal-positive draw against :meth:`geolab.positives.LocationIndex.draw` on every row.

    ``positive(i, u)`` for ``any-other`` and ``other-season`` (``u`` uniform in [0, 1)), ``positive(i)``
    for the deterministic strategies; ``i`` and the result are positions in ``df``.

    Raises:
        CheckFailed: the first row where they differ, and what is wrong with that row.
    """
    df = df.reset_index(drop=True)
    index = LocationIndex(df)
    random = uses_uniform(strategy)
    loc = df["location_id"].to_numpy()
    for i in range(len(df)):
        for u in us if random else (0.0,):
            want = index.draw(i, strategy, u)
            got = positive(i, u) if random else positive(i)
            if int(got) == want:
                continue
            c = len(index.revisits(i))
            where = f"row {i} (location {loc[i]}, {c} image{'s' if c > 1 else ''}{f', u = {u}' if random else ''})"
            if c == 1:
                raise CheckFailed(f"{where}: a place seen once has no other revisit: its positive is the image itself.")
            if not 0 <= int(got) < len(df) or loc[int(got)] != loc[i]:
                raise CheckFailed(f"{where}: your positive {got} is not an image of the same location.")
            if int(got) == i:
                raise CheckFailed(f"{where}: your positive is the query itself: draw among the *other* revisits.")
            rule = ("the int(u * (c - 1))-th of the other revisits, in time order" if strategy == "any-other"
                    else "the revisit just before or after in time, whichever is closer (the earlier on a tie)"
                    if strategy == "nearest" else f"the {strategy!r} revisit")
            raise CheckFailed(f"{where}: geolab's positive is row {want} ({rule}), yours {got}.")
    return f"✓ your {strategy!r} temporal positive matches geolab's LocationIndex on all {len(df)} rows"


# ----------------------------------------------------------------------------- geo clusters
def check_geo_assignment(assign: Callable[[np.ndarray, np.ndarray, np.ndarray], Any], df: pd.DataFrame,
                         k: int, seed: int = 0) -> str:
    """Check ``assign(lat, lon, centres_latlon) -> cluster per point`` against :meth:`GeoClusterer.assign`.

    The clusterer is fitted on the training locations (one point each) with ``k`` and ``seed``;
    every location of ``df`` is then assigned by both.

    Raises:
        CheckFailed: the share of locations whose cluster differs, and the likely slip.
    """
    fit_on = location_coords(df[df["split"] == "train"])
    clusterer = GeoClusterer(k=k, seed=seed).fit(fit_on["lat"].to_numpy(), fit_on["lon"].to_numpy())
    places = location_coords(df)
    lat, lon, centres = places["lat"].to_numpy(), places["lon"].to_numpy(), clusterer.centers_latlon
    want = clusterer.assign(lat, lon)
    got = np.asarray(assign(lat.copy(), lon.copy(), centres.copy()))
    if got.shape != want.shape:
        raise CheckFailed(f"assign should give one cluster per point: shape {want.shape}, got {got.shape}.")
    same = float(np.mean(got == want))
    if same == 1.0:
        return f"✓ your assignment gives geolab's geo cluster for all {len(want)} locations (K = {k})"

    def unit(la: np.ndarray, lo: np.ndarray) -> np.ndarray:
        return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)

    slips = {
        "K-means on raw degrees gives: turn (lat, lon) into unit vectors first":
            np.argmin(((np.c_[lat, lon][:, None] - centres[None]) ** 2).sum(-1), axis=1),
        "unit vectors of degrees give: np.cos and np.sin take radians (np.radians first)":
            np.argmax(unit(lat, lon) @ unit(centres[:, 0], centres[:, 1]).T, axis=1),
        "the smallest dot product gives: the nearest centre has the *largest* cosine (argmax)":
            np.argmin(unit(*np.radians([lat, lon])) @ unit(*np.radians(centres.T)).T, axis=1),
    }
    hint = next((f" It is what {why}." for why, v in slips.items() if np.array_equal(got, v)), "")
    raise CheckFailed(f"Your assignment agrees with geolab's for {same:.0%} of {len(want)} locations.{hint}")
