"""Zeek conn.log as input: a conn.log written by iotwatch, read back by `analyze`, rebuilds the
same flows (counts, bytes, history, conn_state) and device totals, and raises the hospital
recorder's scan, brute force and exfil alerts; IoT-23's labeled format, gzip, folders and
damaged lines."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import CHECK_EVENTS

from iotwatch.zeek.read import read_conn_log


def iotwatch(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "iotwatch", *map(str, args)], capture_output=True, text=True,
                          timeout=600, check=False)


def alerts(out: Path) -> list[dict[str, object]]:
    with open(out / "events.jsonl") as f:
        return [e for e in map(json.loads, f) if e["event_type"] == "alert"]


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A generated hospital incident, analysed from packets with --zeek tsv and --zeek json."""
    tmp = tmp_path_factory.mktemp("hospital")
    cap = tmp / "hospital.pcap"
    r = iotwatch("synth", "hospital", "--duration", "150", "--quiet", "60", "--seed", "23", "--uplink-mbps", "2",
                 "--out", cap)
    assert r.returncode == 0, r.stderr
    paths = {"pcap": cap, "labels": tmp / "hospital.labels.tsv"}
    for fmt in ("tsv", "json"):
        out = tmp / f"from-pcap-{fmt}"
        r = iotwatch("analyze", cap, "--out", out, "--zeek", fmt, "--uplink-mbps", "2", "--quiet")
        assert r.returncode == 0, r.stderr
        paths[fmt] = out
    return paths


def recorder_ip(labels: Path) -> str:
    with open(labels, newline="") as f:
        bad = {r["host_ip"] for r in csv.DictReader(f, delimiter="\t") if r["behaviour"] not in ("normal", "victim")}
    assert len(bad) == 1
    return bad.pop()


