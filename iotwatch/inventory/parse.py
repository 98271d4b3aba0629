"""Rare packets → signals: dissect the few packets that say what a device is.

The fast pipeline sets aside a sample of "rare" packets per device (DHCP, DNS, mDNS, SSDP,
WS-Discovery, vendor discovery, the first payload of each flow). :func:`signals` turns one of
them into a list of :class:`Signal` — who said it (``"src"`` or ``"dst"`` of the packet), what
kind of fact it is and its value — and never raises: a packet that does not parse gives no
signal.

Signal kinds (the vocabulary :mod:`.evidence` collects and :mod:`.classify` reads):

===================  ========================================================================
kind                 value
===================  ========================================================================
dhcp_hostname        option 12 (or 81 FQDN) of a DHCP client message
dhcp_vendor          option 60 vendor class identifier
dhcp_prl             option 55 parameter request list, comma separated
dhcp_server          "" — the sender answered a DHCP client (offer/ack)
dns_query            a name the sender looked up (lower case, no trailing dot)
mdns_service         a DNS-SD service type the sender announced ("_ipp._tcp")
mdns_name            an mDNS instance or host name the sender announced
mdns_txt             a TXT key=value the sender announced (model/product keys only)
mdns_browse          a DNS-SD service type the sender asked for
llmnr_query          a name the sender asked for over LLMNR (Windows)
netbios_name         a NetBIOS name the sender registered or announced (Windows/SMB)
ssdp_server          SERVER header of an SSDP NOTIFY or search response
ssdp_type            NT/ST device or service type the sender announced
ssdp_search          ST the sender searched for (an SSDP client: phones, PCs, speakers)
ssdp_ua              USER-AGENT of an M-SEARCH
ssdp_location        LOCATION URL of a NOTIFY or response
wsd_type             WS-Discovery Types of a ProbeMatch/Hello ("dn:NetworkVideoTransmitter")
wsd_scope            WS-Discovery Scopes of a ProbeMatch/Hello (ONVIF type/hardware/name)
wsd_probe            Types a WS-Discovery Probe asked for (a client: a VMS, a recorder, a PC)
discovery            vendor discovery answer: "sadp <model>", "dhip <type>", "xiongmai",
                     "ubnt <model>"
http_server          Server header of an HTTP response the sender sent
http_realm           realm of a WWW-Authenticate header the sender sent
http_ua              User-Agent of an HTTP request the sender sent
http_host            Host of an HTTP request the sender sent
http_path            path requested from the receiver ("dst"), first segment only
rtsp_server          Server header of an RTSP response the sender sent
rtsp_request         an RTSP request sent to the receiver ("dst"): the URL path
rtsp_client          User-Agent of an RTSP request (sender is an RTSP client)
tls_sni              server name of a TLS ClientHello the sender sent
ntp_client           "" — the sender asked an NTP server for the time
ntp_server           "" — the sender answered an NTP client
telnet_banner        the first printable line a telnet server sent
ssh_banner           the SSH identification string the sender sent
sip_ua               User-Agent / Server of a SIP message the sender sent
tftp_request         file a TFTP read/write request asked for ("/update.sh"; boot and firmware fetches)
===================  ========================================================================
"""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import dpkt


