"""The cost of a live run's verdict passes against the packets seen so far, without a network.

A live capture (iotwatch/live.py) takes its verdicts while the packets come: once when windows
close and again ``recheck_s`` later. This replays a capture through the same pipeline and the
same pass (``LiveCapture._conclude``) as a live run would, on a packet clock instead of the wall
clock: the packets are re-timed to ``--rate`` packets/s and the capture is looped ``--loops``
times, each loop's IPv4 addresses shifted as ``tcpreplay --unique-ip`` does (new flows, the same
devices). Each pass's CPU time (``time.process_time``: robust to other work on the machine, unlike
wall time) is printed with the packets seen before it, so a pass whose cost grows with the run shows.

    python bench/verdicts.py [--pcap bench/data/live.pcap] [--rate 200000] [--loops 40] [--window 10]
                             [--profile FILE]
    python bench/verdicts.py --pcap bench/data/site30.pcap --rate 0 --window 60   # a site at its own pace

(site30.pcap: ``iotwatch synth site --duration 1800 --seed 5``, as ``make bench`` makes it.)

    python bench/verdicts.py --phases --rules        # each rule's CPU time too
    python bench/verdicts.py --rate 50000 --loops 10 --start-phase 7   # alert delays as bench/live.py runs it

``--profile FILE`` writes a cProfile of the passes after the first half of the run (pstats format).
``--rechecks 0.5,1.25`` sets the recheck passes after each close (``''``: none); a pre-close pass
comes too where the tree has one (``LiveOptions.preclose_s``); the alerts each
kind of pass raised first are counted, with their delays. The replay starts on a window boundary
that is also a minute's (the evidence past its cap is counted per minute): two runs of the same
code raise the same alerts.
Every run prints each alert's delay on the packet clock, from the end of the window of its
``timestamp`` (where its evidence crossed the threshold) to the pass that raised it, and lists
the alerts raised more than 2.5 s after it; ``--start-phase S`` starts the replay S seconds into
a window (bench/live.py: 7). ``--rules`` (with ``--phases``) splits the rules and verdicts into
each rule, the own-address filter and the verdicts.
``--phases`` also writes the flows to Parquet (as a live run does, on this thread here) and prints
the CPU time (``time.process_time``) of every phase of the run per packet: decoding, the flow
kernel, the side channel, the window counters, the analysers' intake (evidence, inventory), the
sinks, and in the verdict passes the provisional evidence, the features, the model, the rules
and the inventory's identification. The receive path of a live run (dumpcap, the pipe, the pcapng
stream, the ring) is not in it: bench/live.py measures the live process as a whole.
"""

from __future__ import annotations

import argparse
import cProfile
import math
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from iotwatch.capture.batch import PacketBatch  # noqa: E402
from iotwatch.capture.source import open_capture  # noqa: E402
from iotwatch.detect import Detector  # noqa: E402
from iotwatch.live import LiveCapture, LiveEveSink, LiveOptions, alert_delay  # noqa: E402
from iotwatch.pipeline import Pipeline, build_analysers  # noqa: E402
from iotwatch.settings import Settings  # noqa: E402

#: whether this tree's live pass knows rechecks (LiveCapture._conclude(rescore)): the script also
#: runs, copied, in an older tree for before/after comparisons
_RESCORE = "rescore" in LiveCapture._conclude.__code__.co_varnames


def retimed(pcap: Path, rate: float, loops: int, t0_ns: int) -> Iterator[tuple[int, PacketBatch]]:
    """The capture's batches, ``loops`` times, at ``rate`` packets/s from ``t0_ns`` (0: at the
    capture's own pace); in loop k every IPv4 source and destination (Ethernet, untagged or with one
    802.1Q tag, as tcpreplay --unique-ip rewrites them: the mix's VLAN devices too) has k
    added to its last octet."""
    step = 1e9 / rate if rate else 0.0
    k_packet = 0
    first: int | None = None
    span = 0
    for loop in range(loops):
        # batches of at most 50 ms of packets, as a live run reads them (passes come between batches)
        reader = open_capture(pcap, batch_size=int(min(max(rate / 20, 256), 1 << 15)) if rate else 256)
        for b in reader.batches():
            buf = b.buf.copy()
            off = b.off
            if loop:
                tagged = (b.caplen >= 38) & (buf[off + 12] == 0x81) & (buf[off + 13] == 0) & \
                    (buf[np.minimum(off + 16, len(buf) - 1)] == 8) & (buf[np.minimum(off + 17, len(buf) - 1)] == 0)
                plain = (b.caplen >= 34) & (buf[off + 12] == 8) & (buf[off + 13] == 0)
                for o in (off[plain], off[tagged] + 4):  # (the IPv4 header 4 bytes further behind a tag)
                    buf[o + 29] = (buf[o + 29].astype(np.int64) + loop) % 256
                    buf[o + 33] = (buf[o + 33].astype(np.int64) + loop) % 256
            n = len(b)
            if rate:
                ts = t0_ns + ((k_packet + np.arange(n)) * step).astype(np.int64)
            else:  # the capture's own times, one loop after the other
                if first is None:
                    first = int(b.ts_ns[0])
                    span = 0
                ts = b.ts_ns - first + t0_ns + loop * (span + 10**9)
                span = max(span, int(b.ts_ns[-1]) - first)
            k_packet += n
            yield loop, PacketBatch(buf, off.copy(), b.caplen.copy(), b.wirelen.copy(), ts, b.linktype.copy(), 0,
                                    b.frame0)
        reader.chunks.close()


