"""The command line: outputs that follow the public interface, one-line errors, exit codes."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import CHECK_EVENTS, ROOT

DEMO = ROOT / "pcaps" / "demo-office.pcap"


def iotwatch(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "IOTWATCH_DEBUG"}
    return subprocess.run([sys.executable, "-m", "iotwatch", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300, check=False)


def events(out: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


def check_events(out: Path) -> None:
    if not CHECK_EVENTS.exists():
        pytest.skip("../shared/tools/check_events.py is absent")
    r = subprocess.run([sys.executable, str(CHECK_EVENTS), str(out)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    r = iotwatch("analyze", DEMO, "--out", out, "--flow-events")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return out


def test_demo_outputs_follow_the_interface(demo_out: Path) -> None:
    check_events(demo_out)
    ev = events(demo_out)
    kinds = [e["event_type"] for e in ev]
    assert kinds[-1] == "stats"
    assert {"device", "flow", "stats"} <= set(kinds)
    flows = pq.read_table(demo_out / "flows.parquet")
    windows = pq.read_table(demo_out / "windows.parquet")
    assert flows.num_rows == kinds.count("flow")
    # flow events carry the Parquet rows' values under Suricata's names
    by_id = {r["flow_id"]: r for r in flows.to_pylist()}
    for e in (e for e in ev if e["event_type"] == "flow"):
        row = by_id[e["flow_id"]]
        assert (e["src_ip"], e["src_port"], e["dest_ip"], e["dest_port"], e["community_id"]) == (
            row["src_ip"], row["src_port"], row["dest_ip"], row["dest_port"], row["community_id"])
        assert e["flow"]["pkts_toserver"] == row["pkts_toserver"] and e["flow"]["bytes_toclient"] == row["bytes_toclient"]
        assert e["flow"]["start"] == pytest.approx(row["start"], abs=1e-6)
        assert ("tcp" in e) == (row["proto"] == 6)
    stats = ev[-1]
    assert stats["flows"] == flows.num_rows and stats["windows"] == windows.num_rows
    # device totals add up to the frames read: every frame is sent by exactly one device here
    # (the demo's senders are all unicast) and received by a device or a group address
    devices = [e for e in ev if e["event_type"] == "device"]
    assert sum(d["packets_out"] for d in devices) == stats["packets"]
    assert sum(d["bytes_out"] for d in devices) == stats["bytes"]
    # window rows add up to the device totals
    per_dev = windows.group_by("device").aggregate([("packets_out", "sum"), ("bytes_in", "sum")]).to_pylist()
    totals = {r["device"]: (r["packets_out_sum"], r["bytes_in_sum"]) for r in per_dev}
    for d in devices:
        assert totals[d["mac"]] == (d["packets_out"], d["bytes_in"])


def test_demo_table_lists_the_recorder_first(demo_out: Path) -> None:
    ev = events(demo_out)
    devices = [e for e in ev if e["event_type"] == "device"]
    # devices are written in the order of the table: biggest uploader first
    uploads = [d["upload_bytes"] for d in devices]
    assert uploads == sorted(uploads, reverse=True)


def test_flow_events_are_opt_in(tmp_path: Path) -> None:
    r = iotwatch("analyze", DEMO, "--out", tmp_path, "-q")
    assert r.returncode == 0
    kinds = {e["event_type"] for e in events(tmp_path)}
    assert kinds == {"device", "stats"}
    assert pq.read_table(tmp_path / "flows.parquet").num_rows > 0


def test_usage_error_exit_2() -> None:
    r = iotwatch("analyze", DEMO, "--window", "-5")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr


def test_bad_local_net_is_a_usage_error() -> None:
    r = iotwatch("analyze", DEMO, "--local-net", "not-a-net")
    assert r.returncode == 2
    assert "CIDR" in r.stderr


def test_missing_file_one_line(tmp_path: Path) -> None:
    r = iotwatch("analyze", tmp_path / "nope.pcap", "--out", tmp_path / "o")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.pcap" in lines[0] and "no such file" in lines[0]


def test_not_a_capture_one_line(tmp_path: Path) -> None:
    f = tmp_path / "notes.pcap"
    f.write_text("these are my notes, not a capture\n")
    r = iotwatch("analyze", f, "--out", tmp_path / "o", "-q")
    assert r.returncode == 1
    assert "notes.pcap" in r.stderr and "not a pcap or pcapng" in r.stderr
    assert "Traceback" not in r.stderr


def test_truncated_capture_keeps_what_came_before(tmp_path: Path, demo_out: Path) -> None:
    data = DEMO.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 10])  # inside the last record
    r = iotwatch("analyze", cut, "--out", tmp_path / "o", "-q")
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cut.pcap" in lines[0] and "byte " in lines[0] and "cut off" in lines[0]
    check_events(tmp_path / "o")
    whole = events(demo_out)[-1]["packets"]
    assert events(tmp_path / "o")[-1]["packets"] == whole - 1


def test_gzip_and_folder_input(tmp_path: Path, demo_out: Path) -> None:
    folder = tmp_path / "caps"
    folder.mkdir()
    with gzip.open(folder / "demo.pcap.gz", "wb") as f:
        f.write(DEMO.read_bytes())
    r = iotwatch("analyze", folder, "--out", tmp_path / "o", "-q")
    assert r.returncode == 0, r.stderr
    assert events(tmp_path / "o")[-1]["packets"] == events(demo_out)[-1]["packets"]


def test_output_folder_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = iotwatch("analyze", DEMO, "--out", blocker / "sub")
    assert r.returncode == 1
    assert "output folder" in r.stderr and "Traceback" not in r.stderr


def test_devices_command(tmp_path: Path) -> None:
    r = iotwatch("devices", DEMO)
    assert r.returncode == 0
    assert "192.168.1.60" in r.stdout


def test_version() -> None:
    r = iotwatch("--version")
    assert r.returncode == 0 and r.stdout.startswith("iotwatch ")


def test_records_doc_is_generated_from_the_code() -> None:
    from iotwatch.records import records_markdown

    assert (ROOT / "docs" / "records.md").read_text() == records_markdown(), "run `make docs`"


def test_cheap_commands_load_no_library() -> None:
    """`iotwatch --help`, `--version` and every command's `--help` build from light modules: no
    NumPy, Arrow, numba, scapy or scikit-learn is imported for them (they cost 0.8 s and 235 MB)."""
    heavy = ("numpy", "pyarrow", "numba", "scapy", "sklearn", "dpkt")
    probe = ("import sys, runpy; sys.argv = ['iotwatch', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('iotwatch', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             f"print('LOADED', [m for m in {heavy!r} if m in sys.modules])")
    import typer.main

    from iotwatch.cli import app

    commands = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert {"analyze", "devices", "train", "evaluate", "synth"} <= set(commands)
    for args in (["--version"], ["--help"], *[[c, "--help"] for c in commands]):
        r = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60, check=False)
        assert "LOADED []" in r.stdout, (args, r.stdout[-300:], r.stderr[-300:])


def test_analyze_does_not_import_pandas(tmp_path: Path) -> None:
    """pyarrow imports pandas (0.2 s, 40 MB) on its first array when pandas is installed; the
    command's run hides it from that probe, and Arrow's explicit pandas calls still work after."""
    pytest.importorskip("pandas", reason="without pandas installed there is nothing to keep out")
    probe = ("import sys, runpy; sys.argv = ['iotwatch', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('iotwatch', run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
             "print('PANDAS', 'pandas' in sys.modules, 'EXIT', code)\n"
             "import pyarrow.parquet as pq\n"
             "t = pq.read_table(sys.argv[4] + '/flows.parquet')\n"
             "print('ROWS', t.num_rows, len(t.to_pandas()))\n")
    r = subprocess.run([sys.executable, "-c", probe, "analyze", str(DEMO), "--out", str(tmp_path), "-q"],
                       capture_output=True, text=True, timeout=300, check=False)
    assert "PANDAS False EXIT 0" in r.stdout, (r.stdout[-300:], r.stderr[-300:])
    rows = next(line.split() for line in r.stdout.splitlines() if line.startswith("ROWS"))
    assert int(rows[1]) > 0 and rows[1] == rows[2]
