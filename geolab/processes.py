"""Worker processes that end with the process that started them.

A killed ``geolab course run`` (``kill -9``, an out-of-memory kill, a closed terminal) must not
leave its training behind: without help, the worker processes a notebook starts (training runs,
geoworld rendering) are reparented to init and go on for minutes, ~1 GB each, and the
``multiprocessing`` resource tracker with them. The chain is: the runner dies -> its Jupyter
kernel ends within a second (ipykernel polls its parent, ``JPY_PARENT_PID``) -> the kernel's
workers end at once, because every pool of geolab starts its workers with :func:`process_pool`,
whose workers call :func:`die_with_parent` before anything else -> the resource tracker ends when
the last of them is gone. DataLoader workers watch their parent themselves (torch's watchdog).

On Linux the kernel itself delivers SIGKILL when the parent ends (``prctl(PR_SET_PDEATHSIG)``:
no polling, and it works while the worker holds the GIL in a long C call); elsewhere a daemon
thread polls ``os.getppid()`` once a second.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

#: ``PR_SET_PDEATHSIG`` of ``<linux/prctl.h>``.
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """End this process when its parent process ends, however the parent ends (SIGKILL included).

    Args:
        parent_pid: the parent that must be alive (default: the current parent). When it is already
            gone (it died while this process was starting), this process exits at once.
    """
    parent = os.getppid() if parent_pid is None else parent_pid
    if not (sys.platform.startswith("linux") and _set_pdeathsig()):
        threading.Thread(target=_watch_parent, args=(parent,), name="geolab-die-with-parent", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _set_pdeathsig() -> bool:
    """Ask the Linux kernel for SIGKILL when the parent ends; False when that is not possible."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _start_worker(parent: int, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
    """First thing in every worker of :func:`process_pool`."""
    die_with_parent(parent)
    if initializer is not None:
        initializer(*initargs)


def process_pool(
    workers: int,
    *,
    start_method: str | None = "spawn",
    initializer: Callable[..., Any] | None = None,
    initargs: tuple[Any, ...] = (),
) -> concurrent.futures.ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` whose workers end when this process ends (:func:`die_with_parent`).

    Args:
        workers: number of worker processes.
        start_method: ``"spawn"`` (default: safe when the caller has threads, as torch and Jupyter
            do), ``"fork"``, or ``None`` for the platform's default.
        initializer: run in each worker after it is tied to this process, with ``initargs``.
        initargs: arguments of ``initializer``.

    Returns:
        The executor (use it as a context manager).
    """
    ctx = multiprocessing.get_context(start_method)
    return concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_start_worker,
                                                  initargs=(os.getpid(), initializer, initargs))
