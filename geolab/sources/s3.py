"""Anonymous downloads from an S3-compatible object store: listing, parallel fetch, resume.

fMoW is hosted in a public AWS bucket (``s3://spacenet-dataset/Hosted-Datasets/fmow/fmow-rgb/``).
geolab reads it with plain HTTPS requests instead of boto3/awscli: anonymous access needs no
signing, the two calls used (ListObjectsV2 and GET with Range) are small, and a test can run the
whole path against a local fake server.

Guarantees:

* **Listing** goes through ListObjectsV2 (XML, continuation tokens); an answer that is not a
  ``ListBucketResult`` is an error that names the URL, so a moved bucket or layout surfaces
  instead of yielding an empty download. A continuation token that comes back again, or more
  than :data:`MAX_LIST_PAGES` pages for one prefix, stops the listing with an error instead of
  listing for ever.
* **Ctrl-C** stops listings and transfers promptly: every thread checks a stop event between
  pages, chunks and retries (backoff waits on it rather than sleeping).
* **Nothing partial looks complete**: bytes go to ``<file>.part``; the file gets its final name
  only after its size and ETag (an MD5 for single-part uploads) check out.
* **Resume**: a journal (``.geolab-download.jsonl`` in the output folder) records the key, size
  and ETag of every completed file; a completed file whose remote ETag is unchanged is never
  fetched again; a ``.part`` left by an interrupted run continues with an HTTP Range request.
  A remote object whose ETag changed is fetched again.
* **Retries** with exponential backoff and jitter on dropped connections, truncated bodies and
  500/502/503/504/429 answers; other answers (403, 404) fail at once with the URL.
* **Safety**: keys that would escape the output folder (``..``, absolute paths, backslashes)
  are refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import random
import threading
import time
import urllib.parse
import warnings
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Sequence

import requests

from geolab.io import ensure_free_space

#: fMoW's public bucket and the folder that holds fMoW-rgb.
FMOW_ENDPOINT = "https://s3.amazonaws.com"
FMOW_BUCKET = "spacenet-dataset"
FMOW_RGB_PREFIX = "Hosted-Datasets/fmow/fmow-rgb/"

JOURNAL_NAME = ".geolab-download.jsonl"
PART_SUFFIX = ".part"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
#: Most ListObjectsV2 pages read for one prefix: 10,000 pages of 1,000 keys, ten times fMoW-rgb.
MAX_LIST_PAGES = 10_000
#: Bytes per write: small enough that a dropped connection keeps most of what arrived (the
#: chunk being read when it drops is lost), large enough to cost nothing.
CHUNK = 64 << 10


class S3Error(RuntimeError):
    """The object store answered with an error that retrying will not fix."""


class ListingError(S3Error):
    """A listing answer was not what ListObjectsV2 returns (the bucket or layout changed?)."""


class UnsafeKeyError(ValueError):
    """A remote key would be written outside the output folder."""


class DownloadError(RuntimeError):
    """Some files could not be fetched; completed files are kept and a rerun resumes."""

    def __init__(self, message: str, failed: dict[str, str]):
        super().__init__(message)
        self.failed = failed


class DownloadInterrupted(RuntimeError):
    """A transfer was stopped on purpose (Ctrl-C); its ``.part`` is kept for a resume."""


class _Retryable(Exception):
    """Internal: an attempt failed in a way that another attempt may fix."""


# ----------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class S3Bucket:
    """Where a bucket lives.

    Args:
        endpoint: the service URL, ``https://s3.amazonaws.com`` by default (HTTPS).
        bucket: the bucket name (fMoW: ``spacenet-dataset``).
        addressing: ``"virtual"`` (``https://<bucket>.s3.amazonaws.com/<key>``, AWS's default)
            or ``"path"`` (``<endpoint>/<bucket>/<key>``, for other S3-compatible stores and
            local test servers).
    """

    endpoint: str = FMOW_ENDPOINT
    bucket: str = FMOW_BUCKET
    addressing: str = "virtual"

    def __post_init__(self) -> None:
        if self.addressing not in ("virtual", "path"):
            raise ValueError(f"addressing must be 'virtual' or 'path', not {self.addressing!r}")
        parts = urllib.parse.urlsplit(self.endpoint)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError(f"endpoint must be an http(s) URL, not {self.endpoint!r}")
        if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
            warnings.warn(f"{self.endpoint} is plain HTTP: downloads are not protected in transit; "
                          "use https:// unless this is a trusted local mirror.", stacklevel=3)

    @property
    def base_url(self) -> str:
        """URL of the bucket itself (listing requests go here)."""
        parts = urllib.parse.urlsplit(self.endpoint.rstrip("/"))
        if self.addressing == "virtual":
            return f"{parts.scheme}://{self.bucket}.{parts.netloc}{parts.path}"
        return f"{parts.scheme}://{parts.netloc}{parts.path}/{self.bucket}"

    def object_url(self, key: str) -> str:
        """URL of one object."""
        return f"{self.base_url}/{urllib.parse.quote(key, safe='/~')}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    Args:
        retries: attempts after the first one (default 5).
        backoff: first wait in seconds; doubles each attempt, with up to 50% jitter.
        max_wait: longest single wait in seconds.
        timeout: (connect, read) timeouts of each request in seconds.
    """

    retries: int = 5
    backoff: float = 0.5
    max_wait: float = 30.0
    timeout: tuple[float, float] = (10.0, 60.0)

    def __post_init__(self) -> None:
        if int(self.retries) < 0:
            raise ValueError(f"retries must be >= 0 (attempts after the first one), got {self.retries}.")

    def wait(self, attempt: int, rng: random.Random | None = None) -> float:
        base = min(self.max_wait, self.backoff * (2 ** attempt))
        return base * (1.0 + 0.5 * (rng or random).random())


@dataclass(frozen=True)
class RemoteObject:
    """One object as listed: key, size in bytes and ETag (quotes removed)."""

    key: str
    size: int
    etag: str


@dataclass
class Listing:
    """Result of listing a prefix: objects, sub-folders (with a delimiter) and pages read."""

    objects: list[RemoteObject] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    pages: int = 0


# ----------------------------------------------------------------------------- sessions
_local = threading.local()


def _session(pool: int = 16) -> requests.Session:
    """One requests session per thread (a Session is not guaranteed thread-safe)."""
    s = getattr(_local, "session", None)
    if s is None:
        s = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=pool, pool_maxsize=pool,
                                                max_retries=0)
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        s.headers["User-Agent"] = "geolab-downloader"
        _local.session = s
    return s


