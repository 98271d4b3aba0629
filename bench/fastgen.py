"""Fast, deterministic pcap writer for the iotwatch benchmarks.

Every packet is built column-wise with numpy (no per-packet Python, no scapy), so a
1 M-packet realistic mix takes seconds and a 10 M-packet flood streams out in chunks
with a small, bounded memory footprint.

Captures are classic pcap (magic a1b2c3d4, microsecond timestamps, little-endian),
link type Ethernet, snaplen 65535, full frames (caplen == wire length, minimum 60 bytes).

    python bench/fastgen.py mix      bench/data/mix.pcap
    python bench/fastgen.py synflood bench/data/synflood.pcap
    python bench/fastgen.py flood10m bench/data/flood10m.pcap
    python bench/fastgen.py KIND OUT.pcap [--packets N] [--seed S]

Kinds:
  mix       ~100 flows per 1,000 packets: IPv4 TCP (handshake, data both ways, FIN or RST,
            some unanswered SYNs), UDP (DNS request/response, NTP, a few long RTP streams),
            a few % ICMP echo, ARP and IPv6 (TCP, DNS, ICMPv6 echo); ~40 hosts in
            192.168.0.0/16 talking to public addresses through one router MAC; hosts of
            192.168.10.0/24 are on 802.1Q VLAN 10; ~690 B average frame; ~5 minutes.
  synflood  TCP SYNs (60-byte frames) from the router MAC to one victim (192.168.1.50:80),
            every packet from a distinct spoofed source address (so every packet is a new
            flow), ~100 k packets/s of capture time.
  flood10m  synflood with 10,000,000 packets by default.

Same kind + packets + seed => byte-identical file.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
Arr = npt.NDArray[Any]
Table = dict[str, Arr]

EPOCH_US = 1_700_000_000 * 1_000_000  # 2023-11-14T22:13:20Z: capture start
CHUNK = 65_536  # packets per write chunk (bounds memory: ~100 MB at 700 B/packet)
MSS = 1460

# Layouts (column "layout").
ARP, V4TCP, V4UDP, V4ICMP, V6TCP, V6UDP, V6ICMP = range(7)
L3_LEN = {ARP: 28, V4TCP: 20, V4UDP: 20, V4ICMP: 20, V6TCP: 40, V6UDP: 40, V6ICMP: 40}
L4_LEN = {ARP: 0, V4TCP: 20, V4UDP: 8, V4ICMP: 8, V6TCP: 20, V6UDP: 8, V6ICMP: 8}
ETHERTYPE = {
    ARP: 0x0806,
    V4TCP: 0x0800,
    V4UDP: 0x0800,
    V4ICMP: 0x0800,
    V6TCP: 0x86DD,
    V6UDP: 0x86DD,
    V6ICMP: 0x86DD,
}
IPPROTO = {V4TCP: 6, V4UDP: 17, V4ICMP: 1, V6TCP: 6, V6UDP: 17, V6ICMP: 58}

# TCP flags
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

COLUMNS: dict[str, type[np.generic]] = {
    "ts": np.int64,  # microseconds since EPOCH (relative until written)
    "layout": np.uint8,
    "vlan": np.uint16,  # 0 = untagged
    "smac": np.uint64,
    "dmac": np.uint64,
    "src_hi": np.uint64,  # IPv6 upper 64 bits (0 for IPv4/ARP)
    "src": np.uint64,  # IPv4 address, or IPv6 lower 64 bits
    "dst_hi": np.uint64,
    "dst": np.uint64,
    "sport": np.uint16,  # TCP/UDP port; ICMP echo id; ARP opcode
    "dport": np.uint16,  # TCP/UDP port; ICMP echo sequence
    "seq": np.uint32,
    "ack": np.uint32,
    "flags": np.uint8,  # TCP flags; ICMP type
    "win": np.uint16,
    "opt": np.uint8,  # 1 = TCP MSS option (SYN, SYN/ACK)
    "paylen": np.uint32,  # zero-filled payload after the headers/app bytes
    "app": np.int16,  # application template id, -1 = none
    "appv": np.uint32,  # DNS transaction id / RTP sequence number
    "appv2": np.uint32,  # RTP timestamp
    "ipid": np.uint16,
    "ttl": np.uint8,
}


def empty(n: int) -> Table:
    return {k: np.zeros(n, dtype=t) for k, t in COLUMNS.items()}


def concat(tables: list[Table]) -> Table:
    return {k: np.concatenate([t[k].astype(dt, copy=False) for t in tables]) for k, dt in COLUMNS.items()}


def take(t: Table, idx: npt.NDArray[np.intp] | slice) -> Table:
    return {k: v[idx] for k, v in t.items()}


# ----------------------------------------------------------------------------------------
# Application templates (bytes placed right after the L4 header; per-packet fields patched)


def dns_name(name: str) -> bytes:
    out = b""
    for label in name.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


DNS_NAMES = [
    "time.google.com", "pool.ntp.org", "api.amazonalexa.com", "connectivitycheck.gstatic.com",
    "www.google.com", "graph.facebook.com", "mqtt.tuyaeu.com", "a2.tuyaeu.com",
    "device-metrics-us.amazon.com", "hik-connect.com", "api.ezvizlife.com", "dev.ezvizlife.com",
    "firmware.xiaomi.com", "ot.io.mi.com", "api.io.mi.com", "push.apple.com",
    "gateway.icloud.com", "clients3.google.com", "mtalk.google.com", "android.clients.google.com",
    "ring.com", "fw.ring.com", "es.ring.com", "api.smartthings.com",
    "dc.services.visualstudio.com", "update.googleapis.com", "www.msftconnecttest.com", "settings-win.data.microsoft.com",
    "ocsp.digicert.com", "crl.sectigo.com", "s3.amazonaws.com", "cdn.jsdelivr.net",
]  # fmt: skip


class Templates:
    """Registry of application byte templates; ids index `self.data`/`self.kind`."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.kind: list[str] = []  # "dns", "rtp" or "static"

    def add(self, data: bytes, kind: str) -> int:
        self.data.append(data)
        self.kind.append(kind)
        return len(self.data) - 1


