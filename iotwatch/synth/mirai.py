"""What a Mirai-infected device sends, after ../shared/MIRAI.md (the 2016 source and its analyses).

Each behaviour adds its packets to a :class:`~.wire.Frames` table for one infected host and returns
its labels. The bulk (scanner SYNs, floods, the upload surge) is built as numpy columns.

* :func:`scan` — raw TCP SYNs to random public IPv4 addresses: IP TTL 64, random IP id, random
  TCP window, **sequence number = destination address**, no options, one source port per scanner,
  destination port 23 with 2323 on every tenth probe, ~160 SYN/s (seed: 120–200). Targets skip
  0/8, 10/8, 127/8, 100.64/10, 169.254/16, 172.16/12, 192.168/16, 198.18/15, 224/3 and the
  large blocks the published source avoids (3/8, 15/8, 16/8, 56/8 and the US DoD blocks).
  Almost none answer: ~1 % send a RST, a handful send a SYN-ACK (acknowledging dst + 1), which
  the bot's kernel resets, since the SYN came from a raw socket.
* :func:`bruteforce` — for each answering target, a series of short telnet sessions, one
  credential each from a weighted table of camera/DVR/router defaults: the target's telnet
  negotiation and ``login:`` prompt, user name, ``Password:``, password, ``Login incorrect``; a
  few seconds each. One success is reported to the report server on TCP 48101 (one zero byte,
  the victim's address and port, the user name and password, each with a length byte).
* :func:`c2` — a DNS query for the C2 name, then one long TCP connection to the C2 on port 23: the
  bot's hello, then a two-byte keep-alive each period (60 s in the source; the seed draws 15–60 s)
  that the C2 echoes.
* :func:`flood` — one attack vector against one target: ``udp`` (generic: random ports, 512-byte
  payload), ``vse`` (UDP 27015, "TSource Engine Query"), ``dns`` (water torture: random
  12-letter subdomains of the victim's domain sent to the site's resolver), ``syn`` (random
  ports and sequence numbers, MSS/SACK/timestamp/window-scale options), ``ack`` (random
  sequence/ack numbers, 512-byte payload), ``greip`` (GRE carrying IPv4/UDP to the target) and
  ``http`` (many connections each sending a GET with a browser User-Agent).
* :func:`knocking` — the other side: internet hosts (other bots, scanners) that keep trying to
  connect to a device's address after it was isolated: SYNs to telnet and other login ports,
  each retried after 1 and 3 s as a kernel does, none answered.
* :func:`exfil` — a TLS-looking upload to the device's own cloud address that ramps up over
  ~15 s and then fills a share of the uplink: thousands of times the recorder's baseline.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .labels import Label
from .sessions import Host, TcpSession, bulk, dns_answer, dns_query, resolve, stream_region
from .wire import ACK, GRE, PSH, RST, SYN, TCP, UDP, Frames, ip_text, mac_text

VECTORS = ("udp", "vse", "dns", "syn", "ack", "greip", "http")

# Default credentials of cameras, recorders and routers (public, printed in manuals), with weights.
CREDENTIALS: tuple[tuple[str, str, int], ...] = (
    ("root", "xc3511", 10), ("root", "vizxv", 9), ("root", "admin", 8), ("admin", "admin", 8),
    ("root", "888888", 6), ("root", "xmhdipc", 6), ("root", "default", 5), ("root", "juantech", 5),
    ("root", "123456", 5), ("root", "54321", 5), ("support", "support", 4), ("root", "", 4),
    ("admin", "password", 4), ("root", "root", 4), ("root", "12345", 4), ("user", "user", 3),
    ("admin", "", 3), ("root", "pass", 3), ("admin", "admin1234", 3), ("root", "1111", 3),
    ("admin", "smcadmin", 2), ("admin", "1111", 2), ("root", "666666", 2), ("root", "password", 2),
    ("root", "1234", 2), ("root", "klv123", 2), ("Administrator", "admin", 2), ("service", "service", 2),
    ("supervisor", "supervisor", 2), ("guest", "guest", 2), ("guest", "12345", 2), ("admin1", "password", 1),
    ("administrator", "1234", 1), ("666666", "666666", 1), ("888888", "888888", 1), ("ubnt", "ubnt", 1),
    ("root", "klv1234", 1), ("root", "Zte521", 1), ("root", "hi3518", 1), ("root", "jvbzd", 1),
    ("root", "anko", 1), ("root", "zlxx.", 1), ("root", "7ujMko0vizxv", 1), ("root", "7ujMko0admin", 1),
    ("root", "system", 1), ("root", "ikwb", 1), ("root", "dreambox", 1), ("root", "user", 1),
    ("root", "realtek", 1), ("root", "00000000", 1), ("admin", "1111111", 1), ("admin", "1234", 1),
    ("admin", "12345", 1), ("admin", "54321", 1), ("admin", "123456", 1), ("admin", "7ujMko0admin", 1),
    ("admin", "pass", 1), ("admin", "meinsm", 1), ("tech", "tech", 1), ("mother", "fucker", 1),
)
HTTP_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/51.0.2704.103 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/52.0.2743.116 Safari/537.36",
    "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/51.0.2704.103 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_6) AppleWebKit/601.7.7 (KHTML, like Gecko) Version/9.1.2 Safari/601.7.7",
)
C2_NAMES = ("cnc.routersupd.net", "api.camupdate.xyz", "nvr-telemetry.top", "sync.dvrcloud.su")
REPORT_NAMES = ("report.routersupd.net", "log.camupdate.xyz", "stat.nvr-telemetry.top", "rep.dvrcloud.su")
VICTIM_DOMAINS = ("shop-example.jp", "game-server.example.net", "news-portal.example.com")
# /8 blocks the scanner never picks (besides the private/reserved ranges checked in _public)
SKIP_A = (0, 3, 6, 7, 10, 11, 15, 16, 21, 22, 26, 28, 29, 30, 33, 55, 56, 127, 214, 215)


@dataclass(frozen=True, slots=True)
class Env:
    """Where the infected host lives: its gateway's MAC and the resolver it uses."""

    bot: Host
    gateway_mac: int
    resolver: Host

    def remote(self, name: str, addr: int, rng: np.random.Generator, device_type: str = "unknown") -> Host:
        return Host(name, self.gateway_mac, addr, device_type, int(rng.choice((47, 49, 51, 53, 113, 115))),
                    float(rng.uniform(0.02, 0.25)))


