"""``iotwatch synth``: deterministic, well-formed captures whose labelled hosts show their behaviour
in the device windows, and only they."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_PCAPS, TSHARK, needs_shared, needs_tshark
from scapy.layers.inet import IP, TCP
from scapy.utils import RawPcapReader

import iotwatch
from iotwatch.learn.labels import COLUMNS, read_rows
from iotwatch.synth import Options, generate, inject
from iotwatch.synth.mirai import VECTORS

YI = SHARED_PCAPS / "monitr_yi_camera" / "yi_camera_sample.pcap"
YI_CAMERA = "b0:d5:9d:b9:f0:b4"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Short versions of every scenario (the hospital with a 120 s quiet baseline)."""
    d = tmp_path_factory.mktemp("synth")
    out = {}
    for name, opts in {
        "site": Options("site", seed=11, duration=60),
        "hospital": Options("hospital", seed=12, duration=300, quiet=120),
        "scan": Options("scan", seed=13, duration=120, quiet=60),
        "bruteforce": Options("bruteforce", seed=14, duration=120, quiet=60),
        "exfil": Options("exfil", seed=15, duration=180, quiet=60),
        "c2": Options("c2", seed=16, duration=150, quiet=30),
        **{f"flood-{v}": Options("flood", seed=17, duration=60, quiet=30, vector=v) for v in VECTORS},
    }.items():
        out[name] = generate(opts, d / f"{name}.pcap").pcap
    return out


def labels(pcap: Path) -> list[dict[str, str]]:
    return read_rows(pcap.with_name(pcap.stem + ".labels.tsv"))


def windows(pcap: Path) -> dict[str, list[dict[str, float]]]:
    a = iotwatch.analyze(pcap, window=60)
    by: dict[str, list[dict[str, float]]] = {}
    for r in a.windows.to_pylist():
        by.setdefault(r["device"], []).append(r)
    return by


def bad_rows(pcap: Path, behaviour: str) -> list[dict[str, str]]:
    return [r for r in labels(pcap) if r["behaviour"] == behaviour]


def during(rows: list[dict[str, float]], first: float, last: float) -> list[dict[str, float]]:
    """Windows lying inside [first, last] (to a second)."""
    return [w for w in rows if w["window_start"] >= first - 1 and w["window_start"] + w["window_s"] <= last + 1]


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = generate(Options("hospital", seed=3, duration=40, quiet=20), tmp_path / "a.pcap")
    b = generate(Options("hospital", seed=3, duration=40, quiet=20), tmp_path / "b.pcap")
    c = generate(Options("hospital", seed=4, duration=40, quiet=20), tmp_path / "c.pcap")
    assert a.pcap.read_bytes() == b.pcap.read_bytes()
    assert a.labels_file.read_text() == b.labels_file.read_text().replace("b.pcap", "a.pcap")
    assert a.pcap.read_bytes() != c.pcap.read_bytes()


def test_labels_have_the_shared_columns_plus_end_ts(made: dict[str, Path]) -> None:
    shared = SHARED_PCAPS / "LABELS.tsv"
    header = COLUMNS
    if shared.exists():
        assert (*shared.read_text().splitlines()[0].split("\t"), "end_ts") == header
    for pcap in made.values():
        rows = labels(pcap)
        assert rows and all(tuple(r) == header and r["split"] == "synthetic" for r in rows)
        for r in rows:
            if r["behaviour"] in ("normal", "victim"):
                assert r["first_bad_ts"] == "" and r["end_ts"] == ""
            else:
                assert float(r["first_bad_ts"]) <= float(r["end_ts"])
    site = labels(made["site"])
    assert {r["behaviour"] for r in site} == {"normal"}
    assert {r["device_type"] for r in site} >= {"camera", "recorder", "router", "computer", "phone", "printer"}


def test_first_bad_ts_is_the_first_packet_of_the_behaviour(made: dict[str, Path]) -> None:
    pcap = made["scan"]
    row = bad_rows(pcap, "scan")[0]
    first = None
    for raw, meta in RawPcapReader(str(pcap)):
        pkt = IP(raw[14:])
        if pkt.src == row["host_ip"] and pkt.haslayer(TCP) and pkt[TCP].flags == "S" and pkt[TCP].dport in (23, 2323):
            first = meta.sec + meta.usec / 1e6
            break
    assert first == pytest.approx(float(row["first_bad_ts"]), abs=1e-6)


