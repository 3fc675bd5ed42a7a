"""A small S3-like server for tests, on 127.0.0.1, with faults injected on demand.

It speaks just enough of S3 for geolab's downloader: ListObjectsV2 (XML, continuation tokens,
delimiter, ``encoding-type=url``) and GET of an object (with ``Range`` / ``If-Range``), with
quoted MD5 ETags like AWS for single-part uploads. Everything is in memory.

Faults are queued per key and consumed one per GET of that key:

* ``"500"``, ``"503"``, ``"403"`` -- an S3 XML error with that status;
* ``"drop"`` -- headers promise the whole object, half the body is sent, the connection closes;
* ``"truncate"`` -- a well-formed answer whose body (and Content-Length) is only half the object;
* ``"corrupt"`` -- the whole length, but some bytes flipped (only the ETag/MD5 check sees it).

``list_faults`` does the same for listing requests; ``list_body`` replaces every listing answer
(to imitate a moved bucket or a changed layout). ``list_tokens = "repeat"`` makes every listing
page say IsTruncated with the same NextContinuationToken (a broken listing that never ends);
``"endless"`` gives a new token on every page.

The server counts requests per key, Range requests, and the largest number of object GETs in
flight at once. With ``gate=N`` object GETs wait (each at most ``gate_timeout`` s) until N GETs
have been in flight together once, so a client that runs N transfers in parallel reaches N
deterministically and a sequential one simply pays the timeout.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import urllib.parse
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape


class FakeS3:
    """An in-memory bucket served over HTTP on 127.0.0.1 (use as a context manager).

    Args:
        bucket: the bucket name (path-style addressing: ``/<bucket>/<key>``).
        page_size: most keys per listing page (small, so listings span several pages).
        gate: hold each object GET until this many are in flight (0: no gate).
        gate_timeout: longest hold in seconds.
    """

    def __init__(self, bucket: str = "test-bucket", page_size: int = 3, gate: int = 0,
                 gate_timeout: float = 2.0):
        self.bucket = bucket
        self.page_size = page_size
        self.gate = gate
        self.gate_timeout = gate_timeout
        self.objects: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = defaultdict(list)
        self.list_faults: list[str] = []
        self.list_body: bytes | None = None
        self.list_tokens: str | None = None  # None, "repeat" or "endless"
        self.gets: Counter[str] = Counter()
        self.range_gets: Counter[str] = Counter()
        self.list_requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- content
    def put(self, key: str, data: bytes) -> None:
        self.objects[key] = data

    def etag(self, key: str) -> str:
        return hashlib.md5(self.objects[key]).hexdigest()

    def reset_counts(self) -> None:
        self.gets.clear()
        self.range_gets.clear()
        self.list_requests = 0
        self.max_in_flight = 0

    # -- lifecycle
    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeS3":
        fake = self

        class Handler(_Handler):
            server_state = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> "FakeS3":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- listing
    def _list(self, query: dict[str, str]) -> bytes:
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        max_keys = min(int(query.get("max-keys", "1000")), self.page_size)
        encode = query.get("encoding-type") == "url"
        entries: list[tuple[str, str]] = []  # (name, "key" | "prefix"), sorted, unique
        seen_prefixes: set[str] = set()
        for key in sorted(self.objects):
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix):]
            if delimiter and delimiter in rest:
                cp = prefix + rest.split(delimiter, 1)[0] + delimiter
                if cp not in seen_prefixes:
                    seen_prefixes.add(cp)
                    entries.append((cp, "prefix"))
            else:
                entries.append((key, "key"))
        start = 0
        token = query.get("continuation-token")
        if token and token.startswith(("repeat-", "endless-")):
            start = 0
        elif token:
            after = base64.urlsafe_b64decode(token.encode()).decode()
            start = next((i for i, (n, _) in enumerate(entries) if n > after), len(entries))
        page = entries[start:start + max_keys]
        truncated = start + max_keys < len(entries) or self.list_tokens is not None

        def enc(s: str) -> str:
            return escape(urllib.parse.quote_plus(s, safe="/") if encode else s)

        parts = ['<?xml version="1.0" encoding="UTF-8"?>',
                 '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
                 f"<Name>{self.bucket}</Name><Prefix>{enc(prefix)}</Prefix>",
                 f"<KeyCount>{len(page)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>"]
        if encode:
            parts.append("<EncodingType>url</EncodingType>")
        if delimiter:
            parts.append(f"<Delimiter>{escape(delimiter)}</Delimiter>")
        parts.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
        if self.list_tokens == "repeat":
            parts.append("<NextContinuationToken>repeat-token</NextContinuationToken>")
        elif self.list_tokens == "endless":
            parts.append(f"<NextContinuationToken>endless-{self.list_requests}</NextContinuationToken>")
        elif truncated:
            nxt = base64.urlsafe_b64encode(page[-1][0].encode()).decode()
            parts.append(f"<NextContinuationToken>{nxt}</NextContinuationToken>")
        for name, kind in page:
            if kind == "key":
                parts.append(f"<Contents><Key>{enc(name)}</Key><LastModified>2017-01-01T00:00:00.000Z"
                             f"</LastModified><ETag>&quot;{self.etag(name)}&quot;</ETag>"
                             f"<Size>{len(self.objects[name])}</Size>"
                             "<StorageClass>STANDARD</StorageClass></Contents>")
            else:
                parts.append(f"<CommonPrefixes><Prefix>{enc(name)}</Prefix></CommonPrefixes>")
        parts.append("</ListBucketResult>")
        return "".join(parts).encode()


def _error_xml(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message></Error>").encode()


_STATUS_CODES = {"500": ("InternalError", "We encountered an internal error."),
                 "503": ("SlowDown", "Please reduce your request rate."),
                 "403": ("AccessDenied", "Access Denied"),
                 "404": ("NoSuchKey", "The specified key does not exist.")}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # a stuck client cannot hold a server thread for ever
    server_state: FakeS3

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        s = self.server_state
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        path = urllib.parse.unquote(url.path)
        bucket_prefix = f"/{s.bucket}/"
        if not (path + "/").startswith(bucket_prefix):
            self._send(404, _error_xml("NoSuchBucket", "The specified bucket does not exist"))
            return
        key = path[len(bucket_prefix):]
        if not key:
            with s._cond:
                s.list_requests += 1
                fault = s.list_faults.pop(0) if s.list_faults else None
            if fault in _STATUS_CODES:
                code, msg = _STATUS_CODES[fault]
                self._send(int(fault), _error_xml(code, msg), {"Content-Type": "application/xml"})
            elif s.list_body is not None:
                self._send(200, s.list_body, {"Content-Type": "text/html"})
            else:
                self._send(200, s._list(query), {"Content-Type": "application/xml"})
            return
        self._get_object(s, key)

    def _get_object(self, s: FakeS3, key: str) -> None:
        with s._cond:
            s.gets[key] += 1
            fault = s.faults[key].pop(0) if s.faults.get(key) else None
            s.in_flight += 1
            s.max_in_flight = max(s.max_in_flight, s.in_flight)
            s._cond.notify_all()
            if s.gate:
                # open for good once the gate was reached (later retries pass at once)
                s._cond.wait_for(lambda: s.max_in_flight >= s.gate, timeout=s.gate_timeout)
        try:
            if key not in s.objects:
                self._send(404, _error_xml(*_STATUS_CODES["404"]))
                return
            if fault in _STATUS_CODES:
                code, msg = _STATUS_CODES[fault]
                self._send(int(fault), _error_xml(code, msg))
                return
            data = s.objects[key]
            etag = s.etag(key)
            status, start = 200, 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                if_range = self.headers.get("If-Range", "").strip('"')
                if not if_range or if_range == etag:
                    start = int(rng[len("bytes="):].split("-")[0])
                    with s._cond:
                        s.range_gets[key] += 1
                    if start >= len(data):
                        self._send(416, _error_xml("InvalidRange", "The requested range is not satisfiable"))
                        return
                    status = 206
            body = data[start:]
            headers = {"ETag": f'"{etag}"', "Content-Type": "application/octet-stream",
                       "Accept-Ranges": "bytes"}
            if status == 206:
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            if fault == "truncate":
                self._send(status, body[: len(body) // 2], headers)
            elif fault == "corrupt":
                self._send(status, bytes(b ^ 0xFF for b in body[:16]) + body[16:], headers)
            elif fault == "drop":
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
            else:
                self._send(status, body, headers)
        finally:
            with s._cond:
                s.in_flight -= 1
                s._cond.notify_all()
