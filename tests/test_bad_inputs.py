"""Bad inputs through the real ``geolab`` command line (subprocesses), one table row each.

Protects issue 13's promise for every row: the command exits non-zero (2 for user errors,
argparse's and geolab's alike; ``doctor`` says 1), prints exactly one line naming the problem
(``geolab: error: ...``, argparse's ``error: argument ...`` or doctor's ``problem: ...``), never
a traceback, and no file that existed before the command is changed or lost. The downloader
row lists from the local S3 test server (tests/s3_server.py) whose continuation token repeats:
it must stop by itself within seconds instead of listing for ever.

Fixtures are tiny: a 16-pixel, 8-location manifest drawn with PIL and one training step of
ResNet-18 for the checkpoint rows. Subprocesses run with one OpenMP thread, two at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import make_manifest
from s3_server import FakeS3

REPO = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).with_name("geolab")
GEOLAB = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "geolab.cli"]
MANIFEST_COLUMNS = "image_id,location_id,path,timestamp,lat,lon,label,split"


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The user's files every row may be tempted to touch: manifests, a finished run, odd files."""
    import pandas as pd
    import torch

    from geolab.config import PretrainConfig
    from geolab.manifest import load_manifest, save_manifest
    from geolab.train import pretrain

    root = tmp_path_factory.mktemp("user")
    manifest = make_manifest(root / "data", n_locations=8, revisits=(2, 3), size=16)
    torch.set_num_threads(1)
    run = root / "run"
    pretrain(PretrainConfig(
        method="moco-tp", manifest=manifest, out=run, arch="resnet18", image_size=16, epochs=1, batch_size=4,
        max_steps_per_epoch=1, queue_size=8, knn_every=0, num_workers=0, device="cpu", progress=False,
        tensorboard=False,
    ))
    df = load_manifest(manifest)
    one_label = df.assign(label="airport")
    save_manifest(one_label, root / "data" / "one-label.parquet")
    unseen = df.copy()
    unseen.loc[unseen["split"] == "test", "label"] = "stadium"
    save_manifest(unseen, root / "data" / "unseen.parquet")
    other = df.copy()
    other.loc[other["split"] == "val", "label"] = "port"
    save_manifest(other, root / "data" / "other.parquet")

    rows = "\n".join(f"{r.image_id},{r.location_id},{r.path},2016-01-01T00:00:00Z,{r.lat},{r.lon},{r.label},{r.split}"
                     for r in df.head(3).itertuples())
    (root / "data" / "dup-header.csv").write_text(MANIFEST_COLUMNS + ",lat\n"
                                                  + "\n".join(line + ",1.0" for line in rows.splitlines()) + "\n")
    spaced = rows.splitlines()
    spaced[2] = spaced[2].replace(",train", ",train ").replace(f",{df.label[2]},", f",{df.label[0]} ,")
    (root / "data" / "spaces.csv").write_text(MANIFEST_COLUMNS + "\n" + "\n".join(spaced) + "\n")
    outside = pd.DataFrame(df.head(2)).assign(path=["../outside.png", df.path[1]])
    shutil.copy(df.path[0], root / "outside.png")
    save_manifest(outside, root / "data" / "outside.csv")
    (root / "data" / "lat.csv").write_text(MANIFEST_COLUMNS + "\n"
                                           + rows.splitlines()[0].replace(f",{df.lat[0]},", ",123.0,") + "\n")
    (root / "data" / "garbage.parquet").write_bytes(b"not parquet at all")

    (root / "zero.pt").write_bytes(b"")
    torch.save({"model": {"w": Path("x")}}, root / "pickled.pt")  # a pathlib object: pickled code
    (root / "a-file").write_text("a file, not a folder\n")
    (root / "notes").mkdir()
    (root / "notes" / "notes.txt").write_text("my notes\n")
    (root / "json-folder").mkdir()
    # issue 23: files that export, prepare and course run must not replace
    (root / "geoworld").mkdir()  # shaped like a geoworld folder: world.json beside its manifest
    (root / "geoworld" / "world.json").write_text('{"seed": 0}\n')
    shutil.copy(manifest, root / "geoworld" / "manifest.parquet")
    (root / "theirs.pth").write_bytes(b"someone's weights")
    (root / "my-report").mkdir()
    (root / "my-report" / "report.md").write_text("my own report\n")
    (root / "broken-run").mkdir()
    (root / "broken-run" / "results.json").write_text('{"records": [\n')  # truncated
    (root / "their-config").mkdir()  # a config.json that no geolab run wrote
    (root / "their-config" / "config.json").write_text('{"my": "settings"}\n')
    (root / "theirs.json").write_text('{"my": "numbers"}\n')
    one_time = df.copy()  # several images per location, one timestamp for all of them
    one_time["timestamp"] = one_time.groupby("location_id")["timestamp"].transform("min")
    save_manifest(one_time, root / "data" / "one-time.parquet")
    long_row = rows.splitlines()[0].replace(f",{df.label[0]},", "," + "z" * 1_000_000 + ",")
    (root / "data" / "long-label.csv").write_text(MANIFEST_COLUMNS + "\n" + "\n".join([*rows.splitlines()[:2],
                                                  long_row.replace(df.image_id[0], "extra")]) + "\n")
    return {"root": root, "manifest": manifest, "run": run, "ckpt": run / "checkpoints" / "last.pt",
            "data": root / "data"}


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _copy_run(w: dict[str, Path], tmp: Path) -> dict[str, str]:
    shutil.copytree(w["run"], tmp / "run")
    return {"copy": str(tmp / "run")}