TPL = Templates()
DNS_Q: list[int] = []
DNS_R: list[int] = []
DNS_R6: list[int] = []
for _i, _n in enumerate(DNS_NAMES):
    _q = dns_name(_n) + b"\x00\x01\x00\x01"
    DNS_Q.append(TPL.add(b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + _q, "dns"))
    _ans = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04" + bytes([34, 100 + _i, 17, 1 + 7 * _i])
    DNS_R.append(TPL.add(b"\x00\x00\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + _q + _ans, "dns"))
    _q6 = dns_name(_n) + b"\x00\x1c\x00\x01"
    _ans6 = (
        b"\xc0\x0c\x00\x1c\x00\x01\x00\x00\x01\x2c\x00\x10"
        + bytes.fromhex("2a0014504001080e")
        + _i.to_bytes(8, "big")
    )
    DNS_R6.append(TPL.add(b"\x00\x00\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + _q6 + _ans6, "dns"))
DNS_Q6 = [
    TPL.add(b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + dns_name(n) + b"\x00\x1c\x00\x01", "dns")
    for n in DNS_NAMES
]
RTP = TPL.add(b"\x80\x00" + bytes(10), "rtp")  # version 2, PT 0 (PCMU); seq/ts/ssrc patched
NTP_C = TPL.add(b"\x23" + bytes(47), "static")
NTP_S = TPL.add(b"\x24\x02\x00\xe9" + bytes(44), "static")
TPL_LEN = np.array([len(d) for d in TPL.data], dtype=np.int64)


# ----------------------------------------------------------------------------------------
# Frame building


def put(hdr: U8, col: int, values: Arr, nbytes: int, order: str = ">") -> None:
    """Write `values` as `nbytes`-wide integers (big-endian by default) at column `col`."""
    if nbytes in (1, 2, 4, 8):
        b = np.ascontiguousarray(values).astype(f"{order}u{nbytes}").view(np.uint8)
        hdr[:, col : col + nbytes] = b.reshape(-1, nbytes)
    elif nbytes == 6:  # MAC address held in the low 48 bits of a uint64
        b = np.ascontiguousarray(values).astype(">u8").view(np.uint8).reshape(-1, 8)
        hdr[:, col : col + 6] = b[:, 2:]
    else:
        raise ValueError(nbytes)


def word_sum(hdr: U8, start: int, end: int) -> npt.NDArray[np.uint64]:
    """Sum of big-endian 16-bit words of hdr[:, start:end] (odd tail padded with zero)."""
    h = hdr[:, start:end].astype(np.uint64)
    return h[:, 0::2].sum(axis=1) * 256 + h[:, 1::2].sum(axis=1)


def fold(s: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return (~s) & np.uint64(0xFFFF)


class Pattern:
    """Payload bytes: a fixed pseudo-random block tiled over each chunk buffer, so payloads
    look like encrypted data (incompressible) at no per-byte cost, and their checksum
    contribution comes from prefix sums instead of touching the bytes."""

    SIZE = 1 << 16

    def __init__(self) -> None:
        self.block = np.random.default_rng(0x1057).integers(0, 256, self.SIZE, dtype=np.uint8)
        two = np.concatenate([self.block, self.block]).astype(np.uint64)
        even = np.where(np.arange(2 * self.SIZE) % 2 == 0, two, 0)
        self.even = np.concatenate([[0], np.cumsum(even)]).astype(np.uint64)
        self.odd = np.concatenate([[0], np.cumsum(two - even)]).astype(np.uint64)

    def fill(self, size: int) -> U8:
        return np.resize(self.block, size)

    def word_sum(
        self, start: npt.NDArray[np.int64], length: npt.NDArray[np.int64], first_high: bool
    ) -> npt.NDArray[np.uint64]:
        """Checksum word sum of buffer[start:start+length] (length <= SIZE); the first byte
        is the high byte of a 16-bit word if `first_high`, else the low byte."""
        a = start % self.SIZE
        b = a + length
        ev = self.even[b] - self.even[a]
        od = self.odd[b] - self.odd[a]
        same = (a % 2 == 0) == first_high  # even buffer positions are high bytes
        hi = np.where(same, ev, od)
        lo = np.where(same, od, ev)
        return hi * np.uint64(256) + lo


PATTERN = Pattern()


def group_width(layout: int, tagged: bool, opt: int, app: int) -> int:
    """Bytes from the pcap record header to the end of the application template."""
    eth = 18 if tagged else 14
    l4len = L4_LEN[layout] + (4 if opt else 0)
    return 16 + eth + L3_LEN[layout] + l4len + (int(TPL_LEN[app]) if app >= 0 else 0)


def build_group(t: Table, layout: int, tagged: bool, opt: int, app: int, off: npt.NDArray[np.int64]) -> U8:
    """Record header + frame header bytes of packets sharing one layout.

    Columns past the headers up to a 60-byte frame are zero (Ethernet padding, or the
    first payload bytes of a tiny frame); the rest of the payload is PATTERN at the
    record's position `off` in the chunk buffer."""
    m = len(t["ts"])
    eth = 18 if tagged else 14
    l3 = 16 + eth
    l4 = l3 + L3_LEN[layout]
    l4len = L4_LEN[layout] + (4 if opt else 0)
    app_at = l4 + l4len
    width = group_width(layout, tagged, opt, app)
    applen = width - app_at
    block = max(width, 76)
    hdr = np.zeros((m, block), dtype=np.uint8)
    paylen = t["paylen"].astype(np.int64)
    frame = np.maximum(width - 16 + paylen, 60)
    # pcap record header
    put(hdr, 0, t["ts"] // 1_000_000, 4, "<")
    put(hdr, 4, t["ts"] % 1_000_000, 4, "<")
    put(hdr, 8, frame, 4, "<")
    put(hdr, 12, frame, 4, "<")
    # Ethernet (+ 802.1Q)
    put(hdr, 16, t["dmac"], 6)
    put(hdr, 22, t["smac"], 6)
    if tagged:
        hdr[:, 28] = 0x81
        put(hdr, 30, t["vlan"], 2)
    put(hdr, l3 - 2, np.full(m, ETHERTYPE[layout]), 2)
    if layout == ARP:
        hdr[:, l3 : l3 + 8] = np.frombuffer(b"\x00\x01\x08\x00\x06\x04\x00\x00", np.uint8)
        put(hdr, l3 + 6, t["sport"], 2)  # opcode
        put(hdr, l3 + 8, t["smac"], 6)
        put(hdr, l3 + 14, t["src"], 4)
        put(hdr, l3 + 18, np.where(t["sport"] == 2, t["dmac"], 0), 6)
        put(hdr, l3 + 24, t["dst"], 4)
        return hdr
    l4_total = l4len + applen + paylen  # L4 header + data
    proto = IPPROTO[layout]
    if layout in (V4TCP, V4UDP, V4ICMP):
        hdr[:, l3] = 0x45
        put(hdr, l3 + 2, 20 + l4_total, 2)
        put(hdr, l3 + 4, t["ipid"], 2)
        hdr[:, l3 + 6] = 0x40  # DF
        hdr[:, l3 + 8] = t["ttl"]
        hdr[:, l3 + 9] = proto
        put(hdr, l3 + 12, t["src"], 4)
        put(hdr, l3 + 16, t["dst"], 4)
        put(hdr, l3 + 10, fold(word_sum(hdr, l3, l3 + 20)), 2)
        pseudo = word_sum(hdr, l3 + 12, l3 + 20) + np.uint64(proto) + l4_total.astype(np.uint64)
    else:
        hdr[:, l3] = 0x60
        put(hdr, l3 + 4, l4_total, 2)
        hdr[:, l3 + 6] = proto
        hdr[:, l3 + 7] = t["ttl"]
        put(hdr, l3 + 8, t["src_hi"], 8)
        put(hdr, l3 + 16, t["src"], 8)
        put(hdr, l3 + 24, t["dst_hi"], 8)
        put(hdr, l3 + 32, t["dst"], 8)
        pseudo = word_sum(hdr, l3 + 8, l3 + 40) + np.uint64(proto) + l4_total.astype(np.uint64)
    if layout in (V4TCP, V6TCP):
        put(hdr, l4, t["sport"], 2)
        put(hdr, l4 + 2, t["dport"], 2)
        put(hdr, l4 + 4, t["seq"], 4)
        put(hdr, l4 + 8, t["ack"], 4)
        hdr[:, l4 + 12] = (l4len // 4) << 4
        hdr[:, l4 + 13] = t["flags"]
        put(hdr, l4 + 14, t["win"], 2)
        if opt:
            hdr[:, l4 + 20 : l4 + 24] = np.frombuffer(b"\x02\x04\x05\xb4", np.uint8)  # MSS 1460
    elif layout in (V4UDP, V6UDP):
        put(hdr, l4, t["sport"], 2)
        put(hdr, l4 + 2, t["dport"], 2)
        put(hdr, l4 + 4, l4_total, 2)
    else:  # ICMP / ICMPv6 echo
        hdr[:, l4] = t["flags"]
        put(hdr, l4 + 4, t["sport"], 2)
        put(hdr, l4 + 6, t["dport"], 2)
    if app >= 0:
        hdr[:, app_at:width] = np.frombuffer(TPL.data[app], np.uint8)
        kind = TPL.kind[app]
        if kind == "dns":
            put(hdr, app_at, t["appv"], 2)
        elif kind == "rtp":
            put(hdr, app_at + 2, t["appv"], 2)
            put(hdr, app_at + 4, t["appv2"], 4)
            put(hdr, app_at + 8, (t["sport"].astype(np.uint64) * 2654435761) & 0xFFFFFFFF, 4)
    if layout == V4UDP:
        return hdr  # checksum 0: "none", legal for UDP over IPv4
    # L4 checksum: header block (zeros past `width`) + the PATTERN bytes after the block
    body = word_sum(hdr, l4, block)
    tail = 16 + frame - block  # pattern bytes of this frame
    has = tail > 0
    if has.any():
        body[has] += PATTERN.word_sum(off[has] + block, tail[has], (block - l4) % 2 == 0)
    csum = fold(body if layout == V4ICMP else body + pseudo)
    if layout == V6UDP:
        csum = np.where(csum == 0, 0xFFFF, csum)
    at = {V4TCP: 16, V6TCP: 16, V6UDP: 6, V4ICMP: 2, V6ICMP: 2}[layout]
    put(hdr, l4 + at, csum, 2)
    return hdr


def render(t: Table) -> bytes:
    """pcap records (headers + frames) for the packets of `t`, in order."""
    n = len(t["ts"])
    tagged = t["vlan"] != 0
    app = t["app"].astype(np.int64)
    key = (t["layout"].astype(np.int64) * 2 + tagged) * 2 + t["opt"].astype(np.int64)
    key = key * 1024 + (app + 1)
    order = np.argsort(key, kind="stable")
    bounds = np.flatnonzero(np.diff(key[order])) + 1
    groups = []
    reclen = np.zeros(n, dtype=np.int64)
    for g in np.split(order, bounds):
        k = int(key[g[0]])
        spec = (k // 4096, bool((k // 2048) % 2), (k // 1024) % 2, k % 1024 - 1)  # layout, tagged, opt, app
        width = group_width(*spec)
        reclen[g] = 16 + np.maximum(width - 16 + t["paylen"][g].astype(np.int64), 60)
        groups.append((g, spec))
    off = np.zeros(n, dtype=np.int64)
    np.cumsum(reclen[:-1], out=off[1:])
    buf = PATTERN.fill(int(reclen.sum()))
    for g, spec in groups:
        hdr = build_group(take(t, g), *spec, off=off[g])
        idx = off[g][:, None] + np.arange(hdr.shape[1], dtype=np.int64)
        buf[idx] = hdr
    return buf.tobytes()


def file_header() -> bytes:
    return (
        np.array([0xA1B2C3D4], "<u4").tobytes()
        + np.array([2, 4], "<u2").tobytes()
        + np.array([0, 0, 65535, 1], "<u4").tobytes()
    )


def write_pcap(out: BinaryIO, chunks: Iterator[Table]) -> int:
    out.write(file_header())
    n = 0
    for c in chunks:
        for s in range(0, len(c["ts"]), CHUNK):
            part = take(c, slice(s, s + CHUNK))
            out.write(render(part))
            n += len(part["ts"])
    return n


# ----------------------------------------------------------------------------------------
# Addresses


def ip4(a: int, b: int, c: int, d: int) -> int:
    return (a << 24) | (b << 16) | (c << 8) | d


def public_ips(rng: np.random.Generator, n: int) -> npt.NDArray[np.uint64]:
    """Random unicast addresses outside private, loopback, link-local, CGN, test and multicast ranges."""
    out = np.zeros(0, dtype=np.uint64)
    while len(out) < n:
        x = rng.integers(ip4(1, 0, 0, 0), ip4(224, 0, 0, 0), 2 * n, dtype=np.uint64)
        a, b = x >> 24, (x >> 16) & 0xFF
        bad = (a == 10) | (a == 127) | ((a == 100) & (b >= 64) & (b < 128)) | ((a == 169) & (b == 254))
        bad |= (
            ((a == 172) & (b >= 16) & (b < 32))
            | ((a == 192) & (b == 168))
            | ((a == 198) & (b >= 18) & (b < 20))
        )
        bad |= (a == 192) & (b == 0)
        out = np.concatenate([out, x[~bad]])
    return out[:n]


ROUTER_MAC = 0x001A_2B3C_4D5E
HOST_OUIS = [
    0xB827EB,
    0xDCA632,
    0x240AC4,
    0x3C71BF,
    0xC056E3,
    0x44D9E7,
    0x18B430,
    0xF0EF86,
    0x001788,
    0x50C7BF,
]
LAN6 = 0x2A02_8070_1234_5600
V6_PREFIXES = [0x2A00_1450_4001_0800, 0x2606_4700_0000_0000, 0x2A03_2880_F10C_0083, 0x2620_0000_2D40_0202]
GOOGLE_DNS6 = (0x2001_4860_4860_0000, 0x8888)


class Lan:
    def __init__(self, rng: np.random.Generator, n_hosts: int = 40) -> None:
        self.n = n_hosts
        ouis = np.array(HOST_OUIS, dtype=np.uint64)[np.arange(n_hosts) % len(HOST_OUIS)]
        self.mac = (ouis << np.uint64(24)) | rng.integers(0, 1 << 24, n_hosts, dtype=np.uint64)
        subnet = np.where(np.arange(n_hosts) % 5 == 1, 10, np.where(np.arange(n_hosts) % 5 == 3, 20, 1))
        self.subnet = subnet.astype(np.uint64)
        self.ip = (
            np.uint64(ip4(192, 168, 0, 0))
            | (self.subnet << np.uint64(8))
            | (np.arange(n_hosts, dtype=np.uint64) + np.uint64(20))
        )
        self.gw = np.uint64(ip4(192, 168, 0, 1)) | (self.subnet << np.uint64(8))
        self.vlan = np.where(subnet == 10, 10, 0).astype(np.uint16)
        self.ip6 = rng.integers(1, 1 << 62, n_hosts, dtype=np.uint64)
        w = 1.0 / (np.arange(1, n_hosts + 1) ** 0.7)
        self.weight = rng.permutation(w / w.sum())


# ----------------------------------------------------------------------------------------
# The realistic mix


def expand(counts: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(flow index, position within flow) for every packet of flows with `counts` packets."""
    flow = np.repeat(np.arange(len(counts)), counts)
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return flow, np.arange(int(counts.sum()), dtype=np.int64) - starts[flow]


def flow_cumsum(
    x: npt.NDArray[np.int64], flow: npt.NDArray[np.int64], k: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Exclusive running sum of x within each flow (packets of a flow are contiguous)."""
    c = np.cumsum(x) - x
    first = np.flatnonzero(k == 0)
    return c - c[first][flow]


def fill_endpoints(
    t: Table, fl: dict[str, Arr], flow: npt.NDArray[np.int64], c2s: npt.NDArray[np.bool_], v6: bool
) -> None:
    """Addresses, MACs, VLAN, ports and TTL from the flow table, per direction."""
    hmac, gmac = fl["hmac"][flow], np.full(len(flow), ROUTER_MAC, dtype=np.uint64)
    t["smac"] = np.where(c2s, hmac, gmac)
    t["dmac"] = np.where(c2s, gmac, hmac)
    t["vlan"] = fl["vlan"][flow]
    cip, sip = fl["cip"][flow], fl["sip"][flow]
    t["src"], t["dst"] = np.where(c2s, cip, sip), np.where(c2s, sip, cip)
    if v6:
        chi, shi = fl["cip_hi"][flow], fl["sip_hi"][flow]
        t["src_hi"], t["dst_hi"] = np.where(c2s, chi, shi), np.where(c2s, shi, chi)
    cp, sp = fl["cport"][flow], fl["sport"][flow]
    t["sport"], t["dport"] = np.where(c2s, cp, sp), np.where(c2s, sp, cp)
    t["ttl"] = np.where(c2s, 64, fl["sttl"][flow]).astype(np.uint8)


def tcp_packets(fl: dict[str, Arr], rng: np.random.Generator, v6: bool) -> Table:
    """Handshake, request segments, response segments with a client ACK every 2, then FIN or RST.

    Flows with s == -1 are unanswered SYNs (SYN + one retransmission), s == -2 rejected
    connections (SYN, RST/ACK)."""
    r, s, end = fl["r"], fl["s"], fl["end"]
    unans = s == -1
    rej = s == -2
    s0 = np.maximum(s, 0)
    a = s0 // 2
    counts = np.where(unans | rej, 2, 3 + r + s0 + a + np.where(end == 0, 3, 1)).astype(np.int64)
    flow, k = expand(counts)
    n = len(flow)
    t = empty(n)
    rf, sf = r[flow], s0[flow]
    j = k - 3 - rf  # position in the response region
    in_req = (k >= 3) & (j < 0)
    in_resp = (j >= 0) & (j < sf + sf // 2)
    e = j - (sf + sf // 2)  # position in the teardown region
    is_ack = in_resp & (j % 3 == 2)
    d = (j // 3) * 2 + j % 3  # data segment number in the response
    c2s = (k == 0) | (k == 2) | in_req | is_ack | ((end[flow] == 0) & (e % 2 == 0) & (e >= 0))
    unf = unans[flow]
    c2s |= unf
    flags = np.full(n, ACK, dtype=np.int64)
    flags[k == 0] = SYN
    flags[k == 1] = SYN | ACK
    flags[in_req] = PSH | ACK
    flags[in_resp & ~is_ack & (d == sf - 1)] = PSH | ACK
    fin_end = end[flow] == 0
    flags[fin_end & ((e == 0) | (e == 1))] = FIN | ACK
    flags[~fin_end & (e == 0)] = RST | ACK
    flags[unf] = SYN
    pay = np.zeros(n, dtype=np.int64)
    pay[in_req] = np.where(k[in_req] == 3, fl["req_len"][flow[in_req]], MSS)
    data = in_resp & ~is_ack
    pay[data] = np.where(d[data] == sf[data] - 1, fl["last_len"][flow[data]], MSS)
    rjf = rej[flow]
    c2s[rjf] = k[rjf] == 0
    flags[rjf] = np.where(k[rjf] == 0, SYN, RST | ACK)
    pay[rjf] = 0
    # sequence numbers: SYN and FIN take one
    used = pay + ((flags & (SYN | FIN)) != 0)
    used[unf] = 0  # the retransmitted SYN repeats the first one's sequence number
    ccum = flow_cumsum(np.where(c2s, used, 0), flow, k)
    scum = flow_cumsum(np.where(c2s, 0, used), flow, k)
    isn_c, isn_s = fl["isn_c"][flow].astype(np.int64), fl["isn_s"][flow].astype(np.int64)
    t["seq"] = (np.where(c2s, isn_c + ccum, isn_s + scum) & 0xFFFFFFFF).astype(np.uint32)
    ackn = np.where(c2s, isn_s + scum, isn_c + ccum) & 0xFFFFFFFF
    t["ack"] = np.where((flags & ACK) != 0, ackn, 0).astype(np.uint32)
    t["flags"] = flags.astype(np.uint8)
    t["win"] = np.where(c2s, 64240, 65160).astype(np.uint16)
    t["opt"] = ((flags & SYN) != 0).astype(np.uint8)
    t["paylen"] = pay.astype(np.uint32)
    t["app"][:] = -1
    fill_endpoints(t, fl, flow, c2s, v6)
    t["layout"][:] = V6TCP if v6 else V4TCP
    t["ipid"] = rng.integers(0, 65536, n, dtype=np.uint16)
    # timing: the server answers one RTT after the client; everything else is close together
    prev_c2s = np.roll(c2s, 1)
    gap = rng.exponential(300.0, n)
    turn = (k > 0) & prev_c2s & ~c2s
    gap[turn] = fl["rtt"][flow[turn]] * rng.uniform(0.9, 1.2, int(turn.sum()))
    gap[unf & (k == 1)] = 1_000_000.0  # SYN retransmission after 1 s
    gap[k == 0] = 0.0
    t["ts"] = fl["start"][flow] + flow_cumsum(gap.astype(np.int64), flow, k) + gap.astype(np.int64)
    return t


def udp_pair_packets(fl: dict[str, Arr], rng: np.random.Generator, v6: bool) -> Table:
    """Request/response pairs (DNS, NTP): fl["npair"] pairs, templates fl["qt"]/fl["rt"]."""
    counts = (2 * fl["npair"]).astype(np.int64)
    flow, k = expand(counts)
    n = len(flow)
    t = empty(n)
    c2s = k % 2 == 0
    fill_endpoints(t, fl, flow, c2s, v6)
    t["layout"][:] = V6UDP if v6 else V4UDP
    t["app"] = np.where(c2s, fl["qt"][flow], fl["rt"][flow]).astype(np.int16)
    t["appv"] = (fl["txid"][flow] + k // 2).astype(np.uint32) & 0xFFFF
    t["ipid"] = rng.integers(0, 65536, n, dtype=np.uint16)
    gap = np.where(c2s, 1_000_000.0 * (k > 0), fl["rtt"][flow] * rng.uniform(0.9, 1.3, n))
    t["ts"] = fl["start"][flow] + flow_cumsum(gap.astype(np.int64), flow, k) + gap.astype(np.int64)
    return t


def rtp_packets(fl: dict[str, Arr], rng: np.random.Generator) -> Table:
    """Bidirectional 20 ms G.711 RTP: 172-byte UDP payloads (frame 214 B) each way."""
    counts = (2 * fl["npair"]).astype(np.int64)
    flow, k = expand(counts)
    n = len(flow)
    t = empty(n)
    c2s = k % 2 == 0
    fill_endpoints(t, fl, flow, c2s, False)
    t["layout"][:] = V4UDP
    t["app"][:] = RTP
    t["paylen"][:] = 160
    i = k // 2
    t["appv"] = ((fl["txid"][flow] + i) & 0xFFFF).astype(np.uint32)
    t["appv2"] = ((fl["isn_c"][flow].astype(np.int64) + 160 * i) & 0xFFFFFFFF).astype(np.uint32)
    t["ipid"] = ((fl["isn_s"][flow].astype(np.int64) + i) & 0xFFFF).astype(np.uint16)
    jitter = rng.normal(0, 400, n).clip(-2000, 2000)
    t["ts"] = (fl["start"][flow] + i * 20_000 + np.where(c2s, 0, fl["rtt"][flow] // 2) + jitter).astype(
        np.int64
    )
    return t


def icmp_packets(fl: dict[str, Arr], rng: np.random.Generator, v6: bool) -> Table:
    """Echo request/reply pairs one second apart, 56-byte payload."""
    counts = (2 * fl["npair"]).astype(np.int64)
    flow, k = expand(counts)
    n = len(flow)
    t = empty(n)
    c2s = k % 2 == 0
    fill_endpoints(t, fl, flow, c2s, v6)
    t["layout"][:] = V6ICMP if v6 else V4ICMP
    req, rep = (128, 129) if v6 else (8, 0)
    t["flags"] = np.where(c2s, req, rep).astype(np.uint8)
    t["sport"][:] = fl["txid"][flow]
    t["dport"] = (k // 2 + 1).astype(np.uint16)
    t["paylen"][:] = 56
    t["app"][:] = -1
    t["ipid"] = rng.integers(0, 65536, n, dtype=np.uint16)
    gap = np.where(c2s, 1_000_000.0 * (k > 0) - fl["rtt"][flow] * (k > 0), fl["rtt"][flow])
    t["ts"] = fl["start"][flow] + flow_cumsum(gap.astype(np.int64), flow, k) + gap.astype(np.int64)
    return t


def arp_packets(
    lan: Lan, host: npt.NDArray[np.int64], start: npt.NDArray[np.int64], rng: np.random.Generator
) -> Table:
    """who-has <gateway> tell <host> (broadcast), then the router's reply."""
    n = 2 * len(host)
    t = empty(n)
    h = np.repeat(host, 2)
    req = np.arange(n) % 2 == 0
    hm = lan.mac[h]
    t["layout"][:] = ARP
    t["vlan"] = lan.vlan[h]
    t["smac"] = np.where(req, hm, ROUTER_MAC).astype(np.uint64)
    t["dmac"] = np.where(req, 0xFFFF_FFFF_FFFF, hm).astype(np.uint64)
    t["src"] = np.where(req, lan.ip[h], lan.gw[h])
    t["dst"] = np.where(req, lan.gw[h], lan.ip[h])
    t["sport"] = np.where(req, 1, 2).astype(np.uint16)
    t["app"][:] = -1
    t["ts"] = np.repeat(start, 2) + np.where(req, 0, rng.integers(200, 2000, n))
    return t


def flow_table(
    lan: Lan,
    n: int,
    rng: np.random.Generator,
    dur_us: int,
    v6: bool = False,
    server: npt.NDArray[np.uint64] | None = None,
) -> dict[str, Arr]:
    """Common per-flow columns: client host, addresses, start time, RTT, ISNs."""
    host = rng.choice(lan.n, n, p=lan.weight)
    fl: dict[str, Arr] = {
        "host": host,
        "start": np.sort(rng.integers(0, dur_us, n)),
        "hmac": lan.mac[host],
        "vlan": lan.vlan[host],
        "cip": lan.ip6[host] if v6 else lan.ip[host],
        "cip_hi": np.full(n, LAN6, dtype=np.uint64),
        "sip": server if server is not None else np.zeros(n, dtype=np.uint64),
        "sip_hi": np.zeros(n, dtype=np.uint64),
        "rtt": rng.lognormal(np.log(25_000), 0.6, n).clip(1_000, 400_000),
        "sttl": rng.choice(np.array([46, 50, 52, 54, 56, 57, 58, 116, 118, 241]), n),
        "isn_c": rng.integers(0, 1 << 32, n, dtype=np.int64),
        "isn_s": rng.integers(0, 1 << 32, n, dtype=np.int64),
        "txid": rng.integers(0, 65536, n, dtype=np.int64),
        "cport": np.zeros(n, dtype=np.uint64),
        "sport": np.zeros(n, dtype=np.uint64),
    }
    return fl


def assign_ephemeral(flows: list[dict[str, Arr]], n_hosts: int) -> None:
    """Client ports 32768-60999, handed out in connection order per host (no reuse until wrap)."""
    host = np.concatenate([f["host"] for f in flows])
    start = np.concatenate([f["start"] for f in flows])
    order = np.lexsort((start, host))
    rank = np.empty(len(host), dtype=np.int64)
    sh = host[order]
    first = np.searchsorted(sh, sh, side="left")
    rank[order] = np.arange(len(host)) - first
    base = (np.arange(n_hosts) * 7919) % 28232
    port = 32768 + (base[host] + rank) % 28232
    at = 0
    for f in flows:
        m = len(f["host"])
        f["cport"] = port[at : at + m].astype(np.uint64)
        at += m


def gen_mix(n_packets: int, seed: int) -> Table:
    """A realistic LAN mix with about one flow per 10 packets and ~690 B average frames.

    Flows start uniformly over the capture; ~6 % more packets than asked for are made and
    the capture is cut at the n-th packet in time (the cut leaves some flows unfinished,
    as any capture does). If the draw falls short, it is redone with more flows."""
    factor = 1.06
    while True:
        t = gen_mix_scaled(n_packets / 1_000_000 * factor, seed)
        if len(t["ts"]) >= n_packets:
            break
        factor *= 1.05 * n_packets / len(t["ts"])
    order = np.argsort(t["ts"], kind="stable")
    t = take(t, order[:n_packets])
    t["ts"] = t["ts"] - t["ts"][0] + EPOCH_US
    return t


def gen_mix_scaled(scale: float, seed: int) -> Table:
    """All packets of the mix at `scale` (1.0: ~1 M packets), unsorted, relative times."""
    rng = np.random.default_rng(seed)
    lan = Lan(rng)
    dur = int(300e6 * max(scale, 0.02))  # ~5 minutes for 1 M packets
    pool = public_ips(rng, 4000)
    pop = 1.0 / np.arange(1, len(pool) + 1) ** 0.9
    pop /= pop.sum()

    def cnt(x: float) -> int:
        return max(1, round(x * scale))

    # IPv4 TCP
    n_tcp = cnt(27_000)
    tcp = flow_table(lan, n_tcp, rng, dur, server=pool[rng.choice(len(pool), n_tcp, p=pop)])
    ports = np.array([443, 80, 8883, 1883, 554, 22, 8080, 5222, 8443])
    share = [0.66, 0.14, 0.06, 0.03, 0.03, 0.02, 0.02, 0.02, 0.02]
    tcp["sport"] = rng.choice(ports, n_tcp, p=share).astype(np.uint64)
    tcp["r"] = rng.geometric(0.65, n_tcp).astype(np.int64)
    tcp["s"] = np.minimum(rng.lognormal(np.log(4.6), 1.7, n_tcp).astype(np.int64), 4000)
    kind = rng.random(n_tcp)
    tcp["s"][kind < 0.04] = -1  # unanswered SYN
    tcp["s"][(kind >= 0.04) & (kind < 0.08)] = -2  # rejected (RST)
    tcp["end"] = (kind > 0.93).astype(np.int64)  # 7 % reset by the server, the rest FIN
    tcp["req_len"] = rng.integers(90, 900, n_tcp)
    tcp["last_len"] = rng.integers(1, MSS + 1, n_tcp)
    # IPv4 DNS (to the gateway or a public resolver) and NTP
    n_dns = cnt(72_000)
    public_dns = np.array([ip4(8, 8, 8, 8), ip4(1, 1, 1, 1), ip4(9, 9, 9, 9)], dtype=np.uint64)
    resolver = np.where(rng.random(n_dns) < 0.6, np.uint64(0), rng.choice(public_dns, n_dns))
    dns = flow_table(lan, n_dns, rng, dur)
    dns["sip"] = np.where(resolver == 0, lan.gw[dns["host"]], resolver).astype(np.uint64)
    dns["rtt"] = np.where(resolver == 0, dns["rtt"] / 10, dns["rtt"] / 2)
    dns["sttl"] = np.where(resolver == 0, 64, dns["sttl"]).astype(np.uint8)
    dns["sport"][:] = 53
    dns["npair"] = np.where(rng.random(n_dns) < 0.15, 2, 1)
    name = rng.choice(len(DNS_NAMES), n_dns, p=(w := 1.0 / np.arange(1, len(DNS_NAMES) + 1)) / w.sum())
    dns["qt"], dns["rt"] = np.array(DNS_Q)[name], np.array(DNS_R)[name]
    n_ntp = cnt(3_000)
    ntp = flow_table(lan, n_ntp, rng, dur, server=pool[rng.choice(len(pool), n_ntp)])
    ntp["cport"][:] = 123
    ntp["sport"][:] = 123
    ntp["npair"] = np.ones(n_ntp, dtype=np.int64)
    ntp["qt"], ntp["rt"] = np.full(n_ntp, NTP_C), np.full(n_ntp, NTP_S)
    # long RTP streams (calls / intercoms)
    n_rtp = cnt(4)
    rtp = flow_table(lan, n_rtp, rng, dur // 2, server=pool[rng.choice(len(pool), n_rtp)])
    rtp["cport"] = (2 * rng.integers(5000, 10000, n_rtp)).astype(np.uint64)
    rtp["sport"] = (2 * rng.integers(8000, 16000, n_rtp)).astype(np.uint64)
    rtp["npair"] = (rng.uniform(0.15, 0.45, n_rtp) * dur / 20_000).astype(np.int64)
    # ICMP echo
    n_icmp = cnt(2_500)
    icmp = flow_table(lan, n_icmp, rng, dur, server=pool[rng.choice(len(pool), n_icmp, p=pop)])
    icmp["npair"] = rng.integers(1, 4, n_icmp)
    # IPv6: TCP, DNS and ICMPv6 echo
    n6 = cnt(400)
    tcp6 = flow_table(lan, n6, rng, dur, v6=True)
    pfx = np.array(V6_PREFIXES, dtype=np.uint64)
    tcp6["sip_hi"] = pfx[rng.integers(0, len(pfx), n6)]
    tcp6["sip"] = rng.integers(1, 1 << 16, n6, dtype=np.uint64)
    tcp6["sport"][:] = 443
    tcp6["r"] = np.ones(n6, dtype=np.int64)
    tcp6["s"] = np.minimum(rng.lognormal(np.log(6), 1.2, n6).astype(np.int64), 1000)
    tcp6["end"] = np.zeros(n6, dtype=np.int64)
    tcp6["req_len"] = rng.integers(90, 900, n6)
    tcp6["last_len"] = rng.integers(1, MSS + 1, n6)
    n_dns6 = cnt(2_500)
    dns6 = flow_table(lan, n_dns6, rng, dur, v6=True)
    dns6["sip_hi"][:], dns6["sip"][:] = GOOGLE_DNS6
    dns6["sport"][:] = 53
    dns6["npair"] = np.ones(n_dns6, dtype=np.int64)
    name6 = rng.integers(0, len(DNS_NAMES), n_dns6)
    dns6["qt"], dns6["rt"] = np.array(DNS_Q6)[name6], np.array(DNS_R6)[name6]
    n_icmp6 = cnt(400)
    icmp6 = flow_table(lan, n_icmp6, rng, dur, v6=True)
    icmp6["sip_hi"] = pfx[rng.integers(0, len(pfx), n_icmp6)]
    icmp6["sip"] = rng.integers(1, 1 << 16, n_icmp6, dtype=np.uint64)
    icmp6["npair"] = rng.integers(1, 4, n_icmp6)
    assign_ephemeral([tcp, dns, tcp6, dns6], lan.n)
    # ARP
    n_arp = cnt(2_500)
    arp_host = rng.choice(lan.n, n_arp)

    parts = [
        tcp_packets(tcp, rng, False),
        udp_pair_packets(dns, rng, False),
        udp_pair_packets(ntp, rng, False),
        rtp_packets(rtp, rng),
        icmp_packets(icmp, rng, False),
        tcp_packets(tcp6, rng, True),
        udp_pair_packets(dns6, rng, True),
        icmp_packets(icmp6, rng, True),
        arp_packets(lan, arp_host, rng.integers(0, dur, n_arp), rng),
    ]
    return concat(parts)


def mix_chunks(n_packets: int, seed: int) -> Iterator[Table]:
    yield gen_mix(n_packets, seed)


# ----------------------------------------------------------------------------------------
# SYN flood


def mix32(x: npt.NDArray[np.uint64], key: int) -> npt.NDArray[np.uint64]:
    """A keyed bijection on 32-bit integers (xorshift-multiply rounds)."""
    m = np.uint64(0xFFFFFFFF)
    x = (x ^ np.uint64(key)) & m
    for c in (0x7FEB352D, 0x846CA68B, 0x2C1B3C6D):
        x ^= x >> np.uint64(16)
        x = (x * np.uint64(c)) & m
    return x ^ (x >> np.uint64(16))


def allowed_src(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
    a = x >> np.uint64(24)
    return (a != 0) & (a != 10) & (a != 127) & (a != 192) & (a < 224)


FLOOD_BASE = ip4(11, 0, 0, 0)


def flood_chunks(n_packets: int, seed: int, chunk: int = 1 << 18) -> Iterator[Table]:
    """SYNs from distinct spoofed sources, ~100 k packets/s.

    Source i is 11.0.0.0 + i pushed through a keyed permutation of the 32-bit space and
    cycle-walked until it leaves 0/8, 10/8, 127/8, 192/8 and 224/3. Cycle walking from a
    start inside the allowed set is a permutation of that set, so sources never repeat."""
    if n_packets > 1_000_000_000:
        raise ValueError("at most 1e9 flood packets")
    rng = np.random.default_rng(seed)
    victim_mac = 0x0017_8801_0203
    victim_ip = ip4(192, 168, 1, 50)
    ts = 0
    for s in range(0, n_packets, chunk):
        m = min(chunk, n_packets - s)
        t = empty(m)
        src = mix32(np.arange(s, s + m, dtype=np.uint64) + np.uint64(FLOOD_BASE), seed)
        bad = ~allowed_src(src)
        while bad.any():  # cycle walking keeps the mapping injective
            src[bad] = mix32(src[bad], seed)
            bad = ~allowed_src(src)
        gaps = rng.exponential(10.0, m).astype(np.int64) + 1
        t["ts"] = ts + np.cumsum(gaps) + EPOCH_US
        ts += int(gaps.sum())
        t["layout"][:] = V4TCP
        t["smac"][:] = ROUTER_MAC
        t["dmac"][:] = victim_mac
        t["src"] = src
        t["dst"][:] = victim_ip
        t["sport"] = rng.integers(1024, 65536, m, dtype=np.uint16)
        t["dport"][:] = 80
        t["seq"] = rng.integers(0, 1 << 32, m, dtype=np.uint32)
        t["flags"][:] = SYN
        t["win"][:] = 512
        t["ipid"] = rng.integers(0, 65536, m, dtype=np.uint16)
        t["ttl"][:] = 64
        t["app"][:] = -1
        yield t


# ----------------------------------------------------------------------------------------

KINDS = {"mix": 1_000_000, "synflood": 1_000_000, "flood10m": 10_000_000}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=sorted(KINDS))
    p.add_argument("out", type=Path)
    p.add_argument(
        "--packets", type=int, default=None, help="number of packets (default: 1 M, 10 M for flood10m)"
    )
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    n = a.packets if a.packets is not None else KINDS[a.kind]
    if n < 1:
        p.error("--packets must be >= 1")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    chunks = mix_chunks(n, a.seed) if a.kind == "mix" else flood_chunks(n, a.seed)
    tmp = a.out.with_name(a.out.name + ".part")
    with tmp.open("wb") as f:
        written = write_pcap(f, chunks)
    tmp.replace(a.out)
    size = a.out.stat().st_size
    dt = time.perf_counter() - t0
    avg = (size - 24) / written - 16
    print(f"{a.out}: {written} packets, {size / 1e6:.1f} MB, {avg:.0f} B/frame, {dt:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
