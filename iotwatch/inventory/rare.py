"""Capture file → rare frames, read with dpkt, for training and tests without the pipeline.

The pipeline's sidecar (``iotwatch.sidecar``) sets the rare packets aside while it streams and
the inventory (``analyser.Inventory.on_rare``) thins them again; this module does the same job the
slow way, from a capture file, so that the type model is trained on what the pipeline gives it:

- ``kind`` as the sidecar's kernel names it: UDP DNS *queries* (destination port 53), DHCP
  (67/68, 546/547), mDNS, LLMNR (destination 5355), SSDP, WS-Discovery, NTP, vendor discovery
  (37020, 37810, 34569, destination 10001/137/138), ARP requests; any other TCP/UDP packet that
  is the first payload of its flow in its direction is ``first_payload`` (flows end after 120 s
  idle, as in the flow table);
- budgets per sending device, kind and 60-s window (epoch aligned): the sidecar's
  ``BUDGET`` (DNS 24, DHCP 16, first payloads 16 plus 256 on login ports…), then the
  inventory's ``PER_KIND`` (8) for dns, first_payload, arp and ntp;
- ``data`` from the IP (or ARP) header on; device keys are lower-case MACs (IP strings without
  Ethernet).

- the sidecar's cap of 128 frames of a kind per batch, over batches of 32,768 packets of one
  file (a busy capture reaches it: 128 first payloads of the whole network per batch).

Not mirrored: batches cut short by the 4 MiB read buffer, DNS burst budgets (above the
inventory's 8 anyway) and flows' 30-minute active timeout.
"""

from __future__ import annotations

import gzip
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dpkt

from .parse import addresses, transport


@dataclass(frozen=True, slots=True)
class Frame:
    """Same fields as ``iotwatch.sidecar.RareFrame``."""

    ts: float
    file_index: int
    frame: int
    l3: int
    data: bytes
    src: str | None
    dst: str | None
    kind: str


_UDP_KINDS = {67: "dhcp", 68: "dhcp", 546: "dhcp", 547: "dhcp", 5353: "mdns", 1900: "ssdp", 3702: "wsd",
              123: "ntp", 37020: "discovery", 37810: "discovery", 34569: "discovery"}
_UDP_DST_KINDS = {5355: "llmnr", 10001: "discovery", 137: "discovery", 138: "discovery"}
_LOGIN_PORTS = (21, 22, 23, 2323)
WINDOW_S = 60  # the sidecar's and the inventory's budget window
BATCH, PER_BATCH = 1 << 15, 128  # the pipeline's batch size and the sidecar's per-batch cap per kind
IDLE_S = 120  # flow idle timeout: a flow quiet this long starts again (its first payloads are new)


def _budgets() -> tuple[dict[str, int], int, int]:
    """(budget per kind, budget of login-port first payloads, the inventory's per-kind cap)."""
    from ..sidecar import BUDGET, KINDS
    from .analyser import Inventory

    per = {KINDS[k]: n for k, n in BUDGET.items() if 0 < k < len(KINDS)}
    login = max(BUDGET.values())
    try:
        from ..sidecar import K_FIRST_LOGIN

        login = BUDGET[K_FIRST_LOGIN]
    except ImportError:
        pass
    return per, login, Inventory.PER_KIND


def _kind(proto: int, sp: int, dp: int, payload: bytes) -> str | None:
    """The sidecar's kind of a TCP/UDP packet, before the first-payload test (None: not rare)."""
    if proto != 17:
        return None
    if dp == 53 and len(payload) >= 3 and not payload[2] & 0x80:
        return "dns"
    return _UDP_KINDS.get(dp) or _UDP_KINDS.get(sp) or _UDP_DST_KINDS.get(dp)


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _l3_of(linktype: int, buf: bytes) -> tuple[int, bytes, str | None, str | None] | None:
    """(l3, bytes from the IP/ARP header, source MAC, destination MAC) of one frame."""
    if linktype == dpkt.pcap.DLT_EN10MB:
        if len(buf) < 14:
            return None
        dst, src = buf[0:6], buf[6:12]
        et, off = struct.unpack_from("!H", buf, 12)[0], 14
        while et in (0x8100, 0x88A8) and len(buf) >= off + 4:
            et, off = struct.unpack_from("!H", buf, off + 2)[0], off + 4
        if et == 0x8864 and len(buf) >= off + 8:  # PPPoE session
            ppp = struct.unpack_from("!H", buf, off + 6)[0]
            et, off = {0x0021: 0x0800, 0x0057: 0x86DD}.get(ppp, 0), off + 8
        l3 = {0x0800: 4, 0x86DD: 6, 0x0806: 1}.get(et)
        return (l3, buf[off:], _mac(src), _mac(dst)) if l3 else None
    if linktype in (dpkt.pcap.DLT_LINUX_SLL, 276):
        off, proto_at = (16, 14) if linktype == dpkt.pcap.DLT_LINUX_SLL else (20, 0)
        if len(buf) < off:
            return None
        et = struct.unpack_from("!H", buf, proto_at)[0]
        l3 = {0x0800: 4, 0x86DD: 6, 0x0806: 1}.get(et)
        return (l3, buf[off:], None, None) if l3 else None
    if linktype in (dpkt.pcap.DLT_RAW, 12, 14, 228, 229, dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
        body = buf[4:] if linktype in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP) else buf
        if not body:
            return None
        v = body[0] >> 4
        return (v, body, None, None) if v in (4, 6) else None
    return None


