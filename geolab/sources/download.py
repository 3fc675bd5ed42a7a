"""Parallel, resumable, checked downloads of objects listed in an S3-compatible store.

What :func:`geolab.sources.s3.list_objects` listed, :func:`download_objects` fetches into a folder,
with the same requests session, retries and errors as the listing (:mod:`geolab.sources.s3`).

Guarantees:

* **Nothing partial looks complete**: bytes go to ``<file>.part``; the file gets its final name
  only after its size and ETag (an MD5 for single-part uploads) check out.
* **Resume**: a journal (``.geolab-download.jsonl`` in the output folder) records the key, size
  and ETag of every completed file; a completed file whose remote ETag is unchanged is never
  fetched again; a ``.part`` left by an interrupted run continues with an HTTP Range request.
  A remote object whose ETag changed is fetched again.
* **Ctrl-C** cuts running transfers short between chunks and keeps their ``.part`` files.
* **Safety**: keys that would escape the output folder (``..``, absolute paths, backslashes)
  are refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from geolab.io import ensure_free_space
from geolab.sources.s3 import (
    _NETWORK_ERRORS,
    RETRY_STATUS,
    DownloadError,
    DownloadInterrupted,
    RemoteObject,
    RetryPolicy,
    S3Bucket,
    S3Error,
    UnsafeKeyError,
    _Retryable,
    _retrying,
    _s3_error_text,
    _session,
)

JOURNAL_NAME = ".geolab-download.jsonl"
PART_SUFFIX = ".part"
#: Bytes per write: small enough that a dropped connection keeps most of what arrived (the
#: chunk being read when it drops is lost), large enough to cost nothing.
CHUNK = 64 << 10
_DEFAULT_POLICY = RetryPolicy()  # frozen: one shared default, as a default argument would be


# ----------------------------------------------------------------------------- safety
def safe_destination(out_dir: str | os.PathLike, key: str, prefix: str = "") -> Path:
    """Where ``key`` is written under ``out_dir``, refusing keys that would escape it.

    Args:
        out_dir: the download folder.
        key: the remote key.
        prefix: the listed prefix, removed from the key (``fmow-rgb/train/...`` ->
            ``train/...``).

    Raises:
        UnsafeKeyError: a key outside ``prefix``, absolute, with ``..`` or ``.`` parts,
            backslashes, NUL or a drive letter, or that resolves outside ``out_dir``.
    """
    if prefix and not key.startswith(prefix):
        raise UnsafeKeyError(f"Remote key {key!r} is not under the listed prefix {prefix!r}")
    rel = key[len(prefix):]
    bad = (
        not rel
        or rel.startswith("/")
        or "\\" in rel
        or "\x00" in rel
        or (len(rel) > 1 and rel[1] == ":")
        or any(part in ("..", ".", "") for part in rel.rstrip("/").split("/"))
        or rel.endswith(PART_SUFFIX)
        or PurePosixPath(rel).name == JOURNAL_NAME
    )
    if bad:
        raise UnsafeKeyError(f"Refusing remote key {key!r}: it would be written outside "
                             f"{out_dir} or over geolab's own files.")
    root = Path(out_dir).resolve()
    dest = (root / rel).resolve()
    if dest != root and root not in dest.parents:
        raise UnsafeKeyError(f"Refusing remote key {key!r}: it resolves to {dest}, outside {root}.")
    return root / rel


# ----------------------------------------------------------------------------- journal
class Journal:
    """Append-only record of completed files (``key -> size, etag``); the last line wins.

    A line cut short by a crash is ignored when read back.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.done: dict[str, tuple[int, str]] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    rec = json.loads(line)
                    self.done[rec["key"]] = (int(rec["size"]), str(rec["etag"]))

    def is_complete(self, obj: RemoteObject, dest: Path) -> bool:
        """True when ``dest`` was completed for this very object (same size and ETag)."""
        rec = self.done.get(obj.key)
        return (rec == (obj.size, obj.etag) and dest.is_file()
                and dest.stat().st_size == obj.size)

    def record(self, obj: RemoteObject) -> None:
        """Append ``obj`` as completed (flushed and fsynced before returning)."""
        line = json.dumps({"key": obj.key, "size": obj.size, "etag": obj.etag}) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self.done[obj.key] = (obj.size, obj.etag)


