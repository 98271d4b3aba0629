"""Write the demo office capture: a small, deterministic, realistic Ethernet pcap.

The capture is what a mirror port on the office switch would see over three minutes
(``DURATION_S``) on 192.168.1.0/24:

* three Windows PCs (Dell, Lenovo) browsing: DNS A/AAAA queries to the gateway, then TLS 1.3
  sessions to port 443 with full handshakes, HTTP/2-sized records and FIN teardown;
* an HP printer: an IPP job (TCP 631) from one PC, a raw job (TCP 9100) from another, SNMP polls,
  an mDNS answer and a DHCP renewal;
* three IP cameras (two Hikvision, one Dahua): RTSP setup on TCP 554 from the recorder, then
  H.264 over RTP/UDP at a steady (sub-stream) bitrate with RTCP reports, RTSP keep-alives;
* a Hikvision network video recorder: an HTTPS heartbeat to a public cloud address every ~30 s,
  two modest uploads to the same address, NTP to a public server;
* the gateway (TP-Link): the only MAC that carries internet traffic, DHCP server and DNS resolver;
* background: a full DHCP exchange (options 12, 55, 60, 61), ARP, mDNS and SSDP.

Every random choice comes from ``random.Random(seed)`` and every timestamp is set explicitly
from ``EPOCH``, so a seed always gives the same bytes.  Frames shorter than the Ethernet minimum
are padded to 60 bytes as a switch would deliver them.  Run::

    python -m iotwatch.synth.demo pcaps/demo-office.pcap [--seed N]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scapy.asn1.asn1 import ASN1_INTEGER, ASN1_OID, ASN1_STRING
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRRSRV
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.rtp import RTP
from scapy.layers.snmp import SNMP, SNMPget, SNMPresponse, SNMPvarbind
from scapy.packet import Packet, Padding, Raw
from scapy.utils import RawPcapWriter

EPOCH = 1_754_000_000  # 2025-07-31T22:13:20Z, first possible packet time
DURATION_S = 180.0  # packets that would fall after this are cut, as when a capture stops
LINKTYPE_ETHERNET = 1
SNAPLEN = 262_144
ETHER_MIN = 60  # minimum Ethernet frame without FCS
NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01


# --------------------------------------------------------------------------------------------
# Hosts and TCP stacks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stack:
    """How a host's TCP stack behaves on the wire (SYN options, windows, pacing)."""

    flavour: str  # "windows" | "linux" | "embedded" | "server": order of the SYN options
    syn_window: int
    window: int  # advertised window after the handshake (before scaling)
    wscale: int  # 0: no window scale option
    mss: int
    timestamps: bool
    delayed_ack: float  # s before a lone segment is acknowledged
    seg_gap: float  # s between back-to-back full-size segments it sends


WINDOWS = Stack("windows", 64240, 1026, 8, 1460, False, 0.040, 0.000125)
LINUX = Stack("linux", 64240, 502, 7, 1460, True, 0.040, 0.000125)
EMBEDDED = Stack("embedded", 8760, 8760, 0, 1460, False, 0.020, 0.000250)
SERVER = Stack("server", 65535, 501, 9, 1400, True, 0.040, 0.000240)


@dataclass(frozen=True, slots=True)
class Host:
    """An address pair as seen on the LAN; internet hosts carry the gateway's MAC."""

    name: str
    mac: str
    ip: str
    ttl: int = 64  # TTL as captured (initial TTL for LAN hosts, minus the hops for internet ones)
    delay: float = 0.0002  # one-way latency between the mirror port and the host, s
    stack: Stack = LINUX


ROUTER = Host("gateway", "50:c7:bf:3e:91:20", "192.168.1.1", 64, 0.0002, LINUX)
PC1 = Host("DESKTOP-7K2M4QF", "b8:ca:3a:5d:14:e2", "192.168.1.101", 128, 0.00015, WINDOWS)
PC2 = Host("LAPTOP-R3D8HJ2N", "a4:8c:db:61:0c:37", "192.168.1.102", 128, 0.0012, WINDOWS)
PC3 = Host("ACCT-PC03", "f4:8e:38:7b:c2:91", "192.168.1.103", 128, 0.00015, WINDOWS)
PRINTER = Host("NPI5B2E07", "3c:d9:2b:5b:2e:07", "192.168.1.20", 64, 0.0003, EMBEDDED)
NVR = Host("NVR-DS7608", "44:19:b6:82:3a:10", "192.168.1.60", 64, 0.0001, LINUX)
CAM1 = Host("cam-entrance", "28:57:be:4c:19:a3", "192.168.1.64", 64, 0.0003, LINUX)
CAM2 = Host("cam-warehouse", "c0:56:e3:7d:02:5e", "192.168.1.65", 64, 0.0004, LINUX)
CAM3 = Host("cam-parking", "3c:ef:8c:2a:b1:44", "192.168.1.66", 64, 0.0003, LINUX)
PCS = (PC1, PC2, PC3)
LAN = (ROUTER, PC1, PC2, PC3, PRINTER, NVR, CAM1, CAM2, CAM3)

BROADCAST = Host("broadcast", "ff:ff:ff:ff:ff:ff", "255.255.255.255")
MDNS = Host("mdns", "01:00:5e:00:00:fb", "224.0.0.251")
SSDP = Host("ssdp", "01:00:5e:7f:ff:fa", "239.255.255.250")


def _remote(name: str, ip: str, ttl: int, delay: float) -> Host:
    return Host(name, ROUTER.mac, ip, ttl, delay, SERVER)


# Public services (addresses are illustrative; only the gateway's MAC ever carries them).
SITES = (
    _remote("www.google.com", "142.250.185.100", 117, 0.009),
    _remote("outlook.office365.com", "52.97.146.162", 112, 0.014),
    _remote("teams.microsoft.com", "52.113.194.132", 112, 0.015),
    _remote("login.microsoftonline.com", "20.190.160.20", 111, 0.016),
    _remote("www.wikipedia.org", "185.15.59.224", 54, 0.011),
    _remote("github.com", "140.82.121.4", 53, 0.013),
    _remote("www.bbc.co.uk", "151.101.0.81", 57, 0.008),
    _remote("cdn.jsdelivr.net", "151.101.1.229", 57, 0.008),
    _remote("www.linkedin.com", "13.107.42.14", 116, 0.012),
    _remote("docs.python.org", "151.101.128.223", 57, 0.009),
)
SITE_V6 = {
    "www.google.com": "2a00:1450:4001:82a::2004",
    "outlook.office365.com": "2603:1026:c0b:18::2",
    "www.wikipedia.org": "2a02:ec80:300:ed1a::1",
    "www.bbc.co.uk": "2a04:4e42::81",
    "www.linkedin.com": "2620:1ec:21::14",
}
CLOUD = _remote("dev.hik-connect.com", "47.91.74.125", 46, 0.045)
NTP_POOL = _remote("pool.ntp.org", "162.159.200.123", 57, 0.007)
NTP_WINDOWS = _remote("time.windows.com", "20.101.57.9", 111, 0.012)


# --------------------------------------------------------------------------------------------
# The capture being written
# --------------------------------------------------------------------------------------------


