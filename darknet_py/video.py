"""Video frames as Darknet's images, with a word when a video ends before its declared length."""
from __future__ import annotations

import logging

import cv2

from .errors import ImageError
from .files import open_regular
from .image import BYTES_PER_PIXEL, max_pixels

log = logging.getLogger(__name__)


def frames(path, max_bytes=None):
    """Yield (BGR uint8 frame, fps) per frame, as ``detect`` takes frames. A video whose container declares
    more frames than decode (a file cut short) is reported with both counts once the last
    frame is read; one that yields no frame at all, or declares frames larger than the memory
    budget allows, is refused with ImageError."""
    open_regular(path, lambda m: ImageError(f"{path}: {m}"), "video file").close()  # no FIFO, no device
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ImageError(f"{path}: cannot open the video")
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        w, h = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w * h > max_pixels(max_bytes):
            raise ImageError(f"{path}: frames of {w} x {h} need about {w * h * BYTES_PER_PIXEL / 2**20:.0f} MiB each, "
                             f"over the memory budget ({max_pixels(max_bytes)} pixels; DARKNET_PY_MAX_BYTES raises it)")
        read = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            read += 1
            yield bgr, fps
    finally:
        capture.release()
    if read == 0:
        raise ImageError(f"{path}: no frame decodes (the container declares {declared})")
    if read < declared:
        log.warning("%s: the video ends after %d of its %d declared frames (cut short?); %d frames were processed",
                    path, read, declared, read)
