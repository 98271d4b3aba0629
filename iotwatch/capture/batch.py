"""A batch of raw packets: the unit that flows from the readers into the decoders.

A batch does not copy packet bytes: ``buf`` is the reader's chunk buffer and ``off`` points into it.
It is valid until the reader produces the next batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Link types we decode (LINKTYPE_* values of the tcpdump.org registry).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_BSD = 12
LINKTYPE_RAW_OPENBSD = 14
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LOOP = 108
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

LINKTYPE_NAMES = {
    LINKTYPE_NULL: "BSD loopback",
    LINKTYPE_ETHERNET: "Ethernet",
    LINKTYPE_RAW_BSD: "raw IP",
    LINKTYPE_RAW_OPENBSD: "raw IP",
    LINKTYPE_RAW: "raw IP",
    LINKTYPE_LOOP: "OpenBSD loopback",
    LINKTYPE_LINUX_SLL: "Linux cooked (SLL)",
    LINKTYPE_IPV4: "raw IPv4",
    LINKTYPE_IPV6: "raw IPv6",
    LINKTYPE_LINUX_SLL2: "Linux cooked v2 (SLL2)",
}
SUPPORTED_LINKTYPES = frozenset(LINKTYPE_NAMES)

#: Largest captured length we accept for one record, as libpcap and Wireshark do for
#: ordinary link types (WTAP_MAX_PACKET_SIZE_STANDARD). A larger one means a damaged file.
MAX_CAPLEN = 262_144


def linktype_name(linktype: int) -> str:
    return LINKTYPE_NAMES.get(linktype, f"link type {linktype}")


@dataclass(slots=True)
class PacketBatch:
    """Up to a few tens of thousands of packets of one file, in file order."""

    buf: np.ndarray  # uint8, the reader's chunk buffer
    off: np.ndarray  # int64, offset of each packet's first byte in buf
    caplen: np.ndarray  # int64, bytes present in buf
    wirelen: np.ndarray  # int64, length on the wire (what Wireshark counts as frame length)
    ts_ns: np.ndarray  # int64, epoch nanoseconds
    linktype: np.ndarray  # int32, link type of each packet
    file_index: int  # position of the file in the run's input list
    frame0: int  # 1-based frame number of the first packet in its file (as Wireshark numbers it)

    def __len__(self) -> int:
        return int(self.off.shape[0])