def is_md5_etag(etag: str) -> bool:
    """S3's ETag is the body's MD5 for single-part uploads (32 hex digits, no ``-N``)."""
    return len(etag) == 32 and all(c in "0123456789abcdefABCDEF" for c in etag)


def _md5_file(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- one object
def fetch_object(
    bucket: S3Bucket,
    obj: RemoteObject,
    dest: Path,
    journal: Journal,
    policy: RetryPolicy = _DEFAULT_POLICY,
    on_bytes: Callable[[int], None] | None = None,
    check_md5: bool = True,
    stop: threading.Event | None = None,
) -> bool:
    """Fetch one object to ``dest`` through ``dest.part``; skip it when already complete.

    Args:
        bucket: where.
        obj: the object as listed (size and ETag are what the result is checked against).
        dest: the final path.
        journal: the record of completed files.
        policy: retries.
        on_bytes: called with each chunk's byte count (progress bars); an exception it raises
            stops the transfer and leaves the ``.part`` for a later resume.
        check_md5: compare the body's MD5 with an MD5-shaped ETag (turn off only for stores
            whose ETags are not MD5s, e.g. objects encrypted with customer keys).
        stop: an event that, once set, ends the waits between retries at once.

    Returns:
        ``True`` when bytes were fetched, ``False`` when ``dest`` was already complete.

    Raises:
        S3Error: a non-retryable answer or retries exhausted.
    """
    if journal.is_complete(obj, dest):
        return False
    if (obj.key not in journal.done and dest.is_file() and dest.stat().st_size == obj.size
            and check_md5 and is_md5_etag(obj.etag) and _md5_file(dest) == obj.etag.lower()):
        journal.record(obj)  # complete from an earlier run whose journal was lost
        return False
    part = dest.with_name(dest.name + PART_SUFFIX)
    dest.parent.mkdir(parents=True, exist_ok=True)
    url = bucket.object_url(obj.key)

    def attempt() -> None:
        offset = part.stat().st_size if part.exists() else 0
        if offset and offset >= obj.size:
            part.unlink()  # a .part as long as the object but never verified: start over
            offset = 0
        headers = {}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if obj.etag:
                headers["If-Range"] = f'"{obj.etag}"'
        try:
            with _session().get(url, headers=headers, stream=True, timeout=policy.timeout) as resp:
                if resp.status_code in RETRY_STATUS:
                    raise _Retryable(f"HTTP {resp.status_code} {_s3_error_text(resp)}")
                if resp.status_code == 416:
                    part.unlink(missing_ok=True)
                    raise _Retryable("HTTP 416: the partial file does not fit; starting over")
                if resp.status_code not in (200, 206):
                    raise S3Error(f"GET {url} failed: HTTP {resp.status_code} "
                                  f"{_s3_error_text(resp)}")
                remote_etag = resp.headers.get("ETag", "").strip().strip('"')
                if remote_etag and obj.etag and remote_etag != obj.etag:
                    part.unlink(missing_ok=True)
                    raise S3Error(f"{obj.key} changed on the server since it was listed (ETag "
                                  f"{obj.etag} -> {remote_etag}); run the download again.")
                mode = "ab"
                if resp.status_code == 200 or not offset:
                    mode = "wb"  # the server sent the whole object
                else:
                    start = resp.headers.get("Content-Range", "").split(" ")[-1].split("-")[0]
                    if start != str(offset):
                        part.unlink(missing_ok=True)
                        raise _Retryable(f"unexpected Content-Range {resp.headers.get('Content-Range')!r}")
                with open(part, mode) as fh:
                    for chunk in resp.iter_content(chunk_size=CHUNK):
                        fh.write(chunk)
                        if on_bytes is not None:
                            on_bytes(len(chunk))
                    fh.flush()
                    os.fsync(fh.fileno())
        except _NETWORK_ERRORS as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from None
        size = part.stat().st_size
        if size < obj.size:
            raise _Retryable(f"truncated body: {size} of {obj.size} bytes")
        if size > obj.size:
            part.unlink()
            raise _Retryable(f"body longer than listed: {size} > {obj.size} bytes")
        if check_md5 and is_md5_etag(obj.etag) and _md5_file(part) != obj.etag.lower():
            part.unlink()
            raise _Retryable("MD5 of the body does not match the ETag (corrupted transfer)")
        os.replace(part, dest)
        journal.record(obj)

    _retrying(policy, f"GET {url}", attempt, stop)
    return True


# ----------------------------------------------------------------------------- many objects
@dataclass
class DownloadReport:
    """What :func:`download_objects` did."""

    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    bytes_needed: int = 0

    def summary(self) -> str:
        """One line for people: files fetched, already complete, failed."""
        return (f"fetched {len(self.fetched)} files, {len(self.skipped)} already complete"
                + (f", {len(self.failed)} failed" if self.failed else ""))


def pending_bytes(objects: Iterable[RemoteObject], out_dir: Path, prefix: str) -> int:
    """Bytes still to fetch: objects not complete in the journal, minus their ``.part`` bytes."""
    journal = Journal(out_dir / JOURNAL_NAME)
    total = 0
    for obj in objects:
        dest = safe_destination(out_dir, obj.key, prefix)
        if journal.is_complete(obj, dest):
            continue
        part = dest.with_name(dest.name + PART_SUFFIX)
        have = part.stat().st_size if part.exists() else 0
        total += max(0, obj.size - min(have, obj.size))
    return total


def download_objects(
    bucket: S3Bucket,
    objects: Sequence[RemoteObject],
    out_dir: str | os.PathLike,
    prefix: str = "",
    workers: int = 8,
    policy: RetryPolicy = _DEFAULT_POLICY,
    progress: bool = True,
    check_space: bool = True,
    check_md5: bool = True,
) -> DownloadReport:
    """Fetch ``objects`` into ``out_dir`` in parallel; resumable; checked.

    Args:
        bucket: where.
        objects: what (from :func:`list_objects`).
        out_dir: the download folder; each key minus ``prefix`` is its relative path.
        prefix: removed from keys (and every key must start with it).
        workers: transfers in flight at once (at least 4 is sensible; default 8).
        policy: retries, backoff and timeouts.
        progress: show a byte progress bar.
        check_space: refuse to start when the disk lacks the bytes still needed.
        check_md5: verify MD5-shaped ETags against the bodies (see :func:`fetch_object`).

    Returns:
        A :class:`DownloadReport`.

    Raises:
        UnsafeKeyError: any key would escape ``out_dir`` (checked before anything is fetched).
        geolab.io.DiskSpaceError: not enough free space.
        DownloadError: some files failed after their retries (the others are complete).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dests = {obj.key: safe_destination(out_dir, obj.key, prefix) for obj in objects}
    needed = pending_bytes(objects, out_dir, prefix)
    report = DownloadReport(bytes_needed=needed)
    if check_space and needed:
        ensure_free_space(out_dir, int(needed * 1.05) + (16 << 20),
                          f"the download ({len(objects)} files, {needed / 2**20:.1f} MiB still to fetch)")
    journal = Journal(out_dir / JOURNAL_NAME)
    bar = tqdm(total=needed, unit="B", unit_scale=True, unit_divisor=1024, desc="download",
               disable=not progress)
    lock = threading.Lock()
    stop = threading.Event()

    def on_bytes(n: int) -> None:
        if stop.is_set():
            raise DownloadInterrupted("stopped; the .part is kept for the next run")
        with lock:
            bar.update(n)

    def one(obj: RemoteObject) -> bool:
        if stop.is_set():
            raise DownloadInterrupted("not started")
        _session(pool=max(4, workers))
        return fetch_object(bucket, obj, dests[obj.key], journal, policy, on_bytes, check_md5, stop)

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="geolab-dl")
    try:
        futures = {pool.submit(one, obj): obj for obj in objects}
        for fut in as_completed(futures):
            obj = futures[fut]
            try:
                (report.fetched if fut.result() else report.skipped).append(obj.key)
            except (S3Error, OSError) as exc:
                report.failed[obj.key] = str(exc)
    except BaseException:
        # Ctrl-C (or any surprise): stop queued transfers and cut running ones short; their
        # .part files stay, so the next run resumes them.
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        bar.close()
    if report.failed:
        first_key, first_reason = next(iter(report.failed.items()))
        raise DownloadError(
            f"{len(report.failed)} of {len(objects)} files failed (first: {first_key}: "
            f"{first_reason}). {len(report.fetched) + len(report.skipped)} files are complete and "
            "kept; run the same command again to resume.",
            report.failed,
        )
    return report
