"""The few packets worth reading in full, set aside from the fast path.

Detection and the device inventory need what is inside a handful of packets: ARP requests (who
sweeps the segment), DNS queries (tunnels, water torture), DHCP/mDNS/SSDP/WS-Discovery and camera
vendor discovery (what a box is), and the first payload of each flow in each direction (HTTP
headers, TLS ClientHello, SSH/telnet banners, RTSP). A compiled pass picks them out of each batch
by header fields only; their bytes (from the IP or ARP header on) are copied into
:class:`RareFrame` records for the slower, dissecting consumers (dpkt), within budgets so that a
flood cannot make them many: at most ``per_batch`` of a kind per batch and window, and
``per_device`` of a kind per device and window (a batch of a sparse capture can span hours: each
of its windows gets its own caps). A DNS query's question is hashed from its bytes (compiled, in
place) and counts once per device and window: a name the device already asked, and that was
kept, is not kept again and costs nothing of the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._jit import inline_kernel, kernel
from .addrs import ip_str, mac_str
from .capture.batch import PacketBatch
from .decode import NO_MAC, Packets
from .flows import PacketFlowInfo

KINDS = ("", "arp", "dns", "dhcp", "mdns", "llmnr", "ssdp", "wsd", "ntp", "discovery", "first_payload")
K_ARP, K_DNS, K_DHCP, K_MDNS, K_LLMNR, K_SSDP, K_WSD, K_NTP, K_DISCOVERY, K_FIRST = range(1, 11)
# "discovery" is UDP to or from vendor discovery ports: Hikvision SADP (37020), Dahua DHIP (37810),
# Xiongmai/NetSurveillance (34569), Ubiquiti (10001), NetBIOS (137, 138); UPnP and Bonjour are their
# own kinds (SSDP, mDNS). Login ports (first payloads with their own budget): 21, 22, 23, 2323.


@dataclass(frozen=True, slots=True)
class RareFrame:
    ts: float  # epoch seconds
    file_index: int  # index of the capture in the run's input list
    frame: int  # 1-based frame number in its file (as Wireshark numbers it)
    l3: int  # 4 IPv4, 6 IPv6, 1 ARP
    data: bytes  # captured bytes from the IP (or ARP) header on
    src: str | None  # device key of the sender (MAC, or IP without Ethernet); None if not a device
    dst: str | None  # device key of the receiver; None for broadcast/multicast
    kind: str  # why it was set aside: one of KINDS
    flow_id: int = 0  # the flow it belongs to (0 for ARP)
    direction: int = 0  # 0 client→server, 1 server→client


#: frames kept per device, kind and window (DNS: distinct questions): enough for every rule (50
#: names under one domain in 10 s for water torture, 10 encoded names for a tunnel, 32 ARP targets for a sweep, banners of
#: login services) and for the inventory (a few values per signal), few enough that a busy network
#: or a flood costs little
K_FIRST_LOGIN = 11  # a first payload on a login port (banners, Mirai's C2 hello): its own budget
K_DNS_SEEN = 12  # (bookkeeping) DNS queries a device sent in the window, kept or not
BUDGET = {K_ARP: 64, K_DNS: 12, K_DHCP: 16, K_MDNS: 16, K_LLMNR: 8, K_SSDP: 16, K_WSD: 8, K_NTP: 4,
          K_DISCOVERY: 16, K_FIRST: 8, K_FIRST_LOGIN: 256}
#: a device that sends this many DNS queries in a window (a burst, water torture) gets DNS_BURST_BUDGET
DNS_BURST, DNS_BURST_BUDGET = 1000, 64
_BUDGET_ARRAY = np.array([BUDGET.get(k, 0) for k in range(13)], np.int64)
#: slots of the budget table (device and kind counters, and the DNS questions kept, of one window;
#: half of them may be used): room for about 2,000 devices each asking a dozen names a minute
TABLE_SLOTS = 1 << 16


@inline_kernel
def _kind_of(l3, err, proto, sp, dp, info, f_new):  # type: ignore[no-untyped-def]
    k = 0
    if l3 == 1:
        if info & 2:
            k = 1
    elif (l3 == 4 or l3 == 6) and err == 0:
        if proto == 17:
            if info & 1:
                k = 2
            elif dp == 67 or dp == 68 or sp == 67 or sp == 68 or dp == 546 or dp == 547:
                k = 3
            elif dp == 5353 or sp == 5353:
                k = 4
            elif dp == 5355:
                k = 5
            elif dp == 1900 or sp == 1900:
                k = 6
            elif dp == 3702 or sp == 3702:
                k = 7
            elif dp == 123 or sp == 123:
                k = 8
            elif (dp == 37020 or sp == 37020 or dp == 37810 or sp == 37810 or dp == 34569 or sp == 34569
                  or dp == 10001 or dp == 137 or dp == 138):
                k = 9
        if k == 0 and (proto == 6 or proto == 17) and (f_new & 2):
            k = 10
            if dp == 21 or dp == 22 or dp == 23 or dp == 2323 or sp == 21 or sp == 22 or sp == 23 or sp == 2323:
                k = 11
    return k


@inline_kernel
def _slot(bkeys, bcount, state, who, kind):  # type: ignore[no-untyped-def]
    """The (device, kind) counter of the window's table, created at 0; -1 when the table is full
    (then nothing more is kept this window)."""
    return _entry(bkeys, bcount, state, (who * np.uint64(16) + np.uint64(kind)) ^ np.uint64(0x8000000000000001), True)


@inline_kernel
def _name_key(who, name):  # type: ignore[no-untyped-def]
    """The table key of DNS question ``name`` (a :func:`dns_question_key`) asked by device ``who``:
    its low 4 bits are 14, which no (device, kind) key has (theirs are the kind ^ 1, kinds 1-12)."""
    return ((who * np.uint64(0x9E3779B97F4A7C15)) ^ name) << np.uint64(4) | np.uint64(14)


@inline_kernel
def _entry(bkeys, bcount, state, key, create):  # type: ignore[no-untyped-def]
    """The slot of ``key`` in the window's table; a new one (its counter at 0) when ``create``;
    -1 when absent (not created, or the table is full)."""
    mask = bkeys.shape[0] - 1
    h = key * np.uint64(0x9E3779B97F4A7C15)
    s = np.int64((h >> np.uint64(20)) & np.uint64(mask))
    while bkeys[s] != 0:
        if bkeys[s] == key:
            return s
        s = (s + 1) & mask
    if not create or state[1] * 2 >= bkeys.shape[0]:
        return -1
    bkeys[s] = key
    bcount[s] = 0
    state[1] += 1
    return s


@inline_kernel
def dns_question_key(buf, start, end):  # type: ignore[no-untyped-def]
    """A 64-bit hash (FNV-1a) of the question of the DNS message at ``buf[start:end]`` (``start``:
    its header): the name's labels, letters folded to lower case, and the query type. Never 0; 0
    when the question is not all in the captured bytes or not a plain name (a compression pointer,
    a label over 63 bytes)."""
    p = start + 12
    prime = np.uint64(0x100000001B3)
    h = np.uint64(0xCBF29CE484222325)
    labels = 0
    while True:
        if p >= end or labels > 127:
            return np.uint64(0)
        n = np.int64(buf[p])
        if n == 0:
            break
        if n > 63 or p + 1 + n > end:
            return np.uint64(0)
        h = (h ^ np.uint64(n)) * prime
        for j in range(p + 1, p + 1 + n):
            c = np.uint64(buf[j])
            if c >= np.uint64(65) and c <= np.uint64(90):
                c += np.uint64(32)
            h = (h ^ c) * prime
        p += 1 + n
        labels += 1
    if p + 2 >= end:
        return np.uint64(0)
    h = (h ^ np.uint64(buf[p + 1])) * prime
    h = (h ^ np.uint64(buf[p + 2])) * prime
    return h | np.uint64(1)


@inline_kernel
def dns_key_of(buf, pkt_off, l3_off, caplen, ip_len, payload):  # type: ignore[no-untyped-def]
    """:func:`dns_question_key` of a DNS query over UDP: its message starts where the IP packet's
    announced length, less the transport payload, ends (IPv4 with options and IPv6 alike)."""
    start = pkt_off + np.int64(l3_off) + np.int64(ip_len) - np.int64(payload)
    end = pkt_off + caplen
    if payload < 12 or start < pkt_off + np.int64(l3_off) + 28 or start >= end:
        return np.uint64(0)
    return dns_question_key(buf, start, end)


@inline_kernel
def enter_window(w, bkeys, state):  # type: ignore[no-untyped-def]
    """A packet of window ``w``: when the window changed, the budget table starts empty."""
    if w != state[0]:
        for q in range(bkeys.shape[0]):
            bkeys[q] = 0
        state[0] = w
        state[1] = 0


@kernel
def dns_keys(kind, idx, buf, pkt_off, l3_off, caplen, ip_len, payload, out):  # type: ignore[no-untyped-def]
    """:func:`dns_key_of` of the packets ``idx`` of a batch whose kind (``kind``, per index) is DNS;
    0 for the others."""
    for j in range(idx.shape[0]):
        i = idx[j]
        out[j] = dns_key_of(buf, pkt_off[i], l3_off[i], caplen[i], ip_len[i], payload[i]) if kind[j] == 2 else np.uint64(0)


@inline_kernel
def admit(k, who, w, name, counts, per_batch, bkeys, bcount, state, budget, dns_burst, dns_burst_budget):  # type: ignore[no-untyped-def]
    """Whether a frame of kind ``k`` from device ``who`` in window ``w`` is kept: within the cap per
    kind of the batch and window (``counts``: a new window starts them over, as a sparse capture's
    batch spans hours) and the device's budget of the window (a DNS burst gets its own); counts it
    when kept. A DNS query's ``name`` (:func:`dns_question_key`; 0: unknown) counts once: a question
    the device already asked in the window, and that was kept, is not kept again and costs nothing,
    so a device's own repeated lookups never use up the budget a new name needs."""
    if w != state[0]:
        for q in range(counts.shape[0]):
            counts[q] = 0
    if counts[k] >= per_batch:
        return False
    enter_window(w, bkeys, state)
    limit = budget[k]
    if k == 2:
        seen = _slot(bkeys, bcount, state, who, 12)
        if seen < 0:
            return False
        bcount[seen] += 1
        if bcount[seen] > dns_burst:
            limit = dns_burst_budget
        if name != 0 and _entry(bkeys, bcount, state, _name_key(who, name), False) >= 0:
            return False
    slot = _slot(bkeys, bcount, state, who, k)
    if slot < 0 or bcount[slot] >= limit:
        return False
    if k == 2 and name != 0 and _entry(bkeys, bcount, state, _name_key(who, name), True) < 0:
        return False
    bcount[slot] += 1
    counts[k] += 1
    return True


