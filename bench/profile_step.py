"""Where the time of one MoCo-v2+TP+Geo training step goes (issue #24: profile the bf16 step).

The step of ``bench_gpu_throughput.py`` (ResNet-50, 224 px, batch 256, queue 65536, K=100; bf16
autocast + channels_last by default; fused SGD on CUDA) under ``torch.profiler``: after warm-up
steps, a few steps are recorded; the script prints the operators with the most self time (CUDA
time on a GPU, CPU time otherwise) and the host synchronisations per step, and writes a Chrome trace (open it in https://ui.perfetto.dev).

Run on a GPU: ``python bench/profile_step.py --out runs/profile`` (about a minute).
``--cpu-smoke``: a tiny CPU run of the same step (narrow ResNet-18, 32 px, batch 8) that checks the script;
its numbers are not measurements.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gpu_throughput as bgt  # noqa: E402 - the step being profiled

#: Events of host reads and waits, counted per step. On a GPU ``cudaStreamSynchronize`` and
#: ``cudaDeviceSynchronize`` are the waits; ``aten::_local_scalar_dense`` is any ``.item()`` /
#: ``float()`` / ``int()`` of a tensor, a wait only when the tensor is on the GPU: the one per step
#: that remains is lightly's read of the memory bank's pointer, which geolab keeps on the host
#: (tests/test_models.py checks that it is the only one).
SYNC_EVENTS = ("aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize")


def profile_step(args, device: torch.device, amp: bool, channels_last: bool, warmup: int, active: int,
                 out: Path | None, top: int = 25) -> dict:
    """Profile ``active`` steps after ``warmup``; returns the table, sync counts per step, trace path."""
    step, sync = bgt.build_step(args, device, amp, channels_last, compile_=False)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, schedule=schedule(wait=0, warmup=warmup, active=active),
                 record_shapes=False, acc_events=True) as prof:
        for _ in range(warmup + active):
            step()
            sync()  # outside the step: one wait per step that the step itself does not contain
            prof.step()
    events = prof.key_averages()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = events.table(sort_by=sort, row_limit=top)
    counts = {e.key: e.count for e in events if e.key in SYNC_EVENTS}
    per_step = {k: v / active for k, v in counts.items()}
    # the one cudaDeviceSynchronize per step is this script's own sync() after the step
    if "cudaDeviceSynchronize" in per_step:
        per_step["cudaDeviceSynchronize"] -= 1
    result = {"device": str(device), "arch": args.arch, "image_size": args.image_size, "batch_size": args.batch_size,
              "amp": amp, "channels_last": channels_last, "steps_recorded": active, "syncs_per_step": per_step,
              "table": table}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(out / "trace.json"))
        (out / "profile.json").write_text(json.dumps({k: v for k, v in result.items() if k != "table"}, indent=2))
        (out / "top_ops.txt").write_text(table + "\n")
        result["trace"] = str(out / "trace.json")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="folder for trace.json, top_ops.txt, profile.json")
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--queue-size", type=int, default=65536)
    ap.add_argument("--fp32", action="store_true", help="profile the eager fp32 NCHW step instead")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3, help="steps recorded")
    ap.add_argument("--cpu-smoke", action="store_true", help="no GPU: tiny CPU run that checks the script")
    args = ap.parse_args(argv)
    if torch.cuda.is_available():
        device = torch.device("cuda")
        bgt.gpu_setup()
    elif args.cpu_smoke:
        device = torch.device("cpu")
        args.arch, args.image_size, args.batch_size, args.queue_size, args.warmup = "resnet18-w16", 32, 8, 64, 1
    else:
        print("No CUDA GPU available: this script profiles the GPU step. Run it on a GPU machine, or pass "
              "--cpu-smoke for a tiny CPU run that checks the script.")
        return 0
    res = profile_step(args, device, amp=not args.fp32, channels_last=not args.fp32, warmup=args.warmup,
                       active=args.steps, out=args.out)
    print(res["table"])
    print(f"host synchronisations per step: {res['syncs_per_step'] or 'none'}")
    if res.get("trace"):
        print(f"Chrome trace: {res['trace']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
