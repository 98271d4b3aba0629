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

from .addrs import LocalNets
from .capture import CaptureSet, PacketBatch
from .decode import ERR_LINK, ERR_NETWORK, ERR_TRANSPORT, L3_ARP, L3_OTHER, Packets, decode
from .devices import DeviceSettings, DeviceTable, EdgeSets
from .errors import InputError, OutputError
from .flows import DEFAULT_MAX_FLOWS, FlowSettings, FlowTable, flows_to_table
from .records import DeviceRecord, Stats
from .sidecar import Sidecar
from .sinks import MemorySink, Sink

if TYPE_CHECKING:
    from .detect import Alert, Detector
    from .inventory.collect import Inventory


@dataclass(slots=True)
class Settings:
    """Everything a run can be tuned with (the CLI options map onto these)."""

    window_s: float = 60.0
    local_nets: Sequence[str] = ()
    idle_timeout: float = 120.0
    active_timeout: float = 1800.0
    max_flows: int = DEFAULT_MAX_FLOWS
    max_devices: int = 1 << 14
    batch_size: int = 1 << 15

    def flow_settings(self) -> FlowSettings:
        return FlowSettings(idle_timeout=self.idle_timeout, active_timeout=self.active_timeout, max_flows=self.max_flows)

    def device_settings(self) -> DeviceSettings:
        return DeviceSettings(window_s=self.window_s, max_devices=self.max_devices)


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


CHUNK = 1 << 14  # finished flows are converted and written in pieces of at most this many
_loaded = False


def _warm_frames() -> list[tuple[float, bytes]]:
    """A few minutes of a tiny site, in frames: TCP with a handshake and data both ways, an
    unanswered SYN, DNS, ARP, to local and external peers, over three windows."""
    import struct

    def eth(src: int, dst: int, etype: int, body: bytes) -> bytes:
        return dst.to_bytes(6, "big") + src.to_bytes(6, "big") + struct.pack("!H", etype) + body

    def ip4(src: int, dst: int, proto: int, l4: bytes) -> bytes:
        return struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0, src, dst) + l4

    def tcp(sp: int, dp: int, seq: int, flags: int, data: bytes = b"") -> bytes:
        return struct.pack("!HHIIBBHHH", sp, dp, seq, 0, 0x50, flags, 8192, 0, 0) + data

    def udp(sp: int, dp: int, data: bytes) -> bytes:
        return struct.pack("!HHHH", sp, dp, 8 + len(data), 0) + data

    cam, rec, gw = 0x0012_3456_0001, 0x0012_3456_0002, 0x0012_3456_00FE
    a, b, ext = 0xC0A8_0114, 0xC0A8_0115, 0x5DB8_D822
    dns = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"
    arp = bytes.fromhex("0001080006040001") + cam.to_bytes(6, "big") + a.to_bytes(4, "big") + bytes(6) + b.to_bytes(4, "big")
    out = []
    for k, t0 in enumerate((1.0, 61.0, 150.0)):
        sp = 40000 + k
        out += [
            (t0, eth(cam, rec, 0x0800, ip4(a, b, 6, tcp(sp, 554, 1, 0x02)))),
            (t0 + 0.001, eth(rec, cam, 0x0800, ip4(b, a, 6, tcp(554, sp, 9, 0x12)))),
            (t0 + 0.002, eth(cam, rec, 0x0800, ip4(a, b, 6, tcp(sp, 554, 2, 0x18, b"OPTIONS rtsp://x/ RTSP/1.0\r\n\r\n")))),
            (t0 + 0.003, eth(rec, cam, 0x0800, ip4(b, a, 6, tcp(554, sp, 10, 0x18, b"RTSP/1.0 200 OK\r\n\r\n")))),
            (t0 + 0.004, eth(cam, gw, 0x0800, ip4(a, ext, 6, tcp(sp, 443, ext, 0x02)))),
            (t0 + 0.005, eth(cam, gw, 0x0800, ip4(a, 0x08080808, 17, udp(sp, 53, dns)))),
            (t0 + 0.006, eth(gw, cam, 0x0800, ip4(0x08080808, a, 17, udp(53, sp, dns)))),
            (t0 + 0.007, eth(cam, 0xFFFF_FFFF_FFFF, 0x0806, arp)),
        ]
    return out


