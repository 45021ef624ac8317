"""Darknet .weights files: header, exact float accounting, byte-identical writing.

Layout (``parser.c``): int32 major, minor, revision; ``seen`` as uint64 when
``major*10 + minor >= 2`` and (pjreddie's rule) both are below 1000, else int32 (AlexeyAB's
rule, for networks of ``fork=alexeyab``: uint64 whenever ``major*10 + minor >= 2``, else
uint32); then each layer's blobs in cfg
order (see each layer's ``blobs()``), float32 little-endian. Connected weights are transposed
when major or minor exceeds 1000. Darknet reads whatever is there and never checks; we refuse
any file whose size is not exactly what the cfg (up to ``cutoff``) needs, before copying.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write
from .errors import WeightsError


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
        return header


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
    try:
        f = open(path, "rb")
    except OSError as e:
        raise WeightsError(f"cannot open: {e.strerror}", file=path) from None
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
    offset = 0
    with torch.no_grad():
        for _, blobs in plan:
            for blob in blobs:
                n = blob.tensor.numel()
                data = torch.from_numpy(floats[offset:offset + n]).view(_file_layout(blob, header.transpose))
                if blob.transposable and header.transpose:
                    blob.tensor.copy_(data.t())
                elif blob.tensor.device.type == "cpu" and blob.tensor.dtype == torch.float32:
                    blob.tensor.data = data  # a view of the file's buffer: no second copy
                else:
                    blob.tensor.copy_(data)
                offset += n
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
    try:
        with open(path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            header = Header.read(f, path, file_size, net.net.fork)
    except OSError as e:
        raise WeightsError(f"cannot open: {e.strerror}", file=path) from None
    if file_size == header.size:
        return 0
    return _boundaries(net, header).get(file_size)
