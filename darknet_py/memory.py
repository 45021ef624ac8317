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

``advise_huge_pages`` is local to one block: Winograd's transformed weights (up to 75 MB a
layer, read once per pass) are asked to sit on 2 MiB pages, so that reading them walks 512 x
fewer page-table entries.
"""
from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
KEEP_BYTES = 1 << 30  # blocks up to this size come from (and return to) the heap; its free top up to this stays
HUGE_PAGE = 1 << 21  # a transparent huge page on x86-64 and most aarch64 kernels
MADV_HUGEPAGE = 14  # Linux's mman.h
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


def advise_huge_pages(address: int, nbytes: int) -> int:
    """Ask Linux (``madvise(MADV_HUGEPAGE)``) to back the whole 2 MiB pages inside the block
    ``[address, address + nbytes)`` with transparent huge pages when they are first touched;
    the block's memory and contents are unchanged. Returns the bytes advised: 0 off Linux, for
    a block holding no whole huge page, or where the kernel refused (huge pages off)."""
    start = -(-address // HUGE_PAGE) * HUGE_PAGE
    stop = (address + nbytes) // HUGE_PAGE * HUGE_PAGE
    if stop <= start or not sys.platform.startswith("linux"):
        return 0
    madvise = ctypes.CDLL(None).madvise
    madvise.argtypes, madvise.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    return stop - start if madvise(start, stop - start, MADV_HUGEPAGE) == 0 else 0
