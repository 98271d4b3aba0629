"""Flows and device windows from frames built in the test (the in-memory packet source)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

import iotwatch
from iotwatch.capture.memory import batches
from iotwatch.devices import merge_windows
from iotwatch.pipeline import Pipeline, Settings
from iotwatch.sinks import MemorySink

CAM, NVR, GW, PC = "28:57:be:00:00:01", "44:19:b6:00:00:02", "50:c7:bf:00:00:03", "b8:ca:3a:00:00:04"
CAM_IP, NVR_IP, PC_IP = "192.168.1.64", "192.168.1.60", "192.168.1.101"
T0 = 1_754_000_040.0  # the start of a 60 s window (epoch seconds, a multiple of 60)


def frame(src: str, dst: str, pkt) -> bytes:  # type: ignore[no-untyped-def]
    return bytes(Ether(src=src, dst=dst) / pkt)


def run(frames: list[tuple[float, bytes]], **kw) -> tuple[Pipeline, MemorySink]:  # type: ignore[no-untyped-def]
    mem = MemorySink()
    pipe = Pipeline(Settings(**kw), [mem])
    for b in batches(sorted(frames, key=lambda f: f[0]), size=512):
        pipe.feed(b)
    pipe.finish()
    return pipe, mem


def udp(t: float, sport: int = 5000, dport: int = 6000, size: int = 100) -> tuple[float, bytes]:
    return t, frame(CAM, NVR, IP(src=CAM_IP, dst=NVR_IP) / UDP(sport=sport, dport=dport) / (b"x" * size))


def test_idle_timeout_splits_a_flow() -> None:
    _, mem = run([udp(T0), udp(T0 + 10), udp(T0 + 200)])
    f = mem.flows.sort_by("start").to_pylist()
    assert [r["pkts_toserver"] for r in f] == [2, 1]
    assert [r["reason"] for r in f] == ["idle", "end"]
    assert f[0]["community_id"] == f[1]["community_id"]


def test_active_timeout_cuts_a_long_flow() -> None:
    _, mem = run([udp(T0 + 60 * k) for k in range(35)], active_timeout=1800.0)
    f = mem.flows.sort_by("start").to_pylist()
    assert [r["reason"] for r in f] == ["active", "end"]
    assert sum(r["pkts_toserver"] for r in f) == 35
    assert f[0]["end"] - f[0]["start"] <= 1800


def test_table_cap_evicts_and_counts_under_a_flood() -> None:
    frames = [udp(T0 + k * 1e-4, sport=1024 + k % 60000, dport=1 + k // 60000) for k in range(5000)]
    pipe, mem = run(frames, max_flows=1024)
    f = mem.flows
    assert pipe.stats.flows_evicted > 0
    assert f.num_rows == 5000  # every flow still reported, evicted ones with their reason
    assert pa.compute.sum(f.column("pkts_toserver")).as_py() == 5000
    reasons = set(f.column("reason").to_pylist())
    assert reasons == {"evicted", "end"}
    assert f.column("reason").to_pylist().count("evicted") == pipe.stats.flows_evicted
    assert len(pipe.flows) <= 1024


def test_flows_roll_into_parts_of_one_dataset_folder(tmp_path: Path) -> None:
    """A Parquet writer holds every row group's metadata until its file closes: flows go to a
    folder of bounded files, which Arrow reads back as one table; a second run into the same
    folder leaves no part of the first behind."""
    import pyarrow.parquet as pq

    from iotwatch.sinks import ParquetSink

    frames = [udp(T0 + k * 1e-3, sport=1024 + k) for k in range(3000)]
    sink = ParquetSink(tmp_path, flows_per_part=1000)
    pipe = Pipeline(Settings(), [sink])
    for b in batches(frames, size=256):
        pipe.feed(b)
    pipe.finish()
    sink.close()
    parts = sorted(p.name for p in (tmp_path / "flows.parquet").iterdir())
    assert len(parts) >= 3 and parts[0] == "part-00000.parquet"
    assert all(pq.read_metadata(tmp_path / "flows.parquet" / p).num_rows <= 1000 for p in parts)
    t = pq.read_table(tmp_path / "flows.parquet")
    assert t.num_rows == pipe.stats.flows == 3000
    assert sorted(t.column("src_port").to_pylist()) == list(range(1024, 4024))

    sink = ParquetSink(tmp_path, flows_per_part=1000)
    pipe = Pipeline(Settings(), [sink])
    for b in batches(frames[:10], size=256):
        pipe.feed(b)
    pipe.finish()
    sink.close()
    assert [p.name for p in (tmp_path / "flows.parquet").iterdir()] == ["part-00000.parquet"]
    assert pq.read_table(tmp_path / "flows.parquet").num_rows == 10


def test_a_flows_file_of_an_earlier_version_is_replaced_by_the_folder(tmp_path: Path) -> None:
    from iotwatch.sinks import ParquetSink

    (tmp_path / "flows.parquet").write_bytes(b"PAR1 an old single-file output")
    ParquetSink(tmp_path).close()
    assert (tmp_path / "flows.parquet" / "part-00000.parquet").is_file()


def tcp(t: float, src, dst, sport: int, dport: int, flags: str, payload: bytes = b""):  # type: ignore[no-untyped-def]
    (smac, sip), (dmac, dip) = src, dst
    return t, frame(smac, dmac, IP(src=sip, dst=dip) / TCP(sport=sport, dport=dport, flags=flags) / payload)


PCX, NVRX = (PC, PC_IP), (NVR, NVR_IP)


def test_handshake_states() -> None:
    frames = [
        # established and closed
        tcp(T0, PCX, NVRX, 40000, 80, "S"), tcp(T0 + 0.01, NVRX, PCX, 80, 40000, "SA"),
        tcp(T0 + 0.02, PCX, NVRX, 40000, 80, "A"), tcp(T0 + 0.03, PCX, NVRX, 40000, 80, "PA", b"GET /"),
        tcp(T0 + 0.04, PCX, NVRX, 40000, 80, "FA"), tcp(T0 + 0.05, NVRX, PCX, 80, 40000, "FA"),
        # rejected
        tcp(T0 + 1, PCX, NVRX, 40001, 23, "S"), tcp(T0 + 1.01, NVRX, PCX, 23, 40001, "RA"),
        # unanswered (retransmitted once)
        tcp(T0 + 2, PCX, NVRX, 40002, 2323, "S"), tcp(T0 + 3, PCX, NVRX, 40002, 2323, "S"),
        # midstream
        tcp(T0 + 4, PCX, NVRX, 40003, 554, "PA", b"x"), tcp(T0 + 4.1, NVRX, PCX, 554, 40003, "A"),
        # established then reset
        tcp(T0 + 5, PCX, NVRX, 40004, 22, "S"), tcp(T0 + 5.01, NVRX, PCX, 22, 40004, "SA"),
        tcp(T0 + 5.02, PCX, NVRX, 40004, 22, "A"), tcp(T0 + 5.03, NVRX, PCX, 22, 40004, "R"),
    ]
    _, mem = run(frames)
    by_port = {r["dest_port"]: r for r in mem.flows.to_pylist()}
    assert {p: r["state"] for p, r in by_port.items()} == {
        80: "closed", 23: "rejected", 2323: "syn_unanswered", 554: "midstream", 22: "reset"}
    assert by_port[80]["payload_toserver"] == 5 and by_port[80]["fin_toserver"] == 1 and by_port[80]["fin_toclient"] == 1
    assert by_port[2323]["syn_toserver"] == 2 and by_port[2323]["pkts_toclient"] == 0
    (w,) = [r for r in mem.windows.to_pylist() if r["device"] == PC]
    assert (w["new_flows"], w["syn_flows"], w["syn_answered"], w["syn_rejected"], w["syn_unanswered"]) == (5, 4, 2, 1, 1)
    assert w["failed_handshake_ratio"] == pytest.approx(0.5)
    assert w["auth_attempts"] == 3  # 23, 2323, 22
    assert w["rst_in"] == 2
    (nvr,) = [r for r in mem.windows.to_pylist() if r["device"] == NVR]
    assert (nvr["new_flows"], nvr["syn_flows"], nvr["auth_attempts"]) == (0, 0, 0)  # the server is not an initiator


def test_scan_window_features_and_upload_share() -> None:
    frames = []
    for k in range(100):  # a Mirai-like scan: 23 with 2323 on every tenth probe, to 100 public addresses
        port = 2323 if k % 10 == 0 else 23
        frames.append(tcp(T0 + k * 0.05, (CAM, CAM_IP), (GW, f"203.0.{k}.9"), 30000 + k, port, "S"))
    for k in range(5):  # five targets answer with a reset
        frames.append(tcp(T0 + k * 0.05 + 0.01, (GW, f"203.0.{k}.9"), (CAM, CAM_IP), 2323 if k == 0 else 23, 30000 + k, "RA"))
    for k in range(3):  # the PC asks DNS three times and uploads to the internet
        q = IP(src=PC_IP, dst="192.168.1.1") / UDP(sport=5353 + k, dport=53) / DNS(rd=1, qd=DNSQR(qname=f"h{k}.example"))
        a = IP(src="192.168.1.1", dst=PC_IP) / UDP(sport=53, dport=5353 + k) / DNS(qr=1, qd=DNSQR(qname=f"h{k}.example"))
        frames += [(T0 + 10 + k, frame(PC, GW, q)), (T0 + 10.01 + k, frame(GW, PC, a))]
    frames.append(tcp(T0 + 15, PCX, (GW, "198.51.100.7"), 41000, 443, "PA", b"u" * 1000))
    _, mem = run(frames)
    rows = {r["device"]: r for r in mem.windows.to_pylist()}
    cam, pc = rows[CAM], rows[PC]
    assert (cam["dst_ips"], cam["dst_ports"], cam["auth_attempts"]) == (100, 2, 100)
    assert (cam["syn_flows"], cam["syn_rejected"], cam["syn_unanswered"]) == (100, 5, 95)
    assert cam["failed_handshake_ratio"] == 1.0 and cam["rst_in"] == 5
    assert pc["dns_queries"] == 3 and rows[GW]["dns_queries"] == 0
    total = cam["upload_bytes"] + pc["upload_bytes"]
    assert cam["upload_share"] == pytest.approx(cam["upload_bytes"] / total)
    assert pc["upload_share"] + cam["upload_share"] == pytest.approx(1.0)
    assert rows[GW]["upload_bytes"] == 0  # the router forwards inbound traffic: that is not upload


def test_syn_ack_just_after_the_window_counts_for_the_syn_window() -> None:
    w0 = T0 + 60  # a window start
    frames = [tcp(w0 - 0.5, PCX, NVRX, 40000, 80, "S"), tcp(w0 + 0.5, NVRX, PCX, 80, 40000, "SA"),
              tcp(w0 + 30, PCX, NVRX, 40000, 80, "A")]
    _, mem = run(frames)
    pc = [r for r in mem.windows.to_pylist() if r["device"] == PC]
    assert [(r["window_start"], r["syn_flows"], r["syn_answered"]) for r in pc] == [(w0 - 60, 1, 1), (w0, 0, 0)]


def test_two_halves_merge_into_the_whole() -> None:
    frames = []
    for k in range(40):  # first half: camera streams to the recorder, PC browses
        frames.append(udp(T0 + k * 0.25, size=200 + k))
        frames.append(tcp(T0 + k * 0.25 + 0.1, PCX, (GW, f"198.51.100.{k % 7}"), 42000 + k, 443, "S"))
    gap = T0 + 10 + 130  # a quiet point longer than the idle timeout, inside one 600 s window
    for k in range(40):
        frames.append(udp(gap + k * 0.25, size=300 + k))
        frames.append(tcp(gap + k * 0.25 + 0.1, PCX, (GW, f"198.51.100.{k % 11}"), 43000 + k, 8443, "S"))
    frames.sort(key=lambda f: f[0])
    half = next(i for i, f in enumerate(frames) if f[0] >= gap)
    _, whole = run(frames, window_s=600.0)
    a_pipe, a = run(frames[:half], window_s=600.0)
    b_pipe, b = run(frames[half:], window_s=600.0)
    merged, _ = merge_windows(a.windows, a_pipe.devices.edges, b.windows, b_pipe.devices.edges, 600.0)
    assert merged.to_pylist() == whole.windows.to_pylist()
    assert a.windows.num_rows and b.windows.num_rows  # both halves saw the shared window
    for key, d in whole.devices.items():
        parts = [x.devices[key] for x in (a, b) if key in x.devices]
        m = parts[0] if len(parts) == 1 else parts[0].merge(parts[1])
        assert m == d


def test_flow_state_carries_across_files_in_time_order(tmp_path: Path) -> None:
    pkts = []
    for t, f in [tcp(T0, PCX, NVRX, 40000, 80, "S"), tcp(T0 + 0.01, NVRX, PCX, 80, 40000, "SA"),
                 tcp(T0 + 0.02, PCX, NVRX, 40000, 80, "A"), tcp(T0 + 0.03, PCX, NVRX, 40000, 80, "PA", b"x" * 10),
                 tcp(T0 + 0.04, NVRX, PCX, 80, 40000, "A")]:
        p = Ether(f)
        p.time = t
        pkts.append(p)
    wrpcap(str(tmp_path / "b-first.pcap"), pkts[:2])
    wrpcap(str(tmp_path / "a-second.pcap"), pkts[2:])  # named so that name order is wrong
    a = iotwatch.analyze(tmp_path)
    (f,) = a.flows.to_pylist()
    assert (f["pkts_toserver"], f["pkts_toclient"], f["state"], f["src_ip"]) == (3, 2, "established", PC_IP)


def test_interrupted_run_still_finishes_what_was_read() -> None:
    from iotwatch.pipeline import run

    demo = Path(__file__).resolve().parents[1] / "pcaps" / "demo-office.pcap"
    calls = []

    def ctrl_c_after_two_batches(done: int, whole: int) -> None:
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    mem = MemorySink()
    pipe, _ = run([demo], Settings(batch_size=512), [mem], progress=ctrl_c_after_two_batches)
    devices, stats = pipe.finish()
    assert stats.interrupted and stats.packets == 1024
    assert sum(d.packets_out for d in devices.values()) == 1024
    assert mem.flows.num_rows > 0 and mem.windows.num_rows > 0


def test_timestamps_jumping_to_the_end_of_time_and_back_do_not_stall() -> None:
    """Damaged captures carry absurd times: the largest a pcap can hold, then normal ones again."""
    frames = [udp(T0), udp(float(2**32 - 1)), udp(T0 + 1), udp(float(2**32 - 1) + 0.5), udp(T0 + 2)]
    pipe, _ = run(frames)  # sorted by time inside run(); feed them unsorted as well
    assert pipe.stats.packets == 5
    mem2 = MemorySink()
    p2 = Pipeline(Settings(), [mem2])
    for b in batches(frames, size=2):
        p2.feed(b)
    _, stats = p2.finish()
    assert stats.packets == 5 and stats.late_packets >= 1
    assert sum(r["packets_out"] for r in mem2.windows.to_pylist()) == 5


def test_drain_hands_over_finished_flows_before_the_end() -> None:
    """What a live capture does on a timer: flows that ended are delivered without finish()."""
    mem = MemorySink()
    pipe = Pipeline(Settings(), [mem], threaded=False)
    for b in batches([udp(T0), udp(T0 + 1), udp(T0 + 200, sport=7000)]):
        pipe.feed(b)
    assert mem.flows.num_rows == 0  # the first flow ended (idle) but waits in the export buffer
    pipe.drain()
    (f,) = mem.flows.to_pylist()
    assert (f["src_port"], f["pkts_toserver"], f["reason"]) == (5000, 2, "idle")
    pipe.finish()
    assert mem.flows.num_rows == 2


def test_warm_up_without_a_writable_temporary_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start-up warms the kernels from a small capture it writes to the temporary folder; without
    one it warms up from memory instead of failing."""
    import tempfile

    import iotwatch.warmup as warmup

    def refuse(*_a: object, **_k: object) -> None:
        raise PermissionError("read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryDirectory", refuse)
    monkeypatch.setattr(warmup, "_loaded", False)
    warmup.load_kernels()
    assert warmup._loaded
    _, mem = run([udp(T0), udp(T0 + 1)])
    assert mem.flows.num_rows == 1
