"""TensorBoard is a declared dependency (lab extra, environment.yml) and on by default: a
training run writes event files whose scalars are the records of metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train import patterned_manifest, quick_config

from geolab.train import pretrain


def test_a_run_writes_tensorboard_events_matching_metrics_jsonl(tmp_path: Path):
    """Two logged steps of moco-geo: <out>/tensorboard holds an event file whose step/loss and
    epoch/loss scalars equal metrics.jsonl's, at the same global steps; tensorboard=False
    writes none."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.set_num_threads(1)
    manifest = patterned_manifest(tmp_path)
    out = tmp_path / "run"
    pretrain(quick_config(manifest, out, "moco-geo", epochs=1, max_steps_per_epoch=2, log_every=1))
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for kind in ("step", "epoch"):
        want = [(r["step"], r["loss"]) for r in records if r["kind"] == kind]
        got = [(e.step, e.value) for e in events.Scalars(f"{kind}/loss")]
        assert want and [s for s, _ in got] == [s for s, _ in want]
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)
    assert {"step/contrastive", "step/geo", "step/lr"} <= set(events.Tags()["scalars"])

    quiet = tmp_path / "quiet"
    pretrain(quick_config(manifest, quiet, "moco", epochs=1, max_steps_per_epoch=1, tensorboard=False))
    assert not (quiet / "tensorboard").exists() and (quiet / "metrics.jsonl").exists()
