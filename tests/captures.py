"""Small generated captures with their expected truth, for reader, decoder and flow tests.

Every factory writes one file into the directory it is given and returns what a correct reader
must find there.  The truth is computed from the frames as they were built (the addresses and
ports passed to scapy, the lengths of the bytes written), never by reading the file back.

* ``Capture`` (well-formed files): one ``Record`` per packet, and derived tables:
  ``macs`` / ``ips`` (per address: packets and bytes sent and received, first/last seen) and
  ``conversations`` (per TCP/UDP 5-tuple: packets and bytes in each direction).
* ``DamagedCapture`` (broken files): where the damage starts, and the ``Capture`` of the
  records before it, which a reader must still deliver.

Conventions, written down once:

* Bytes are always the record's original length (Wireshark's ``frame.len``), never the
  captured length: a snaplen-truncated packet counts in full.
* ``macs``: unicast addresses only (broadcast and multicast are not devices).  Ethernet frames
  count for their source (sent) and destination (received).  Linux cooked headers (SLL, SLL2)
  carry only the sender's address, so there a frame counts only as sent.
* ``ips``: every frame with an IPv4/IPv6 header, each fragment included; unicast addresses only
  (no multicast, broadcast or unspecified address).
* ``conversations``: TCP and UDP only, keyed by ``conv_key(proto, endpoint, endpoint)`` with the
  endpoints sorted, so ``a`` is the lower (address, port).  Every frame counts, including the
  fragments of a datagram after the first (they belong to the datagram's 5-tuple).
  ``wireshark_conversations`` is Wireshark's ``-z conv,tcp/udp`` view instead: it counts a
  fragmented datagram once, on the frame that completes its reassembly, with that frame's length.
* Damage offsets are the file offset of the first byte of the damaged structure (the file
  header, a record header, a pcapng block), so everything before it is intact.
"""

from __future__ import annotations

import gzip
import ipaddress
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    PadN,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet, Raw

# Link-layer header types (https://www.tcpdump.org/linktypes.html).
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_USER0 = 147
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

PCAP_MAGIC_USEC = 0xA1B2C3D4
PCAP_MAGIC_NSEC = 0xA1B23C4D
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
SNAPLEN = 262_144
START_NS = 1_754_000_000 * 10**9

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_LLDP = 0x88CC
ETHERTYPE_LOCAL_EXPERIMENTAL = 0x88B5

# The little office every capture is made of.
GATEWAY_MAC, GATEWAY_IP, GATEWAY_IP6 = "50:c7:bf:3e:91:20", "192.168.1.1", "2001:db8:1::1"
PC_MAC, PC_IP, PC_IP6 = "b8:ca:3a:5d:14:e2", "192.168.1.101", "2001:db8:1::101"
PC_LL6 = "fe80::baca:3aff:fe5d:14e2"
NVR_MAC, NVR_IP = "44:19:b6:82:3a:10", "192.168.1.60"
CAMERA_MAC, CAMERA_IP = "28:57:be:4c:19:a3", "192.168.1.64"
PRINTER_MAC, PRINTER_IP = "3c:d9:2b:5b:2e:07", "192.168.1.20"
SWITCH_MAC = "00:1e:bd:4a:77:18"
SERVER_IP, SERVER_IP6 = "93.184.216.34", "2001:db8:ffff::443"
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
LLDP_MULTICAST_MAC = "01:80:c2:00:00:0e"


# --------------------------------------------------------------------------------------------
# Truth types
# --------------------------------------------------------------------------------------------

Endpoint = tuple[str, int]  # (IP address, port)
ConvKey = tuple[int, Endpoint, Endpoint]  # (IP protocol, lower endpoint, higher endpoint)


def conv_key(proto: int, one: Endpoint, other: Endpoint) -> ConvKey:
    """The key of a TCP/UDP conversation: protocol and the two endpoints in sorted order."""
    a, b = sorted((one, other), key=lambda e: (ipaddress.ip_address(e[0]), e[1]))
    return (proto, a, b)


@dataclass(frozen=True, slots=True)
class Flow:
    """The 5-tuple a frame belongs to, as it was sent (src = this frame's sender)."""

    proto: int
    src: Endpoint
    dst: Endpoint


