"""Checkpoints are Darknet ``.weights`` files; the optimizer's momentum (and the ``ema_alpha``
average, ema.py) rides in a sidecar.

The sidecar (``<name>.state``, a ``torch.save`` dict of tensors and numbers, read back with
``weights_only=True``) is written before its weights file and carries the same ``seen``; a
sidecar that does not match its weights file (a crash between the two renames) is ignored,
so a resumed run never pairs momentum with the wrong weights. A sidecar is checked field by
field before training starts (keys, parameter groups, shapes, finite values); one that fails
is refused naming the file and the field. Nothing the loader would refuse is ever written: a
checkpoint whose weights or momentum hold NaN, an infinity or an absurd magnitude is refused
before its first byte, and a
failed write (a full disk) names the folder and its free space; either way the previous
file stays in place.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import os
from pathlib import Path

import torch

from ..atomic import atomic_write
from ..errors import TrainingError, WeightsError
from ..files import open_regular, write_failure
from ..model import budget
from ..weights import bad_value

log = logging.getLogger(__name__)
STATE_VERSION = 1


def state_path(weights: Path) -> Path:
    return Path(weights).with_suffix(".state")


def first_bad_value(net, optimizer=None) -> str | None:
    """Where the first value the loader would refuse (weights.bad_value: NaN, an infinity, a
    magnitude beyond ABSURD, a negative variance) is, in the network or the optimizer's
    momentum; None when there is none."""
    names = {id(p): name for name, p in net.named_parameters()}
    for name, tensor in [*net.named_parameters(), *net.named_buffers()]:
        problem = bad_value(name.rsplit(".", 1)[-1], tensor) if tensor.is_floating_point() else None
        if problem is not None:
            return f"'{name}' value {problem[0]} is {problem[1]}"
    if optimizer is not None:
        for group in optimizer.param_groups:
            for p in group["params"]:
                buffer = optimizer.state.get(p, {}).get("momentum_buffer")
                problem = bad_value("momentum", buffer) if buffer is not None else None
                if problem is not None:
                    return f"the momentum of '{names.get(id(p), '?')}' value {problem[0]} is {problem[1]}"
    return None


def save_checkpoint(net, path, optimizer=None, extra=None) -> None:
    """The sidecar (if an optimizer is given), then the weights file, each atomically. Refused
    (TrainingError, nothing written) when a value is not finite; a failed write is a
    TrainingError naming the folder and its free space."""
    path = Path(path)
    bad = first_bad_value(net, optimizer)
    if bad is not None:
        raise TrainingError(f"{path}: not written: {bad}; the previous file stays in place")
    try:
        if optimizer is not None:
            state = {"version": STATE_VERSION, "seen": int(net.seen), "optimizer": optimizer.state_dict(),
                     **(extra or {})}
            buffer = io.BytesIO()
            torch.save(state, buffer)
            atomic_write(state_path(path), lambda f: f.write(buffer.getvalue()))
        net.save_weights(path)
    except OSError as e:
        raise TrainingError(f"{write_failure(e, path.parent)}; the previous {path.name} stays in place") from None



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


def load_state(weights, seen: int, optimizer=None) -> dict | None:
    """The sidecar of ``weights`` if it exists and belongs to it (same ``seen``), else None.
    With ``optimizer``, the sidecar must fit it (validate_state)."""
    path = state_path(weights)
    if not path.exists():
        return None
    try:
        with open_regular(path, lambda m: WeightsError(m, file=path), "optimizer sidecar", budget()) as f:
            data = f.read()
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except WeightsError:
        raise
    except Exception as e:  # any unpickling failure of an untrusted file is a refusal
        raise WeightsError(f"cannot read the optimizer sidecar: {e}", file=path) from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise WeightsError(f"not a darknet_py optimizer sidecar (version {STATE_VERSION} expected)",
                           file=path)
    seen_in_state = state.get("seen")
    if not isinstance(seen_in_state, int) or isinstance(seen_in_state, bool) or seen_in_state < 0:
        raise WeightsError(f"field 'seen': {seen_in_state!r} is not a number of images", file=path)
    if seen_in_state != seen:
        log.warning("%s: belongs to seen=%s, the weights file says seen=%d; momentum starts from zero "
                    "and an ema_alpha average starts again from the weights",
                    path, seen_in_state, seen)
        return None
    if optimizer is not None:
        validate_state(state, optimizer, path)
    return state


def validate_state(state: dict, optimizer, path) -> None:
    """The sidecar's optimizer state fits ``optimizer`` (same groups, parameters per group,
    momentum shaped like each parameter, finite) and its other fields are what we write;
    else a WeightsError naming the field. Remove the sidecar to start momentum from zero."""
    def refuse(field, message):
        return WeightsError(f"field '{field}': {message} (remove the sidecar to start the momentum from zero)",
                            file=path)

    saved = state.get("optimizer")
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) \
            or not isinstance(saved.get("param_groups"), list):
        raise refuse("optimizer", "missing, or without 'state' and 'param_groups'")
    groups = saved["param_groups"]
    if len(groups) != len(optimizer.param_groups):
        raise refuse("optimizer.param_groups", f"{len(groups)} groups, this network's optimizer has "
                                              f"{len(optimizer.param_groups)}")
    params = {}
    for g, (group, ours) in enumerate(zip(groups, optimizer.param_groups)):
        ids = group.get("params") if isinstance(group, dict) else None
        if not isinstance(ids, list) or len(ids) != len(ours["params"]):
            raise refuse(f"optimizer.param_groups[{g}].params",
                         f"{len(ids) if isinstance(ids, list) else ids!r} parameters, this group has "
                         f"{len(ours['params'])}")
        for key in ("momentum", "weight_decay", "dampening"):
            value = group.get(key, 0.0)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise refuse(f"optimizer.param_groups[{g}].{key}", f"{value!r} is not a finite number")
        params.update(zip(ids, ours["params"]))
    for key, entry in saved["state"].items():
        if key not in params:
            raise refuse(f"optimizer.state[{key!r}]", "belongs to no parameter of the groups")
        buffer = entry.get("momentum_buffer") if isinstance(entry, dict) else None
        if buffer is None:
            continue
        field = f"optimizer.state[{key}].momentum_buffer"
        if not isinstance(buffer, torch.Tensor) or not buffer.is_floating_point():
            raise refuse(field, f"expected a float tensor, got {type(buffer).__name__}")
        if tuple(buffer.shape) != tuple(params[key].shape):
            raise refuse(field, f"shape {tuple(buffer.shape)}, the parameter is {tuple(params[key].shape)}")
        if not bool(torch.isfinite(buffer).all()):
            raise refuse(field, "holds NaN or an infinity")
    best = state.get("best_map")
    if best is not None and (not isinstance(best, (int, float)) or isinstance(best, bool) or not math.isfinite(best)):
        raise refuse("best_map", f"{best!r} is not a finite number")
    ema = state.get("ema")
    if ema is not None and (not isinstance(ema, (list, tuple)) or not all(
            isinstance(v, torch.Tensor) and v.is_floating_point() and bool(torch.isfinite(v).all()) for v in ema)):
        raise refuse("ema", "not a list of finite float tensors")
