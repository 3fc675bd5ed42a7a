"""The model.

A ResNet query encoder, lightly's MoCo projection head, a momentum key encoder and an optional geo head (Ayush et
al. 2021, Sec. 3; He et al. 2020; Chen et al. 2020).

Read it like MoCo's ``builder.py``:

* query encoder  ``f_q`` = backbone + :class:`~lightly.models.modules.MoCoProjectionHead`
  (2-layer MLP, 128-d, MoCo-v2);
* key encoder    ``f_k`` = a copy of ``f_q`` without gradients, updated as
  ``theta_k <- m * theta_k + (1 - m) * theta_q`` (MoCo Eq. 2) by lightly's
  :func:`~lightly.models.utils.update_momentum`;
* geo head       ``g`` = ReLU + Linear(128, K) on the query projection, predicting the geo
  cluster of the image's lat/lon (as in the official GASSL code);
* the contrastive loss (InfoNCE with the memory bank of negative keys) is lightly's
  :class:`~lightly.loss.NTXentLoss` with ``memory_bank_size=(queue, 128)``, built in
  :func:`build_contrastive_loss`.

The total loss of ``moco-*-geo`` is ``alpha * InfoNCE(q, k) + beta * CE(g(q), cluster)``
(see :func:`compute_loss`): each method's model (:func:`build_model`) and loss sit here together.

**MoCo's BatchNorm leak.** With plain BatchNorm the query and its positive key are normalised
with statistics of the *same* set of samples, and the network can find the positive through
those statistics instead of the content ("cheating", MoCo Sec. 3.3). MoCo fixes it by
*shuffling BN*: the keys are shuffled across GPUs before the key encoder and unshuffled after,
so a query and its key see BN statistics from different sub-batches. Shuffling on one device
alone changes nothing (the statistics are over the whole batch either way), so geolab does:

* under DDP: each rank's BN is its own sub-batch, and :meth:`MoCoModel.forward_key`
  shuffles the keys across ranks (lightly's ``batch_shuffle(distributed=True)``);
* on one device: :class:`SplitBatchNorm2d` normalises each of ``bn_splits`` contiguous
  chunks of the batch with its own statistics, i.e. it behaves exactly like ``bn_splits``
  ranks, and the keys are shuffled over the whole batch before the key encoder. One device
  with ``bn_splits=S`` computes the same gradients as ``S`` DDP ranks on the same global batch
  (``tests/test_ddp.py`` checks it).

Why our own split BN and not lightly's ``SplitBatchNorm``: lightly's reshapes the batch with
``view`` (fails on channels_last tensors, which the GPU path uses) and keeps ``S x C`` running
statistics, so its state dict no longer loads into a plain ResNet; ours keeps BatchNorm2d's
parameters and buffers exactly (checkpoints load into torchvision's ResNet and into
:func:`geolab.evaluate.load_backbone`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead
from lightly.models.modules.memory_bank import MemoryBankModule
from lightly.models.utils import batch_shuffle, batch_unshuffle, deactivate_requires_grad, update_momentum
from torch import Tensor, nn

from geolab.config import MethodParts, PretrainConfig


class NarrowResNet(torchvision.models.ResNet):
    """torchvision's ResNet with other stage widths and, for small images, a small stem.

    The paper's ResNet-50 is far too slow for a 2-core CPU, and contrastive learning needs
    thousands of optimizer steps, not dozens. A ResNet-18 at a quarter of the width does
    about 1/16 of the work per image, so the ``cpu`` course profiles train it for 10-50x
    more steps in the same minutes. It is torchvision's class (its ``BasicBlock``,
    ``_make_layer`` and ``forward``) with two changes torchvision does not expose as
    arguments: the widths of the four stages, and optionally a 3x3 stride-1 stem (CIFAR
    style, as SimCLR's small-image ResNets) instead of the 7x7 stride-2 one. Its state dict
    has the same key layout as a torchvision ResNet (``conv1``, ``bn1``, ``layer1..4``).

    Args:
        widths: channels of ``layer1..layer4`` (torchvision's ResNet-18: 64, 128, 256, 512).
        layers: blocks per stage (ResNet-18: 2, 2, 2, 2).
        small_stem: 3x3 stride-1 first convolution (for 32-64 px inputs).
        weights: must be ``None`` (there are no pre-trained weights); torchvision's factory
            signature.
        norm_layer: BatchNorm class or factory (see :class:`SplitBatchNorm2d`).
    """

    def __init__(
        self,
        widths: tuple[int, int, int, int] = (16, 32, 64, 128),
        layers: tuple[int, int, int, int] = (2, 2, 2, 2),
        small_stem: bool = True,
        weights: None = None,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ) -> None:
        if weights is not None:
            raise ValueError("narrow ResNets have no pre-trained weights; pass weights=None.")
        nn.Module.__init__(self)  # torchvision's __init__ hard-codes the widths: build the same parts here
        self._norm_layer = norm_layer or nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = widths[0], 1, 1, 64
        if small_stem:
            self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        block = torchvision.models.resnet.BasicBlock
        self.layer1 = self._make_layer(block, widths[0], layers[0])
        self.layer2 = self._make_layer(block, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3], 1000)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


def _narrow(widths: tuple[int, int, int, int], small_stem: bool) -> Callable[..., nn.Module]:
    def factory(weights: None = None, norm_layer: Callable[[int], nn.Module] | None = None) -> nn.Module:
        return NarrowResNet(widths, small_stem=small_stem, weights=weights, norm_layer=norm_layer)

    return factory


#: Backbones geolab builds (random init) and their feature sizes. The paper's is
#: ``resnet50``; ``resnet18-w16`` and ``resnet18-w32`` are ResNet-18s at 1/4 and 1/2 width
#: with a small stem, for the CPU course at 32-64 px (:class:`NarrowResNet`).
ARCHS: dict[str, tuple[Callable[..., nn.Module], int]] = {
    "resnet18": (torchvision.models.resnet18, 512),
    "resnet34": (torchvision.models.resnet34, 512),
    "resnet50": (torchvision.models.resnet50, 2048),
    "resnet18-w16": (_narrow((16, 32, 64, 128), small_stem=True), 128),
    "resnet18-w32": (_narrow((32, 64, 128, 256), small_stem=True), 256),
}


class SplitBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, in training, normalises each of ``num_splits`` contiguous chunks of the batch on its own.

    Each chunk uses its own statistics: one device behaving like ``num_splits`` GPUs.

    Parameters and buffers are those of :class:`torch.nn.BatchNorm2d` (same state-dict keys
    and shapes). Running statistics are updated once per chunk, in order. Works with
    channels_last inputs (chunks along the batch dimension, no ``view``). In eval mode, or
    with ``num_splits == 1``, it is plain BatchNorm2d.

    Args:
        num_features: channels.
        num_splits: number of chunks; the batch size must be divisible by it.
        **kwargs: passed to :class:`torch.nn.BatchNorm2d`.
    """

    def __init__(self, num_features: int, num_splits: int = 1, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        if num_splits < 1:
            raise ValueError(f"num_splits must be >= 1, got {num_splits}")
        self.num_splits = num_splits

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002 - torch's name
        """Batch norm of ``input``, per chunk in training (see the class)."""
        if not self.training or self.num_splits == 1:
            return super().forward(input)
        n = input.shape[0]
        if n % self.num_splits:
            raise ValueError(
                f"SplitBatchNorm2d: batch of {n} is not divisible by bn_splits={self.num_splits}; "
                "choose a batch size that is a multiple of bn_splits (or set bn_splits=1)."
            )
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        momentum = 0.1 if self.momentum is None else self.momentum
        chunks = [
            F.batch_norm(c, self.running_mean, self.running_var, self.weight, self.bias, True, momentum, self.eps)
            for c in input.chunk(self.num_splits, dim=0)
        ]
        return torch.cat(chunks, dim=0)

    def extra_repr(self) -> str:
        """BatchNorm2d's repr plus ``num_splits``."""
        return super().extra_repr() + f", num_splits={self.num_splits}"


def make_backbone(arch: str, bn_splits: int = 1) -> tuple[nn.Module, int]:
    """A torchvision ResNet without its classifier (``fc = Identity``), randomly initialised.

    Args:
        arch: a key of :data:`ARCHS` (paper: ``resnet50``).
        bn_splits: chunks of :class:`SplitBatchNorm2d` (1 = plain BatchNorm behaviour).

    Returns:
        ``(backbone, feature_dim)``; ``backbone(x)`` is ``(N, feature_dim)``.

    Raises:
        ValueError: unknown ``arch``.
    """
    if arch not in ARCHS:
        raise ValueError(f"Unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}.")
    factory, dim = ARCHS[arch]

    def norm_layer(c: int) -> nn.Module:
        return SplitBatchNorm2d(c, num_splits=bn_splits)

    net = factory(weights=None, norm_layer=norm_layer)
    net.fc = nn.Identity()
    return net, dim


def set_bn_splits(module: nn.Module, splits: int) -> None:
    """Set ``num_splits`` of every :class:`SplitBatchNorm2d` in ``module`` (e.g. 1 for eval)."""
    for m in module.modules():
        if isinstance(m, SplitBatchNorm2d):
            m.num_splits = splits


class GeoHead(nn.Sequential):
    """Geo head: ReLU + Linear(in_dim, K) on the query projection (official GASSL code).

    Args:
        in_dim: projection size (128).
        k: number of geo clusters (paper: 100).
    """

    def __init__(self, in_dim: int, k: int) -> None:
        super().__init__(nn.ReLU(), nn.Linear(in_dim, k))


class MoCoModel(nn.Module):
    """MoCo-v2 with an optional geo head: query encoder, momentum key encoder, geo head.

    Args:
        arch: backbone name (paper: ``resnet50``).
        proj_dim: projection output size (128).
        geo_k: geo clusters for the geo head; 0 = no geo head (``moco``, ``moco-tp``).
        bn_splits: :class:`SplitBatchNorm2d` chunks on one device (1 under DDP).
        head_bn: BatchNorm in the projection heads' layers, hidden and output (MoCo v3's head;
            lightly's ``MoCoProjectionHead(batch_norm=True)``). MoCo-v2 has none. Why it is an
            option: at initialisation a small ResNet's projections all point nearly the same way
            (normalised std ~0.15 of 1; :func:`embedding_std`), every negative is as close as the
            positive, and InfoNCE's gradient is weak until they spread; BatchNorm centres them
            from the first step (BENCHMARKS.md, "Stuck runs").

    Attributes:
        backbone, projection_head: the query encoder ``f_q``.
        backbone_momentum, projection_head_momentum: the key encoder ``f_k`` (no gradients).
        geo_head: :class:`GeoHead` or ``None``.
        feature_dim: backbone output size (what the linear probe sees).
    """

    def __init__(self, arch: str = "resnet50", proj_dim: int = 128, geo_k: int = 0, bn_splits: int = 1,
                 head_bn: bool = False) -> None:
        super().__init__()
        self.arch = arch
        self.backbone, self.feature_dim = make_backbone(arch, bn_splits)
        # MoCo-v2: hidden layer as wide as the features (2048 for ResNet-50), 128-d output.
        self.projection_head = MoCoProjectionHead(self.feature_dim, self.feature_dim, proj_dim, batch_norm=head_bn)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.geo_head = GeoHead(proj_dim, geo_k) if geo_k > 0 else None

    def forward_query(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Query projection ``q`` (not normalised; the loss normalises) and geo logits (or None)."""
        q = self.projection_head(self.backbone(x))
        geo = self.geo_head(q) if self.geo_head is not None else None
        return q, geo

    @torch.no_grad()
    def forward_key(self, x: Tensor, distributed: bool = False) -> Tensor:
        """Key projection ``k`` from the momentum encoder, with shuffle BN.

        The keys are shuffled over the whole batch (over all ranks when ``distributed``)
        before the key encoder and put back in order after it, so that with split BN or DDP a
        key is never normalised together with its own query.
        """
        x, shuffle = batch_shuffle(x, distributed=distributed)
        k = self.projection_head_momentum(self.backbone_momentum(x))
        return batch_unshuffle(k, shuffle, distributed=distributed)

    def forward(self, query: Tensor, key: Tensor, distributed: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(q, k, geo_logits)`` for a batch of query views and their positive key views."""
        q, geo = self.forward_query(query)
        k = self.forward_key(key, distributed=distributed)
        return q, k, geo

    @torch.no_grad()
    def momentum_update(self, m: float) -> None:
        """``theta_k <- m * theta_k + (1 - m) * theta_q`` (MoCo Eq. 2) for backbone and head."""
        # lightly 1.6's update_momentum is already two foreach ops per module (_foreach_mul_,
        # _foreach_add_ with alpha): a few kernel launches a step on CUDA, nothing to fuse here
        update_momentum(self.backbone, self.backbone_momentum, m)
        update_momentum(self.projection_head, self.projection_head_momentum, m)


def sgd(params: Sequence[Tensor], lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    """MoCo's SGD; on CUDA with ``fused=True`` (one kernel for all parameters), else torch's default."""
    fused = bool(params) and all(p.is_cuda for p in params)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=fused or None)


class Classifier(nn.Module):
    """Backbone + linear classifier.

    The ``supervised`` baseline (categories) and ``geoloc`` (geo clusters as the only pretext labels).

    Args:
        arch: backbone name.
        num_classes: categories or geo clusters.
        bn_splits: :class:`SplitBatchNorm2d` chunks (1: plain BatchNorm).
    """

    def __init__(self, arch: str, num_classes: int, bn_splits: int = 1) -> None:
        super().__init__()
        self.arch = arch
        self.backbone, self.feature_dim = make_backbone(arch, bn_splits)
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits of a batch of images."""
        return self.classifier(self.backbone(x))


def build_contrastive_loss(
    temperature: float, queue_size: int, dim: int = 128, distributed: bool = False
) -> NTXentLoss:
    """InfoNCE with a memory bank (the MoCo queue) from lightly.

    ``NTXentLoss(temperature, memory_bank_size=(queue_size, dim))``: logits are
    ``[q.k+, q.queue] / T`` of L2-normalised vectors, label 0; after each training call the
    batch's keys are enqueued (gathered from all ranks first when ``distributed``).

    Note: lightly keeps the bank in non-persistent buffers; :func:`memory_bank_state` and
    :func:`load_memory_bank_state` put it in checkpoints so that a resumed run is exact.

    Args:
        temperature: T (0.2 MoCo-v2; 0.02 official GASSL commands).
        queue_size: number of negative keys (paper: 65536).
        dim: key size (128).
        distributed: gather keys over DDP ranks before enqueueing.
    """
    loss = NTXentLoss(temperature=temperature, memory_bank_size=(queue_size, dim), gather_distributed=distributed)
    loss.memory_bank.__class__ = _HostPointerMemoryBank  # the same module; only moving it differs
    return loss


class _HostPointerMemoryBank(MemoryBankModule):
    """lightly's memory bank, its write pointer kept on the host when the bank moves to a GPU.

    lightly reads the pointer with ``int(self.bank_ptr)`` at every enqueue: with the pointer on the
    GPU that is a host synchronisation per training step (the CPU waits for the whole step
    queued so far). On the host the read is free and nothing else changes (the bank, the keys
    and the arithmetic are the same; on the CPU nothing moves at all).
    """

    bank_ptr: Tensor

    def _apply(self, fn, recurse=True):
        ptr = self.bank_ptr
        super()._apply(fn, recurse)
        self.bank_ptr = ptr
        return self


def memory_bank_state(loss: NTXentLoss) -> dict[str, Tensor]:
    """The memory bank's keys and pointer as plain tensors (for a checkpoint)."""
    bank = loss.memory_bank
    return {"bank": bank.bank.detach().cpu().clone(), "ptr": bank.bank_ptr.detach().cpu().clone()}


def load_memory_bank_state(loss: NTXentLoss, state: dict[str, Tensor]) -> None:
    """Restore :func:`memory_bank_state` into ``loss``.

    Raises:
        ValueError: the saved bank's shape differs (another queue size or projection size).
    """
    bank = loss.memory_bank.bank
    if tuple(state["bank"].shape) != tuple(bank.shape):
        raise ValueError(
            f"memory bank in the checkpoint has shape {tuple(state['bank'].shape)}, this run expects "
            f"{tuple(bank.shape)} (queue_size, proj_dim): resume with the same --queue-size."
        )
    with torch.no_grad():
        bank.copy_(state["bank"].to(bank.device))
        loss.memory_bank.bank_ptr.copy_(state["ptr"].to(bank.device))


# ----------------------------------------------------------------------------- one method: model and loss
def auto_bn_splits(per_rank_batch: int, world_size: int) -> int:
    """BN splits used when ``bn_splits=0``.

    1 under DDP (each rank is a split), else the largest of 8, 4, 2 that divides the batch with at
    least 4 images per split (MoCo: 8 GPUs x 32).
    """
    if world_size > 1:
        return 1
    for s in (8, 4, 2):
        if per_rank_batch % s == 0 and per_rank_batch // s >= 4:
            return s
    return 1


@dataclass(frozen=True)
class ModelSettings:
    """What :func:`build_model` needs of a run's :class:`~geolab.config.PretrainConfig` (its ``model`` part).

    Attributes:
        parts: what the method is made of (:data:`geolab.config.METHOD_PARTS`).
        arch: backbone, a key of :data:`ARCHS`.
        proj_dim: output size of the MoCo projection head.
        geo_k: geo clusters (the geo head's outputs; ``geoloc``'s classes).
        head_bn: BatchNorm in the projection head (MoCo v3).
    """

    parts: MethodParts
    arch: str = "resnet50"
    proj_dim: int = 128
    geo_k: int = 100
    head_bn: bool = False

    @classmethod
    def of(cls, cfg: PretrainConfig) -> ModelSettings:
        """The model settings of ``cfg``."""
        return cls(cfg.parts, **{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls) if f.name != "parts"})


@dataclass(frozen=True)
class LossSettings:
    """What :func:`compute_loss` needs of a run's :class:`~geolab.config.PretrainConfig` (its ``loss`` part).

    The InfoNCE temperature and the memory bank's size belong to the criterion
    (:func:`build_contrastive_loss`), built once from the same config.

    Attributes:
        parts: what the method is made of (:data:`geolab.config.METHOD_PARTS`).
        alpha: weight of the contrastive loss.
        beta: weight of the geo cross-entropy.
        symmetric: both views of a pair are queries.
        amp: bf16 autocast (``None``: on for CUDA tensors, off on the CPU).
    """

    parts: MethodParts
    alpha: float = 1.0
    beta: float = 1.0
    symmetric: bool = False
    amp: bool | None = None

    @classmethod
    def of(cls, cfg: PretrainConfig) -> LossSettings:
        """The loss settings of ``cfg``."""
        return cls(cfg.parts, **{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls) if f.name != "parts"})


def build_model(settings: ModelSettings, num_classes: int, bn_splits: int) -> nn.Module:
    """The model of a method: a :class:`MoCoModel` (with a geo head for the geo methods) or a :class:`Classifier`.

    Args:
        settings: the run's :class:`ModelSettings` (``ModelSettings.of(cfg)``).
        num_classes: category labels (the supervised classifier's outputs).
        bn_splits: split BatchNorm of the MoCo encoders (see :class:`SplitBatchNorm2d`).

    Returns:
        The model, on the CPU.
    """
    method = settings.parts
    if method.contrastive:
        return MoCoModel(settings.arch, proj_dim=settings.proj_dim, geo_k=settings.geo_k if method.geo else 0,
                         bn_splits=bn_splits, head_bn=settings.head_bn)
    n = num_classes if method.labels else settings.geo_k
    return Classifier(settings.arch, n, bn_splits=1)


@torch.no_grad()
def embedding_std(q: Tensor, sync: bool = True) -> float | Tensor:
    """The collapse monitor of SimSiam (section 4.1): std over the batch of L2-normalised embeddings.

    The per-dimension standard deviation of ``q / ||q||``, averaged over dimensions and multiplied
    by ``sqrt(d)``: about 1 when the embeddings spread over the sphere, 0 when they collapse to
    one point (torchgeo's SSL trainers log the same quantity). ``sync=False``: a 0-d tensor on
    ``q``'s device (no wait for the GPU).
    """
    z = F.normalize(q.detach().float(), dim=1)
    std = z.std(dim=0).mean() * z.shape[1] ** 0.5
    return float(std) if sync else std


def compute_loss(
    settings: LossSettings,
    model: nn.Module,
    criterion: nn.Module | None,
    batch: dict[str, Tensor],
    distributed: bool = False,
    sync: bool = True,
) -> tuple[Tensor, dict[str, float | Tensor]]:
    """Loss of one batch for any method.

    Args:
        settings: the run's :class:`LossSettings` (``LossSettings.of(cfg)``: method parts, alpha, beta ...).
        model: :class:`MoCoModel` or :class:`Classifier`, possibly wrapped in DDP.
        criterion: the memory-bank InfoNCE (:func:`build_contrastive_loss`) for
            MoCo methods, else ``None``.
        batch: ``query``, ``key``, ``geo_cluster``, ``label`` tensors on the device (``key``
            only for MoCo methods).
        distributed: shuffle keys across ranks (DDP).
        sync: ``parts`` as Python floats (each one a wait for the GPU); ``False`` keeps them as
            detached 0-d tensors on the device, for a step with no host synchronisation.

    Returns:
        ``(loss, parts)`` where ``parts`` has ``loss`` and, where they apply,
        ``contrastive`` and ``geo`` (floats, or tensors without ``sync``).
    """
    method = settings.parts
    device = batch["query"].device.type
    amp = bool(settings.amp) if settings.amp is not None else device == "cuda"  # explicit True: CPU too
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=amp)
    parts: dict[str, float | Tensor] = {}
    if method.contrastive:
        if criterion is None:
            raise ValueError("compute_loss: a contrastive method needs its criterion (build_contrastive_loss).")
        query, key, geo_cluster = batch["query"], batch["key"], batch.get("geo_cluster")
        if settings.symmetric:  # both views are queries: rows (view 1 -> key of view 2) then (view 2 -> key of view 1)
            query, key = torch.cat([query, key]), torch.cat([key, query])
            geo_cluster = torch.cat([geo_cluster, geo_cluster]) if geo_cluster is not None else None
        with autocast:
            q, k, geo = model(query, key, distributed=distributed)
        # one call: every row meets the same memory bank, then all keys are enqueued
        contrastive = criterion(q.float(), k.float())
        loss = settings.alpha * contrastive
        parts["contrastive"] = contrastive.detach()
        parts["embedding_std"] = embedding_std(q, sync)
        if geo is not None:
            if geo_cluster is None:
                raise ValueError("compute_loss: a geo method needs the batch's geo_cluster.")
            geo_loss = F.cross_entropy(geo.float(), geo_cluster)
            loss = loss + settings.beta * geo_loss
            parts["geo"] = geo_loss.detach()
    else:
        with autocast:
            logits = model(batch["query"])
        target = batch["label"] if method.labels else batch["geo_cluster"]
        loss = F.cross_entropy(logits.float(), target)
    parts["loss"] = loss.detach()
    return loss, ({k: float(v) for k, v in parts.items()} if sync else parts)
