"""Packets → bidirectional flows: a capped hash table with idle and active timeouts.

Flows are keyed by the unordered 5-tuple (addresses, ports, IP protocol; VLAN tags are not part
of the key, as in Wireshark's conversations and the Community ID). The side that sends the first
packet is the client ("toserver" direction).

Timeouts follow nfstream and Linux conntrack: a flow idle for ``idle_timeout`` (120 s) or alive
for ``active_timeout`` (1800 s) is exported and the next packet of the same 5-tuple starts a new
flow. Expiry is checked on each packet of the flow and by a sweep every ``sweep_interval`` seconds
of capture time (at multiples of it: the first IP packet past each multiple triggers the sweep). When the table is full (``max_flows``), the least recently seen quarter is
evicted and counted; under a flood the table never grows past its cap.

The table is a numpy structured array walked by compiled loops; the packet loop stops and hands
control back to Python when a sweep is due, the table is full or the export buffer is full.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ._jit import inline_kernel, kernel
from .addrs import format_ips, format_macs
from .communityid import community_ids
from .decode import Packets
from .records import FLOW_SCHEMA, TCP_FLAGS
from .settings import DEFAULT_MAX_FLOWS

# reason codes (order matches REASONS)
R_NONE, R_IDLE, R_ACTIVE, R_END, R_EVICTED = 0, 1, 2, 3, 4
REASONS = np.array(["", "idle", "active", "end", "evicted"], dtype=object)
# state bits
S_SYN, S_SYNACK, S_EST, S_RST, S_FIN_C, S_FIN_S, S_REJECTED = 1, 2, 4, 8, 16, 32, 64
# Zeek's TCP endpoint states (TCP_ENDPOINT_*), for conn_state
Z_INACTIVE, Z_SYN_SENT, Z_SYN_ACK_SENT, Z_PARTIAL, Z_ESTABLISHED, Z_CLOSED, Z_RESET = range(7)
# Zeek's history letters, by code (upper case from the originator, lower case from the responder)
HISTORY_LETTERS = "SHADFRQI"
H_SYN, H_SYNACK, H_ACK, H_DATA, H_FIN, H_RST, H_MULTI, H_FINRST = range(8)
#: a TCP flow's public state (flows.parquet ``state``, in this order): the one decoding of the
#: state bits, for the public columns, the inventory's traffic profile and anyone else
STATES = ("midstream", "syn_unanswered", "established", "rejected", "reset", "closed", "none")
STATE_MIDSTREAM, STATE_SYN_UNANSWERED, STATE_ESTABLISHED, STATE_REJECTED, STATE_RESET, STATE_CLOSED, STATE_NONE = range(7)
# packet-loop exit status
DONE, SWEEP_DUE, TABLE_FULL, EXPORT_FULL = 0, 1, 2, 3
FLOW_DTYPE = np.dtype([
    ("ahi", np.uint64), ("alo", np.uint64), ("bhi", np.uint64), ("blo", np.uint64),  # endpoints, A < B
    ("hash", np.uint64), ("flow_id", np.uint64),
    ("first", np.int64), ("last", np.int64), ("syn_win", np.int64),
    ("mac_c", np.uint64), ("mac_s", np.uint64),
    ("by", np.uint64, (2,)), ("pl", np.uint64, (2,)),  # [0] toserver, [1] toclient
    ("ipb", np.uint64, (2,)),  # IP bytes (the IP headers' lengths), as Zeek's orig_ip_bytes / resp_ip_bytes
    ("zhist", np.uint64),  # Zeek history letters in order of first appearance: 4 bits each (see zeek_history)
    ("pk", np.uint32, (2,)),
    ("fl", np.uint32, (12,)),  # TCP flag counts: [direction * 6 + k], k in TCP_FLAGS order (syn ack fin rst psh urg)
    ("aport", np.uint16), ("bport", np.uint16), ("vlan", np.uint16), ("icmp_tc", np.uint16),
    ("zseen", np.uint16),  # Zeek history letters seen: bit code + 8 * direction
    ("zst", np.uint16),  # Zeek's TCP endpoint states: client state, its previous, server state, its previous (3 bits each)
    ("proto", np.uint8), ("v6", np.uint8), ("client_a", np.uint8), ("state", np.uint8),
    ("answered", np.uint8), ("reason", np.uint8),
    # the flow's last data packet, seconds after its first packet; -1: none yet, and then the
    # exchange fields below are not set (a new flow writes only this one, in a cache line it
    # writes anyway: a flood of new flows pays nothing for them)
    ("plast", np.float32),
    ("frame", np.int64),  # first packet: file index << 40 | 1-based frame number in that file
    # exchanges ("pushes"): a side's data packet that comes PUSH_IDLE_S or more after the flow's
    # previous data packet (either side) starts an exchange; per side: how many it started, when its
    # last one started, the sum and sum of squares of the seconds between its consecutive ones, and
    # the payload it sent within the exchanges it started
    ("xb", np.uint64, (2,)),
    # (times in seconds since the flow's first packet)
    ("xprev", np.float32, (2,)),
    # the side's cadence: its exchanges that came one beat (the reference interval ``xref``, within
    # BEAT_TOLERANCE; or a whole number of beats when some were skipped) after the last such
    # exchange (``xanc``); ``xref`` is negated while no beat has confirmed it (see _beat)
    ("xanc", np.float32, (2,)),
    ("xg1", np.float32, (2,)), ("xg2", np.float32, (2,)), ("xref", np.float32, (2,)),  # seconds, s²
    ("xn", np.uint32, (2,)), ("xbeat", np.uint32, (2,)),
    ("xside", np.uint8),  # the side that started the current exchange
], align=True)

#: a data packet this long after the flow's previous one starts a new exchange (a heartbeat, a
#: poll, a command): shorter pauses are the same conversation going on
PUSH_IDLE_S = 1.0
#: an exchange that comes within this share of the side's reference interval after its last beat
#: is on the beat (its clock); one that comes sooner is an extra exchange between two beats
BEAT_TOLERANCE = 0.1
#: an exchange a whole number of reference intervals after the last beat is on the beat, with up
#: to this many beats skipped in between (a status message not sent, a heartbeat lost)
MAX_SKIPPED = 7

# per-table counters in FlowTable.st
ST_USED, ST_NEXT_ID, ST_EVICTED, ST_FRAG_MISSING, ST_EXPORTED, ST_CREATED = range(6)




@dataclass(slots=True)
class FlowSettings:
    idle_timeout: float = 120.0
    active_timeout: float = 1800.0
    max_flows: int = DEFAULT_MAX_FLOWS
    sweep_interval: float = 10.0
    export_buffer: int = 1 << 13
    drain_at: int = 1 << 12  # finished flows are converted in groups of at least this many


@dataclass(slots=True)
class PacketFlowInfo:
    """What the flow table tells the later stages about each packet of a batch."""

    flow_id: np.ndarray  # uint64, 0 = not part of a flow (non-IP)
    direction: np.ndarray  # uint8, 0 client→server, 1 server→client
    new: np.ndarray  # uint8 bits: 1 this packet started its flow, 2 it carries the first payload of its direction
    answered_window: np.ndarray  # int64, window of a SYN this packet answers (SYN-ACK/RST), else -1
    answer_kind: np.ndarray  # uint8, 1 SYN-ACK, 2 RST

    @classmethod
    def allocate(cls, n: int) -> PacketFlowInfo:
        return cls(np.zeros(n, np.uint64), np.zeros(n, np.uint8), np.zeros(n, np.uint8),
                   np.zeros(n, np.int64), np.zeros(n, np.uint8))


@inline_kernel
def _mix(h, v):  # type: ignore[no-untyped-def]
    h = (h ^ v) * np.uint64(0x9E3779B97F4A7C15)
    return h ^ (h >> np.uint64(31))


@inline_kernel
def frag_recall(saved):  # type: ignore[no-untyped-def]
    """The protocol and ports a datagram's first fragment left (``(proto << 32) | (sport << 16) |
    dport``) for its later fragments."""
    return saved >> 32, (saved >> 16) & 0xFFFF, saved & 0xFFFF


@inline_kernel
def flow_key(pr, v6, shi, slo, dhi, dlo, sp, dp):  # type: ignore[no-untyped-def]
    """A packet's 5-tuple in canonical order (the lower address, then port, is side a), whether
    its source is side a, and the tuple's hash."""
    src_is_a = (shi < dhi) or (shi == dhi and slo < dlo) or (shi == dhi and slo == dlo and sp <= dp)
    if src_is_a:
        ahi, alo, bhi, blo, ap, bp = shi, slo, dhi, dlo, sp, dp
    else:
        ahi, alo, bhi, blo, ap, bp = dhi, dlo, shi, slo, dp, sp
    h = _mix(_mix(_mix(_mix(_mix(np.uint64(pr | (np.int64(v6) << 8)), ahi), alo), bhi), blo),
             np.uint64((ap << 16) | bp))
    return src_is_a, ahi, alo, bhi, blo, ap, bp, h


