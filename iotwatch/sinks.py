"""Where results go: memory, Parquet files, and the EVE-style ``events.jsonl``.

A sink receives finished flows and closed windows as pyarrow tables while the input streams,
then the device totals and the run statistics at the end. Flow events are formatted in bulk with
pyarrow compute kernels (no Python dict per flow), so a flood of a million flows stays cheap.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import OutputError
from .jsonfmt import FLOAT, HEX2, INT, ISO, STR, STR_OR_NULL, Col, If, format_lines
from .records import FLOW_EVENT_FIELDS, FLOW_SCHEMA, WINDOW_SCHEMA, DeviceRecord, EventField, Stats

if TYPE_CHECKING:
    from .detect.alerts import Alert

PROTO_NAMES = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 41: "IPv6", 47: "GRE", 50: "ESP", 51: "AH",
               58: "IPv6-ICMP", 89: "OSPF", 103: "PIM", 112: "VRRP", 132: "SCTP", 136: "UDPLite"}
_PROTO_NAMES = [PROTO_NAMES.get(i, str(i)) for i in range(256)]


class Sink:
    """Where results go. The pipeline calls, in this order: ``on_flows`` and ``on_windows`` while
    the input streams (from the writer thread), then ``on_alerts``, ``on_devices`` and
    ``on_stats`` once at the end; the owner calls ``close``. Each sink overrides what it
    receives; the rest is ignored."""

    def on_flows(self, flows: pa.Table) -> None:
        """Finished flows (``records.FLOW_SCHEMA``)."""

    def on_windows(self, windows: pa.Table) -> None:
        """Closed device windows (``records.WINDOW_SCHEMA``)."""

    def on_alerts(self, alerts: list[Alert]) -> None:
        """Every alert of the run, strongest first."""

    def on_devices(self, devices: dict[str, DeviceRecord]) -> None:
        """Device totals, with what each device is and its alerts."""

    def on_stats(self, stats: Stats) -> None:
        """The run's statistics."""

    def close_part(self) -> None:
        """Make what was written so far readable now, if the sink writes in parts (a live
        capture calls it on a timer, from the writer thread, in order with the results)."""

    def close(self) -> None:
        """Flush and close files."""


def deliver_end(sinks: list[Sink], alerts: list[Alert], devices: dict[str, DeviceRecord], stats: Stats) -> None:
    """Hand the run's end to every sink: all alerts first, then the devices, then the statistics."""
    for s in sinks:
        s.on_alerts(alerts)
    for s in sinks:
        s.on_devices(devices)
    for s in sinks:
        s.on_stats(stats)


class MemorySink(Sink):
    """Keeps everything in memory (the library's :func:`iotwatch.analyze`)."""

    def __init__(self, keep_flows: bool = True) -> None:
        self.keep_flows = keep_flows
        self._flows: list[pa.Table] = []
        self._windows: list[pa.Table] = []
        self.devices: dict[str, DeviceRecord] = {}
        self.alerts: list[Alert] = []
        self.stats: Stats | None = None

    def on_alerts(self, alerts: list[Alert]) -> None:
        self.alerts = list(alerts)

    def on_flows(self, flows: pa.Table) -> None:
        if self.keep_flows:
            self._flows.append(flows)

    def on_windows(self, windows: pa.Table) -> None:
        self._windows.append(windows)

    def on_devices(self, devices: dict[str, DeviceRecord]) -> None:
        self.devices = devices

    def on_stats(self, stats: Stats) -> None:
        self.stats = stats

    @property
    def flows(self) -> pa.Table:
        return pa.concat_tables(self._flows) if self._flows else FLOW_SCHEMA.empty_table()

    @property
    def windows(self) -> pa.Table:
        if not self._windows:
            return WINDOW_SCHEMA.empty_table()
        t = pa.concat_tables(self._windows)
        return t.sort_by([("window_start", "ascending"), ("device", "ascending")])


#: flows per file of ``flows.parquet/``: a Parquet writer keeps every row group's metadata
#: (about 20 kB per 16,384-flow group) until its file is closed, so one file per million flows
#: keeps memory flat however many flows a capture has
FLOWS_PER_PART = 1 << 20


class ParquetSink(Sink):
    """Streams flows into ``flows.parquet/part-NNNNN.parquet`` (a dataset folder, as Spark and
    Dask write them) and windows into ``windows.parquet``."""

    def __init__(self, out_dir: Path, flows_per_part: int = FLOWS_PER_PART) -> None:
        self.flows_path = out_dir / "flows.parquet"
        self.windows_path = out_dir / "windows.parquet"
        self.flows_per_part = flows_per_part
        self._part = 0
        self._part_rows = 0
        try:
            _empty_dataset_folder(self.flows_path)
            self._flows = self._open_part()
            self._windows = pq.ParquetWriter(self.windows_path, WINDOW_SCHEMA, compression="lz4",
                                             use_dictionary=["device"])
        except OSError as e:
            raise OutputError(f"{out_dir}: cannot write Parquet files: {e}") from None

    def _part_path(self, writing: bool) -> Path:
        # a part being written has a hidden name (Arrow, pandas, Dask and DuckDB's glob skip it)
        # and takes its own name when it is closed: a reader never opens half a file
        return self.flows_path / (f".part-{self._part:05d}.parquet.writing" if writing else f"part-{self._part:05d}.parquet")

    def _close_part(self) -> None:
        self._flows.close()
        writing = self._part_path(True)
        if writing.exists():  # (closing twice is harmless, as for the writer)
            os.replace(writing, self._part_path(False))

    def _open_part(self) -> pq.ParquetWriter:
        # lz4 and dictionaries only where values repeat: twice as fast to write as zstd with
        # dictionaries everywhere, for files 1.3x larger (docs/benchmarks.md)
        return pq.ParquetWriter(self._part_path(True), FLOW_SCHEMA, compression="lz4",
                                use_dictionary=["state", "reason", "src_mac", "dest_mac", "proto", "history", "conn_state"],
                                write_statistics=["flow_id", "start", "end", "proto", "src_ip", "dest_ip",
                                                  "src_port", "dest_port"])

    def on_flows(self, flows: pa.Table) -> None:
        while flows.num_rows:
            room = self.flows_per_part - self._part_rows
            if room <= 0:
                self._close_part()
                self._part += 1
                self._part_rows = 0
                self._flows = self._open_part()
                continue
            piece = flows.slice(0, room)
            self._flows.write_table(piece)
            self._part_rows += piece.num_rows
            flows = flows.slice(piece.num_rows)

    def on_windows(self, windows: pa.Table) -> None:
        self._windows.write_table(windows)

    def close_part(self) -> None:
        """Close the current flows part, so that it can be read now, if it holds flows; the next
        flows go to a new part (a live capture calls this on a timer)."""
        if self._part_rows:
            self._close_part()
            self._part += 1
            self._part_rows = 0
            self._flows = self._open_part()

    def close(self) -> None:
        self._close_part()
        self._windows.close()


