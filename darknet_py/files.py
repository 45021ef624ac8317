"""Reading user files and writing outputs without hangs, runaway reads or late surprises.

Only regular files are read: a FIFO would block ``open`` until a writer appears, ``/dev/zero``
never ends, a directory is not data. The file is opened non-blocking and checked with
``fstat`` on the open descriptor (no window between the check and the open). Output folders
are probed by writing a temporary file before any work that would be lost if the final write
failed.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable

from .errors import DarknetError

KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _default_error(message: str) -> DarknetError:
    return DarknetError(message)


def kind_of(mode: int) -> str:
    return next((name for test, name in KINDS if test(mode)), "not a regular file")


def open_regular(path, error: Callable[[str], Exception] = _default_error, what: str = "file",
                 max_bytes: int | None = None):
    """``open(path, "rb")`` of a regular file of at most ``max_bytes``; anything else raises
    ``error(message)`` (the caller's error type, which names the file)."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise error(f"cannot read the {what}: {e.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"the {what} is {kind_of(info.st_mode)}, not a regular file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise error(f"the {what} is {info.st_size} bytes, over the limit of {max_bytes} for a {what}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path, error: Callable[[str], Exception] = _default_error, what: str = "file",
                 max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file (see :func:`open_regular`)."""
    with open_regular(path, error, what, max_bytes) as f:
        try:
            return f.read()
        except OSError as e:
            raise error(f"cannot read the {what}: {e.strerror}") from None


def free_space(folder) -> str:
    """"N MiB free" of the file system holding ``folder`` (or its nearest existing parent)."""
    folder = Path(folder)
    for candidate in (folder, *folder.parents):
        try:
            return f"{shutil.disk_usage(candidate).free / 2**20:.0f} MiB free"
        except OSError:
            continue
    return "free space unknown"


def check_writable_folder(folder, error: Callable[[str], Exception] = _default_error, create: bool = True,
                          what: str = "output folder") -> Path:
    """Create ``folder`` if asked, then write and remove a probe file in it: a read-only,
    full or missing folder is refused now, not after the work whose result it would hold."""
    folder = Path(folder)
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".darknet_py-probe.", dir=folder)
        try:
            os.write(fd, b"probe")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        raise error(f"the {what} {folder} is not writable: {e.strerror} ({free_space(folder)})") from None
    return folder


def write_failure(e: OSError, folder) -> str:
    """What a failed write says: the error, the folder and its free space."""
    target = e.filename or folder
    return f"cannot write {target}: {e.strerror or e} (in {folder}, {free_space(folder)})"
