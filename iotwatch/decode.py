"""Packet batches → columns of header fields (link, network and transport layers).

One compiled pass over a batch; no per-packet Python objects. Every packet yields a row; one
that cannot be decoded is still counted, with the layer that failed in ``err``.

Addresses are two uint64 words: IPv4 is stored IPv4-mapped (hi = 0, lo = 0xffff_xxxxxxxx),
IPv6 as its 128 bits. MAC addresses are 48-bit integers; :data:`NO_MAC` (a value above 48 bits)
marks a packet without Ethernet (the all-zero MAC is a real, if odd, address).
"""

from __future__ import annotations

import numpy as np

from ._jit import inline_kernel, kernel
from .capture.batch import PacketBatch

# l3 values
L3_NONE, L3_ARP, L3_OTHER, L3_IPV4, L3_IPV6 = 0, 1, 2, 4, 6
# err values: the layer that could not be decoded
ERR_OK, ERR_LINK, ERR_NETWORK, ERR_TRANSPORT = 0, 1, 2, 3
# frag values
FRAG_NONE, FRAG_FIRST, FRAG_LATER = 0, 1, 2
# info bits
INFO_DNS_QUERY, INFO_ARP_REQUEST, INFO_ARP_REPLY = 1, 2, 4
# TCP flag bits
TH_FIN, TH_SYN, TH_RST, TH_PSH, TH_ACK, TH_URG, TH_ECE, TH_CWR = 1, 2, 4, 8, 16, 32, 64, 128

V4_MAPPED = np.uint64(0xFFFF00000000)
NO_MAC = np.uint64(1 << 63)


PKT_DTYPE = np.dtype([
    ("src_mac", np.uint64),  # NO_MAC without Ethernet
    ("dst_mac", np.uint64),
    ("src_hi", np.uint64), ("src_lo", np.uint64), ("dst_hi", np.uint64), ("dst_lo", np.uint64),
    ("tcp_seq", np.uint32),
    ("frag_id", np.uint32),  # IP identification of a fragment
    ("sport", np.int32),  # ICMP: type; ARP: opcode
    ("dport", np.int32),  # ICMP: code
    ("payload", np.int32),  # transport payload bytes (from the IP lengths, not the captured bytes)
    ("ip_len", np.uint32),  # IP bytes of the (innermost) packet as its header announces them (Zeek's ip_bytes)
    ("vlan", np.uint16),  # outer VLAN id
    ("ip_id", np.uint16), ("tcp_win", np.uint16),
    ("l3_off", np.uint16),  # offset of the (innermost) IP or ARP header from the packet's first byte
    ("l3", np.uint8),  # L3_*
    ("err", np.uint8),  # ERR_*: the layer that could not be decoded
    ("proto", np.uint8),  # IP protocol (ARP: 0)
    ("tcp_flags", np.uint8),
    ("frag", np.uint8),  # FRAG_*
    ("ttl", np.uint8),  # IPv4 TTL / IPv6 hop limit
    ("info", np.uint8),  # INFO_* bits
], align=True)


class Packets:
    """Decoded header fields of one batch: one record per packet (a numpy structured array, so
    the compiled decoder writes one row at a time). Field views (``pk.src_lo``...) are numpy
    arrays. Valid until the next batch is decoded into the same buffer."""

    __slots__ = ("rec",)

    def __init__(self, rec: np.ndarray) -> None:
        self.rec = rec

    @classmethod
    def allocate(cls, n: int) -> Packets:
        return cls(np.zeros(n, PKT_DTYPE))

    def view(self, n: int) -> Packets:
        return Packets(self.rec[:n])

    def __len__(self) -> int:
        return int(self.rec.shape[0])

    def __getattr__(self, name: str) -> np.ndarray:
        if name in PKT_DTYPE.names:  # type: ignore[operator]
            return self.rec[name]  # type: ignore[no-any-return]
        raise AttributeError(name)


@inline_kernel
def _be16(b, p):  # type: ignore[no-untyped-def]
    return (np.int64(b[p]) << 8) | np.int64(b[p + 1])


@inline_kernel
def _be32(b, p):  # type: ignore[no-untyped-def]
    return (np.int64(b[p]) << 24) | (np.int64(b[p + 1]) << 16) | (np.int64(b[p + 2]) << 8) | np.int64(b[p + 3])


@inline_kernel
def _be64(b, p):  # type: ignore[no-untyped-def]
    return np.uint64((np.uint64(_be32(b, p)) << np.uint64(32)) | np.uint64(_be32(b, p + 4)))


