"""Live capture on a real kernel: a veth pair between two network namespaces that the tests
create and remove; tcpreplay sends into one end while ``iotwatch capture`` listens on the other.
No frame leaves the machine. Skipped, with the reason, where the kernel or the user may not
create namespaces, or where dumpcap or tcpreplay are missing (`make sysdeps` installs them)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import CHECK_EVENTS, ROOT

from iotwatch.capture.source import open_capture

DEMO = ROOT / "pcaps" / "demo-office.pcap"
TOOLS = {t: shutil.which(t) for t in ("ip", "tcpreplay", "dumpcap")}


@dataclass
class Pair:
    send_ns: str  # namespace of the sending end
    cap_ns: str  # namespace of the monitored end
    send_if: str
    cap_if: str

    def sysfs(self, counter: str) -> int:
        r = subprocess.run(["ip", "netns", "exec", self.cap_ns, "cat", f"/sys/class/net/{self.cap_if}/statistics/{counter}"],
                           capture_output=True, text=True, check=True)
        return int(r.stdout)


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    missing = [t for t, p in TOOLS.items() if p is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (run `make sysdeps`)")
    tag = f"{os.getpid() % 100000}"
    p = Pair(f"iwS{tag}", f"iwC{tag}", f"iws{tag}", f"iwc{tag}")
    r = _ip("netns", "add", p.send_ns)
    if r.returncode:
        pytest.skip(f"the kernel refused a network namespace: {r.stderr.strip()} (needs root or CAP_SYS_ADMIN)")
    try:
        _ip("netns", "add", p.cap_ns)
        steps = [
            ["link", "add", p.send_if, "netns", p.send_ns, "type", "veth", "peer", "name", p.cap_if, "netns", p.cap_ns],
            # no IPv6 on either end: the kernel would otherwise send router solicitations and
            # duplicate-address probes on link-up, which would move the TX counter under test
            ["netns", "exec", p.send_ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
            ["netns", "exec", p.cap_ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
            ["netns", "exec", p.send_ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
            ["netns", "exec", p.cap_ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
            ["-n", p.send_ns, "link", "set", p.send_if, "up"],
            ["-n", p.cap_ns, "link", "set", p.cap_if, "up"],
        ]
        for s in steps:
            r = _ip(*s)
            if r.returncode:
                pytest.skip(f"the kernel refused `ip {' '.join(s)}`: {r.stderr.strip()}")
        yield p
    finally:
        _ip("netns", "del", p.send_ns)
        _ip("netns", "del", p.cap_ns)


def iotwatch_args(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "iotwatch", *map(str, args)]


class Capture:
    """``iotwatch capture`` running in the monitored namespace."""

    def __init__(self, pair: Pair, out: Path, *extra: str | Path) -> None:
        self.out = out
        # (under `sudo make test`, SUDO_UID would make the capture become the invoking user,
        # who cannot write pytest's root-owned folders: the tests that switch say --user)
        env = {k: v for k, v in os.environ.items() if k not in ("IOTWATCH_DEBUG", "SUDO_UID", "SUDO_GID")}
        self.proc = subprocess.Popen(["ip", "netns", "exec", pair.cap_ns,
                                      *iotwatch_args("capture", "-i", pair.cap_if, "--out", out, "--quiet", *extra)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 120
        while not self.events():  # the first stats event: dumpcap has opened the interface
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                _out, err = self.proc.communicate()
                raise AssertionError(f"capture did not start: {err}")
            time.sleep(0.2)

    def events(self) -> list[dict]:  # type: ignore[type-arg]
        try:
            text = (self.out / "events.jsonl").read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str]:
        self.proc.send_signal(sig)
        _out, err = self.proc.communicate(timeout=300)
        return self.proc.returncode, err


def replay(pair: Pair, pcap: Path, *rate: str) -> int:
    """Send a capture into the pair; returns the packets tcpreplay says it sent."""
    r = subprocess.run(["ip", "netns", "exec", pair.send_ns, "tcpreplay", "-i", pair.send_if, *rate, str(pcap)],
                       capture_output=True, text=True, check=True, timeout=600)
    for line in r.stdout.splitlines():
        if line.strip().startswith("Actual:"):
            return int(line.split()[1])
    raise AssertionError(r.stdout)


def final_stats(events: list[dict]) -> dict:  # type: ignore[type-arg]
    stats = [e for e in events if e["event_type"] == "stats"]
    assert stats and stats[-1]["final"] is True
    assert all(s["final"] is False for s in stats[:-1])
    return stats[-1]


def ring_packets(out: Path) -> int:
    """Packets in the ring's files, read with the project's own reader (which reports damage)."""
    total = 0
    for path in sorted((out / "ring").glob("*.pcapng")):
        r = open_capture(path)
        total += sum(len(b) for b in r.batches())
        assert not r.problems, r.problems
        r.chunks.close()
    return total


def check_events(out: Path) -> None:
    if not CHECK_EVENTS.exists():
        pytest.skip("../shared/tools/check_events.py is absent")
    r = subprocess.run([sys.executable, str(CHECK_EVENTS), str(out)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout


def replay_demo_and_stop(pair: Pair, cap: Capture) -> dict:  # type: ignore[type-arg]
    """Replay the demo capture into the pair at 5 k packets/s, stop the capture cleanly; its final
    stats, having checked that every packet sent was received and analysed."""
    sent = replay(pair, DEMO, "--pps", "5000")
    time.sleep(2)
    code, err = cap.stop()
    assert code == 0, err
    assert "Traceback" not in err
    stats = final_stats(cap.events())
    assert stats["packets"] == sent == stats["capture_received"]
    return stats


def test_every_packet_sent_is_captured_and_nothing_is_sent(pair: Pair, tmp_path: Path) -> None:
    tx0 = pair.sysfs("tx_packets")
    cap = Capture(pair, tmp_path)
    stats = replay_demo_and_stop(pair, cap)
    assert stats["capture_drops"] == 0 and stats["if_drops"] == 0 and stats["capture_drops_kernel"] == 0
    assert 0 < stats["backlog_max_bytes"] <= 256 << 20  # read from the pipe, and bounded
    assert stats["capture_nice"] == -10  # (as root) dumpcap and its pipe's thread win the CPU over the analysis
    assert stats["verdicts_nice"] == -5  # and the verdict passes over the packet thread
    assert stats["interrupted"] is True
    assert pair.sysfs("tx_packets") == tx0  # passive: not one frame out of the monitored port
    assert ring_packets(tmp_path) == stats["packets"]  # = packets sent (checked on replay)
    check_events(tmp_path)
    # the outputs are those of `analyze` over the same packets (the ring): the same devices
    offline = tmp_path / "offline"
    r = subprocess.run(iotwatch_args("analyze", tmp_path / "ring", "--out", offline, "--quiet"),
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    devs = lambda out: {(e["mac"], e["packets_out"], e["bytes_in"]) for e in events_of(out) if e["event_type"] == "device"}  # noqa: E731
    assert devs(tmp_path) == devs(offline)
    live_flows = pq.read_table(tmp_path / "flows.parquet").num_rows
    assert live_flows == pq.read_table(offline / "flows.parquet").num_rows > 0


def events_of(out: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


def test_sigint_mid_run_leaves_valid_outputs_and_a_readable_ring(pair: Pair, tmp_path: Path) -> None:
    cap = Capture(pair, tmp_path, "--ring-size", "0.5", "--ring-files", "3")
    sender = subprocess.Popen(["ip", "netns", "exec", pair.send_ns, "tcpreplay", "-q", "-i", pair.send_if,
                               "--pps", "1500", "--loop", "3", str(DEMO)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(5)
        code, err = cap.stop()  # while packets still arrive
    finally:
        sender.terminate()
        sender.wait()
    assert code == 0, err
    assert "Traceback" not in err
    check_events(tmp_path)
    stats = final_stats(cap.events())
    assert 0 < stats["packets"] < 3 * 4108
    assert stats["interrupted"] is True
    ring = sorted((tmp_path / "ring").glob("*.pcapng"))
    assert 1 <= len(ring) <= 3  # the ring bounds the disk: the oldest files were deleted
    assert stats["ring_files"] >= len(ring)
    ring_packets(tmp_path)  # every kept file reads to its end without damage
    r = subprocess.run(["tshark", "-r", str(ring[-1]), "-q", "-z", "io,stat,0"], capture_output=True, text=True,
                       check=False) if shutil.which("tshark") else None
    assert r is None or r.returncode == 0, r.stderr if r else ""
    flows = pq.read_table(tmp_path / "flows.parquet")
    windows = pq.read_table(tmp_path / "windows.parquet")
    assert flows.num_rows == stats["flows"] and windows.num_rows == stats["windows"]


def test_missing_interface_and_missing_permission_say_what_to_do(pair: Pair, tmp_path: Path) -> None:
    r = subprocess.run(["ip", "netns", "exec", pair.cap_ns, *iotwatch_args("capture", "-i", "nosuch0", "--out", tmp_path)],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "no interface named 'nosuch0'" in r.stderr and "iotwatch interfaces" in r.stderr
    assert not (tmp_path / "events.jsonl").exists()  # nothing written before the capture could start
    r = run_as_nobody(pair, tmp_path, TOOLS["dumpcap"] or "dumpcap")
    if _dumpcap_has_caps():
        pytest.skip("dumpcap has file capabilities here: an unprivileged user may capture")
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no permission to capture" in lines[0] and "setcap" in lines[0], r.stderr


def run_as_nobody(pair: Pair, tmp_path: Path, dumpcap: str, *extra: str,
                  replay_demo: bool = False) -> subprocess.CompletedProcess[str]:
    """``iotwatch capture`` as user nobody (no capability inherited), with the given dumpcap."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("setpriv or root missing: cannot run the capture as an unprivileged user")
    home = Path(tempfile.mkdtemp(prefix="iotwatch-nobody-"))  # pytest's folders are private to root
    os.chmod(home, 0o777)
    out = home / "out"
    env = {**os.environ, "HOME": str(home), "NUMBA_CACHE_DIR": str(home / "numba"), "IOTWATCH_DUMPCAP": dumpcap}
    cmd = ["ip", "netns", "exec", pair.cap_ns, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
           "--inh-caps=-all", *iotwatch_args("capture", "-i", pair.cap_if, "--out", out, "--quiet", *extra)]
    try:
        if not replay_demo:
            return subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, timeout=600)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 600  # the unprivileged user compiles the kernels into its own cache
        while not (out / "events.jsonl").exists() or not (out / "events.jsonl").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
            time.sleep(0.5)
        sent = replay(pair, DEMO, "--pps", "5000")
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=300)
        stats = final_stats(events_of(out))
        assert stats["packets"] == sent, err
        assert all(p.stat().st_uid == 65534 for p in [out / "events.jsonl", *(out / "ring").glob("*")])
        return subprocess.CompletedProcess(cmd, proc.returncode, "", err)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_a_normal_user_captures_when_dumpcap_has_capabilities(pair: Pair, tmp_path: Path) -> None:
    """Least privilege: iotwatch itself needs nothing; a dumpcap with capture capabilities suffices."""
    if not shutil.which("setcap") or os.geteuid() != 0:
        pytest.skip("setcap or root missing")
    tools = Path(tempfile.mkdtemp(prefix="iotwatch-dumpcap-"))
    try:
        os.chmod(tools, 0o755)
        copy = tools / "dumpcap"
        shutil.copy2(TOOLS["dumpcap"] or "dumpcap", copy)
        r = subprocess.run(["setcap", "cap_net_raw,cap_net_admin=eip", str(copy)], capture_output=True, text=True,
                           check=False)
        if r.returncode:
            pytest.skip(f"cannot give a dumpcap copy file capabilities here: {r.stderr.strip()}")
        r = run_as_nobody(pair, tmp_path, str(copy), "--no-model", replay_demo=True)
        assert r.returncode == 0, r.stderr
    finally:
        shutil.rmtree(tools, ignore_errors=True)


