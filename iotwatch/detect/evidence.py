"""Finished flows and rare frames → compact per-device evidence, as the input streams.

Only flows that can become evidence are kept, in columns, per device and bounded
(:data:`MAX_EVENTS` per device and class): probes (SYNs nobody completed, empty connections the client reset,
NULL/FIN/Xmas packets, ICMP echo/timestamp requests), connections to authentication services,
connections to external peers (beacons, uploads) and heavy one-way streams (flood candidates);
and, kept apart for the call-back rules only, TCP sessions with local peers that held repeated
exchanges, spoke HTTP or served a program (:attr:`DeviceEvidence.local`).
ARP requests and DNS query names come from the sidecar's rare frames. Everything here is
mergeable: two halves of an archive give two :class:`Evidence` objects that :meth:`merge` joins.

Past the cap, events are no longer kept one by one but still **counted**: each is added to a
bounded aggregate (:data:`OVF_DTYPE`) per device, role (a probe, a flow to a host, a login
session), target and minute: flows, packets, bytes, first and last packet. The rules add these
to the episodes they extend, so an alert's counts and ``last_ts`` are the episode's totals, not
the cap. Only when the aggregate table itself is full (a scanner's millions of random targets)
are per-target totals lower bounds, and the alert says so.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .._jit import inline_kernel, kernel
from ..addrs import LocalNets, addr_class, ip_str, mac_str
from ..flows import S_EST, S_REJECTED, S_RST, S_SYN, S_SYNACK, exchanges, flow_sides, push_stats
from ..sidecar import RareFrame

# event kinds (bits)
K_PROBE = 1  # TCP SYN without a completed, data-carrying connection (unanswered, rejected, reset empty)
K_WEIRD = 2  # TCP without SYN nor ACK from the client: NULL, FIN, Xmas probes
K_ECHO = 4  # ICMP echo / timestamp / address-mask request, ICMPv6 echo request
K_AUTH = 8  # TCP connection to an authentication service (telnet, SSH, FTP, RDP, VNC...)
K_EXT = 16  # to an external (internet) address
K_EMPTY_RST = 32  # handshake completed, no payload either way, closed by the client with RST
K_HEAVY = 64  # many packets one way (flood candidate)
K_HALF_OPEN = 128  # SYN answered by SYN-ACK, then the client's RST without ACK (a raw-socket scanner)
K_UDP_NOREPLY = 256  # UDP to a unicast address that never answered

AUTH_PORTS = np.array([21, 22, 23, 2323, 3389, 5900, 110, 143, 1433, 3306, 8291], np.int64)
#: a flow is a flood candidate above this many client packets
HEAVY_PKTS = 200
MAX_EVENTS = 20_000  # per device and class (the first ones: every rule fires long before); the two
# classes are flows without payload (probes, floods of SYNs) and flows with payload (sessions,
# uploads, beacons), so that a scanner's probes never crowd out its upload
MAX_EVENTS_TOTAL = 500_000  # over all devices (about 50 MB)

MAX_DNS = 4096  # DNS queries kept per device (the side channel keeps 12 a minute, 64 in a burst)
#: aggregates of the events past the cap: rows per device and role, and over all devices
MAX_OVF_ROWS = 16_384
MAX_OVF_ROWS_TOTAL = 262_144  # about 30 MB
#: distinct (address, port) targets and hosts of the probes past the cap, over all devices (16 MB)
MAX_OVF_DISTINCT_TOTAL = 1 << 20
#: roles of an aggregate row: what the rules count it as
R_PROBE, R_HOST, R_AUTH = 1, 2, 3
OVF_DTYPE = np.dtype([
    ("id", np.uint64), ("role", np.uint8), ("key", np.uint64), ("minute", np.int64),
    ("src_hi", np.uint64), ("src_lo", np.uint64), ("dst_hi", np.uint64), ("dst_lo", np.uint64),
    ("dport", np.uint16), ("proto", np.uint8), ("v6", np.uint8), ("ext", np.uint8),
    ("first", np.float64), ("last", np.float64), ("flows", np.int64), ("pkts_out", np.int64),
    ("pkts_in", np.int64), ("bytes_out", np.int64),
    ("k_probe", np.int64), ("k_half_open", np.int64), ("k_empty_rst", np.int64), ("k_weird", np.int64),
    ("k_echo", np.int64),
])
#: the probe kinds an aggregate row counts, by field
OVF_KIND_FIELDS = (("k_probe", 1), ("k_half_open", 128), ("k_empty_rst", 32), ("k_weird", 2), ("k_echo", 4))

EVENT_DTYPE = np.dtype([
    ("ts", np.float64), ("end", np.float64), ("dst_hi", np.uint64), ("dst_lo", np.uint64),
    ("src_hi", np.uint64), ("src_lo", np.uint64), ("flow_id", np.uint64), ("frame", np.int64),
    ("bytes_out", np.uint64), ("payload_out", np.uint64), ("payload_in", np.uint64),
    ("pkts_out", np.uint32), ("pkts_in", np.uint32),
    ("sport", np.uint16), ("dport", np.uint16), ("kind", np.uint16), ("proto", np.uint8), ("v6", np.uint8),
    ("app", np.uint8),
    # the flow's exchanges (flows.py): the side with the steadier beat (0 the device, 1 its peer;
    # the one with more beats, else more exchanges), its exchanges, beats, beat and the mean and
    # coefficient of variation of its intervals; and how many exchanges the other side started
    ("hb_side", np.uint8), ("hb_pushes", np.uint32), ("hb_beats", np.uint32), ("hb_other", np.uint32),
    ("hb_beat_s", np.float32), ("hb_iv", np.float32), ("hb_cv", np.float32),
    ("opened", np.uint8),  # TCP: the client's SYN was seen (the session began in the capture)
])

APPS = ("", "ssh", "telnet", "ftp", "http", "tls", "rtsp", "mirai_c2", "program", "smtp")
#: A_PROGRAM: an HTTP response that serves a program (an executable's magic, or an attachment
#: named as one): the download of a stager's payload, the step before its call-backs
A_SSH, A_TELNET, A_FTP, A_HTTP, A_TLS, A_RTSP, A_MIRAI_C2, A_PROGRAM, A_SMTP = range(1, 10)
#: A_SMTP: a mail server's greeting (``220 <host> ESMTP ...``, RFC 5321 section 4.2) or a mail
#: client's first command (EHLO, HELO), on any port
#: a local TCP session is evidence (kept apart, see DeviceEvidence.local) when one side started
#: this many exchanges in it, or when it spoke HTTP (call-backs to a controller on the site)
LOCAL_SESSION_PUSHES = 4
MAX_LOCAL_EVENTS = 4096  # local sessions kept per device (the first ones)
#: extensions of files that are programs or scripts (an attachment so named is a program)
PROGRAM_EXTENSIONS = (b".exe", b".dll", b".scr", b".msi", b".ps1", b".psm1", b".vbs", b".vbe", b".js", b".jse",
                      b".wsf", b".hta", b".bat", b".cmd", b".sh", b".py", b".pl", b".elf", b".jar", b".so", b".apk")
#: content types of executables and scripts
PROGRAM_TYPES = frozenset((b"application/x-executable", b"application/x-msdownload", b"application/x-dosexec",
                           b"application/x-msdos-program", b"application/vnd.microsoft.portable-executable",
                           b"application/x-elf", b"application/x-sharedlib", b"application/x-mach-binary",
                           b"application/x-sh", b"application/x-shellscript", b"text/x-shellscript",
                           b"application/x-python", b"text/x-python", b"application/x-powershell",
                           b"application/hta", b"application/java-archive"))
#: extensions of data formats (documents, archives, media, disk and firmware images): an
#: attachment so named is data, whatever its type says
DATA_EXTENSIONS = frozenset((
    b"txt", b"csv", b"json", b"xml", b"html", b"htm", b"pdf", b"doc", b"docx", b"xls", b"xlsx", b"ppt", b"pptx",
    b"odt", b"ods", b"rtf", b"zip", b"gz", b"tgz", b"bz2", b"xz", b"7z", b"rar", b"tar", b"zst", b"jpg", b"jpeg",
    b"png", b"gif", b"bmp", b"webp", b"svg", b"ico", b"mp3", b"mp4", b"m4a", b"wav", b"avi", b"mkv", b"mov",
    b"webm", b"ogg", b"bin", b"img", b"iso", b"fw", b"hex", b"dat", b"db", b"sqlite", b"log", b"cfg", b"conf",
    b"ini", b"yaml", b"yml", b"pem", b"crt", b"cer", b"der", b"key", b"pkg", b"deb", b"rpm", b"ipk", b"trx",
    b"chk", b"ota", b"swu", b"ttf", b"woff", b"woff2", b"css", b"ics", b"vcf", b"eml",
))
#: the first bytes of executables: Windows PE, ELF, Mach-O (both byte orders, fat), a script's #!
PROGRAM_MAGIC = (b"MZ", b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa", b"\xca\xfe\xba\xbe", b"#!/")


_MIX = np.uint64(0x9E3779B97F4A7C15)


def records(a: np.ndarray) -> np.ndarray:
    """A structured array (EVENT_DTYPE, OVF_DTYPE...) seen as opaque records of its size: numpy
    copies a structured array field by field, an opaque one as blocks of bytes (five or six
    times faster). Select or copy through it, then ``.view(a.dtype)``: the same records, byte for
    byte (:func:`take_rows`)."""
    return a.view(np.dtype((np.void, a.dtype.itemsize)))


def take_rows(a: np.ndarray, sel: np.ndarray | slice) -> np.ndarray:
    """``a[sel]`` (a mask, indices or a slice) of a structured array, copied as opaque records (:func:`records`)."""
    return records(a)[sel].view(a.dtype)


def copy_rows(a: np.ndarray) -> np.ndarray:
    """``a.copy()`` of a structured array, as opaque records (:func:`records`)."""
    return records(a).copy().view(a.dtype)


def host_key(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """One 64-bit key per address (two-word layout), for grouping and distinct counts."""
    with np.errstate(over="ignore"):
        return np.asarray(lo ^ (hi * _MIX + np.uint64(0x632BE59BD9B4E019)), np.uint64)


def target_keys(ev: np.ndarray, with_port: bool = True) -> np.ndarray:
    """One key per destination (address, and protocol and port when ``with_port``)."""
    h = host_key(ev["dst_hi"], ev["dst_lo"])
    if with_port:
        h = h ^ (ev["dport"].astype(np.uint64) << np.uint64(1)) ^ ev["proto"].astype(np.uint64)
    return h


#: probes of a scan: any probe kind, except a SYN the client's own stack retransmitted (a real
#: connect() that timed out, not a probe)
PROBE_KINDS = 1 | 2 | 4 | 32 | 128  # K_PROBE | K_WEIRD | K_ECHO | K_EMPTY_RST | K_HALF_OPEN


def scan_probes(ev: np.ndarray) -> np.ndarray:
    """Mask of the events the scan rule counts as probes."""
    k = ev["kind"]
    retried = ((k & PROBE_KINDS) == 1) & (ev["pkts_out"] > 1) & (ev["pkts_in"] == 0)
    return ((k & PROBE_KINDS) != 0) & ~retried


def login_sessions(ev: np.ndarray) -> np.ndarray:
    """Mask of the events the brute-force rule counts as sessions to a login service: TCP to a
    login port, or to a service whose banner said SSH, telnet or FTP in any of its flows (the
    side channel reads a few first payloads per device and minute: the others are the same
    service). A C2 that listens on a telnet port is not a login."""
    k = ev["kind"]
    auth = (k & 8) != 0
    banner = np.isin(ev["app"], (A_SSH, A_TELNET, A_FTP))
    if banner.any():
        auth |= (ev["proto"] == 6) & np.isin(target_keys(ev), target_keys(ev[banner]))
    return auth & ((k & (1 | 128)) == 0) & (ev["app"] != A_MIRAI_C2)


def _app_of(data: bytes, l3: int, direction: int, dport: int) -> int:
    """The application a first payload reveals (banners and request lines), 0 when unsure."""
    if l3 == 4:
        if len(data) < 20:
            return 0
        ihl = (data[0] & 15) * 4
        proto = data[9]
        end = int.from_bytes(data[2:4], "big")  # IP total length: Ethernet padding is not payload
    elif l3 == 6:
        if len(data) < 40:
            return 0
        ihl, proto = 40, data[6]
        end = 40 + int.from_bytes(data[4:6], "big")
    else:
        return 0
    if proto != 6 or len(data) < ihl + 20:
        return 0
    doff = (data[ihl + 12] >> 4) * 4
    size = (end if end else len(data)) - ihl - doff  # the segment's payload length (IP length 0: TSO, the capture's)
    p = data[ihl + doff: ihl + doff + min(64, max(size, 0))]
    if not p:
        return 0
    if direction == 1 and p.startswith(b"HTTP/1.") and serves_program(data[ihl + doff: ihl + doff + max(size, 0)]):
        return A_PROGRAM
    if p.startswith(b"SSH-"):
        return A_SSH
    if p[0] == 0xFF and len(p) >= 2 and p[1] in (0xFB, 0xFC, 0xFD, 0xFE):
        return A_TELNET
    if direction == 1 and (p.startswith(b"220 ") or p.startswith(b"220-")) and b"FTP" in p.upper():
        return A_FTP
    if direction == 1 and (p.startswith(b"220 ") or p.startswith(b"220-")) and b"SMTP" in p.upper():
        return A_SMTP
    if direction == 0 and p[:5].upper() in (b"EHLO ", b"HELO "):
        return A_SMTP
    if p.startswith((b"GET ", b"POST ", b"HEAD ", b"PUT ", b"HTTP/1.")):
        return A_HTTP
    if p.startswith((b"OPTIONS rtsp", b"DESCRIBE rtsp", b"RTSP/1.0")):
        return A_RTSP
    if p[0] == 0x16 and len(p) >= 3 and p[1] == 3:
        return A_TLS
    # Mirai's bot greets its C2 first with a tiny binary hello: 00 00 00 01, then the id's length
    # and the id (in the same segment or the next ones). Its 2-byte keep-alive (00 00) is not one.
    if direction == 0 and dport in (23, 2323) and p[:4] == b"\x00\x00\x00\x01" and (
            size == 4 or (size >= 5 and size == 5 + p[4])):
        return A_MIRAI_C2
    return 0


#: exchanges one side of a session still open has started when a verdict during a live run counts
#: it (the call-back rules need 6, the heartbeat rule 8 beats)
HELD_OPEN_PUSHES = 6


def held_sessions(rows: np.ndarray) -> np.ndarray:
    """Mask of the flow records (flows.FLOW_DTYPE) of TCP sessions in which one side has started
    HELD_OPEN_PUSHES exchanges or more: a heartbeat or call-backs under way. A live run's verdicts
    count such a session while it is still open (a held session may last for days: its record
    would come only at the active timeout); its start cannot change, only its counts grow."""
    m = (rows["proto"] == 6) & (rows["plast"] >= 0)
    i = np.flatnonzero(m)  # (the exchanges read only for those: a live run asks over the whole open table)
    m[i] = rows["xn"][i].max(axis=1) >= HELD_OPEN_PUSHES
    return m


def serves_program(p: bytes) -> bool:
    """Whether an HTTP response's first segment serves a program: its body begins with an
    executable's magic (PROGRAM_MAGIC); its type names an executable or a script
    (PROGRAM_TYPES); or it offers an attachment whose file name is a program's or a script's
    (PROGRAM_EXTENSIONS), or, typed as mere bytes (application/octet-stream), a name that claims
    no known data format (DATA_EXTENSIONS: documents, archives, media, firmware images)."""
    head, sep, body = p.partition(b"\r\n\r\n")
    if sep and body.startswith(PROGRAM_MAGIC):
        return True
    ctype, name = b"", None
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-type:"):
            ctype = line[13:].split(b";")[0].strip()
        elif line.startswith(b"content-disposition:") and b"attachment" in line and b"filename" in line:
            name = line.split(b"filename", 1)[1].lstrip(b"*= ").split(b";")[0].strip(b"\"' ")
    if ctype in PROGRAM_TYPES:
        return True
    if name is None:
        return False
    if name.endswith(PROGRAM_EXTENSIONS):
        return True
    ext = name.rsplit(b".", 1)[1] if b"." in name else b""
    return ctype == b"application/octet-stream" and ext not in DATA_EXTENSIONS


@kernel
def _flow_events(rows, app, net_hi, net_lo, mask_hi, mask_lo, ev, idx, local):  # type: ignore[no-untyped-def]
    """Classify finished flows (flows.FLOW_DTYPE) into event kinds; the flows that are evidence
    go to ``ev`` (EVENT_DTYPE) and their row numbers to ``idx``, and whether each is kept only
    as a local session to ``local``. Returns how many."""
    m = 0
    for i in range(rows.shape[0]):
        r = rows[i]
        c_hi, c_lo, s_hi, s_lo, c_port, s_port = flow_sides(r)
        proto = r.proto
        tcp = proto == 6
        icmp = proto == 1 or proto == 58
        itype = r.icmp_tc >> 8
        st = np.int64(r.state)
        syn_c = r.fl[0]
        ack_c = r.fl[1]
        rst_c = r.fl[3]
        empty = r.pl[0] == 0 and r.pl[1] == 0
        syn_open = tcp and syn_c > 0
        established = (st & S_EST) != 0
        kind = 0
        if syn_open and empty:
            if (st & S_SYNACK) == 0 or (st & S_REJECTED) != 0 or ((st & S_RST) != 0 and not established):
                kind |= K_PROBE
            if established and rst_c > 0:
                kind |= K_EMPTY_RST
            if (st & S_SYNACK) != 0 and not established and rst_c > 0 and (st & S_REJECTED) == 0:
                kind |= K_HALF_OPEN
        if tcp and syn_c == 0 and ack_c == 0 and rst_c == 0 and r.pk[0] > 0 and (st & S_SYN) == 0:
            kind |= K_WEIRD
        if icmp and ((proto == 1 and (itype == 8 or itype == 13 or itype == 17)) or (proto == 58 and itype == 128)):
            kind |= K_ECHO
        if tcp:
            a = app[i]
            auth = a == A_SSH or a == A_TELNET or a == A_FTP  # a login banner on any port
            if syn_c > 0 and not auth:
                for q in range(AUTH_PORTS.shape[0]):
                    if s_port == AUTH_PORTS[q]:
                        auth = True
                        break
            if auth:
                kind |= K_AUTH
        scls = addr_class(s_hi, s_lo, net_hi, net_lo, mask_hi, mask_lo)
        if scls == 0:
            kind |= K_EXT
        if r.pk[0] >= HEAVY_PKTS:
            kind |= K_HEAVY
        if proto == 17 and r.pk[1] == 0 and scls != 2:
            kind |= K_UDP_NOREPLY
        keep = (kind & ~K_EXT) != 0 or (scls == 0 and (tcp or proto == 17))
        loc = False
        if not keep and tcp and scls == 1:
            a = app[i]
            n0, n1 = exchanges(r)
            loc = n0 >= LOCAL_SESSION_PUSHES or n1 >= LOCAL_SESSION_PUSHES or a == A_HTTP or a == A_PROGRAM
            keep = loc
        if not keep or (r.mac_c >> np.uint64(40)) & np.uint64(1) != 0:  # nor from a multicast source
            continue
        e = ev[m]
        e.ts = r.first / 1e9
        e.end = r.last / 1e9
        e.dst_hi = s_hi
        e.dst_lo = s_lo
        e.src_hi = c_hi
        e.src_lo = c_lo
        e.flow_id = r.flow_id
        e.frame = r.frame
        e.bytes_out = r.by[0]
        e.payload_out = r.pl[0]
        e.payload_in = r.pl[1]
        e.pkts_out = r.pk[0]
        e.pkts_in = r.pk[1]
        e.sport = itype if icmp else c_port
        e.dport = (r.icmp_tc & 0xFF) if icmp else s_port
        e.proto = proto
        e.kind = kind
        e.v6 = r.v6
        e.app = app[i]
        # (a side's exchange fields other than its count are set at its first exchange; a flow
        # without data, a probe, has none: nothing to work out)
        x0, x1 = exchanges(r)
        b0 = r.xbeat[0] if x0 > 0 else 0
        b1 = r.xbeat[1] if x1 > 0 else 0
        hb = 0 if b0 > b1 or (b0 == b1 and x0 >= x1) else 1
        e.hb_side = hb
        e.hb_pushes = x1 if hb else x0
        e.hb_beats = b1 if hb else b0
        e.hb_other = x0 if hb else x1
        e.hb_beat_s = abs(r.xref[hb]) if e.hb_beats > 0 else 0.0
        if e.hb_pushes >= 2:
            iv, cv = push_stats(e.hb_pushes, r.xg1[hb], r.xg2[hb])
            e.hb_iv = iv
            e.hb_cv = cv
        else:
            e.hb_iv = 0.0
            e.hb_cv = 0.0
        e.opened = tcp and syn_c > 0
        local[m] = loc
        idx[m] = i
        m += 1
    return m


#: an ARP request as the rules read it (DeviceEvidence.arp_array): time, target IPv4, frame
ARP_DTYPE = np.dtype([("ts", np.float64), ("tpa", np.int64), ("frame", np.int64)])


@dataclass(slots=True)
class DnsQuery:
    ts: float
    qname: str
    qtype: int
    resolver: str
    frame: int  # file index << 40 | frame number


def parse_dns_query(data: bytes, l3: int) -> tuple[str, int] | None:
    """(query name, type) of a DNS query over UDP, or None."""
    if l3 == 4:
        if len(data) < 28:
            return None
        p = (data[0] & 15) * 4 + 8
    elif l3 == 6:
        p = 48
    else:
        return None
    return _question(data[p + 12:])


@lru_cache(maxsize=8192)
def _question(q: bytes) -> tuple[str, int] | None:
    """Name and type of the first question (a device asks the same names again and again)."""
    labels = []
    p = 0
    n = len(q)
    while p < n:
        ln = q[p]
        if ln == 0:
            p += 1
            break
        if ln & 0xC0 or p + 1 + ln > n:
            return None
        labels.append(q[p + 1: p + 1 + ln].decode("ascii", "replace").lower())
        p += 1 + ln
    else:
        return None
    if p + 2 > n:
        return None
    return ".".join(labels), int.from_bytes(q[p:p + 2], "big")


@dataclass(slots=True)
class DeviceEvidence:
    chunks: list[np.ndarray] = field(default_factory=list)
    n: int = 0
    n_class: list[int] = field(default_factory=lambda: [0, 0])  # events without / with payload
    dropped: int = 0  # events past the cap: not kept one by one, counted in ``ovf``
    dropped_last: float = 0.0  # the last of them (epoch s)
    ovf: np.ndarray = field(default_factory=lambda: np.zeros(0, OVF_DTYPE))  # sorted by id
    ovf_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # hash index of ovf's ids
    ovf_index_rows: int = -1  # how many rows ovf had when ovf_index was built
    ovf_full_roles: set[int] = field(default_factory=set)  # roles some of whose events past the cap fit no row
    ovf_targets: list[np.ndarray] = field(default_factory=list)  # distinct probe targets past the cap (keys)
    ovf_hosts: list[np.ndarray] = field(default_factory=list)
    ovf_distinct_full: bool = False  # the distinct sets above stopped growing: distinct counts are lower bounds
    arp: list[tuple[float, int, int]] = field(default_factory=list)  # ts, target IPv4, frame
    dns: list[DnsQuery] = field(default_factory=list)
    c2_hellos: list[tuple[float, int, int]] = field(default_factory=list)  # ts, flow id, frame
    #: TCP sessions with local peers kept for the call-back rules only (held sessions with repeated
    #: exchanges, HTTP conversations, program downloads): apart from ``chunks``, so that the other
    #: rules and the model see what they always saw, and capped on their own (MAX_LOCAL_EVENTS)
    local: list[np.ndarray] = field(default_factory=list)
    n_local: int = 0

    sorted_n: int = 0  # chunks[0] holds this many events in time order (what events() last returned)
    #: bumped whenever something may be added to the device (Evidence._dev; a frame that adds
    #: nothing, Evidence._seen, leaves it): equal versions, same evidence (a live run's verdict
    #: passes judge again only the devices whose version moved)
    version: int = 0
    #: in an evidence view (Evidence.with_flows), digests of the events it added to ``chunks``
    #: and to ``local`` (0 otherwise: there, ``n`` and ``n_local`` tell what they hold)
    view_events: int = 0
    view_local: int = 0
    #: ``arp`` as an array (:meth:`arp_array`: the list is only ever appended to) and the distinct
    #: sets past the cap as :meth:`distinct_past_cap` last made them (unique and sorted already);
    #: shared by copies (never written)
    arp_cache: np.ndarray = field(default_factory=lambda: np.zeros(0, ARP_DTYPE))
    distinct_cache: tuple[np.ndarray, np.ndarray] | None = None
    #: the DNS queries as the flood rule last grouped them (rules.DnsGroups: how many, and the
    #: last of them). One box shared by the device and its copies, whose ``dns`` are the
    #: device's queries then (an evidence view's copy adds none; the device only appends): a
    #: copy's groups serve the device at the next pass, and are taken up from there
    dns_groups: list[object] = field(default_factory=list)

    def events(self) -> np.ndarray:
        """Every event kept, in time order (merged and sorted once, until more come). The events
        added since the last call are sorted among themselves and merged into the sorted ones
        (the same order as a stable sort of all of them: ties keep the order they came in)."""
        if not self.chunks:
            return np.empty(0, EVENT_DTYPE)
        done = self.sorted_n if self.sorted_n and len(self.chunks[0]) == self.sorted_n else 0
        if done and len(self.chunks) == 1:
            return self.chunks[0]
        new = self.chunks[1:] if done else self.chunks
        ev = np.empty(sum(len(c) for c in new), EVENT_DTYPE)
        r = records(ev)  # (copies as opaque records: see records())
        p = 0
        for c in new:  # (np.concatenate would re-derive the record type for every call)
            r[p : p + len(c)] = records(c)
            p += len(c)
        ev = take_rows(ev, np.argsort(ev["ts"], kind="stable"))
        if done:
            old = self.chunks[0]
            # each new event goes after the sorted ones of the same time: its place among all
            at = np.searchsorted(old["ts"], ev["ts"], side="right") + np.arange(len(ev))
            out = np.empty(len(old) + len(ev), EVENT_DTYPE)
            # (``at`` rises: the old events before the first new one are copied as one block, and
            # only the rest, usually a few recent ones, placed by mask)
            p0 = int(at[0]) if len(at) else len(old)
            ro = records(old)
            r = records(out)
            r[:p0] = ro[:p0]
            tail = r[p0:]
            keep = np.ones(len(tail), np.bool_)
            keep[at - p0] = False
            tail[at - p0] = records(ev)
            tail[keep] = ro[p0:]
            ev = out
        self.chunks = [ev]
        self.sorted_n = len(ev)
        return ev

    def copy(self) -> DeviceEvidence:
        """A copy that can take more evidence without changing this one (arrays that are only
        ever replaced, never written, are shared)."""
        return DeviceEvidence(
            chunks=list(self.chunks), n=self.n, n_class=list(self.n_class), dropped=self.dropped,
            dropped_last=self.dropped_last, ovf=copy_rows(self.ovf), ovf_index=self.ovf_index,
            ovf_index_rows=self.ovf_index_rows, ovf_full_roles=set(self.ovf_full_roles),
            ovf_targets=list(self.ovf_targets), ovf_hosts=list(self.ovf_hosts),
            ovf_distinct_full=self.ovf_distinct_full, arp=list(self.arp), dns=list(self.dns),
            c2_hellos=list(self.c2_hellos), local=list(self.local), n_local=self.n_local,
            sorted_n=self.sorted_n, version=self.version, view_events=self.view_events, view_local=self.view_local,
            arp_cache=self.arp_cache, distinct_cache=self.distinct_cache, dns_groups=self.dns_groups)

    def arp_array(self) -> np.ndarray:
        """The ARP requests (``arp``) as an array of :data:`ARP_DTYPE`, in the order they came: the
        requests added since the last call are converted, the others kept (the rules ask at every
        pass of a live run)."""
        have = len(self.arp_cache)
        if have != len(self.arp):
            new = np.array(self.arp[have:], dtype=ARP_DTYPE)
            self.arp_cache = np.concatenate([self.arp_cache, new]) if have else new
        return self.arp_cache

    def keep_local(self, ev: np.ndarray) -> None:
        """Keep local sessions (EVENT_DTYPE), the first MAX_LOCAL_EVENTS of the device."""
        room = MAX_LOCAL_EVENTS - self.n_local
        if room > 0:
            self.local.append(ev[:room])
            self.n_local += min(room, len(ev))

    def local_events(self) -> np.ndarray:
        """The local sessions kept, in time order."""
        if not self.local:
            return np.empty(0, EVENT_DTYPE)
        ev = np.concatenate(self.local) if len(self.local) > 1 else self.local[0]
        ev = take_rows(ev, np.argsort(ev["ts"], kind="stable"))
        self.local = [ev]
        return ev

    def distinct_past_cap(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct (address, port) targets and hosts of the probes past the cap."""
        c = self.distinct_cache
        if c is not None and len(self.ovf_targets) == 1 and len(self.ovf_hosts) == 1 and \
                self.ovf_targets[0] is c[0] and self.ovf_hosts[0] is c[1]:
            return c  # (nothing added since they were made unique)
        t = _distinct(self.ovf_targets, c[0] if c is not None else None)
        h = _distinct(self.ovf_hosts, c[1] if c is not None else None)
        self.ovf_targets, self.ovf_hosts = [t], [h]
        self.distinct_cache = (t, h)
        return t, h


