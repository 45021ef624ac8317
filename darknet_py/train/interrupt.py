"""Ctrl-C (SIGINT) and a scheduler's SIGTERM during training, handled cleanly.

While ``StopOnSignal`` is active, the first signal raises ``Interrupted`` where the main thread
is (a forward pass, a data load, a save), so a person waits for nothing; the trainer then
drops the unfinished update (gradients and batch-norm statistics), writes ``_last`` and says
how to resume. Inside ``deferred()`` (applying an update and its bookkeeping, which must not be
cut in half) a signal is held until the block ends. A second signal raises ``Interrupted``
again, also inside a save, whose atomic writes then leave the previous file in place.
"""
from __future__ import annotations

import contextlib
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived: a KeyboardInterrupt, so code that lets Ctrl-C through lets it through."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopOnSignal:
    """Installs the handlers for its ``with`` block (main thread only; elsewhere it does nothing)."""

    def __init__(self, signals=SIGNALS):
        self.signals = signals
        self.count = 0  # signals received
        self._held: int | None = None
        self._deferring = 0
        self._previous: dict = {}

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        self.count += 1
        if self._deferring:
            self._held = signum
            return
        raise Interrupted(signum)

    @contextlib.contextmanager
    def deferred(self):
        """Hold signals until the block has run to its end, then raise for the one held."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if not self._deferring and self._held is not None:
            signum, self._held = self._held, None
            raise Interrupted(signum)


class TrainingInterrupted(KeyboardInterrupt):
    """A run stopped by a signal, after its state was saved (or the save was given up)."""

    def __init__(self, signum: int, iteration: int, last, saved: bool, speaks: bool = True):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.iteration = iteration  # updates done and kept
        self.last = last  # the _last.weights path
        self.saved = saved  # False: a second signal stopped the save; ``last`` is as it was
        self.speaks = speaks  # whether this process reports (rank 0)