def test_hospital_recorder_scans_bruteforces_beacons_and_fills_the_uplink(made: dict[str, Path]) -> None:
    pcap = made["hospital"]
    rows = labels(pcap)
    bad = {r["behaviour"]: r for r in rows if r["behaviour"] not in ("normal", "victim")}
    assert set(bad) == {"scan", "bruteforce", "c2", "exfil"}
    mac = bad["scan"]["host_mac"]
    assert bad["scan"]["device_type"] == "recorder"
    assert all(r["host_mac"] == mac for r in bad.values())
    assert any(r["behaviour"] == "victim" for r in rows)
    w = windows(pcap)
    rec = w[mac]
    t_bad = min(float(r["first_bad_ts"]) for r in bad.values())
    quiet = [x for x in rec if x["window_start"] + x["window_s"] <= t_bad]
    assert len(quiet) >= 2  # a quiet baseline of two minutes
    assert all(x["dst_ips"] < 20 and x["auth_attempts"] == 0 for x in quiet)
    base = np.median([x["upload_bytes"] for x in quiet])
    assert 0 < base < 20_000
    surge = during(rec, float(bad["exfil"]["first_bad_ts"]) + 15, float(bad["exfil"]["end_ts"]))
    assert surge
    for x in surge:
        assert x["upload_bytes"] > 1000 * base  # thousands of times its own baseline
        assert x["upload_bytes"] * 8 / 60 > 0.85 * 10e6  # most of the 10 Mbit/s uplink
        assert x["upload_share"] > 0.95
    scan = during(rec, float(bad["scan"]["first_bad_ts"]), float(bad["scan"]["end_ts"]))
    for x in scan:
        assert x["dst_ips"] > 5000 and x["failed_handshake_ratio"] > 0.98 and x["auth_attempts"] > 5000
    # nobody else shows any of it
    for dev, ws in w.items():
        if dev == mac:
            continue
        assert max(x["auth_attempts"] for x in ws) == 0, dev
        assert max(x["failed_handshake_ratio"] for x in ws) < 0.5, dev
        assert max(x["upload_bytes"] for x in ws) < 1e6, dev


def test_scanner_syns_carry_the_mirai_signature(made: dict[str, Path]) -> None:
    pcap = made["scan"]
    row = bad_rows(pcap, "scan")[0]
    syns = []
    for raw, _ in RawPcapReader(str(pcap)):
        pkt = IP(raw[14:])
        if pkt.src == row["host_ip"] and pkt.haslayer(TCP) and pkt[TCP].flags == "S" and pkt[TCP].dport in (23, 2323):
            syns.append(pkt)
        if len(syns) == 2000:
            break
    assert len(syns) == 2000
    assert all(p.ttl == 64 and p[TCP].seq == int.from_bytes(bytes(map(int, p.dst.split("."))), "big")
               and not p[TCP].options for p in syns)
    share_2323 = sum(p[TCP].dport == 2323 for p in syns) / len(syns)
    assert 0.09 <= share_2323 <= 0.11
    assert len({p.id for p in syns}) > 1900 and len({p[TCP].window for p in syns}) > 1900
    first_octets = {int(p.dst.split(".")[0]) for p in syns}
    assert not first_octets & {0, 10, 127} and max(first_octets) < 224
    w = windows(pcap)[row["host_mac"]]
    full = during(w, float(row["first_bad_ts"]), float(row["end_ts"]))
    assert full and all(x["dst_ips"] > 5000 and x["failed_handshake_ratio"] > 0.98 for x in full)


def test_bruteforce_is_many_short_telnet_sessions(made: dict[str, Path]) -> None:
    pcap = made["bruteforce"]
    row = bad_rows(pcap, "bruteforce")[0]
    victims = {r["host_ip"] for r in labels(pcap) if r["behaviour"] == "victim"}
    a = iotwatch.analyze(pcap, window=60)
    telnet = [f for f in a.flows.to_pylist() if f["dest_port"] == 23 and f["src_ip"] == row["host_ip"]]
    assert len(telnet) >= 10 and {f["dest_ip"] for f in telnet} == victims
    assert all(f["state"] == "closed" and f["end"] - f["start"] < 10 for f in telnet)
    assert sum(x["auth_attempts"] for x in windows(pcap)[row["host_mac"]]) == len(telnet)
    # the report to the report server on TCP 48101
    assert any(f["dest_port"] == 48101 and f["src_ip"] == row["host_ip"] for f in a.flows.to_pylist())


def test_c2_is_one_long_connection_to_port_23(made: dict[str, Path]) -> None:
    pcap = made["c2"]
    row = bad_rows(pcap, "c2")[0]
    a = iotwatch.analyze(pcap, window=60)
    c2 = [f for f in a.flows.to_pylist() if f["dest_port"] == 23 and f["src_ip"] == row["host_ip"]]
    assert len(c2) == 1 and c2[0]["pkts_toserver"] >= 6
    assert c2[0]["start"] >= float(row["first_bad_ts"])


