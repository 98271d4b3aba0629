"""A live run's features are taken again only for the windows that can have changed, and are
exactly those of the full computation.

The packets of a capture go through the pipeline a little at a time, as a live run receives them;
after every step each device's features over the provisional evidence (the live pass's view: the
evidence plus the open flows) are taken by :class:`FeatureState` (one per device, kept between
steps, as ``Detector.conclude_live`` keeps it) and by :func:`device_features` over everything:
they must be equal, value for value (NaN for NaN), at every step. And a change that touches an
old window (an event, a DNS query, a window row) takes that window again, not only the newest.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CALLBACK_CAPTURES, SHARED_PCAPS, needs_shared

from iotwatch.capture.source import open_capture
from iotwatch.detect import Detector
from iotwatch.detect.evidence import EVENT_DTYPE, K_EXT, K_PROBE, DeviceEvidence, DnsQuery
from iotwatch.detect.features import FEATURE_NAMES, WINDOW_COUNTERS, FeatureState, device_features
from iotwatch.live import LiveCapture, LiveEveSink, LiveOptions
from iotwatch.pipeline import Pipeline, build_analysers
from iotwatch.settings import Settings


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


def _replay(pcap: Path, window_s: float, batch: int, tmp: Path) -> dict[str, int]:
    """Step through ``pcap``; after every step compare each device's incremental features with the
    full ones. Returns counts: steps, device updates, windows in them, windows taken again."""
    settings = Settings(window_s=window_s, close_lag_s=1.0)
    analysers = build_analysers(settings)
    det = next(a for a in analysers if isinstance(a, Detector))
    pipe = Pipeline(settings, [], analysers=analysers, threaded=False)
    pipe.files.append(str(pcap))
    live = LiveCapture(LiveOptions(interface="test"))
    live.pipe, live.eve = pipe, LiveEveSink(tmp / "events.jsonl", window_s=window_s)
    states: dict[str, FeatureState] = {}
    counts = {"steps": 0, "updates": 0, "rows": 0, "taken": 0, "partial": 0}
    reader = open_capture(pcap, batch_size=batch)
    for b in reader.batches():
        pipe.feed(b)
        live._clock_ns = max(live._clock_ns, int(b.ts_ns[-1]))
        pipe.drain()
        devices = pipe.devices.totals()
        view = live._provisional_evidence(det)
        for dev, cols in det._columns().items():
            d = view.devices.get(dev)
            rec = devices.get(dev)
            dtype = rec.device_type if rec is not None else None
            st = states.setdefault(dev, FeatureState())
            got = st.update(cols, d, window_s, None, dtype)
            want = device_features(cols, d, window_s, None, dtype)
            assert _same(got, want), (f"{dev} after {pipe.stats.packets} packets (from window {st.from_row}): "
                                      + ", ".join(sorted({FEATURE_NAMES[j] for j in
                                                          np.flatnonzero(~((got == want) | (np.isnan(got) & np.isnan(want))).all(axis=0))})))
            n = len(cols["window_start"])
            counts["updates"] += 1
            counts["rows"] += n
            counts["taken"] += n - st.from_row
            counts["partial"] += 0 < st.from_row < n
        counts["steps"] += 1
    reader.chunks.close()
    live.eve.close()
    return counts


def _synth(tmp: Path, family: str, *args: str) -> Path:
    pcap = tmp / f"{family}.pcap"
    r = subprocess.run([sys.executable, "-m", "iotwatch", "synth", family, *args, "--out", str(pcap)],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    return pcap


@pytest.mark.parametrize(("family", "args", "window_s", "batch"), [
    ("hospital", ("--duration", "70", "--quiet", "20", "--uplink-mbps", "2", "--seed", "7"), 10.0, 512),
    ("scan", ("--duration", "40", "--seed", "3"), 10.0, 256),
    ("bruteforce", ("--duration", "60", "--seed", "4"), 10.0, 256),
    ("flood", ("--duration", "30", "--seed", "5"), 5.0, 2048),
    ("exfil", ("--duration", "90", "--seed", "6"), 10.0, 512),
    ("slowexfil", ("--duration", "240", "--seed", "6"), 30.0, 256),
    ("c2", ("--duration", "300", "--seed", "8"), 30.0, 128),
    ("tlsbeacon", ("--duration", "300", "--seed", "3"), 60.0, 256),
    ("dnstunnel", ("--duration", "90", "--seed", "2"), 10.0, 256),
    ("icmptunnel", ("--duration", "90", "--seed", "2"), 10.0, 256),
    ("credexfil", ("--duration", "300", "--seed", "2"), 30.0, 256),
    ("ratsession", ("--duration", "300", "--seed", "2"), 30.0, 256),
])
def test_incremental_features_equal_the_full_ones_at_every_step(family: str, args: tuple[str, ...], window_s: float,
                                                                 batch: int, tmp_path: Path) -> None:
    c = _replay(_synth(tmp_path, family, *args), window_s, batch, tmp_path)
    assert c["steps"] > 10 and c["updates"] > 10
    # the windows taken again are fewer than all of them, and some updates took only the newest
    assert c["taken"] < c["rows"]
    assert c["partial"] > 0


@needs_shared
@pytest.mark.parametrize("name", CALLBACK_CAPTURES)
def test_incremental_features_equal_the_full_ones_on_shared_captures(name: str, tmp_path: Path) -> None:
    """Real captures: call-backs to a controller, held sessions, lookups, beacons over minutes."""
    c = _replay(SHARED_PCAPS / name, 60.0, 64, tmp_path)
    assert c["steps"] > 5 and c["partial"] > 0


# a device built by hand: windows of 10 s, events placed in them --------------------------------

T0 = 1_700_000_000.0


def _windows(n: int) -> dict[str, np.ndarray]:
    cols = {name: np.full(n, 5.0) for name in WINDOW_COUNTERS}
    cols["window_start"] = T0 + 10.0 * np.arange(n)
    return cols


def _event(ts: float, host: int, port: int = 443, kind: int = K_EXT, end: float | None = None) -> np.ndarray:
    e = np.zeros(1, EVENT_DTYPE)
    e["ts"], e["end"] = ts, ts + 0.5 if end is None else end
    e["dst_lo"], e["dport"], e["proto"], e["kind"] = host, port, 6, kind
    e["pkts_out"], e["pkts_in"], e["bytes_out"], e["payload_out"], e["payload_in"] = 3, 3, 900, 500, 200
    e["opened"] = 1
    return e


def _device(events: list[np.ndarray]) -> DeviceEvidence:
    d = DeviceEvidence()
    for e in events:
        d.chunks.append(e)
        d.n += len(e)
    return d


def test_an_event_in_an_old_window_takes_it_again_with_what_it_makes_new_later() -> None:
    """Host 7 first reached in window 4: new there. A late event (a flow that ended late) reaches
    it in window 1: window 4's novelty changes, and the update takes windows 1 on again; a reused
    row would keep the stale novelty."""
    w = _windows(6)
    base = [_event(T0 + 10 * i + 1, 100 + i) for i in range(6)] + [_event(T0 + 41, 7)]
    st = FeatureState()
    first = st.update(w, _device(base), 10.0, None)
    assert st.from_row == 0
    novel = FEATURE_NAMES.index("novel_host_share")
    assert first[4, novel] == 1.0
    d = _device([*base, _event(T0 + 12, 7, kind=K_EXT | K_PROBE)])
    again = st.update(w, d, 10.0, None)
    assert st.from_row == 1
    assert _same(again, device_features(w, d, 10.0, None))
    assert again[4, novel] == 0.5  # host 7 is no longer new in window 4
    assert _same(again[:1], first[:1])


def _session(ts: float, end: float, host: int, payload: int = 500) -> np.ndarray:
    """A TCP session with data, held from ``ts`` to ``end``."""
    e = _event(ts, host, end=end)
    e["payload_out"], e["pkts_out"] = payload, 3 + payload // 500
    return e


def _step(w: dict[str, np.ndarray], before: list[np.ndarray], after: list[np.ndarray]) -> FeatureState:
    """A state updated over ``before`` then ``after``: the second update checked against the full one."""
    st = FeatureState()
    st.update(w, _device(before), 10.0, None)
    X = st.update(w, _device(after), 10.0, None)
    assert _same(X, device_features(w, _device(after), 10.0, None))
    return st


def test_an_event_inserted_far_back_takes_again_its_window_and_what_it_makes_new_later() -> None:
    """A flow that began long ago enters the evidence only now (it ended): to a host the device
    had reached before, to one new then and first reached again later (whose novelty moves back),
    to a failed service new then."""
    w = _windows(8)
    base = [_event(T0 + 10 * i + 1, 100 + i) for i in range(8)]
    assert _step(w, base, [*base, _event(T0 + 25.0, 100, port=8080)]).from_row == 2
    base6 = [*base, _event(T0 + 63.0, 9)]
    st = _step(w, base6, [*base6, _event(T0 + 25.0, 9)])
    assert st.from_row == 2 and st.X is not None and st.X[6, FEATURE_NAMES.index("novel_host_share")] == 0.5
    probe = [*base, _event(T0 + 52.0, 9, port=23, kind=K_EXT | K_PROBE)]
    st = _step(w, probe, [*probe, _event(T0 + 14.0, 9, port=23, kind=K_EXT | K_PROBE)])
    assert st.from_row == 1 and st.X is not None and st.X[5, FEATURE_NAMES.index("novel_failed_targets")] == 0.0


def test_a_session_whose_end_moves_or_that_comes_twice_or_goes_changes_the_windows_it_reaches() -> None:
    """A session still going (the same flow with a later end and more bytes) counts as open in
    every window it reaches (open_sessions_one_service, and top_target_requests with it); so does
    a second one alike to it (the same bytes: there twice), and one removed no longer does."""
    w = _windows(8)
    w["dns_queries"][:] = 0.0  # (each DNS query is a request to one service too)
    base = [_event(T0 + 10 * i + 1, 100 + i) for i in range(8)]
    held = [_session(T0 + 11.0, T0 + 14.0 + k, 50) for k in range(3)]  # three to one service, window 1
    longer = [held[0], held[1], _session(T0 + 11.0, T0 + 47.0, 50, payload=4000)]
    assert _step(w, [*base, *held], [*base, *longer]).from_row == 1
    assert _step(w, [*base, *longer], [*base, *longer, longer[2]]).from_row == 1
    assert _step(w, [*base, *longer], [*base, *longer[:2]]).from_row == 1
    through = [_session(T0 + 22.0 + k, T0 + 58.0, 50) for k in range(3)]  # held through windows 2 to 5
    X = _step(w, [*base, *through], [*base, *through, longer[2]]).X
    assert X is not None and X[3, FEATURE_NAMES.index("top_target_requests")] == 4.0


def test_an_event_removed_takes_its_window_again() -> None:
    w = _windows(6)
    base = [_event(T0 + 10 * i + 1, 100 + i) for i in range(6)] + [_event(T0 + 33.0, 100)]
    assert _step(w, base, base[:-1]).from_row == 3


def test_an_echo_flow_spread_further_changes_every_window_it_overlaps() -> None:
    """An ICMP echo flow's payload is spread over its windows: when it goes on into more of them,
    its share in each changes, its first window's included."""
    w = _windows(8)
    base = [_event(T0 + 10 * i + 1, 100 + i) for i in range(8)]

    def echo(end: float, sent: int) -> np.ndarray:
        e = _event(T0 + 12.0, 11, port=0, kind=4, end=end)  # K_ECHO
        e["proto"], e["bytes_out"], e["pkts_out"] = 1, sent, 20
        return e

    st = _step(w, [*base, echo(T0 + 26.0, 20_000)], [*base, echo(T0 + 44.0, 50_000)])
    assert st.from_row == 1 and st.X is not None and st.X[4, FEATURE_NAMES.index("echo_data_bytes")] > 0.0