def match_flows(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Flows of two runs paired by Community ID and first-packet time (to the microsecond)."""
    a = a.assign(us=np.round(a["start"].to_numpy() * 1e6).astype(np.int64)).sort_values("us")
    b = b.assign(us=np.round(b["start"].to_numpy() * 1e6).astype(np.int64)).sort_values("us")
    return pd.merge_asof(a, b, on="us", by="community_id", tolerance=2, direction="nearest", suffixes=("_p", "_z"))


@pytest.mark.parametrize("fmt", ["tsv", "json"])
def test_conn_log_of_hospital_raises_the_recorders_alerts(hospital: dict[str, Path], tmp_path: Path, fmt: str) -> None:
    log = hospital[fmt] / "conn.log"
    if fmt == "json":  # and gzipped
        with open(log, "rb") as src, gzip.open(tmp_path / "conn.log.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        log = tmp_path / "conn.log.gz"
    out = tmp_path / "out"
    r = iotwatch("analyze", log, "--out", out, "--uplink-mbps", "2")
    assert r.returncode == 0, r.stderr
    if CHECK_EVENTS.exists():
        chk = subprocess.run([sys.executable, str(CHECK_EVENTS), str(out)], capture_output=True, text=True, check=False)
        assert chk.returncode == 0, chk.stdout
    rec = recorder_ip(hospital["labels"])
    got = alerts(out)
    assert {a["alert"]["category"] for a in got if a["src_ip"] == rec} >= {"scan", "bruteforce", "exfil"}  # type: ignore[index]
    assert all(a["src_ip"] == rec for a in got), "an alert on a healthy device"
    first = got[0]["evidence"]["first_packet"]  # type: ignore[index]
    assert first["file"] == str(log) and first["line"] > 8 and first["uid"].startswith("C")  # type: ignore[index]
    # devices are IP addresses, with no MAC
    devices = [json.loads(x) for x in open(out / "events.jsonl") if '"event_type":"device"' in x]
    assert rec in {ip for d in devices for ip in d["ips"]}
    assert all(d["mac"] is None for d in devices)


def test_conn_log_rebuilds_the_same_flows_and_device_totals(hospital: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = iotwatch("analyze", hospital["tsv"] / "conn.log", "--out", out, "--uplink-mbps", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    a = pq.read_table(hospital["tsv"] / "flows.parquet").to_pandas()
    b = pq.read_table(out / "flows.parquet").to_pandas()
    assert len(a) == len(b)
    m = match_flows(a, b)
    assert m["src_ip_z"].notna().all()
    for col in ("src_ip", "dest_ip", "src_port", "dest_port", "proto", "pkts_toserver", "pkts_toclient",
                "ip_bytes_toserver", "ip_bytes_toclient", "payload_toserver", "payload_toclient", "history", "conn_state",
                "state"):
        assert (m[f"{col}_p"].astype(str) == m[f"{col}_z"].astype(str)).all(), col
    # a device's traffic from the conn.log is its flows' IP bytes
    rec = recorder_ip(hospital["labels"])
    sent = int(a.loc[a.src_ip == rec, "ip_bytes_toserver"].sum() + a.loc[a.dest_ip == rec, "ip_bytes_toclient"].sum())
    dev = next(json.loads(x) for x in open(out / "events.jsonl") if '"event_type":"device"' in x and f'"{rec}"' in x)
    assert dev["bytes_out"] == sent
    w = pq.read_table(out / "windows.parquet").to_pandas()
    assert int(w.loc[w.device == rec, "bytes_out"].sum()) == sent


IOT23 = """#separator \\x09
#set_separator\t,
#empty_field\t(empty)
#unset_field\t-
#path\tconn
#open\t2018-05-09-15-30-31
#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents   label   detailed-label
#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]   string   string
1525879831.015811\tCUmrqr4svHuSXJy5z7\t192.168.100.103\t51524\t65.127.233.163\t23\ttcp\t-\t2.999051\t0\t0\tS0\t-\t-\t0\tS\t3\t180\t0\t0\t-   Malicious   PartOfAHorizontalPortScan
1525879831.025055\tCH98aB3s1kJeq6SFOc\t192.168.100.103\t56305\t63.150.16.171\t23\ttcp\t-\t-\t-\t-\tS0\t-\t-\t0\tS\t1\t60\t0\t0\t-   Malicious   PartOfAHorizontalPortScan
1525879832.000000\tC3c2Bf1w1Hzz3Pd0Ti\t192.168.100.103\t41000\t8.8.8.8\t53\tudp\tdns\t0.020000\t40\t120\tSF\t-\t-\t0\tDd\t1\t68\t1\t148\t-   Benign   -
bad line
1525879833.000000\tC9x\tnot-an-address\t1\t8.8.8.8\t53\tudp\t-\t-\t-\t-\tS0\t-\t-\t0\tD\t1\t60\t0\t0\t-   Benign   -
#close\t2018-05-10-15-30-31
"""


def test_iot23_labeled_conn_log_is_read_with_its_labels(tmp_path: Path) -> None:
    path = tmp_path / "conn.log.labeled"
    path.write_text(IOT23)
    log = read_conn_log(path)
    t = log.table.to_pylist()
    assert [r["detailed_label"] for r in t] == ["PartOfAHorizontalPortScan", "PartOfAHorizontalPortScan", None]
    assert [r["label"] for r in t] == ["Malicious", "Malicious", "Benign"]
    assert [r["line"] for r in t] == [9, 10, 11]
    assert t[0]["orig_pkts"] == 3 and t[1]["duration"] is None and t[2]["resp_ip_bytes"] == 148
    assert log.skipped == 2 and len(log.problems) == 2
    assert any("line 13" in str(p) for p in log.problems)
    # analyze reports the skipped lines in one line each, keeps the rest, exits 3
    out = tmp_path / "out"
    r = iotwatch("analyze", tmp_path, "--out", out, "--quiet", "--no-model")
    assert r.returncode == 3, r.stderr
    assert all(line.startswith("iotwatch: ") and str(path) in line for line in r.stderr.strip().splitlines())
    flows = pq.read_table(out / "flows.parquet").to_pandas()
    assert len(flows) == 3 and flows["pkts_toserver"].tolist() == [3, 1, 1]
    assert flows["history"].tolist() == ["S", "S", "Dd"]


def test_inputs_that_are_not_conn_logs(tmp_path: Path) -> None:
    dns = tmp_path / "dns.log"
    dns.write_text(IOT23.replace("#path\tconn", "#path\tdns"))
    r = iotwatch("analyze", dns, "--out", tmp_path / "o1", "--quiet")
    assert r.returncode == 1 and "not a conn.log" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    conn = tmp_path / "conn.log"
    conn.write_text(IOT23)
    demo = Path(__file__).resolve().parents[1] / "pcaps" / "demo-office.pcap"
    r = iotwatch("analyze", conn, demo, "--out", tmp_path / "o2", "--quiet")
    assert r.returncode == 2 and "not both" in r.stderr


IOT23_NAMES = {"scan": "PartOfAHorizontalPortScan", "bruteforce": "Attack", "c2": "C&C"}


def iot23_labeled(conn_log: Path, labels: Path, dst: Path) -> None:
    """An IoT-23-style conn.log.labeled (label columns after three spaces, as IoT-23 publishes
    them) from an iotwatch conn.log and the scenario's label file: the bad host's connections get
    IoT-23's detailed labels (its upload has none: IoT-23 has no exfiltration label)."""
    import re

    with open(labels, newline="") as f:
        bad = [r for r in csv.DictReader(f, delimiter="\t") if r["behaviour"] in IOT23_NAMES]
    host = bad[0]["host_ip"]
    c2_peer = next(re.search(r"to ([0-9.]+):", r["evidence"]).group(1) for r in bad if r["behaviour"] == "c2")  # type: ignore[union-attr]
    lines = []
    for line in conn_log.read_text().splitlines():
        if line.startswith("#fields"):
            line += "   label   detailed-label"
        elif line.startswith("#types"):
            line += "   string   string"
        elif not line.startswith("#"):
            f = line.split("\t")
            kind = "-"
            if f[2] == host and f[4] == c2_peer:
                kind = "c2"
            elif f[2] == host and f[11] in ("S0", "REJ") and f[5] in ("23", "2323"):
                kind = "scan"
            elif f[2] == host and f[5] in ("23", "2323") and "D" in f[15]:
                kind = "bruteforce"
            line += "   Malicious   " + IOT23_NAMES[kind] if kind != "-" else "   Benign   -"
        lines.append(line)
    dst.write_text("\n".join(lines) + "\n")


def test_train_and_evaluate_read_iot23_labels(hospital: dict[str, Path], tmp_path: Path) -> None:
    from iotwatch.learn.labels import read_labels

    labeled = tmp_path / "CTU-IoT-like" / "conn.log.labeled"
    labeled.parent.mkdir()
    iot23_labeled(hospital["tsv"] / "conn.log", hospital["labels"], labeled)
    rec = recorder_ip(hospital["labels"])
    labs = read_labels(labeled)
    assert {lab.behaviour for lab in labs if lab.host_ip == rec} == {"scan", "bruteforce", "c2"}
    assert all(lab.behaviour == "normal" for lab in labs if lab.host_ip != rec)
    assert all(lab.capture == labeled and lab.first_ts is not None for lab in labs if lab.bad)
    scan = next(lab for lab in labs if lab.behaviour == "scan")
    truth = next(r for r in csv.DictReader(open(hospital["labels"], newline=""), delimiter="\t") if r["behaviour"] == "scan")
    assert abs(scan.first_ts - float(truth["first_bad_ts"])) < 1e-3  # type: ignore[operator]
    report = tmp_path / "report.md"
    r = iotwatch("evaluate", "--model", Path(__file__).resolve().parents[1] / "models" / "behaviour", labeled,
                 "--report", report)
    assert r.returncode == 0, r.stderr
    text = report.read_text()
    assert "conn.log.labeled" in text
    missed = text.split("Missed:")[1].split("\n\n")[1].splitlines() if "Missed:" in text else []
    # scan and brute force are caught from the conn.log; the Mirai C2 (recognised by its payload) is not
    assert {line.split()[3] for line in missed} <= {"c2"}
    r = iotwatch("train", labeled, "--out", tmp_path / "model")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "model" / "manifest.json").exists()


