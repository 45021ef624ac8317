"""Builders of hostile inputs shared by the tests/test_hostile_*.py files."""
from __future__ import annotations

import contextlib
import os
import signal
import struct
import zlib
from collections import Counter

import cv2
import numpy as np

from conftest import FUZZ_COUNTS


def count(target: str, outcome: str) -> None:
    FUZZ_COUNTS.setdefault(target, Counter())[outcome] += 1


@contextlib.contextmanager
def no_hang(seconds: int = 20):
    """Fail (instead of hanging the suite) when the block runs longer than ``seconds``."""
    def alarm(signum, frame):
        raise AssertionError(f"hung for more than {seconds} s")
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def picture(h=48, w=64, seed=0) -> np.ndarray:
    """A BGR uint8 picture whose rows and columns all differ (a rotation cannot go unnoticed)."""
    rng = np.random.default_rng(seed)
    return (rng.random((h, w, 3)) * 255).astype(np.uint8)


def encode(image: np.ndarray, ext: str, params=()) -> bytes:
    ok, buffer = cv2.imencode(ext, image, list(params))
    assert ok, ext
    return buffer.tobytes()


def exif_oriented_jpeg(image: np.ndarray, orientation: int = 6) -> bytes:
    """A JPEG with an EXIF APP1 segment whose Orientation tag (0x0112) says ``orientation``."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + \
        struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    body = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
    jpeg = encode(image, ".jpg")
    return jpeg[:2] + app1 + jpeg[2:]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_declaring(width: int, height: int, rows: int = 1) -> bytes:
    """A small PNG file whose IHDR declares width x height (8-bit RGB) with ``rows`` rows of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + b"\x00" * (3 * min(width, 64)) for _ in range(rows))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw)) + \
        png_chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A tiny real JPEG whose SOF0 segment is patched to declare width x height."""
    data = bytearray(encode(np.zeros((8, 8, 3), np.uint8), ".jpg"))
    at = data.index(b"\xff\xc0")
    data[at + 5:at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def make_fifo(path) -> str:
    os.mkfifo(path)
    return str(path)
