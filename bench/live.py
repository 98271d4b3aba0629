"""make bench-live: the highest replay rate a live capture holds with zero drops, whole analysis on.

A veth pair between two network namespaces (created here, removed at the end); tcpreplay sends a
realistic mix with a Mirai-style scanner in it into one end at a fixed rate for ``--seconds``
(looped, with ``--unique-ip`` so that every loop's flows are new flows);
``iotwatch capture`` (ring, flows, windows, detector, inventory: everything) listens on the other.
For each rate: packets sent, packets analysed, drops (dumpcap's and the interface's), the CPU
time iotwatch and dumpcap spent per packet analysed (from /proc: less sensitive to other work on
the machine than the drops), the machine's load, and the delay from the end of the window in which
an alert's evidence crossed its threshold to the moment the alert was written to events.jsonl.

By default the rate climbs from ``--start`` by ``--step`` until packets are lost, then the step is
halved between the last clean rate and the first lossy one down to ``--resolution``; the report
leads with the highest rate that lost nothing. Prints Markdown; ``--out FILE`` also writes it.

    python bench/live.py [--rates 50000,100000,...] [--seconds 60] [--out bench/out/live.md] [--doc docs/benchmarks.md]

Needs root (namespaces), dumpcap, tcpreplay and mergecap (`make sysdeps`). The sender and the
capture share this machine's cores, as on an auditor's laptop they would not: the numbers are a
floor for the capture side.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from iotwatch.live import alert_delay  # noqa: E402

DATA = ROOT / "bench" / "data"
PY = sys.executable
WINDOW = 10.0
PHASE = 7.0  # where in a window the replay starts, s


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


def _cpu(rx: str) -> dict[str, float]:
    """CPU seconds used so far by the capture's processes (iotwatch, dumpcap) on interface ``rx``."""
    out = {"iotwatch": 0.0, "dumpcap": 0.0}
    tick = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if rx.encode() not in cmd:
            continue
        used = (int(fields[11]) + int(fields[12])) / tick
        if comm == "dumpcap":
            out["dumpcap"] += used
        elif b"iotwatch" in cmd and b"capture" in cmd and comm.startswith("python"):
            out["iotwatch"] += used
    return out


