"""Scans, brute force and floods the way other tools and bots do them (issue 10): each generator
is its own family, with its technique, targets, rates and sizes spread by the seed, so that a
behaviour model held out from one family still has others that show the same behaviour.

Scan:

* :func:`sweep` — host discovery: an ARP sweep of the local /24 (arp-scan, nmap ``-sn`` as root
  on a LAN), a ping sweep of it (fping: the kernel ARPs first, only live hosts get an echo), a
  ping sweep of a public range (zmap/masscan ``--icmp-echo``), or nmap ``-sn``'s probe set over
  public /24s; one probe a second to a thousand.
* :func:`port_scan` — a vertical scan of one host, local or on the internet: nmap ``-sS`` (raw
  SYNs, window 1024, MSS option only, open ports reset after their SYN-ACK), ``-sT`` (the
  kernel's ``connect()``, an open port closed at once with a RST), or the odd probes ``-sF``,
  ``-sN``, ``-sX`` (FIN, NULL, Xmas; closed ports answer RST); nmap's top ports or a masscan-like
  range, from one probe a second to thousands; unanswered probes retried from the next source
  port (nmap keeps the try number there).
* :func:`udp_scan` — nmap ``-sU`` of one host: its top UDP ports with the payloads nmap knows
  (DNS, NTP, SNMP, NetBIOS, SSDP...) or empty datagrams, closed ports answered by ICMP port
  unreachable at the target's rate limit, unanswered ones retried.
* :func:`net_scan` — ``connect()`` to a few service ports (SSH, telnet, web, RTSP, DVR SDKs) on
  every address of the local /24: ARP for each address first (dead ones retried, never sending
  a SYN), refused ports reset, open ones connected and dropped.

Brute force:

* :func:`ssh_brute` — SSH password guessing (Go/libssh bots, hydra, medusa): a new TCP session
  every few tries with the banner exchange, key-exchange-sized messages and one encrypted
  password try and failure per attempt, against neighbours on the site or internet hosts.
* :func:`ftp_brute` — FTP ``USER``/``PASS`` with ``530`` replies, a few tries per connection.

Flood:

* :func:`icmp_flood` — an ICMP echo flood (``ping -f``, ``hping3 --icmp --flood``): one
  identifier, sequence numbers counting up, payloads of 8 to 1,472 bytes, hardly answered.
* :func:`flag_flood` — a TCP flag flood without handshakes (``hping3 -R``/``-F``): RST, FIN,
  FIN+ACK or RST+ACK segments to one service port, a new source port each.
* :func:`slow_http` — slowloris / slow POST (slowhttptest): hundreds of connections to one web
  server opened at once and held with a header line or one body byte every few seconds.
* :func:`dns_torture` — random-subdomain queries (water torture) through the site's resolver, a
  public resolver or the victim domain's own name server, names of other shapes than Mirai's.

Each returns the labels of what it generated (the misbehaving host's row first, then internet
victims).
"""

from __future__ import annotations

import struct

import numpy as np

from .labels import Label
from .mirai import CREDENTIALS, Env, _weights, public_targets
from .sessions import Host, TcpSession, dns_answer, dns_query
from .wire import ACK, FIN, KIND_IP, KIND_RAW, PSH, RST, SYN, TCP, UDP, Frames, ip, ip_text, mac_text

ICMP = 1
#: the scenarios whose rate the uplink caps (the scenario passes ``uplink_bps``)
UPLINK_BOUND = ("icmpflood", "flagflood")
#: nmap's most common TCP ports (nmap-services, by frequency), the head of its ``--top-ports``
TOP_PORTS = (80, 23, 443, 21, 22, 25, 3389, 110, 445, 139, 143, 53, 135, 3306, 8080, 1723, 111, 995, 993, 5900,
             1025, 587, 8888, 199, 1720, 465, 548, 113, 81, 6001, 10000, 514, 5060, 179, 1026, 2000, 8443, 8000,
             32768, 554, 26, 1433, 49152, 2001, 515, 8008, 49154, 1027, 5666, 646, 5000, 5631, 631, 49153, 8081,
             2049, 88, 79, 5800, 106, 2121, 1110, 49155, 6000, 513, 990, 5357, 427, 49156, 543, 544, 5101, 144, 7,
             389, 8009, 3128, 444, 9999, 5009, 7070, 5190, 3000, 5432, 1900, 3986, 13, 1029, 9, 5051, 6646, 49157,
             1028, 873, 1755, 2717, 4899, 9100, 119, 37)
#: services a camera, recorder or router on the site listens on (the open ports a scan finds)
DEVICE_PORTS = (80, 443, 554, 8000, 23, 37777, 8080, 8899, 34567, 9000)
#: ports a connect() scan of the subnet knocks on: SSH, telnet, web, RTSP, DVR SDKs, ADB
NET_SCAN_PORTS = (22, 23, 80, 443, 554, 8000, 8080, 37777, 34567, 5555, 2323, 81)
#: SSH client banners of brute-force tools and bots
SSH_CLIENTS = (b"SSH-2.0-Go", b"SSH-2.0-libssh2_1.8.0", b"SSH-2.0-libssh_0.9.6", b"SSH-2.0-PUTTY",
               b"SSH-2.0-paramiko_2.7.2", b"SSH-2.0-OpenSSH_7.3")
SSH_SERVERS = (b"SSH-2.0-OpenSSH_7.4", b"SSH-2.0-OpenSSH_8.2p1 Ubuntu-4ubuntu0.5", b"SSH-2.0-dropbear_2019.78",
               b"SSH-2.0-dropbear_2014.63", b"SSH-2.0-OpenSSH_9.2p1 Debian-2")
FTP_SERVERS = (b"220 (vsFTPd 3.0.3)\r\n", b"220 ProFTPD 1.3.5 Server ready.\r\n", b"220 FTP server ready.\r\n",
               b"220-FileZilla Server 0.9.60 beta\r\n220 Welcome\r\n", b"220 NAS FTP server ready.\r\n")
#: public resolvers a bot may send its queries to directly
PUBLIC_RESOLVERS = ("8.8.8.8", "8.8.4.4", "1.1.1.1", "9.9.9.9", "208.67.222.222", "114.114.114.114")
TORTURE_DOMAINS = ("bank-example.com", "store.example.org", "api.game-example.net", "example-isp.jp",
                   "mail.example-corp.com")
WORDS = ("www", "mail", "api", "cdn", "img", "shop", "dev", "m", "static", "login", "app", "ns")