class Capture:
    """Frames collected out of order and written sorted by time."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._frames: list[tuple[int, int, bytes]] = []  # (time µs since EPOCH, order, frame)
        self._ip_ids: dict[str, int] = {}
        self._ports: dict[str, int] = {}

    def emit(self, t: float, frame: Packet) -> None:
        """Record ``frame`` as seen ``t`` seconds after the capture start (dropped after the end)."""
        if t < 0 or t >= DURATION_S:
            return
        raw = bytes(frame)
        if len(raw) < ETHER_MIN:
            raw += bytes(ETHER_MIN - len(raw))
        self._frames.append((round(t * 1_000_000), len(self._frames), raw))

    def ip(self, src: Host, dst: Host, *, df: bool = True, ttl: int | None = None) -> Packet:
        """An IPv4 header with the sender's own incrementing identification counter."""
        ident = self._ip_ids.get(src.ip)
        if ident is None:
            ident = self.rng.randrange(1, 0xFFFF)
        self._ip_ids[src.ip] = (ident + 1) & 0xFFFF
        return IP(src=src.ip, dst=dst.ip, ttl=src.ttl if ttl is None else ttl, id=ident,
                  flags="DF" if df else 0)

    def udp(self, t: float, src: Host, dst: Host, sport: int, dport: int, payload: Packet | bytes,
            *, ttl: int | None = None, df: bool = True) -> None:
        body = Raw(payload) if isinstance(payload, bytes) else payload
        self.emit(t, Ether(src=src.mac, dst=dst.mac) / self.ip(src, dst, df=df, ttl=ttl)
                  / UDP(sport=sport, dport=dport) / body)

    def ephemeral_port(self, host: Host) -> int:
        """Next client port: Windows counts up from its dynamic range, Linux picks at random."""
        if host.stack is WINDOWS:
            port = self._ports.get(host.ip) or self.rng.randrange(50_000, 60_000)
            self._ports[host.ip] = port + 1
            return port
        return self.rng.randrange(32_768, 61_000)

    def __len__(self) -> int:
        return len(self._frames)

    def write(self, path: Path) -> None:
        """Write a little-endian, microsecond pcap with strictly increasing timestamps."""
        frames = sorted(self._frames)
        writer = RawPcapWriter(str(path), linktype=LINKTYPE_ETHERNET, endianness="<",
                               snaplen=SNAPLEN, sync=False)
        last = -1
        try:
            writer.write_header(None)
            for micros, _, raw in frames:
                micros = max(micros, last + 1)
                last = micros
                writer.write_packet(raw, sec=EPOCH + micros // 1_000_000, usec=micros % 1_000_000)
        finally:
            writer.close()


# --------------------------------------------------------------------------------------------
# TCP as seen from the mirror port
# --------------------------------------------------------------------------------------------


class TcpConnection:
    """One TCP connection; ``t`` is the capture time of its latest packet.

    Capture-time causality: when a packet from A is seen at T, B's reaction is seen at
    ``T + 2 * B.delay + processing`` (the packet travels on to B, B's answer travels back).
    """

    def __init__(self, cap: Capture, client: Host, server: Host, dport: int, t: float,
                 *, sport: int | None = None) -> None:
        self.cap = cap
        self.hosts = (client, server)
        self.ports = (sport if sport is not None else cap.ephemeral_port(client), dport)
        self.t = t
        self.nxt = [cap.rng.getrandbits(32), cap.rng.getrandbits(32)]
        self.ts_on = client.stack.timestamps and server.stack.timestamps
        self.ts_base = [cap.rng.getrandbits(31), cap.rng.getrandbits(31)]
        self.ts_recent = [0, 0]  # latest TSval each side has received
        self.scaled = client.stack.wscale > 0 and server.stack.wscale > 0
        self.mss = min(client.stack.mss, server.stack.mss) - (12 if self.ts_on else 0)
        self.pending: tuple[int, float] | None = None  # (side, time) of a delayed ACK

    # -- packets -------------------------------------------------------------------------

    def _options(self, side: int, t: float, syn: bool) -> list[tuple[str, object]]:
        stack = self.hosts[side].stack
        tsval = (self.ts_base[side] + int(t * 1000)) & 0xFFFFFFFF
        ts = ("Timestamp", (tsval, self.ts_recent[side]))
        self.ts_recent[1 - side] = tsval
        if not syn:
            return [("NOP", None), ("NOP", None), ts] if self.ts_on else []
        offered = side == 0
        use_ts = stack.timestamps and (offered or self.ts_on)
        use_ws = stack.wscale > 0 and (offered or self.scaled)
        mss = ("MSS", stack.mss)
        ws = ("WScale", stack.wscale)
        if stack.flavour == "windows":
            opts: list[tuple[str, object]] = [mss]
            if use_ws:
                opts += [("NOP", None), ws]
            return [*opts, ("NOP", None), ("NOP", None), ("SAckOK", b"")]
        if stack.flavour == "embedded":
            return [mss]
        if use_ts:
            opts = [mss, ("SAckOK", b""), ts]
        else:
            opts = [mss, ("NOP", None), ("NOP", None), ("SAckOK", b"")]
        return [*opts, ("NOP", None), ws] if use_ws else opts

    def _emit(self, side: int, t: float, flags: str, payload: bytes = b"") -> None:
        src, dst = self.hosts[side], self.hosts[1 - side]
        syn = "S" in flags
        window = src.stack.syn_window if syn or not self.scaled else src.stack.window
        tcp = TCP(sport=self.ports[side], dport=self.ports[1 - side], seq=self.nxt[side],
                  ack=self.nxt[1 - side] if "A" in flags else 0, flags=flags, window=window,
                  options=self._options(side, t, syn))
        frame = Ether(src=src.mac, dst=dst.mac) / self.cap.ip(src, dst) / tcp
        if payload:
            frame = frame / Raw(payload)
        self.cap.emit(t, frame)
        step = len(payload) + (1 if syn or "F" in flags else 0)
        self.nxt[side] = (self.nxt[side] + step) & 0xFFFFFFFF

    def segment(self, side: int, t: float, flags: str, payload: bytes = b"") -> None:
        """Send one segment; a pending delayed ACK fires first, or rides on this segment."""
        if self.pending is not None:
            pending_side, pending_t = self.pending
            if pending_t <= t:
                self.pending = None
                self._emit(pending_side, pending_t, "A")
            elif pending_side == side:
                self.pending = None
        self._emit(side, t, flags, payload)

    def flush(self) -> None:
        """Send the delayed ACK still pending (the peer sent nothing in the meantime)."""
        if self.pending is not None:
            side, t = self.pending
            self.pending = None
            self._emit(side, t, "A")

    def reaction(self, side: int, processing: float) -> float:
        """Capture time at which ``side`` answers the latest packet."""
        return self.t + 2 * self.hosts[side].delay + processing

    # -- conversation steps ----------------------------------------------------------------

    def open(self, processing: float = 0.0001) -> None:
        self.segment(0, self.t, "S")
        self.t = self.reaction(1, processing)
        self.segment(1, self.t, "SA")
        self.t = self.reaction(0, 0.00003)
        self.segment(0, self.t, "A")

    def send(self, side: int, payload: bytes, start: float) -> None:
        """``side`` sends ``payload`` from capture time ``start``.

        The receiver ACKs every second segment at once and a lone last segment after its
        delayed-ACK timer, unless it sends something first.
        """
        rng = self.cap.rng
        sender, receiver = self.hosts[side], self.hosts[1 - side]
        rwnd = receiver.stack.window << receiver.stack.wscale if self.scaled else receiver.stack.syn_window
        chunks = [payload[i:i + self.mss] for i in range(0, len(payload), self.mss)]
        acks: list[tuple[float, int]] = []  # (capture time, bytes acknowledged) of this burst
        sent = 0
        t = start
        for i, chunk in enumerate(chunks):
            if i:
                t += sender.stack.seg_gap * (len(chunk) / self.mss) * (0.8 + 0.6 * rng.random())
            # Never fill the receiver's window: wait for the ACK that opens enough of it.
            must_ack = sent + len(chunk) - rwnd
            if must_ack >= 0:
                opened = next((at for at, acked in acks if acked > must_ack), None)
                if opened is not None:
                    t = max(t, opened + 2 * sender.delay + 0.00002)
            sent += len(chunk)
            last = i == len(chunks) - 1
            self.segment(side, t, "PA" if last else "A", chunk)
            ack_at = t + 2 * receiver.delay + 0.00004
            if i % 2 == 1:
                self.segment(1 - side, ack_at, "A")
                acks.append((ack_at, sent))
            elif last:
                self.pending = (1 - side, ack_at + receiver.stack.delayed_ack)
        self.t = t

    def exchange(self, request: bytes, response: bytes, *, think: float, processing: float) -> None:
        """Client request after ``think`` s, server response after ``processing`` s."""
        self.send(0, request, self.t + think)
        if response:
            self.send(1, response, self.reaction(1, processing))

    def close(self, side: int = 0, *, after: float = 0.0) -> None:
        """``side`` sends FIN, the peer answers FIN-ACK, ``side`` sends the last ACK."""
        self.t += after
        self.segment(side, self.t, "FA")
        self.t = self.reaction(1 - side, 0.0001)
        self.segment(1 - side, self.t, "FA")
        self.t = self.reaction(side, 0.00003)
        self.segment(side, self.t, "A")


# --------------------------------------------------------------------------------------------
# TLS 1.3 records (sizes and shapes only; everything after ServerHello is opaque)
# --------------------------------------------------------------------------------------------


def _ext(kind: int, body: bytes) -> bytes:
    return struct.pack("!HH", kind, len(body)) + body


def _record(content_type: int, body: bytes, version: int = 0x0303) -> bytes:
    return struct.pack("!BHH", content_type, version, len(body)) + body


@dataclass(frozen=True, slots=True)
class HelloProfile:
    """What a client offers in its ClientHello (the fields JA3/JA4 fingerprint)."""

    ciphers: tuple[int, ...]
    groups: tuple[int, ...]
    sigalgs: tuple[int, ...]
    alpn: tuple[bytes, ...]


BROWSER_HELLO = HelloProfile(
    ciphers=(0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8,
             0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035),
    groups=(0x001D, 0x0017, 0x0018),
    sigalgs=(0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601),
    alpn=(b"h2", b"http/1.1"),
)
# An embedded Linux client (OpenSSL 1.1.1 defaults): more suites, no ALPN, no padding.
OPENSSL_HELLO = HelloProfile(
    ciphers=(0x1302, 0x1303, 0x1301, 0xC02C, 0xC030, 0x009F, 0xCCA9, 0xCCA8, 0xCCAA, 0xC02B,
             0xC02F, 0x009E, 0xC024, 0xC028, 0x006B, 0xC023, 0xC027, 0x0067, 0xC00A, 0xC014,
             0x0039, 0xC009, 0xC013, 0x0033, 0x009D, 0x009C, 0x003D, 0x003C, 0x0035, 0x002F, 0x00FF),
    groups=(0x001D, 0x0017, 0x001E, 0x0019, 0x0018),
    sigalgs=(0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x0809, 0x080A, 0x080B, 0x0804, 0x0805,
             0x0806, 0x0401, 0x0501, 0x0601, 0x0303, 0x0203, 0x0301, 0x0201, 0x0302, 0x0202,
             0x0402, 0x0502, 0x0602),
    alpn=(),
)


def tls_client_hello(rng: random.Random, sni: str, session_id: bytes, *, embedded: bool = False) -> bytes:
    """A TLS 1.3 ClientHello with SNI, shaped like a browser's or like OpenSSL's defaults."""
    profile = OPENSSL_HELLO if embedded else BROWSER_HELLO
    ciphers, groups, sigalgs = profile.ciphers, profile.groups, profile.sigalgs
    name = sni.encode()
    alpn = b"".join(bytes([len(proto)]) + proto for proto in profile.alpn)
    sni_ext = _ext(0x0000, struct.pack("!HBH", len(name) + 3, 0, len(name)) + name)
    groups_ext = _ext(0x000A, struct.pack(f"!{len(groups) + 1}H", 2 * len(groups), *groups))
    sigalgs_ext = _ext(0x000D, struct.pack(f"!{len(sigalgs) + 1}H", 2 * len(sigalgs), *sigalgs))
    key_share = _ext(0x0033, struct.pack("!HHH", 36, 0x001D, 32) + rng.randbytes(32))
    parts: tuple[bytes, ...]
    if embedded:
        parts = (sni_ext, _ext(0x000B, b"\x03\x00\x01\x02"), groups_ext, _ext(0x0023, b""),
                 _ext(0x0016, b""), _ext(0x0017, b""), sigalgs_ext, _ext(0x002B, b"\x04\x03\x04\x03\x03"),
                 _ext(0x002D, b"\x01\x01"), key_share)
    else:
        parts = (sni_ext, _ext(0x0017, b""), _ext(0xFF01, b"\x00"), groups_ext, _ext(0x000B, b"\x01\x00"),
                 _ext(0x0023, b""), _ext(0x0010, struct.pack("!H", len(alpn)) + alpn),
                 _ext(0x0005, b"\x01\x00\x00\x00\x00"), sigalgs_ext, key_share,
                 _ext(0x002D, b"\x01\x01"), _ext(0x002B, b"\x04\x03\x04\x03\x03"))
    exts = b"".join(parts)
    if not embedded:  # browsers pad the hello to 517 bytes on the wire
        exts += _ext(0x0015, bytes(max(0, 508 - 47 - len(session_id) - 2 * len(ciphers) - len(exts))))
    body = (b"\x03\x03" + rng.randbytes(32) + bytes([len(session_id)]) + session_id
            + struct.pack(f"!{len(ciphers) + 1}H", 2 * len(ciphers), *ciphers) + b"\x01\x00"
            + struct.pack("!H", len(exts)) + exts)
    return _record(0x16, b"\x01" + len(body).to_bytes(3, "big") + body, version=0x0301)


def tls_server_flight(rng: random.Random, session_id: bytes, encrypted: int) -> bytes:
    """ServerHello, ChangeCipherSpec and ``encrypted`` bytes of encrypted handshake."""
    exts = _ext(0x002B, b"\x03\x04") + _ext(0x0033, struct.pack("!HH", 0x001D, 32) + rng.randbytes(32))
    body = (b"\x03\x03" + rng.randbytes(32) + bytes([len(session_id)]) + session_id
            + struct.pack("!HB", 0x1301, 0) + struct.pack("!H", len(exts)) + exts)
    hello = _record(0x16, b"\x02" + len(body).to_bytes(3, "big") + body)
    return hello + _record(0x14, b"\x01") + tls_app_data(rng, encrypted)


def tls_client_finished(rng: random.Random) -> bytes:
    return _record(0x14, b"\x01") + _record(0x17, rng.randbytes(53))


def tls_app_data(rng: random.Random, size: int) -> bytes:
    """``size`` bytes of application data in records of at most 16 kB (+ 17 bytes of AEAD)."""
    out = bytearray()
    while size > 0:
        chunk = min(size, 16_384 + 17)
        out += _record(0x17, rng.randbytes(chunk))
        size -= chunk
    return bytes(out)


def tls_session(cap: Capture, client: Host, server: Host, t: float, sni: str,
                exchanges: Sequence[tuple[int, int, float]], *, idle: float) -> TcpConnection:
    """Open, handshake, run (request, response, think) exchanges, idle, FIN from the client."""
    rng = cap.rng
    conn = TcpConnection(cap, client, server, 443, t)
    conn.open(processing=0.0004)
    session_id = rng.randbytes(32)
    conn.exchange(tls_client_hello(rng, sni, session_id, embedded=client.stack is not WINDOWS),
                  tls_server_flight(rng, session_id, rng.randrange(2_400, 4_600)),
                  think=0.0008, processing=0.0015)
    conn.send(0, tls_client_finished(rng), conn.reaction(0, 0.002))
    first = True
    for request, response, think in exchanges:
        conn.exchange(tls_app_data(rng, request), tls_app_data(rng, response),
                      think=0.0001 if first else think, processing=rng.uniform(0.004, 0.060))
        first = False
    conn.close(0, after=idle)
    return conn


# --------------------------------------------------------------------------------------------
# Traffic generators, one per kind of device behaviour
# --------------------------------------------------------------------------------------------


def dhcp_exchange(cap: Capture, client: Host, t: float, *, hostname: str, vendor: bytes,
                  params: Sequence[int], renew: bool = False) -> float:
    """DISCOVER/OFFER/REQUEST/ACK (or a unicast renewal REQUEST/ACK); returns the ACK time."""
    rng = cap.rng
    xid = rng.getrandbits(32)
    chaddr = bytes.fromhex(client.mac.replace(":", ""))
    common: list[tuple[str, object] | str] = [
        ("client_id", b"\x01" + chaddr), ("hostname", hostname.encode()),
        ("vendor_class_id", vendor), ("param_req_list", list(params)),
    ]
    server_opts: list[tuple[str, object] | str] = [
        ("server_id", ROUTER.ip), ("lease_time", 86_400), ("renewal_time", 43_200),
        ("rebinding_time", 75_600), ("subnet_mask", "255.255.255.0"), ("router", ROUTER.ip),
        ("name_server", ROUTER.ip), ("domain", b"lan"), "end",
    ]
    unspecified = Host("unspecified", client.mac, "0.0.0.0", client.ttl)

    def bootp(op: int, opts: list[tuple[str, object] | str], ciaddr: str = "0.0.0.0",
              yiaddr: str = "0.0.0.0") -> Packet:
        msg = BOOTP(op=op, xid=xid, secs=0, ciaddr=ciaddr, yiaddr=yiaddr, chaddr=chaddr) / DHCP(options=opts)
        short = 300 - len(bytes(msg))
        return msg / Padding(bytes(short)) if short > 0 else msg

    if renew:
        request = bootp(1, [("message-type", "request"), *common, "end"], ciaddr=client.ip)
        cap.udp(t, client, ROUTER, 68, 67, request, df=False)
    else:
        discover = bootp(1, [("message-type", "discover"), *common, "end"])
        cap.udp(t, unspecified, BROADCAST, 68, 67, discover, df=False)
        t += 2 * ROUTER.delay + 0.0021
        offer = bootp(2, [("message-type", "offer"), *server_opts], yiaddr=client.ip)
        cap.udp(t, ROUTER, client, 67, 68, offer, df=False)
        t += 2 * client.delay + 0.0007
        request = bootp(1, [("message-type", "request"), ("requested_addr", client.ip),
                            ("server_id", ROUTER.ip), *common, "end"])
        cap.udp(t, unspecified, BROADCAST, 68, 67, request, df=False)
    t += 2 * ROUTER.delay + 0.0019
    ack = bootp(2, [("message-type", "ack"), *server_opts], ciaddr=client.ip if renew else "0.0.0.0",
                yiaddr=client.ip)
    cap.udp(t, ROUTER, client, 67, 68, ack, df=False)
    return t


def arp_request(cap: Capture, t: float, asker: Host, target: Host, *, unicast: bool = False) -> None:
    """``asker`` asks for ``target`` (broadcast, or unicast re-validation); the target replies."""
    cap.emit(t, Ether(src=asker.mac, dst=target.mac if unicast else BROADCAST.mac)
             / ARP(op=1, hwsrc=asker.mac, psrc=asker.ip, hwdst="00:00:00:00:00:00", pdst=target.ip))
    cap.emit(t + 2 * target.delay + 0.00005, Ether(src=target.mac, dst=asker.mac)
             / ARP(op=2, hwsrc=target.mac, psrc=target.ip, hwdst=asker.mac, pdst=asker.ip))


def arp_announce(cap: Capture, t: float, host: Host) -> None:
    """Windows address-conflict probe (sender 0.0.0.0) followed by a gratuitous announcement."""
    cap.emit(t, Ether(src=host.mac, dst=BROADCAST.mac)
             / ARP(op=1, hwsrc=host.mac, psrc="0.0.0.0", hwdst="00:00:00:00:00:00", pdst=host.ip))
    cap.emit(t + 1.0, Ether(src=host.mac, dst=BROADCAST.mac)
             / ARP(op=1, hwsrc=host.mac, psrc=host.ip, hwdst="00:00:00:00:00:00", pdst=host.ip))


def dns_lookup(cap: Capture, t: float, client: Host, site: Host) -> float:
    """A and AAAA queries to the gateway's resolver; returns the time of the A answer."""
    rng = cap.rng
    sport = cap.ephemeral_port(client)
    answer_at = t
    for offset, qtype in ((0.0, "A"), (0.0006, "AAAA")):
        qid = rng.getrandbits(16)
        question = DNSQR(qname=site.name, qtype=qtype)
        cap.udp(t + offset, client, ROUTER, sport, 53, DNS(id=qid, rd=1, qd=question), df=False)
        resolve = rng.uniform(0.008, 0.035) if rng.random() < 0.5 else rng.uniform(0.0003, 0.001)
        at = t + offset + 2 * ROUTER.delay + resolve
        answers: list[Packet] = []
        if qtype == "A":
            answers.append(DNSRR(rrname=site.name, type="A", ttl=rng.randrange(60, 300), rdata=site.ip))
            answer_at = at
        elif site.name in SITE_V6:
            answers.append(DNSRR(rrname=site.name, type="AAAA", ttl=rng.randrange(60, 300),
                                 rdata=SITE_V6[site.name]))
        reply = DNS(id=qid, qr=1, rd=1, ra=1, qd=question, an=answers or None)
        cap.udp(at, ROUTER, client, 53, sport, reply, df=False)
    return answer_at


def browsing(cap: Capture, pc: Host, start: float) -> None:
    """Visits at exponential intervals: DNS, then one or two TLS connections to the site."""
    rng = cap.rng
    t = start
    while t < DURATION_S - 30:
        site = rng.choice(SITES)
        resolved = dns_lookup(cap, t, pc, site)
        for k in range(2 if rng.random() < 0.3 else 1):
            exchanges = [
                (rng.randrange(120, 900),
                 min(24_000, int(rng.lognormvariate(8.0, 0.9))),
                 rng.uniform(0.05, 2.5))
                for _ in range(rng.randint(1, 3))
            ]
            tls_session(cap, pc, site, resolved + 0.0012 + 0.03 * k, site.name, exchanges,
                        idle=rng.uniform(2.0, 18.0))
        t += rng.expovariate(1 / 30)


def ntp_query(cap: Capture, t: float, client: Host, server: Host, *, stratum: int = 3) -> None:
    """NTPv4 client request and server reply (48 bytes each, timestamps from the capture clock)."""
    rng = cap.rng

    def stamp(seconds: float) -> bytes:
        unix = EPOCH + seconds
        whole = int(unix)
        return struct.pack("!II", whole + NTP_UNIX_OFFSET, int((unix - whole) * 2**32))

    sport = 123 if client.stack is LINUX else cap.ephemeral_port(client)
    sent = stamp(t + rng.uniform(-0.02, 0.02))
    request = struct.pack("!BBbbII4s", 0x23, 0, 6, -20, 0, 0, b"\0\0\0\0") + bytes(24) + sent
    cap.udp(t, client, server, sport, 123, request, df=False)
    back = t + 2 * server.delay + 0.00004
    reply = (struct.pack("!BBbbII4s", 0x24, stratum, 6, -25, 0x0000_0A2B, 0x0000_1C5D, b"\x0a\x11\x08\x01")
             + stamp(back - 37.5) + sent + stamp(t + server.delay) + stamp(back - server.delay))
    cap.udp(back, server, client, 123, sport, reply, df=False)


def snmp_poll(cap: Capture, t: float, client: Host, printer: Host) -> None:
    """SNMPv2c GET of printer status and toner level, the way print drivers poll."""
    rng = cap.rng
    sport = cap.ephemeral_port(client)
    request_id = rng.getrandbits(31)
    oids = ("1.3.6.1.2.1.25.3.5.1.1.1", "1.3.6.1.2.1.43.11.1.1.9.1.1", "1.3.6.1.2.1.1.3.0")
    query = SNMP(version=1, community=b"public", PDU=SNMPget(
        id=request_id, varbindlist=[SNMPvarbind(oid=ASN1_OID(o)) for o in oids]))
    cap.udp(t, client, printer, sport, 161, query, df=False)
    values = (ASN1_INTEGER(3), ASN1_INTEGER(rng.randrange(40, 44)), ASN1_INTEGER(int(t * 100) + 8_640_000))
    answer = SNMP(version=1, community=b"public", PDU=SNMPresponse(
        id=request_id, varbindlist=[SNMPvarbind(oid=ASN1_OID(o), value=v) for o, v in zip(oids, values, strict=True)]))
    cap.udp(t + 2 * printer.delay + 0.003, printer, client, 161, sport, answer, df=False)


def snmp_sysdescr(cap: Capture, t: float, client: Host, printer: Host) -> None:
    rng = cap.rng
    sport = cap.ephemeral_port(client)
    request_id = rng.getrandbits(31)
    oid = "1.3.6.1.2.1.1.1.0"
    query = SNMP(version=1, community=b"public", PDU=SNMPget(id=request_id, varbindlist=[SNMPvarbind(oid=ASN1_OID(oid))]))
    cap.udp(t, client, printer, sport, 161, query, df=False)
    descr = ASN1_STRING(b"HP ETHERNET MULTI-ENVIRONMENT,ROM none,JETDIRECT,JD153,EEPROM JSI23900007")
    answer = SNMP(version=1, community=b"public", PDU=SNMPresponse(
        id=request_id, varbindlist=[SNMPvarbind(oid=ASN1_OID(oid), value=descr)]))
    cap.udp(t + 2 * printer.delay + 0.002, printer, client, 161, sport, answer, df=False)


def mdns_printer(cap: Capture, t: float, asker: Host, printer: Host) -> None:
    """A PC browses for IPP printers over mDNS; the printer answers with PTR/SRV/TXT/A."""
    instance = "HP LaserJet Pro M404dn [5B2E07]._ipp._tcp.local"
    target = f"{printer.name}.local"
    for i, service in enumerate(("_ipp._tcp.local", "_printer._tcp.local")):
        cap.udp(t + i * 0.0002, asker, MDNS, 5353, 5353,
                DNS(id=0, rd=0, qd=[DNSQR(qname=service, qtype="PTR")]), ttl=255, df=False)
    txt = [b"txtvers=1", b"qtotal=1", b"rp=ipp/print", b"ty=HP LaserJet Pro M404dn",
           b"pdl=application/pdf,image/urf,image/pwg-raster", b"UUID=564e4333-3039-3932-3246-3cd92b5b2e07",
           b"note=Front office", b"Color=F", b"Duplex=T", b"URF=CP1,IS1,MT1-2,OB10,PQ4-5,RS600,V1.4,W8,DM1"]
    answer = DNS(id=0, qr=1, aa=1, rd=0, qd=[], an=[
        DNSRR(rrname="_ipp._tcp.local", type="PTR", ttl=4500, rdata=instance),
        DNSRRSRV(rrname=instance, ttl=120, port=631, target=target),
        DNSRR(rrname=instance, type="TXT", ttl=4500, rdata=txt),
        DNSRR(rrname=target, type="A", ttl=120, rdata=printer.ip),
    ])
    cap.udp(t + 0.0004 + 2 * printer.delay + 0.012, printer, MDNS, 5353, 5353, answer, ttl=255, df=False)


def ssdp_notify(cap: Capture, t: float, host: Host, *, server: str, location: str, uuid: str,
                device: str) -> None:
    """ssdp:alive for the root device and its UUID (UPnP sends each announcement per target)."""
    for i, nt in enumerate(("upnp:rootdevice", f"uuid:{uuid}", device)):
        usn = f"uuid:{uuid}" if nt.startswith("uuid:") else f"uuid:{uuid}::{nt}"
        text = ("NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=1800\r\n"
                f"LOCATION: {location}\r\nNT: {nt}\r\nNTS: ssdp:alive\r\nSERVER: {server}\r\n"
                f"USN: {usn}\r\n\r\n")
        cap.udp(t + i * 0.0011, host, SSDP, 1900, 1900, text.encode(), ttl=4, df=False)


def ssdp_search(cap: Capture, t: float, pc: Host, responders: Sequence[tuple[Host, str, str, str]]) -> None:
    """A Windows M-SEARCH for root devices; each responder answers unicast."""
    sport = cap.ephemeral_port(pc)
    text = ('M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\n'
            "ST: upnp:rootdevice\r\nUSER-AGENT: Microsoft Edge/138.0 Windows\r\n\r\n")
    cap.udp(t, pc, SSDP, sport, 1900, text.encode(), ttl=4, df=False)
    for host, server, location, uuid in responders:
        at = t + 2 * host.delay + cap.rng.uniform(0.01, 0.9)
        reply = ("HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nEXT:\r\n"
                 f"LOCATION: {location}\r\nSERVER: {server}\r\nST: upnp:rootdevice\r\n"
                 f"USN: uuid:{uuid}::upnp:rootdevice\r\n\r\n")
        cap.udp(at, host, pc, 1900, sport, reply.encode(), df=False)


@dataclass(slots=True)
class Camera:
    host: Host
    vendor: str  # "hikvision" | "dahua"
    path: str
    server_port: int  # RTP port on the camera (RTCP is +1)
    client_port: int  # RTP port on the recorder
    ssrc: int = 0
    seq: int = 0
    rtp_ts: int = 0
    packets: int = 0
    octets: int = 0
    extra: dict[str, str] = field(default_factory=dict)


def _rtsp(lines: Sequence[str], body: str = "") -> bytes:
    head = "\r\n".join(lines)
    if body:
        head += f"\r\nContent-Type: application/sdp\r\nContent-Length: {len(body)}"
    return (head + "\r\n\r\n" + body).encode()


def rtsp_setup(cap: Capture, nvr: Host, cam: Camera, t: float) -> TcpConnection:
    """OPTIONS, DESCRIBE (401, then with Digest), SETUP, PLAY from the recorder to a camera."""
    rng = cap.rng
    url = f"rtsp://{cam.host.ip}:554{cam.path}"
    agent = "User-Agent: NVR/4.0 (Hikvision) RTSP Client"
    realm = "Login to 3L0E71APAZ12345" if cam.vendor == "dahua" else "IP Camera(D0521)"
    nonce = rng.randbytes(16).hex()
    session = str(rng.randrange(10**8, 10**9))
    cam.ssrc = rng.getrandbits(32)
    cam.seq = rng.getrandbits(16)
    cam.rtp_ts = rng.getrandbits(32)
    conn = TcpConnection(cap, nvr, cam.host, 554, t)
    conn.open()
    date = "Date: Thu, Jul 31 2025 22:13:2{} GMT"

    def auth(method: str) -> str:
        ha1 = hashlib.md5(f"admin:{realm}:{cam.host.name}".encode()).hexdigest()
        ha2 = hashlib.md5(f"{method}:{url}".encode()).hexdigest()
        response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
        return (f'Authorization: Digest username="admin", realm="{realm}", nonce="{nonce}", '
                f'uri="{url}", response="{response}"')

    sdp = ("v=0\r\no=- 1109162014219182 1109162014219192 IN IP4 " + cam.host.ip + "\r\n"
           "s=Media Presentation\r\ne=NONE\r\nb=AS:5050\r\nt=0 0\r\n"
           f"a=control:{url}/\r\nm=video 0 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\nb=AS:5000\r\n"
           "a=recvonly\r\na=x-dimensions:640,360\r\n"
           f"a=control:{url}/trackID=1\r\na=rtpmap:96 H264/90000\r\n"
           "a=fmtp:96 profile-level-id=420029; packetization-mode=1; "
           "sprop-parameter-sets=Z01AHo2NQFAX/ywDQAQA/4AIEAAAAwAQAAADAyjxIiWI,aO44gA==\r\n"
           "a=Media_header:MEDIAINFO=494D4B48010200000400000100000000000000000000000000000000000000000000000000000000;\r\n"
           "a=appversion:1.0\r\n")
    steps: list[tuple[list[str], list[str], str]] = [
        ([f"OPTIONS {url} RTSP/1.0", "CSeq: 2", agent],
         ["RTSP/1.0 200 OK", "CSeq: 2",
          "Public: OPTIONS, DESCRIBE, PLAY, PAUSE, SETUP, TEARDOWN, SET_PARAMETER, GET_PARAMETER",
          date.format(1)], ""),
        ([f"DESCRIBE {url} RTSP/1.0", "CSeq: 3", "Accept: application/sdp", agent],
         ["RTSP/1.0 401 Unauthorized", "CSeq: 3",
          f'WWW-Authenticate: Digest realm="{realm}", nonce="{nonce}", stale="FALSE"', date.format(1)], ""),
        ([f"DESCRIBE {url} RTSP/1.0", "CSeq: 4", auth("DESCRIBE"), "Accept: application/sdp", agent],
         ["RTSP/1.0 200 OK", "CSeq: 4", f"Content-Base: {url}/", date.format(2)], sdp),
        ([f"SETUP {url}/trackID=1 RTSP/1.0", "CSeq: 5", auth("SETUP"),
          f"Transport: RTP/AVP;unicast;client_port={cam.client_port}-{cam.client_port + 1}", agent],
         ["RTSP/1.0 200 OK", "CSeq: 5", f"Session: {session};timeout=60",
          f"Transport: RTP/AVP;unicast;client_port={cam.client_port}-{cam.client_port + 1};"
          f"server_port={cam.server_port}-{cam.server_port + 1};ssrc={cam.ssrc:08x};mode=\"play\"",
          date.format(2)], ""),
        ([f"PLAY {url} RTSP/1.0", "CSeq: 6", auth("PLAY"), f"Session: {session}", "Range: npt=0.000-", agent],
         ["RTSP/1.0 200 OK", "CSeq: 6", f"Session: {session}",
          f"RTP-Info: url={url}/trackID=1;seq={cam.seq};rtptime={cam.rtp_ts}", date.format(2)], ""),
    ]
    for request, response, body in steps:
        conn.exchange(_rtsp(request), _rtsp(response, body), think=0.0015, processing=rng.uniform(0.002, 0.02))
    cam.extra["session"] = session
    cam.extra["url"] = url
    return conn


def rtsp_keepalive(conn: TcpConnection, cam: Camera, cseq: int, t: float) -> None:
    request = _rtsp([f"GET_PARAMETER {cam.extra['url']} RTSP/1.0", f"CSeq: {cseq}",
                     f"Session: {cam.extra['session']}", "User-Agent: NVR/4.0 (Hikvision) RTSP Client"])
    response = _rtsp(["RTSP/1.0 200 OK", f"CSeq: {cseq}", f"Session: {cam.extra['session']}"])
    conn.t = t
    conn.exchange(request, response, think=0.0, processing=0.002)


def rtp_stream(cap: Capture, nvr: Host, cam: Camera, start: float, *, fps: float = 5.0,
               gop: int = 20) -> None:
    """H.264 over RTP: one packet per P-frame, an FU-A pair per I-frame, RTCP SR/RR every 5 s."""
    rng = cap.rng
    frame_no = 0
    t = start
    next_rtcp = start + 1.0
    while t < DURATION_S:
        if frame_no % gop == 0:
            sizes = [rng.randrange(1_000, 1_150), rng.randrange(400, 700)]
            nal = [b"\x7c\x85", b"\x7c\x45"]  # FU-A start / end of an IDR slice
        else:
            sizes = [rng.randrange(110, 240)]
            nal = [b"\x41\x9a"]
        for i, size in enumerate(sizes):
            marker = i == len(sizes) - 1
            rtp = RTP(version=2, marker=int(marker), payload_type=96, sequence=cam.seq,
                      timestamp=cam.rtp_ts, sourcesync=cam.ssrc)
            payload = nal[i] + rng.randbytes(size - 2)
            cap.udp(t + i * 0.0002, cam.host, nvr, cam.server_port, cam.client_port, rtp / Raw(payload))
            cam.seq = (cam.seq + 1) & 0xFFFF
            cam.packets += 1
            cam.octets += len(payload)
        if t >= next_rtcp:
            rtcp_reports(cap, nvr, cam, t + 0.003)
            next_rtcp += 5.0
        frame_no += 1
        cam.rtp_ts = (cam.rtp_ts + int(90_000 / fps)) & 0xFFFFFFFF
        t = start + frame_no / fps + rng.uniform(-0.004, 0.004)


def rtcp_reports(cap: Capture, nvr: Host, cam: Camera, t: float) -> None:
    unix = EPOCH + t
    whole = int(unix)
    cname = cam.host.name.encode()
    sdes_items = bytes([1, len(cname)]) + cname + b"\x00"
    sdes_items += bytes(-(len(sdes_items) + 4) % 4)
    sender_report = struct.pack("!BBHIIIIII", 0x80, 200, 6, cam.ssrc, whole + NTP_UNIX_OFFSET,
                                int((unix - whole) * 2**32), cam.rtp_ts, cam.packets, cam.octets)
    sdes = struct.pack("!BBHI", 0x81, 202, (len(sdes_items) + 4) // 4, cam.ssrc) + sdes_items
    cap.udp(t, cam.host, nvr, cam.server_port + 1, cam.client_port + 1, sender_report + sdes)
    middle = ((whole + NTP_UNIX_OFFSET) & 0xFFFF) << 16 | (int((unix - whole) * 2**16) & 0xFFFF)
    receiver_report = struct.pack("!BBHI", 0x81, 201, 7, cam.ssrc ^ 0x5A5A5A5A) + struct.pack(
        "!IIIIII", cam.ssrc, 0, cam.seq, cap.rng.randrange(30, 900), middle, cap.rng.randrange(200, 900))
    cap.udp(t + 0.0008 + 2 * nvr.delay, nvr, cam.host, cam.client_port + 1, cam.server_port + 1, receiver_report)


def _ipp_attr(tag: int, name: str, *values: bytes) -> bytes:
    """One IPP attribute; extra values follow as additional values with an empty name."""
    out = bytearray()
    for i, value in enumerate(values):
        key = name.encode() if i == 0 else b""
        out += bytes([tag]) + struct.pack("!H", len(key)) + key + struct.pack("!H", len(value)) + value
    return bytes(out)


def _ipp_message(code: int, request_id: int, groups: Sequence[tuple[int, bytes]]) -> bytes:
    """IPP/2.0 message: version, operation or status ``code``, request id, groups, end tag."""
    head = _ipp_attr(0x47, "attributes-charset", b"utf-8") + _ipp_attr(0x48, "attributes-natural-language", b"en-us")
    body = b"".join(bytes([tag]) + attrs for tag, attrs in groups)
    return struct.pack("!HHI", 0x0200, code, request_id) + b"\x01" + head + body + b"\x03"


def ipp_job(cap: Capture, pc: Host, printer: Host, t: float) -> None:
    """Get-Printer-Attributes then Print-Job (PWG raster) over one HTTP/1.1 connection."""
    rng = cap.rng
    conn = TcpConnection(cap, pc, printer, 631, t)
    conn.open(processing=0.0008)
    uri = f"ipp://{printer.ip}:631/ipp/print".encode()
    operation = _ipp_attr(0x45, "printer-uri", uri) + _ipp_attr(0x42, "requesting-user-name", b"reception")

    def http_post(body: bytes) -> bytes:
        head = (f"POST /ipp/print HTTP/1.1\r\nContent-Length: {len(body)}\r\n"
                "Content-Type: application/ipp\r\n"
                f"Host: {printer.ip}:631\r\nUser-Agent: Microsoft-Windows/10.0 UPnP/1.0\r\n"
                "Connection: Keep-Alive\r\n\r\n")
        return head.encode() + body

    def http_ok(body: bytes) -> bytes:
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/ipp\r\nContent-Length: {len(body)}\r\n"
                "Server: HP HTTP Server; HP LaserJet Pro M404dn - W1A53A; Serial Number: PHBLM12345\r\n\r\n")
        return head.encode() + body

    media = [f"{kind}_{w}x{h}{unit}".encode() for kind, w, h, unit in (
        ("na_letter", "8.5", "11", "in"), ("na_legal", "8.5", "14", "in"), ("iso_a4", "210", "297", "mm"),
        ("iso_a5", "148", "210", "mm"), ("na_executive", "7.25", "10.5", "in"), ("iso_b5", "176", "250", "mm"),
        ("jis_b5", "182", "257", "mm"), ("na_number-10", "4.125", "9.5", "in"), ("iso_dl", "110", "220", "mm"),
        ("iso_c5", "162", "229", "mm"), ("na_monarch", "3.875", "7.5", "in"), ("om_16k", "195", "270", "mm"),
    )]
    printer_group = b"".join((
        _ipp_attr(0x45, "printer-uri-supported", uri, f"ipps://{printer.ip}:443/ipp/print".encode()),
        _ipp_attr(0x42, "printer-name", b"HP LaserJet Pro M404dn [5B2E07]"),
        _ipp_attr(0x41, "printer-make-and-model", b"HP LaserJet Pro M404dn"),
        _ipp_attr(0x41, "printer-location", b"Front office"),
        _ipp_attr(0x23, "printer-state", struct.pack("!i", 3)),
        _ipp_attr(0x44, "printer-state-reasons", b"none"),
        _ipp_attr(0x22, "printer-is-accepting-jobs", b"\x01"),
        _ipp_attr(0x49, "document-format-supported", b"application/octet-stream", b"image/urf",
                  b"image/pwg-raster", b"application/pdf", b"application/postscript", b"application/PCLm"),
        _ipp_attr(0x44, "media-supported", *media),
        _ipp_attr(0x44, "media-ready", b"na_letter_8.5x11in", b"iso_a4_210x297mm"),
        _ipp_attr(0x44, "sides-supported", b"one-sided", b"two-sided-long-edge", b"two-sided-short-edge"),
        _ipp_attr(0x21, "copies-supported", struct.pack("!ii", 1, 999)),
        _ipp_attr(0x45, "printer-supply-info-uri", f"http://{printer.ip}/#hId-pgConsumables".encode()),
        _ipp_attr(0x41, "printer-supply-description", b"Black Cartridge HP 58A"),
        _ipp_attr(0x30, "printer-supply", b"type=tonerCartridge;maxcapacity=100;level=42;class=supplyThatIsConsumed;unit=percent;colorantname=black;"),
        _ipp_attr(0x45, "printer-icons", *(f"https://{printer.ip}/ipp/images/printer-{n}.png".encode()
                                          for n in ("small", "large", "xl"))),
        _ipp_attr(0x45, "printer-uuid", b"urn:uuid:564e4333-3039-3932-3246-3cd92b5b2e07"),
        _ipp_attr(0x41, "printer-firmware-string-version", b"20250512"),
    ))
    get_attrs = _ipp_message(0x000B, 1, [(0x01, operation + _ipp_attr(0x44, "requested-attributes", b"all"))])
    attrs_reply = _ipp_message(0x0000, 1, [(0x04, printer_group)])
    conn.exchange(http_post(get_attrs), http_ok(attrs_reply), think=0.001, processing=0.018)
    job_op = operation + _ipp_attr(0x42, "job-name", b"Invoice-42.pdf") + _ipp_attr(
        0x49, "document-format", b"image/pwg-raster")
    job_attrs = _ipp_attr(0x21, "copies", struct.pack("!i", 1)) + _ipp_attr(0x44, "sides", b"one-sided")
    job = _ipp_message(0x0002, 2, [(0x01, job_op), (0x02, job_attrs)])
    raster = b"RaS2" + rng.randbytes(rng.randrange(24_000, 32_000))
    job_reply = _ipp_message(0x0000, 2, [(0x02, b"".join((
        _ipp_attr(0x45, "job-uri", f"ipp://{printer.ip}:631/ipp/print/job-417".encode()),
        _ipp_attr(0x21, "job-id", struct.pack("!i", 417)),
        _ipp_attr(0x23, "job-state", struct.pack("!i", 3)),
        _ipp_attr(0x44, "job-state-reasons", b"job-incoming"),
    )))])
    conn.exchange(http_post(job + raster), http_ok(job_reply), think=0.35, processing=0.25)
    conn.close(0, after=rng.uniform(1.0, 3.0))


def raw_job(cap: Capture, pc: Host, printer: Host, t: float) -> None:
    """A PJL/PCL job sent to the JetDirect port, closed by the PC when done."""
    rng = cap.rng
    conn = TcpConnection(cap, pc, printer, 9100, t)
    conn.open(processing=0.0008)
    pjl = (b"\x1b%-12345X@PJL JOB NAME=\"Timesheet.xlsx\"\r\n@PJL SET USERNAME=\"warehouse\"\r\n"
           b"@PJL ENTER LANGUAGE=PCLXL\r\n")
    body = pjl + b") HP-PCL XL;2;0\r\n" + rng.randbytes(rng.randrange(16_000, 22_000)) + b"\x1b%-12345X"
    conn.send(0, body, conn.t + 0.004)
    conn.close(0, after=0.05)


def cloud_heartbeat(cap: Capture, nvr: Host, t: float) -> None:
    rng = cap.rng
    tls_session(cap, nvr, CLOUD, t, CLOUD.name,
                [(rng.randrange(300, 420), rng.randrange(160, 240), 0.0)], idle=rng.uniform(0.05, 0.2))


def cloud_upload(cap: Capture, nvr: Host, t: float) -> None:
    rng = cap.rng
    tls_session(cap, nvr, CLOUD, t, CLOUD.name,
                [(rng.randrange(700, 900), rng.randrange(200, 300), 0.0),
                 (rng.randrange(38_000, 62_000), rng.randrange(150, 260), 0.02)], idle=rng.uniform(0.5, 1.5))


# --------------------------------------------------------------------------------------------
# The scenario
# --------------------------------------------------------------------------------------------


WINDOWS_PRL = (1, 3, 6, 15, 31, 33, 43, 44, 46, 47, 119, 121, 249, 252)
HP_PRL = (1, 3, 6, 12, 15, 28, 42, 44, 51, 54, 58, 59, 81, 119, 144, 252)


def build(seed: int = 7) -> Capture:
    """Generate every frame of the demo office capture for ``seed``."""
    rng = random.Random(seed)
    cap = Capture(rng)

    # PC3 joins the network: full DHCP exchange, address probe, gateway lookup.
    acked = dhcp_exchange(cap, PC3, 0.4 + rng.uniform(0, 0.1), hostname=PC3.name, vendor=b"MSFT 5.0", params=WINDOWS_PRL)
    arp_announce(cap, acked + 0.003, PC3)
    arp_request(cap, acked + 1.1, PC3, ROUTER)
    # The printer renews its lease halfway through.
    dhcp_exchange(cap, PRINTER, 96.0 + rng.random(), hostname=PRINTER.name, vendor=b"Hewlett-Packard JetDirect",
                  params=HP_PRL, renew=True)

    # Gateway and recorder keep their neighbour tables fresh.
    for t0 in (12.0, 72.0, 132.0):
        for i, host in enumerate((PC1, PC2, PC3, PRINTER, NVR)):
            arp_request(cap, t0 + i * 0.8 + rng.uniform(0, 0.3), ROUTER, host)
    for t0 in (2.2, 47.0, 107.0, 167.0):
        for i, cam in enumerate((CAM1, CAM2, CAM3)):
            arp_request(cap, t0 + i * 0.05 + rng.uniform(0, 0.01), NVR, cam, unicast=t0 > 3)
    arp_request(cap, 0.9 + rng.uniform(0, 0.2), PC1, PRINTER)
    arp_request(cap, 95.5 + rng.uniform(0, 0.2), PRINTER, ROUTER, unicast=True)

    # Cameras: RTSP session from the recorder, then RTP; keep-alives every 30 s.
    cameras = [
        Camera(CAM1, "hikvision", "/Streaming/Channels/102", 8_214, 50_006),
        Camera(CAM2, "hikvision", "/Streaming/Channels/102", 8_220, 50_010),
        Camera(CAM3, "dahua", "/cam/realmonitor?channel=1&subtype=1", 20_000 + rng.randrange(0, 2000, 2), 50_014),
    ]
    for i, camera in enumerate(cameras):
        conn = rtsp_setup(cap, NVR, camera, 3.0 + 0.7 * i + rng.uniform(0, 0.1))
        rtp_stream(cap, NVR, camera, conn.t + 0.004)
        for cseq in range(7, 13):
            rtsp_keepalive(conn, camera, cseq, conn.t + 30.0 + rng.uniform(-0.05, 0.05))
        conn.flush()

    # Recorder: heartbeat to the vendor cloud every ~30 s, two uploads, NTP every 64 s.
    dns_lookup(cap, 7.0 + rng.random(), NVR, CLOUD)
    t = 8.0 + rng.random()
    while t < DURATION_S:
        cloud_heartbeat(cap, NVR, t)
        t += 30.0 + rng.uniform(-0.4, 0.4)
    cloud_upload(cap, NVR, 71.0 + rng.random())
    cloud_upload(cap, NVR, 143.5 + rng.random())
    for t0 in (5.1, 69.1, 133.1):
        ntp_query(cap, t0 + rng.uniform(0, 0.05), NVR, NTP_POOL, stratum=3)
    for i, cam in enumerate((CAM1, CAM2, CAM3)):
        ntp_query(cap, 1.5 + i * 0.37 + rng.uniform(0, 0.2), cam, NTP_POOL, stratum=3)

    # PCs: browsing, time sync, printing, printer status polls.
    for i, pc in enumerate(PCS):
        browsing(cap, pc, 2.0 + 3.1 * i + rng.uniform(0, 2.0))
        ntp_query(cap, 20.0 + 11.0 * i + rng.random(), pc, NTP_WINDOWS, stratum=2)
    mdns_printer(cap, 1.2 + rng.random(), PC1, PRINTER)
    mdns_printer(cap, 88.0 + rng.random(), PC2, PRINTER)
    snmp_sysdescr(cap, 2.3 + rng.random(), PC1, PRINTER)
    for t0 in range(10, int(DURATION_S), 30):
        snmp_poll(cap, t0 + rng.uniform(0, 0.5), PC1, PRINTER)
    ipp_job(cap, PC1, PRINTER, 44.0 + rng.random())
    snmp_poll(cap, 119.2 + rng.random(), PC2, PRINTER)
    raw_job(cap, PC2, PRINTER, 121.0 + rng.random())

    # Discovery chatter: SSDP announcements and one M-SEARCH.
    upnp = [
        (ROUTER, "Linux/3.10 UPnP/1.0 TP-LINK/Archer-C6 1.0", "http://192.168.1.1:1900/gatedesc.xml",
         "7c1a2f5e-91d0-4b2e-8f3a-50c7bf3e9120", "urn:schemas-upnp-org:device:InternetGatewayDevice:1"),
        (NVR, "Linux/3.10, UPnP/1.0, Portable SDK for UPnP devices/1.6.6", "http://192.168.1.60:49152/rootDesc.xml",
         "32303133-3131-3131-3131-4419b6823a10", "urn:schemas-upnp-org:device:Basic:1"),
        (CAM1, "Linux/3.0, UPnP/1.0, Portable SDK for UPnP devices/1.6.6", "http://192.168.1.64:49152/rootDesc.xml",
         "32303134-3132-3233-3435-2857be4c19a3", "urn:schemas-upnp-org:device:Basic:1"),
        (CAM2, "Linux/3.0, UPnP/1.0, Portable SDK for UPnP devices/1.6.6", "http://192.168.1.65:49152/rootDesc.xml",
         "32303135-3132-3233-3435-c056e37d025e", "urn:schemas-upnp-org:device:Basic:1"),
        (CAM3, "Linux, UPnP/1.0, Private UPnP SDK", "http://192.168.1.66:49152/description.xml",
         "5c3a9b1e-0d2f-4e61-a7c8-3cef8c2ab144", "urn:schemas-upnp-org:device:Basic:1"),
    ]
    for host, server, location, uuid, device in upnp:
        phase = rng.uniform(0, 60)
        for t0 in (phase, phase + 60, phase + 120):
            ssdp_notify(cap, t0, host, server=server, location=location, uuid=uuid, device=device)
    ssdp_search(cap, 25.0 + rng.random(), PC1, [(h, s, loc, u) for h, s, loc, u, _ in upnp])
    return cap


def write_demo(path: str | Path, seed: int = 7) -> None:
    """Write the demo office capture for ``seed`` to ``path`` (parent folders are created)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    build(seed).write(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iotwatch.synth.demo", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="pcap file to write")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    args = parser.parse_args(argv)
    write_demo(args.out, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