def test_json_conn_log_with_a_damaged_line(tmp_path: Path) -> None:
    rows = [{"ts": 1700000000.5 + k, "uid": f"C{k}", "id.orig_h": "10.0.0.5", "id.orig_p": 40000 + k,
             "id.resp_h": "10.0.0.9", "id.resp_p": 23, "proto": "tcp", "duration": 0.5, "orig_bytes": 10,
             "resp_bytes": 20, "conn_state": "SF", "history": "ShADadFf", "orig_pkts": 6, "orig_ip_bytes": 250,
             "resp_pkts": 5, "resp_ip_bytes": 260} for k in range(4)]
    lines = [json.dumps(r) for r in rows]
    lines.insert(2, '{"ts": 1700000002.0, "id.orig_h": "10.0.0.5", "id.orig_p"')  # cut off
    path = tmp_path / "conn.json.log"
    path.write_text("\n".join(lines) + "\n")
    log = read_conn_log(path)
    assert log.table["line"].to_pylist() == [1, 2, 4, 5] and log.skipped == 1
    out = tmp_path / "out"
    r = iotwatch("analyze", path, "--out", out, "--quiet", "--no-model")
    assert r.returncode == 3 and str(path) in r.stderr
    flows = pq.read_table(out / "flows.parquet").to_pandas()
    assert len(flows) == 4 and set(flows["history"]) == {"ShADadFf"} and set(flows["conn_state"]) == {"SF"}
    assert flows["ip_bytes_toserver"].tolist() == [250] * 4 and flows["payload_toclient"].tolist() == [20] * 4


