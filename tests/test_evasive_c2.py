"""C2 that lives inside one connection or on the site's own network (issue 10): the flow records'
exchanges and beats, the report-channel and telnet-heartbeat rule (``held_heartbeat``), the
program-then-call-backs rule (``program_callback``), the generated scenarios ``reportc2`` and
``localc2`` (seeds 7201-7299 are used nowhere else), and the ordinary heartbeats that must stay
quiet: keep-alives answered by their cloud, a session already running when the capture began,
a firmware image fetched and polled, a server's pings, a person typing over telnet."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import SHARED_PCAPS, needs_shared
from conftest import analyze_events as analyze

from iotwatch.detect.evidence import serves_program
from iotwatch.synth import Options, generate, inject
from iotwatch.synth.sessions import Host, TcpSession
from iotwatch.synth.wire import ACK, PSH, Frames, ip

T0 = 1_754_279_400.0
GW = 0x50C7BF3E9120




def c2_alerts(events: list[dict], mac: str | None = None) -> list[dict]:  # type: ignore[type-arg]
    return [e for e in events if e["event_type"] == "alert" and (mac is None or e["src_mac"] == mac)]


def lan(n: int) -> Host:
    return Host(f"dev{n}", 0x0C8C24000000 + n, ip(f"192.168.1.{n}"), "camera", 64, 0.0004)


def internet(addr: str) -> Host:
    return Host(addr, GW, ip(addr), "unknown", 51, 0.04)


def http_file(name: str, body: bytes) -> bytes:
    return (f'HTTP/1.1 200 OK\r\nContent-Disposition: attachment; filename="{name}"\r\n'
            f"Content-Length: {len(body)}\r\nContent-Type: application/octet-stream\r\n\r\n").encode()


# the flow records ----------------------------------------------------------------------------
def test_a_flows_exchanges_and_its_beat(tmp_path: Path) -> None:
    """A device pushes a tag and a body every 5 s (the body now and then 2 s late: an extra
    exchange between two beats, not a beat), its peer never answers; a controller polls another
    device every 20 s and it answers; a third session's exchanges come at random."""
    rng = np.random.default_rng(7201)
    fr = Frames()
    a, b, c = lan(10), lan(11), lan(12)
    s = TcpSession(fr, rng, a, internet("203.0.113.7"), 8219, T0)
    s.open()
    late = 0
    for k in range(20):
        s.send(0, b"7\r\n", T0 + 1 + 5 * k - s.t)
        lag = 2.0 if k % 6 == 3 else 0.1
        late += lag > 1
        s.send(0, b"ping|" + bytes(120), lag)
    p = TcpSession(fr, rng, b, lan(2), 7010, T0)
    p.open()
    for k in range(12):
        p.send(1, b"\x01", T0 + 2 + 20 * k - p.t)
        p.send(0, b"{}" * 20, 0.01)
    r = TcpSession(fr, rng, c, internet("198.51.100.9"), 5000, T0)
    r.open()
    for gap in rng.exponential(8.0, 20) + 1.2:
        r.send(0, b"x" * 40, float(gap))
    fr.write(tmp_path / "x.pcap")
    analyze(tmp_path / "x.pcap", tmp_path / "o")
    t = pq.read_table(tmp_path / "o" / "flows.parquet").to_pandas().set_index("dest_port")
    rat, poll, rnd = t.loc[8219], t.loc[7010], t.loc[5000]
    # the first exchange starts the clock; every later one on the beat is a beat (the second
    # counts once the third has confirmed the interval it set)
    assert rat["pushes_toserver"] == 20 + late and rat["pushes_toclient"] == 0
    assert rat["beats_toserver"] == 19 and rat["beat_interval_toserver"] == pytest.approx(5.0, abs=0.05)
    assert rat["push_interval_cv_toserver"] > 0.2  # the late bodies blur the plain intervals, not the beat
    assert rat["push_bytes_toserver"] == rat["payload_toserver"] and rat["payload_toclient"] == 0
    assert poll["pushes_toclient"] == 12 and poll["beats_toclient"] == 11
    assert poll["push_interval_toclient"] == pytest.approx(20.0, abs=0.05) and poll["push_interval_cv_toclient"] < 0.01
    assert poll["pushes_toserver"] == 0 and poll["push_bytes_toclient"] == 12
    assert rnd["pushes_toserver"] == 20 and rnd["beats_toserver"] < 8


