"""Images as Darknet holds them: float32 RGB, CHW, in [0, 1]; Darknet's own bilinear letterbox.

``resize_image`` in Darknet's ``image.c`` resizes in two passes (columns, then rows) with its
own float32 arithmetic and order of operations; reproducing that order gives the network input
Darknet computes, to the last bit or two, which an OpenCV resize does not.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from .errors import ImageError

F32 = np.float32


def read_bgr(path) -> np.ndarray:
    """The decoded file as OpenCV holds it (BGR uint8, HWC); grey is replicated, alpha dropped."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such image file")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError(f"{path}: cannot decode as an image ({path.stat().st_size} bytes)")
    return bgr


def from_bgr(bgr: np.ndarray) -> np.ndarray:
    """BGR uint8 HWC -> Darknet's image: RGB, CHW, value/255 (Darknet divides by the double 255.)."""
    rgb = bgr[:, :, ::-1].transpose(2, 0, 1)
    return (rgb.astype(np.float64) / 255.0).astype(F32)


def load_image(path) -> np.ndarray:
    """``load_image_color``: 3 channels, RGB, CHW, float32 in [0, 1]."""
    return from_bgr(read_bgr(path))


def _interpolation(size_in: int, size_out: int):
    """Source index, weight and "no second tap" flag per output position, as ``resize_image``."""
    pos = np.arange(size_out)
    scale = F32(size_in - 1) / F32(size_out - 1) if size_out > 1 else F32(0)
    s = (pos.astype(F32) * scale).astype(F32)
    i = s.astype(np.int64)
    d = (s - i.astype(F32)).astype(F32)
    single = (pos == size_out - 1) | (size_in == 1)
    return i, d, single


def resize_image(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """Darknet's ``resize_image`` on a (c, h, w) float32 array.

    Columns: the last one copies the last input column. Rows: every row takes ``(1-dy)`` of its
    source row, and all but the last add ``dy`` of the next (the last row keeps only the first
    term, even when ``dy`` is not 0).
    """
    im = np.ascontiguousarray(im, dtype=F32)
    _, ih, iw = im.shape
    ix, dx, last_x = _interpolation(iw, w)
    nxt = np.minimum(ix + 1, iw - 1)
    part = (F32(1) - dx) * im[:, :, ix] + dx * im[:, :, nxt]
    part[:, :, last_x] = im[:, :, iw - 1:iw]
    iy, dy, last_y = _interpolation(ih, h)
    nyt = np.minimum(iy + 1, ih - 1)
    out = (F32(1) - dy)[None, :, None] * part[:, iy, :]
    add = dy[None, :, None] * part[:, nyt, :]
    return np.where(last_y[None, :, None], out, out + add).astype(F32)


def letterbox_geometry(im_w: int, im_h: int, w: int, h: int):
    """(new_w, new_h, left, top) of ``letterbox_image``; Darknet compares float32 ratios."""
    if F32(w) / F32(im_w) < F32(h) / F32(im_h):
        new_w, new_h = w, (im_h * w) // im_w
    else:
        new_w, new_h = (im_w * h) // im_h, h
    return new_w, new_h, (w - new_w) // 2, (h - new_h) // 2


def letterbox(image, w: int, h: int):
    """``letterbox_image``: keep the aspect ratio, fill the rest with 0.5. numpy in, numpy out;
    a torch tensor in, a tensor out."""
    as_tensor = isinstance(image, torch.Tensor)
    im = image.detach().cpu().numpy() if as_tensor else np.asarray(image)
    c, ih, iw = im.shape
    new_w, new_h, left, top = letterbox_geometry(iw, ih, w, h)
    boxed = np.full((c, h, w), 0.5, dtype=F32)
    boxed[:, top:top + new_h, left:left + new_w] = resize_image(im, new_w, new_h)
    return torch.from_numpy(boxed) if as_tensor else boxed
