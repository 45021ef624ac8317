"""Darknet .weights files: header, exact float accounting, byte-identical writing.

Layout (``parser.c``): int32 major, minor, revision; ``seen`` as uint64 when
``major*10 + minor >= 2`` and (pjreddie's rule) both are below 1000, else int32 (AlexeyAB's
rule, for networks of ``fork=alexeyab``: uint64 whenever ``major*10 + minor >= 2``, else
uint32); then each layer's blobs in cfg
order (see each layer's ``blobs()``), float32 little-endian. Connected weights are transposed
when major or minor exceeds 1000. Darknet reads whatever is there and never checks; we refuse
any file whose size is not exactly what the cfg (up to ``cutoff``) needs, before copying, and
numbers no trained network holds (NaN, infinities, a negative ``rolling_variance``, magnitudes
above ``ABSURD``), which make Darknet compute NaN or nothing at all: a ``WeightsError`` naming
the layer, the blob and the byte offset, or with ``DARKNET_PY_ALLOW_BAD_WEIGHTS=1`` a warning
and the values loaded as Darknet would load them.
"""
from __future__ import annotations

import logging
import math
import os
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write
from .errors import WeightsError
from .files import open_regular

log = logging.getLogger(__name__)
ABSURD = 1e15  # no trained blob comes near (official yolov3-tiny: 401 at most); its square is still a float32
SEEN_LIMIT = 2**63  # seen counts images: a file claiming more is corrupt (and would not fit an int64)


@dataclass
class Header:
    """``fork`` (netcfg.FORKS) says whose rule sizes ``seen``: the network's, set when a file is
    read or written."""

    major: int = 0
    minor: int = 2
    revision: int = 0
    seen: int = 0
    fork: str = field(default="pjreddie", compare=False)

    @property
    def seen_is_int64(self) -> bool:
        if self.fork == "alexeyab":
            return self.major * 10 + self.minor >= 2
        return self.major * 10 + self.minor >= 2 and self.major < 1000 and self.minor < 1000

    @property
    def _seen32(self) -> str:
        return "<I" if self.fork == "alexeyab" else "<i"  # uint32_t iseen / int iseen

    @property
    def transpose(self) -> bool:
        return self.major > 1000 or self.minor > 1000

    @property
    def size(self) -> int:
        return 20 if self.seen_is_int64 else 16

    def pack(self) -> bytes:
        head = struct.pack("<iii", self.major, self.minor, self.revision)
        if self.seen_is_int64:
            return head + struct.pack("<Q", self.seen)
        low, high = (0, 2**32) if self.fork == "alexeyab" else (-2**31, 2**31)
        if not low <= self.seen < high:
            raise WeightsError(f"seen={self.seen} does not fit the 4-byte field of a version "
                               f"{self.major}.{self.minor} header ({self.fork}'s rule)")
        return head + struct.pack(self._seen32, self.seen)

    @classmethod
    def read(cls, f, path, file_size, fork="pjreddie") -> "Header":
        head = f.read(12)
        if len(head) < 12:
            raise WeightsError(f"file is {file_size} bytes; a Darknet weights file starts with a 16- or "
                               "20-byte header (major, minor, revision, seen)", file=path)
        header = cls(*struct.unpack("<iii", head), fork=fork)
        width = 8 if header.seen_is_int64 else 4
        raw = f.read(width)
        if len(raw) < width:
            raise WeightsError(f"file is {file_size} bytes; version {header.major}.{header.minor} needs a "
                               f"{header.size}-byte header", file=path)
        header.seen = struct.unpack("<Q" if width == 8 else header._seen32, raw)[0]
        check_seen(header.seen, path, f"byte offset 12 (version {header.major}.{header.minor} header)")
        return header


def check_seen(seen, path, where: str) -> None:
    """``seen`` counts training images: negative (a 4-byte field of a 0.1 header read as a signed
    int) or beyond an int64 is no count Darknet could have written."""
    if not 0 <= seen < SEEN_LIMIT:
        raise WeightsError(f"{where}: seen={seen} is not a number of images (0 <= seen < 2**63 expected)",
                           file=path)


def allow_bad_values() -> bool:
    return os.environ.get("DARKNET_PY_ALLOW_BAD_WEIGHTS", "") not in ("", "0")