class FrameLike(Protocol):
    """What :func:`signals` reads from a rare frame (``iotwatch.sidecar.RareFrame``)."""

    @property
    def l3(self) -> int: ...
    @property
    def data(self) -> bytes: ...
    @property
    def kind(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Signal:
    who: str  # "src" or "dst": the side of the packet the fact is about
    kind: str
    value: str


# Ports of the protocols dissected here (UDP unless noted).
DHCP_PORTS = (67, 68)
MDNS_PORT = 5353
LLMNR_PORT = 5355
SSDP_PORT = 1900
WSD_PORT = 3702
NTP_PORT = 123
NBNS_PORT, NBDGM_PORT = 137, 138
SADP_PORT, DHIP_PORT, XIONGMAI_PORT, UBNT_PORT = 37020, 37810, 34569, 10001
RTSP_PORTS = (554, 8554)

_MAX_VALUE = 160  # values are cut to this many characters


def _text(b: bytes | str, limit: int = _MAX_VALUE) -> str:
    s = b.decode("utf-8", "replace") if isinstance(b, bytes | bytearray) else b
    s = "".join(ch if ch.isprintable() else " " for ch in s).strip()
    return s[:limit]


# --------------------------------------------------------------------------- network layers

def transport(l3: int, data: bytes) -> tuple[int, int, int, bytes] | None:
    """(protocol, source port, destination port, payload) of an IPv4/IPv6 TCP/UDP packet.

    Hand-rolled so that a packet cut at the snap length still yields what it has.
    """
    if l3 == 4:
        if len(data) < 20 or data[0] >> 4 != 4:
            return None
        ihl = (data[0] & 0x0F) * 4
        total = struct.unpack_from("!H", data, 2)[0]
        if struct.unpack_from("!H", data, 6)[0] & 0x1FFF:  # not the first fragment
            return None
        proto = data[9]
        end = min(len(data), total) if total >= ihl else len(data)
        l4 = data[ihl:end]
    elif l3 == 6:
        if len(data) < 40 or data[0] >> 4 != 6:
            return None
        proto, off = data[6], 40
        while proto in (0, 43, 60) and len(data) >= off + 8:  # hop-by-hop, routing, destination options
            proto, off = data[off], off + (data[off + 1] + 1) * 8
        if proto == 44:  # fragment header: only the first fragment has the transport header
            if len(data) < off + 8 or struct.unpack_from("!H", data, off + 2)[0] & 0xFFF8:
                return None
            proto, off = data[off], off + 8
        l4 = data[off:]
    else:
        return None
    if proto == 17 and len(l4) >= 8:
        sport, dport = struct.unpack_from("!HH", l4)
        return 17, sport, dport, l4[8:]
    if proto == 6 and len(l4) >= 20:
        sport, dport = struct.unpack_from("!HH", l4)
        hl = (l4[12] >> 4) * 4
        return 6, sport, dport, l4[hl:] if hl >= 20 else b""
    return None


def addresses(l3: int, data: bytes) -> tuple[str, str] | None:
    """(source, destination) IP address text of an IPv4/IPv6 packet."""
    try:
        if l3 == 4 and len(data) >= 20:
            return socket.inet_ntop(socket.AF_INET, data[12:16]), socket.inet_ntop(socket.AF_INET, data[16:20])
        if l3 == 6 and len(data) >= 40:
            return socket.inet_ntop(socket.AF_INET6, data[8:24]), socket.inet_ntop(socket.AF_INET6, data[24:40])
    except (OSError, ValueError):
        pass
    return None


# --------------------------------------------------------------------------- DHCP

def dhcp(payload: bytes, sport: int) -> list[Signal]:
    msg = dpkt.dhcp.DHCP(payload)
    opts = dict(msg.opts)
    out: list[Signal] = []
    if msg.op == dpkt.dhcp.DHCP_OP_REPLY and sport == 67:
        return [Signal("src", "dhcp_server", "")]
    if msg.op != dpkt.dhcp.DHCP_OP_REQUEST:
        return out
    if 12 in opts:
        out.append(Signal("src", "dhcp_hostname", _text(opts[12])))
    elif 81 in opts and len(opts[81]) > 3:
        out.append(Signal("src", "dhcp_hostname", _text(opts[81][3:])))
    if 60 in opts:
        out.append(Signal("src", "dhcp_vendor", _text(opts[60])))
    if 55 in opts:
        out.append(Signal("src", "dhcp_prl", ",".join(str(b) for b in opts[55])))
    return out


# --------------------------------------------------------------------------- DNS, mDNS, LLMNR

_TXT_KEYS = ("md", "model", "ty", "product", "usb_mdl", "usb_mfg", "mfg", "manufacturer", "fn", "am", "vendor")


def _name(n: object) -> str:
    s = n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
    return _text(s.rstrip(".").lower())


def _service_type(name: str) -> str | None:
    """'_ipp._tcp' from 'My Printer._ipp._tcp.local' / '_ipp._tcp.local'."""
    m = re.search(r"(_[a-z0-9-]+\._(?:tcp|udp))(?:\.|$)", name.lower())
    return m.group(1) if m else None


def dns(payload: bytes, sport: int, dport: int) -> list[Signal]:
    # a device sends the same queries again and again; what they say does not depend on the
    # transaction ID, so the rest of the message is dissected once
    return list(_dns(payload[2:], MDNS_PORT in (sport, dport), LLMNR_PORT in (sport, dport)))


@lru_cache(maxsize=4096)
def _dns(rest: bytes, mdns: bool, llmnr: bool) -> tuple[Signal, ...]:
    return tuple(_dns_signals(dpkt.dns.DNS(b"\0\0" + rest), mdns, llmnr))


def _dns_signals(msg: dpkt.dns.DNS, mdns: bool, llmnr: bool) -> list[Signal]:
    out: list[Signal] = []
    if msg.qr == dpkt.dns.DNS_Q:
        for q in msg.qd[:16]:
            name = _name(q.name)
            if not name:
                continue
            if mdns:
                st = _service_type(name)
                out.append(Signal("src", "mdns_browse", st or name))
            elif llmnr:
                out.append(Signal("src", "llmnr_query", name))
            else:
                out.append(Signal("src", "dns_query", name))
        if mdns:  # probes and known answers carry the sender's own records in the authority section
            out.extend(_mdns_records(msg.ns[:16]))
        return out
    if mdns:
        out.extend(_mdns_records([*msg.an[:32], *msg.ar[:32]]))
    return out


def _mdns_records(records: list[dpkt.dns.DNS.RR]) -> list[Signal]:
    out: list[Signal] = []
    for rr in records:
        name = _name(rr.name)
        if rr.type == dpkt.dns.DNS_PTR:
            target = _name(getattr(rr, "ptrname", ""))
            st = _service_type(name)
            if st and not name.startswith("_services._dns-sd"):
                out.append(Signal("src", "mdns_service", st))
                inst = target.split("._", 1)[0] if target else ""
                if inst and not inst.startswith("_"):
                    out.append(Signal("src", "mdns_name", inst))
            elif name.startswith("_services._dns-sd") and target:
                st = _service_type(target)
                if st:
                    out.append(Signal("src", "mdns_service", st))
        elif rr.type == dpkt.dns.DNS_SRV:
            st = _service_type(name)
            if st:
                out.append(Signal("src", "mdns_service", st))
            target = _name(getattr(rr, "srvname", ""))
            if target:
                out.append(Signal("src", "mdns_name", target.removesuffix(".local")))
        elif rr.type in (dpkt.dns.DNS_A, dpkt.dns.DNS_AAAA):
            if name.endswith(".local") and not name.endswith(".arpa"):
                out.append(Signal("src", "mdns_name", name.removesuffix(".local")))
        elif rr.type == dpkt.dns.DNS_TXT:
            for t in getattr(rr, "text", [])[:32]:
                s = _text(t)
                k, _, v = s.partition("=")
                if k.lower() in _TXT_KEYS and v:
                    out.append(Signal("src", "mdns_txt", f"{k.lower()}={v}"))
    return out


# --------------------------------------------------------------------------- NetBIOS

def _nb_decode(enc: bytes) -> str:
    """First-level NetBIOS name decoding (32 letters A-P → 16 bytes), padding stripped."""
    if len(enc) < 32:
        return ""
    raw = bytes(((enc[2 * i] - 65) << 4) | (enc[2 * i + 1] - 65) for i in range(16) if
                65 <= enc[2 * i] <= 80 and 65 <= enc[2 * i + 1] <= 80)
    return _text(raw[:15].rstrip(b" \x00"))


def nbns(payload: bytes) -> list[Signal]:
    if len(payload) < 12 + 34:
        return []
    flags = struct.unpack_from("!H", payload, 2)[0]
    opcode = (flags >> 11) & 0xF
    if opcode not in (5, 8):  # registration, refresh: the sender's own name
        return []
    name = _nb_decode(payload[13:45])
    return [Signal("src", "netbios_name", name)] if name else []


def nbdgm(payload: bytes) -> list[Signal]:
    """NetBIOS datagram (UDP 138): the source name, and a browser host announcement's name."""
    if len(payload) < 14 + 34 or payload[0] not in (0x10, 0x11, 0x12):
        return []
    out: list[Signal] = []
    src = _nb_decode(payload[15:47])
    if src:
        out.append(Signal("src", "netbios_name", src))
    m = re.search(rb"\\MAILSLOT\\BROWSE\x00(.)", payload, re.S)
    if m and m.group(1) in (b"\x01", b"\x0f"):  # host announcement, local master announcement
        at = m.end() + 1 + 4  # update count, periodicity
        host = payload[at:at + 16].split(b"\x00", 1)[0]
        if host:
            out.append(Signal("src", "netbios_name", _text(host)))
    return out


# --------------------------------------------------------------------------- HTTP-like heads

def _head(payload: bytes) -> tuple[str, dict[str, str]] | None:
    """First line and headers (lower-case names) of an HTTP/RTSP/SSDP/SIP message."""
    end = payload.find(b"\r\n\r\n")
    head = payload[: end if end >= 0 else 4096]
    lines = head.decode("latin-1").split("\r\n") if b"\r\n" in head else head.decode("latin-1").split("\n")
    if not lines or not lines[0]:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:64]:
        k, sep, v = line.partition(":")
        if sep and k and " " not in k.strip():
            headers.setdefault(k.strip().lower(), v.strip())
    return lines[0], headers


