"""The scan and flood features of the behaviour model (iotwatch/detect/features.py: SCAN_FEATURES,
VIEWS["scan"], VIEWS["flood"]): every variant of a scan reads alike (a vertical scan of one host,
a sweep of a network by ARP or ping, a UDP scan, a recon of two ports by connect() and reset), and
so does every flood of requests to one service or host whatever its protocol (ICMP echo, DNS, slow
HTTP's held sessions); the site's normal devices and real benign devices (a camera whose cloud
fails now and then, a WeMo whose cloud does not answer) stay far below.
Generated with seeds no model was trained on (9001+, 9201+)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_PCAPS, generated_pool, needs_shared

from iotwatch.detect.features import (
    FEATURE_NAMES,
    SCAN_FEATURES,
    SIGNATURE_WEIGHT,
    VIEWS,
    _first_in_window,
    _top_per_window,
)
from iotwatch.learn import loso
from iotwatch.learn.behaviour import teaches
from iotwatch.learn.observe import observe
from iotwatch.vocab import CATEGORIES


def test_first_in_window_counts_each_key_once_where_it_first_appears() -> None:
    w = np.array([0, 0, 1, 1, 1, 3], np.int64)
    key = np.array([7, 8, 7, 9, 9, 8], np.uint64)
    assert _first_in_window(w, key, 4).tolist() == [2.0, 1.0, 0.0, 0.0]
    assert _first_in_window(w[:0], key[:0], 2).tolist() == [0.0, 0.0]


def test_top_per_window_is_the_busiest_key_of_each_window() -> None:
    w = np.array([0, 0, 0, 1, 1, 2], np.int64)
    key = np.array([1, 1, 2, 1, 3, 3], np.uint64)
    weight = np.array([1.0, 1.0, 5.0, 2.0, 1.0, 4.0])
    assert _top_per_window(w, key, weight, 4).tolist() == [5.0, 2.0, 4.0, 0.0]


def test_views_read_the_new_features() -> None:
    assert VIEWS["scan"] == ("scan_targets_per_lookup",)
    assert "top_target_requests" in VIEWS["flood"]
    # what a DNS or slow HTTP flood lacks (a fast upload, a history to compare with) is not in the view
    assert "upload_mbps" not in VIEWS["flood"] and "packets_out_x_own" not in VIEWS["flood"]
    assert all(n in FEATURE_NAMES for n in SCAN_FEATURES)


SCENARIOS = ("portscan", "sweep", "nmapudp", "icmpflood", "dnstorture")


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> loso.Pool:
    return generated_pool(tmp_path_factory.mktemp("scm"), SCENARIOS, duration=180)


def _values(pool: loso.Pool, scenario: str, behaviour: str | None, name: str) -> np.ndarray:
    """The feature in the scenario's windows showing ``behaviour`` (None: its normal windows)."""
    j = FEATURE_NAMES.index(name)
    mine = np.array([Path(m[0]).name.startswith(scenario + "-") for m in pool.data.meta])
    rows = pool.data.Y.sum(axis=1) == 0 if behaviour is None else pool.data.Y[:, CATEGORIES.index(behaviour)] > 0
    return pool.data.X[mine & rows, j]


def test_every_scan_reads_alike(pool: loso.Pool) -> None:
    """A vertical scan of one host (TCP or UDP) and a sweep of a network each put tens to
    thousands of new failed targets in a window; the normal devices of the same sites, a few."""
    normal = np.concatenate([_values(pool, sc, None, "scan_targets_per_lookup") for sc in SCENARIOS])
    assert len(normal) and normal.max() <= 5
    for sc in ("portscan", "sweep", "nmapudp"):
        bad = _values(pool, sc, "scan", "scan_targets_per_lookup")
        assert bad.max() >= 20, sc
    # the sweep shows in both halves: ARP requests (ARP mode) or failed echo/SYN probes
    sweep = (_values(pool, "sweep", "scan", "novel_arp_targets")
             + _values(pool, "sweep", "scan", "novel_failed_targets"))
    assert sweep.max() >= 20
    # a vertical scan's targets are the ports of one host: none of them is a new ARP target
    assert _values(pool, "portscan", "scan", "novel_failed_targets").max() >= 20


def test_floods_of_requests_to_one_service_whatever_the_protocol(pool: loso.Pool) -> None:
    """An ICMP echo flood (one flow of thousands of requests) and DNS water torture (thousands
    of queries to one resolver's port 53) both read as thousands of requests to one service."""
    normal = np.concatenate([_values(pool, sc, None, "top_target_requests") for sc in SCENARIOS])
    assert len(normal) and normal.max() < 150
    for sc in ("icmpflood", "dnstorture"):
        assert _values(pool, sc, "flood", "top_target_requests").max() >= 1000, sc
        # and as thousands of requests to one host
        assert _values(pool, sc, "flood", "top_host_requests").max() >= 1000, sc
    assert np.concatenate([_values(pool, sc, None, "top_host_requests") for sc in SCENARIOS]).max() < 150
    # a scan sends one request to each of many services: never many to one
    assert _values(pool, "portscan", "scan", "top_target_requests").max() < 150


