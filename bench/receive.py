#!/usr/bin/env python3
"""The live process's CPU per packet, thread by thread, without a network or a sender.

Runs ``iotwatch capture`` with bench/standin_dumpcap.py in place of dumpcap (the benchmark
capture as a pcapng stream through a pipe, at ``--rate`` packets/s, looped with the same
addresses): the stand-in sends for ``--seconds`` once the analysis is ready, then pauses; the
span ends when the analysis has caught up (its CPU stops growing), so that the CPU counted is
that of exactly the packets sent. Each thread's CPU time is read from ``/proc`` at both ends of
the span: the main thread (the pcapng stream, the ring's numbering,
the analysis, the verdict passes), the pipe thread (capture/drain.py), the ring writer
(capture/ring.py), the sink writer (pipeline.py) and the stand-in itself. CPU time, not wall
time: robust to other work on the machine (compare interleaved runs all the same).

    python bench/receive.py [--rate 200000] [--seconds 20] [--ring] [--runs 2] [--perf FILE | --py-spy FILE]
                            [-- EXTRA capture args]

Prints one JSON line per run. The stand-in needs numpy: it runs with this Python.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int, tid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(f[11]) + int(f[12])) / TICK


def _threads(pid: int) -> dict[int, str]:
    """Thread id → role, from the threads' Python names (py-spy, when installed) or their order
    of creation (main; dumpcap's stderr reader; the pipe thread; then the sink and ring writers)."""
    tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    names: dict[int, str] = {}
    spy = next((p for p in (Path(PY).parent / "py-spy", ROOT / ".venv" / "bin" / "py-spy") if p.exists()), None)
    if spy is not None:
        r = subprocess.run([str(spy), "dump", "--pid", str(pid)], capture_output=True, text=True)
        for line in r.stdout.splitlines():  # Thread 1234 (idle): "iotwatch-pipe"
            if line.startswith("Thread ") and '"' in line:
                parts = line.split()
                try:
                    tid = int(parts[1], 0)
                except ValueError:
                    continue
                names[tid] = line.split('"')[1]
    return {t: names.get(t, "main" if t == pid else "other") for t in tids}


def standin_pid(parent: int) -> int:
    """The stand-in dumpcap started by the capture ``parent``."""
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            if b"standin_dumpcap" in Path(f"/proc/{p}/cmdline").read_bytes() and \
                    Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(parent):
                return int(p)
        except OSError:
            continue
    raise SystemExit("the stand-in dumpcap is not running")


def one_run(rate: int, seconds: float, ring: bool, extra: list[str], work: Path,
            perf: Path | None = None, spy_out: Path | None = None) -> dict[str, object]:
    out = work / "out"
    report = work / "standin.jsonl"
    env = {**os.environ, "IOTWATCH_DUMPCAP": str(ROOT / "bench" / "standin_dumpcap.py"),
           "STANDIN_RATE": str(rate), "STANDIN_OUT": str(report), "STANDIN_GO": str(work / "go"),
           "PATH": f"{Path(PY).parent}:{os.environ.get('PATH', '')}"}
    env.pop("SUDO_UID", None)
    env.pop("SUDO_GID", None)
    cmd = [PY, "-m", "iotwatch", "capture", "-i", "lo", "--out", str(out), "--quiet", "--window", "10", *extra]
    if ring:
        cmd += ["--ring", str(work / "ring"), "--ring-files", "4"]
    # (run from the work folder: `-m iotwatch` is the one installed with this Python, not a tree in the cwd)
    proc = subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ev = out / "events.jsonl"
    while not (ev.exists() and ev.stat().st_size):
        if proc.poll() is not None:
            raise SystemExit(f"capture did not start: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.2)
    time.sleep(1)  # the models and kernels are loaded once the first stats event is out (as bench/live.py)
    roles = _threads(proc.pid)
    c0 = {t: _cpu(proc.pid, t) for t in roles}
    s0 = _cpu(standin_pid(proc.pid), standin_pid(proc.pid))
    (work / "go").touch()  # the stand-in sends ...
    if spy_out is not None:
        subprocess.run([str(ROOT / ".venv" / "bin" / "py-spy"), "record", "--pid", str(proc.pid), "--duration",
                        str(int(seconds)), "--format", "raw", "--threads", "--output", str(spy_out), "--nonblocking"],
                       capture_output=True)
    elif perf is not None:
        subprocess.run(["perf", "record", "-q", "-g", "-p", str(proc.pid), "-o", str(perf), "--", "sleep", str(seconds)],
                       capture_output=True)
    else:
        time.sleep(seconds)
    s1 = _cpu(standin_pid(proc.pid), standin_pid(proc.pid))
    (work / "go").unlink()  # ... and pauses: the span ends once the analysis has caught up (its CPU stops)
    prev = sum(_cpu(proc.pid, t) for t in roles)
    caught_up = time.monotonic()
    while True:
        time.sleep(1.0)
        now = sum(_cpu(proc.pid, t) for t in roles)
        if now - prev < 0.03 or time.monotonic() - caught_up > 120:
            break
        prev = now
    c1 = {t: _cpu(proc.pid, t) for t in roles}
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=300)
    lines = [json.loads(x) for x in ev.read_text().splitlines() if x.endswith("}")]
    stats = [e for e in lines if e["event_type"] == "stats"]
    # packets analysed during the span: all the stand-in sent (it sends only while "go" exists)
    std = json.loads(report.read_text().splitlines()[-1])
    packets = std["sent"]
    by: dict[str, float] = {}
    for t, role in roles.items():
        by[role] = by.get(role, 0.0) + c1[t] - c0[t]
    us = {k: round(v / packets * 1e6, 3) for k, v in sorted(by.items())}
    return {"rate": rate, "seconds": seconds, "ring": ring, "us_per_packet": us,
            "us_iotwatch": round(sum(by.values()) / packets * 1e6, 3),
            "us_standin": round((s1 - s0) / packets * 1e6, 3), "analysed": stats[-1]["packets"],
            "sent": std["sent"], "standin_behind_max_s": std["behind_max_s"], "standin_blocked_s": std["blocked_s"],
            "backlog_max_mb": round((stats[-1].get("backlog_max_bytes") or 0) / 2**20, 1),
            "load": round(os.getloadavg()[0], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=200_000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--ring", action="store_true", help="keep the evidence ring, as bench/live.py does")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--perf", type=Path, help="also record the span with `perf record -g` into this file")
    ap.add_argument("--py-spy", type=Path, help="or record it with `py-spy record --format raw` into this file")
    ap.add_argument("extra", nargs="*", help="more `iotwatch capture` arguments (after --)")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    from live import capture_file  # bench/data/live.pcap, the stand-in's packets

    capture_file()
    for _ in range(a.runs):
        with tempfile.TemporaryDirectory(prefix="iotwatch-receive-") as tmp:
            print(json.dumps(one_run(a.rate, a.seconds, a.ring, a.extra, Path(tmp), a.perf, a.py_spy)), flush=True)


if __name__ == "__main__":
    main()