def _labelled(fr: Frames, mark: tuple[int, int], bot: Host, behaviour: str, note: str,
              raw_times: list[float] | None = None) -> Label:
    """The behaviour's label for ``bot``, spanning its frames since ``mark`` (and the raw frames it
    sent at ``raw_times``: ARP, which :meth:`Frames.span` does not see)."""
    label = Label(bot.ip_text, mac_text(bot.mac), bot.device_type, behaviour, note)
    times = list(raw_times or [])
    span = fr.span(mark, bot.mac)
    if span is not None:
        times += list(span)
    if times:
        label.first_ts, label.end_ts = min(times), max(times)
    return label


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = int(np.frombuffer(data, ">u2").astype(np.int64).sum())
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def icmp_echo(kind: int, ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP echo request (``kind`` 8) or reply (0) with its checksum."""
    head = struct.pack(">BBHHH", kind, 0, 0, ident, seq)
    c = _checksum(head + payload)
    return struct.pack(">BBHHH", kind, 0, c, ident, seq) + payload


def _arp_frame(op: int, smac: int, sip: int, dmac: int, tip: int, tmac: int = 0) -> bytes:
    eth = (0xFFFFFFFFFFFF if op == 1 else dmac).to_bytes(6, "big") + smac.to_bytes(6, "big") + b"\x08\x06"
    body = struct.pack(">HHBBH", 1, 0x0800, 6, 4, op) + smac.to_bytes(6, "big") + struct.pack(">I", sip) \
        + tmac.to_bytes(6, "big") + struct.pack(">I", tip)
    return (eth + body).ljust(60, b"\0")


def neighbours(fr: Frames, bot: Host) -> list[Host]:
    """The hosts of ``bot``'s /24 that sent IPv4 so far (the site's devices, or a real capture's,
    raw frames included), with the MAC they used: who answers a scan of the subnet."""
    net = bot.ip & 0xFFFFFF00
    c = fr.columns()
    seen: dict[int, int] = {}
    ipk = (c["kind"] == KIND_IP) & ((c["src"].astype(np.int64) & 0xFFFFFF00) == net)
    for a, m in zip(c["src"][ipk].tolist(), c["smac"][ipk].tolist(), strict=True):
        seen.setdefault(a, m)
    offs = c["poff"][c["kind"] == KIND_RAW]
    if len(offs):
        blob = np.frombuffer(b"".join(fr.blob.parts) + bytes(64), np.uint8)
        eth = (blob[offs + 12].astype(np.int64) << 8) | blob[offs + 13]
        o = offs[eth == 0x0800]
        src = np.zeros(len(o), np.int64)
        smac = np.zeros(len(o), np.int64)
        for k in range(4):
            src = (src << 8) | blob[o + 26 + k]
        for k in range(6):
            smac = (smac << 8) | blob[o + 6 + k]
        sel = (src & 0xFFFFFF00) == net
        for a, m in zip(src[sel].tolist(), smac[sel].tolist(), strict=True):
            seen.setdefault(a, m)
    return [Host(f"n{a & 0xFF}", m, a, "unknown", 64, 0.0004) for a, m in sorted(seen.items())
            if a != bot.ip and 0 < (a & 0xFF) < 255]


def _victim(target: Host, what: str, bot: Host) -> list[Label]:
    """An internet target's victim row (local targets keep the row their own traffic gives them)."""
    if (target.ip & 0xFFFFFF00) == (bot.ip & 0xFFFFFF00):
        return []
    return [Label.victim(target, f"{what} from {bot.ip_text}")]


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


# scan ---------------------------------------------------------------------------------------
def sweep(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
          *, mode: str | None = None, rate: float | None = None) -> list[Label]:
    """Host discovery at ``rate`` probes/s (1-1,000, log-uniform): ``mode`` "arp" (ARP requests
    for every address of the /24, in order or shuffled, each retried twice as arp-scan does, live
    hosts answering), "ping" (the same sweep as ICMP echo: the kernel ARPs first, dead addresses
    are retried three times a second apart and never get an echo), "public" (echo requests to
    a random public /16 in a random order, one identifier, 1-10 % answered) or "nmap" (nmap -sn
    as root over routed /24s: per address an ICMP echo, a SYN to 443, an ACK to 80 and an ICMP
    timestamp request, hosts in a random order; 5-30 % of the addresses live and answering)."""
    bot = env.bot
    mark = fr.mark()
    mode = mode if mode is not None else str(rng.choice(("arp", "ping", "public", "nmap")))
    rate = rate if rate is not None else _log_uniform(rng, 1.0, 1000.0)
    raw: list[float] = []
    ident = int(rng.integers(1, 65536))
    pad = rng.bytes(int(rng.choice((0, 8, 32, 56))))
    if mode == "nmap":
        return _nmap_discovery(fr, rng, env, t0, t1, rate)
    if mode == "public":
        base = int(public_targets(rng, 1)[0]) & 0xFFFF0000
        n = int(min(65534, max(10, (t1 - t0) * rate)))
        dst = base + 1 + rng.permutation(65534)[:n]
        ts = t0 + np.arange(n) / rate + rng.uniform(0, 0.3 / rate, n)
        keep = ts < t1
        dst, ts = dst[keep], ts[keep]
        ans = rng.random(len(ts)) < float(rng.uniform(0.01, 0.1))
        for k, (t, d) in enumerate(zip(ts.tolist(), dst.tolist(), strict=True)):
            off, ln = fr.blob.add(icmp_echo(8, ident, k & 0xFFFF, pad))
            fr.add(t, smac=bot.mac, dmac=env.gateway_mac, src=bot.ip, dst=int(d), proto=ICMP, ttl=64, df=0,
                   poff=off, plen=ln)
            if ans[k]:
                off, ln = fr.blob.add(icmp_echo(0, ident, k & 0xFFFF, pad))
                fr.add(t + float(rng.uniform(0.02, 0.3)), smac=env.gateway_mac, dmac=bot.mac, src=int(d), dst=bot.ip,
                       proto=ICMP, ttl=int(rng.choice((47, 51, 113, 241))), poff=off, plen=ln)
        what = f"ICMP echo sweep of {ip_text(base)}/16: {len(ts)} addresses at {rate:.1f}/s, {int(ans.sum())} answered"
        return [_labelled(fr, mark, bot, "scan", what)]
    live = {h.ip: h for h in neighbours(fr, bot)}
    net = bot.ip & 0xFFFFFF00
    order = np.arange(1, 255) if rng.random() < 0.6 else rng.permutation(np.arange(1, 255))
    t = t0
    probes = 0
    answered = set()
    for _rnd in range(3 if mode == "arp" else 1):
        for last in order.tolist():
            a = net + last
            if a == bot.ip or t >= t1:
                continue
            h = live.get(a)
            tries = (1 if mode == "arp" else 3) if h is None else 1
            for k in range(tries):
                raw.append(t + k)
                fr.add_raw(round((t + k) * 1e6), _arp_frame(1, bot.mac, bot.ip, 0, a))
            probes += 1
            if h is not None:
                fr.add_raw(round((t + 0.0004) * 1e6), _arp_frame(2, h.mac, a, bot.mac, bot.ip, bot.mac))
                answered.add(a)
                if mode == "ping":
                    off, ln = fr.blob.add(icmp_echo(8, ident, probes & 0xFFFF, pad))
                    fr.add(t + 0.0006, smac=bot.mac, dmac=h.mac, src=bot.ip, dst=a, proto=ICMP, ttl=64, poff=off,
                           plen=ln)
                    off, ln = fr.blob.add(icmp_echo(0, ident, probes & 0xFFFF, pad))
                    fr.add(t + 0.0006 + h.rtt, smac=h.mac, dmac=bot.mac, src=a, dst=bot.ip, proto=ICMP, ttl=64,
                           poff=off, plen=ln)
            t += float(rng.exponential(1 / rate)) if rate < 20 else 1 / rate
        if mode == "arp":
            t += float(rng.uniform(0.5, 2.0))  # arp-scan's retry round for the silent addresses
            live = {}  # ... which only the silent ones get
    what = (f"{'ARP' if mode == 'arp' else 'ping (ICMP echo after ARP)'} sweep of {ip_text(net)}/24: {probes} "
            f"probes at {rate:.1f}/s, {len(answered)} live hosts answered")
    return [_labelled(fr, mark, bot, "scan", what, raw)]


