"""Evidence a vendor cannot argue with (issue 11): counts and ends that are the episode's totals
(or say they are bounds), cited packets that show what the words say (opened with tshark),
nothing lost on Ctrl-C, nothing counted twice, bad values refused in one line before any work,
and flow events that match docs/records.md field by field."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import CHECK_EVENTS, SHARED_PCAPS, needs_shared

import iotwatch
from iotwatch.detect import Detector, DetectSettings
from iotwatch.detect import evidence as evidence_mod
from iotwatch.detect.alerts import iso
from iotwatch.errors import InputError, IotwatchError, SettingsError
from iotwatch.labels import read_labels
from iotwatch.pipeline import Settings
from iotwatch.records import FLOW_EVENT_FIELDS, records_markdown
from iotwatch.synth import Options, generate

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (make sysdeps)")

# seeds of tests/test_detect.py's scenarios (not used by `make model` nor `make eval`)
SCENARIOS = {
    "hospital": Options("hospital", seed=501, duration=240, quiet=100, uplink_mbps=4),
    "bruteforce": Options("bruteforce", seed=503, duration=90, quiet=40),
    "exfil": Options("exfil", seed=504, duration=150, quiet=70, uplink_mbps=4),
    "c2": Options("c2", seed=505, duration=90, quiet=30),
    "syn": Options("flood", seed=506, duration=45, quiet=20, vector="syn", uplink_mbps=4),
}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("evidence")
    return {name: generate(o, d / f"{name}.pcap").pcap for name, o in SCENARIOS.items()}


@pytest.fixture(scope="module")
def alerts(made: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """Each scenario through the command line (rules only), its alert events."""
    out = {}
    for name, pcap in made.items():
        d = tmp_path_factory.mktemp(f"out-{name}")
        r = subprocess.run([sys.executable, "-m", "iotwatch", "analyze", str(pcap), "--out", str(d), "--no-model",
                            "--uplink-mbps", "4", "-q"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        events = [json.loads(x) for x in (d / "events.jsonl").read_text().splitlines()]
        out[name] = [e for e in events if e["event_type"] == "alert"]
    return out


def label(pcap: Path, behaviour: str):  # type: ignore[no-untyped-def]
    rows = read_labels(pcap.with_name(pcap.stem + ".labels.tsv"))
    return next(r for r in rows if r.behaviour == behaviour)


def tshark(pcap: Path, filt: str, *fields: str) -> list[list[str]]:
    r = subprocess.run(["tshark", "-r", str(pcap), "-Y", filt, "-T", "fields", *(a for f in fields for a in ("-e", f))],
                       capture_output=True, text=True, check=True)
    return [line.split("\t") for line in r.stdout.splitlines() if line]


def packet(pcap: Path, ref: dict, *fields: str) -> list[str]:
    (row,) = tshark(pcap, f"frame.number == {ref['packet']}", *fields)
    return row


def one(alerts: list[dict], category: str) -> dict:
    (a,) = [a for a in alerts if a["alert"]["category"] == category]
    assert {"first_packet", "alert_packet", "detected_by"} <= set(a["evidence"])
    assert "lower_bounds" not in a["evidence"]  # the cap was passed, but every count is exact
    return a


# counts and ends are the episode's totals ------------------------------------------------------
@needs_tshark
def test_syn_flood_counts_every_packet_to_its_last(made: dict[str, Path], alerts: dict[str, list[dict]]) -> None:
    pcap = made["syn"]
    lab = label(pcap, "flood")
    a = one(alerts["syn"], "flood")
    ev = a["evidence"]
    syns = tshark(pcap, f"ip.src == {lab.host_ip} && ip.dst == {ev['target']} && tcp.flags == 0x002", "frame.time_epoch")
    assert len(syns) > evidence_mod.MAX_EVENTS  # past the evidence cap: the case the issue is about
    assert ev["packets_out"] == ev["flows"] == len(syns)
    assert ev["flows_not_kept"] == len(syns) - evidence_mod.MAX_EVENTS
    assert f"{len(syns):,} packets" in a["alert"]["signature"]
    assert a["first_ts"] == pytest.approx(lab.first_ts, abs=1e-6)
    assert a["last_ts"] == pytest.approx(lab.end_ts, abs=1e-6) == pytest.approx(float(syns[-1][0]), abs=1e-6)
    for ref in (ev["first_packet"], ev["alert_packet"]):  # both are the flood's SYNs
        src, dst, flags = packet(pcap, ref, "ip.src", "ip.dst", "tcp.flags")
        assert (src, dst, int(flags, 16)) == (lab.host_ip, ev["target"], 0x002)


@needs_tshark
def test_mirai_scan_counts_every_syn_and_names_the_mirai_rule(made: dict[str, Path], alerts: dict[str, list[dict]]) -> None:
    pcap = made["hospital"]
    lab = label(pcap, "scan")
    a = one(alerts["hospital"], "scan")
    ev = a["evidence"]
    rows = tshark(pcap, f"ip.src == {lab.host_ip} && tcp.flags == 0x002 && (tcp.dstport == 23 || tcp.dstport == 2323)",
                  "ip.dst", "tcp.seq_raw", "frame.time_epoch")

    def seq_is_dst(r: list[str]) -> bool:
        return int.from_bytes(bytes(int(x) for x in r[0].split(".")), "big") == int(r[1])

    mirai = [r for r in rows if seq_is_dst(r)]
    assert len(mirai) > evidence_mod.MAX_EVENTS
    assert ev["flows"] == ev["unanswered"] == ev["mirai_syns"] == len(mirai)
    assert ev["hosts"] == len({r[0] for r in mirai})
    assert f"{len(mirai):,} SYNs" in a["alert"]["signature"] and f"to {ev['hosts']:,} addresses" in a["alert"]["signature"]
    assert ev["detected_by"][0] == "rule:mirai_scanner"
    # the last SYN is the label's end; last_ts is the episode's last packet, a victim's RST included
    assert lab.end_ts <= a["last_ts"] <= lab.end_ts + 1.0
    for ref in (ev["first_packet"], ev["alert_packet"]):
        src, dport, flags, dst, seq = packet(pcap, ref, "ip.src", "tcp.dstport", "tcp.flags", "ip.dst", "tcp.seq_raw")
        assert src == lab.host_ip and dport in ("23", "2323") and int(flags, 16) == 0x002 and seq_is_dst([dst, seq])


@needs_tshark
def test_bruteforce_counts_every_session(made: dict[str, Path], alerts: dict[str, list[dict]]) -> None:
    pcap = made["bruteforce"]
    lab = label(pcap, "bruteforce")
    a = one(alerts["bruteforce"], "bruteforce")
    ev = a["evidence"]
    syns = tshark(pcap, f"ip.src == {lab.host_ip} && tcp.flags == 0x002 && tcp.dstport == 23", "ip.dst")
    assert ev["sessions"] == ev["flows"] == len(syns)
    assert ev["hosts"] == len({r[0] for r in syns})
    assert f"{len(syns)} short sessions" in a["alert"]["signature"]
    assert a["last_ts"] == pytest.approx(lab.end_ts, abs=1e-6)
    for ref in (ev["first_packet"], ev["alert_packet"]):
        src, dport = packet(pcap, ref, "ip.src", "tcp.dstport")
        assert (src, dport) == (lab.host_ip, "23")


@needs_tshark
def test_c2_cites_the_session_and_its_binary_hello(made: dict[str, Path], alerts: dict[str, list[dict]]) -> None:
    pcap = made["c2"]
    lab = label(pcap, "c2")
    a = one(alerts["c2"], "c2")
    ev = a["evidence"]
    assert a["last_ts"] == pytest.approx(lab.end_ts, abs=1e-6)
    src, flags = packet(pcap, ev["first_packet"], "ip.src", "tcp.flags")
    assert src == lab.host_ip and int(flags, 16) == 0x002  # the session's SYN
    src, payload = packet(pcap, ev["alert_packet"], "ip.src", "tcp.payload")
    assert src == lab.host_ip and payload.replace(":", "").startswith("00000001")  # Mirai's hello, as the words say


@needs_tshark
def test_c2_capture_starting_after_the_hello_cites_no_keepalive_as_a_hello(made: dict[str, Path], tmp_path: Path,
                                                                            alerts: dict[str, list[dict]]) -> None:
    """A capture that starts mid-incident holds only the 2-byte keep-alives: no "binary hello"."""
    pcap = made["c2"]
    hello = one(alerts["c2"], "c2")["evidence"]["alert_packet"]["packet"]
    cut = tmp_path / "after-hello.pcap"
    subprocess.run(["editcap", "-r", str(pcap), str(cut), f"{hello + 1}-{10 ** 9}"], check=True, capture_output=True)
    a = iotwatch.analyze(cut, detect=Detector(DetectSettings(model=None)), identify=False)
    for x in a.alerts:
        assert "hello" not in x.signature, x.signature
    lab = label(pcap, "c2")
    keepalives = tshark(cut, f"ip.src == {lab.host_ip} && tcp.len == 2", "tcp.payload")
    assert keepalives and all(k[0].replace(":", "") == "0000" for k in keepalives)


@needs_tshark
def test_exfil_cites_an_upload_packet(made: dict[str, Path], alerts: dict[str, list[dict]]) -> None:
    pcap = made["exfil"]
    lab = label(pcap, "exfil")
    a = one(alerts["exfil"], "exfil")
    ev = a["evidence"]
    assert lab.end_ts <= a["last_ts"] <= lab.end_ts + 1.0  # the upload's last packet; the server's ACK may follow
    for ref in (ev["first_packet"], ev["alert_packet"]):
        src, dst = packet(pcap, ref, "ip.src", "ip.dst")
        assert src == lab.host_ip and dst in ev["peers"]


def test_every_alert_carries_first_and_alert_packet(alerts: dict[str, list[dict]]) -> None:
    every = [a for al in alerts.values() for a in al]
    assert {a["alert"]["category"] for a in every} == {"scan", "bruteforce", "flood", "exfil", "c2"}
    for a in every:
        assert "first_packet" in a["evidence"] and "alert_packet" in a["evidence"], a["alert"]


def test_evidence_past_the_aggregate_table_is_a_marked_lower_bound(made: dict[str, Path],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """With no room for the flood target's aggregate row, the counts say they are lower bounds."""
    monkeypatch.setattr(evidence_mod, "MAX_EVENTS", 5000)  # the flood fires within them
    monkeypatch.setattr(evidence_mod, "MAX_OVF_ROWS", 0)  # no row at all: every count past the cap is lost
    a = iotwatch.analyze(made["syn"], detect=Detector(DetectSettings(model=None)), identify=False)
    (flood,) = [x for x in a.alerts if x.category == "flood"]
    assert "packets_out" in flood.evidence["lower_bounds"]
    assert "at least" in flood.signature


