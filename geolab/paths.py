"""Every path geolab reads or writes by default comes from here.

One place, no module-level hard-coded paths elsewhere.

Environment variables:
    GEOLAB_CACHE: where generated and downloaded data live (default ``~/.cache/geolab``).
    GEOLAB_RUNS: where ``geolab course run`` writes runs (default ``./runs``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from geolab.io import NotAFolderError, check_output_folder

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent


@dataclass(frozen=True)
class RunFolder:
    """The one spelling of a run folder's layout.

    A training run (``geolab pretrain --out``; one experiment of the course): ``config.json`` (written before the
    first step), ``metrics.jsonl``, ``checkpoints/last.pt``, ``tensorboard/``, and for a course experiment its
    ``result.json`` and its training log ``<folder>.log`` beside it. A course run (``geolab course run --out``):
    ``notebooks/`` (the executed notebooks), ``records/<notebook>.jsonl`` (the records each notebook wrote, its
    ``results_path``), ``state/<notebook>.json`` and ``experiments/`` (its training runs, each a run folder).

    Attributes:
        root: the folder.
    """

    root: Path

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    @classmethod
    def of_checkpoint(cls, checkpoint: str | os.PathLike) -> RunFolder:
        """The training run whose ``checkpoints/last.pt`` is ``checkpoint``."""
        return cls(Path(checkpoint).parent.parent)

    @classmethod
    def of_records(cls, results_path: str | os.PathLike) -> RunFolder:
        """The course run whose ``records/<notebook>.jsonl`` is ``results_path`` (a notebook's records file)."""
        return cls(Path(results_path).resolve().parent.parent)

    # ------------------------------------------------------------------ a training run
    @property
    def config(self) -> Path:
        """``config.json``: the run's settings and manifest fingerprint."""
        return self.root / "config.json"

    @property
    def metrics(self) -> Path:
        """``metrics.jsonl``: one JSON record per logged step and per epoch."""
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        """``checkpoints/``."""
        return self.root / "checkpoints"

    @property
    def checkpoint(self) -> Path:
        """``checkpoints/last.pt``: the checkpoint written after every epoch."""
        return self.checkpoints / "last.pt"

    @property
    def tensorboard(self) -> Path:
        """``tensorboard/``: TensorBoard events, when tensorboard is installed."""
        return self.root / "tensorboard"

    @property
    def result(self) -> Path:
        """``result.json``: a finished course experiment's evaluation and record."""
        return self.root / "result.json"

    @property
    def log(self) -> Path:
        """``<folder>.log`` beside the folder: a course experiment's training log."""
        return self.root.parent / f"{self.root.name}.log"

    # ------------------------------------------------------------------ a course run
    @property
    def experiments(self) -> Path:
        """``experiments/``: the course run's training runs."""
        return self.root / "experiments"

    @property
    def notebooks(self) -> Path:
        """``notebooks/``: the executed notebooks."""
        return self.root / "notebooks"

    @property
    def records(self) -> Path:
        """``records/``: one records file per notebook."""
        return self.root / "records"

    @property
    def state(self) -> Path:
        """``state/``: one state file per notebook (outcome, inputs' hashes)."""
        return self.root / "state"

    def records_file(self, notebook: str) -> Path:
        """``records/<notebook>.jsonl``: the records of one notebook (its ``results_path``)."""
        return self.records / f"{notebook}.jsonl"

    def state_file(self, notebook: str) -> Path:
        """``state/<notebook>.json``."""
        return self.state / f"{notebook}.json"


_RUN = RunFolder(".")
#: What a training run writes into its ``--out`` folder (anything else there is someone's file).
RUN_FILES = frozenset(p.name for p in (_RUN.config, _RUN.metrics, _RUN.checkpoints, _RUN.tensorboard, _RUN.result))


def manifest_fingerprint(manifest: str | os.PathLike) -> str:
    """``<absolute path>:<size>:<mtime in ns>`` of a manifest: which manifest, and which version of it.

    The one fingerprint of a manifest: a course experiment's key holds it (a changed manifest is another
    experiment) and a checkpoint records it (``--resume`` refuses a manifest changed since the run started).
    Cheap for any size: the file's metadata, not its bytes. A missing file gives ``<path>:missing``
    (:func:`geolab.manifest.load_manifest` then says what is wrong).
    """
    path = Path(manifest).expanduser().resolve()
    try:
        st = path.stat()
    except OSError:
        return f"{path}:missing"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def is_run_folder(out: str | os.PathLike) -> bool:
    """Whether ``out`` is a folder ``geolab pretrain`` made.

    It is when its checkpoint (``checkpoints/last.pt``) is there, or the ``config.json`` a run writes
    before its first step (a dict with ``geolab_version`` and the run's ``config``): the run's own
    files are recognised by what is in them, as an export's by its sidecar.
    """
    run = RunFolder(out)
    if run.checkpoint.is_file():
        return True
    try:
        meta = json.loads(run.config.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "geolab_version" in meta and isinstance(meta.get("config"), dict) \
        and "method" in meta["config"]


def check_run_out(out: str | os.PathLike, manifest: str | os.PathLike) -> None:
    """``geolab pretrain``'s ``--out`` by the output rule of :mod:`geolab.io`, before anything is loaded.

    A run folder (:func:`is_run_folder`) is resumed or refused by the checkpoint checks; any other
    folder must be new or empty (``empty=True``); never the manifest's own folder.

    Raises:
        NotADirectoryError: ``out`` is a file, or a file stands where a folder above it would be.
        geolab.io.OutputRefusedError: ``out`` is the manifest's folder, or holds files and is not a run's.
    """
    check_output_folder(out, own=RUN_FILES, ours=is_run_folder(out), command="geolab pretrain",
                        inputs=[manifest] if str(manifest) else [], force=None, empty=True)


def cache_dir(check: bool = True) -> Path:
    """Root of geolab's cache; ``$GEOLAB_CACHE`` moves it.

    Args:
        check: refuse a cache path that exists but is not a folder.

    Raises:
        NotADirectoryError: the path is a file (says to point GEOLAB_CACHE at a folder).
    """
    env = os.environ.get("GEOLAB_CACHE")
    path = Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "geolab"
    if check and path.exists() and not path.is_dir():
        raise NotAFolderError(
            f"geolab's cache {path}{' (GEOLAB_CACHE)' if env else ''} is a file, not a folder; "
            "point GEOLAB_CACHE at a folder (it is created when missing)."
        )
    return path


def world_cache_dir() -> Path:
    """Where generated geoworld data sets are cached (one sub-folder per version+parameters)."""
    return cache_dir() / "geoworld"


def download_dir() -> Path:
    """Default target of downloads (fmow-mini, official checkpoints)."""
    return cache_dir() / "downloads"


def runs_dir() -> Path:
    """Default parent of course runs; ``$GEOLAB_RUNS`` moves it."""
    env = os.environ.get("GEOLAB_RUNS")
    return Path(env).expanduser().resolve() if env else Path.cwd() / "runs"


def manifests_dir() -> Path:
    """The ``data_manifests/`` folder that ships with geolab (selections, schema docs)."""
    return REPO_ROOT / "data_manifests"


def reference_dir() -> Path:
    """``docs/reference/``: the committed reference runs and benchmark records (e.g. the robustness benchmark)."""
    return REPO_ROOT / "docs" / "reference"


def notebooks_dir() -> Path:
    """The course's notebooks."""
    return REPO_ROOT / "notebooks"