def test_the_flood_forest_learns_not_flood_from_windows_of_no_behaviour(pool: loso.Pool) -> None:
    """A vertical scan's thousands of probes to one host are requests to one host too: the flood
    forest does not learn "not a flood" from them, only from windows that show no behaviour."""
    Y = pool.data.Y
    keep = teaches(pool.data, "flood")
    scan_only = (Y[:, CATEGORIES.index("scan")] > 0) & (Y[:, CATEGORIES.index("flood")] == 0)
    assert scan_only.any() and not keep[scan_only].any()
    assert keep[Y.sum(axis=1) == 0].all()
    flood = Y[:, CATEGORIES.index("flood")] > 0
    assert keep[flood].sum() >= 0.5 * flood.sum()  # (only those with no request, packet or answer are left out)


@needs_shared
@pytest.mark.parametrize("rel", ["nku_lifecycle/xiaobai_Y2camera_lifecycle/xiaobai_Y2camera_idle_remote.pcap",
                                 "iot_sentinel/WeMoLink/Setup-A-9-STA.pcap"])
def test_benign_real_devices_stay_low(rel: str) -> None:
    """A real camera whose connections to its clouds fail now and then, and a WeMo whose cloud
    does not answer: at most a few new failed targets per name looked up, and tens of requests
    to their busiest service, never a scan's or a flood's hundreds."""
    obs = observe(SHARED_PCAPS / rel)
    X = np.vstack([X for _c, X in obs.windows.values() if len(X)])
    assert X[:, FEATURE_NAMES.index("scan_targets_per_lookup")].max() <= 5
    assert X[:, FEATURE_NAMES.index("top_target_requests")].max() < 150
    assert X[:, FEATURE_NAMES.index("top_host_requests")].max() < 150
    assert X[:, FEATURE_NAMES.index("signature_targets")].max() == 0
    assert X[:, FEATURE_NAMES.index("open_sessions_one_service")].max() < 50
    assert X[:, FEATURE_NAMES.index("novel_failed_targets")].max() >= 1  # (their failures are seen)


@pytest.fixture(scope="module")
def slow_pool(tmp_path_factory: pytest.TempPathFactory) -> loso.Pool:
    return generated_pool(tmp_path_factory.mktemp("slow"), ("slowhttp", "slowhttp"), duration=240, first_seed=9201)


def test_slow_http_holds_hundreds_of_sessions_to_one_service(slow_pool: loso.Pool) -> None:
    """A slow HTTP flood (slowloris or slow POST) holds hundreds of sessions open to one web
    server, each trickling a few bytes: in the windows after its first, the sessions open to that
    service outnumber the ones begun there, and ``top_target_requests`` reads them; the site's
    normal devices (a recorder pulling one stream per camera, browsers, hubs) hold a few."""
    held = _values(slow_pool, "slowhttp", "flood", "open_sessions_one_service")
    begun = _values(slow_pool, "slowhttp", "flood", "top_host_requests")
    assert held.max() >= 300
    assert (held > begun).any()  # sessions held from an earlier window count too
    assert (_values(slow_pool, "slowhttp", "flood", "top_target_requests") >= held).all()
    normal = _values(slow_pool, "slowhttp", None, "open_sessions_one_service")
    assert len(normal) and normal.max() < 50


@needs_shared
@pytest.mark.parametrize("name", ["nmap_80_vanilla.pcap", "nmap_80_w_service_detection.pcap"])
def test_a_connect_and_reset_probe_reads_as_a_scan(name: str) -> None:
    """nmap -p 80 (ESnet): connections to ports 80 and 443 of one host, reset by the client right
    after the handshake (empty, or with a bare RST to the SYN-ACK). Two failed targets are what a
    normal device reaches (the benign cameras above: up to 4 a minute); a session opened and
    reset empty is what none does, and in a window whose probes reached two targets or more it
    weighs SIGNATURE_WEIGHT targets."""
    obs = observe(SHARED_PCAPS / "esnet_scans" / name)
    X = np.vstack([X for _c, X in obs.windows.values() if len(X)])
    assert X[:, FEATURE_NAMES.index("probe_targets")].max() == 2  # 80 and 443 of one host
    assert X[:, FEATURE_NAMES.index("signature_targets")].max() >= 1
    assert X[:, FEATURE_NAMES.index("scan_targets_per_lookup")].max() >= 2 + SIGNATURE_WEIGHT
