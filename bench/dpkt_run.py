"""dpkt contender for `make bench`: the same job as bench/baseline.c, with dpkt objects.

dpkt.pcap.Reader yields (timestamp, frame); every frame is decoded as a
dpkt.ethernet.Ethernet object (which also strips an 802.1Q tag), and IPv4 TCP/UDP
packets are aggregated per direction per bidirectional 5-tuple ("fwd" = the direction of
the flow's first packet). Bytes are the captured frame length: dpkt's reader does not
expose the wire length; the benchmark captures are untruncated, so the two are equal.

    python bench/dpkt_run.py FILE.pcap   -> one JSON line on stdout

elapsed_s covers opening and reading the file and aggregating, not interpreter start-up
or imports.
"""

from __future__ import annotations

import json
import sys
import time

import dpkt


def run(path: str) -> dict[str, object]:
    t0 = time.perf_counter()
    flows: dict[tuple[bytes, int, bytes, int, int], list[int]] = {}
    packets = total_bytes = l4 = 0
    ip_cls, tcp_cls, udp_cls = dpkt.ip.IP, dpkt.tcp.TCP, dpkt.udp.UDP
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            packets += 1
            n = len(buf)
            total_bytes += n
            try:
                eth = dpkt.ethernet.Ethernet(buf)
            except (dpkt.UnpackError, IndexError, ValueError):
                continue
            ip = eth.data
            if not isinstance(ip, ip_cls) or ip.p not in (6, 17) or ip.offset:
                continue
            seg = ip.data
            if not isinstance(seg, (tcp_cls, udp_cls)):
                continue
            l4 += 1
            src, dst, sp, dp = ip.src, ip.dst, seg.sport, seg.dport
            from_a = (src, sp) <= (dst, dp)
            key = (src, sp, dst, dp, ip.p) if from_a else (dst, dp, src, sp, ip.p)
            e = flows.get(key)
            if e is None:
                flows[key] = [from_a, 1, 0, n, 0]
            elif e[0] == from_a:
                e[1] += 1
                e[3] += n
            else:
                e[2] += 1
                e[4] += n
    elapsed = time.perf_counter() - t0
    vals = list(flows.values())
    return {
        "tool": "dpkt",
        "packets": packets,
        "bytes": total_bytes,
        "ipv4_l4": l4,
        "flows": len(flows),
        "pkts_fwd": sum(v[1] for v in vals),
        "pkts_rev": sum(v[2] for v in vals),
        "bytes_fwd": sum(v[3] for v in vals),
        "bytes_rev": sum(v[4] for v in vals),
        "elapsed_s": round(elapsed, 6),
        "packets_per_s": round(packets / elapsed, 1) if elapsed > 0 else 0.0,
    }


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: dpkt_run.py FILE.pcap", file=sys.stderr)
        return 2
    print(json.dumps(run(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
