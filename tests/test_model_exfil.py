"""Exfiltration's features whatever its channel (iotwatch/detect/features.py: EXFIL_FEATURES,
covert_x_quiet, data_out_x_quiet, VIEWS["exfil"]): data carried in DNS query names and in ICMP echo
payloads, uploads to hosts new for a device, data handed to a mail or file server the device had
no business with (send_service_bytes, send_x_quiet), uploads against the device's type
(upload_x_type), and the one feature the exfil forest reads. Measured on generated captures of
seeds no model was trained on (9001+, 9201+) and on real captures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_PCAPS, generated_pool, needs_shared

from iotwatch.detect.evidence import A_FTP, A_SMTP, _app_of
from iotwatch.detect.features import (
    COVERT_FLOOR,
    FEATURE_NAMES,
    FEATURES,
    SEND_FLOOR,
    SPREAD_MIN_S,
    VIEWS,
    _name_data,
    _spread,
    derived_features,
    device_features,
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
    # dnscat2 straight to its own server: no registered domain (a hex label is no top-level domain)
    hexdata = "f97c01f5006c798b8d6e990002e3772bc8"
    assert _name_data(f"dnscat.{hexdata}") == len("dnscat") + len(hexdata)
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


def test_a_tunnel_under_way_never_becomes_its_own_reference() -> None:
    """A capture that starts as a tunnel begins: its first minute carries 862 B of names (36 times
    the floor), the next 5,400 B. The first minute departs too far to be the device's quiet
    reference (the upload rule's surge_x), so the second is judged against the floor, not against
    the tunnel's own start; an ordinary minute does become the reference."""
    X = np.zeros((3, len(FEATURES)))
    c = FEATURE_NAMES.index("covert_bytes")
    X[:, c] = [862.0, 5400.0, 0.0]
    derived_features(X)
    assert X[:, FEATURE_NAMES.index("covert_x_quiet")].tolist() == [862.0 / COVERT_FLOOR, 5400.0 / COVERT_FLOOR, 0.0]
    X[:, c] = [100.0, 5400.0, 0.0]  # 4 times the floor: a reference
    derived_features(X)
    assert X[:, FEATURE_NAMES.index("covert_x_quiet")].tolist() == [100.0 / COVERT_FLOOR, 54.0, 0.0]


def test_mail_and_file_servers_known_by_their_greeting() -> None:
    """A mail server's greeting or a client's EHLO names SMTP on any port; an FTP server's
    greeting stays FTP, and a web request is neither."""
    from scapy.layers.inet import IP, TCP
    from scapy.packet import Raw

    def seg(payload: bytes, sport: int, dport: int) -> bytes:
        return bytes(IP(src="10.0.0.2", dst="198.51.100.7") / TCP(sport=sport, dport=dport, flags="PA") / Raw(payload))

    assert _app_of(seg(b"220 mail.example.net ESMTP Exim 4.95 ready\r\n", 2525, 40000), 4, 1, 40000) == A_SMTP
    assert _app_of(seg(b"220-smtp.example.org Microsoft ESMTP MAIL Service\r\n", 587, 40000), 4, 1, 40000) == A_SMTP
    assert _app_of(seg(b"EHLO USER-PC\r\n", 40000, 8025), 4, 0, 8025) == A_SMTP
    assert _app_of(seg(b"220 (vsFTPd 3.0.3)\r\n", 21, 40000), 4, 1, 40000) == A_FTP
    assert _app_of(seg(b"220 mail.example.net ESMTP\r\n", 40000, 2525), 4, 0, 2525) == 0  # a client does not greet
    assert _app_of(seg(b"GET /smtp HTTP/1.1\r\n", 40000, 80), 4, 0, 80) not in (A_SMTP, A_FTP)


def test_send_bytes_against_a_floor_of_one_byte_from_the_first_window() -> None:
    """send_x_quiet needs no history (a session the device had no business with carries nothing
    in normal traffic); data_out_x_quiet takes it when it departs most."""
    X = np.zeros((4, len(FEATURES)))
    X[:, FEATURE_NAMES.index("send_service_bytes")] = [900.0, 0.0, 0.0, 5000.0]
    derived_features(X)
    sq = X[:, FEATURE_NAMES.index("send_x_quiet")]
    assert sq.tolist() == [900.0 / SEND_FLOOR, 0.0, 0.0, 5000.0 / SEND_FLOOR]
    assert np.array_equal(X[:, FEATURE_NAMES.index("data_out_x_quiet")], sq)


def test_upload_against_the_type_from_the_first_window() -> None:
    """upload_x_type: a plug's upload over what plugs upload (the type table), from its first window;
    nothing for a camera (no type norm: its video) or an unknown type."""
    from iotwatch.detect.type_upload import reference

    cols = {"window_start": np.array([0.0, 60.0]), "upload_bytes": np.array([5e6, 1e3])}
    cols.update({n: np.zeros(2) for n in ("packets_out", "packets_in", "bytes_out", "bytes_in", "download_bytes",
                                          "dst_ips", "dst_ports", "new_flows", "syn_flows", "syn_answered",
                                          "syn_rejected", "syn_unanswered", "failed_handshake_ratio", "rst_in",
                                          "auth_attempts", "dns_queries", "upload_share", "mirai_syns")})
    ref = reference("plug", 60.0)
    assert ref is not None and ref > 0
    x = device_features(cols, None, 60.0, None, "plug")
    ut = x[:, FEATURE_NAMES.index("upload_x_type")]
    assert np.allclose(ut, [5e6 / ref, 1e3 / ref])
    assert x[0, FEATURE_NAMES.index("data_out_x_quiet")] == ut[0]  # its own history is too short
    for kind in ("camera", None, "no-such-type"):
        assert device_features(cols, None, 60.0, None, kind)[:, FEATURE_NAMES.index("upload_x_type")].max() == 0


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


@pytest.fixture(scope="module")
def cred_pool(tmp_path_factory: pytest.TempPathFactory) -> loso.Pool:
    """Three credential stealers (SMTP or FTP, whichever their seed picks) and a site of cameras,
    a recorder and hubs (seeds 9201+)."""
    return generated_pool(tmp_path_factory.mktemp("cred"), ("credexfil", "credexfil", "credexfil", "site"),
                          duration=300, first_seed=9201)


def test_stealers_hand_data_to_a_server_they_had_no_business_with(cred_pool: loso.Pool) -> None:
    """Each stealer's windows carry send_service_bytes of a kB or more (what it took, after asking
    its public address), and data_out_x_quiet departs on it beyond every normal window of the site."""
    fam_of = np.array([Path(m[0]).name.split("-")[0] for m in cred_pool.data.meta])
    normal = cred_pool.data.Y.sum(axis=1) == 0
    bad = cred_pool.data.Y[:, EXFIL] > 0
    assert _x(cred_pool, normal, "send_service_bytes").max() == 0
    top = max(_x(cred_pool, normal, "data_out_x_quiet").max(), 1.0)
    caps = sorted({m[0] for m, b in zip(cred_pool.data.meta, bad, strict=True) if b})
    assert len(caps) == 3
    for cap in caps:
        mine = bad & np.array([m[0] == cap for m in cred_pool.data.meta])
        assert _x(cred_pool, mine, "send_service_bytes").max() >= 1000, cap
        assert _x(cred_pool, mine, "data_out_x_quiet").max() >= 10 * top, cap
    assert (fam_of[bad] == "credexfil").all()


@needs_shared
def test_real_mail_and_ftp_clients_are_no_stealers() -> None:
    """Sanders' PC mailing an attachment and nDPI's FTP session send data to a mail or file server
    with no what-is-my-IP lookup before, from their start: send_service_bytes stays 0. The three
    AgentTesla captures ask ipify or ip-api, then send a kB or less by SMTP or FTP: it counts."""
    from iotwatch.learn.observe import observe

    for rel in ("sanders_packets/mail_sender_attachment.pcapng", "ndpi_protocols/ftp.pcap"):
        obs = observe(SHARED_PCAPS / rel)
        assert obs.windows, rel
        for _dev, (_cols, X) in obs.windows.items():
            assert not len(X) or X[:, FEATURE_NAMES.index("send_service_bytes")].max() == 0, rel
    caps = sorted((SHARED_PCAPS / "corelight_agenttesla").glob("*.pcap"))
    assert len(caps) == 3
    for cap in caps:
        obs = observe(cap)
        sent = max(float(X[:, FEATURE_NAMES.index("send_service_bytes")].max()) for _c, X in obs.windows.values() if len(X))
        assert 500 <= sent <= 5000, cap