def public_targets(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random IPv4 addresses the Mirai scanner would probe."""
    out = np.zeros(0, dtype=np.int64)
    skip = np.zeros(256, dtype=bool)
    skip[list(SKIP_A)] = True
    skip[224:] = True
    while len(out) < n:
        x = rng.integers(1 << 24, 224 << 24, 2 * n + 16, dtype=np.int64)
        a, b = x >> 24, (x >> 16) & 0xFF
        bad = skip[a] | ((a == 100) & (b >= 64) & (b < 128)) | ((a == 169) & (b == 254))
        bad |= ((a == 172) & (b >= 16) & (b < 32)) | ((a == 192) & (b == 168)) | ((a == 198) & (b >= 18) & (b < 20))
        out = np.concatenate([out, x[~bad]])
    return out[:n]


def _finish(fr: Frames, mark: tuple[int, int], label: Label, bot: Host) -> Label:
    span = fr.span(mark, bot.mac)
    if span is not None:
        label.first_ts, label.end_ts = span
    return label


def scan(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float, *, rate: float | None = None,
         answering: int | None = None) -> tuple[list[Label], list[Host]]:
    """The telnet scanner from ``t0`` to ``t1``; returns its label and the hosts that answered."""
    bot = env.bot
    mark = fr.mark()
    rate = rate if rate is not None else float(rng.uniform(120, 200))
    n = max(10, int((t1 - t0) * rate))
    ts = t0 + np.cumsum(rng.exponential(1 / rate, n))
    keep = ts < t1
    ts = ts[keep]
    n = len(ts)
    dst = public_targets(rng, n)
    k = np.arange(n)
    dport = np.where(k % 10 == 9, 2323, 23)
    sport = int(rng.integers(1024, 65536))
    fr.add_many(ts, smac=bot.mac, dmac=env.gateway_mac, src=bot.ip, dst=dst, proto=TCP, ttl=64, df=0,
                ipid=rng.integers(0, 65536, n), sport=sport, dport=dport, seq=dst, flags=SYN,
                win=rng.integers(0, 65536, n))
    # ~1 % of the targets reset
    rst = np.flatnonzero(rng.random(n) < 0.01)
    rtt = rng.uniform(0.03, 0.3, len(rst))
    fr.add_many(ts[rst] + rtt, smac=env.gateway_mac, dmac=bot.mac, src=dst[rst], dst=bot.ip, proto=TCP,
                ttl=rng.choice((47, 49, 113, 241), len(rst)), ipid=rng.integers(0, 65536, len(rst)),
                sport=dport[rst], dport=sport, seq=0, ack=(dst[rst] + 1) & 0xFFFFFFFF, flags=RST | ACK)
    # a handful answer with a SYN-ACK; the bot's kernel resets it (the SYN came from a raw socket)
    n_ans = answering if answering is not None else int(rng.integers(3, 7))
    pool = np.setdiff1d(np.arange(n // 20, max(n // 20 + 1, n * 3 // 5)), rst)
    chosen = np.sort(rng.choice(pool, min(n_ans, len(pool)), replace=False)) if len(pool) else np.zeros(0, int)
    answered: list[Host] = []
    for i in chosen.tolist():
        target = env.remote(f"telnet-{ip_text(int(dst[i]))}", int(dst[i]), rng, "unknown")
        t = float(ts[i]) + target.rtt
        fr.add(t, smac=target.mac, dmac=bot.mac, src=target.ip, dst=bot.ip, proto=TCP, ttl=target.ttl,
               sport=int(dport[i]), dport=sport, seq=int(rng.integers(0, 1 << 32)), ack=(int(dst[i]) + 1) & 0xFFFFFFFF,
               flags=SYN | ACK, win=5840)
        fr.add(t + 0.0001, smac=bot.mac, dmac=env.gateway_mac, src=bot.ip, dst=target.ip,
               proto=TCP, ttl=64, sport=sport, dport=int(dport[i]), seq=(int(dst[i]) + 1) & 0xFFFFFFFF, flags=RST)
        answered.append(Host(target.name, target.mac, target.ip, "unknown", target.ttl, target.rtt))
    label = Label(bot.ip_text, mac_text(bot.mac), bot.device_type, "scan",
                  f"Mirai telnet scanner: {n:,} SYNs to random public addresses at {rate:.0f}/s, dport 23 "
                  f"(2323 every 10th), TCP seq = destination address, TTL 64, random IP id and window; "
                  f"{len(rst)} RSTs and {len(answered)} SYN-ACKs back")
    return [_finish(fr, mark, label, bot)], answered


IAC_DO = b"\xff\xfd\x18\xff\xfd\x20\xff\xfd\x23\xff\xfd\x27"


def _weights() -> np.ndarray:
    w = np.array([c[2] for c in CREDENTIALS], dtype=np.float64)
    return w / w.sum()


def bruteforce(fr: Frames, rng: np.random.Generator, env: Env, targets: list[Host], t0: float, t1: float,
               *, success: bool = True) -> list[Label]:
    """Telnet logins with default credentials against each target; the first target's last try works."""
    bot = env.bot
    mark = fr.mark()
    weights = _weights()
    attempts = 0
    labels: list[Label] = []
    report: tuple[Host, str, str, float] | None = None
    note = ""
    for j, target in enumerate(targets):
        t = max(t0, t0 + j * float(rng.uniform(0.5, 5)))
        tries = int(rng.integers(6, 16))
        order = rng.choice(len(CREDENTIALS), tries, replace=False, p=weights)
        for a, ci in enumerate(order.tolist()):
            if t > t1 - 3:
                break
            user, password, _ = CREDENTIALS[ci]
            s = TcpSession(fr, rng, bot, target, 23, t, win=14600)
            s.open()
            s.send(1, IAC_DO, 0.002)
            s.send(0, b"\xff\xfc\x18\xff\xfc\x20\xff\xfc\x23\xff\xfc\x27", 0.001)
            s.send(1, b"\r\nlogin: ", float(rng.uniform(0.05, 0.4)))
            s.send(0, user.encode() + b"\r\n", float(rng.uniform(0.1, 0.8)))
            s.send(1, b"Password: ", float(rng.uniform(0.02, 0.2)))
            s.send(0, password.encode() + b"\r\n", float(rng.uniform(0.1, 0.8)))
            attempts += 1
            # the first target's last try works (earlier when the capture would end first)
            last = success and j == 0 and (a == len(order) - 1 or t + 12 > t1 - 3)
            if last:
                s.send(1, b"\r\nBusyBox v1.19.4 built-in shell (ash)\r\n# ", float(rng.uniform(0.3, 1.0)))
                for cmd, reply in ((b"enable\r\n", b"\r\n# "), (b"system\r\n", b"\r\n# "), (b"shell\r\n", b"\r\n# "),
                                   (b"sh\r\n", b"\r\n# "), (b"/bin/busybox MIRAI\r\n", b"MIRAI: applet not found\r\n# ")):
                    s.send(0, cmd, float(rng.uniform(0.05, 0.3)))
                    s.send(1, reply, 0.01)
                s.close(0, 0.1)
                report = (target, user, password, s.t)
                t = s.t
                break
            else:
                s.send(1, b"\r\nLogin incorrect\r\n\r\nlogin: ", float(rng.uniform(1.0, 3.0)))
                s.close(0, float(rng.uniform(0.05, 0.4)))
            t = s.t + float(rng.uniform(0.2, 1.5))
        labels.append(Label.victim(target, f"receives telnet logins with default credentials from {bot.ip_text}"))
    if report is not None and report[3] < t1 - 1:
        target, user, password, t = report
        name = REPORT_NAMES[int(rng.integers(0, len(REPORT_NAMES)))]
        server = env.remote(name, int(public_targets(rng, 1)[0]), rng)
        t = resolve(fr, rng, t + 0.5, bot, env.resolver, name, server.ip)
        s = TcpSession(fr, rng, bot, server, 48101, t + 0.001)
        s.open()
        msg = b"\0" + struct.pack(">IH", target.ip, 23) + bytes([len(user)]) + user.encode() \
            + bytes([len(password)]) + password.encode()
        s.send(0, msg, 0.001)
        s.close(0, 0.01)
        note = f"; the last one succeeds and is reported to {name} ({server.ip_text}) on TCP 48101"
    label = Label(bot.ip_text, mac_text(bot.mac), bot.device_type, "bruteforce",
                  f"{attempts} telnet logins with default camera/DVR credentials (one session each, "
                  f"login prompt, failure) against {len(targets)} hosts that answered the scan{note}")
    return [_finish(fr, mark, label, bot), *labels]


def c2(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
       *, period: float | None = None) -> list[Label]:
    """Resolve the C2 name, connect to it on TCP 23, keep the connection alive."""
    bot = env.bot
    mark = fr.mark()
    period = period if period is not None else float(rng.uniform(15, 60))
    name = C2_NAMES[int(rng.integers(0, len(C2_NAMES)))]
    server = env.remote(name, int(public_targets(rng, 1)[0]), rng)
    t = resolve(fr, rng, t0, bot, env.resolver, name, server.ip)
    s = TcpSession(fr, rng, bot, server, 23, t + 0.001, win=14600)
    s.open()
    s.send(0, b"\x00\x00\x00\x01\x00", 0.001)
    beats = 0
    while s.t + period < t1:
        s.send(0, b"\x00\x00", period + float(rng.normal(0, 0.05)))
        s.send(1, b"\x00\x00", 0.002)
        beats += 1
    label = Label(bot.ip_text, mac_text(bot.mac), bot.device_type, "c2",
                  f"DNS A {name} then one TCP connection to {server.ip_text}:23 kept alive with "
                  f"2-byte messages every {period:.0f} s ({beats} keep-alives, echoed)")
    return [_finish(fr, mark, label, bot)]


def flood(fr: Frames, rng: np.random.Generator, env: Env, vector: str, t0: float, t1: float,
          *, rate: float | None = None, uplink_bps: float | None = None) -> list[Label]:
    """One attack vector at ``rate`` packets/s (seeded), capped at what ``uplink_bps`` can carry."""
    if vector not in VECTORS:
        raise ValueError(f"unknown vector {vector!r} (one of {', '.join(VECTORS)})")
    bot = env.bot
    mark = fr.mark()
    target = env.remote("victim", int(public_targets(rng, 1)[0]), rng, "unknown")
    victim_label = Label.victim(target, f"target of a Mirai {vector} flood from {bot.ip_text}")
    domain = VICTIM_DOMAINS[int(rng.integers(0, len(VICTIM_DOMAINS)))]
    if vector == "http":
        conns = rate if rate is not None else float(rng.uniform(20, 60))
        t, n = t0, 0
        agent = HTTP_AGENTS[int(rng.integers(0, len(HTTP_AGENTS)))]
        while t < t1 - 0.5:
            s = TcpSession(fr, rng, bot, target, 80, t)
            s.open()
            s.send(0, f"GET / HTTP/1.1\r\nUser-Agent: {agent}\r\nHost: {domain}\r\nConnection: keep-alive\r\n"
                   "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
                   "Accept-Language: en-US,en;q=0.8\r\n\r\n".encode(), 0.0005)
            s.send(1, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 45\r\n\r\n"
                   b"<html><body>It works, mostly.</body></html>\r\n", 0.01)
            s.close(0, 0.001)
            n += 1
            t += float(rng.exponential(1 / conns))
        evidence = f"HTTP flood: {n} connections to {target.ip_text}:80 each with a GET ({conns:.0f}/s)"
    elif vector == "dns":
        pps = rate if rate is not None else float(rng.uniform(300, 1500))
        n = max(1, int((t1 - t0) * pps))
        ts = t0 + np.sort(rng.uniform(0, t1 - t0, n))
        letters = rng.integers(0, 26, (n, 12)) + ord("a")
        sports = rng.integers(1024, 65536, n)
        txids = rng.integers(0, 65536, n)
        answered = rng.random(n) < 0.4
        for i in range(n):
            name = bytes(letters[i].astype(np.uint8)).decode() + "." + domain
            q = dns_query(int(txids[i]), name)
            off, ln = fr.blob.add(q, dedupe=False)
            fr.add(float(ts[i]), smac=bot.mac, dmac=env.resolver.mac, src=bot.ip, dst=env.resolver.ip, proto=UDP,
                   ttl=64, ipid=int(txids[i]) ^ 0x5A5A, sport=int(sports[i]), dport=53, poff=off, plen=ln)
            if answered[i]:
                off, ln = fr.blob.add(dns_answer(int(txids[i]), name, None), dedupe=False)
                fr.add(float(ts[i]) + float(rng.uniform(0.2, 1.5)), smac=env.resolver.mac, dmac=bot.mac,
                       src=env.resolver.ip, dst=bot.ip, proto=UDP, ttl=64, sport=53, dport=int(sports[i]),
                       poff=off, plen=ln)
        evidence = (f"DNS water torture: {n:,} queries for random 12-letter subdomains of {domain} to the resolver "
                    f"{env.resolver.ip_text} ({pps:.0f}/s)")
    else:
        pps = rate if rate is not None else float(rng.uniform(1500, 5000))
        frame = {"udp": 14 + 28 + 512, "vse": 14 + 28 + 25, "syn": 14 + 40 + 20, "ack": 14 + 40 + 512,
                 "greip": 14 + 20 + 4 + 28 + 512}[vector]
        if uplink_bps:
            pps = min(pps, 0.95 * uplink_bps / (frame * 8))
        n = max(1, int((t1 - t0) * pps))
        ts = t0 + np.sort(rng.uniform(0, t1 - t0, n))
        cols: dict[str, object] = {"smac": bot.mac, "dmac": env.gateway_mac, "src": bot.ip, "dst": target.ip,
                                   "ttl": 64, "ipid": rng.integers(0, 65536, n), "df": 0}
        if vector in ("udp", "vse"):
            payload = fr.blob.add(b"\xff\xff\xff\xffTSource Engine Query\x00") if vector == "vse" \
                else fr.blob.add(rng.bytes(512), dedupe=False)
            cols |= {"proto": UDP, "sport": rng.integers(1024, 65536, n),
                     "dport": 27015 if vector == "vse" else rng.integers(1, 65536, n),
                     "poff": payload[0], "plen": payload[1]}
        elif vector == "syn":
            opts = fr.blob.add(b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + rng.bytes(4) + b"\0\0\0\0\x01\x03\x03\x06")
            cols |= {"proto": TCP, "sport": rng.integers(1024, 65536, n), "dport": rng.integers(1, 65536, n),
                     "seq": rng.integers(0, 1 << 32, n), "flags": SYN, "win": rng.integers(0, 65536, n),
                     "doff": 10, "poff": opts[0], "plen": opts[1], "df": 1}
        elif vector == "ack":
            payload = fr.blob.add(rng.bytes(512), dedupe=False)
            cols |= {"proto": TCP, "sport": rng.integers(1024, 65536, n), "dport": rng.integers(1, 65536, n),
                     "seq": rng.integers(0, 1 << 32, n), "ack": rng.integers(0, 1 << 32, n), "flags": ACK | PSH,
                     "win": rng.integers(0, 65536, n), "poff": payload[0], "plen": payload[1]}
        else:  # greip: GRE (protocol 0x0800) carrying IPv4/UDP, 16 variants of the inner ports
            from scapy.layers.inet import IP as ScapyIP
            from scapy.layers.inet import UDP as ScapyUDP

            body = rng.bytes(512)
            variants = [fr.blob.add(b"\x00\x00\x08\x00" + bytes(
                ScapyIP(src=bot.ip_text, dst=target.ip_text, ttl=64, id=int(rng.integers(0, 65536)))
                / ScapyUDP(sport=int(rng.integers(1024, 65536)), dport=int(rng.integers(1, 65536))) / body))
                for _ in range(16)]
            pick = rng.integers(0, len(variants), n)
            cols |= {"proto": GRE, "poff": np.array([v[0] for v in variants])[pick],
                     "plen": variants[0][1]}
        fr.add_many(ts, **cols)  # type: ignore[arg-type]
        evidence = f"Mirai {vector} flood: {n:,} packets to {target.ip_text} at {pps:,.0f}/s"
    label = Label(bot.ip_text, mac_text(bot.mac), bot.device_type, "flood", evidence)
    out = [_finish(fr, mark, label, bot)]
    if vector != "dns":
        out.append(victim_label)
    return out


def exfil(fr: Frames, rng: np.random.Generator, env: Env, cloud: Host, t0: float, t1: float, uplink_bps: float,
          *, fill: float | None = None, baseline_bps: float | None = None) -> list[Label]:
    """An upload to ``cloud`` that ramps up over ~15 s and then fills ``fill`` of the uplink."""
    bot = env.bot
    mark = fr.mark()
    fill = fill if fill is not None else float(rng.uniform(0.9, 0.98))
    region = stream_region(fr, rng)
    s = TcpSession(fr, rng, bot, cloud, 443, t0)
    s.open()
    t = s.t + 0.001
    ramp = min(15.0, (t1 - t) / 3)
    sent = 0
    for step in range(5):
        end = t + ramp / 5
        n, _ = bulk(fr, rng, bot, cloud, s.ports[0], 443, t, end, uplink_bps * fill * (step + 1) / 6,
                        (s.nxt[0] + sent) & 0xFFFFFFFF, s.nxt[1], region, sent)
        sent += n
        t = end
    n, _ = bulk(fr, rng, bot, cloud, s.ports[0], 443, t, t1, uplink_bps * fill, (s.nxt[0] + sent) & 0xFFFFFFFF,
                    s.nxt[1], region, sent)
    sent += n
    times = f"; about {uplink_bps * fill / baseline_bps:,.0f}× its baseline upload" if baseline_bps else ""
    label = Label(bot.ip_text, mac_text(bot.mac), bot.device_type, "exfil",
                  f"upload surge to {cloud.ip_text}:443: {sent / 1e6:,.1f} MB, filling {fill:.0%} of a "
                  f"{uplink_bps / 1e6:g} Mbit/s uplink{times}")
    return [_finish(fr, mark, label, bot)]


# ports the internet knocks on at a recorder: telnet, SSH, web, RTSP, vendor SDKs (Hikvision 8000,
# Dahua 37777), with weights (telnet first, as in the incident's 1,733 blocked attempts)
KNOCK_PORTS = ((23, 40), (2323, 8), (22, 20), (80, 10), (8080, 6), (554, 6), (8000, 5), (37777, 5))


def knocking(fr: Frames, rng: np.random.Generator, victim: Host, gateway_mac: int, t0: float, t1: float,
             *, rate: float | None = None) -> Label:
    """Internet hosts trying to connect to ``victim`` (which never answers) from ``t0`` to ``t1``:
    ``rate`` attempts/s (seeded, 10-20), a few hundred distinct sources, each attempt a SYN with
    TCP options and two retransmissions (after 1 and 3 s)."""
    rate = rate if rate is not None else float(rng.uniform(10, 20))
    n = max(10, int((t1 - t0) * rate))
    ts = t0 + np.sort(rng.uniform(0, t1 - t0 - 4, n))
    sources = public_targets(rng, max(20, n // 8))
    src = sources[rng.integers(0, len(sources), n)]
    ports = np.array([p for p, _ in KNOCK_PORTS])
    w = np.array([w for _, w in KNOCK_PORTS], dtype=np.float64)
    dport = rng.choice(ports, n, p=w / w.sum())
    sport = rng.integers(1024, 65536, n)
    seq = rng.integers(0, 1 << 32, n)
    ttl = rng.choice((45, 47, 49, 51, 53, 113, 115, 241), n)
    for delay in (0.0, 1.0, 3.0):
        fr.add_many(ts + delay, smac=gateway_mac, dmac=victim.mac, src=src, dst=victim.ip, proto=TCP, ttl=ttl,
                    ipid=rng.integers(0, 65536, n), sport=sport, dport=dport, seq=seq, flags=SYN, win=29200)
    return Label.victim(victim, f"{n:,} inbound connection attempts from {len(np.unique(src)):,} internet hosts "
                        f"to telnet, SSH, web, RTSP and vendor ports after it was isolated; none answered",
                        local=True)
