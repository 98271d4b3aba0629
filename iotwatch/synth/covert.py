"""Command and control and exfiltration the way commodity malware does them (issue 10's missed
classes): each generator is its own family, with its parameters spread by the seed, and labels
the infected host from its first bad packet.

Command and control:

* :func:`tls_beacon` — an HTTPS beacon: a new TLS connection (SNI: a host under a free
  dynamic-DNS zone) every few seconds with jitter, a small request and a small answer, the name
  looked up again when its short TTL runs out.
* :func:`post_beacon` — an HTTP POST check-in to a rare internet address on an odd port, a new
  connection each time (a stealer's or bot's panel, ``/gate.php``-style), with jitter.
* :func:`rat_session` — an AsyncRAT/njRAT-like remote-access session: the controller's
  dynamic-DNS name looked up, one session on the RAT's port (TLS or its own framing) with a
  keep-alive ping answered by the controller, pushes of tens of kB (screenshots, keylogs) and
  commands back; the session drops now and then and the RAT looks the name up and reconnects.

Exfiltration:

* :func:`dns_tunnel` — iodine- or dnscat2-like: many unique long encoded names under one domain,
  NULL/TXT/MX/CNAME (or A) queries, to the site's resolver or straight to a public one, answers
  carrying data back.
* :func:`dns_exfil` — a file sent one way in DNS queries (DNSExfiltrator-like): bursts of A/AAAA
  queries for sequence-numbered encoded chunks, every answer NXDOMAIN.
* :func:`credential_exfil` — an AgentTesla-like stealer: it asks a what-is-my-IP service for its
  public address, then sends what it took by SMTP (EHLO, AUTH LOGIN, MAIL, RCPT, DATA of a few kB)
  or by FTP (USER/PASS, PASV, STOR), again after its timer.
* :func:`chunked_upload` — HTTP(S) POSTs of 0.25-4 MB chunks to a rare host, one after the other,
  at a large share of the uplink.
* :func:`slow_exfil` — after a time-based-evasion sleep, a slow upload sustained for minutes
  to a new internet address: hundreds of times the device's own (near zero) normal, at tens to
  hundreds of kbit/s, under the rate of a fast surge.

Each returns the labels of what it generated (one row for the misbehaving host).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable

import numpy as np

from .evasive import ODD_PORTS, _labelled
from .labels import Label
from .mirai import Env, public_targets
from .sessions import Host, TcpSession, bulk, dns_name, resolve, stream_region, tls_record, udp
from .wire import Frames, ip_text

#: free dynamic-DNS zones remote-access trojans and stealers take their controllers' names from
DDNS_ZONES = ("duckdns.org", "ddns.net", "hopto.org", "zapto.org", "no-ip.biz", "sytes.net", "myftp.biz",
              "serveftp.com", "dynu.net", "linkpc.net")
#: what-is-my-IP services stealers ask before they report (name, HTTPS?)
IP_ECHO = (("api.ipify.org", True), ("ip-api.com", False), ("checkip.amazonaws.com", True),
           ("icanhazip.com", True), ("ipinfo.io", True), ("wtfismyip.com", True), ("checkip.dyndns.org", False))
#: public resolvers a tunnel may use instead of the site's
PUBLIC_RESOLVERS = ("8.8.8.8", "1.1.1.1", "9.9.9.9", "208.67.222.222")
WORDS = ("update", "sys", "win", "cloud", "host", "office", "nvr", "cam", "alpha", "link", "data", "node", "kali",
         "server", "panel", "remote", "home", "backup")


def _word(rng: np.random.Generator) -> str:
    return str(rng.choice(WORDS))


def _ddns_name(rng: np.random.Generator) -> str:
    return f"{_word(rng)}{_word(rng)}{int(rng.integers(1, 999))}.{rng.choice(DDNS_ZONES)}"


def _ddns_controller(rng: np.random.Generator, env: Env) -> tuple[str, Host]:
    """A controller under a dynamic-DNS name, at a public address: (its name, the host)."""
    name = _ddns_name(rng)
    return name, env.remote(name, int(public_targets(rng, 1)[0]), rng)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def client_hello(rng: np.random.Generator, sni: str) -> bytes:
    """A TLS 1.2/1.3 ClientHello record naming ``sni``."""
    name = sni.encode()
    exts = struct.pack(">HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    exts += bytes.fromhex("000a000800060017001d0018" "000b00020100" "000d000e000c040308040401050308050501"
                          "002b0005040304 0303".replace(" ", ""))
    ciphers = bytes.fromhex("130113021303c02bc02fc02cc030cca9cca8c013c014009c009d002f0035")
    body = (b"\x03\x03" + rng.bytes(32) + b"\x20" + rng.bytes(32) + struct.pack(">H", len(ciphers)) + ciphers
            + b"\x01\x00" + struct.pack(">H", len(exts)) + exts)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def server_hello(rng: np.random.Generator, cert_bytes: int) -> bytes:
    """ServerHello, a certificate chain of about ``cert_bytes`` and the end of the handshake."""
    hello = b"\x02\x00\x00\x46\x03\x03" + rng.bytes(32) + b"\x20" + rng.bytes(32) + b"\xc0\x2f\x00"
    cert = b"\x0b" + cert_bytes.to_bytes(3, "big") + rng.bytes(cert_bytes)
    done = b"\x0e\x00\x00\x00"
    hs = hello + cert + done
    return b"\x16\x03\x03" + struct.pack(">H", len(hs)) + hs


def _tls_open(s: TcpSession, rng: np.random.Generator, sni: str, cert_bytes: int) -> None:
    s.send(0, client_hello(rng, sni), 0.001)
    s.send(1, server_hello(rng, cert_bytes), 0.003)
    s.send(0, b"\x16\x03\x03\x00\x25" + rng.bytes(37) + b"\x14\x03\x03\x00\x01\x01" + tls_record(rng, 40), 0.002)
    s.send(1, b"\x14\x03\x03\x00\x01\x01" + tls_record(rng, 40), 0.002)


# command and control ---------------------------------------------------------------------------
def _beacon(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float, period: float, jitter: float,
            connect: Callable[[float, int], float], *, what: str, to: str, conns: str, each: str) -> list[Label]:
    """Call ``connect(t, n)`` (the n-th check-in at t; it returns t, later if it looked a name up
    first) every ``period`` s ± ``jitter`` (a share of it) from t0 until 2 s before t1; the label
    says ``what`` went ``to`` where, how many ``conns`` and what came with ``each``."""
    mark = fr.mark()
    t, n = t0, 0
    while t < t1 - 2:
        t = connect(t, n)
        n += 1
        t += period * float(1.0 + rng.uniform(-jitter, jitter))
    return _labelled(fr, mark, env.bot, "c2", f"{what} to {to}: {n} new {conns} every {period:.1f} s "
                                              f"(jitter ±{jitter:.0%}), {each}")


def tls_beacon(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
               *, period: float | None = None) -> list[Label]:
    """A new TLS connection to a dynamic-DNS host every ``period`` s (2-10 s) with a jitter of up
    to ±15 %: ClientHello with the name as SNI, a request of 150-700 bytes, an answer of 40-400
    bytes (now and then a task of a few kB), closed; the name is looked up again when its TTL
    (30-300 s) runs out."""
    bot = env.bot
    period = period if period is not None else float(rng.uniform(2.0, 10.0))
    jitter = float(rng.uniform(0.0, 0.15))
    name, ctrl = _ddns_controller(rng, env)
    port = int(rng.choice((443, 443, 443, 8443)))
    ttl = float(rng.choice((30.0, 60.0, 120.0, 300.0)))
    cert = int(rng.integers(800, 3000))
    looked = -1e18

    def connect(t: float, _n: int) -> float:
        nonlocal looked
        if t - looked >= ttl:
            t = resolve(fr, rng, t, bot, env.resolver, name, ctrl.ip) + 0.001
            looked = t
        s = TcpSession(fr, rng, bot, ctrl, port, t)
        s.open()
        _tls_open(s, rng, name, cert)
        s.send(0, tls_record(rng, int(rng.integers(150, 700))), 0.001)
        task = rng.random() < 0.1
        s.send(1, tls_record(rng, int(rng.integers(1000, 4000)) if task else int(rng.integers(40, 400))), 0.01)
        s.close(0, 0.005)
        return t

    return _beacon(fr, rng, env, t0, t1, period, jitter, connect, what="HTTPS beacon",
                   to=f"{name} ({ctrl.ip_text}:{port})", conns="TLS connections",
                   each=f"small request and answer each; name re-resolved every {ttl:.0f} s")


POST_PATHS = ("/gate.php", "/api/ping", "/index.php?id=", "/check", "/b/upd", "/panel/connect.php")
AGENTS = ("Mozilla/5.0 (Windows NT 6.1; rv:60.0) Gecko/20100101 Firefox/60.0", "curl/7.58.0", "python-requests/2.22.0",
          "Wget/1.19.4 (linux-gnu)", "Go-http-client/1.1")


def post_beacon(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
                *, period: float | None = None) -> list[Label]:
    """An HTTP POST check-in to a rare internet address (no DNS: the address is in the binary) on an
    odd web port, a new connection each time, every ``period`` s (2-8 s) with a jitter of up to
    ±30 %; the body names the bot (form or JSON, 60-300 bytes), the panel answers a short ``ok`` or,
    now and then, a task."""
    bot = env.bot
    period = period if period is not None else float(rng.uniform(2.0, 8.0))
    jitter = float(rng.uniform(0.0, 0.3))
    ctrl = env.remote("panel", int(public_targets(rng, 1)[0]), rng)
    port = int(rng.choice((*ODD_PORTS, 81, 3000, 5000, 8000, 8081, 8888)))
    path = str(rng.choice(POST_PATHS))
    agent = str(rng.choice(AGENTS))
    ident = rng.bytes(6).hex()
    form = bool(rng.random() < 0.5)

    def connect(t: float, n: int) -> float:
        s = TcpSession(fr, rng, bot, ctrl, port, t)
        s.open()
        extra = rng.bytes(int(rng.integers(10, 120))).hex()
        body = (f"id={ident}&os=linux&arch=arm&st=idle&d={extra}" if form else
                f'{{"id":"{ident}","os":"linux","up":{n},"d":"{extra}"}}').encode()
        ctype = "application/x-www-form-urlencoded" if form else "application/json"
        s.send(0, (f"POST {path} HTTP/1.1\r\nHost: {ctrl.ip_text}:{port}\r\nUser-Agent: {agent}\r\n"
                   f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body,
               0.001)
        answer = rng.bytes(int(rng.integers(200, 1500))).hex().encode() if rng.random() < 0.08 else b"ok"
        s.send(1, f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {len(answer)}\r\n\r\n".encode()
               + answer, 0.01)
        s.close(1, 0.002)
        return t

    return _beacon(fr, rng, env, t0, t1, period, jitter, connect, what="HTTP POST beacon",
                   to=f"{ctrl.ip_text}:{port}{path}", conns="connections",
                   each=f"{'form' if form else 'JSON'} body naming the bot, short answers")


#: the ports remote-access trojans listen on by default (AsyncRAT 6606/7707/8808, njRAT 5552/1177,
#: Quasar 4782, Remcos 2404, DcRAT 8848), with the other odd ports operators pick
RAT_PORTS = (6606, 7707, 8808, 5552, 1177, 4782, 2404, 8848, *ODD_PORTS)


def rat_session(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
                *, keepalive: float | None = None) -> list[Label]:
    """The RAT looks its controller's dynamic-DNS name up and connects to the RAT port, TLS
    (AsyncRAT, DcRAT, Quasar) or its own length-prefixed framing (njRAT): an info packet of
    0.3-1.5 kB, then the controller's ping every ``keepalive`` s (8-30 s) answered by a pong, pushes
    of 10-80 kB (screen captures, keylogs) every 15-60 s, now and then a command of a few kB; after
    60-200 s the session drops (reset or closed) and the RAT looks the name up again and reconnects
    3-15 s later."""
    bot = env.bot
    mark = fr.mark()
    keepalive = keepalive if keepalive is not None else float(rng.uniform(8.0, 30.0))
    push_every = float(rng.uniform(15.0, 60.0))
    name, ctrl = _ddns_controller(rng, env)
    port = int(rng.choice(RAT_PORTS))
    tls = bool(rng.random() < 0.6)

    def msg(n: int) -> bytes:
        if tls:  # records of at most 16 kB
            return b"".join(tls_record(rng, min(16_384, n - k)) for k in range(0, n, 16_384))
        return str(n).encode() + b"\x00" + rng.bytes(n)

    t = t0
    sessions = pushes = 0
    pushed = 0
    while t < t1 - 5:
        t = resolve(fr, rng, t, bot, env.resolver, name, ctrl.ip) + float(rng.uniform(0.005, 0.2))
        s = TcpSession(fr, rng, bot, ctrl, port, t)
        s.open()
        if tls:
            _tls_open(s, rng, name if rng.random() < 0.5 else "AsyncRAT Server", int(rng.integers(700, 1400)))
        s.send(0, msg(int(rng.integers(300, 1500))), 0.002)
        sessions += 1
        drop = min(s.t + float(rng.uniform(60.0, 200.0)), t1 - 1)
        next_ping = s.t + keepalive
        next_push = s.t + push_every * float(rng.uniform(0.3, 1.0))
        while True:
            nxt = min(next_ping, next_push)
            if nxt >= drop:
                break
            if nxt == next_ping:
                s.send(1, msg(int(rng.integers(4, 24))), nxt - s.t)
                s.send(0, msg(int(rng.integers(4, 24))), float(rng.uniform(0.002, 0.05)))
                next_ping += keepalive * float(rng.uniform(0.97, 1.03))
            else:
                size = int(rng.integers(10_000, 80_000))
                s.send(0, msg(size), nxt - s.t)
                pushed += size
                pushes += 1
                if rng.random() < 0.2:  # a command from the operator
                    s.send(1, msg(int(rng.integers(500, 5000))), float(rng.uniform(0.5, 3.0)))
                next_push += push_every * float(rng.uniform(0.7, 1.3))
        if drop >= t1 - 1:
            break
        if rng.random() < 0.5:
            s.reset(1, drop - s.t)
        else:
            s.close(1, drop - s.t)
        t = s.t + float(rng.uniform(3.0, 15.0))
    return _labelled(fr, mark, bot, "c2",
                     f"remote-access session to {name} ({ctrl.ip_text}:{port}, {'TLS' if tls else 'own framing'}): "
                     f"{sessions} session(s), each after a lookup; pings every {keepalive:.0f} s, {pushes} pushes of "
                     f"{pushed / 1e3:,.0f} kB in all")


# exfiltration ----------------------------------------------------------------------------------
B32 = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", np.uint8)
HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
QTYPES = {"NULL": 10, "TXT": 16, "MX": 15, "CNAME": 5, "A": 1}


def _encoded(rng: np.random.Generator, alphabet: np.ndarray, n: int, label: int) -> str:
    chars = bytes(alphabet[rng.integers(0, len(alphabet), n)]).decode()
    return ".".join(chars[i:i + label] for i in range(0, n, label))


def _tunnel_answer(txid: int, query: bytes, qtype: int, rng: np.random.Generator) -> bytes:
    """The tunnel server's answer to ``query``: data in a record of the asked type."""
    q = query[12:]
    data = rng.bytes(int(rng.integers(20, 220)))
    if qtype == 1:
        rdata = rng.bytes(4)
    elif qtype == 16:
        txt = base64.b64encode(data)[:255]
        rdata = bytes([len(txt)]) + txt
    elif qtype in (5, 15):
        target = dns_name(_encoded(rng, B32, int(rng.integers(20, 60)), 60) + ".cdn.example")
        rdata = (b"\x00\x0a" + target) if qtype == 15 else target
    else:
        rdata = data
    rr = b"\xc0\x0c" + struct.pack(">HHIH", qtype, 1, 0, len(rdata)) + rdata
    return struct.pack(">HHHHHH", txid, 0x8580, 1, 1, 0, 0) + q + rr


