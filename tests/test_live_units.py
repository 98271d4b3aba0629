"""The evidence ring and what a live run needs without a network: rotation that bounds the disk,
a full disk that stops the ring (files stay readable), packet locations for alerts, dumpcap's
messages, interfaces from sysfs, and a clock moved without packets giving offline's results."""

from __future__ import annotations

import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from iotwatch.capture.dumpcap import explain, parse_counts
from iotwatch.capture.interfaces import InterfaceError, check, interface, interfaces
from iotwatch.capture.memory import frames_to_batch
from iotwatch.capture.ring import Ring
from iotwatch.capture.source import open_capture
from iotwatch.live import RingIndex, alert_delay
from iotwatch.pipeline import Pipeline
from iotwatch.settings import Settings
from iotwatch.sinks import MemorySink
from iotwatch.warmup import warm_frames

SHB = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
IDB = struct.pack("<IIHHII", 1, 20, 1, 0, 65535, 20)


def epb(ts_us: int, frame: bytes) -> bytes:
    pad = frame + bytes(-len(frame) % 4)
    return (struct.pack("<IIIIIII", 6, 32 + len(pad), 0, ts_us >> 32, ts_us & 0xFFFFFFFF, len(frame), len(frame))
            + pad + struct.pack("<I", 32 + len(pad)))


def batches(n: int, per: int, size: int = 200) -> Iterator[tuple[np.ndarray, int]]:
    k = 0
    for _ in range(n):
        blocks = b"".join(epb(1_700_000_000_000_000 + (k + j) * 1000, bytes([j % 251]) * size) for j in range(per))
        k += per
        yield np.frombuffer(blocks, np.uint8), per


def read_all(path: Path) -> tuple[int, list[object]]:
    r = open_capture(path)
    n = sum(len(b) for b in r.batches())
    r.chunks.close()
    return n, r.problems


def test_ring_rotates_numbers_packets_per_file_and_bounds_the_disk(tmp_path: Path) -> None:
    ring = Ring(tmp_path, files=3, size_bytes=10_000)
    seen = []
    for blocks, n in batches(20, 10):  # 20 batches of ~2.3 kB: a file every ~5 batches
        where = ring.write([SHB, IDB], blocks, n)
        assert where is not None
        seen.append(where)
    ring.close()
    kept = sorted(tmp_path.glob("*.pcapng"))
    assert len(kept) == 3 and ring.written > 3  # the oldest files were deleted
    for path in kept:
        count, problems = read_all(path)
        assert not problems
        firsts = [first for p, first in seen if p == path]
        assert firsts[0] == 1 and firsts == list(range(1, count + 1, 10))  # numbered as Wireshark numbers them
        assert path.stat().st_size <= 10_000 + 2_400


def test_lent_blocks_make_the_same_files_and_each_loan_is_given_back_once(tmp_path: Path) -> None:
    """A live capture lends the ring its chunk buffer instead of copying each batch
    (``done``): the files are byte for byte those of copied batches, and every loan comes back
    exactly once, after its blocks were written (or at once, when the ring has stopped)."""
    copied, lent = Ring(tmp_path / "copied", files=3, size_bytes=10_000), Ring(tmp_path / "lent", files=3, size_bytes=10_000)
    back: list[int] = []
    for k, (blocks, n) in enumerate(batches(20, 10)):
        assert copied.write([SHB, IDB], blocks, n) is not None
        assert lent.write([SHB, IDB], blocks, n, done=lambda k=k: back.append(k)) is not None  # type: ignore[misc]
    copied.close()
    lent.close()
    assert back == list(range(20))
    a, b = sorted((tmp_path / "copied").glob("*.pcapng")), sorted((tmp_path / "lent").glob("*.pcapng"))
    assert len(a) == len(b) == 3
    for x, y in zip(a, b, strict=True):
        assert x.name.split("-")[1] == y.name.split("-")[1] and x.read_bytes() == y.read_bytes()
    lent.stopped = "stopped"
    assert lent.write([SHB, IDB], *next(batches(1, 1)), done=lambda: back.append(-1)) is None
    assert back[-1] == -1


def test_new_interface_blocks_start_a_new_file(tmp_path: Path) -> None:
    ring = Ring(tmp_path, files=5, size_bytes=1 << 20)
    (b1, n1), (b2, n2) = list(batches(2, 3))
    p1, _ = ring.write([SHB, IDB], b1, n1)  # type: ignore[misc]
    p2, first = ring.write([SHB, IDB, IDB], b2, n2)  # type: ignore[misc]
    ring.close()
    assert p1 != p2 and first == 1


