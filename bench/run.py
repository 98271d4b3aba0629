"""The `make bench` harness: iotwatch against a C baseline, tcpdump, nfstream and dpkt.

    .venv/bin/python bench/run.py [--with-10m] [--contenders iotwatch,c,tcpdump,nfstream,dpkt]
                                  [--repeats 3] [--budget-s 60] [--doc docs/benchmarks.md | --no-doc]
                                  [--only-startup | --only-dask] [--dask-part-mb 64]

Captures (made by bench/fastgen.py if missing, in bench/data/): `mix` (1 M packets, ~100 k
flows) and `synflood` (1 M packets, 1 M flows) for every contender; with --with-10m also
`flood10m` (10 M packets and flows), for iotwatch only (the peak-RSS target).

Method
- Each capture is read once, untimed, before any run (page cache warm; this also counts
  its packets).
- iotwatch gets one untimed warm-up run per capture (numba compiles/caches its kernels).
- Runs are interleaved: round r runs every contender once, in an order rotated by r.
  A contender is run `--repeats` times, but not again when one more run (at its mean so
  far) would take its total on that capture past `--budget-s` (so the slow pure-Python
  tools get 1-2 runs). Medians.
- Wall time is from fork to exit (os.wait4). Peak RSS is the child's maximum RSS as
  GNU /usr/bin/time reports it (%M: the largest single process of its tree) or, if
  larger, the peak of the summed PSS of the whole process tree sampled every 0.1 s
  (nfstream forks meter processes).
- packets/s = packets in the capture / time. For contenders that report their own
  elapsed time (iotwatch's stats event, the C baseline, the Python scripts) that time is
  used, i.e. interpreter start-up and imports are excluded, as in shared/PERF_NOTES.md;
  tcpdump's is wall time. Wall-clock packets/s is shown too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# nfstream and dpkt live in their own venv (bench/.venv, made by `make bench`): installed
# beside iotwatch they would pull pandas into its process and inflate what we measure.
PY = os.environ.get("BENCH_PYTHON", sys.executable)
ALL_CONTENDERS = ["iotwatch", "c", "tcpdump", "nfstream", "dpkt"]
LABEL = {
    "iotwatch": "iotwatch analyze",
    "c": "C baseline (libpcap + hash)",
    "tcpdump": "tcpdump -r -w /dev/null",
    "nfstream": "nfstream (no DPI, no stats)",
    "dpkt": "dpkt Ethernet objects",
}
CAPTURES = {"mix": "mix", "synflood": "synflood", "flood10m": "flood10m"}
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
SBEGIN, SEND = "<!-- bench-startup:begin -->", "<!-- bench-startup:end -->"
DBEGIN, DEND = "<!-- bench-dask:begin -->", "<!-- bench-dask:end -->"
#: iotwatch's own interpreter (its libraries' versions go beside the figures)
IOTWATCH_PY = str(ROOT / ".venv" / "bin" / "python")
IOTWATCH_LIBS = ("numpy", "numba", "llvmlite", "pyarrow", "scikit-learn", "typer", "rich")


# ----------------------------------------------------------------------------------------
# Measuring one run


@dataclass
class Run:
    wall_s: float
    rss_mb: float
    exit_code: int
    stdout: str
    stderr: str
    report: dict[str, Any] = field(default_factory=dict)  # the contender's own numbers
    timed_out: bool = False


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(b")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def _tree_pss_kb(root: int) -> int:
    kids = _children_map()
    todo, total = [root], 0
    while todo:
        pid = todo.pop()
        todo.extend(kids.get(pid, []))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


TIME_BIN = "/usr/bin/time"  # GNU time (Debian package "time"): the child's own peak RSS


def measure(cmd: list[str], timeout_s: float, cwd: Path | None = None) -> Run:
    """Run `cmd`, return wall time, peak memory, exit code and output.

    ru_maxrss from wait4 on a child forked by this (Python) process is useless for small
    tools: Linux carries the pre-exec high-water mark of the forked image over exec, so it
    never reads below this harness's own RSS. GNU time forks from a ~2 MB process, so its
    %M is the real figure; without it, only the sampled tree PSS is reported."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile() as tm,
    ):
        use_time = os.access(TIME_BIN, os.X_OK)
        argv = [TIME_BIN, "-f", "%M", "-o", tm.name, *cmd] if use_time else cmd
        t0 = time.perf_counter()
        p = subprocess.Popen(
            argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True
        )
        peak_pss = 0
        stop = threading.Event()
        timed_out = threading.Event()

        def sample() -> None:
            nonlocal peak_pss
            while not stop.wait(0.1):
                peak_pss = max(peak_pss, _tree_pss_kb(p.pid))
                if time.perf_counter() - t0 > timeout_s and not timed_out.is_set():
                    timed_out.set()
                    try:
                        os.killpg(p.pid, 9)  # the session started for this run
                    except ProcessLookupError:
                        pass

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        _, status, _ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        stop.set()
        th.join()
        p.returncode = os.waitstatus_to_exitcode(status)
        maxrss_kb = 0
        if use_time:
            words = Path(tm.name).read_text(errors="replace").split()
            if words and words[-1].isdigit():
                maxrss_kb = int(words[-1])
        out.seek(0)
        err.seek(0)
        return Run(
            wall_s=wall,
            rss_mb=max(maxrss_kb, peak_pss) / 1024,
            exit_code=p.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            timed_out=timed_out.is_set(),
        )


