"""Exfiltration's features whatever its channel (iotwatch/detect/features.py: EXFIL_FEATURES,
covert_x_quiet, data_out_x_quiet, VIEWS["exfil"]): data carried in DNS query names and in ICMP echo
payloads, uploads to hosts new for a device, and the one feature the exfil forest reads. Measured
on generated captures of seeds no model was trained on (9001+) and on real benign captures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_PCAPS, generated_pool, needs_shared

from iotwatch.detect.features import (
    COVERT_FLOOR,
    FEATURE_NAMES,
    FEATURES,
    SPREAD_MIN_S,
    VIEWS,
    _name_data,
    _spread,
    derived_features,
)
from iotwatch.learn import loso
from iotwatch.learn.behaviour import fit_forest, forest_proba
from iotwatch.vocab import CATEGORIES

EXFIL = CATEGORIES.index("exfil")


def test_names_that_carry_data() -> None:
    """The labels below the registered domain count when one of them is long enough to hold
    encoded data; a cloud's long host name or a CDN's short hashes carry none."""
    enc = "mfrggzdfmztwq2lknnwg23tpobyxe43uov3ho6dzpi2ggzdfmztwq2lk"  # 56 base32 characters
    assert _name_data(f"{enc}.t1.tunnel99.xyz.") == len(enc) + 2
    assert _name_data(f"3.{enc[:40]}.a1b2c3.exfil-ab12.com") == 1 + 40 + 6
    for name in ("a3k7odshaiipe8-ats.iot.eu-west-1.amazonaws.com", "e1234.dscb.akamaiedge.net",
                 "r4---sn-4g5e6nsz.googlevideo.com", "time.google.com", "example.com"):
        assert _name_data(name) == 0


def test_a_flow_counts_in_each_window_it_spans() -> None:
    """Spread over its windows in proportion to the time it spent in each; nothing goes to a
    window it overlaps by less than SPREAD_MIN_S (its last answer, just past the window's start)."""
    starts = np.array([0.0, 60.0, 120.0, 180.0])
    out = np.zeros(4)
    _spread(out, starts, 60.0, np.array([30.0, 125.0, 100.0]), np.array([150.0, 130.0, 180.0 + SPREAD_MIN_S / 2]),
            np.array([1200.0, 50.0, 800.0]))
    assert np.allclose(out, [300.0, 600.0 + 200.0, 300.0 + 50.0 + 600.0, 0.0])


def test_covert_bytes_against_the_quiet_part_from_the_first_window() -> None:
    """covert_x_quiet needs no history (such channels carry nothing in normal traffic: the floor
    is the reference); data_out_x_quiet takes the channel that departs most."""
    X = np.zeros((5, len(FEATURES)))
    c, u = FEATURE_NAMES.index("covert_bytes"), FEATURE_NAMES.index("upload_bytes")
    X[:, c] = [20_000.0, 0.0, 0.0, 0.0, 40_000.0]
    X[:, u] = [500.0, 500.0, 500.0, 800_000.0, 500.0]
    derived_features(X)
    cq = X[:, FEATURE_NAMES.index("covert_x_quiet")]
    assert cq[0] == 20_000.0 / COVERT_FLOOR and cq[4] == 40_000.0 / COVERT_FLOOR
    uq = X[:, FEATURE_NAMES.index("upload_x_quiet")]
    assert uq[:2].tolist() == [0.0, 0.0] and uq[3] == 800.0
    assert np.array_equal(X[:, FEATURE_NAMES.index("data_out_x_quiet")], np.maximum(cq, uq))


def test_the_exfil_view_is_one_feature_of_every_channel() -> None:
    assert VIEWS["exfil"] == ("data_out_x_quiet",)


FAMILIES = ("dnstunnel", "dnsexfil", "icmptunnel", "slowexfil", "chunkupload")


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> loso.Pool:
    return generated_pool(tmp_path_factory.mktemp("exfil"), FAMILIES, duration=240)


def _rows(pool: loso.Pool, family: str) -> tuple[np.ndarray, np.ndarray]:
    """The windows of the family's capture showing exfil, and its normal windows."""
    cap = np.array([Path(m[0]).name.split("-")[0] == family for m in pool.data.meta])
    shows = pool.data.Y[:, EXFIL] > 0
    return cap & shows, cap & (pool.data.Y.sum(axis=1) == 0)


def _x(pool: loso.Pool, rows: np.ndarray, name: str) -> np.ndarray:
    return pool.data.X[rows, FEATURE_NAMES.index(name)]


def test_each_channel_shows_its_data(pool: loso.Pool) -> None:
    """DNS tunnels and DNS exfiltration carry kilobytes in names, the ICMP tunnel hundreds of kB in
    echo payloads; the site's normal devices (cameras streaming to their cloud, a recorder, hubs)
    carry none in either; the uploads go to a host the device had never reached."""
    normal = pool.data.Y.sum(axis=1) == 0
    assert _x(pool, normal, "covert_bytes").max() == 0
    for fam in ("dnstunnel", "dnsexfil"):
        bad, _ok = _rows(pool, fam)
        assert _x(pool, bad, "dns_data_bytes").max() >= 2000, fam
        assert _x(pool, bad, "echo_data_bytes").max() == 0
    bad, _ok = _rows(pool, "icmptunnel")
    assert _x(pool, bad, "echo_data_bytes").max() >= 100_000
    assert _x(pool, bad, "dns_data_bytes").max() == 0
    for fam in ("slowexfil", "chunkupload"):
        bad, _ok = _rows(pool, fam)
        assert _x(pool, bad, "new_host_upload").max() >= 100_000, fam
        assert _x(pool, bad, "new_host_out_in").max() >= 100, fam


def test_every_channel_departs_on_the_one_feature(pool: loso.Pool) -> None:
    """data_out_x_quiet: each family's bad windows reach twice what any normal window of the
    five sites shows (their cameras' video, their recorders' uploads)."""
    normal = pool.data.Y.sum(axis=1) == 0
    top = _x(pool, normal, "data_out_x_quiet").max()
    for fam in FAMILIES:
        bad, _ok = _rows(pool, fam)
        assert _x(pool, bad, "data_out_x_quiet").max() >= 2 * max(top, 1.0), fam


def test_a_forest_without_a_channel_catches_it(pool: loso.Pool) -> None:
    """The forest of the view, fitted without one family, scores that family's bad windows above
    every normal window of the others: the DNS tunnel learned from the ICMP tunnel and the
    uploads, and so on."""
    fam_of = np.array([Path(m[0]).name.split("-")[0] for m in pool.data.meta])
    for fam in FAMILIES:
        train = pool.data.take(fam_of != fam)
        est = fit_forest(train, ["exfil"], 0, 1)
        bad, ok = _rows(pool, fam)
        others = (fam_of != fam) & (pool.data.Y.sum(axis=1) == 0)
        p_bad = forest_proba(est, pool.data.X[bad], ["exfil"])[:, 0]
        p_ok = forest_proba(est, pool.data.X[others | ok], ["exfil"])[:, 0]
        assert p_bad.max() > p_ok.max(), fam


@needs_shared
def test_real_devices_carry_no_data_in_names_or_pings() -> None:
    """IoT Sentinel's D-Link hub, sensor, switch and camera resolve their clouds' names (the
    longest of the real benign captures' names) and upload: no window of theirs carries data in
    DNS names or echo payloads worth ten encoded labels (COVERT_FLOOR)."""
    from iotwatch.learn.observe import observe

    caps = sorted((SHARED_PCAPS / "iot_sentinel").glob("D-Link*/Setup-A-5-STA.pcap"))
    assert len(caps) >= 3
    seen = 0
    for cap in caps:
        obs = observe(cap)
        for _dev, (_cols, X) in obs.windows.items():
            if not len(X):
                continue
            seen += 1
            assert X[:, FEATURE_NAMES.index("covert_x_quiet")].max() < 10, cap
            assert X[:, FEATURE_NAMES.index("echo_data_bytes")].max() == 0, cap
    assert seen >= 3
