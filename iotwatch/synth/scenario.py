"""Named scenarios → FILE.pcap + FILE.labels.tsv (see docs/scenarios.md).

A scenario is a benign site (:mod:`.site`) plus compromise behaviours (:mod:`.mirai`) on one of its
devices, after a quiet baseline. Every choice comes from ``numpy.random.default_rng(seed)``, so a
seed always gives the same bytes. :func:`inject` puts the behaviours on a device of a real capture
instead.
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError
from ..vocab import CATEGORIES
from . import access, covert, evasive, mirai, site
from .labels import Label, labels_path, write_labels
from .mirai import VECTORS, Env
from .sessions import Host
from .wire import Frames, ip, ip_text, mac, mac_text

# 2025-08-04 12:50 JST: a weekday just before 13:00, when the incident's recorder started scanning
EPOCH = 1_754_279_400.0

SCENARIOS: dict[str, str] = {
    "site": "benign small site only (cameras, recorder, printers, PCs, phones, router)",
    "night": "the benign site overnight: cameras idle (cloud check-ins, no video), the recorder's heartbeats "
             "and uploads, everyone else ARP only; light enough for days",
    "hospital": "the incident: after a quiet baseline the recorder scans for telnet, brute-forces the "
                "hosts that answer, keeps a C2 connection and its cloud upload fills the uplink",
    "scan": "a camera runs the Mirai telnet scanner",
    "bruteforce": "a camera logs in by telnet with default credentials to a few internet hosts",
    "flood": "a camera takes part in a DDoS with one attack vector (--vector)",
    "exfil": "the recorder's upload to its cloud jumps until it fills the uplink (--uplink-mbps)",
    "c2": "the recorder resolves a C2 name and keeps a TCP connection to it with keep-alives",
    "slowscan": "a camera scans with connect(): about one random public address a second on telnet, web "
                "and IoT ports, mostly unanswered (no Mirai signature)",
    "udpscan": "a camera scans hundreds of UDP ports of one host in seconds",
    "deadc2": "a camera tries to reach a controller that is gone, like clockwork",
    "icmptunnel": "a camera tunnels a TCP session through ICMP echo to an internet relay",
    "reportc2": "a camera holds one session to an internet controller on an odd port and pushes its status "
                "on a fixed beat; the controller never answers",
    "localc2": "a camera fetches a program from a controller on the site's own network, then calls it back "
               "with jitter (HTTP POSTs, new connections, or a session the controller polls)",
    "sweep": "a camera discovers hosts: an ARP or ping sweep of its /24, or an ICMP echo sweep of a public range",
    "portscan": "a camera scans the ports of one host (nmap SYN, connect, FIN, NULL or Xmas; local or internet)",
    "nmapudp": "a camera scans the UDP ports of one host like nmap -sU (known payloads, ICMP unreachable answers)",
    "netscan": "a camera connect()s to a few service ports on every address of its /24",
    "sshbrute": "a camera guesses SSH passwords on neighbours or internet hosts (a new session every few tries)",
    "ftpbrute": "a camera guesses FTP logins (USER/PASS, 530) on a neighbour or internet hosts",
    "icmpflood": "a camera floods an internet host with ICMP echo requests",
    "flagflood": "a camera floods a service port with TCP RST or FIN segments of no connection",
    "slowhttp": "a camera holds hundreds of connections to one web server open (slowloris, slow POST)",
    "dnstorture": "a camera sends random-subdomain queries to a public resolver or the domain's own name server",
    "tlsbeacon": "a camera opens a new TLS connection to a dynamic-DNS host every few seconds with jitter",
    "postbeacon": "a camera checks in with an HTTP POST to a rare internet address on an odd port, a new connection each time",
    "ratsession": "a camera runs a remote-access trojan: dynamic-DNS lookup, a session on the RAT port with pings, pushes of tens of kB, reconnects",
    "dnstunnel": "a camera tunnels data through DNS: many unique encoded names under one domain (NULL/TXT/MX/CNAME/A)",
    "dnsexfil": "a camera sends a file out one way in bursts of DNS queries for encoded chunks (every answer NXDOMAIN)",
    "credexfil": "a camera's stealer checks its public address, then sends stolen credentials by SMTP or FTP",
    "chunkupload": "a camera uploads data in HTTP(S) POST chunks of megabytes to a rare host",
    "slowexfil": "a camera sleeps, then uploads slowly for minutes to a new internet address (hundreds of times its normal)",
    "after": "the hospital site after the fix: the recorder is isolated and silent, internet hosts keep "
             "trying to log in to its address (use the hospital's seed for the same site)",
}
DEFAULT_DURATION = {"site": 300.0, "hospital": 600.0, "after": 300.0, "night": 86_400.0}
DEFAULT_DURATION["slowexfil"] = 720.0  # the slow surge is judged after 3 quiet windows of its own and lasts 3 more
# `after` starts at 13:12 JST, when the incident's recorder was switched off and the firewall
# then blocked 1,733 login attempts against it in a burst
AFTER_OFFSET_S = 22 * 60.0
#: scenarios of behaviours unlike Mirai's (:mod:`.evasive`), by name
EVASIVE = {"slowscan": evasive.slow_scan, "udpscan": evasive.udp_port_scan, "deadc2": evasive.dead_controller,
           "icmptunnel": evasive.icmp_tunnel, "reportc2": evasive.report_channel,
           "localc2": evasive.local_controller,
           "sweep": access.sweep,
           "portscan": access.port_scan,
           "nmapudp": access.udp_scan,
           "netscan": access.net_scan,
           "sshbrute": access.ssh_brute,
           "ftpbrute": access.ftp_brute,
           "icmpflood": access.icmp_flood,
           "flagflood": access.flag_flood,
           "slowhttp": access.slow_http,
           "dnstorture": access.dns_torture,
           }
EVASIVE.update(covert.FAMILIES)  # C2 and exfiltration as commodity malware does them (:mod:`.covert`)
BEHAVIOURS = (*CATEGORIES, "hospital", *EVASIVE)


@dataclass(frozen=True, slots=True)
class Options:
    """What to generate. ``quiet``: seconds of baseline before the first bad packet (seeded when None)."""

    scenario: str
    seed: int = 1
    duration: float | None = None
    start: float = EPOCH
    uplink_mbps: float = 10.0
    vector: str = "udp"
    quiet: float | None = None

    def check(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r} (one of {', '.join(SCENARIOS)})")
        if self.vector not in VECTORS:
            raise ValueError(f"unknown vector {self.vector!r} (one of {', '.join(VECTORS)})")
        if self.duration is not None and self.duration < 20:
            raise ValueError("duration must be at least 20 s")
        if self.uplink_mbps <= 0:
            raise ValueError("uplink must be positive")
        if self.quiet is not None and self.quiet < 0:
            raise ValueError("quiet must not be negative")


@dataclass(frozen=True, slots=True)
class Result:
    pcap: Path
    labels_file: Path
    packets: int
    labels: list[Label]
    elapsed_s: float


def _quiet(opts: Options, rng: np.random.Generator, duration: float) -> float:
    if opts.quiet is not None:
        return min(opts.quiet, duration - 10)
    if opts.scenario == "hospital":
        return min(float(rng.uniform(240, 330)), duration * 0.5)
    return min(float(rng.uniform(60, 120)), duration * 0.4)


def behave(fr: Frames, rng: np.random.Generator, opts: Options, env: Env, cloud: Host, t_bad: float,
           t1: float, baseline_bps: float | None) -> list[Label]:
    """Add the behaviours of ``opts.scenario`` for ``env.bot`` from ``t_bad`` to ``t1``."""
    uplink = opts.uplink_mbps * 1e6
    kind = opts.scenario
    if kind == "scan":
        labels, _ = mirai.scan(fr, rng, env, t_bad, t1)
        return labels
    if kind == "bruteforce":
        targets = [env.remote("telnet", int(a), rng) for a in mirai.public_targets(rng, int(rng.integers(3, 6)))]
        return mirai.bruteforce(fr, rng, env, targets, t_bad, t1)
    if kind == "flood":
        return mirai.flood(fr, rng, env, opts.vector, t_bad, t1, uplink_bps=uplink)
    if kind == "exfil":
        return mirai.exfil(fr, rng, env, cloud, t_bad, t1, uplink, baseline_bps=baseline_bps)
    if kind == "c2":
        return mirai.c2(fr, rng, env, t_bad, t1)
    if kind in access.UPLINK_BOUND:
        return EVASIVE[kind](fr, rng, env, t_bad, t1, uplink_bps=uplink)
    if kind in EVASIVE:
        return EVASIVE[kind](fr, rng, env, t_bad, t1)
    # hospital: C2 first, the scanner a few seconds later, brute force on the hosts that answer,
    # the upload surge after 20-60 s (less in short captures)
    labels = mirai.c2(fr, rng, env, t_bad, t1)
    t_scan = t_bad + float(rng.uniform(1, 5))
    scan_labels, answered = mirai.scan(fr, rng, env, t_scan, t1)
    labels += scan_labels
    if answered:
        labels += mirai.bruteforce(fr, rng, env, answered, t_scan + float(rng.uniform(2, 6)), t1)
    t_up = t_bad + min(float(rng.uniform(20, 60)), (t1 - t_bad) * 0.3)
    labels += mirai.exfil(fr, rng, env, cloud, t_up, t1, uplink, baseline_bps=baseline_bps)
    return labels


def generate(opts: Options, out: Path) -> Result:
    """Write the scenario ``opts`` to ``out`` and its labels beside it."""
    opts.check()
    t_start = time.perf_counter()
    rng = np.random.default_rng(opts.seed)
    duration = opts.duration or DEFAULT_DURATION.get(opts.scenario, 300.0)
    the_site = site.make_site(rng)
    fr = Frames()
    t0 = opts.start + (AFTER_OFFSET_S if opts.scenario == "after" else 0.0)
    t1 = t0 + duration
    labels = (site.night if opts.scenario == "night" else site.benign)(fr, rng, the_site, t0, t1)
    if opts.scenario == "after":
        rec = the_site.recorder
        fr.drop_host(rec.mac)
        knock = mirai.knocking(fr, rng, rec, the_site.router.mac, t0 + float(rng.uniform(1, 10)), t1)
        labels = [lb for lb in labels if lb.host_ip != rec.ip_text] + [knock]
    elif opts.scenario not in ("site", "night"):
        on_recorder = opts.scenario in ("hospital", "exfil", "c2")
        bot = the_site.recorder if on_recorder else the_site.cameras[int(rng.integers(0, len(the_site.cameras)))]
        env = Env(bot, the_site.router.mac, the_site.router)
        t_bad = t0 + _quiet(opts, rng, duration)
        sent = fr.sent_bytes(bot.mac, t0, t_bad, (the_site.net, 0xFFFFFF00))
        baseline = sent * 8 / (t_bad - t0) if sent else None
        bad = behave(fr, rng, opts, env, the_site.cloud, t_bad, t1, baseline)
        labels = [lb for lb in labels if lb.host_ip != bot.ip_text] + bad
    return _write(fr, out, labels, t_start)


def _write(fr: Frames, out: Path, labels: list[Label], t_start: float) -> Result:
    lpath = labels_path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".part")
        n = fr.write(tmp)
        tmp.replace(out)
        write_labels(lpath, out.name, labels)
    except OSError as e:
        raise OutputError(f"{out}: cannot write: {e.strerror or e}") from None
    return Result(out, lpath, n, labels, time.perf_counter() - t_start)


# --------------------------------------------------------------------------------------------
# Injection into a real capture
# --------------------------------------------------------------------------------------------


def _private(addr: int) -> bool:
    a = ipaddress.IPv4Address(addr)
    return a.is_private or a.is_multicast or a.is_link_local or a.is_unspecified or addr == 0xFFFFFFFF


def _read_ethernet(path: Path) -> list[tuple[int, bytes]]:
    """(epoch µs, frame) of every frame of a pcap/pcapng with Ethernet link type."""
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapNgReader, RawPcapReader

    frames: list[tuple[int, bytes]] = []
    try:
        reader = RawPcapReader(str(path))
    except (OSError, Scapy_Exception) as e:
        raise InputError(path, f"cannot read as pcap/pcapng: {e}") from None
    with reader:
        if not isinstance(reader, RawPcapNgReader) and reader.linktype != 1:
            raise InputError(path, f"link type {reader.linktype} is not Ethernet: --inject needs Ethernet frames")
        for raw, meta in reader:
            if isinstance(reader, RawPcapNgReader):
                if meta.linktype != 1:
                    raise InputError(path, f"an interface has link type {meta.linktype}: --inject needs Ethernet")
                ticks = (meta.tshigh << 32) | meta.tslow
                t_us = ticks * 1_000_000 // meta.tsresol
            else:
                t_us = meta.sec * 1_000_000 + meta.usec
            frames.append((t_us, bytes(raw)))
    if not frames:
        raise InputError(path, "holds no packets")
    return frames


def _ipv4(frame: bytes) -> tuple[int, int, int, int, int, int] | None:
    """(src mac, dst mac, src ip, dst ip, ip proto, dst port) of an untagged IPv4 frame."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    dport = int.from_bytes(frame[14 + ihl + 2:14 + ihl + 4], "big") if len(frame) >= 18 + ihl else 0
    return (int.from_bytes(frame[6:12], "big"), int.from_bytes(frame[0:6], "big"),
            int.from_bytes(frame[26:30], "big"), int.from_bytes(frame[30:34], "big"), frame[23], dport)


