"""Capture file → rare frames, read with dpkt, for training and tests without the pipeline.

The pipeline's sidecar (``iotwatch.sidecar``) sets the rare packets aside while it streams;
this module does the same job the slow way, from a capture file, so that the type model can
be trained on captures and the inventory tested on its own. The rules follow the sidecar's
contract: ``kind`` by port, plus the first payload packet of each flow in each direction;
``data`` from the IP (or ARP) header on; device keys are lower-case MACs (IP strings without
Ethernet); at most ``budget`` frames per (device, kind).
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


_UDP_KINDS = {53: "dns", 67: "dhcp", 68: "dhcp", 5353: "mdns", 5355: "llmnr", 1900: "ssdp", 3702: "wsd",
              123: "ntp", 37020: "discovery", 37810: "discovery", 34569: "discovery", 10001: "discovery"}
_TCP_KINDS = {53: "dns"}


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


def rare_frames(path: str | Path, file_index: int = 0, budget: int = 64,
                payload_budget: int = 1024) -> Iterator[Frame]:
    """Rare frames of one capture, in order; stops quietly at damage."""

    per: Counter[tuple[str | None, str]] = Counter()
    seen_dir: set[tuple[object, ...]] = set()
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
            got = _l3_of(linktype, bytes(buf))
            if got is None:
                continue
            l3, data, smac, dmac = got
            if l3 == 1:
                src = smac
                kind = "arp"
                if per[(src, kind)] >= budget:
                    continue
                per[(src, kind)] += 1
                yield Frame(float(ts), file_index, n, 1, data, src, None if dmac is None or _is_group_mac(dmac) else dmac, kind)
                continue
            ips = addresses(l3, data)
            if ips is None:
                continue
            sip, dip = ips
            src, dst = _device(smac, sip), _device(dmac, dip)
            t = transport(l3, data)
            if t is None:
                continue
            proto, sp, dp, payload = t
            table = _UDP_KINDS if proto == 17 else _TCP_KINDS
            kind = table.get(dp) or table.get(sp)
            if kind is None:
                if not payload:
                    continue
                fkey = (proto, sip, sp, dip, dp)
                if fkey in seen_dir:
                    continue
                seen_dir.add(fkey)
                kind = "first_payload"
                b = payload_budget
            else:
                b = budget
            if per[(src, kind)] >= b:
                continue
            per[(src, kind)] += 1
            yield Frame(float(ts), file_index, n, l3, data, src, dst, kind)
    finally:
        f.close()  # type: ignore[attr-defined]
