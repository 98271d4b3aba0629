"""Writing small captures: frames held in memory → a classic pcap or a pcapng file.

For the few places that write packets one by one (the start-up warm-up, tests): generated
scenarios with millions of packets render their records in bulk (iotwatch/synth/wire.py).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

from .batch import LINKTYPE_ETHERNET

PCAP_MAGIC_US = 0xA1B2C3D4
PCAPNG_SHB, PCAPNG_IDB, PCAPNG_EPB = 0x0A0D0D0A, 1, 6
SNAPLEN = 65535


def write_pcap(path: str | Path, frames: Iterable[tuple[float, bytes]], linktype: int = LINKTYPE_ETHERNET) -> int:
    """(epoch seconds, frame bytes) → a little-endian, microsecond pcap; returns the packet count."""
    n = 0
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", PCAP_MAGIC_US, 2, 4, 0, 0, SNAPLEN, linktype))
        for ts, fr in frames:
            us = round(ts * 1e6)
            f.write(struct.pack("<IIII", us // 1_000_000, us % 1_000_000, len(fr), len(fr)) + fr)
            n += 1
    return n


def write_pcapng(path: str | Path, frames: Iterable[tuple[float, bytes]], linktype: int = LINKTYPE_ETHERNET) -> int:
    """(epoch seconds, frame bytes) → a pcapng of one section and one interface (microsecond
    timestamps, enhanced packet blocks); returns the packet count."""
    n = 0
    with open(path, "wb") as f:
        f.write(struct.pack("<IIIHHqI", PCAPNG_SHB, 28, 0x1A2B3C4D, 1, 0, -1, 28))
        f.write(struct.pack("<IIHHII", PCAPNG_IDB, 20, linktype, 0, SNAPLEN, 20))
        for ts, fr in frames:
            pad = fr + bytes(-len(fr) % 4)
            us = round(ts * 1e6)
            f.write(struct.pack("<IIIIIII", PCAPNG_EPB, 32 + len(pad), 0, us >> 32, us & 0xFFFFFFFF, len(fr), len(fr))
                    + pad + struct.pack("<I", 32 + len(pad)))
            n += 1
    return n