def find_host(frames: list[tuple[int, bytes]], host: str, path: Path) -> tuple[Host, int, Host]:
    """The device ``host`` (MAC or IPv4) of a capture, its gateway's MAC and its DNS resolver."""
    heads = [h for _, f in frames if (h := _ipv4(f)) is not None]
    try:
        if ":" in host:
            want_mac = mac(host)
            ips = Counter(h[2] for h in heads if h[0] == want_mac and _private(h[2]) and h[2] != 0)
            if not ips:
                raise InputError(path, f"no IPv4 packet sent by {host}")
            host_ip = ips.most_common(1)[0][0]
        else:
            host_ip = ip(host)
            macs = Counter(h[0] for h in heads if h[2] == host_ip)
            if not macs:
                raise InputError(path, f"no IPv4 packet sent from {host}")
            want_mac = macs.most_common(1)[0][0]
    except ValueError:
        raise InputError(path, f"--host {host!r} is neither a MAC address nor an IPv4 address") from None
    gw = Counter(h[1] for h in heads if h[0] == want_mac and not _private(h[3]))
    if not gw:
        gw = Counter(h[0] for h in heads if not _private(h[2]))
    if not gw:
        raise InputError(path, "cannot tell the gateway: no packet to or from an internet address")
    gw_mac = gw.most_common(1)[0][0]
    dns = Counter(h[3] for h in heads if h[0] == want_mac and h[4] == 17 and h[5] == 53)
    gw_ips = Counter(h[2] for h in heads if h[0] == gw_mac and _private(h[2]) and h[2] != 0)
    if dns:
        res_ip = dns.most_common(1)[0][0]
        res_mac = gw_mac if not _private(res_ip) else Counter(
            h[0] for h in heads if h[2] == res_ip).most_common(1)[0][0] if any(h[2] == res_ip for h in heads) else gw_mac
    else:
        res_ip = gw_ips.most_common(1)[0][0] if gw_ips else (host_ip & 0xFFFFFF00) + 1
        res_mac = gw_mac
    bot = Host("injected", want_mac, host_ip, "unknown", 64, 0.0003)
    resolver = Host("resolver", res_mac, res_ip, "router", 64, 0.0004 if _private(res_ip) else 0.02)
    return bot, gw_mac, resolver


