"""Packets as columns → a pcap file, fast.

A scenario adds packets to a :class:`Frames` table one at a time (Python scalars, for the rare
conversational packets) or thousands at a time (numpy arrays, for scans, floods, video and bulk
uploads). Nothing is ever a scapy object here: scapy only crafts the few payload templates, whose
bytes go into one shared *payload blob*; every packet refers to its payload as an (offset, length)
slice of that blob.

:meth:`Frames.write` sorts the packets by time and renders them in chunks: Ethernet + IPv4 +
TCP/UDP headers are filled column-wise in a header matrix, the IPv4 header checksum and the
TCP/UDP checksums (pseudo-header + header + payload) are computed with numpy — the payload part
from prefix sums of the blob's 16-bit words, so a payload's sum costs two lookups — and each
record is copied into the output buffer. Frames shorter than 60 bytes are zero-padded as a switch
delivers them. Output: classic little-endian microsecond pcap, link type Ethernet.

Other frames (ARP, whole frames copied from a real capture by ``--inject``) are *raw*: their
bytes are the payload slice and the header columns are ignored.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

LINKTYPE_ETHERNET = 1
SNAPLEN = 262_144
ETHER_MIN = 60
TCP, UDP, GRE = 6, 17, 47
KIND_IP, KIND_RAW = 0, 1
CHUNK = 16_384  # packets rendered at a time

# TCP flag bits
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

Arr = npt.NDArray[np.int64]

# (name, numpy dtype, default) of every column; ts is microseconds since the Unix epoch
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("ts", "i8", 0), ("kind", "u1", KIND_IP), ("smac", "u8", 0), ("dmac", "u8", 0),
    ("src", "u4", 0), ("dst", "u4", 0), ("proto", "u1", TCP), ("ttl", "u1", 64), ("ipid", "u2", 0),
    ("df", "u1", 1), ("sport", "u2", 0), ("dport", "u2", 0), ("seq", "u4", 0), ("ack", "u4", 0),
    ("flags", "u1", 0), ("win", "u2", 0), ("doff", "u1", 5), ("poff", "i8", 0), ("plen", "i8", 0),
    ("rtp", "u1", 0), ("rtp_seq", "u2", 0), ("rtp_ts", "u4", 0), ("rtp_ssrc", "u4", 0),
    ("rtp_mark", "u1", 0),
)
NAMES = tuple(c[0] for c in COLUMNS)
DTYPES = {c[0]: np.dtype(c[1]) for c in COLUMNS}
DEFAULTS = {c[0]: c[2] for c in COLUMNS}
RTP_PT = 96  # dynamic payload type used for H.264

# Header matrix: Ethernet (14) + IPv4 (20) + TCP (20) or UDP (8) + optional RTP (12)
HDR = 14 + 20 + 20 + 12
L4_AT = 34


def mac(text: str) -> int:
    return int(text.replace(":", ""), 16)


def mac_text(value: int) -> str:
    h = f"{value:012x}"
    return ":".join(h[i:i + 2] for i in range(0, 12, 2))


def ip(text: str) -> int:
    a, b, c, d = (int(x) for x in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def ip_text(value: int) -> str:
    return ".".join(str((value >> s) & 0xFF) for s in (24, 16, 8, 0))


def _fold(s: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    for _ in range(4):
        s = (s & 0xFFFF) + (s >> 16)
    return s


@dataclass
class Blob:
    """All payload bytes of a capture; slices start at even offsets (for the checksum sums)."""

    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    _index: dict[bytes, int] = field(default_factory=dict)

    def add(self, data: bytes, *, dedupe: bool = True) -> tuple[int, int]:
        """Store ``data`` (once, when ``dedupe``) and return its (offset, length)."""
        if dedupe and data in self._index:
            return self._index[data], len(data)
        off = self.size
        padded = data + b"\0" if len(data) % 2 else data
        self.parts.append(padded)
        self.size += len(padded)
        if dedupe and len(data) <= 4096:
            self._index[data] = off
        return off, len(data)

    def freeze(self) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
        """The blob as bytes and the prefix sums of its big-endian 16-bit words."""
        raw = np.frombuffer(b"".join(self.parts) + b"\0\0", dtype=np.uint8)
        words = raw[0:len(raw) - len(raw) % 2].view(">u2").astype(np.int64)
        prefix = np.zeros(len(words) + 1, dtype=np.int64)
        np.cumsum(words, out=prefix[1:])
        return raw, prefix


class Frames:
    """The packets of one capture, as columns, in any order until :meth:`write`."""

    def __init__(self) -> None:
        self.blob = Blob()
        self._rows: list[tuple[int, ...]] = []
        self._arrays: list[dict[str, np.ndarray]] = []
        self._ipid: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._rows) + sum(len(a["ts"]) for a in self._arrays)

    def mark(self) -> tuple[int, int]:
        """A position in the table, for :meth:`span`."""
        return len(self._rows), len(self._arrays)

    def span(self, mark: tuple[int, int], smac: int) -> tuple[float, float] | None:
        """(first, last) epoch s of the packets sent by MAC ``smac`` added since ``mark``."""
        ts_col, mac_col = NAMES.index("ts"), NAMES.index("smac")
        times = [r[ts_col] for r in self._rows[mark[0]:] if r[mac_col] == smac]
        for a in self._arrays[mark[1]:]:
            sel = a["ts"][a["smac"] == smac]
            if len(sel):
                times += [int(sel.min()), int(sel.max())]
        if not times:
            return None
        return min(times) / 1e6, max(times) / 1e6

    def sent_bytes(self, smac: int, t0: float, t1: float, local: tuple[int, int]) -> int:
        """Frame bytes (as on the wire, before padding) sent by ``smac`` between ``t0`` and ``t1``
        to IPv4 addresses outside ``local`` (network, mask)."""
        total = 0
        lo, hi = round(t0 * 1e6), round(t1 * 1e6)
        net, mask = local
        parts = list(self._arrays)
        if self._rows:
            rows = np.array(self._rows, dtype=np.int64)
            parts.append({n: rows[:, i] for i, n in enumerate(NAMES)})
        for a in parts:
            sel = (a["smac"] == smac) & (a["ts"] >= lo) & (a["ts"] < hi) & (a["kind"] == KIND_IP)
            sel &= (a["dst"].astype(np.int64) & mask) != net
            proto = a["proto"][sel].astype(np.int64)
            l4 = np.where(proto == TCP, 20, np.where(proto == UDP, 8, 0)) + 12 * a["rtp"][sel].astype(np.int64)
            total += int((34 + l4 + a["plen"][sel].astype(np.int64)).sum())
        return total

    def next_ipid(self, host_ip: int) -> int:
        """The sender's own incrementing IPv4 identification counter (Linux-like per-host)."""
        v = self._ipid.get(host_ip, (host_ip * 2654435761) & 0xFFFF)
        self._ipid[host_ip] = (v + 1) & 0xFFFF
        return v

    def add(self, t: float, **cols: int) -> None:
        """One packet at ``t`` epoch seconds; unspecified columns take their defaults."""
        cols["ts"] = round(t * 1_000_000)
        if "ipid" not in cols and cols.get("kind", KIND_IP) == KIND_IP:
            cols["ipid"] = self.next_ipid(cols["src"])
        self._rows.append(tuple(cols.get(n, DEFAULTS[n]) for n in NAMES))

    def add_raw(self, t_us: int, frame: bytes) -> None:
        """A whole frame (ARP, a frame of a real capture) at ``t_us`` epoch microseconds."""
        off, length = self.blob.add(frame, dedupe=False)
        self._rows.append(tuple({"ts": t_us, "kind": KIND_RAW, "poff": off, "plen": length}.get(n, DEFAULTS[n])
                                for n in NAMES))

    def add_many(self, ts: npt.NDArray[np.float64], **cols: npt.ArrayLike) -> None:
        """Many packets at once: ``ts`` epoch seconds, columns as arrays or scalars (broadcast)."""
        n = len(ts)
        if n == 0:
            return
        out: dict[str, np.ndarray] = {"ts": np.round(np.asarray(ts, dtype=np.float64) * 1e6).astype(np.int64)}
        for name in NAMES[1:]:
            v = cols.get(name, DEFAULTS[name])
            out[name] = np.broadcast_to(np.asarray(v).astype(DTYPES[name], copy=False), (n,)).copy()
        self._arrays.append(out)

    def drop_host(self, host_mac: int) -> int:
        """Remove every packet sent to or by MAC ``host_mac`` (raw frames too, by their Ethernet
        addresses); returns how many were removed."""
        raw = b"".join(self.blob.parts)
        kind_col, poff_col = NAMES.index("kind"), NAMES.index("poff")
        smac_col, dmac_col = NAMES.index("smac"), NAMES.index("dmac")

        def raw_macs(r: tuple[int, ...]) -> tuple[int, int]:
            at = r[poff_col]
            return int.from_bytes(raw[at + 6:at + 12], "big"), int.from_bytes(raw[at:at + 6], "big")

        before = len(self)
        kept = []
        for r in self._rows:
            smac, dmac = raw_macs(r) if r[kind_col] == KIND_RAW else (r[smac_col], r[dmac_col])
            if host_mac not in (smac, dmac):
                kept.append(r)
        self._rows = kept
        arrays = []
        for a in self._arrays:
            keep = (a["smac"] != host_mac) & (a["dmac"] != host_mac)
            if keep.any():
                arrays.append({n: v[keep] for n, v in a.items()})
        self._arrays = arrays
        return before - len(self)

    def columns(self) -> dict[str, np.ndarray]:
        """Every packet as columns, sorted by time (stable: insertion order breaks ties)."""
        parts = list(self._arrays)
        if self._rows:
            rows = np.array(self._rows, dtype=np.int64)
            parts.insert(0, {n: rows[:, i].astype(DTYPES[n]) for i, n in enumerate(NAMES)})
        if not parts:
            return {n: np.zeros(0, dtype=DTYPES[n]) for n in NAMES}
        cols = {n: np.concatenate([p[n] for p in parts]) for n in NAMES}
        order = np.argsort(cols["ts"], kind="stable")
        return {n: v[order] for n, v in cols.items()}

    def write(self, path: Path) -> int:
        """Write the capture to ``path``; returns the number of packets."""
        cols = self.columns()
        blob, prefix = self.blob.freeze()
        n = len(cols["ts"])
        with open(path, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
            for s in range(0, n, CHUNK):
                _render({k: v[s:s + CHUNK] for k, v in cols.items()}, blob, prefix, f)
        return n


def _put(h: npt.NDArray[np.uint8], at: int, value: npt.NDArray[np.int64], width: int) -> None:
    for i in range(width):
        h[:, at + i] = (value >> (8 * (width - 1 - i))) & 0xFF


def _render(c: dict[str, np.ndarray], blob: npt.NDArray[np.uint8], prefix: npt.NDArray[np.int64],
            out: BinaryIO) -> None:
    n = len(c["ts"])
    g = {k: v.astype(np.int64) for k, v in c.items()}
    raw = g["kind"] == KIND_RAW
    tcp = (g["proto"] == TCP) & ~raw
    udp = (g["proto"] == UDP) & ~raw
    rtp = (g["rtp"] == 1) & udp
    # bytes of the header matrix used after IPv4 (TCP options are at the head of the payload slice)
    l4hdr = np.where(tcp, 20, np.where(udp, 8, 0)) + 12 * rtp
    plen = g["plen"]
    iplen = 20 + l4hdr + plen
    hlen = np.where(raw, 0, 14 + 20 + l4hdr)
    wire = np.where(raw, plen, 14 + iplen)
    cap = np.where(raw, plen, np.maximum(wire, ETHER_MIN))  # raw frames are kept exactly as given
    h = np.zeros((n, 16 + HDR), dtype=np.uint8)
    # pcap record header (little-endian)
    rec = h[:, :16].view("<u4")
    rec[:, 0] = g["ts"] // 1_000_000
    rec[:, 1] = g["ts"] % 1_000_000
    rec[:, 2] = cap
    rec[:, 3] = cap
    e = h[:, 16:]
    _put(e, 0, g["dmac"], 6)
    _put(e, 6, g["smac"], 6)
    e[:, 12], e[:, 13] = 0x08, 0x00
    e[:, 14] = 0x45
    _put(e, 16, iplen, 2)
    _put(e, 18, g["ipid"], 2)
    frag = np.where(g["df"] == 1, 0x4000, 0)
    _put(e, 20, frag, 2)
    e[:, 22] = g["ttl"]
    e[:, 23] = g["proto"]
    _put(e, 26, g["src"], 4)
    _put(e, 30, g["dst"], 4)
    src, dst = g["src"], g["dst"]
    addr = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
    ipsum = 0x4500 + iplen + g["ipid"] + frag + (g["ttl"] << 8) + g["proto"] + addr
    _put(e, 24, 0xFFFF - _fold(ipsum), 2)
    # transport headers
    sp, dp = g["sport"], g["dport"]
    _put(e, L4_AT, sp, 2)
    _put(e, L4_AT + 2, dp, 2)
    seq, ack = g["seq"], g["ack"]
    offflags = (g["doff"] << 12) | g["flags"]
    tcp_words = sp + dp + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF) + offflags + g["win"]
    udp_len = 8 + 12 * rtp + plen
    udp_words = sp + dp + udp_len
    t_idx = np.flatnonzero(tcp)
    u_idx = np.flatnonzero(udp)
    et, eu = e[t_idx], e[u_idx]
    _put(et, L4_AT + 4, seq[t_idx], 4)
    _put(et, L4_AT + 8, ack[t_idx], 4)
    _put(et, L4_AT + 12, offflags[t_idx], 2)
    _put(et, L4_AT + 14, g["win"][t_idx], 2)
    _put(eu, L4_AT + 4, udp_len[u_idx], 2)
    # RTP header (version 2) after the UDP header
    r_at = L4_AT + 8
    rtp_b1 = (g["rtp_mark"] << 7) | RTP_PT
    rtp_words = (0x80 << 8) + rtp_b1 + g["rtp_seq"] + (g["rtp_ts"] >> 16) + (g["rtp_ts"] & 0xFFFF) \
        + (g["rtp_ssrc"] >> 16) + (g["rtp_ssrc"] & 0xFFFF)
    r_sel = rtp[u_idx]
    if r_sel.any():
        er = eu[r_sel]
        ri = u_idx[r_sel]
        er[:, r_at] = 0x80
        er[:, r_at + 1] = rtp_b1[ri]
        _put(er, r_at + 2, g["rtp_seq"][ri], 2)
        _put(er, r_at + 4, g["rtp_ts"][ri], 4)
        _put(er, r_at + 8, g["rtp_ssrc"][ri], 4)
        eu[r_sel] = er
    # checksums: pseudo-header + header words + payload words
    poff = g["poff"]
    even = plen & ~1
    pay = prefix[(poff + even) // 2] - prefix[poff // 2]
    odd = (plen & 1) == 1
    pay[odd] += blob[(poff + plen - 1)[odd]].astype(np.int64) << 8
    tcp_len = 20 + plen
    tsum = _fold(addr + TCP + tcp_len + tcp_words + pay)
    usum = _fold(addr + UDP + udp_len + udp_words + np.where(rtp, rtp_words, 0) + pay)
    tcs = 0xFFFF - tsum[t_idx]
    ucs = 0xFFFF - usum[u_idx]
    ucs[ucs == 0] = 0xFFFF
    _put(et, L4_AT + 16, tcs, 2)
    _put(eu, L4_AT + 6, ucs, 2)
    e[t_idx] = et
    e[u_idx] = eu
    # assemble: record header + header bytes + payload slice + zero padding
    reclen = 16 + cap
    start = np.zeros(n, dtype=np.int64)
    np.cumsum(reclen[:-1], out=start[1:])
    buf = np.zeros(int(reclen.sum()), dtype=np.uint8)
    used = np.arange(16 + HDR)[None, :] < (16 + hlen)[:, None]
    pos = start[:, None] + np.arange(16 + HDR)[None, :]
    buf[pos[used]] = h[used]
    # payload bytes: TCP options live in the payload slice too (doff counts them)
    dst_at = (start + 16 + hlen).tolist()
    view, src_view = memoryview(buf), memoryview(blob)
    for d, s, ln in zip(dst_at, poff.tolist(), plen.tolist(), strict=True):
        if ln:
            view[d:d + ln] = src_view[s:s + ln]
    out.write(buf.tobytes())