def _distinct(parts: list[np.ndarray], known: np.ndarray | None) -> np.ndarray:
    """``np.unique`` of the keys of ``parts``; when the first part is ``known`` (keys made unique
    before, sorted), the others' new keys are placed into it, not all sorted again (in an
    evidence view, a scanner's hundreds of thousands of targets past the cap and the few its
    open flows add, at every pass of a live run)."""
    if not parts:
        return np.zeros(0, np.uint64)
    if known is None or parts[0] is not known:
        return np.unique(np.concatenate(parts))
    rest = np.unique(np.concatenate(parts[1:])) if len(parts) > 1 else known[:0]
    if len(known) and len(rest):
        at = np.minimum(np.searchsorted(known, rest), len(known) - 1)
        rest = rest[known[at] != rest]
    return np.insert(known, np.searchsorted(known, rest), rest) if len(rest) else known


def _ovf_ids(role: int, key: np.ndarray, src: np.ndarray, minute: np.ndarray) -> np.ndarray:
    """The aggregate row id of each event: (role, source, key, minute)."""
    with np.errstate(over="ignore"):
        return (key * np.uint64(0x9E3779B97F4A7C15)) ^ (src * np.uint64(0xC2B2AE3D27D4EB4F)) \
            ^ (minute.astype(np.uint64) * np.uint64(0x165667B19E3779F9)) ^ np.uint64(role)


