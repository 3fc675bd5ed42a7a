"""What the welcome notebook and ``geolab doctor`` show: is this environment ready for the course?"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import shutil
import sys
from typing import TYPE_CHECKING, Any

from geolab import paths

if TYPE_CHECKING:
    from traitlets.config import Config

PACKAGES = ("torch", "torchvision", "lightly", "numpy", "pandas", "scikit-learn", "papermill", "nbval", "folium")


def versions() -> dict[str, str]:
    """Installed versions of the packages the course relies on ("missing" when absent)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "missing"
    return out


def device_summary() -> str:
    """The device training will use, in words: a CUDA GPU's name, or the CPU and its cores."""
    import torch  # noqa: PLC0415 - start-up: torch (geolab doctor's report says when torch is missing)

    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        return f"cuda ({n} x {torch.cuda.get_device_name(0)})"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def environment_report() -> dict[str, Any]:
    """Python, platform, device, versions, the cache folder and its free space."""
    cache = paths.cache_dir(check=False)  # a cache that is a file is one of the problems() below
    probe = cache if cache.exists() else cache.parent
    while not probe.exists():
        probe = probe.parent
    return {
        "python": platform.python_version(),
        "in_venv": sys.prefix != sys.base_prefix,
        "platform": platform.platform(terse=True),
        "device": device_summary(),
        "versions": versions(),
        "cache_dir": str(cache),
        "cache_free_gib": round(shutil.disk_usage(probe).free / 2**30, 1),
    }


def problems(report: dict[str, Any] | None = None) -> list[str]:
    """Things that would stop the course, each with what to do (empty when all is well)."""
    report = report or environment_report()
    found = []
    missing = [k for k, v in report["versions"].items() if v == "missing"]
    if missing:
        found.append(f"missing packages {missing}: run `make setup`")
    if not report["in_venv"]:
        found.append("this Python is not a virtual environment: use the `geolab` kernel (`make setup`)")
    try:
        paths.cache_dir()
    except NotADirectoryError as exc:
        found.append(str(exc))
    if float(report["cache_free_gib"]) < 1.0:
        found.append(f"less than 1 GiB free in {report['cache_dir']}: set GEOLAB_CACHE to a larger disk")
    return found


def kernel_manager_config() -> Config:
    """Traitlets config that encrypts the kernel's ZeroMQ traffic (CurveZMQ) where supported.

    ipykernel >= 7.4 warns on every start "Kernel is running over TCP without encryption"
    unless the kernel manager provisions CurveZMQ keys, which jupyter_client's
    ``KernelManager.transport_encryption`` does when set to ``"auto"`` and the kernelspec
    declares ``supported_encryption: curve`` (ipykernel's does). So the warning goes away because
    the traffic is encrypted, not because a log is hidden. Older jupyter_client (no such option)
    or a libzmq without CURVE get an empty config: nothing changes there.

    Returns:
        A ``traitlets.config.Config`` for papermill/nbclient's ``config=``.
    """
    import zmq  # noqa: PLC0415 - optional extra: jupyter
    from jupyter_client.manager import KernelManager  # noqa: PLC0415 - optional extra: jupyter
    from traitlets.config import Config  # noqa: PLC0415 - optional extra: jupyter

    config = Config()
    if "transport_encryption" in KernelManager.class_trait_names() and zmq.has("curve"):
        config.KernelManager.transport_encryption = "auto"
    return config
