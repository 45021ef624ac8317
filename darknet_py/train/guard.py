"""An optimizer step that never leaves NaN, an infinity or an absurd magnitude (one the
weights loader refuses, weights.bad_value) in the weights or the momentum.

Finite gradients do not make a finite update: a huge momentum (a tampered sidecar), a huge
learning rate or decay can overflow. The parameters and momentum are copied before the step
and checked after it; a step that made any of them bad is undone and reported, like a
non-finite loss, so no checkpoint written later can hold its values.
"""
from __future__ import annotations

import torch

from ..weights import bad_value


class NonFiniteUpdate(Exception):
    """The step was undone; ``reason`` says which tensor went non-finite."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@torch.no_grad()
def guarded_step(optimizer, names: dict | None = None) -> None:
    """``optimizer.step()``, undone (parameters and momentum restored) when it leaves any
    non-finite value; raises NonFiniteUpdate then. ``names``: id(parameter) -> name, for the message."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    saved = [p.detach().clone() for p in params]
    momentum = {id(p): optimizer.state[p]["momentum_buffer"].clone() for p in params
                if optimizer.state.get(p, {}).get("momentum_buffer") is not None}
    optimizer.step()
    bad = _first_bad(optimizer, params)
    if bad is None:
        return
    for p, old in zip(params, saved):
        p.copy_(old)
        state = optimizer.state.get(p, {})
        if id(p) in momentum:
            state["momentum_buffer"].copy_(momentum[id(p)])
        else:
            state.pop("momentum_buffer", None)  # the first step made it: no momentum yet
    what, p, problem = bad
    name = (names or {}).get(id(p), f"a parameter of shape {tuple(p.shape)}")
    raise NonFiniteUpdate(f"the update made {what} of {name} {problem}; undone")


def _first_bad(optimizer, params):
    for p in params:
        problem = bad_value("weights", p)
        if problem is not None:
            return "the values", p, problem[1]
        buffer = optimizer.state.get(p, {}).get("momentum_buffer")
        problem = bad_value("momentum", buffer) if buffer is not None else None
        if problem is not None:
            return "the momentum", p, problem[1]
    return None