@inline_kernel
def _zeek_set(zst, side, new):  # type: ignore[no-untyped-def]
    """Zeek's Endpoint::SetState: side 0 client, 1 server; the old state becomes the previous one."""
    sh = side * 6
    old = (zst >> sh) & 7
    return (zst & ~(0x3F << sh)) | (new << sh) | (old << (sh + 3))


@inline_kernel
def _zeek_step(zst, d, flags, plen):  # type: ignore[no-untyped-def]
    """One TCP packet through Zeek's endpoint state machine (TCP_Analyzer::UpdateStateMachine:
    UpdateInactiveState, UpdateSYN_SentState, UpdateEstablishedState, UpdateClosedState).
    ``d``: 0 the packet is the client's, 1 the server's. Returns the new packed states."""
    p = 1 - d
    ep = (zst >> (d * 6)) & 7
    pe = (zst >> (p * 6)) & 7
    syn = (flags & 2) != 0
    ack = (flags & 16) != 0
    fin = (flags & 1) != 0
    rst = (flags & 4) != 0
    if ep == Z_INACTIVE:
        orig = zst & 7
        if syn:
            if d == 0:
                zst = _zeek_set(zst, 0, Z_SYN_ACK_SENT if ack else Z_SYN_SENT)
            else:
                if pe == Z_SYN_SENT:
                    zst = _zeek_set(zst, p, Z_ESTABLISHED)
                zst = _zeek_set(zst, d, Z_ESTABLISHED)
        if fin:
            zst = _zeek_set(zst, d, Z_CLOSED)
        if rst:
            zst = _zeek_set(zst, d, Z_RESET)
        if (zst >> (d * 6)) & 7 == Z_INACTIVE:
            pe = (zst >> (p * 6)) & 7
            if d == 1 and plen == 0 and orig == Z_SYN_SENT:
                pass  # an ACK of the SYN before the SYN-ACK: not a partial connection
            elif ack and pe == Z_ESTABLISHED:
                zst = _zeek_set(zst, d, Z_ESTABLISHED)
            else:
                zst = _zeek_set(zst, d, Z_PARTIAL)
    elif ep == Z_SYN_SENT or ep == Z_SYN_ACK_SENT:
        if fin:
            zst = _zeek_set(zst, d, Z_CLOSED)
        if rst:
            zst = _zeek_set(zst, d, Z_RESET)
    elif ep == Z_ESTABLISHED or ep == Z_PARTIAL:
        if syn and ep == Z_PARTIAL and pe == Z_INACTIVE and not ack:
            zst = _zeek_set(zst, d, Z_SYN_SENT)
        if fin and not rst:
            zst = _zeek_set(zst, d, Z_CLOSED)
            if pe == Z_RESET and ((zst >> (p * 6 + 3)) & 7) == Z_CLOSED:
                zst = _zeek_set(zst, p, Z_CLOSED)  # the peer's FIN then RST: a normal close
        if rst:
            zst = _zeek_set(zst, d, Z_RESET)
    elif ep == Z_CLOSED:
        if rst and pe != Z_CLOSED:
            zst = _zeek_set(zst, d, Z_RESET)
    return zst