def test_the_held_sessions_a_live_verdict_counts_while_open() -> None:
    from iotwatch.detect.evidence import held_sessions
    from iotwatch.flows import FLOW_DTYPE

    rows = np.zeros(4, FLOW_DTYPE)
    rows["proto"] = [6, 6, 6, 17]
    rows["xn"] = [[6, 0], [0, 9], [5, 5], [30, 0]]
    # the device's 6 exchanges, the peer's 9; not: 5 each way, nor a UDP stream
    assert held_sessions(rows).tolist() == [True, True, False, False]


def test_what_serves_a_program() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
    assert serves_program(head + b"\r\n\x7fELF\x02\x01\x01")
    assert serves_program(head + b"\r\nMZ\x90\x00")
    assert serves_program(b'HTTP/1.1 200 OK\r\nContent-Disposition: attachment; filename="agent.py"\r\n\r\n')
    assert serves_program(head + b'Content-Disposition: attachment; filename="sandcat.go-linux"\r\n\r\n')
    assert serves_program(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-msdownload\r\n\r\n")
    # data, whatever the type says
    assert not serves_program(head + b'Content-Disposition: attachment; filename="fw_2.1.bin"\r\n\r\n')
    assert not serves_program(b'HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\n'
                              b'Content-Disposition: attachment; filename="manual"\r\n\r\n%PDF-1.4')
    assert not serves_program(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>")
    assert not serves_program(head + b"\r\n\x00\x01\x02")


# ordinary heartbeats stay quiet ----------------------------------------------------------------
def _site(tmp_path: Path, program: bool) -> Path:
    """Six devices with heartbeats that are ordinary, and (``program``) one that fetched a program
    from a machine on the site and calls it back like the firmware poller next to it."""
    rng = np.random.default_rng(7230)
    fr = Frames()
    end = T0 + 900
    # MQTT over TLS to a broker, PINGREQ/PINGRESP every 30 s; a vendor cloud on an odd port answering each push
    for dev, port, period, answer in ((lan(20), 8883, 30.0, 2), (lan(21), 8886, 10.0, 40)):
        s = TcpSession(fr, rng, dev, internet("52.28.1.9" if port == 8883 else "47.88.3.4"), port, T0)
        s.open()
        s.send(0, b"\x16\x03\x01" + bytes(200), 0.01)
        s.send(1, b"\x16\x03\x03" + bytes(1200), 0.01)
        while s.t + period < end:
            s.send(0, b"\x17\x03\x03" + bytes(24), period + float(rng.normal(0, 0.02)))
            s.send(1, b"\x17\x03\x03" + bytes(answer), 0.05)
    # a session already running when the capture began: pushes every 5 s, never answered (no SYN seen)
    m = TcpSession(fr, rng, lan(22), internet("185.10.68.3"), 9001, T0)
    while m.t + 5 < end:
        m.packet(0, m.t + 5.0, PSH | ACK, b"status|" + bytes(60))
        m.packet(1, m.answer(1), ACK)
    # a web app's server pinging its client every 25 s (socket.io) on 443
    w = TcpSession(fr, rng, lan(23), internet("104.16.5.5"), 443, T0)
    w.open()
    while w.t + 25 < end:
        w.send(1, b"\x17\x03\x03" + bytes(5), 25.0)
        w.send(0, b"\x17\x03\x03" + bytes(5), 0.02)
    # a person at a telnet prompt of the router
    tn = TcpSession(fr, rng, lan(24), lan(1), 23, T0)
    tn.open()
    while tn.t + 60 < end:
        tn.send(0, b"ls\r\n", float(rng.exponential(15.0)) + 1.5)
        tn.send(1, b"bin etc\r\n# ", 0.01)
    # a firmware image fetched from the site's hub, then the hub polled every 30 s; the same by a
    # device that fetched a program instead
    hub = lan(2)
    for dev, name, body in ((lan(25), "fw_3.2.bin", bytes(30_000)),
                            *(((lan(26), "agent", b"\x7fELF\x02\x01\x01" + bytes(30_000)),) if program else ())):
        dl = TcpSession(fr, rng, dev, hub, 8080, T0 + 5)
        dl.open()
        dl.send(0, b"GET /file HTTP/1.1\r\nHost: hub\r\n\r\n", 0.001)
        dl.send(1, http_file(name, body), 0.002)
        dl.send(1, body, 0.001)
        dl.close(0, 0.01)
        t = dl.t + 3
        while t < end - 5:
            q = TcpSession(fr, rng, dev, hub, 8080, t)
            q.open()
            q.send(0, b"POST /status HTTP/1.1\r\nHost: hub\r\n\r\n{}", 0.001)
            q.send(1, b"HTTP/1.1 200 OK\r\n\r\n{}", 0.003)
            q.close(0, 0.01)
            t += 30.0 * float(rng.uniform(0.8, 1.2))
    tmp_path.mkdir(parents=True, exist_ok=True)
    fr.write(tmp_path / "site.pcap")
    return tmp_path / "site.pcap"


def test_ordinary_heartbeats_raise_nothing_and_a_program_callback_does(tmp_path: Path) -> None:
    quiet = analyze(_site(tmp_path / "a", program=False), tmp_path / "a" / "o")
    assert [e["alert"]["signature"] for e in c2_alerts(quiet)] == []
    (a,) = c2_alerts(analyze(_site(tmp_path / "b", program=True), tmp_path / "b" / "o"))
    assert a["src_ip"] == "192.168.1.26" and a["alert"]["category"] == "c2"
    assert a["evidence"]["detected_by"][0] == "rule:program_callback"
    assert a["evidence"]["program_from"] == "192.168.1.2:8080" and a["evidence"]["connections"] >= 6


# generated scenarios ---------------------------------------------------------------------------
def _bad(pcap: Path) -> dict[str, str]:
    with open(pcap.with_name(pcap.stem + ".labels.tsv"), newline="") as f:
        return next(r for r in csv.DictReader(f, delimiter="\t") if r["behaviour"] == "c2")


def _check(pcap: Path, out: Path, rule: str) -> dict:  # type: ignore[type-arg]
    host = _bad(pcap)
    ev = analyze(pcap, out)
    assert [e["src_mac"] for e in c2_alerts(ev) if e["src_mac"] != host["host_mac"]] == []
    (a,) = c2_alerts(ev, host["host_mac"])
    assert a["alert"]["category"] == "c2" and f"rule:{rule}" in a["evidence"]["detected_by"]
    fired = datetime.strptime(a["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    start = float(host["first_bad_ts"])
    # known once 8 beats (after the two that set it: a report channel) or 6 call-backs (jitter up
    # to +25 %) came
    period = float(host["evidence"].split("every ")[1].split(" s")[0].lstrip("~"))
    assert start <= fired <= start + (10 if rule == "held_heartbeat" else 8 * 1.25) * period + 10
    return a


@pytest.mark.parametrize("seed", [7210, 7211])
def test_a_report_channel_on_a_generated_site(seed: int, tmp_path: Path) -> None:
    pcap = generate(Options("reportc2", seed=seed, duration=480), tmp_path / "r.pcap").pcap
    a = _check(pcap, tmp_path / "o", "held_heartbeat")
    assert a["evidence"]["bytes_received"] == 0 and a["evidence"]["beats"] >= 8
    assert "never answered" in a["alert"]["signature"]


@pytest.mark.parametrize(("seed", "mode"), [(7201, "keepalive"), (7202, "session"), (7205, "connections")])
def test_a_local_controller_on_a_generated_site(seed: int, mode: str, tmp_path: Path) -> None:
    pcap = generate(Options("localc2", seed=seed, duration=540), tmp_path / "l.pcap").pcap
    assert f"({mode})" in _bad(pcap)["evidence"]
    a = _check(pcap, tmp_path / "o", "program_callback")
    assert a["evidence"]["program_from"].split(":")[0] == _bad(pcap)["evidence"].split()[2].rstrip(":")


@needs_shared
@pytest.mark.parametrize(("scenario", "rule", "seed"), [("reportc2", "held_heartbeat", 7250),
                                                       ("localc2", "program_callback", 7251)])
def test_injected_into_a_real_camera(scenario: str, rule: str, seed: int, tmp_path: Path) -> None:
    real = SHARED_PCAPS / "nku_lifecycle" / "xiaobai_Y2camera_lifecycle" / "xiaobai_Y2camera_idle_local.pcap"
    res = inject(Options(scenario, seed=seed, duration=480), real, "78:df:72:24:69:4d", tmp_path / f"{scenario}.pcap")
    _check(res.pcap, tmp_path / "o", rule)


@needs_shared
@pytest.mark.parametrize(("capture", "rule", "what"), [
    ("corelight_strrat/strrat_4423258f.pcap", "held_heartbeat", "report channel to 185.255.114.40:8219"),
    ("corelight_caldera/caldera_sandcat.pcap", "program_callback", "a session to :8888"),
    ("corelight_caldera/caldera_manx_tcp.pcap", "program_callback", "a session to :7010"),
    ("corelight_caldera/caldera_ragdoll.pcap", "program_callback", "connections every"),
])
def test_commodity_rats_and_lab_agents(capture: str, rule: str, what: str, tmp_path: Path) -> None:
    with open(SHARED_PCAPS / "LABELS.tsv", newline="") as f:
        lab = next(r for r in csv.DictReader(f, delimiter="\t") if r["file"] == capture)
    ev = analyze(SHARED_PCAPS / capture, tmp_path / "o")
    (a,) = c2_alerts(ev, lab["host_mac"])
    assert a["evidence"]["detected_by"][0] == f"rule:{rule}" and what in a["alert"]["signature"]
    assert c2_alerts(ev) == [a]  # the controller (Caldera's 172.18.0.2) only answered: nothing on it


@needs_shared
def test_a_mirai_cnc_link_whose_hello_lies_before_the_capture(tmp_path: Path) -> None:
    """Mirai's CNC session kept alive with 2-byte messages every 15-60 s: caught at its hello, and,
    in a capture begun after the hello (the session midstream), by its beat on a telnet port."""
    from test_detect_unseen import cut

    real = SHARED_PCAPS / "nku_lifecycle" / "xiaobai_Y2camera_lifecycle" / "xiaobai_Y2camera_idle_local.pcap"
    res = inject(Options("c2", seed=7270, duration=1200, quiet=100), real, "78:df:72:24:69:4d", tmp_path / "c2.pcap")
    host = _bad(res.pcap)
    (whole,) = c2_alerts(analyze(res.pcap, tmp_path / "o"))
    assert whole["evidence"]["detected_by"][:2] == ["rule:mirai_c2_hello", "rule:held_heartbeat"]
    cut(res.pcap, tmp_path / "mid.pcap", float(host["first_bad_ts"]) + 20)
    (mid,) = c2_alerts(analyze(tmp_path / "mid.pcap", tmp_path / "m"))
    assert mid["src_mac"] == host["host_mac"] and mid["evidence"]["detected_by"][0] == "rule:held_heartbeat"
    assert "rule:mirai_c2_hello" not in mid["evidence"]["detected_by"]
    assert mid["alert"]["signature"].startswith("heartbeat on a telnet port") and mid["evidence"]["beats"] >= 8
