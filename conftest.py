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
    # OpenMP threads that sleep instead of spinning while they wait: on a 2-core machine
    # shared by pytest, notebook kernels and DataLoader workers, spinning made a ResNet-18
    # step several times slower. Must be set before torch loads (kernels inherit it).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
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
