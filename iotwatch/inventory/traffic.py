"""Flows → per-device traffic profile: ports served and used, peers, volume, upload shape.

Two entry points reduce one batch of finished flows to a :class:`DeviceTraffic` per device key:

* :func:`traffic_from_records` takes the raw flow records (``iotwatch.flows.FLOW_DTYPE``) the
  pipeline holds before they become Arrow rows; the pipeline calls it on every batch of finished
  flows (a SYN flood included) and merges the results with :func:`merge_traffic`.
* :func:`traffic_from_flows` takes flow rows (``records.FLOW_FIELDS``, a pyarrow table).

Both turn their batch into the same oriented, integer-coded columns (addresses and MACs as ids
into the batch's distinct values) and hand them to one compiled pass, :func:`_aggregate`, which
walks the flows in order exactly as the former per-flow Python loop did. Text (device keys, set
members) is made only for the devices and the set members that survive the caps. Everything
kept is a counter or a capped set, so a profile stays a few kilobytes whatever the traffic.

Who is a device here follows ``iotwatch.devices``: the MAC of a local address (or the IP
address itself when the capture has no Ethernet). A flow to or from an external address is
seen behind the MAC of the gateway that forwards it: that MAC gets the external address in
``forwarded`` (a router signal), never the server's ports.

Caps, and which members they keep (the same in both entry points, and the same as the former
loop): within a batch a set keeps the first :data:`MAX_SET` distinct members in flow order (the
client side of a flow before its server side); a port counter keeps its :data:`MAX_PORTS`
largest counts, ties going to the pair counted first (``Counter.most_common``). Merging two
capped profiles keeps the :data:`MAX_SET` smallest strings (:meth:`DeviceTraffic.merge`).
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

from .._jit import inline_kernel, kernel
from ..addrs import MAPPED, LocalNets, addr_class, format_ips, format_macs
from ..flows import (
    STATE_CLOSED,
    STATE_ESTABLISHED,
    STATE_MIDSTREAM,
    STATE_RESET,
    _mix,
    flow_sides,
    state_code,
)

MAX_SET = 256  # distinct peers / forwarded addresses kept per device
MAX_PORTS = 96  # distinct (proto, port) kept per device and role
STREAM_MIN_S = 5.0  # a flow counts towards the upload-rate measure when it lasts this long
STREAM_MIN_BYTES = 200_000  # ... and the device sent this much in it

_ANSWERED_TCP = ("established", "closed", "reset")


#: the pipeline's default local networks (RFC 1918, loopback, link-local, ULA): addrs.py's rule
default_local = LocalNets().is_local


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


@lru_cache(maxsize=65536)
def _mac_group(mac: str) -> bool:
    try:
        return bool(int(mac[:2], 16) & 1)
    except ValueError:
        return False


_SERVICE = frozenset({21, 22, 23, 25, 53, 80, 81, 88, 110, 123, 143, 443, 445, 515, 554, 631, 993, 1883, 1900,
                      2323, 3389, 5000, 5353, 7547, 8000, 8080, 8443, 8554, 8883, 9000, 9100, 34567, 37777})
#: ports that make a mid-stream TCP flow's first sender look like the server (turned round)
_SERVICE_PORT = np.zeros(1 << 16, np.bool_)
_SERVICE_PORT[:1024] = True
_SERVICE_PORT[sorted(_SERVICE)] = True

# set kinds (index into _SET_ATTRS)
_K_SERVED_CLIENTS, _K_RTSP, _K_PEER_LOCAL, _K_PEER_EXT, _K_FORWARDED = range(5)
_SET_ATTRS = ("served_clients", "rtsp_servers", "peers_local", "peers_external", "forwarded")
_N_KINDS = len(_SET_ATTRS)
_EMPTY = np.uint64((1 << 64) - 1)


# --------------------------------------------------------------------------- compiled passes

@inline_kernel
def _intern(a, b, c, slots, u0, u1, u2, nu):  # type: ignore[no-untyped-def]
    """(dense id of the triple (a, b, c), new count): ids in order of first appearance, the
    distinct triples in u0/u1/u2; ``slots`` (power of two, all -1) is the open-addressing index."""
    mask = slots.shape[0] - 1
    s = np.int64(_mix(_mix(_mix(np.uint64(0x51ED27), a), b), c) & np.uint64(mask))
    while True:
        j = slots[s]
        if j < 0:
            slots[s] = nu
            u0[nu] = a
            u1[nu] = b
            u2[nu] = c
            return nu, nu + 1
        if u0[j] == a and u1[j] == b and u2[j] == c:
            return j, nu
        s = (s + 1) & mask


@kernel
def _records_pass(rows, service, addr_slots, u_v6, u_hi, u_lo, mac_slots, u_mac, u_z0, u_z1,  # type: ignore[no-untyped-def]
                  proto, s_port, answered, up_c, up_s, t0, t1, c_addr, s_addr, c_mac, s_mac, out):
    """Raw flow records → the oriented, id-coded columns of :class:`_Batch`, in one read of
    each record: client/server sides (``client_a``), the public state (as ``flows._public_columns`` codes it),
    answered and turned round (:func:`_orient`), the float seconds of ``flows_to_table``.
    out = [distinct addresses, distinct MACs]."""
    na = 0
    nm = 0
    for i in range(rows.shape[0]):
        r = rows[i]
        p = np.int64(r.proto)
        chi, clo, shi, slo, cp, sp = flow_sides(r)
        cp, sp = np.int64(cp), np.int64(sp)
        cm = r.mac_c
        sm = r.mac_s
        uc = np.int64(r.by[0])
        us = np.int64(r.by[1])
        back = r.pk[1] > 0
        ans = back
        if p == 6:
            code = state_code(r.state)
            ans = code == STATE_ESTABLISHED or code == STATE_RESET or code == STATE_CLOSED or (code == STATE_MIDSTREAM and back)
            if code == STATE_MIDSTREAM and service[cp] and not service[sp]:
                chi, clo, shi, slo, cp, sp = shi, slo, chi, clo, sp, cp
                cm, sm = sm, cm
                uc, us = us, uc
        v6 = np.uint64(r.v6)
        c_addr[i], na = _intern(v6, chi, clo, addr_slots, u_v6, u_hi, u_lo, na)
        s_addr[i], na = _intern(v6, shi, slo, addr_slots, u_v6, u_hi, u_lo, na)
        if (cm >> np.uint64(48)) == 0:
            c_mac[i], nm = _intern(cm, np.uint64(0), np.uint64(0), mac_slots, u_mac, u_z0, u_z1, nm)
        else:
            c_mac[i] = -1
        if (sm >> np.uint64(48)) == 0:
            s_mac[i], nm = _intern(sm, np.uint64(0), np.uint64(0), mac_slots, u_mac, u_z0, u_z1, nm)
        else:
            s_mac[i] = -1
        proto[i] = p
        s_port[i] = sp
        answered[i] = 1 if ans else 0
        up_c[i] = uc
        up_s[i] = us
        t0[i] = r.first / 1e9
        t1[i] = r.last / 1e9
    out[0] = na
    out[1] = nm


@inline_kernel
def _touch(d, touched, seq):  # type: ignore[no-untyped-def]
    if touched[d] == 0:
        touched[d] = seq + 1
        return seq + 1
    return seq


@inline_kernel
def _set_add(d, kind, item, n_items, set_count, set_slots, set_dev, set_kind, set_item, n_set, max_set):  # type: ignore[no-untyped-def]
    """Python's ``if len(s) < MAX_SET: s.add(item)`` for the set ``kind`` of device ``d``."""
    g = d * 5 + kind
    if set_count[g] >= max_set:
        return n_set
    key = np.uint64(g) * np.uint64(n_items) + np.uint64(item)
    mask = set_slots.shape[0] - 1
    s = np.int64(_mix(np.uint64(0x2545F491), key) & np.uint64(mask))
    while set_slots[s] != np.uint64(0xFFFFFFFFFFFFFFFF):
        if set_slots[s] == key:
            return n_set
        s = (s + 1) & mask
    set_slots[s] = key
    set_count[g] += 1
    set_dev[n_set] = d
    set_kind[n_set] = kind
    set_item[n_set] = item
    return n_set + 1