def _s3_error_text(resp: requests.Response) -> str:
    """``Code: Message`` from an S3 XML error body, or the start of the body."""
    text = resp.text[:2000] if resp.content else ""
    with contextlib.suppress(ET.ParseError):
        root = ET.fromstring(text)
        code = _child_text(root, "Code")
        msg = _child_text(root, "Message")
        if code:
            return f"{code}: {msg}" if msg else code
    return text[:200].strip() or resp.reason or ""


def _retrying(policy: RetryPolicy, what: str, attempt_fn: Callable[[], object],
              stop: threading.Event | None = None) -> object:
    """Run ``attempt_fn`` until it succeeds, retrying :class:`_Retryable` failures; a set
    ``stop`` event ends the waits between attempts at once (:class:`DownloadInterrupted`)."""
    rng = random.Random()
    last: Exception | None = None
    for attempt in range(policy.retries + 1):
        if stop is not None and stop.is_set():
            raise DownloadInterrupted(f"{what}: stopped")
        try:
            return attempt_fn()
        except _Retryable as exc:
            last = exc
            if attempt < policy.retries:
                delay = policy.wait(attempt, rng)
                if stop is not None:
                    stop.wait(delay)
                else:
                    time.sleep(delay)
    raise S3Error(f"{what}: gave up after {policy.retries + 1} attempt{'s' if policy.retries else ''}; "
                  f"last error: {last}")


_NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


# ----------------------------------------------------------------------------- listing
def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(elem: ET.Element, name: str) -> str | None:
    for child in elem:
        if _local_name(child.tag) == name:
            return child.text or ""
    return None


