"""The model pieces on random tensors: InfoNCE with a memory bank, the momentum update, split
BN (the one-device stand-in for shuffle BN), key shuffling, and the geo head."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from geolab.models import (
    Classifier,
    GeoHead,
    MoCoModel,
    SplitBatchNorm2d,
    build_contrastive_loss,
    load_memory_bank_state,
    make_backbone,
    memory_bank_state,
    set_bn_splits,
)


def _reference_infonce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, t: float) -> torch.Tensor:
    """InfoNCE of MoCo (Eq. 1) written out with explicit loops: -log softmax of the positive."""
    losses = []
    for i in range(q.shape[0]):
        qi = q[i] / q[i].norm()
        ki = k[i] / k[i].norm()
        pos = math.exp(float(qi @ ki) / t)
        neg = sum(math.exp(float(qi @ queue[j]) / t) for j in range(queue.shape[0]))
        losses.append(-math.log(pos / (pos + neg)))
    return torch.tensor(sum(losses) / len(losses))


def test_contrastive_loss_matches_reference_infonce_with_queue():
    """lightly's NTXentLoss with a memory bank is MoCo's InfoNCE over [positive, queue], and
    after each training call the (normalised) keys are enqueued and used as the next negatives."""
    g = torch.Generator().manual_seed(1)
    queue_size, dim, t = 12, 8, 0.2
    loss_fn = build_contrastive_loss(t, queue_size, dim)
    queue0 = F.normalize(torch.randn(queue_size, dim, generator=g), dim=1)
    load_memory_bank_state(loss_fn, {"bank": queue0, "ptr": torch.zeros(1, dtype=torch.long)})

    q1 = torch.randn(4, dim, generator=g, requires_grad=True)
    k1 = torch.randn(4, dim, generator=g)
    got1 = loss_fn(q1, k1)
    assert got1.item() == pytest.approx(_reference_infonce(q1.detach(), k1, queue0, t).item(), rel=1e-5)

    # the keys of step 1 replace the oldest 4 entries; step 2's negatives include them
    queue1 = queue0.clone()
    queue1[:4] = F.normalize(k1, dim=1)
    state = memory_bank_state(loss_fn)
    assert torch.allclose(state["bank"], queue1, atol=1e-6)
    assert int(state["ptr"]) == 4
    q2 = torch.randn(4, dim, generator=g, requires_grad=True)
    k2 = torch.randn(4, dim, generator=g)
    got2 = loss_fn(q2, k2)
    assert got2.item() == pytest.approx(_reference_infonce(q2.detach(), k2, queue1, t).item(), rel=1e-5)

    # gradients flow to the query only
    got2.backward()
    assert q2.grad is not None and q2.grad.abs().sum() > 0


def test_memory_bank_state_shape_mismatch_is_explained():
    """Resuming with another queue size fails with a message naming --queue-size."""
    loss_fn = build_contrastive_loss(0.2, 16, 8)
    with pytest.raises(ValueError, match="queue-size"):
        load_memory_bank_state(loss_fn, {"bank": torch.zeros(32, 8), "ptr": torch.zeros(1, dtype=torch.long)})


def test_momentum_update_matches_formula():
    """Key encoder update is theta_k <- m theta_k + (1 - m) theta_q, parameter by parameter,
    and the key encoder has no gradients."""
    model = MoCoModel("resnet18", proj_dim=16)
    with torch.no_grad():
        for p in model.backbone_momentum.parameters():
            p.add_(torch.randn_like(p))
    q_params = [p.detach().clone() for p in list(model.backbone.parameters()) + list(model.projection_head.parameters())]
    k_params = [
        p.detach().clone()
        for p in list(model.backbone_momentum.parameters()) + list(model.projection_head_momentum.parameters())
    ]
    m = 0.9
    model.momentum_update(m)
    new_k = list(model.backbone_momentum.parameters()) + list(model.projection_head_momentum.parameters())
    assert len(new_k) == len(k_params)
    for new, old_k, old_q in zip(new_k, k_params, q_params):
        assert torch.allclose(new, m * old_k + (1 - m) * old_q, atol=1e-6)
        assert not new.requires_grad
    # the query encoder itself is untouched
    for p, old in zip(list(model.backbone.parameters()) + list(model.projection_head.parameters()), q_params):
        assert torch.equal(p, old)


def test_split_batchnorm_is_per_chunk_batchnorm_and_keeps_state_dict():
    """Split BN normalises each chunk with its own statistics (like one DDP rank per chunk),
    works with channels_last, and its state dict loads into a plain torchvision ResNet."""
    x = torch.randn(8, 4, 5, 5) * 3 + 1
    bn = SplitBatchNorm2d(4, num_splits=2)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(4) + 0.5)
        bn.bias.copy_(torch.randn(4))
    want = torch.cat(
        [F.batch_norm(c, None, None, bn.weight, bn.bias, training=True, eps=bn.eps) for c in x.chunk(2)]
    )
    assert torch.allclose(bn(x), want, atol=1e-5)
    assert torch.allclose(bn(x.to(memory_format=torch.channels_last)), want, atol=1e-5)
    # plain BN over the whole batch is different: the statistics really are per chunk
    assert not torch.allclose(F.batch_norm(x, None, None, bn.weight, bn.bias, training=True), want, atol=1e-3)
    with pytest.raises(ValueError, match="divisible"):
        bn(torch.randn(7, 4, 5, 5))

    backbone, dim = make_backbone("resnet18", bn_splits=4)
    plain = torchvision.models.resnet18()
    plain.fc = torch.nn.Identity()
    plain.load_state_dict(backbone.state_dict())  # strict: same keys and shapes
    assert dim == 512


def test_forward_key_shuffles_and_unshuffles_with_split_bn():
    """With split BN the key of sample i is computed in the chunk where the shuffle put it
    (not the query's chunk), and comes back in the original order."""
    model = MoCoModel("resnet18", proj_dim=16, bn_splits=2)
    model.train()
    x = torch.randn(8, 3, 32, 32)
    torch.manual_seed(5)
    k = model.forward_key(x)
    torch.manual_seed(5)
    perm = torch.randperm(8)  # the same draw batch_shuffle made
    encoder = torch.nn.Sequential(model.backbone_momentum, model.projection_head_momentum)
    set_bn_splits(encoder, 1)  # each chunk below is one "rank": plain BN over it
    with torch.no_grad():
        k_shuffled = torch.cat([encoder(chunk) for chunk in x[perm].chunk(2)])
    want = k_shuffled[torch.argsort(perm)]
    assert torch.allclose(k, want, atol=1e-5)


def test_forward_shapes_for_moco_geo_and_classifier():
    """q and k are (N, proj_dim), geo logits (N, K); the classifier gives (N, classes)."""
    model = MoCoModel("resnet18", proj_dim=32, geo_k=7, bn_splits=2)
    x = torch.randn(4, 3, 32, 32)
    q, k, geo = model(x, x)
    assert q.shape == (4, 32) and k.shape == (4, 32) and geo.shape == (4, 7)
    assert MoCoModel("resnet18", geo_k=0).geo_head is None
    assert Classifier("resnet18", 5)(x).shape == (4, 5)


def test_geo_head_learns_geo_clusters_on_toy_problem():
    """A geo head on 128-d projections learns to predict K geo clusters: points drawn around
    K centres on the sphere, embedded by a fixed random map, reach >90% accuracy from chance."""
    g = torch.Generator().manual_seed(0)
    k_clusters, n = 10, 600
    centres = F.normalize(torch.randn(k_clusters, 3, generator=g), dim=1)
    labels = torch.randint(0, k_clusters, (n,), generator=g)
    points = F.normalize(centres[labels] + 0.05 * torch.randn(n, 3, generator=g), dim=1)
    embed = torch.randn(3, 128, generator=g)
    q = points @ embed  # stands in for the query projection
    head = GeoHead(128, k_clusters)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(200):
        loss = F.cross_entropy(head(q), labels)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    acc = (head(q).argmax(1) == labels).float().mean().item()
    assert first > 0.8 * math.log(k_clusters)  # starts near chance
    assert acc > 0.9, acc


def test_every_method_is_described_by_its_parts_once():
    """METHOD_PARTS is the one place that reads a method's name: each method has an entry, and the
    config's properties follow it (MoCo methods use the memory bank; -tp methods draw temporal positives)."""
    from geolab.config import METHOD_PARTS, METHODS, PretrainConfig

    assert set(METHOD_PARTS) == set(METHODS)
    for method, parts in METHOD_PARTS.items():
        cfg = PretrainConfig(method=method, manifest="m.parquet", geo_k=4)
        assert cfg.is_moco == parts.contrastive and cfg.uses_geo == parts.geo
        assert cfg.pair_strategy == ("any-other" if parts.temporal else "same-image")
    assert METHOD_PARTS["moco-tp-geo"] == type(METHOD_PARTS["moco"])(contrastive=True, temporal=True, geo=True, labels=False)


def test_step_without_host_sync_gives_the_same_loss_and_parts_on_the_device():
    """``compute_loss(sync=False)`` keeps every logged part a 0-d tensor (no ``float()`` inside the
    step, which would wait for the GPU) with the values ``sync=True`` returns as floats."""
    from geolab.config import PretrainConfig
    from geolab.models import LossSettings, compute_loss

    cfg = PretrainConfig(method="moco-tp-geo", arch="resnet18-w16", image_size=32, batch_size=4, queue_size=16,
                         geo_k=3, amp=False, device="cpu")
    torch.manual_seed(0)
    model = MoCoModel("resnet18-w16", geo_k=3, bn_splits=2)
    crit = build_contrastive_loss(0.2, 16, 128)
    bank = memory_bank_state(crit)
    g = torch.Generator().manual_seed(1)
    batch = {"query": torch.randn(4, 3, 32, 32, generator=g), "key": torch.randn(4, 3, 32, 32, generator=g),
             "geo_cluster": torch.tensor([0, 1, 2, 0]), "label": torch.zeros(4, dtype=torch.long)}
    out = {}
    for sync in (True, False):
        load_memory_bank_state(crit, bank)
        torch.manual_seed(5)
        out[sync] = compute_loss(LossSettings.of(cfg), model, crit, batch, sync=sync)
    (loss_a, parts_a), (loss_b, parts_b) = out[True], out[False]
    assert set(parts_a) == set(parts_b) == {"loss", "contrastive", "geo", "embedding_std"}
    assert all(isinstance(v, float) for v in parts_a.values())
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 and not v.requires_grad for v in parts_b.values())
    assert {k: float(v) for k, v in parts_b.items()} == parts_a and torch.equal(loss_a, loss_b)


