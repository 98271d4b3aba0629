"""Flows → per-device traffic profile: ports served and used, peers, volume, upload shape.

:func:`traffic_from_flows` reduces one batch of flow rows (``records.FLOW_FIELDS``) to a
:class:`DeviceTraffic` per device key; the pipeline calls it on each batch as flows end and
merges the results with :meth:`DeviceTraffic.merge`. Everything kept is a counter or a capped
set, so a profile stays a few kilobytes whatever the traffic.

Who is a device here follows ``iotwatch.devices``: the MAC of a local address (or the IP
address itself when the capture has no Ethernet). A flow to or from an external address is
seen behind the MAC of the gateway that forwards it: that MAC gets the external address in
``forwarded`` (a router signal), never the server's ports.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MAX_SET = 256  # distinct peers / forwarded addresses kept per device
MAX_PORTS = 96  # distinct (proto, port) kept per device and role
STREAM_MIN_S = 5.0  # a flow counts towards the upload-rate measure when it lasts this long
STREAM_MIN_BYTES = 200_000  # ... and the device sent this much in it

_ANSWERED_TCP = ("established", "closed", "reset")


@lru_cache(maxsize=65536)
def default_local(ip: str) -> bool:
    """RFC 1918, loopback, link-local or unique-local (the pipeline's default local nets)."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return a.is_private and not a.is_multicast and not a.is_unspecified and a != ipaddress.ip_address("255.255.255.255")


@lru_cache(maxsize=65536)
def _multicast_ip(ip: str) -> bool:
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return a.is_multicast or ip == "255.255.255.255" or (a.version == 4 and ip.endswith(".255"))


def _cap_union(a: set[str], b: set[str]) -> set[str]:
    if len(a) >= MAX_SET:
        return set(a)
    out = a | b
    if len(out) > MAX_SET:
        out = set(sorted(out)[:MAX_SET])
    return out


def _cap_counter(c: Counter[tuple[int, int]]) -> Counter[tuple[int, int]]:
    return c if len(c) <= MAX_PORTS else Counter(dict(c.most_common(MAX_PORTS)))


@dataclass(slots=True)
class DeviceTraffic:
    """A device's traffic, summed over flows. ``merge`` adds two partial profiles."""

    served: Counter[tuple[int, int]] = field(default_factory=Counter)  # (proto, port) → answered flows as server
    used: Counter[tuple[int, int]] = field(default_factory=Counter)  # (proto, port) → flows opened as client
    served_clients: set[str] = field(default_factory=set)  # peers that used a service of this device
    rtsp_servers: set[str] = field(default_factory=set)  # local peers this device pulled RTSP (554/8554) from
    peers_local: set[str] = field(default_factory=set)
    peers_external: set[str] = field(default_factory=set)
    forwarded: set[str] = field(default_factory=set)  # external addresses seen behind this MAC
    flows_client: int = 0
    flows_server: int = 0
    flows_unanswered: int = 0  # flows opened as client that got no answer
    bytes_up: int = 0  # bytes this device sent (both roles)
    bytes_down: int = 0
    bytes_up_external: int = 0
    stream_flows: int = 0  # long flows in which the device sent ≥ STREAM_MIN_BYTES
    max_upload_bps: float = 0.0  # highest average send rate over a flow of ≥ STREAM_MIN_S
    first: float = float("inf")
    last: float = float("-inf")

    def merge(self, other: DeviceTraffic) -> DeviceTraffic:
        return DeviceTraffic(
            served=_cap_counter(self.served + other.served),
            used=_cap_counter(self.used + other.used),
            served_clients=_cap_union(self.served_clients, other.served_clients),
            rtsp_servers=_cap_union(self.rtsp_servers, other.rtsp_servers),
            peers_local=_cap_union(self.peers_local, other.peers_local),
            peers_external=_cap_union(self.peers_external, other.peers_external),
            forwarded=_cap_union(self.forwarded, other.forwarded),
            flows_client=self.flows_client + other.flows_client,
            flows_server=self.flows_server + other.flows_server,
            flows_unanswered=self.flows_unanswered + other.flows_unanswered,
            bytes_up=self.bytes_up + other.bytes_up,
            bytes_down=self.bytes_down + other.bytes_down,
            bytes_up_external=self.bytes_up_external + other.bytes_up_external,
            stream_flows=self.stream_flows + other.stream_flows,
            max_upload_bps=max(self.max_upload_bps, other.max_upload_bps),
            first=min(self.first, other.first),
            last=max(self.last, other.last),
        )

    @property
    def duration(self) -> float:
        return max(0.0, self.last - self.first) if self.last >= self.first else 0.0

    def serves(self, *ports: int, proto: int = 6) -> bool:
        return any(self.served.get((proto, p), 0) > 0 for p in ports)

    def uses(self, *ports: int, proto: int = 6) -> bool:
        return any(self.used.get((proto, p), 0) > 0 for p in ports)


def merge_traffic(a: dict[str, DeviceTraffic], b: dict[str, DeviceTraffic]) -> dict[str, DeviceTraffic]:
    """Merge two ``traffic_from_flows`` results (new dict; inputs untouched)."""
    out = dict(a)
    for k, t in b.items():
        out[k] = out[k].merge(t) if k in out else t
    return out


def _np(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy()


def _str_list(table: pa.Table, name: str) -> list[str | None]:
    return table.column(name).to_pylist()  # type: ignore[no-any-return]


def traffic_from_flows(flows: pa.Table, local: Callable[[str], bool] | None = None) -> dict[str, DeviceTraffic]:
    """Per-device traffic profile of a batch of flow rows (see the module docstring)."""
    n = flows.num_rows
    if n == 0:
        return {}
    is_local = local or default_local
    src_ip, dst_ip = _str_list(flows, "src_ip"), _str_list(flows, "dest_ip")
    src_mac, dst_mac = _str_list(flows, "src_mac"), _str_list(flows, "dest_mac")
    proto = _np(flows, "proto").astype(np.int64)
    sport = _np(flows, "src_port").astype(np.int64)
    dport = _np(flows, "dest_port").astype(np.int64)
    pk_c = _np(flows, "pkts_toclient")
    by_s = _np(flows, "bytes_toserver").astype(np.int64)
    by_c = _np(flows, "bytes_toclient").astype(np.int64)
    start, end = _np(flows, "start"), _np(flows, "end")
    state = pc.cast(flows.column("state"), pa.string()).to_pylist()

    loc_cache: dict[str, bool] = {}

    def loc(ip: str | None) -> bool:
        if ip is None:
            return False
        v = loc_cache.get(ip)
        if v is None:
            v = loc_cache[ip] = bool(is_local(ip))
        return v

    out: dict[str, DeviceTraffic] = {}

    def dev(key: str) -> DeviceTraffic:
        d = out.get(key)
        if d is None:
            d = out[key] = DeviceTraffic()
        return d

    for i in range(n):
        p = int(proto[i])
        c_ip, s_ip, c_mac, s_mac = src_ip[i], dst_ip[i], src_mac[i], dst_mac[i]
        c_port, s_port = int(sport[i]), int(dport[i])
        up_c, up_s = int(by_s[i]), int(by_c[i])  # bytes sent by client, by server
        st = state[i]
        if p == 6:
            answered = st in _ANSWERED_TCP or (st == "midstream" and pk_c[i] > 0)
            if st == "midstream" and _looks_reversed(c_port, s_port):
                c_ip, s_ip, c_mac, s_mac, c_port, s_port = s_ip, c_ip, s_mac, c_mac, s_port, c_port
                up_c, up_s = up_s, up_c
        else:
            answered = pk_c[i] > 0
        c_loc, s_loc = loc(c_ip), loc(s_ip)
        multicast = (s_ip is not None and _multicast_ip(s_ip)) or (s_mac is not None and _mac_group(s_mac))
        c_key = _key(c_mac, c_ip, c_loc)
        s_key = None if multicast else _key(s_mac, s_ip, s_loc)
        t0, t1 = float(start[i]), float(end[i])
        dur = t1 - t0
        if c_key is not None:
            d = dev(c_key)
            d.flows_client += 1
            d.bytes_up += up_c
            d.bytes_down += up_s
            if p in (6, 17):
                d.used[(p, s_port)] += 1
                if p == 6 and s_port in (554, 8554) and answered and s_loc and s_ip is not None:
                    d.rtsp_servers.add(s_ip) if len(d.rtsp_servers) < MAX_SET else None
            if not answered and p in (6, 17):
                d.flows_unanswered += 1
            if s_ip is not None and not multicast:
                peers = d.peers_local if s_loc else d.peers_external
                if len(peers) < MAX_SET:
                    peers.add(s_ip)
                if not s_loc:
                    d.bytes_up_external += up_c
            _shape(d, up_c, dur, t0, t1)
        elif c_mac is not None and not c_loc and c_ip is not None and not _mac_group(c_mac):
            g = dev(c_mac)  # a gateway forwarding an external client's flow
            if len(g.forwarded) < MAX_SET:
                g.forwarded.add(c_ip)
        if s_key is not None:
            d = dev(s_key)
            d.bytes_up += up_s
            d.bytes_down += up_c
            if answered:
                d.flows_server += 1
                if p in (6, 17):
                    d.served[(p, s_port)] += 1
                if c_ip is not None and len(d.served_clients) < MAX_SET:
                    d.served_clients.add(c_ip)
            if c_ip is not None:
                peers = d.peers_local if c_loc else d.peers_external
                if len(peers) < MAX_SET:
                    peers.add(c_ip)
                if not c_loc:
                    d.bytes_up_external += up_s
            _shape(d, up_s, dur, t0, t1)
        elif s_mac is not None and not s_loc and s_ip is not None and not multicast:
            g = dev(s_mac)
            if len(g.forwarded) < MAX_SET:
                g.forwarded.add(s_ip)
    for d in out.values():
        d.served = _cap_counter(d.served)
        d.used = _cap_counter(d.used)
    return out


def _key(mac: str | None, ip: str | None, ip_local: bool) -> str | None:
    if mac is None:
        return ip  # no Ethernet: devices are IP addresses
    if _mac_group(mac) or not ip_local:
        return None
    return mac


@lru_cache(maxsize=65536)
def _mac_group(mac: str) -> bool:
    try:
        return bool(int(mac[:2], 16) & 1)
    except ValueError:
        return False


_SERVICE = frozenset({21, 22, 23, 25, 53, 80, 81, 88, 110, 123, 143, 443, 445, 515, 554, 631, 993, 1883, 1900,
                      2323, 3389, 5000, 5353, 7547, 8000, 8080, 8443, 8554, 8883, 9000, 9100, 34567, 37777})


def _looks_reversed(c_port: int, s_port: int) -> bool:
    """A flow seen mid-stream: the first packet may come from the server."""
    c_service = c_port in _SERVICE or c_port < 1024
    s_service = s_port in _SERVICE or s_port < 1024
    return c_service and not s_service


def _shape(d: DeviceTraffic, sent: int, dur: float, t0: float, t1: float) -> None:
    d.first = min(d.first, t0)
    d.last = max(d.last, t1)
    if dur >= STREAM_MIN_S:
        rate = sent / dur
        if rate > d.max_upload_bps:
            d.max_upload_bps = rate
        if sent >= STREAM_MIN_BYTES:
            d.stream_flows += 1
