"""The model's view of command and control (iotwatch/detect/features.py: C2_FEATURES,
_c2_features, VIEWS["c2"]): per channel (device, destination, port) the beats held so far,
across windows, and the traits that tell a controller's link from a device's link to its own
cloud. Measured on arrays whose answer is known, on generated captures of seeds no model was
trained on (9001+), and on a real benign capture whose devices keep their clouds on a beat."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_PCAPS, needs_shared

from iotwatch.detect.evidence import EVENT_DTYPE, K_EXT
from iotwatch.detect.features import C2_FEATURES, FEATURE_NAMES, FEATURES, VIEWS, _channel_beats
from iotwatch.learn import loso
from iotwatch.learn.observe import observe
from iotwatch.synth import Options, generate
from iotwatch.vocab import CATEGORIES


def _events(ts: list[float], end: list[float] | None = None, **cols: list[float]) -> np.ndarray:
    ev = np.zeros(len(ts), EVENT_DTYPE)
    ev["ts"] = ts
    ev["end"] = end if end is not None else [t + 0.3 for t in ts]
    ev["proto"] = 6
    ev["kind"] = K_EXT
    for k, v in cols.items():
        ev[k] = v
    return ev


def _beats(ev: np.ndarray, ch: np.ndarray, n: int) -> np.ndarray:
    """The most beats of any channel per window (60 s windows from 0)."""
    starts = np.arange(n) * 60.0
    w = np.clip(np.searchsorted(starts, ev["ts"], side="right") - 1, 0, n - 1).astype(np.int64)
    _cw, ww, cb, cp, _own = _channel_beats(ev, ch, w, starts, 60.0)
    out = np.zeros(n)
    np.maximum.at(out, ww, cb)
    assert (cp > 0).all()
    return out


def test_the_features_are_in_the_schema_and_the_view() -> None:
    names = [n for n, _t in FEATURES]
    assert all(n in names for n in C2_FEATURES) and set(C2_FEATURES) <= set(VIEWS["c2"])
    # the c2 forest no longer reads the beats of any session whatever it is
    assert "held_beats" not in VIEWS["c2"] and FEATURE_NAMES.index("c2_beats") > FEATURE_NAMES.index("echo_bytes_per_packet")


def test_a_beacon_keeps_counting_across_windows_and_browsing_does_not() -> None:
    """A check-in every 20 s ± 15 % keeps its beat: its count grows window after window (a window
    late in the beacon says more than the first); connections at random intervals never hold one."""
    rng = np.random.default_rng(9001)
    beacon = np.cumsum(20.0 * (1 + rng.uniform(-0.15, 0.15, 15)))
    b = _beats(_events(list(beacon)), np.zeros(15, np.int64), 6)
    assert (np.diff(b[b > 0]) > 0).all() and b.max() == 14  # every interval after the first on the beat
    browse = np.sort(rng.uniform(0, 300, 15) ** 2 / 300)
    gaps = np.diff(browse)
    assert gaps.std() > 0.6 * gaps.mean()  # (irregular)
    assert _beats(_events(list(browse)), np.zeros(15, np.int64), 6).max() <= 3


def test_held_sessions_add_up_over_reconnects_but_not_when_held_at_once() -> None:
    """A session with 10 exchanges on a 12 s beat accrues them window by window; a trojan that
    reconnects keeps its count; hundreds of sessions held at once to one server (a slow HTTP
    flood) count as one."""
    one = _events([0.0], [120.0], hb_pushes=[10], hb_beats=[10], hb_beat_s=[12.0])
    assert _beats(one, np.zeros(1, np.int64), 3).tolist() == [5.0, 10.0, 10.0]
    two = _events([0.0, 130.0], [120.0, 250.0], hb_pushes=[10, 10], hb_beats=[10, 10], hb_beat_s=[12.0, 12.0])
    assert _beats(two, np.zeros(2, np.int64), 5)[2:].max() == 20.0
    par = _events([0.1 * k for k in range(200)], [120.0] * 200, hb_pushes=[10] * 200, hb_beats=[10] * 200,
                  hb_beat_s=[12.0] * 200)
    assert _beats(par, np.zeros(200, np.int64), 3).max() == 10.0


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> loso.Pool:
    d = tmp_path_factory.mktemp("c2m")
    made = [generate(Options(sc, seed=9001 + k, duration=300), d / f"{sc}-{9001 + k}.pcap").labels_file
            for k, sc in enumerate(("tlsbeacon", "postbeacon", "reportc2", "deadc2"))]
    return loso.build_pool(made, n_jobs=2)


def _most(pool: loso.Pool, scenario: str, name: str) -> tuple[float, float]:
    """The feature's highest value in the scenario's c2 windows and in its normal windows."""
    j = FEATURE_NAMES.index(name)
    mine = np.array([Path(m[0]).name.startswith(scenario) for m in pool.data.meta])
    shows = mine & (pool.data.Y[:, CATEGORIES.index("c2")] > 0)
    normal = mine & (pool.data.Y.sum(axis=1) == 0)
    assert shows.any() and normal.any()
    return float(pool.data.X[shows, j].max()), float(pool.data.X[normal, j].max())


def test_each_controller_shows_its_traits_and_the_site_does_not(pool: loso.Pool) -> None:
    # an HTTPS beacon to a dynamic-DNS name: a fast beat, the name's zone
    bad, ok = _most(pool, "tlsbeacon", "c2_beats_dynamic_dns")
    assert bad >= 10 and ok == 0
    # an HTTP POST check-in to an address in the binary, on an odd port: no lookup, odd port
    for name in ("c2_beats_unnamed", "c2_beats_odd_port"):
        bad, ok = _most(pool, "postbeacon", name)
        assert bad >= 10 and ok == 0, name
    # a report channel: one session, status pushed on a beat, the controller never answers
    bad, ok = _most(pool, "reportc2", "c2_beats_unanswered")
    assert bad >= 5 and ok == 0
    # a dead controller: failed connections like clockwork, to a raw address
    bad, ok = _most(pool, "deadc2", "c2_beats_unanswered")
    assert bad >= 5 and ok == 0
    # the site's recorder keeps its cloud heartbeat on a beat too (the confounder): beats, but at
    # most one trait; the controllers without a name have two or more (the beacon to a
    # dynamic-DNS name has that one)
    for sc in ("tlsbeacon", "postbeacon", "reportc2", "deadc2"):
        bad, ok = _most(pool, sc, "c2_beat_traits")
        assert bad >= (1 if sc == "tlsbeacon" else 2) and ok <= 1, sc
        bad, ok = _most(pool, sc, "c2_beats")
        assert bad >= 5 and ok >= 5, sc


@needs_shared
def test_a_real_iot_site_beats_to_its_clouds_without_a_controllers_traits() -> None:
    """UNSW's IoT lab over hours: devices hold their cloud sessions and check in on a beat (many
    beats), but none to a dynamic-DNS name, nor to an address it never looked up on an odd port
    and whose peer never answers."""
    obs = observe(SHARED_PCAPS / "unsw_iot_via_networkml" / "Two-IOT161012-node2.pcap")
    X = np.vstack([x for _c, x in obs.windows.values() if len(x)])
    col = {n: FEATURE_NAMES.index(n) for n in C2_FEATURES}
    assert X[:, col["c2_beats"]].max() >= 100  # cloud heartbeats, for hours
    assert X[:, col["c2_beats_dynamic_dns"]].max() == 0
    assert X[:, col["c2_beats_program_host"]].max() == 0
    assert X[:, col["c2_beat_traits"]].max() <= 2
