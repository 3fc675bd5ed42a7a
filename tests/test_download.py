"""The S3 downloader against a local fault-injecting server (tests/s3_server.py).

Protects: ListObjectsV2 paging and layout errors, >= 4 transfers in flight, retries over dropped
connections / 500 / 503 / truncated and corrupted bodies, resume after an interruption without
fetching completed files again (counted in the server), re-fetch of changed objects, refusal of
keys that escape the output folder, the free-space check, and the whole fmow-download command.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from geolab.io import DiskSpaceError
from geolab.sources import download, s3
from s3_server import FakeS3

FAST = s3.RetryPolicy(retries=3, backoff=0.01, max_wait=0.05, timeout=(5.0, 5.0))
PREFIX = "data/set/"


def _payloads(n: int, seed: int = 0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    return {f"{PREFIX}f{i // 3}/obj_{i}.bin": rng.integers(0, 256, size=int(rng.integers(200_000, 400_000)),
                                                           dtype=np.uint8).tobytes() for i in range(n)}


def _bucket(server: FakeS3) -> s3.S3Bucket:
    return s3.S3Bucket(endpoint=server.endpoint, bucket=server.bucket, addressing="path")


def _files_ok(out: Path, payloads: dict[str, bytes]) -> None:
    for key, data in payloads.items():
        dest = out / key[len(PREFIX):]
        assert dest.read_bytes() == data, key
    assert not list(out.rglob("*.part"))


def test_listing_follows_continuation_tokens_and_reports_layout_changes():
    """A listing spanning pages is complete; 5xx are retried; non-S3 answers are clear errors."""
    payloads = _payloads(10)
    with FakeS3(page_size=3) as server:
        for k, v in payloads.items():
            server.put(k, v)
        server.list_faults = ["503", "500"]
        listing = s3.list_objects(_bucket(server), PREFIX, policy=FAST)
        assert [o.key for o in listing.objects] == sorted(payloads)
        assert listing.pages == 4 and server.list_requests == 6  # 2 retried + 4 pages
        assert all(o.etag == hashlib.md5(payloads[o.key]).hexdigest() for o in listing.objects)
        assert all(o.size == len(payloads[o.key]) for o in listing.objects)
        folders = s3.list_objects(_bucket(server), PREFIX, delimiter="/", policy=FAST)
        assert folders.prefixes == [f"{PREFIX}f{i}/" for i in range(4)] and folders.objects == []

        server.list_body = b"<html><body>Moved</body></html>"
        with pytest.raises(s3.ListingError, match=r"/test-bucket/.*answered <html>, not <ListBucketResult>"):
            s3.list_objects(_bucket(server), PREFIX, policy=FAST)
        server.list_body = None
        server.list_faults = ["403"]
        with pytest.raises(s3.S3Error, match="HTTP 403 AccessDenied.*--endpoint/--bucket/--prefix"):
            s3.list_objects(_bucket(server), PREFIX, policy=FAST)


def test_parallel_download_survives_faults(tmp_path):
    """Dropped connection, 500/503, truncated and corrupted bodies all end in correct files."""
    payloads = _payloads(8)
    keys = sorted(payloads)
    with FakeS3(gate=4, gate_timeout=3.0) as server:
        for k, v in payloads.items():
            server.put(k, v)
        server.faults[keys[0]] = ["drop"]
        server.faults[keys[1]] = ["500", "503"]
        server.faults[keys[2]] = ["truncate"]
        server.faults[keys[3]] = ["corrupt"]
        objects = s3.list_objects(_bucket(server), PREFIX, policy=FAST).objects
        report = download.download_objects(_bucket(server), objects, tmp_path, prefix=PREFIX, workers=6,
                                     policy=FAST, progress=False)
        assert sorted(report.fetched) == keys and not report.failed
        assert server.max_in_flight >= 4
        assert server.gets[keys[1]] == 3  # two errors, then the object
        assert server.range_gets[keys[0]] == 1 and server.range_gets[keys[2]] == 1  # resumed, not restarted
        assert server.gets[keys[3]] == 2 and server.range_gets[keys[3]] == 0  # MD5 mismatch: start over
        assert all(server.gets[k] == 1 for k in keys[4:])
    _files_ok(tmp_path, payloads)


def test_interrupted_download_resumes_without_refetching(tmp_path):
    """After an interrupted run only missing files are fetched; partial files never look complete."""
    payloads = _payloads(6)
    keys = sorted(payloads)
    no_retry = s3.RetryPolicy(retries=0, backoff=0.01, timeout=(5.0, 5.0))
    with FakeS3() as server:
        for k, v in payloads.items():
            server.put(k, v)
        server.faults[keys[4]] = ["403"]
        server.faults[keys[5]] = ["drop"]  # the connection dies mid-file: the run is interrupted
        objects = s3.list_objects(_bucket(server), PREFIX, policy=FAST).objects
        with pytest.raises(s3.DownloadError, match="2 of 6 files failed.*run the same command again") as info:
            download.download_objects(_bucket(server), objects, tmp_path, prefix=PREFIX, workers=4,
                                policy=no_retry, progress=False)
        assert set(info.value.failed) == {keys[4], keys[5]}
        dest4, dest5 = (tmp_path / keys[i][len(PREFIX):] for i in (4, 5))
        assert not dest4.exists() and not dest5.exists()  # nothing partial under a final name
        assert 0 < dest5.with_name(dest5.name + ".part").stat().st_size < len(payloads[keys[5]])
        journal = download.Journal(tmp_path / download.JOURNAL_NAME)
        assert set(journal.done) == set(keys[:4])

        server.reset_counts()
        report = download.download_objects(_bucket(server), objects, tmp_path, prefix=PREFIX, workers=4,
                                     policy=FAST, progress=False)
        assert sorted(report.fetched) == keys[4:] and sorted(report.skipped) == keys[:4]
        assert all(server.gets[k] == 0 for k in keys[:4])  # completed files: no request at all
        assert server.gets[keys[5]] == 1 and server.range_gets[keys[5]] == 1  # continued the .part
    _files_ok(tmp_path, payloads)


def test_changed_object_is_refetched_and_lost_journal_is_rebuilt(tmp_path):
    """A new ETag means a new fetch; without the journal, MD5-checked files are adopted, not refetched."""
    payloads = _payloads(4)
    payloads[PREFIX + "f9/empty.bin"] = b""  # a zero-byte object is a file too
    keys = sorted(payloads)
    with FakeS3() as server:
        for k, v in payloads.items():
            server.put(k, v)
        bucket = _bucket(server)
        download.download_objects(bucket, s3.list_objects(bucket, PREFIX, policy=FAST).objects, tmp_path,
                            prefix=PREFIX, policy=FAST, progress=False)
        payloads[keys[0]] = b"a new version of the image" * 100
        server.put(keys[0], payloads[keys[0]])
        server.reset_counts()
        objects = s3.list_objects(bucket, PREFIX, policy=FAST).objects
        report = download.download_objects(bucket, objects, tmp_path, prefix=PREFIX, policy=FAST, progress=False)
        assert report.fetched == [keys[0]] and dict(server.gets) == {keys[0]: 1}
        _files_ok(tmp_path, payloads)

        (tmp_path / download.JOURNAL_NAME).unlink()
        server.reset_counts()
        report = download.download_objects(bucket, objects, tmp_path, prefix=PREFIX, policy=FAST, progress=False)
        assert report.fetched == [] and sum(server.gets.values()) == 0


def test_ctrl_c_stops_transfers_and_keeps_parts_for_resume(tmp_path):
    """Ctrl-C during a download stops it promptly; partial files stay .part and resume later.

    The test installs Python's default SIGINT handler itself: a pytest started with SIGINT
    ignored (nohup, a background `make test`, some CI runners) would otherwise never see it."""
    import signal
    import threading
    import time

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _ctrl_c_during_download(tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_during_download(tmp_path):
    import signal
    import threading
    import time

    payloads = _payloads(12)
    keys = sorted(payloads)
    with FakeS3(gate=100, gate_timeout=1.0) as server:  # hold GETs so the interrupt finds them running
        for k, v in payloads.items():
            server.put(k, v)
        objects = s3.list_objects(_bucket(server), PREFIX, policy=FAST).objects

        def press_ctrl_c() -> None:  # once 4 transfers are running, like a user would
            deadline = time.monotonic() + 10
            while server.in_flight < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

        threading.Thread(target=press_ctrl_c, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            download.download_objects(_bucket(server), objects, tmp_path, prefix=PREFIX, workers=4,
                                policy=FAST, progress=False)
        assert sum(server.gets.values()) == 4  # the queued 8 never started
        finals = [p for p in tmp_path.rglob("*.bin")]
        parts = [p for p in tmp_path.rglob("*.part")]
        assert finals == [] and len(parts) == 4  # nothing partial under a final name
        server.gate = 0
        server.reset_counts()
        download.download_objects(_bucket(server), objects, tmp_path, prefix=PREFIX, workers=4, policy=FAST,
                            progress=False)
        assert sum(server.range_gets.values()) == 4 and sum(server.gets.values()) == len(keys)
    _files_ok(tmp_path, payloads)


@pytest.mark.parametrize("key", ["data/set/../../evil.txt", "data/set//etc/passwd", "data/set/a\\..\\b",
                                 "data/set/./x", "other/place.txt", "data/set/C:/x"])
def test_keys_that_escape_the_output_folder_are_refused(tmp_path, key):
    """Keys with .., absolute parts, backslashes or outside the prefix never reach the disk."""
    out = tmp_path / "out"
    with FakeS3() as server:
        server.put(key, b"x")
        server.put(PREFIX + "ok.bin", b"fine")
        objects = [s3.RemoteObject(PREFIX + "ok.bin", 4, hashlib.md5(b"fine").hexdigest()),
                   s3.RemoteObject(key, 1, hashlib.md5(b"x").hexdigest())]
        with pytest.raises(s3.UnsafeKeyError, match="Refusing|not under the listed prefix"):
            download.download_objects(_bucket(server), objects, out, prefix=PREFIX, policy=FAST, progress=False)
        assert sum(server.gets.values()) == 0  # refused before anything is fetched
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_free_space_is_checked_before_fetching(tmp_path, monkeypatch):
    """A full disk stops the download up front and says how much is needed."""
    import shutil

    payloads = _payloads(3)
    with FakeS3() as server:
        for k, v in payloads.items():
            server.put(k, v)
        objects = s3.list_objects(_bucket(server), PREFIX, policy=FAST).objects
        real = shutil.disk_usage
        monkeypatch.setattr("geolab.io.shutil.disk_usage",
                            lambda p: real(p)._replace(free=1000))
        with pytest.raises(DiskSpaceError, match=r"3 files, 1.0 MiB still to fetch.*need about \d+ MiB"):
            download.download_objects(_bucket(server), objects, tmp_path, prefix=PREFIX, policy=FAST, progress=False)
        assert sum(server.gets.values()) == 0


def test_fmow_download_end_to_end(tmp_path, capsys):
    """fmow-download lists locations, fetches all revisits, builds the manifest and the cache."""
    from test_fmow import make_fmow_tree

    from geolab.cli import main
    from geolab.manifest import load_manifest
    from geolab.sources.fmow_mini import download_fmow_subset

    tree = make_fmow_tree(tmp_path / "source")
    prefix = "Hosted/fmow/fmow-rgb/"
    with FakeS3(bucket="spacenet-test", page_size=4, gate=4, gate_timeout=2.0) as server:
        for f in sorted(tree.rglob("*")):
            if f.is_file():
                server.put(prefix + f.relative_to(tree).as_posix(), f.read_bytes())
        common = dict(endpoint=server.endpoint, bucket=server.bucket, prefix=prefix, path_style=True,
                      progress=False, prepare_workers=1, retries=2)
        server.faults[prefix + "train/airport/airport_0/airport_0_2_rgb.jpg"] = ["503", "drop"]
        result = download_fmow_subset(tmp_path / "mini", categories=["airport", "crop_field"],
                                      locations_per_category={"train": 1, "val": 1}, workers=4,
                                      short_side=16, **common)
        assert server.max_in_flight >= 4
        df = load_manifest(result.manifest)
        assert sorted(df["location_id"].unique()) == ["train/airport_0", "train/crop_field_0",
                                                      "val/airport_0", "val/crop_field_3"]
        assert len(df) == 9 and df.groupby("location_id").size()["train/airport_0"] == 3
        assert (np.minimum(df["img_width"], df["img_height"]) == 16).all()
        raw = load_manifest(result.raw_manifest)
        assert (np.minimum(raw["img_width"], raw["img_height"]) >= 32).all()

        # the same through the command line: nothing fetched again
        server.reset_counts()
        argv = ["data", "fmow-download", "--out", str(tmp_path / "mini"), "--endpoint", server.endpoint,
                "--bucket", server.bucket, "--prefix", prefix, "--path-style", "--categories", "airport",
                "crop_field", "--locations-per-category", "1", "--val-locations-per-category", "1",
                "--short-side", "16", "--no-progress"]
        assert main(argv) == 0
        assert "fetched 0 files, 18 already complete" in capsys.readouterr().out
        assert sum(server.gets.values()) == 0
        # a category that is not there is a clear error, not an empty download
        assert main(argv[:-8] + ["--categories", "zoo", "--no-progress"]) == 2
        assert "No location folders under" in capsys.readouterr().err


def test_listing_stops_on_a_repeated_token_and_on_the_page_cap():
    """A server whose NextContinuationToken repeats, or that never stops paging, ends the listing
    with a ListingError that says why, instead of listing for ever."""
    with FakeS3(page_size=2) as server:
        for k, v in _payloads(6).items():
            server.put(k, v)
        server.list_tokens = "repeat"
        with pytest.raises(s3.ListingError, match="sent the continuation token 'repeat-token' again after 2 pages"):
            s3.list_objects(_bucket(server), PREFIX, policy=FAST)
        assert server.list_requests == 2
        server.list_tokens = "endless"
        with pytest.raises(s3.ListingError, match="stopped after 5 pages"):
            s3.list_objects(_bucket(server), PREFIX, policy=FAST, max_pages=5)
    with pytest.raises(ValueError, match="retries must be >= 0"):
        s3.RetryPolicy(retries=-1)


def test_ctrl_c_stops_listing_threads(monkeypatch):
    """Ctrl-C while the fmow-mini selection is being listed (here: a listing that never ends)
    returns at once and leaves no thread sending requests."""
    import signal
    import threading
    import time

    from geolab.sources.fmow_mini import list_fmow_selection

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with FakeS3(page_size=2) as server:
            for cat in ("airport", "port"):
                for i in range(3):
                    server.put(f"fmow/train/{cat}/{cat}_{i}/{cat}_{i}_0_rgb.jpg", b"x")
            server.list_tokens = "endless"

            def press_ctrl_c() -> None:
                deadline = time.monotonic() + 10
                while server.list_requests < 6 and time.monotonic() < deadline:
                    time.sleep(0.01)
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

            threading.Thread(target=press_ctrl_c, daemon=True).start()
            with pytest.raises(KeyboardInterrupt):
                list_fmow_selection(_bucket(server), "fmow/", ["airport", "port"], {"train": 2},
                                    workers=2, policy=FAST)
            deadline = time.monotonic() + 10  # a request under way may finish; nothing after it
            while any(t.name.startswith("geolab-list") for t in threading.enumerate()) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not [t for t in threading.enumerate() if t.name.startswith("geolab-list")]
            seen = server.list_requests
            time.sleep(0.2)
            assert server.list_requests == seen, "listing requests went on after Ctrl-C"
    finally:
        signal.signal(signal.SIGINT, previous)