@inline_kernel
def _count(d, role, p, port, ctr_slots, ctr_key, ctr_dev, ctr_role, ctr_proto, ctr_port, ctr_n, n_ctr):  # type: ignore[no-untyped-def]
    """``counter[(p, port)] += 1`` for the role (0 used, 1 served) of device ``d``; entries are
    numbered in order of first insertion, as a Counter (a dict) orders its keys."""
    key = (np.uint64(d * 2 + role) << np.uint64(17)) | (np.uint64(1 if p == 17 else 0) << np.uint64(16)) | np.uint64(port)
    mask = ctr_slots.shape[0] - 1
    s = np.int64(_mix(np.uint64(0x9E3779B9), key) & np.uint64(mask))
    while True:
        e = ctr_slots[s]
        if e < 0:
            ctr_slots[s] = n_ctr
            ctr_key[n_ctr] = key
            ctr_dev[n_ctr] = d
            ctr_role[n_ctr] = role
            ctr_proto[n_ctr] = p
            ctr_port[n_ctr] = port
            ctr_n[n_ctr] = 1
            return n_ctr + 1
        if ctr_key[e] == key:
            ctr_n[e] += 1
            return n_ctr
        s = (s + 1) & mask


@inline_kernel
def _shape(d, sent, dur, t0, t1, first, last, max_bps, stream_flows, stream_min_s, stream_min_bytes):  # type: ignore[no-untyped-def]
    if t0 < first[d]:
        first[d] = t0
    if t1 > last[d]:
        last[d] = t1
    if dur >= stream_min_s:
        rate = np.float64(sent) / dur
        if rate > max_bps[d]:
            max_bps[d] = rate
        if sent >= stream_min_bytes:
            stream_flows[d] += 1