def _nmap_discovery(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float, rate: float) -> list[Label]:
    """nmap -sn's default probes (root, routed targets) to the addresses of 1-4 public /24s."""
    bot = env.bot
    mark = fr.mark()
    nets = [int(a) & 0xFFFFFF00 for a in public_targets(rng, int(rng.integers(1, 5)))]
    addrs = rng.permutation(np.array([n + k for n in nets for k in range(1, 255)]))
    live_share = float(rng.uniform(0.05, 0.3))
    sport = int(rng.integers(32768, 61000))
    ident = int(rng.integers(1, 65536))
    out_mac, t, n, live = env.gateway_mac, t0, 0, 0
    for a in addrs.tolist():
        if t >= t1 - 1:
            break
        n += 1
        seq = int(rng.integers(0, 1 << 32))
        off, ln = fr.blob.add(icmp_echo(8, ident, 0, b""))
        fr.add(t, smac=bot.mac, dmac=out_mac, src=bot.ip, dst=a, proto=ICMP, ttl=int(rng.integers(37, 60)), df=0,
               poff=off, plen=ln)
        fr.add(t + 0.00005, smac=bot.mac, dmac=out_mac, src=bot.ip, dst=a, proto=TCP, sport=sport, dport=443, seq=seq,
               flags=SYN, win=1024, doff=6, df=0, poff=fr.blob.add(b"\x02\x04\x05\xb4")[0], plen=4)
        fr.add(t + 0.0001, smac=bot.mac, dmac=out_mac, src=bot.ip, dst=a, proto=TCP, sport=sport, dport=80, seq=0,
               ack=int(rng.integers(0, 1 << 32)), flags=ACK, win=1024, df=0)
        tsreq = struct.pack(">BBHHHIII", 13, 0, 0, ident, 0, 0, 0, 0)
        tsreq = tsreq[:2] + struct.pack(">H", _checksum(tsreq)) + tsreq[4:]
        off, ln = fr.blob.add(tsreq)
        fr.add(t + 0.00015, smac=bot.mac, dmac=out_mac, src=bot.ip, dst=a, proto=ICMP, ttl=int(rng.integers(37, 60)),
               df=0, poff=off, plen=ln)
        if rng.random() < live_share:  # a live host answers what its firewall lets through
            live += 1
            rtt = float(rng.uniform(0.02, 0.3))
            ttl = int(rng.choice((47, 51, 113, 241)))
            back = {"smac": out_mac, "dmac": bot.mac, "src": a, "dst": bot.ip, "ttl": ttl}
            if rng.random() < 0.7:
                off, ln = fr.blob.add(icmp_echo(0, ident, 0, b""))
                fr.add(t + rtt, proto=ICMP, poff=off, plen=ln, **back)
            if rng.random() < 0.5:
                fr.add(t + rtt, proto=TCP, sport=443, dport=sport, seq=int(rng.integers(0, 1 << 32)),
                       ack=(seq + 1) & 0xFFFFFFFF, flags=SYN | ACK, win=29200, **back)
                fr.add(t + rtt + 0.0001, smac=bot.mac, dmac=out_mac, src=bot.ip, dst=a, proto=TCP, sport=sport,
                       dport=443, seq=(seq + 1) & 0xFFFFFFFF, flags=RST, df=0)
            elif rng.random() < 0.5:
                fr.add(t + rtt, proto=TCP, sport=443, dport=sport, seq=0, ack=(seq + 1) & 0xFFFFFFFF,
                       flags=RST | ACK, **back)
        t += 4 / rate
    what = (f"nmap -sn host discovery of {len(nets)} public /24s: {n} addresses (ICMP echo, SYN 443, ACK 80, "
            f"ICMP timestamp each) at {rate:.1f} probes/s, {live} live")
    return [_labelled(fr, mark, bot, "scan", what)]


#: what nmap -sU sends to the UDP ports it knows (an empty datagram to the others)
UDP_PAYLOADS = {53: bytes.fromhex("000001000001000000000000") + b"\x07version\x04bind\x00\x00\x10\x00\x03",
                123: b"\xe3\x00\x04\xfa" + bytes(44),
                161: bytes.fromhex("3026020101040670756200a1190204000000000201000201003010300e060a2b060102010104000500"),
                137: b"\x80\xf0\x00\x10\x00\x01\x00\x00\x00\x00\x00\x00\x20CK" + b"A" * 30 + b"\x00\x00\x21\x00\x01",
                1900: b"M-SEARCH * HTTP/1.1\r\nHost: 239.255.255.250:1900\r\nMan: \"ssdp:discover\"\r\nMX: 3\r\nST: ssdp:all\r\n\r\n",
                5353: bytes.fromhex("000000000001000000000000") + b"\x09_services\x07_dns-sd\x04_udp\x05local\x00\x00\x0c\x00\x01",
                69: b"\x00\x01r7tftp.txt\x00octet\x00", 111: bytes(40), 500: bytes(28), 3702: b"<?xml version=\"1.0\"?>"}
UDP_TOP_PORTS = (631, 161, 137, 123, 138, 1434, 445, 135, 67, 53, 139, 500, 68, 520, 1900, 4500, 514, 49152, 162,
                 69, 5353, 111, 49154, 1701, 998, 996, 997, 999, 3283, 49153, 1812, 136, 2222, 2049, 3702, 5060,
                 1025, 1813, 626, 4444)


def _unreachable(target: Host, bot: Host, sport: int, dport: int, plen: int) -> bytes:
    """ICMP port unreachable from ``target`` quoting ``bot``'s datagram (its IPv4 and UDP headers)."""
    inner = struct.pack(">BBHHHBBHII", 0x45, 0, 28 + plen, 0, 0, 64, 17, 0, bot.ip, target.ip)
    inner = inner[:10] + struct.pack(">H", _checksum(inner)) + inner[12:]
    inner += struct.pack(">HHHH", sport, dport, 8 + plen, 0)
    head = struct.pack(">BBHI", 3, 3, 0, 0)
    c = _checksum(head + inner)
    return struct.pack(">BBHI", 3, 3, c, 0) + inner