@inline_kernel
def _zeek_letter(flags, plen):  # type: ignore[no-untyped-def]
    """The history letter code of a TCP packet (Zeek's update_history), -1 for none."""
    nb = (1 if flags & 2 else 0) + (1 if flags & 1 else 0) + (1 if flags & 4 else 0)
    if nb > 1:
        return H_FINRST if (flags & 5) == 5 else H_MULTI
    if nb == 1:
        if flags & 2:
            return H_SYNACK if flags & 16 else H_SYN
        if flags & 1:
            return H_FIN
        return H_RST
    if plen > 0:
        return H_DATA
    if flags & 16:
        return H_ACK
    return -1


@inline_kernel
def _zeek_add_letter(zseen, zhist, code, d):  # type: ignore[no-untyped-def]
    """Append a letter the first time it is seen in its direction; returns (zseen, zhist)."""
    bit = np.int64(1) << (code + 8 * d)
    if (zseen & bit) != 0:
        return zseen, zhist
    n = 0
    m = zseen
    while m:
        m &= m - 1
        n += 1
    return zseen | bit, zhist | (np.uint64(code | (d << 3)) << np.uint64(4 * n))


@inline_kernel
def _beat(f, d, rel):  # type: ignore[no-untyped-def]
    """Side ``d`` of flow record ``f`` starts an exchange ``rel`` s into the flow: keep its cadence.

    The side's reference interval ``xref`` is *tentative* (stored negated) until an exchange
    confirms it, *confirmed* after. An exchange one reference interval after the last beat (within
    BEAT_TOLERANCE) is a beat; when it confirms a tentative interval, the exchange the cadence
    started from is one too. Once the interval is confirmed, an exchange a whole number of
    intervals after the last beat (up to MAX_SKIPPED beats skipped, within twice BEAT_TOLERANCE of
    the interval) is a beat as well, and a sooner one is an extra exchange between beats (a message
    sent in two parts) that leaves the clock alone. A sooner one becomes the reference (the shorter
    cadence, tentative) while the interval is not confirmed. A later one that is no whole number of
    intervals starts the cadence over from itself, its gap a tentative reference: the next sooner
    exchange can take it back to the true beat, so a gap of missed beats never locks the clock onto
    a multiple of the period."""
    g = rel - f.xanc[d]
    x = f.xref[d]
    r = abs(x)
    if r > 0.0 and g < r * (1.0 - BEAT_TOLERANCE):
        if x < 0.0:
            f.xref[d] = -g
            f.xanc[d] = rel
        return
    k = np.floor(g / r + 0.5) if r > 0.0 else 0.0
    if k == 1.0 and g <= r * (1.0 + BEAT_TOLERANCE):
        f.xbeat[d] += 2 if x < 0.0 else 1
        f.xref[d] = r + (g - r) / 8.0
        f.xanc[d] = rel
    elif x > 0.0 and 2.0 <= k <= MAX_SKIPPED + 1 and abs(g - k * r) <= 2.0 * r * BEAT_TOLERANCE:
        f.xbeat[d] += 1
        f.xref[d] = r + (g / k - r) / 8.0
        f.xanc[d] = rel
    else:
        f.xref[d] = -g
        f.xanc[d] = rel


@kernel
def _insert(index, h, j):  # type: ignore[no-untyped-def]
    mask = index.shape[0] - 1
    s = np.int64(h & np.uint64(mask))
    while index[s] >= 0:
        s = (s + 1) & mask
    index[s] = j


