"""Behaviours that do not look like Mirai's (issue 10's missed classes): the detector's rules were
not written on them, and the tests use seeds no model saw.

* :func:`slow_scan` — an IoT bot that scans with ordinary ``connect()`` calls: about one new
  random public address a second on telnet, web and IoT service ports, SYNs retransmitted by the
  bot's own stack, mostly unanswered, no seq = address trick.
* :func:`udp_port_scan` — a vertical UDP scan of one host: hundreds of ports in seconds, closed
  ones answered by ICMP port unreachable.
* :func:`dead_controller` — a bot whose controller is gone: connection attempts to the same
  address and port repeated like clockwork, never answered (or refused).
* :func:`icmp_tunnel` — ICMP echo requests and replies that carry whole IP packets to and from a
  relay on the internet.
* :func:`report_channel` — a remote-access trojan's status beacon: one TCP session held open to
  an internet controller on an odd port, the bot pushing a short status message on a fixed beat
  (sometimes in two parts, the second late), the controller acknowledging and never answering.
* :func:`local_controller` — an agent whose controller sits on the site's own network: it fetches
  its program from the controller over HTTP, then calls back with jitter: HTTP POSTs on one
  kept-alive connection, a new POST connection each time, or a raw TCP session in which the
  controller polls it on a beat and it answers.

Each returns the labels of what it generated (one row for the misbehaving host).
"""

from __future__ import annotations

import numpy as np

from .labels import Label
from .mirai import Env, _finish, public_targets
from .sessions import Host, TcpSession
from .wire import ACK, FIN, RST, SYN, TCP, UDP, Frames, ip_text, mac_text

#: ports IoT bots knock on besides telnet: web admin pages, TR-069, Huawei/Realtek UPnP, ADB
IOT_PORTS = (23, 2323, 80, 8080, 81, 8081, 7547, 37215, 52869, 5555, 8443)
#: Linux connect(): the SYN and its retransmissions (seconds after the first)
SYN_RETRIES = (0.0, 1.0, 3.0)


def _labelled(fr: Frames, mark: tuple[int, int], bot: Host, behaviour: str, note: str) -> list[Label]:
    """The behaviour's one label for ``bot``, spanning its frames since ``mark``."""
    return [_finish(fr, mark, Label(bot.ip_text, mac_text(bot.mac), bot.device_type, behaviour, note), bot)]


