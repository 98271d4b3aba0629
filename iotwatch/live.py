"""A live capture: a mirror port → the same pipeline, detector and inventory as ``analyze``.

dumpcap receives (capture/dumpcap.py); each batch of its pcapng stream is copied into the
evidence ring (capture/ring.py), numbered as the ring file it lands in, and fed to the
:class:`~iotwatch.pipeline.Pipeline`. The wall clock drives what packets would drive offline:
every ``tick_s`` the pipeline's clock moves to now (minus ``margin_s`` for packets still in
buffers), so flows end and windows close on a quiet network too. Each time windows close (and
twice more as their last flows settle, and once before, half a second after the window's end),
the detector and the inventory conclude over what has
been seen so far, the detector judging again only what changed (docs/capture.md); alerts not
raised before are written to ``events.jsonl`` at once. The analysers are fed, and the passes
run, on a thread of their own (:class:`~iotwatch.analysis_thread.AnalysisThread`), in the order
the packet thread hands them over: the packets never wait for a pass. At the end (SIGINT, SIGTERM, ``duration_s`` or dumpcap
stopping), the pipeline finishes exactly as an offline run does: the final alerts (those not
already written), the devices and the final stats event.

The same packets read offline from the ring give the same flows, windows, devices and alerts:
the live run only adds the clock ticks, which end flows and close windows at the moments the
next packets would have.
"""

from __future__ import annotations

import bisect
import math
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .analysis_thread import AnalysisThread
from .capture import interfaces, privileges
from .capture.dumpcap import CAPTURE_NICE, DumpcapSource
from .capture.privileges import Stopper
from .capture.ring import Ring
from .detect import Detector
from .detect.baselines import write_baselines
from .detect.evidence import AUTH_PORTS, Evidence, held_sessions
from .devices import ST_CLOSED_UPTO
from .flows import FLOW_DTYPE, S_EST
from .pipeline import WARM_MIN_BYTES, Pipeline, choose_kernels
from .records import DeviceRecord, Stats
from .sinks import EveSink
from .warmup import load_kernels

if TYPE_CHECKING:
    from .analyser import Analyser
    from .capture.batch import PacketBatch
    from .detect import Alert


def live_kernels() -> bool:
    """Choose a live run's compiled kernels (:func:`~iotwatch.pipeline.choose_kernels`, as for
    an input without end): the ahead-of-time ones when the install built them, else numba's JIT.
    Returns whether the JIT needs its warm-up (:func:`~iotwatch.warmup.load_kernels`) before the
    analysis starts. A kernel called with argument types the install did not compile goes to the
    JIT when first called (docs/design.md "Compiled kernels")."""
    return choose_kernels(WARM_MIN_BYTES)


@dataclass(slots=True)
class LiveOptions:
    interface: str
    bpf: str | None = None
    duration_s: float | None = None
    ring_dir: Path | None = None  # None: no ring (packets are analysed, not kept)
    ring_files: int = 10
    ring_bytes: int = 100 << 20
    buffer_mib: int = 64
    #: nice value of dumpcap and of the thread draining its pipe, when allowed (root or
    #: CAP_SYS_NICE); None: leave them as they are
    capture_nice: int | None = CAPTURE_NICE
    tick_s: float = 0.25  # how often the clock moves and the counters are read
    margin_s: float = 1.0  # packets this recent may still be in dumpcap's buffer or the pipe
    stats_every_s: float = 5.0  # a non-final stats event (and a drop report) this often
    status_every_s: float = 0.5  # the terminal view is refreshed this often (it redraws twice a second)
    part_every_s: float = 300.0  # a flows.parquet part is closed (readable) this often
    #: an open flow quiet this long counts as evidence for the verdicts during the run: with the
    #: live close lag (1 s), every flow whose packets all fell in the window that just closed
    settle_s: float = 1.0
    #: after windows close, the verdicts are taken again this long after (s, on the capture
    #: clock: the packets'), as the flows of their last moments settle: at +0.5 s those quiet
    #: since 0.5 s past the window's end (their alerts then come within 2 s of it), at +1.25 s
    #: those quiet since 1.25 s past it. These rechecks judge with the rules; the model's
    #: window features are taken at the close (Detector.conclude_live ``rescore``)
    recheck_s: tuple[float, ...] = (0.5, 1.25)
    #: a pass before each window closes, this long after its end on the capture clock (s; None:
    #: none): the rules judge the flows quiet by then (``settle_s``), the model the windows as at
    #: the last close, as a recheck does. An episode that crossed its threshold before the
    #: window's last ``settle_s - preclose_s`` seconds is raised then, before the window closes
    #: (``close_lag_s`` after its end) and the close pass takes every device's features again
    preclose_s: float | None = 0.5
    dumpcap: str | None = None
    #: the analysers' intake and the verdict passes on a thread of their own
    #: (iotwatch/analysis_thread.py): the packets never wait for a pass. False: on the packet
    #: thread, in turn (the same alerts; what bench/verdicts.py times)
    passes_thread: bool = True
    #: when started as root: the user to become once dumpcap runs (None: SUDO_UID's, if any);
    #: capture/privileges.py
    user: str | None = None


