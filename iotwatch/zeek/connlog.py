"""Flows → Zeek conn.log (TSV with Zeek's header, or JSON lines), in bulk.

Every field is Zeek's (base/protocols/conn/main.zeek as of Zeek 6.1, which added ``ip_proto``
and logs other IP protocols as ``unknown_transport``; plus ``community_id`` as the community-id
package adds it), and so are the rules for unset values: ``duration``, ``orig_bytes`` and
``resp_bytes`` are unset ("-" in TSV, absent in JSON) when the flow lasted no time, ``service`` is
always unset (no protocol detection here), ``history`` is unset when empty. ``history`` and
``conn_state`` come from the flow table, which runs Zeek's TCP endpoint state machine per packet
(``iotwatch.flows``). Rows are rendered by the compiled template writer of ``jsonfmt``: no Python
per flow.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..addrs import LocalNets, addr_classes, parse_ips
from ..errors import OutputError
from ..jsonfmt import FLOAT, INT, STR, Col, If, Template, format_lines
from ..sinks import Sink

#: conn.log's fields and Zeek types, in Zeek's order (IoT-23's conn.log.labeled has these, then label columns)
CONN_FIELDS: tuple[tuple[str, str], ...] = (
    ("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"), ("id.resp_h", "addr"),
    ("id.resp_p", "port"), ("proto", "enum"), ("service", "string"), ("duration", "interval"),
    ("orig_bytes", "count"), ("resp_bytes", "count"), ("conn_state", "string"), ("local_orig", "bool"),
    ("local_resp", "bool"), ("missed_bytes", "count"), ("history", "string"), ("orig_pkts", "count"),
    ("orig_ip_bytes", "count"), ("resp_pkts", "count"), ("resp_ip_bytes", "count"),
    ("tunnel_parents", "set[string]"), ("ip_proto", "count"), ("community_id", "string"),
)
FORMATS = ("tsv", "json")

_B62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)
_TRANSPORT = np.full(256, 3, np.int8)  # Zeek's transport_proto: tcp, udp, icmp, unknown_transport
_TRANSPORT[6], _TRANSPORT[17], _TRANSPORT[1], _TRANSPORT[58] = 0, 1, 2, 2
_TRANSPORT_NAMES = pa.array(["tcp", "udp", "icmp", "unknown_transport"])


def _uids(flow_id: np.ndarray, start: np.ndarray) -> pa.Array:
    """Zeek-style connection UIDs ("C" + 11 base-62 digits), a hash of the flow's number and first
    packet time: stable for the same input, distinct between flows."""
    with np.errstate(over="ignore"):
        h = flow_id.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ np.round(start * 1e6).astype(np.uint64)
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    chars = np.empty((len(h), 12), np.uint8)
    chars[:, 0] = ord("C")
    for k in range(11):
        chars[:, k + 1] = _B62[(h % np.uint64(62)).astype(np.int64)]
        h //= np.uint64(62)
    offsets = np.arange(0, 12 * len(h) + 1, 12, dtype=np.int32)
    return pa.StringArray.from_buffers(len(h), pa.py_buffer(offsets), pa.py_buffer(chars))


def conn_log_columns(flows: pa.Table, nets: LocalNets) -> dict[str, np.ndarray | pa.Array]:
    """The conn.log columns of a flow table (``records.FLOW_SCHEMA``), for :func:`render` or for
    a reader to compare with: numbers as numpy arrays, text as Arrow arrays."""
    def num(name: str) -> np.ndarray:
        return flows.column(name).to_numpy()

    start, end = num("start"), num("end")
    proto = num("proto")
    duration = end - start
    src = flows.column("src_ip").combine_chunks()
    dst = flows.column("dest_ip").combine_chunks()
    hist = flows.column("history").combine_chunks()
    return {
        "ts": start,
        "uid": _uids(num("flow_id"), start),
        "id.orig_h": src,
        "id.orig_p": num("src_port").astype(np.int64),
        "id.resp_h": dst,
        "id.resp_p": num("dest_port").astype(np.int64),
        "proto": pa.DictionaryArray.from_arrays(_TRANSPORT[proto], _TRANSPORT_NAMES).dictionary_decode(),
        "duration": duration,
        "has_duration": (duration > 0).astype(np.int64),
        "no_duration": (duration <= 0).astype(np.int64),
        "orig_bytes": num("payload_toserver").astype(np.int64),
        "resp_bytes": num("payload_toclient").astype(np.int64),
        "conn_state": flows.column("conn_state").combine_chunks().cast(pa.string()),
        "local_orig": _local(src, nets),
        "local_resp": _local(dst, nets),
        "missed_bytes": np.zeros(flows.num_rows, np.int64),
        "ip_proto": proto.astype(np.int64),
        "history": hist,
        "has_history": (pc.utf8_length(hist).to_numpy(zero_copy_only=False) > 0).astype(np.int64),
        "no_history": (pc.utf8_length(hist).to_numpy(zero_copy_only=False) == 0).astype(np.int64),
        "orig_pkts": num("pkts_toserver").astype(np.int64),
        "orig_ip_bytes": num("ip_bytes_toserver").astype(np.int64),
        "resp_pkts": num("pkts_toclient").astype(np.int64),
        "resp_ip_bytes": num("ip_bytes_toclient").astype(np.int64),
        "community_id": flows.column("community_id").combine_chunks(),
    }


def _local(addrs: pa.Array, nets: LocalNets) -> np.ndarray:
    """1 where an address is local (RFC 1918, link-local, ULA, --local-net), else 0."""
    _ok, _v6, hi, lo = parse_ips(addrs)
    return (addr_classes(hi, lo, nets) == 1).astype(np.int64)


def _tsv_template() -> Template:
    t: Template = [Col(FLOAT, "ts"), "\t", Col(STR, "uid"), "\t", Col(STR, "id.orig_h"), "\t", Col(INT, "id.orig_p"), "\t",
                   Col(STR, "id.resp_h"), "\t", Col(INT, "id.resp_p"), "\t", Col(STR, "proto"), "\t-\t",
                   If("has_duration", [Col(FLOAT, "duration"), "\t", Col(INT, "orig_bytes"), "\t", Col(INT, "resp_bytes")]),
                   If("no_duration", ["-\t-\t-"]),
                   "\t", Col(STR, "conn_state"), "\t",
                   If("local_orig", ["T"]), If("remote_orig", ["F"]), "\t",
                   If("local_resp", ["T"]), If("remote_resp", ["F"]), "\t",
                   Col(INT, "missed_bytes"), "\t", If("has_history", [Col(STR, "history")]), If("no_history", ["-"]), "\t",
                   Col(INT, "orig_pkts"), "\t", Col(INT, "orig_ip_bytes"), "\t", Col(INT, "resp_pkts"), "\t",
                   Col(INT, "resp_ip_bytes"), "\t-\t", Col(INT, "ip_proto"), "\t", Col(STR, "community_id"), "\n"]
    return t


def _json_template() -> Template:
    t: Template = ['{"ts":', Col(FLOAT, "ts"), ',"uid":"', Col(STR, "uid"), '","id.orig_h":"', Col(STR, "id.orig_h"),
                   '","id.orig_p":', Col(INT, "id.orig_p"), ',"id.resp_h":"', Col(STR, "id.resp_h"),
                   '","id.resp_p":', Col(INT, "id.resp_p"), ',"proto":"', Col(STR, "proto"), '"',
                   If("has_duration", [',"duration":', Col(FLOAT, "duration"), ',"orig_bytes":', Col(INT, "orig_bytes"),
                                       ',"resp_bytes":', Col(INT, "resp_bytes")]),
                   ',"conn_state":"', Col(STR, "conn_state"), '"',
                   ',"local_orig":', If("local_orig", ["true"]), If("remote_orig", ["false"]),
                   ',"local_resp":', If("local_resp", ["true"]), If("remote_resp", ["false"]),
                   ',"missed_bytes":', Col(INT, "missed_bytes"),
                   If("has_history", [',"history":"', Col(STR, "history"), '"']),
                   ',"orig_pkts":', Col(INT, "orig_pkts"), ',"orig_ip_bytes":', Col(INT, "orig_ip_bytes"),
                   ',"resp_pkts":', Col(INT, "resp_pkts"), ',"resp_ip_bytes":', Col(INT, "resp_ip_bytes"),
                   ',"ip_proto":', Col(INT, "ip_proto"), ',"community_id":"', Col(STR, "community_id"), '"}\n']
    return t


_TEMPLATES = {"tsv": _tsv_template(), "json": _json_template()}


def render(flows: pa.Table, nets: LocalNets, fmt: str = "tsv") -> memoryview:
    """conn.log lines (no header) for a flow table."""
    cols = conn_log_columns(flows, nets)
    cols["remote_orig"] = 1 - cols["local_orig"]  # type: ignore[operator]
    cols["remote_resp"] = 1 - cols["local_resp"]  # type: ignore[operator]
    return format_lines(_TEMPLATES[fmt], cols, flows.num_rows)


def _zeek_time(t: float) -> str:
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(t))


def tsv_header(opened: float) -> str:
    names = "\t".join(n for n, _ in CONN_FIELDS)
    types = "\t".join(t for _, t in CONN_FIELDS)
    return ("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
            f"#open\t{_zeek_time(opened)}\n#fields\t{names}\n#types\t{types}\n")


class ZeekSink(Sink):
    """Writes ``conn.log`` (Zeek TSV with its header and ``#close`` line, or JSON lines, as Zeek's
    ``LogAscii::use_json`` writes them) as flows finish."""

    def __init__(self, path: Path, nets: LocalNets, fmt: str = "tsv") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"conn.log format must be one of {', '.join(FORMATS)}")
        self.path = path
        self.nets = nets
        self.fmt = fmt
        try:
            self._f: IO[bytes] = open(path, "wb")
            if fmt == "tsv":
                self._f.write(tsv_header(time.time()).encode())
        except OSError as e:
            raise OutputError(f"{path}: cannot write: {e.strerror or e}") from None

    def on_flows(self, flows: pa.Table) -> None:
        if flows.num_rows:
            self._f.write(render(flows, self.nets, self.fmt))

    def close(self) -> None:
        if self._f.closed:
            return
        if self.fmt == "tsv":
            self._f.write(f"#close\t{_zeek_time(time.time())}\n".encode())
        self._f.close()
