"""The generated test captures are what their truth tables say, according to Wireshark.

tshark reads every well-formed factory's file; its record lengths and timestamps, and the
per-MAC, per-IP and per-conversation tallies built from its dissection, must equal the truth the
factory computed while building the frames.  Damaged files are only checked to be written.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import captures
import pytest
from captures import Capture, Flow

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt-get install tshark)")

FACTORIES: dict[str, Callable[[Path], Capture]] = {
    "pcap-le-usec": captures.classic_pcap,
    "pcap-be-usec": functools.partial(captures.classic_pcap, big_endian=True),
    "pcap-le-nsec": functools.partial(captures.classic_pcap, nanosecond=True),
    "pcap-be-nsec": functools.partial(captures.classic_pcap, big_endian=True, nanosecond=True),
    "pcap-gz": captures.gzip_capture,
    "sll": captures.linux_sll_capture,
    "sll2": captures.linux_sll2_capture,
    "raw-101": functools.partial(captures.raw_ip_capture, linktype=captures.LINKTYPE_RAW),
    "raw-228": functools.partial(captures.raw_ip_capture, linktype=captures.LINKTYPE_IPV4),
    "raw-229": functools.partial(captures.raw_ip_capture, linktype=captures.LINKTYPE_IPV6),
    "vlan-qinq": captures.vlan_capture,
    "ipv4-fragments": captures.ipv4_fragments_capture,
    "ipv6-extension-headers": captures.ipv6_extension_headers_capture,
    "icmp-arp-lldp": captures.icmp_arp_lldp_capture,
    "snaplen": captures.snaplen_capture,
    "pcapng-multi-interface": captures.pcapng_multi_interface,
    "pcapng-big-endian": captures.pcapng_big_endian,
    "pcapng-two-sections": captures.pcapng_two_sections,
}

FIELDS = (
    "frame.len", "frame.cap_len", "frame.time_epoch", "_ws.col.Protocol",
    "eth.src", "eth.dst", "sll.src.eth",
    "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
    "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport",
)


def tshark_rows(path: Path) -> list[dict[str, str]]:
    """One dict per frame, first occurrence of each field; pcapng custom blocks left out."""
    assert TSHARK is not None
    command = [TSHARK, "-n", "-r", str(path), "-o", "ip.defragment:TRUE", "-o", "ipv6.defragment:TRUE",
               "-T", "fields", "-E", "occurrence=f", "-E", "separator=/t"]
    for name in FIELDS:
        command += ["-e", name]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    rows = [dict(zip(FIELDS, line.split("\t"), strict=True)) for line in result.stdout.splitlines()]
    # Wireshark lists a pcapng custom block as a frame of its own; it is not a packet.
    return [row for row in rows if row["_ws.col.Protocol"] != "PCAPNG"]


def _time_ns(text: str) -> int | None:
    return int(Decimal(text) * 10**9) if text else None


def _flow(row: dict[str, str]) -> Flow | None:
    src, dst = row["ip.src"] or row["ipv6.src"], row["ip.dst"] or row["ipv6.dst"]
    for proto, prefix in ((6, "tcp"), (17, "udp")):
        if row[f"{prefix}.srcport"]:
            return Flow(proto, (src, int(row[f"{prefix}.srcport"])), (dst, int(row[f"{prefix}.dstport"])))
    return None


@pytest.fixture(params=sorted(FACTORIES), scope="module")
def capture(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Capture:
    return FACTORIES[request.param](tmp_path_factory.mktemp(request.param))


@pytest.mark.tshark
@needs_tshark
def test_records_match_tshark(capture: Capture) -> None:
    rows = tshark_rows(capture.path)
    assert [int(row["frame.len"]) for row in rows] == capture.frame_lengths
    assert [int(row["frame.cap_len"]) for row in rows] == capture.caplens
    assert [_time_ns(row["frame.time_epoch"]) for row in rows] == capture.times_ns


@pytest.mark.tshark
@needs_tshark
def test_truth_tables_match_tshark(capture: Capture) -> None:
    rows = tshark_rows(capture.path)
    lengths = [int(row["frame.len"]) for row in rows]
    times = [_time_ns(row["frame.time_epoch"]) for row in rows]
    macs = captures.tally_addresses(
        ((row["eth.src"] or row["sll.src.eth"] or None, row["eth.dst"] or None, n, t)
         for row, n, t in zip(rows, lengths, times, strict=True)),
        captures.is_unicast_mac,
    )
    ips = captures.tally_addresses(
        ((row["ip.src"] or row["ipv6.src"] or None, row["ip.dst"] or row["ipv6.dst"] or None, n, t)
         for row, n, t in zip(rows, lengths, times, strict=True)),
        captures.is_unicast_ip,
    )
    conversations = captures.tally_conversations(
        (_flow(row), n) for row, n in zip(rows, lengths, strict=True))
    assert macs == capture.macs
    assert ips == capture.ips
    assert conversations == capture.wireshark_conversations


def test_fragments_count_every_frame() -> None:
    """Our convention: every fragment counts in its datagram's conversation; Wireshark's view
    counts the datagram once, on the frame that completes it."""
    path = Path("unused")
    camera = (captures.CAMERA_MAC, captures.CAMERA_IP)
    nvr = (captures.NVR_MAC, captures.NVR_IP)
    hops = captures.ipv4_fragments(camera, nvr, (8_214, 50_006), size=3_200, ident=7, order=(2, 0, 1))
    clock = captures.Clock()
    frames = [captures.ethernet(hop, clock()) for hop in hops]
    records = tuple(captures.Record(frame, 0, frame.wire_len) for frame in frames)
    truth = Capture(path, records)
    key = captures.conv_key(17, (captures.CAMERA_IP, 8_214), (captures.NVR_IP, 50_006))
    assert key[1] == (captures.NVR_IP, 50_006)  # .60 sorts before .64: camera to recorder is "ba"
    assert truth.conversations[key].packets_ba == 3
    assert truth.conversations[key].bytes_ba == sum(f.wire_len for f in frames)
    assert truth.conversations[key].initiator == (captures.CAMERA_IP, 8_214)
    assert truth.wireshark_conversations[key].packets_ba == 1
    assert truth.wireshark_conversations[key].bytes_ba == frames[-1].wire_len  # the middle fragment


def test_factories_are_deterministic(tmp_path: Path) -> None:
    for name, factory in FACTORIES.items():
        first, second = tmp_path / name / "first", tmp_path / name / "second"
        first.mkdir(parents=True)
        second.mkdir()
        assert factory(first).path.read_bytes() == factory(second).path.read_bytes(), name


def test_damaged_files_are_written(tmp_path: Path) -> None:
    damaged = captures.all_damaged(tmp_path)
    assert len({d.path for d in damaged}) == len(damaged)
    for item in damaged:
        size = item.path.stat().st_size
        assert item.damage_offset <= size, item.kind
        assert all(r.offset + 16 <= item.damage_offset for r in item.intact.records), item.kind
    kinds = {d.kind for d in damaged}
    assert {"not_a_capture", "empty", "truncated_header", "truncated_record_data", "caplen_over_snaplen",
            "absurd_caplen", "unknown_linktype_147", "pcapng_trailer_mismatch"} <= kinds
