"""Readers, decoders and flows on the project's own generated captures, against their truth."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from captures import (
    LINKTYPE_ETHERNET,
    Capture,
    ConvCounts,
    ConvKey,
    DamagedCapture,
    all_captures,
    all_damaged,
    conv_key,
)

import iotwatch
from iotwatch.errors import CaptureError

CAPS_DIR: Path | None = None


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Capture]:
    d = tmp_path_factory.mktemp("caps")
    return {c.name: c for c in all_captures(d)}


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DamagedCapture]:
    d = tmp_path_factory.mktemp("damaged")
    return {c.name: c for c in all_damaged(d)}


def conversations(a: iotwatch.Analysis) -> dict[ConvKey, tuple[tuple[int, int, int, int], object]]:
    """Per sorted 5-tuple: (packets/bytes from the lower endpoint, then from the higher), initiator."""
    counts: dict[ConvKey, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    initiator: dict[ConvKey, object] = {}
    for r in sorted(a.flows.to_pylist(), key=lambda r: r["start"]):
        if r["proto"] not in (6, 17):
            continue
        src, dst = (r["src_ip"], r["src_port"]), (r["dest_ip"], r["dest_port"])
        key = conv_key(r["proto"], src, dst)
        c = counts[key]
        mine = (r["pkts_toserver"], r["bytes_toserver"], r["pkts_toclient"], r["bytes_toclient"])
        if key[1] == src:
            c[0] += mine[0]; c[1] += mine[1]; c[2] += mine[2]; c[3] += mine[3]  # noqa: E702
        else:
            c[0] += mine[2]; c[1] += mine[3]; c[2] += mine[0]; c[3] += mine[1]  # noqa: E702
        initiator.setdefault(key, src)
    return {k: (tuple(v), initiator[k]) for k, v in counts.items()}  # type: ignore[misc]


def _counts(c: ConvCounts) -> tuple[int, int, int, int]:
    return c.packets_ab, c.bytes_ab, c.packets_ba, c.bytes_ba


NAMES = ["office-le-usec.pcap", "office-be-usec.pcap", "office-le-nsec.pcap", "office-be-nsec.pcap"]


def test_every_generated_capture_reads_completely(captures: dict[str, Capture]) -> None:
    assert len(captures) >= 15
    for name, cap in captures.items():
        a = iotwatch.analyze(cap.path)
        assert not a.problems, (name, a.problems)
        assert (a.stats.packets, a.stats.bytes) == (cap.packets, cap.bytes), name
        assert sum(a.stats.undecodable.values()) == 0, (name, a.stats.undecodable)


def test_conversations_match_the_truth(captures: dict[str, Capture]) -> None:
    for name, cap in captures.items():
        a = iotwatch.analyze(cap.path)
        ours = conversations(a)
        truth = cap.conversations
        assert {k: v[0] for k, v in ours.items()} == {k: _counts(v) for k, v in truth.items()}, name
        for k, v in truth.items():
            assert ours[k][1] == v.initiator, (name, k)


def test_ethernet_devices_match_the_truth(captures: dict[str, Capture]) -> None:
    checked = 0
    for name, cap in captures.items():
        if cap.linktypes != {LINKTYPE_ETHERNET}:
            continue
        a = iotwatch.analyze(cap.path)
        truth = cap.macs
        assert set(a.devices) == set(truth), name
        for mac, t in truth.items():
            d = a.devices[mac]
            assert (d.packets_out, d.bytes_out, d.packets_in, d.bytes_in) == (
                t.packets_out, t.bytes_out, t.packets_in, t.bytes_in), (name, mac)
            assert d.first_seen == pytest.approx(t.first_seen_ns / 1e9, abs=1e-6)
            assert d.last_seen == pytest.approx(t.last_seen_ns / 1e9, abs=1e-6)
        checked += 1
    assert checked >= 6


def test_ip_devices_without_ethernet(captures: dict[str, Capture]) -> None:
    """SLL, SLL2 and raw IP captures: devices are IP addresses."""
    checked = 0
    for name, cap in captures.items():
        if LINKTYPE_ETHERNET in cap.linktypes:
            continue
        a = iotwatch.analyze(cap.path)
        truth = cap.ips
        assert set(a.devices) == set(truth), name
        for ip, t in truth.items():
            d = a.devices[ip]
            assert d.mac is None and d.ips == [ip]
            assert (d.packets_out, d.bytes_out, d.packets_in, d.bytes_in) == (
                t.packets_out, t.bytes_out, t.packets_in, t.bytes_in), (name, ip)
        checked += 1
    assert checked >= 4


def test_byte_orders_agree(captures: dict[str, Capture]) -> None:
    for le, be in ((NAMES[0], NAMES[1]), (NAMES[2], NAMES[3])):
        a, b = iotwatch.analyze(captures[le].path), iotwatch.analyze(captures[be].path)
        assert a.flows.to_pylist() == b.flows.to_pylist()
        assert a.windows.to_pylist() == b.windows.to_pylist()
        assert a.devices == b.devices


@pytest.mark.parametrize("name", [*NAMES, "big-endian.pcapng", "multi-interface.pcapng", "two-sections.pcapng"])
def test_timestamps_are_exact(captures: dict[str, Capture], name: str) -> None:
    """Epoch nanoseconds as written, whatever the byte order and resolution (an SPB, which has
    no time, takes the previous packet's)."""
    from iotwatch.capture import open_capture

    cap = captures[name]
    r = open_capture(cap.path)
    got = [int(t) for b in r.batches() for t in b.ts_ns]
    expect: list[int] = []
    for t in cap.times_ns:
        expect.append(t if t is not None else expect[-1])
    assert got == expect


def test_damaged_files(damaged: dict[str, DamagedCapture]) -> None:
    for name, d in damaged.items():
        try:
            a = iotwatch.analyze(d.path)
        except iotwatch.InputError as e:  # files that are not captures at all
            assert d.intact_packets == 0, name
            assert str(d.path) in str(e)
            continue
        if d.kind == "caplen_over_snaplen":
            # read anyway, like libpcap and Wireshark, with a warning naming the record
            (p,) = a.problems
            assert isinstance(p, CaptureError) and not p.fatal and p.offset == d.damage_offset
            assert a.stats.packets > d.intact_packets
            continue
        assert a.problems, name
        p = a.problems[0]
        assert str(d.path) in str(p), name
        if isinstance(p, CaptureError):
            # an unsupported link type is reported at the header's link-type field (byte 20)
            where = d.damage_offset + (20 if d.kind.startswith("unknown_linktype") else 0)
            assert p.offset == where, (name, p.offset, where, str(p))
        if d.undecodable:
            assert a.stats.packets == d.undecodable
            assert a.stats.undecodable["link"] == d.undecodable
        else:
            assert a.stats.packets == d.intact_packets, (name, a.stats.packets, d.intact_packets)


def test_analyze_raises_for_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(iotwatch.InputError, match="no such file"):
        iotwatch.analyze(tmp_path / "missing.pcap")


@pytest.mark.parametrize("units", [1, 1_000, 1_000_000, 1_000_000_000, 10**10, 1 << 20])
def test_pcapng_times_of_one_interface_take_the_short_way_to_the_same_nanoseconds(units: int) -> None:
    """pcapng.ts_to_ns has a short way for the usual stream (one interface, no simple packet
    block, no absurd time: dumpcap's): it must give what the general conversion gives, and
    leave to it the cases it does not cover (absurd times clamped, a simple packet block)."""
    import numpy as np

    from iotwatch.capture.pcapng import MAX_SECONDS, Interface, ts_to_ns

    rng = np.random.default_rng(units % 97)
    n = 5_000
    raw = rng.integers(0, MAX_SECONDS * min(units, 10**9), n, dtype=np.int64)
    raw[:4] = [0, 1, MAX_SECONDS * min(units, 10**9) - 1, units]
    cases = [np.zeros(n, np.int64)]
    spb = np.zeros(n, np.int64)
    spb[[7, 8, 100]] = -1  # simple packet blocks: the previous packet's time
    cases.append(spb)
    for ifid in cases:
        for r in (raw, np.concatenate([raw[:-2], [-5, np.iinfo(np.int64).max]])):  # absurd: clamped
            itf = Interface(1, 65535, units_per_s=units)
            short, general = np.empty(n, np.int64), np.empty(n, np.int64)
            ts_to_ns(r, ifid, [itf], short)
            ts_to_ns(r, ifid, [itf, Interface(1, 65535)], general)  # two interfaces: the general way
            assert (short == general).all()
