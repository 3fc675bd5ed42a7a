"""Anonymous access to an S3-compatible object store: the bucket, its errors, retries and listing.

fMoW is hosted in a public AWS bucket (``s3://spacenet-dataset/Hosted-Datasets/fmow/fmow-rgb/``).
geolab reads it with plain HTTPS requests instead of boto3/awscli: anonymous access needs no
signing, the two calls used (ListObjectsV2 and GET with Range) are small, and a test can run the
whole path against a local fake server. This module lists; :mod:`geolab.sources.download` fetches
what was listed (parallel, resumable, checked).

Guarantees:

* **Listing** goes through ListObjectsV2 (XML, continuation tokens); an answer that is not a
  ``ListBucketResult`` is an error that names the URL, so a moved bucket or layout surfaces
  instead of yielding an empty download. A continuation token that comes back again, or more
  than :data:`MAX_LIST_PAGES` pages for one prefix, stops the listing with an error instead of
  listing for ever.
* **Ctrl-C** stops listings and transfers promptly: every thread checks a stop event between
  pages, chunks and retries (backoff waits on it rather than sleeping).
* **Retries** with exponential backoff and jitter on dropped connections, truncated bodies and
  500/502/503/504/429 answers; other answers (403, 404) fail at once with the URL.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import threading
import time
import urllib.parse
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import requests

from geolab.errors import UserError

#: fMoW's public bucket and the folder that holds fMoW-rgb.
FMOW_ENDPOINT = "https://s3.amazonaws.com"
FMOW_BUCKET = "spacenet-dataset"
FMOW_RGB_PREFIX = "Hosted-Datasets/fmow/fmow-rgb/"

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
#: Most ListObjectsV2 pages read for one prefix: 10,000 pages of 1,000 keys, ten times fMoW-rgb.
MAX_LIST_PAGES = 10_000


#: What one attempt of :func:`_retrying` returns.
T = TypeVar("T")


class S3Error(UserError, RuntimeError):
    """The object store answered with an error that retrying will not fix."""


class ListingError(S3Error):
    """A listing answer was not what ListObjectsV2 returns (the bucket or layout changed?)."""


class UnsafeKeyError(UserError, ValueError):
    """A remote key would be written outside the output folder."""


class DownloadError(UserError, RuntimeError):
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
        """Seconds to wait before retry number ``attempt + 1`` (0-based ``attempt``)."""
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


def _retrying(policy: RetryPolicy, what: str, attempt_fn: Callable[[], T],
              stop: threading.Event | None = None) -> T:
    """Run ``attempt_fn`` until it succeeds, retrying :class:`_Retryable` failures.

    A set ``stop`` event ends the waits between attempts at once (:class:`DownloadInterrupted`).
    """
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
                resp = _session().get(url, params=params, timeout=policy.timeout)  # noqa: B023 - called in this iteration
                body = resp.content
            except _NETWORK_ERRORS as exc:
                raise _Retryable(f"{type(exc).__name__}: {exc}") from None
            if resp.status_code in RETRY_STATUS:
                raise _Retryable(f"HTTP {resp.status_code} {_s3_error_text(resp)}")
            if resp.status_code != 200:
                raise S3Error(
                    f"Listing {shown} failed: HTTP {resp.status_code} {_s3_error_text(resp)}. "  # noqa: B023 - same
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
