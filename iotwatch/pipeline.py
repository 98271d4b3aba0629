"""packets → flows → device windows, incrementally.

:class:`Pipeline` consumes packet batches as they arrive (from files or, later, a live mirror
port), hands finished flows and closed windows to its sinks as capture time advances, and at
:meth:`Pipeline.finish` flushes what is still open and reports device totals and statistics.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from . import interrupt
from .addrs import LocalNets
from .capture import CaptureSet, PacketBatch
from .decode import ERR_LINK, ERR_NETWORK, ERR_TRANSPORT, L3_ARP, L3_OTHER, Packets, decode
from .devices import DeviceTable, EdgeSets
from .errors import InputError, OutputError
from .flows import FlowTable, flows_to_table
from .records import DeviceRecord, Stats
from .settings import DEFAULT_MAX_FLOWS, Settings
from .sidecar import Sidecar
from .sinks import MemorySink, Sink, deliver_end

if TYPE_CHECKING:
    from .analyser import Analyser
    from .detect import Alert, Detector
    from .inventory.analyser import Inventory


class _Writer:
    """Runs the sinks (Parquet and JSON writing) on a second thread, overlapping with the packet
    thread's decoding and flow conversion (the compiled kernels and Arrow release the GIL).
    The queue is short: memory stays bounded however fast flows finish."""

    def __init__(self, emit: Callable[[str, pa.Table], None]) -> None:
        self._emit = emit
        self._q: queue.Queue[tuple[str, pa.Table] | None] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self._t = threading.Thread(target=self._run, name="iotwatch-sinks", daemon=True)
        self._t.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if self.error is None:
                try:
                    self._emit(*item)
                except BaseException as e:  # handed to the main thread
                    self.error = e


    def put(self, kind: str, payload: pa.Table) -> None:
        self._check()
        self._q.put((kind, payload))

    def close(self) -> None:
        self._q.put(None)
        self._t.join()
        self._check()

    def _check(self) -> None:
        if self.error is not None:
            e, self.error = self.error, None
            if isinstance(e, OSError):
                raise OutputError(f"cannot write results: {e}") from e
            raise e


CHUNK = 1 << 13  # finished flows are converted and written in pieces of at most this many (docs/benchmarks.md: memory)
#: input smaller than this skips the warm-up: its kernels load when first used, inside the run
#: (whose ``elapsed_s`` then includes them, about 0.2 s): the warm-up's own two small runs, and
#: the kernels a small capture never calls, would cost it more than they keep off the clock
WARM_MIN_BYTES = 8 << 20


def choose_kernels(bytes_total: int) -> bool:
    """Which compiled kernels the run uses: those compiled ahead of time when the install built
    them for these sources (the run then imports no numba: 0.35 s and 100 MB less), else numba's
    JIT, warmed up before the clock for inputs of :data:`WARM_MIN_BYTES` or more. Both release the
    GIL and give identical outputs (docs/design.md "Compiled kernels"). Returns whether the run
    needs the JIT's warm-up."""
    from . import _jit

    return not _jit.prefer_aot(True) and bytes_total >= WARM_MIN_BYTES