@inline_kernel
def _mac(b, p):  # type: ignore[no-untyped-def]
    return np.uint64((np.uint64(_be16(b, p)) << np.uint64(32)) | np.uint64(_be32(b, p + 2)))


@inline_kernel
def _transport(b, r, p, end, proto, l4len):  # type: ignore[no-untyped-def]
    """Decode TCP/UDP/ICMP at b[p:end]; l4len is the transport length the IP header announces."""
    avail = end - p
    if proto == 6:
        if avail < 4:
            r.err = 3
            return
        r.sport = _be16(b, p)
        r.dport = _be16(b, p + 2)
        if avail >= 16:
            r.tcp_seq = _be32(b, p + 4)
            doff = (np.int64(b[p + 12]) >> 4) * 4
            r.tcp_flags = b[p + 13]
            r.tcp_win = _be16(b, p + 14)
            pl = l4len - doff
            r.payload = pl if pl > 0 else 0
        else:
            r.err = 3
    elif proto == 17 or proto == 136:  # UDP, UDP-Lite
        if avail < 4:
            r.err = 3
            return
        sp = _be16(b, p)
        dp = _be16(b, p + 2)
        r.sport = sp
        r.dport = dp
        pl = l4len - 8
        r.payload = pl if pl > 0 else 0
        if dp == 53 and avail >= 11 and (b[p + 10] & 0x80) == 0:
            r.info |= 1
    elif proto == 1 or proto == 58:
        if avail < 2:
            r.err = 3
            return
        r.sport = b[p]
        r.dport = b[p + 1]
        pl = l4len - 8
        r.payload = pl if pl > 0 else 0
    elif proto == 132:  # SCTP: ports like TCP/UDP
        if avail < 4:
            r.err = 3
            return
        r.sport = _be16(b, p)
        r.dport = _be16(b, p + 2)
        pl = l4len - 12
        r.payload = pl if pl > 0 else 0
    else:
        r.payload = l4len if l4len > 0 else 0


@inline_kernel
def _ip(buf, r, p, end, etype, captured_end):  # type: ignore[no-untyped-def]
    """Decode one IPv4/IPv6 header at buf[p:end] and what it carries. Returns (0, p) when done,
    or (ethertype, offset) of an encapsulated IP packet (IP-in-IP, 6in4) to decode next."""
    mapped = np.uint64(0xFFFF00000000)
    if etype == 0x0800:
        r.l3 = 4
        if end - p < 20 or (buf[p] >> 4) != 4:
            r.err = 2
            return 0, p
        ihl = np.int64(buf[p] & 0x0F) * 4
        total = _be16(buf, p + 2)
        if ihl < 20 or end - p < ihl:
            r.err = 2
            return 0, p
        if total < ihl:  # TSO/zero length: trust what was captured
            total = captured_end - p
        r.ip_len = total
        r.ip_id = _be16(buf, p + 4)
        fo = _be16(buf, p + 6)
        r.ttl = buf[p + 8]
        pr = np.int64(buf[p + 9])
        r.proto = pr
        r.src_lo = mapped | np.uint64(_be32(buf, p + 12))
        r.dst_lo = mapped | np.uint64(_be32(buf, p + 16))
        offset = (fo & 0x1FFF) * 8
        more = (fo & 0x2000) != 0
        l4len = total - ihl
        if offset != 0:
            r.frag = 2
            r.frag_id = r.ip_id
            r.payload = l4len if l4len > 0 else 0
            return 0, p
        if more:
            r.frag = 1
            r.frag_id = r.ip_id
        elif pr == 4 or pr == 41:  # IP-in-IP, 6in4/6rd: the inner packet makes the flow
            return (0x0800 if pr == 4 else 0x86DD), p + ihl
        lim = p + total if p + total < end else end
        _transport(buf, r, p + ihl, lim, pr, l4len)
    elif etype == 0x86DD:
        r.l3 = 6
        if end - p < 40 or (buf[p] >> 4) != 6:
            r.err = 2
            return 0, p
        plen = _be16(buf, p + 4)
        r.ip_len = 40 + plen
        nh = np.int64(buf[p + 6])
        r.ttl = buf[p + 7]
        r.src_hi = _be64(buf, p + 8)
        r.src_lo = _be64(buf, p + 16)
        r.dst_hi = _be64(buf, p + 24)
        r.dst_lo = _be64(buf, p + 32)
        q = p + 40
        l4len = plen
        later = False
        bad = False
        for _ in range(12):  # extension header chain
            if (nh == 0 or nh == 43 or nh == 60 or nh == 135 or nh == 139 or nh == 140 or nh == 253 or nh == 254
                    or nh == 51):
                if end - q < 2:
                    bad = True
                    break
                # the length byte counts 8-octet units beyond the first; AH's counts 4-octet units beyond two
                hl = (np.int64(buf[q + 1]) + 2) * 4 if nh == 51 else (np.int64(buf[q + 1]) + 1) * 8
                nh = np.int64(buf[q])
                q += hl
                l4len -= hl
            elif nh == 44:
                if end - q < 8:
                    bad = True
                    break
                fo = _be16(buf, q + 2)
                r.frag_id = _be32(buf, q + 4)
                if (fo & 0xFFF8) != 0:
                    later = True
                    r.frag = 2
                elif fo & 1:
                    r.frag = 1
                nh = np.int64(buf[q])
                q += 8
                l4len -= 8
                if later:
                    break
            else:
                break
        r.proto = nh
        if bad or q > end:
            r.err = 2
            return 0, p
        if later:
            r.payload = l4len if l4len > 0 else 0
            return 0, p
        if nh == 59:
            return 0, p
        if (nh == 4 or nh == 41) and r.frag == 0:
            return (0x0800 if nh == 4 else 0x86DD), q
        lim = p + 40 + plen if p + 40 + plen < end and plen > 0 else end
        _transport(buf, r, q, lim, nh, l4len)
    return 0, p


