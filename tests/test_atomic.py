"""speakerid.atomic: the one temp-file + fsync + rename writer behind checkpoints, registries, shards, exports."""

import os
import stat

import pytest

from speakerid.atomic import atomic_open, write_atomic


def test_write_atomic_text_and_bytes(tmp_path):
    write_atomic(tmp_path / "a" / "b.txt", "héllo\n")  # parents are created
    assert (tmp_path / "a" / "b.txt").read_text(encoding="utf-8") == "héllo\n"
    write_atomic(tmp_path / "c.bin", b"\x00\x01")
    assert (tmp_path / "c.bin").read_bytes() == b"\x00\x01"


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "report.json"
    write_atomic(path, "old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(path, "w") as f:
            f.write("half of the new")
            raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_new_files_get_the_usual_permissions_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "model.onnx", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model.onnx").stat().st_mode) == 0o644


def test_only_whole_file_modes(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "x", "a"):
            pass
