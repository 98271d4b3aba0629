"""Wireshark (tshark) as the oracle for our counts.

One tshark run per capture gives (a) the exact per-MAC counts of ``-z endpoints,eth`` and
(b) per-packet fields from which exact per-5-tuple packet and byte totals are summed (the
``-z conv,tcp``/``conv,udp`` tables round bytes to kB/MB, so their frame counts are checked
and their bytes are summed from ``frame.len`` instead).

IP reassembly is turned off so that every fragment is its own frame, as on the wire. Frames
that are later fragments of a TCP/UDP datagram are attributed to the 5-tuple of the first
fragment with the same (source, destination, protocol, IP id), exactly what the wire says.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

TSHARK = shutil.which("tshark")

FIELDS = ["frame.len", "ip.src", "ip.dst", "ip.proto", "ip.id", "ip.flags.mf", "ip.frag_offset", "ipv6.src",
          "ipv6.dst", "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport", "icmp.type", "icmpv6.type",
          "ipv6.fraghdr.ident", "ipv6.fraghdr.offset", "ipv6.nxt"]

Tuple5 = tuple[int, tuple[str, int], tuple[str, int]]  # proto, (addr, port) pair sorted


@dataclass
class Endpoint:
    tx_packets: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    rx_bytes: int = 0


@dataclass
class Oracle:
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    # per sorted 5-tuple: packets/bytes sent by the lower endpoint, then by the higher
    conv: dict[Tuple5, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0]))
    conv_frames: dict[Tuple5, int] = field(default_factory=dict)  # total frames from -z conv,tcp/udp
    # later IP fragments per 5-tuple: on the wire they belong to the datagram's flow, but with
    # reassembly off the conversation tables do not count them
    later_fragments: dict[Tuple5, int] = field(default_factory=lambda: defaultdict(int))
    frames: int = 0
    frame_bytes: int = 0


def _norm(addr: str) -> str:
    return str(ip_address(addr))


def run_tshark(path: Path) -> Oracle:
    assert TSHARK
    cmd = [TSHARK, "-n", "-r", str(path), "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE",
           "-o", "tcp.analyze_sequence_numbers:FALSE", "-T", "fields", "-E", "occurrence=f", "-E", "separator=\t"]
    for f in FIELDS:
        cmd += ["-e", f]
    cmd += ["-z", "endpoints,eth", "-z", "conv,tcp", "-z", "conv,udp"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    o = Oracle()
    frag_first: dict[tuple[str, str, int, int], Tuple5 | None] = {}
    lines = out.splitlines()
    k = 0
    while k < len(lines) and not lines[k].startswith("====="):
        row = lines[k].split("\t")
        k += 1
        if len(row) < len(FIELDS):
            continue
        v = dict(zip(FIELDS, row, strict=False))
        flen = int(v["frame.len"])
        o.frames += 1
        o.frame_bytes += flen
        if v["ip.src"] and v["ip.proto"] == "41" and v["ipv6.src"]:  # 6in4/6rd: the inner IPv6 packet is the flow
            src, dst = _norm(v["ipv6.src"]), _norm(v["ipv6.dst"])
            proto = 6 if v["tcp.srcport"] else (17 if v["udp.srcport"] else -1)
            fid, later, first_frag = -1, False, False
        elif v["ip.src"]:
            src, dst, proto = _norm(v["ip.src"]), _norm(v["ip.dst"]), int(v["ip.proto"] or -1)
            fid = int(v["ip.id"], 0) if v["ip.id"] else -1
            later = bool(v["ip.frag_offset"]) and int(v["ip.frag_offset"]) > 0
            first_frag = v["ip.flags.mf"] in ("1", "True") and not later
        elif v["ipv6.src"]:
            src, dst = _norm(v["ipv6.src"]), _norm(v["ipv6.dst"])
            proto = 6 if v["tcp.srcport"] else (17 if v["udp.srcport"] else -1)
            fid = int(v["ipv6.fraghdr.ident"], 0) if v["ipv6.fraghdr.ident"] else -1
            later = bool(v["ipv6.fraghdr.offset"]) and int(v["ipv6.fraghdr.offset"]) > 0
            first_frag = fid >= 0 and not later
            if v["icmpv6.type"]:
                proto = -1
        else:
            continue
        if later:
            key = frag_first.get((src, dst, proto, fid))
            if key is None:
                continue
            tup, fwd = key
            o.later_fragments[tup] += 1
        else:
            if proto == 6 and v["tcp.srcport"]:
                sp, dp = int(v["tcp.srcport"]), int(v["tcp.dstport"])
            elif proto == 17 and v["udp.srcport"]:
                sp, dp = int(v["udp.srcport"]), int(v["udp.dstport"])
            else:
                continue
            a, b = (src, sp), (dst, dp)
            fwd = (ip_address(a[0]).packed, a[1]) <= (ip_address(b[0]).packed, b[1])
            tup = (proto, a, b) if fwd else (proto, b, a)
            if first_frag:
                frag_first[(src, dst, proto, fid)] = (tup, fwd)
        c = o.conv[tup]
        if fwd:
            c[0] += 1
            c[1] += flen
        else:
            c[2] += 1
            c[3] += flen
    section = ""
    for line in lines[k:]:
        if line.startswith("Ethernet Endpoints"):
            section = "eth"
        elif line.startswith("TCP Conversations"):
            section = "tcp"
        elif line.startswith("UDP Conversations"):
            section = "udp"
        elif section == "eth":
            m = re.match(r"^([0-9a-f:]{17})\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", line)
            if m:
                o.endpoints[m.group(1)] = Endpoint(int(m.group(4)), int(m.group(5)), int(m.group(6)), int(m.group(7)))
        elif section in ("tcp", "udp"):
            m = re.match(r"^(\S+):(\d+)\s+<->\s+(\S+):(\d+)\s+(\d+) .*?\s+(\d+) .*?\s+(\d+) ", line)
            if m:
                proto = 6 if section == "tcp" else 17
                a = (_norm(m.group(1).strip("[]")), int(m.group(2)))
                b = (_norm(m.group(3).strip("[]")), int(m.group(4)))
                fwd = (ip_address(a[0]).packed, a[1]) <= (ip_address(b[0]).packed, b[1])
                tup = (proto, a, b) if fwd else (proto, b, a)
                o.conv_frames[tup] = o.conv_frames.get(tup, 0) + int(m.group(5)) + int(m.group(6))
    return o