def slow_scan(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
              *, rate: float | None = None) -> list[Label]:
    bot = env.bot
    mark = fr.mark()
    rate = rate if rate is not None else float(rng.uniform(0.6, 1.5))
    n = max(10, int((t1 - t0) * rate * 1.2))
    ts = t0 + np.cumsum(rng.exponential(1 / rate, n))
    ts = ts[ts < t1 - 3]
    n = len(ts)
    dst = public_targets(rng, n)
    dport = rng.choice(np.array(IOT_PORTS), n)
    sport = rng.integers(32768, 61000, n)
    seq = rng.integers(0, 1 << 32, n)
    fate = rng.random(n)
    refused = fate < 0.08
    answered = (fate >= 0.08) & (fate < 0.11)
    silent = ~(refused | answered)
    rtt = rng.uniform(0.03, 0.3, n)
    common = {"smac": bot.mac, "dmac": env.gateway_mac, "src": bot.ip, "proto": TCP, "ttl": 64, "win": 64240}
    for dt in SYN_RETRIES:  # unanswered connects: the SYN and the stack's retransmissions
        fr.add_many(ts[silent] + dt, dst=dst[silent], sport=sport[silent], dport=dport[silent], seq=seq[silent],
                    flags=SYN, ipid=rng.integers(0, 65536, int(silent.sum())), **common)
    both = refused | answered
    fr.add_many(ts[both], dst=dst[both], sport=sport[both], dport=dport[both], seq=seq[both], flags=SYN,
                ipid=rng.integers(0, 65536, int(both.sum())), **common)
    back = {"smac": env.gateway_mac, "dmac": bot.mac, "dst": bot.ip, "proto": TCP}
    r = refused
    fr.add_many(ts[r] + rtt[r], src=dst[r], sport=dport[r], dport=sport[r], seq=0, ack=(seq[r] + 1) & 0xFFFFFFFF,
                flags=RST | ACK, ttl=rng.choice((47, 51, 113, 241), int(r.sum())), **back)
    a = answered
    srv_seq = rng.integers(0, 1 << 32, n)
    fr.add_many(ts[a] + rtt[a], src=dst[a], sport=dport[a], dport=sport[a], seq=srv_seq[a],
                ack=(seq[a] + 1) & 0xFFFFFFFF, flags=SYN | ACK, ttl=51, win=29200, **back)
    # the bot completes the handshake, finds nothing it wants, and closes (no payload)
    fr.add_many(ts[a] + rtt[a] + 0.0002, dst=dst[a], sport=sport[a], dport=dport[a], seq=(seq[a] + 1) & 0xFFFFFFFF,
                ack=(srv_seq[a] + 1) & 0xFFFFFFFF, flags=ACK, **common)
    fr.add_many(ts[a] + rtt[a] + 0.5, dst=dst[a], sport=sport[a], dport=dport[a], seq=(seq[a] + 1) & 0xFFFFFFFF,
                ack=(srv_seq[a] + 1) & 0xFFFFFFFF, flags=FIN | ACK, **common)
    fr.add_many(ts[a] + 2 * rtt[a] + 0.5, src=dst[a], sport=dport[a], dport=sport[a],
                seq=(srv_seq[a] + 1) & 0xFFFFFFFF, ack=(seq[a] + 2) & 0xFFFFFFFF, flags=FIN | ACK, ttl=51, **back)
    return _labelled(fr, mark, bot, "scan",
                     f"slow IoT-bot scan with connect(): {n} random public addresses at {rate:.2f}/s on ports "
                     f"{', '.join(str(p) for p in sorted(set(dport.tolist())))}; SYNs retransmitted at +1 s and +3 s; "
                     f"{int(r.sum())} refused, {int(a.sum())} answered")


def _icmp_frame(smac: int, dmac: int, src: int, dst: int, icmp: bytes, ttl: int = 64) -> bytes:
    from scapy.layers.inet import IP
    from scapy.layers.l2 import Ether

    return bytes(Ether(src=mac_text(smac), dst=mac_text(dmac)) / IP(src=ip_text(src), dst=ip_text(dst), ttl=ttl,
                                                                     proto=1) / icmp)


def udp_port_scan(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
                  *, ports: int | None = None) -> list[Label]:
    """Hundreds of UDP ports of one host in a few seconds; the target (the site's resolver, or an
    internet host) answers closed ports with ICMP port unreachable, a few not at all."""
    from scapy.layers.inet import ICMP, IPerror, UDPerror

    bot = env.bot
    mark = fr.mark()
    n = ports if ports is not None else int(rng.integers(200, 1000))
    local = bool(rng.random() < 0.5)
    target = env.resolver if local else env.remote("target", int(public_targets(rng, 1)[0]), rng)
    dports = np.sort(rng.choice(np.arange(1, 65536), n, replace=False)) if rng.random() < 0.5 else \
        rng.permutation(np.arange(1, n + 1))
    rate = float(rng.uniform(100, 500))
    ts = t0 + np.arange(n) / rate + rng.uniform(0, 0.002, n)
    ts = ts[ts < t1]
    n = len(ts)
    sport = int(rng.integers(40000, 60000))
    fr.add_many(ts, smac=bot.mac, dmac=target.mac, src=bot.ip, dst=target.ip, proto=UDP, ttl=64,
                ipid=rng.integers(0, 65536, n), sport=sport, dport=dports[:n], plen=0)
    # closed ports: ICMP port unreachable, rate-limited by the target (about 1 in 2 gets one)
    for i in np.flatnonzero(rng.random(n) < 0.5)[:300]:
        quote = IPerror(src=bot.ip_text, dst=target.ip_text, proto=17, ttl=64) / UDPerror(sport=sport, dport=int(dports[i]))
        frame = _icmp_frame(target.mac, bot.mac, target.ip, bot.ip, bytes(ICMP(type=3, code=3) / quote), target.ttl)
        fr.add_raw(round((float(ts[i]) + target.rtt) * 1e6), frame)
    return _labelled(fr, mark, bot, "scan",
                     f"vertical UDP port scan of {target.ip_text} ({'local' if local else 'internet'}): {n} ports at "
                     f"{rate:.0f}/s, closed ports answered by ICMP port unreachable")