def _ovf_rows(ev: np.ndarray, role: int, key: np.ndarray, ids: np.ndarray, minute: np.ndarray) -> np.ndarray:
    """One aggregate row per id of these events."""
    order = np.argsort(ids, kind="stable")
    ids_s = ids[order]
    starts = np.concatenate(([0], np.flatnonzero(ids_s[1:] != ids_s[:-1]) + 1))
    first_idx = order[starts]
    rows = np.zeros(len(starts), OVF_DTYPE)
    rows["id"] = ids_s[starts]
    rows["role"] = role
    rows["key"] = key[first_idx]
    rows["minute"] = minute[first_idx]
    for f in ("src_hi", "src_lo", "dst_hi", "dst_lo", "dport", "proto", "v6"):
        rows[f] = ev[f][first_idx]
    rows["ext"] = (ev["kind"][first_idx] & K_EXT) != 0
    ts = ev["ts"][order]
    rows["first"] = np.minimum.reduceat(ts, starts)
    rows["last"] = np.maximum.reduceat(np.maximum(ev["end"][order], ts), starts)
    rows["flows"] = np.diff(np.append(starts, len(ids_s)))
    for f in ("pkts_out", "pkts_in", "bytes_out"):
        rows[f] = np.add.reduceat(ev[f][order].astype(np.int64), starts)
    if role == R_PROBE:
        kind = ev["kind"][order]
        for f, bit in OVF_KIND_FIELDS:
            rows[f] = np.add.reduceat(((kind & bit) != 0).astype(np.int64), starts)
    return rows