@pytest.fixture
def tiny_disk() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="iotwatch-tiny-"))
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True, text=True,
                       check=False)
    if r.returncode:
        d.rmdir()
        pytest.skip(f"cannot mount a small tmpfs to fill: {r.stderr.strip() or 'not root'}")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=False)
        d.rmdir()


def test_full_disk_stops_the_ring_and_keeps_its_files_readable(tiny_disk: Path) -> None:
    ring = Ring(tiny_disk, files=100, size_bytes=20_000)
    handed = 0
    loans = 0
    back: list[int] = []
    for blocks, n in batches(100, 10):  # 230 kB for a 64 kB disk
        loans += 1
        if ring.write([SHB, IDB], blocks, n, done=lambda: back.append(1)) is None:
            break
        handed += n
    ring.close()
    assert len(back) == loans  # every loan given back: written, failed, or dropped after the failure
    assert ring.stopped is not None and "No space left" in ring.stopped
    total = 0
    for path in sorted(tiny_disk.glob("*.pcapng")):
        count, problems = read_all(path)
        assert not problems, problems  # the failed write was cut back to the last whole batch
        total += count
    assert 0 < total <= handed < 1000  # the batches queued after the failure are the only ones lost
    assert ring.write([SHB, IDB], *next(batches(1, 1))) is None  # stopped for good


def test_ring_index_points_at_or_just_before_an_episode(tmp_path: Path) -> None:
    idx = RingIndex()
    ts = np.arange(1000, dtype=np.int64) * 1_000_000 + 10**18  # a packet per ms
    idx.add(0, 1, ts[:400])
    idx.add(1, 1, ts[400:])
    for k in (0, 5, 399, 400, 417, 999):
        f, pkt = idx.locate(ts[k] / 1e9)  # type: ignore[misc]
        want_file, want_pkt = (0, k + 1) if k < 400 else (1, k - 399)
        assert f == want_file and want_pkt - RingIndex.STEP < pkt <= want_pkt
    idx.forget_before(1)
    assert idx.locate(ts[5] / 1e9) == (1, 1)  # its file is gone: the oldest kept place


def test_dumpcap_counts_and_errors_become_one_line() -> None:
    line = "Packets received/dropped on interface 'eth1': 250100/312 (pcap:300/dumpcap:10/flushed:2/ps_ifdrop:7) (99.9%)"
    c = parse_counts("Capturing on 'eth1'\nFile: -\nPackets captured: 250100\n" + line + "\n")
    assert c is not None and (c.received, c.dropped, c.if_dropped) == (250100, 312, 7)
    assert parse_counts("Capturing on 'eth1'\n") is None
    msg = explain("dumpcap: You don't have permission to capture on that device\n(socket: Operation not permitted)", "eth1")
    assert "setcap" in msg and "\n" not in msg
    assert "--bpf" in explain("dumpcap: Invalid capture filter \"port x\" for interface 'eth1'.\n\nThat string isn't "
                              "a valid capture filter (can't parse filter expression: syntax error).", "eth1")


def test_interfaces_come_from_sysfs() -> None:
    names = {i.name for i in interfaces()}
    assert "lo" in names
    lo = interface("lo")
    assert lo is not None and lo.mac is None and lo.rx_packets >= 0
    with pytest.raises(InterfaceError, match=r"no interface named 'nosuch0'.*iotwatch interfaces"):
        check("nosuch0")
    assert interface("../etc") is None


def test_a_clock_moved_without_packets_gives_offline_results() -> None:
    """Pipeline.advance (a live run's quiet-network tick) ends flows and closes windows as the next
    packets would have: the same flows and windows as reading the frames in one go."""
    frames = warm_frames()
    settings = Settings(window_s=60.0, close_lag_s=1.0, max_flows=1024, max_devices=64)
    offline, live = MemorySink(), MemorySink()
    p = Pipeline(settings, [offline], threaded=False)
    p.feed(frames_to_batch(frames))
    p.finish()
    q = Pipeline(settings, [live], threaded=False)
    groups = [frames[k : k + 8] for k in range(0, len(frames), 8)]
    for g in groups:
        q.feed(frames_to_batch(g))
        q.advance(int((g[-1][0] + 2.0) * 1e9))  # quiet for two seconds after each burst
    assert live.windows.num_rows > 0 and q.stats.windows > 0  # windows closed before the end
    q.finish()
    assert live.windows.equals(offline.windows)
    key = ["start", "src_port"]
    a, b = live.flows.sort_by([(k, "ascending") for k in key]), offline.flows.sort_by([(k, "ascending") for k in key])
    for col in a.column_names:
        if col not in ("flow_id", "reason"):
            assert a.column(col).to_pylist() == b.column(col).to_pylist(), col


