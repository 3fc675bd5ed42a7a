"""Writing files so that a crash never leaves a half-written file looking complete.

Every checkpoint, manifest, cache file and result goes through :func:`atomic_write`: the data
are written to a temporary file in the same folder, flushed and fsync'ed, then renamed over
the target (``os.replace`` is atomic on POSIX), so a reader sees the old file or the new one,
never a mix.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


class DiskSpaceError(OSError):
    """Not enough free space to write what was asked."""


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    Args:
        path: the final file.
        mode: ``"wb"`` or ``"w"``.

    On an exception the temporary file is removed and ``path`` is left as it was. A full
    disk (``ENOSPC``/``EDQUOT`` anywhere in the exception chain: ``torch.save``'s zip writer
    wraps it in a RuntimeError) is raised as :class:`DiskSpaceError` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp makes 0600 files; give the result the mode a plain open() would (umask applies)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if _disk_full(exc) and not isinstance(exc, DiskSpaceError):
            raise DiskSpaceError(
                f"The disk filled up while writing {path} ({_free_mib(path.parent)} MiB free now); "
                f"{'the previous file is kept' if path.exists() else 'nothing was written'}. "
                "Free some space or point GEOLAB_CACHE / --out at a larger disk.",
            ) from exc
        raise


def _disk_full(exc: BaseException) -> bool:
    """True when ``exc`` or an exception it was raised from is ENOSPC / EDQUOT."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        e = e.__cause__ or e.__context__
    return False


def _free_mib(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:.0f}"
    except OSError:
        return "?"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_write`."""
    with atomic_write(path, "w") as fh:
        fh.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON (``default=str``) through :func:`atomic_write`."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_write` (a killed save keeps the previous file)."""
    import torch  # noqa: PLC0415 - start-up: the CLI imports geolab.io, most of its commands never need torch

    with atomic_write(path, "wb") as fh:
        torch.save(obj, fh)


def ensure_free_space(folder: str | os.PathLike, needed_bytes: int, what: str) -> None:
    """Raise :class:`DiskSpaceError` if ``folder``'s file system has less than ``needed_bytes`` free.

    Args:
        folder: where the data will be written (created if missing).
        needed_bytes: an estimate of what will be written.
        what: words for the error ("the geoworld cache", "checkpoints").
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise DiskSpaceError(
            f"Not enough disk space for {what} in {folder}: need about "
            f"{needed_bytes / 2**20:.0f} MiB, {free / 2**20:.0f} MiB free. "
            "Free some space or point GEOLAB_CACHE / --out at a larger disk."
        )


def check_run_folder(out: str | os.PathLike, own: set[str], marker: str | os.PathLike, option: str = "--out") -> None:
    """Refuse an output folder that is a file, or that holds someone else's files and no checkpoint.

    Files which are not this tool's own (``own``: names it writes) while ``marker`` (its checkpoint) is
    absent would be overwritten or mixed with. An unfinished run's own files are fine.

    Args:
        out: the output folder.
        own: the file names the tool writes there.
        marker: the checkpoint whose presence makes the folder a run's.
        option: the option's name, for the messages.

    Raises:
        NotADirectoryError: ``out`` is a file.
        FileExistsError: ``out`` holds other files (named, the first three).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{option} {out} is a file, not a folder; choose a folder for the run.")
    if not out.is_dir() or Path(marker).exists():
        return
    foreign = sorted(p.name for p in out.iterdir() if p.name not in own)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise FileExistsError(
            f"{option} {out} already holds files that are not a geolab run's ({shown}) and no checkpoint; "
            f"choose an empty or new {option} folder so that nothing of yours is overwritten."
        )
