"""Packets → a pcapng file that Wireshark, tshark and tcpdump open (the evidence pack's captures).

Little-endian pcapng (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html): one
Section Header Block naming the writer, one Interface Description Block per link type with
``if_tsresol`` = 9 (nanoseconds, so no source timestamp is rounded), and one Enhanced Packet
Block per packet, optionally with an ``opt_comment`` that Wireshark shows as the packet comment
(``frame.comment`` in a display filter).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from ..errors import OutputError

SHB, IDB, EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_END, OPT_COMMENT = 0, 1
SHB_USERAPPL, IF_TSRESOL = 4, 9
SNAPLEN = 262_144


def _pad(n: int) -> int:
    return (4 - n % 4) % 4


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * _pad(len(value))


def _block(kind: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", kind, total) + body + struct.pack("<I", total)


class PcapngWriter:
    """Write packets to ``path``; interfaces are added as new link types appear."""

    def __init__(self, path: Path, application: str) -> None:
        self.path = path
        try:
            self.f: BinaryIO = open(path, "wb")
        except OSError as e:
            raise OutputError(f"{path}: cannot write: {e.strerror or e}") from None
        self.interfaces: dict[int, int] = {}
        self.packets = 0
        opts = _option(SHB_USERAPPL, application.encode()) + _option(OPT_END, b"")
        self._write(_block(SHB, struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + opts))

    def _write(self, data: bytes) -> None:
        try:
            self.f.write(data)
        except OSError as e:
            raise OutputError(f"{self.path}: cannot write: {e.strerror or e}") from None

    def _interface(self, linktype: int) -> int:
        if linktype not in self.interfaces:
            opts = _option(IF_TSRESOL, bytes([9])) + _option(OPT_END, b"")
            self._write(_block(IDB, struct.pack("<HHI", linktype, 0, SNAPLEN) + opts))
            self.interfaces[linktype] = len(self.interfaces)
        return self.interfaces[linktype]

    def packet(self, ts_ns: int, linktype: int, data: bytes, wirelen: int, comment: str | None = None) -> int:
        """Append one packet; returns its frame number in this file (1-based, as Wireshark counts)."""
        ifid = self._interface(linktype)
        body = struct.pack("<IIIII", ifid, ts_ns >> 32, ts_ns & 0xFFFFFFFF, len(data), wirelen)
        body += data + b"\0" * _pad(len(data))
        if comment:
            body += _option(OPT_COMMENT, comment.encode()) + _option(OPT_END, b"")
        self._write(_block(EPB, body))
        self.packets += 1
        return self.packets

    def close(self) -> None:
        try:
            self.f.close()
        except OSError as e:
            raise OutputError(f"{self.path}: cannot write: {e.strerror or e}") from None