_REQ = re.compile(r"^([A-Z_-]{3,16}) (\S+) (HTTP|RTSP)/\d\.\d$")
_RESP = re.compile(r"^(HTTP|RTSP)/\d\.\d \d{3}")


def http_like(payload: bytes) -> list[Signal]:
    parsed = _head(payload)
    if parsed is None:
        return []
    first, h = parsed
    out: list[Signal] = []
    m = _REQ.match(first)
    if m:
        _method, target, proto = m.groups()
        if proto == "RTSP":
            path = re.sub(r"^rtsp://[^/]*", "", target)
            out.append(Signal("dst", "rtsp_request", _text(path or "/")))
            if "user-agent" in h:
                out.append(Signal("src", "rtsp_client", _text(h["user-agent"])))
            else:
                out.append(Signal("src", "rtsp_client", ""))
            return out
        if "user-agent" in h:
            out.append(Signal("src", "http_ua", _text(h["user-agent"])))
        if "host" in h:
            out.append(Signal("src", "http_host", _text(h["host"].rsplit(":", 1)[0].lower())))
        seg = target.split("?", 1)[0]
        seg = re.sub(r"^https?://[^/]*", "", seg)
        parts = [p for p in seg.split("/") if p]
        out.append(Signal("dst", "http_path", _text("/" + parts[0] if parts else "/", 60)))
        return out
    m2 = _RESP.match(first)
    if m2:
        kind = "rtsp_server" if m2.group(1) == "RTSP" else "http_server"
        if "server" in h:
            out.append(Signal("src", kind, _text(h["server"])))
        elif kind == "rtsp_server":
            out.append(Signal("src", kind, ""))
        realm = re.search(r'realm="([^"]*)"', h.get("www-authenticate", ""))
        if realm:
            out.append(Signal("src", "http_realm", _text(realm.group(1))))
    return out


