"""``.weights`` <-> PyTorch ``state_dict`` files (``.pt``), byte-exact both ways.

The ``.pt`` file is a plain dict of tensors: the network's ``state_dict`` plus
``darknet.header`` = (major, minor, revision, seen), so that converting back writes the same
header and therefore the same bytes. It is read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

from .atomic import atomic_write
from .errors import WeightsError
from .weights import Header

HEADER_KEY = "darknet.header"


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
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError("no such file", file=path) from None
    except Exception as e:  # anything torch's safe unpickler refuses
        raise WeightsError(f"not a PyTorch state_dict file readable with weights_only=True: {e}",
                           file=path) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError("expected a dict of tensors (a state_dict)", file=path)
    header = state.pop(HEADER_KEY, None)
    expected = net.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise WeightsError(f"does not match {net.cfg_file}: missing {missing[:5]}, unexpected {unexpected[:5]}",
                           file=path)
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise WeightsError(f"{key}: shape {tuple(value.shape)}, {net.cfg_file} needs "
                               f"{tuple(expected[key].shape)}", file=path)
    net.load_state_dict(state)
    if header is not None:
        if header.shape != (4,):
            raise WeightsError(f"{HEADER_KEY} must hold 4 numbers (major, minor, revision, seen)", file=path)
        net.header = Header(*(int(v) for v in header.tolist()))
    net.invalidate_inference_weights()


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
