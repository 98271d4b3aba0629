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

import numpy as np

from .._jit import inline_kernel, kernel
from ..errors import OutputError

SHB, IDB, EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_END, OPT_COMMENT = 0, 1
SHB_USERAPPL, IF_TSRESOL = 4, 9
SNAPLEN = 262_144


@inline_kernel
def _put32(out, p, v):  # type: ignore[no-untyped-def]
    out[p] = v & 0xFF
    out[p + 1] = (v >> 8) & 0xFF
    out[p + 2] = (v >> 16) & 0xFF
    out[p + 3] = (v >> 24) & 0xFF


@kernel
def render_epbs(buf, off, caplen, wirelen, ts_ns, idx, ifid, out):  # type: ignore[no-untyped-def]
    """Enhanced Packet Blocks (no options) of packets ``idx`` of a batch into ``out``; returns
    the bytes written. ``out`` must hold 32 + caplen rounded up to 4 bytes per packet."""
    p = 0
    for k in range(idx.shape[0]):
        i = idx[k]
        n = caplen[i]
        padded = (n + 3) & ~3
        total = 32 + padded
        _put32(out, p, 6)
        _put32(out, p + 4, total)
        _put32(out, p + 8, ifid[k])
        ts = ts_ns[i]
        _put32(out, p + 12, ts >> 32)
        _put32(out, p + 16, ts & 0xFFFFFFFF)
        _put32(out, p + 20, n)
        _put32(out, p + 24, wirelen[i])
        src = off[i]
        for j in range(n):
            out[p + 28 + j] = buf[src + j]
        for j in range(n, padded):
            out[p + 28 + j] = 0
        _put32(out, p + 28 + padded, total)
        p += total
    return p


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
        self.packets = 0  # packets written so far
        opts = _option(SHB_USERAPPL, application.encode()) + _option(OPT_END, b"")
        self._write(_block(SHB, struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + opts))

    def _write(self, data: bytes | memoryview) -> None:
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

    def many(self, buf: np.ndarray, off: np.ndarray, caplen: np.ndarray, wirelen: np.ndarray,
                ts_ns: np.ndarray, linktype: np.ndarray, idx: np.ndarray) -> None:
        """Append packets ``idx`` of a batch (its buffer and columns), without comments, in one
        compiled pass."""
        if not len(idx):
            return
        lts = linktype[idx]
        ifid = np.empty(len(idx), np.int64)
        for lt in np.unique(lts).tolist():
            ifid[lts == lt] = self._interface(int(lt))
        out = np.empty(int((32 + ((caplen[idx] + 3) & ~3)).sum()), np.uint8)
        n = render_epbs(buf, off, caplen, wirelen, ts_ns, idx.astype(np.int64), ifid, out)
        self._write(memoryview(out[:n]))  # type: ignore[arg-type]
        self.packets += len(idx)

    def close(self) -> None:
        try:
            self.f.close()
        except OSError as e:
            raise OutputError(f"{self.path}: cannot write: {e.strerror or e}") from None