def dns_tunnel(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
               *, rate: float | None = None) -> list[Label]:
    """Queries at ``rate`` a second (0.5-40, log-uniform) for unique names that carry data under one
    domain: iodine-like (NULL records, base32 labels of up to 63 characters, ``t1.`` zone), dnscat2-
    like (TXT/MX/CNAME, hex, a session tag first) or A/TXT with base32; to the site's resolver, a
    public resolver or the tunnel's own server; each answered with data in the record asked for."""
    bot = env.bot
    mark = fr.mark()
    rate = rate if rate is not None else _log_uniform(rng, 0.5, 40.0)
    tool = str(rng.choice(("iodine", "dnscat", "generic")))
    domain = f"{_word(rng)}{int(rng.integers(1, 99))}.{rng.choice(('xyz', 'top', 'club', 'info', 'net', 'site'))}"
    if tool == "iodine":
        domain = "t1." + domain
        types, alphabet, label = ("NULL",), B32, 63
    elif tool == "dnscat":
        types, alphabet, label = ("TXT", "MX", "CNAME"), HEX, int(rng.choice((30, 63)))
    else:
        types, alphabet, label = ("A", "TXT"), B32, int(rng.integers(30, 64))
    where = str(rng.choice(("site", "site", "public", "server")))
    if where == "site":
        res = env.resolver
    else:
        addr = int.from_bytes(bytes(int(x) for x in str(rng.choice(PUBLIC_RESOLVERS)).split(".")), "big") \
            if where == "public" else int(public_targets(rng, 1)[0])
        res = env.remote(ip_text(addr), addr, rng)
    sport = int(rng.integers(32768, 61000))
    fixed = bool(rng.random() < 0.5)  # one source port for the whole tunnel (iodine), or one per query
    tag = rng.bytes(2).hex()
    t = t0
    n = up = 0
    while t < t1 - 1:
        size = int(rng.integers(40, 180))
        enc = _encoded(rng, alphabet, size, label)
        name = f"{tag}{enc}.{domain}" if tool == "dnscat" and rng.random() < 0.5 else f"{enc}.{domain}"
        if len(name) > 250:
            name = name[len(name) - 250:].lstrip(".")
        qtype = QTYPES[str(rng.choice(types))]
        txid = int(rng.integers(0, 65536))
        query = struct.pack(">HHHHHH", txid, 0x0100, 1, 0, 0, 0) + dns_name(name) + struct.pack(">HH", qtype, 1)
        sp = sport if fixed else int(rng.integers(32768, 61000))
        udp(fr, t, bot, res, sp, 53, query)
        udp(fr, t + res.rtt + float(rng.uniform(0.01, 0.15)), res, bot, 53, sp, _tunnel_answer(txid, query, qtype, rng))
        n += 1
        up += size
        t += float(rng.exponential(1.0 / rate))
    return _labelled(fr, mark, bot, "exfil",
                     f"DNS tunnel ({tool}-like) under {domain} via {'its resolver ' if where == 'site' else ''}{res.ip_text}: "
                     f"{n:,} unique encoded names at {rate:.1f}/s, types {'/'.join(types)}, about {up:,} characters up")