def tail(path: Path, size: int = 1 << 16) -> str:
    """The last `size` bytes of a file (events.jsonl may hold a line per flow)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def last_json_line(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                return obj
    return {}


# ----------------------------------------------------------------------------------------
# Contenders


@dataclass
class Contender:
    name: str
    available: bool
    note: str
    run: Callable[[Path, float], Run]
    warmup: bool = False


def iotwatch_contender(exe: str) -> Contender:
    path = shutil.which(exe) or exe

    def run(capture: Path, timeout_s: float) -> Run:
        with tempfile.TemporaryDirectory(prefix="iotwatch-bench-") as out:
            r = measure([path, "analyze", str(capture), "--out", out], timeout_s)
            stats = last_json_line(tail(Path(out) / "events.jsonl"))
            if stats.get("event_type") == "stats":
                r.report = stats
        return r

    ok = Path(path).exists() and os.access(path, os.X_OK)
    return Contender("iotwatch", ok, "" if ok else f"{exe} not found", run, warmup=True)


def c_contender(binary: Path) -> Contender:
    note = ""
    if not binary.exists() and shutil.which("cc"):
        src = BENCH / "baseline.c"
        b = subprocess.run(
            ["cc", "-O2", str(src), "-lpcap", "-o", str(binary)], capture_output=True, text=True
        )
        if b.returncode != 0:
            note = (
                "build failed: " + b.stderr.strip().splitlines()[-1] if b.stderr.strip() else "build failed"
            )

    def run(capture: Path, timeout_s: float) -> Run:
        r = measure([str(binary), str(capture)], timeout_s)
        r.report = last_json_line(r.stdout)
        return r

    ok = binary.exists()
    return Contender(
        "c", ok, note or ("" if ok else f"{binary} missing (cc -O2 bench/baseline.c -lpcap)"), run
    )


def tcpdump_contender() -> Contender:
    exe = shutil.which("tcpdump")

    def run(capture: Path, timeout_s: float) -> Run:
        return measure([exe or "tcpdump", "-r", str(capture), "-w", "/dev/null"], timeout_s)

    return Contender("tcpdump", exe is not None, "" if exe else "tcpdump not installed", run)


def python_contender(name: str, module: str, script: str) -> Contender:
    chk = subprocess.run([PY, "-c", f"import {module}"], capture_output=True, text=True)
    note = ""
    if chk.returncode != 0:
        lines = chk.stderr.strip().splitlines()
        note = f"skipped: import {module} failed ({lines[-1] if lines else 'exit ' + str(chk.returncode)})"

    def run(capture: Path, timeout_s: float) -> Run:
        r = measure([PY, str(BENCH / script), str(capture)], timeout_s)
        r.report = last_json_line(r.stdout)
        return r

    return Contender(name, chk.returncode == 0, note, run)


# ----------------------------------------------------------------------------------------
# Captures


def warm_and_count(path: Path) -> int:
    """Read the whole capture (fills the page cache) and count its records."""
    import struct

    n = 0
    with path.open("rb") as f:
        hdr = f.read(24)
        magic = hdr[:4]
        order = {
            b"\xd4\xc3\xb2\xa1": "<",
            b"\xa1\xb2\xc3\xd4": ">",
            b"\x4d\x3c\xb2\xa1": "<",
            b"\xa1\xb2\x3c\x4d": ">",
        }.get(magic)
        if order is None:
            raise SystemExit(f"{path}: not a classic pcap file")
        rec = struct.Struct(order + "8xI4x")
        buf = b""
        pos = 0
        while True:
            chunk = f.read(16 << 20)
            if not chunk:
                break
            buf = buf[pos:] + chunk
            pos = 0
            end = len(buf)
            while pos + 16 <= end:
                (caplen,) = rec.unpack_from(buf, pos)
                if pos + 16 + caplen > end:
                    break
                pos += 16 + caplen
                n += 1
    return n


def ensure_capture(data: Path, kind: str) -> Path:
    path = data / f"{kind}.pcap"
    if not path.exists():
        print(f"generating {path} ...", file=sys.stderr, flush=True)
        subprocess.run([PY, str(BENCH / "fastgen.py"), kind, str(path)], check=True)
    return path


# ----------------------------------------------------------------------------------------
# Results


@dataclass
class Result:
    contender: str
    capture: str
    runs: list[Run] = field(default_factory=list)
    skipped: str = ""

    def ok_runs(self) -> list[Run]:
        return [r for r in self.runs if r.exit_code == 0 and not r.timed_out]

    def failure(self) -> str:
        bad = [r for r in self.runs if r.exit_code != 0 or r.timed_out]
        if not bad or self.ok_runs():
            return ""
        r = bad[-1]
        if r.timed_out:
            return f"timed out after {r.wall_s:.0f} s"
        tail = (r.stderr.strip().splitlines() or ["(no stderr)"])[-1][:160]
        return f"exit {r.exit_code}: {tail}"

    def self_elapsed(self) -> float | None:
        vals = [
            float(r.report["elapsed_s"])
            for r in self.ok_runs()
            if isinstance(r.report.get("elapsed_s"), int | float)
        ]
        return statistics.median(vals) if vals else None

    def wall(self) -> float | None:
        runs = self.ok_runs()
        return statistics.median(r.wall_s for r in runs) if runs else None

    def rss(self) -> float | None:
        runs = self.ok_runs()
        return max(r.rss_mb for r in runs) if runs else None

    def pps(self, packets: int) -> float | None:
        t = self.self_elapsed() or self.wall()
        return packets / t if t else None

    def wall_pps(self, packets: int) -> float | None:
        t = self.wall()
        return packets / t if t else None

    def report(self) -> dict[str, Any]:
        runs = self.ok_runs()
        return runs[-1].report if runs else {}


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "–"
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.0f} k"
    return f"{x:.0f}"


def capture_table(cap: str, packets: int, results: list[Result]) -> list[str]:
    c = next((r for r in results if r.contender == "c"), None)
    c_pps = c.pps(packets) if c else None
    lines = [
        "| contender | runs | packets/s | × C baseline | wall s (median) | packets/s incl. start-up | peak RSS MB | flows | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ref = c.report() if c else {}
    for r in results:
        if r.skipped:
            lines.append(f"| {LABEL[r.contender]} | 0 | – | – | – | – | – | – | {r.skipped} |")
            continue
        fail = r.failure()
        if fail:
            lines.append(f"| {LABEL[r.contender]} | {len(r.runs)} | – | – | – | – | – | – | failed: {fail} |")
            continue
        pps = r.pps(packets)
        ratio = f"{pps / c_pps:.2f}" if pps and c_pps else "–"
        rep = r.report()
        flows = rep.get("flows")
        notes = []
        if r.self_elapsed() is None:
            notes.append("wall time")
        if r.contender == "iotwatch":
            if not rep:
                notes.append("no stats event in events.jsonl: wall time")
            elif rep.get("packets") not in (None, packets):
                notes.append(f"stats packets={rep.get('packets')}")
        if r.contender == "dpkt" and ref:
            keys = ["flows", "pkts_fwd", "pkts_rev", "bytes_fwd", "bytes_rev"]
            same = all(rep.get(k) == ref.get(k) for k in keys)
            notes.append("flow table = C's" if same else "flow table differs from C's")
        if r.contender == "nfstream":
            notes.append("flows incl. ICMP/IPv6, split by its timeouts")
        if r.contender == "c":
            notes.append("IPv4 TCP/UDP flows")
        wall = r.wall()
        lines.append(
            f"| {LABEL[r.contender]} | {len(r.ok_runs())} | {fmt_rate(pps)} | {ratio} | "
            f"{wall:.2f} | {fmt_rate(r.wall_pps(packets))} | {r.rss() or 0:.0f} | "
            f"{flows if flows is not None else '–'} | {'; '.join(notes)} |"
        )
    return lines


@dataclass
class Target:
    text: str
    value: str
    verdict: str  # "pass", "FAIL", "not run"


def targets(res: dict[str, dict[str, Result]], packets: dict[str, int], pairs: list[float] | None = None) -> list[Target]:
    def get(cap: str, who: str) -> Result | None:
        r = res.get(cap, {}).get(who)
        return r if r and not r.skipped and r.ok_runs() else None

    def verdict(ok: bool) -> str:
        return "pass" if ok else "FAIL"

    out: list[Target] = []
    iw_mix, c_mix, nf_mix = get("mix", "iotwatch"), get("mix", "c"), get("mix", "nfstream")
    iw_flood, iw_10m = get("synflood", "iotwatch"), get("flood10m", "iotwatch")
    mix_pps = iw_mix.pps(packets["mix"]) if iw_mix else None
    if mix_pps is not None:
        out.append(Target("analyze ≥ 1 M packets/s on the mix", fmt_rate(mix_pps), verdict(mix_pps >= 1e6)))
    else:
        out.append(Target("analyze ≥ 1 M packets/s on the mix", "–", "not run"))
    if mix_pps is not None and c_mix:
        ratio = mix_pps / (c_mix.pps(packets["mix"]) or 1)
        out.append(
            Target("analyze ≥ 0.4× the C baseline (mix, same run)", f"{ratio:.2f}×", verdict(ratio >= 0.4))
        )
    else:
        out.append(Target("analyze ≥ 0.4× the C baseline (mix, same run)", "–", "not run"))
    if mix_pps is not None and nf_mix:
        ratio = mix_pps / (nf_mix.pps(packets["mix"]) or 1)
        out.append(
            Target("analyze ~15× nfstream (mix; pass at ≥ 15×)", f"{ratio:.1f}×", verdict(ratio >= 15))
        )
    else:
        out.append(Target("analyze ~15× nfstream (mix; pass at ≥ 15×)", "–", "not run"))
    if mix_pps is not None and iw_flood:
        fl = iw_flood.pps(packets["synflood"]) or 0
        if pairs:
            ratio = statistics.median(pairs)
            out.append(
                Target(
                    "SYN flood at ≥ 70 % of the mix rate (median of back-to-back pairs)",
                    f"{ratio:.0%} over {len(pairs)} pairs ({min(pairs):.0%}–{max(pairs):.0%}); "
                    f"{fl / mix_pps:.0%} from the two medians below, minutes apart",
                    verdict(ratio >= 0.7),
                )
            )
        else:
            out.append(
                Target(
                    "SYN flood at ≥ 70 % of the mix rate",
                    f"{fl / mix_pps:.0%} ({fmt_rate(fl)})",
                    verdict(fl >= 0.7 * mix_pps),
                )
            )
        out.append(
            Target("SYN flood at ≥ 70 % of the 1 M packets/s mix target (≥ 700 k)", fmt_rate(fl), verdict(fl >= 700_000))
        )
    else:
        out.append(Target("SYN flood at ≥ 70 % of the mix rate", "–", "not run"))
    rss = iw_10m.rss() if iw_10m else None
    if rss is not None:
        out.append(Target("peak RSS ≤ 300 MB on a 10 M-flow flood", f"{rss:.0f} MB", verdict(rss <= 300)))
    else:
        out.append(Target("peak RSS ≤ 300 MB on a 10 M-flow flood", "–", "not run (needs --with-10m)"))
    rss_1m = iw_flood.rss() if iw_flood else None
    flat = "peak RSS independent of capture size (10 M-flow flood ≤ 1 M-flow flood + 10 MB)"
    if rss is not None and rss_1m is not None:
        out.append(Target(flat, f"{rss - rss_1m:+.0f} MB ({rss_1m:.0f} → {rss:.0f} MB)", verdict(rss <= rss_1m + 10)))
    else:
        out.append(Target(flat, "–", "not run (needs --with-10m)"))
    return out


def paired_runs(contenders: list[Any], caps: dict[str, dict[str, Any]], n: int, timeout_s: float) -> list[float]:
    """flood rate / mix rate of iotwatch over ``n`` back-to-back pairs of runs (alternating which
    goes first). This machine's speed drifts by ±25 % over minutes; the per-capture medians above
    are minutes apart, so their ratio carries that drift, while a pair's two runs share it."""
    iw = next((c for c in contenders if c.name == "iotwatch" and c.available), None)
    if iw is None or n <= 0 or "mix" not in caps or "synflood" not in caps:
        return []
    out = []
    for k in range(n):
        pps = {}
        for cap in (("mix", "synflood") if k % 2 == 0 else ("synflood", "mix")):
            r = Result("iotwatch", cap)
            r.runs.append(iw.run(Path(caps[cap]["path"]), timeout_s))
            pps[cap] = r.pps(caps[cap]["packets"])
        if pps["mix"] and pps["synflood"]:
            out.append(pps["synflood"] / pps["mix"])
            print(f"  pair {k + 1}: flood/mix {out[-1]:.0%}", file=sys.stderr, flush=True)
    return out


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, AttributeError):
        pass
    try:
        load = Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        load = "?"
    return {
        "load": load,
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def busy(mach: dict[str, str]) -> bool:
    try:
        return float(mach["load"]) > 0.5
    except ValueError:
        return False


def tool_versions() -> dict[str, str]:
    v: dict[str, str] = {}
    if shutil.which("tcpdump"):
        p = subprocess.run(["tcpdump", "--version"], capture_output=True, text=True)
        text = p.stdout + p.stderr
        td = re.search(r"tcpdump version (\S+)", text)
        lp = re.search(r"libpcap version (\S+)", text)
        v["tcpdump"] = (td.group(1) if td else "?") + (f" (libpcap {lp.group(1)})" if lp else "")
    for py, mods in ((PY, ("nfstream", "dpkt")), (IOTWATCH_PY, IOTWATCH_LIBS)):
        for mod in mods:
            p = subprocess.run(
                [py, "-c", f"import importlib.metadata as m; print(m.version('{mod}'))"],
                capture_output=True,
                text=True,
            )
            if p.returncode == 0:
                v[mod] = p.stdout.strip()
    return v


# ----------------------------------------------------------------------------------------
# Start-up: what every run pays before its first packet


def startup(exe: str, repeats: int, timeout_s: float) -> dict[str, Any]:
    """Median wall time and peak RSS of `iotwatch --version`, `--help` and `analyze` of a tiny
    capture (24 packets), and where the tiny run's time and memory go (bench/startup.py)."""
    path = shutil.which(exe) or exe
    with tempfile.TemporaryDirectory(prefix="iotwatch-startup-") as tmp:
        tiny = Path(tmp) / "tiny.pcap"
        subprocess.run([IOTWATCH_PY, "-c", "import sys; from iotwatch.warmup import warm_frames; "
                        "from iotwatch.capture.write import write_pcap; write_pcap(sys.argv[1], warm_frames())",
                        str(tiny)], check=True)
        cmds = {
            "iotwatch --version": [path, "--version"],
            "iotwatch --help": [path, "--help"],
            "iotwatch analyze tiny.pcap (24 packets)": [path, "analyze", str(tiny), "--out", str(Path(tmp) / "o"), "-q"],
        }
        rows = {}
        for name, cmd in cmds.items():
            runs = [measure(cmd, timeout_s) for _ in range(repeats)]
            ok = [r for r in runs if r.exit_code == 0]
            rows[name] = {"wall_s": statistics.median(r.wall_s for r in ok) if ok else None,
                          "rss_mb": max(r.rss_mb for r in ok) if ok else None, "runs": len(ok)}
            print(f"  {name}: {rows[name]}", file=sys.stderr, flush=True)
        ph = subprocess.run([IOTWATCH_PY, str(BENCH / "startup.py"), str(tiny), str(Path(tmp) / "p")],
                            capture_output=True, text=True, timeout=timeout_s)
        phases = json.loads(ph.stdout.strip().splitlines()[-1]) if ph.returncode == 0 else []
    return {"commands": rows, "phases": phases}


def _section_head(begin: str, title: str, cmd: str, only: str, mach: dict[str, str], *,
                  cpus: bool = False) -> list[str]:
    """A section's marker, heading and how to reproduce it, with when and how busy the machine was."""
    where = f"{mach['nproc']} CPUs, " if cpus else ""
    return [begin, f"## {title} (`make bench`)", "",
            f"Reproduce with: `make bench` (or `{cmd} {only}`). {mach['date']}, {where}1-min load average at "
            f"start {mach['load']}" + (" (machine busy: numbers are noisy)" if busy(mach) else "") + "."]


def startup_markdown(st: dict[str, Any], cmd: str, mach: dict[str, str]) -> str:
    rows = st["commands"]
    helps = rows["iotwatch --help"]["wall_s"]
    tiny = rows["iotwatch analyze tiny.pcap (24 packets)"]["wall_s"]
    out = [
        *_section_head(SBEGIN, "Start-up", cmd, "--only-startup", mach),
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        f"| `iotwatch --help` under 0.3 s | {helps:.2f} s | {'pass' if helps is not None and helps < 0.3 else 'FAIL'} |",
        f"| `analyze` of a tiny capture under 0.5 s | {tiny:.2f} s | {'pass' if tiny is not None and tiny < 0.5 else 'FAIL'} |",
        "",
        "| command | median wall time | peak RSS |",
        "|---|---|---|",
    ]
    out += [f"| `{k}` | {v['wall_s']:.2f} s | {v['rss_mb']:.0f} MB |" for k, v in rows.items() if v["wall_s"] is not None]
    if st["phases"]:
        out += ["", "Where the tiny run's time and memory go (bench/startup.py, the same steps one by one):", "",
                "| phase | seconds | peak RSS after it |", "|---|---|---|"]
        out += [f"| {p['phase']} | {p['s']:.3f} | {p['peak_rss_mb']:.0f} MB |" for p in st["phases"]]
        if tiny is not None:  # what the steps above leave out: the process's start, argument parsing, its end
            rest = tiny - sum(p["s"] for p in st["phases"])
            out += [f"| the rest of the command (interpreter start-up, typer's argument parsing, exit; its median "
                    f"wall time − the phases above, measured apart) | {rest:.3f} | – |"]
    out += ["", SEND]
    return "\n".join(out) + "\n"


def dask_scaling(exe: str, capture: Path, part_mb: float, repeats: int, timeout_s: float) -> dict[str, Any]:
    """`analyze` of one capture in one process, and split into parts on a running local Dask
    cluster of 1 and of 2 single-threaded worker processes (`--dask ADDRESS --part-mb`, as on an
    existing cluster: one untimed run first, so that the workers have loaded their kernels),
    interleaved; medians of wall time and of the run's own elapsed time (its stats event:
    indexing, parts, merge and verdicts; no start-up)."""
    from distributed import LocalCluster

    path = shutil.which(exe) or exe
    clusters = {n: LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                                silence_logs=40) for n in (1, 2)}
    try:
        modes = {"one process": []}
        for n, c in clusters.items():
            modes[f"{n} worker{'s' if n > 1 else ''}"] = ["--dask", c.scheduler_address, "--part-mb", str(part_mb)]
        runs: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
        with tempfile.TemporaryDirectory(prefix="iotwatch-dask-") as tmp:
            for extra in modes.values():  # warm-up: page cache, the workers' kernels
                subprocess.run([path, "analyze", str(capture), "--out", str(Path(tmp) / "w"), "-q", *extra],
                               capture_output=True, timeout=timeout_s)
            for rnd in range(repeats):
                names = list(modes)
                k = rnd % len(names)
                for m in names[k:] + names[:k]:
                    out = Path(tmp) / f"o{rnd}-{len(runs[m])}-{m[0]}"
                    r = measure([path, "analyze", str(capture), "--out", str(out), "-q", *modes[m]], timeout_s)
                    stats = last_json_line(tail(out / "events.jsonl"))
                    if r.exit_code == 0 and stats.get("event_type") == "stats":
                        runs[m].append((r.wall_s, float(stats["elapsed_s"])))
                        print(f"  dask {m}: {r.wall_s:.2f} s wall, {stats['elapsed_s']:.2f} s own", file=sys.stderr,
                              flush=True)
                    shutil.rmtree(out, ignore_errors=True)
    finally:
        for c in clusters.values():
            c.close()
    med = {m: (statistics.median(w for w, _ in v), statistics.median(e for _, e in v)) if v else None
           for m, v in runs.items()}
    return {"capture": capture.name, "part_mb": part_mb, "runs": {m: len(v) for m, v in runs.items()}, "median": med}


