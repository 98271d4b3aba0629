"""Where results go: memory, Parquet files, and the EVE-style ``events.jsonl``.

A sink receives finished flows and closed windows as pyarrow tables while the input streams,
then the device totals and the run statistics at the end. Flow events are formatted in bulk with
pyarrow compute kernels (no Python dict per flow), so a flood of a million flows stays cheap.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import IO, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import OutputError
from .records import FLOW_SCHEMA, TCP_FLAGS, WINDOW_SCHEMA, DeviceRecord, Stats

PROTO_NAMES = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 41: "IPv6", 47: "GRE", 50: "ESP", 51: "AH",
               58: "IPv6-ICMP", 89: "OSPF", 103: "PIM", 112: "VRRP", 132: "SCTP", 136: "UDPLite"}
_PROTO_TABLE = pa.array([PROTO_NAMES.get(i, str(i)) for i in range(256)], pa.string())


class Sink(Protocol):
    def on_flows(self, flows: pa.Table) -> None: ...
    def on_windows(self, windows: pa.Table) -> None: ...
    def on_devices(self, devices: dict[str, DeviceRecord]) -> None: ...
    def on_stats(self, stats: Stats) -> None: ...
    def close(self) -> None: ...


class MemorySink:
    """Keeps everything in memory (the library's :func:`iotwatch.analyze`)."""

    def __init__(self, keep_flows: bool = True) -> None:
        self.keep_flows = keep_flows
        self._flows: list[pa.Table] = []
        self._windows: list[pa.Table] = []
        self.devices: dict[str, DeviceRecord] = {}
        self.stats: Stats | None = None

    def on_flows(self, flows: pa.Table) -> None:
        if self.keep_flows:
            self._flows.append(flows)

    def on_windows(self, windows: pa.Table) -> None:
        self._windows.append(windows)

    def on_devices(self, devices: dict[str, DeviceRecord]) -> None:
        self.devices = devices

    def on_stats(self, stats: Stats) -> None:
        self.stats = stats

    def close(self) -> None:
        pass

    @property
    def flows(self) -> pa.Table:
        return pa.concat_tables(self._flows) if self._flows else FLOW_SCHEMA.empty_table()

    @property
    def windows(self) -> pa.Table:
        if not self._windows:
            return WINDOW_SCHEMA.empty_table()
        t = pa.concat_tables(self._windows)
        return t.sort_by([("window_start", "ascending"), ("device", "ascending")])


class ParquetSink:
    """Streams flows and windows into ``flows.parquet`` and ``windows.parquet``."""

    def __init__(self, out_dir: Path) -> None:
        self.flows_path = out_dir / "flows.parquet"
        self.windows_path = out_dir / "windows.parquet"
        try:
            self._flows = pq.ParquetWriter(self.flows_path, FLOW_SCHEMA, compression="zstd")
            self._windows = pq.ParquetWriter(self.windows_path, WINDOW_SCHEMA, compression="zstd")
        except OSError as e:
            raise OutputError(f"{out_dir}: cannot write Parquet files: {e}") from None

    def on_flows(self, flows: pa.Table) -> None:
        self._flows.write_table(flows)

    def on_windows(self, windows: pa.Table) -> None:
        self._windows.write_table(windows)

    def on_devices(self, devices: dict[str, DeviceRecord]) -> None:
        pass

    def on_stats(self, stats: Stats) -> None:
        pass

    def close(self) -> None:
        self._flows.close()
        self._windows.close()


def _json_number(x: float) -> float | int | None:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _str(arr: pa.Array) -> pa.Array:
    return pc.cast(arr, pa.string())


def _quoted_or_null(arr: pa.Array) -> pa.Array:
    quoted = pc.binary_join_element_wise('"', arr, '"', "")
    return pc.fill_null(quoted, "null")


def flow_event_lines(flows: pa.Table) -> pa.Array:
    """One EVE ``flow`` JSON object per row, built column-wise (Suricata's field names)."""
    c = flows.column
    us = pc.cast(pc.round(pc.multiply(c("start"), 1e6)), pa.int64())
    ts = pc.strftime(pc.cast(us, pa.timestamp("us", tz="UTC")), format="%Y-%m-%dT%H:%M:%S%z")
    proto = pc.take(_PROTO_TABLE, c("proto"))
    parts: list[object] = [
        '{"event_type":"flow","timestamp":"', ts,
        '","flow_id":', _str(c("flow_id")),
        ',"community_id":"', c("community_id"),
        '","src_ip":"', c("src_ip"), '","src_port":', _str(c("src_port")),
        ',"dest_ip":"', c("dest_ip"), '","dest_port":', _str(c("dest_port")),
        ',"proto":"', proto, '","ip_version":', _str(c("ip_version")),
        ',"src_mac":', _quoted_or_null(c("src_mac")), ',"dest_mac":', _quoted_or_null(c("dest_mac")),
        ',"vlan":', _str(c("vlan")),
        ',"flow":{"pkts_toserver":', _str(c("pkts_toserver")), ',"pkts_toclient":', _str(c("pkts_toclient")),
        ',"bytes_toserver":', _str(c("bytes_toserver")), ',"bytes_toclient":', _str(c("bytes_toclient")),
        ',"payload_toserver":', _str(c("payload_toserver")), ',"payload_toclient":', _str(c("payload_toclient")),
        ',"start":', _str(c("start")), ',"end":', _str(c("end")),
        ',"state":"', c("state"), '","reason":"', c("reason"), '"}',
        ',"tcp":{',
    ]
    for k, flag in enumerate(TCP_FLAGS):
        sep = "" if k == 0 else ","
        parts += [f'{sep}"{flag}_toserver":', _str(c(f"{flag}_toserver")), f',"{flag}_toclient":', _str(c(f"{flag}_toclient"))]
    parts.append("}}\n")
    return pc.binary_join_element_wise(*parts, "")


class EveSink:
    """Writes ``events.jsonl``: flow events as flows end, then devices, then the stats object."""

    def __init__(self, path: Path, flow_events: bool = True) -> None:
        self.path = path
        self.flow_events = flow_events
        try:
            self._f: IO[bytes] = open(path, "wb")  # noqa: SIM115 - closed in close()
        except OSError as e:
            raise OutputError(f"{path}: cannot write: {e.strerror or e}") from None

    def on_flows(self, flows: pa.Table) -> None:
        if self.flow_events and flows.num_rows:
            lines = flow_event_lines(flows)
            # the concatenated character data of a string array is exactly the JSON lines
            lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
            offsets, data = lines.buffers()[1], lines.buffers()[2]
            start = pa.Array.from_buffers(pa.int32(), len(lines) + 1, [None, offsets])
            lo, hi = start[0].as_py(), start[len(lines)].as_py()
            self._f.write(memoryview(data)[lo:hi])  # type: ignore[arg-type]

    def on_windows(self, windows: pa.Table) -> None:
        pass

    def write_event(self, event: dict[str, object]) -> None:
        self._f.write(json.dumps(event, separators=(",", ":"), default=_json_number).encode() + b"\n")

    def on_devices(self, devices: dict[str, DeviceRecord]) -> None:
        for d in sorted(devices.values(), key=lambda d: (-d.upload_bytes, -d.bytes_out, d.key)):
            self.write_event(d.to_event())

    def on_stats(self, stats: Stats) -> None:
        self.write_event(stats.to_event())

    def close(self) -> None:
        self._f.close()