def dns_exfil(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
              *, rate: float | None = None) -> list[Label]:
    """A file sent out one way in DNS queries, DNSExfiltrator-like: bursts of 20-200 A (or AAAA)
    queries at ``rate`` a second (2-50, log-uniform) for ``<sequence>.<chunk>.<file id>.<domain>``,
    the chunk one label of 30-62 hex or base32 characters, every name answered NXDOMAIN (nothing
    comes back), 5-60 s between bursts (the next file); to the site's resolver or a public one."""
    bot = env.bot
    mark = fr.mark()
    rate = rate if rate is not None else _log_uniform(rng, 2.0, 50.0)
    domain = f"{_word(rng)}-{rng.bytes(2).hex()}.{rng.choice(('com', 'net', 'xyz', 'top', 'io'))}"
    alphabet = HEX if rng.random() < 0.5 else B32
    qtype = 28 if rng.random() < 0.3 else 1
    if rng.random() < 0.7:
        res = env.resolver
    else:
        addr = int.from_bytes(bytes(int(x) for x in str(rng.choice(PUBLIC_RESOLVERS)).split(".")), "big")
        res = env.remote(ip_text(addr), addr, rng)
    t = t0
    n = files = 0
    while t < t1 - 1:
        fid = rng.bytes(3).hex()
        files += 1
        for seq in range(int(rng.integers(20, 200))):
            if t >= t1 - 1:
                break
            name = f"{seq}.{_encoded(rng, alphabet, int(rng.integers(30, 63)), 63)}.{fid}.{domain}"
            txid = int(rng.integers(0, 65536))
            q = dns_name(name) + struct.pack(">HH", qtype, 1)
            sport = int(rng.integers(32768, 61000))
            udp(fr, t, bot, res, sport, 53, struct.pack(">HHHHHH", txid, 0x0100, 1, 0, 0, 0) + q)
            udp(fr, t + res.rtt + float(rng.uniform(0.005, 0.1)), res, bot, 53, sport,
                struct.pack(">HHHHHH", txid, 0x8183, 1, 0, 0, 0) + q)
            n += 1
            t += float(rng.exponential(1.0 / rate))
        t += float(rng.uniform(5.0, 60.0))
    return _labelled(fr, mark, bot, "exfil",
                     f"DNS exfiltration (one way) under {domain} via {res.ip_text}: {n:,} {'AAAA' if qtype == 28 else 'A'} "
                     f"queries in bursts at {rate:.1f}/s, {files} file(s), every name NXDOMAIN")


