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


# ----------------------------------------------------------------------------- the output rule
def test_output_rule_refuses_foreign_files_and_input_folders(tmp_path):
    """Protects issue 23's data-loss fixes: a command replaces only its own files (or anything with
    --force), never writes into its input's folder (not even with --force), and says the user's
    path, not a temporary file's, when --out is a file or a folder."""
    from geolab.io import OutputRefusedError, check_output_file, check_output_folder

    (tmp_path / "mine.json").write_text("{}")
    with pytest.raises(OutputRefusedError, match=r"mine\.json already exists and was not written by geolab x; pass "
                       r"--force to replace it, or choose another --out"):
        check_output_file(tmp_path / "mine.json", ours=False, command="geolab x")
    check_output_file(tmp_path / "mine.json", ours=True, command="geolab x")
    check_output_file(tmp_path / "mine.json", ours=False, command="geolab x", force=True)
    with pytest.raises(OutputRefusedError, match="is the input"):
        check_output_file(tmp_path / "mine.json", ours=True, command="geolab x", inputs=[tmp_path / "mine.json"],
                          force=True)
    with pytest.raises(IsADirectoryError, match="is a folder; give a file name"):
        check_output_file(tmp_path, ours=True, command="geolab x")
    with pytest.raises(NotADirectoryError, match=r"mine\.json is a file, so the folder cannot be made"):
        check_output_file(tmp_path / "mine.json" / "sub" / "b.pth", ours=True, command="geolab x")

    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.parquet").write_text("theirs")
    own = {"manifest.parquet", "images"}
    with pytest.raises(OutputRefusedError, match=r"is the folder of the input .*manifest\.parquet; geolab x never "
                       "writes into its input's folder"):
        check_output_folder(data, own=own, ours=True, command="geolab x", inputs=[data / "manifest.parquet"],
                            force=True)
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.parquet").write_text("theirs")
    (other / "notes.txt").write_text("not a name geolab x writes: left alone")
    with pytest.raises(OutputRefusedError, match=r"not a folder made by geolab x, but it holds .*other/manifest\.parquet"
                       r", which geolab x would replace; pass --force to replace it"):
        check_output_folder(other, own=own, ours=False, command="geolab x")
    check_output_folder(other, own=own, ours=False, command="geolab x", force=True)
    check_output_folder(other, own=own, ours=True, command="geolab x")
    with pytest.raises(OutputRefusedError, match="; choose another --out") as err:  # force=None: no --force offered
        check_output_folder(other, own=own, ours=False, command="geolab x", force=None)
    assert "--force" not in str(err.value)
    with pytest.raises(OutputRefusedError, match="would write over its input"):
        check_output_folder(tmp_path, own={"data"}, ours=True, command="geolab x", inputs=[data])
    with pytest.raises(NotADirectoryError, match=r"--out .*mine\.json is a file, not a folder"):
        check_output_folder(tmp_path / "mine.json", own=own, ours=False, command="geolab x")
    check_output_folder(tmp_path / "new" / "deeper", own=own, ours=False, command="geolab x")
    assert (other / "manifest.parquet").read_text() == "theirs" and not (tmp_path / "new").exists()
    # empty=True (a run folder, geolab pretrain): a folder not ours may not hold even files of other names
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("mine")
    check_output_folder(notes, own=own, ours=False, command="geolab x", force=None)
    with pytest.raises(OutputRefusedError, match=r"not a folder made by geolab x, but it holds .*notes\.txt; geolab x "
                       r"writes into a new or empty folder.*choose another --out"):
        check_output_folder(notes, own=own, ours=False, command="geolab x", force=None, empty=True)
    check_output_folder(notes, own=own, ours=True, command="geolab x", force=None, empty=True)
    (notes / "notes.txt").unlink()
    check_output_folder(notes, own=own, ours=False, command="geolab x", force=None, empty=True)


def test_atomic_write_over_a_folder_or_under_a_file_names_the_users_path(tmp_path):
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(IsADirectoryError, match=r"Cannot write the file .*a-folder: it is a folder") as err:
        atomic_write_text(tmp_path / "a-folder", "new")
    assert ".tmp" not in str(err.value)
    with pytest.raises(NotADirectoryError, match=r"Cannot write .*a-file/x/y\.json: .*a-file is a file, not a folder"):
        atomic_write_json(tmp_path / "a-file" / "x" / "y.json", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "a-folder"]


def test_damaged_json_names_the_file_line_and_column(tmp_path):
    """Issue 23: a truncated results.json gave json's "Expecting value: line 1 column 13", naming no file."""
    from geolab.io import read_json

    (tmp_path / "results.json").write_text('{"records": [\n')
    with pytest.raises(ValueError, match=r"results\.json, line 2, column 1: not valid JSON \(Expecting value; "
                       r"truncated or damaged\?\); rerun it"):
        read_json(tmp_path / "results.json", "rerun it")
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(ValueError, match=r"empty\.json, line 1, column 1: not valid JSON \(the file is empty"):
        read_json(tmp_path / "empty.json", "rerun it")
    (tmp_path / "ok.json").write_text('{"records": []}')
    assert read_json(tmp_path / "ok.json", "rerun it") == {"records": []}
