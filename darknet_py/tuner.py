"""Which path runs each convolution, chosen by timing the candidates on this host, once.

A layer with more than one way to run (oneDNN's direct convolution, the Winograd kernel) asks
:func:`choose` with its shape key and a callable per path. The first time a key is seen on this
host, the paths are timed against each other, interleaved, on the layer's real weights; the
winner is stored in a JSON file in the kernel cache folder (``native.cache_folder()``), one file
per CPU model, CPU flags, kernel build (source, compiler, flags) and PyTorch version, so that a
new CPU, kernel or oneDNN is tuned afresh. ``direct`` is the reference: another path is chosen
only where it measured faster than direct by ``MARGIN``.

``DARKNET_PY_TUNE``: ``auto`` (default: cached choices, timing what is missing), ``force``
(time every key again this process, overwriting the cache), ``off`` (no timing: direct).
``DARKNET_PY_WINOGRAD=0`` / ``=force`` skip the tuner: direct everywhere / Winograd wherever
it applies (``configure`` sets either from code).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from typing import Callable

import torch

from . import native
from .atomic import atomic_write

log = logging.getLogger(__name__)

DIRECT = "direct"
MARGIN = 0.03  # a path must beat direct by 3% (noise between two timings of one path is ~1%)
REPEATS = 5  # timed runs per path, interleaved, after one warm-up run each
BUDGET_S = 0.4  # ... fewer where one key's timing would take longer than this
MODES = ("auto", "force", "off")
VERSION = 1  # of the cache file's layout

Timer = Callable[[dict], dict]


def measure(paths: dict[str, Callable[[], object]], repeats=REPEATS, budget_s=BUDGET_S) -> dict[str, float]:
    """Seconds per run of each path: the fastest of up to ``repeats`` runs taken in turn (other
    load on the machine falls on all paths alike; the minimum is the run it disturbed least),
    fewer once ``budget_s`` has passed."""
    for run in paths.values():
        run()  # warm-up: allocations, oneDNN primitive cache, scratch buffers
    best = {name: float("inf") for name in paths}
    start = time.perf_counter()
    for repeat in range(repeats):
        for name, run in paths.items():
            t0 = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t0)
        if repeat >= 1 and time.perf_counter() - start > budget_s:
            break
    return best


class Tuner:
    """Choices by key, loaded from and saved to ``file`` (None: kept in memory only)."""

    def __init__(self, file=None, timer: Timer = None, mode: str | None = None):
        self.file, self.timer = file, timer
        self.mode = mode or os.environ.get("DARKNET_PY_TUNE", "auto")
        if self.mode not in MODES:
            raise ValueError(f"DARKNET_PY_TUNE must be one of {MODES}, got {self.mode!r}")
        self.choices: dict[str, dict] = self._read() if self.mode == "auto" else {}
        self.timed = 0  # keys timed by this tuner (the rest came from the cache)
        self._lock = threading.Lock()

    def _read(self) -> dict:
        if self.file is None:
            return {}
        try:
            with open(self.file) as f:
                data = json.load(f)
            return data["choices"] if data.get("version") == VERSION else {}
        except (OSError, ValueError, KeyError, TypeError):
            return {}  # absent or unreadable: tune again

    def _write(self) -> None:
        if self.file is None:
            return
        data = {"version": VERSION, "cpu": native.cpu_model(), "torch": torch.__version__,
                "choices": self.choices}
        try:
            atomic_write(self.file, lambda f: f.write(json.dumps(data, indent=1, sort_keys=True).encode()))
        except OSError as e:
            log.warning("tuning results not saved to %s: %s", self.file, e)

    def cached(self, key: str) -> str | None:
        """The stored choice for ``key`` (None: not tuned yet; always direct when ``off``)."""
        if self.mode == "off":
            return DIRECT
        known = self.choices.get(key)
        return known.get("choice") if isinstance(known, dict) else None

    def choose(self, key: str, make_paths: Callable[[], dict[str, Callable[[], object]]]) -> str:
        """The path to run for ``key``: from the cache, else timed now. ``make_paths()`` (called
        only to time) maps each candidate, ``direct`` among them, to a callable running it once."""
        with self._lock:
            known = self.cached(key)
            if known is not None:
                return known
            paths = make_paths()
            if DIRECT not in paths:
                raise ValueError(f"the candidates for {key} must include {DIRECT!r}")
            times = (self.timer or measure)(paths)
            direct = times[DIRECT]
            best = min(paths, key=lambda name: times[name])
            choice = best if times[best] < direct * (1 - MARGIN) else DIRECT
            self.choices[key] = {"choice": choice, **{name: round(t, 6) for name, t in times.items()}}
            self.timed += 1
            log.info("tuned %s: %s (%s)", key, choice, ", ".join(f"{n} {t * 1e3:.2f} ms" for n, t in times.items()))
            self._write()
            return choice


_default: Tuner | None = None
_forced: str | None = None


def cache_file():
    """This host's tuning file: one per CPU model and flags, kernel build and PyTorch version."""
    key = "\n".join([native.cpu_model(), native.cpu_flags(), native.build_key("winograd"), torch.__version__])
    try:
        folder = native.cache_folder()
    except OSError as e:
        log.warning("tuning results kept in memory only: %s", e)
        return None
    return folder / f"tuning-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def default() -> Tuner:
    """The process's tuner (made on first use, reading this host's cache file)."""
    global _default
    if _default is None:
        _default = Tuner(cache_file())
    return _default


def configure(winograd: str | None = None, tune: str | None = None) -> None:
    """Set from code what ``DARKNET_PY_WINOGRAD`` (``"0"``, ``"force"`` or None: the tuner
    decides) and ``DARKNET_PY_TUNE`` (a new tuner in that mode) say."""
    global _forced, _default
    if winograd not in (None, "0", "force"):
        raise ValueError(f"winograd must be '0', 'force' or None, got {winograd!r}")
    _forced = winograd
    if tune is not None:
        _default = Tuner(cache_file(), mode=tune)


def forced() -> str | None:
    """``"0"`` (direct only), ``"force"`` (Winograd where it applies) or None (tuned)."""
    if _forced is not None:
        return _forced
    value = os.environ.get("DARKNET_PY_WINOGRAD", "")
    return value if value in ("0", "force") else None