def port_scan(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
              *, technique: str | None = None, rate: float | None = None, local: bool | None = None) -> list[Label]:
    """A vertical scan of one host (a neighbour that runs services, or an internet host) at
    ``rate`` probes/s (1-5,000, log-uniform) with ``technique`` "syn", "connect", "fin", "null"
    or "xmas" (nmap -sS/-sT/-sF/-sN/-sX; "udp", nmap -sU, is :func:`udp_scan`'s family); ports: nmap's top 20-100 then random ones up to 100-1,000
    (or 1..N in order, masscan-like); unanswered probes sent once more after the first pass."""
    bot = env.bot
    mark = fr.mark()
    technique = technique if technique is not None else str(rng.choice(("syn", "connect", "fin", "null", "xmas"),
                                                                        p=(0.35, 0.25, 0.14, 0.13, 0.13)))
    rate = rate if rate is not None else _log_uniform(rng, 5.0 if technique == "udp" else 1.0, 5000.0)
    near = [h for h in neighbours(fr, bot) if h.mac != env.gateway_mac or h.ip == env.resolver.ip]
    local = local if local is not None else bool(near) and bool(rng.random() < 0.5)
    if local and near:
        target = near[int(rng.integers(0, len(near)))]
        filtered_share = 0.0
    else:
        target = env.remote("target", int(public_targets(rng, 1)[0]), rng)
        filtered_share = float(rng.uniform(0.3, 0.95))
    if technique == "udp":
        return _udp_scan(fr, rng, env, target, local, t0, t1, rate, filtered_share)
    n = int(rng.integers(100, 1001))
    if rng.random() < 0.3:
        ports = np.arange(1, n + 1)
    else:
        head = np.array(TOP_PORTS[: int(rng.integers(20, len(TOP_PORTS) + 1))])
        rest = np.setdiff1d(np.arange(1, 65536), head)
        ports = np.concatenate([head, rng.choice(rest, max(0, n - len(head)), replace=False)])
        ports = rng.permutation(ports)  # nmap randomises the order
    open_ports = set(rng.choice(np.array(DEVICE_PORTS), int(rng.integers(1, 5)), replace=False).tolist())
    sport = int(rng.integers(32768, 61000))
    ts = t0 + np.arange(len(ports)) / rate + rng.uniform(0, 0.2 / rate, len(ports))
    filtered = rng.random(len(ports)) < filtered_share
    # the retry pass: the unanswered ones again, after the first pass
    if technique in ("syn", "connect"):
        retry = filtered | np.zeros(len(ports), bool)
    else:  # no answer is the open|filtered answer: every open port is retried too
        retry = filtered | np.isin(ports, list(open_ports))
    t_retry = (ts[-1] if len(ts) else t0) + max(0.5, 2 / rate)
    rts = t_retry + np.arange(int(retry.sum())) / rate
    all_ports = np.concatenate([ports, ports[retry]])
    all_ts = np.concatenate([ts, rts])
    first = np.concatenate([np.ones(len(ports), bool), np.zeros(int(retry.sum()), bool)])
    all_filt = np.concatenate([filtered, filtered[retry]])
    keep = all_ts < t1 - 0.5
    all_ports, all_ts, first, all_filt = all_ports[keep], all_ts[keep], first[keep], all_filt[keep]
    flags = {"syn": SYN, "connect": SYN, "fin": FIN, "null": 0, "xmas": FIN | PSH | 0x20}[technique]
    seq = rng.integers(0, 1 << 32, len(all_ts))
    out_mac = target.mac if local else env.gateway_mac
    found = 0
    for i, (t, p) in enumerate(zip(all_ts.tolist(), all_ports.tolist(), strict=True)):
        # nmap's raw probes carry the try in the source port (a retry is a new flow); connect() draws one
        sp = (sport + (0 if first[i] else 1)) if technique != "connect" else int(rng.integers(32768, 61000))
        if technique == "connect":
            fr.add(t, smac=bot.mac, dmac=out_mac, src=bot.ip, dst=target.ip, proto=TCP, sport=sp, dport=p,
                   seq=int(seq[i]), flags=SYN, win=64240, doff=8,
                   poff=fr.blob.add(b"\x02\x04\x05\xb4\x01\x01\x04\x02\x01\x03\x03\x07")[0], plen=12)
        else:
            opts = technique == "syn"
            fr.add(t, smac=bot.mac, dmac=out_mac, src=bot.ip, dst=target.ip, proto=TCP, sport=sp, dport=p,
                   seq=int(seq[i]), flags=flags, win=1024, doff=6 if opts else 5, df=0,
                   poff=fr.blob.add(b"\x02\x04\x05\xb4")[0] if opts else 0, plen=4 if opts else 0,
                   ipid=int(rng.integers(0, 65536)))
        if all_filt[i]:
            continue
        back = t + target.rtt
        is_open = p in open_ports
        if technique in ("fin", "null", "xmas"):
            if not is_open:
                fr.add(back, smac=target.mac, dmac=bot.mac, src=target.ip, dst=bot.ip, proto=TCP, ttl=target.ttl,
                       sport=p, dport=sp, seq=0, ack=(int(seq[i]) + (1 if flags & FIN else 0)) & 0xFFFFFFFF,
                       flags=RST | ACK)
            else:
                found += first[i]
            continue
        if not is_open:
            fr.add(back, smac=target.mac, dmac=bot.mac, src=target.ip, dst=bot.ip, proto=TCP, ttl=target.ttl,
                   sport=p, dport=sp, seq=0, ack=(int(seq[i]) + 1) & 0xFFFFFFFF, flags=RST | ACK)
            continue
        found += 1
        srv = int(rng.integers(0, 1 << 32))
        fr.add(back, smac=target.mac, dmac=bot.mac, src=target.ip, dst=bot.ip, proto=TCP, ttl=target.ttl,
               sport=p, dport=sp, seq=srv, ack=(int(seq[i]) + 1) & 0xFFFFFFFF, flags=SYN | ACK, win=29200)
        if technique == "syn":  # the scanner's kernel knows no such connection: a bare RST
            fr.add(back + 0.0001, smac=bot.mac, dmac=out_mac, src=bot.ip, dst=target.ip, proto=TCP, sport=sp,
                   dport=p, seq=(int(seq[i]) + 1) & 0xFFFFFFFF, flags=RST)
        else:  # connect() succeeded: nmap closes it at once with a RST
            fr.add(back + 0.0001, smac=bot.mac, dmac=out_mac, src=bot.ip, dst=target.ip, proto=TCP, sport=sp,
                   dport=p, seq=(int(seq[i]) + 1) & 0xFFFFFFFF, ack=(srv + 1) & 0xFFFFFFFF, flags=ACK, win=502)
            fr.add(back + 0.0002, smac=bot.mac, dmac=out_mac, src=bot.ip, dst=target.ip, proto=TCP, sport=sp,
                   dport=p, seq=(int(seq[i]) + 1) & 0xFFFFFFFF, ack=(srv + 1) & 0xFFFFFFFF, flags=RST | ACK, win=502)
    what = (f"vertical TCP port scan ({technique}) of {target.ip_text} ({'local' if local else 'internet'}): "
            f"{int(first.sum())} ports at {rate:.1f}/s, {found} open, {int(all_filt[first].sum())} filtered")
    return [_labelled(fr, mark, bot, "scan", what),
            *_victim(target, f"vertical TCP port scan ({technique})", bot)]


def udp_scan(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
             *, rate: float | None = None, local: bool | None = None) -> list[Label]:
    """nmap -sU of one host (a neighbour, or an internet host with 30-95 % of its ports filtered)
    at ``rate`` ports/s (5-5,000, log-uniform: nmap --min-rate, or masscan -pU): see
    :func:`port_scan`'s technique "udp"."""
    return port_scan(fr, rng, env, t0, t1, technique="udp", rate=rate, local=local)