@dataclass(frozen=True, slots=True)
class Frame:
    """One packet as built: its bytes on the wire and what was put in it."""

    data: bytes  # the whole frame, link-layer header included (its length is the original length)
    linktype: int
    time_ns: int | None  # None: the record has no timestamp (pcapng simple packet block)
    src_mac: str | None = None
    dst_mac: str | None = None  # None where the link header has no destination (SLL, raw IP)
    src_ip: str | None = None
    dst_ip: str | None = None
    flow: Flow | None = None  # TCP/UDP only
    vlans: tuple[int, ...] = ()  # outermost first
    completes_datagram: bool = True  # False for a fragment that does not complete reassembly

    @property
    def wire_len(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class Record:
    """A frame as stored in a file."""

    frame: Frame
    offset: int  # file offset of the record header / block
    caplen: int
    interface: int = 0

    @property
    def wire_len(self) -> int:
        return self.frame.wire_len


@dataclass(frozen=True, slots=True)
class Counts:
    """What one address sent and received (bytes are original frame lengths)."""

    packets_out: int = 0
    packets_in: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    first_seen_ns: int | None = None
    last_seen_ns: int | None = None

    @property
    def packets(self) -> int:
        return self.packets_out + self.packets_in

    @property
    def bytes(self) -> int:
        return self.bytes_out + self.bytes_in


@dataclass(frozen=True, slots=True)
class ConvCounts:
    """One conversation; ``ab`` is from the lower endpoint (``key[1]``) to the higher one."""

    packets_ab: int = 0
    bytes_ab: int = 0
    packets_ba: int = 0
    bytes_ba: int = 0
    initiator: Endpoint | None = None  # the endpoint that sent the first packet


@dataclass(frozen=True)
class Capture:
    """A well-formed capture file and everything a correct reader finds in it."""

    path: Path
    records: tuple[Record, ...]
    description: str = ""

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def packets(self) -> int:
        return len(self.records)

    @property
    def bytes(self) -> int:
        return sum(r.wire_len for r in self.records)

    @property
    def frame_lengths(self) -> list[int]:
        """Original length of each record, in file order (tshark ``-e frame.len``)."""
        return [r.wire_len for r in self.records]

    @property
    def caplens(self) -> list[int]:
        return [r.caplen for r in self.records]

    @property
    def times_ns(self) -> list[int | None]:
        return [r.frame.time_ns for r in self.records]

    @property
    def linktypes(self) -> set[int]:
        return {r.frame.linktype for r in self.records}

    @property
    def macs(self) -> dict[str, Counts]:
        return tally_addresses(
            ((r.frame.src_mac, r.frame.dst_mac, r.wire_len, r.frame.time_ns) for r in self.records),
            is_unicast_mac,
        )

    @property
    def ips(self) -> dict[str, Counts]:
        return tally_addresses(
            ((r.frame.src_ip, r.frame.dst_ip, r.wire_len, r.frame.time_ns) for r in self.records),
            is_unicast_ip,
        )

    @property
    def conversations(self) -> dict[ConvKey, ConvCounts]:
        return tally_conversations((r.frame.flow, r.wire_len) for r in self.records)

    @property
    def wireshark_conversations(self) -> dict[ConvKey, ConvCounts]:
        return tally_conversations(
            (r.frame.flow, r.wire_len) for r in self.records if r.frame.completes_datagram
        )


@dataclass(frozen=True)
class DamagedCapture:
    """A broken file: where the damage starts and the intact records before it."""

    path: Path
    kind: str
    damage_offset: int
    intact: Capture  # the records before the damage (path is the damaged file)
    description: str = ""
    undecodable: int = 0  # well-framed records that cannot be decoded (unknown link type)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def intact_packets(self) -> int:
        return self.intact.packets


# --------------------------------------------------------------------------------------------
# Tallies (shared with the Wireshark cross-check in test_captures_selfcheck.py)
# --------------------------------------------------------------------------------------------


def is_unicast_mac(mac: str | None) -> bool:
    return mac is not None and not int(mac[:2], 16) & 1


def is_unicast_ip(ip: str | None) -> bool:
    if ip is None:
        return False
    address = ipaddress.ip_address(ip)
    return not (address.is_multicast or address.is_unspecified or ip == "255.255.255.255")


def tally_addresses(rows: Iterable[tuple[str | None, str | None, int, int | None]],
                    keep: Callable[[str | None], bool]) -> dict[str, Counts]:
    """(source, destination, length, time) rows to per-address counts, for addresses ``keep`` accepts."""
    table: dict[str, Counts] = {}

    def add(address: str | None, length: int, time_ns: int | None, *, out: bool) -> None:
        if address is None or not keep(address):
            return
        old = table.get(address, Counts())
        seen = [t for t in (old.first_seen_ns, old.last_seen_ns, time_ns) if t is not None]
        table[address] = Counts(
            packets_out=old.packets_out + out, packets_in=old.packets_in + (not out),
            bytes_out=old.bytes_out + length * out, bytes_in=old.bytes_in + length * (not out),
            first_seen_ns=min(seen, default=None), last_seen_ns=max(seen, default=None),
        )

    for src, dst, length, time_ns in rows:
        add(src, length, time_ns, out=True)
        add(dst, length, time_ns, out=False)
    return table


def tally_conversations(rows: Iterable[tuple[Flow | None, int]]) -> dict[ConvKey, ConvCounts]:
    """(flow, length) rows to per-conversation counts; rows without a flow are skipped."""
    table: dict[ConvKey, ConvCounts] = {}
    for flow, length in rows:
        if flow is None:
            continue
        key = conv_key(flow.proto, flow.src, flow.dst)
        old = table.get(key, ConvCounts(initiator=flow.src))
        if flow.src == key[1]:
            table[key] = replace(old, packets_ab=old.packets_ab + 1, bytes_ab=old.bytes_ab + length)
        else:
            table[key] = replace(old, packets_ba=old.packets_ba + 1, bytes_ba=old.bytes_ba + length)
    return table


# --------------------------------------------------------------------------------------------
# Building frames
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hop:
    """A network-layer packet and the link-layer addresses it travels between."""

    src_mac: str
    dst_mac: str
    packet: Packet | bytes  # IP/IPv6/ARP as scapy, or the raw payload of ``ethertype``
    ethertype: int = ETHERTYPE_IPV4
    flow: Flow | None = None  # set for fragments, whose transport header may be elsewhere
    completes_datagram: bool = True


def _ip_fields(packet: Packet | bytes) -> tuple[str | None, str | None, Flow | None]:
    """Addresses and the TCP/UDP 5-tuple of a packet as constructed (scapy fields, not bytes)."""
    if isinstance(packet, bytes) or not isinstance(packet, IP | IPv6):
        return None, None, None
    src, dst = str(packet.src), str(packet.dst)
    transport = packet.getlayer(TCP) or packet.getlayer(UDP)
    if transport is None:
        return src, dst, None
    proto = 6 if isinstance(transport, TCP) else 17
    return src, dst, Flow(proto, (src, int(transport.sport)), (dst, int(transport.dport)))


def _pad(frame: bytes) -> bytes:
    """Ethernet frames shorter than 60 bytes (no FCS) are padded on the wire."""
    return frame + bytes(max(0, 60 - len(frame)))


class Clock:
    """Deterministic, strictly increasing timestamps at a given resolution."""

    def __init__(self, start_ns: int = START_NS, resolution_ns: int = 1_000) -> None:
        self.start_ns = start_ns
        self.resolution_ns = resolution_ns
        self.count = 0

    def __call__(self) -> int:
        i = self.count
        self.count += 1
        ticks = i * 1_234_567 + (i * i * 7_919) % 1_000_000
        return self.start_ns + ticks // self.resolution_ns * self.resolution_ns


_LINK_WITH_SOURCE = {LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2}


def _frame(hop: Hop, data: bytes, linktype: int, time_ns: int | None, *, dst_mac: str | None,
           vlans: tuple[int, ...] = ()) -> Frame:
    src_ip, dst_ip, flow = _ip_fields(hop.packet)
    return Frame(data=data, linktype=linktype, time_ns=time_ns,
                 src_mac=hop.src_mac if linktype in _LINK_WITH_SOURCE else None, dst_mac=dst_mac,
                 src_ip=src_ip, dst_ip=dst_ip, flow=hop.flow or flow, vlans=vlans,
                 completes_datagram=hop.completes_datagram)


def ethernet(hop: Hop, time_ns: int | None, *, vlans: Sequence[int] = (), outer_tpid: int = 0x8100) -> Frame:
    """Ethernet II, optionally 802.1Q-tagged (``vlans`` outermost first; QinQ with 0x88a8)."""
    types = [outer_tpid, *[0x8100] * (len(vlans) - 1), hop.ethertype] if vlans else [hop.ethertype]
    built: Packet = Ether(src=hop.src_mac, dst=hop.dst_mac, type=types[0])
    for vid, inner_type in zip(vlans, types[1:], strict=True):
        built = built / Dot1Q(vlan=vid, type=inner_type)  # an 802.1ad S-tag has the same layout
    built = built / (Raw(hop.packet) if isinstance(hop.packet, bytes) else hop.packet)
    data = _pad(bytes(built))
    return _frame(hop, data, LINKTYPE_ETHERNET, time_ns, dst_mac=hop.dst_mac, vlans=tuple(vlans))


def _packet_bytes(hop: Hop) -> bytes:
    return hop.packet if isinstance(hop.packet, bytes) else bytes(hop.packet)


def _sll_packet_type(hop: Hop, capturing_mac: str) -> int:
    """0 to us, 1 broadcast, 2 multicast, 3 to another host, 4 sent by us."""
    if hop.src_mac == capturing_mac:
        return 4
    if hop.dst_mac == BROADCAST_MAC:
        return 1
    if int(hop.dst_mac[:2], 16) & 1:
        return 2
    return 0 if hop.dst_mac == capturing_mac else 3


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def linux_sll(hop: Hop, time_ns: int | None, *, capturing_mac: str = PC_MAC) -> Frame:
    """Linux cooked capture v1: 16-byte header with the sender's address."""
    header = struct.pack("!HHH8sH", _sll_packet_type(hop, capturing_mac), 1, 6,
                         _mac_bytes(hop.src_mac).ljust(8, b"\0"), hop.ethertype)
    return _frame(hop, header + _packet_bytes(hop), LINKTYPE_LINUX_SLL, time_ns, dst_mac=None)


def linux_sll2(hop: Hop, time_ns: int | None, *, capturing_mac: str = PC_MAC, ifindex: int = 2) -> Frame:
    """Linux cooked capture v2: 20-byte header (protocol first, interface index, sender address)."""
    header = struct.pack("!HHIHBB8s", hop.ethertype, 0, ifindex, 1, _sll_packet_type(hop, capturing_mac), 6,
                         _mac_bytes(hop.src_mac).ljust(8, b"\0"))
    return _frame(hop, header + _packet_bytes(hop), LINKTYPE_LINUX_SLL2, time_ns, dst_mac=None)


def raw_ip(hop: Hop, time_ns: int | None, *, linktype: int = LINKTYPE_RAW) -> Frame:
    """The IP packet alone (LINKTYPE_RAW, _IPV4 or _IPV6)."""
    return _frame(hop, _packet_bytes(hop), linktype, time_ns, dst_mac=None)


# --------------------------------------------------------------------------------------------
# Traffic
# --------------------------------------------------------------------------------------------


def lldp_payload(chassis_mac: str, port: str) -> bytes:
    """An LLDPDU: chassis ID (MAC), port ID (interface name), TTL, system name, end."""

    def tlv(kind: int, value: bytes) -> bytes:
        return struct.pack("!H", kind << 9 | len(value)) + value

    return (tlv(1, b"\x04" + _mac_bytes(chassis_mac)) + tlv(2, b"\x05" + port.encode())
            + tlv(3, struct.pack("!H", 120)) + tlv(5, b"office-sw1") + tlv(0, b""))


def tcp_session(client: tuple[str, str, int], server: tuple[str, str, int], *, request: int = 180,
                response: int = 1_400, v6: bool = False, ext_headers: bool = False) -> list[Hop]:
    """Handshake, one request, a two-segment response, FIN teardown: ten packets.

    ``client``/``server`` are (MAC, IP, port).  ``ext_headers`` puts hop-by-hop, destination
    options and an atomic fragment header (offset 0, no more fragments) before every TCP header.
    """
    (cmac, cip, cport), (smac, sip, sport) = client, server
    cseq, sseq = 0x1A2B3C4D, 0x5E6F7A8B

    def ip(src: str, dst: str) -> Packet:
        if not v6:
            return IP(src=src, dst=dst, ttl=64, flags="DF")
        base = IPv6(src=src, dst=dst, hlim=64)
        if ext_headers:
            return (base / IPv6ExtHdrHopByHop(options=[PadN(optdata=bytes(4))])
                    / IPv6ExtHdrDestOpt(options=[PadN(optdata=bytes(4))]) / IPv6ExtHdrFragment(offset=0, m=0, id=0xBEEF))
        return base

    def c2s(flags: str, payload: bytes = b"") -> Hop:
        nonlocal cseq
        pkt = ip(cip, sip) / TCP(sport=cport, dport=sport, seq=cseq, ack=sseq if "A" in flags else 0,
                                 flags=flags, window=64_240)
        cseq += len(payload) + ("S" in flags or "F" in flags)
        return Hop(cmac, smac, pkt / Raw(payload) if payload else pkt, ETHERTYPE_IPV6 if v6 else ETHERTYPE_IPV4)

    def s2c(flags: str, payload: bytes = b"") -> Hop:
        nonlocal sseq
        pkt = ip(sip, cip) / TCP(sport=sport, dport=cport, seq=sseq, ack=cseq, flags=flags, window=65_535)
        sseq += len(payload) + ("S" in flags or "F" in flags)
        return Hop(smac, cmac, pkt / Raw(payload) if payload else pkt, ETHERTYPE_IPV6 if v6 else ETHERTYPE_IPV4)

    body = bytes(range(256)) * 8
    return [
        c2s("S"), s2c("SA"), c2s("A"),
        c2s("PA", body[:request]), s2c("A"),
        s2c("A", body[:response]), s2c("PA", body[: response // 3]), c2s("A"),
        c2s("FA"), s2c("FA"), c2s("A"),
    ]


def dns_exchange(client: tuple[str, str, int], server: tuple[str, str], *, v6: bool = False) -> list[Hop]:
    """A DNS query and its answer over UDP (fixed bytes, so lengths never depend on scapy)."""
    (cmac, cip, cport), (smac, sip) = client, server
    query = bytes.fromhex("1f2e01000001000000000000") + b"\x06camera\x04corp\x07example\x00\x00\x01\x00\x01"
    answer = (bytes.fromhex("1f2e81800001000100000000") + query[12:]
              + bytes.fromhex("c00c000100010000012c0004") + bytes([192, 168, 1, 64]))
    ip: Callable[[str, str], Packet] = (lambda s, d: IPv6(src=s, dst=d, hlim=64)) if v6 else (
        lambda s, d: IP(src=s, dst=d, ttl=64))
    ethertype = ETHERTYPE_IPV6 if v6 else ETHERTYPE_IPV4
    return [
        Hop(cmac, smac, ip(cip, sip) / UDP(sport=cport, dport=53) / Raw(query), ethertype),
        Hop(smac, cmac, ip(sip, cip) / UDP(sport=53, dport=cport) / Raw(answer), ethertype),
    ]


def ipv4_office_mix() -> list[Hop]:
    """IPv4 traffic every IPv4 link type can carry: DNS, TCP, ICMP, RTP-like UDP, broadcast UDP."""
    hops = dns_exchange((PC_MAC, PC_IP, 51_001), (GATEWAY_MAC, GATEWAY_IP))
    hops += tcp_session((PC_MAC, PC_IP, 51_002), (GATEWAY_MAC, SERVER_IP, 443))
    hops += [
        Hop(PC_MAC, GATEWAY_MAC, IP(src=PC_IP, dst=SERVER_IP, ttl=128) / ICMP(type=8, id=1, seq=1) / Raw(b"a" * 32)),
        Hop(GATEWAY_MAC, PC_MAC, IP(src=SERVER_IP, dst=PC_IP, ttl=54) / ICMP(type=0, id=1, seq=1) / Raw(b"a" * 32)),
    ]
    hops += [
        Hop(CAMERA_MAC, NVR_MAC, IP(src=CAMERA_IP, dst=NVR_IP, ttl=64)
            / UDP(sport=8_214, dport=50_006) / Raw(bytes([0x80, 0x60]) + bytes(range(size % 256)) * 4))
        for size in (300, 310, 320)
    ]
    discover = IP(src="0.0.0.0", dst="255.255.255.255", ttl=128) / UDP(sport=68, dport=67) / Raw(bytes(300))
    hops.append(Hop(PRINTER_MAC, BROADCAST_MAC, discover))
    return hops


def ipv6_office_mix() -> list[Hop]:
    """IPv6 traffic: neighbour discovery, ICMPv6 echo, DNS and a TCP session."""
    solicited = "ff02::1:ff00:1"
    hops = [
        Hop(PC_MAC, "33:33:ff:00:00:01", IPv6(src=PC_LL6, dst=solicited, hlim=255)
            / ICMPv6ND_NS(tgt=GATEWAY_IP6) / ICMPv6NDOptSrcLLAddr(lladdr=PC_MAC), ETHERTYPE_IPV6),
        Hop(GATEWAY_MAC, PC_MAC, IPv6(src=GATEWAY_IP6, dst=PC_LL6, hlim=255)
            / ICMPv6ND_NA(tgt=GATEWAY_IP6, R=1, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=GATEWAY_MAC), ETHERTYPE_IPV6),
        Hop(PC_MAC, GATEWAY_MAC, IPv6(src=PC_IP6, dst=SERVER_IP6, hlim=64)
            / ICMPv6EchoRequest(id=7, seq=1, data=b"ping" * 8), ETHERTYPE_IPV6),
        Hop(GATEWAY_MAC, PC_MAC, IPv6(src=SERVER_IP6, dst=PC_IP6, hlim=57)
            / ICMPv6EchoReply(id=7, seq=1, data=b"ping" * 8), ETHERTYPE_IPV6),
    ]
    hops += dns_exchange((PC_MAC, PC_IP6, 51_003), (GATEWAY_MAC, GATEWAY_IP6), v6=True)
    hops += tcp_session((PC_MAC, PC_IP6, 51_004), (GATEWAY_MAC, SERVER_IP6, 443), v6=True)
    return hops


def link_local_mix() -> list[Hop]:
    """Non-IP frames that must still be counted per device: ARP, LLDP, a local-experimental type."""
    return [
        Hop(PC_MAC, BROADCAST_MAC, ARP(op=1, hwsrc=PC_MAC, psrc=PC_IP, pdst=GATEWAY_IP), ETHERTYPE_ARP),
        Hop(GATEWAY_MAC, PC_MAC, ARP(op=2, hwsrc=GATEWAY_MAC, psrc=GATEWAY_IP, hwdst=PC_MAC, pdst=PC_IP),
            ETHERTYPE_ARP),
        Hop(SWITCH_MAC, LLDP_MULTICAST_MAC, lldp_payload(SWITCH_MAC, "Gi1/0/24"), ETHERTYPE_LLDP),
        Hop(NVR_MAC, CAMERA_MAC, b"\x01\x00vendor-discovery" + bytes(30), ETHERTYPE_LOCAL_EXPERIMENTAL),
    ]


def ipv4_fragments(src: tuple[str, str], dst: tuple[str, str], ports: tuple[int, int], *,
                   size: int, ident: int, order: Sequence[int] | None = None, mtu: int = 1_500) -> list[Hop]:
    """One UDP datagram of ``size`` payload bytes split into IPv4 fragments.

    The first fragment carries the UDP header, the others only payload.  ``order`` sends the
    fragments in another order (indices into the in-order list).
    """
    (smac, sip), (dmac, dip) = src, dst
    datagram = bytes(IP(src=sip, dst=dip, id=ident, ttl=64) / UDP(sport=ports[0], dport=ports[1])
                     / Raw(bytes(i % 251 for i in range(size))))
    body = datagram[20:]  # UDP header + payload, checksum included
    step = (mtu - 20) // 8 * 8
    pieces = [body[i:i + step] for i in range(0, len(body), step)]
    flow = Flow(17, (sip, ports[0]), (dip, ports[1]))
    indices = list(order) if order is not None else list(range(len(pieces)))
    hops: list[Hop] = []
    for position, i in enumerate(indices):
        more = i < len(pieces) - 1
        packet = IP(src=sip, dst=dip, id=ident, ttl=64, proto=17, flags="MF" if more else 0,
                    frag=i * step // 8) / Raw(pieces[i])
        hops.append(Hop(smac, dmac, packet, flow=flow, completes_datagram=position == len(indices) - 1))
    return hops


def ipv6_fragments(src: tuple[str, str], dst: tuple[str, str], ports: tuple[int, int], *,
                   size: int, ident: int) -> list[Hop]:
    """A UDP datagram in two IPv6 fragments: hop-by-hop (per-fragment), fragment header, then
    destination options + UDP in the first fragment only."""
    (smac, sip), (dmac, dip) = src, dst
    inner = IPv6(src=sip, dst=dip, hlim=64) / IPv6ExtHdrDestOpt(options=[PadN(optdata=bytes(4))]) / UDP(
        sport=ports[0], dport=ports[1]) / Raw(bytes(i % 241 for i in range(size)))
    fragmentable = bytes(inner)[40:]  # destination options + UDP header + payload
    split = 1_232
    flow = Flow(17, (sip, ports[0]), (dip, ports[1]))
    hops = []
    for offset, chunk, more in ((0, fragmentable[:split], 1), (split, fragmentable[split:], 0)):
        packet = (IPv6(src=sip, dst=dip, hlim=64) / IPv6ExtHdrHopByHop(options=[PadN(optdata=bytes(4))])
                  / IPv6ExtHdrFragment(nh=60, offset=offset // 8, m=more, id=ident) / Raw(chunk))
        hops.append(Hop(smac, dmac, packet, ETHERTYPE_IPV6, flow=flow, completes_datagram=not more))
    return hops


# --------------------------------------------------------------------------------------------
# File writers (headers and records packed here, so byte order and resolution are exact)
# --------------------------------------------------------------------------------------------


def pcap_header(*, linktype: int, big_endian: bool = False, nanosecond: bool = False,
                snaplen: int = SNAPLEN) -> bytes:
    e = ">" if big_endian else "<"
    return struct.pack(e + "IHHiIII", PCAP_MAGIC_NSEC if nanosecond else PCAP_MAGIC_USEC, 2, 4, 0, 0,
                       snaplen, linktype)


def pcap_record(time_ns: int, caplen: int, wire_len: int, data: bytes, *, big_endian: bool = False,
                nanosecond: bool = False) -> bytes:
    seconds, fraction = divmod(time_ns, 10**9)
    if not nanosecond:
        fraction //= 1_000
    return struct.pack((">" if big_endian else "<") + "IIII", seconds, fraction, caplen, wire_len) + data


def write_pcap(path: Path, frames: Sequence[Frame], *, linktype: int, big_endian: bool = False,
               nanosecond: bool = False, snaplen: int = SNAPLEN) -> tuple[bytes, tuple[Record, ...]]:
    """Write a classic pcap; returns its bytes and the records (offsets, caplens)."""
    out = bytearray(pcap_header(linktype=linktype, big_endian=big_endian, nanosecond=nanosecond,
                                snaplen=snaplen))
    records = []
    for frame in frames:
        assert frame.time_ns is not None
        caplen = min(frame.wire_len, snaplen)
        records.append(Record(frame, len(out), caplen))
        out += pcap_record(frame.time_ns, caplen, frame.wire_len, frame.data[:caplen],
                           big_endian=big_endian, nanosecond=nanosecond)
    path.write_bytes(bytes(out))
    return bytes(out), tuple(records)


def _pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def pcapng_option(e: str, code: int, value: bytes) -> bytes:
    return struct.pack(e + "HH", code, len(value)) + _pad4(value)


def pcapng_options(e: str, options: Sequence[tuple[int, bytes]]) -> bytes:
    if not options:
        return b""
    return b"".join(pcapng_option(e, code, value) for code, value in options) + struct.pack(e + "HH", 0, 0)


def pcapng_block(e: str, block_type: int, body: bytes) -> bytes:
    total = 12 + len(_pad4(body))
    return struct.pack(e + "II", block_type, total) + _pad4(body) + struct.pack(e + "I", total)


def pcapng_shb(e: str, options: Sequence[tuple[int, bytes]] = ()) -> bytes:
    body = struct.pack(e + "IHHq", PCAPNG_BYTE_ORDER_MAGIC, 1, 0, -1) + pcapng_options(e, options)
    return pcapng_block(e, 0x0A0D0D0A, body)


def pcapng_idb(e: str, linktype: int, *, snaplen: int = SNAPLEN, tsresol: int | None = None,
               name: str | None = None) -> bytes:
    options: list[tuple[int, bytes]] = []
    if name is not None:
        options.append((2, name.encode()))  # if_name
    if tsresol is not None:
        options.append((9, bytes([tsresol])))  # if_tsresol
    return pcapng_block(e, 1, struct.pack(e + "HHI", linktype, 0, snaplen) + pcapng_options(e, options))


def pcapng_epb(e: str, interface: int, time_ns: int, frame: Frame, *, tsresol: int = 6,
               snaplen: int = SNAPLEN, options: Sequence[tuple[int, bytes]] = ()) -> tuple[bytes, int]:
    """An enhanced packet block; returns the block and its captured length."""
    units = time_ns // 10 ** (9 - tsresol)
    caplen = min(frame.wire_len, snaplen)
    body = (struct.pack(e + "IIIII", interface, units >> 32, units & 0xFFFFFFFF, caplen, frame.wire_len)
            + _pad4(frame.data[:caplen]) + pcapng_options(e, options))
    return pcapng_block(e, 6, body), caplen


def pcapng_spb(e: str, frame: Frame) -> bytes:
    return pcapng_block(e, 3, struct.pack(e + "I", frame.wire_len) + frame.data)


def pcapng_nrb(e: str, entries: Sequence[tuple[str, str]]) -> bytes:
    """Name resolution block with IPv4 records, then the end record."""
    body = b""
    for address, name in entries:
        value = ipaddress.IPv4Address(address).packed + name.encode() + b"\0"
        body += struct.pack(e + "HH", 1, len(value)) + _pad4(value)
    return pcapng_block(e, 4, body + struct.pack(e + "HH", 0, 0))


def pcapng_isb(e: str, interface: int, time_ns: int, received: int) -> bytes:
    units = time_ns // 1_000
    options = [(4, struct.pack(e + "Q", received)), (5, struct.pack(e + "Q", 0))]  # isb_ifrecv, isb_ifdrop
    return pcapng_block(e, 5, struct.pack(e + "III", interface, units >> 32, units & 0xFFFFFFFF)
                        + pcapng_options(e, options))


def pcapng_custom(e: str) -> bytes:
    """A custom block (type 0x00000BAD, copyable) with a private enterprise number: to be skipped."""
    return pcapng_block(e, 0x00000BAD, struct.pack(e + "I", 32_473) + b"iotwatch test custom block")


# --------------------------------------------------------------------------------------------
# Factories: well-formed captures
# --------------------------------------------------------------------------------------------


def _ethernet_frames(hops: Iterable[Hop], clock: Clock) -> list[Frame]:
    return [ethernet(hop, clock()) for hop in hops]


def classic_pcap(directory: Path, *, big_endian: bool = False, nanosecond: bool = False) -> Capture:
    """Ethernet office traffic (IPv4, IPv6, ARP, LLDP) in a classic pcap of the given byte order
    and timestamp resolution (nanosecond files use magic 0xa1b23c4d)."""
    clock = Clock(resolution_ns=1 if nanosecond else 1_000)
    frames = _ethernet_frames([*link_local_mix(), *ipv4_office_mix(), *ipv6_office_mix()], clock)
    name = f"office-{'be' if big_endian else 'le'}-{'nsec' if nanosecond else 'usec'}.pcap"
    _, records = write_pcap(directory / name, frames, linktype=LINKTYPE_ETHERNET, big_endian=big_endian,
                            nanosecond=nanosecond)
    return Capture(directory / name, records, f"classic pcap, {'big' if big_endian else 'little'}-endian, "
                   f"{'ns' if nanosecond else 'µs'} timestamps, Ethernet")


def gzip_capture(directory: Path) -> Capture:
    """The little-endian µs office capture, gzip-compressed (``.pcap.gz``)."""
    plain = classic_pcap(directory)
    path = directory / (plain.path.name + ".gz")
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped:
        zipped.write(plain.path.read_bytes())
    return Capture(path, plain.records, "gzip-compressed classic pcap")


def linux_sll_capture(directory: Path) -> Capture:
    """LINKTYPE_LINUX_SLL (113): what ``tcpdump -i any`` writes."""
    clock = Clock()
    hops = [*link_local_mix()[:2], *ipv4_office_mix(), *ipv6_office_mix()]
    frames = [linux_sll(hop, clock()) for hop in hops]
    path = directory / "cooked-sll.pcap"
    _, records = write_pcap(path, frames, linktype=LINKTYPE_LINUX_SLL)
    return Capture(path, records, "Linux cooked capture v1 (SLL)")


def linux_sll2_capture(directory: Path) -> Capture:
    """LINKTYPE_LINUX_SLL2 (276): ``tcpdump -i any`` since libpcap 1.10."""
    clock = Clock()
    hops = [*link_local_mix()[:2], *ipv4_office_mix(), *ipv6_office_mix()]
    frames = [linux_sll2(hop, clock()) for hop in hops]
    path = directory / "cooked-sll2.pcap"
    _, records = write_pcap(path, frames, linktype=LINKTYPE_LINUX_SLL2)
    return Capture(path, records, "Linux cooked capture v2 (SLL2)")


def raw_ip_capture(directory: Path, linktype: int = LINKTYPE_RAW) -> Capture:
    """Packets without a link layer: LINKTYPE_RAW (101, IPv4 and IPv6 told apart by the version
    nibble), LINKTYPE_IPV4 (228) or LINKTYPE_IPV6 (229)."""
    clock = Clock()
    if linktype == LINKTYPE_IPV4:
        hops = ipv4_office_mix()
    elif linktype == LINKTYPE_IPV6:
        hops = ipv6_office_mix()
    elif linktype == LINKTYPE_RAW:
        hops = [*ipv4_office_mix(), *ipv6_office_mix()]
    else:
        raise ValueError(f"not a raw IP link type: {linktype}")
    frames = [raw_ip(hop, clock(), linktype=linktype) for hop in hops]
    path = directory / f"raw-ip-{linktype}.pcap"
    _, records = write_pcap(path, frames, linktype=linktype)
    return Capture(path, records, f"raw IP, link type {linktype}")


def vlan_capture(directory: Path) -> Capture:
    """802.1Q-tagged (VLAN 20) and QinQ (outer 0x88a8 VLAN 100, inner 0x8100 VLAN 20) frames,
    plus untagged ones, all Ethernet."""
    clock = Clock()
    frames = [ethernet(hop, clock(), vlans=(20,)) for hop in dns_exchange((PC_MAC, PC_IP, 52_001),
                                                                        (GATEWAY_MAC, GATEWAY_IP))]
    frames += [ethernet(hop, clock(), vlans=(100, 20), outer_tpid=0x88A8)
               for hop in tcp_session((CAMERA_MAC, CAMERA_IP, 40_001), (NVR_MAC, NVR_IP, 554))]
    frames += [ethernet(hop, clock(), vlans=(30,)) for hop in link_local_mix()[:2]]
    frames += [ethernet(hop, clock()) for hop in dns_exchange((PC_MAC, PC_IP, 52_002), (GATEWAY_MAC, GATEWAY_IP))]
    path = directory / "vlan-qinq.pcap"
    _, records = write_pcap(path, frames, linktype=LINKTYPE_ETHERNET)
    return Capture(path, records, "802.1Q and QinQ (802.1ad) tagged Ethernet")


def ipv4_fragments_capture(directory: Path) -> Capture:
    """Fragmented UDP over IPv4: a 3-fragment datagram in order, a 3-fragment datagram out of
    order (last fragment first, then first, then middle), a 2-fragment datagram, and an
    unfragmented datagram of the same flow."""
    clock = Clock()
    camera, nvr = (CAMERA_MAC, CAMERA_IP), (NVR_MAC, NVR_IP)
    hops = ipv4_fragments(camera, nvr, (8_214, 50_006), size=3_500, ident=0x1001)
    hops += ipv4_fragments(camera, nvr, (8_214, 50_006), size=3_200, ident=0x1002, order=(2, 0, 1))
    hops += ipv4_fragments((PC_MAC, PC_IP), (GATEWAY_MAC, GATEWAY_IP), (51_500, 45_000), size=1_700, ident=0x2001)
    hops.append(Hop(CAMERA_MAC, NVR_MAC, IP(src=CAMERA_IP, dst=NVR_IP, ttl=64)
                    / UDP(sport=8_214, dport=50_006) / Raw(bytes(400))))
    frames = _ethernet_frames(hops, clock)
    path = directory / "ipv4-fragments.pcap"
    _, records = write_pcap(path, frames, linktype=LINKTYPE_ETHERNET)
    return Capture(path, records, "IPv4 fragments of UDP datagrams, one set out of order")


def ipv6_extension_headers_capture(directory: Path) -> Capture:
    """IPv6 with extension headers: TCP behind hop-by-hop + destination options + an atomic
    fragment header, UDP behind hop-by-hop + destination options, and a UDP datagram in two real
    fragments (hop-by-hop, fragment header, then destination options + UDP in the first)."""
    clock = Clock()
    hops = tcp_session((PC_MAC, PC_IP6, 51_010), (GATEWAY_MAC, SERVER_IP6, 443), v6=True, ext_headers=True)
    for hop in dns_exchange((PC_MAC, PC_IP6, 51_011), (GATEWAY_MAC, GATEWAY_IP6), v6=True):
        assert isinstance(hop.packet, Packet)
        ipv6, udp = hop.packet.copy(), hop.packet[UDP].copy()
        ipv6.remove_payload()
        packet = (ipv6 / IPv6ExtHdrHopByHop(options=[PadN(optdata=bytes(4))])
                  / IPv6ExtHdrDestOpt(options=[PadN(optdata=bytes(12))]) / udp)
        hops.append(replace(hop, packet=packet))
    hops += ipv6_fragments((NVR_MAC, "2001:db8:1::60"), (PC_MAC, PC_IP6), (50_100, 50_200), size=2_000,
                           ident=0xCAFE0001)
    frames = _ethernet_frames(hops, clock)
    path = directory / "ipv6-extension-headers.pcap"
    _, records = write_pcap(path, frames, linktype=LINKTYPE_ETHERNET)
    return Capture(path, records, "IPv6 hop-by-hop, destination options and fragment headers")


def icmp_arp_lldp_capture(directory: Path) -> Capture:
    """ICMP, ICMPv6 (neighbour discovery, echo), ARP, LLDP and a unicast frame of a non-IP
    ethertype (0x88b5): nothing here has ports, all of it counts per device."""
    clock = Clock()
    ipv4 = ipv4_office_mix()
    icmp4 = [hop for hop in ipv4 if isinstance(hop.packet, Packet) and hop.packet.haslayer(ICMP)]
    icmp6 = ipv6_office_mix()[:4]
    frames = _ethernet_frames([*link_local_mix(), *icmp4, *icmp6], clock)
    path = directory / "icmp-arp-lldp.pcap"
    _, records = write_pcap(path, frames, linktype=LINKTYPE_ETHERNET)
    return Capture(path, records, "ICMP, ICMPv6, ARP, LLDP and a non-IP ethertype")


def snaplen_capture(directory: Path, snaplen: int = 96) -> Capture:
    """Office traffic captured with a small snaplen: caplen < original length for big frames."""
    clock = Clock()
    hops = [*ipv4_office_mix(), *tcp_session((PC_MAC, PC_IP, 51_020), (GATEWAY_MAC, SERVER_IP, 443),
                                             request=900, response=1_448)]
    frames = _ethernet_frames(hops, clock)
    path = directory / f"snaplen-{snaplen}.pcap"
    _, records = write_pcap(path, frames, linktype=LINKTYPE_ETHERNET, snaplen=snaplen)
    return Capture(path, records, f"snaplen {snaplen}: large frames truncated")


def pcapng_multi_interface(directory: Path) -> Capture:
    """A little-endian pcapng with two interfaces of different link types.

    Interface 0: Ethernet, default (µs) resolution.  Interface 1: raw IPv4 (228) with
    ``if_tsresol`` = 9 (ns).  Enhanced packet blocks alternate between them, some with options
    (comment, flags); there is also a simple packet block (interface 0, no timestamp), a name
    resolution block, a custom block and an interface statistics block, all to be skipped.
    """
    e = "<"
    clock = Clock()
    eth_hops = [*link_local_mix()[:2], *dns_exchange((PC_MAC, PC_IP, 51_030), (GATEWAY_MAC, GATEWAY_IP))]
    raw_hops = tcp_session((PC_MAC, PC_IP, 51_031), (GATEWAY_MAC, SERVER_IP, 443))[:6]
    out = bytearray(pcapng_shb(e, [(4, b"iotwatch tests/captures.py")]))  # shb_userappl
    out += pcapng_idb(e, LINKTYPE_ETHERNET, name="eth0")
    out += pcapng_idb(e, LINKTYPE_IPV4, tsresol=9, name="tun0")
    records: list[Record] = []

    def epb(interface: int, options: Sequence[tuple[int, bytes]] = ()) -> None:
        if interface == 0:
            frame = ethernet(eth_hops.pop(0), clock())
        else:
            frame = raw_ip(raw_hops.pop(0), clock() + 417, linktype=LINKTYPE_IPV4)  # ns on this one
        assert frame.time_ns is not None
        block, caplen = pcapng_epb(e, interface, frame.time_ns, frame, tsresol=9 if interface else 6,
                                   options=options)
        records.append(Record(frame, len(out), caplen, interface))
        out.extend(block)

    epb(0, [(1, b"ARP request, comment option")])  # opt_comment
    epb(1)
    out += pcapng_nrb(e, [(SERVER_IP, "www.example.com"), (GATEWAY_IP, "gateway.lan")])
    epb(0, [(2, struct.pack(e + "I", 1))])  # epb_flags: inbound
    epb(1)
    out += pcapng_custom(e)
    epb(1)
    spb_frame = ethernet(eth_hops.pop(0), None)
    records.append(Record(spb_frame, len(out), spb_frame.wire_len, 0))
    out += pcapng_spb(e, spb_frame)
    while raw_hops:
        epb(1)
    epb(0)
    last = records[-1].frame.time_ns
    assert last is not None
    out += pcapng_isb(e, 0, last + 1_000, received=4)
    path = directory / "multi-interface.pcapng"
    path.write_bytes(bytes(out))
    return Capture(path, tuple(records), "pcapng: Ethernet + raw IPv4 (ns), SPB, NRB, custom block, ISB")


def pcapng_big_endian(directory: Path) -> Capture:
    """A big-endian pcapng section: one Ethernet interface with nanosecond ``if_tsresol``."""
    e = ">"
    clock = Clock(resolution_ns=1)
    frames = _ethernet_frames([*link_local_mix(), *ipv4_office_mix()], clock)
    out = bytearray(pcapng_shb(e) + pcapng_idb(e, LINKTYPE_ETHERNET, tsresol=9))
    records = []
    for frame in frames:
        assert frame.time_ns is not None
        block, caplen = pcapng_epb(e, 0, frame.time_ns, frame, tsresol=9)
        records.append(Record(frame, len(out), caplen))
        out += block
    path = directory / "big-endian.pcapng"
    path.write_bytes(bytes(out))
    return Capture(path, tuple(records), "pcapng, big-endian section, ns resolution")


def pcapng_two_sections(directory: Path) -> Capture:
    """Two sections in one file: little-endian (Ethernet, µs), then big-endian (raw IPv6, ns).
    Interface numbers restart in the second section."""
    clock = Clock()
    first = _ethernet_frames(ipv4_office_mix()[:6], clock)
    second = [raw_ip(hop, clock() + 333, linktype=LINKTYPE_IPV6) for hop in ipv6_office_mix()[2:6]]
    out = bytearray()
    records = []
    for e, linktype, tsresol, frames in (("<", LINKTYPE_ETHERNET, 6, first), (">", LINKTYPE_IPV6, 9, second)):
        out += pcapng_shb(e) + pcapng_idb(e, linktype, tsresol=tsresol)
        for frame in frames:
            assert frame.time_ns is not None
            block, caplen = pcapng_epb(e, 0, frame.time_ns, frame, tsresol=tsresol)
            records.append(Record(frame, len(out), caplen))
            out += block
    path = directory / "two-sections.pcapng"
    path.write_bytes(bytes(out))
    return Capture(path, tuple(records), "pcapng with a little-endian and a big-endian section")


def all_captures(directory: Path) -> list[Capture]:
    """Every well-formed capture, written into ``directory``."""
    return [
        classic_pcap(directory),
        classic_pcap(directory, big_endian=True),
        classic_pcap(directory, nanosecond=True),
        classic_pcap(directory, big_endian=True, nanosecond=True),
        gzip_capture(directory),
        linux_sll_capture(directory),
        linux_sll2_capture(directory),
        raw_ip_capture(directory, LINKTYPE_RAW),
        raw_ip_capture(directory, LINKTYPE_IPV4),
        raw_ip_capture(directory, LINKTYPE_IPV6),
        vlan_capture(directory),
        ipv4_fragments_capture(directory),
        ipv6_extension_headers_capture(directory),
        icmp_arp_lldp_capture(directory),
        snaplen_capture(directory),
        pcapng_multi_interface(directory),
        pcapng_big_endian(directory),
        pcapng_two_sections(directory),
    ]


# --------------------------------------------------------------------------------------------
# Factories: damaged files
# --------------------------------------------------------------------------------------------


def _office_frames(resolution_ns: int = 1_000) -> list[Frame]:
    return _ethernet_frames([*link_local_mix()[:2], *ipv4_office_mix()[:8]], Clock(resolution_ns=resolution_ns))


def _damaged(path: Path, kind: str, offset: int, records: Sequence[Record], description: str,
             undecodable: int = 0) -> DamagedCapture:
    return DamagedCapture(path, kind, offset, Capture(path, tuple(records)), description, undecodable)


def not_a_capture(directory: Path) -> DamagedCapture:
    path = directory / "notes.pcap"
    path.write_text("Wiring closet notes\nswitch port 24 -> recorder\nthis is not a capture file\n")
    return _damaged(path, "not_a_capture", 0, (), "a text file named .pcap")


def empty_file(directory: Path) -> DamagedCapture:
    """A zero-byte file.  (tshark 4.0 reads it as an empty capture and exits 0.)"""
    path = directory / "empty.pcap"
    path.write_bytes(b"")
    return _damaged(path, "empty", 0, (), "zero bytes")


def truncated_global_header(directory: Path, keep: int = 14) -> DamagedCapture:
    """Only the first ``keep`` of the 24 file-header bytes."""
    path = directory / "short-header.pcap"
    path.write_bytes(pcap_header(linktype=LINKTYPE_ETHERNET)[:keep])
    return _damaged(path, "truncated_header", 0, (), f"file header cut after {keep} of 24 bytes")


def truncated_last_record(directory: Path, where: Literal["data", "header"] = "data") -> DamagedCapture:
    """A capture cut off inside its last record (in its data, or inside its 16-byte header)."""
    frames = _office_frames()
    path = directory / f"cut-in-{where}.pcap"
    data, records = write_pcap(path, frames, linktype=LINKTYPE_ETHERNET)
    last = records[-1]
    cut = last.offset + (16 + last.caplen // 2 if where == "data" else 9)
    path.write_bytes(data[:cut])
    return _damaged(path, f"truncated_record_{where}", last.offset, records[:-1],
                    f"file ends {cut - last.offset} bytes into the last record")


def caplen_over_snaplen(directory: Path, snaplen: int = 128, at: int = 5) -> DamagedCapture:
    """Record ``at`` claims (and holds) more bytes than the file's snaplen allows.

    Strictly this breaks the file's own promise, so the truth stops before it; tshark 4.0 only
    rejects caplens above its per-link-type maximum (262144) and reads all the records.
    """
    frames = _office_frames()
    big = next(i for i, f in enumerate(frames) if f.wire_len > snaplen and i >= at)
    path = directory / "caplen-over-snaplen.pcap"
    out = bytearray(pcap_header(linktype=LINKTYPE_ETHERNET, snaplen=snaplen))
    records = []
    for i, frame in enumerate(frames):
        assert frame.time_ns is not None
        caplen = frame.wire_len if i == big else min(frame.wire_len, snaplen)
        records.append(Record(frame, len(out), caplen))
        out += pcap_record(frame.time_ns, caplen, frame.wire_len, frame.data[:caplen])
    path.write_bytes(bytes(out))
    return _damaged(path, "caplen_over_snaplen", records[big].offset, records[:big],
                    f"record {big} has caplen {records[big].caplen} > snaplen {snaplen}")


def absurd_caplen(directory: Path, at: int = 4, caplen: int = 0x7FFFFFFF) -> DamagedCapture:
    """Record ``at`` has a caplen of ``caplen`` (followed by its real bytes and more records)."""
    frames = _office_frames()
    data, records = write_pcap(directory / "absurd-caplen.pcap", frames, linktype=LINKTYPE_ETHERNET)
    bad = records[at]
    patched = bytearray(data)
    struct.pack_into("<I", patched, bad.offset + 8, caplen)
    path = directory / "absurd-caplen.pcap"
    path.write_bytes(bytes(patched))
    return _damaged(path, "absurd_caplen", bad.offset, records[:at], f"record {at} has caplen {caplen:#x}")


def unknown_linktype(directory: Path, linktype: int = LINKTYPE_USER0) -> DamagedCapture:
    """Well-framed records under a link type nobody can decode (147 is USER0, valid but private;
    65000 is not assigned at all).  The damage is the file header: no packet is decodable,
    although every record's framing is intact (``undecodable`` counts them).  tshark 4.0 lists
    the USER0 records as undissected data and refuses the 65000 file outright."""
    path = directory / f"linktype-{linktype}.pcap"
    _, records = write_pcap(path, _office_frames(), linktype=linktype)
    return _damaged(path, f"unknown_linktype_{linktype}", 0, (), f"{len(records)} records of link type {linktype}",
                    undecodable=len(records))


PcapngFault = Literal["unaligned", "trailer_mismatch", "too_small", "truncated"]


def pcapng_bad_block(directory: Path, fault: PcapngFault, at: int = 3) -> DamagedCapture:
    """A pcapng whose block after ``at`` good packets is corrupt (more good blocks follow it).

    * ``unaligned``: block total length not a multiple of 4;
    * ``trailer_mismatch``: trailing block length differs from the leading one;
    * ``too_small``: block total length 8, below the 12-byte minimum;
    * ``truncated``: the file ends inside the block.

    tshark 4.0 stops at the bad block in every case except ``unaligned``: it rounds the length
    up to a multiple of 4 and reads on (the block's contents are otherwise intact).
    """
    e = "<"
    frames = _office_frames()
    out = bytearray(pcapng_shb(e) + pcapng_idb(e, LINKTYPE_ETHERNET))
    records: list[Record] = []
    bad_offset = 0
    for i, frame in enumerate(frames):
        assert frame.time_ns is not None
        block, caplen = pcapng_epb(e, 0, frame.time_ns, frame)
        if i == at:
            bad_offset = len(out)
            patched = bytearray(block)
            if fault == "unaligned":
                struct.pack_into(e + "I", patched, 4, len(block) - 2)
                struct.pack_into(e + "I", patched, len(block) - 4, len(block) - 2)
            elif fault == "trailer_mismatch":
                struct.pack_into(e + "I", patched, len(block) - 4, len(block) + 8)
            elif fault == "too_small":
                struct.pack_into(e + "I", patched, 4, 8)
            elif fault == "truncated":
                out += patched[: len(block) // 2]
                break
            block = bytes(patched)
        else:
            records.append(Record(frame, len(out), caplen))
        out += block
    path = directory / f"pcapng-{fault.replace('_', '-')}.pcapng"
    path.write_bytes(bytes(out))
    return _damaged(path, f"pcapng_{fault}", bad_offset, records[:at], f"pcapng block {at + 2}: {fault}")


def all_damaged(directory: Path) -> list[DamagedCapture]:
    """Every damaged file, written into ``directory``."""
    return [
        not_a_capture(directory),
        empty_file(directory),
        truncated_global_header(directory),
        truncated_last_record(directory, "data"),
        truncated_last_record(directory, "header"),
        caplen_over_snaplen(directory),
        absurd_caplen(directory),
        unknown_linktype(directory, LINKTYPE_USER0),
        unknown_linktype(directory, 65_000),
        pcapng_bad_block(directory, "unaligned"),
        pcapng_bad_block(directory, "trailer_mismatch"),
        pcapng_bad_block(directory, "too_small"),
        pcapng_bad_block(directory, "truncated"),
    ]

