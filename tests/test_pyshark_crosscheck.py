"""pyshark (Wireshark's dissectors) as a cross-check of our decoder on chosen packets."""

from __future__ import annotations

import pytest
from conftest import ROOT, needs_tshark

from iotwatch.addrs import ip_str, mac_str
from iotwatch.capture import open_capture
from iotwatch.decode import L3_IPV4, L3_IPV6, NO_MAC, Packets, decode

DEMO = ROOT / "pcaps" / "demo-office.pcap"
CHOSEN = list(range(1, 4109, 37))  # every 37th frame of the demo: DHCP, ARP, DNS, TLS, RTSP, RTP, SNMP...


@needs_tshark
def test_decoder_agrees_with_wireshark_on_chosen_packets() -> None:
    pyshark = pytest.importorskip("pyshark")
    ours: dict[int, dict[str, object]] = {}
    r = open_capture(DEMO)
    out = Packets.allocate(1 << 15)
    for b in r.batches():
        pk = decode(b, out)
        for k in range(len(b)):
            frame = b.frame0 + k
            if frame not in CHOSEN:
                continue
            row: dict[str, object] = {"len": int(b.wirelen[k])}
            if pk.src_mac[k] != NO_MAC:
                row["eth.src"], row["eth.dst"] = mac_str(int(pk.src_mac[k])), mac_str(int(pk.dst_mac[k]))
            if pk.l3[k] in (L3_IPV4, L3_IPV6):
                v6 = pk.l3[k] == L3_IPV6
                row["ip.src"] = ip_str(v6, int(pk.src_hi[k]), int(pk.src_lo[k]))
                row["ip.dst"] = ip_str(v6, int(pk.dst_hi[k]), int(pk.dst_lo[k]))
                if pk.proto[k] in (6, 17):
                    row["sport"], row["dport"] = int(pk.sport[k]), int(pk.dport[k])
                if pk.proto[k] == 6:
                    row["flags"] = int(pk.tcp_flags[k])
            ours[frame] = row
    cap = pyshark.FileCapture(str(DEMO), keep_packets=False,
                              display_filter=" or ".join(f"frame.number=={n}" for n in CHOSEN))
    seen = 0
    try:
        for p in cap:
            n = int(p.number)
            mine = ours[n]
            assert mine["len"] == int(p.length)
            assert mine["eth.src"] == p.eth.src and mine["eth.dst"] == p.eth.dst
            ip = getattr(p, "ip", None) or getattr(p, "ipv6", None)
            if ip is not None and "ip.src" in mine:
                assert (mine["ip.src"], mine["ip.dst"]) == (str(ip.src), str(ip.dst)), n
            if "tcp" in p and "sport" in mine:
                assert (mine["sport"], mine["dport"]) == (int(p.tcp.srcport), int(p.tcp.dstport)), n
                assert mine["flags"] == int(p.tcp.flags, 16), n
            elif "udp" in p and "sport" in mine:
                assert (mine["sport"], mine["dport"]) == (int(p.udp.srcport), int(p.udp.dstport)), n
            seen += 1
    finally:
        cap.close()
    assert seen == len(CHOSEN)