def _udp_scan(fr: Frames, rng: np.random.Generator, env: Env, target: Host, local: bool, t0: float, t1: float,
              rate: float, filtered_share: float) -> list[Label]:
    """nmap -sU of ``target``: its top UDP ports then random ones (100-1,000), the payload nmap
    knows for a port (DNS, NTP, SNMP, NetBIOS, SSDP...) or an empty datagram; closed ports answer
    ICMP port unreachable, which the target rate-limits (Linux: about one a second, a burst of
    six); the unanswered ones retried once from the next source port."""
    bot = env.bot
    mark = fr.mark()
    n = int(rng.integers(100, 1001))
    head = np.array(UDP_TOP_PORTS[: int(rng.integers(20, len(UDP_TOP_PORTS) + 1))])
    rest = rng.choice(np.setdiff1d(np.arange(1, 65536), head), max(0, n - len(head)), replace=False)
    ports = rng.permutation(np.concatenate([head, rest]))
    sport = int(rng.integers(32768, 61000))
    out_mac = target.mac if local else env.gateway_mac
    ts = t0 + np.arange(len(ports)) / rate + rng.uniform(0, 0.2 / rate, len(ports))
    tokens, last, sent, answered = 6.0, t0, 0, 0
    unanswered = []
    for t, p in zip(ts.tolist(), ports.tolist(), strict=True):
        if t >= t1 - 1:
            break
        payload = UDP_PAYLOADS.get(p, b"")
        off, ln = fr.blob.add(payload) if payload else (0, 0)
        fr.add(t, smac=bot.mac, dmac=out_mac, src=bot.ip, dst=target.ip, proto=UDP, sport=sport, dport=p, poff=off,
               plen=ln, df=0, ipid=int(rng.integers(0, 65536)))
        sent += 1
        tokens = min(6.0, tokens + (t - last))
        last = t
        if rng.random() < filtered_share or tokens < 1:
            unanswered.append((p, payload))
            continue
        tokens -= 1
        answered += 1
        off, ln = fr.blob.add(_unreachable(target, bot, sport, p, len(payload)))
        fr.add(t + target.rtt, smac=target.mac, dmac=bot.mac, src=target.ip, dst=bot.ip, proto=ICMP, ttl=target.ttl,
               poff=off, plen=ln)
    t = last + max(0.5, 2 / rate)
    for p, payload in unanswered:
        if t >= t1 - 1:
            break
        off, ln = fr.blob.add(payload) if payload else (0, 0)
        fr.add(t, smac=bot.mac, dmac=out_mac, src=bot.ip, dst=target.ip, proto=UDP, sport=sport + 1, dport=p,
               poff=off, plen=ln, df=0, ipid=int(rng.integers(0, 65536)))
        t += 1 / rate
    what = (f"vertical UDP port scan (nmap -sU) of {target.ip_text} ({'local' if local else 'internet'}): {sent} "
            f"ports at {rate:.1f}/s, {answered} answered port unreachable, {len(unanswered)} retried")
    return [_labelled(fr, mark, bot, "scan", what), *_victim(target, "vertical UDP port scan (nmap -sU)", bot)]


def net_scan(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
             *, rate: float | None = None) -> list[Label]:
    """``connect()`` to 2-6 service ports of every address of the /24, ``rate`` connects/s (2-200,
    log-uniform), addresses in order or shuffled: the kernel ARPs for each address once (dead
    ones: three requests a second apart, no SYN ever sent), refused ports answer RST, open ports
    complete and the scanner closes them at once (FIN or RST, seeded)."""
    bot = env.bot
    mark = fr.mark()
    rate = rate if rate is not None else _log_uniform(rng, 2.0, 200.0)
    ports = rng.choice(np.array(NET_SCAN_PORTS), int(rng.integers(2, 7)), replace=False).tolist()
    close_rst = bool(rng.random() < 0.5)
    live = {h.ip: h for h in neighbours(fr, bot)}
    opens = {a: set(rng.choice(np.array((*DEVICE_PORTS, 22)), int(rng.integers(0, 4)), replace=False).tolist())
             for a in live}
    net = bot.ip & 0xFFFFFF00
    order = np.arange(1, 255) if rng.random() < 0.5 else rng.permutation(np.arange(1, 255))
    t = t0
    raw: list[float] = []
    conns = refused = done = 0
    for last in order.tolist():
        a = net + last
        if a == bot.ip:
            continue
        if t >= t1 - 4:
            break
        h = live.get(a)
        if h is None or h.mac != env.gateway_mac:  # the gateway is in the ARP cache already
            for k in range(1 if h is not None else 3):
                raw.append(t + k)
                fr.add_raw(round((t + k) * 1e6), _arp_frame(1, bot.mac, bot.ip, 0, a))
        if h is None:  # no answer: connect() fails with EHOSTUNREACH, nothing else sent
            t += len(ports) / rate
            continue
        fr.add_raw(round((t + h.rtt) * 1e6), _arp_frame(2, h.mac, a, bot.mac, bot.ip, bot.mac))
        t += 0.001
        for p in ports:
            s = TcpSession(fr, rng, bot, h, int(p), t)
            conns += 1
            if p in opens[a]:
                s.open()
                if close_rst:
                    s.reset(0, 0.0002)
                else:
                    s.close(0, 0.0002)
                done += 1
            else:
                s.packet(0, t, SYN, options=b"\x02\x04\x05\xb4\x01\x01\x04\x02\x01\x03\x03\x07")
                s.nxt[1] = 0
                s.packet(1, s.answer(1), RST | ACK)
                refused += 1
            t += float(rng.exponential(1 / rate))
    what = (f"connect() scan of {ip_text(net)}/24 on ports {', '.join(map(str, sorted(ports)))} at {rate:.1f}/s: "
            f"{conns} connects to {len(live)} live hosts ({refused} refused, {done} open), "
            f"{len(raw)} ARP requests")
    return [_labelled(fr, mark, bot, "scan", what, raw)]


# brute force --------------------------------------------------------------------------------
def _brute_targets(fr: Frames, rng: np.random.Generator, env: Env, n: int) -> list[Host]:
    near = neighbours(fr, env.bot)
    if near and rng.random() < 0.5:
        pick = rng.choice(len(near), min(n, len(near)), replace=False)
        return [near[int(i)] for i in pick]
    return [env.remote("target", int(a), rng) for a in public_targets(rng, n)]


def _brute_plan(fr: Frames, rng: np.random.Generator, env: Env, interval: float | None, *, most_tries: int,
                most_targets: int) -> tuple[float, int, int, list[Host]]:
    """(interval, workers, tries per session, targets) of a password-guessing run: one try every
    0.05-4 s per worker (log-uniform, unless ``interval`` is given), 1-4 workers, 1 to ``most_tries``
    tries per session (at most what fits in 12 s: servers drop slow sessions), 1 to
    ``most_targets`` targets."""
    interval = interval if interval is not None else _log_uniform(rng, 0.05, 4.0)
    tasks = int(rng.integers(1, 5))
    tries_per = max(1, min(int(rng.integers(1, most_tries + 1)), int(12 / interval)))
    return interval, tasks, tries_per, _brute_targets(fr, rng, env, int(rng.integers(1, most_targets + 1)))


