"""atomic_write: the old file or the whole new one; a killed writer's temporaries are cleared
by the next write once stale, and a live writer's are left alone."""
import os
import time

import pytest

from darknet_py import atomic
from darknet_py.atomic import atomic_write


def test_write_replaces_whole_and_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.weights"
    atomic_write(target, lambda f: f.write(b"old"))

    def failing(f):
        f.write(b"half")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        atomic_write(target, failing)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.weights"]


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    target = tmp_path / "yolo[1].weights"  # glob characters in the name are taken literally
    stale, fresh = tmp_path / ".yolo[1].weights.abc.tmp", tmp_path / ".yolo[1].weights.def.tmp"
    other = tmp_path / ".other.weights.ghi.tmp"
    for p in (stale, fresh, other):
        p.write_bytes(b"partial")
    old = time.time() - atomic.STALE_SECONDS - 60
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new"
    assert not stale.exists()
    assert fresh.exists()  # could be a live writer's
    assert other.exists()  # another file's


def test_new_file_gets_the_mode_open_would_give(tmp_path):
    before = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a", lambda f: f.write(b"x"))
        assert atomic._umask() == 0o027
    finally:
        os.umask(before)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o640


def test_links_devices_and_folders_as_targets(tmp_path):
    """A link's target is written (the link stays); /dev/null is written, not replaced by a
    file; a folder or a FIFO is refused and left as it was."""
    target = tmp_path / "real.weights"
    target.write_bytes(b"old")
    link = tmp_path / "link.weights"
    link.symlink_to(target)
    atomic_write(link, lambda f: f.write(b"new"))
    assert link.is_symlink() and target.read_bytes() == b"new"
    atomic_write("/dev/null", lambda f: f.write(b"discarded"))
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    folder = tmp_path / "folder.weights"
    folder.mkdir()
    with pytest.raises(IsADirectoryError):
        atomic_write(folder, lambda f: f.write(b"x"))
    fifo = tmp_path / "fifo.weights"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        atomic_write(fifo, lambda f: f.write(b"x"))
    assert folder.is_dir() and not os.path.isfile(fifo)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.weights", "folder.weights", "link.weights",
                                                          "real.weights"]