def list_objects(
    bucket: S3Bucket,
    prefix: str,
    delimiter: str | None = None,
    max_keys: int = 1000,
    policy: RetryPolicy = RetryPolicy(),
    max_pages: int = MAX_LIST_PAGES,
    stop: threading.Event | None = None,
) -> Listing:
    """List a prefix with ListObjectsV2, following continuation tokens over all pages.

    Args:
        bucket: where.
        prefix: key prefix (``"Hosted-Datasets/fmow/fmow-rgb/train/airport/"``).
        delimiter: ``"/"`` to get sub-folders as ``prefixes`` instead of every object below.
        max_keys: keys per page (S3 caps it at 1000).
        policy: retries for 5xx answers and dropped connections.
        max_pages: stop with an error after this many pages (a listing that never ends).
        stop: an event that, once set, ends the listing before its next request.

    Returns:
        A :class:`Listing`.

    Raises:
        S3Error: an error answer (403, 404, ...) or retries exhausted; the URL is named.
        ListingError: an answer that is not a ListObjectsV2 result, a continuation token
            that comes back again, or more than ``max_pages`` pages.
        DownloadInterrupted: ``stop`` was set.
    """
    out = Listing()
    token: str | None = None
    seen_tokens: set[str] = set()
    while True:
        params = {"list-type": "2", "prefix": prefix, "max-keys": str(max_keys),
                  "encoding-type": "url"}
        if delimiter:
            params["delimiter"] = delimiter
        if token:
            params["continuation-token"] = token
        url = bucket.base_url + "/"
        shown = f"{url}?{urllib.parse.urlencode({k: v for k, v in params.items() if k != 'continuation-token'})}"

        def attempt() -> bytes:
            try:
                resp = _session().get(url, params=params, timeout=policy.timeout)
                body = resp.content
            except _NETWORK_ERRORS as exc:
                raise _Retryable(f"{type(exc).__name__}: {exc}") from None
            if resp.status_code in RETRY_STATUS:
                raise _Retryable(f"HTTP {resp.status_code} {_s3_error_text(resp)}")
            if resp.status_code != 200:
                raise S3Error(
                    f"Listing {shown} failed: HTTP {resp.status_code} {_s3_error_text(resp)}. "
                    "Check --endpoint/--bucket/--prefix; the bucket may have moved or stopped "
                    "allowing anonymous listing."
                )
            return body

        body = _retrying(policy, f"Listing {shown}", attempt, stop)
        out.pages += 1
        token = _parse_listing_page(body, shown, out, url_encoded=True)
        if token is None:
            return out
        if token in seen_tokens:
            raise ListingError(
                f"Listing {shown}: the server sent the continuation token {token[:40]!r} again after "
                f"{out.pages} pages, so the listing would never end; the service is not answering like "
                "S3's ListObjectsV2 (check --endpoint)."
            )
        if out.pages >= max_pages:
            raise ListingError(
                f"Listing {shown}: stopped after {out.pages} pages ({len(out.objects) + len(out.prefixes)} "
                "entries) without reaching the end; check --prefix (a narrower one lists less) and --endpoint."
            )
        seen_tokens.add(token)


def _parse_listing_page(body: bytes, shown: str, out: Listing, url_encoded: bool) -> str | None:
    """Add one ListObjectsV2 page to ``out``; return the continuation token or ``None``."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ListingError(f"Listing {shown} did not answer XML ({exc}); first bytes: "
                           f"{body[:80]!r}. Is --endpoint an S3-compatible service?") from None
    if _local_name(root.tag) != "ListBucketResult":
        raise ListingError(f"Listing {shown} answered <{_local_name(root.tag)}>, not "
                           "<ListBucketResult>: the service or bucket layout changed.")
    encoded = url_encoded and (_child_text(root, "EncodingType") or "").lower() == "url"

    def dec(s: str) -> str:
        return urllib.parse.unquote_plus(s) if encoded else s

    for elem in root:
        name = _local_name(elem.tag)
        if name == "Contents":
            key = _child_text(elem, "Key")
            size = _child_text(elem, "Size")
            etag = _child_text(elem, "ETag")
            if key is None or size is None:
                raise ListingError(f"Listing {shown}: an entry lacks Key or Size: "
                                   f"{ET.tostring(elem)[:200]!r}")
            try:
                n = int(size)
            except ValueError:
                raise ListingError(f"Listing {shown}: Size {size!r} of {key} is not a number") from None
            out.objects.append(RemoteObject(dec(key), n, (etag or "").strip().strip('"')))
        elif name == "CommonPrefixes":
            p = _child_text(elem, "Prefix")
            if p is not None:
                out.prefixes.append(dec(p))
    truncated = (_child_text(root, "IsTruncated") or "false").strip().lower() == "true"
    if not truncated:
        return None
    token = _child_text(root, "NextContinuationToken")
    if not token:
        raise ListingError(f"Listing {shown}: IsTruncated is true but there is no "
                           "NextContinuationToken (not a ListObjectsV2 answer?).")
    return token


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
    policy: RetryPolicy = RetryPolicy(),
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
    policy: RetryPolicy = RetryPolicy(),
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
    from tqdm.auto import tqdm

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