def test_replay_in_steps_gives_the_same_packets(hospital: dict[str, Path]) -> None:
    """Rows are rebuilt a step at a time (32,768 by default): any step size gives the same packets in the same order."""
    import pyarrow as pa

    from iotwatch.zeek.replay import connections, packets

    t = read_conn_log(hospital["tsv"] / "conn.log").table
    conns, keep = connections(t)
    assert keep.all()

    def stream(step: int) -> tuple[np.ndarray, np.ndarray]:
        chunks = list(packets(conns, rows_per_step=step))
        rec = np.concatenate([c.packets.rec for c in chunks])
        return rec, np.concatenate([c.ts_ns for c in chunks])

    whole, ts_whole = stream(len(conns) + 1)
    for step in (1000, 4097):
        rec, ts = stream(step)
        assert (ts == ts_whole).all() and (np.diff(ts) >= 0).all()
        assert all((rec[f] == whole[f]).all() for f in whole.dtype.names)  # every field (not the padding)
    assert len(whole) == int(pa.compute.sum(t["orig_pkts"]).as_py() + pa.compute.sum(t["resp_pkts"]).as_py())


def test_a_conn_log_has_no_lookups_so_no_cloud_is_reached_without_one(tmp_path: Path) -> None:
    """A conn.log carries no DNS questions: from it, every device's cloud first reached after
    start-up looked "reached without a lookup", a second trait beside "new destination", and the
    c2 view called normal devices C2. From the conn.log the normal hosts raise nothing (as from
    the packets), and the controller's call-backs (its own traits) are still seen from the packets."""
    cap = tmp_path / "localc2.pcap"
    r = iotwatch("synth", "localc2", "--duration", "540", "--seed", "1002", "--uplink-mbps", "4", "--out", cap)
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "localc2.labels.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    normal = {r["host_ip"] for r in rows if r["behaviour"] in ("normal", "victim") and r["host_ip"]}
    bad = {r["host_ip"] for r in rows if r["behaviour"] == "c2"}
    assert normal and bad
    r = iotwatch("analyze", cap, "--out", tmp_path / "pkt", "--zeek", "tsv", "--quiet")
    assert r.returncode == 0, r.stderr
    from_packets = alerts(tmp_path / "pkt")
    assert {a["src_ip"] for a in from_packets if a["alert"]["category"] == "c2"} >= bad
    r = iotwatch("analyze", tmp_path / "pkt" / "conn.log", "--out", tmp_path / "log", "--quiet")
    assert r.returncode == 0, r.stderr
    from_log = alerts(tmp_path / "log")
    assert not [a for a in from_log if a["src_ip"] in normal], from_log
    assert subprocess.run([sys.executable, str(CHECK_EVENTS), str(tmp_path / "log" / "events.jsonl")],
                          capture_output=True).returncode == 0