def check_values(net, items, path, header_size=None, whole=None) -> None:
    """Refuse (or, with DARKNET_PY_ALLOW_BAD_WEIGHTS=1, warn about) the first blob holding NaN,
    an infinity, a magnitude above ABSURD or a negative rolling variance, before any of it is
    copied into ``net``. ``items``: (layer index, blob name, values) in file order; with
    ``header_size`` they are a .weights file's, in its layout, and the byte offset is named.
    ``whole``: all of the file's floats, checked in one pass first (then only the variances
    need a look of their own)."""
    items = list(items)
    if whole is not None and _in_range(whole):
        items = [item for item in items if item[1] == "rolling_variance"] if header_size is None else \
            [(i, name, values, at) for i, name, values, at in _with_offsets(items, header_size)
             if name == "rolling_variance"]
    elif header_size is not None:
        items = list(_with_offsets(items, header_size))
    for item in items:
        i, name, values = item[:3]
        problem = bad_value(name, values)
        if problem is None:
            continue
        index, text = problem
        where = f" (byte offset {item[3] + 4 * index})" if header_size is not None else ""
        layer = f"layer {i} ({net.describe(i)})" if isinstance(i, int) else f"'{i}'"
        message = (f"{layer}, blob '{name}', value {index} of {values.numel()}{where} "
                   f"is {text}; no trained network holds it (Darknet would compute NaN or find nothing). "
                   f"DARKNET_PY_ALLOW_BAD_WEIGHTS=1 loads it anyway")
        if not allow_bad_values():
            raise WeightsError(message, file=path)
        log.warning("%s: %s", path, message.split("; no trained")[0])
        return


def _with_offsets(items, header_size):
    offset = header_size
    for i, name, values in items:
        yield i, name, values, offset
        offset += 4 * values.numel()


def _in_range(values: np.ndarray) -> bool:
    """Every value finite and within +-ABSURD (numpy's min and max carry NaN through)."""
    if values.size == 0:
        return True
    lo, hi = float(values.min()), float(values.max())
    return math.isfinite(lo) and math.isfinite(hi) and -ABSURD <= lo and hi <= ABSURD


def bad_value(name, values):
    """(flat index, description) of the first value of blob ``name`` that no trained network
    holds, or None (one min/max pass when all is well; numpy's, which needs no thread wake-ups
    for the many small blobs)."""
    if values.numel() == 0:
        return None
    flat = values.detach().reshape(-1).float().cpu().numpy()
    variance = name == "rolling_variance"
    if _in_range(flat) and not (variance and float(flat.min()) < 0):
        return None
    for test, text in ((np.isnan, "NaN"), (np.isinf, "infinite"),
                       (lambda v: np.abs(v) > ABSURD, f"beyond +-{ABSURD:g}"),
                       (lambda v: v < 0 if variance else np.zeros(v.shape, bool), "negative")):
        with np.errstate(invalid="ignore"):
            hits = np.flatnonzero(test(flat))
        if len(hits):
            index = int(hits[0])
            return index, text if text == "NaN" else f"{text} ({float(flat[index]):g})"
    return None


def _layer_plan(net, cutoff, loading, path=None):
    """(layer index, blobs) of every layer a file holds, up to ``cutoff``, in file order."""
    n = len(net.layers)
    if cutoff is None:
        cutoff = n
    if not 0 <= cutoff <= n:
        raise WeightsError(f"cutoff={cutoff} is outside 0..{n} (the cfg has {n} layers)", file=path)
    plan = []
    for i in range(cutoff):
        layer = net.layers[i]
        if not hasattr(layer, "blobs") or (net.flags[i].dontload if loading else net.flags[i].dontsave):
            continue
        blobs = layer.blobs()
        if loading and net.flags[i].dontloadscales:
            blobs = [b for b in blobs if not b.bn_scale]
        plan.append((i, blobs))
    return plan, cutoff


def _file_layout(blob, transpose):
    shape = tuple(blob.tensor.shape)
    return (shape[1], shape[0]) if blob.transposable and transpose else shape