def _zero_checkpoint_run(w: dict[str, Path], tmp: Path) -> dict[str, str]:
    (tmp / "run" / "checkpoints").mkdir(parents=True)
    (tmp / "run" / "checkpoints" / "last.pt").write_bytes(b"")
    return {"copy": str(tmp / "run")}


@contextlib.contextmanager
def _repeating_listing(w: dict[str, Path], tmp: Path) -> Iterator[dict[str, str]]:
    with FakeS3(page_size=1) as server:
        for i in range(3):
            server.put(f"fmow/train/airport/airport_{i}/airport_{i}_0_rgb.jpg", b"jpeg")
        server.list_tokens = "repeat"
        yield {"endpoint": server.endpoint}


# ----------------------------------------------------------------------------- the table
@dataclass
class Case:
    """One bad invocation: arguments (``{name}`` filled from the fixtures), the pattern its one
    error line must match, and optionally a set-up, an environment and another exit status."""

    id: str
    args: str
    pattern: str
    setup: Callable[..., object] | None = None
    env: dict[str, str] = field(default_factory=dict)
    code: int = 2
    marker: str = "error:"
    needs_no_cuda: bool = False


TRAIN = "pretrain --method moco-tp --manifest {manifest} --out {tmp}/new --arch resnet18 --image-size 16 --batch-size 4 " \
        "--epochs 1 --max-steps-per-epoch 1 --queue-size 8 --knn-every 0 --num-workers 0 --device cpu --no-progress"
RESUME = TRAIN.replace("--out {tmp}/new", "--out {copy}") + " --resume"
ARGS = "pretrain --method moco-tp --manifest {manifest} --out {tmp}/new"  # no --arch: nothing heavy imported
EVAL = "{cmd} --checkpoint {ckpt} --manifest {manifest} --num-workers 0 --device cpu --batch-size 8"

