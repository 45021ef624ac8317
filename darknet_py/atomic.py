"""Files that are either the old version or the complete new one, never half written."""
from __future__ import annotations

import glob
import os
import stat
import tempfile
import time
from pathlib import Path

STALE_SECONDS = 3600  # a temporary untouched this long belongs to a writer that was killed


def atomic_write(path, write) -> None:
    """``write(file)`` into a temporary file beside ``path``, fsync it, then rename it over
    ``path``: a crash at any point leaves the previous file in place. A symbolic link is
    followed (its target is replaced, as ``fopen`` would write it); a character device such
    as ``/dev/null`` is written directly (renaming over it would replace the device); a
    directory, FIFO or socket is refused (OSError)."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = stat.S_IFREG
    if stat.S_ISCHR(mode):
        with open(path, "wb") as f:
            write(f)
        return
    if not stat.S_ISREG(mode):
        raise IsADirectoryError(21, "is a directory, not a file", str(path)) if stat.S_ISDIR(mode) else \
            OSError(f"{path}: not a regular file (a FIFO or socket); refusing to replace it")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; keep what open() would give
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    _remove_stale_temporaries(path)


def _remove_stale_temporaries(path: Path) -> None:
    """Temporaries for ``path`` left by a writer killed mid-write (SIGKILL, power cut: no
    ``except`` runs), once no live writer could still be filling them."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if time.time() - tmp.stat().st_mtime > STALE_SECONDS:
                tmp.unlink()
        except OSError:
            pass  # gone already, or not ours to remove


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (a power cut after it keeps the new file)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    """The process's umask: read from Linux's /proc where it can be (setting it to read it, the
    only portable way, would briefly give other threads' new files a zero umask)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask
