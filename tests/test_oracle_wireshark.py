"""Our counts agree with Wireshark's, to the packet and the byte, on every shared capture."""

from __future__ import annotations

from collections import defaultdict
from ipaddress import ip_address
from pathlib import Path

import pytest
from conftest import SHARED_PCAPS, needs_shared, needs_tshark, shared_captures
from wireshark import Tuple5, run_tshark

import iotwatch

CAPTURES = shared_captures()


def our_conversations(flows) -> dict[Tuple5, list[int]]:  # type: ignore[no-untyped-def]
    """Per sorted TCP/UDP 5-tuple: [packets, bytes] sent by the lower endpoint, then by the higher."""
    out: dict[Tuple5, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    t = flows.to_pydict()
    for i, proto in enumerate(t["proto"]):
        if proto not in (6, 17):
            continue
        a = (t["src_ip"][i], t["src_port"][i])
        b = (t["dest_ip"][i], t["dest_port"][i])
        fwd = (ip_address(a[0]).packed, a[1]) <= (ip_address(b[0]).packed, b[1])
        c = out[(proto, a, b) if fwd else (proto, b, a)]
        mine = (t["pkts_toserver"][i], t["bytes_toserver"][i], t["pkts_toclient"][i], t["bytes_toclient"][i])
        if fwd:
            c[0] += mine[0]; c[1] += mine[1]; c[2] += mine[2]; c[3] += mine[3]  # noqa: E702
        else:
            c[0] += mine[2]; c[1] += mine[3]; c[2] += mine[0]; c[3] += mine[1]  # noqa: E702
    return out


@needs_shared
@needs_tshark
@pytest.mark.parametrize("capture", CAPTURES, ids=[str(p.relative_to(SHARED_PCAPS)) for p in CAPTURES])
def test_counts_equal_wireshark(capture: Path) -> None:
    ws = run_tshark(capture)
    a = iotwatch.analyze(capture)
    assert not a.problems, a.problems
    # per-MAC packets and bytes sent and received == tshark -z endpoints,eth
    unicast = {mac: e for mac, e in ws.endpoints.items() if not int(mac[:2], 16) & 1}
    ours = {mac: d for mac, d in a.devices.items() if d.mac is not None}
    assert set(ours) == set(unicast)
    for mac, e in unicast.items():
        d = ours[mac]
        assert (d.packets_out, d.bytes_out, d.packets_in, d.bytes_in) == (
            e.tx_packets, e.tx_bytes, e.rx_packets, e.rx_bytes), mac
    # per-5-tuple packets and bytes per direction == Wireshark's dissection of every frame
    conv = our_conversations(a.flows)
    assert dict(conv) == {k: list(v) for k, v in ws.conv.items()}
    # and the frame totals of -z conv,tcp / -z conv,udp. Those tables also list conversations
    # carried inside UDP tunnels (L2TP, ...), a layer below the one flows are keyed on: only the
    # conversations Wireshark sees as the frames' first transport layer are compared.
    for key, frames in ws.conv_frames.items():
        if key not in ws.conv:
            continue
        assert conv[key][0] + conv[key][2] - ws.later_fragments.get(key, 0) == frames, key
    # every frame is read, and the byte total is Wireshark's
    assert (a.stats.packets, a.stats.bytes) == (ws.frames, ws.frame_bytes)


def test_shared_captures_are_listed_when_present() -> None:
    if not SHARED_PCAPS.exists():
        pytest.skip("../shared/pcaps is absent")
    assert len(CAPTURES) >= 400