@dataclass(slots=True)
class LiveStatus:
    """What the terminal view shows, refreshed every tick."""

    started: float
    now: float
    packets: int
    bytes: int
    packets_per_s: float
    bits_per_s: float
    capture_drops: int | None
    if_drops: int
    interface_rx: int  # frames the interface received since the start (what dumpcap should see)
    devices: dict[str, DeviceRecord]  # the latest concluded snapshot (vendor, type)
    upload_bps: dict[str, float]  # device → bits/s sent to external addresses over the last tick
    new_alerts: list[Alert] = field(default_factory=list)
    ring: str | None = None  # the ring's current file, or why it stopped
    ring_stopped: str | None = None


@dataclass(slots=True)
class PassInputs:
    """What a verdict pass reads of the packet side, taken when the pass is asked for: the
    device records, the open flows that count as evidence, the capture names and the clock."""

    rescore: bool  # a window closed since the previous pass (else a recheck)
    devices: dict[str, DeviceRecord]
    open_rows: np.ndarray  # flows.FLOW_DTYPE: the open flows the pass counts (:meth:`LiveCapture._provisional_evidence`)
    files: list[str]
    clock_ns: int
    closed_upto: int  # the newest closed window (its index), for the verdict lag


def _merged(earlier: PassInputs, later: PassInputs) -> PassInputs:
    """Two passes taken as one (the later one's inputs): a window closed if it did for either."""
    later.rescore = later.rescore or earlier.rescore
    return later


class RingIndex:
    """Where the packets of a moment are in the ring: for each batch its file, the number of its
    first packet there and every ``STEP``-th timestamp. An alert cites the ring file and the packet
    from which its episode's packets follow (at most ``STEP - 1`` packets before the first one)."""

    STEP = 16

    def __init__(self) -> None:
        self._first: list[int] = []  # first timestamp of each batch, ns (non-decreasing in practice)
        self._rows: list[tuple[int, int, np.ndarray]] = []  # (file index, first packet, sampled ts)
        self._lock = threading.Lock()  # (the packet thread adds, the verdict passes' thread locates)

    def add(self, file_index: int, frame0: int, ts_ns: np.ndarray) -> None:
        if len(ts_ns):
            row = (file_index, frame0, ts_ns[:: self.STEP].copy())
            with self._lock:
                self._first.append(int(ts_ns[0]))
                self._rows.append(row)

    def forget_before(self, file_index: int) -> None:
        """Drop the batches of files older than ``file_index`` (the ring deleted them)."""
        with self._lock:
            k = 0
            while k < len(self._rows) and self._rows[k][0] < file_index:
                k += 1
            if k:
                del self._first[:k], self._rows[:k]

    def locate(self, ts: float) -> tuple[int, int] | None:
        """(file index, packet number) of the packet at ``ts`` (epoch s) or just before it."""
        t = int(ts * 1e9)
        with self._lock:
            k = bisect.bisect_right(self._first, t) - 1
            if k < 0:
                if not self._rows:
                    return None
                k = 0
            file_index, frame0, sample = self._rows[k]
        j = max(int(np.searchsorted(sample, t, side="right")) - 1, 0)
        return file_index, frame0 + j * self.STEP


