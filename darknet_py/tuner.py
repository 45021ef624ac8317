"""Which path runs each convolution, chosen by timing the candidates on this host, once.

A layer with more than one way to run (oneDNN's direct convolution, the Winograd kernel) asks
:func:`choose` with its shape key and a callable per path. The first time a key is seen on this
host, the paths are timed against each other, interleaved, on the layer's real weights; the
winner is stored in a JSON file in the kernel cache folder (``native.cache_folder()``), one file
per CPU model, CPU flags, kernel build (source, compiler, flags) and PyTorch version, so that a
new CPU, kernel or oneDNN is tuned afresh. ``direct`` is the reference: another path is chosen
only where it beat direct by ``MARGIN`` both in its fastest run and in the median of its
round-by-round ratios to direct (:func:`decide`). Timing on a busy machine is not just noisy
but biased (with six other jobs on two cores oneDNN's threads wait on each other, and Winograd
paths 1.3x slower than direct on the quiet machine won by 2x). So the tuner notes what share
of the machine's CPU time other processes took while it timed: above ``CONTENDED_OTHERS``
direct is kept; above ``NOISY_OTHERS``, or where direct's median run exceeded its fastest by
``NOISY_SPREAD``, another path needs a ``NOISY_MARGIN`` lead. Either way the timing is taken
again at once, and if still disturbed the choice is provisional: timed again by later
processes (up to ``RETRIES`` times) until a quiet timing settles it.

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
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Callable

import torch

from . import native
from .atomic import atomic_write

log = logging.getLogger(__name__)

DIRECT = "direct"
MARGIN = 0.03  # a path must beat direct by 3% (noise between two timings of one path is ~1%)
NOISY_MARGIN = 0.2  # ... by 20% in a noisy timing
NOISY_OTHERS = 0.1  # other processes' share of the machine's CPU time while timing: noisy above
CONTENDED_OTHERS = 0.25  # ... and contended above (2 busy loops on 2 cores: 0.42-0.52; quiet: 0.00)
NOISY_SPREAD = 1.25  # direct's median run over its fastest (quiet, AMD EPYC, 2 threads: mostly
# 1.03-1.07, at times up to 1.22; single slow runs are common even then, so not the slowest)
ATTEMPTS = 2  # timings taken at once while they come out noisy or contended
RETRIES = 3  # a provisional choice is timed again by up to this many later processes
REPEATS = 5  # timed runs per path, interleaved, after one warm-up run each
BUDGET_S = 0.4  # ... fewer where one key's timing would take longer than this
MIN_SAMPLE_S = 0.002  # a timed sample runs a path this long at least ...
MAX_RUNS_PER_SAMPLE = 50  # ... in at most this many runs
MODES = ("auto", "force", "off")
VERSION = 2  # of the cache file's layout


@dataclass(frozen=True)
class Timing:
    rounds: dict[str, list[float]]  # path -> seconds of its runs, round by round
    others: float = 0.0  # share of this process's CPUs' time other processes took while timing


Timer = Callable[[dict], Timing]


def _busy_s(cpus) -> float | None:
    """CPU seconds all processes have spent on ``cpus`` (indices) since boot, from Linux's
    /proc/stat (None elsewhere, or where a CPU's line is missing)."""
    try:
        with open("/proc/stat") as f:
            lines = {line.split()[0]: line.split()[1:9] for line in f if line.startswith("cpu")}
        total = 0
        for cpu in cpus:
            fields = [int(v) for v in lines[f"cpu{cpu}"]]
            total += sum(fields) - fields[3] - fields[4]  # less idle and iowait
        return total / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, KeyError, IndexError):
        return None