def _guessed(fr: Frames, mark: tuple[int, int], bot: Host, what: str, targets: list[Host], how: str) -> list[Label]:
    """The labels of a password-guessing run: the guesser, and each target its victim."""
    out = [_labelled(fr, mark, bot, "bruteforce", what)]
    for t in targets:
        out += _victim(t, how, bot)
    return out


def _brute_schedule(rng: np.random.Generator, interval: float, t0: float, t1: float, tries_per: int,
                    tasks: int) -> list[tuple[float, int]]:
    """(start, tries) of the sessions of ``tasks`` parallel workers trying every ``interval`` s."""
    out = []
    for w in range(tasks):
        t = t0 + w * float(rng.uniform(0.0, min(interval, 1.0)))
        while t < t1 - 5:
            out.append((t, tries_per))
            t += tries_per * interval * float(rng.uniform(0.8, 1.2)) + float(rng.uniform(0.05, 0.5))
    return sorted(out)


KEX_ALGS = ("curve25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256", "ecdh-sha2-nistp384",
            "diffie-hellman-group14-sha256", "diffie-hellman-group14-sha1", "diffie-hellman-group1-sha1")
HOSTKEY_ALGS = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa", "ssh-dss")
CIPHERS = ("aes128-ctr", "aes192-ctr", "aes256-ctr", "aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com",
           "aes128-cbc", "3des-cbc")
MACS = ("hmac-sha2-256", "hmac-sha2-512", "hmac-sha1", "umac-64@openssh.com")