def test_a_new_window_takes_the_last_known_one_again_and_nothing_older() -> None:
    w = _windows(4)
    events = [_event(T0 + 10 * i + 2, 200 + i) for i in range(4)] + [_event(T0 + 43, 300)]  # past window 3
    st = FeatureState()
    st.update(_windows(3), _device(events), 10.0, None)
    X = st.update(w, _device(events), 10.0, None)
    assert st.from_row == 2  # (the event at +43 s counted in window 2 while it was the last)
    assert _same(X, device_features(w, _device(events), 10.0, None))


def test_a_query_asked_in_an_old_window_takes_it_again() -> None:
    w = _windows(5)
    events = [_event(T0 + 10 * i + 2, 400 + i) for i in range(5)]
    d = _device(events)
    d.dns = [DnsQuery(T0 + 3.0, "a.example.com", 1, "10.0.0.1", 1)]
    st = FeatureState()
    st.update(w, d, 10.0, None)
    d2 = _device(events)
    d2.dns = [*d.dns, DnsQuery(T0 + 21.0, "b.example.com", 16, "10.0.0.1", 2)]
    X = st.update(w, d2, 10.0, None)
    assert st.from_row == 2
    assert _same(X, device_features(w, d2, 10.0, None))
    assert X[2, FEATURE_NAMES.index("dns_names")] == 1.0