def login_sessions(rows: np.ndarray) -> np.ndarray:
    """Mask of the open flows (flows.FLOW_DTYPE) that are TCP sessions to a login port past their
    handshake. A verdict during the run counts them even while they go on: a session's place in
    the brute-force count is its start and cannot change (a later packet can only add bytes, or
    a reset that makes it a probe for the scan rule as well), so a brute-force episode is raised
    when the session that crosses its threshold has its handshake, not when it goes quiet. Other
    open flows may still change class (a SYN answered, a beacon's connection outlasting the
    next one), so they count once quiet for ``settle_s``."""
    m = (rows["proto"] == 6) & ((rows["state"] & S_EST) != 0)
    i = np.flatnonzero(m)  # (the ports read only for those: the open table holds every flow)
    server_port = np.where(rows["client_a"][i] != 0, rows["bport"][i], rows["aport"][i])
    m[i] = np.isin(server_port, AUTH_PORTS)
    return m


def alert_delay(fired_ts: float, raised_ts: float, window_s: float) -> float:
    """How long after the end of the window in which its evidence crossed the threshold
    (``fired_ts``, the alert's ``timestamp``) an alert was raised (``raised_ts``), in seconds:
    what ``make bench-live`` reports as "window end → alert". A ``fired_ts`` on a window boundary
    belongs to the window that ends there (a model-only alert is stamped with its last window's
    end). An alert raised before that window ended (a pass judging the window before read a
    packet just past its end) counts from ``fired_ts``: a delay is never negative."""
    end = math.ceil(fired_ts / window_s) * window_s
    return raised_ts - end if raised_ts >= end else max(raised_ts - fired_ts, 0.0)


class LiveEveSink(EveSink):
    """events.jsonl for a live run: alerts are written when raised (flushed at once), periodic
    stats events carry ``final: false``, and at the end only the alerts not raised before are added."""

    def __init__(self, path: Path, flow_events: bool = False, window_s: float = 60.0) -> None:
        super().__init__(path, flow_events)
        self.window_s = window_s
        #: where an alert's packets are in the ring: first_ts → {"file", "packet"} (set by the capture)
        self.locate: Callable[[float], dict[str, object] | None] = lambda _ts: None
        self.raised: list[tuple[str, str, float]] = []  # (device, category, first_ts) written so far
        #: what only a live run's stats events carry (capture_nice, capture_drops_kernel; set by the capture)
        self.live_stats: dict[str, object] = {}

    def already_raised(self, a: Alert) -> bool:
        for dev, cat, first in self.raised:
            if dev == a.device and cat == a.category and \
                    (a.first_ts - self.window_s <= first <= a.last_ts or abs(first - a.first_ts) <= self.window_s):
                return True
        return False

    def raise_alert(self, a: Alert) -> bool:
        if self.already_raised(a):
            return False
        ev = a.to_event()
        where = self.locate(a.first_ts)
        if where is not None:
            ev["evidence"] = {**ev["evidence"], "ring": where}  # type: ignore[dict-item]
        ev["raised_ts"] = round(time.time(), 3)
        self.write_event(ev)
        self.raised.append((a.device, a.category, a.first_ts))
        self.flush()
        return True

    def on_alerts(self, alerts: list) -> None:  # type: ignore[type-arg]
        for a in alerts:
            self.raise_alert(a)

    def stats_event(self, stats: Stats, final: bool) -> None:
        self.write_event({**stats.to_event(), **self.live_stats, "final": final})
        self.flush()

    def on_stats(self, stats: Stats) -> None:
        self.stats_event(stats, final=True)

    def flush(self) -> None:
        self._f.flush()


