"""Scans, brute force and floods as other tools and bots do them (issue 10, synth/access.py): each
scenario family flagged with its behaviour on the misbehaving host only, within the time its own
timing explains, on generated sites and injected into a real capture. Seeds 8001-8099 are used
nowhere else (the model's sets use 1-3 and 1001-1002)."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_PCAPS, needs_shared
from conftest import analyze_events as analyze

from iotwatch.synth import Options, access, generate, inject, site
from iotwatch.synth.labels import labels_path, write_labels
from iotwatch.synth.mirai import Env
from iotwatch.synth.scenario import EPOCH
from iotwatch.synth.wire import Frames

FAMILIES = {"sweep": "scan", "portscan": "scan", "nmapudp": "scan", "netscan": "scan", "sshbrute": "bruteforce",
            "ftpbrute": "bruteforce", "icmpflood": "flood", "flagflood": "flood", "slowhttp": "flood",
            "dnstorture": "flood"}




def labels(pcap: Path) -> list[dict[str, str]]:
    with open(labels_path(pcap), newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _rate(evidence: str, pattern: str = r" at ([\d,.]+)(?: probes)?/s") -> float:
    m = re.search(pattern, evidence)
    assert m, evidence
    return float(m.group(1).replace(",", ""))


def bound(family: str, evidence: str) -> float:
    """Seconds from the first bad packet by which the behaviour's own timing has put the rule's
    evidence on the wire (docs/detection.md's counts), plus 2 s."""
    if family == "sweep":
        r = _rate(evidence)
        if evidence.startswith("ICMP"):
            return 10 / r + 2  # 10 echo requests to new addresses
        if evidence.startswith("nmap"):
            return 20 / r + 2  # 10 probed targets: an address's echo, SYN and timestamp (4 probes) are 2-3
        if evidence.startswith("ARP"):
            return 32 / r + 2  # 32 addresses asked for
        # a ping sweep: each silent address is asked for three times, and the side channel reads at
        # most 64 ARP requests per device and 60 s window: the 32nd address may be in the next window
        return 60 + 96 / r + 2
    if family in ("portscan", "nmapudp"):
        if "UDP" in evidence:  # 100 ports of one host unanswered (30 local targets for a UDP sweep)
            return 100 / _rate(evidence) + 2
        return 10 / _rate(evidence) + 2  # 10 ports
    if family == "netscan":
        # 32 addresses asked for (silent ones three times, within the ARP budget of a window), or
        # 10 refused ports on the live hosts
        ports = len(re.search(r"on ports ([\d, ]+) at", evidence).group(1).split(","))  # type: ignore[union-attr]
        return 60 + 32 * ports / _rate(evidence) + 2
    if family in ("sshbrute", "ftpbrute"):
        m = re.search(r"one every ([\d.]+) s per worker, \d+ workers, (\d+) per", evidence)
        assert m, evidence
        # 3 sessions to one service, each its tries a beat apart (a try takes at most 1.3 beats)
        return 3 * int(m.group(2)) * float(m.group(1)) * 1.3 + 3
    if family == "slowhttp":
        return 100 / _rate(evidence, r"opened at ([\d,.]+)/s") + 2  # 100 connections to one web server
    if family == "dnstorture":
        # 50 distinct names, read once the device has sent 1,000 queries in a window (the side
        # channel reads 12 a minute, 64 in a burst)
        return 1050 / _rate(evidence) + 2
    return 10.0  # the packet floods: 3,000 packets in 10 s, or 300/s in one stream


def fired_after(alert: dict, start: float) -> float:  # type: ignore[type-arg]
    return datetime.strptime(alert["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() - start


def check(pcap: Path, out: Path, family: str) -> dict:  # type: ignore[type-arg]
    """The misbehaving host has a rule's alert of its family's behaviour, within the family's
    bound, and no rule's alert of another; no other host has an alert at all."""
    behaviour = FAMILIES[family]
    rows = labels(pcap)
    (bad,) = [r for r in rows if r["behaviour"] not in ("normal", "victim")]
    assert bad["behaviour"] == behaviour
    assert any(r["behaviour"] == "normal" for r in rows)
    ev = analyze(pcap, out)
    al = [e for e in ev if e["event_type"] == "alert"]
    assert [(e["src_mac"], e["alert"]["signature"]) for e in al if e["src_mac"] != bad["host_mac"]] == []
    by_rule = [e for e in al if any(d.startswith("rule:") for d in e["evidence"]["detected_by"])]
    assert {e["alert"]["category"] for e in by_rule} == {behaviour}, [e["alert"]["signature"] for e in by_rule]
    first = min(by_rule, key=lambda e: e["timestamp"])
    assert 0 <= fired_after(first, float(bad["first_bad_ts"])) <= bound(family, bad["evidence"]), bad["evidence"]
    return first


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_on_a_generated_site(family: str, tmp_path: Path) -> None:
    seed = 8001 + list(FAMILIES).index(family)
    pcap = generate(Options(family, seed=seed, duration=150, uplink_mbps=4), tmp_path / f"{family}.pcap").pcap
    check(pcap, tmp_path / "o", family)


def on_site(tmp_path: Path, seed: int, fn, **kw) -> Path:  # type: ignore[no-untyped-def]
    """A benign site for 150 s, one camera running ``fn(**kw)`` after 60 s."""
    rng = np.random.default_rng(seed)
    the_site = site.make_site(rng)
    fr = Frames()
    t0, t1 = EPOCH, EPOCH + 150
    rows = site.benign(fr, rng, the_site, t0, t1)
    bot = the_site.cameras[0]
    bad = fn(fr, rng, Env(bot, the_site.router.mac, the_site.router), t0 + 60, t1, **kw)
    pcap = tmp_path / f"{fn.__name__}.pcap"
    fr.write(pcap)
    write_labels(labels_path(pcap), pcap.name, [r for r in rows if r.host_ip != bot.ip_text] + bad)
    return pcap


@pytest.mark.parametrize(("seed", "family", "fn", "kw"), [
    (8041, "sweep", access.sweep, {"mode": "arp", "rate": 2.0}),
    (8042, "sweep", access.sweep, {"mode": "ping", "rate": 3.0}),
    (8043, "sweep", access.sweep, {"mode": "public", "rate": 1.0}),
    (8044, "portscan", access.port_scan, {"technique": "xmas", "rate": 1.5, "local": True}),
    (8045, "portscan", access.port_scan, {"technique": "syn", "rate": 4000.0, "local": False}),
    (8046, "portscan", access.port_scan, {"technique": "connect", "rate": 50.0, "local": False}),
    (8053, "sweep", access.sweep, {"mode": "nmap", "rate": 8.0}),
    (8054, "nmapudp", access.udp_scan, {"rate": 20.0, "local": True}),
    (8055, "nmapudp", access.udp_scan, {"rate": 800.0, "local": False}),
    (8047, "netscan", access.net_scan, {"rate": 3.0}),
    (8048, "sshbrute", access.ssh_brute, {"interval": 3.5}),
    (8049, "ftpbrute", access.ftp_brute, {"interval": 0.05}),
    (8050, "icmpflood", access.icmp_flood, {"rate": 400.0, "size": 1400}),  # MTU-sized: a flood, not a tunnel
    (8051, "slowhttp", access.slow_http, {"mode": "headers", "port": 8000, "conns": 200}),  # not a report channel
    (8052, "dnstorture", access.dns_torture, {"rate": 40.0}),
], ids=lambda x: x if isinstance(x, str) else None)
def test_the_spread_of_each_family(seed: int, family: str, fn, kw: dict, tmp_path: Path) -> None:  # type: ignore[no-untyped-def,type-arg]
    """The ends of each family's range: sweeps and scans at one probe a second or two (alerted
    once the rule's count of targets is on the wire) and at thousands, nmap's host discovery probe
    set, nmap -sU of a neighbour (ICMP answers rate-limited) and of an internet host; brute force at one try
    every 3.5 s and at twenty a second; an ICMP flood of MTU-sized echoes at 400/s (exfiltration
    needs a conversation); slowloris on port 8000, whose held sessions each keep a beat never
    answered (a report channel is one session); water torture at 40 queries a second."""
    pcap = on_site(tmp_path, seed, fn, **kw)
    check(pcap, tmp_path / "o", family)


@needs_shared
@pytest.mark.parametrize("family", ["netscan", "sshbrute", "slowhttp"])
def test_injected_into_a_real_camera(family: str, tmp_path: Path) -> None:
    """Into a real camera's capture: the neighbours a subnet scan finds and a brute force tries are
    the capture's own hosts; the camera's other traffic raises nothing."""
    real = SHARED_PCAPS / "iot_sentinel" / "D-LinkCam" / "Setup-A-1-STA.pcap"
    res = inject(Options(family, seed=8060 + list(FAMILIES).index(family), duration=120, uplink_mbps=4), real,
                 "b0:c5:54:25:5b:0e", tmp_path / f"{family}.pcap")
    rows = labels(res.pcap)
    (bad,) = [r for r in rows if r["behaviour"] not in ("normal", "victim")]
    ev = analyze(res.pcap, tmp_path / "o")
    al = [e for e in ev if e["event_type"] == "alert"]
    assert {e["alert"]["category"] for e in al if e["src_mac"] == bad["host_mac"]} >= {FAMILIES[family]}
    assert [e["src_mac"] for e in al if e["src_mac"] != bad["host_mac"]] == []


def test_neighbours_are_the_hosts_of_the_subnet_seen_so_far() -> None:
    rng = np.random.default_rng(8090)
    the_site = site.make_site(rng)
    fr = Frames()
    site.benign(fr, rng, the_site, EPOCH, EPOCH + 60)
    cam = the_site.cameras[0]
    near = {h.ip: h.mac for h in access.neighbours(fr, cam)}
    assert cam.ip not in near
    for h in (the_site.recorder, *the_site.cameras[1:], *the_site.pcs):
        assert near.get(h.ip) == h.mac
    assert all((a & 0xFFFFFF00) == the_site.net for a in near)


def test_icmp_echo_checksums() -> None:
    pkt = access.icmp_echo(8, 0x1234, 7, b"abcdefgh")
    assert access._checksum(pkt) == 0  # a correct checksum sums to zero over the message
    from scapy.layers.inet import ICMP

    assert ICMP(pkt).chksum == ICMP(bytes(ICMP(type=8, id=0x1234, seq=7) / b"abcdefgh")).chksum


def test_each_family_is_registered_everywhere() -> None:
    """`iotwatch synth NAME` knows it, the model's and the evaluation's sets hold it, and it is its
    own family for leave-one-source-out."""
    from iotwatch.cli.synth import SCENARIOS as CLI
    from iotwatch.synth.scenario import EVASIVE, SCENARIOS
    from iotwatch.synth.sets import EVASIVE_DURATIONS, cases, families

    for name in FAMILIES:
        assert name in CLI and name in SCENARIOS and name in EVASIVE and name in EVASIVE_DURATIONS
        assert families(Path(f"{name}-1001.pcap")) == (name,)
        assert sum(o.scenario == name for o in cases("train")) == 3
        assert sum(o.scenario == name for o in cases("eval")) == 2


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize(("fn", "kw"), [
    (access.sweep, {"mode": "ping", "rate": 200.0}), (access.sweep, {"mode": "nmap", "rate": 400.0}),
    (access.port_scan, {"technique": "syn", "rate": 500.0}), (access.port_scan, {"technique": "xmas", "rate": 500.0}),
    (access.udp_scan, {"rate": 300.0, "local": True}), (access.net_scan, {"rate": 100.0}),
    (access.ssh_brute, {"interval": 0.2}), (access.ftp_brute, {"interval": 0.2}),
    (access.icmp_flood, {"rate": 400.0}), (access.flag_flood, {"rate": 500.0}),
    (access.slow_http, {"conns": 150}), (access.dns_torture, {"rate": 100.0}),
], ids=lambda x: x.__name__ if callable(x) else None)
def test_tshark_reads_them_cleanly(fn, kw: dict, tmp_path: Path) -> None:  # type: ignore[no-untyped-def,type-arg]
    """Every IPv4, ICMP, TCP and UDP checksum right, nothing malformed (ICMP echo and timestamp,
    port unreachable quoting the datagram, nmap's UDP payloads, DNS, FTP, SSH banners)."""
    pcap = on_site(tmp_path, 8080, fn, **kw)
    ssh = [x for p in (2222, 22222, 2022, 10022, 902) for x in ("-d", f"tcp.port=={p},ssh")]  # SSH off its port
    r = subprocess.run(["tshark", "-r", str(pcap), *ssh, "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
                        "-o", "udp.check_checksum:TRUE", "-Y",
                        "_ws.malformed || ip.checksum.status == 0 || tcp.checksum.status == 0 "
                        "|| udp.checksum.status == 0 || icmp.checksum.status == 0",
                        "-T", "fields", "-e", "frame.protocols"], capture_output=True, text=True, check=True)
    assert r.stdout.split() == []