class Pipeline:
    """Packets in, flows, windows and device totals out to the sinks; the analysers ride along.

    ``analysers`` (see :class:`~iotwatch.analyser.Analyser`) are fed and concluded in the order
    given; ``inventory=`` and ``detector=`` are shorthands that put those two first, in that order.
    """

    def __init__(self, settings: Settings | None = None, sinks: Iterable[Sink] = (), *, threaded: bool = True,
                 analysers: Sequence[Analyser] = (), detector: Detector | None = None,
                 inventory: Inventory | None = None, _warm: bool = True) -> None:
        self.settings = s = (settings or Settings()).validate()  # SettingsError before any work
        self.sinks = list(sinks)
        self.flows = FlowTable(s.flow_settings(), window_s=s.window_s)
        nets = LocalNets(list(s.local_nets))
        self.devices = DeviceTable(s.device_settings(), nets)
        self._pk = Packets.allocate(s.batch_size)
        self.analysers: list[Analyser] = [a for a in (inventory, detector) if a is not None] + list(analysers)
        for a in self.analysers:
            a.bind(s.window_s, nets)  # the run's window and networks (or SettingsError)
        self.sidecar = Sidecar(window_s=s.window_s) if any(a.wants_rare for a in self.analysers) else None
        self.files: list[str] = []  # capture names, by file index (evidence cites them)
        self.alerts: list[Alert] = []
        #: rewrites alert evidence before the sinks see it (conn.log input cites log lines, not packets)
        self.cite_evidence: Callable[[list[Alert]], None] | None = None
        self.stats = Stats()
        self._writer = _Writer(self._emit) if threaded and self.sinks else None
        if _warm:
            from .warmup import load_kernels

            load_kernels()
        self._t0 = time.perf_counter()  # elapsed_s: the work on packets and the verdicts, not start-up

    def feed(self, batch: PacketBatch) -> None:
        n = len(batch)
        if n > len(self._pk):
            self._pk = Packets.allocate(n)
        if n and batch.ts_ns.min() < 0:  # the window and flow clocks start at the epoch
            np.maximum(batch.ts_ns, 0, out=batch.ts_ns)
        pk = decode(batch, self._pk)
        self.feed_decoded(pk, batch.ts_ns, batch.wirelen, (batch.file_index << 40) | batch.frame0, batch)

    def feed_decoded(self, pk: Packets, ts_ns: np.ndarray, wirelen: np.ndarray, frame_base: int,
                     batch: PacketBatch | None = None) -> None:
        """Account packets already decoded (``batch``: their raw bytes, for the rare-frame side
        channel; None for packets rebuilt from flow logs, which have no bytes)."""
        n = len(ts_ns)
        st = self.stats
        st.packets += n
        st.bytes += int(wirelen.sum())
        counts = np.bincount(pk.err, minlength=4)
        st.undecodable["link"] += int(counts[ERR_LINK])
        st.undecodable["network"] += int(counts[ERR_NETWORK])
        st.undecodable["transport"] += int(counts[ERR_TRANSPORT])
        l3 = np.bincount(pk.l3, minlength=8)
        st.not_ip += int(l3[L3_ARP] + l3[L3_OTHER])
        for rows in self.flows.update(pk, ts_ns, wirelen, frame_base):
            self._out("flows", rows)
        info = self.flows.packet_info(n)
        if self.sidecar is not None and batch is not None:
            frames = self.sidecar.pick(batch, pk, info)
            if frames:
                for a in self.analysers:
                    if a.wants_rare:
                        a.on_rare(frames)
        for t in self.devices.update(pk, ts_ns, wirelen, info):
            self._out("windows", t)

    def _out(self, kind: str, payload: np.ndarray | pa.Table) -> None:
        """Hand results to the analysers and the sinks. Finished flows become public rows here,
        on the packet thread, while the writer thread writes the previous ones: under a flood
        the two halves of the work then share the two cores."""
        if kind == "flows":
            self.stats.flows += len(payload)
            for a in self.analysers:
                a.on_flow_records(payload)  # type: ignore[arg-type]
            pieces = [flows_to_table(payload[k : k + CHUNK]) for k in range(0, len(payload), CHUNK)] if self.sinks else []
        else:
            self.stats.windows += payload.num_rows  # type: ignore[union-attr]
            for a in self.analysers:
                a.on_windows(payload)  # type: ignore[arg-type]
            pieces = [payload] if self.sinks else []
        for piece in pieces:
            if self._writer is not None:
                self._writer.put(kind, piece)
            else:
                self._emit(kind, piece)

    def close_parts(self) -> None:
        """Have the sinks close their current output parts (readable from now), in order with
        the results already handed over."""
        if self._writer is not None:
            self._writer.put("parts", pa.table({}))
        else:
            self._emit("parts", pa.table({}))

    def _emit(self, kind: str, table: pa.Table) -> None:
        for s in self.sinks:
            if kind == "parts":
                s.close_part()
            elif kind == "flows":
                s.on_flows(table)
            else:
                s.on_windows(table)

    def drain(self) -> None:
        """Hand over finished flows and closed windows now (a live capture calls this on a timer)."""
        for rows in self.flows.drain():
            self._out("flows", rows)
        for t in self.devices.drain():
            self._out("windows", t)

    def advance(self, now_ns: int) -> None:
        """Move the capture clock to ``now_ns`` without a packet: flows idle since before it end
        and windows due by then close, then both are handed over (a live capture calls this on a
        timer, with the wall clock, so a quiet network still gets its windows and alerts)."""
        for rows in self.flows.expire(now_ns):
            self._out("flows", rows)
        self.devices.close_before(now_ns)
        self.drain()

    def finish(self) -> tuple[dict[str, DeviceRecord], Stats]:
        for rows in self.flows.flush():
            self._out("flows", rows)
        for t in self.devices.flush():
            self._out("windows", t)
        devices = self.devices.totals()
        st = self.stats
        st.flows_evicted = self.flows.evicted
        st.fragments_without_first = self.flows.fragments_without_first
        st.devices = len(devices)
        st.devices_untracked = self.devices.untracked
        st.late_packets = self.devices.late_packets
        # the packet tables are done with: their memory goes back before the models are opened
        self.flows.release()
        self.devices.release()
        self._pk = Packets.allocate(0)
        loading = 0.0  # opening the models is start-up, like loading the kernels
        try:
            for a in self.analysers:
                loading += a.prepare()
                self.alerts += a.conclude(devices, self.files)
            if self.cite_evidence is not None:
                self.cite_evidence(self.alerts)
            st.alerts = len(self.alerts)
        finally:
            # the verdicts above ran while the writer thread was still writing the last flows;
            # whatever happened, it finishes before the sinks are closed
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        st.elapsed_s = time.perf_counter() - self._t0 - loading
        deliver_end(self.sinks, self.alerts, devices, st)
        return devices, st