def test_sampled_dns_names_are_marked_lower_bounds(tmp_path: Path) -> None:
    """DNS water torture: the side channel reads a budget of queries per minute; the alert says
    its names are a sample and gives the exact number of queries sent."""
    pcap = generate(Options("flood", seed=506, duration=45, quiet=20, vector="dns", uplink_mbps=4),
                    tmp_path / "dns.pcap").pcap
    a = iotwatch.analyze(pcap, detect=Detector(DetectSettings(model=None)), identify=False)
    (flood,) = [x for x in a.alerts if x.category == "flood"]
    ev = flood.evidence
    assert "queries_sampled" in ev["lower_bounds"] and "at least" in flood.signature
    sent = int(a.windows.filter(a.windows["device"].to_numpy(zero_copy_only=False) == flood.device)
               .column("dns_queries").to_numpy().sum())
    assert ev["dns_queries_sent"] <= sent and ev["dns_queries_sent"] > ev["queries_sampled"]


@needs_shared
def test_alert_names_the_address_its_packets_show() -> None:
    """Two captures of one MAC under two addresses: the ICMP sweep is named by the address its
    cited packets come from (192.168.1.109), not the MAC's first address (.247)."""
    caps = [SHARED_PCAPS / "slips_testdata" / "test8-malicious.pcap", SHARED_PCAPS / "slips_testdata" / "test12-icmp-portscan.pcap"]
    a = iotwatch.analyze(caps, detect=Detector(DetectSettings(model=None)), identify=False)
    sweep = next(x for x in a.alerts if "ICMP" in x.signature)
    assert sweep.src_ip == "192.168.1.109"
    arp = next(x for x in a.alerts if x.signature.startswith("ARP sweep"))
    assert arp.src_ip == "192.168.1.247" and "at least" in arp.signature and "targets" in arp.evidence["lower_bounds"]


