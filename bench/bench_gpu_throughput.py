"""Target: >= 3,000 MoCo-v2+TP+Geo pairs/s for ResNet-50 at 224 px on one GPU, best mode.

Side by side in one run, the same training step (:func:`geolab.models.compute_loss` on a
:class:`geolab.models.MoCoModel` with geo head: momentum update, query + key forward with
split BN and key shuffle, memory-bank InfoNCE + geo cross-entropy, backward, SGD) in three
modes:

1. eager fp32 (NCHW);
2. bf16 autocast + channels_last;
3. bf16 autocast + channels_last + ``torch.compile`` of both encoders.

Inputs are random tensors already on the GPU (the model's throughput, not the loader's;
feeding 3,000 pairs/s from JPEGs needs the prepared cache and enough DataLoader workers).

Without CUDA it says so and exits 0; ``--cpu-smoke`` runs a tiny version of the same modes
on the CPU (ResNet-18, 32 px, 2 steps; bf16 autocast on the CPU) to prove the script works.
:func:`measure_mode` and :data:`MODES` are what ``bench/gpu_check.py`` reuses.

Run: ``python bench/bench_gpu_throughput.py [--batch-size 256 --steps 30]``.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from geolab.config import PretrainConfig
from geolab.models import LossSettings, MoCoModel, auto_bn_splits, build_contrastive_loss, compute_loss, sgd


#: The three modes: (name, bf16 autocast, channels_last, torch.compile).
MODES: tuple[tuple[str, bool, bool, bool], ...] = (
    ("eager fp32", False, False, False),
    ("bf16 + channels_last", True, True, False),
    ("bf16 + channels_last + torch.compile", True, True, True),
)


def gpu_setup() -> None:
    """The CUDA settings of a training run: cuDNN autotuning, TF32 matmuls and convolutions."""
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def build_step(args, device: torch.device, amp: bool, channels_last: bool, compile_: bool,
               compile_backend: str = "inductor"):
    """The training step of one mode, ready to call: ``(step, sync)``, both without arguments.

    ``args`` needs ``arch``, ``image_size``, ``batch_size``, ``queue_size``. ``compile_backend`` is
    passed to ``nn.Module.compile`` (``"aot_eager"`` traces the same graphs without generating
    kernels: what a CPU check can afford). Used by :func:`measure_mode` and ``bench/profile_step.py``.
    """
    torch.manual_seed(0)
    cfg = PretrainConfig(method="moco-tp-geo", arch=args.arch, image_size=args.image_size, batch_size=args.batch_size,
                         queue_size=args.queue_size, geo_k=100, amp=amp, device=device.type)
    model = MoCoModel(args.arch, geo_k=100, bn_splits=auto_bn_splits(args.batch_size, 1)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_:
        model.backbone.compile(backend=compile_backend)
        model.backbone_momentum.compile(backend=compile_backend)
    crit = build_contrastive_loss(cfg.temperature, cfg.queue_size, cfg.proj_dim).to(device)
    # fused SGD on CUDA (one kernel for all parameters); lightly's momentum update is foreach already
    opt = sgd([p for p in model.parameters() if p.requires_grad], lr=0.03, momentum=0.9, weight_decay=1e-4)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    batch = {
        "query": torch.randn(shape, device=device).contiguous(memory_format=fmt),
        "key": torch.randn(shape, device=device).contiguous(memory_format=fmt),
        "geo_cluster": torch.randint(0, 100, (args.batch_size,), device=device),
        "label": torch.zeros(args.batch_size, dtype=torch.long, device=device),
    }

    def step() -> None:
        model.momentum_update(cfg.ema_momentum)
        loss, _ = compute_loss(LossSettings.of(cfg), model, crit, batch, sync=False)  # no wait for the GPU in the step
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step, sync


def measure_mode(args, device: torch.device, amp: bool, channels_last: bool, compile_: bool,
                 compile_backend: str = "inductor") -> dict[str, float]:
    """Time one mode; returns ``pairs_per_s``, ``ms_per_step``, ``warmup_s`` (warm-up steps,
    compilation included) and, on CUDA, ``peak_mem_gib``.

    ``args`` needs ``arch``, ``image_size``, ``batch_size``, ``queue_size``, ``steps``, ``warmup``
    (see :func:`build_step` for ``compile_backend``).
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step, sync = build_step(args, device, amp, channels_last, compile_, compile_backend)
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    dt = time.perf_counter() - t0
    out = {"pairs_per_s": args.batch_size * args.steps / dt, "ms_per_step": dt / args.steps * 1000, "warmup_s": warm}
    if device.type == "cuda":
        out["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def run_mode(name: str, args, device: torch.device, amp: bool, channels_last: bool, compile_: bool) -> float:
    """Pairs per second of one mode (after warm-up), printed."""
    m = measure_mode(args, device, amp, channels_last, compile_)
    print(f"  {name}: {m['pairs_per_s']:,.0f} pairs/s ({m['ms_per_step']:.1f} ms/step; warm-up {m['warmup_s']:.1f} s)",
          flush=True)
    return m["pairs_per_s"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--queue-size", type=int, default=65536)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile mode")
    ap.add_argument("--cpu-smoke", action="store_true", help="no GPU: tiny CPU run of the same modes")
    args = ap.parse_args()

    if torch.cuda.is_available():
        device = torch.device("cuda")
        gpu_setup()
        where = torch.cuda.get_device_name(0)
    elif args.cpu_smoke:
        device = torch.device("cpu")
        args.arch, args.image_size, args.batch_size, args.queue_size = "resnet18", 32, 8, 64
        args.steps, args.warmup = 2, 1
        args.no_compile = True
        where = "CPU smoke run (not a measurement)"
    else:
        print("No CUDA GPU available: this benchmark measures GPU throughput and has nothing to measure here. "
              "Run it on a GPU machine, or pass --cpu-smoke for a tiny CPU run that checks the script.")
        return 0

    print(f"{where}: MoCo-v2+TP+Geo step, {args.arch} @ {args.image_size} px, batch {args.batch_size}, "
          f"queue {args.queue_size}, bn_splits {auto_bn_splits(args.batch_size, 1)}, torch {torch.__version__}")
    modes = [m for m in MODES if not (m[3] and args.no_compile)]
    rates = {}
    for name, amp, cl, comp in modes:
        try:
            rates[name] = run_mode(name, args, device, amp, cl, comp)
        except Exception as exc:  # noqa: BLE001 - report the mode that failed and go on
            print(f"  {name}: failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if not rates:
        return 1
    base = next(iter(rates.values()))
    print("\n| mode | pairs/s | vs eager fp32 |")
    print("| --- | ---: | ---: |")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f}x |")
    best = max(rates, key=rates.get)
    if device.type == "cuda":
        verdict = "met" if rates[best] >= 3000 else "NOT met"
        print(f"\nbest: {best}, {rates[best]:,.0f} pairs/s; target >= 3,000 pairs/s {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