class LiveCapture:
    def __init__(self, opts: LiveOptions, *,
                 baselines_path: Path | None = None, on_status: Callable[[LiveStatus], None] | None = None,
                 on_warning: Callable[[str], None] | None = None) -> None:
        self.opts = opts
        self.pipe: Pipeline = None  # type: ignore[assignment]  # given to run()
        self._old_handlers: dict[int, object] = {}
        self.started = time.time()
        self.eve: LiveEveSink = None  # type: ignore[assignment]  # given to run()
        self.baselines_path = baselines_path
        self.on_status = on_status
        self.on_warning = on_warning or (lambda _line: None)
        self.ring: Ring | None = None
        self.source: DumpcapSource | None = None
        self._stop = False
        self._signalled = False
        self._clock_ns = 0  # the capture clock: the latest packet's time, or the wall clock when quiet
        self._file_index: dict[Path, int] = {}
        self.index = RingIndex()
        self._unrecorded: int | None = None  # pipe.files index for packets in no ring file
        self._unrecorded_frames = 0
        self._windows_seen = 0
        self._rechecks: list[int] = []  # capture clock (ns) of the verdict passes still to come
        self._next_preclose = 0  # capture clock (ns) from which the next pre-close pass is due
        self._devices: dict[str, DeviceRecord] = {}
        self._new_alerts: deque[Alert] = deque()  # raised by the passes, not yet shown
        #: the analysers' intake and the passes, on their own thread while the capture runs
        #: (``LiveOptions.passes_thread``; None: on the packet thread)
        self.passes: AnalysisThread[PassInputs] | None = None
        self._last_tick = self._last_stats = self._last_part = self._last_status = 0.0
        self._last_up: dict[str, int] = {}
        self._last_counts = (0.0, 0, 0)
        self._drops_reported = 0
        self._ring_warned = False
        self.user: str | None = None  # the user the analysis runs as, when it gave up root
        self._become: privileges.User | None = None
        #: whether the run uses numba's JIT, to be warmed up before the analysis (:func:`live_kernels`;
        #: set by :meth:`start`)
        self.jit_warmup = True

    # the run --------------------------------------------------------------------------------
    def start(self) -> None:
        """Check the interface and start dumpcap; returns once it captures (the analysis may then
        take its time to load: frames wait in the kernel buffer and the pipe). Raises
        :class:`~iotwatch.capture.interfaces.InterfaceError` with what to do when it cannot."""
        o = self.opts
        itf = interfaces.check(o.interface)
        user = privileges.target_user(o.user)
        # before dumpcap's pipe thread starts: its kernel is one of them
        self.jit_warmup = live_kernels()
        self._rx0, self._drops0 = itf.rx_packets, itf.rx_drops
        self._old_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.source = DumpcapSource(o.interface, bpf=o.bpf, buffer_mib=o.buffer_mib, on_idle=self._idle,
                                        dumpcap=o.dumpcap, nice=o.capture_nice)
            self.started = time.time()
            self.source.open()
        except BaseException:
            if self.source is not None:
                self.source.close()
            self._restore()
            raise
        self._become = user

    def give_up_root(self, analysers: list[Analyser]) -> None:
        """Started as root (dumpcap runs): become the ordinary user (:class:`LiveOptions` ``user``,
        else the one who ran sudo) before anything is written or analysed, and open the ring as
        that user. Before the switch, while the installation is surely readable, the compiled
        kernels load and the analysers open their models (an ordinary user may be unable to
        read, or write next to, a root-owned installation). :meth:`start` first; raises
        :class:`~iotwatch.capture.interfaces.InterfaceError` when the kernel refuses the switch,
        :class:`~iotwatch.errors.OutputError` when the ring's folder cannot be made (then
        :meth:`abort`)."""
        o = self.opts
        assert self.source is not None, "start() first"
        if self._become is not None:
            if self.jit_warmup:
                load_kernels()
            for a in analysers:
                a.prepare()
            if o.passes_thread:  # (started as root: its nice value below 0 is allowed only now)
                self._start_passes(analysers)
            self.source.stopper = Stopper(self.source.proc.pid)
            privileges.become(self._become)
            self.user = self._become.name
        if o.ring_dir is not None:
            self.ring = Ring(o.ring_dir, o.ring_files, o.ring_bytes, prefix=f"iotwatch-{o.interface}")

    def _start_passes(self, analysers: list[Analyser]) -> None:
        """The analysis thread (``LiveOptions.passes_thread``), at half the capture's nice value
        when allowed (−5 by default): when the cores are short, a verdict pass goes before the
        packet thread, whose packets wait in the drain's backlog meanwhile, and after the capture."""
        nice = None if self.opts.capture_nice is None else self.opts.capture_nice // 2
        self.passes = AnalysisThread(analysers, self._judge, merge=_merged, nice=nice)

    def abort(self) -> None:
        """Stop dumpcap and let go of everything, writing nothing more (the analysis could not start)."""
        if self.passes is not None:
            self.passes.close()
            self.passes = None
        if self.source is not None:
            self.source.close()
        if self.ring is not None:
            self.ring.close()
        self._restore()

    def _restore(self) -> None:
        for s, h in self._old_handlers.items():
            signal.signal(s, h)
        self._old_handlers = {}

    def run(self, pipe: Pipeline, eve: LiveEveSink) -> tuple[dict[str, DeviceRecord], Stats]:
        """Analyse what dumpcap captures until stopped; returns the final devices and stats (the
        outputs are written). ``eve`` is one of the pipeline's sinks. :meth:`start` first."""
        o = self.opts
        assert self.source is not None and self.source.reader is not None, "start() first"
        self.pipe, self.eve = pipe, eve
        eve.locate = self._locate
        st = pipe.stats
        st.interface, st.if_drops, st.ring_files = o.interface, 0, 0 if self.ring else None
        st.files = 1
        eve.live_stats.update(capture_nice=self.source.nice, capture_drops_kernel=None, verdict_pass_s=None,
                              verdict_pass_cpu_s=None, verdict_pass_max_s=None)
        self._prepare_models()
        self.source.reader.batch_size = pipe.settings.batch_size
        self._last_counts = (time.monotonic(), 0, 0)
        analysers = pipe.analysers
        if o.passes_thread:
            if self.passes is None:
                self._start_passes(analysers)
            assert self.passes is not None and self.passes.analysers == analysers, "the pipeline's analysers"
            pipe.analysers = [self.passes.intake]  # type: ignore[list-item]
        eve.live_stats["verdicts_nice"] = self.passes.nice if self.passes is not None else None
        try:
            try:
                # the analysis is ready: a first stats event says so, for whoever waits on the run
                self._last_stats = time.monotonic()
                self.eve.stats_event(st, final=False)
                for batch in self.source.batches():
                    self._place(batch)
                    pipe.feed(batch)
                    self._clock_ns = max(self._clock_ns, int(batch.ts_ns[-1]))
                    # a window that closed in this batch is concluded now, not at the next tick
                    mono = time.monotonic()
                    if mono - self._last_tick >= o.tick_s or pipe.stats.windows > self._windows_seen or \
                            (self._rechecks and self._clock_ns >= self._rechecks[0]) or \
                            (o.preclose_s is not None and self._clock_ns >= self._next_preclose):
                        self._tick()
            finally:
                counts = self.source.close()
                if self.passes is not None:
                    # the analysers are fed what is still queued; the end of the run is theirs
                    try:
                        self.passes.close()
                    finally:
                        pipe.analysers, self.passes = analysers, None
            failed = self.source.failed
            if failed is not None:
                self.on_warning(f"iotwatch: error: {failed}")
            st.interrupted = self._signalled
            if counts is not None:
                st.capture_received, st.capture_drops = counts.received, counts.dropped
                eve.live_stats["capture_drops_kernel"] = counts.kernel
            st.if_drops = max(0, interfaces.rx_drops(o.interface) - self._drops0)
            st.backlog_max_bytes = self.source.chunks.max_backlog
            for p in self.source.reader.problems if self.source.reader else []:
                if p.fatal and not self._stop:
                    self.on_warning(f"iotwatch: warning: {p}")
            if self.ring is not None:
                self.ring.close()
                self._warn_ring()
                st.ring_files = self.ring.written
            # a second Ctrl-C while the results are written changes nothing: the handler stays
            devices, stats = pipe.finish()
            det = self._detector()
            if self.baselines_path is not None and det is not None:
                write_baselines(self.baselines_path, det.baselines(), pipe.settings.window_s)
        finally:
            self._restore()
            if self.ring is not None:
                self.ring.close()
        return devices, stats

    def _locate(self, ts: float) -> dict[str, object] | None:
        where = self.index.locate(ts)
        if where is None:
            return None
        return {"file": self.pipe.files[where[0]], "packet": where[1]}

    def _on_signal(self, signum: int, frame: object) -> None:
        self._signalled = True
        self.stop()

    def stop(self) -> None:
        """End the capture: dumpcap stops and what it still holds is read and analysed."""
        self._stop = True
        if self.source is not None:
            self.source.stop()

    def _prepare_models(self) -> None:
        """Open the models now: the first verdict comes a window after start, not at the end."""
        for a in self.pipe.analysers:
            a.prepare()

    # every batch ----------------------------------------------------------------------------
    def _place(self, batch: PacketBatch) -> None:
        """Copy the batch's blocks into the ring and number its packets as they are numbered there."""
        n = len(batch)
        src = self.source
        assert src is not None and src.reader is not None
        if self.ring is not None and self.ring.stopped is None:
            start, end = src.reader.span
            # the blocks are lent to the ring's writer thread, not copied (capture/dumpcap.py)
            where = self.ring.write(src.reader.headers, batch.buf[start:end], n, done=src.chunks.lend())
            if where is not None:
                path, first = where
                idx = self._file_index.get(path)
                if idx is None:
                    idx = self._file_index[path] = len(self.pipe.files)
                    self.pipe.files.append(str(path))
                    oldest = self.ring.kept[0]
                    self.index.forget_before(self._file_index.get(oldest, idx))
                batch.file_index, batch.frame0 = idx, first
                self.index.add(idx, first, batch.ts_ns)
                return
            self._warn_ring()
        if self._unrecorded is None:
            why = "ring stopped" if self.ring is not None else "no ring"
            self._unrecorded = len(self.pipe.files)
            self.pipe.files.append(f"{self.opts.interface} (live, not recorded: {why})")
        batch.file_index, batch.frame0 = self._unrecorded, self._unrecorded_frames + 1
        self._unrecorded_frames += n

    def _warn_ring(self) -> None:
        if self.ring is not None and self.ring.stopped is not None and not self._ring_warned:
            self._ring_warned = True
            self.on_warning(f"iotwatch: warning: the evidence ring stopped ({self.ring.stopped}); "
                            "the analysis goes on, packets from here are not kept")

    # every tick -----------------------------------------------------------------------------
    def _idle(self) -> None:
        """Nothing arrived for ``idle_s``: every packet up to about now has been read, so the
        clock may move to the wall clock (minus the margin for dumpcap's own delivery delay).
        While packets flow they drive the clock, as offline."""
        self._tick(idle=True)

    def _tick(self, idle: bool = False) -> None:
        o = self.opts
        mono = time.monotonic()
        self._last_tick = mono
        if self._stop or (o.duration_s is not None and time.time() - self.started >= o.duration_s):
            self.stop()  # (again, if a signal came before dumpcap was running)
        if self.source is None or self.source.reader is None or self.pipe is None:
            return
        if self.passes is not None:
            self.passes.check()
        pipe = self.pipe
        if idle and pipe.stats.packets:
            self._clock_ns = max(self._clock_ns, time.time_ns() - int(o.margin_s * 1e9))
            pipe.advance(self._clock_ns)
        else:
            pipe.drain()
        again = bool(self._rechecks) and self._clock_ns >= self._rechecks[0]
        if pipe.stats.windows > self._windows_seen or again or self._preclose_due():
            # once when windows close, and again (recheck_s) as the flows of their last moments
            # settle (quiet for settle_s): an episode that crossed its threshold near the end of
            # a window is raised then, not a whole window later. The rechecks are due on the
            # capture clock (the packets', or the wall clock's when quiet): when the analysis is
            # behind, a recheck waits for the packets of its moment instead of judging again
            # evidence that has not moved (and putting the analysis further behind)
            closed = pipe.stats.windows > self._windows_seen
            if closed:
                self._rechecks = [self._clock_ns + int(d * 1e9) for d in o.recheck_s]
            else:
                while self._rechecks and self._clock_ns >= self._rechecks[0]:
                    self._rechecks.pop(0)
            self._windows_seen = pipe.stats.windows
            self._conclude(rescore=closed)  # (a pre-close pass: as a recheck)
        if mono - self._last_stats >= o.stats_every_s:
            self._last_stats = mono
            pipe.stats.if_drops = max(0, interfaces.rx_drops(o.interface) - self._drops0)
            if self.ring is not None:
                pipe.stats.ring_files = self.ring.written
            pipe.stats.elapsed_s = time.perf_counter() - pipe._t0
            pipe.stats.backlog_max_bytes = self.source.chunks.max_backlog
            self.eve.stats_event(pipe.stats, final=False)
            if pipe.stats.if_drops > self._drops_reported:
                self.on_warning(f"iotwatch: warning: {o.interface} dropped {pipe.stats.if_drops:,} frames so far "
                                "(the interface's own counter): the mirror port sends more than this machine receives")
                self._drops_reported = pipe.stats.if_drops
        if mono - self._last_part >= o.part_every_s:
            if self._last_part:
                pipe.close_parts()
            self._last_part = mono
        if self.on_status is not None and mono - self._last_status >= o.status_every_s:
            self._last_status = mono
            self.on_status(self._status(mono))

    def _preclose_due(self) -> bool:
        """Whether the pre-close pass of the window that ended last is due (``LiveOptions.preclose_s``
        after its end on the capture clock, the window not closed yet); the next one is then
        due ``window_s`` later."""
        o, st = self.opts, self.pipe.settings
        if o.preclose_s is None or not self._clock_ns or self._clock_ns < self._next_preclose:
            return False
        window = int(st.window_s * 1e9)
        pre, lag = int(o.preclose_s * 1e9), int(min(st.close_lag_s, st.window_s) * 1e9)
        w = self._clock_ns // window  # the window going on: the one before it ended at w * window
        first, self._next_preclose = not self._next_preclose, (w + 1) * window + pre
        # (past the lag, the close pass judges the window; before the first packets it had none)
        return not first and pre <= self._clock_ns - w * window < lag

    def _conclude(self, rescore: bool = True) -> None:
        """A verdict pass over everything seen so far: its inputs taken now
        (:meth:`_pass_inputs`), the pass run on the passes' thread when there is one
        (:class:`~iotwatch.analysis_thread.AnalysisThread`, once the analysers are fed what came
        before), else here (:meth:`_judge`)."""
        req = self._pass_inputs(rescore)
        if self.passes is not None:
            self.passes.request(req)
        else:
            self._judge(req)

    def _pass_inputs(self, rescore: bool) -> PassInputs:
        pipe = self.pipe
        return PassInputs(rescore=rescore, devices=pipe.devices.totals(), open_rows=self._open_rows(),
                          files=list(pipe.files), clock_ns=self._clock_ns,
                          closed_upto=int(pipe.devices.st[ST_CLOSED_UPTO]))

    def _judge(self, req: PassInputs) -> None:
        """Verdicts over everything seen up to ``req``, judging again only the devices whose
        inputs changed since the previous pass (``Detector.conclude_live``: the alerts of a pass
        over everything); alerts not raised before are written now. ``req.rescore`` False (a
        recheck: no window closed since the previous pass): the model's features of the windows
        are those of the previous close, the rules read the evidence as it is now."""
        pipe = self.pipe
        t0, c0 = time.perf_counter(), time.thread_time()
        devices = req.devices
        found: list[Alert] = []
        analysers = self.passes.analysers if self.passes is not None else pipe.analysers
        for an in analysers:  # in the pipeline's order: the inventory before the detector
            if isinstance(an, Detector):
                final = an.evidence
                an.evidence = self._provisional_evidence(an, req.open_rows)
                try:
                    found += an.conclude_live(devices, req.files, rescore=req.rescore)
                finally:
                    an.evidence = final
                if self.baselines_path is not None:
                    write_baselines(self.baselines_path, an.baselines(), pipe.settings.window_s)
            else:
                found += an.conclude(devices, req.files)
        for a in found:
            if self.eve.raise_alert(a):
                self._new_alerts.append(a)
        self._devices = devices
        if req.rescore:  # how long after the end of the newest closed window its verdicts were written
            lag = round(time.time() - (req.closed_upto + 1) * pipe.settings.window_s, 3)
            pipe.stats.verdict_lag_s = lag
            pipe.stats.verdict_lag_max_s = max(pipe.stats.verdict_lag_max_s or 0.0, lag)
            # and what the pass itself took (wall, and its thread's CPU: the gap is the machine's
            # other work): the part of the lag past the close
            took, cpu = round(time.perf_counter() - t0, 3), round(time.thread_time() - c0, 3)
            ls = self.eve.live_stats
            ls.update(verdict_pass_s=took, verdict_pass_cpu_s=cpu,
                      verdict_pass_max_s=max(float(ls.get("verdict_pass_max_s") or 0.0), took))  # type: ignore[arg-type]

    def _detector(self) -> Detector | None:
        return next((a for a in self.pipe.analysers if isinstance(a, Detector)), None)

    def _provisional_evidence(self, det: Detector, open_rows: np.ndarray | None = None) -> Evidence:
        """The detector's evidence plus the flows still open that have been quiet for
        ``settle_s``, and the :func:`login_sessions` and held sessions (``evidence.held_sessions``)
        still going: a scan's unanswered SYNs, a brute-force session and a heartbeat held in one
        connection count now, not after the flow table's idle or active timeout (120 s, 1,800 s).
        A copy-on-write view (``Evidence.with_flows``): the evidence the final verdicts use, from
        ended flows only as offline, is not touched, and the devices the open flows add nothing
        to are not copied."""
        return det.evidence.with_flows(self._open_rows() if open_rows is None else open_rows)

    def _open_rows(self) -> np.ndarray:
        """The open flows a pass counts now (:meth:`_provisional_evidence`)."""
        if not self._clock_ns:
            return np.zeros(0, FLOW_DTYPE)
        return self.pipe.flows.open_records(self._clock_ns - int(self.opts.settle_s * 1e9),
                                            also=lambda r: login_sessions(r) | held_sessions(r))

    def _status(self, mono: float) -> LiveStatus:
        st = self.pipe.stats
        t0, p0, b0 = self._last_counts
        dt = max(mono - t0, 1e-6)
        pps, bps = (st.packets - p0) / dt, (st.bytes - b0) * 8 / dt
        self._last_counts = (mono, st.packets, st.bytes)
        up = {}
        totals = self.pipe.devices.totals() if st.packets else {}
        for key, rec in totals.items():
            up[key] = (rec.upload_bytes - self._last_up.get(key, 0)) * 8 / dt
            self._last_up[key] = rec.upload_bytes
        devices = {k: self._devices.get(k, rec) for k, rec in totals.items()}
        ring = None
        if self.ring is not None:
            ring = str(self.ring.current) if self.ring.current else None
        new = [self._new_alerts.popleft() for _ in range(len(self._new_alerts))]
        return LiveStatus(started=self.started, now=time.time(), packets=st.packets, bytes=st.bytes,
                          packets_per_s=pps, bits_per_s=bps, capture_drops=st.capture_drops,
                          if_drops=max(0, interfaces.rx_drops(self.opts.interface) - self._drops0),
                          interface_rx=max(0, interfaces.counter(self.opts.interface, "rx_packets") - self._rx0),
                          devices=devices, upload_bps=up, new_alerts=new, ring=ring,
                          ring_stopped=self.ring.stopped if self.ring else None)
