"""Per-test settings: seeded randomness and few threads (the CI machine has 2 cores).

The cache and runs folders are temporary for the whole run: see the repository's root
``conftest.py`` (it must act before notebook kernels start, so it lives there).
"""

from __future__ import annotations

import os
import random

import pytest


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same seeds."""
    random.seed(0)
    try:
        import numpy as np

        np.random.seed(0)
    except ImportError:
        pass
    try:
        import torch

        torch.manual_seed(0)
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    except ImportError:
        pass
    yield


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium with the network cut off (``helpers.offline_chromium``), one per test module;
    the test is skipped, saying why, where Debian's chromium and chromedriver are missing."""
    from helpers import missing_browser, offline_chromium

    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    with offline_chromium() as driver:
        yield driver
