"""Settings for the whole pytest run, the nbval'd notebooks included.

Set in ``pytest_configure`` (before any kernel starts, so notebook kernels inherit them):
geolab's cache and runs live in a temporary folder, matplotlib is non-interactive.
``GEOLAB_TEST_CACHE=DIR`` keeps the cache in DIR instead (reused across runs, e.g. to avoid
regenerating the small test world while editing).
"""

from __future__ import annotations

import os
import shutil
import tempfile

_made: list[str] = []


def pytest_configure(config) -> None:  # noqa: ANN001 - pytest's hook signature
    os.environ["MPLBACKEND"] = "Agg"
    keep = os.environ.get("GEOLAB_TEST_CACHE")
    if keep:
        os.environ["GEOLAB_CACHE"] = keep
    else:
        d = tempfile.mkdtemp(prefix="geolab-test-cache-")
        _made.append(d)
        os.environ["GEOLAB_CACHE"] = d
    runs = tempfile.mkdtemp(prefix="geolab-test-runs-")
    _made.append(runs)
    os.environ["GEOLAB_RUNS"] = runs


def pytest_unconfigure(config) -> None:  # noqa: ANN001
    for d in _made:
        shutil.rmtree(d, ignore_errors=True)