def _is_group_mac(mac: str) -> bool:
    return bool(int(mac[:2], 16) & 1)


def _device(mac: str | None, ip: str | None) -> str | None:
    if mac is None:
        return ip
    if _is_group_mac(mac):
        return None
    return mac  # an external address behind a gateway is keyed on the gateway's MAC, as in the pipeline


def _open(path: Path) -> object:
    f = open(path, "rb")
    magic = f.read(2)
    f.seek(0)
    if magic == b"\x1f\x8b":
        f.close()
        return gzip.open(path, "rb")
    return f


def rare_frames(path: str | Path, file_index: int = 0) -> Iterator[Frame]:
    """Rare frames of one capture, in order, as the pipeline's inventory receives them; stops
    quietly at damage."""
    budget, login_budget, thin = _budgets()
    thinned = ("dns", "first_payload", "arp", "ntp")
    per: Counter[tuple[str | None, str]] = Counter()  # this window: (device, kind or "login") → kept
    inv: Counter[tuple[str | None, str]] = Counter()  # this window: what the inventory kept
    window = None
    batch: Counter[str] = Counter()  # this batch: kind or "login" → kept (all devices)
    flows: dict[tuple[object, ...], list[float]] = {}  # unordered 5-tuple → [last ts, directions with payload]
    f = _open(Path(path))
    try:
        try:
            reader = dpkt.pcap.UniversalReader(f)
        except Exception:
            return
        linktype = reader.datalink()
        n = 0
        it = iter(reader)
        while True:
            try:
                ts, buf = next(it)
            except StopIteration:
                return
            except Exception:
                return
            n += 1
            if n % BATCH == 1:
                batch.clear()
            ts = float(ts)
            w = int(ts // WINDOW_S)
            if w != window:
                window = w
                per.clear()
                inv.clear()
            got = _l3_of(linktype, bytes(buf))
            if got is None:
                continue
            l3, data, smac, dmac = got
            if l3 == 1:
                if len(data) < 8 or data[6:8] != b"\x00\x01":  # ARP requests only
                    continue
                src, dst = smac, None if dmac is None or _is_group_mac(dmac) else dmac
                kind: str | None = "arp"
                sub = "arp"
            else:
                ips = addresses(l3, data)
                if ips is None:
                    continue
                sip, dip = ips
                src, dst = _device(smac, sip), _device(dmac, dip)
                t = transport(l3, data)
                if t is None:
                    continue
                proto, sp, dp, payload = t
                kind = _kind(proto, sp, dp, payload)
                sub = kind or ""
                if kind is None:
                    if proto not in (6, 17):
                        continue
                    a, b = (sip, sp), (dip, dp)
                    fkey = (proto, *min(a, b), *max(a, b))
                    st = flows.get(fkey)
                    if st is None or ts - st[0] > IDLE_S:
                        st = flows[fkey] = [ts, 0.0]
                    st[0] = ts
                    if not payload:
                        continue
                    bit = 1 if (sip, sp) == fkey[1:3] else 2
                    if int(st[1]) & bit:
                        continue
                    st[1] = int(st[1]) | bit
                    kind = "first_payload"
                    sub = "login" if sp in _LOGIN_PORTS or dp in _LOGIN_PORTS else kind
            key = (src, sub)
            if kind is None:
                continue
            if batch[sub] >= PER_BATCH or per[key] >= (login_budget if sub == "login" else budget.get(kind, 0)):
                continue
            per[key] += 1
            batch[sub] += 1
            if kind in thinned:
                ikey = (src, kind)
                if inv[ikey] >= thin:
                    continue
                inv[ikey] += 1
            yield Frame(ts, file_index, n, l3, data, src, dst, kind)
    finally:
        f.close()  # type: ignore[attr-defined]