@kernel
def process_packets(start, ts_ns, wirelen, l3, err, src_hi, src_lo, dst_hi, dst_lo, proto, sport, dport,  # type: ignore[no-untyped-def]
                    tcp_flags, frag, frag_id, payload, ip_len, src_mac, dst_mac, vlan,
                    tbl, index, st, exp, n_exp, frag_keys, frag_ports, frag_pend,
                    idle_ns, active_ns, window_ns, next_sweep_ns,
                    o_flow, o_dir, o_new, o_ans, o_kind, frame_base):
    """Account packets [start, n) to flows. Returns (next packet index, exported count, status)."""
    n = ts_ns.shape[0]
    cap = tbl.shape[0]
    exp_cap = exp.shape[0]
    mask = index.shape[0] - 1
    fmask = frag_keys.shape[0] - 1
    for i in range(start, n):
        o_flow[i] = 0
        o_dir[i] = 0
        o_new[i] = 0
        o_ans[i] = -1
        o_kind[i] = 0
        if (l3[i] != 4 and l3[i] != 6) or err[i] == 1 or err[i] == 2:
            continue
        ts = ts_ns[i]
        if ts >= next_sweep_ns:
            return i, n_exp, SWEEP_DUE
        if n_exp >= exp_cap:
            return i, n_exp, EXPORT_FULL
        pr = np.int64(proto[i])
        v6 = l3[i] == 6
        shi, slo, dhi, dlo = src_hi[i], src_lo[i], dst_hi[i], dst_lo[i]
        sp = np.int64(sport[i])
        dp = np.int64(dport[i])
        icmp_tc = 0
        if pr == 1 or pr == 58:
            icmp_tc = (sp << 8) | dp
            sp = 0
            dp = 0
        elif not (pr == 6 or pr == 17 or pr == 132 or pr == 136):
            sp = 0
            dp = 0
        fs = -1
        if frag[i] != 0:
            # IPv4 reassembles by (src, dst, protocol, id); IPv6 by (src, dst, id): a later IPv6
            # fragment's header names the first header of the fragmentable part, not the transport
            fh = _mix(_mix(_mix(_mix(_mix(np.uint64(0 if v6 else pr), shi), slo), dhi), dlo), np.uint64(frag_id[i]))
            fs = np.int64(fh & np.uint64(fmask))
            if frag[i] == 1:
                if frag_keys[fs] != fh:
                    frag_pend[fs, 0] = 0
                    frag_pend[fs, 1] = 0
                    frag_pend[fs, 2] = 0
                    frag_pend[fs, 3] = 0
                frag_keys[fs] = fh
                frag_ports[fs] = (pr << 32) | (sp << 16) | dp
            elif frag_keys[fs] == fh and frag_ports[fs] >= 0:
                pr, sp, dp = frag_recall(frag_ports[fs])
                fs = -1
            else:
                # a later fragment before the first one: park its counts until the first arrives
                if frag_keys[fs] != fh:
                    frag_keys[fs] = fh
                    frag_ports[fs] = -1
                    frag_pend[fs, 0] = 0
                    frag_pend[fs, 1] = 0
                    frag_pend[fs, 2] = 0
                    frag_pend[fs, 3] = 0
                frag_pend[fs, 0] += 1
                frag_pend[fs, 1] += wirelen[i]
                frag_pend[fs, 2] += payload[i]
                frag_pend[fs, 3] += ip_len[i]
                st[3] += 1
                continue
        src_is_a, ahi, alo, bhi, blo, ap, bp, h = flow_key(pr, v6, shi, slo, dhi, dlo, sp, dp)
        s = np.int64(h & np.uint64(mask))
        j = -1
        while index[s] >= 0:
            k = index[s]
            f = tbl[k]
            if (f.hash == h and f.alo == alo and f.blo == blo and f.ahi == ahi and f.bhi == bhi
                    and f.aport == ap and f.bport == bp and f.proto == pr and f.v6 == v6):
                j = k
                break
            s = (s + 1) & mask
        flags = np.int64(tcp_flags[i])
        is_new = False
        if j >= 0:
            f = tbl[j]
            reason = 0
            if ts - f.last > idle_ns:
                reason = R_IDLE
            elif ts - f.first > active_ns:
                reason = R_ACTIVE
            if reason:
                exp[n_exp] = tbl[j]
                exp[n_exp].reason = reason
                n_exp += 1
                is_new = True
        else:
            if st[0] >= cap:
                return i, n_exp, TABLE_FULL
            j = st[0]
            st[0] += 1
            _insert(index, h, j)
            is_new = True
        f = tbl[j]
        if is_new:
            f.ahi = ahi
            f.alo = alo
            f.bhi = bhi
            f.blo = blo
            f.aport = ap
            f.bport = bp
            f.proto = pr
            f.v6 = v6
            f.hash = h
            st[1] += 1
            st[5] += 1
            f.flow_id = st[1]
            f.first = ts
            f.client_a = src_is_a
            f.mac_c = src_mac[i]
            f.mac_s = dst_mac[i]
            f.vlan = vlan[i]
            f.icmp_tc = icmp_tc
            f.state = 0
            f.answered = 0
            f.reason = 0
            f.syn_win = -1
            f.frame = frame_base + i
            f.zhist = 0
            f.zseen = 0
            f.zst = 0
            f.plast = -1  # (the exchange fields are set at the first data packet)
            for q in range(2):
                f.pk[q] = 0
                f.by[q] = 0
                f.pl[q] = 0
                f.ipb[q] = 0
            for q in range(12):
                f.fl[q] = 0
            if pr == 6 and (flags & 0x12) == 0x02:
                f.syn_win = ts // window_ns
        d = 0 if src_is_a == (f.client_a == 1) else 1
        f.last = ts
        f.pk[d] += 1
        f.by[d] += wirelen[i]
        first_payload = payload[i] > 0 and f.pl[d] == 0
        f.pl[d] += payload[i]
        f.ipb[d] += ip_len[i]
        if payload[i] > 0:
            rel = (ts - f.first) * 1e-9
            if f.plast < 0:  # the flow's first data packet
                f.xn[0] = 0
                f.xn[1] = 0
            if f.plast < 0 or rel - f.plast >= PUSH_IDLE_S:  # this side starts an exchange
                if f.xn[d] > 0:
                    g = rel - f.xprev[d]
                    f.xg1[d] += g
                    f.xg2[d] += g * g
                    _beat(f, d, rel)
                else:
                    f.xanc[d] = rel
                    f.xg1[d] = 0.0
                    f.xg2[d] = 0.0
                    f.xref[d] = 0.0
                    f.xbeat[d] = 0
                    f.xb[d] = 0
                f.xn[d] += 1
                f.xprev[d] = rel
                f.xside = d
            if f.xside == d:
                f.xb[d] += payload[i]
            f.plast = rel
        if fs >= 0 and frag_pend[fs, 0] > 0:  # fragments that came before this first fragment
            f.pk[d] += frag_pend[fs, 0]
            f.by[d] += frag_pend[fs, 1]
            f.pl[d] += frag_pend[fs, 2]
            f.ipb[d] += frag_pend[fs, 3]
            st[3] -= frag_pend[fs, 0]
            frag_pend[fs, 0] = 0
            frag_pend[fs, 1] = 0
            frag_pend[fs, 2] = 0
            frag_pend[fs, 3] = 0
        if pr == 6:
            base = d * 6
            if flags & 2:
                f.fl[base] += 1
            if flags & 16:
                f.fl[base + 1] += 1
            if flags & 1:
                f.fl[base + 2] += 1
            if flags & 4:
                f.fl[base + 3] += 1
            if flags & 8:
                f.fl[base + 4] += 1
            if flags & 32:
                f.fl[base + 5] += 1
            stt = np.int64(f.state)
            if d == 0:
                if (flags & 0x12) == 0x02:
                    stt |= S_SYN
                elif (flags & 0x10) and (stt & 2):
                    stt |= S_EST
                if flags & 1:
                    stt |= S_FIN_C
            else:
                if (flags & 0x12) == 0x12:
                    stt |= S_SYNACK
                    if f.answered == 0 and f.syn_win >= 0:
                        o_ans[i] = f.syn_win
                        o_kind[i] = 1
                        f.answered = 1
                if flags & 1:
                    stt |= S_FIN_S
            if flags & 4:
                stt |= S_RST
                if d == 1 and (stt & 1) and not (stt & 2):
                    stt |= S_REJECTED
                    if f.answered == 0 and f.syn_win >= 0:
                        o_ans[i] = f.syn_win
                        o_kind[i] = 2
                        f.answered = 1
            f.state = stt
            # Zeek's history letter (once per letter and side) and endpoint states; most packets
            # are a side's further data or ACKs, which change neither
            code = _zeek_letter(flags, payload[i])
            if code >= 0 and (np.int64(f.zseen) >> (code + 8 * d)) & 1 == 0:
                f.zseen, f.zhist = _zeek_add_letter(np.int64(f.zseen), f.zhist, code, d)
            zst = np.int64(f.zst)
            if (flags & 7) != 0 or ((zst >> (d * 6)) & 7) == Z_INACTIVE:
                f.zst = _zeek_step(zst, d, flags, payload[i])
        o_flow[i] = f.flow_id
        o_dir[i] = d
        o_new[i] = (1 if is_new else 0) | (2 if first_payload else 0)
    return n, n_exp, DONE