def test_a_channel_seen_again_later_changes_its_old_windows_beats_and_they_are_taken_again() -> None:
    """A channel's traits and beats read its whole life (C2_FEATURES): connections to one odd
    port every 10 s; more of them later change what the early windows' features say, although
    no event fell in those windows."""
    n = 12
    w = _windows(n)
    beat = [_event(T0 + 1 + 10.0 * i, 9, port=6667) for i in range(6)]
    st = FeatureState()
    st.update(w, _device(beat), 10.0, None)
    more = beat + [_event(T0 + 1 + 10.0 * i, 9, port=6667) for i in range(6, 12)]
    X = st.update(w, _device(more), 10.0, None)
    assert st.from_row == 6
    assert _same(X, device_features(w, _device(more), 10.0, None))


def test_a_changed_row_or_type_takes_every_window_again() -> None:
    w = _windows(5)
    events = [_event(T0 + 10 * i + 2, 500 + i) for i in range(5)]
    st = FeatureState()
    st.update(w, _device(events), 10.0, None, "plug")
    w2 = {k: v.copy() for k, v in w.items()}
    w2["upload_bytes"][1] = 9e6
    X = st.update(w2, _device(events), 10.0, None, "plug")
    assert st.from_row == 1
    assert _same(X, device_features(w2, _device(events), 10.0, None, "plug"))
    X = st.update(w2, _device(events), 10.0, None, "camera")
    assert st.from_row == 0
    assert _same(X, device_features(w2, _device(events), 10.0, None, "camera"))


