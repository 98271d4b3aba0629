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
from .jsonfmt import FLOAT, INT, ISO, STR, STR_OR_NULL, Col, format_lines
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


def _flow_template() -> list[str | Col]:
    t: list[str | Col] = [
        '{"event_type":"flow","timestamp":"', Col(ISO, "start"), '","flow_id":', Col(INT, "flow_id"),
        ',"community_id":"', Col(STR, "community_id"),
        '","src_ip":"', Col(STR, "src_ip"), '","src_port":', Col(INT, "src_port"),
        ',"dest_ip":"', Col(STR, "dest_ip"), '","dest_port":', Col(INT, "dest_port"),
        ',"proto":"', Col(STR, "proto_name"), '","ip_version":', Col(INT, "ip_version"),
        ',"src_mac":', Col(STR_OR_NULL, "src_mac"), ',"dest_mac":', Col(STR_OR_NULL, "dest_mac"),
        ',"vlan":', Col(INT, "vlan"), ',"flow":{',
    ]
    for k, name in enumerate(("pkts_toserver", "pkts_toclient", "bytes_toserver", "bytes_toclient",
                              "payload_toserver", "payload_toclient")):
        t += [("," if k else "") + f'"{name}":', Col(INT, name)]
    t += [',"start":', Col(FLOAT, "start"), ',"end":', Col(FLOAT, "end"),
          ',"state":"', Col(STR, "state"), '","reason":"', Col(STR, "reason"), '"},"tcp":{']
    for k, flag in enumerate(TCP_FLAGS):
        for side in ("toserver", "toclient"):
            t += [("," if k or side == "toclient" else "") + f'"{flag}_{side}":', Col(INT, f"{flag}_{side}")]
    t.append("}}\n")
    return t


FLOW_TEMPLATE = _flow_template()


def flow_event_lines(flows: pa.Table) -> memoryview:
    """One EVE ``flow`` JSON object per row (Suricata's field names), rendered in bulk."""
    cols: dict[str, object] = {name: flows.column(name).combine_chunks() for name in flows.column_names}
    cols["proto_name"] = pc.take(_PROTO_TABLE, cols["proto"])
    for name, v in list(cols.items()):
        if pa.types.is_integer(v.type) or pa.types.is_floating(v.type):  # type: ignore[attr-defined]
            cols[name] = v.to_numpy()  # type: ignore[attr-defined]
    return format_lines(FLOW_TEMPLATE, cols, flows.num_rows)  # type: ignore[arg-type]


class EveSink:
    """Writes ``events.jsonl``: flow events as flows end, then devices, then the stats object."""

    def __init__(self, path: Path, flow_events: bool = True) -> None:
        self.path = path
        self.flow_events = flow_events
        try:
            self._f: IO[bytes] = open(path, "wb")
        except OSError as e:
            raise OutputError(f"{path}: cannot write: {e.strerror or e}") from None

    def on_flows(self, flows: pa.Table) -> None:
        if self.flow_events and flows.num_rows:
            self._f.write(flow_event_lines(flows))

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