def read_weights(net, path, cutoff=None):
    """Fill ``net`` from a weights file; the file must hold exactly the layers before ``cutoff``."""
    path = Path(path)
    f = open_regular(path, lambda m: WeightsError(m, file=path), "weights file")
    with f:
        file_size = os.fstat(f.fileno()).st_size
        header = Header.read(f, path, file_size, net.net.fork)
        plan, cutoff = _layer_plan(net, cutoff, loading=True, path=path)
        body = file_size - header.size
        expected = header.size + 4 * sum(b.tensor.numel() for _, blobs in plan for b in blobs)
        what = f"layers 0..{cutoff - 1} of {net.cfg_file}" if cutoff < len(net.layers) else str(net.cfg_file)
        if file_size != expected:
            _raise_size_error(net, path, plan, header, file_size, expected, what)
        floats = np.fromfile(f, dtype="<f4", count=body // 4)
    offset, views = 0, []
    for i, blobs in plan:
        for blob in blobs:
            n = blob.tensor.numel()
            views.append((i, blob, torch.from_numpy(floats[offset:offset + n]).view(_file_layout(blob, header.transpose))))
            offset += n
    check_values(net, ((i, blob.name, data) for i, blob, data in views), path, header.size, floats)
    with torch.no_grad():
        for _, blob, data in views:
            if blob.transposable and header.transpose:
                blob.tensor.copy_(data.t())
            elif blob.tensor.device.type == "cpu" and blob.tensor.dtype == torch.float32:
                blob.tensor.data = data  # a view of the file's buffer: no second copy
            else:
                blob.tensor.copy_(data)
    net.header = header
    return header


def _raise_size_error(net, path, plan, header, file_size, expected, what):
    boundaries = _boundaries(net, header)
    hint = ""
    if file_size in boundaries:
        hint = (f" The file ends exactly after layer {boundaries[file_size] - 1}: if it is a partial "
                f"file like darknet53.conv.74, load it with cutoff={boundaries[file_size]}.")
    position = header.size
    for i, blobs in plan:
        need = 4 * sum(b.tensor.numel() for b in blobs)
        if position + need > file_size:
            raise WeightsError(
                f"file ends inside layer {i} ({net.describe(i)}): it needs {need} bytes at byte offset "
                f"{position}, only {file_size - position} remain; {what} needs {expected} bytes "
                f"in all, the file has {file_size}.{hint}", file=path)
        position += need
    raise WeightsError(
        f"{file_size - expected} bytes left over after the last layer: {what} needs exactly "
        f"{expected} bytes, the file has {file_size} (a different cfg?).{hint}", file=path)


def _boundaries(net, header):
    """File size -> cutoff for every layer boundary of the whole net."""
    plan, _ = _layer_plan(net, None, loading=True)
    sizes, position = {}, header.size
    for i, blobs in plan:
        position += 4 * sum(b.tensor.numel() for b in blobs)
        sizes[position] = i + 1
    return sizes


def write_weights(net, path, cutoff=None, header=None):
    """Write atomically: a temporary file in the same folder, fsync'd, then renamed over ``path``."""
    path = Path(path)
    header = replace(header or net.header, fork=net.net.fork)
    plan, _ = _layer_plan(net, cutoff, loading=False, path=path)
    head = header.pack()

    def write(f):
        f.write(head)
        for _, blobs in plan:
            for blob in blobs:
                t = blob.tensor.detach()
                if blob.transposable and header.transpose:
                    t = t.t()
                f.write(t.to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False).tobytes())

    atomic_write(path, write)


def expected_size(net, cutoff=None, header=None) -> int:
    """Bytes of a file holding the layers before ``cutoff`` (what Darknet's save would write)."""
    header = replace(header or Header(), fork=net.net.fork)
    plan, _ = _layer_plan(net, cutoff, loading=False)
    return header.size + 4 * sum(b.tensor.numel() for _, blobs in plan for b in blobs)


def layers_in_file(net, path) -> int | None:
    """How many layers of ``net`` a file holds when its size ends exactly at a layer boundary
    (a whole file, or a cut one such as darknet53.conv.74); None when it matches no boundary
    (``read_weights`` then explains the mismatch)."""
    path = Path(path)
    with open_regular(path, lambda m: WeightsError(m, file=path), "weights file") as f:
        file_size = os.fstat(f.fileno()).st_size
        header = Header.read(f, path, file_size, net.net.fork)
    if file_size == header.size:
        return 0
    return _boundaries(net, header).get(file_size)