def test_live_view_shows_rates_drops_uploaders_devices_and_alerts() -> None:
    from rich.console import Console

    from iotwatch.cli.capture import LiveView
    from iotwatch.detect.alerts import Alert
    from iotwatch.live import LiveStatus
    from iotwatch.records import DeviceRecord

    nvr = DeviceRecord(mac="28:57:be:c6:93:56", ips=["192.168.100.63"], vendor="Hikvision", device_type="recorder")
    pc = DeviceRecord(mac="a4:8c:db:81:2a:13", ips=["192.168.100.123"])
    alert = Alert(device=nvr.key, src_mac=nvr.mac, src_ip="192.168.100.63", category="exfil",
                  signature="upload surge: 1.6 Mbit/s to 18.184.97.32", severity=1, score=0.99,
                  timestamp=1754279749.0, first_ts=1754279749.0, last_ts=1754279819.0)
    status = LiveStatus(started=100.0, now=160.0, packets=123_456, bytes=10**8, packets_per_s=2_000.0,
                        bits_per_s=4e6, capture_drops=None, if_drops=3, interface_rx=123_460,
                        devices={nvr.key: nvr, pc.key: pc}, upload_bps={nvr.key: 1.6e6, pc.key: 0.1e6},
                        new_alerts=[alert], ring="/tmp/ring/iotwatch-eth1-00001.pcapng")
    view = LiveView("eth1", uplink_mbps=2.0)
    view._enabled = False  # no terminal here: render by hand
    view.update(status)
    console = Console(record=True, width=200)
    console.print(view._render(status))
    text = console.export_text()
    assert "2,000 packets/s" in text and "drops 3" in text and "4 not yet read" in text
    assert "28:57:be:c6:93:56" in text and "Hikvision recorder" in text and "80%" in text  # 1.6 of 2 Mbit/s
    assert "EXFIL" in text and "upload surge" in text
    assert "a4:8c:db:81:2a:13 192.168.100.123" in text  # a new device, not yet typed


def test_a_long_live_run_keeps_a_bounded_window_history() -> None:
    """A capture of days: the detector keeps `history_s` of window rows, not all of them."""
    from iotwatch.detect import Detector, DetectSettings
    from iotwatch.devices import NF, window_rows

    det = Detector(DetectSettings(window_s=60.0, history_s=600.0))
    rows_kept = []
    for w in range(1000):  # 1,000 one-minute windows of two devices
        t = window_rows(["28:57:be:00:00:01", "28:57:be:00:00:02"], w, 60.0, np.ones((2, NF), np.uint64))
        det.on_windows(t)
        rows_kept.append(sum(x.num_rows for x in det._windows))
    assert max(rows_kept[20:]) == 2 * 11 and rows_kept[-1] == 2 * 11  # ten minutes back + the newest
    starts = np.concatenate([x["window_start"].to_numpy() for x in det._windows])
    assert starts.min() == 989 * 60.0 and starts.max() == 999 * 60.0
    unbounded = Detector(DetectSettings(window_s=60.0))
    for w in range(50):
        unbounded.on_windows(window_rows(["28:57:be:00:00:01"], w, 60.0, np.ones((1, NF), np.uint64)))
    assert sum(x.num_rows for x in unbounded._windows) == 50  # offline keeps every window


