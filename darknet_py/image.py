"""Images as Darknet holds them: float32 RGB, CHW, in [0, 1]; Darknet's own bilinear letterbox.

``resize_image`` in Darknet's ``image.c`` resizes in two passes (columns, then rows) with its
own float32 arithmetic and order of operations; reproducing that order gives the network input
Darknet computes, to the last bit or two, which an OpenCV resize does not.
"""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import torch

from .errors import ImageError
from .files import read_regular

F32 = np.float32
# Darknet's value/255 (a double division rounded to float32), for every byte value at once
_BYTE_TO_FLOAT = (np.arange(256, dtype=np.float64) / 255.0).astype(F32)
# what one pixel costs while an image is read and prepared: the file's bytes, the decoded
# BGR (16-bit for some files), the float32 RGB image and a resized copy of it
BYTES_PER_PIXEL = 32
# stb_image never applies EXIF orientation; OpenCV does unless told not to
DECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
FORMATS = "JPEG, PNG, BMP, GIF, WebP, TIFF, PNM/PFM, Sun raster, Radiance HDR"


def _jpeg_size(data):
    """Width and height of the first SOF segment (baseline, progressive, lossless, arithmetic)."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):  # standalone markers
            at += 2
            continue
        length = int.from_bytes(data[at + 2:at + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            if at + 9 > len(data):
                return None
            h, w = struct.unpack(">HH", data[at + 5:at + 9])
            return w, h
        if marker == 0xDA or length < 2:  # a scan before any frame header
            return None
        at += 2 + length
    return None


def _bmp_size(data):
    if len(data) < 26:
        return None
    if int.from_bytes(data[14:18], "little") == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack("<HH", data[18:22])
    w, h = struct.unpack("<ii", data[18:26])
    return abs(w), abs(h)  # a negative height is a top-down bitmap


def _webp_size(data):
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _pnm_size(data):
    """P1..P7 (PAM's WIDTH/HEIGHT) and PF/Pf: the first two numbers after the magic, comments skipped."""
    head = data[:4096]
    if head[:2] == b"P7":
        fields = dict(line.split(None, 1) for line in head.split(b"\n") if len(line.split(None, 1)) == 2)
        try:
            return int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
        except (KeyError, ValueError):
            return None
    tokens = []
    for line in head[2:].split(b"\n"):
        tokens += line.split(b"#", 1)[0].split()
        if len(tokens) >= 2:
            try:
                return int(tokens[0]), int(tokens[1])
            except ValueError:
                return None
    return None


def _tiff_size(data):
    """ImageWidth (256) and ImageLength (257) of the first IFD."""
    order = "<" if data[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[ifd:ifd + 2])
        found = {}
        for k in range(count):
            tag, kind = struct.unpack(order + "HH", data[ifd + 2 + 12 * k:ifd + 6 + 12 * k])
            value = data[ifd + 10 + 12 * k:ifd + 14 + 12 * k]
            if tag in (256, 257):
                found[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value[:2 if kind == 3 else 4])[0]
        return found[256], found[257]
    except (struct.error, KeyError):
        return None


def _hdr_size(data):
    """Radiance: the resolution line after the blank line, e.g. ``-Y 480 +X 640``."""
    end = data.find(b"\n\n", 0, 65536)
    if end < 0:
        return None
    fields = data[end + 2:end + 66].split(b"\n", 1)[0].split()
    if len(fields) != 4:
        return None
    try:
        first, second = int(fields[1]), int(fields[3])
    except ValueError:
        return None
    return (second, first) if fields[0][1:] == b"Y" else (first, second)


SIGNATURES = (  # first bytes -> the header reader giving (width, height)
    (b"\xff\xd8", "JPEG", _jpeg_size),
    (b"\x89PNG\r\n\x1a\n", "PNG", lambda d: struct.unpack(">II", d[16:24]) if d[12:16] == b"IHDR" else None),
    (b"BM", "BMP", _bmp_size),
    (b"GIF8", "GIF", lambda d: struct.unpack("<HH", d[6:10]) if len(d) >= 10 else None),
    (b"RIFF", "WebP", lambda d: _webp_size(d) if d[8:12] == b"WEBP" else None),
    (b"II*\x00", "TIFF", _tiff_size),
    (b"MM\x00*", "TIFF", _tiff_size),
    (b"\x59\xa6\x6a\x95", "Sun raster", lambda d: struct.unpack(">II", d[4:12]) if len(d) >= 12 else None),
    (b"#?RADIANCE", "Radiance HDR", _hdr_size),
    (b"#?RGBE", "Radiance HDR", _hdr_size),
    *((b"P" + bytes([c]), "PNM", _pnm_size) for c in b"1234567Ff"),
)


def declared_size(data: bytes, path) -> tuple[str, int, int]:
    """(format, width, height) the file's header declares, read without decoding."""
    for magic, kind, reader in SIGNATURES:
        if data.startswith(magic):
            size = reader(data)
            if size is None:
                raise ImageError(f"{path}: {kind} header is malformed or cut short ({len(data)} bytes)")
            return kind, int(size[0]), int(size[1])
    raise ImageError(f"{path}: not an image file darknet_py reads ({FORMATS}); it starts with "
                     f"{data[:8].hex(' ')} ({len(data)} bytes)")


def max_pixels(max_bytes=None) -> int:
    """The largest image (in pixels) the memory budget (model.budget) lets us decode."""
    from .model import budget
    return budget(max_bytes) // BYTES_PER_PIXEL


def check_declared_size(data: bytes, path, max_bytes=None) -> tuple[int, int]:
    """Refuse, before decoding, an image whose header declares no pixels or more than the budget allows."""
    kind, w, h = declared_size(data, path)
    if w <= 0 or h <= 0:
        raise ImageError(f"{path}: the {kind} header declares a {w} x {h} image (no pixels)")
    limit = max_pixels(max_bytes)
    if w * h > limit:
        from .model import budget
        raise ImageError(f"{path}: the {kind} header declares {w} x {h} = {w * h} pixels; decoding needs about "
                         f"{w * h * BYTES_PER_PIXEL / 2**20:.0f} MiB, over the memory budget of "
                         f"{budget(max_bytes) / 2**20:.0f} MiB ({limit} pixels; DARKNET_PY_MAX_BYTES raises it)")
    return w, h


def check_complete(data: bytes, path) -> None:
    """Refuse an image cut short where the decoder would fill the rest with grey. A JPEG's last
    scan (``FFDA``) must be followed by its end-of-image marker (``FFD9``): data bytes cannot
    contain either, and an EXIF thumbnail's pair comes before the main scan. A PNG must have
    its ``IEND`` chunk."""
    if data[:2] == b"\xff\xd8" and data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
        raise ImageError(f"{path}: truncated JPEG: no end-of-image marker after its last scan ({len(data)} bytes)")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data.rfind(b"IEND") < 0:
        raise ImageError(f"{path}: truncated PNG: no IEND chunk ({len(data)} bytes)")


def read_bgr(path, max_bytes=None) -> np.ndarray:
    """The decoded file as Darknet's stb_image sees it, held as OpenCV holds it (BGR uint8, HWC):
    grey replicated, alpha dropped, 16 bits cut to their high byte, EXIF orientation ignored.
    Refused with ImageError: anything but a regular file, an unknown format, a header declaring
    no pixels or more than the memory budget allows (checked before decoding), a file cut short
    or that does not decode."""
    from .model import budget
    data = read_regular(path, lambda m: ImageError(f"{path}: {m}"), "image file", budget(max_bytes))
    if not data:
        raise ImageError(f"{path}: empty image file (0 bytes)")
    w, h = check_declared_size(data, path, max_bytes)
    check_complete(data, path)
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), DECODE_FLAGS)
    except cv2.error as e:
        raise ImageError(f"{path}: cannot decode: {str(e).strip().splitlines()[-1]}") from None
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ImageError(f"{path}: cannot decode as an image ({len(data)} bytes; the header declares {w} x {h})")
    if bgr.dtype != np.uint8:  # not asked for with IMREAD_COLOR; keep the contract whatever OpenCV gives
        raise ImageError(f"{path}: decodes to {bgr.dtype}, not 8-bit")
    return bgr


def from_bgr(bgr: np.ndarray) -> np.ndarray:
    """BGR uint8 HWC -> Darknet's image: RGB, CHW, value/255 (Darknet divides by the double 255.)."""
    return _BYTE_TO_FLOAT[bgr[:, :, ::-1].transpose(2, 0, 1)]


def load_image(path, max_bytes=None) -> np.ndarray:
    """``load_image_color``: 3 channels, RGB, CHW, float32 in [0, 1]."""
    return from_bgr(read_bgr(path, max_bytes))


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
