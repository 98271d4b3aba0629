"""conn.log rows → the packets they summarise → the ordinary pipeline.

A conn.log has no packets, but each row says how many each side sent, how many IP and payload
bytes, over which time span, and in which order the handshake, data and teardown happened (the
``history`` letters). The replay rebuilds, per row, a packet sequence consistent with all of
that (compiled, no Python per row or per packet): the history's opening letters (S, h, A, a, Q,
and each side's first data packet D/d) first, in their order, at most 1 ms apart; its closing
letters (F, f, R, r, I) last; the remaining packets of each side spread evenly over the
connection's duration, sharing its payload and IP bytes. The first packet is at the row's
``ts``, the last near ``ts + duration``; no two packets of a connection are more than 100 s
apart (under the flow table's idle timeout), so a sparse long connection is compressed in time
rather than split. Rows without packet counts (Zeek's ``use_conn_size_analyzer`` off) get one
packet per history letter or per 1,460 payload bytes, with 40-byte headers. The decoded packets
then go through the same flow table, device windows, detector and inventory as a capture's, so
``analyze`` on a conn.log gives the same kinds of results with the same code.

What cannot be rebuilt is documented in docs/zeek.md: MAC addresses (devices are IP addresses,
as for captures without Ethernet), payloads (no DNS names, banners, TLS or HTTP fingerprints),
sequence numbers (no Mirai seq=address signature), packet sizes and times inside a connection
(evenly spread instead), and Zeek's port-based role flips.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._jit import allocating, inline_kernel
from ..addrs import parse_ips
from ..decode import PKT_DTYPE, Packets

MS = 1_000_000
#: the longest gap left between two rebuilt packets of a connection, under the flow table's idle timeout
MAX_GAP_NS = 100 * 1_000_000_000
#: rows expanded at a time (their packets are sorted and handed over in time order)
ROWS_PER_STEP = 1 << 15


@inline_kernel
def _push(sides, flags, n, d, f):  # type: ignore[no-untyped-def]
    """Append a packet (its side, its flags) to an opening or closing list of n; returns n + 1."""
    sides[n] = d
    flags[n] = f
    return n + 1


@allocating
def _expand(start, span, proto, v6, o_hi, o_lo, r_hi, r_lo, o_p, r_p, pk, ipb, pl, hdata, hoff,
            out, ts, wl, row, seq):  # type: ignore[no-untyped-def]
    """Rebuild every row's packets into ``out`` (PKT_DTYPE), with times, wire lengths (IP bytes),
    row and sequence numbers. Returns the number of packets written."""
    q = 0
    od = np.zeros(64, np.int64)
    of = np.zeros(64, np.int64)
    cd = np.zeros(64, np.int64)
    cf = np.zeros(64, np.int64)
    no_mac = np.uint64(1 << 63)
    for i in range(start.shape[0]):
        pr = proto[i]
        tcp = pr == 6
        n_open = 0
        n_close = 0
        has_d0 = False
        has_d1 = False
        has_a0 = False
        has_a1 = False
        letters0 = 0
        letters1 = 0
        first0 = 0
        first1 = 0
        if tcp:
            for k in range(hoff[i], hoff[i + 1]):
                c = np.int64(hdata[k])
                if 65 <= c <= 90:
                    d = 0
                    up = c
                elif 97 <= c <= 122:
                    d = 1
                    up = c - 32
                else:
                    continue
                f = -1
                closing = False
                if up == 83:  # S
                    f = 0x02
                elif up == 72:  # H
                    f = 0x12
                elif up == 65:  # A
                    f = 0x10
                    if d == 0:
                        has_a0 = True
                    else:
                        has_a1 = True
                elif up == 68:  # D: the side's first data packet, in its place; the others spread out
                    if (has_d0 if d == 0 else has_d1) or n_open >= 64:
                        continue
                    if d == 0:
                        has_d0 = True
                    else:
                        has_d1 = True
                    n_open = _push(od, of, n_open, d, -2)
                    continue
                elif up == 70:  # F
                    f = 0x11
                    closing = True
                elif up == 82:  # R
                    f = 0x04
                    if d == 1 or has_a0 or has_d0:
                        f = 0x14
                    closing = True
                elif up == 81:  # Q
                    f = 0x03
                elif up == 73:  # I
                    f = 0x05
                    closing = True
                if f < 0:
                    continue
                if (n_close if closing else n_open) >= 64:
                    continue
                if closing:
                    n_close = _push(cd, cf, n_close, d, f)
                else:
                    n_open = _push(od, of, n_open, d, f)
                if d == 0:
                    letters0 += 1
                    if first0 == 0 and not closing:
                        first0 = f
                else:
                    letters1 += 1
                    if first1 == 0 and not closing:
                        first1 = f
        fill0 = pk[0, i] - letters0
        fill1 = pk[1, i] - letters1
        if fill0 < 0:
            fill0 = 0
        if fill1 < 0:
            fill1 = 0
        if has_d0 and fill0 == 0:
            fill0 = 1
        if has_d1 and fill1 == 0:
            fill1 = 1
        d_open = (1 if has_d0 else 0) + (1 if has_d1 else 0)  # data packets among the opening ones
        total = n_open - d_open + n_close + fill0 + fill1
        if total == 0:
            continue
        t0 = start[i]
        sp = span[i] if span[i] > 0 else 0
        eps = sp // (total + 1)
        if eps > MS:
            eps = MS
        a = t0 + n_open * eps
        b = t0 + sp - n_close * eps
        if b < a:
            b = a
        most = fill0 if fill0 > fill1 else fill1
        if b - a > MAX_GAP_NS * (most + 1):
            b = a + MAX_GAP_NS * (most + 1)
        if tcp:
            hdr = 60 if v6[i] else 40
        elif pr == 17 or pr == 1 or pr == 58:
            hdr = 48 if v6[i] else 28
        else:
            hdr = 40 if v6[i] else 20
        # filler flags
        ff0 = 0
        ff1 = 0
        if tcp:
            ff0 = 0x18 if has_d0 else (0x10 if has_a0 or first0 == 0 else first0)
            ff1 = 0x18 if has_d1 else (0x10 if has_a1 or first1 == 0 else first1)
        sent0 = 0  # packets of each side written so far
        sent1 = 0
        for part in range(4):  # opening letters, fillers of each side, closing letters
            skip = 0  # fillers already sent among the opening packets (a D letter)
            if part == 0:
                cnt = n_open
            elif part == 1:
                skip = 1 if has_d0 else 0
                cnt = fill0 - skip
            elif part == 2:
                skip = 1 if has_d1 else 0
                cnt = fill1 - skip
            else:
                cnt = n_close
            for j in range(cnt):
                fj = j + skip  # index among the side's fillers
                if part == 0:
                    d = od[j]
                    fl = of[j]
                    t = t0 + j * eps
                    filler = fl == -2
                    if filler:
                        fl = ff0 if d == 0 else ff1
                        fj = 0
                elif part == 3:
                    d = cd[j]
                    fl = cf[j]
                    t = b + j * eps
                    filler = False
                else:
                    d = part - 1
                    fl = ff0 if d == 0 else ff1
                    # from the first to the last instant left between the opening and closing
                    # packets: a lone packet of the originator at the start, of the responder at the end
                    if cnt > 1:
                        t = a + j * (b - a) // (cnt - 1)
                    else:
                        t = a if d == 0 else b
                    filler = True
                nf = fill0 if d == 0 else fill1
                nl = letters0 if d == 0 else letters1
                k = sent0 if d == 0 else sent1
                if d == 0:
                    sent0 += 1
                else:
                    sent1 += 1
                ip_total = ipb[d, i]
                rest = ip_total - nl * hdr
                if nf > 0 and rest >= nf * hdr:
                    if filler:
                        ln = rest // nf + (1 if fj < rest % nf else 0)
                    else:
                        ln = hdr
                else:  # sizes that do not add up: an even split
                    allp = nf + nl
                    ln = ip_total // allp + (1 if k < ip_total % allp else 0) if allp > 0 else hdr
                payload = 0
                if filler and nf > 0:
                    payload = pl[d, i] // nf + (1 if fj < pl[d, i] % nf else 0)
                    if payload > ln - hdr:
                        payload = ln - hdr if ln > hdr else 0
                r = out[q]
                r.src_mac = no_mac
                r.dst_mac = no_mac
                if d == 0:  # the originator's packet
                    r.src_hi, r.src_lo, r.dst_hi, r.dst_lo = o_hi[i], o_lo[i], r_hi[i], r_lo[i]
                    r.sport, r.dport = o_p[i], r_p[i]
                else:
                    r.src_hi, r.src_lo, r.dst_hi, r.dst_lo = r_hi[i], r_lo[i], o_hi[i], o_lo[i]
                    r.sport, r.dport = r_p[i], o_p[i]
                    if pr == 1 or pr == 58:  # ICMP: the reply's type, the same code
                        it = o_p[i]
                        r.sport = 0 if it == 8 else (129 if it == 128 else (14 if it == 13 else it))
                        r.dport = r_p[i]
                r.tcp_seq = 0
                r.frag_id = 0
                r.payload = payload
                r.ip_len = ln
                r.vlan = 0
                r.ip_id = 0
                r.tcp_win = 0
                r.l3_off = 0
                r.l3 = 6 if v6[i] else 4
                r.err = 0
                r.proto = pr
                r.tcp_flags = fl if tcp else 0
                r.frag = 0
                r.ttl = 64
                r.info = 1 if (pr == 17 and d == 0 and r_p[i] == 53) else 0
                ts[q] = t
                wl[q] = ln
                row[q] = i
                seq[q] = q
                q += 1
    return q


@dataclass(slots=True)
class Connections:
    """conn.log rows as the arrays the replay needs (sorted by start time)."""

    start: np.ndarray
    span: np.ndarray
    proto: np.ndarray
    v6: np.ndarray
    o_hi: np.ndarray
    o_lo: np.ndarray
    r_hi: np.ndarray
    r_lo: np.ndarray
    o_p: np.ndarray
    r_p: np.ndarray
    pk: np.ndarray
    ipb: np.ndarray
    pl: np.ndarray
    history: pa.Array
    file_index: np.ndarray

    def __len__(self) -> int:
        return len(self.start)


def _count(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, 0).to_numpy(zero_copy_only=False), np.int64).clip(0)


def connections(table: pa.Table) -> tuple[Connections, np.ndarray]:
    """A :func:`~iotwatch.zeek.read.read_conn_log` table (plus ``file_index``) → replay arrays,
    sorted by start time; and the mask of rows kept (addresses that parse, one family per row)."""
    ok_o, v6_o, o_hi, o_lo = parse_ips(table["orig_h"].combine_chunks())
    ok_r, v6_r, r_hi, r_lo = parse_ips(table["resp_h"].combine_chunks())
    keep = ok_o & ok_r & (v6_o == v6_r)
    name = table["proto"].combine_chunks().to_numpy(zero_copy_only=False)
    ip_proto = np.asarray(pc.fill_null(table["ip_proto"], 0).to_numpy(zero_copy_only=False), np.int64) \
        if "ip_proto" in table.column_names else np.zeros(len(name), np.int64)
    proto = np.where(name == "tcp", 6, np.where(name == "udp", 17, np.where(name == "icmp", np.where(v6_o, 58, 1),
                                                                         ip_proto & 0xFF))).astype(np.uint8)
    hist = pc.fill_null(table["history"].combine_chunks(), "")
    # packets and IP bytes where the log has none (use_conn_size_analyzer off): one packet per
    # history letter of the side, or per 1,460 payload bytes, and headers of 40 bytes
    bytes_o, bytes_r = _count(table["orig_bytes"]), _count(table["resp_bytes"])
    upper = pc.utf8_length(pc.replace_substring_regex(hist, "[^SHADFRQI]", "")).to_numpy(zero_copy_only=False)
    lower = pc.utf8_length(pc.replace_substring_regex(hist, "[^shadfrqi]", "")).to_numpy(zero_copy_only=False)
    pk_o = np.where(table["orig_pkts"].is_null().to_numpy(zero_copy_only=False),
                    np.maximum(np.maximum(upper, 1), -(-bytes_o // 1460)), _count(table["orig_pkts"]))
    pk_r = np.where(table["resp_pkts"].is_null().to_numpy(zero_copy_only=False),
                    np.maximum(lower, -(-bytes_r // 1460)), _count(table["resp_pkts"]))
    pk_o = np.maximum(pk_o, 1)  # the originator sent the connection's first packet
    ipb_o = np.where(table["orig_ip_bytes"].is_null().to_numpy(zero_copy_only=False), bytes_o + 40 * pk_o,
                     _count(table["orig_ip_bytes"]))
    ipb_r = np.where(table["resp_ip_bytes"].is_null().to_numpy(zero_copy_only=False), bytes_r + 40 * pk_r,
                     _count(table["resp_ip_bytes"]))
    ts = table["ts"].to_numpy()
    dur = pc.fill_null(table["duration"], 0.0).to_numpy()
    start = np.round(ts * 1e9).astype(np.int64)
    span = np.round(np.clip(dur, 0, None) * 1e9).astype(np.int64)
    fidx = table["file_index"].to_numpy() if "file_index" in table.column_names else np.zeros(len(ts), np.int64)
    order = np.flatnonzero(keep)
    order = order[np.argsort(start[order], kind="stable")]
    c = Connections(start[order], span[order], proto[order], v6_o[order], o_hi[order], o_lo[order], r_hi[order],
                    r_lo[order], table["orig_p"].to_numpy()[order].astype(np.int64),
                    table["resp_p"].to_numpy()[order].astype(np.int64),
                    np.ascontiguousarray(np.stack([pk_o, pk_r])[:, order]),
                    np.ascontiguousarray(np.stack([ipb_o, ipb_r])[:, order]),
                    np.ascontiguousarray(np.stack([bytes_o, bytes_r])[:, order]),
                    hist.take(pa.array(order)), np.asarray(fidx)[order])
    return c, keep


def _history_buffers(h: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    h = h.cast(pa.string())
    n = len(h)
    bufs = h.buffers()
    offsets = np.frombuffer(bufs[1], np.int32, n + 1, h.offset * 4).astype(np.int64) if n else np.zeros(1, np.int64)
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None and bufs[2].size else np.zeros(1, np.uint8)
    return data, offsets


@dataclass(slots=True)
class PacketChunk:
    """Rebuilt packets in time order: decoded records, times, wire lengths (IP bytes), the file
    each came from, and the connection (index into :class:`Connections`) each belongs to."""

    packets: Packets
    ts_ns: np.ndarray
    wirelen: np.ndarray
    file_index: np.ndarray
    conn: np.ndarray


def packets(c: Connections, rows_per_step: int = ROWS_PER_STEP) -> Iterator[PacketChunk]:
    """Every connection's packets, in time order, a step of rows at a time: a step's packets
    that fall after the next step's first connection wait and are merged with it."""
    n = len(c)
    held: PacketChunk | None = None
    for s in range(0, n, rows_per_step):
        e = min(n, s + rows_per_step)
        sl = slice(s, e)
        data, offs = _history_buffers(c.history.slice(s, e - s))
        bound = int(c.pk[:, sl].sum() + (offs[-1] - offs[0]) + 2 * (e - s))
        out = np.zeros(bound, PKT_DTYPE)
        ts = np.empty(bound, np.int64)
        wl = np.empty(bound, np.uint32)
        row = np.empty(bound, np.int64)
        seq = np.empty(bound, np.int64)
        m = _expand(c.start[sl], c.span[sl], c.proto[sl], c.v6[sl], c.o_hi[sl], c.o_lo[sl], c.r_hi[sl], c.r_lo[sl],
                    c.o_p[sl], c.r_p[sl], np.ascontiguousarray(c.pk[:, sl]), np.ascontiguousarray(c.ipb[:, sl]),
                    np.ascontiguousarray(c.pl[:, sl]), data, offs, out, ts, wl, row, seq)
        chunk = PacketChunk(Packets(out[:m]), ts[:m], wl[:m], c.file_index[s:e][row[:m]], row[:m] + s)
        if held is not None:
            chunk = _concat(held, chunk)
        order = np.lexsort((np.arange(len(chunk.ts_ns)), chunk.conn, chunk.ts_ns))
        chunk = _take(chunk, order)
        limit = int(c.start[e]) if e < n else None
        if limit is None:
            held = None
            yield chunk
        else:
            cut = int(np.searchsorted(chunk.ts_ns, limit, side="left"))
            held = _take(chunk, np.arange(cut, len(chunk.ts_ns)))
            if cut:
                yield _take(chunk, np.arange(cut))
    if held is not None and len(held.ts_ns):
        yield held


def _take(ch: PacketChunk, idx: np.ndarray) -> PacketChunk:
    return PacketChunk(Packets(ch.packets.rec[idx]), ch.ts_ns[idx], ch.wirelen[idx], ch.file_index[idx], ch.conn[idx])


def _concat(a: PacketChunk, b: PacketChunk) -> PacketChunk:
    return PacketChunk(Packets(np.concatenate([a.packets.rec, b.packets.rec])), np.concatenate([a.ts_ns, b.ts_ns]),
                       np.concatenate([a.wirelen, b.wirelen]), np.concatenate([a.file_index, b.file_index]),
                       np.concatenate([a.conn, b.conn]))


__all__ = ["Connections", "PacketChunk", "connections", "packets"]