def dead_controller(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
                    *, period: float | None = None) -> list[Label]:
    """Connection attempts to a controller that is gone, every ``period`` seconds like clockwork:
    each a connect() whose SYN is retransmitted, never answered (or refused, seeded)."""
    bot = env.bot
    mark = fr.mark()
    period = period if period is not None else float(rng.uniform(5, 60))
    ctrl = int(public_targets(rng, 1)[0])
    port = int(rng.choice((23, 443, 1312, 6667, 7547, 8080, 48101)))
    refused = bool(rng.random() < 0.4)
    ts = np.arange(t0, t1 - 3, period) + rng.normal(0, 0.02 * period, len(np.arange(t0, t1 - 3, period)))
    ts = np.sort(ts[ts < t1 - 3])
    n = len(ts)
    sport = rng.integers(32768, 61000, n)
    seq = rng.integers(0, 1 << 32, n)
    common = {"smac": bot.mac, "dmac": env.gateway_mac, "src": bot.ip, "dst": ctrl, "dport": port, "proto": TCP,
              "flags": SYN, "win": 64240}
    for dt in (SYN_RETRIES[:1] if refused else SYN_RETRIES):
        fr.add_many(ts + dt, sport=sport, seq=seq, ipid=rng.integers(0, 65536, n), **common)
    if refused:
        fr.add_many(ts + 0.08, smac=env.gateway_mac, dmac=bot.mac, src=ctrl, dst=bot.ip, sport=port, dport=sport,
                    proto=TCP, seq=0, ack=(seq + 1) & 0xFFFFFFFF, flags=RST | ACK, ttl=51)
    return _labelled(fr, mark, bot, "c2",
                     f"dead controller {ip_text(ctrl)}:{port}: {n} connection attempts every {period:.1f} s "
                     f"({'refused' if refused else 'unanswered, SYN retransmitted'})")


def icmp_tunnel(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
                *, rate: float | None = None) -> list[Label]:
    """Echo requests to a relay whose payloads are whole IP packets (a TCP session tunnelled out),
    and echo replies carrying the answers."""
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.inet import TCP as ScapyTCP

    bot = env.bot
    relay = env.remote("relay", int(public_targets(rng, 1)[0]), rng)
    inner_dst = ip_text(int(public_targets(rng, 1)[0]))
    rate = rate if rate is not None else float(rng.uniform(5, 40))
    ident = int(rng.integers(1, 65536))
    t, k = t0, 0
    sent = 0
    last = t0
    while t < t1:
        size = int(rng.choice((40, 52, 1400), p=(0.2, 0.2, 0.6))) if rng.random() < 0.9 else int(rng.integers(60, 1400))
        inner = bytes(IP(src="10.8.0.2", dst=inner_dst, id=k & 0xFFFF) / ScapyTCP(sport=51000, dport=443, flags="PA",
                                                                                  seq=k * 1400)
                      / rng.bytes(max(0, size - 40)))
        req = bytes(ICMP(type=8, id=ident, seq=k & 0xFFFF) / inner)
        fr.add_raw(round(t * 1e6), _icmp_frame(bot.mac, env.gateway_mac, bot.ip, relay.ip, req))
        rep_inner = bytes(IP(src=inner_dst, dst="10.8.0.2", id=(k + 7) & 0xFFFF) / ScapyTCP(sport=443, dport=51000,
                                                                                              flags="A", ack=k * 1400)
                          / rng.bytes(int(rng.integers(0, 200))))
        rep = bytes(ICMP(type=0, id=ident, seq=k & 0xFFFF) / rep_inner)
        fr.add_raw(round((t + relay.rtt) * 1e6), _icmp_frame(env.gateway_mac, bot.mac, relay.ip, bot.ip, rep, relay.ttl))
        sent += len(inner)
        last = t
        k += 1
        t += float(rng.exponential(1 / rate))
    label = Label(bot.ip_text, mac_text(bot.mac), bot.device_type, "exfil",
                  f"ICMP echo tunnel to {relay.ip_text}: {k} echo requests at {rate:.0f}/s carrying whole IP packets "
                  f"({sent:,} bytes out)")
    label.first_ts, label.end_ts = t0, last  # raw frames: Frames.span() sees the columnar packets only
    return [label]


