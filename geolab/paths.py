"""Every path geolab reads or writes by default comes from here.

One place, no module-level hard-coded paths elsewhere.

Environment variables:
    GEOLAB_CACHE: where generated and downloaded data live (default ``~/.cache/geolab``).
    GEOLAB_RUNS: where ``geolab course run`` writes runs (default ``./runs``).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
#: What a training run writes into its ``--out`` folder (anything else there is someone's file).
RUN_FILES = frozenset({"config.json", "metrics.jsonl", "checkpoints", "tensorboard", "result.json"})


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
