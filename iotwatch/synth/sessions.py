"""Conversations as packets: TCP sessions, bulk transfers, DNS, ARP — on a :class:`~.wire.Frames`.

Times are epoch seconds as seen at the mirror port. A host's ``rtt`` is the round trip between the
mirror port and that host (LAN hosts: well under a millisecond; internet hosts: tens of ms), so a
server's answer to a packet seen at ``t`` is seen at ``t + server.rtt``.

Small conversations are added packet by packet (Python scalars); bulk transfers and RTP video are
added as numpy arrays.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .wire import ACK, FIN, PSH, RST, SYN, TCP, UDP, Frames, ip_text

MSS = 1448
# MSS 1460, NOP, NOP, SACK permitted, NOP, window scale 7: a Linux-like SYN (doff 8)
SYN_OPTIONS = b"\x02\x04\x05\xb4\x01\x01\x04\x02\x01\x03\x03\x07"


@dataclass(frozen=True, slots=True)
class Host:
    """An address pair as seen on the LAN; internet hosts carry the gateway's MAC."""

    name: str
    mac: int
    ip: int
    device_type: str = "unknown"
    ttl: int = 64  # TTL as captured
    rtt: float = 0.0004  # round trip mirror port ↔ host, s

    @property
    def ip_text(self) -> str:
        return ip_text(self.ip)