def _empty_dataset_folder(path: Path) -> None:
    """Make ``path`` an empty folder for a new run's parts: the parts of an earlier run into the
    same output folder (or the single file earlier versions wrote there) would read as this run's."""
    if path.is_file() or path.is_symlink():
        path.unlink()
    path.mkdir(parents=True, exist_ok=True)
    for old in (*path.glob("part-*.parquet"), *path.glob(".part-*.parquet.writing")):
        old.unlink()


def _json_number(x: float) -> float | int | None:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


_JSON_KIND = {"int": INT, "float": FLOAT, "string": STR, "string or null": STR_OR_NULL, "ISO-8601 string": ISO,
              "hex string": HEX2}


def _flow_template() -> list[str | Col | If]:
    """Suricata's flow event, generated from records.FLOW_EVENT_FIELDS: top-level fields, then
    the ``flow`` object, then (TCP only) the ``tcp`` object."""
    def pieces(fields: list[EventField], first: bool) -> list[str | Col | If]:
        out: list[str | Col | If] = []
        for k, f in enumerate(fields):
            name = f.path.rpartition(".")[2]
            kind = _JSON_KIND[f.json]
            quote = '"' if kind in (STR, ISO, HEX2) else ""
            sep = "" if first and k == 0 else ","
            out += [f'{sep}"{name}":{quote}', Col(kind, f.column)]
            if quote:
                out.append(quote)
        return out

    top = [f for f in FLOW_EVENT_FIELDS if "." not in f.path]
    flow = [f for f in FLOW_EVENT_FIELDS if f.path.startswith("flow.")]
    tcp = [f for f in FLOW_EVENT_FIELDS if f.path.startswith("tcp.")]
    return ['{"event_type":"flow"', *pieces(top, False), ',"flow":{', *pieces(flow, True), "}",
            If("is_tcp", [',"tcp":{', *pieces(tcp, True), "}"]), "}\n"]


FLOW_TEMPLATE = _flow_template()
_FLAG_BITS = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20}


def flow_event_lines(flows: pa.Table) -> memoryview:
    """One EVE ``flow`` JSON object per row (Suricata's field names), rendered in bulk."""
    cols: dict[str, object] = {}
    for name in flows.column_names:
        v = flows.column(name).combine_chunks()
        cols[name] = v.to_numpy() if (pa.types.is_integer(v.type) or pa.types.is_floating(v.type)) else v
    cols["proto_name"] = pa.DictionaryArray.from_arrays(cols["proto"].astype(np.int32), _PROTO_NAMES).dictionary_decode()  # type: ignore[union-attr]
    cols["is_tcp"] = cols["proto"] == 6  # type: ignore[operator]
    for side in ("toserver", "toclient"):
        bits = np.zeros(flows.num_rows, np.int64)
        for flag, bit in _FLAG_BITS.items():
            bits |= np.where(cols[f"{flag}_{side}"] > 0, bit, 0)  # type: ignore[operator]
        cols["tcp_flags_" + ("ts" if side == "toserver" else "tc")] = bits
    cols["tcp_flags"] = cols["tcp_flags_ts"] | cols["tcp_flags_tc"]  # type: ignore[operator]
    return format_lines(FLOW_TEMPLATE, cols, flows.num_rows)  # type: ignore[arg-type]


class EveSink(Sink):
    """Writes ``events.jsonl``: flow events as flows end, then alerts, then devices, then the stats object."""

    def __init__(self, path: Path, flow_events: bool = False) -> None:
        self.path = path
        self.flow_events = flow_events
        try:
            self._f: IO[bytes] = open(path, "wb")
        except OSError as e:
            raise OutputError(f"{path}: cannot write: {e.strerror or e}") from None

    def on_flows(self, flows: pa.Table) -> None:
        if self.flow_events and flows.num_rows:
            self._f.write(flow_event_lines(flows))

    def write_event(self, event: dict[str, object]) -> None:
        self._f.write(json.dumps(event, separators=(",", ":"), default=_json_number).encode() + b"\n")

    def on_alerts(self, alerts: list[Alert]) -> None:
        for a in alerts:
            self.write_event(a.to_event())

    def on_devices(self, devices: dict[str, DeviceRecord]) -> None:
        for d in sorted(devices.values(), key=lambda d: (-d.upload_bytes, -d.bytes_out, d.key)):
            self.write_event(d.to_event())

    def on_stats(self, stats: Stats) -> None:
        self.write_event(stats.to_event())

    def close(self) -> None:
        self._f.close()