def one_rate(pair: Pair, pcap: Path, rate: int | str, seconds: int, work: Path,
             extra: tuple[str, ...] = ()) -> dict[str, object]:
    out = work / f"rate-{rate}"
    proc = subprocess.Popen(["ip", "netns", "exec", pair.rx_ns, PY, "-m", "iotwatch", "capture", "-i", pair.rx,
                             "--out", str(out), "--quiet", "--window", str(WINDOW), "--ring-files", "4", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                            # (under sudo the capture would become the invoking user, who cannot
                            # write this root-owned temporary folder)
                            env={k: v for k, v in os.environ.items() if k not in ("SUDO_UID", "SUDO_GID")})
    while not events(out):
        if proc.poll() is not None:
            raise SystemExit(f"capture did not start: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.2)
    time.sleep(1)  # the models and kernels are loaded once the first stats event is out
    speed = ["--topspeed"] if rate == "top" else ["--pps", str(rate)]
    # the replay starts PHASE s into a window: the scanner crosses its thresholds in the window's
    # last seconds, the case where flows still settling when the window closes delay the alert
    time.sleep((PHASE - time.time() % WINDOW) % WINDOW)
    cpu0 = _cpu(pair.rx)
    r = sh("ip", "netns", "exec", pair.tx_ns, "tcpreplay", "-i", pair.tx, *speed, "--loop", "1000", "--unique-ip", "-K",
           "--duration", str(seconds), pcap)
    load = os.getloadavg()[0]
    time.sleep(3)
    cpu1 = _cpu(pair.rx)
    stopped = time.time()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=600)
    sent = next(int(x.split()[1]) for x in r.stdout.splitlines() if x.strip().startswith("Actual:"))
    rated = next((x for x in r.stdout.splitlines() if x.strip().startswith("Rated:")), "")
    evs = events(out)
    st = [e for e in evs if e["event_type"] == "stats"][-1]
    lags = sorted({e["verdict_lag_s"] for e in evs if e["event_type"] == "stats" and e.get("verdict_lag_s") is not None})
    # each close pass's wall and CPU seconds (a stats event carries the newest one's)
    close_passes = {(e["verdict_pass_s"], e["verdict_pass_cpu_s"]) for e in evs
                    if e["event_type"] == "stats" and e.get("verdict_pass_s") is not None}
    delays, at_end = [], 0
    for e in evs:
        if e["event_type"] == "alert" and "raised_ts" in e:
            if e["raised_ts"] >= stopped:  # concluded when the capture ended (its flow was still open)
                at_end += 1
                continue
            t = datetime.strptime(e["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
            delays.append(alert_delay(t, e["raised_ts"], WINDOW))
    m = re.search(r"([\d.]+) pps", rated)
    pps = float(m.group(1)) if m else sent / seconds
    analysed = int(st["packets"])
    us = {k: (cpu1[k] - cpu0[k]) / max(analysed, 1) * 1e6 for k in cpu1}
    return {"rate": rate, "sent": sent, "sent_pps": pps, "analysed": analysed, "capture_drops": st["capture_drops"],
            "kernel_drops": st.get("capture_drops_kernel"), "capture_nice": st.get("capture_nice"),
            "backlog_max_mb": round((st.get("backlog_max_bytes") or 0) / 2**20, 1),
            "if_drops": st["if_drops"], "lost": sent - analysed, "alerts": len(delays), "alerts_at_end": at_end,
            "delay_median": statistics.median(delays) if delays else None, "delay_max": max(delays) if delays else None,
            "verdict_lag_median": statistics.median(lags) if lags else None, "verdict_lag_max": st["verdict_lag_max_s"],
            "load": round(load, 1), "us_iotwatch": round(us["iotwatch"], 2), "us_dumpcap": round(us["dumpcap"], 2),
            "close_pass_max": max(close_passes, default=None)}


def clean(row: dict[str, object]) -> bool:
    return row["lost"] == 0 and not row["capture_drops"] and not row["if_drops"]


def table(rows: list[dict[str, object]], seconds: int) -> str:
    out = [f"| replay rate | sent in {seconds} s | sent, packets/s | analysed | lost | dumpcap drops | interface drops "
           "| most behind (backlog) | CPU per packet: iotwatch / dumpcap | load (1 min) | window end → verdicts written, median / max "
           "| longest close pass: wall / CPU "
           "| alerts raised while capturing | window end → alert, median / max |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = "—" if r["delay_median"] is None else f"{r['delay_median']:.2f} s / {r['delay_max']:.2f} s"
        v = "—" if r["verdict_lag_median"] is None else f"{r['verdict_lag_median']:.2f} s / {r['verdict_lag_max']:.2f} s"
        kernel = f" (kernel: {r['kernel_drops']})" if r["capture_drops"] else ""
        cp = r.get("close_pass_max")
        close = "—" if not cp else f"{cp[0]:.2f} s / {cp[1]:.2f} s"  # type: ignore[index]
        lost = f"{r['lost']:,}" + (f" ({100 * r['lost'] / r['sent']:.1f} %)" if r["lost"] else "")  # type: ignore[operator]
        out.append(f"| {r['rate']} | {r['sent']:,} | {r['sent_pps']:,.0f} | {r['analysed']:,} | {lost} | "
                   f"{r['capture_drops']}{kernel} | {r['if_drops']} | {r['backlog_max_mb']} MiB | "
                   f"{r['us_iotwatch']} µs / {r['us_dumpcap']} µs | "
                   f"{r['load']} | {v} | {close} | {r['alerts']} (+{r['alerts_at_end']} at the end) | {d} |")
    return "\n".join(out) + "\n"


def summary(rows: list[dict[str, object]]) -> str:
    ok = [r for r in rows if clean(r)]
    if not ok:
        return "**Highest rate with zero drops: none of the rates tried.**\n"
    best = max(ok, key=lambda r: float(r["sent_pps"]))  # type: ignore[arg-type]
    d = "no alert raised" if best["delay_median"] is None else \
        f"window end → alert {best['delay_median']:.2f} s median, {best['delay_max']:.2f} s max"
    return (f"**Highest rate with zero drops: {float(best['sent_pps']):,.0f} packets/s** ({best['rate']} asked; "  # type: ignore[arg-type]
            f"{d}; window end → verdicts written {best['verdict_lag_median'] or 0:.2f} s median, "
            f"{best['verdict_lag_max'] or 0:.2f} s max; 1-min load average {best['load']}).\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", help="rates to try, comma-separated (default: climb from --start by --step until "
                    "packets are lost, then halve the step between the last clean rate and the first lossy one)")
    ap.add_argument("--start", type=int, default=50_000)
    ap.add_argument("--step", type=int, default=50_000)
    ap.add_argument("--resolution", type=int, default=12_500, help="stop halving the step below this")
    ap.add_argument("--max-rate", type=int, default=400_000)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--keep", type=Path, help="keep each run's output folder here")
    ap.add_argument("--capture-nice", type=int, default=None, help="passed to `iotwatch capture --capture-nice` "
                    "(default: iotwatch's own, -10: dumpcap and its pipe thread win the CPU over the analysis)")
    ap.add_argument("--doc", type=Path, help="also write the result into this Markdown file (docs/benchmarks.md), "
                    "between its bench-live markers")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/live.py needs root (network namespaces)")
    pcap = capture_file()
    rows: list[dict[str, object]] = []
    load0 = os.getloadavg()[0]
    t0 = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    with Pair() as pair, tempfile.TemporaryDirectory(prefix="iotwatch-bench-live-") as tmp:
        def run(rate: int | str) -> dict[str, object]:
            extra = () if a.capture_nice is None else ("--capture-nice", str(a.capture_nice))
            row = one_rate(pair, pcap, rate, a.seconds, a.keep or Path(tmp), extra)
            print(json.dumps(row), flush=True)
            rows.append(row)
            return row

        if a.rates:
            for rate in a.rates.split(","):
                run(rate if rate == "top" else int(rate))
        else:
            good, bad, rate, step = 0, None, a.start, a.step
            while rate <= a.max_rate:  # climb
                if clean(run(rate)):
                    good, rate = rate, rate + step
                else:
                    bad = rate
                    break
            while bad is not None and step > a.resolution:  # then halve the gap
                step //= 2
                rate = good + step
                if rate >= bad:
                    break
                if clean(run(rate)):
                    good = rate
                else:
                    bad = rate
    rows.sort(key=lambda r: float(r["sent_pps"]))  # type: ignore[arg-type]
    nice = sorted({str(r["capture_nice"]) for r in rows})
    head = (f"Run of {t0} UTC, {a.seconds} s per rate; 1-minute load average {load0:.1f} at the start "
            f"(on {os.cpu_count()} cores; above ~1 other work shares the cores and the rates are a floor); "
            f"dumpcap and the thread draining its pipe at nice {', '.join(nice)} (`--capture-nice`; None: not "
            "allowed, left at 0).\n\n")
    md = head + summary(rows) + "\n" + table(rows, a.seconds)
    print(md)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(md)
    if a.doc:
        write_doc(a.doc, f"{BEGIN}\n### Latest `make bench-live` run\n\nReproduce with: `make bench-live` (as root). "
                  + md + END + "\n")


BEGIN, END = "<!-- bench-live:begin -->", "<!-- bench-live:end -->"


def write_doc(path: Path, section: str) -> None:
    """Put ``section`` between the markers in ``path`` (after the live capture heading if absent)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        a, b = text.index(BEGIN), text.index(END) + len(END) + 1
        text = text[:a] + section + text[b:]
    else:
        head = "## Live capture (`make bench-live`)\n"
        at = text.index(head) + len(head) if head in text else len(text)
        text = text[:at] + "\n" + section + text[at:]
    path.write_text(text)


if __name__ == "__main__":
    main()