#: ports a controller listens on that no everyday service uses (RATs pick their own)
ODD_PORTS = (1177, 1604, 2404, 3360, 4444, 4782, 5552, 6606, 7707, 8219, 8808, 9001, 10134, 12345, 31337, 54984)


def report_channel(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
                   *, period: float | None = None) -> list[Label]:
    """One TCP session to an internet controller on an odd port; every ``period`` s (jitter of a
    few %) the bot pushes a status message (a short tag and a body of 100-300 bytes, sometimes
    the body a second or more after the tag), now and then a beat late or skipped; the controller
    only acknowledges."""
    bot = env.bot
    mark = fr.mark()
    period = period if period is not None else float(rng.uniform(2.0, 20.0))
    ctrl = env.remote("controller", int(public_targets(rng, 1)[0]), rng)
    port = int(rng.choice(ODD_PORTS))
    s = TcpSession(fr, rng, bot, ctrl, port, t0)
    s.open()
    ident = rng.bytes(8).hex().upper()
    t = s.t + float(rng.uniform(0.2, 1.0))
    beats = 0
    while t < t1 - 1:
        if rng.random() > 0.04:  # a beat now and then skipped
            body = f"ping|{ident}|{bot.ip_text}|idle {int(rng.integers(0, 9999))}|".encode() + rng.bytes(
                int(rng.integers(80, 260))).hex().encode()[: int(rng.integers(80, 260))]
            s.send(0, f"{len(body)}\r\n".encode(), t - s.t if t > s.t else 0.0)
            late = float(rng.uniform(1.0, 0.5 * period)) if rng.random() < 0.15 and period > 3 else 0.1
            s.send(0, body, late)
            beats += 1
        t += period * (1.0 + float(rng.normal(0, 0.01)))
    return _labelled(fr, mark, bot, "c2",
                     f"report channel: one TCP session to {ctrl.ip_text}:{port}, status pushed every {period:.1f} s "
                     f"({beats} messages), the controller only acknowledges")


