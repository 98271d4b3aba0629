"""A live run's verdict passes judge only what changed, and miss nothing.

The packets of a capture go through the pipeline a little at a time, as a live run receives
them; after every step the verdicts are taken twice over the same evidence, windows and open
flows: by the full pass a live run used to take (a copy of all the evidence plus the open flows,
every device judged, :meth:`Detector.conclude`) and by the incremental one it takes now
(:meth:`LiveCapture._provisional_evidence`, a copy-on-write view, and
:meth:`Detector.conclude_live`). Both must give the same alerts, field for field and in the same
order, at every step: an alert the full pass would raise, the incremental pass raises in the
same pass. And the rechecks come when the packets reach their moment (the capture clock).
"""

from __future__ import annotations

import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from conftest import CALLBACK_CAPTURES, SHARED_PCAPS, needs_shared

from iotwatch.capture.source import open_capture
from iotwatch.detect import Detector, rules
from iotwatch.detect.evidence import Evidence, held_sessions
from iotwatch.detect.features import device_features
from iotwatch.live import LiveCapture, LiveEveSink, LiveOptions, login_sessions
from iotwatch.pipeline import Pipeline, build_analysers
from iotwatch.records import DeviceRecord
from iotwatch.settings import Settings


def _full_pass_evidence(det: Detector, live: LiveCapture) -> Evidence:
    """The provisional evidence as the full pass built it: a copy of everything plus the open flows."""
    real = det.evidence
    tmp = Evidence(real.nets)
    tmp.merge(real)
    tmp.apps = dict(real.apps)
    tmp.add_flows(live.pipe.flows.open_records(live._clock_ns - int(live.opts.settle_s * 1e9),
                                               also=lambda r: login_sessions(r) | held_sessions(r)))
    return tmp


def _features_are_the_full_ones(det: Detector, devices: dict[str, DeviceRecord]) -> None:
    """After a close pass: each device's features kept in the detector's memo (taken again only
    for the windows that can have changed) equal :func:`device_features` over its evidence now."""
    for dev, cols in det._columns().items():
        m = det._live_memo.get(dev, {})
        if "X" in m:
            rec = devices.get(dev)
            want = device_features(cols, det.evidence.devices.get(dev), det.window_s, det.settings.baselines.get(dev),
                                   rec.device_type if rec is not None else None, det.names_seen)
            assert np.array_equal(m["X"], want, equal_nan=True), dev  # type: ignore[arg-type]


def _both_passes(pcap: Path, window_s: float, batch: int, tmp: Path, rechecks: bool = True) -> dict[str, int]:
    """Step through ``pcap``; after every step compare the full and the incremental pass.
    ``rechecks``: a step in which no window closed is a recheck, as in a live run (the model's
    features those of the last step that closed windows: the full pass takes them over that
    step's evidence, the incremental one keeps them); else every pass takes them again.
    Returns counts: steps, alerts seen by the passes, devices judged again / devices in all,
    devices whose features a recheck kept, beacon tests the incremental passes found in the memo
    (the full pass runs without it: the same alerts prove what the memo gives exact)."""
    settings = Settings(window_s=window_s, close_lag_s=1.0)
    analysers = build_analysers(settings)
    det = next(a for a in analysers if isinstance(a, Detector))
    pipe = Pipeline(settings, [], analysers=analysers, threaded=False)
    pipe.files.append(str(pcap))
    live = LiveCapture(LiveOptions(interface="test"))
    live.pipe, live.eve = pipe, LiveEveSink(tmp / "events.jsonl", window_s=window_s)
    for a in analysers:
        a.prepare()
    counts = {"steps": 0, "alerts": 0, "judged": 0, "devices": 0, "kept": 0, "memo_hits": 0}
    reader = open_capture(pcap, batch_size=batch)
    windows_seen, close_evidence = 0, None
    for b in reader.batches():
        pipe.feed(b)
        live._clock_ns = max(live._clock_ns, int(b.ts_ns[-1]))
        pipe.drain()
        rescore = not rechecks or pipe.stats.windows > windows_seen
        windows_seen = pipe.stats.windows
        found = {}
        real = det.evidence
        before = {k: real.state(k) for k in real.devices}
        for how in ("full", "incremental"):
            devices = pipe.devices.totals()
            for a in analysers:
                if a is not det:
                    a.conclude(devices, pipe.files)
            # the full pass computes every beacon test (an empty memo that keeps nothing); the
            # incremental one finds the unchanged peers' results in the memo of earlier passes
            memo = rules._FIRE_MEMO, rules._FIRE_MEMO_MAX
            if how == "full":
                rules._FIRE_MEMO, rules._FIRE_MEMO_MAX = OrderedDict(), 0
            hits = rules.FIRE_MEMO_STATS[0]
            try:
                if how == "full":
                    det.evidence = _full_pass_evidence(det, live)
                    if rescore:
                        close_evidence = det.evidence
                    alerts = det.conclude(devices, pipe.files, features_evidence=None if rescore else close_evidence)
                else:
                    det.evidence = live._provisional_evidence(det)
                    alerts = det.conclude_live(devices, pipe.files, rescore=rescore)
                    if rescore:  # the features a close keeps per device (FeatureState) are the full ones
                        _features_are_the_full_ones(det, devices)
            finally:
                det.evidence = real
                rules._FIRE_MEMO, rules._FIRE_MEMO_MAX = memo
            found[how] = [a.to_event() for a in alerts]
            if how == "full":
                assert rules.FIRE_MEMO_STATS[0] == hits  # (nothing found in the empty memo)
            else:
                counts["memo_hits"] += rules.FIRE_MEMO_STATS[0] - hits
            if how == "incremental":
                counts["judged"] += det.live_judged[0]
                counts["devices"] += det.live_judged[1]
                counts["kept"] += 0 if rescore else len(det._live_kept)
        assert found["incremental"] == found["full"], f"after {pipe.stats.packets} packets"
        assert {k: real.state(k) for k in real.devices} == before  # the passes changed no evidence
        counts["steps"] += 1
        counts["alerts"] += len(found["full"])
    reader.chunks.close()
    live.eve.close()
    return counts