def test_sgd_is_fused_only_on_cuda():
    """The SGD of training and the GPU check: torch's default on the CPU (the course's numbers),
    one fused kernel for all parameters on CUDA."""
    from geolab.models import sgd

    p = [torch.nn.Parameter(torch.randn(3))]
    opt = sgd(p, lr=0.1, momentum=0.9, weight_decay=1e-4)
    assert not opt.param_groups[0]["fused"] and opt.param_groups[0]["momentum"] == 0.9
    if torch.cuda.is_available():
        assert sgd([torch.nn.Parameter(torch.randn(3, device="cuda"))], 0.1, 0.9, 1e-4).param_groups[0]["fused"]


def test_the_only_host_read_in_a_step_is_the_memory_bank_pointer_kept_on_the_host():
    """No host synchronisation per step: with ``sync=False`` the only tensor read back to Python
    (``aten::_local_scalar_dense``: ``.item()``, ``float()``, ``int()``) is lightly's memory-bank
    pointer, and that pointer stays on the host when the loss moves to another device (on a GPU
    the read is then free)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from geolab.config import PretrainConfig
    from geolab.models import LossSettings, compute_loss

    moved = build_contrastive_loss(0.2, 16, 8).to("meta")
    assert moved.memory_bank.bank.device.type == "meta" and moved.memory_bank.bank_ptr.device.type == "cpu"

    class Reads(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ptrs = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default:
                self.ptrs.append(args[0].data_ptr())
            return func(*args, **(kwargs or {}))

    cfg = PretrainConfig(method="moco-tp-geo", arch="resnet18-w16", image_size=32, batch_size=4, queue_size=16,
                         geo_k=3, amp=False, device="cpu")
    model = MoCoModel("resnet18-w16", geo_k=3, bn_splits=2)
    crit = build_contrastive_loss(0.2, 16, 128)
    batch = {"query": torch.randn(4, 3, 32, 32), "key": torch.randn(4, 3, 32, 32),
             "geo_cluster": torch.tensor([0, 1, 2, 0]), "label": torch.zeros(4, dtype=torch.long)}
    counts = {}
    for sync in (False, True):
        with Reads() as reads:
            model.momentum_update(0.99)
            loss, _ = compute_loss(LossSettings.of(cfg), model, crit, batch, sync=sync)
            loss.backward()
        counts[sync] = reads.ptrs
    assert counts[False] == [crit.memory_bank.bank_ptr.data_ptr()]
    assert len(counts[True]) == 5  # the check can fail: sync=True reads loss, contrastive, geo, embedding_std too


def test_split_batchnorm_output_stays_channels_last():
    """The GPU step runs channels_last end to end: split BN must not hand the next convolution a
    contiguous (NCHW) tensor, which would cost a layout conversion per layer."""
    bn = SplitBatchNorm2d(8, num_splits=4).train()
    x = torch.randn(16, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    assert bn(x).is_contiguous(memory_format=torch.channels_last)
    model = MoCoModel("resnet18-w16", bn_splits=4).to(memory_format=torch.channels_last)
    seen = []
    for m in model.backbone.modules():
        if isinstance(m, SplitBatchNorm2d):
            m.register_forward_hook(lambda mod, inp, out: seen.append(out.is_contiguous(memory_format=torch.channels_last)))
    model.forward_query(torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last))
    assert seen and all(seen)
