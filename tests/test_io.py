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


def test_disk_full_during_torch_save_is_a_disk_space_error(tmp_path, monkeypatch):
    """ENOSPC inside torch.save (which wraps it in a RuntimeError from its zip writer) becomes the
    DiskSpaceError naming the file, and the previous checkpoint is kept."""
    import errno

    import torch

    from geolab.io import atomic_torch_save

    target = tmp_path / "last.pt"
    atomic_torch_save({"w": torch.zeros(4)}, target)
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, fh):
            self.fh, self.n = fh, 0

        def write(self, b):
            self.n += len(b)
            if self.n > 1000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.fh.write(b)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(DiskSpaceError, match=r"disk filled up while writing .*last\.pt.*previous file is kept"):
        atomic_torch_save({"w": torch.zeros(100_000)}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True)["w"].shape == (4,)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