def dask_markdown(d: dict[str, Any], packets: int, cmd: str, mach: dict[str, str]) -> str:
    med = d["median"]
    out = [
        *_section_head(DBEGIN, "Split runs on a Dask cluster", cmd, "--only-dask", mach, cpus=True),
        f"`iotwatch analyze {d['capture']}` ({packets:,} packets, half an hour of a generated site: "
        "`iotwatch synth site --duration 1800 --seed 5`) in one process and with `--dask ADDRESS --part-mb "
        f"{d['part_mb']:g}` on a running local cluster of N single-threaded worker processes (warmed up by one "
        f"untimed run), interleaved, medians of {min(d['runs'].values())}+ runs. Wall time includes the client's "
        "start-up; 'own' is the run's elapsed time from its stats event (indexing, parts, merge, verdicts).",
        "",
        "| run | wall time | own time | packets/s (own) | vs 1 worker (own) |",
        "|---|---|---|---|---|",
    ]
    one = med.get("1 worker")
    for m, v in med.items():
        if v is None:
            out.append(f"| {m} | failed | | | |")
            continue
        ratio = f"{one[1] / v[1]:.2f}x" if one and m != "one process" else ""
        out.append(f"| {m} | {v[0]:.2f} s | {v[1]:.2f} s | {fmt_rate(packets / v[1])} | {ratio} |")
    out += ["", DEND]
    return "\n".join(out) + "\n"