def test_an_echo_flow_reaching_into_a_new_window_takes_its_first_window_again() -> None:
    """An ICMP echo flow's payload is spread over the windows it overlaps: a window that comes
    later and that it reaches into takes a share from the windows before it, the flow's first
    one included (not only the last known one)."""
    echo = _event(T0 + 22.0, 11, port=0, kind=4, end=T0 + 46.0)  # K_ECHO, windows 2 to 4
    echo["proto"], echo["bytes_out"], echo["pkts_out"] = 1, 50_000, 20
    events = [_event(T0 + 10 * i + 1, 600 + i) for i in range(5)] + [echo]
    st = FeatureState()
    st.update(_windows(4), _device(events), 10.0, None)
    X = st.update(_windows(5), _device(events), 10.0, None)
    assert st.from_row == 2
    assert _same(X, device_features(_windows(5), _device(events), 10.0, None))


def test_a_mail_server_found_bad_later_changes_an_old_window_and_the_quiet_references_after_it() -> None:
    """Mail sent to a server in window 3 is ordinary until the device asks a what-is-my-IP service
    and mails that server again in window 15: everything sent to it counts then (send_service_bytes
    of window 3, a whole-history feature) and the windows after it have another reference
    (send_x_quiet), although the events since the previous update all fall in window 15."""
    w = _windows(20)
    mail = 0x5DB8D822  # a server on the internet
    early = [_event(T0 + 10 * i + 1, 700 + i) for i in range(20)] + [_event(T0 + 31.0, mail, port=25)]
    d = _device(early)
    st = FeatureState()
    before = st.update(w, d, 10.0, None)
    later = _device([*early, _event(T0 + 152.0, mail, port=25)])
    later.dns = [DnsQuery(T0 + 151.0, "api.ipify.org", 1, "10.0.0.1", 1)]
    X = st.update(w, later, 10.0, None)
    assert st.from_row == 15
    send = FEATURE_NAMES.index("send_service_bytes")
    assert before[3, send] == 0.0 and X[3, send] > 0.0
    assert _same(X, device_features(w, later, 10.0, None))