CASES = [
    # argparse: numbers, names and choices are refused before anything runs
    Case("epochs-0", ARGS + " --epochs 0", r"argument --epochs: 0 must be >= 1"),
    Case("batch-size-0", ARGS + " --batch-size 0", r"argument --batch-size: 0 must be >= 1"),
    Case("temperature-0", ARGS + " --temperature 0", r"argument --temperature: 0 must be a finite number > 0"),
    Case("arch-unknown", TRAIN + " --arch resnet999", r"argument --arch: invalid choice: 'resnet999' \(choose from .*'resnet18'"),
    Case("strategy-unknown", TRAIN + " --strategy sideways", r"argument --strategy: invalid choice: 'sideways' \(choose from 'any-other'"),
    Case("device-unknown", ARGS + " --device tpu", r"argument --device: invalid choice: 'tpu'"),
    Case("num-workers-negative", ARGS + " --num-workers -1", r"argument --num-workers: -1 must be >= 0"),
    Case("geo-k-0", ARGS + " --geo-k 0", r"argument --geo-k: 0 must be >= 1"),
    Case("queue-size-text", ARGS + " --queue-size many", r"argument --queue-size: 'many' is not a whole number"),
    Case("method-unknown", ARGS.replace("moco-tp", "simclr"), r"argument --method: invalid choice: 'simclr'"),
    Case("knn-k-0", EVAL.replace("{cmd}", "knn") + " --k 0", r"argument --k: 0 must be >= 1"),
    Case("probe-batch-0", EVAL.replace("{cmd}", "probe") + " --batch-size 0", r"argument --batch-size: 0 must be >= 1"),
    Case("probe-device-unknown", EVAL.replace("{cmd}", "probe") + " --device gpu", r"argument --device: invalid choice: 'gpu'"),
    Case("retries-negative", "data fmow-download --retries -1 --dry-run", r"argument --retries: -1 must be >= 0"),
    Case("workers-0", "data fmow-download --workers 0 --dry-run", r"argument --workers: 0 must be >= 1"),
    Case("quality-101", "data prepare {manifest} --out {tmp}/cache --quality 101", r"argument --quality: 101 must be <= 100"),
    Case("short-side-0", "data prepare {manifest} --out {tmp}/cache --short-side 0", r"argument --short-side: 0 must be >= 1"),
    Case("world-seed-negative", "data world --seed -1 --out {tmp}/w", r"argument --seed: -1 must be >= 0"),
    Case("world-size-text", "data world --size big --out {tmp}/w", r"argument --size: 'big' is not a whole number"),
    Case("viz-k-0", "viz map {manifest} --out {tmp}/m.html --k 0", r"argument --k: 0 must be >= 1"),
    Case("cell-timeout-0", "course run --cell-timeout 0", r"argument --cell-timeout: 0 must be a finite number > 0"),
    # manifests
    Case("manifest-missing", "data validate {root}/nope.csv", r"nope\.csv: manifest file not found"),
    Case("csv-header-twice", "data validate {data}/dup-header.csv", r"column 'lat': column 'lat' appears twice in the header \(columns 5 and 9\)"),
    Case("label-spaces", "data validate {data}/spaces.csv", r"row 2 \(line 4\), column 'label': label '\w+ ' differs from label '\w+' only by surrounding spaces"),
    Case("lat-out-of-range", "data validate {data}/lat.csv", r"row 0 \(line 2\), column 'lat': lat 123\.0 is outside \[-90, 90\]"),
    Case("parquet-garbage", "data stats {data}/garbage.parquet", r"garbage\.parquet: cannot be read as Parquet"),
    Case("confine-to-root", "data validate {data}/outside.csv --confine-to-root", r"path '\.\./outside\.png' resolves to .*outside the manifest's folder"),
    # paths and settings
    Case("world-out-is-a-file", "data world --out {root}/a-file --locations 10 --size 16", r"a-file is a file, not a folder"),
    Case("cache-is-a-file", "data world --locations 10 --size 16", r"geolab's cache .*a-file \(GEOLAB_CACHE\) is a file, not a folder",
         env={"GEOLAB_CACHE": "{root}/a-file"}),
    Case("doctor-cache-is-a-file", "doctor", r"^problem: geolab's cache .*a-file \(GEOLAB_CACHE\) is a file", code=1,
         marker="problem: geolab's cache", env={"GEOLAB_CACHE": "{root}/a-file"}),
    Case("pretrain-out-is-a-file", ARGS.replace("{tmp}/new", "{root}/a-file"), r"--out .*a-file is a file, not a folder"),
    Case("pretrain-out-has-files", ARGS.replace("{tmp}/new", "{root}/notes"),
         r"--out .*notes is not a folder made by geolab pretrain, but it holds .*notes\.txt; .*choose another --out"),
    Case("cuda-without-gpu", ARGS + " --device cuda", r"--device cuda: no CUDA GPU is available", needs_no_cuda=True),
    Case("geo-k-above-locations", TRAIN.replace("moco-tp", "moco-geo") + " --geo-k 5", r"geo_k=5 .*only 4 locations\. Use --geo-k 2 or fewer"),
    Case("batch-above-split", TRAIN + " --batch-size 64", r"'train' split has 10 images, fewer than one batch of 64"),
    # resuming: a resumed run must equal an uninterrupted one (differences in PretrainConfig's field order)
    Case("resume-loss-settings", RESUME + " --lr 0.1 --temperature 0.5 --strategy nearest", r"cannot resume with other "
         r"settings \(lr: checkpoint 0\.03, now 0\.1; temperature: checkpoint 0\.2, now 0\.5; strategy: checkpoint "
         r"'any-other', now 'nearest'\)", setup=_copy_run),
    Case("resume-other-manifest", RESUME.replace("--manifest {manifest}", "--manifest {data}/other.parquet"),
         r"manifest: checkpoint .*manifest\.parquet, now .*other\.parquet", setup=_copy_run),
    Case("resume-zero-byte", RESUME, r"last\.pt: the file is empty \(0 bytes\)", setup=_zero_checkpoint_run),
    # checkpoints and evaluation
    Case("knn-zero-byte", EVAL.replace("{cmd}", "knn").replace("{ckpt}", "{root}/zero.pt"), r"zero\.pt: the file is empty \(0 bytes\)"),
    Case("knn-pickled-code", EVAL.replace("{cmd}", "knn").replace("{ckpt}", "{root}/pickled.pt"),
         r"pickled\.pt: holds pickled Python objects \(pathlib\.\w*Path\), not only weights; (?!.*weights_only)(?!.*earlier)"),
    Case("knn-missing", EVAL.replace("{cmd}", "knn").replace("{ckpt}", "{root}/missing.pt"), r"checkpoint not found: .*missing\.pt"),
    Case("probe-one-class", EVAL.replace("{cmd}", "probe").replace("{manifest}", "{data}/one-label.parquet"),
         r"'train' split has 1 class \(airport\); a linear probe needs at least two"),
    Case("probe-unseen-class", EVAL.replace("{cmd}", "probe").replace("{manifest}", "{data}/unseen.parquet"),
         r"'test' images have classes absent from the 'train' split \(stadium\)"),
    Case("probe-json-folder", EVAL.replace("{cmd}", "probe") + " --json {root}/json-folder", r"--json .*json-folder is a folder"),
    # the course runner
    Case("course-set-typo", "course run --profile smoke --set epoch=2 --out {tmp}/run", r"--set epoch: no notebook declares this parameter \(did you mean epochs\?\)"),
    Case("course-set-type", "course plan --profile smoke --set epochs=two", r'--set epochs="two": epochs takes a whole number'),
    Case("course-set-runner-key", "course run --profile smoke --set results_path=x --out {tmp}/run", r"results_path is provided by the runner"),
    Case("course-profile-unknown", "course plan --profile tiny", r"Unknown profile 'tiny'"),
    # issue 23: files a command did not make are not replaced; one line naming the user's path
    Case("export-into-geoworld", "export {ckpt} --out {root}/geoworld/world.pth", r"geoworld/world\.json \(written "
         r"beside --out .*world\.pth\) already exists and was not written by geolab export; pass --force"),
    Case("export-over-foreign-pth", "export {ckpt} --out {root}/theirs.pth",
         r"--out .*theirs\.pth already exists and was not written by geolab export; pass --force to replace it"),
    Case("export-out-is-a-folder", "export {ckpt} --out {root}/notes", r"--out .*notes is a folder; give a file name"),
    Case("export-out-under-a-file", "export {ckpt} --out {root}/a-file/b.pth",
         r"--out .*a-file/b\.pth: .*a-file is a file, so the folder cannot be made"),
    Case("prepare-into-input-folder", "data prepare {manifest} --out {data} --force",
         r"--out .*data is the folder of the input .*manifest\.parquet; geolab data prepare never writes into"),
    Case("prepare-foreign-manifest", "data prepare {manifest} --out {root}/geoworld", r"not a folder made by geolab "
         r"data prepare, but it holds .*geoworld/manifest\.parquet, which .* replace; pass --force"),
    Case("prepare-out-is-a-file", "data prepare {manifest} --out {root}/a-file", r"--out .*a-file is a file, not a folder"),
    Case("course-out-is-a-file", "course run --profile smoke --out {root}/a-file", r"--out .*a-file is a file, not a folder"),
    Case("course-out-not-a-run", "course run --profile smoke --out {root}/my-report --force",
         r"not a folder made by geolab course run, but it holds .*my-report/report\.md"),
    Case("course-report-truncated", "course report {root}/broken-run",
         r"broken-run/results\.json, line 2, column 1: not valid JSON .*rerun `geolab course run --out"),
    # issue 23: messages
    Case("manifest-is-a-folder", "data validate {data}", r"data: is a folder, not a manifest file; .*Parquet or CSV"),
    Case("label-1mb", "data validate {data}/long-label.csv",
         r"label 'z{80}\.\.\.' \(1000000 characters\) here but '\w+' at row 0(?!.*z{81})"),
    Case("temperature-nan", ARGS + " --temperature nan", r"argument --temperature: nan must be a finite number > 0"),
    Case("lr-inf", ARGS + " --lr inf", r"argument --lr: inf must be a finite number$"),
    Case("probe-arch-disagrees", EVAL.replace("{cmd}", "probe") + " --arch resnet50",
         r"last\.pt: --arch resnet50 disagrees with the file, a geolab-checkpoint of resnet18 .*drop --arch or pass "
         r"--arch resnet18"),
    Case("export-arch-disagrees", "export {ckpt} --out {tmp}/b.pth --arch resnet50",
         r"--arch resnet50 disagrees with the file, .* pass --arch resnet18"),
    # issue 23, round 2: every course value checked before the first notebook, by geolab's own rules
    Case("course-set-seeds-empty", "course run --profile smoke --set seeds=[] --out {tmp}/run",
         r"--set seeds=\[\]: is empty; list at least 1 \(each a valid PretrainConfig\.seed\)"),
    Case("course-set-max-steps-negative", "course run --profile smoke --set max_steps_per_epoch=-5 --out {tmp}/run",
         r"--set max_steps_per_epoch=-5: PretrainConfig\.max_steps_per_epoch: -5 must be >= 1"),
    Case("course-set-device-tpu", "course run --profile smoke --set device=tpu --out {tmp}/run",
         r"--set device=\"tpu\": PretrainConfig\.device: invalid choice 'tpu'; choose one of auto, cpu, cuda"),
    Case("course-set-epochs-negative", "course plan --profile smoke --set epochs=-1",
         r"--set epochs=-1: PretrainConfig\.epochs: -1 must be >= 1"),
    Case("course-set-batch-0", "course run --profile smoke --set batch_size=0 --out {tmp}/run",
         r"--set batch_size=0: PretrainConfig\.batch_size: 0 must be >= 1"),
    # what pretrain refuses, plan refuses too (issue 27): BatchNorm splits that the notebook's batch does not divide
    Case("course-set-bn-splits", "course plan --profile smoke --set bn_splits=3",
         r"--set bn_splits=3: PretrainConfig\.batch_size=16 is not divisible by bn_splits=3"),
    Case("course-set-arch-unknown", "course plan --profile smoke --set arch=resnet999",
         r"PretrainConfig\.arch: invalid choice 'resnet999'; choose one of resnet18"),
    Case("course-set-geo-k-values", "course plan --profile smoke --set geo_k_values=[1]",
         r"--set geo_k_values=\[1\]: item 1: .*needs geo_k >= 2 geo clusters, got 1 \(in 05_ablations\)"),
    Case("course-data-unknown", "course plan --profile smoke --data mnist", r"Unknown data tier 'mnist'; choose one of"),
    Case("course-gpu-without-cuda", "course run --profile gpu --out {tmp}/run",
         r"device='cuda' in \w+, but no CUDA GPU is available here", needs_no_cuda=True),
    # issue 23, round 2: pretrain --out and probe --json by the one output rule; one-timestamp locations
    Case("pretrain-out-foreign-config", ARGS.replace("{tmp}/new", "{root}/their-config"),
         r"not a folder made by geolab pretrain, but it holds .*their-config/config\.json"),
    Case("pretrain-out-manifest-folder", ARGS.replace("{tmp}/new", "{data}"),
         r"--out .*data is the folder of the input .*manifest\.parquet; geolab pretrain never writes into"),
    Case("probe-json-foreign", EVAL.replace("{cmd}", "probe") + " --json {root}/theirs.json",
         r"--json .*theirs\.json already exists and was not written by geolab probe; pass --force to replace it"),
    Case("knn-json-is-the-manifest", EVAL.replace("{cmd}", "knn") + " --json {manifest} --force",
         r"--json .*manifest\.parquet is the input .*manifest\.parquet itself"),
    Case("pretrain-one-timestamp", TRAIN.replace("{manifest}", "{data}/one-time.parquet"),
         r"one-time\.parquet: 100% of the 'train' locations with several images \(\d+ of \d+\) have one timestamp",
         code=0, marker="one timestamp for all"),
    # the fMoW downloader
    Case("download-repeated-token", "data fmow-download --endpoint {endpoint} --bucket test-bucket --prefix fmow/ --path-style "
         "--categories airport --locations-per-category 1 --val-locations-per-category 0 --out {tmp}/dl --no-progress "
         "--retries 0 --workers 2", r"sent the continuation token 'repeat-token' again after 2 pages", setup=_repeating_listing),
    Case("download-selection-missing", "data fmow-download --selection {root}/nope.json --dry-run", r"Selection file .*nope\.json not found"),
    Case("download-unknown-category", "data fmow-download --categories nope --dry-run", r"Unknown fMoW categories \['nope'\]"),
    # a source path that does not exist: one line naming it (MissingInputError), never a traceback
    Case("fmow-manifest-missing-root", "data fmow-manifest {tmp}/nope --out {tmp}/m.parquet", r"No fMoW split folder .* in .*nope"),
    Case("official-csv-missing", "data from-official-csv {tmp}/nope.csv --out {tmp}/m.parquet", r"CSV .*nope\.csv not found"),
    Case("geoimagenet-missing-root", "data geoimagenet-manifest {tmp}/nope --out {tmp}/m.parquet", r"No GeoImageNet download in .*nope"),
]