@needs_shared
def test_ssh_bruteforce_on_an_odd_port_counts_every_session() -> None:
    """nmap ssh-brute on port 902: one half-open port check, then 66 SSH sessions (the side
    channel read the banners of a few; the others are the same service)."""
    a = iotwatch.analyze(SHARED_PCAPS / "slips_testdata" / "malicious-ssh-bruteforce.pcap",
                         detect=Detector(DetectSettings(model=None)), identify=False)
    (b,) = a.alerts
    assert b.evidence["sessions"] == 66 and "66 short sessions" in b.signature


# Ctrl-C ------------------------------------------------------------------------------------------
def _interrupt_at(phase: str, pcap: Path, out: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    ready = tmp_path / f"ready-{phase}"
    env = {**os.environ, "IOTWATCH_PAUSE_AT": f"{phase}:{ready}"}
    p = subprocess.Popen([sys.executable, "-m", "iotwatch", "analyze", str(pcap), "--out", str(out), "--no-model", "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert p.poll() is None and time.monotonic() < deadline, f"never reached {phase}"
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=120)
    return subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)


def _complete_outputs(out: Path) -> dict:
    lines = (out / "events.jsonl").read_text().splitlines()
    events = [json.loads(x) for x in lines]  # every line is whole JSON
    assert events and events[-1]["event_type"] == "stats"
    json.loads((out / "baselines.json").read_text())
    pq.read_table(out / "windows.parquet")
    pq.read_table(out / "flows.parquet")
    if CHECK_EVENTS.exists() and events[-1]["packets"]:  # (the checker wants devices: none before the first packet)
        c = subprocess.run([sys.executable, str(CHECK_EVENTS), str(out)], capture_output=True, text=True)
        assert c.returncode == 0, c.stdout + c.stderr
    return events[-1]


@pytest.mark.parametrize("phase", ["import", "models", "startup", "verdicts", "writers"])
def test_ctrl_c_at_each_phase(made: dict[str, Path], tmp_path: Path, phase: str) -> None:
    out = tmp_path / "o"
    r = _interrupt_at(phase, made["c2"], out, tmp_path)
    assert r.returncode == 130, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr and "interrupted" in r.stderr, r.stderr
    if phase == "import":  # before the command began: nothing read, nothing written
        assert not out.exists()
        return
    stats = _complete_outputs(out)
    if phase in ("models", "startup"):  # before the first packet
        assert stats["interrupted"] and stats["packets"] == 0
    else:  # after the reading: complete results
        assert not stats["interrupted"] and stats["packets"] > 0
        assert any('"event_type":"alert"' in x for x in (out / "events.jsonl").read_text().splitlines())


def test_ctrl_c_while_reading_a_pipe(made: dict[str, Path], tmp_path: Path) -> None:
    """Reading a FIFO that stops being fed: Ctrl-C ends the read, what was read is written."""
    fifo = tmp_path / "live.pcap"
    os.mkfifo(fifo)
    data = made["c2"].read_bytes()[: 12 << 20]  # more than one read chunk, cut mid-packet
    fed = threading.Event()

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(data)
            f.flush()
            fed.set()
            time.sleep(30)  # the writer stays: the reader blocks for more

    threading.Thread(target=feed, daemon=True).start()
    out = tmp_path / "o"
    p = subprocess.Popen([sys.executable, "-m", "iotwatch", "analyze", str(fifo), "--out", str(out), "--no-model", "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert fed.wait(60)
    deadline = time.monotonic() + 60  # the reader has taken the first chunk once the flows folder exists
    while not (out / "flows.parquet").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2.0)
    p.send_signal(signal.SIGINT)
    _, stderr = p.communicate(timeout=120)
    assert p.returncode == 130 and stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    stats = _complete_outputs(out)
    assert stats["interrupted"] and stats["packets"] > 0


# the same capture twice --------------------------------------------------------------------------
def test_same_capture_given_twice_is_read_once(made: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "caps"
    folder.mkdir()
    cap = folder / "c2.pcap"
    shutil.copy(made["c2"], cap)
    (tmp_path / "link.pcap").symlink_to(cap)
    once = iotwatch.analyze(cap, detect=False, identify=False)
    for args in ([cap, cap], [folder, cap], [folder, tmp_path / "link.pcap"]):
        a = iotwatch.analyze(args, detect=False, identify=False)
        assert a.stats.packets == once.stats.packets and a.stats.files == 1 and len(a.duplicates) == 1
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "-m", "iotwatch", "analyze", str(folder), str(cap), "--out", str(out),
                        "--no-model", "-q"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr.count("\n") == 1 and "read once" in r.stderr and str(cap) in r.stderr
    assert json.loads((out / "events.jsonl").read_text().splitlines()[-1])["packets"] == once.stats.packets


# bad values: one line, exit 2, before any work ---------------------------------------------------
@pytest.mark.parametrize("args", [["--window", "inf"], ["--window", "nan"], ["--window", "1e12"], ["--window", "0"],
                                  ["--idle-timeout", "inf"], ["--active-timeout", "nan"], ["--uplink-mbps", "nan"],
                                  ["--uplink-mbps", "-1"], ["--max-flows", "99999999999"], ["--top", "-1"],
                                  ["--local-net", "nonsense"]])
def test_bad_option_values_one_usage_line(made: dict[str, Path], tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "-m", "iotwatch", "analyze", str(made["c2"]), "--out", str(out), *args],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("iotwatch: usage error: " + args[0]), r.stderr
    assert not out.exists()  # refused before any work


def test_output_path_that_is_a_file(made: dict[str, Path], tmp_path: Path) -> None:
    f = tmp_path / "taken"
    f.write_text("mine")
    r = subprocess.run([sys.executable, "-m", "iotwatch", "analyze", str(made["c2"]), "--out", str(f)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and str(f) in r.stderr
    assert f.read_text() == "mine"


@pytest.mark.parametrize("kw", [{"window_s": math.inf}, {"window_s": math.nan}, {"window_s": 0.0},
                                {"idle_timeout": math.inf}, {"max_flows": 99_999_999_999}, {"max_flows": 10},
                                {"local_nets": ("x",)}])
def test_settings_validate_in_the_library(kw: dict) -> None:
    with pytest.raises(SettingsError) as e:
        Settings(**kw).validate()
    assert isinstance(e.value, IotwatchError) and isinstance(e.value, ValueError)
    assert e.value.field == next(iter(kw))
    with pytest.raises(SettingsError):
        iotwatch.Pipeline(Settings(**kw))


def test_detect_settings_validate() -> None:
    for kw in ({"uplink_mbps": math.nan}, {"uplink_mbps": 0.0}, {"window_s": math.inf}):
        with pytest.raises(SettingsError):
            Detector(DetectSettings(model=None, **kw))


# library ------------------------------------------------------------------------------------------
def test_analyze_of_nothing_readable_raises(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pcap"
    junk.write_text("not a capture\n")
    with pytest.raises(InputError) as e:
        iotwatch.analyze(junk)
    assert str(junk) in str(e.value)


def test_detector_follows_the_run(made: dict[str, Path]) -> None:
    """DetectSettings without a window takes the run's; a different one is refused; the
    default model is the shipped one, as on the command line."""
    det = Detector(DetectSettings(uplink_mbps=4))
    a = iotwatch.analyze(made["exfil"], window=30, detect=det, identify=False)
    assert det.window_s == 30 and a.windows.column("window_s")[0].as_py() == 30
    from iotwatch.detect.model import default_model

    assert (det.settings.model is None) == (default_model() is None)
    with pytest.raises(SettingsError):
        iotwatch.analyze(made["exfil"], window=30, detect=Detector(DetectSettings(window_s=60)), identify=False)
    # the caller's detector and the default one (what the command line runs) judge alike
    mine = iotwatch.analyze(made["exfil"], window=30, detect=Detector(DetectSettings(uplink_mbps=4)), identify=False)
    default = iotwatch.analyze(made["exfil"], window=30, uplink_mbps=4, identify=False)
    assert [(x.signature, x.score) for x in mine.alerts] == [(x.signature, x.score) for x in default.alerts]
    assert mine.alerts


# flow events match docs/records.md field by field -------------------------------------------------
def test_flow_events_match_the_declaration(made: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "-m", "iotwatch", "analyze", str(made["c2"]), "--out", str(out), "--no-model",
                        "--flow-events", "-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    flows = {row["flow_id"]: row for row in pq.read_table(out / "flows.parquet").to_pylist()}
    fevents = [e for e in events if e["event_type"] == "flow"]
    assert len(fevents) == len(flows)
    kinds = {"int": int, "float": float, "string": str, "ISO-8601 string": str, "hex string": str}
    flag_bits = {"fin": 1, "syn": 2, "rst": 4, "psh": 8, "ack": 16, "urg": 32}
    seen_tcp = seen_other = False
    for e in fevents:
        row = flows[e["flow_id"]]
        tcp = row["proto"] == 6
        seen_tcp |= tcp
        seen_other |= not tcp
        declared = {f.path for f in FLOW_EVENT_FIELDS if tcp or not f.path.startswith("tcp.")}
        written = {k for k, v in e.items() if not isinstance(v, dict)} - {"event_type"}
        written |= {f"{k}.{s}" for k, v in e.items() if isinstance(v, dict) for s in v}
        assert written == declared
        for f in FLOW_EVENT_FIELDS:
            if f.path not in declared:
                continue
            head, _, tail = f.path.partition(".")
            v = e[head][tail] if tail else e[head]
            if f.json == "string or null":
                assert v is None or isinstance(v, str)
            else:
                assert isinstance(v, kinds[f.json]), (f.path, v)
            if f.column in row:
                want = iso(row[f.column]) if f.json == "ISO-8601 string" else row[f.column]
                assert v == pytest.approx(want, abs=1e-6) if f.json == "float" else v == want, (f.path, v, want)
        assert e["proto"] == {6: "TCP", 17: "UDP", 1: "ICMP", 58: "IPv6-ICMP"}.get(row["proto"], e["proto"])
        if tcp:
            ts = sum(b for k, b in flag_bits.items() if row[f"{k}_toserver"])
            tc = sum(b for k, b in flag_bits.items() if row[f"{k}_toclient"])
            assert (int(e["tcp"]["tcp_flags_ts"], 16), int(e["tcp"]["tcp_flags_tc"], 16)) == (ts, tc)
            assert int(e["tcp"]["tcp_flags"], 16) == ts | tc
    assert seen_tcp and seen_other
    text = records_markdown()
    for f in FLOW_EVENT_FIELDS:
        assert f"| `{f.path}` | {f.json} |" in text


@needs_shared
def test_dns_tunnel_names_are_a_marked_sample_with_the_exact_query_count() -> None:
    """iodine: 222 queries; the side channel read a sample of the names, and the alert says so."""
    a = iotwatch.analyze(SHARED_PCAPS / "ndpi_protocols" / "dns-tunnel-iodine.pcap",
                         detect=Detector(DetectSettings(model=None)), identify=False)
    (t,) = [x for x in a.alerts if x.category == "exfil"]
    assert t.evidence["dns_queries_sent"] == 222 and "unique_names" in t.evidence["lower_bounds"]
    assert t.signature.startswith("DNS tunnel: at least ") and "222 DNS queries" in t.signature


def test_devices_table_uses_the_analyze_words(made: dict[str, Path]) -> None:
    """`devices` and `analyze` say "sent"/"received" for all bytes; "uploaded" is only analyze's
    bytes to external addresses: one name, one meaning."""
    r = subprocess.run([sys.executable, "-m", "iotwatch", "devices", str(made["c2"])], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    header = next(x for x in r.stdout.splitlines() if "MAC" in x)
    assert "sent" in header and "received" in header and " up " not in header and "down" not in header