def _dumpcap_has_caps() -> bool:
    try:
        return bool(os.getxattr(TOOLS["dumpcap"] or "", "security.capability"))
    except OSError:
        return False


def test_link_down_says_what_to_do(pair: Pair, tmp_path: Path) -> None:
    _ip("-n", pair.send_ns, "link", "set", pair.send_if, "down")  # the peer goes: no carrier here
    try:
        r = subprocess.run(["ip", "netns", "exec", pair.cap_ns, *iotwatch_args("capture", "-i", pair.cap_if, "--out", tmp_path)],
                           capture_output=True, text=True, check=False)
    finally:
        _ip("-n", pair.send_ns, "link", "set", pair.send_if, "up")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "has no link" in r.stderr and "mirror" in r.stderr


def test_hospital_live_raises_the_alerts_of_analyze(pair: Pair, tmp_path: Path) -> None:
    """The incident, replayed at its own pace: the same alerts for the same device as `analyze`
    on the file, and exactly `analyze`'s windows and alerts on the packets the ring kept."""
    pcap = tmp_path / "hospital.pcap"
    opts = ("--window", "10", "--uplink-mbps", "2")  # a 70 s scenario: 10 s windows give it a baseline
    r = subprocess.run(iotwatch_args("synth", "hospital", "--duration", "70", "--quiet", "20", "--uplink-mbps", "2",
                                     "--seed", "7", "--out", pcap), capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    live = tmp_path / "live"
    cap = Capture(pair, live, *opts)
    sent = replay(pair, pcap)
    time.sleep(3)
    stopped_at = time.time()
    code, err = cap.stop(signal.SIGTERM)
    assert code == 0, err
    check_events(live)
    evs = cap.events()
    assert final_stats(evs)["packets"] == sent
    offline = tmp_path / "offline"
    r = subprocess.run(iotwatch_args("analyze", pcap, "--out", offline, "--quiet", *opts), capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0, r.stderr

    def alerts(events: list[dict]) -> set[tuple[str, str]]:  # type: ignore[type-arg]
        return {(e["src_mac"], e["alert"]["category"]) for e in events if e["event_type"] == "alert"}

    want = alerts(events_of(offline))
    assert {c for _m, c in want} >= {"scan", "bruteforce", "c2", "exfil"}
    assert alerts(evs) == want
    raised = {}
    for e in evs:  # every alert says where its packets are in the ring
        if e["event_type"] == "alert":
            ring = e["evidence"]["ring"]
            assert Path(ring["file"]).parent == live / "ring" and Path(ring["file"]).exists()
            assert ring["packet"] >= 1
            raised[e["alert"]["category"]] = e["raised_ts"] - stopped_at
    # raised while capturing, not only when the capture ended (an episode whose evidence is a
    # flow still open when the capture stops is concluded at the end, as offline)
    assert min(raised.values()) < 0, raised
    # the same packets offline (the ring): the same windows, row for row
    ring_out = tmp_path / "ring-offline"
    r = subprocess.run(iotwatch_args("analyze", live / "ring", "--out", ring_out, "--quiet", *opts),
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    a = pq.read_table(live / "windows.parquet").sort_by([("window_start", "ascending"), ("device", "ascending")])
    b = pq.read_table(ring_out / "windows.parquet").sort_by([("window_start", "ascending"), ("device", "ascending")])
    assert a.num_rows == b.num_rows > 0
    diff = [c for c in a.column_names if a.column(c).to_pylist() != b.column(c).to_pylist()]
    assert not diff, diff
    assert alerts(events_of(ring_out)) == want


def test_full_disk_stops_the_ring_not_the_analysis(pair: Pair, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True, text=True,
                       check=False)
    if r.returncode:
        pytest.skip(f"cannot mount a small tmpfs to fill: {r.stderr.strip()}")
    try:
        out = tmp_path / "out"
        cap = Capture(pair, out, "--ring", disk, "--ring-files", "100", "--ring-size", "0.1")
        sent = replay(pair, DEMO, "--pps", "5000")  # 1.3 MB: the disk fills after about a fifth
        time.sleep(2)
        code, err = cap.stop()
        kept = 0
        for path in sorted(disk.glob("*.pcapng")):
            rd = open_capture(path)
            kept += sum(len(b) for b in rd.batches())
            assert not rd.problems, rd.problems
            rd.chunks.close()
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "ring stopped" in line]
    assert len(warnings) == 1 and "No space left" in warnings[0] and "analysis goes on" in warnings[0]
    stats = final_stats(cap.events())
    assert stats["packets"] == sent > kept > 0  # every packet analysed, the first ones kept
    check_events(out)


def test_a_filter_dumpcap_refuses_says_so(pair: Pair, tmp_path: Path) -> None:
    r = subprocess.run(["ip", "netns", "exec", pair.cap_ns,
                        *iotwatch_args("capture", "-i", pair.cap_if, "--bpf", "port x", "--out", tmp_path / "o")],
                       capture_output=True, text=True, check=False, timeout=120)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "capture filter (--bpf) is not valid" in r.stderr and "port x" in r.stderr
    assert not (tmp_path / "o").exists()


def _proc_ids(pid: int) -> tuple[int, int, str]:
    """(real uid, effective uid, effective capabilities) of a process, from /proc."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    uids = status["Uid"].split()
    return int(uids[0]), int(uids[1]), status["CapEff"].strip()


def _thread_nices(pid: int) -> list[int]:
    """The nice value of each thread of a process (field 19 of /proc/PID/task/TID/stat)."""
    out = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        out.append(int(stat.read_text().rsplit(")", 1)[1].split()[16]))
    return out


def test_root_opens_the_interface_and_the_analysis_runs_as_the_user(pair: Pair, tmp_path: Path) -> None:
    """Least privilege when started as root: dumpcap (as shipped, no capabilities of its own)
    captures as root; iotwatch becomes `nobody` before analysing: no capability left, every
    output its own, every packet analysed, and it still stops dumpcap cleanly on SIGINT. The
    priorities set as root hold after: the pipe's thread at -10, the verdicts' thread at -5."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    home = Path(tempfile.mkdtemp(prefix="iotwatch-user-"))  # pytest's folders are private to root
    try:
        os.chmod(home, 0o777)
        out = home / "out"
        cap = Capture(pair, out, "--user", "nobody", "--no-model")
        uid, euid, caps = _proc_ids(cap.proc.pid)
        assert (uid, euid) == (65534, 65534) and int(caps, 16) == 0
        dumpcap = [int(p) for p in subprocess.run(["pgrep", "-P", str(cap.proc.pid), "-x", "dumpcap"],
                                                 capture_output=True, text=True, check=False).stdout.split()]
        assert len(dumpcap) == 1 and _proc_ids(dumpcap[0])[1] == 0  # the capture itself stays root's
        assert {-10, -5, 0} <= set(_thread_nices(cap.proc.pid))
        stats = replay_demo_and_stop(pair, cap)
        assert stats["capture_drops"] == 0 and stats["verdicts_nice"] == -5
        outputs = list(out.rglob("*"))
        assert {"events.jsonl", "windows.parquet", "baselines.json"} <= {p.name for p in outputs}
        assert all(p.stat().st_uid == 65534 for p in [out, *outputs]), [(p, p.stat().st_uid) for p in outputs]
        assert ring_packets(out) == stats["packets"]  # = packets sent
        check_events(out)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_an_unknown_user_says_so(pair: Pair, tmp_path: Path) -> None:
    r = subprocess.run(["ip", "netns", "exec", pair.cap_ns,
                        *iotwatch_args("capture", "-i", pair.cap_if, "--user", "no-such-user-x", "--out", tmp_path / "o")],
                       capture_output=True, text=True, check=False, timeout=120)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "--user no-such-user-x: no such user" in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()