@kernel
def sweep(tbl, st, start, now, idle_ns, active_ns, evict_before, flush_all, removed, exp, n_exp):  # type: ignore[no-untyped-def]
    """Export expired (or, with flush_all, all) flows from [start, used). Returns (next j, exported)."""
    used = st[0]
    cap = exp.shape[0]
    for j in range(start, used):
        if removed[j]:
            continue
        if n_exp >= cap:
            return j, n_exp
        f = tbl[j]
        r = 0
        if flush_all:
            r = R_END
        elif now - f.last > idle_ns:
            r = R_IDLE
        elif now - f.first > active_ns:
            r = R_ACTIVE
        elif f.last <= evict_before:
            r = R_EVICTED
            st[2] += 1
        if r:
            exp[n_exp] = tbl[j]
            exp[n_exp].reason = r
            n_exp += 1
            removed[j] = 1
    return used, n_exp


@kernel
def compact(tbl, st, removed, index):  # type: ignore[no-untyped-def]
    """Drop removed flows, keep the rest dense, rebuild the index."""
    used = st[0]
    w = 0
    for j in range(used):
        if removed[j]:
            removed[j] = 0
            continue
        if w != j:
            tbl[w] = tbl[j]
        w += 1
    st[0] = w
    index[:] = -1
    for j in range(w):
        _insert(index, tbl[j].hash, j)