def ssdp(payload: bytes) -> list[Signal]:
    parsed = _head(payload)
    if parsed is None:
        return []
    first, h = parsed
    out: list[Signal] = []
    if first.startswith("M-SEARCH"):
        if "st" in h:
            out.append(Signal("src", "ssdp_search", _text(h["st"])))
        if "user-agent" in h:
            out.append(Signal("src", "ssdp_ua", _text(h["user-agent"])))
        return out
    if first.startswith("NOTIFY") or first.startswith("HTTP/"):
        if h.get("nts", "").lower() == "ssdp:byebye":
            return out
        if "server" in h:
            out.append(Signal("src", "ssdp_server", _text(h["server"])))
        t = h.get("nt") or h.get("st")
        if t and not t.startswith("uuid:") and t.lower() != "upnp:rootdevice":
            out.append(Signal("src", "ssdp_type", _text(t)))
        if "location" in h:
            out.append(Signal("src", "ssdp_location", _text(h["location"])))
    return out


# --------------------------------------------------------------------------- WS-Discovery

_WSD_TYPES = re.compile(rb"<(?:\w+:)?Types[^>]*>([^<]*)</(?:\w+:)?Types>")
_WSD_SCOPES = re.compile(rb"<(?:\w+:)?Scopes[^>]*>([^<]*)</(?:\w+:)?Scopes>")
_WSD_ACTION = re.compile(rb"<(?:\w+:)?Action[^>]*>[^<]*/(\w+)</(?:\w+:)?Action>")


