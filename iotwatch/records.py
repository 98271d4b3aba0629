"""Every record iotwatch produces, declared once: name, type, unit, meaning.

Like dpkt's header tables, the field lists below are the single place that says what a
flow row or a device-window row holds; the Parquet schemas, the EVE writers and the docs are
derived from them (``docs/records.md`` is generated from this module by ``make docs``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pyarrow as pa


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: pa.DataType
    unit: str
    doc: str


def schema(fields: tuple[Field, ...]) -> pa.Schema:
    return pa.schema([pa.field(f.name, f.type) for f in fields])


_U64, _U32, _U16, _U8, _F64, _STR = pa.uint64(), pa.uint32(), pa.uint16(), pa.uint8(), pa.float64(), pa.string()
_CAT = pa.dictionary(pa.int8(), pa.string())  # a string from a small fixed vocabulary

TCP_FLAGS = ("syn", "ack", "fin", "rst", "psh", "urg")

FLOW_FIELDS: tuple[Field, ...] = (
    Field("flow_id", _U64, "", "sequence number of the flow in this run, unique per run"),
    Field("community_id", _STR, "", "Community ID v1 (seed 0), joins with Zeek and Suricata"),
    Field("proto", _U8, "", "IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...)"),
    Field("ip_version", _U8, "", "4 or 6"),
    Field("src_ip", _STR, "", "address of the side that sent the first packet (the client)"),
    Field("src_port", _U16, "", "client port; ICMP type for ICMP"),
    Field("dest_ip", _STR, "", "address of the other side (the server)"),
    Field("dest_port", _U16, "", "server port; ICMP code for ICMP"),
    Field("src_mac", _STR, "", "Ethernet source of the first packet (null without Ethernet)"),
    Field("dest_mac", _STR, "", "Ethernet destination of the first packet (null without Ethernet)"),
    Field("vlan", _U16, "", "outer 802.1Q VLAN id of the first packet, 0 if untagged"),
    Field("pkts_toserver", _U32, "packets", "packets sent by the client"),
    Field("pkts_toclient", _U32, "packets", "packets sent by the server"),
    Field("bytes_toserver", _U64, "bytes", "frame bytes on the wire sent by the client (as Wireshark counts)"),
    Field("bytes_toclient", _U64, "bytes", "frame bytes on the wire sent by the server"),
    Field("payload_toserver", _U64, "bytes", "transport payload bytes sent by the client"),
    Field("payload_toclient", _U64, "bytes", "transport payload bytes sent by the server"),
    *(
        Field(f"{flag}_{side}", _U32, "packets", f"TCP packets with {flag.upper()} set sent {side.replace('to', 'to the ')}")
        for flag in TCP_FLAGS
        for side in ("toserver", "toclient")
    ),
    Field("start", _F64, "epoch s", "timestamp of the first packet"),
    Field("end", _F64, "epoch s", "timestamp of the last packet"),
    Field("state", _CAT, "", "TCP handshake outcome: syn_unanswered, established, rejected (RST to SYN), "
          "reset, closed (FIN both ways), midstream (no SYN seen), none (not TCP)"),
    Field("reason", _CAT, "", "why the flow ended: idle, active (timeouts), end (of input), evicted (table full)"),
    Field("ip_bytes_toserver", _U64, "bytes", "IP bytes sent by the client, from the IP headers' length fields "
          "(Zeek's orig_ip_bytes)"),
    Field("ip_bytes_toclient", _U64, "bytes", "IP bytes sent by the server (Zeek's resp_ip_bytes)"),
    Field("history", _STR, "", "Zeek's connection history: the letters S h a d f r q i (client upper case, "
          "server lower case) in the order each first appeared; D/d per direction for UDP (docs/zeek.md)"),
    Field("conn_state", _CAT, "", "Zeek's conn_state: S0 S1 SF REJ S2 S3 RSTO RSTR RSTOS0 RSTRH SH SHR OTH "
          "(docs/zeek.md)"),
    # exchanges within the flow: what a heartbeat, a poll or a command looks like from outside
    *(
        f
        for side, who in (("toserver", "client"), ("toclient", "server"))
        for f in (
            Field(f"pushes_{side}", _U32, "exchanges", f"exchanges the {who} started: its data packets that came "
                  "1 s or more after the flow's previous data packet (either side)"),
            Field(f"push_interval_{side}", _F64, "s", f"mean time between consecutive exchanges the {who} started "
                  "(0 with fewer than two)"),
            Field(f"push_interval_cv_{side}", _F64, "", f"coefficient of variation (standard deviation / mean) of "
                  f"those times: near 0 for a {who} that speaks like clockwork (0 with fewer than three exchanges)"),
            Field(f"push_bytes_{side}", _U64, "bytes", f"payload the {who} sent within the exchanges it started"),
            Field(f"beats_{side}", _U32, "exchanges", f"of the exchanges the {who} started, those on its beat: one "
                  "reference interval (within 10 %; or a whole number of them, within 20 %, when up to 7 beats "
                  "were skipped) after its previous beat, extra exchanges in between left aside; an interval is "
                  "confirmed by the exchange that keeps it, and the exchange it was measured from counts too (a "
                  "heartbeat's count, however chatty the session is otherwise)"),
            Field(f"beat_interval_{side}", _F64, "s", f"the {who}'s beat: the reference interval its beats kept "
                  "(0 without a beat)"),
        )
    ),
)

WINDOW_FIELDS: tuple[Field, ...] = (
    Field("device", _STR, "", "device key: MAC address, or IP address for captures without Ethernet"),
    Field("window_start", _F64, "epoch s", "start of the window (aligned to a multiple of the window length)"),
    Field("window_s", _F64, "s", "window length"),
    Field("packets_out", _U64, "packets", "frames the device sent"),
    Field("packets_in", _U64, "packets", "frames sent to the device"),
    Field("bytes_out", _U64, "bytes", "frame bytes the device sent"),
    Field("bytes_in", _U64, "bytes", "frame bytes sent to the device"),
    Field("upload_bytes", _U64, "bytes", "frame bytes the device sent to external (non-local, unicast) addresses"),
    Field("download_bytes", _U64, "bytes", "frame bytes the device received from external addresses"),
    Field("dst_ips", _U64, "addresses", "distinct destination IP addresses the device sent to"),
    Field("dst_ports", _U64, "ports", "distinct destination (protocol, port) pairs of TCP/UDP the device sent to"),
    Field("new_flows", _U64, "flows", "flows the device started"),
    Field("syn_flows", _U64, "flows", "TCP flows the device opened with a SYN"),
    Field("syn_answered", _U64, "flows", "of those, answered by a SYN-ACK"),
    Field("syn_rejected", _U64, "flows", "of those, answered by a RST"),
    Field("syn_unanswered", _U64, "flows", "syn_flows - syn_answered - syn_rejected"),
    Field("failed_handshake_ratio", _F64, "", "(syn_flows - syn_answered) / syn_flows, 0 without SYNs"),
    Field("rst_in", _U64, "packets", "TCP resets received"),
    Field("auth_attempts", _U64, "flows", "TCP flows the device started to telnet/SSH ports (23, 2323, 22)"),
    Field("dns_queries", _U64, "packets", "DNS queries the device sent (port 53, QR bit clear)"),
    Field("upload_share", _F64, "", "device's share of all LAN→WAN bytes in this window (0..1)"),
    Field("distinct_saturated", pa.bool_(), "", "true when the distinct-value table was full: dst_ips/dst_ports are lower bounds"),
    Field("mirai_syns", _U64, "packets", "TCP SYNs the device sent whose sequence number equals the destination IPv4 "
          "address (Mirai's scanner signature)"),
)

@dataclass(frozen=True, slots=True)
class EventField:
    """One field of a JSON event: where it sits (``flow.pkts_toserver``), the column it is
    written from, how it is written, its unit and meaning."""

    path: str
    column: str
    json: str  # int | float | string | string or null | ISO-8601 string | hex string
    unit: str
    doc: str


def _from_flow(name: str, path: str | None = None) -> EventField:
    f = next(x for x in FLOW_FIELDS if x.name == name)
    json = "float" if pa.types.is_floating(f.type) else "int" if pa.types.is_integer(f.type) else "string"
    if name in ("src_mac", "dest_mac"):
        json = "string or null"
    return EventField(path or name, name, json, f.unit, f.doc)


#: the ``flow`` event (``--flow-events``), Suricata's layout: counters under ``flow``, TCP flags
#: under ``tcp`` (only for TCP). The JSON writer (sinks.flow_event_lines) is generated from
#: this list, and so is its table in docs/records.md.
FLOW_EVENT_FIELDS: tuple[EventField, ...] = (
    EventField("timestamp", "start", "ISO-8601 string", "UTC", "the flow's first packet (Suricata's event time); "
               "the same instant as `flow.start`"),
    _from_flow("flow_id"), _from_flow("community_id"),
    _from_flow("src_ip"), _from_flow("src_port"), _from_flow("dest_ip"), _from_flow("dest_port"),
    EventField("proto", "proto_name", "string", "", "IP protocol by name, as Suricata writes it (TCP, UDP, ICMP, "
               "IPv6-ICMP, GRE, ...; the number when it has no name). The number is `ip_proto`"),
    EventField("ip_proto", "proto", "int", "", "IP protocol number: flows.parquet's `proto` (6 TCP, 17 UDP, 1 ICMP, "
               "58 ICMPv6, ...)"),
    _from_flow("ip_version"), _from_flow("src_mac"), _from_flow("dest_mac"), _from_flow("vlan"),
    *(_from_flow(n, f"flow.{n}") for n in ("pkts_toserver", "pkts_toclient", "bytes_toserver", "bytes_toclient",
                                           "payload_toserver", "payload_toclient", "start", "end", "state", "reason")),
    EventField("tcp.tcp_flags", "tcp_flags", "hex string", "", "TCP only: the flags seen either way, OR-ed, two hex "
               "digits as Suricata writes them (FIN 01, SYN 02, RST 04, PSH 08, ACK 10, URG 20)"),
    EventField("tcp.tcp_flags_ts", "tcp_flags_ts", "hex string", "", "TCP only: the same for the client's packets"),
    EventField("tcp.tcp_flags_tc", "tcp_flags_tc", "hex string", "", "TCP only: the same for the server's packets"),
    *(_from_flow(f"{flag}_{side}", f"tcp.{flag}_{side}") for flag in TCP_FLAGS for side in ("toserver", "toclient")),
)

FLOW_SCHEMA = schema(FLOW_FIELDS)
WINDOW_SCHEMA = schema(WINDOW_FIELDS)


@dataclass(slots=True)
class DeviceRecord:
    """Totals for one device over the whole input. Mergeable with :meth:`merge`."""

    mac: str | None
    ips: list[str]
    packets_out: int = 0
    packets_in: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    upload_bytes: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    vendor: str | None = None
    device_type: str | None = None
    type_confidence: float | None = None
    evidence: list[str] = field(default_factory=list)
    model: str | None = None
    classified_by: str | None = None
    alerts: list[dict[str, object]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.mac if self.mac is not None else self.ips[0]

    def merge(self, other: DeviceRecord) -> DeviceRecord:
        ips = list(dict.fromkeys([*self.ips, *other.ips]))
        return DeviceRecord(
            mac=self.mac,
            ips=ips,
            packets_out=self.packets_out + other.packets_out,
            packets_in=self.packets_in + other.packets_in,
            bytes_out=self.bytes_out + other.bytes_out,
            bytes_in=self.bytes_in + other.bytes_in,
            upload_bytes=self.upload_bytes + other.upload_bytes,
            first_seen=min(self.first_seen, other.first_seen),
            last_seen=max(self.last_seen, other.last_seen),
            vendor=self.vendor or other.vendor,
            device_type=self.device_type or other.device_type,
            type_confidence=self.type_confidence if self.type_confidence is not None else other.type_confidence,
            evidence=list(dict.fromkeys([*self.evidence, *other.evidence])),
            model=self.model or other.model,
            classified_by=self.classified_by or other.classified_by,
            alerts=[*self.alerts, *other.alerts],
        )

    def to_event(self) -> dict[str, object]:
        d = asdict(self)
        if self.device_type is None:  # no inventory in this run: no identity fields
            for k in ("vendor", "device_type", "type_confidence", "evidence", "model", "classified_by"):
                del d[k]
        return {"event_type": "device", **d}


UNDECODABLE_LAYERS = ("link", "network", "transport")


@dataclass(slots=True)
class Stats:
    """Run statistics, written as the last ``stats`` event."""

    packets: int = 0
    bytes: int = 0
    files: int = 0
    undecodable: dict[str, int] = field(default_factory=lambda: dict.fromkeys(UNDECODABLE_LAYERS, 0))
    not_ip: int = 0
    fragments_without_first: int = 0
    flows: int = 0
    flows_evicted: int = 0
    devices: int = 0
    devices_untracked: int = 0
    windows: int = 0
    late_packets: int = 0
    alerts: int = 0
    problems: int = 0
    interrupted: bool = False
    elapsed_s: float = 0.0
    # live capture only (null for files): what the capture tool and the interface lost
    interface: str | None = None
    capture_received: int | None = None
    capture_drops: int | None = None
    if_drops: int | None = None
    ring_files: int | None = None
    verdict_lag_s: float | None = None
    verdict_lag_max_s: float | None = None
    backlog_max_bytes: int | None = None

    @property
    def packets_per_s(self) -> float:
        return self.packets / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_event(self) -> dict[str, object]:
        d = asdict(self)
        d["packets_per_s"] = round(self.packets_per_s, 1)
        d["elapsed_s"] = round(self.elapsed_s, 6)
        return {"event_type": "stats", **d}


DEVICE_FIELDS: tuple[Field, ...] = (
    Field("mac", _STR, "", "lower-case MAC address; null for captures without Ethernet (the device is its IP)"),
    Field("ips", pa.list_(_STR), "", "addresses the device sent from (local ones; all of them for a host with a "
          "public address on the segment; a router's forwarded internet addresses are left out), in order of first use"),
    Field("packets_out", _U64, "packets", "frames the device sent"),
    Field("packets_in", _U64, "packets", "frames sent to the device (unicast)"),
    Field("bytes_out", _U64, "bytes", "frame bytes sent, as Wireshark counts frame length"),
    Field("bytes_in", _U64, "bytes", "frame bytes received"),
    Field("upload_bytes", _U64, "bytes", "frame bytes sent to external unicast addresses"),
    Field("first_seen", _F64, "epoch s", "first frame from or to the device"),
    Field("last_seen", _F64, "epoch s", "last frame from or to the device"),
    Field("vendor", _STR, "", "vendor, from the MAC's OUI (IEEE registry, offline) or a product name; null if unknown"),
    Field("device_type", _STR, "", "camera, recorder, printer, computer, phone, hub, plug, sensor, speaker, router, "
          "appliance or unknown (docs/inventory.md)"),
    Field("type_confidence", _F64, "", "confidence of device_type, 0..1"),
    Field("evidence", pa.list_(_STR), "", "why: human-readable facts, strongest first "
          "(\"OUI: Hangzhou Hikvision\", \"serves RTSP on 554\", ...)"),
    Field("model", _STR, "", "product model when the traffic names it (\"DCS-935L\") or the product catalogue matches "
          "it confidently (\"TP-LinkPlugHS110\"; the match, its distance and confidence are in evidence), else null"),
    Field("classified_by", _STR, "", "\"rules\" when strong signals decided the type, else the type model's name"),
    Field("alerts", pa.list_(pa.struct([("category", _STR), ("signature", _STR), ("severity", _U8), ("score", _F64),
                                        ("timestamp", _STR), ("first_ts", _F64), ("last_ts", _F64)])), "",
          "the device's alerts (the full alert events, with evidence, are in the same stream), strongest first"),
)


def _type_name(t: pa.DataType) -> str:
    return "string (dictionary-encoded)" if pa.types.is_dictionary(t) else str(t)


def records_markdown() -> str:
    """docs/records.md, generated from the field tables above (``make docs``)."""
    out = ["# Records iotwatch writes", "",
           "Generated from `iotwatch/records.py` by `make docs`; do not edit by hand.", ""]
    for title, fields_ in (("Device events (`event_type: device` in events.jsonl)", DEVICE_FIELDS),
                           ("Flows (the `flows.parquet/` folder of Parquet parts, one per 1,048,576 flows; `flow` events "
                            "carry the same values in Suricata's layout: see Flow events below)",
                            FLOW_FIELDS),
                           ("Device windows (windows.parquet)", WINDOW_FIELDS)):
        out += [f"## {title}", "", "| field | type | unit | meaning |", "|---|---|---|---|"]
        out += [f"| `{f.name}` | {_type_name(f.type)} | {f.unit} | {f.doc} |" for f in fields_]
        out.append("")
    out += ["## Flow events (`event_type: flow` in events.jsonl, with `--flow-events`)", "",
            "One per flow as it ends, with the values of its flows.parquet row (joined on `flow_id`). `tcp` is "
            "written for TCP flows only. Until this table existed the docs described `tcp` as flag counts only and "
            "`proto` as a number: the event has always written `proto` as a name and `tcp` as Suricata's hex flags; "
            "both stay, and `ip_proto` and the per-flag counts under `tcp` were added.", "",
            "| field | JSON | unit | meaning |", "|---|---|---|---|"]
    out += [f"| `{f.path}` | {f.json} | {f.unit} | {f.doc} |" for f in FLOW_EVENT_FIELDS]
    out.append("")
    out += ["## Alert events (`event_type: alert` in events.jsonl, before the devices)", "",
            "| field | type | meaning |", "|---|---|---|",
            "| `timestamp` | string | ISO-8601 (UTC): when the evidence crossed the rule's threshold, i.e. when a live "
            "sensor raises the alert |",
            "| `src_ip`, `src_mac` | string or null | the misbehaving device (its first local address, its MAC) |",
            "| `alert.category` | string | scan, bruteforce, flood, exfil or c2 |",
            "| `alert.signature` | string | what it does, in words, with the figures that matter |",
            "| `alert.severity` | int | 1 high, 2 medium, 3 low (model-only alerts) |",
            "| `score` | float | 0..1: the larger of the rule's confidence and the behaviour model's probability |",
            "| `first_ts`, `last_ts` | float, epoch s | the episode's first and last packet |",
            "| `evidence` | object | counts, ports, `sample_targets`, `flow_ids`, `first_packet`/`alert_packet` "
            "(`file`, `packet`: Wireshark's frame number; every alert has both, null only for a model-only alert "
            "without evidence events), `x_baseline`, `uplink_share`, `model_probability`, "
            "`detected_by` (the rules that fired, first to fire first, and the model when it agrees), `also` (other "
            "rules of the same episode), `flows_not_kept` (flows counted in the totals but not kept one by one), "
            "`lower_bounds` (the fields that are lower bounds, when any; the signature then says \"at least\"), "
            "`sampled` (why: a side-channel budget), `dns_queries_sent` (DNS queries the device sent in the "
            "episode's windows, exact) |",
            "| `raised_ts` | float, epoch s | live capture only: the wall-clock time the alert was written |", "",
            "Counts and `last_ts` are the episode's totals (docs/detection.md, \"Counts are totals\"), unless "
            "`lower_bounds` names them.", "",
            "One alert per device and behaviour episode; see docs/detection.md for each rule's evidence.", ""]
    out += ["## Stats event (`event_type: stats`, last line of events.jsonl)", "",
            "`packets`, `bytes` (frame bytes), `files` read, `undecodable` packets by layer (`link`, `network`, "
            "`transport`), `not_ip` (ARP and other non-IP frames, counted per device), `fragments_without_first`, "
            "`flows`, `flows_evicted` (by the table cap), `devices`, `devices_untracked` (beyond the device cap), "
            "`windows` (rows), `late_packets` (older than every open window), `problems` (input problems), "
            "`interrupted` (Ctrl-C stopped the reading), `alerts`, `elapsed_s` (processing and verdicts; start-up and opening the models excluded, but for an input under 8 MiB the compiled kernels load inside it), "
            "`packets_per_s`.", "",
            "A live capture (`iotwatch capture`) adds, null for files: `interface`; `capture_received` (packets the "
            "capture tool received from the kernel); `capture_drops` (packets lost between the interface and "
            "iotwatch: the kernel's capture buffer and dumpcap's, as dumpcap reports them when it stops; null until "
            "then); `if_drops` (packets the interface itself dropped during the run, from "
            "/sys/class/net/IF/statistics: `rx_dropped` + `rx_missed_errors` + `rx_fifo_errors`); `ring_files` "
            "(pcapng files written to the evidence ring); `verdict_lag_s` and `verdict_lag_max_s` (seconds from the end "
            "of the newest closed window to its verdicts being written: the last one and the largest of the run); "
            "`backlog_max_bytes` (the most bytes read from dumpcap's pipe but not yet analysed at any moment so far: how "
            "far the analysis fell behind the capture; past 256 MiB dumpcap's kernel buffer takes over). The stats events of a live run (only) also carry `capture_nice` (the nice value dumpcap and the thread draining its pipe run at, so that the capture wins the CPU over the analysis; null when not allowed: below 0 it needs root or `CAP_SYS_NICE`) and `capture_drops_kernel` (the part of `capture_drops` lost in the kernel's capture buffer, libpcap's `ps_drop`: dumpcap did not read in time; the rest dumpcap lost itself; null until dumpcap stops), `verdicts_nice` (the "
            "nice value of the thread that runs the verdict passes, half `capture_nice`: when the cores are short, a pass "
            "goes before the packets' analysis and after the capture; null when not allowed), and `verdict_pass_s`, `verdict_pass_cpu_s` and `verdict_pass_max_s` (the "
            "verdict pass at the newest window close: its wall seconds, the CPU seconds of the thread that ran it, and "
            "the most wall seconds of any close pass so far; null until the first window closes: of `verdict_lag_s`, the "
            "part after the window closed, and how much of it the machine's other work took). A live run also writes a stats event every few seconds "
            "(`\"final\": false`); the last line is the final one (`\"final\": true`).", ""]
    return "\n".join(out)