class FlowTable:
    """The live flow table. Feed it decoded batches with :meth:`update`; it yields finished flows
    as pyarrow tables (schema :data:`iotwatch.records.FLOW_SCHEMA`)."""

    def __init__(self, settings: FlowSettings | None = None, window_s: float = 60.0) -> None:
        s = self.settings = settings or FlowSettings()
        if s.max_flows < 16:
            raise ValueError("max_flows must be at least 16")
        self.tbl = np.zeros(s.max_flows, FLOW_DTYPE)
        size = 1
        while size < 2 * s.max_flows:
            size *= 2
        self.index = np.full(size, -1, np.int32)
        self.removed = np.zeros(s.max_flows, np.uint8)
        self.st = np.zeros(8, np.int64)
        self.exp = np.zeros(s.export_buffer, FLOW_DTYPE)
        self.n_exp = 0
        self.frag_keys = np.zeros(1 << 14, np.uint64)
        self.frag_ports = np.zeros(1 << 14, np.int64)
        self.frag_pend = np.zeros((1 << 14, 4), np.int64)  # packets, bytes, payload, IP bytes parked per datagram
        self.idle_ns = int(s.idle_timeout * 1e9)
        self.active_ns = int(s.active_timeout * 1e9)
        self.window_ns = int(window_s * 1e9)
        self.sweep_ns = int(s.sweep_interval * 1e9)
        self.next_sweep = -1  # set by the first packet
        self.info: PacketFlowInfo | None = None

    # counters -----------------------------------------------------------------------------
    @property
    def evicted(self) -> int:
        return int(self.st[ST_EVICTED])

    def release(self) -> None:
        """Give the table's memory back (after :meth:`flush`; counters stay readable)."""
        self.tbl = np.zeros(0, FLOW_DTYPE)
        self.index = np.zeros(0, np.int32)
        self.removed = np.zeros(0, np.uint8)
        self.exp = np.zeros(0, FLOW_DTYPE)
        self.info = None

    @property
    def fragments_without_first(self) -> int:
        return int(self.st[ST_FRAG_MISSING])

    @property
    def flows_created(self) -> int:
        return int(self.st[ST_CREATED])

    def __len__(self) -> int:
        return int(self.st[ST_USED])

    def sweep_after(self, ts: int) -> int:
        """When the sweep after capture time ``ts`` is due: the next multiple of the sweep
        interval. Sweeps on a fixed grid make the schedule a function of the newest timestamp
        seen (not of where the input began), so a run split into parts (iotwatch.parts) sweeps
        at the same times as the whole."""
        return (ts // self.sweep_ns + 1) * self.sweep_ns

    # feeding ------------------------------------------------------------------------------
    def update(self, pk: Packets, ts_ns: np.ndarray, wirelen: np.ndarray, frame_base: int = 1) -> Iterator[np.ndarray]:
        """Account a batch; ``frame_base`` = file index << 40 | frame number of its first packet."""
        n = len(ts_ns)
        if self.info is None or len(self.info.flow_id) < n:
            self.info = PacketFlowInfo.allocate(max(n, 1 << 16))
        info = self.info
        if self.next_sweep < 0 and n:
            self.next_sweep = self.sweep_after(int(ts_ns[0]))
        i = 0
        while i < n:
            i, self.n_exp, status = process_packets(
                i, ts_ns, wirelen, pk.l3, pk.err, pk.src_hi, pk.src_lo, pk.dst_hi, pk.dst_lo, pk.proto,
                pk.sport, pk.dport, pk.tcp_flags, pk.frag, pk.frag_id, pk.payload, pk.ip_len, pk.src_mac, pk.dst_mac,
                pk.vlan, self.tbl, self.index, self.st, self.exp, self.n_exp, self.frag_keys, self.frag_ports, self.frag_pend,
                self.idle_ns, self.active_ns, self.window_ns, self.next_sweep,
                info.flow_id, info.direction, info.new, info.answered_window, info.answer_kind, frame_base)
            if status == SWEEP_DUE:
                now = int(ts_ns[i])
                yield from self._sweep(now, evict_before=-(1 << 62))
                self.next_sweep = self.sweep_after(now)
            elif status == TABLE_FULL:
                used = int(self.st[ST_USED])
                last = self.tbl["last"][:used]
                k = used // 4
                threshold = int(np.partition(last, k)[k])
                yield from self._sweep(int(ts_ns[i]), evict_before=threshold)
            elif status == EXPORT_FULL:
                yield self._drain()
        if self.n_exp >= self.settings.drain_at:
            yield self._drain()

    def drain(self) -> Iterator[np.ndarray]:
        """Hand over the finished flows held in the export buffer now (live capture calls this
        on a timer; offline runs let the buffer fill up to ``drain_at``)."""
        if self.n_exp:
            yield self._drain()

    def expire(self, now_ns: int) -> Iterator[np.ndarray]:
        """Sweep at ``now_ns`` with no packet (live capture: the wall clock): flows idle or active
        for longer than their timeouts by then end, exactly as the next packet-driven sweep would
        end them."""
        if self.next_sweep < 0:
            return
        yield from self._sweep(now_ns, evict_before=-(1 << 62))
        yield from self.drain()

    def open_records(self, quiet_since_ns: int, also: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        """A copy of the flows still open whose last packet is older than ``quiet_since_ns`` (or
        that ``also``, a mask over the open records, picks), as records (a live capture's
        provisional verdicts look at them: a scan's unanswered SYNs would otherwise wait for the
        idle timeout)."""
        used = int(self.st[ST_USED])
        rows = self.tbl[:used]
        keep = rows["last"] < quiet_since_ns
        if also is not None:
            keep |= also(rows)
        return rows.take(np.flatnonzero(keep))  # (a copy; take: half the time of a mask on these wide records)

    def packet_info(self, n: int) -> PacketFlowInfo:
        info = self.info
        assert info is not None
        return PacketFlowInfo(info.flow_id[:n], info.direction[:n], info.new[:n],
                              info.answered_window[:n], info.answer_kind[:n])

    def flush(self) -> Iterator[np.ndarray]:
        """Export every flow still in the table (end of input)."""
        yield from self._sweep(0, evict_before=-(1 << 62), flush_all=True)

    def _sweep(self, now: int, evict_before: int, flush_all: bool = False) -> Iterator[np.ndarray]:
        j = 0
        used = int(self.st[ST_USED])
        before = int(self.st[ST_EXPORTED]) + self.n_exp
        while j < used:
            j, self.n_exp = sweep(self.tbl, self.st, j, now, self.idle_ns, self.active_ns, evict_before,
                                  flush_all, self.removed, self.exp, self.n_exp)
            if self.n_exp >= len(self.exp):
                yield self._drain()
        if int(self.st[ST_EXPORTED]) + self.n_exp != before:
            compact(self.tbl, self.st, self.removed, self.index)
        if flush_all and self.n_exp:
            yield self._drain()

    def _drain(self) -> np.ndarray:
        """Finished flows as raw records (FLOW_DTYPE); :func:`flows_to_table` makes them public rows."""
        rows = self.exp[: self.n_exp]
        self.exp = np.empty_like(self.exp)  # hand the filled buffer over instead of copying it
        self.n_exp = 0
        self.st[ST_EXPORTED] += len(rows)
        return rows


_STATE_DICT = pa.array(STATES)
_REASON_DICT = pa.array(list(REASONS))


#: flows_to_table's numeric columns, in the order _public_columns fills its matrices
_U64_COLS = ("flow_id", "c_hi", "c_lo", "s_hi", "s_lo", "bytes_toserver", "bytes_toclient", "payload_toserver",
             "payload_toclient", "mac_c", "mac_s", "ip_bytes_toserver", "ip_bytes_toclient", "push_bytes_toserver",
             "push_bytes_toclient")
#: Zeek's conn_state values, in the order of the codes _public_columns writes
CONN_STATES = ("S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH")
_CS = {name: k for k, name in enumerate(CONN_STATES)}
_HIST_CHARS = np.frombuffer((HISTORY_LETTERS + HISTORY_LETTERS.lower()).encode(), np.uint8).copy()
_CONN_STATE_DICT = pa.array(CONN_STATES)
_U32_COLS = ("pkts_toserver", "pkts_toclient", *(f"{f}_to{d}" for d in ("server", "client") for f in TCP_FLAGS),
             "pushes_toserver", "pushes_toclient", "beats_toserver", "beats_toclient")
#: flows_to_table's float columns of the exchanges, in the order _public_columns fills them
_PUSH_F_COLS = ("push_interval_toserver", "push_interval_toclient", "push_interval_cv_toserver",
                "push_interval_cv_toclient", "beat_interval_toserver", "beat_interval_toclient")


@inline_kernel
def flow_sides(r):  # type: ignore[no-untyped-def]
    """(client hi, client lo, server hi, server lo, client port, server port) of a flow record."""
    if r.client_a:
        return r.ahi, r.alo, r.bhi, r.blo, r.aport, r.bport
    return r.bhi, r.blo, r.ahi, r.alo, r.bport, r.aport


@inline_kernel
def _rstos0(zhist, n):  # type: ignore[no-untyped-def]
    """Zeek's test for RSTOS0 on the history: /^\\^?S[^HAFGIQ]*R.*/ (the client's SYN first, then its
    RST before any other letter of its own but a repeated SYN)."""
    if n == 0 or (zhist & np.uint64(15)) != H_SYN:
        return False
    for k in range(1, n):
        c = np.int64((zhist >> np.uint64(4 * k)) & np.uint64(15))
        if c == H_RST:
            return True
        if c == H_SYNACK or c == H_ACK or c == H_FIN or c == H_MULTI or c == H_FINRST:
            return False
    return False


@inline_kernel
def _conn_state(r, nhist):  # type: ignore[no-untyped-def]
    """Zeek's conn_state (base/protocols/conn/main.zeek) from the endpoint states; a code into CONN_STATES."""
    pr = r.proto
    if pr == 17 or pr == 136:
        return 2 if r.pk[1] > 0 else 0  # SF / S0 (the client always sent)
    if pr != 6:
        return 12
    zst = np.int64(r.zst)
    os_ = zst & 7
    rs = (zst >> 6) & 7
    o_inactive = os_ == Z_INACTIVE or os_ == Z_PARTIAL
    r_inactive = rs == Z_INACTIVE or rs == Z_PARTIAL
    if rs == Z_RESET:
        if os_ == Z_SYN_SENT or os_ == Z_SYN_ACK_SENT or (os_ == Z_RESET and r.pl[0] == 0 and r.pl[1] == 0):
            return 3  # REJ
        return 9 if o_inactive else 7  # RSTRH / RSTR
    if os_ == Z_RESET:
        if r_inactive:
            return 8 if _rstos0(r.zhist, nhist) else 12  # RSTOS0 / OTH
        return 6  # RSTO
    if rs == Z_CLOSED and os_ == Z_CLOSED:
        return 2  # SF
    if os_ == Z_CLOSED:
        return 10 if r_inactive else 4  # SH / S2
    if rs == Z_CLOSED:
        return 11 if o_inactive else 5  # SHR / S3
    if os_ == Z_SYN_SENT and rs == Z_INACTIVE:
        return 0  # S0
    if os_ == Z_ESTABLISHED and rs == Z_ESTABLISHED:
        return 1  # S1
    return 12  # OTH


@inline_kernel
def state_code(bits):  # type: ignore[no-untyped-def]
    """A TCP flow record's state bits → its public state code (an index into STATES): midstream
    (no SYN seen), SYN unanswered, established, rejected, reset or closed (FIN both ways)."""
    st = np.int64(bits)
    code = STATE_MIDSTREAM
    if st & S_SYN:
        code = STATE_SYN_UNANSWERED if (st & S_SYNACK) == 0 else STATE_ESTABLISHED
    if (st & S_RST) and code != STATE_SYN_UNANSWERED:
        code = STATE_RESET
    if (st & (S_FIN_C | S_FIN_S)) == (S_FIN_C | S_FIN_S):
        code = STATE_CLOSED
    if st & S_REJECTED:
        code = STATE_REJECTED
    return code


@inline_kernel
def exchanges(r):  # type: ignore[no-untyped-def]
    """The exchanges each side of flow record ``r`` started (0, 0 before its first data packet:
    the fields are set then)."""
    if r.plast < 0:
        return 0, 0
    return r.xn[0], r.xn[1]


@inline_kernel
def push_stats(n, g1, g2):  # type: ignore[no-untyped-def]
    """A side's exchanges → (mean seconds between consecutive ones, their coefficient of
    variation): 0 and 0 with fewer than two exchanges, a CV of 0 with fewer than three."""
    if n < 2:
        return 0.0, 0.0
    k = n - 1
    m = g1 / k
    if n < 3 or m <= 0.0:
        return m, 0.0
    var = g2 / k - m * m
    return m, np.sqrt(var if var > 0.0 else 0.0) / m


@kernel
def _public_columns(rows, u64, u32, ports, proto, v6, ipver, vlan, times, state, reason, hdata, hoff, cstate, hchars,  # type: ignore[no-untyped-def]
                    pushf):
    """Exported flow records → contiguous public columns: client/server sides, ICMP type and
    code as ports, counters, seconds, state code (see STATES) and reason; Zeek's history
    (an Arrow string column: characters in ``hdata``, offsets in ``hoff``) and conn_state code."""
    q = 0
    hoff[0] = 0
    for i in range(rows.shape[0]):
        r = rows[i]
        c_hi, c_lo, s_hi, s_lo, cp, sp = flow_sides(r)
        pr = r.proto
        if pr == 1 or pr == 58:
            cp = r.icmp_tc >> 8
            sp = r.icmp_tc & 0xFF
        u64[0, i] = r.flow_id
        u64[1, i] = c_hi
        u64[2, i] = c_lo
        u64[3, i] = s_hi
        u64[4, i] = s_lo
        u64[5, i] = r.by[0]
        u64[6, i] = r.by[1]
        u64[7, i] = r.pl[0]
        u64[8, i] = r.pl[1]
        u64[9, i] = r.mac_c
        u64[10, i] = r.mac_s
        u64[11, i] = r.ipb[0]
        u64[12, i] = r.ipb[1]
        n0, n1 = exchanges(r)
        u64[13, i] = r.xb[0] if n0 > 0 else 0  # (a side's exchange fields are set at its first one)
        u64[14, i] = r.xb[1] if n1 > 0 else 0
        u32[0, i] = r.pk[0]
        u32[1, i] = r.pk[1]
        for k in range(12):
            u32[2 + k, i] = r.fl[k]
        u32[14, i] = n0
        u32[15, i] = n1
        u32[16, i] = r.xbeat[0] if n0 > 0 else 0
        u32[17, i] = r.xbeat[1] if n1 > 0 else 0
        for side in range(2):
            ns = n1 if side else n0
            iv, cv = push_stats(ns, r.xg1[side], r.xg2[side])
            pushf[side, i] = iv
            pushf[2 + side, i] = cv
            pushf[4 + side, i] = abs(r.xref[side]) if ns > 0 and r.xbeat[side] > 0 else 0.0
        ports[0, i] = cp
        ports[1, i] = sp
        proto[i] = pr
        v6[i] = r.v6 != 0
        ipver[i] = 6 if r.v6 else 4
        vlan[i] = r.vlan
        times[0, i] = r.first / 1e9
        times[1, i] = r.last / 1e9
        state[i] = state_code(r.state) if pr == 6 else STATE_NONE
        reason[i] = r.reason
        n = 0
        if pr == 6:
            m = np.int64(r.zseen)
            while m:
                m &= m - 1
                n += 1
            for k in range(n):
                c = np.int64((r.zhist >> np.uint64(4 * k)) & np.uint64(15))
                hdata[q + k] = hchars[c]
        elif pr == 17 or pr == 136:  # Zeek's UDP analyzer: D for the originator's packets, d for the responder's
            if r.pk[0] > 0:
                hdata[q + n] = 68
                n += 1
            if r.pk[1] > 0:
                hdata[q + n] = 100
                n += 1
        q += n
        hoff[i + 1] = q
        cstate[i] = _conn_state(r, n)


def flows_to_table(rows: np.ndarray) -> pa.Table:
    """Turn exported flow records into a pyarrow table with the public column names."""
    n = len(rows)
    u64 = np.empty((len(_U64_COLS), n), np.uint64)
    u32 = np.empty((len(_U32_COLS), n), np.uint32)
    ports = np.empty((2, n), np.uint16)
    proto = np.empty(n, np.uint8)
    v6 = np.empty(n, np.bool_)
    ipver = np.empty(n, np.uint8)
    vlan = np.empty(n, np.uint16)
    times = np.empty((2, n), np.float64)
    state = np.empty(n, np.int8)
    reason = np.empty(n, np.int8)
    hdata = np.empty(16 * n + 1, np.uint8)
    hoff = np.empty(n + 1, np.int32)
    cstate = np.empty(n, np.int8)
    pushf = np.empty((len(_PUSH_F_COLS), n), np.float64)
    _public_columns(np.ascontiguousarray(rows), u64, u32, ports, proto, v6, ipver, vlan, times, state, reason,
                    hdata, hoff, cstate, _HIST_CHARS, pushf)
    c = dict(zip(_U64_COLS, u64, strict=True))
    cols: dict[str, pa.Array | np.ndarray] = {
        "flow_id": c["flow_id"],
        "community_id": community_ids(v6, c["c_hi"], c["c_lo"], c["s_hi"], c["s_lo"], proto, ports[0], ports[1]),
        "proto": proto,
        "ip_version": ipver,
        "src_ip": format_ips(v6, c["c_hi"], c["c_lo"]),
        "src_port": ports[0],
        "dest_ip": format_ips(v6, c["s_hi"], c["s_lo"]),
        "dest_port": ports[1],
        "src_mac": format_macs(c["mac_c"]),
        "dest_mac": format_macs(c["mac_s"]),
        "vlan": vlan,
        **{k: c[k] for k in _U64_COLS[5:9]},
        **{k: c[k] for k in _U64_COLS[11:]},
        **dict(zip(_U32_COLS, u32, strict=True)),
        "start": times[0],
        "end": times[1],
        **dict(zip(_PUSH_F_COLS, pushf, strict=True)),
    }
    cols["state"] = pa.DictionaryArray.from_arrays(state, _STATE_DICT)
    cols["reason"] = pa.DictionaryArray.from_arrays(reason, _REASON_DICT)
    cols["history"] = pa.StringArray.from_buffers(n, pa.py_buffer(hoff), pa.py_buffer(hdata[: hoff[-1]]))
    cols["conn_state"] = pa.DictionaryArray.from_arrays(cstate, _CONN_STATE_DICT)
    return pa.Table.from_pydict({k: cols[k] for k in FLOW_SCHEMA.names}, schema=FLOW_SCHEMA)