def render_markdown(
    cmd: str,
    mach: dict[str, str],
    caps: dict[str, dict[str, Any]],
    res: dict[str, dict[str, Result]],
    tg: list[Target],
) -> str:
    vers = tool_versions()
    out = [
        BEGIN,
        "## Latest `make bench` run",
        "",
        f"Reproduce with: `make bench` (which runs `{cmd}`)",
        "",
        f"Machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['memory']} RAM, Linux {mach['kernel']}, "
        f"Python {mach['python']}; {mach['date']}; 1-min load average at start {mach['load']}"
        + (" (machine busy: numbers are noisy)" if busy(mach) else "")
        + ".",
        "Tools: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".",
        "",
        "### Targets (issue)",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]
    out += [f"| {t.text} | {t.value} | {t.verdict} |" for t in tg]
    for cap, info in caps.items():
        out += [
            "",
            f"### `{cap}`: {info['packets']:,} packets, {info['mb']:.0f} MB, {info['avg']:.0f} B average frame",
            "",
        ]
        out += capture_table(cap, info["packets"], list(res[cap].values()))
    out += [
        "",
        "packets/s = packets in the capture / the contender's own elapsed time where it reports one "
        "(iotwatch's `stats` event, the C baseline, the nfstream and dpkt scripts: no interpreter start-up "
        'or imports), else wall time (tcpdump). "packets/s incl. start-up" uses wall time from fork to exit. '
        "Peak RSS: the child's maximum RSS from GNU time (`%M`), or the sampled peak of the summed PSS of "
        "its process tree (every 0.1 s) if larger. "
        "Medians of interleaved runs after an untimed read of each capture (page cache warm) and, for iotwatch, "
        "one untimed warm-up run. Captures: `bench/fastgen.py` (deterministic, seed 1).",
        END,
    ]
    return "\n".join(out) + "\n"


