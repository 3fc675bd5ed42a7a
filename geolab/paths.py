"""Every path geolab reads or writes by default comes from here.

One place, no module-level hard-coded paths elsewhere.

Environment variables:
    GEOLAB_CACHE: where generated and downloaded data live (default ``~/.cache/geolab``).
    GEOLAB_RUNS: where ``geolab course run`` writes runs (default ``./runs``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from geolab.io import check_output_folder

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
#: What a training run writes into its ``--out`` folder (anything else there is someone's file).
RUN_FILES = frozenset({"config.json", "metrics.jsonl", "checkpoints", "tensorboard", "result.json"})


def is_run_folder(out: str | os.PathLike) -> bool:
    """Whether ``out`` is a folder ``geolab pretrain`` made.

    It is when its checkpoint (``checkpoints/last.pt``) is there, or the ``config.json`` a run writes
    before its first step (a dict with ``geolab_version`` and the run's ``config``): the run's own
    files are recognised by what is in them, as an export's by its sidecar.
    """
    out = Path(out)
    if (out / "checkpoints" / "last.pt").is_file():  # geolab.checkpoints.checkpoint_path, without torch
        return True
    try:
        meta = json.loads((out / "config.json").read_text())
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
        raise NotADirectoryError(
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
