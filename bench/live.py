"""make bench-live: the highest replay rate a live capture holds with zero drops, whole analysis on.

A veth pair between two network namespaces (created here, removed at the end); tcpreplay sends a
realistic mix with a Mirai-style scanner in it into one end at a fixed rate for ``--seconds``
(looped, with ``--unique-ip`` so that every loop's flows are new flows);
``iotwatch capture`` (ring, flows, windows, detector, inventory: everything) listens on the other.
For each rate: packets sent, packets analysed, drops (dumpcap's and the interface's), and the
delay from the end of the window in which an alert's evidence crossed its threshold to the moment
the alert was written to events.jsonl. Prints a Markdown table; ``--out FILE`` also writes it.

    python bench/live.py [--rates 50000,100000,...] [--seconds 60] [--out bench/out/live.md]

Needs root (namespaces), dumpcap, tcpreplay and mergecap (`make sysdeps`). The sender and the
capture share this machine's cores, as on an auditor's laptop they would not: the numbers are a
floor for the capture side.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"
PY = sys.executable
WINDOW = 10.0


def sh(*cmd: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(map(str, cmd)), capture_output=True, text=True, check=check)


def capture_file() -> Path:
    """300 k packets of the benchmark mix after a 20 s scanner scenario (scan first, so every loop
    of the replay scans again)."""
    out = DATA / "live.pcap"
    if out.exists():
        return out
    DATA.mkdir(parents=True, exist_ok=True)
    mix, scan = DATA / "live-mix.pcap", DATA / "live-scan.pcap"
    sh(PY, ROOT / "bench" / "fastgen.py", "mix", mix, "--packets", "300000")
    sh(PY, "-m", "iotwatch", "synth", "scan", "--duration", "20", "--seed", "3", "--out", scan)
    sh("mergecap", "-a", "-F", "pcap", "-w", out, scan, mix)
    return out


class Pair:
    def __init__(self) -> None:
        tag = os.getpid() % 100000
        self.tx_ns, self.rx_ns, self.tx, self.rx = f"ibS{tag}", f"ibC{tag}", f"ibs{tag}", f"ibc{tag}"

    def __enter__(self) -> Pair:
        sh("ip", "netns", "add", self.tx_ns)
        sh("ip", "netns", "add", self.rx_ns)
        sh("ip", "link", "add", self.tx, "netns", self.tx_ns, "type", "veth", "peer", "name", self.rx, "netns", self.rx_ns)
        for ns in (self.tx_ns, self.rx_ns):
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        sh("ip", "-n", self.tx_ns, "link", "set", self.tx, "up")
        sh("ip", "-n", self.rx_ns, "link", "set", self.rx, "up")
        return self

    def __exit__(self, *exc: object) -> None:
        sh("ip", "netns", "del", self.tx_ns, check=False)
        sh("ip", "netns", "del", self.rx_ns, check=False)


def events(out: Path) -> list[dict]:  # type: ignore[type-arg]
    try:
        lines = (out / "events.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(x) for x in lines if x.endswith("}")]


def one_rate(pair: Pair, pcap: Path, rate: str, seconds: int, work: Path) -> dict[str, object]:
    out = work / f"rate-{rate}"
    proc = subprocess.Popen(["ip", "netns", "exec", pair.rx_ns, PY, "-m", "iotwatch", "capture", "-i", pair.rx,
                             "--out", str(out), "--quiet", "--window", str(WINDOW), "--ring-files", "4"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    while not events(out):
        if proc.poll() is not None:
            raise SystemExit(f"capture did not start: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.2)
    speed = ["--topspeed"] if rate == "top" else ["--pps", rate]
    r = sh("ip", "netns", "exec", pair.tx_ns, "tcpreplay", "-i", pair.tx, *speed, "--loop", "1000", "--unique-ip", "-K",
           "--duration", str(seconds), pcap)
    sent = next(int(x.split()[1]) for x in r.stdout.splitlines() if x.strip().startswith("Actual:"))
    rated = next((x for x in r.stdout.splitlines() if x.strip().startswith("Rated:")), "")
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=600)
    evs = events(out)
    st = [e for e in evs if e["event_type"] == "stats"][-1]
    lags = sorted({e["verdict_lag_s"] for e in evs if e["event_type"] == "stats" and e.get("verdict_lag_s") is not None})
    delays = []
    for e in evs:
        if e["event_type"] == "alert" and "raised_ts" in e:
            from datetime import datetime

            t = datetime.strptime(e["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
            window_end = (math.floor(t / WINDOW) + 1) * WINDOW
            delays.append(e["raised_ts"] - window_end)
    m = re.search(r"([\d.]+) pps", rated)
    pps = float(m.group(1)) if m else sent / seconds
    return {"rate": rate, "sent": sent, "sent_pps": pps, "analysed": st["packets"], "capture_drops": st["capture_drops"],
            "if_drops": st["if_drops"], "lost": sent - st["packets"], "alerts": len(delays),
            "delay_median": statistics.median(delays) if delays else None, "delay_max": max(delays) if delays else None,
            "verdict_lag_median": statistics.median(lags) if lags else None, "verdict_lag_max": st["verdict_lag_max_s"]}


def table(rows: list[dict[str, object]], seconds: int) -> str:
    out = [f"| replay rate | sent in {seconds} s | sent, packets/s | analysed | lost | dumpcap drops | interface drops "
           "| window end → verdicts written, median / max | alerts raised | window end → alert, median / max |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = "—" if r["delay_median"] is None else f"{r['delay_median']:.2f} s / {r['delay_max']:.2f} s"
        v = "—" if r["verdict_lag_median"] is None else f"{r['verdict_lag_median']:.2f} s / {r['verdict_lag_max']:.2f} s"
        out.append(f"| {r['rate']} | {r['sent']:,} | {r['sent_pps']:,.0f} | {r['analysed']:,} | {r['lost']:,} | "
                   f"{r['capture_drops']} | {r['if_drops']} | {v} | {r['alerts']} | {d} |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="50000,75000,100000,150000,200000,top")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--keep", type=Path, help="keep each run's output folder here")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/live.py needs root (network namespaces)")
    pcap = capture_file()
    rows = []
    with Pair() as pair, tempfile.TemporaryDirectory(prefix="iotwatch-bench-live-") as tmp:
        for rate in a.rates.split(","):
            row = one_rate(pair, pcap, rate, a.seconds, a.keep or Path(tmp))
            print(json.dumps(row), flush=True)
            rows.append(row)
    md = table(rows, a.seconds)
    print(md)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(md)


if __name__ == "__main__":
    main()
