"""The evidence pack (`iotwatch evidence`), checked with Wireshark (tshark) against the source capture: the pcapng opens,
holds every packet the alerts involve and nothing from elsewhere, its first bad packets are the
alerts' first packets, and the manifest's checksums are those of the files."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import SHARED_PCAPS, TSHARK, needs_shared, needs_tshark
from incident import incident

from iotwatch.evidence import write_pack
from iotwatch.evidence.pack import flow_keys
from iotwatch.outdir import load

FIELDS = ["frame.number", "frame.time_epoch", "frame.len", "eth.src", "eth.dst", "ip.src", "ip.dst", "ip.proto",
          "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport", "tcp.flags", "frame.comment"]


def tshark_rows(path: Path) -> list[dict[str, str]]:
    assert TSHARK is not None
    cmd = [TSHARK, "-r", str(path), "-n", "-o", "ip.defragment:FALSE", "-T", "fields", "-E", "separator=\t",
           "-E", "occurrence=f"] + [x for f in FIELDS for x in ("-e", f)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [dict(zip(FIELDS, line.split("\t"), strict=False)) for line in r.stdout.splitlines()]


def ident(r: dict[str, str]) -> tuple[str, ...]:
    """A packet as tshark sees it, minus its frame number."""
    return tuple(r.get(f, "") for f in FIELDS[1:-1])


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    pcap, out = incident(tmp_path_factory.getbasetemp())
    pack = write_pack(out, tmp_path_factory.mktemp("pack") / "evidence")
    return pcap, out, pack.folder


def test_flow_keys_do_not_depend_on_direction() -> None:
    import numpy as np

    a = [np.array([x], dtype=np.uint64) for x in (6, 0, 0xFFFF0A000001, 1234, 0, 0xFFFFC0A80001, 23)]
    k1 = flow_keys(a[0], a[1], a[2], a[3], a[4], a[5], a[6])
    k2 = flow_keys(a[0], a[4], a[5], a[6], a[1], a[2], a[3])
    k3 = flow_keys(a[0], a[1], a[2], np.array([1235], np.uint64), a[4], a[5], a[6])
    assert k1[0] == k2[0] and k1[0] != k3[0]


@needs_tshark
def test_pack_matches_the_alerts_in_wireshark(packed: tuple[Path, Path, Path]) -> None:
    pcap, out, folder = packed
    run = load(out, windows=False)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [d["device"] for d in manifest["devices"]] == [a["mac"] for a in run.alerted]
    src = tshark_rows(pcap)
    by_frame = {int(r["frame.number"]): r for r in src}
    src_ids = Counter(ident(r) for r in src)
    for dev in manifest["devices"]:
        rows = tshark_rows(folder / dev["folder"] / "packets.pcapng")
        # every packet is one of the source capture's, and the count is the manifest's
        assert len(rows) == dev["packets"] > 0
        assert not Counter(ident(r) for r in rows) - src_ids
        mac = dev["mac"]
        assert all(mac in (r["eth.src"], r["eth.dst"]) for r in rows)
        t_first = min(float(a["first_ts"]) for a in dev["alerts"])
        for a in dev["alerts"]:
            for what in ("first_packet", "alert_packet"):
                if what not in a:
                    continue
                ref = a[what]
                # the first bad packet in the pack is the alert's packet in the source, with a comment
                got = rows[ref["pack_packet"] - 1]
                assert ident(got) == ident(by_frame[ref["packet"]])
                assert a["category"].upper() in got["frame.comment"]
            first = float(a["first_ts"])
            last = float(a["last_ts"])

            def during(r: dict[str, str], first: float = first, last: float = last) -> bool:
                return first - 1e-6 <= float(r["frame.time_epoch"]) <= last + 1e-6

            if a["category"] == "scan":
                # every scanner SYN of the alert's span is in the pack: tshark counts them in both files
                def syn(r: dict[str, str], mac: str = mac) -> bool:
                    return r["eth.src"] == mac and r["tcp.flags"] == "0x0002" and r["tcp.dstport"] in ("23", "2323")
                n_src = sum(1 for r in src if syn(r) and during(r))
                assert n_src == sum(1 for r in rows if syn(r) and during(r))
                ev = next(x for x in run.alerts if x["alert"]["category"] == "scan")["evidence"]
                assert n_src >= ev["mirai_syns"]
            if a["category"] == "exfil":
                # the upload to the peer during the alert: same bytes in the pack as in the source
                peers = set(next(x for x in run.alerts if x["alert"]["category"] == "exfil")["evidence"]["peers"])

                def up(r: dict[str, str], peers: set[str] = peers, mac: str = mac) -> bool:
                    return r["eth.src"] == mac and r["ip.dst"] in peers

                assert sum(int(r["frame.len"]) for r in src if up(r) and during(r)) == \
                    sum(int(r["frame.len"]) for r in rows if up(r) and during(r)) > 1_000_000
        # context: all the device's packets in the seconds before its first alert
        ctx = manifest["context_s"]

        def before(r: dict[str, str], t_first: float = t_first, ctx: float = ctx) -> bool:
            return t_first - ctx <= float(r["frame.time_epoch"]) < t_first - 1e-6

        n_ctx = sum(1 for r in src if mac in (r["eth.src"], r["eth.dst"]) and before(r))
        assert n_ctx > 0 and n_ctx == sum(1 for r in rows if before(r))


def test_manifest_checksums_and_flows_csv(packed: tuple[Path, Path, Path]) -> None:
    pcap, _out, folder = packed
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["sources"][0]["sha256"] == hashlib.sha256(pcap.read_bytes()).hexdigest()
    sums = dict(line.split("  ")[::-1] for line in (folder / "SHA256SUMS").read_text().splitlines())
    for dev in manifest["devices"]:
        for name, entry in dev["files"].items():
            data = (folder / dev["folder"] / name).read_bytes()
            assert entry["sha256"] == hashlib.sha256(data).hexdigest() == sums[f"{dev['folder']}/{name}"]
            assert entry["bytes"] == len(data)
        with open(folder / dev["folder"] / "flows.csv", newline="") as f:
            flows = list(csv.DictReader(f))
        assert len(flows) == dev["flows"]
        cited = {int(x) for a in dev["alerts"] for x in a["flow_ids"]}
        assert cited <= {int(r["flow_id"]) for r in flows}
        assert {c for r in flows for c in r["why"].split(",")} == {a["category"] for a in dev["alerts"]}
        # the flows are the device's
        assert all(dev["mac"] in (r["src_mac"], r["dest_mac"]) for r in flows)


def test_cli_evidence_and_errors(tmp_path: Path, packed: tuple[Path, Path, Path]) -> None:
    pcap, out, _ = packed
    r = subprocess.run([sys.executable, "-m", "iotwatch", "evidence", str(out), "--out", str(tmp_path / "ev")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "packets" in r.stdout and (tmp_path / "ev" / "manifest.json").exists()
    # a folder that is not an analysis: one line, exit 1
    r = subprocess.run([sys.executable, "-m", "iotwatch", "evidence", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "events.jsonl" in r.stderr
    # the source capture is no longer where the analysis read it: said in one line, found with --capture
    moved = tmp_path / "elsewhere" / "out"
    shutil.copytree(out, moved, ignore=shutil.ignore_patterns("evidence", "report*"))
    events = moved / "events.jsonl"
    events.write_text(events.read_text().replace(str(pcap), "/nonexistent/" + pcap.name))
    r = subprocess.run([sys.executable, "-m", "iotwatch", "evidence", str(moved)], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "--capture" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "iotwatch", "evidence", str(moved), "--capture", str(pcap)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = json.loads((moved / "evidence" / "manifest.json").read_text())
    assert m["sources"][0]["file"] == str(pcap)


@needs_shared
@needs_tshark
def test_packs_of_the_shared_attackers(tmp_path: Path) -> None:
    """Every labelled attacker of ../shared/pcaps that raises an alert: its pack holds each alert's
    first packet and the packet that raised it (checked against the source in tshark), and at
    least as many flows as the alert counted."""
    from incident import analyse_plain

    with open(SHARED_PCAPS / "LABELS.tsv", newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["behaviour"] not in ("normal", "victim")]
    packs = 0
    for i, r in enumerate(rows):
        pcap = SHARED_PCAPS / r["file"]
        out = analyse_plain(pcap, tmp_path / f"o{i}")
        manifest = write_pack(out).manifest
        if not manifest["devices"]:
            continue
        packs += 1
        src = {int(x["frame.number"]): x for x in tshark_rows(pcap)}
        for dev in manifest["devices"]:
            rows_ = tshark_rows(out / "evidence" / dev["folder"] / "packets.pcapng")
            assert len(rows_) == dev["packets"], pcap
            with open(out / "evidence" / dev["folder"] / "flows.csv", newline="") as f:
                why = Counter(c for x in csv.DictReader(f) for c in x["why"].split(",") if c)
            for a in dev["alerts"]:
                for what in ("first_packet", "alert_packet"):
                    if what in a:
                        ref = a[what]
                        assert ref["pack_packet"] is not None, (pcap, a["category"], what)
                        assert ident(rows_[ref["pack_packet"] - 1]) == ident(src[ref["packet"]]), (pcap, what)
            alerts = [x for x in load(out, windows=False).alerts if x["src_mac"] == dev["mac"]]
            for x in alerts:
                ev = x["evidence"]
                if x["alert"]["category"] in ("scan", "bruteforce") and "flows" in ev:
                    assert why[x["alert"]["category"]] >= ev["flows"], (pcap, x["alert"]["signature"])
    assert packs >= 10


@needs_tshark
def test_pack_of_a_capture_without_ethernet(tmp_path: Path) -> None:
    """Raw IP with nanosecond timestamps: devices are IP addresses, and the pack follows them."""
    import struct

    from captures import pcap_header, pcap_record
    from incident import analyse_plain

    from iotwatch.synth import Options, generate

    eth = generate(Options("scan", seed=508, duration=60, quiet=25), tmp_path / "eth.pcap").pcap
    data = eth.read_bytes()
    out = bytearray(pcap_header(linktype=101, nanosecond=True))
    pos = 24
    while pos < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, pos)
        frame = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        if frame[12:14] == b"\x08\x00":  # IPv4 only: ARP has no raw-IP form
            out += pcap_record(sec * 10**9 + usec * 1000, incl - 14, orig - 14, frame[14:], nanosecond=True)
    raw = tmp_path / "raw.pcap"
    raw.write_bytes(bytes(out))
    run_dir = analyse_plain(raw, tmp_path / "o")
    run = load(run_dir, windows=False)
    [alert] = [a for a in run.alerts if a["alert"]["category"] == "scan"]
    assert alert["src_mac"] is None
    manifest = write_pack(run_dir).manifest
    [dev] = manifest["devices"]
    ip = alert["src_ip"]
    assert dev["device"] == ip and dev["folder"] == ip
    rows = tshark_rows(run_dir / "evidence" / ip / "packets.pcapng")
    src = tshark_rows(raw)
    assert len(rows) == dev["packets"] and all(ip in (r["ip.src"], r["ip.dst"]) for r in rows)
    ref = dev["alerts"][0]["first_packet"]
    assert ident(rows[ref["pack_packet"] - 1]) == ident(src[ref["packet"] - 1])
    first, last = float(alert["first_ts"]), float(alert["last_ts"])

    def syn(r: dict[str, str]) -> bool:
        return r["ip.src"] == ip and r["tcp.flags"] == "0x0002" and first - 1e-6 <= float(r["frame.time_epoch"]) <= last + 1e-6

    assert sum(map(syn, src)) == sum(map(syn, rows)) >= alert["evidence"]["flows"]


def test_bulk_and_single_packet_writers_agree(packed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """The compiled writer of the pack's bulk (no comments) writes the same bytes as the one
    packet at a time writer used for the commented packets."""
    import numpy as np

    from iotwatch.capture import open_capture
    from iotwatch.evidence.pcapng_out import PcapngWriter

    pcap = packed[0]
    r = open_capture(pcap, batch_size=4096)
    try:
        b = next(iter(r.batches()))
        idx = np.arange(0, len(b), 3, dtype=np.int64)
        one, bulk = PcapngWriter(tmp_path / "one.pcapng", "t"), PcapngWriter(tmp_path / "bulk.pcapng", "t")
        for i in idx.tolist():
            o, n = int(b.off[i]), int(b.caplen[i])
            one.packet(int(b.ts_ns[i]), int(b.linktype[i]), b.buf[o:o + n].tobytes(), int(b.wirelen[i]))
        bulk.many(b.buf, b.off, b.caplen, b.wirelen, b.ts_ns, b.linktype, idx)
        one.close()
        bulk.close()
    finally:
        r.chunks.close()
    assert one.packets == bulk.packets == len(idx) > 1000
    assert (tmp_path / "one.pcapng").read_bytes() == (tmp_path / "bulk.pcapng").read_bytes()
