"""Mirrored traffic that arrives in a tunnel (ERSPAN types I, II and III, VXLAN, GRE bridging,
Cisco FabricPath): the devices and flows are the inner hosts, as tshark sees the inner frames.
Captures are crafted here with scapy (FabricPath, which scapy lacks, as bytes)."""

from __future__ import annotations

import struct
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import TSHARK, needs_tshark
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III
from scapy.layers.inet import GRE, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

import iotwatch

SWITCH_A, SWITCH_B = "00:de:ad:00:00:01", "00:de:ad:00:00:02"  # the tunnel's ends: never devices
HOSTS = [(f"28:57:be:00:00:{k:02x}", f"192.168.1.{10 + k}") for k in range(1, 5)]
SERVER = ("00:11:22:33:44:55", "93.184.216.34")


def inner_frames() -> list[Packet]:
    """Each host opens a TCP connection to the server and sends a UDP datagram; the server answers."""
    out: list[Packet] = []
    for k, (mac, ip) in enumerate(HOSTS):
        sport = 40000 + k
        out += [
            Ether(src=mac, dst=SERVER[0]) / IP(src=ip, dst=SERVER[1]) / TCP(sport=sport, dport=443, flags="S", seq=k),
            Ether(src=SERVER[0], dst=mac) / IP(src=SERVER[1], dst=ip) / TCP(sport=443, dport=sport, flags="SA"),
            Ether(src=mac, dst=SERVER[0]) / Dot1Q(vlan=20) / IP(src=ip, dst=SERVER[1]) / UDP(sport=sport, dport=53)
            / Raw(b"\x12\x34\x01\x00" + bytes(8)),
        ]
    return out


def outer(inner: Packet, kind: str, seq: int) -> Packet | bytes:
    o4 = Ether(src=SWITCH_A, dst=SWITCH_B) / IP(src="10.0.0.1", dst="10.0.0.2")
    if kind == "erspan1":
        return o4 / GRE(proto=0x88BE) / inner
    if kind == "erspan2":
        return o4 / GRE(proto=0x88BE, seqnum_present=1, sequence_number=seq) / ERSPAN_II(session_id=7) / inner
    if kind == "erspan3":
        return o4 / GRE(proto=0x22EB, seqnum_present=1, sequence_number=seq) / ERSPAN_III(session_id=7) / inner
    if kind == "erspan3_v6":
        return (Ether(src=SWITCH_A, dst=SWITCH_B) / IPv6(src="fd00::1", dst="fd00::2")
                / GRE(proto=0x22EB, seqnum_present=1, sequence_number=seq) / ERSPAN_III(session_id=7) / inner)
    if kind == "gre_teb":
        return o4 / GRE(proto=0x6558, key_present=1, key=5) / inner
    if kind == "vxlan":
        return o4 / UDP(sport=50000 + seq, dport=4789) / VXLAN(vni=100, flags=0x08) / inner
    if kind == "fabricpath":  # outer switch-ID addresses, 0x8903, FTag/TTL, then the classical frame
        return (bytes.fromhex("020000010001") + bytes.fromhex("020000020002") + struct.pack("!HH", 0x8903, 0x0401)
                + bytes(inner))
    raise ValueError(kind)


KINDS = ["erspan1", "erspan2", "erspan3", "erspan3_v6", "gre_teb", "vxlan", "fabricpath"]


def write(kind: str, path: Path) -> None:
    pkts = []
    for k, f in enumerate(inner_frames()):
        p = outer(f, kind, k)
        p = Ether(p) if isinstance(p, bytes) else p
        p.time = 1_700_000_000 + k * 0.01
        pkts.append(p)
    wrpcap(str(path), pkts)


@pytest.mark.parametrize("kind", KINDS)
def test_devices_and_flows_are_the_inner_hosts(kind: str, tmp_path: Path) -> None:
    path = tmp_path / f"{kind}.pcap"
    write(kind, path)
    a = iotwatch.analyze(path, detect=False, identify=False)
    assert a.stats.undecodable == {"link": 0, "network": 0, "transport": 0}
    macs = {d.mac for d in a.devices.values()}
    assert macs == {m for m, _ in HOSTS} | {SERVER[0]}  # no switch, no tunnel endpoint
    for mac, ip in HOSTS:
        d = a.devices[mac]
        assert d.ips == [ip] and d.packets_out == 2 and d.packets_in == 1
    flows = {(r["proto"], r["src_ip"], r["dest_port"]) for r in a.flows.to_pylist()}
    assert flows == {(p, ip, port) for _m, ip in HOSTS for p, port in ((6, 443), (17, 53))}
    vlans = {r["vlan"] for r in a.flows.to_pylist() if r["proto"] == 17}
    assert vlans == {20}  # the inner frame's VLAN


@needs_tshark
@pytest.mark.parametrize("kind", KINDS)
def test_inner_hosts_counted_as_tshark_counts_them(kind: str, tmp_path: Path) -> None:
    path = tmp_path / f"{kind}.pcap"
    write(kind, path)
    r = subprocess.run([TSHARK or "tshark", "-r", str(path), "-T", "fields", "-E", "occurrence=l", "-e", "eth.src",
                        "-e", "ip.src"], capture_output=True, text=True, check=True)
    theirs = Counter(tuple(line.split("\t")) for line in r.stdout.splitlines())
    a = iotwatch.analyze(path, detect=False, identify=False)
    ours = Counter({(d.mac, d.ips[0]): d.packets_out for d in a.devices.values()})
    assert ours == theirs


def test_a_plain_gre_or_udp_packet_is_not_taken_for_a_tunnel(tmp_path: Path) -> None:
    path = tmp_path / "plain.pcap"
    pkts = [Ether(src=SWITCH_A, dst=SWITCH_B) / IP(src="10.0.0.1", dst="10.0.0.2") / GRE(proto=0x0800)
            / IP(src="1.1.1.1", dst="2.2.2.2") / UDP(sport=1, dport=2),
            Ether(src=SWITCH_A, dst=SWITCH_B) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5, dport=4789)
            / Raw(bytes(20))]  # VXLAN port, I flag clear: not VXLAN
    for k, p in enumerate(pkts):
        p.time = 1_700_000_000 + k
    wrpcap(str(path), pkts)
    a = iotwatch.analyze(path, detect=False, identify=False)
    assert set(a.devices) == {SWITCH_A, SWITCH_B}
    assert sorted(r["proto"] for r in a.flows.to_pylist()) == [17, 47]