def wsd(payload: bytes) -> list[Signal]:
    act = _WSD_ACTION.search(payload)
    action = act.group(1).decode("latin-1") if act else ""
    types = [t.decode("latin-1") for m in _WSD_TYPES.findall(payload) for t in m.split()]
    out: list[Signal] = []
    if action == "Probe" or (not action and b"Probe>" in payload and b"ProbeMatch" not in payload):
        return [Signal("src", "wsd_probe", _text(t)) for t in types[:8]] or [Signal("src", "wsd_probe", "")]
    if action in ("ProbeMatches", "Hello", "ResolveMatches") or b"ProbeMatch" in payload:
        out += [Signal("src", "wsd_type", _text(t)) for t in types[:8]]
        for m in _WSD_SCOPES.findall(payload)[:2]:
            for s in m.split()[:24]:
                scope = s.decode("utf-8", "replace")
                if scope.startswith("onvif://www.onvif.org/"):
                    scope = scope.removeprefix("onvif://www.onvif.org/")
                    if scope.startswith(("type/", "hardware/", "name/", "Profile/", "MAC/")) or "/" in scope:
                        from urllib.parse import unquote

                        out.append(Signal("src", "wsd_scope", _text(unquote(scope))))
    return out


# --------------------------------------------------------------------------- vendor discovery

_XML_TAG = r"<{0}>([^<]{{1,80}})</{0}>"


def sadp(payload: bytes) -> list[Signal]:
    """Hikvision SADP (UDP 37020): XML <ProbeMatch> with DeviceType/DeviceDescription."""
    if b"<ProbeMatch" not in payload and b"<DeviceDescription" not in payload:
        return []
    txt = payload.decode("utf-8", "replace")
    desc = re.search(_XML_TAG.format("DeviceDescription"), txt)
    model = desc.group(1) if desc else ""
    return [Signal("src", "discovery", _text(f"sadp {model}".strip()))]


def dhip(payload: bytes) -> list[Signal]:
    """Dahua DHIP discovery (UDP 37810): a JSON reply naming DeviceType."""
    m = re.search(rb'"DeviceType"\s*:\s*"([^"]{1,60})"', payload)
    if m:
        return [Signal("src", "discovery", _text(b"dhip " + m.group(1)))]
    if b"DHIP" in payload[:32] and b'"mac"' in payload:
        return [Signal("src", "discovery", "dhip")]
    return []


def xiongmai(payload: bytes) -> list[Signal]:
    """Xiongmai/XMEye discovery (UDP 34569): a reply carries HostName/SN JSON."""
    if len(payload) > 20 and payload[0] == 0xFF and (b"NetWork.NetCommon" in payload or b'"HostName"' in payload):
        m = re.search(rb'"HostName"\s*:\s*"([^"]{1,60})"', payload)
        return [Signal("src", "discovery", _text(b"xiongmai " + (m.group(1) if m else b"")))]
    return []


def ubnt(payload: bytes) -> list[Signal]:
    """Ubiquiti discovery (UDP 10001): TLVs; type 0x15 model, 0x0b hostname, 0x03 firmware."""
    if len(payload) < 8 or payload[0] not in (1, 2) or payload[1] == 0:
        return []
    out: list[Signal] = []
    off = 4
    model = ""
    while off + 3 <= len(payload):
        t, n = payload[off], struct.unpack_from("!H", payload, off + 1)[0]
        v = payload[off + 3: off + 3 + n]
        if t in (0x0C, 0x14, 0x15) and not model:
            model = _text(v)
        elif t == 0x03 and not model:
            model = _text(v.split(b".")[0] if b"." in v else v)
        off += 3 + n
    if model:
        out.append(Signal("src", "discovery", f"ubnt {model}"))
    return out


# --------------------------------------------------------------------------- TLS, SSH, telnet, NTP

def tls_sni(payload: bytes) -> list[Signal]:
    # record header (5) + handshake header (4) + version (2) + random (32)
    if len(payload) < 43 or payload[0] != 0x16 or payload[5] != 0x01:
        return []
    off = 43
    sid = payload[off]
    off += 1 + sid
    cs = struct.unpack_from("!H", payload, off)[0]
    off += 2 + cs
    comp = payload[off]
    off += 1 + comp
    end = off + 2 + struct.unpack_from("!H", payload, off)[0]
    off += 2
    while off + 4 <= min(end, len(payload)):
        et, el = struct.unpack_from("!HH", payload, off)
        if et == 0 and off + 9 <= len(payload):
            n = struct.unpack_from("!H", payload, off + 7)[0]
            name = payload[off + 9: off + 9 + n]
            return [Signal("src", "tls_sni", _text(name.lower()))] if name else []
        off += 4 + el
    return []