@dataclass(slots=True)
class Analysis:
    """The result of :func:`analyze`: devices, flows, windows, statistics and input problems."""

    devices: dict[str, DeviceRecord]
    flows: pa.Table
    windows: pa.Table
    stats: Stats
    problems: list[InputError] = field(default_factory=list)
    edges: dict[int, EdgeSets] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)  # (a file given again, the path read)


ProgressFn = Callable[[int, int], None]


def build_analysers(settings: Settings) -> list[Analyser]:
    """The inventory and the detector that ``settings`` ask for, with their models and baselines,
    in the order they conclude: the one place a run's analysers are made (the CLI, the library,
    training and live capture all come here). Raises ModelError/InputError for unusable files."""
    nets = LocalNets(list(settings.local_nets))
    out: list[Analyser] = []
    if settings.identify:
        from .inventory.analyser import Inventory, default_type_model
        from .inventory.classify import TypeModel
        from .inventory.products import Catalogue, default_catalogue

        tm = TypeModel.load(settings.type_model) if settings.type_model is not None else default_type_model()
        own = settings.type_model / "catalogue" if settings.type_model is not None else None  # trained with it
        cat = Catalogue.load(own) if own is not None and (own / "manifest.json").is_file() else default_catalogue()
        out.append(Inventory(nets, tm, cat))
    if settings.detect:
        from .detect import Detector, DetectSettings
        from .detect import model as behaviour
        from .detect.baselines import load_baselines

        bundle = None
        if not settings.no_model:
            bundle = behaviour.load(settings.model) if settings.model is not None else behaviour.default_model()
        baselines = load_baselines(settings.baseline, settings.window_s) if settings.baseline is not None else {}
        out.append(Detector(DetectSettings(window_s=settings.window_s, uplink_mbps=settings.uplink_mbps,
                                           baselines=baselines, model=bundle), nets))
    return out


