"""``.weights`` <-> PyTorch ``state_dict`` files (``.pt``), byte-exact both ways.

The ``.pt`` file is a plain dict of tensors: the network's ``state_dict`` plus
``darknet.header`` = (major, minor, revision, seen), so that converting back writes the same
header and therefore the same bytes. It is read with ``torch.load(weights_only=True)``, after
its zip archive has passed a CRC check of every member (torch's reader checks none, so a flipped
byte would become a wrong number); the header's fields must fit the .weights header and the
values pass the same checks as a .weights file's (weights.check_values).
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import torch

from .atomic import atomic_write
from .errors import WeightsError
from .files import read_regular
from .weights import Header, check_seen, check_values

HEADER_KEY = "darknet.header"
PT_OVERHEAD = 16 << 20  # torch.save's pickle, names and alignment beyond the tensors' bytes


def save_state_dict(net, path) -> None:
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    h = net.header
    state[HEADER_KEY] = torch.tensor([h.major, h.minor, h.revision, h.seen], dtype=torch.int64)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def load_state_dict(net, path) -> None:
    """Fill ``net`` from a ``.pt`` file; the keys and shapes must be exactly the cfg's."""
    path = Path(path)
    expected = net.state_dict()
    state = read_pt(path, 2 * sum(v.numel() * v.element_size() for v in expected.values()) + PT_OVERHEAD)
    header = state.pop(HEADER_KEY, None)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise WeightsError(f"does not match {net.cfg_file}: missing {missing[:5]}, unexpected {unexpected[:5]}",
                           file=path)
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise WeightsError(f"{key}: shape {tuple(value.shape)}, {net.cfg_file} needs "
                               f"{tuple(expected[key].shape)}", file=path)
    if header is not None:
        header = _header(header, path)
    modules = dict(net.named_modules())
    layer_of = {id(layer): i for i, layer in enumerate(net.layers)}
    items = []
    for key, value in state.items():
        owner, _, name = key.rpartition(".")
        items.append((layer_of.get(id(modules.get(owner)), owner), name, value))
    check_values(net, items, path)
    net.load_state_dict(state)
    if header is not None:
        net.header = header
    net.invalidate_inference_weights()


def read_pt(path, max_bytes=None) -> dict:
    """A dict of tensors from a .pt file: a regular file of at most ``max_bytes`` (default: the
    memory budget), a zip archive whose members unpack to no more than that and all pass their
    CRC check, unpickled with ``weights_only=True``."""
    from .model import budget
    limit = budget() if max_bytes is None else max_bytes
    data = read_regular(path, lambda m: WeightsError(m, file=path), ".pt file", limit)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
            if unpacked > limit:
                raise WeightsError(f"its zip members unpack to {unpacked} bytes, over the {limit} this network's "
                                   "state_dict can need", file=path)
            bad = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise WeightsError(f"not a PyTorch zip archive (as torch.save writes): {e}", file=path) from None
    if bad is not None:
        raise WeightsError(f"member {bad} of the zip archive fails its CRC check (the file is corrupt)", file=path)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # anything torch's safe unpickler refuses
        raise WeightsError(f"not a PyTorch state_dict file readable with weights_only=True: {e}",
                           file=path) from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise WeightsError("expected a dict of tensors (a state_dict)", file=path)
    return state


def _header(value, path) -> Header:
    """``darknet.header``: four integers that a .weights header can hold."""
    if value.shape != (4,) or value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
        raise WeightsError(f"{HEADER_KEY} must hold 4 integers (major, minor, revision, seen), got "
                           f"{value.dtype} {tuple(value.shape)}", file=path)
    major, minor, revision, seen = (int(v) for v in value.tolist())
    for name, field in (("major", major), ("minor", minor), ("revision", revision)):
        if not -2**31 <= field < 2**31:
            raise WeightsError(f"{HEADER_KEY} {name}={field} does not fit the 4-byte field of a .weights header",
                               file=path)
    check_seen(seen, path, HEADER_KEY)
    return Header(major, minor, revision, seen)


def partial(cfg, weights, out, cutoff: int) -> None:
    """Darknet's ``partial``: load (``seen`` cleared) and save the first ``cutoff`` layers with
    the header Darknet's ``save_weights_upto`` writes (version 0.2.0)."""
    from .model import Darknet
    from .weights import layers_in_file
    net = Darknet(cfg, init=False)
    held = layers_in_file(net, weights)
    if held is not None and held < cutoff and any(hasattr(layer, "blobs") for layer in net.layers[held:cutoff]):
        raise WeightsError(f"holds layers 0..{held - 1} only; cannot cut at {cutoff}", file=weights)
    net.load_weights(weights, held)
    net.save_weights(out, cutoff=cutoff, header=Header())
