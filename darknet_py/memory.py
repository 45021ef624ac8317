"""Freed memory kept in the process for reuse, as Darknet keeps its buffers.

Darknet allocates every layer's buffers once and reuses them on each pass. PyTorch allocates a
new tensor per layer per pass and frees it, and glibc's malloc hands blocks above its mmap
threshold (at most 32 MiB, dynamically) back to the kernel and trims the heap's free top, so
the next pass takes a page fault for every 4 KiB page again (yolov3 416 inference: about 11,000
faults per pass; yolov3-tiny training at batch 16 spent 28% of its CPU time in the kernel).
``keep_freed_memory`` raises both thresholds so that freed blocks stay in the process.

The setting is process-wide, so the library never makes it on its own: the ``darknet-py``
command does at start (``DARKNET_PY_KEEP_MEMORY=0`` turns that off), a Python program calls
``darknet_py.keep_freed_memory()``. The cost: the process keeps its peak memory until it exits.
"""
from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
KEEP_BYTES = 1 << 30  # blocks up to this size come from (and return to) the heap; its free top up to this stays
_applied = False


def glibc_version() -> str | None:
    """``"2.35"`` where this process runs on glibc, else None."""
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
    except (AttributeError, ValueError, OSError):
        return None
    return version if name == "glibc" else None


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed blocks (up to ``KEEP_BYTES`` each) for reuse instead of
    unmapping them or trimming the heap. Returns whether it is in effect (False off glibc)."""
    global _applied
    if _applied:
        return True
    if glibc_version() is None:
        log.info("keep_freed_memory: not glibc; the allocator is left as it is")
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))
    if not _applied:
        log.warning("keep_freed_memory: glibc %s refused the thresholds", glibc_version())
    return _applied