def _program(rng: np.random.Generator, script: bool) -> tuple[bytes, bytes]:
    """An HTTP response head and body serving an agent: a script as a named attachment, or an
    executable (ELF) typed as bytes."""
    if script:
        body = b"import json, socket, subprocess, time\n" + rng.bytes(int(rng.integers(2000, 6000))).hex().encode()
        name = str(rng.choice(("agent.py", "update.sh", "svc.ps1")))
    else:
        body = b"\x7fELF\x02\x01\x01" + rng.bytes(int(rng.integers(200_000, 1_500_000)))
        name = str(rng.choice(("agent-linux", "svchost", "upd")))
    head = (f"HTTP/1.1 200 OK\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n"
            f"Content-Length: {len(body)}\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    return head, body


def local_controller(fr: Frames, rng: np.random.Generator, env: Env, t0: float, t1: float,
                     *, mode: str | None = None, period: float | None = None) -> list[Label]:
    """A controller on the bot's own subnet serves it a program over HTTP (port 80 or an odd web
    port), then the agent calls back every ``period`` s with up to ±25 % jitter: ``mode`` "keepalive"
    (HTTP POSTs on one kept-alive connection), "connections" (a new POST connection each time) or
    "session" (a raw TCP session on another port in which the controller polls the agent on a beat
    and the agent answers)."""
    bot = env.bot
    mark = fr.mark()
    mode = mode if mode is not None else str(rng.choice(("keepalive", "connections", "session")))
    period = period if period is not None else float(rng.uniform(10.0, 45.0))
    host = int(rng.integers(2, 250))
    while host in (bot.ip & 0xFF, env.resolver.ip & 0xFF):
        host = int(rng.integers(2, 250))
    ctrl = Host("controller", 0x020000000000 | int(rng.integers(0, 1 << 40)), (bot.ip & ~0xFF) | host, "computer",
                64, 0.0003)
    web = int(rng.choice((80, 8000, 8080, 8888)))
    # the program
    head, body = _program(rng, script=bool(rng.random() < 0.4))
    dl = TcpSession(fr, rng, bot, ctrl, web, t0)
    dl.open()
    dl.send(0, f"POST /file/download HTTP/1.1\r\nHost: {ctrl.ip_text}:{web}\r\nUser-Agent: curl/7.68.0\r\n"
               f"Content-Length: 0\r\n\r\n".encode(), 0.001)
    dl.send(1, head, 0.002)
    dl.send(1, body, 0.0005)
    dl.close(0, 0.01)
    t = dl.t + float(rng.uniform(1.0, 8.0))
    calls = 0

    def post(sess: TcpSession, at: float) -> None:
        req = (f"POST /beacon HTTP/1.1\r\nHost: {ctrl.ip_text}:{web}\r\nContent-Type: application/json\r\n\r\n"
               f'{{"paw":"{rng.bytes(4).hex()}","results":[]}}').encode()
        sess.send(0, req, max(at - sess.t, 0.0))
        sess.send(1, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + rng.bytes(
            int(rng.integers(40, 400))).hex().encode(), 0.003)

    if mode == "keepalive":
        s = TcpSession(fr, rng, bot, ctrl, web, t)
        s.open()
        while t < t1 - 2:
            post(s, t)
            calls += 1
            t += period * float(rng.uniform(0.75, 1.25))
    elif mode == "connections":
        while t < t1 - 2:
            s = TcpSession(fr, rng, bot, ctrl, web, t)
            s.open()
            post(s, s.t + 0.001)
            s.close(0, 0.01)
            calls += 1
            t += period * float(rng.uniform(0.75, 1.25))
    else:
        port = int(rng.choice(ODD_PORTS))
        s = TcpSession(fr, rng, bot, ctrl, port, t)
        s.open()
        s.send(0, b'{"platform":"linux","executors":"sh"}' + rng.bytes(60).hex().encode(), 0.002)
        beat = period * float(rng.uniform(0.4, 0.8))  # the controller's poll keeps its own clock
        t = s.t + beat
        while t < t1 - 2:
            s.send(1, b"\x01", t - s.t)
            if rng.random() < 0.5:  # a task now and then; otherwise the poll's answer is tiny
                s.send(1, rng.bytes(int(rng.integers(10, 120))).hex().encode(), 0.001)
                s.send(0, rng.bytes(int(rng.integers(40, 300))).hex().encode(), float(rng.uniform(0.005, 0.05)))
            else:
                s.send(0, b"\x01", float(rng.uniform(0.001, 0.01)))
            calls += 1
            t += beat * (1.0 + float(rng.normal(0, 0.005)))
    return _labelled(fr, mark, bot, "c2",
                     f"local controller {ctrl.ip_text}: program ({len(body):,} bytes) fetched over HTTP :{web}, then "
                     f"{calls} call-backs ({mode}) every ~{period:.0f} s")