def _own_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity; all of them where that is unknown)."""
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def measure(paths: dict[str, Callable[[], object]], repeats=REPEATS, budget_s=BUDGET_S) -> Timing:
    """Each path's seconds per run, round by round: up to ``repeats`` rounds, each timing every
    path in turn (other load falls on all paths alike), fewer once ``budget_s`` has passed. A
    path faster than ``MIN_SAMPLE_S`` is run several times per round and the mean taken: single
    runs of a few microseconds scatter by more than the margin. Also what share of the CPU
    time of the CPUs this process may use other processes took meanwhile (without /proc/stat:
    the share of this process's threads' time it did not get)."""
    runs = {}
    for name, run in paths.items():
        t0 = time.perf_counter()
        run()  # warm-up: allocations, oneDNN primitive cache, scratch buffers
        runs[name] = min(MAX_RUNS_PER_SAMPLE, max(1, int(MIN_SAMPLE_S / max(time.perf_counter() - t0, 1e-9))))
    rounds = {name: [] for name in paths}
    cpus = _own_cpus()
    busy, start, cpu = _busy_s(cpus), time.perf_counter(), time.process_time()
    for repeat in range(repeats):
        for name, run in paths.items():
            t0 = time.perf_counter()
            for _ in range(runs[name]):
                run()
            rounds[name].append((time.perf_counter() - t0) / runs[name])
        if repeat >= 1 and time.perf_counter() - start > budget_s:
            break
    wall, own = time.perf_counter() - start, time.process_time() - cpu
    busy_now = _busy_s(cpus)
    if wall <= 0:
        others = 0.0
    elif busy is not None and busy_now is not None:
        # /proc/stat counts whole clock ticks: each CPU's figure may be short by up to a tick
        # at either reading, so up to 2 ticks per CPU of the difference may be no one's
        tick = 1 / os.sysconf("SC_CLK_TCK")
        others = max(0.0, (busy_now - busy - own - 2 * tick * len(cpus)) / (wall * len(cpus)))
    else:
        others = max(0.0, 1 - own / (wall * torch.get_num_threads()))
    return Timing(rounds, others)


@dataclass(frozen=True)
class Decision:
    choice: str
    fastest: dict[str, float]  # each path's fastest run, seconds
    others: float  # the timing's (see Timing)
    spread: float  # direct's median run over its fastest

    @property
    def contended(self) -> bool:
        """Other processes took so much CPU that the timing is biased: direct is kept."""
        return self.others > CONTENDED_OTHERS

    @property
    def provisional(self) -> bool:
        """Noisy or contended: to be timed again by a later process."""
        return self.others > NOISY_OTHERS or self.spread > NOISY_SPREAD


def decide(timing: Timing) -> Decision:
    """The path to run: the fastest of those that beat direct by the margin (``NOISY_MARGIN``
    in a noisy timing) in both their fastest run and their median round-by-round ratio to
    direct; direct where none does or the timing was contended."""
    rounds = timing.rounds
    direct = rounds[DIRECT]
    fastest = {name: min(t) for name, t in rounds.items()}
    decision = Decision(DIRECT, fastest, timing.others, statistics.median(direct) / min(direct))
    if decision.contended:
        return decision
    keep = 1 - (NOISY_MARGIN if decision.provisional else MARGIN)
    winners = [name for name, t in rounds.items() if name != DIRECT
               and fastest[name] < fastest[DIRECT] * keep
               and statistics.median(a / b for a, b in zip(t, direct)) < keep]
    return Decision(min(winners, key=fastest.get), fastest, decision.others, decision.spread) if winners else decision


class Tuner:
    """Choices by key, loaded from and saved to ``file`` (None: kept in memory only)."""

    def __init__(self, file=None, timer: Timer = None, mode: str | None = None):
        self.file, self.timer = file, timer
        self.mode = mode or os.environ.get("DARKNET_PY_TUNE", "auto")
        if self.mode not in MODES:
            raise ValueError(f"DARKNET_PY_TUNE must be one of {MODES}, got {self.mode!r}")
        self.choices: dict[str, dict] = self._read() if self.mode == "auto" else {}
        self.timed = 0  # keys timed by this tuner (the rest came from the cache)
        self._retimed: set[str] = set()  # keys this tuner timed
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
        """The stored choice for ``key`` (None: not tuned yet, or provisional and not yet timed
        again by this tuner; always direct when ``off``)."""
        if self.mode == "off":
            return DIRECT
        known = self.choices.get(key)
        if not isinstance(known, dict):
            return None
        if known.get("provisional") and key not in self._retimed and known.get("tries", RETRIES) < RETRIES:
            return None
        return known.get("choice")

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
            for _ in range(ATTEMPTS):
                decision = decide((self.timer or measure)(paths))
                if not decision.provisional:
                    break
            before = self.choices.get(key) if isinstance(self.choices.get(key), dict) else {}
            entry = {"choice": decision.choice, **{name: round(t, 6) for name, t in decision.fastest.items()}}
            if decision.provisional:
                entry.update(provisional=True, tries=before.get("tries", 0) + 1)
            self.choices[key] = entry
            self._retimed.add(key)
            self.timed += 1
            disturbed = f" (provisional: other processes {decision.others:.2f}, spread {decision.spread:.2f})"
            log.info("tuned %s: %s%s (%s)", key, entry["choice"], disturbed * decision.provisional,
                     ", ".join(f"{n} {t * 1e3:.2f} ms" for n, t in decision.fastest.items()))
            self._write()
            return entry["choice"]


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
