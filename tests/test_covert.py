"""C2 and exfiltration as commodity malware does them (synth/covert.py, issue 10): each family on a
generated site and injected into a real device capture, flagged with its behaviour by the rule
that describes it, at the time its evidence allows, and nothing on the other hosts. Seeds
8001-8099 are used nowhere else (the train and eval sets use 1-3 and 1001-1002)."""

from __future__ import annotations

import csv
import re
from datetime import datetime
from pathlib import Path

import pytest
from conftest import SHARED_PCAPS, needs_shared
from conftest import analyze_events as analyze

from iotwatch.synth import Options, generate, inject
from iotwatch.synth.scenario import EVASIVE, SCENARIOS
from iotwatch.synth.sets import EVASIVE_DURATIONS, families


def bad_host(pcap: Path) -> dict[str, str]:
    with open(pcap.with_name(pcap.stem + ".labels.tsv"), newline="") as f:
        (row,) = [r for r in csv.DictReader(f, delimiter="\t") if r["behaviour"] not in ("normal", "victim")]
    return row


def _number(text: str, pattern: str) -> float:
    m = re.search(pattern, text)
    assert m, (pattern, text)
    return float(m.group(1).replace(",", ""))


# How soon each family's evidence allows the alert, from the behaviour's first packet, read from
# what the generator wrote (its label's evidence):
def _tls_beacon(ev: str) -> float:  # the 5th connection (tls_beacon_conns), each a period apart with ±15 % jitter
    return 4 * 1.15 * _number(ev, r"every ([\d.]+) s") + 3


def _post_beacon(ev: str) -> float:  # 30 connections over at least 180 s (beacon_conns, beacon_min_span_s)
    return max(180.0, 29 * 1.3 * _number(ev, r"every ([\d.]+) s")) + 2 * _number(ev, r"every ([\d.]+) s")


def _dns_tunnel(ev: str) -> float:  # 10 distinct encoded names (tunnel_names): within 10 s, or 20 mean gaps when slow
    return max(10.0, 20 / _number(ev, r"at ([\d.]+)/s"))


def _real(scenario: str, bound):  # type: ignore[no-untyped-def]
    """The bound on a real device, which sends DNS of its own: the side channel reads 12 of a
    device's DNS queries a minute, its own lookups among them, so a tunnel's 10th name may be read
    only in the next minute."""
    return (lambda ev: bound(ev) + 60.0) if scenario == "dnstunnel" else bound


def _slow(ev: str) -> float:  # 3 whole windows of 60 s in a row (surge_sustain), the first one partial
    return 4 * 60.0


FAMILIES = [("tlsbeacon", "c2", "tls_beacon", _tls_beacon), ("postbeacon", "c2", "beacon", _post_beacon),
            ("ratsession", "c2", "dynamic_dns_c2", lambda ev: 10.0), ("dnstunnel", "exfil", "dns_tunnel", _dns_tunnel),
            ("dnsexfil", "exfil", "dns_tunnel", lambda ev: max(10.0, 20 / _number(ev, r"at ([\d.]+)/s"))),
            ("credexfil", "exfil", "credential_upload", lambda ev: 10.0),
            ("chunkupload", "exfil", "upload_surge", lambda ev: 10.0), ("slowexfil", "exfil", "upload_surge", _slow)]