def inject(opts: Options, real: Path, host: str, out: Path) -> Result:
    """Put ``opts.scenario``'s behaviours on ``host`` of the real capture ``real``, write ``out``.

    The behaviour starts after ``opts.quiet`` seconds (default: a third of the capture) and runs to
    the end of the capture, or for ``opts.duration`` seconds when given."""
    opts.check()
    if opts.scenario not in BEHAVIOURS:
        raise ValueError(f"--inject needs a behaviour scenario ({', '.join(BEHAVIOURS)}), not {opts.scenario!r}")
    t_start = time.perf_counter()
    frames = _read_ethernet(real)
    bot, gw_mac, resolver = find_host(frames, host, real)
    rng = np.random.default_rng(opts.seed)
    fr = Frames()
    for t_us, f in frames:
        fr.add_raw(t_us, f)
    first, last = min(t for t, _ in frames) / 1e6, max(t for t, _ in frames) / 1e6
    quiet = opts.quiet if opts.quiet is not None else (last - first) / 3
    t_bad = first + quiet
    t1 = t_bad + opts.duration if opts.duration else max(last, t_bad + 20)
    env = Env(bot, gw_mac, resolver)
    heads = [h for _, f in frames if (h := _ipv4(f)) is not None]
    peers = Counter(h[3] for h in heads if h[0] == bot.mac and not _private(h[3]))
    cloud_ip = peers.most_common(1)[0][0] if peers else int(mirai.public_targets(rng, 1)[0])
    cloud = env.remote(ip_text(cloud_ip), cloud_ip, rng)
    sent = sum(len(f) for t, f in frames if t / 1e6 < t_bad and (h := _ipv4(f)) and h[0] == bot.mac
               and not _private(h[3]))
    baseline = sent * 8 / quiet if sent and quiet > 0 else None
    labels = behave(fr, rng, opts, env, cloud, t_bad, t1, baseline)
    for lb in labels:
        if lb.host_ip == bot.ip_text:
            lb.evidence += f" (injected into {real.name} on {mac_text(bot.mac)})"
    return _write(fr, out, labels, t_start)
