"""Classic libpcap files: both byte orders, micro- and nanosecond timestamps.

The record walk is a compiled loop over the chunk buffer: it finds every complete record and
writes its offset, lengths and timestamp into preallocated arrays, stopping at the first record
that is cut off (more data needed) or damaged (an absurd captured length).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .._jit import inline_kernel, kernel
from ..errors import CaptureError
from .batch import MAX_CAPLEN, SUPPORTED_LINKTYPES, PacketBatch, linktype_name
from .chunks import Chunks

MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
GLOBAL_HEADER = 24
RECORD_HEADER = 16

NEED_MORE, FULL, BAD_CAPLEN = 0, 1, 2


@inline_kernel
def _u32(buf: np.ndarray, p: int, swapped: bool) -> int:
    if swapped:
        return (np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16) | (np.int64(buf[p + 2]) << 8) | np.int64(buf[p + 3])
    return np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8) | (np.int64(buf[p + 2]) << 16) | (np.int64(buf[p + 3]) << 24)


@kernel
def walk_pcap(buf, pos, end, swapped, nano, max_caplen, snaplen, off, caplen, wirelen, ts_ns, over_snap):  # type: ignore[no-untyped-def]
    """Index the complete records in buf[pos:end]. Returns (count, new pos, status).

    ``over_snap[0]`` counts records whose captured length exceeds the snapshot length and
    ``over_snap[1]`` keeps the buffer offset of the first one (-1 if none).
    """
    n = 0
    cap = off.shape[0]
    mult = 1 if nano else 1000
    while n < cap:
        if end - pos < 16:
            return n, pos, 0
        incl = _u32(buf, pos + 8, swapped)
        if incl > max_caplen:
            return n, pos, 2
        if end - pos - 16 < incl:
            return n, pos, 0
        if incl > snaplen:
            if over_snap[1] < 0:
                over_snap[1] = pos
            over_snap[0] += 1
        off[n] = pos + 16
        caplen[n] = incl
        orig = _u32(buf, pos + 12, swapped)
        wirelen[n] = orig if orig >= incl else incl
        ts_ns[n] = _u32(buf, pos, swapped) * 1_000_000_000 + _u32(buf, pos + 4, swapped) * mult
        pos += 16 + incl
        n += 1
    return n, pos, 1


class PcapReader:
    """Reads one classic pcap file in batches. Damage ends the file with a :class:`CaptureError`
    in ``problems``; every packet before the damage has been yielded."""

    def __init__(self, chunks: Chunks, header: bytes, batch_size: int = 65_536) -> None:
        self.chunks = chunks
        self.path: Path = chunks.path
        self.problems: list[CaptureError] = []
        magic_le = struct.unpack("<I", header[:4])[0]
        if magic_le in (MAGIC_US, MAGIC_NS):
            self.swapped, endian = False, "<"
        else:
            self.swapped, endian = True, ">"
        magic, major, minor, _zone, _sigfigs, snaplen, network = struct.unpack(endian + "IHHiIII", header)
        self.nano = magic == MAGIC_NS
        self.version = (major, minor)
        # The upper bits of the link-type field carry an FCS length / flags (pcap-savefile(5)).
        self.linktype = network & 0x0FFFFFFF
        self.snaplen = snaplen if snaplen else MAX_CAPLEN
        self.max_caplen = max(MAX_CAPLEN, min(self.snaplen, 1 << 24))
        self.batch_size = batch_size
        if self.linktype not in SUPPORTED_LINKTYPES:
            self.problems.append(CaptureError(
                self.path, 20, f"{linktype_name(self.linktype)} is not supported: its packets are counted, not decoded",
                fatal=False))

    @property
    def linktypes(self) -> set[int]:
        return {self.linktype}

    def batches(self, file_index: int = 0, frame: int = 1) -> Iterator[PacketBatch]:
        """Batches from the reader's position; ``frame``: the number of the record there (1 at
        the file's start; a reader opened mid-file by iotwatch.parts gives its record's)."""
        c = self.chunks
        bs = self.batch_size
        off = np.empty(bs, np.int64)
        caplen = np.empty(bs, np.int64)
        wirelen = np.empty(bs, np.int64)
        ts_ns = np.empty(bs, np.int64)
        lt = np.full(bs, self.linktype, np.int32)
        over = np.array([0, -1], np.int64)
        while True:
            n, pos, status = walk_pcap(
                c.buf, c.pos, c.end, self.swapped, self.nano, self.max_caplen, self.snaplen,
                off, caplen, wirelen, ts_ns, over,
            )
            if over[1] >= 0:
                self.problems.append(CaptureError(
                    self.path, c.base + int(over[1]),
                    f"record captured length is larger than the snapshot length {self.snaplen}; read anyway",
                    fatal=False))
                over[1] = -2  # report once per file, keep counting
            if n:
                c.pos = pos
                yield PacketBatch(c.buf, off[:n], caplen[:n], wirelen[:n], ts_ns[:n], lt[:n], file_index, frame)
                frame += n
                continue
            c.pos = pos
            if status == BAD_CAPLEN:
                incl = struct.unpack(("<", ">")[self.swapped] + "I", c.buf[pos + 8 : pos + 12].tobytes())[0]
                self.problems.append(CaptureError(
                    self.path, c.base + pos,
                    f"record {frame} claims a captured length of {incl} bytes (the limit is {self.max_caplen}); "
                    "the file is damaged from here"))
                return
            if status == FULL:
                continue
            need = RECORD_HEADER
            if c.left >= RECORD_HEADER:
                need += struct.unpack(("<", ">")[self.swapped] + "I", c.buf[c.pos + 8 : c.pos + 12].tobytes())[0]
            if not c.fill(need):
                if c.left:
                    what = "record header" if c.left < RECORD_HEADER else "record"
                    more = f" of {need} bytes" if c.left >= RECORD_HEADER else ""
                    self.problems.append(CaptureError(
                        self.path, c.base + c.pos,
                        f"last {what}{more} (packet {frame}) is cut off: only {c.left} bytes remain"))
                elif c.gzip_error:
                    self.problems.append(CaptureError(
                        self.path, c.base + c.pos, f"compressed data ends early ({c.gzip_error})"))
                return