@pytest.mark.parametrize("vector", VECTORS)
def test_flood_vectors(made: dict[str, Path], vector: str) -> None:
    pcap = made[f"flood-{vector}"]
    row = bad_rows(pcap, "flood")[0]
    w = windows(pcap)
    # the first 60 s window: 30 s quiet, then 30 s of flood (answers may spill into the next)
    x = min(w[row["host_mac"]], key=lambda r: r["window_start"])
    if vector == "dns":
        assert x["dns_queries"] > 5_000 and x["upload_bytes"] < 100_000  # to the LAN resolver
    elif vector == "http":
        assert x["syn_flows"] > 300 and x["dst_ips"] <= 3
    else:
        assert x["packets_out"] > 30_000 and x["dst_ips"] <= 3
    for dev, ws in w.items():
        if dev != row["host_mac"]:
            assert max(x["dns_queries"] for x in ws) < 200 and max(x["syn_flows"] for x in ws) < 200, dev


def test_site_has_no_misbehaviour(made: dict[str, Path]) -> None:
    for dev, ws in windows(made["site"]).items():
        for x in ws:
            assert x["auth_attempts"] == 0 and x["dst_ips"] < 50 and x["upload_bytes"] < 2e6, dev


@needs_tshark
def test_tshark_reads_everything_cleanly(made: dict[str, Path], tmp_path: Path) -> None:
    assert TSHARK is not None
    # random-port floods (udp, vse, ack) make port-based dissectors decode the random payload as
    # whatever protocol owns the port, and complain: they are left out; the long hospital and
    # exfil captures are replaced by a short hospital
    skip = {"hospital", "exfil", "flood-udp", "flood-vse", "flood-ack"}
    files = {k: v for k, v in made.items() if k not in skip}
    files["hospital"] = generate(Options("hospital", seed=9, duration=40, quiet=15), tmp_path / "h.pcap").pcap
    for name, pcap in files.items():
        r = subprocess.run([TSHARK, "-r", str(pcap), "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
                            "-o", "udp.check_checksum:TRUE", "-Y",
                            "_ws.malformed || ip.checksum.status == 0 || tcp.checksum.status == 0 "
                            "|| udp.checksum.status == 0", "-T", "fields", "-e", "frame.protocols"],
                           capture_output=True, text=True, check=True)
        assert r.stdout.split() == [], name


@needs_shared
def test_inject_into_a_real_camera_capture(tmp_path: Path) -> None:
    out = tmp_path / "yi.pcap"
    r = inject(Options("hospital", seed=5, duration=20), YI, YI_CAMERA, out)
    real = list(RawPcapReader(str(YI)))
    got = list(RawPcapReader(str(out)))
    assert len(got) == r.packets > len(real)
    stamps = [m.sec + m.usec / 1e6 for _, m in got]
    assert stamps == sorted(stamps)
    real_frames = {bytes(b) for b, _ in real}
    assert real_frames <= {bytes(b) for b, _ in got}  # every real frame kept as it was
    rows = labels(out)
    bad = [x for x in rows if x["behaviour"] not in ("normal", "victim")]
    assert {x["behaviour"] for x in bad} == {"scan", "bruteforce", "c2", "exfil"}
    assert all(x["host_mac"] == YI_CAMERA and x["host_ip"] == "192.168.10.204" for x in bad)
    first_real = min(m.sec + m.usec / 1e6 for _, m in real)
    assert min(float(x["first_bad_ts"]) for x in bad) >= first_real + 10  # after a quiet part
    a = iotwatch.analyze(out, window=60)
    cam = [x for x in a.windows.to_pylist() if x["device"] == YI_CAMERA]
    assert sum(x["auth_attempts"] for x in cam) > 1000 and max(x["dst_ips"] for x in cam) > 1000
    # the injected packets go through the camera's real gateway MAC
    phone = [x for x in a.windows.to_pylist() if x["device"] == "64:bc:0c:6a:81:f3"]
    assert phone and max(x["auth_attempts"] for x in phone) == 0


def test_cli(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "iotwatch", "synth", *args], capture_output=True, text=True,
                              check=False)

    ok = run("flood", "--vector", "vse", "--duration", "30", "--seed", "2", "--out", str(tmp_path / "f.pcap"))
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "f.labels.tsv").exists() and "flood" in ok.stdout
    for args, code in ((("nope", "--out", str(tmp_path / "x.pcap")), 2),
                       (("flood", "--vector", "smurf", "--out", str(tmp_path / "x.pcap")), 2),
                       (("scan", "--inject", str(tmp_path / "missing.pcap"), "--host", "10.0.0.1",
                         "--out", str(tmp_path / "x.pcap")), 1),
                       (("scan", "--inject", str(tmp_path / "f.pcap"), "--out", str(tmp_path / "x.pcap")), 2)):
        r = run(*args)
        assert r.returncode == code, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