@kernel
def select_rare(l3, err, proto, sport, dport, info, f_new, src_mac, src_hi, src_lo, ts_ns, window_ns,  # type: ignore[no-untyped-def]
                buf, pkt_off, l3_off, caplen, ip_len, payload,
                out_idx, out_kind, counts, per_batch, bkeys, bcount, state, budget, dns_burst, dns_burst_budget):
    """Indices and kinds of the packets to set aside, within the per-batch cap (``counts``, one
    per kind and window) and the per-device budget of the window (``bkeys``/``bcount``, reset each window;
    ``state`` = [window, used slots]); a DNS query's question is read from the packet's bytes
    (``buf`` at ``pkt_off``) so that each name counts once. Returns how many."""
    n = l3.shape[0]
    for k in range(counts.shape[0]):
        counts[k] = 0
    m = 0
    no_mac = np.uint64(1) << np.uint64(63)
    for i in range(n):
        k = _kind_of(l3[i], err[i], proto[i], sport[i], dport[i], info[i], f_new[i])
        if k == 0:
            continue
        sm = src_mac[i]
        who = sm if sm < no_mac else (src_lo[i] ^ (src_hi[i] * np.uint64(0x9E3779B97F4A7C15))) | no_mac
        name = np.uint64(0)
        if k == 2:
            name = dns_key_of(buf, pkt_off[i], l3_off[i], caplen[i], ip_len[i], payload[i])
        if not admit(k, who, ts_ns[i] // window_ns, name, counts, per_batch, bkeys, bcount, state, budget, dns_burst,
                     dns_burst_budget):
            continue
        out_idx[m] = i
        out_kind[m] = k
        m += 1
    return m


