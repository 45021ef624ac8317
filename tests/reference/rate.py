"""``get_current_rate`` of both forks as C, compiled with the system's ``cc`` and called
through ctypes (``rate.c``); ``None`` from ``load()`` when there is no compiler."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("rate.c")
POLICIES = {"constant": 0, "step": 1, "exp": 2, "poly": 3, "steps": 4, "sigmoid": 5, "random": 6, "sgdr": 7}


class Net(ctypes.Structure):
    _fields_ = [(name, ctypes.c_float) for name in ("learning_rate", "learning_rate_min", "power", "scale", "gamma")] \
        + [(name, ctypes.c_int) for name in ("policy", "burn_in", "step", "max_batches", "num_steps",
                                             "batches_per_cycle", "batches_cycle_mult")] \
        + [("steps", ctypes.POINTER(ctypes.c_int)), ("scales", ctypes.POINTER(ctypes.c_float)),
           ("uniform", ctypes.c_float)]


_lib = None


def load():
    """The compiled library (cached per session), or None without a C compiler."""
    global _lib
    if _lib is None:
        cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if cc is None:
            return None
        out = Path(tempfile.mkdtemp()) / "rate.so"
        subprocess.run([cc, "-O2", "-shared", "-fPIC", str(SOURCE), "-o", str(out), "-lm"], check=True)
        lib = ctypes.CDLL(str(out))
        lib.rate_pjreddie.argtypes = [ctypes.POINTER(Net), ctypes.c_size_t]
        lib.rate_alexeyab.argtypes = [ctypes.POINTER(Net), ctypes.c_int]
        lib.rate_pjreddie.restype = lib.rate_alexeyab.restype = ctypes.c_float
        _lib = lib
    return _lib


def get_current_rate(net, batch_num: int, uniform: float = 0.0) -> float:
    """Darknet's rate for a ``NetConfig`` (its fork picks the C function)."""
    lib = load()
    steps = (ctypes.c_int * max(len(net.steps), 1))(*net.steps)
    scales = (ctypes.c_float * max(len(net.scales), 1))(*net.scales)
    c = Net(net.learning_rate, net.learning_rate_min, net.power, net.scale, net.gamma, POLICIES[net.policy],
            net.burn_in, net.step, net.max_batches, len(net.steps), net.sgdr_cycle, net.sgdr_mult,
            steps, scales, uniform)
    fn = lib.rate_alexeyab if net.fork == "alexeyab" else lib.rate_pjreddie
    return fn(ctypes.byref(c), batch_num)