@kernel
def decode_batch(buf, off, caplen, linktype, out):  # type: ignore[no-untyped-def]
    n = off.shape[0]
    for i in range(n):
        r = out[i]
        p = off[i]
        end = p + caplen[i]
        lt = linktype[i]
        _reset(r)
        for _level in range(4):  # the frame, then up to three frames it carries (mirror tunnels)
            inner = _decode_one(buf, r, p, end, lt, off[i])
            if inner < 0:
                break
            _reset(r)  # the carried frame is the device's traffic: its fields replace the tunnel's
            p = inner
            lt = 1


@inline_kernel
def _reset(r):  # type: ignore[no-untyped-def]
    r.src_mac = np.uint64(1 << 63)
    r.dst_mac = np.uint64(1 << 63)
    r.vlan = 0
    r.l3 = 0
    r.err = 0
    r.src_hi = 0
    r.src_lo = 0
    r.dst_hi = 0
    r.dst_lo = 0
    r.proto = 0
    r.sport = 0
    r.dport = 0
    r.tcp_flags = 0
    r.frag = 0
    r.frag_id = 0
    r.payload = 0
    r.ip_len = 0
    r.ttl = 0
    r.ip_id = 0
    r.tcp_seq = 0
    r.tcp_win = 0
    r.info = 0
    r.l3_off = 0


@inline_kernel
def _tunnel(buf, r, end, first):  # type: ignore[no-untyped-def]
    """The offset of the Ethernet frame a mirror tunnel carries in this IP packet, or -1:
    GRE with ERSPAN type I/II (0x88BE) or III (0x22EB) or transparent Ethernet bridging (0x6558),
    and VXLAN (UDP port 4789). Only for whole packets (no fragment) over IPv4 or plain IPv6."""
    if r.frag != 0 or r.err != 0:
        return -1
    q = np.int64(r.l3_off) + first
    if r.l3 == 4:
        q += np.int64(buf[q] & 0x0F) * 4
    else:
        if buf[q + 6] != r.proto:  # extension headers before the tunnel: not decapsulated
            return -1
        q += 40
    if r.proto == 47:
        if end - q < 4:
            return -1
        flags = _be16(buf, q)
        gp = _be16(buf, q + 2)
        if flags & 0x0007:  # GRE version 0 only
            return -1
        h = 4
        if flags & 0x8000:
            h += 4
        if flags & 0x2000:
            h += 4
        if flags & 0x1000:
            h += 4
        q += h
        if gp == 0x88BE:
            if flags & 0x1000:  # ERSPAN type II: 8-byte header (type I has none and no sequence)
                q += 8
        elif gp == 0x22EB:  # ERSPAN type III: 12 bytes, + 8 with the platform subheader (O flag)
            if end - q < 12:
                return -1
            o = buf[q + 11] & 1
            q += 20 if o else 12
        elif gp != 0x6558:
            return -1
    elif r.proto == 17 and r.dport == 4789:
        if end - q < 16 or (buf[q + 8] & 0x08) == 0:  # VXLAN's I flag: a valid network identifier
            return -1
        q += 16
    else:
        return -1
    if end - q < 14:
        return -1
    return q