def run(paths: Sequence[str | Path], settings: Settings | None = None, sinks: Iterable[Sink] = (),
        progress: ProgressFn | None = None, detector: Detector | None = None,
        inventory: Inventory | None = None, analysers: Sequence[Analyser] = (),
        _warm: bool = True) -> tuple[Pipeline, CaptureSet]:
    """Read every capture in ``paths`` through a pipeline; return both for their results.

    Raises :class:`InputError` only when a path does not exist; damaged files are recorded in
    ``CaptureSet.problems`` and the rest is analysed. Ctrl-C stops the reading and sets
    ``stats.interrupted``; :meth:`Pipeline.finish` then still flushes what was read. A Ctrl-C
    during the start-up (before the first packet) is held and stops the run before reading.
    """
    settings = settings or Settings()
    from .zeek.read import is_conn_log

    if paths and all(is_conn_log(Path(p)) for p in paths):  # Zeek conn.log files: iotwatch.zeek.source
        from .zeek.source import run_conn_logs

        return run_conn_logs(paths, settings, sinks, detector=detector, inventory=inventory,  # type: ignore[return-value]
                             analysers=analysers)
    with interrupt.deferred():  # start-up (file headers, compiled kernels): Ctrl-C stops before reading
        captures = CaptureSet(paths, batch_size=settings.batch_size)
        # (the warm-up's own small run keeps the JIT it is loading)
        pipe = Pipeline(settings, sinks, detector=detector, inventory=inventory, analysers=analysers,
                        _warm=_warm and choose_kernels(captures.bytes_total))
        pipe.files = [str(p) for p in captures.paths]
        if _warm:  # (not the warm-up's own small run, inside the start-up)
            interrupt.checkpoint("startup")
    try:
        if _warm and interrupt.take():
            raise KeyboardInterrupt
        for batch in captures.batches():
            pipe.feed(batch)
            if progress is not None:
                progress(captures.position, captures.bytes_total)
    except KeyboardInterrupt:  # stop reading; what was read is still finished and written
        pipe.stats.interrupted = True
    pipe.stats.files = captures.files_read
    pipe.stats.problems = len(captures.problems)
    return pipe, captures


def analyze(paths: str | Path | Sequence[str | Path], *, window: float = 60.0, local_nets: Sequence[str] = (),
            idle_timeout: float = 120.0, active_timeout: float = 1800.0, max_flows: int = DEFAULT_MAX_FLOWS,
            keep_flows: bool = True, detect: bool | Detector = True, identify: bool = True,
            uplink_mbps: float | None = None, baseline: str | Path | None = None, model: str | Path | None = None,
            type_model: str | Path | None = None) -> Analysis:
    """Analyse captures in memory and return devices, flows, windows, alerts and statistics.

    ``detect``: True runs the detector with the rules and the behaviour model (``model``, or the
    shipped one), a :class:`~iotwatch.detect.Detector` runs that one, False skips detection.
    ``identify``: type every device (vendor, type, evidence) with the inventory and its model.
    ``uplink_mbps`` and ``baseline`` mean what the CLI's ``--uplink-mbps`` and ``--baseline`` do.

    Problems with the input: when nothing at all could be read (no file opened, or no packet and
    a problem), the first problem is raised (an :class:`~iotwatch.errors.InputError` naming the
    file); otherwise every problem (a damaged file, a cut-off packet) is in ``Analysis.problems``
    and the results cover what was read. Out-of-range arguments raise
    :class:`~iotwatch.errors.SettingsError` (also a ``ValueError``) before any work.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    settings = Settings(window_s=window, local_nets=tuple(local_nets), idle_timeout=idle_timeout,
                        active_timeout=active_timeout, max_flows=max_flows, detect=detect is True,
                        identify=identify, uplink_mbps=uplink_mbps,
                        baseline=Path(baseline) if baseline is not None else None,
                        model=Path(model) if model is not None else None,
                        type_model=Path(type_model) if type_model is not None else None)
    analysers = build_analysers(settings)
    if detect is not True and detect is not False:
        analysers.append(detect)  # a Detector of the caller's
    mem = MemorySink(keep_flows=keep_flows)
    pipe, captures = run(paths, settings, [mem], analysers=analysers)
    devices, stats = pipe.finish()
    if captures.files_read == 0 or (stats.packets == 0 and captures.problems):
        # nothing at all could be read: that is an error, not an empty result
        raise captures.problems[0] if captures.problems else InputError(", ".join(map(str, paths)), "no capture could be read")
    return Analysis(devices=devices, flows=mem.flows, windows=mem.windows, stats=stats,
                    problems=list(captures.problems), edges=pipe.devices.edges, files=list(captures.paths),
                    alerts=pipe.alerts, duplicates=list(captures.duplicates))
