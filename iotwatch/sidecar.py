"""The few packets worth reading in full, set aside from the fast path.

Detection and the device inventory need what is inside a handful of packets: ARP requests (who
sweeps the segment), DNS queries (tunnels, water torture), DHCP/mDNS/SSDP/WS-Discovery and camera
vendor discovery (what a box is), and the first payload of each flow in each direction (HTTP
headers, TLS ClientHello, SSH/telnet banners, RTSP). A compiled pass picks them out of each batch
by header fields only; their bytes (from the IP or ARP header on) are copied into
:class:`RareFrame` records for the slower, dissecting consumers (dpkt), within budgets so that a
flood cannot make them many: at most ``per_batch`` of a kind per batch and ``per_device`` of a kind
per device and window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._jit import kernel
from .addrs import ip_str, mac_str
from .capture.batch import PacketBatch
from .decode import NO_MAC, Packets
from .flows import PacketFlowInfo

KINDS = ("", "arp", "dns", "dhcp", "mdns", "llmnr", "ssdp", "wsd", "ntp", "discovery", "first_payload")
K_ARP, K_DNS, K_DHCP, K_MDNS, K_LLMNR, K_SSDP, K_WSD, K_NTP, K_DISCOVERY, K_FIRST = range(1, 11)
#: UDP ports of vendor discovery: Hikvision SADP (37020), Dahua DHIP (37810), Xiongmai/NetSurveillance
#: (34569), Ubiquiti (10001), NetBIOS name and datagram services (137, 138). UPnP and Bonjour are
#: their own kinds (SSDP, mDNS).
DISCOVERY_PORTS = (37020, 37810, 34569, 10001, 137, 138)


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


@kernel
def select_rare(l3, err, proto, sport, dport, info, f_new, out_idx, out_kind, counts, per_batch):  # type: ignore[no-untyped-def]
    """Indices and kinds of the packets to set aside; returns how many. ``counts``: one per kind."""
    n = l3.shape[0]
    for k in range(counts.shape[0]):
        counts[k] = 0
    m = 0
    for i in range(n):
        k = 0
        if l3[i] == 1:
            if info[i] & 2:
                k = 1
        elif (l3[i] == 4 or l3[i] == 6) and err[i] == 0:
            if proto[i] == 17:
                sp = sport[i]
                dp = dport[i]
                if info[i] & 1:
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
            if k == 0 and (proto[i] == 6 or proto[i] == 17) and (f_new[i] & 2):
                k = 10
        if k == 0 or counts[k] >= per_batch:
            continue
        counts[k] += 1
        out_idx[m] = i
        out_kind[m] = k
        m += 1
    return m


#: frames kept per device, kind and window: enough for every rule (50 names under one domain in
#: 10 s for water torture, 10 encoded names for a tunnel, 32 ARP targets for a sweep, banners of
#: login services) and for the inventory (a few values per signal), few enough that a busy network
#: or a flood costs little
BUDGET = {K_ARP: 64, K_DNS: 24, K_DHCP: 16, K_MDNS: 16, K_LLMNR: 8, K_SSDP: 16, K_WSD: 8, K_NTP: 4,
          K_DISCOVERY: 16, K_FIRST: 16}
#: a device that sends this many DNS queries in a window (a burst, water torture) gets DNS_BURST_BUDGET
DNS_BURST, DNS_BURST_BUDGET = 100, 64
#: first payloads on login ports (banners, Mirai's C2 hello) have their own, larger budget
K_FIRST_LOGIN = 11
BUDGET[K_FIRST_LOGIN] = 256
LOGIN_PORTS = (21, 22, 23, 2323)


class Sidecar:
    """Picks rare frames out of decoded batches, within budgets."""

    def __init__(self, per_batch: int = 128, window_s: float = 60.0) -> None:
        self.per_batch = per_batch
        self.window_ns = int(window_s * 1e9)
        self._idx = np.empty(0, np.int64)
        self._kind = np.empty(0, np.int8)
        self._counts = np.zeros(len(KINDS), np.int64)
        self._budget: dict[tuple[int, int], int] = {}
        self._seen: dict[int, int] = {}  # DNS candidates per device in the window
        self._budget_window = -1
        self._macs: dict[int, str | None] = {}
        self.dropped = 0

    def pick(self, batch: PacketBatch, pk: Packets, fi: PacketFlowInfo) -> list[RareFrame]:
        n = len(batch)
        if len(self._idx) < n:
            self._idx = np.empty(n, np.int64)
            self._kind = np.empty(n, np.int8)
        m = select_rare(pk.l3, pk.err, pk.proto, pk.sport, pk.dport, pk.info, fi.new, self._idx, self._kind,
                        self._counts, self.per_batch)
        if not m:
            return []
        idx = self._idx[:m]
        rec = pk.rec[idx]
        kinds = self._kind[:m].astype(np.int64)
        login = (kinds == K_FIRST) & (np.isin(rec["dport"], LOGIN_PORTS) | np.isin(rec["sport"], LOGIN_PORTS))
        kinds[login] = K_FIRST_LOGIN
        no_mac = rec["src_mac"] >= NO_MAC
        who = np.where(no_mac, rec["src_lo"] ^ (rec["src_hi"] * np.uint64(0x9E3779B97F4A7C15)), rec["src_mac"])
        ts_ns = batch.ts_ns[idx]
        win = ts_ns // self.window_ns
        keep: list[int] = []
        budget = self._budget
        for q, (w, k, kind) in enumerate(zip(win.tolist(), who.tolist(), kinds.tolist(), strict=True)):
            if w > self._budget_window:
                budget.clear()
                self._seen.clear()
                self._budget_window = w
            used = budget.get((k, kind), 0)
            limit = BUDGET[kind]
            if kind == K_DNS:
                seen = self._seen[k] = self._seen.get(k, 0) + 1
                if seen > DNS_BURST:
                    limit = DNS_BURST_BUDGET
            if used >= limit:
                continue
            budget[(k, kind)] = used + 1
            keep.append(q)
        self.dropped += m - len(keep)
        if not keep:
            return []
        offs = (batch.off[idx] + rec["l3_off"]).tolist()
        ends = (batch.off[idx] + batch.caplen[idx]).tolist()
        flow_id = fi.flow_id[idx].tolist()
        direction = fi.direction[idx].tolist()
        ts = (ts_ns / 1e9).tolist()
        kind_l = kinds.tolist()
        buf = batch.buf
        out: list[RareFrame] = []
        for q in keep:
            src, dst = self._keys(rec[q])
            kind = kind_l[q]
            out.append(RareFrame(ts[q], batch.file_index, batch.frame0 + int(idx[q]), int(rec["l3"][q]),
                                 buf[offs[q]:ends[q]].tobytes(), src, dst, KINDS[K_FIRST if kind == K_FIRST_LOGIN else kind],
                                 int(flow_id[q]), int(direction[q])))
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