class TcpSession:
    """One TCP connection between ``cli`` and ``srv``; ``t`` is the time of its latest packet."""

    def __init__(self, fr: Frames, rng: np.random.Generator, cli: Host, srv: Host, dport: int, t: float,
                 *, sport: int | None = None, win: int = 64240) -> None:
        self.fr = fr
        self.rng = rng
        self.hosts = (cli, srv)
        self.ports = (sport if sport is not None else int(rng.integers(32768, 61000)), dport)
        self.nxt = [int(rng.integers(0, 1 << 32)), int(rng.integers(0, 1 << 32))]
        self.win = win
        self.t = t

    def packet(self, side: int, t: float, flags: int, payload: bytes = b"", *, options: bytes = b"") -> None:
        src, dst = self.hosts[side], self.hosts[1 - side]
        data = options + payload
        off, length = self.fr.blob.add(data) if data else (0, 0)
        self.fr.add(t, smac=src.mac, dmac=dst.mac, src=src.ip, dst=dst.ip, proto=TCP, ttl=src.ttl,
                    sport=self.ports[side], dport=self.ports[1 - side], seq=self.nxt[side],
                    ack=self.nxt[1 - side] if flags & ACK else 0, flags=flags, win=self.win,
                    doff=5 + len(options) // 4, poff=off, plen=length)
        step = len(payload) + (1 if flags & (SYN | FIN) else 0)
        self.nxt[side] = (self.nxt[side] + step) & 0xFFFFFFFF
        self.t = max(self.t, t)

    def answer(self, side: int) -> float:
        """Capture time at which ``side`` answers the latest packet (its round trip plus a little)."""
        return self.t + self.hosts[side].rtt + float(self.rng.uniform(0.00002, 0.0003))

    def open(self) -> bool:
        """Three-way handshake; False when the server never answers (SYN and two retries)."""
        self.packet(0, self.t, SYN, options=SYN_OPTIONS)
        self.packet(1, self.answer(1), SYN | ACK, options=SYN_OPTIONS)
        self.packet(0, self.answer(0), ACK)
        return True

    def send(self, side: int, payload: bytes, think: float = 0.0) -> None:
        """``side`` sends ``payload`` after ``think`` s; the peer acknowledges it."""
        t = self.t + think
        for i in range(0, len(payload), MSS):
            self.packet(side, t, PSH | ACK, payload[i:i + MSS])
            t += 0.00012
        self.packet(1 - side, self.answer(1 - side), ACK)

    def close(self, side: int = 0, think: float = 0.0) -> None:
        """FIN from ``side``, FIN+ACK back, last ACK."""
        self.packet(side, self.t + think, FIN | ACK)
        self.packet(1 - side, self.answer(1 - side), FIN | ACK)
        self.packet(side, self.answer(side), ACK)

    def reset(self, side: int, think: float = 0.0) -> None:
        self.packet(side, self.t + think, RST | ACK)


def bulk(fr: Frames, rng: np.random.Generator, snd: Host, rcv: Host, sport: int, dport: int, t0: float,
         t1: float, rate_bps: float, seq0: int, ack0: int, region: tuple[int, int], at: int = 0) -> tuple[int, float]:
    """A one-way bulk transfer ``snd`` → ``rcv`` at ``rate_bps`` (frame bits) from ``t0`` to ``t1``.

    Full-size segments evenly paced with jitter, an ACK from the receiver every second segment one
    round trip later; payloads are consecutive bytes of ``region`` (offset, length) of the blob,
    which holds the stream twice so every segment is one slice; ``at`` is the stream offset of the
    first segment (to continue an earlier call). Returns (bytes sent, end time)."""
    frame_bits = (14 + 20 + 20 + MSS) * 8
    n = max(1, int((t1 - t0) * rate_bps / frame_bits))
    gap = (t1 - t0) / n
    ts = t0 + gap * np.arange(n) + rng.uniform(0, gap * 0.3, n)
    k = np.arange(n, dtype=np.int64)
    seq = (seq0 + k * MSS) & 0xFFFFFFFF
    r_off, r_len = region
    poff = r_off + (at + k * MSS) % (r_len // 2)
    fr.add_many(ts, smac=snd.mac, dmac=rcv.mac, src=snd.ip, dst=rcv.ip, proto=TCP, ttl=snd.ttl,
                ipid=(int(rng.integers(0, 65536)) + k) & 0xFFFF, sport=sport, dport=dport, seq=seq,
                ack=ack0, flags=PSH | ACK, win=502, poff=poff, plen=MSS)
    a = k[1::2]
    fr.add_many(ts[1::2] + rcv.rtt, smac=rcv.mac, dmac=snd.mac, src=rcv.ip, dst=snd.ip, proto=TCP,
                ttl=rcv.ttl, ipid=(int(rng.integers(0, 65536)) + a) & 0xFFFF, sport=dport, dport=sport,
                seq=ack0, ack=(seq0 + (a + 1) * MSS) & 0xFFFFFFFF, flags=ACK, win=2048)
    return n * MSS, float(ts[-1])


def stream_region(fr: Frames, rng: np.random.Generator, size: int = 65_624) -> tuple[int, int]:
    """A TLS-looking application-data stream (4 records of 16,401 bytes), stored twice."""
    body = size // 4 - 5
    records = b"".join(b"\x17\x03\x03" + struct.pack(">H", body) + rng.bytes(body) for _ in range(4))
    return fr.blob.add(records + records, dedupe=False)


def tls_record(rng: np.random.Generator, n: int) -> bytes:
    """One TLS 1.2/1.3 application-data record with ``n`` bytes of ciphertext."""
    return b"\x17\x03\x03" + struct.pack(">H", n) + rng.bytes(n)


def dns_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


def dns_query(txid: int, name: str, qtype: int = 1) -> bytes:
    return struct.pack(">HHHHHH", txid, 0x0100, 1, 0, 0, 0) + dns_name(name) + struct.pack(">HH", qtype, 1)


def dns_answer(txid: int, name: str, addr: int | None, ttl: int = 300) -> bytes:
    """A response with one A record, or NXDOMAIN when ``addr`` is None."""
    q = dns_name(name) + struct.pack(">HH", 1, 1)
    if addr is None:
        return struct.pack(">HHHHHH", txid, 0x8183, 1, 0, 0, 0) + q
    rr = b"\xc0\x0c" + struct.pack(">HHIHI", 1, 1, ttl, 4, addr)
    return struct.pack(">HHHHHH", txid, 0x8180, 1, 1, 0, 0) + q + rr


def udp(fr: Frames, t: float, src: Host, dst: Host, sport: int, dport: int, payload: bytes,
        *, df: int = 1) -> None:
    off, length = fr.blob.add(payload)
    fr.add(t, smac=src.mac, dmac=dst.mac, src=src.ip, dst=dst.ip, proto=UDP, ttl=src.ttl, sport=sport,
           dport=dport, poff=off, plen=length, df=df)


def resolve(fr: Frames, rng: np.random.Generator, t: float, cli: Host, resolver: Host, name: str,
            addr: int | None) -> float:
    """A DNS A query from ``cli`` and the resolver's answer; returns the answer's time."""
    txid = int(rng.integers(0, 65536))
    sport = int(rng.integers(32768, 61000))
    udp(fr, t, cli, resolver, sport, 53, dns_query(txid, name))
    t_ans = t + resolver.rtt + float(rng.uniform(0.001, 0.03))
    udp(fr, t_ans, resolver, cli, 53, sport, dns_answer(txid, name, addr))
    return t_ans


def arp_pair(fr: Frames, t: float, asker: Host, target: Host, rtt: float = 0.0005) -> None:
    """who-has ``target`` tell ``asker`` (broadcast) and the reply."""
    def frame(op: int, smac: int, sip: int, dmac: int, tmac: int, tip: int) -> bytes:
        eth = dmac.to_bytes(6, "big") + smac.to_bytes(6, "big") + b"\x08\x06"
        body = struct.pack(">HHBBH", 1, 0x0800, 6, 4, op) + smac.to_bytes(6, "big") + struct.pack(">I", sip) \
            + tmac.to_bytes(6, "big") + struct.pack(">I", tip)
        return (eth + body).ljust(60, b"\0")

    fr.add_raw(round(t * 1e6), frame(1, asker.mac, asker.ip, 0xFFFFFFFFFFFF, 0, target.ip))
    fr.add_raw(round((t + rtt) * 1e6), frame(2, target.mac, target.ip, asker.mac, asker.mac, asker.ip))