SMTP_PORTS = (587, 587, 25, 2525, 465)


def _ip_check(fr: Frames, rng: np.random.Generator, env: Env, t: float) -> tuple[float, str]:
    """The stealer asks a what-is-my-IP service for its public address; returns when it has it."""
    name, https = IP_ECHO[int(rng.integers(0, len(IP_ECHO)))]
    svc = env.remote(name, int(public_targets(rng, 1)[0]), rng)
    t = resolve(fr, rng, t, env.bot, env.resolver, name, svc.ip) + 0.002
    s = TcpSession(fr, rng, env.bot, svc, 443 if https else 80, t)
    s.open()
    if https:
        _tls_open(s, rng, name, int(rng.integers(2000, 4000)))
        s.send(0, tls_record(rng, int(rng.integers(90, 200))), 0.001)
        s.send(1, tls_record(rng, int(rng.integers(150, 400))), 0.01)
    else:
        s.send(0, f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: Keep-Alive\r\n\r\n".encode(), 0.001)
        s.send(1, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
               + ip_text(int(public_targets(rng, 1)[0])).encode(), 0.01)
    s.close(0, 0.01)
    return s.t, name


def _stolen(rng: np.random.Generator) -> bytes:
    """What a stealer sends: an HTML table of saved passwords and keystrokes, a few kB."""
    rows = "".join(f"<tr><td>https://{_word(rng)}.example.com</td><td>{_word(rng)}{int(rng.integers(1, 99))}</td>"
                   f"<td>{rng.bytes(6).hex()}</td></tr>" for _ in range(int(rng.integers(10, 80))))
    return f"<html><body><table>{rows}</table><pre>{rng.bytes(int(rng.integers(200, 2000))).hex()}</pre></body></html>".encode()


def _smtp(fr: Frames, rng: np.random.Generator, env: Env, t: float, domain: str, user: str) -> tuple[float, int]:
    server = env.remote(f"mail.{domain}", int(public_targets(rng, 1)[0]), rng)
    t = resolve(fr, rng, t, env.bot, env.resolver, f"mail.{domain}", server.ip) + 0.002
    port = int(rng.choice(SMTP_PORTS))
    s = TcpSession(fr, rng, env.bot, server, port, t)
    s.open()
    body = base64.encodebytes(_stolen(rng))
    if port == 465:  # SMTPS: TLS from the first byte, the same dialogue inside
        _tls_open(s, rng, f"mail.{domain}", int(rng.integers(2000, 4000)))
        for size, side in ((40, 1), (30, 0), (200, 1), (60, 0), (30, 1), (40, 0), (30, 1), (60, 0), (30, 1)):
            s.send(side, tls_record(rng, size), 0.02 if side else 0.002)
        s.send(0, tls_record(rng, len(body) + 400), 0.002)
        s.send(1, tls_record(rng, 40), 0.05)
        s.close(0, 0.01)
        return s.t, len(body)
    host = f"{_word(rng).upper()}-PC"
    for cmd, reply in ((None, f"220 mail.{domain} ESMTP Exim 4.95 ready\r\n"),
                       (f"EHLO {host}\r\n", f"250-mail.{domain} Hello {host}\r\n250-SIZE 52428800\r\n250-AUTH PLAIN LOGIN\r\n"
                                            "250 HELP\r\n"),
                       ("AUTH login " + base64.b64encode(user.encode()).decode() + "\r\n", "334 UGFzc3dvcmQ6\r\n"),
                       (base64.b64encode(rng.bytes(9)).decode() + "\r\n", "235 Authentication succeeded\r\n"),
                       (f"MAIL FROM:<{user}>\r\n", "250 OK\r\n"), (f"RCPT TO:<{user}>\r\n", "250 Accepted\r\n"),
                       ("DATA\r\n", "354 Enter message, ending with \".\" on a line by itself\r\n")):
        if cmd is not None:
            s.send(0, cmd.encode(), float(rng.uniform(0.002, 0.02)))
        s.send(1, reply.encode(), 0.01)
    head = (f"MIME-Version: 1.0\r\nFrom: {user}\r\nTo: {user}\r\nSubject: PW_{host}/{_word(rng)}\r\n"
            "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n").encode()
    s.send(0, head + body.replace(b"\n", b"\r\n") + b"\r\n.\r\n", 0.002)
    s.send(1, b"250 OK id=1qXyZ-000abc-12\r\n", 0.05)
    s.send(0, b"QUIT\r\n", 0.002)
    s.send(1, f"221 mail.{domain} closing connection\r\n".encode(), 0.01)
    s.close(1, 0.001)
    return s.t, len(body)


def _ftp(fr: Frames, rng: np.random.Generator, env: Env, t: float, domain: str, user: str) -> tuple[float, int]:
    server = env.remote(f"ftp.{domain}", int(public_targets(rng, 1)[0]), rng)
    t = resolve(fr, rng, t, env.bot, env.resolver, f"ftp.{domain}", server.ip) + 0.002
    c = TcpSession(fr, rng, env.bot, server, 21, t)
    c.open()
    data_port = int(rng.integers(30000, 60000))
    a = server.ip
    pasv = f"({a >> 24},{(a >> 16) & 255},{(a >> 8) & 255},{a & 255},{data_port >> 8},{data_port & 255})"
    fname = f"PW_{_word(rng)}-{_word(rng).upper()}_{int(rng.integers(2020, 2026))}_{rng.bytes(3).hex()}.html"
    for cmd, reply in ((None, "220 (vsFTPd 3.0.3)\r\n"), (f"USER {user}\r\n", "331 Please specify the password.\r\n"),
                       (f"PASS {rng.bytes(5).hex()}\r\n", "230 Login successful.\r\n"),
                       ("TYPE I\r\n", "200 Switching to Binary mode.\r\n"),
                       ("PASV\r\n", f"227 Entering Passive Mode {pasv}.\r\n"),
                       (f"STOR {fname}\r\n", "150 Ok to send data.\r\n")):
        if cmd is not None:
            c.send(0, cmd.encode(), float(rng.uniform(0.002, 0.02)))
        c.send(1, reply.encode(), 0.01)
    body = _stolen(rng)
    d = TcpSession(fr, rng, env.bot, server, data_port, c.t + 0.001)
    d.open()
    d.send(0, body, 0.001)
    d.close(0, 0.001)
    c.t = max(c.t, d.t)
    c.send(1, b"226 Transfer complete.\r\n", 0.01)
    c.send(0, b"QUIT\r\n", 0.002)
    c.send(1, b"221 Goodbye.\r\n", 0.01)
    c.close(1, 0.001)
    return c.t, len(body)


def credential_exfil(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
                     *, mode: str | None = None) -> list[Label]:
    """The stealer checks its public address, then, 0.5-6 s later, sends what it took by ``mode``
    "smtp" (port 587, 25, 2525 or 465) or "ftp" (STOR over a passive data connection), each time
    to the drop account's server; it sends again every 60-600 s (its timer) while the capture lasts."""
    bot = env.bot
    mark = fr.mark()
    mode = mode if mode is not None else str(rng.choice(("smtp", "smtp", "ftp")))
    every = _log_uniform(rng, 60.0, 600.0)
    domain = f"{_word(rng)}{_word(rng)}.{rng.choice(('com', 'net', 'org', 'co', 'info'))}"
    user = f"{_word(rng)}{int(rng.integers(1, 99))}@{domain}"
    t = t0
    sends = sent = 0
    echoes: list[str] = []
    while t < t1 - 10:
        t, echo = _ip_check(fr, rng, env, t)
        echoes.append(echo)
        t, n = (_smtp if mode == "smtp" else _ftp)(fr, rng, env, t + float(rng.uniform(0.5, 6.0)), domain, user)
        sends += 1
        sent += n
        t += every * float(rng.uniform(0.9, 1.1))
    return _labelled(fr, mark, bot, "exfil",
                     f"credential stealer: asked {', '.join(dict.fromkeys(echoes))} for its public address, then sent {sent:,} bytes of stolen "
                     f"data by {mode.upper()} to {user.split('@')[1]} ({sends} time(s), every {every:.0f} s)")


def _upload_region(fr: Frames, rng: np.random.Generator, tls: bool) -> tuple[int, int]:
    if tls:
        return stream_region(fr, rng)
    data = rng.bytes(65_536)
    return fr.blob.add(data + data, dedupe=False)


def _push(fr: Frames, rng: np.random.Generator, s: TcpSession, t: float, size: int, rate_bps: float,
          region: tuple[int, int]) -> float:
    """``size`` bytes from the client of ``s`` at ``rate_bps``, starting at ``t``; returns the end."""
    dur = max(size * 8 / rate_bps, 0.01)
    n, end = bulk(fr, rng, s.hosts[0], s.hosts[1], s.ports[0], s.ports[1], t, t + dur, size * 8 / dur, s.nxt[0],
                  s.nxt[1], region)
    s.nxt[0] = (s.nxt[0] + n) & 0xFFFFFFFF  # whole segments were sent
    s.t = end + s.hosts[1].rtt
    return s.t


def chunked_upload(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
                   *, rate_mbps: float | None = None) -> list[Label]:
    """HTTP(S) POSTs of 0.25-4 MB chunks to a rare host (a name under a cheap TLD, or an address),
    one connection per chunk or all on one kept-alive connection, at ``rate_mbps`` (1.5-3.6 Mbit/s)
    with pauses of 0.1-4 s between chunks; the server answers each with a short 200."""
    bot = env.bot
    mark = fr.mark()
    rate = (rate_mbps if rate_mbps is not None else float(rng.uniform(1.5, 3.6))) * 1e6
    tls = bool(rng.random() < 0.6)
    name = f"{_word(rng)}-{rng.bytes(2).hex()}.{rng.choice(('xyz', 'top', 'cc', 'icu', 'pw'))}"
    host = env.remote(name, int(public_targets(rng, 1)[0]), rng)
    t = t0
    if rng.random() < 0.7:
        t = resolve(fr, rng, t, bot, env.resolver, name, host.ip) + 0.002
    port = 443 if tls else int(rng.choice((80, 8080, 8000)))
    keep = bool(rng.random() < 0.4)
    region = _upload_region(fr, rng, tls)
    chunks = sent = 0
    s: TcpSession | None = None
    while t < t1 - 3:
        size = int(_log_uniform(rng, 250_000, 4_000_000))
        size = min(size, int((t1 - 1 - t) * rate / 8))
        if size < 20_000:
            break
        if s is None or not keep:
            s = TcpSession(fr, rng, bot, host, port, t)
            s.open()
            if tls:
                _tls_open(s, rng, name, int(rng.integers(1500, 4000)))
        head = (f"POST /upload?part={chunks}&id={rng.bytes(4).hex()} HTTP/1.1\r\nHost: {name}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n").encode()
        s.send(0, tls_record(rng, len(head)) if tls else head, 0.001)
        end = _push(fr, rng, s, s.t + 0.001, size, rate, region)
        s.send(1, tls_record(rng, 60) if tls else b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0.01)
        if not keep:
            s.close(0, 0.002)
        chunks += 1
        sent += size
        t = max(end, s.t) + float(rng.uniform(0.1, 4.0))
    return _labelled(fr, mark, bot, "exfil",
                     f"chunked {'HTTPS' if tls else 'HTTP'} upload to {name} ({host.ip_text}:{port}): {chunks} POSTs, "
                     f"{sent / 1e6:,.1f} MB at {rate / 1e6:.1f} Mbit/s ({'one kept-alive connection' if keep else 'a connection each'})")


def slow_exfil(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
               *, rate_kbps: float | None = None) -> list[Label]:
    """After a sleep of 150-240 s from its start (time-based sandbox evasion: the implant waits
    before it acts; shortened when the capture is short), a slow upload to a new internet address
    at ``rate_kbps`` (24-480 kbit/s, log-uniform) in TLS sessions of 60-180 s each, one after the
    other, until the capture ends: hundreds of times a device that uploads next to nothing, under
    the rate of a fast surge (5 MB a minute)."""
    bot = env.bot
    mark = fr.mark()
    rate = (rate_kbps if rate_kbps is not None else _log_uniform(rng, 24.0, 480.0)) * 1e3
    wait = min(float(rng.uniform(150.0, 240.0)), max(0.0, t1 - t0 - 330.0))
    addr = int(public_targets(rng, 1)[0])
    host = env.remote(ip_text(addr), addr, rng)
    region = stream_region(fr, rng)
    t = t0 + wait
    sent = sessions = 0
    while t < t1 - 5:
        s = TcpSession(fr, rng, bot, host, 443, t)
        s.open()
        _tls_open(s, rng, f"{_word(rng)}.{rng.choice(('xyz', 'top', 'info'))}", int(rng.integers(1500, 4000)))
        stop = min(s.t + float(rng.uniform(60.0, 180.0)), t1 - 1)
        size = int((stop - s.t) * rate / 8)
        if size > 1448:
            _push(fr, rng, s, s.t + 0.01, size, rate, region)
            sent += size
        s.close(0, 0.01)
        sessions += 1
        t = s.t + float(rng.uniform(0.5, 5.0))
    return _labelled(fr, mark, bot, "exfil",
                     f"slow upload to {host.ip_text}:443 after a {wait:.0f} s sleep: {sent / 1e6:,.2f} MB at "
                     f"{rate / 1e3:.0f} kbit/s in {sessions} TLS session(s)")

#: the scenario name of each family (iotwatch synth NAME)
FAMILIES = {"tlsbeacon": tls_beacon, "postbeacon": post_beacon, "ratsession": rat_session, "dnstunnel": dns_tunnel,
            "dnsexfil": dns_exfil,
            "credexfil": credential_exfil, "chunkupload": chunked_upload, "slowexfil": slow_exfil}