def ntp(payload: bytes) -> list[Signal]:
    if len(payload) < 48:
        return []
    mode = payload[0] & 0x7
    if mode == 3:
        return [Signal("src", "ntp_client", "")]
    if mode == 4:
        return [Signal("src", "ntp_server", "")]
    return []


# --------------------------------------------------------------------------- dispatch

def _dispatch(proto: int, sport: int, dport: int, payload: bytes) -> list[Signal]:
    ports = (sport, dport)
    if proto == 17:
        if sport in DHCP_PORTS and dport in DHCP_PORTS:
            return dhcp(payload, sport)
        if MDNS_PORT in ports or LLMNR_PORT in ports or 53 in ports:
            return dns(payload, sport, dport)
        for port, parser in _UDP_BY_PORT:  # the first of these ports either side names the parser
            if port in ports:
                return parser(payload)
        if dport == 69:
            return _tftp(payload)
        return []
    # TCP
    if not payload:
        return []
    if payload[0] == 0x16:
        return tls_sni(payload)
    if payload.startswith(b"SSH-"):
        return [Signal("src", "ssh_banner", _text(payload.split(b"\r\n", 1)[0].split(b"\n", 1)[0]))]
    if 53 in ports:
        return dns(payload[2:], sport, dport)
    if 23 in ports or 2323 in ports:
        return _telnet(payload, sport)
    if 5060 in ports:
        return _sip(payload)
    if payload[:1].isalpha():
        return http_like(payload)
    return []


def _telnet(payload: bytes, sport: int) -> list[Signal]:
    if sport not in (23, 2323):
        return []
    i = 0
    while i + 2 < len(payload) and payload[i] == 0xFF:  # IAC negotiations
        i += 3
    lines = [_text(x) for x in payload[i:].replace(b"\r", b"\n").split(b"\n")]
    lines = [x for x in lines if len(x) >= 3]
    return [Signal("src", "telnet_banner", lines[0])] if lines else []


def _tftp(payload: bytes) -> list[Signal]:
    """RFC 1350 RRQ/WRQ: opcode 1/2, file name, NUL, mode, NUL."""
    if len(payload) < 4 or payload[0] != 0 or payload[1] not in (1, 2):
        return []
    name, sep, rest = payload[2:].partition(b"\x00")
    mode = rest.split(b"\x00", 1)[0].lower()
    if not sep or not name or mode not in (b"octet", b"netascii", b"mail"):
        return []
    return [Signal("src", "tftp_request", _text(name))]


def _sip(payload: bytes) -> list[Signal]:
    parsed = _head(payload)
    if parsed is None or "SIP/2.0" not in parsed[0]:
        return []
    h = parsed[1]
    ua = h.get("user-agent") or h.get("server")
    return [Signal("src", "sip_ua", _text(ua))] if ua else []


def signals(frame: FrameLike) -> list[Signal]:
    """Every signal one rare frame carries; ``[]`` when it carries none or does not parse."""
    try:
        if frame.l3 not in (4, 6):
            return []
        t = transport(frame.l3, bytes(frame.data))
        if t is None:
            return []
        proto, sport, dport, payload = t
        if not payload:
            return []
        return _dispatch(proto, sport, dport, payload)
    except Exception:  # a malformed packet gives no signal, never an error
        return []


#: UDP discovery protocols whose parser needs only the payload, by port, in the order they are tried
_UDP_BY_PORT: tuple[tuple[int, Callable[[bytes], list[Signal]]], ...] = (
    (SSDP_PORT, ssdp), (WSD_PORT, wsd), (NTP_PORT, ntp), (NBNS_PORT, nbns), (NBDGM_PORT, nbdgm),
    (SADP_PORT, sadp), (DHIP_PORT, dhip), (XIONGMAI_PORT, xiongmai), (UBNT_PORT, ubnt), (5060, _sip),
)
