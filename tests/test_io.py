"""Files are written atomically: a failure half-way leaves the previous file intact and no
temporary files behind; the result has the usual permissions; free space is checked."""

from __future__ import annotations

import os
import stat

import pytest

from geolab.io import DiskSpaceError, atomic_write, atomic_write_json, atomic_write_text, ensure_free_space


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "ckpt.bin"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as fh:
            fh.write("half of the new")
            raise RuntimeError("killed half-way")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.bin"], "no temporary file is left behind"


def test_written_files_get_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644


def test_free_space_check_says_how_much_is_needed(tmp_path):
    ensure_free_space(tmp_path, 1, "a tiny file")
    with pytest.raises(DiskSpaceError, match="need about .* MiB"):
        ensure_free_space(tmp_path, 1 << 60, "the geoworld cache")
