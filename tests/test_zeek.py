"""Zeek conn.log out: Zeek's conn_state and history on crafted handshakes (the expectations are
Zeek's documented semantics and, where marked, the outputs in Zeek's own regression baseline),
IP bytes against the crafted packets, and conn.log files read back by zat (a maintained Zeek log
reader) with the same rows and values as flows.parquet, on generated and shared captures."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, shared_captures
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether

from iotwatch.capture.memory import frames_to_batch
from iotwatch.pipeline import Pipeline, Settings
from iotwatch.sinks import MemorySink

zat_log = pytest.importorskip("zat.log_to_dataframe", reason="zat (Zeek log reader) is in the test extra")
zat_json = pytest.importorskip("zat.json_log_to_dataframe")

C_MAC, S_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
C_IP, S_IP = "192.168.1.10", "93.184.216.34"


def _tcp(direction: str, flags: str, data: int = 0) -> bytes:
    if direction == "c":
        pkt = Ether(src=C_MAC, dst=S_MAC) / IP(src=C_IP, dst=S_IP) / TCP(sport=40000, dport=80, flags=flags)
    else:
        pkt = Ether(src=S_MAC, dst=C_MAC) / IP(src=S_IP, dst=C_IP) / TCP(sport=80, dport=40000, flags=flags)
    return bytes(pkt / (b"x" * data)) if data else bytes(pkt)


def flows_of(frames: list[bytes]) -> list[dict[str, object]]:
    pipe = Pipeline(Settings(), [sink := MemorySink()], threaded=False)
    pipe.feed(frames_to_batch([(1_700_000_000 + k * 0.01, f) for k, f in enumerate(frames)]))
    pipe.finish()
    return sink.flows.to_pylist()


# (packets as direction + TCP flags + payload, history, conn_state)
HANDSHAKES = {
    "attempt, no reply": ([("c", "S")], "S", "S0"),
    "full session": ([("c", "S"), ("s", "SA"), ("c", "A"), ("c", "PA", 100), ("s", "A"), ("s", "PA", 300), ("c", "A"),
                      ("c", "FA"), ("s", "FA"), ("c", "A")], "ShADadFf", "SF"),
    "established, open": ([("c", "S"), ("s", "SA"), ("c", "A")], "ShA", "S1"),
    "rejected": ([("c", "S"), ("s", "RA")], "Sr", "REJ"),
    "client closes, server silent": ([("c", "S"), ("s", "SA"), ("c", "A"), ("c", "FA")], "ShAF", "S2"),
    "server closes, client silent": ([("c", "S"), ("s", "SA"), ("c", "A"), ("s", "FA")], "ShAf", "S3"),
    "client aborts": ([("c", "S"), ("s", "SA"), ("c", "A"), ("c", "PA", 10), ("c", "RA")], "ShADR", "RSTO"),
    "half-open scanner": ([("c", "S"), ("s", "SA"), ("c", "R")], "ShR", "RSTO"),
    "server resets": ([("c", "S"), ("s", "SA"), ("c", "A"), ("c", "PA", 10), ("s", "RA")], "ShADr", "RSTR"),
    "SYN then FIN": ([("c", "S"), ("c", "F")], "SF", "SH"),
    "midstream both ways": ([("c", "PA", 50), ("s", "PA", 60)], "Dd", "OTH"),
    "midstream, server resets": ([("c", "PA", 50), ("s", "R")], "Dr", "RSTRH"),
    "midstream, server closes": ([("c", "A"), ("s", "FA")], "Af", "SHR"),
    "FIN then RST close": ([("c", "S"), ("s", "SA"), ("c", "A"), ("c", "FA"), ("s", "FA"), ("c", "R")], "ShAFfR", "SF"),
    # the four cases of Zeek's btest scripts/base/protocols/conn/conn_state-RST-behavior (its baseline:
    # "R, OTH", "SR, RSTOS0", "SaR, RSTOS0", "SaFR, OTH")
    "zeek single-rst": ([("c", "R")], "R", "OTH"),
    "zeek syn-then-rst": ([("c", "S"), ("c", "R")], "SR", "RSTOS0"),
    "zeek syn-then-ack-then-rst": ([("c", "S"), ("s", "A"), ("c", "R")], "SaR", "RSTOS0"),
    "zeek syn-then-stuff-then-rst": ([("c", "S"), ("s", "A"), ("c", "F"), ("c", "R")], "SaFR", "OTH"),
}


@pytest.mark.parametrize("case", sorted(HANDSHAKES))
def test_conn_state_and_history_follow_zeek(case: str) -> None:
    packets, history, state = HANDSHAKES[case]
    (flow,) = flows_of([_tcp(*p) for p in packets])  # type: ignore[arg-type]
    assert (flow["history"], flow["conn_state"]) == (history, state)


def test_udp_icmp_states_and_ip_bytes() -> None:
    q = Ether(src=C_MAC, dst=S_MAC) / IP(src=C_IP, dst="8.8.8.8") / UDP(sport=5353, dport=53) / (b"q" * 30)
    a = Ether(src=S_MAC, dst=C_MAC) / IP(src="8.8.8.8", dst=C_IP) / UDP(sport=53, dport=5353) / (b"a" * 70)
    lone = Ether(src=C_MAC, dst=S_MAC) / IP(src=C_IP, dst="8.8.4.4") / UDP(sport=5000, dport=9999) / b"z"
    ping = Ether(src=C_MAC, dst=S_MAC) / IP(src=C_IP, dst="1.1.1.1") / ICMP(type=8) / (b"p" * 56)
    padded = bytes(lone) + bytes(60 - len(lone))  # as a switch pads a short frame
    flows = {f["dest_ip"]: f for f in flows_of([bytes(q), bytes(a), padded, bytes(ping)])}
    assert (flows["8.8.8.8"]["history"], flows["8.8.8.8"]["conn_state"]) == ("Dd", "SF")
    assert (flows["8.8.4.4"]["history"], flows["8.8.4.4"]["conn_state"]) == ("D", "S0")
    assert (flows["1.1.1.1"]["history"], flows["1.1.1.1"]["conn_state"]) == ("", "OTH")
    # IP bytes are the IP headers' lengths, without Ethernet header or padding (the lone datagram's
    # frame is padded to 60 bytes)
    assert flows["8.8.8.8"]["ip_bytes_toserver"] == len(q[IP]) and flows["8.8.8.8"]["ip_bytes_toclient"] == len(a[IP])
    assert flows["8.8.4.4"]["ip_bytes_toserver"] == len(lone[IP]) == 29
    assert flows["8.8.4.4"]["bytes_toserver"] == 60


def iotwatch(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "iotwatch", *map(str, args)], capture_output=True, text=True,
                          timeout=600, check=False)


def check_against_flows(out: Path, fmt: str) -> int:
    """conn.log read by zat: one row per flow of flows.parquet, with the same values."""
    flows = pq.read_table(out / "flows.parquet").to_pandas()
    if fmt == "tsv":
        df = zat_log.LogToDataFrame().create_dataframe(str(out / "conn.log"), ts_index=False)
    else:
        df = zat_json.JSONLogToDataFrame().create_dataframe(str(out / "conn.log"), ts_index=False)
    assert len(df) == len(flows)
    if not len(df):
        return 0
    df = df.reset_index(drop=True)
    fl = flows.reset_index(drop=True)
    ts = df["ts"].astype("int64").to_numpy() / 1e9 if str(df["ts"].dtype).startswith("datetime") else df["ts"].to_numpy()
    assert np.allclose(ts, fl["start"].to_numpy(), atol=1e-6, rtol=0)
    assert (df["id.orig_h"].astype(str).to_numpy() == fl["src_ip"].to_numpy()).all()
    assert (df["id.resp_h"].astype(str).to_numpy() == fl["dest_ip"].to_numpy()).all()
    assert (df["id.orig_p"].astype(int).to_numpy() == fl["src_port"].to_numpy()).all()
    assert (df["id.resp_p"].astype(int).to_numpy() == fl["dest_port"].to_numpy()).all()
    for z, ours in (("orig_pkts", "pkts_toserver"), ("resp_pkts", "pkts_toclient"), ("orig_ip_bytes", "ip_bytes_toserver"),
                    ("resp_ip_bytes", "ip_bytes_toclient")):
        assert (df[z].astype("int64").to_numpy() == fl[ours].to_numpy().astype("int64")).all(), z
    assert (df["conn_state"].astype(str).to_numpy() == fl["conn_state"].astype(str).to_numpy()).all()
    hist = df["history"].astype(object).where(df["history"].notna(), "").astype(str).to_numpy()
    assert (hist == fl["history"].to_numpy()).all()
    assert (df["community_id"].astype(str).to_numpy() == fl["community_id"].to_numpy()).all()
    lasted = (fl["end"] - fl["start"]).to_numpy() > 0
    assert (df["orig_bytes"].notna().to_numpy() == lasted).all()
    assert (df["orig_bytes"][lasted].astype("int64").to_numpy() == fl["payload_toserver"][lasted].to_numpy().astype("int64")).all()
    assert (df["resp_bytes"][lasted].astype("int64").to_numpy() == fl["payload_toclient"][lasted].to_numpy().astype("int64")).all()
    proto = df["proto"].astype(str).to_numpy()
    assert (proto[fl["proto"].to_numpy() == 6] == "tcp").all() and (proto[fl["proto"].to_numpy() == 17] == "udp").all()
    assert df["uid"].nunique() == len(df)
    return len(df)


@pytest.mark.parametrize("fmt", ["tsv", "json"])
def test_conn_log_of_generated_incident_reads_back(tmp_path: Path, fmt: str) -> None:
    cap = tmp_path / "hospital.pcap"
    r = iotwatch("synth", "hospital", "--duration", "120", "--quiet", "40", "--seed", "11", "--out", cap)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    r = iotwatch("analyze", cap, "--out", out, "--zeek", fmt, "--no-model", "--quiet")
    assert r.returncode == 0, r.stderr
    text = (out / "conn.log").read_text()
    if fmt == "tsv":
        head = text.splitlines()[:8]
        assert [h.split("\t")[0].split(" ")[0] for h in head] == ["#separator", "#set_separator", "#empty_field",
                                                                    "#unset_field", "#path", "#open", "#fields", "#types"]
        assert text.splitlines()[-1].startswith("#close\t")
    assert check_against_flows(out, fmt) > 1000


def test_zeek_option_rejects_other_formats(tmp_path: Path) -> None:
    r = iotwatch("analyze", ROOT / "pcaps" / "demo-office.pcap", "--out", tmp_path, "--zeek", "csv")
    assert r.returncode == 2 and "--zeek" in r.stderr


def test_conn_log_of_shared_captures_reads_back(tmp_path: Path) -> None:
    caps = shared_captures()
    if not caps:
        pytest.skip("../shared/pcaps is absent (real captures not available)")
    sample = sorted(random.Random(15).sample(caps, 12), key=lambda p: p.stat().st_size)
    rows = 0
    for k, cap in enumerate(sample):
        out = tmp_path / f"o{k}"
        r = iotwatch("analyze", cap, "--out", out, "--zeek", "tsv", "--no-model", "--quiet")
        assert r.returncode in (0, 3), r.stderr
        rows += check_against_flows(out, "tsv")
    assert rows > 0
