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
#: UDP ports of camera/recorder vendor discovery: Hikvision SADP (37020), Dahua DHIP (37810),
#: Xiongmai/NetSurveillance (34569), Axis/Bonjour-less discovery and UPnP helpers are covered by
#: SSDP and mDNS.
DISCOVERY_PORTS = (37020, 37810, 34569)


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
                elif dp == 123 and sp == 123 or dp == 123:
                    k = 8
                elif dp == 37020 or sp == 37020 or dp == 37810 or sp == 37810 or dp == 34569 or sp == 34569:
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


class Sidecar:
    """Picks rare frames out of decoded batches, within budgets."""

    def __init__(self, per_batch: int = 256, per_device: int = 512, window_s: float = 60.0) -> None:
        self.per_batch = per_batch
        self.per_device = per_device
        self.window_ns = int(window_s * 1e9)
        self._idx = np.empty(0, np.int64)
        self._kind = np.empty(0, np.int8)
        self._counts = np.zeros(len(KINDS), np.int64)
        self._budget: dict[tuple[str | None, int], int] = {}
        self._budget_window = -1
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
        kinds = self._kind[:m].tolist()
        ts_ns = batch.ts_ns[idx].tolist()
        offs = (batch.off[idx] + rec["l3_off"]).tolist()
        ends = (batch.off[idx] + batch.caplen[idx]).tolist()
        flow_id = fi.flow_id[idx].tolist()
        direction = fi.direction[idx].tolist()
        buf = batch.buf
        out: list[RareFrame] = []
        for q in range(m):
            r = rec[q]
            ts = ts_ns[q]
            w = ts // self.window_ns
            if w > self._budget_window:
                self._budget.clear()
                self._budget_window = w
            src, dst = _keys(r)
            key = (src, kinds[q])
            used = self._budget.get(key, 0)
            if used >= self.per_device:
                self.dropped += 1
                continue
            self._budget[key] = used + 1
            out.append(RareFrame(ts / 1e9, batch.file_index, batch.frame0 + int(idx[q]), int(r["l3"]),
                                 buf[offs[q]:ends[q]].tobytes(), src, dst, KINDS[kinds[q]],
                                 int(flow_id[q]), int(direction[q])))
        return out


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