@kernel
def _aggregate(proto, s_port, answered, up_c, up_s, t0, t1, c_addr, s_addr, c_mac, s_mac,  # type: ignore[no-untyped-def]
               addr_loc, addr_mcast, mac_group, n_mac, n_items, max_set, stream_min_s, stream_min_bytes, ext_ip_dev,
               touched, flows_client, flows_server, flows_unanswered, bytes_up, bytes_down, bytes_up_ext,
               stream_flows, max_bps, first, last,
               set_count, set_slots, set_dev, set_kind, set_item,
               ctr_slots, ctr_key, ctr_dev, ctr_role, ctr_proto, ctr_port, ctr_n, out):
    """One pass over oriented flows, in order: what the per-flow Python loop of
    ``traffic_from_flows`` did, on ids. Device d < n_mac is MAC id d; d >= n_mac is the
    address id d - n_mac (captures without Ethernet). Sets and counters are appended as entry
    lists (set members only while their set is below ``max_set``). ``ext_ip_dev`` False: without
    Ethernet only local addresses are devices. out = [sets, counters]."""
    seq = 0
    n_set = 0
    n_ctr = 0
    for i in range(proto.shape[0]):
        p = np.int64(proto[i])
        ca = c_addr[i]
        sa = s_addr[i]
        cm = c_mac[i]
        sm = s_mac[i]
        c_loc = ca >= 0 and addr_loc[ca] != 0
        s_loc = sa >= 0 and addr_loc[sa] != 0
        mcast = (sa >= 0 and addr_mcast[sa] != 0) or (sm >= 0 and mac_group[sm] != 0)
        ck = -1
        if cm < 0:
            if ca >= 0 and (ext_ip_dev or c_loc):
                ck = n_mac + ca  # no Ethernet: devices are IP addresses
        elif mac_group[cm] == 0 and c_loc:
            ck = cm
        sk = -1
        if not mcast:
            if sm < 0:
                if sa >= 0 and (ext_ip_dev or s_loc):
                    sk = n_mac + sa
            elif mac_group[sm] == 0 and s_loc:
                sk = sm
        uc = up_c[i]
        us = up_s[i]
        ans = answered[i] != 0
        a = t0[i]
        b = t1[i]
        dur = b - a
        sp = np.int64(s_port[i])
        tcp_udp = p == 6 or p == 17
        if ck >= 0:
            seq = _touch(ck, touched, seq)
            flows_client[ck] += 1
            bytes_up[ck] += uc
            bytes_down[ck] += us
            if tcp_udp:
                n_ctr = _count(ck, 0, p, sp, ctr_slots, ctr_key, ctr_dev, ctr_role, ctr_proto, ctr_port, ctr_n, n_ctr)
                if p == 6 and (sp == 554 or sp == 8554) and ans and s_loc:
                    n_set = _set_add(ck, _K_RTSP, sa, n_items, set_count, set_slots, set_dev, set_kind, set_item,
                                     n_set, max_set)
                if not ans:
                    flows_unanswered[ck] += 1
            if sa >= 0 and not mcast:
                n_set = _set_add(ck, _K_PEER_LOCAL if s_loc else _K_PEER_EXT, sa, n_items, set_count, set_slots,
                                 set_dev, set_kind, set_item, n_set, max_set)
                if not s_loc:
                    bytes_up_ext[ck] += uc
            _shape(ck, uc, dur, a, b, first, last, max_bps, stream_flows, stream_min_s, stream_min_bytes)
        elif cm >= 0 and not c_loc and ca >= 0 and mac_group[cm] == 0:
            seq = _touch(cm, touched, seq)  # a gateway forwarding an external client's flow
            n_set = _set_add(cm, _K_FORWARDED, ca, n_items, set_count, set_slots, set_dev, set_kind, set_item,
                             n_set, max_set)
        if sk >= 0:
            seq = _touch(sk, touched, seq)
            bytes_up[sk] += us
            bytes_down[sk] += uc
            if ans:
                flows_server[sk] += 1
                if tcp_udp:
                    n_ctr = _count(sk, 1, p, sp, ctr_slots, ctr_key, ctr_dev, ctr_role, ctr_proto, ctr_port, ctr_n,
                                   n_ctr)
                if ca >= 0:
                    n_set = _set_add(sk, _K_SERVED_CLIENTS, ca, n_items, set_count, set_slots, set_dev, set_kind,
                                     set_item, n_set, max_set)
            if ca >= 0:
                n_set = _set_add(sk, _K_PEER_LOCAL if c_loc else _K_PEER_EXT, ca, n_items, set_count, set_slots,
                                 set_dev, set_kind, set_item, n_set, max_set)
                if not c_loc:
                    bytes_up_ext[sk] += us
            _shape(sk, us, dur, a, b, first, last, max_bps, stream_flows, stream_min_s, stream_min_bytes)
        elif sm >= 0 and not s_loc and sa >= 0 and not mcast:
            seq = _touch(sm, touched, seq)
            n_set = _set_add(sm, _K_FORWARDED, sa, n_items, set_count, set_slots, set_dev, set_kind, set_item,
                             n_set, max_set)
    out[0] = n_set
    out[1] = n_ctr