def write_doc(path: Path, section: str, begin: str = BEGIN, end: str = END) -> None:
    if path.exists():
        text = path.read_text()
        if begin in text and end in text:
            a, b = text.index(begin), text.index(end) + len(end)
            text = text[:a] + section.rstrip("\n") + text[b:]
        else:
            text = text.rstrip("\n") + "\n\n" + section
    else:
        text = "# Benchmarks\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--contenders", default=",".join(ALL_CONTENDERS), help="comma list of " + ",".join(ALL_CONTENDERS)
    )
    ap.add_argument("--with-10m", action="store_true", help="also run iotwatch on flood10m (peak-RSS target)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=5,
                    help="back-to-back iotwatch runs on the mix and the SYN flood for the flood/mix ratio")
    ap.add_argument(
        "--budget-s",
        type=float,
        default=60.0,
        help="stop repeating a contender on a capture when one more run would take its total past this",
    )
    ap.add_argument("--timeout-s", type=float, default=900.0)
    ap.add_argument("--data", type=Path, default=BENCH / "data")
    ap.add_argument("--iotwatch", default=str(ROOT / ".venv" / "bin" / "iotwatch"))
    ap.add_argument("--baseline", type=Path, default=BENCH / "baseline")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--no-doc", action="store_true", help="do not write the docs section")
    ap.add_argument("--json", type=Path, default=BENCH / "out" / "results.json")
    ap.add_argument("--only-startup", action="store_true", help="only the start-up section")
    ap.add_argument("--only-dask", action="store_true", help="only the Dask scaling section (1 and 2 workers)")
    ap.add_argument("--dask-part-mb", type=float, default=100.0, help="part size of the Dask runs")
    a = ap.parse_args(argv)
    cmd_argv = [
        os.path.relpath(PY, ROOT) if PY.startswith(str(ROOT)) else PY,
        os.path.relpath(__file__, ROOT),
        *(argv if argv is not None else sys.argv[1:]),
    ]
    cmd = " ".join(shlex.quote(x) for x in cmd_argv if x not in ("--only-startup", "--only-dask"))

    def scaling() -> dict[str, Any]:
        # an archive-like capture: half an hour of a generated site (the mix spans 4.5 minutes,
        # hardly more than two idle timeouts: no capture to cut into parts)
        site = a.data / "site30.pcap"
        if not site.exists():
            a.data.mkdir(parents=True, exist_ok=True)
            subprocess.run([a.iotwatch, "synth", "site", "--duration", "1800", "--seed", "5", "--out", str(site)],
                           check=True, capture_output=True, timeout=a.timeout_s)
        n = warm_and_count(site)
        print("dask scaling:", file=sys.stderr)
        d = dask_scaling(a.iotwatch, site, a.dask_part_mb, a.repeats, a.timeout_s)
        dmd = dask_markdown(d, n, cmd, machine())
        print(dmd)
        if not a.no_doc:
            write_doc(a.doc, dmd, DBEGIN, DEND)
        return d

    if a.only_dask:
        scaling()
        return 0
    print("start-up:", file=sys.stderr)
    st = startup(a.iotwatch, 5, a.timeout_s)
    smd = startup_markdown(st, cmd, machine())
    print(smd)
    if not a.no_doc:
        write_doc(a.doc, smd, SBEGIN, SEND)
    if a.only_startup:
        return 0

    wanted = [c.strip() for c in a.contenders.split(",") if c.strip()]
    unknown = set(wanted) - set(ALL_CONTENDERS)
    if unknown:
        ap.error(f"unknown contenders: {', '.join(sorted(unknown))}")
    builders: dict[str, Callable[[], Contender]] = {
        "iotwatch": lambda: iotwatch_contender(a.iotwatch),
        "c": lambda: c_contender(a.baseline),
        "tcpdump": tcpdump_contender,
        "nfstream": lambda: python_contender("nfstream", "nfstream", "nfstream_run.py"),
        "dpkt": lambda: python_contender("dpkt", "dpkt", "dpkt_run.py"),
    }
    contenders = [builders[n]() for n in ALL_CONTENDERS if n in wanted]
    for c in contenders:
        if not c.available:
            print(f"note: {c.name}: {c.note}", file=sys.stderr)

    mach = machine()
    if busy(mach):
        print(
            f"warning: load average {mach['load']}: other work is running, results will be noisy",
            file=sys.stderr,
        )
    plan = ["mix", "synflood"] + (["flood10m"] if a.with_10m else [])
    caps: dict[str, dict[str, Any]] = {}
    res: dict[str, dict[str, Result]] = {}
    t_start = time.perf_counter()
    for cap in plan:
        path = ensure_capture(a.data, cap)
        t0 = time.perf_counter()
        n = warm_and_count(path)
        size = path.stat().st_size
        caps[cap] = {"path": str(path), "packets": n, "mb": size / 1e6, "avg": (size - 24) / max(n, 1) - 16}
        print(
            f"{cap}: {n} packets, {size / 1e6:.0f} MB (read in {time.perf_counter() - t0:.1f} s)",
            file=sys.stderr,
        )
        who = [c for c in contenders if cap != "flood10m" or c.name == "iotwatch"]
        res[cap] = {c.name: Result(c.name, cap, skipped="" if c.available else c.note) for c in who}
        live = [c for c in who if c.available]
        for c in live:
            if c.warmup:
                print(f"  {c.name}: warm-up run", file=sys.stderr, flush=True)
                w = c.run(path, a.timeout_s)
                if w.exit_code != 0 or w.timed_out:
                    res[cap][c.name].runs.append(w)  # reported as the failure if nothing succeeds
        spent = {c.name: 0.0 for c in live}
        for rnd in range(a.repeats):
            k = rnd % len(live) if live else 0
            for c in live[k:] + live[:k]:
                r = res[cap][c.name]
                # stop when one more run (at the mean so far) would exceed the budget
                if r.runs and (spent[c.name] * (1 + 1 / len(r.runs)) > a.budget_s or r.failure()):
                    continue
                run = c.run(path, a.timeout_s)
                spent[c.name] += run.wall_s
                r.runs.append(run)
                status = "ok" if run.exit_code == 0 and not run.timed_out else f"exit {run.exit_code}"
                print(
                    f"  {c.name}: {run.wall_s:.2f} s, {run.rss_mb:.0f} MB, {status}",
                    file=sys.stderr,
                    flush=True,
                )
                if r.failure():
                    print(f"    {r.failure()}", file=sys.stderr)
    pairs = paired_runs(contenders, caps, a.pairs, a.timeout_s)
    dask = scaling() if "iotwatch" in wanted else None
    elapsed = time.perf_counter() - t_start

    tg = targets(res, {k: v["packets"] for k, v in caps.items()}, pairs)
    md = render_markdown(cmd, mach, caps, res, tg)
    print(md)
    print(f"(harness time {elapsed:.0f} s)", file=sys.stderr)
    if not a.no_doc:
        write_doc(a.doc, md)
        print(f"wrote {a.doc}", file=sys.stderr)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    dump = {
        "command": cmd,
        "machine": mach,
        "startup": st,
        "dask": dask,
        "captures": caps,
        "targets": [t.__dict__ for t in tg],
        "results": {
            cap: {
                n: {
                    "skipped": r.skipped,
                    "runs": [
                        {
                            "wall_s": x.wall_s,
                            "rss_mb": x.rss_mb,
                            "exit_code": x.exit_code,
                            "timed_out": x.timed_out,
                            "report": x.report,
                        }
                        for x in r.runs
                    ],
                }
                for n, r in d.items()
            }
            for cap, d in res.items()
        },
    }
    a.json.write_text(json.dumps(dump, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
