"""Checkpoints are Darknet ``.weights`` files; the optimizer's momentum (and the ``ema_alpha``
average, ema.py) rides in a sidecar.

The sidecar (``<name>.state``, a ``torch.save`` dict of tensors and numbers, read back with
``weights_only=True``) is written before its weights file and carries the same ``seen``; a
sidecar that does not match its weights file (a crash between the two renames) is ignored,
so a resumed run never pairs momentum with the wrong weights.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

import torch

from ..atomic import atomic_write
from ..errors import WeightsError

log = logging.getLogger(__name__)
STATE_VERSION = 1


def state_path(weights: Path) -> Path:
    return Path(weights).with_suffix(".state")


def save_checkpoint(net, path, optimizer=None, extra=None) -> None:
    """The sidecar (if an optimizer is given), then the weights file, each atomically."""
    path = Path(path)
    if optimizer is not None:
        state = {"version": STATE_VERSION, "seen": int(net.seen), "optimizer": optimizer.state_dict(),
                 **(extra or {})}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write(state_path(path), lambda f: f.write(buffer.getvalue()))
    net.save_weights(path)


def save_checkpoint_staged(net, path, optimizer=None, extra=None, commit=contextlib.nullcontext) -> None:
    """As ``save_checkpoint``, but both files are first written whole beside ``path`` under a
    staging name and renamed into place together inside ``commit()`` (a block that holds
    signals): an interruption before the renames leaves the previous pair as it was."""
    path = Path(path)
    stage = path.with_name(f".{path.stem}.staged{path.suffix}")
    try:
        save_checkpoint(net, stage, optimizer, extra)
        with commit():
            if optimizer is not None:
                os.replace(state_path(stage), state_path(path))
            os.replace(stage, path)
    finally:
        for leftover in (stage, state_path(stage)):
            leftover.unlink(missing_ok=True)


def load_state(weights, seen: int) -> dict | None:
    """The sidecar of ``weights`` if it exists and belongs to it (same ``seen``), else None."""
    path = state_path(weights)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unpickling failure of an untrusted file is a refusal
        raise WeightsError(f"cannot read the optimizer sidecar: {e}", file=path) from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise WeightsError(f"not a darknet_py optimizer sidecar (version {STATE_VERSION} expected)",
                           file=path)
    if state.get("seen") != seen:
        log.warning("%s: belongs to seen=%s, the weights file says seen=%d; momentum starts from zero "
                    "and an ema_alpha average starts again from the weights",
                    path, state.get("seen"), seen)
        return None
    return state
