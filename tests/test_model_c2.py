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
from iotwatch.detect.features import (
    C2_FEATURES,
    FEATURE_NAMES,
    FEATURES,
    TELLING_TRAITS,
    VIEWS,
    _channel_beats,
)
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
    assert all(n in names for n in C2_FEATURES)
    # one feature: the beats of a suspect channel (a monotone forest over one feature per trait
    # capped a family strong in one trait only near 0.5); not the beats of any session
    assert VIEWS["c2"] == ("c2_beats_suspect",)
    assert FEATURE_NAMES.index("c2_beats") > FEATURE_NAMES.index("echo_bytes_per_packet")


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


def test_a_session_opened_by_a_hello_then_on_its_beat_holds_it() -> None:
    """A bot's link: its hello, then two heartbeats 30 s apart (three exchanges, the last two on
    the beat): the opening exchange starts the clock and is not held against the beat, so the
    session holds two beats by its end (it held none when the hello counted as off the beat: a
    Mirai controller link injected into a short real capture read as no channel at all)."""
    link = _events([0.0], [63.0], hb_pushes=[3], hb_beats=[2], hb_beat_s=[31.5])
    assert _beats(link, np.zeros(1, np.int64), 2).tolist() == [1.0, 2.0]
    # a session whose exchanges are mostly off any beat still holds none
    chatty = _events([0.0], [63.0], hb_pushes=[8], hb_beats=[2], hb_beat_s=[31.5], hb_cv=[2.0], hb_iv=[8.0])
    assert _beats(chatty, np.zeros(1, np.int64), 2).max() == 0


def _suspect(traits: dict[str, bool], beats: float) -> float:
    """c2_beats_suspect of one window holding one channel with ``traits`` and ``beats``."""
    from iotwatch.detect import features as F

    n = 1
    X = np.zeros((n, len(FEATURES)))
    col = {c: FEATURE_NAMES.index(c) for c in C2_FEATURES}
    tr = np.array([[traits.get(t, False) for t in F._TRAITS]])
    cw, ww, cb = np.zeros(1, np.int64), np.zeros(1, np.int64), np.array([beats])
    F._channel_suspicion(X, col, tr, cw, ww, cb)
    return float(X[0, col["c2_beats_suspect"]])


def test_a_suspect_channel_has_two_traits_or_a_telling_one_and_a_beat() -> None:
    """The c2 view: a channel with one trait a device's link to its own cloud may have (an odd
    port, a destination new since start-up, no lookup, a silent peer) is not suspect; two are, and
    so is one trait that says what the destination is (a dynamic-DNS name, a host that served the
    device a program, a bot's hello), once the channel holds two beats (one is only a repeat)."""
    for weak in ("c2_beats_odd_port", "c2_beats_new_dest", "c2_beats_unnamed", "c2_beats_unanswered"):
        assert _suspect({weak: True}, 20) == 0, weak
    assert _suspect({"c2_beats_odd_port": True, "c2_beats_unnamed": True}, 20) == 20
    for telling in TELLING_TRAITS:
        assert _suspect({telling: True}, 20) == 20, telling
        assert _suspect({telling: True}, 1) == 0, telling
    assert _suspect({}, 500) == 0  # a cloud heartbeat held for hours


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> loso.Pool:
    d = tmp_path_factory.mktemp("c2m")
    made = [generate(Options(sc, seed=seed, duration=300), d / f"{sc}-{seed}.pcap").labels_file
            for sc, seed in (("tlsbeacon", 9001), ("postbeacon", 9002), ("reportc2", 9003), ("deadc2", 9004),
                             ("localc2", 9205))]
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
        # the view: every controller's link is suspect, the recorder's heartbeat never
        bad, ok = _most(pool, sc, "c2_beats_suspect")
        assert bad >= 5 and ok == 0, sc


def test_a_controller_on_the_lan_is_suspect_by_the_program_it_served(pool: loso.Pool) -> None:
    """A controller on the site's own network (seed 9205): the camera fetched a program from it,
    then calls back on a beat. Its one trait is that served program (no name is looked up for a
    LAN host, its port may be a web port, and it was reached within the device's first minutes),
    and it is enough; the site's own LAN traffic has no such channel."""
    bad, ok = _most(pool, "localc2", "c2_beats_program_host")
    assert bad >= 3 and ok == 0
    bad, ok = _most(pool, "localc2", "c2_beats_suspect")
    assert bad >= 3 and ok == 0


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
    assert X[:, col["c2_beats_suspect"]].max() == 0  # the view: nothing


@needs_shared
def test_a_real_plugs_repeated_connections_are_not_a_beat() -> None:
    """nku's Xiaodu plug, idle, switched off: twice it connects to a new web server that does not
    answer, two seconds apart (two traits: new since start-up, silent peer), and it checks in with
    its cloud every few minutes. A repeat is no beat: nothing suspect."""
    obs = observe(SHARED_PCAPS / "nku_lifecycle" / "xiaodu_plug_lifecycle" / "xiaodu_plug_idle_off_local.pcap")
    X = np.vstack([x for _c, x in obs.windows.values() if len(x)])
    assert X[:, FEATURE_NAMES.index("c2_beats_unanswered")].max() >= 1
    assert X[:, FEATURE_NAMES.index("c2_beats_suspect")].max() == 0


def test_which_windows_teach_each_forest() -> None:
    """teaches(): a window labelled with a behaviour but without its view's evidence (a
    controller's link idle between two heartbeats) teaches no forest of it; a window of another
    behaviour is a negative of the c2 forest, and is left out of the flood forest's
    (QUIET_NEGATIVES: a C2 link's held sessions taught the flood forest that a slow HTTP flood's
    held sessions are not a flood)."""
    from iotwatch.learn.behaviour import QUIET_NEGATIVES, Dataset, teaches

    assert QUIET_NEGATIVES == ("flood",)
    X = np.zeros((4, len(FEATURES)))
    X[0, FEATURE_NAMES.index("c2_beats_suspect")] = 12.0  # a controller's link
    X[0, FEATURE_NAMES.index("packets_out")] = 30.0  # (its packets)
    X[2, FEATURE_NAMES.index("packets_out")] = 50_000.0  # a flood
    Y = np.zeros((4, len(CATEGORIES)), np.int8)
    Y[0:2, CATEGORIES.index("c2")] = 1  # window 1: the link idle between two heartbeats
    Y[2, CATEGORIES.index("flood")] = 1
    data = Dataset(X, np.array(["c2", "c2", "flood", "normal"], dtype=object), np.array(list("abcd"), dtype=object),
                   [("x", "d", float(k)) for k in range(4)], Y)
    assert teaches(data, "c2").tolist() == [True, False, True, True]
    assert teaches(data, "flood").tolist() == [False, False, True, True]