@inline_kernel
def _slot(x, mask):  # type: ignore[no-untyped-def]
    """The first slot of id ``x`` in an index of ``mask + 1`` slots."""
    h = (x ^ (x >> np.uint64(29))) * np.uint64(0xBF58476D1CE4E5B9)
    return np.int64((h >> np.uint64(32)) & np.uint64(mask))


@kernel
def _index_ids(tid, index):  # type: ignore[no-untyped-def]
    """Fill ``index`` (all -1, a power of two of at least twice ``len(tid)`` slots) with the row of each id."""
    mask = index.shape[0] - 1
    for k in range(tid.shape[0]):
        s = _slot(tid[k], mask)
        while index[s] >= 0:
            s = (s + 1) & mask
        index[s] = k


def _id_index(tid: np.ndarray) -> np.ndarray:
    """A hash index of an aggregate table's ids (open addressing): one probe or two per search,
    where a binary search over a full table of 16,384 rows takes fourteen dependent reads (a
    flood's spoofed sources search once per role and flow, and miss)."""
    size = 16
    while size < 2 * len(tid):
        size *= 2
    index = np.full(size, -1, np.int32)
    _index_ids(tid, index)
    return index


@kernel
def _accumulate(tid, index, first, last, flows, pkts_out, pkts_in, bytes_out, k0, k1, k2, k3, k4,  # type: ignore[no-untyped-def]
                ids, idx, ts, end, po, pi, bo, kind, with_kinds, miss):
    """Add event ``idx[j]`` to its aggregate row (``ids[j]`` looked up in ``index``, the hash
    index of the table's ids ``tid``; the other arrays are the table's columns and the events'
    fields); the ``j`` without a row go to ``miss``. Returns how many missed."""
    mask = index.shape[0] - 1
    nm = 0
    for j in range(ids.shape[0]):
        i = idx[j]
        x = ids[j]
        s = _slot(x, mask)
        lo = -1
        while index[s] >= 0:
            if tid[index[s]] == x:
                lo = index[s]
                break
            s = (s + 1) & mask
        if lo < 0:
            miss[nm] = j
            nm += 1
            continue
        t = ts[i]
        e = end[i] if end[i] > t else t
        if t < first[lo]:
            first[lo] = t
        if e > last[lo]:
            last[lo] = e
        flows[lo] += 1
        pkts_out[lo] += po[i]
        pkts_in[lo] += pi[i]
        bytes_out[lo] += bo[i]
        if with_kinds:
            k = kind[i]
            k0[lo] += (k & 1) != 0
            k1[lo] += (k & 128) != 0
            k2[lo] += (k & 32) != 0
            k3[lo] += (k & 2) != 0
            k4[lo] += (k & 4) != 0
    return nm