def _write_warm_captures(folder: Path, frames: list[tuple[float, bytes]]) -> list[Path]:
    """The frames as a classic pcap and as a pcapng, so both readers' loops load."""
    import struct

    pcap = folder / "warm.pcap"
    with open(pcap, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, fr in frames:
            f.write(struct.pack("<IIII", int(ts), int(ts % 1 * 1e6), len(fr), len(fr)) + fr)
    ng = folder / "warm.pcapng"
    with open(ng, "wb") as f:
        f.write(struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28))
        f.write(struct.pack("<IIHHII", 1, 20, 1, 0, 65535, 20))
        for ts, fr in frames:
            pad = fr + bytes(-len(fr) % 4)
            us = round(ts * 1e6)
            f.write(struct.pack("<IIIIIII", 6, 32 + len(pad), 0, us >> 32, us & 0xFFFFFFFF, len(fr), len(fr))
                    + pad + struct.pack("<I", 32 + len(pad)))
    return [pcap, ng]


def _load_kernels() -> None:
    """Load the compiled kernels from numba's cache (or compile them) before the clock starts:
    like imports, this is start-up, paid once per process.

    numba keeps one machine-code version per argument layout, and a one-element array counts
    as contiguous where a real batch's column is strided: so the warm-up reads a small capture
    of several packets, both as pcap and pcapng, through the whole pipeline with the detector
    and the inventory, and gives every other kernel arrays of the layouts a real run passes."""
    global _loaded
    if _loaded:
        return
    import tempfile

    from .bundle import _forest_proba
    from .detect import Detector
    from .detect.rules import _screen
    from .inventory.collect import Inventory

    small = Settings(max_flows=1024, max_devices=64)
    try:
        with tempfile.TemporaryDirectory(prefix="iotwatch-warm-") as tmp:
            for path in _write_warm_captures(Path(tmp), _warm_frames()):
                pipe, _captures = run([path], small, [], detector=Detector(), inventory=Inventory(), _warm=False)
                pipe.finish()
    except OSError:  # no writable temporary folder: warm up from memory (the readers load when first used)
        from .capture.memory import frames_to_batch

        pipe = Pipeline(small, [], detector=Detector(), inventory=Inventory(), _warm=False)
        pipe.feed(frames_to_batch(_warm_frames()))
        pipe.finish()
    z = np.zeros(2, np.int64)
    _screen(np.zeros(2, np.uint64), np.zeros(2), np.zeros(2), 2, 0.0, 1.0, np.zeros(2, np.uint8))
    _forest_proba(np.zeros((2, 1)), z, np.full(2, -1, np.int64), z, z, np.zeros(2), np.ones((2, 1)), np.zeros((2, 1)))
    _loaded = True


class Pipeline:
    def __init__(self, settings: Settings | None = None, sinks: Iterable[Sink] = (), *, threaded: bool = True,
                 detector: Detector | None = None, inventory: Inventory | None = None, _warm: bool = True) -> None:
        self.settings = s = settings or Settings()
        if s.window_s <= 0:
            raise ValueError("window length must be positive")
        self.sinks = list(sinks)
        self.flows = FlowTable(s.flow_settings(), window_s=s.window_s)
        self.devices = DeviceTable(s.device_settings(), LocalNets(list(s.local_nets)))
        self._pk = Packets.allocate(s.batch_size)
        self.detector = detector
        self.inventory = inventory
        self.sidecar = Sidecar(window_s=s.window_s) if detector is not None or inventory is not None else None
        self.files: list[str] = []  # capture names, by file index (evidence cites them)
        self.alerts: list[Alert] = []
        #: rewrites alert evidence before the sinks see it (conn.log input cites log lines, not packets)
        self.cite_evidence: Callable[[list[Alert]], None] | None = None
        self.stats = Stats()
        self._writer = _Writer(self._emit) if threaded and self.sinks else None
        if _warm:
            _load_kernels()
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
                if self.detector is not None:
                    self.detector.on_rare(frames)
                if self.inventory is not None:
                    self.inventory.on_rare(frames)
        for t in self.devices.update(pk, ts_ns, wirelen, info):
            self._out("windows", t)

    def _out(self, kind: str, payload: np.ndarray | pa.Table) -> None:
        """Hand results to the sinks. Finished flows become public rows here, on the packet
        thread, while the writer thread writes the previous ones: under a flood the two halves
        of the work then share the two cores."""
        if kind == "flows":
            self.stats.flows += len(payload)
            if self.detector is not None:
                self.detector.on_flow_records(payload)  # type: ignore[arg-type]
            if self.inventory is not None:
                self.inventory.on_flow_records(payload)  # type: ignore[arg-type]
            pieces = [flows_to_table(payload[k : k + CHUNK]) for k in range(0, len(payload), CHUNK)]
        else:
            self.stats.windows += payload.num_rows  # type: ignore[union-attr]
            if self.detector is not None:
                self.detector.on_windows(payload)  # type: ignore[arg-type]
            pieces = [payload]
        for piece in pieces:
            if self._writer is not None:
                self._writer.put(kind, piece)
            else:
                self._emit(kind, piece)

    def _emit(self, kind: str, table: pa.Table) -> None:
        for s in self.sinks:
            if kind == "flows":
                s.on_flows(table)
            else:
                s.on_windows(table)

    def drain(self) -> None:
        """Hand over finished flows and closed windows now (a live capture calls this on a timer)."""
        for rows in self.flows.drain():
            self._out("flows", rows)
        for t in self.devices.drain():
            self._out("windows", t)

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
            if self.inventory is not None:
                loading += self.inventory.prepare()
                self.inventory.conclude(devices)
            if self.detector is not None:
                loading += self.detector.prepare()
                self.alerts = self.detector.conclude(devices, self.files)
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
        if self.detector is not None:
            for s in self.sinks:
                on_alerts = getattr(s, "on_alerts", None)
                if on_alerts is not None:
                    on_alerts(self.alerts)
        for s in self.sinks:
            s.on_devices(devices)
        for s in self.sinks:
            s.on_stats(st)
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


