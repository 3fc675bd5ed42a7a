"""What notebook 08's label efficiency and fine-tuning cost on a finished course run (issue 25 item 3).

Times :func:`geolab.course.labels.label_experiments` (every main run probed with 1 and 10 % of the labels, the runs
of one seed fine-tuned end to end) on the main-comparison runs of a course run folder, as notebook 08 calls it with
the profile's settings, and prints the wall time, the CPU time (this process and its workers) and the load average
before and after (on a shared machine, CPU time is the steadier number). Nothing is written into the run folder.

    python bench/bench_labels.py runs/course                         # the cpu profile's settings
    python bench/bench_labels.py runs/course --workers 1 --finetune-epochs 2
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

from geolab.course.experiment import collect_records
from geolab.course.labels import LABEL_FRACTIONS, label_experiments


def measure(run: Path, workers: int | None, finetune_epochs: int, finetune_max_steps: int | None) -> dict:
    """Time label_experiments on ``run``'s main records; the numbers as a dict."""
    records = collect_records(run / "records" / "08_results.jsonl")  # every notebook's records, one per run
    main = [r for r in records if r.get("experiment", "main") == "main" and r.get("notebook") != "08_results"]
    load_before = os.getloadavg()[0]
    t, cpu = time.perf_counter(), time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    labelled, tuned = label_experiments(main, LABEL_FRACTIONS, finetune_epochs=finetune_epochs,
                                        finetune_max_steps=finetune_max_steps, workers=workers)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    return {"runs": len(main), "label-efficiency records": len(labelled), "fine-tuned runs": len(tuned),
            "fine-tuning steps": sorted({r["finetune_steps"] for r in tuned}),
            "wall s": round(time.perf_counter() - t, 1), "cpu s": round(time.process_time() - cpu + child_cpu, 1),
            "load before": round(load_before, 1), "load after": round(os.getloadavg()[0], 1)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a course run folder (its records/*.jsonl)")
    parser.add_argument("--workers", default="auto", help="runs evaluated at once ('auto': one per core)")
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--finetune-max-steps", type=int, default=None)
    a = parser.parse_args(argv)
    out = measure(a.run, None if a.workers == "auto" else int(a.workers), a.finetune_epochs, a.finetune_max_steps)
    width = max(map(len, out))
    for k, v in out.items():
        print(f"{k:<{width}}  {v}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