@dataclass(slots=True)
class _PastCap:
    """The columns of a batch of events past the cap, computed once for every role."""

    ev: np.ndarray
    ts: np.ndarray
    end: np.ndarray
    po: np.ndarray
    pi: np.ndarray
    bo: np.ndarray
    kind: np.ndarray
    src: np.ndarray  # host_key of the source
    minute: np.ndarray

    @classmethod
    def of(cls, ev: np.ndarray) -> _PastCap:
        c = np.ascontiguousarray
        return cls(ev, c(ev["ts"]), c(ev["end"]), c(ev["pkts_out"]), c(ev["pkts_in"]), c(ev["bytes_out"]),
                   c(ev["kind"]), host_key(ev["src_hi"], ev["src_lo"]), (ev["ts"] // 60).astype(np.int64))


def _add_rows(d: DeviceEvidence, pc: _PastCap, idx: np.ndarray, role: int, key: np.ndarray,
              room: int) -> tuple[np.ndarray, bool]:
    """Count the events ``idx`` of ``pc`` (with their ``key``) into the device's table ``d.ovf``
    (sorted by id): into their rows (a compiled loop), or into new rows while ``room`` lasts.
    Returns the table and whether some events found no row."""
    minute = pc.minute[idx]
    ids = _ovf_ids(role, key, pc.src[idx], minute)
    miss = np.empty(len(ids), np.int64)
    table = t = d.ovf
    tid = np.ascontiguousarray(t["id"])
    if d.ovf_index_rows != len(t):  # rows are only ever added: the index of the same number of rows stands
        d.ovf_index, d.ovf_index_rows = _id_index(tid), len(t)
    nm = _accumulate(tid, d.ovf_index, t["first"], t["last"], t["flows"], t["pkts_out"], t["pkts_in"],
                     t["bytes_out"], *(t[f] for f, _ in OVF_KIND_FIELDS), ids, idx, pc.ts, pc.end, pc.po, pc.pi,
                     pc.bo, pc.kind, role == R_PROBE, miss)
    if nm == 0:
        return table, False
    if room <= 0:
        return table, True
    m = miss[:nm]
    ids_m = ids[m]
    u = np.unique(ids_m)
    full = len(u) > room
    if full:
        sel = np.isin(ids_m, u[:room])
        m, ids_m = m[sel], ids_m[sel]
    rows = _ovf_rows(take_rows(pc.ev, idx[m]), role, key[m], ids_m, minute[m])
    return _with_rows(table, rows), full


def _with_rows(table: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A table of aggregate rows (sorted by id) with ``rows`` added, sorted by id (a stable sort:
    the table's row first where ids tie): each new row placed at its id, as opaque records
    (:func:`records`), not the whole table joined field by field and sorted again (a flood's
    device adds a few rows to its thousands at every pass of a live run)."""
    if not bool((rows["id"][1:] >= rows["id"][:-1]).all()):
        rows = take_rows(rows, np.argsort(rows["id"], kind="stable"))
    at = np.searchsorted(table["id"], rows["id"], side="right")
    return np.insert(records(table), at, records(rows)).view(table.dtype)


def _new_keys(keys: np.ndarray, known: list[np.ndarray]) -> np.ndarray:
    """The distinct keys not in the first (compacted) array of ``known``: a flood's one target
    costs a comparison per event, not a sort."""
    if known and len(known[0]) <= 64:
        keys = keys[~np.isin(keys, known[0])]
    return np.unique(keys)


def _merge_rows(table: np.ndarray, rows: np.ndarray, room: int) -> tuple[np.ndarray, bool]:
    """Add aggregate ``rows`` (unique ids) into ``table`` (sorted by id); new ids take at most
    ``room`` new rows. Returns the table and whether some rows found no room."""
    tid = np.ascontiguousarray(table["id"])
    pos = np.searchsorted(tid, rows["id"])
    hit = pos < len(tid)
    hit[hit] = tid[pos[hit]] == rows["id"][hit]
    if hit.any():
        p, r = pos[hit], rows[hit]
        table["first"][p] = np.minimum(table["first"][p], r["first"])
        table["last"][p] = np.maximum(table["last"][p], r["last"])
        for f in ("flows", "pkts_out", "pkts_in", "bytes_out", *(k for k, _ in OVF_KIND_FIELDS)):
            table[f][p] += r[f]
    new = rows[~hit]
    full = len(new) > room
    new = new[:max(room, 0)]
    if len(new):
        table = _with_rows(table, new)
    return table, full


class Evidence:
    """Per-device evidence gathered from flow records and rare frames."""

    MAX_ARP = 4096  # ARP requests per device (a sweep fires after 32)
    MAX_DNS = MAX_DNS
    MAX_NAMES_TOTAL = 200_000  # ARP + DNS over all devices (about 40 MB at most)
    MAX_APPS = 200_000  # flows whose application is known and whose record has not come yet

    def __init__(self, local_nets: LocalNets | None = None) -> None:
        self.nets = local_nets or LocalNets()
        self.devices: dict[str, DeviceEvidence] = {}
        self.apps: dict[int, int] = {}  # flow id → APPS code, from first payloads
        self._names: dict[int, str] = {}
        self.total = 0
        self.names = 0
        self.ovf_rows = 0  # aggregate rows over all devices
        self.ovf_distinct = 0  # distinct keys held over all devices
        #: a view (:meth:`with_flows`): the devices whose objects still belong to the evidence
        #: viewed, and per device a digest of what the view added to it; None otherwise
        self._shared: set[str] | None = None
        self._added: dict[str, int] = {}

    def _dev(self, key: str) -> DeviceEvidence:
        """The device's evidence, about to be added to (its version moves; in a view, the
        evidence viewed is copied first and never touched)."""
        d = self.devices.get(key)
        if d is None:
            d = self.devices[key] = DeviceEvidence()
        elif self._shared is not None and key in self._shared:
            self._shared.discard(key)
            d.events()  # (sorted once in the evidence viewed; the copy merges into it)
            d.arp_array()  # (the same: converted once, in the evidence viewed)
            d = self.devices[key] = d.copy()
        if self._shared is None:
            d.version += 1
        return d

    def _seen(self, key: str) -> DeviceEvidence:
        """The device's evidence, to be read (a frame that may add nothing: a gratuitous ARP, a
        DNS query past the budget); made when the device is new, as :meth:`_dev` does, but its
        version moves only when something is added (:meth:`_dev`): a live run's passes do not
        judge again a device that such frames leave as it was."""
        d = self.devices.get(key)
        return d if d is not None else self._dev(key)

    def with_flows(self, rows: np.ndarray) -> Evidence:
        """A view: this evidence plus flow records (flows.FLOW_DTYPE) not ended yet, as if they
        had (a live run's verdicts during the run). Copy on write: the devices the records add
        nothing to are this evidence's own objects, the others copies; this evidence is not
        changed (only re-sorted where it was about to be)."""
        view = Evidence(self.nets)
        view.total, view.names, view.ovf_rows, view.ovf_distinct = self.total, self.names, self.ovf_rows, self.ovf_distinct
        view.apps = dict(self.apps)
        view._names = self._names  # (a cache of MAC texts)
        view.devices = dict(self.devices)
        view._shared = set(self.devices)
        view.add_flows(rows)
        return view

    def state(self, key: str) -> tuple[int, int]:
        """What a device's evidence is, in two numbers: the same numbers, the same evidence
        (:attr:`DeviceEvidence.version`, and in a view a digest of what the view added)."""
        d = self.devices.get(key)
        return (d.version if d is not None else -1), self._added.get(key, 0)

    def _note(self, key: str, ev: np.ndarray) -> None:
        """In a view: fold events added to a device into its digest, with the totals that
        decide how they are kept (what the caps over all devices left room for) when they may:
        with room for all of them under every such cap, how they are kept depends on the device
        alone, and the digest leaves the totals out (they move whenever any device's evidence
        does: a device whose open flows are the same is then not judged again for that)."""
        if self._shared is not None:
            n = len(ev)
            free = MAX_EVENTS_TOTAL - self.total >= n and MAX_OVF_ROWS_TOTAL - self.ovf_rows >= 3 * n \
                and MAX_OVF_DISTINCT_TOTAL - self.ovf_distinct >= 2 * n  # (3 roles; targets and hosts)
            totals = None if free else (self.total, self.ovf_rows, self.ovf_distinct)
            self._added[key] = hash((self._added.get(key, 0), ev.tobytes(), totals))

    # rare frames ----------------------------------------------------------------------------
    def add_rare(self, frames: list[RareFrame]) -> None:
        for f in frames:
            if f.src is None:
                continue
            if f.kind == "arp":
                if len(f.data) >= 28 and f.data[2:4] == b"\x08\x00":
                    spa = int.from_bytes(f.data[14:18], "big")
                    tpa = int.from_bytes(f.data[24:28], "big")
                    d = self._seen(f.src)
                    if tpa != spa and spa != 0 and len(d.arp) < self.MAX_ARP and self.names < self.MAX_NAMES_TOTAL:
                        self._dev(f.src).arp.append((f.ts, tpa, (f.file_index << 40) | f.frame))
                        self.names += 1
            elif f.kind == "dns":
                q = parse_dns_query(f.data, f.l3)
                d = self._seen(f.src)
                if q is not None and len(d.dns) < self.MAX_DNS and self.names < self.MAX_NAMES_TOTAL:
                    resolver = _dst_ip_text(f.data, f.l3)
                    self._dev(f.src).dns.append(DnsQuery(f.ts, q[0], q[1], resolver, (f.file_index << 40) | f.frame))
                    self.names += 1
            elif f.kind == "first_payload" and f.flow_id:
                dport = _dport(f.data, f.l3)
                app = _app_of(f.data, f.l3, f.direction, dport)
                if app == A_PROGRAM:  # the server's answer tells more than the client's request
                    self.apps[f.flow_id] = app
                elif app:
                    self.apps.setdefault(f.flow_id, app)
                    if app == A_MIRAI_C2:
                        self._dev(f.src).c2_hellos.append((f.ts, f.flow_id, (f.file_index << 40) | f.frame))
        if len(self.apps) > self.MAX_APPS:  # a flow's record pops its entry; the oldest are long gone
            self.apps = dict(list(self.apps.items())[-self.MAX_APPS // 2:])

    # flows ----------------------------------------------------------------------------------
    def add_flows(self, rows: np.ndarray) -> None:
        """Reduce exported flow records (flows.FLOW_DTYPE) to evidence events."""
        if not len(rows):
            return
        app = np.zeros(len(rows), np.uint8)
        if self.apps:  # the few flows whose first payloads named their application
            fid = rows["flow_id"]
            known = np.flatnonzero(np.isin(fid, np.fromiter(self.apps, np.uint64, len(self.apps))))
            for q in known.tolist():
                app[q] = self.apps.pop(int(fid[q]))
        ev = np.empty(len(rows), EVENT_DTYPE)
        idx = np.empty(len(rows), np.int64)
        local = np.zeros(len(rows), np.bool_)
        m = _flow_events(np.ascontiguousarray(rows), app, *self.nets.arrays(), ev, idx, local)
        if not m:
            return
        ev, idx, local = ev[:m], idx[:m], local[:m]
        if local.any():
            self._add_local(rows, take_rows(ev, local), idx[local])
            keep = ~local
            ev, idx = take_rows(ev, keep), idx[keep]
            if not len(ev):
                return
        mac = rows["mac_c"]
        keys = mac[idx]
        no_mac = keys >= np.uint64(1 << 48)
        if keys[0] == keys[-1] and (keys == keys[0]).all():  # one client MAC (a flood, a capture of one device)
            parts: list[np.ndarray | slice] = [slice(None)]
        else:
            order = np.argsort(keys, kind="stable")
            parts = np.split(order, np.flatnonzero(np.diff(keys[order])) + 1)
        for part in parts:
            first = 0 if isinstance(part, slice) else part[0]
            k = int(keys[first])
            if no_mac[first]:
                # one device per client address
                sub = take_rows(ev, part)
                addrs = sub["src_lo"] ^ (sub["src_hi"] * _MIX)
                for a in np.unique(addrs):
                    s2 = take_rows(sub, addrs == a)
                    self._add(self._device_key(k, s2[0]), s2)
            else:
                self._add(self._device_key(k, ev[first]), take_rows(ev, part))

    def _device_key(self, mac: int, ev: np.ndarray) -> str:
        """The device of an event whose client MAC is ``mac``: the MAC, or the client address
        when there is no MAC (``mac`` ≥ 2**48)."""
        if mac >= 1 << 48:
            return ip_str(bool(ev["v6"]), int(ev["src_hi"]), int(ev["src_lo"]))
        name = self._names.get(mac)
        if name is None:
            name = self._names[mac] = mac_str(mac)
        return name

    def _add_local(self, rows: np.ndarray, ev: np.ndarray, idx: np.ndarray) -> None:
        """Local sessions: to their device's ``local`` list, within MAX_LOCAL_EVENTS."""
        macs = rows["mac_c"][idx]
        no_mac = macs >= np.uint64(1 << 48)
        # one device per MAC, or per client address without one
        who = np.where(no_mac, ev["src_lo"] ^ (ev["src_hi"] * _MIX), macs)
        for w in np.unique(who):
            part = take_rows(ev, who == w)
            first = int(np.flatnonzero(who == w)[0])
            key = self._device_key(int(macs[first]), ev[first])
            self._note(key, part)
            d = self._dev(key)
            d.keep_local(part)
            if self._shared is not None:
                d.view_local = hash((d.view_local, d.n_local, part.tobytes()))

    def _add(self, key: str, ev: np.ndarray) -> None:
        self._note(key, ev)
        d = self._dev(key)
        empty = (ev["payload_out"] == 0) & (ev["payload_in"] == 0)
        n_empty = int(np.count_nonzero(empty))
        if n_empty in (0, len(ev)):  # one class only (a flood's SYNs): no copies
            classes = [(0, ev if n_empty else ev[:0]), (1, ev[:0] if n_empty else ev)]
        else:
            classes = [(0, take_rows(ev, empty)), (1, take_rows(ev, ~empty))]
        for cls, part in classes:
            if not len(part):
                continue
            room = max(0, min(MAX_EVENTS - d.n_class[cls], MAX_EVENTS_TOTAL - self.total))
            if len(part) > room:
                self._past_cap(d, part[room:])
                part = part[:room]
            if not len(part):
                continue
            d.chunks.append(copy_rows(part))
            d.n += len(part)
            if self._shared is not None:
                d.view_events = hash((d.view_events, part.tobytes()))
            d.n_class[cls] += len(part)
            self.total += len(part)

    def _past_cap(self, d: DeviceEvidence, ev: np.ndarray) -> None:
        """Events past the cap: counted into the device's aggregate rows, not kept."""
        pc = _PastCap.of(ev)
        d.dropped += len(ev)
        d.dropped_last = max(d.dropped_last, float(np.maximum(pc.end, pc.ts).max()))
        hk = host_key(ev["dst_hi"], ev["dst_lo"])
        tk = hk ^ (ev["dport"].astype(np.uint64) << np.uint64(1)) ^ ev["proto"].astype(np.uint64)  # = target_keys(ev)
        probes = np.flatnonzero(scan_probes(ev))
        logins = np.flatnonzero(login_sessions(ev))
        for role, idx, key in ((R_PROBE, probes, np.zeros(len(probes), np.uint64)),
                               (R_HOST, np.arange(len(ev)), hk),
                               (R_AUTH, logins, tk[logins])):
            if not len(idx):
                continue
            # rows per role: a scanner's millions of one-flow targets never crowd out its probes' counts
            room = min(MAX_OVF_ROWS - int(np.count_nonzero(d.ovf["role"] == role)), MAX_OVF_ROWS_TOTAL - self.ovf_rows)
            before = len(d.ovf)
            d.ovf, full = _add_rows(d, pc, idx, role, key, room)
            self.ovf_rows += len(d.ovf) - before
            if full:
                d.ovf_full_roles.add(role)
        if len(probes) and not d.ovf_distinct_full:
            room = MAX_OVF_DISTINCT_TOTAL - self.ovf_distinct
            t, h = _new_keys(tk[probes], d.ovf_targets), _new_keys(hk[probes], d.ovf_hosts)
            if len(t) + len(h) > room:
                d.ovf_distinct_full = True
            else:
                d.ovf_targets.append(t)
                d.ovf_hosts.append(h)
                self.ovf_distinct += len(t) + len(h)
                if sum(len(x) for x in d.ovf_targets) > 4 * len(t) + 65_536:  # compact now and then
                    before = sum(len(x) for x in d.ovf_targets) + sum(len(x) for x in d.ovf_hosts)
                    t2, h2 = d.distinct_past_cap()
                    self.ovf_distinct -= before - len(t2) - len(h2)

    def merge(self, other: Evidence) -> Evidence:
        self.total += other.total
        self.ovf_rows += other.ovf_rows
        self.ovf_distinct += other.ovf_distinct
        self.names += other.names
        for k, v in other.apps.items():
            self.apps.setdefault(k, v)
        for key, o in other.devices.items():
            d = self._dev(key)
            d.chunks += o.chunks
            d.n += o.n
            d.n_class = [d.n_class[0] + o.n_class[0], d.n_class[1] + o.n_class[1]]
            d.dropped += o.dropped
            d.dropped_last = max(d.dropped_last, o.dropped_last)
            d.ovf, _ = _merge_rows(d.ovf, o.ovf, len(o.ovf))  # (room for all of them)
            d.ovf_full_roles |= o.ovf_full_roles
            d.ovf_targets += o.ovf_targets
            d.ovf_hosts += o.ovf_hosts
            d.ovf_distinct_full |= o.ovf_distinct_full
            d.arp += o.arp
            d.dns += o.dns
            d.c2_hellos += o.c2_hellos
            for c in o.local:
                d.keep_local(c)
        return self


def _dport(data: bytes, l3: int) -> int:
    p = (data[0] & 15) * 4 if l3 == 4 and data else 40
    return int.from_bytes(data[p + 2:p + 4], "big") if len(data) >= p + 4 else 0


def _dst_ip_text(data: bytes, l3: int) -> str:
    if l3 == 4 and len(data) >= 20:
        return socket.inet_ntoa(data[16:20])
    if l3 == 6 and len(data) >= 40:
        return _ip6_text(data[24:40])
    return ""


@lru_cache(maxsize=1024)
def _ip6_text(raw: bytes) -> str:
    v = int.from_bytes(raw, "big")
    return ip_str(True, v >> 64, v & ((1 << 64) - 1))