ProgressFn = Callable[[int, int], None]


def run(paths: Sequence[str | Path], settings: Settings | None = None, sinks: Iterable[Sink] = (),
        progress: ProgressFn | None = None, detector: Detector | None = None,
        inventory: Inventory | None = None, _warm: bool = True) -> tuple[Pipeline, CaptureSet]:
    """Read every capture in ``paths`` through a pipeline; return both for their results.

    Raises :class:`InputError` only when a path does not exist; damaged files are recorded in
    ``CaptureSet.problems`` and the rest is analysed. Ctrl-C stops the reading and sets
    ``stats.interrupted``; :meth:`Pipeline.finish` then still flushes what was read.
    """
    settings = settings or Settings()
    from .zeek.read import is_conn_log

    if paths and all(is_conn_log(Path(p)) for p in paths):  # Zeek conn.log files: iotwatch.zeek.source
        from .zeek.source import run_conn_logs

        return run_conn_logs(paths, settings, sinks, detector=detector, inventory=inventory)  # type: ignore[return-value]
    captures = CaptureSet(paths, batch_size=settings.batch_size)
    pipe = Pipeline(settings, sinks, detector=detector, inventory=inventory, _warm=_warm)
    pipe.files = [str(p) for p in captures.paths]
    try:
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
            keep_flows: bool = True, detect: bool | Detector = True, identify: bool = True) -> Analysis:
    """Analyse captures in memory and return devices, flows, windows, alerts and statistics.

    ``detect``: True runs the detector with its defaults (the rules and the default behaviour
    model), a :class:`~iotwatch.detect.Detector` runs that one, False skips detection.
    ``identify``: type every device (vendor, type, evidence) with the inventory and its default model.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    settings = Settings(window_s=window, local_nets=tuple(local_nets), idle_timeout=idle_timeout,
                        active_timeout=active_timeout, max_flows=max_flows)
    detector: Detector | None = None
    if detect is True:
        from .detect import Detector, DetectSettings
        from .detect.model import default_model

        detector = Detector(DetectSettings(window_s=window, model=default_model()), LocalNets(list(local_nets)))
    elif detect is not False:
        detector = detect  # type: ignore[assignment]
    inventory: Inventory | None = None
    if identify:
        from .inventory.collect import Inventory, default_type_model

        inventory = Inventory(LocalNets(list(local_nets)), default_type_model())
    mem = MemorySink(keep_flows=keep_flows)
    pipe, captures = run(paths, settings, [mem], detector=detector, inventory=inventory)
    devices, stats = pipe.finish()
    return Analysis(devices=devices, flows=mem.flows, windows=mem.windows, stats=stats,
                    problems=list(captures.problems), edges=pipe.devices.edges, files=list(captures.paths),
                    alerts=pipe.alerts)