def _packets(pcap: Path) -> int:
    reader = open_capture(pcap)
    n = sum(len(b) for b in reader.batches())
    reader.chunks.close()
    return n


def _phases(pipe: Pipeline, det: Detector, live: LiveCapture, acc: dict[str, float], rules_split: bool = False) -> None:
    """Wrap the phases of the run so that each adds its CPU time to ``acc`` (what an inner phase
    takes is not counted in the phase around it)."""
    import iotwatch.detect.detector as detector_mod
    import iotwatch.pipeline as pipeline_mod

    stack: list[float] = []  # CPU time of the inner phases, per phase running

    def wrap(owner: object, name: str, label: str) -> None:
        inner = getattr(owner, name)
        gen = getattr(inner, "__code__", None) is not None and bool(inner.__code__.co_flags & 0x20)

        def enter() -> float:
            stack.append(0.0)
            return time.process_time()

        def leave(t: float) -> None:
            took = time.process_time() - t
            nested = stack.pop()
            acc[label] = acc.get(label, 0.0) + took - nested
            if stack:
                stack[-1] += took

        if gen:  # a generator: the time of each step
            def wrapper(*args: object, **kw: object) -> object:
                it = inner(*args, **kw)
                while True:
                    t = enter()
                    try:
                        x = next(it)
                    except StopIteration:
                        leave(t)
                        return
                    leave(t)
                    yield x
        else:
            def wrapper(*args: object, **kw: object) -> object:  # type: ignore[misc]
                t = enter()
                try:
                    return inner(*args, **kw)
                finally:
                    leave(t)
        setattr(owner, name, wrapper)

    wrap(pipe, "feed", "feed: the rest (batch accounting)")
    wrap(pipeline_mod, "decode", "feed: decoding")
    wrap(pipe.flows, "update", "feed: flow kernel")
    wrap(pipe.flows, "packet_info", "feed: flow kernel")
    if pipe.sidecar is not None:
        wrap(pipe.sidecar, "pick", "feed: side channel (rare frames)")
    wrap(pipe.devices, "update", "feed: window counters")
    for an in pipe.analysers:
        which = "evidence" if an is det else "inventory"
        wrap(an, "on_flow_records", f"feed: {which} intake")
        wrap(an, "on_rare", f"feed: {which} intake")
        wrap(an, "on_windows", f"feed: {which} intake")
    wrap(pipeline_mod, "flows_to_table", "sinks (flow rows to Arrow)")
    wrap(pipe, "_emit", "sinks (events, Parquet)")
    wrap(pipe, "drain", "feed: the rest (batch accounting)")
    wrap(live, "_conclude", "passes: the rest (ranking, alerts written)")
    wrap(live, "_provisional_evidence", "passes: provisional evidence")
    wrap(det, "conclude_live", "passes: detector, the rest (keys, reuse)")
    wrap(detector_mod, "device_features", "passes: features")
    if hasattr(detector_mod, "FeatureState"):  # a live pass's features, only the windows that can have changed
        wrap(detector_mod.FeatureState, "update", "passes: features")
    wrap(det, "_probabilities", "passes: model")
    wrap(det, "_judge", "passes: rules and verdicts (the rest)")
    if rules_split:
        # each rule on its own (inside "rules and verdicts"), the own-address filter, the verdicts
        import iotwatch.detect.rules as rules_mod

        for name in ("scan", "bruteforce", "flood", "dns_tunnel", "upload_surge", "c2", "dead_controller",
                     "icmp_tunnel", "credential_upload", "dynamic_dns_session", "held_heartbeat",
                     "program_callback"):
            if hasattr(rules_mod, name):
                wrap(rules_mod, name, f"passes: rule {name}")
        wrap(detector_mod, "_own", "passes: own-address filter")
        wrap(detector_mod, "combine", "passes: verdicts (combine)")
    for an in pipe.analysers:
        if an is not det:
            wrap(an, "conclude", "passes: inventory")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pcap", type=Path, default=None,
                    help="default: bench/data/live.pcap, the capture `make bench-live` replays (made if absent)")
    ap.add_argument("--rate", type=float, default=200_000.0,
                    help="packets/s of the packet clock (0: the capture's own times)")
    ap.add_argument("--loops", type=int, default=40)
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--profile", type=Path, default=None)
    ap.add_argument("--start-phase", type=float, default=0.0,
                    help="where in a window the replay starts, s (bench/live.py: 7)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/iotwatch-verdicts"))
    ap.add_argument("--phases", action="store_true", help="the CPU time of every phase per packet")
    ap.add_argument("--rules", action="store_true", help="with --phases: each rule's CPU time on its own")
    ap.add_argument("--rechecks", type=str, default=None,
                    help="the recheck passes after a close, s, comma-separated (LiveOptions.recheck_s; "
                         "'' for none); default: the live run's")
    a = ap.parse_args()
    if a.pcap is None:
        sys.path.insert(0, str(ROOT / "bench"))
        from live import capture_file  # bench/live.py: generated once, then reused

        a.pcap = capture_file()

    settings = Settings(window_s=a.window, close_lag_s=1.0)
    analysers = build_analysers(settings)
    for an in analysers:
        if isinstance(an, Detector):
            from iotwatch.cli.capture import HISTORY_S

            an.settings.history_s = HISTORY_S
    a.out.mkdir(parents=True, exist_ok=True)
    eve = LiveEveSink(a.out / "events.jsonl", window_s=a.window)
    sinks: list[object] = [eve]
    if a.phases:
        from iotwatch.sinks import ParquetSink

        sinks.append(ParquetSink(a.out))
    pipe = Pipeline(settings, sinks, analysers=analysers, threaded=False)  # type: ignore[arg-type]
    live = LiveCapture(LiveOptions(interface="bench"))
    if a.rechecks is not None:
        live.opts.recheck_s = tuple(float(x) for x in a.rechecks.split(",") if x.strip())
    live.pipe, live.eve = pipe, eve
    pipe.files.append(str(a.pcap))
    for an in analysers:
        an.prepare()
    # where each pass's time goes: the provisional evidence, the detector's verdicts, the rest
    # (the inventory, the baselines file)
    parts: dict[str, float] = {}

    def timed(owner: object, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def wrapper(*args: object, **kw: object) -> object:
            t = time.process_time()
            try:
                return inner(*args, **kw)
            finally:
                parts[label] = parts.get(label, 0.0) + time.process_time() - t
        setattr(owner, name, wrapper)

    det = next(an for an in analysers if isinstance(an, Detector))
    timed(live, "_provisional_evidence", "evidence")
    timed(det, "conclude_live" if hasattr(det, "conclude_live") else "conclude", "detector")
    phases: dict[str, float] = {}
    if a.phases:
        _phases(pipe, det, live, phases, a.rules)
    prof = cProfile.Profile() if a.profile else None
    # the replay starts at a window's start that is also a minute's (the evidence past its cap is
    # counted per minute): two runs of the same replay judge the same packets alike
    step = int(a.window) * 60 // math.gcd(int(a.window), 60)
    t0 = (int(time.time()) // step + 1) * step * 10**9 + int(a.start_phase * 1e9)
    # each alert raised by a pass: its delay on the packet clock from the end of the window of its
    # timestamp (where its evidence crossed the threshold), as bench/live.py measures it on the wall clock
    slow: list[tuple[float, str, str]] = []
    delays: list[float] = []
    raise_alert = eve.raise_alert

    def raise_timed(al: object) -> bool:
        ok = raise_alert(al)  # type: ignore[arg-type]
        if ok:
            ts = al.timestamp  # type: ignore[attr-defined]
            d = alert_delay(ts, live._clock_ns / 1e9, a.window)
            delays.append(d)
            slow.append((d, f"{al.device} {al.category} {','.join(al.sources)}", f"first {al.first_ts - t0 / 1e9:.2f} s, "  # type: ignore[attr-defined]
                         f"fired {ts - t0 / 1e9:.2f} s, raised {live._clock_ns / 1e9 - t0 / 1e9:.2f} s into the replay"))
        return ok
    eve.raise_alert = raise_timed  # type: ignore[method-assign]
    windows_seen, rechecks = 0, []
    raised_by: dict[str, int] = {}  # alerts first raised by the passes at a window close, and at each recheck
    delay_by: dict[str, list[float]] = {}  # their delays
    n_delays = 0
    rows = []
    total = a.loops * _packets(a.pcap)
    for _loop, b in retimed(a.pcap, a.rate, a.loops, t0):
        pipe.feed(b)
        live._clock_ns = clock = int(b.ts_ns[-1])
        pipe.drain()
        closed = pipe.stats.windows > windows_seen
        due = bool(rechecks) and clock >= rechecks[0]
        # (the pre-close pass, LiveOptions.preclose_s, in a tree that has it)
        pre = hasattr(live, "_preclose_due") and live._preclose_due()
        if not (closed or due or pre):
            continue
        if closed:
            rechecks = [clock + int(d * 1e9) for d in live.opts.recheck_s]
            kind = "close"
        elif pre and not due:
            kind = "pre-close"
        else:
            while rechecks and clock >= rechecks[0]:
                rechecks.pop(0)
            kind = f"+{live.opts.recheck_s[len(live.opts.recheck_s) - len(rechecks) - 1]:g} s"
        windows_seen = pipe.stats.windows
        late = prof is not None and pipe.stats.packets > total / 2
        if late:
            prof.enable()
        parts.clear()
        c0, w0 = time.process_time(), time.perf_counter()
        live._conclude(rescore=closed) if _RESCORE else live._conclude()
        c1, w1 = time.process_time(), time.perf_counter()
        if late:
            prof.disable()
        rows.append((pipe.stats.packets, kind, c1 - c0, w1 - w0, len(eve.raised)))
        raised_by[kind] = raised_by.get(kind, 0) + len(eve.raised) - (rows[-2][4] if len(rows) > 1 else 0)
        delay_by.setdefault(kind, []).extend(delays[n_delays:])
        n_delays = len(delays)
        judged = getattr(det, "live_judged", None)  # (devices judged, devices): the incremental passes
        split = "  ".join(f"{k} {1e3 * v:.0f}" for k, v in parts.items())
        print(f"{pipe.stats.packets:>10,} packets  {rows[-1][1]:<7}  cpu {1e3 * (c1 - c0):7.1f} ms ({split})  "
              f"wall {1e3 * (w1 - w0):7.1f} ms  alerts raised {len(eve.raised)}"
              + (f"  devices judged {judged[0]}/{judged[1]}" if judged else ""), flush=True)
    pipe.finish()
    eve.close()
    if prof is not None:
        prof.dump_stats(a.profile)
    half = len(rows) // 2
    for name, part in (("first half", rows[:half]), ("second half", rows[half:])):
        cpu = [r[2] * 1e3 for r in part]
        if cpu:
            print(f"{name}: {len(cpu)} passes, cpu median {statistics.median(cpu):.1f} ms, max {max(cpu):.1f} ms")
    if delays:
        print(f"window end -> alert on the packet clock: median {statistics.median(delays):.2f} s, "
              f"max {max(delays):.2f} s; over 2.5 s:")
        for d, who, when in sorted(slow, reverse=True):
            if d > 2.5:
                print(f"  {d:6.2f} s  {who}  ({when})")
    print("alerts first raised by the passes: " + ", ".join(f"{k} {v}" for k, v in raised_by.items()))
    for k, ds in delay_by.items():
        if ds:
            print(f"  delays of those raised at {k}: " + ", ".join(f"{x:.2f}" for x in sorted(ds)) + " s")
    if a.phases:
        n = max(pipe.stats.packets, 1)
        print(f"CPU per packet by phase (µs), {n:,} packets:")
        for k, v in phases.items():
            print(f"  {k:<44} {v / n * 1e6:6.3f}")
        print(f"  {'all phases':<44} {sum(phases.values()) / n * 1e6:6.3f}")
    print(f"total pass cpu {sum(r[2] for r in rows):.2f} s over {pipe.stats.packets:,} packets "
          f"({sum(r[2] for r in rows) / max(pipe.stats.packets, 1) * 1e6:.3f} µs per packet); "
          f"alerts raised by the passes {sum(raised_by.values())}, at the end {len(eve.raised) - sum(raised_by.values())} "
          f"more (final alerts: {pipe.stats.alerts})")


if __name__ == "__main__":
    main()
