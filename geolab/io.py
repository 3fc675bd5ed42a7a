"""Writing files so that a crash never leaves a half-written file looking complete.

Every checkpoint, manifest, cache file and result goes through :func:`atomic_write`: the data
are written to a temporary file in the same folder, flushed and fsync'ed, then renamed over
the target (``os.replace`` is atomic on POSIX), so a reader sees the old file or the new one,
never a mix.

**The output rule** (:func:`check_output_file`, :func:`check_output_folder`): a command writes only
files it owns, that is its own output names in a folder, or a folder it made or recognises as its
own; it refuses to replace anything else unless the user passes ``--force``; and it never writes
into the folder of its own input (not even with ``--force``). ``geolab export``, ``geolab data
prepare``, ``geolab course run`` and ``geolab pretrain`` check their ``--out`` with these two functions
before any work (a run folder of ``pretrain`` must moreover be new or empty when it is not a run's:
``empty=True``), and ``geolab probe``/``knn`` their ``--json``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from geolab.errors import UserError


class DiskSpaceError(UserError, OSError):
    """Not enough free space to write what was asked."""


class NotAFolderError(UserError, NotADirectoryError):
    """A path the user gave must be a folder (or become one), and a file stands there or above it."""


class IsAFolderError(UserError, IsADirectoryError):
    """A path the user gave for a file is a folder."""


class MissingFileError(UserError, FileNotFoundError):
    """A file the user named does not exist."""


class BadFileError(UserError, ValueError):
    """A file the user gave (or geolab wrote earlier) cannot be read: damaged, truncated, not what it should be."""


class OutputRefusedError(UserError, FileExistsError):
    """An output would replace a file the command does not own, or land in its own input's folder.

    The message names the user's path and says what to do (``--force``, or another ``--out``).
    """


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
    if path.is_dir():  # else os.replace's "[Errno 21]" would name the temporary file
        raise IsAFolderError(f"Cannot write the file {path}: it is a folder; choose another file name.")
    _make_folder(path.parent, f"Cannot write {path}")
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


def _make_folder(folder: Path, context: str) -> None:
    """``folder.mkdir(parents=True)``, with an error naming the file in the way instead of ``[Errno 17]``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = _file_in_the_way(folder)
        if blocker is None:
            raise
        raise NotAFolderError(f"{context}: {blocker} is a file, not a folder; choose another path.") from None


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest existing path at or above ``folder`` when it is not a folder (``None``: none is)."""
    p = Path(os.path.abspath(folder.expanduser()))
    for candidate in (p, *p.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


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


def read_json(path: str | os.PathLike, fix: str) -> Any:
    """The JSON in ``path``; a truncated or damaged file is a ``ValueError`` naming it.

    Args:
        path: the file.
        fix: what the user can do, for the message ("rerun ... to write it again").

    Raises:
        ValueError: not valid JSON: ``<path>, line L, column C: not valid JSON (<why>); <fix>``
            instead of ``json``'s message, which names no file.
    """
    text = Path(path).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        why = "the file is empty" if not text.strip() else exc.msg
        raise BadFileError(f"{path}, line {exc.lineno}, column {exc.colno}: not valid JSON ({why}; truncated or "
                           f"damaged?); {fix}") from None


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


# ----------------------------------------------------------------------------- the output rule
def _shown(paths: list[Path]) -> str:
    return ", ".join(str(p) for p in paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def _refuse_input(out: Path, inputs: Sequence[str | os.PathLike], own: Collection[str], option: str,
                  command: str) -> None:
    """Never write into the folder of an input, nor over an input (see the module docstring)."""
    real = Path(os.path.realpath(out.expanduser()))
    for src in inputs:
        src_real = Path(os.path.realpath(Path(src).expanduser()))
        home = src_real if src_real.is_dir() else src_real.parent
        if real == home:
            which = f"{src}, the input folder" if src_real.is_dir() else f"the folder of the input {src}"
            raise OutputRefusedError(f"{option} {out} is {which}; {command} never writes into its input's folder "
                                     f"(it would replace or mix with what is there); choose another {option}.")
        if any(real / name == src_real for name in own):
            raise OutputRefusedError(f"{option} {out}: {command} would write over its input {src}; choose another "
                                     f"{option}.")


def check_output_file(
    path: str | os.PathLike,
    *,
    ours: bool,
    command: str,
    option: str = "--out",
    given: str | os.PathLike | None = None,
    inputs: Sequence[str | os.PathLike] = (),
    force: bool = False,
    example: str = "backbone.pth",
) -> None:
    """Check an output file before any work, by the output rule (module docstring).

    Args:
        path: the file that will be written.
        ours: ``path`` does not exist, or exists and was written by ``command`` (the caller
            recognises its own files, e.g. by a marker inside them).
        command: the command's name for messages (``"geolab export"``).
        option: the option that named the path (``--out``).
        given: the path as the user gave it, when ``path`` is derived from it (a sidecar).
        inputs: files the command reads; ``path`` must be none of them.
        force: the user passed ``--force``: replace a file that is not ours.
        example: a file name to suggest when ``path`` is a folder.

    Raises:
        IsADirectoryError: ``path`` is a folder.
        NotADirectoryError: a file stands where a folder above ``path`` would have to be.
        OutputRefusedError: ``path`` is an input, or exists, is not ours and ``force`` is off.
    """
    path = Path(path)
    given = Path(given) if given is not None else path
    what = f"{option} {given}" if given == path else f"{path} (written beside {option} {given})"
    if path.is_dir():
        raise IsAFolderError(f"{what} is a folder; give a file name such as {path / example}"
                                if given == path else f"{what} is a folder; choose another {option}.")
    blocker = _file_in_the_way(path.parent)
    if blocker is not None:
        raise NotAFolderError(f"{what}: {blocker} is a file, so the folder cannot be made; choose another {option}.")
    for src in inputs:
        if os.path.realpath(path.expanduser()) == os.path.realpath(Path(src).expanduser()):
            raise OutputRefusedError(f"{what} is the input {src} itself; choose another {option}.")
    if path.exists() and not ours and not force:
        raise OutputRefusedError(f"{what} already exists and was not written by {command}; pass --force to replace "
                                 f"it, or choose another {option}.")


def check_output_folder(
    out: str | os.PathLike,
    *,
    own: Collection[str],
    ours: bool,
    command: str,
    option: str = "--out",
    inputs: Sequence[str | os.PathLike] = (),
    force: bool | None = False,
    empty: bool = False,
) -> None:
    """Check an output folder before any work, by the output rule (module docstring).

    Args:
        out: the folder (made when missing).
        own: the names ``command`` writes directly inside ``out``.
        ours: ``out`` is a folder ``command`` made (it recognises a marker of its own there).
        command: the command's name for messages (``"geolab data prepare"``).
        option: the option that named the folder.
        inputs: files or folders the command reads: ``out`` must be neither one of them nor the
            folder holding one (a folder input is its own folder), with or without ``force``.
        force: the user passed ``--force``: replace files of the ``own`` names in a folder that is
            not ours. ``None``: the command has no such option (its ``--force`` means something
            else), so nothing foreign is ever replaced.
        empty: a folder not ours must hold nothing at all, not only none of the ``own`` names: a run
            folder, whose files would otherwise be mixed with someone's (``geolab pretrain``).

    Raises:
        NotADirectoryError: ``out`` is a file, or a file stands where a folder above it would be.
        OutputRefusedError: ``out`` is an input's folder, or a folder not ours that holds files of
            the ``own`` names (with ``empty``: any file; the first three named) and ``force`` is off.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotAFolderError(f"{option} {out} is a file, not a folder; choose a folder (it is made when missing).")
    blocker = _file_in_the_way(out)
    if blocker is not None:
        raise NotAFolderError(f"{option} {out}: {blocker} is a file, so the folder cannot be made; "
                              f"choose another {option}.")
    _refuse_input(out, inputs, own, option, command)
    if not out.is_dir() or ours or force:
        return
    if empty and (held := sorted(out.iterdir())):
        raise OutputRefusedError(
            f"{option} {out} is not a folder made by {command}, but it holds {_shown(held)}; {command} writes into "
            f"a new or empty folder, so that nothing of yours is replaced or mixed with its files: choose another "
            f"{option}."
        )
    clash = [out / name for name in sorted(own) if (out / name).exists() or (out / name).is_symlink()]
    if clash:
        it = "it" if len(clash) == 1 else "them"
        what = f"pass --force to replace {it}, or choose" if force is False else "choose"
        raise OutputRefusedError(
            f"{option} {out} is not a folder made by {command}, but it holds {_shown(clash)}, which {command} "
            f"would replace; {what} another {option}."
        )