def _fired_after(alert: dict, start: float) -> float:  # type: ignore[type-arg]
    return datetime.strptime(alert["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() - start


def _check(pcap: Path, out: Path, behaviour: str, rule: str, bound) -> dict:  # type: ignore[no-untyped-def,type-arg]
    host = bad_host(pcap)
    assert host["behaviour"] == behaviour
    ev = analyze(pcap, out)
    alerts = [e for e in ev if e["event_type"] == "alert"]
    assert [(a["src_mac"], a["alert"]["signature"]) for a in alerts if a["src_mac"] != host["host_mac"]] == []
    (a,) = [a for a in alerts if a["src_mac"] == host["host_mac"]]
    assert a["alert"]["category"] == behaviour
    assert f"rule:{rule}" in a["evidence"]["detected_by"]
    assert 0 <= _fired_after(a, float(host["first_bad_ts"])) <= bound(host["evidence"]), (a, host)
    return a


def test_every_family_is_a_scenario_and_its_own_family() -> None:
    for name, *_ in FAMILIES:
        assert name in SCENARIOS and name in EVASIVE and name in EVASIVE_DURATIONS
        assert families(Path(f"{name}-1002.pcap")) == (name,)
    assert families(Path("reportc2-3.pcap")) == ("reportc2",) and families(Path("localc2-1.pcap")) == ("localc2",)


@pytest.mark.parametrize(("scenario", "behaviour", "rule", "bound"), FAMILIES)
@pytest.mark.parametrize("seed", [8001, 8002])
def test_a_family_on_a_generated_site(scenario: str, behaviour: str, rule: str, bound, seed: int,  # type: ignore[no-untyped-def]
                                      tmp_path: Path) -> None:
    """Each family's infected camera flagged with its behaviour by its rule, in time; the site's
    other devices (cameras, recorder, printers, PCs, phones, router) quiet."""
    pcap = generate(Options(scenario, seed=seed, duration=EVASIVE_DURATIONS[scenario], uplink_mbps=4),
                    tmp_path / f"{scenario}.pcap").pcap
    a = _check(pcap, tmp_path / "o", behaviour, rule, bound)
    if scenario == "slowexfil":  # slow: under the fast surge's rate, hundreds of times its own normal
        assert a["evidence"]["reference"] == "own quiet windows" and a["evidence"]["x_baseline"] >= 100
        assert a["evidence"]["upload_mbps"] < 5e6 * 8 / 60 / 1e6
    if scenario == "credexfil":
        assert a["evidence"]["ip_lookup"] in bad_host(pcap)["evidence"]




@needs_shared
@pytest.mark.parametrize(("scenario", "behaviour", "rule", "bound"),
                         [f for f in FAMILIES if f[0] not in ("slowexfil", "postbeacon")])
def test_a_family_injected_into_a_real_capture(scenario: str, behaviour: str, rule: str, bound,  # type: ignore[no-untyped-def]
                                               tmp_path: Path) -> None:
    """The same behaviours on the Xiaobai camera of a real idle capture (its own cloud traffic
    around them), 300 s of it."""
    real = SHARED_PCAPS / "nku_lifecycle" / "xiaobai_Y2camera_lifecycle" / "xiaobai_Y2camera_idle_local.pcap"
    seed = 8050 + [f[0] for f in FAMILIES].index(scenario)
    res = inject(Options(scenario, seed=seed, duration=240, uplink_mbps=10), real, "78:df:72:24:69:4d",
                 tmp_path / f"{scenario}.pcap")
    _check(res.pcap, tmp_path / "o", behaviour, rule, _real(scenario, bound))


@needs_shared
@pytest.mark.parametrize(("scenario", "behaviour", "rule", "bound"),
                         [f for f in FAMILIES if f[0] in ("dnstunnel", "ratsession", "credexfil")])
def test_a_family_injected_hours_into_a_sparse_capture(scenario: str, behaviour: str, rule: str, bound,  # type: ignore[no-untyped-def]
                                                       tmp_path: Path) -> None:
    """A smart speaker's 14-hour capture of 32,000 packets (UNSW): read as one batch, whose DNS
    queries the side channel sets aside per window (as in any capture), not 128 for the whole
    batch. The lookups these behaviours make hours in are read and they are flagged."""
    real = SHARED_PCAPS / "unsw_iot_via_networkml" / "Two-IOT161012-node5.pcap"
    seed = 8070 + [f[0] for f in FAMILIES].index(scenario)
    res = inject(Options(scenario, seed=seed, duration=240, uplink_mbps=10), real, "44:65:0d:56:cc:d3",
                 tmp_path / f"{scenario}.pcap")
    _check(res.pcap, tmp_path / "o", behaviour, rule, _real(scenario, bound))


def test_the_side_channel_reads_a_sparse_captures_dns_window_by_window(tmp_path: Path) -> None:
    """An hour of one device asking 10 names a minute (600 queries, under its budget of 12 a
    minute) is one batch of the reader: every query is set aside, not the first 128 of the batch."""
    from iotwatch.capture import CaptureSet
    from iotwatch.pipeline import Pipeline, Settings
    from iotwatch.sidecar import BUDGET, K_DNS, Sidecar
    from iotwatch.synth.sessions import Host, dns_query, udp
    from iotwatch.synth.wire import Frames, ip

    fr = Frames()
    dev = Host("dev", 0x0C8C24000010, ip("192.168.1.10"), "camera")
    res = Host("resolver", 0x50C7BF3E9120, ip("192.168.1.1"), "router")
    t0 = 1_754_279_400.0
    for m in range(60):
        for q in range(10):
            udp(fr, t0 + 60 * m + 5 * q + 1, dev, res, 40000 + q, 53, dns_query(m * 10 + q, f"n{m}-{q}.example.com"))
    fr.write(tmp_path / "sparse.pcap")
    batches = list(CaptureSet([tmp_path / "sparse.pcap"]).batches())
    assert len(batches) == 1 and 10 < BUDGET[K_DNS]
    pipe = Pipeline(Settings(), [], threaded=False)
    sc = Sidecar()
    pipe.feed(batches[0])
    frames = sc.pick(batches[0], pipe._pk.view(len(batches[0])), pipe.flows.packet_info(len(batches[0])))
    assert sum(f.kind == "dns" for f in frames) == 600 > sc.per_batch


def test_synth_help_names_every_scenario() -> None:
    """`iotwatch synth --help` lists every scenario the generator knows (its own list, kept
    without importing the generators)."""
    from iotwatch.cli.synth import SCENARIOS as CLI_SCENARIOS

    assert set(CLI_SCENARIOS) == set(SCENARIOS)