@inline_kernel
def _decode_one(buf, r, p, end, lt, first):  # type: ignore[no-untyped-def]
    """Decode one frame of link type ``lt`` at buf[p:end] into ``r``. Returns the offset of an
    Ethernet frame it carries (FabricPath, ERSPAN, VXLAN, GRE bridging) to decode instead, or -1."""
    mapped = np.uint64(0xFFFF00000000)
    etype = -1  # -1: version from the IP header itself
    # ---- link layer
    if lt == 1:
        if end - p < 14:
            r.err = 1
            return -1
        r.dst_mac = _mac(buf, p)
        r.src_mac = _mac(buf, p + 6)
        etype = _be16(buf, p + 12)
        p += 14
        if etype == 0x8903:  # Cisco FabricPath: a 2-byte FTag/TTL, then the classical Ethernet frame
            if end - p < 16:
                r.err = 1
                return -1
            return p + 2
        tags = 0
        while (etype == 0x8100 or etype == 0x88A8 or etype == 0x9100) and tags < 4:
            if end - p < 4:
                r.err = 1
                return -1
            if tags == 0:
                r.vlan = _be16(buf, p) & 0x0FFF
            etype = _be16(buf, p + 2)
            p += 4
            tags += 1
        if etype == 0x8864:  # PPPoE session: 6-byte header + 2-byte PPP protocol
            if end - p < 8:
                r.err = 1
                return -1
            ppp = _be16(buf, p + 6)
            p += 8
            etype = 0x0800 if ppp == 0x0021 else (0x86DD if ppp == 0x0057 else 0)
    elif lt == 113:
        if end - p < 16:
            r.err = 1
            return -1
        etype = _be16(buf, p + 14)
        p += 16
    elif lt == 276:
        if end - p < 20:
            r.err = 1
            return -1
        etype = _be16(buf, p)
        p += 20
    elif lt == 101 or lt == 12 or lt == 14:
        etype = -1
    elif lt == 228:
        etype = 0x0800
    elif lt == 229:
        etype = 0x86DD
    elif lt == 0 or lt == 108:
        if end - p < 4:
            r.err = 1
            return -1
        fam = _be32(buf, p) if lt == 108 else -1
        if lt == 0:
            # host byte order of the capturing machine: accept either
            a = np.int64(buf[p])
            z = np.int64(buf[p + 3])
            fam = a if a != 0 else z
        p += 4
        etype = 0x0800 if fam == 2 else (0x86DD if (fam == 24 or fam == 28 or fam == 30) else 0)
    else:
        r.err = 1
        return -1
    if etype == -1:
        if end - p < 1:
            r.err = 2
            return -1
        v = buf[p] >> 4
        etype = 0x0800 if v == 4 else (0x86DD if v == 6 else 0)
        if etype == 0:
            r.err = 2
            return -1
    # ---- network layer
    for _depth in range(3):
        if etype != 0x0800 and etype != 0x86DD:
            break
        if _depth:  # an inner packet: its own header fields replace the outer ones
            r.src_hi = 0
            r.dst_hi = 0
            r.frag = 0
            r.frag_id = 0
        r.l3_off = p - first
        etype, p = _ip(buf, r, p, end, etype, end)
    if r.l3 == 4 or r.l3 == 6:
        if r.proto == 47 or r.proto == 17:
            return _tunnel(buf, r, end, first)
        return -1
    if etype == 0x0806:
        r.l3 = 1
        r.l3_off = p - first
        # ARP for IPv4 over Ethernet: htype 1, ptype 0x0800, hlen 6, plen 4
        if end - p < 28:
            r.err = 2
            return -1
        op = _be16(buf, p + 6)
        r.sport = op
        if _be16(buf, p + 2) == 0x0800 and buf[p + 4] == 6 and buf[p + 5] == 4:
            r.src_lo = mapped | np.uint64(_be32(buf, p + 14))
            r.dst_lo = mapped | np.uint64(_be32(buf, p + 24))
        if op == 1:
            r.info |= 2
        elif op == 2:
            r.info |= 4
    else:
        r.l3 = 2
    return -1


def decode(batch: PacketBatch, out: Packets) -> Packets:
    """Decode ``batch`` into the preallocated ``out`` columns and return a view of its rows."""
    v = out.view(len(batch))
    decode_batch(batch.buf, batch.off, batch.caplen, batch.linktype, v.rec)
    return v
