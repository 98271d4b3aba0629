"""Packet batches → columns of header fields (link, network and transport layers).

One compiled pass over a batch; no per-packet Python objects. Every packet yields a row; one
that cannot be decoded is still counted, with the layer that failed in ``err``.

Addresses are two uint64 words: IPv4 is stored IPv4-mapped (hi = 0, lo = 0xffff_xxxxxxxx),
IPv6 as its 128 bits. MAC addresses are 48-bit integers; :data:`NO_MAC` (a value above 48 bits)
marks a packet without Ethernet (the all-zero MAC is a real, if odd, address).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numba as nb
import numpy as np

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


@dataclass(slots=True)
class Packets:
    """Decoded columns for one batch (views of preallocated arrays; valid until the next batch)."""

    src_mac: np.ndarray  # uint64
    dst_mac: np.ndarray  # uint64
    vlan: np.ndarray  # uint16, outer VLAN id
    l3: np.ndarray  # uint8, L3_*
    err: np.ndarray  # uint8, ERR_*
    src_hi: np.ndarray  # uint64
    src_lo: np.ndarray  # uint64
    dst_hi: np.ndarray  # uint64
    dst_lo: np.ndarray  # uint64
    proto: np.ndarray  # uint8, IP protocol (ARP: 0)
    sport: np.ndarray  # int32, ICMP: type; ARP: opcode
    dport: np.ndarray  # int32, ICMP: code
    tcp_flags: np.ndarray  # uint8
    frag: np.ndarray  # uint8, FRAG_*
    frag_id: np.ndarray  # uint32, IP identification of a fragment
    payload: np.ndarray  # int32, transport payload bytes (from the IP lengths, not the captured bytes)
    ttl: np.ndarray  # uint8, IPv4 TTL / IPv6 hop limit
    ip_id: np.ndarray  # uint16, IPv4 identification
    tcp_seq: np.ndarray  # uint32
    tcp_win: np.ndarray  # uint16
    info: np.ndarray  # uint8, INFO_* bits

    @classmethod
    def allocate(cls, n: int) -> Packets:
        dt = {
            "src_mac": np.uint64, "dst_mac": np.uint64, "vlan": np.uint16, "l3": np.uint8, "err": np.uint8,
            "src_hi": np.uint64, "src_lo": np.uint64, "dst_hi": np.uint64, "dst_lo": np.uint64,
            "proto": np.uint8, "sport": np.int32, "dport": np.int32, "tcp_flags": np.uint8, "frag": np.uint8,
            "frag_id": np.uint32, "payload": np.int32, "ttl": np.uint8, "ip_id": np.uint16,
            "tcp_seq": np.uint32, "tcp_win": np.uint16, "info": np.uint8,
        }
        return cls(**{k: np.zeros(n, v) for k, v in dt.items()})

    def view(self, n: int) -> Packets:
        return Packets(*(getattr(self, f.name)[:n] for f in fields(self)))


@nb.njit(cache=True, inline="always")
def _be16(b, p):  # type: ignore[no-untyped-def]
    return (np.int64(b[p]) << 8) | np.int64(b[p + 1])


@nb.njit(cache=True, inline="always")
def _be32(b, p):  # type: ignore[no-untyped-def]
    return (np.int64(b[p]) << 24) | (np.int64(b[p + 1]) << 16) | (np.int64(b[p + 2]) << 8) | np.int64(b[p + 3])


@nb.njit(cache=True, inline="always")
def _be64(b, p):  # type: ignore[no-untyped-def]
    return np.uint64((np.uint64(_be32(b, p)) << np.uint64(32)) | np.uint64(_be32(b, p + 4)))


@nb.njit(cache=True, inline="always")
def _mac(b, p):  # type: ignore[no-untyped-def]
    return np.uint64((np.uint64(_be16(b, p)) << np.uint64(32)) | np.uint64(_be32(b, p + 2)))


@nb.njit(cache=True)
def _transport(b, i, p, end, proto, l4len, out_sport, out_dport, out_flags, out_payload, out_seq, out_win, out_info, out_err):  # type: ignore[no-untyped-def]
    """Decode TCP/UDP/ICMP at b[p:end]; l4len is the transport length the IP header announces."""
    avail = end - p
    if proto == 6:
        if avail < 4:
            out_err[i] = 3
            return
        out_sport[i] = _be16(b, p)
        out_dport[i] = _be16(b, p + 2)
        if avail >= 16:
            out_seq[i] = _be32(b, p + 4)
            doff = (np.int64(b[p + 12]) >> 4) * 4
            out_flags[i] = b[p + 13]
            out_win[i] = _be16(b, p + 14)
            pl = l4len - doff
            out_payload[i] = pl if pl > 0 else 0
        else:
            out_err[i] = 3
    elif proto == 17 or proto == 136:  # UDP, UDP-Lite
        if avail < 4:
            out_err[i] = 3
            return
        sp = _be16(b, p)
        dp = _be16(b, p + 2)
        out_sport[i] = sp
        out_dport[i] = dp
        pl = l4len - 8
        out_payload[i] = pl if pl > 0 else 0
        if dp == 53 and avail >= 11 and (b[p + 10] & 0x80) == 0:
            out_info[i] |= 1
    elif proto == 1 or proto == 58:
        if avail < 2:
            out_err[i] = 3
            return
        out_sport[i] = b[p]
        out_dport[i] = b[p + 1]
        pl = l4len - 8
        out_payload[i] = pl if pl > 0 else 0
    elif proto == 132:  # SCTP: ports like TCP/UDP
        if avail < 4:
            out_err[i] = 3
            return
        out_sport[i] = _be16(b, p)
        out_dport[i] = _be16(b, p + 2)
        pl = l4len - 12
        out_payload[i] = pl if pl > 0 else 0
    else:
        out_payload[i] = l4len if l4len > 0 else 0


@nb.njit(cache=True)
def _ip(buf, i, p, end, etype, off, caplen, l3, err, src_hi, src_lo, dst_hi, dst_lo, proto, sport, dport,  # type: ignore[no-untyped-def]
        tcp_flags, frag, frag_id, payload, ttl, ip_id, tcp_seq, tcp_win, info):
    """Decode one IPv4/IPv6 header at buf[p:end] and what it carries. Returns (0, p) when done,
    or (ethertype, offset) of an encapsulated IP packet (IP-in-IP, 6in4) to decode next."""
    mapped = np.uint64(0xFFFF00000000)
    if etype == 0x0800:
        l3[i] = 4
        if end - p < 20 or (buf[p] >> 4) != 4:
            err[i] = 2
            return 0, p
        ihl = np.int64(buf[p] & 0x0F) * 4
        total = _be16(buf, p + 2)
        if ihl < 20 or end - p < ihl:
            err[i] = 2
            return 0, p
        if total < ihl:  # TSO/zero length: trust what was captured
            total = np.int64(caplen[i]) - (p - off[i])
        ip_id[i] = _be16(buf, p + 4)
        fo = _be16(buf, p + 6)
        ttl[i] = buf[p + 8]
        pr = np.int64(buf[p + 9])
        proto[i] = pr
        src_lo[i] = mapped | np.uint64(_be32(buf, p + 12))
        dst_lo[i] = mapped | np.uint64(_be32(buf, p + 16))
        offset = (fo & 0x1FFF) * 8
        more = (fo & 0x2000) != 0
        l4len = total - ihl
        if offset != 0:
            frag[i] = 2
            frag_id[i] = ip_id[i]
            payload[i] = l4len if l4len > 0 else 0
            return 0, p
        if more:
            frag[i] = 1
            frag_id[i] = ip_id[i]
        elif pr == 4 or pr == 41:  # IP-in-IP, 6in4/6rd: the inner packet makes the flow
            return (0x0800 if pr == 4 else 0x86DD), p + ihl
        lim = p + total if p + total < end else end
        _transport(buf, i, p + ihl, lim, pr, l4len, sport, dport, tcp_flags, payload, tcp_seq, tcp_win, info, err)
    elif etype == 0x86DD:
        l3[i] = 6
        if end - p < 40 or (buf[p] >> 4) != 6:
            err[i] = 2
            return 0, p
        plen = _be16(buf, p + 4)
        nh = np.int64(buf[p + 6])
        ttl[i] = buf[p + 7]
        src_hi[i] = _be64(buf, p + 8)
        src_lo[i] = _be64(buf, p + 16)
        dst_hi[i] = _be64(buf, p + 24)
        dst_lo[i] = _be64(buf, p + 32)
        q = p + 40
        l4len = plen
        later = False
        bad = False
        for _ in range(12):  # extension header chain
            if nh == 0 or nh == 43 or nh == 60 or nh == 135 or nh == 139 or nh == 140 or nh == 253 or nh == 254:
                if end - q < 2:
                    bad = True
                    break
                hl = (np.int64(buf[q + 1]) + 1) * 8
                nh = np.int64(buf[q])
                q += hl
                l4len -= hl
            elif nh == 44:
                if end - q < 8:
                    bad = True
                    break
                fo = _be16(buf, q + 2)
                frag_id[i] = _be32(buf, q + 4)
                if (fo & 0xFFF8) != 0:
                    later = True
                    frag[i] = 2
                elif fo & 1:
                    frag[i] = 1
                nh = np.int64(buf[q])
                q += 8
                l4len -= 8
                if later:
                    break
            elif nh == 51:
                if end - q < 2:
                    bad = True
                    break
                hl = (np.int64(buf[q + 1]) + 2) * 4
                nh = np.int64(buf[q])
                q += hl
                l4len -= hl
            else:
                break
        proto[i] = nh
        if bad or q > end:
            err[i] = 2
            return 0, p
        if later:
            payload[i] = l4len if l4len > 0 else 0
            return 0, p
        if nh == 59:
            return 0, p
        if (nh == 4 or nh == 41) and frag[i] == 0:
            return (0x0800 if nh == 4 else 0x86DD), q
        lim = p + 40 + plen if p + 40 + plen < end and plen > 0 else end
        _transport(buf, i, q, lim, nh, l4len, sport, dport, tcp_flags, payload, tcp_seq, tcp_win, info, err)
    return 0, p


@nb.njit(cache=True)
def decode_batch(buf, off, caplen, linktype,  # type: ignore[no-untyped-def]
                 src_mac, dst_mac, vlan, l3, err, src_hi, src_lo, dst_hi, dst_lo, proto, sport, dport,
                 tcp_flags, frag, frag_id, payload, ttl, ip_id, tcp_seq, tcp_win, info):
    n = off.shape[0]
    no_mac = np.uint64(1 << 63)
    mapped = np.uint64(0xFFFF00000000)
    for i in range(n):
        p = off[i]
        end = p + caplen[i]
        lt = linktype[i]
        src_mac[i] = no_mac
        dst_mac[i] = no_mac
        vlan[i] = 0
        l3[i] = 0
        err[i] = 0
        src_hi[i] = 0
        src_lo[i] = 0
        dst_hi[i] = 0
        dst_lo[i] = 0
        proto[i] = 0
        sport[i] = 0
        dport[i] = 0
        tcp_flags[i] = 0
        frag[i] = 0
        frag_id[i] = 0
        payload[i] = 0
        ttl[i] = 0
        ip_id[i] = 0
        tcp_seq[i] = 0
        tcp_win[i] = 0
        info[i] = 0
        etype = -1  # -1: version from the IP header itself
        # ---- link layer
        if lt == 1:
            if end - p < 14:
                err[i] = 1
                continue
            dst_mac[i] = _mac(buf, p)
            src_mac[i] = _mac(buf, p + 6)
            etype = _be16(buf, p + 12)
            p += 14
            tags = 0
            while (etype == 0x8100 or etype == 0x88A8 or etype == 0x9100) and tags < 4:
                if end - p < 4:
                    err[i] = 1
                    break
                if tags == 0:
                    vlan[i] = _be16(buf, p) & 0x0FFF
                etype = _be16(buf, p + 2)
                p += 4
                tags += 1
            if err[i]:
                continue
            if etype == 0x8864:  # PPPoE session: 6-byte header + 2-byte PPP protocol
                if end - p < 8:
                    err[i] = 1
                    continue
                ppp = _be16(buf, p + 6)
                p += 8
                etype = 0x0800 if ppp == 0x0021 else (0x86DD if ppp == 0x0057 else 0)
        elif lt == 113:
            if end - p < 16:
                err[i] = 1
                continue
            etype = _be16(buf, p + 14)
            p += 16
        elif lt == 276:
            if end - p < 20:
                err[i] = 1
                continue
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
                err[i] = 1
                continue
            fam = _be32(buf, p) if lt == 108 else -1
            if lt == 0:
                # host byte order of the capturing machine: accept either
                a = np.int64(buf[p])
                z = np.int64(buf[p + 3])
                fam = a if a != 0 else z
            p += 4
            etype = 0x0800 if fam == 2 else (0x86DD if (fam == 24 or fam == 28 or fam == 30) else 0)
        else:
            err[i] = 1
            continue
        if etype == -1:
            if end - p < 1:
                err[i] = 2
                continue
            v = buf[p] >> 4
            etype = 0x0800 if v == 4 else (0x86DD if v == 6 else 0)
            if etype == 0:
                err[i] = 2
                continue
        # ---- network layer
        for _depth in range(3):
            if etype != 0x0800 and etype != 0x86DD:
                break
            if _depth:  # an inner packet: its own header fields replace the outer ones
                src_hi[i] = 0
                dst_hi[i] = 0
                frag[i] = 0
                frag_id[i] = 0
            etype, p = _ip(buf, i, p, end, etype, off, caplen, l3, err, src_hi, src_lo, dst_hi, dst_lo, proto, sport,
                           dport, tcp_flags, frag, frag_id, payload, ttl, ip_id, tcp_seq, tcp_win, info)
        if l3[i] == 4 or l3[i] == 6:
            continue
        if etype == 0x0806:
            l3[i] = 1
            # ARP for IPv4 over Ethernet: htype 1, ptype 0x0800, hlen 6, plen 4
            if end - p < 28:
                err[i] = 2
                continue
            op = _be16(buf, p + 6)
            sport[i] = op
            if _be16(buf, p + 2) == 0x0800 and buf[p + 4] == 6 and buf[p + 5] == 4:
                src_lo[i] = mapped | np.uint64(_be32(buf, p + 14))
                dst_lo[i] = mapped | np.uint64(_be32(buf, p + 24))
            if op == 1:
                info[i] |= 2
            elif op == 2:
                info[i] |= 4
        else:
            l3[i] = 2


def decode(batch: PacketBatch, out: Packets) -> Packets:
    """Decode ``batch`` into the preallocated ``out`` columns and return a view of its rows."""
    n = len(batch)
    v = out.view(n)
    decode_batch(batch.buf, batch.off, batch.caplen, batch.linktype, *(getattr(v, f.name) for f in fields(v)))
    return v