# --------------------------------------------------------------------------- shared core

def _pow2(n: int) -> int:
    return 1 << max(4, int(n - 1).bit_length())


@dataclass(slots=True)
class _Batch:
    """A batch of flows turned round where needed (client first), addresses and MACs as ids."""

    proto: np.ndarray  # int64
    s_port: np.ndarray  # int64, the server's port
    answered: np.ndarray  # uint8
    up_c: np.ndarray  # int64, bytes the client sent
    up_s: np.ndarray  # int64, bytes the server sent
    t0: np.ndarray  # float64 s
    t1: np.ndarray
    c_addr: np.ndarray  # int64 id, -1 none
    s_addr: np.ndarray
    c_mac: np.ndarray  # int64 id, -1 none (no Ethernet)
    s_mac: np.ndarray
    addr_loc: np.ndarray  # uint8 per address id
    addr_mcast: np.ndarray  # uint8 per address id (multicast or broadcast, as _multicast_ip)
    mac_group: np.ndarray  # uint8 per MAC id
    addr_names: Callable[[np.ndarray], list[str]]  # address ids → text
    mac_names: Callable[[np.ndarray], list[str]]


def _orient(proto: np.ndarray, midstream: np.ndarray, answered_state: np.ndarray, pk_c: np.ndarray,
            c_port: np.ndarray, s_port: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(answered, turned round) per flow. TCP counts as answered when established, closed or
    reset, or mid-stream with packets both ways; other protocols when the server sent anything.
    A mid-stream TCP flow whose first packet came from a service port is turned round."""
    tcp = proto == 6
    pk_back = pk_c > 0
    answered = np.where(tcp, answered_state | (midstream & pk_back), pk_back)
    rev = tcp & midstream & _SERVICE_PORT[c_port] & ~_SERVICE_PORT[s_port]
    return answered.astype(np.uint8), rev


def _swap(rev: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not rev.any():
        return a, b
    return np.where(rev, b, a), np.where(rev, a, b)


def _new_counter() -> Counter[tuple[int, int]]:
    """An empty Counter, skipping Counter.__init__ (pure Python, a few µs): without Ethernet a
    spoofed flood makes a device of every source, with two Counters each."""
    return Counter.__new__(Counter)


def _profile(f: _Batch, external_ip_devices: bool = True) -> dict[str, DeviceTraffic]:
    n = len(f.proto)
    n_mac, n_addr = len(f.mac_group), len(f.addr_loc)
    nd = n_mac + n_addr
    touched = np.zeros(nd, np.int64)
    flows_client = np.zeros(nd, np.int64)
    flows_server = np.zeros(nd, np.int64)
    flows_unanswered = np.zeros(nd, np.int64)
    bytes_up = np.zeros(nd, np.int64)
    bytes_down = np.zeros(nd, np.int64)
    bytes_up_ext = np.zeros(nd, np.int64)
    stream_flows = np.zeros(nd, np.int64)
    max_bps = np.zeros(nd, np.float64)
    first = np.full(nd, np.inf)
    last = np.full(nd, -np.inf)
    set_count = np.zeros(nd * _N_KINDS, np.int32)
    set_slots = np.full(_pow2(8 * n), _EMPTY, np.uint64)  # at most 4 members offered per flow
    set_dev = np.empty(4 * n, np.int64)
    set_kind = np.empty(4 * n, np.int64)
    set_item = np.empty(4 * n, np.int64)
    ctr_slots = np.full(_pow2(4 * n), -1, np.int64)  # at most 2 counter entries per flow
    ctr_key = np.empty(2 * n, np.uint64)
    ctr_dev = np.empty(2 * n, np.int64)
    ctr_role = np.empty(2 * n, np.int64)
    ctr_proto = np.empty(2 * n, np.int64)
    ctr_port = np.empty(2 * n, np.int64)
    ctr_n = np.empty(2 * n, np.int64)
    out = np.zeros(2, np.int64)
    _aggregate(f.proto, f.s_port, f.answered, f.up_c, f.up_s, f.t0, f.t1, f.c_addr, f.s_addr, f.c_mac, f.s_mac,
               f.addr_loc, f.addr_mcast, f.mac_group, n_mac, max(n_addr, 1), MAX_SET, STREAM_MIN_S,
               STREAM_MIN_BYTES, external_ip_devices,
               touched, flows_client, flows_server, flows_unanswered, bytes_up, bytes_down,
               bytes_up_ext, stream_flows, max_bps, first, last,
               set_count, set_slots, set_dev, set_kind, set_item,
               ctr_slots, ctr_key, ctr_dev, ctr_role, ctr_proto, ctr_port, ctr_n, out)
    n_set, n_ctr = int(out[0]), int(out[1])

    devs = np.flatnonzero(touched)
    devs = devs[np.argsort(touched[devs])]  # in order of first appearance, as the loop made them
    is_mac = devs < n_mac
    keys = np.empty(len(devs), object)
    if is_mac.any():
        keys[is_mac] = f.mac_names(devs[is_mac])
    if not is_mac.all():
        keys[~is_mac] = f.addr_names(devs[~is_mac] - n_mac)
    cols = [a[devs].tolist() for a in (flows_client, flows_server, flows_unanswered, bytes_up, bytes_down,
                                       bytes_up_ext, stream_flows, max_bps, first, last)]
    result: dict[str, DeviceTraffic] = {}
    by_dev: dict[int, DeviceTraffic] = {}
    for d, k, fc, fs, fu, bu, bd, be, sf, mb, t_first, t_last in zip(devs.tolist(), keys.tolist(), *cols, strict=True):
        result[k] = by_dev[d] = DeviceTraffic(_new_counter(), _new_counter(), flows_client=fc, flows_server=fs,
                                              flows_unanswered=fu, bytes_up=bu, bytes_down=bd, bytes_up_external=be,
                                              stream_flows=sf, max_upload_bps=mb, first=t_first, last=t_last)

    if n_set:  # sets: members already capped (first MAX_SET in flow order); text for them only
        g = set_dev[:n_set] * _N_KINDS + set_kind[:n_set]
        order = np.argsort(g, kind="stable")
        gs, items = g[order], set_item[:n_set][order]
        needed = np.unique(items)
        names = np.empty(n_addr, object)
        names[needed] = f.addr_names(needed)
        text = names[items].tolist()
        cut = np.flatnonzero(np.diff(gs)) + 1
        starts = np.concatenate(([0], cut)).tolist()
        ends = np.concatenate((cut, [len(gs)])).tolist()
        for a, b, gv in zip(starts, ends, gs[starts].tolist(), strict=True):
            setattr(by_dev[gv // _N_KINDS], _SET_ATTRS[gv % _N_KINDS], set(text[a:b]))

    if n_ctr:  # port counters: the MAX_PORTS largest per device and role, ties to the pair counted first
        g = ctr_dev[:n_ctr] * 2 + ctr_role[:n_ctr]
        cnt = ctr_n[:n_ctr]
        if np.bincount(g).max() <= MAX_PORTS:
            order = np.argsort(g, kind="stable")
        else:
            order = np.lexsort((-cnt, g))  # stable: equal counts stay in insertion order
            gs = g[order]
            starts = np.concatenate(([0], np.flatnonzero(np.diff(gs)) + 1))
            rank = np.arange(n_ctr) - np.repeat(starts, np.diff(np.append(starts, n_ctr)))
            order = order[rank < MAX_PORTS]
        gs = g[order]
        cut = np.flatnonzero(np.diff(gs)) + 1
        starts = np.concatenate(([0], cut)).tolist()
        ends = np.concatenate((cut, [len(gs)])).tolist()
        pairs = list(zip(ctr_proto[:n_ctr][order].tolist(), ctr_port[:n_ctr][order].tolist(), strict=True))
        counts = cnt[order].tolist()
        for a, b, gv in zip(starts, ends, gs[starts].tolist(), strict=True):
            d = by_dev[gv // 2]
            c = d.served if gv % 2 else d.used
            dict.update(c, zip(pairs[a:b], counts[a:b], strict=True))  # c is new and empty: no sums
    return result


# --------------------------------------------------------------------------- entry points

def _multicast_text(v6: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """:func:`_multicast_ip` on address words: IPv4 224/4, 255.255.255.255 or any x.x.x.255;
    IPv6 ff00::/8."""
    v4 = lo & np.uint64(0xFFFFFFFF)
    m4 = ((v4 >> np.uint64(28)) == 14) | (v4 == np.uint64(0xFFFFFFFF)) | ((v4 & np.uint64(0xFF)) == 0xFF)
    m6 = (hi >> np.uint64(56)) == 0xFF
    return np.where(v6 != 0, m6, m4).astype(np.uint8)


@kernel
def _local_flags(hi, lo, net_hi, net_lo, mask_hi, mask_lo, out):  # type: ignore[no-untyped-def]
    for i in range(hi.shape[0]):
        out[i] = 1 if addr_class(hi[i], lo[i], net_hi, net_lo, mask_hi, mask_lo) == 1 else 0


def _local_classes(hi: np.ndarray, lo: np.ndarray, nets: LocalNets) -> np.ndarray:
    """1 where ``addr_class`` says local (class 1)."""
    out = np.empty(len(hi), np.uint8)
    _local_flags(np.ascontiguousarray(hi), np.ascontiguousarray(lo), *nets.arrays(), out)
    return out


def traffic_from_records(rows: np.ndarray, nets: LocalNets, *, external_ip_devices: bool = True) -> dict[str, DeviceTraffic]:
    """Per-device traffic profile of a batch of raw flow records (``iotwatch.flows.FLOW_DTYPE``,
    as ``FlowTable.update``/``flush`` yield them). Local addresses are those of ``nets``
    (``addr_class == 1``). The result equals ``traffic_from_flows(flows_to_table(rows), nets)``.

    ``external_ip_devices=False`` leaves out the devices that are non-local IP addresses (only
    captures without Ethernet have them): the result is then the full one restricted to MAC keys
    and local addresses. Without Ethernet every source of a spoofed flood is such a device, at
    several µs each (Python objects); with Ethernet the option changes nothing."""
    n = len(rows)
    if n == 0:
        return {}
    rows = np.ascontiguousarray(rows)
    u_v6, u_hi, u_lo = np.empty(2 * n, np.uint64), np.empty(2 * n, np.uint64), np.empty(2 * n, np.uint64)
    u_mac, z0, z1 = np.empty(2 * n, np.uint64), np.empty(2 * n, np.uint64), np.empty(2 * n, np.uint64)
    proto, s_port = np.empty(n, np.int64), np.empty(n, np.int64)
    answered = np.empty(n, np.uint8)
    up_c, up_s = np.empty(n, np.int64), np.empty(n, np.int64)
    t0, t1 = np.empty(n, np.float64), np.empty(n, np.float64)
    c_addr, s_addr, c_mac, s_mac = (np.empty(n, np.int64) for _ in range(4))
    out = np.zeros(2, np.int64)
    _records_pass(rows, _SERVICE_PORT, np.full(_pow2(4 * n), -1, np.int64), u_v6, u_hi, u_lo,
                  np.full(_pow2(4 * n), -1, np.int64), u_mac, z0, z1,
                  proto, s_port, answered, up_c, up_s, t0, t1, c_addr, s_addr, c_mac, s_mac, out)
    na, nm = int(out[0]), int(out[1])
    u_v6, u_hi, u_lo, u_mac = u_v6[:na], u_hi[:na], u_lo[:na], u_mac[:nm]

    def addr_names(i: np.ndarray) -> list[str]:
        return format_ips(u_v6[i].astype(np.bool_), u_hi[i], u_lo[i]).to_pylist()  # type: ignore[no-any-return]

    def mac_names(i: np.ndarray) -> list[str]:
        return format_macs(u_mac[i]).to_pylist()  # type: ignore[no-any-return]

    return _profile(_Batch(
        proto=proto, s_port=s_port, answered=answered, up_c=up_c, up_s=up_s, t0=t0, t1=t1,
        c_addr=c_addr, s_addr=s_addr, c_mac=c_mac, s_mac=s_mac,
        addr_loc=_local_classes(u_hi, u_lo, nets), addr_mcast=_multicast_text(u_v6, u_hi, u_lo),
        mac_group=((u_mac >> np.uint64(40)) & np.uint64(1)).astype(np.uint8),
        addr_names=addr_names, mac_names=mac_names), external_ip_devices)


def _encode_pair(a: pa.ChunkedArray, b: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Two string columns → int64 ids (-1 for null) over their distinct values, and the values."""
    both = pa.chunked_array(a.chunks + b.chunks, type=a.type).combine_chunks()
    enc = pc.dictionary_encode(both)
    ids = pc.fill_null(pc.cast(enc.indices, pa.int64()), -1).to_numpy()
    return ids, enc.dictionary


def _words(ip: str) -> tuple[int, int, int]:
    """(v6, hi, lo) of an address text as the flow records hold it; (0, 0, 0) when unparseable."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return 0, 0, 0
    if a.version == 4:
        return 0, 0, MAPPED | int(a)
    v = int(a)
    return 1, v >> 64, v & ((1 << 64) - 1)


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_V4_TEXT = rf"^{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}$"  # dotted quad as ipaddress accepts it


def _parse_ips(text: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_words` of many address texts: dotted quads in bulk, anything else one by one."""
    n = len(text)
    v6, hi, lo = np.zeros(n, np.uint64), np.zeros(n, np.uint64), np.zeros(n, np.uint64)
    is4 = pc.fill_null(pc.match_substring_regex(text, _V4_TEXT), False).to_numpy(zero_copy_only=False)
    if is4.any():
        octets = pc.cast(pc.list_flatten(pc.split_pattern(text.filter(pa.array(is4)), ".")), pa.uint64())
        o = octets.to_numpy().reshape(-1, 4)
        lo[is4] = np.uint64(MAPPED) | (o[:, 0] << np.uint64(24)) | (o[:, 1] << np.uint64(16)) | (o[:, 2] << np.uint64(8)) | o[:, 3]
    for i in np.flatnonzero(~is4).tolist():
        v6[i], hi[i], lo[i] = _words(text[i].as_py())
    return v6, hi, lo


def traffic_from_flows(flows: pa.Table, local: Callable[[str], bool] | LocalNets | None = None, *,
                       external_ip_devices: bool = True) -> dict[str, DeviceTraffic]:
    """Per-device traffic profile of a batch of flow rows (see the module docstring).

    ``local``: a callable ip → bool, or :class:`~iotwatch.addrs.LocalNets` (then local is
    ``addr_class == 1``, as :func:`traffic_from_records`); default :func:`default_local`.
    ``external_ip_devices``: as in :func:`traffic_from_records`."""
    n = flows.num_rows
    if n == 0:
        return {}
    ip_ids, ips = _encode_pair(flows.column("src_ip"), flows.column("dest_ip"))
    mac_ids, macs = _encode_pair(flows.column("src_mac"), flows.column("dest_mac"))
    ip_text = np.array(ips.to_pylist(), object)
    mac_text = np.array(macs.to_pylist(), object)
    w_v6, w_hi, w_lo = _parse_ips(ips)
    if isinstance(local, LocalNets):
        addr_loc = _local_classes(w_hi, w_lo, local)
    else:
        is_local = local or default_local
        addr_loc = np.array([bool(is_local(ip)) for ip in ip_text.tolist()], np.uint8)
    addr_mcast = _multicast_text(w_v6, w_hi, w_lo)  # = _multicast_ip(text)
    mac_group = np.array([_mac_group(m) for m in mac_text.tolist()], np.uint8)
    proto = flows.column("proto").to_numpy().astype(np.int64)
    state = pc.cast(flows.column("state"), pa.string())
    midstream = pc.fill_null(pc.equal(state, "midstream"), False).to_numpy()
    answered_state = pc.fill_null(pc.is_in(state, value_set=pa.array(_ANSWERED_TCP)), False).to_numpy()
    c_port = flows.column("src_port").to_numpy().astype(np.int64)
    s_port = flows.column("dest_port").to_numpy().astype(np.int64)
    pk_c = flows.column("pkts_toclient").to_numpy()
    answered, rev = _orient(proto, midstream, answered_state, pk_c, c_port & 0xFFFF, s_port & 0xFFFF)
    up_c, up_s = _swap(rev, flows.column("bytes_toserver").to_numpy().astype(np.int64),
                       flows.column("bytes_toclient").to_numpy().astype(np.int64))
    c_addr, s_addr = _swap(rev, ip_ids[:n], ip_ids[n:])
    c_mac, s_mac = _swap(rev, mac_ids[:n], mac_ids[n:])
    c_port, s_port = _swap(rev, c_port, s_port)
    return _profile(_Batch(
        proto=proto, s_port=s_port, answered=answered, up_c=up_c, up_s=up_s,
        t0=flows.column("start").to_numpy().astype(np.float64), t1=flows.column("end").to_numpy().astype(np.float64),
        c_addr=c_addr, s_addr=s_addr, c_mac=c_mac, s_mac=s_mac,
        addr_loc=addr_loc, addr_mcast=addr_mcast, mac_group=mac_group,
        addr_names=lambda i: ip_text[i].tolist(), mac_names=lambda i: mac_text[i].tolist()), external_ip_devices)