#: Rows run two at a time (the CI machine's two cores); each row's result is checked by its own test.
WORKERS = max(1, min(2, os.cpu_count() or 1))


def _run(case: Case, w: dict[str, Path], tmp: Path) -> tuple[subprocess.CompletedProcess | None, dict, dict]:
    """One row: its set-up, the command, and the user's files before and after."""
    if case.needs_no_cuda:
        import torch

        if torch.cuda.is_available():
            return None, {}, {}
    before = _snapshot(w["root"])
    values = {k: str(v) for k, v in w.items()}
    values["tmp"] = str(tmp)
    with contextlib.ExitStack() as stack:
        if case.setup is not None:
            made = case.setup(w, tmp)
            values.update(stack.enter_context(made) if isinstance(made, contextlib.AbstractContextManager) else made)
        args = [a.format(**values) for a in case.args.split()]
        env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1",
                   **{k: v.format(**values) for k, v in case.env.items()})
        proc = subprocess.run(GEOLAB + args, capture_output=True, text=True, env=env, timeout=180,
                              stdin=subprocess.DEVNULL)
    return proc, before, _snapshot(w["root"])


@pytest.fixture(scope="module")
def results(world: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
            request: pytest.FixtureRequest) -> dict[str, tuple]:
    """The outcome of every row that pytest selected (all, unless ``-k``), :data:`WORKERS` at a time."""
    from concurrent.futures import ThreadPoolExecutor

    chosen = {item.callspec.params["case"].id for item in request.session.items
              if hasattr(item, "callspec") and "case" in item.callspec.params}
    cases = [c for c in CASES if c.id in chosen]
    tmps = {c.id: tmp_path_factory.mktemp(c.id) for c in cases}
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        done = pool.map(lambda c: (_run(c, world, tmps[c.id]), tmps[c.id]), cases)
        return {c.id: out for c, out in zip(cases, done)}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_invocation_is_one_clear_line(case: Case, results: dict[str, tuple]) -> None:
    (proc, before, after), tmp = results[case.id]
    if proc is None:
        pytest.skip("this machine has CUDA")
    shown = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == case.code, shown
    assert "Traceback" not in proc.stdout + proc.stderr, shown
    lines = [line for line in proc.stderr.splitlines() if case.marker in line]
    assert len(lines) == 1, shown
    assert re.search(case.pattern, lines[0]), shown
    assert {k: v for k, v in after.items() if k in before} == before, "a file of the user's changed or was lost"
    assert not (tmp / "w" / "world.json").exists(), "a refused world left a world.json behind"


def test_table_has_forty_rows_or_more() -> None:
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
