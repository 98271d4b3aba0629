"""Ctrl-C at safe points: the command finishes what it was read and stops, never half-written.

Python turns SIGINT into ``KeyboardInterrupt`` wherever the main thread happens to be. That is
right while packets are being read (a blocked read of a pipe is interrupted, and what was read
is finished and written), and wrong while the outputs are being written or while the program
starts: a half-written ``events.jsonl`` or a traceback. Within :func:`deferred`, SIGINT only
sets a flag; the code checks it at the next safe point (:func:`take`).

The command line runs its start-up (imports, models, compiled kernels) and its ending (verdicts,
writers) deferred, and its reading not. For tests, ``IOTWATCH_PAUSE_AT=PHASE:FILE`` makes
:func:`checkpoint` of that phase create FILE and wait (up to a minute) for a Ctrl-C, so a
test can interrupt each phase deterministically.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_hit = False


def _flag(signum: int, frame: object) -> None:
    global _hit
    _hit = True


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def deferred() -> Iterator[None]:
    """Within: Ctrl-C (SIGINT) sets the flag :func:`take` reads instead of raising."""
    if not _main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, _flag)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def defer_until_resumed() -> None:
    """From now until :func:`resume`: Ctrl-C only sets the flag (the command line's start-up)."""
    if _main_thread():
        signal.signal(signal.SIGINT, _flag)


def resume() -> None:
    """Ctrl-C raises KeyboardInterrupt again; raise it now if one came while deferred."""
    if _main_thread() and signal.getsignal(signal.SIGINT) is _flag:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if take():
        raise KeyboardInterrupt


def pending() -> bool:
    """Whether a Ctrl-C came while deferred (the flag stays set)."""
    return _hit


def take() -> bool:
    """Whether a Ctrl-C came while deferred; clears the flag."""
    global _hit
    hit, _hit = _hit, False
    return hit


def checkpoint(phase: str) -> None:
    """Test hook: with ``IOTWATCH_PAUSE_AT=PHASE:FILE`` set for this phase, create FILE and
    wait (at most 60 s) for a Ctrl-C. Does nothing otherwise."""
    spec = os.environ.get("IOTWATCH_PAUSE_AT", "")
    name, _, path = spec.partition(":")
    if name != phase or not path:
        return
    open(path, "w").close()
    end = time.monotonic() + 60
    try:
        while not _hit and time.monotonic() < end:
            time.sleep(0.02)
    except KeyboardInterrupt:  # the phase is not deferred: Ctrl-C raises as it would anyway
        raise