def test_incremental_passes_raise_the_alerts_of_full_passes_on_the_hospital(tmp_path: Path) -> None:
    """The incident (scan, brute force, C2, upload surge) in 10 s windows, a pass every 512 packets."""
    pcap = tmp_path / "hospital.pcap"
    r = subprocess.run([sys.executable, "-m", "iotwatch", "synth", "hospital", "--duration", "70", "--quiet", "20",
                        "--uplink-mbps", "2", "--seed", "7", "--out", str(pcap)], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    c = _both_passes(pcap, 10.0, 512, tmp_path)
    assert c["steps"] > 20 and c["alerts"] > 0
    # devices that changed nothing since the previous pass were not judged again
    assert c["judged"] < c["devices"]
    # rechecks judged devices again without taking their features again
    assert c["kept"] > 0
    # every pass taking the features again: the same alerts as the full pass as well
    c = _both_passes(pcap, 10.0, 512, tmp_path, rechecks=False)
    assert c["steps"] > 20 and c["alerts"] > 0 and c["kept"] == 0


def test_incremental_passes_with_remembered_beacon_tests_raise_the_alerts_of_full_passes(tmp_path: Path) -> None:
    """A TLS beacon among a site's devices (their clouds' check-ins: many peers per device): the
    incremental passes find the beacon tests of the peers that did not change in the memo, the
    full passes compute every one; the same alerts at every step."""
    pcap = tmp_path / "tlsbeacon.pcap"
    r = subprocess.run([sys.executable, "-m", "iotwatch", "synth", "tlsbeacon", "--duration", "300", "--seed", "3",
                        "--out", str(pcap)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    c = _both_passes(pcap, 60.0, 512, tmp_path)
    assert c["steps"] > 20 and c["alerts"] > 0
    assert c["memo_hits"] > 0


@needs_shared
@pytest.mark.parametrize("name", CALLBACK_CAPTURES)
def test_incremental_passes_raise_the_alerts_of_full_passes_on_shared_captures(name: str, tmp_path: Path) -> None:
    """Real captures with call-backs to a controller (held sessions, beacons over minutes)."""
    c = _both_passes(SHARED_PCAPS / name, 60.0, 64, tmp_path)
    assert c["steps"] > 5 and c["alerts"] > 0


def test_events_added_later_merge_into_the_sorted_ones_as_a_stable_sort_would() -> None:
    """DeviceEvidence.events sorts only what came since its last call and merges it in: the same
    order as sorting every event at once (equal times keep their arrival order)."""
    from iotwatch.detect.evidence import EVENT_DTYPE, DeviceEvidence

    d = DeviceEvidence()
    rng = np.random.default_rng(3)
    every = []
    for k in range(6):  # chunks overlapping in time, with equal times within and across chunks
        for _ in range(k % 3 + 1):
            c = np.zeros(40, EVENT_DTYPE)
            c["ts"] = np.round(rng.uniform(0, 10, 40), 1)
            c["flow_id"] = np.arange(len(every) * 40, len(every) * 40 + 40)
            d.chunks.append(c)
            every.append(c)
        allc = np.concatenate(every)
        want = allc[np.argsort(allc["ts"], kind="stable")]
        got = d.events()
        assert got["flow_id"].tolist() == want["flow_id"].tolist()
        assert d.events() is got  # nothing new: the same array


def test_an_evidence_view_tells_what_it_added_and_leaves_the_evidence_as_it_was() -> None:
    """Evidence.with_flows: a device the open flows add to is a copy; the evidence viewed keeps
    its events and versions; two views that add the same flows say so (the same state and
    events key), and a flow that grew between two views makes them differ."""
    from iotwatch.detect.detector import _events_key
    from iotwatch.flows import FLOW_DTYPE, S_EST, S_SYN, S_SYNACK

    def session(flow_id: int, first_s: float, packets: int) -> np.ndarray:
        r = np.zeros(1, FLOW_DTYPE)  # a TCP session from 192.168.1.10 to an internet address, with data
        r["proto"], r["client_a"], r["flow_id"], r["mac_c"] = 6, 1, flow_id, 0x285700000001
        r["alo"], r["blo"] = 0xFFFF00000000 | 0xC0A8010A, 0xFFFF00000000 | 0x5DB8D822
        r["aport"], r["bport"] = 40000 + flow_id, 443
        r["first"], r["last"] = int(first_s * 1e9), int((first_s + 1) * 1e9)
        r["state"] = S_SYN | S_SYNACK | S_EST
        r["pk"] = [packets, packets]
        r["by"] = [100 * packets, 100 * packets]
        r["pl"] = [40 * packets, 40 * packets]
        r["fl"][0, 0] = 1
        r["plast"] = -1
        return r

    real = Evidence()
    real.add_flows(session(1, 100.0, 5))
    dev = next(iter(real.devices))
    d = real.devices[dev]
    state, n, version = real.state(dev), d.n, d.version
    a = real.with_flows(session(2, 101.0, 5))
    b = real.with_flows(session(2, 101.0, 5))
    c = real.with_flows(session(2, 101.0, 9))  # the same open flow, four more packets
    assert a.devices[dev] is not d and len(a.devices[dev].events()) == 2
    assert real.devices[dev] is d and d.n == n and d.version == version and real.state(dev) == state
    assert len(d.events()) == 1
    assert a.state(dev) == b.state(dev) != c.state(dev) and a.state(dev) != state
    assert _events_key(a.devices[dev]) == _events_key(b.devices[dev]) != _events_key(c.devices[dev])
    assert real.with_flows(np.zeros(0, FLOW_DTYPE)).state(dev) == state


def test_rechecks_are_due_on_the_capture_clock(tmp_path: Path) -> None:
    """After each close, a recheck comes in the first batch whose packets reach the close's
    clock plus each of ``recheck_s`` (the packets' time, not the wall clock's: fed here far
    faster than real time, a recheck on the wall clock would come many batches later), and the
    close passes take the model's features again, the rechecks do not. Before each close, a
    pre-close pass (as a recheck) comes in the first batch that reaches the window's end plus
    ``preclose_s``, unless that batch already closes the window; none otherwise."""
    import time
    from types import SimpleNamespace

    pcap = tmp_path / "hospital.pcap"
    r = subprocess.run([sys.executable, "-m", "iotwatch", "synth", "hospital", "--duration", "70", "--quiet", "20",
                        "--uplink-mbps", "2", "--seed", "7", "--out", str(pcap)], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    settings = Settings(window_s=10.0, close_lag_s=1.0)
    pipe = Pipeline(settings, [], analysers=build_analysers(settings), threaded=False)
    pipe.files.append(str(pcap))
    live = LiveCapture(LiveOptions(interface="test", stats_every_s=1e9, part_every_s=1e9))
    live.pipe, live.eve = pipe, LiveEveSink(tmp_path / "events.jsonl", window_s=10.0)
    live.source = SimpleNamespace(reader=object())  # (what _tick looks for: a capture running)
    live._last_stats = live._last_part = time.monotonic()
    passes: list[tuple[int, bool]] = []
    live._conclude = lambda rescore=True: passes.append((live._clock_ns, rescore))  # type: ignore[method-assign]
    steps = []
    reader = open_capture(pcap, batch_size=64)
    for b in reader.batches():
        pipe.feed(b)
        live._clock_ns = max(live._clock_ns, int(b.ts_ns[-1]))
        steps.append(live._clock_ns)
        live._tick()
    reader.chunks.close()
    live.eve.close()
    closes = [c for c, rescore in passes if rescore]
    assert len(closes) >= 5
    rechecks = 0
    for k, (c, rescore) in enumerate(passes):
        if not rescore:
            continue
        nxt = closes[closes.index(c) + 1] if closes.index(c) + 1 < len(closes) else None
        for d in live.opts.recheck_s:
            due = c + int(d * 1e9)
            first = next((s for s in steps if s >= due), None)
            if first is None or (nxt is not None and first >= nxt):
                continue  # (the capture ended, or the next window closed first)
            assert (first, False) in passes[k + 1:], f"no recheck at {first} for the close at {c}"
            rechecks += 1
    window, pre, lag = 10 * 10**9, int(live.opts.preclose_s * 1e9), 10**9  # type: ignore[operator]
    precloses = 0
    for end in range(steps[0] // window * window + window, steps[-1], window):
        first = next((s for s in steps if s >= end + pre), None)
        if first is not None and first - end < lag:  # (else the batch that reached it closed the window: the close judges)
            assert (first, False) in passes, f"no pre-close pass at {first} for the window ending {end}"
            assert not any(c for c, rescore in passes if rescore and end <= c < first)  # before the close
            precloses += 1
    assert precloses >= 5
    assert rechecks >= 5 and rechecks + precloses == sum(not rescore for _c, rescore in passes)


def test_the_beacon_tests_remembered_per_peer_give_what_they_compute() -> None:
    """rules._memo_fire: a peer's connections seen again give the result computed for them; a
    connection added, or one whose end moved (a session still settling), is computed again."""
    from iotwatch.detect.evidence import A_TLS, EVENT_DTYPE

    th = rules.Thresholds()
    rng = np.random.default_rng(11)
    memo = rules._FIRE_MEMO, rules.FIRE_MEMO_STATS[:]
    rules._FIRE_MEMO = OrderedDict()
    try:
        seen = []
        for trial in range(60):
            n = int(rng.integers(th.tls_beacon_conns, 40))
            e = np.zeros(n, EVENT_DTYPE)
            period = float(rng.choice([2.0, 30.0, 200.0]))
            e["ts"] = 1.8e9 + np.cumsum(period * (1 + rng.normal(0, float(rng.choice([0.01, 0.5])), n)).clip(0.1))
            e["end"] = e["ts"] + rng.uniform(0.1, 1.0, n) * period * float(rng.choice([0.5, 2.0]))
            e["app"] = np.where(rng.random(n) < 0.9, A_TLS, 0)
            e["dport"] = 443
            seen.append(e)
            variants = [e, e[:-1], e.copy()]
            variants[2]["end"][-2] += period  # still settling: its end moved
            for v in variants:
                for fn, name, arrays in ((rules._tls_beacon_fire, "tls_beacon", (v["ts"], v["end"], v["app"], v["dport"])),
                                         (lambda x, t: rules._beacon_fire(x["ts"], t), "beacon", (v["ts"],))):
                    want = fn(v, th)
                    got = rules._memo_fire(name, rules._thresholds_key(th), arrays, lambda v=v, fn=fn: fn(v, th))
                    again = rules._memo_fire(name, rules._thresholds_key(th), arrays, lambda: -99)
                    assert got == want == again, trial
        fired = sum(rules._tls_beacon_fire(e, th) >= 0 for e in seen)
        assert 0 < fired < len(seen)  # both outcomes were remembered
        # other thresholds: another key, computed again
        th2 = rules.Thresholds(tls_beacon_conns=th.tls_beacon_conns + 1)
        e = seen[0]
        arrays = (e["ts"], e["end"], e["app"], e["dport"])
        assert rules._memo_fire("tls_beacon", rules._thresholds_key(th2), arrays, lambda: -7) == -7
    finally:
        rules._FIRE_MEMO = memo[0]


def test_the_surge_fire_time_is_the_flow_by_flow_one() -> None:
    """rules._surge_fire spreads each flow's bytes over its life by blocks of flows: the same fire
    time as adding the flows one by one, for short and long surges, big and small flows."""
    from iotwatch.detect.evidence import EVENT_DTYPE

    def one_by_one(big: np.ndarray, first: float, base_rate: float, th: rules.Thresholds) -> float:
        end = float(big["end"].max())
        grid = np.arange(first, max(end, first) + 1.0, 0.5)
        sent = np.zeros(len(grid))
        for e in big:
            span = max(float(e["end"] - e["ts"]), 1e-3)
            sent += np.clip((grid - float(e["ts"])) / span, 0, 1) * float(e["bytes_out"])
        need = np.maximum(th.surge_min_bytes_10s, th.surge_x * base_rate * (grid - first))
        hit = np.flatnonzero(sent >= need)
        return float(grid[hit[0]]) if len(hit) else end

    th = rules.Thresholds()
    rng = np.random.default_rng(5)
    fired = 0
    for _ in range(200):
        n = int(rng.integers(1, 300))
        b = np.zeros(n, EVENT_DTYPE)
        b["ts"] = 1.8e9 + np.sort(rng.uniform(0, float(rng.choice([5, 60, 3000])), n))
        b["end"] = b["ts"] + rng.exponential(float(rng.choice([0.001, 3, 100])), n) * (rng.random(n) > 0.1)
        b["bytes_out"] = rng.integers(1, 10 ** int(rng.integers(2, 8)), n)
        first = float(b["ts"].min()) - float(rng.uniform(0, 5))
        base = float(rng.uniform(0, 1e5))
        want = one_by_one(b, first, base, th)
        assert rules._surge_fire(b, first, base, th) == want
        fired += want < float(b["end"].max())
    assert 20 < fired < 180


def test_the_own_address_filter_keeps_the_events_sent_from_the_device_addresses() -> None:
    """detector._own (every pass, for every device judged): the events whose source is one of the
    record's addresses, IPv4 or IPv6, none for a record without addresses; the array itself (no
    copy) when all are its own."""
    import ipaddress
    from types import SimpleNamespace

    from iotwatch.detect.detector import _own
    from iotwatch.detect.evidence import EVENT_DTYPE

    def words(text: str) -> tuple[int, int]:
        a = ipaddress.ip_address(text)
        v = int(a)
        return (0, 0xFFFF00000000 | v) if a.version == 4 else (v >> 64, v & ((1 << 64) - 1))

    rng = np.random.default_rng(1)
    pool = [f"192.168.1.{i}" for i in range(1, 40)] + ["fe80::1", "2001:db8::5", "fd00::ffff:abcd:1234"]
    for _ in range(100):
        ips = [str(x) for x in rng.choice(pool, int(rng.integers(0, 6)), replace=False)]
        src = [str(x) for x in rng.choice(ips or pool, int(rng.integers(1, 100)))]
        if rng.random() < 0.7:
            src += [str(x) for x in rng.choice(pool, int(rng.integers(1, 50)))]
        ev = np.zeros(len(src), EVENT_DTYPE)
        ev["ts"] = np.arange(len(src))
        for i, text in enumerate(src):
            ev["src_hi"][i], ev["src_lo"][i] = words(text)
        got = _own(ev, SimpleNamespace(mac="02:00:00:00:00:01", ips=ips))
        want = [i for i, text in enumerate(src) if text in ips]
        assert got["ts"].astype(int).tolist() == want
        assert (got is ev) == (len(want) == len(src))


def test_records_selected_and_copied_as_opaque_bytes_are_the_structured_ones() -> None:
    """evidence.take_rows / copy_rows (the rules and the evidence select events through them):
    byte for byte what numpy's structured indexing and copy give, for masks, indices and slices,
    and a copy that is not the original."""
    from iotwatch.detect.evidence import EVENT_DTYPE, OVF_DTYPE, copy_rows, take_rows

    rng = np.random.default_rng(2)
    for dtype in (EVENT_DTYPE, OVF_DTYPE):
        a = np.zeros(300, dtype)
        a.view(np.uint8).reshape(len(a), -1)[:] = rng.integers(0, 256, (len(a), dtype.itemsize), dtype=np.uint8)
        for sel in (rng.random(len(a)) < 0.3, rng.integers(0, len(a), 50), np.argsort(rng.random(len(a))),
                    slice(10, 200, 3), np.zeros(len(a), np.bool_)):
            got, want = take_rows(a, sel), a[sel]
            assert got.dtype == dtype and got.tobytes() == want.tobytes()
        c = copy_rows(a[5:50])
        assert c.tobytes() == a[5:50].tobytes() and not np.shares_memory(c, a)


def test_the_arp_array_and_the_distinct_sets_past_the_cap_follow_what_is_added() -> None:
    """DeviceEvidence.arp_array (kept between passes, shared by a view's copies) holds every ARP
    request added since, in order, and a copy's additions never show in the original's;
    distinct_past_cap gives again the sets it made only while nothing was added."""
    from iotwatch.detect.evidence import DeviceEvidence

    d = DeviceEvidence()
    assert len(d.arp_array()) == 0
    want = []
    for k in range(5):
        for j in range(k + 1):
            d.arp.append((100.0 + k + j / 10, 0x0A000000 + 7 * k + j, k * 100 + j))
            want.append(d.arp[-1])
        got = d.arp_array()
        assert [tuple(x) for x in got.tolist()] == want
    c = d.copy()
    c.arp.append((200.0, 1, 2))
    assert len(c.arp_array()) == len(want) + 1 and len(d.arp_array()) == len(want)
    d.ovf_targets = [np.array([5, 3], np.uint64)]
    d.ovf_hosts = [np.array([9], np.uint64)]
    t, h = d.distinct_past_cap()
    assert t.tolist() == [3, 5] and h.tolist() == [9]
    assert d.distinct_past_cap()[0] is t  # nothing added: the same sets
    d.ovf_targets.append(np.array([4, 5], np.uint64))
    d.ovf_hosts.append(np.array([1], np.uint64))
    t2, h2 = d.distinct_past_cap()
    assert t2.tolist() == [3, 4, 5] and h2.tolist() == [1, 9]


def test_the_distinct_sets_past_the_cap_placed_into_the_known_ones_are_those_of_all_keys() -> None:
    """distinct_past_cap places the keys added since its last sets into them (evidence._distinct,
    not a sort of all of them again): at every step, in the device and in a view's copy that
    adds its own, the sorted unique keys of everything added, and the copy's never in the
    original's."""
    from iotwatch.detect.evidence import DeviceEvidence

    rng = np.random.default_rng(8)
    for _ in range(40):
        d = DeviceEvidence()
        added_t: list[np.ndarray] = []
        added_h: list[np.ndarray] = []
        span = int(rng.integers(2, 5000))
        for _step in range(int(rng.integers(1, 8))):
            for _part in range(int(rng.integers(0, 3))):
                t = np.unique(rng.integers(0, span, int(rng.integers(0, 300))).astype(np.uint64))
                h = np.unique(rng.integers(0, span, int(rng.integers(0, 50))).astype(np.uint64))
                d.ovf_targets.append(t)
                d.ovf_hosts.append(h)
                added_t.append(t)
                added_h.append(h)
            want_t = np.unique(np.concatenate(added_t)) if added_t else np.zeros(0, np.uint64)
            want_h = np.unique(np.concatenate(added_h)) if added_h else np.zeros(0, np.uint64)
            got_t, got_h = d.distinct_past_cap()
            assert got_t.tolist() == want_t.tolist() and got_h.tolist() == want_h.tolist()
        view = d.copy()  # (a view's copy: its first parts are the device's sets)
        more = np.array([0, span + 1, span + 2], np.uint64)
        view.ovf_targets.append(more)
        view.ovf_hosts.append(more[:1])
        vt, vh = view.distinct_past_cap()
        assert vt.tolist() == np.union1d(want_t, more).tolist() and vh.tolist() == np.union1d(want_h, more[:1]).tolist()
        assert d.distinct_past_cap()[0].tolist() == want_t.tolist()


def test_aggregate_rows_added_as_opaque_records_are_the_structured_concatenation() -> None:
    """evidence._with_rows (new aggregate rows past the cap, each placed at its id as opaque
    records): byte for byte the structured concatenation sorted by id (stable), as the table was
    made before, rows sorted or not, ids the table holds or not."""
    from iotwatch.detect.evidence import OVF_DTYPE, _with_rows

    rng = np.random.default_rng(9)
    for n, m, span in ((0, 5, 1 << 20), (7, 0, 1 << 20), (300, 40, 1 << 20), (1000, 1, 1 << 20), (300, 40, 200),
                       (50, 50, 30)) * 10:
        ids = rng.integers(0, span, n + m).astype(np.uint64)  # (small spans: ids the table holds too)
        both = np.zeros(n + m, OVF_DTYPE)
        both.view(np.uint8).reshape(n + m, -1)[:] = rng.integers(0, 256, (n + m, OVF_DTYPE.itemsize), dtype=np.uint8)
        both["id"] = ids
        table = both[:n][np.argsort(both["id"][:n], kind="stable")]
        rows = both[n:]
        if rng.random() < 0.5:  # (as the evidence adds them: sorted by id)
            rows = rows[np.argsort(rows["id"], kind="stable")]
        want = np.concatenate([table, rows])
        want = want[np.argsort(want["id"], kind="stable")]
        got = _with_rows(table, rows)
        assert got.dtype == OVF_DTYPE and got.tobytes() == want.tobytes()


def test_the_own_address_keys_follow_the_record_as_it_gains_addresses() -> None:
    """detector._own keeps the parsed keys per set of addresses: a device seen at one more
    address (a replay's next loop, a DHCP renewal) has its events from it counted at once."""
    from types import SimpleNamespace

    from iotwatch.detect.detector import _own
    from iotwatch.detect.evidence import EVENT_DTYPE

    ev = np.zeros(3, EVENT_DTYPE)
    ev["src_lo"] = [0xFFFF00000000 | 0xC0A8010A, 0xFFFF00000000 | 0xC0A8010B, 0xFFFF00000000 | 0xC0A8010A]
    ev["ts"] = [1, 2, 3]
    rec = SimpleNamespace(mac="02:00:00:00:00:01", ips=["192.168.1.10"])
    assert _own(ev, rec)["ts"].tolist() == [1, 3]
    rec.ips.append("192.168.1.11")
    assert _own(ev, rec) is ev


def test_screened_groups_of_events_in_time_order_are_those_of_the_two_column_sort() -> None:
    """rules.screened_groups sorts events in time order by key alone (a stable radix sort) and
    takes the groups as they come: the same groups, in the same order, as the (key, time) sort
    it takes for events out of time order."""
    rng = np.random.default_rng(4)
    for _ in range(200):
        n = int(rng.integers(1, 400))
        keys = rng.integers(0, int(rng.integers(1, 30)), n).astype(np.uint64)
        ts = np.sort(np.round(rng.uniform(0, float(rng.choice([5, 100, 1000])), n), 1))
        w = rng.integers(0, 50, n).astype(np.float64)
        k, total, window = int(rng.integers(1, 8)), float(rng.integers(0, 200)), float(rng.choice([1, 10, 60]))
        got = rules.screened_groups(keys, ts, w, k, total, window)
        order = np.lexsort((ts, keys))  # what the rule sorted by before: (key, time)
        out = np.zeros(n, np.uint8)
        rules._screen(keys[order], ts[order], w[order], k, total, window, out)
        passed = order[out.astype(bool)]
        want = rules._groups(keys[passed], k, passed)
        assert [g.tolist() for g in got] == [g.tolist() for g in want]
        # out of time order: the two-column sort, the same as before
        shuffled = rng.permutation(n)
        got2 = rules.screened_groups(keys[shuffled], ts[shuffled], w[shuffled], k, total, window)
        order2 = np.lexsort((ts[shuffled], keys[shuffled]))
        out2 = np.zeros(n, np.uint8)
        rules._screen(keys[shuffled][order2], ts[shuffled][order2], w[shuffled][order2], k, total, window, out2)
        p2 = order2[out2.astype(bool)]
        assert [g.tolist() for g in got2] == [g.tolist() for g in rules._groups(keys[shuffled][p2], k, p2)]


def test_screened_groups_of_device_columns_are_those_of_the_two_column_sort() -> None:
    """rules.screened_groups over what the rules give it (a device's hashed host keys, its time
    and packet columns read from the events: strided, 32-bit weights; many keys, so that the
    hash index's slots collide and wrap): the groups of the (key, time) sort and _screen, in
    key order, each in time order."""
    from iotwatch.detect.evidence import EVENT_DTYPE, host_key

    rng = np.random.default_rng(11)
    for _ in range(60):
        n = int(rng.integers(1, 3000))
        ev = np.zeros(n, EVENT_DTYPE)
        ev["ts"] = np.sort(np.round(rng.uniform(0, float(rng.choice([10, 100, 600])), n)))  # (ties at the window edge)
        ev["dst_lo"] = rng.integers(0, int(rng.choice([3, 40, 1500])), n).astype(np.uint64)
        ev["pkts_out"] = rng.integers(0, 400, n).astype(np.uint32)
        keys = host_key(ev["dst_hi"], ev["dst_lo"])
        k, total, window = int(rng.integers(1, 30)), float(rng.integers(0, 3000)), float(rng.choice([1, 10, 60]))
        got = rules.screened_groups(keys, ev["ts"], ev["pkts_out"], k, total, window)
        order = np.lexsort((ev["ts"], keys))
        out = np.zeros(n, np.uint8)
        rules._screen(keys[order], ev["ts"][order], ev["pkts_out"][order].astype(np.float64), k, total, window, out)
        passed = order[out.astype(bool)]
        want = rules._groups(keys[passed], k, passed)
        assert [g.tolist() for g in got] == [g.tolist() for g in want]


def test_the_median_of_the_sorted_quiet_windows_is_numpys() -> None:
    """rules._sorted_median (the upload rule's reference, kept sorted window by window): bit for
    bit np.median of the same values, odd and even counts, ties and zeros."""
    import bisect

    rng = np.random.default_rng(12)
    for _ in range(300):
        vals: list[float] = []
        n = int(rng.integers(1, 40))
        xs = np.round(rng.uniform(0, float(rng.choice([10, 1e7])), n), int(rng.integers(0, 4)))
        xs[rng.random(n) < 0.2] = 0.0
        for x in xs:
            bisect.insort(vals, float(x))
            assert rules._sorted_median(vals) == float(np.median(np.array(vals)))
        assert rules._sorted_median(vals) == float(np.median(rng.permutation(vals)))


def test_the_ports_most_probed_are_those_counter_ranks() -> None:
    """rules._ports (the alerts' ports, from one sort): Counter.most_common's ports over the TCP
    and UDP events, in its order (equal counts: the one seen first first)."""
    from collections import Counter

    from iotwatch.detect.evidence import EVENT_DTYPE

    rng = np.random.default_rng(13)
    for _ in range(300):
        ev = np.zeros(int(rng.integers(0, 200)), EVENT_DTYPE)
        ev["dport"] = rng.integers(0, int(rng.choice([3, 20, 65536])), len(ev))
        ev["proto"] = rng.choice([6, 17, 1, 47], len(ev))
        n = int(rng.integers(1, 8))
        tcp_udp = ev["dport"][(ev["proto"] == 6) | (ev["proto"] == 17)].tolist()
        assert rules._ports(ev, n) == [p for p, _ in Counter(tcp_udp).most_common(n)]


def test_the_dns_groups_kept_between_passes_are_those_made_again() -> None:
    """rules._dns_groups (the DNS queries by resolver and domain, kept in a box the device shares
    with its copies, taken up as queries come): at every step the groups made afresh from the
    same queries, in the device,
    in a view's copy that judged first (its groups serve the device) and after the device took
    more queries than the copy has (the copy's are its own)."""
    from iotwatch.detect.evidence import DeviceEvidence, DnsQuery

    def fresh(d: DeviceEvidence) -> list[tuple[object, ...]]:
        return [(res, [id(x) for x in qs], ts.tolist(), names.tolist())
                for res, qs, ts, names in rules._dns_groups(DeviceEvidence(dns=list(d.dns)))]

    def kept(d: DeviceEvidence) -> list[tuple[object, ...]]:
        return [(res, [id(x) for x in qs], ts.tolist(), names.tolist()) for res, qs, ts, names in rules._dns_groups(d)]

    rng = np.random.default_rng(14)
    for run in range(6):
        d = DeviceEvidence()
        for step in range(12):
            # mostly as queries come (none older than the latest before: the kept groups are
            # taken up), now and then an older one (all are grouped again); ties too
            late = rng.random() < 0.8
            for _ in range(int(rng.integers(0, 30))):
                ts = float(np.round(rng.uniform(10 * step, 10 * step + 10) if late else rng.uniform(0, 100)))
                d.dns.append(DnsQuery(ts, f"h{int(rng.integers(0, 50))}.{rng.choice(['a.com', 'b.org', 'c.co.uk'])}",
                                      1, str(rng.choice(["10.0.0.1", "10.0.0.2"])), run * 100 + step))
            if d.dns:
                assert kept(d) == fresh(d)
    for step in range(12):
        d.dns.append(DnsQuery(float(rng.uniform(0, 100)), "again.a.com", 1, "10.0.0.1", step))
        c = d.copy()
        assert kept(c) == fresh(c) == kept(d)
        d.dns.append(DnsQuery(float(rng.uniform(0, 100)), "late.a.com", 1, "10.0.0.1", 99))
        assert kept(d) == fresh(d) and kept(c) == fresh(c) != kept(d)
        c.dns.append(DnsQuery(float(rng.uniform(0, 100)), "other.b.org", 1, "10.0.0.2", 98))  # (as many as d's)
        assert kept(d) == fresh(d) and kept(c) == fresh(c) != kept(d)


def test_fire_index_over_blocks_of_python_numbers_is_the_sliding_window_count() -> None:
    """rules.fire_index (its loop over Python numbers taken a block at a time; the scan gives it
    the distinct targets it counted): the first event at which the window holds k distinct
    targets, by brute force, across the blocks' edges."""
    rng = np.random.default_rng(15)
    for _ in range(60):
        n = int(rng.integers(1, 1600))
        ts = np.sort(np.round(rng.uniform(0, float(rng.choice([20, 600, 5000])), n), int(rng.integers(0, 2))))
        tg = rng.integers(0, int(rng.choice([5, 50, 5000])), n).astype(np.uint64)
        tg[: int(rng.integers(0, n + 1))] %= np.uint64(2)  # (a first stretch to two targets: some fire past a block)
        k, window = int(rng.integers(1, 40)), float(rng.choice([1, 10, 60]))
        want = next((i for i in range(n) if len(set(tg[(ts > ts[i] - window) & (np.arange(n) <= i)].tolist())) >= k), -1)
        assert rules.fire_index(ts, tg, k, window) == want
        assert rules.fire_index(ts, tg, k, window, len(np.unique(tg))) == want


def test_the_union_size_of_two_key_sets_is_that_of_their_union() -> None:
    """rules._union_size (the scan rule's targets and hosts with those past the cap): the size of
    np.union1d, for overlapping, disjoint, empty and equal sets."""
    rng = np.random.default_rng(6)
    for _ in range(300):
        a = np.unique(rng.integers(0, int(rng.integers(1, 500)), int(rng.integers(0, 200))).astype(np.uint64))
        b = np.unique(rng.integers(0, int(rng.integers(1, 500)), int(rng.integers(0, 300))).astype(np.uint64))
        assert rules._union_size(a, b) == len(np.union1d(a, b)) == rules._union_size(b, a)
    assert rules._union_size(a, a) == len(a)


def test_frames_that_add_nothing_leave_a_device_state_as_it_was() -> None:
    """Evidence.add_rare: a gratuitous ARP (sender = target) or a DNS query that is not kept
    makes the device known, but moves its state (what a live pass judges again by) only when it
    adds something; an ARP request for another address does."""
    from iotwatch.sidecar import RareFrame

    def arp(spa: int, tpa: int, ts: float) -> RareFrame:
        data = bytearray(28)
        data[2:4] = b"\x08\x00"
        data[14:18] = spa.to_bytes(4, "big")
        data[24:28] = tpa.to_bytes(4, "big")
        return RareFrame(ts=ts, file_index=0, frame=1, l3=1, data=bytes(data), src="02:00:00:00:00:01", dst=None, kind="arp")

    ev = Evidence()
    ev.add_rare([arp(0xC0A8010A, 0xC0A8010A, 1.0)])  # gratuitous: the device is known, nothing kept
    dev = "02:00:00:00:00:01"
    assert dev in ev.devices and not ev.devices[dev].arp
    state = ev.state(dev)
    ev.add_rare([arp(0xC0A8010A, 0xC0A8010A, 2.0), arp(0, 0xC0A8010B, 3.0)])  # (a probe from 0.0.0.0: not kept)
    assert ev.state(dev) == state
    ev.add_rare([arp(0xC0A8010A, 0xC0A80101, 4.0)])
    assert ev.state(dev) != state and len(ev.devices[dev].arp) == 1


def test_a_view_digest_leaves_out_the_totals_while_the_caps_leave_room() -> None:
    """Evidence._note: the same open flows added to the same device give the same state in two
    views whatever the other devices hold, while the caps over all devices leave room for them;
    near a cap (how many are kept then depends on the others) the totals count."""
    from iotwatch.detect import evidence as evmod
    from iotwatch.flows import FLOW_DTYPE, S_EST, S_SYN, S_SYNACK

    def session(flow_id: int, mac: int, first_s: float) -> np.ndarray:
        r = np.zeros(1, FLOW_DTYPE)  # a TCP session from 192.168.1.x to an internet address, with data
        r["proto"], r["client_a"], r["flow_id"], r["mac_c"] = 6, 1, flow_id, mac
        r["alo"], r["blo"] = 0xFFFF00000000 | (0xC0A80100 + (mac & 0xFF)), 0xFFFF00000000 | 0x5DB8D822
        r["aport"], r["bport"] = 40000 + flow_id, 443
        r["first"], r["last"] = int(first_s * 1e9), int((first_s + 1) * 1e9)
        r["state"] = S_SYN | S_SYNACK | S_EST
        r["pk"], r["by"], r["pl"] = [5, 5], [500, 500], [200, 200]
        r["fl"][0, 0] = 1
        r["plast"] = -1
        return r

    a, b = 0x285700000001, 0x285700000002
    real = Evidence()
    real.add_flows(session(1, a, 100.0))
    real.add_flows(session(2, b, 100.0))
    dev = next(k for k in real.devices if k.endswith("01"))
    open_flow = session(9, a, 105.0)
    before = real.with_flows(open_flow).state(dev)
    real.add_flows(session(3, b, 101.0))  # another device's evidence grows: the totals move
    assert real.state(dev) == (real.devices[dev].version, 0)
    assert real.with_flows(open_flow).state(dev) == before
    cap = evmod.MAX_EVENTS_TOTAL
    try:  # the total cap within reach: how the open flow is kept depends on the others now
        evmod.MAX_EVENTS_TOTAL = real.total + 1
        near = real.with_flows(open_flow).state(dev)
        real.add_flows(session(4, b, 102.0))
        assert real.with_flows(open_flow).state(dev) != near
    finally:
        evmod.MAX_EVENTS_TOTAL = cap


def test_the_pre_close_pass_is_due_once_per_window_before_it_closes() -> None:
    """``LiveOptions.preclose_s`` after a window's end on the capture clock, once, while the
    window is not closed yet (``close_lag_s``); not for the window before the first packets, nor
    when the clock jumps past the close (the close pass judges that window)."""
    from types import SimpleNamespace

    live = LiveCapture(LiveOptions(interface="test"))
    live.pipe = SimpleNamespace(settings=Settings(window_s=10.0, close_lag_s=1.0))  # type: ignore[assignment]
    base = 1_700_000_000 * 10**9  # a window boundary
    due = []
    for t in (3.2, 9.9, 10.3, 10.5, 10.8, 11.2, 20.6, 20.7, 31.5, 40.49, 40.99, 41.0, 50.5):
        live._clock_ns = base + int(t * 1e9)
        due.append(live._preclose_due())
    #         3.2    9.9    10.3   10.5  10.8   11.2   20.6  20.7   31.5   40.49  40.99 41.0   50.5
    assert due == [False, False, False, True, False, False, True, False, False, False, True, False, True]
    live._clock_ns, live.opts.preclose_s = base + int(60.6 * 1e9), None
    assert not live._preclose_due()
