"""A live run's analysers on their own thread (iotwatch/analysis_thread.py): what is handed over
is fed in order, each pass sees everything handed over before it was asked for, a pass still
waiting is taken with the next one, the queue is bounded, an error reaches the packet thread,
and a live run judged there raises the same alerts as one judged on the packet thread."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

from iotwatch.analysis_thread import SWITCH_INTERVAL_S, AnalysisThread
from iotwatch.capture.source import open_capture
from iotwatch.detect import Detector
from iotwatch.live import LiveCapture, LiveEveSink, LiveOptions
from iotwatch.pipeline import Pipeline, build_analysers
from iotwatch.settings import Settings


class Recorder:
    """An analyser that notes what it is fed."""

    def __init__(self, wants_rare: bool = True, fail_on: int | None = None) -> None:
        self.wants_rare = wants_rare
        self.fed: list[tuple[str, object]] = []
        self.fail_on = fail_on

    def bind(self, window_s: float, local_nets: object) -> None:
        pass

    def on_flow_records(self, rows: np.ndarray) -> None:
        if self.fail_on is not None and int(rows[0]) == self.fail_on:
            raise ValueError(f"bad rows {self.fail_on}")
        self.fed.append(("flows", int(rows[0])))

    def on_windows(self, table: pa.Table) -> None:
        self.fed.append(("windows", table.num_rows))

    def on_rare(self, frames: list[object]) -> None:
        self.fed.append(("rare", len(frames)))

    def prepare(self) -> float:
        return 0.0


def rows(k: int, n: int = 1) -> np.ndarray:
    return np.full(n, k, np.int64)


class GatedJudge:
    """A pass that notes what the analyser had been fed when it ran, and waits at the gate."""

    def __init__(self, an: Recorder) -> None:
        self.an = an
        self.seen: list[tuple[str, list[tuple[str, object]]]] = []
        self.started = threading.Event()
        self.gate = threading.Event()

    def __call__(self, req: str) -> None:
        self.seen.append((req, list(self.an.fed)))
        self.started.set()
        assert self.gate.wait(10)


def test_each_pass_sees_what_came_before_it_and_a_waiting_pass_goes_with_the_next() -> None:
    an, plain = Recorder(), Recorder(wants_rare=False)
    judge = GatedJudge(an)
    merged: list[tuple[str, str]] = []

    def merge(a: str, b: str) -> str:
        merged.append((a, b))
        return a + "+" + b

    t: AnalysisThread[str] = AnalysisThread([an, plain], judge, merge=merge)
    try:
        t.intake.on_flow_records(rows(1))
        t.request("p1")
        assert judge.started.wait(10)  # p1 runs (and waits at the gate) with flows 1 fed
        t.intake.on_windows(pa.table({"x": [1, 2]}))
        t.request("p2")
        t.intake.on_rare([SimpleNamespace(data=b"frame")] * 3)  # type: ignore[list-item]
        t.intake.on_flow_records(rows(2))
        t.request("p3")
        judge.gate.set()
        deadline = time.monotonic() + 10
        while t.passes_run < 2 and time.monotonic() < deadline:  # (closing would skip the waiting ones)
            time.sleep(0.01)
    finally:
        t.close()
    # p2 still waited when p3 came: one pass over everything covers both
    assert merged == [("p2", "p3")]
    assert [r for r, _ in judge.seen] == ["p1", "p2+p3"]
    assert judge.seen[0][1] == [("flows", 1)]
    assert judge.seen[1][1] == [("flows", 1), ("windows", 2), ("rare", 3), ("flows", 2)]
    assert plain.fed == [("flows", 1), ("windows", 2), ("flows", 2)]  # no rare frames: it does not want them
    assert (t.passes_run, t.passes_merged) == (2, 1)


def test_close_feeds_what_is_queued_skips_the_waiting_passes_and_restores_the_switch_interval() -> None:
    before = sys.getswitchinterval()
    an = Recorder()
    judge = GatedJudge(an)
    t: AnalysisThread[str] = AnalysisThread([an], judge)
    assert sys.getswitchinterval() == min(before, SWITCH_INTERVAL_S)
    t.request("p1")
    assert judge.started.wait(10)
    for k in range(5):
        t.intake.on_flow_records(rows(k))
    t.request("p2")  # the end of the run concludes over everything: not run
    closer = threading.Thread(target=t.close)
    closer.start()
    judge.gate.set()
    closer.join(10)
    assert not closer.is_alive()
    assert [r for r, _ in judge.seen] == ["p1"]
    assert an.fed == [("flows", k) for k in range(5)]
    assert sys.getswitchinterval() == before


def test_the_queue_is_bounded_the_packet_thread_waits_for_room() -> None:
    an = Recorder()
    judge = GatedJudge(an)
    t: AnalysisThread[str] = AnalysisThread([an], judge, max_bytes=1000)
    try:
        t.request("p1")
        assert judge.started.wait(10)
        t.intake.on_flow_records(rows(1, 100))  # 800 bytes: room
        handed = threading.Event()

        def producer() -> None:
            t.intake.on_flow_records(rows(2, 100))  # 800 more: over the bound, waits
            handed.set()

        p = threading.Thread(target=producer)
        p.start()
        assert not handed.wait(0.5)  # the pass holds the thread: no room is made
        assert t.max_queued_bytes == 800
        judge.gate.set()
        assert handed.wait(10)
        p.join(10)
    finally:
        judge.gate.set()
        t.close()
    assert an.fed == [("flows", 1), ("flows", 2)]
    assert t.waited_s >= 0.4


def test_an_error_on_the_thread_is_raised_on_the_packet_thread_and_nothing_hangs() -> None:
    an = Recorder(fail_on=2)
    t: AnalysisThread[str] = AnalysisThread([an], lambda _req: None, max_bytes=64)
    t.intake.on_flow_records(rows(1))
    t.intake.on_flow_records(rows(2))  # fails on the thread
    with pytest.raises(ValueError, match="bad rows 2"):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the next hand-overs find it (over the bound: waits end)
            t.intake.on_flow_records(rows(3, 8))
            time.sleep(0.01)
    t.close()  # raised once: closing after it is quiet
    assert ("flows", 1) in an.fed and ("flows", 2) not in an.fed

    failing: AnalysisThread[str] = AnalysisThread([Recorder()], lambda _req: (_ for _ in ()).throw(KeyError("x")))
    failing.request("p")
    deadline = time.monotonic() + 10
    while failing.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(KeyError):
        failing.close()


def _run_live(pcap: Path, out: Path, threaded: bool) -> tuple[list[dict[str, object]], LiveCapture, list[tuple[int, ...]]]:
    """A live run's passes over ``pcap`` read in small batches, on the packet clock (as
    bench/verdicts.py drives them); ``threaded``: the passes on their own thread, the packet thread
    waiting for each pass to end before it goes on (so both runs take their passes at the same
    packets: what is compared is what the passes see)."""
    settings = Settings(window_s=10.0, close_lag_s=1.0)
    analysers = build_analysers(settings)
    eve = LiveEveSink(out / "events.jsonl", window_s=10.0)
    pipe = Pipeline(settings, [eve], analysers=analysers, threaded=False)
    pipe.files.append(str(pcap))
    live = LiveCapture(LiveOptions(interface="test", stats_every_s=1e9, part_every_s=1e9))
    live.pipe, live.eve = pipe, eve
    live.source = SimpleNamespace(reader=object())  # type: ignore[assignment]  # (what _tick looks for)
    live._last_stats = live._last_part = time.monotonic()
    for a in analysers:
        a.prepare()
    asked: list[int] = []
    #: after each pass: the alerts raised so far, the window rows and flows the detector had
    #: been fed, the devices it judged again
    seen: list[tuple[int, ...]] = []
    det = next(a for a in analysers if isinstance(a, Detector))
    judge_now = live._judge

    def noted(req: object) -> None:
        judge_now(req)  # type: ignore[arg-type]
        seen.append((len(eve.raised), sum(t.num_rows for t in det._windows), det.evidence.total, *det.live_judged))
    live._judge = noted  # type: ignore[method-assign]
    if threaded:
        done = threading.Semaphore(0)

        def judge(req: object) -> None:
            try:
                live._judge(req)  # type: ignore[arg-type]
            finally:
                done.release()

        passes = live.passes = AnalysisThread(analysers, judge)
        for a in analysers:  # the thread behind the packets (what a pass sees must not depend on it)
            fed = a.on_flow_records

            def slow(rows: np.ndarray, fed: object = fed) -> None:
                time.sleep(0.002)
                fed(rows)  # type: ignore[operator]
            a.on_flow_records = slow  # type: ignore[method-assign]
        pipe.analysers = [passes.intake]  # type: ignore[list-item]
        request = passes.request

        def request_and_wait(req: object) -> None:
            request(req)  # type: ignore[arg-type]
            asked.append(passes.passes_run)
            assert done.acquire(timeout=60)  # the pass ran on the other thread
        passes.request = request_and_wait  # type: ignore[method-assign]
    reader = open_capture(pcap, batch_size=256)
    for b in reader.batches():
        pipe.feed(b)
        live._clock_ns = max(live._clock_ns, int(b.ts_ns[-1]))
        live._tick()
    reader.chunks.close()
    if live.passes is not None:
        live.passes.close()
        pipe.analysers, live.passes = analysers, None
        assert len(asked) >= 5 and asked == list(range(len(asked)))  # each pass ran, none merged
    pipe.finish()
    eve.close()
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()], live, seen


def test_passes_on_their_own_thread_raise_the_alerts_of_passes_on_the_packet_thread(tmp_path: Path) -> None:
    pcap = tmp_path / "hospital.pcap"
    r = subprocess.run([sys.executable, "-m", "iotwatch", "synth", "hospital", "--duration", "70", "--quiet", "20",
                        "--uplink-mbps", "2", "--seed", "7", "--out", str(pcap)], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    runs = {}
    for threaded in (False, True):
        (tmp_path / str(threaded)).mkdir()
        runs[threaded] = _run_live(pcap, tmp_path / str(threaded), threaded)

    def alerts(evs: list[dict[str, object]], during: bool) -> list[dict[str, object]]:
        return [{k: v for k, v in e.items() if k != "raised_ts"} for e in evs
                if e["event_type"] == "alert" and ("raised_ts" in e) == during]

    inline, threaded = runs[False][0], runs[True][0]
    assert runs[True][2] == runs[False][2]  # each pass judged the same, and raised the same alerts
    raised = alerts(inline, during=True)
    assert {a["alert"]["category"] for a in raised} >= {"scan", "bruteforce", "c2"}  # type: ignore[index]
    assert alerts(threaded, during=True) == raised
    assert alerts(threaded, during=False) == alerts(inline, during=False)
    devices = [[e for e in evs if e["event_type"] == "device"] for evs in (inline, threaded)]
    assert devices[0] == devices[1] and devices[0]
    # the verdict lag is noted by the pass that wrote the verdicts, on either thread
    assert runs[True][1].pipe.stats.verdict_lag_max_s is not None