def _ssh_string(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _ssh_packet(rng: np.random.Generator, code: int, body: bytes) -> bytes:
    """A cleartext SSH binary packet (RFC 4253): length, padding length, message ``code`` and
    ``body``, random padding to a multiple of 8."""
    payload = bytes([code]) + body
    pad = 4 + (-(len(payload) + 5 + 4)) % 8
    return struct.pack(">IB", len(payload) + pad + 1, pad) + payload + rng.bytes(pad)


def _kexinit(rng: np.random.Generator) -> bytes:
    """SSH_MSG_KEXINIT's body: a cookie and the ten name-lists (a seeded share of each family)."""
    def some(names: tuple[str, ...]) -> bytes:
        k = int(rng.integers(1, len(names) + 1))
        return _ssh_string(",".join(names[:k]).encode())
    ciphers, macs = some(CIPHERS), some(MACS)
    return (rng.bytes(16) + some(KEX_ALGS) + some(HOSTKEY_ALGS) + ciphers + ciphers + macs + macs
            + _ssh_string(b"none") * 2 + _ssh_string(b"") * 2 + b"\0" + bytes(4))


def ssh_brute(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
              *, interval: float | None = None) -> list[Label]:
    """SSH password guessing against 1-3 targets (neighbours or internet hosts), one try every
    ``interval`` s per worker (0.05-4 s, log-uniform), 1-4 workers, 1-6 tries per TCP session
    (at most what fits in 12 s: servers drop slow sessions): banners, KEXINIT both ways (name-lists
    of a few to all the algorithms of each kind), the key exchange (ECDH init and reply), NEWKEYS, then per try an encrypted
    user-auth request and its failure; after the last the server disconnects. The cleartext
    messages are well-formed SSH binary packets (name-lists, keys and signatures of real sizes)."""
    bot = env.bot
    mark = fr.mark()
    interval, tasks, tries_per, targets = _brute_plan(fr, rng, env, interval, most_tries=6, most_targets=3)
    port = int(rng.choice((22, 22, 22, 22, 2222, 22222, 2022, 10022, 902)))  # SSH moved off 22, or VMware's 902
    client = SSH_CLIENTS[int(rng.integers(0, len(SSH_CLIENTS)))]
    server = SSH_SERVERS[int(rng.integers(0, len(SSH_SERVERS)))]
    kex_c, kex_s = _ssh_packet(rng, 20, _kexinit(rng)), _ssh_packet(rng, 20, _kexinit(rng))
    bits = int(rng.choice((0, 2048, 4096)))  # the server's host key: ed25519, or RSA of 2048 or 4096 bits
    if bits:
        host_key = _ssh_string(b"ssh-rsa") + _ssh_string(b"\x01\x00\x01") + _ssh_string(b"\x00\xc1" + rng.bytes(bits // 8 - 1))
        sig_alg, sig_len = b"rsa-sha2-256", bits // 8
    else:
        host_key = _ssh_string(b"ssh-ed25519") + _ssh_string(rng.bytes(32))
        sig_alg, sig_len = b"ssh-ed25519", 64
    sessions = attempts = 0
    span = (t1 - t0) / len(targets)
    for j, target in enumerate(targets):
        for start, tries in _brute_schedule(rng, interval, t0 + j * span, t0 + (j + 1) * span, tries_per, tasks):
            s = TcpSession(fr, rng, bot, target, port, start)
            s.open()
            s.send(1, server + b"\r\n", 0.002)
            s.send(0, client + b"\r\n", 0.001)
            s.send(0, kex_c, 0.001)  # KEXINIT both ways
            s.send(1, kex_s, 0.003)
            s.send(0, _ssh_packet(rng, 30, _ssh_string(rng.bytes(32))), 0.002)  # ECDH init: the client's key
            s.send(1, _ssh_packet(rng, 31, _ssh_string(host_key) + _ssh_string(rng.bytes(32)) + _ssh_string(
                _ssh_string(sig_alg) + _ssh_string(rng.bytes(sig_len)))) + _ssh_packet(rng, 21, b""),
                   float(rng.uniform(0.005, 0.05)))  # the reply (host key, key, signature) and NEWKEYS
            s.send(0, _ssh_packet(rng, 21, b""), 0.001)  # NEWKEYS; then encrypted
            s.send(0, rng.bytes(int(rng.integers(44, 68))), 0.001)  # service request
            s.send(1, rng.bytes(int(rng.integers(44, 68))), 0.001)
            for _ in range(tries):
                s.send(0, rng.bytes(int(rng.integers(80, 140))), max(0.001, interval * float(rng.uniform(0.7, 1.3))))
                s.send(1, rng.bytes(int(rng.integers(36, 60))), float(rng.uniform(0.5, 2.5)) * min(1.0, interval))
                attempts += 1
            s.send(1, rng.bytes(int(rng.integers(60, 100))), 0.001)  # disconnect
            s.close(1, 0.001)
            sessions += 1
    what = (f"SSH password guessing ({client.decode()}) against {', '.join(t.ip_text for t in targets)} on port "
            f"{port}: {attempts} "
            f"tries in {sessions} sessions, one every {interval:.2f} s per worker, {tasks} workers, "
            f"{tries_per} per session, all failed")
    return _guessed(fr, mark, bot, what, targets, "SSH password guessing")


def ftp_brute(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
              *, interval: float | None = None) -> list[Label]:
    """FTP logins with default credentials against 1-2 targets (a recorder's or NAS's FTP on the
    site, or internet hosts): ``USER``/``331``/``PASS``/``530`` every ``interval`` s per worker
    (0.05-4 s, log-uniform), 1-4 workers, 1-3 tries per connection (servers drop after a few),
    then ``QUIT`` or the server's ``421`` close."""
    bot = env.bot
    mark = fr.mark()
    interval, tasks, tries_per, targets = _brute_plan(fr, rng, env, interval, most_tries=3, most_targets=2)
    banner = FTP_SERVERS[int(rng.integers(0, len(FTP_SERVERS)))]
    weights = _weights()
    sessions = attempts = 0
    span = (t1 - t0) / len(targets)
    for j, target in enumerate(targets):
        for start, tries in _brute_schedule(rng, interval, t0 + j * span, t0 + (j + 1) * span, tries_per, tasks):
            s = TcpSession(fr, rng, bot, target, 21, start)
            s.open()
            s.send(1, banner, 0.003)
            for _ in range(tries):
                user, password, _w = CREDENTIALS[int(rng.choice(len(CREDENTIALS), p=weights))]
                s.send(0, f"USER {user}\r\n".encode(), max(0.001, interval * float(rng.uniform(0.3, 0.6))))
                s.send(1, b"331 Please specify the password.\r\n", 0.001)
                s.send(0, f"PASS {password}\r\n".encode(), max(0.001, interval * float(rng.uniform(0.3, 0.6))))
                s.send(1, b"530 Login incorrect.\r\n", float(rng.uniform(0.2, 1.0)) * min(1.0, interval * 2))
                attempts += 1
            if rng.random() < 0.5:
                s.send(0, b"QUIT\r\n", 0.001)
                s.send(1, b"221 Goodbye.\r\n", 0.001)
                s.close(1, 0.001)
            else:
                s.send(1, b"421 Too many login failures, closing control connection.\r\n", 0.001)
                s.close(1, 0.001)
            sessions += 1
    server = banner.split(b"\r")[0].decode()
    what = (f"FTP login guessing ({server}) against {', '.join(t.ip_text for t in targets)}: "
            f"{attempts} USER/PASS tries answered 530 in {sessions} connections, one every {interval:.2f} s per "
            f"worker, {tasks} workers, {tries_per} per connection")
    return _guessed(fr, mark, bot, what, targets, "FTP login guessing")


# flood --------------------------------------------------------------------------------------
def _pps(rng: np.random.Generator, frame: int, uplink_bps: float | None, lo: float, hi: float) -> float:
    pps = _log_uniform(rng, lo, hi)
    if uplink_bps:
        pps = min(pps, 0.95 * uplink_bps / (frame * 8))
    return pps


def icmp_flood(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
               *, rate: float | None = None, size: int | None = None, uplink_bps: float | None = None) -> list[Label]:
    """Echo requests to one internet host as fast as the seed says (400-6,000/s, log-uniform,
    at most 95 % of the uplink): one identifier, the sequence number counting up, a payload of
    8-1,472 bytes (ping's 56 and 64, hping3's 0-padding, MTU-sized), 0-8 % answered (the victim's
    edge drops or rate-limits ICMP under load)."""
    bot = env.bot
    mark = fr.mark()
    target = env.remote("victim", int(public_targets(rng, 1)[0]), rng)
    size = size if size is not None else int(rng.choice((8, 56, 64, 120, 512, 1000, 1400, 1472)))
    uplink_bps = uplink_bps if uplink_bps is not None else 10e6
    pps = rate if rate is not None else _pps(rng, 14 + 20 + 8 + size, uplink_bps, 400.0, 6000.0)
    n = max(1, int((t1 - t0) * pps))
    ts = t0 + np.arange(n) / pps + rng.uniform(0, 0.5 / pps, n)
    ident = int(rng.integers(1, 65536))
    body = rng.bytes(size) if rng.random() < 0.5 else bytes(size)
    # 256 templates of consecutive sequence numbers (the payload's checksum changes with it)
    variants = [fr.blob.add(icmp_echo(8, ident, k, body), dedupe=False) for k in range(256)]
    offs = np.array([v[0] for v in variants], np.int64)
    fr.add_many(ts, smac=bot.mac, dmac=env.gateway_mac, src=bot.ip, dst=target.ip, proto=ICMP, ttl=64,
                ipid=(int(rng.integers(0, 65536)) + np.arange(n)) & 0xFFFF, poff=offs[np.arange(n) % 256],
                plen=variants[0][1])
    share = float(rng.uniform(0.0, 0.08))
    back = np.flatnonzero(rng.random(n) < share)
    if len(back):
        rvariants = [fr.blob.add(icmp_echo(0, ident, k, body), dedupe=False) for k in range(256)]
        roffs = np.array([v[0] for v in rvariants], np.int64)
        fr.add_many(ts[back] + target.rtt, smac=env.gateway_mac, dmac=bot.mac, src=target.ip, dst=bot.ip, proto=ICMP,
                    ttl=target.ttl, ipid=rng.integers(0, 65536, len(back)), poff=roffs[back % 256],
                    plen=rvariants[0][1])
    what = (f"ICMP echo flood to {target.ip_text}: {n:,} requests of {size} bytes at {pps:,.0f}/s, "
            f"{len(back)} answered")
    return [_labelled(fr, mark, bot, "flood", what), *_victim(target, "ICMP echo flood", bot)]


def flag_flood(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
               *, rate: float | None = None, uplink_bps: float | None = None) -> list[Label]:
    """TCP segments that belong to no connection, to one service port of an internet host at
    500-6,000/s (log-uniform, within the uplink): RST, RST+ACK, FIN or FIN+ACK (seeded), random
    sequence numbers, the source port counting up from a random base (hping3) or random."""
    bot = env.bot
    mark = fr.mark()
    target = env.remote("victim", int(public_targets(rng, 1)[0]), rng)
    name, flags = [("RST", RST), ("RST+ACK", RST | ACK), ("FIN", FIN), ("FIN+ACK", FIN | ACK)][int(rng.integers(0, 4))]
    dport = int(rng.choice((80, 443, 22, 53, 8080, 25565, 3074)))
    uplink_bps = uplink_bps if uplink_bps is not None else 10e6
    pps = rate if rate is not None else _pps(rng, 60, uplink_bps, 500.0, 6000.0)
    n = max(1, int((t1 - t0) * pps))
    ts = t0 + np.sort(rng.uniform(0, t1 - t0, n))
    if rng.random() < 0.5:
        sport = (int(rng.integers(1024, 60000)) + np.arange(n)) % 64512 + 1024
    else:
        sport = rng.integers(1024, 65536, n)
    fr.add_many(ts, smac=bot.mac, dmac=env.gateway_mac, src=bot.ip, dst=target.ip, proto=TCP, ttl=64,
                ipid=rng.integers(0, 65536, n), sport=sport, dport=dport, seq=rng.integers(0, 1 << 32, n),
                ack=rng.integers(0, 1 << 32, n) if flags & ACK else 0, flags=flags,
                win=int(rng.choice((0, 512, 1024, 64240))), df=int(rng.integers(0, 2)))
    what = f"TCP {name} flood to {target.ip_text}:{dport}: {n:,} segments of no connection at {pps:,.0f}/s"
    return [_labelled(fr, mark, bot, "flood", what), *_victim(target, f"TCP {name} flood", bot)]


def slow_http(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
              *, mode: str | None = None, conns: int | None = None, port: int | None = None) -> list[Label]:
    """Slowloris ("headers": a request that never ends, one more header line every 5-15 s) or slow
    POST ("body": a large Content-Length, one or a few body bytes every 5-15 s) on ``conns``
    connections (150-800) to one internet web server (port 80, 8080 or 8000), opened at 20-300 a
    second (log-uniform); the server acknowledges and, for a share of them, times out and
    closes (nginx's 408, Apache's reset); the tool opens a new one for each closed."""
    bot = env.bot
    mark = fr.mark()
    mode = mode if mode is not None else str(rng.choice(("headers", "body")))
    conns = conns if conns is not None else int(rng.integers(150, 801))
    open_rate = _log_uniform(rng, 20.0, 300.0)
    beat = float(rng.uniform(5.0, 15.0))
    target = env.remote("victim", int(public_targets(rng, 1)[0]), rng)
    port = port if port is not None else int(rng.choice((80, 80, 8080, 8000)))
    timeout = float(rng.uniform(30.0, 120.0)) if rng.random() < 0.6 else None
    host = str(rng.choice(("www.example-shop.com", "portal.example.org", "example.net")))
    agent = str(rng.choice(("Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "Mozilla/4.0 (compatible; MSIE 7.0)",
                            "slowhttptest", "python-requests/2.25.1")))
    starts = list(t0 + np.arange(conns) / open_rate)
    opened = 0
    while starts:
        t = starts.pop(0)
        if t >= t1 - 2:
            continue
        s = TcpSession(fr, rng, bot, target, port, t)
        s.open()
        opened += 1
        if mode == "headers":
            s.send(0, f"GET /?{int(rng.integers(0, 10**6))} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {agent}\r\n"
                   "Accept-language: en-US,en,q=0.5\r\n".encode(), 0.001)
        else:
            s.send(0, f"POST /login.cgi HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {agent}\r\nContent-Type: "
                   f"application/x-www-form-urlencoded\r\nContent-Length: {int(rng.integers(8192, 1 << 20))}\r\n\r\n"
                   .encode(), 0.001)
        end = min(t1 - 0.5, t + timeout) if timeout else t1 - 0.5
        while s.t + beat < end:
            chunk = (f"X-a: {int(rng.integers(1, 5000))}\r\n".encode() if mode == "headers"
                     else rng.bytes(int(rng.integers(1, 4))))
            s.send(0, chunk, beat * float(rng.uniform(0.9, 1.1)))
        if timeout and s.t + beat >= t + timeout and t + timeout < t1 - 1:
            if rng.random() < 0.5:
                s.send(1, b"HTTP/1.1 408 Request Time-out\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                       t + timeout - s.t)
                s.close(1, 0.001)
            else:
                s.reset(1, t + timeout - s.t)
            starts.append(s.t + float(rng.uniform(0.01, 0.5)))
            starts.sort()
    what = (f"slow HTTP ({'slowloris: headers never finished' if mode == 'headers' else 'slow POST body'}) on "
            f"{opened} connections to {target.ip_text}:{port}, opened at "
            f"{open_rate:.0f}/s, a {'header line' if mode == 'headers' else 'few body bytes'} every {beat:.0f} s")
    return [_labelled(fr, mark, bot, "flood", what), *_victim(target, "slow HTTP flood", bot)]


def _torture_name(rng: np.random.Generator, shape: str, domain: str) -> str:
    if shape == "alnum":
        k = int(rng.integers(6, 17))
        label = "".join(chr(c) for c in rng.choice(np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", np.uint8), k))
    elif shape == "hex":
        label = rng.bytes(int(rng.integers(4, 9))).hex()
    else:  # word + number, as some kits do to look like real names
        label = f"{WORDS[int(rng.integers(0, len(WORDS)))]}{int(rng.integers(0, 100000))}"
    return f"{label}.{domain}"


def dns_torture(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
                *, rate: float | None = None) -> list[Label]:
    """Random-subdomain queries for one victim domain at ``rate``/s (40-2,000, log-uniform),
    through the site's resolver, straight to a public resolver, or to the domain's own name
    server; names random letters and digits (6-16), hex (8-16) or a word and a number; A or AAAA;
    answered NXDOMAIN or SERVFAIL (the overloaded name server) for a seeded share (10-70 %)."""
    bot = env.bot
    mark = fr.mark()
    rate = rate if rate is not None else _log_uniform(rng, 40.0, 2000.0)
    domain = TORTURE_DOMAINS[int(rng.integers(0, len(TORTURE_DOMAINS)))]
    pick = rng.random()
    if pick < 0.3:
        resolver, where = env.resolver, "site's resolver"
    elif pick < 0.7:
        resolver = env.remote("resolver", ip(PUBLIC_RESOLVERS[int(rng.integers(0, len(PUBLIC_RESOLVERS)))]), rng)
        where = "public resolver"
    else:
        resolver = env.remote("resolver", int(public_targets(rng, 1)[0]), rng)
        where = f"name server of {domain}"
    shape = str(rng.choice(("alnum", "hex", "word")))
    n = max(1, int((t1 - t0) * rate))
    ts = t0 + np.sort(rng.uniform(0, t1 - t0, n))
    share = float(rng.uniform(0.1, 0.7))
    servfail = rng.random() < 0.4
    one_port = rng.random() < 0.3
    sport0 = int(rng.integers(1024, 65536))
    for i in range(n):
        name = _torture_name(rng, shape, domain)
        txid = int(rng.integers(0, 65536))
        qtype = 28 if rng.random() < 0.3 else 1
        sport = sport0 if one_port else int(rng.integers(1024, 65536))
        off, ln = fr.blob.add(dns_query(txid, name, qtype), dedupe=False)
        fr.add(float(ts[i]), smac=bot.mac, dmac=resolver.mac, src=bot.ip, dst=resolver.ip, proto=UDP, ttl=64,
               ipid=int(rng.integers(0, 65536)), sport=sport, dport=53, poff=off, plen=ln)
        if rng.random() < share:
            ans = bytearray(dns_answer(txid, name, None))
            ans[2:4] = struct.pack(">H", 0x8182 if servfail else 0x8183)
            struct.pack_into(">H", ans, len(ans) - 4, qtype)
            off, ln = fr.blob.add(bytes(ans), dedupe=False)
            fr.add(float(ts[i]) + resolver.rtt + float(rng.uniform(0.0, 1.0)), smac=resolver.mac, dmac=bot.mac,
                   src=resolver.ip, dst=bot.ip, proto=UDP, ttl=resolver.ttl, sport=53, dport=sport, poff=off, plen=ln)
    what = (f"DNS water torture through the {where} {resolver.ip_text}: {n:,} queries for random {shape} names under "
            f"{domain} at {rate:,.0f}/s, {share:.0%} answered {'SERVFAIL' if servfail else 'NXDOMAIN'}")
    victim = _victim(resolver, f"DNS water torture of {domain}", bot) if where.startswith("name") else []
    return [_labelled(fr, mark, bot, "flood", what), *victim]