class Sidecar:
    """Picks rare frames out of decoded batches, within budgets."""

    def __init__(self, per_batch: int = 128, window_s: float = 60.0) -> None:
        self.per_batch = per_batch
        self.window_ns = int(window_s * 1e9)
        self._idx = np.empty(0, np.int64)
        self._kind = np.empty(0, np.int8)
        self._counts = np.zeros(16, np.int64)
        self._bkeys = np.zeros(TABLE_SLOTS, np.uint64)
        self._bcount = np.zeros(TABLE_SLOTS, np.int64)
        self._state = np.array([-1, 0], np.int64)
        self._macs: dict[int, str | None] = {}

    def pick(self, batch: PacketBatch, pk: Packets, fi: PacketFlowInfo) -> list[RareFrame]:
        n = len(batch)
        if len(self._idx) < n:
            self._idx = np.empty(n, np.int64)
            self._kind = np.empty(n, np.int8)
        m = select_rare(pk.l3, pk.err, pk.proto, pk.sport, pk.dport, pk.info, fi.new, pk.src_mac, pk.src_hi,
                        pk.src_lo, batch.ts_ns, self.window_ns, batch.buf, batch.off, pk.l3_off, batch.caplen,
                        pk.ip_len, pk.payload, self._idx, self._kind, self._counts, self.per_batch,
                        self._bkeys, self._bcount, self._state, _BUDGET_ARRAY, DNS_BURST, DNS_BURST_BUDGET)
        if not m:
            return []
        idx = self._idx[:m]
        rec = pk.rec[idx]
        kinds = self._kind[:m].tolist()
        offs = (batch.off[idx] + rec["l3_off"]).tolist()
        ends = (batch.off[idx] + batch.caplen[idx]).tolist()
        flow_id = fi.flow_id[idx].tolist()
        direction = fi.direction[idx].tolist()
        ts = (batch.ts_ns[idx] / 1e9).tolist()
        l3 = rec["l3"].tolist()
        smac = rec["src_mac"].tolist()
        dmac = rec["dst_mac"].tolist()
        frames = (idx + batch.frame0).tolist()
        fidx = batch.file_index
        buf = batch.buf
        no_mac = int(NO_MAC)
        mac = self._mac
        out: list[RareFrame] = []
        for q in range(m):
            sm = smac[q]
            if sm < no_mac:
                src, dst = mac(sm), mac(dmac[q])
            else:
                src, dst = _keys(rec[q])
            kind = kinds[q]
            out.append(RareFrame(ts[q], fidx, frames[q], l3[q], buf[offs[q]:ends[q]].tobytes(), src, dst,
                                 KINDS[K_FIRST if kind == K_FIRST_LOGIN else kind], flow_id[q], direction[q]))
        return out

    def _keys(self, r: np.void) -> tuple[str | None, str | None]:
        sm, dm = int(r["src_mac"]), int(r["dst_mac"])
        if sm < int(NO_MAC):
            return self._mac(sm), self._mac(dm)
        return _keys(r)

    def _mac(self, m: int) -> str | None:
        s = self._macs.get(m, "")
        if s == "":
            s = None if (m >> 40) & 1 else mac_str(m)
            if len(self._macs) < 1 << 16:
                self._macs[m] = s
        return s


def _keys(r: np.void) -> tuple[str | None, str | None]:
    """Device keys of a packet's sender and receiver, as the device table names them."""
    sm, dm = int(r["src_mac"]), int(r["dst_mac"])
    if sm != int(NO_MAC):
        src = None if (sm >> 40) & 1 else mac_str(sm)
        dst = None if (dm >> 40) & 1 else mac_str(dm)
        return src, dst
    if r["l3"] not in (4, 6):
        return None, None
    v6 = r["l3"] == 6
    return ip_str(v6, int(r["src_hi"]), int(r["src_lo"])), ip_str(v6, int(r["dst_hi"]), int(r["dst_lo"]))