def test_flow_parts_close_during_a_run_and_read_while_the_next_is_written(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from iotwatch.sinks import ParquetSink

    sink = ParquetSink(tmp_path)
    pipe = Pipeline(Settings(window_s=60.0, max_flows=1024, max_devices=64), [sink])
    frames = warm_frames()
    pipe.feed(frames_to_batch(frames[:8]))
    pipe.advance(int((frames[7][0] + 200) * 1e9))  # the first flows end (idle)
    pipe.close_parts()
    pipe.feed(frames_to_batch(frames[8:]))
    pipe.drain()
    first = tmp_path / "flows.parquet" / "part-00000.parquet"
    for _ in range(100):  # the writer thread closes it in order with the flows before
        if first.exists() and first.stat().st_size > 8:
            try:
                early = pq.read_table(first)
                break
            except OSError:
                pass
        time.sleep(0.05)
    else:
        raise AssertionError("the first part was not closed")
    assert early.num_rows > 0
    _devices, stats = pipe.finish()
    sink.close()
    assert pq.read_table(tmp_path / "flows.parquet").num_rows == stats.flows > early.num_rows


def test_the_user_to_become_after_dumpcap_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Root becomes --user, else the sudo user, else stays root; others never switch."""
    import os
    import pwd

    from iotwatch.capture import privileges

    nobody = pwd.getpwnam("nobody")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.delenv("SUDO_UID", raising=False)
    monkeypatch.delenv("SUDO_GID", raising=False)
    assert privileges.target_user(None) is None  # a root login: nobody to become
    assert privileges.target_user("root") is None
    u = privileges.target_user("nobody")
    assert u is not None and (u.uid, u.gid, u.name) == (nobody.pw_uid, nobody.pw_gid, "nobody")
    monkeypatch.setenv("SUDO_UID", str(nobody.pw_uid))
    monkeypatch.setenv("SUDO_GID", "4242")
    u = privileges.target_user(None)
    assert u is not None and (u.uid, u.gid, u.name) == (nobody.pw_uid, 4242, "nobody")
    monkeypatch.setenv("SUDO_UID", "0")  # sudo from root
    assert privileges.target_user(None) is None
    with pytest.raises(InterfaceError, match="no such user"):
        privileges.target_user("no-such-user-x")
    monkeypatch.setattr(os, "geteuid", lambda: nobody.pw_uid)  # an ordinary user
    monkeypatch.setenv("SUDO_UID", "1000")
    assert privileges.target_user(None) is None
    assert privileges.target_user("nobody") is None  # itself: nothing to do
    with pytest.raises(InterfaceError, match="only root"):
        privileges.target_user("root")


def test_the_stopper_signals_for_a_process_that_gave_up_root() -> None:
    """`stop` sends SIGINT; the end of its pipe (iotwatch died) too; `done` ends it quietly."""
    from iotwatch.capture.privileges import Stopper

    for how in ("stop", "eof", "done"):
        # SIGINT's default action in the target, as dumpcap has (a shell's background job inherits it ignored)
        target = subprocess.Popen(["sleep", "30"], preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        st = Stopper(target.pid)
        if how == "stop":
            st.interrupt()
        elif how == "eof":
            assert st.proc.stdin is not None
            st.proc.stdin.close()
        else:
            st.done()
        if how == "done":
            assert st.proc.wait(timeout=10) == 0
            assert target.poll() is None  # left alone
            target.kill()
            target.wait()
            continue
        assert target.wait(timeout=10) == -2  # SIGINT
        if how == "stop":
            st.done()
        assert st.proc.wait(timeout=10) == 0


def test_the_open_flows_a_verdict_during_the_run_counts() -> None:
    """Login sessions past their handshake count even while active; nothing else that is active."""
    from iotwatch.flows import FLOW_DTYPE, S_EST, S_SYN, S_SYNACK
    from iotwatch.live import login_sessions

    rows = np.zeros(5, FLOW_DTYPE)
    rows["proto"] = 6
    rows["client_a"] = 1
    rows["aport"] = 40000
    rows["last"] = [1_000, 9_000, 9_000, 9_000, 9_000]
    rows["bport"] = [443, 23, 443, 22, 2323]
    rows["state"] = [S_SYN, S_SYN | S_SYNACK | S_EST, S_SYN | S_SYNACK | S_EST, S_SYN, S_SYN | S_SYNACK | S_EST]
    rows["client_a"][4] = 0  # the server is the A side: its port is aport
    rows["aport"][4], rows["bport"][4] = 2323, 40001
    # an established telnet session, and one whose server is the A side (2323); not: an active
    # TLS connection, an SSH SYN not yet answered, an unanswered SYN to 443
    assert login_sessions(rows).tolist() == [False, True, False, False, True]


def test_an_alerts_delay_counts_from_the_end_of_the_window_its_evidence_crossed_in() -> None:
    """bench-live's "window end → alert": from the end of the window of the alert's timestamp; a
    model-only alert stamped with its window's end belongs to that window (not the next one), and
    an alert raised before its window ended (a pass over the window before it read a packet just
    past the boundary) counts from its threshold crossing: never a negative delay."""
    w = 10.0
    assert alert_delay(1_796_708_077.61, 1_796_708_080.9, w) == pytest.approx(0.9)  # in the window: from its end
    assert alert_delay(1_796_708_100.0, 1_796_708_101.948, w) == pytest.approx(1.948)  # on the boundary: the window ending there
    assert alert_delay(1_796_708_080.024, 1_796_708_081.355, w) == pytest.approx(1.331)  # raised before its window ended
    assert alert_delay(1_796_708_071.0, 1_796_708_091.5, w) == pytest.approx(11.5)  # judged a window late: counted as such
