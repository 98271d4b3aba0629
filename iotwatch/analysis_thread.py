"""A live run's analysers on a thread of their own, so the packets never wait for a verdict pass.

Offline, one thread does everything in turn: packets, flows, windows, the analysers' intake and,
at the end, the verdicts. A live run takes verdicts while the packets come (iotwatch/live.py),
and a pass over everything seen so far takes a while on a busy site: on that same thread, the
packets of that while would wait in the drain's backlog, the analysis would fall behind the
mirror port, and past the backlog's cap dumpcap would drop.

Here the packet thread keeps to the packets (decoding, the flow and device tables, the sinks)
and hands what the analysers are fed (finished flows, rare frames, closed windows) and the pass
requests to this thread, in one queue, in the order it made them. This thread feeds the
analysers and runs the passes in that order: each pass sees exactly what it would have seen on
the packet thread (its inputs, the device records and the open flows, are taken by the packet
thread when it asks), so the alerts are the same; only the packet thread no longer waits.

The compiled kernels and most of numpy and Arrow release the GIL, so the two threads share the
two cores. A pass asked for while an earlier one still waits is taken with it (one pass over
everything seen covers both). The queue is bounded (``max_bytes`` of flow records, windows and
frames): if this thread falls that far behind, the packet thread waits, and the drain's backlog
(capture/drain.py) takes the strain, as before. An error here is raised on the packet thread at
its next hand-over, or at :meth:`AnalysisThread.close`.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from .addrs import LocalNets
    from .analyser import Analyser
    from .detect.alerts import Alert
    from .records import DeviceRecord
    from .sidecar import RareFrame

R = TypeVar("R")

#: the GIL's switch interval while the two threads run (s): a compiled kernel that returns waits
#: for the GIL at most this long while the other thread runs Python (CPython's default, 5 ms,
#: would cost the packet thread that much at every kernel call of a batch)
SWITCH_INTERVAL_S = 0.0005


class AnalysisThread(Generic[R]):
    """The analysers' intake and the verdict passes, on a thread of their own.

    Give the pipeline :attr:`intake` in place of its analysers while the thread runs; ask for a
    pass with :meth:`request` (``judge(request)`` runs on this thread once everything handed over
    before it was fed); :meth:`close` feeds what is left and stops the thread (the passes still
    waiting are not run: the end of a run concludes over everything anyway)."""

    def __init__(self, analysers: Sequence[Analyser], judge: Callable[[R], None], *,
                 max_bytes: int = 256 << 20, merge: Callable[[R, R], R] | None = None, nice: int | None = None) -> None:
        self.analysers = list(analysers)
        self.intake = _Intake(self)
        self._judge = judge
        self._merge = merge or (lambda _earlier, later: later)
        self.max_bytes = max_bytes
        self._items: deque[tuple[str, object, int]] = deque()
        self._bytes = 0
        self._passes = 0  # pass requests in the queue
        self._cv = threading.Condition()
        self._closing = False
        self.error: BaseException | None = None
        self.passes_run = 0
        self.passes_merged = 0
        self.waited_s = 0.0  # how long the packet thread waited for room in the queue
        self.max_queued_bytes = 0
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch, SWITCH_INTERVAL_S))
        self._t = threading.Thread(target=self._run, name="iotwatch-verdicts", daemon=True)
        self._t.start()
        #: the thread's nice value when ``nice`` was given and allowed, else None
        self.nice = None if nice is None or self._t.native_id is None else _renice(self._t.native_id, nice)

    # the packet thread -------------------------------------------------------------------------
    def request(self, req: R) -> None:
        """Ask for a pass over everything handed over so far."""
        self._put("pass", req, 0)

    def check(self) -> None:
        """Raise the thread's error, if it failed."""
        if self.error is not None:
            e, self.error = self.error, None
            raise e

    def close(self) -> None:
        """Feed the analysers what is still queued, stop the thread and give the GIL its usual
        switch interval back; raises the thread's error, if any."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        self._t.join()
        sys.setswitchinterval(self._switch)
        self.check()

    @property
    def queued(self) -> int:
        """Items (intake and passes) not yet taken."""
        return len(self._items)

    def _put(self, kind: str, payload: object, size: int) -> None:
        self.check()
        with self._cv:
            if self._bytes + size > self.max_bytes and self._items:
                t = time.monotonic()
                while self._bytes + size > self.max_bytes and self._items and self.error is None:
                    self._cv.wait(0.1)
                self.waited_s += time.monotonic() - t
            self._items.append((kind, payload, size))
            self._bytes += size
            self.max_queued_bytes = max(self.max_queued_bytes, self._bytes)
            if kind == "pass":
                self._passes += 1
            self._cv.notify_all()
        self.check()

    # this thread -------------------------------------------------------------------------------
    def _next(self) -> tuple[str, object] | None:
        with self._cv:
            while not self._items and not self._closing:
                self._cv.wait()
            while self._items:
                kind, payload, size = self._items.popleft()
                self._bytes -= size
                self._cv.notify_all()
                if kind != "pass":
                    return kind, payload
                self._passes -= 1
                if self._closing:
                    continue  # (the end of the run concludes over everything)
                if self._passes:
                    # a later pass waits too: it covers everything this one would see
                    later = next(i for i, it in enumerate(self._items) if it[0] == "pass")
                    k, p, s = self._items[later]
                    self._items[later] = (k, self._merge(payload, p), s)  # type: ignore[arg-type]
                    self.passes_merged += 1
                    continue
                return kind, payload
            return None

    def _run(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            if self.error is not None:
                continue  # (failed: what is left is only taken off the queue, so nobody waits on it)
            kind, payload = item
            try:
                if kind == "pass":
                    self._judge(payload)  # type: ignore[arg-type]
                    self.passes_run += 1
                else:
                    for a in self.analysers:
                        if kind == "flows":
                            a.on_flow_records(payload)  # type: ignore[arg-type]
                        elif kind == "windows":
                            a.on_windows(payload)  # type: ignore[arg-type]
                        elif a.wants_rare:
                            a.on_rare(payload)  # type: ignore[arg-type]
            except BaseException as e:  # raised on the packet thread
                self.error = e


def _renice(tid: int, nice: int) -> int | None:
    # (the capture's, imported only when asked: its module loads numba)
    from .capture.drain import renice

    return renice(tid, nice)


class _Intake:
    """What the pipeline feeds in place of its analysers while the thread runs: each hand-over
    is queued, in order, with the passes (:class:`~iotwatch.analyser.Analyser`'s intake hooks)."""

    def __init__(self, owner: AnalysisThread[object]) -> None:
        self._owner = owner
        self.wants_rare = any(a.wants_rare for a in owner.analysers)

    def bind(self, window_s: float, local_nets: LocalNets) -> None:
        for a in self._owner.analysers:
            a.bind(window_s, local_nets)

    def on_flow_records(self, rows: np.ndarray) -> None:
        # (the flow table hands each batch of finished flows over in a buffer of its own)
        self._owner._put("flows", rows, rows.nbytes)

    def on_windows(self, table: pa.Table) -> None:
        self._owner._put("windows", table, table.nbytes)

    def on_rare(self, frames: list[RareFrame]) -> None:
        self._owner._put("rare", frames, sum(len(f.data) + 64 for f in frames))

    def prepare(self) -> float:
        return sum(a.prepare() for a in self._owner.analysers)

    def conclude(self, devices: dict[str, DeviceRecord], files: list[str]) -> list[Alert]:
        raise RuntimeError("the analysers conclude on the packet thread, once the analysis thread is closed")
