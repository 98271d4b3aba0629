"""pcapng files: several sections, interfaces and link types; EPB, SPB and the obsolete PB.

Packet blocks are walked by a compiled loop; the rare control blocks (section and interface
headers) stop the loop and are parsed here in Python. Everything else (name resolution,
statistics, custom, decryption secrets...) is skipped by its length.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._jit import kernel
from ..errors import CaptureError
from .batch import SUPPORTED_LINKTYPES, PacketBatch, linktype_name
from .chunks import Chunks
from .pcap import _u32

SHB, IDB, PB, SPB, EPB = 0x0A0D0D0A, 1, 2, 3, 6
BYTE_ORDER_MAGIC = 0x1A2B3C4D
MAX_BLOCK = 64 << 20
MAX_SECONDS = 1 << 32  # timestamps are clamped here (year 2106, the end of pcap's 32-bit seconds)

# walker status codes
NEED_MORE, FULL, CONTROL, BAD_LENGTH, BAD_TRAILER, BAD_IFACE, BAD_CAPLEN = range(7)
_WHY = {
    BAD_LENGTH: "block length is not a multiple of 4, below 12 or absurd",
    BAD_TRAILER: "block's trailing length does not match its leading length",
    BAD_IFACE: "packet block names an interface that no interface block described",
    BAD_CAPLEN: "packet block's captured length does not fit inside the block",
}


@kernel
def walk_pcapng(buf, pos, end, big, n_if, if_snaplen, off, caplen, wirelen, tsraw, ifid):  # type: ignore[no-untyped-def]
    """Index packet blocks in buf[pos:end]. Returns (count, new pos, status).

    ``tsraw`` gets the 64-bit timestamp in interface units and ``ifid`` the interface (-1 for a
    simple packet block, which has no timestamp)."""
    n = 0
    cap = off.shape[0]
    while n < cap:
        if end - pos < 12:
            return n, pos, 0
        btype = _u32(buf, pos, big)
        if btype == 0x0A0D0D0A or btype == 1:
            return n, pos, 2
        blen = _u32(buf, pos + 4, big)
        if blen < 12 or blen % 4 != 0 or blen > 67108864:
            return n, pos, 3
        if end - pos < blen:
            return n, pos, 0
        if _u32(buf, pos + blen - 4, big) != blen:
            return n, pos, 4
        if btype == 6 or btype == 2:
            if blen < 32:
                return n, pos, 3
            if btype == 6:
                iface = _u32(buf, pos + 8, big)
            elif big:
                iface = (np.int64(buf[pos + 8]) << 8) | np.int64(buf[pos + 9])
            else:
                iface = np.int64(buf[pos + 8]) | (np.int64(buf[pos + 9]) << 8)
            if iface >= n_if:
                return n, pos, 5
            incl = _u32(buf, pos + 20, big)
            if 28 + incl > blen - 4:
                return n, pos, 6
            orig = _u32(buf, pos + 24, big)
            off[n] = pos + 28
            caplen[n] = incl
            wirelen[n] = orig if orig >= incl else incl
            tsraw[n] = (_u32(buf, pos + 12, big) << 32) | _u32(buf, pos + 16, big)
            ifid[n] = iface
            n += 1
        elif btype == 3:
            if n_if < 1:
                return n, pos, 5
            orig = _u32(buf, pos + 8, big)
            incl = orig
            room = blen - 16
            if if_snaplen[0] > 0 and incl > if_snaplen[0]:
                incl = if_snaplen[0]
            if incl > room:
                incl = room
            off[n] = pos + 12
            caplen[n] = incl
            wirelen[n] = orig if orig >= incl else incl
            tsraw[n] = 0
            ifid[n] = -1
            n += 1
        pos += blen
    return n, pos, 1


@dataclass(slots=True)
class Interface:
    linktype: int
    snaplen: int
    units_per_s: int = 1_000_000  # if_tsresol, default microseconds
    offset_s: int = 0  # if_tsoffset


def _parse_options(body: bytes, endian: str) -> Iterator[tuple[int, bytes]]:
    p = 0
    while p + 4 <= len(body):
        code, length = struct.unpack_from(endian + "HH", body, p)
        if code == 0:
            return
        yield code, body[p + 4 : p + 4 + length]
        p += 4 + (length + 3) // 4 * 4


def ts_to_ns(tsraw: np.ndarray, ifid: np.ndarray, interfaces: list[Interface], out: np.ndarray) -> None:
    """Convert raw per-interface timestamps into epoch nanoseconds (SPB: previous packet's time).

    A damaged or absurd timestamp (beyond the year 2106) is clamped, never wrapped around."""
    if len(interfaces) == 1 and len(ifid):
        # the usual stream (dumpcap's, most files): one interface, whole nanoseconds per unit, no
        # offset, no simple packet block, no absurd time: one multiplication instead of the
        # masks, divisions and clamps below (which give the same numbers)
        itf = interfaces[0]
        u = itf.units_per_s
        if itf.offset_s == 0 and u <= 1_000_000_000 and 1_000_000_000 % u == 0 and int(ifid.min()) >= 0 and \
                int(tsraw.view(np.uint64).max()) < MAX_SECONDS * u:
            np.multiply(tsraw, 1_000_000_000 // u, out=out)
            return
    for i, itf in enumerate(interfaces):
        m = ifid == i
        if not m.any():
            continue
        raw = tsraw[m].view(np.uint64)
        u = np.uint64(itf.units_per_s)
        secs = np.minimum(raw // u, np.uint64(MAX_SECONDS)).astype(np.int64)
        frac = (raw % u).astype(np.float64) if itf.units_per_s > 1_000_000_000 else (raw % u).astype(np.int64)
        if itf.units_per_s <= 1_000_000_000:
            sub = frac * (1_000_000_000 // itf.units_per_s) if 1_000_000_000 % itf.units_per_s == 0 \
                else frac * 1_000_000_000 // itf.units_per_s
        else:
            sub = (frac * (1e9 / itf.units_per_s)).astype(np.int64)
        ns = secs * 1_000_000_000 + sub + itf.offset_s * 1_000_000_000
        out[m] = np.clip(ns, 0, MAX_SECONDS * 1_000_000_000)
    spb = np.flatnonzero(ifid < 0)
    for k in spb:
        out[k] = out[k - 1] if k > 0 else 0


class PcapngReader:
    def __init__(self, chunks: Chunks, batch_size: int = 65_536) -> None:
        self.chunks = chunks
        self.path: Path = chunks.path
        self.problems: list[CaptureError] = []
        self.batch_size = batch_size
        self.big = False
        self.interfaces: list[Interface] = []
        self.linktypes: set[int] = set()
        self._last_ts = 0
        #: the section and interface blocks in force, as read (a live ring starts each file with them)
        self.headers: list[bytes] = []
        #: buffer offsets [start, end) of the blocks behind the last batch (a live ring copies them)
        self.span = (0, 0)

    def _error(self, pos: int, what: str) -> None:
        self.problems.append(CaptureError(self.path, self.chunks.base + pos, what))

    def _control_block(self) -> bool:
        """Parse the SHB or IDB at chunks.pos. Returns False if the file cannot go on."""
        c = self.chunks
        if c.left < 12 and not c.fill(12):
            self._error(c.pos, "block header is cut off")
            return False
        head = c.buf[c.pos : c.pos + 12].tobytes()
        if struct.unpack("<I", head[:4])[0] == SHB:
            bom = head[8:12]
            if bom == b"\x4d\x3c\x2b\x1a":
                self.big = False
            elif bom == b"\x1a\x2b\x3c\x4d":
                self.big = True
            else:
                self._error(c.pos, "section header block has no valid byte-order magic")
                return False
            self.interfaces = []  # interface ids restart in every section
            self.headers = []
        endian = ">" if self.big else "<"
        btype, blen = struct.unpack(endian + "II", head[:8])
        if blen < 12 or blen % 4 or blen > MAX_BLOCK:
            self._error(c.pos, f"block length {blen} is not a multiple of 4, below 12 or absurd")
            return False
        if (c.left < blen and not c.fill(blen)) or c.left < blen:
            self._error(c.pos, f"block of {blen} bytes is cut off: only {c.left} bytes remain")
            return False
        block = c.buf[c.pos : c.pos + blen].tobytes()
        if struct.unpack(endian + "I", block[-4:])[0] != blen:
            self._error(c.pos, _WHY[BAD_TRAILER])
            return False
        if btype in (SHB, IDB):
            self.headers.append(block)
        if btype == IDB:
            if blen < 20:
                self._error(c.pos, "interface description block is too short")
                return False
            linktype, _res, snaplen = struct.unpack(endian + "HHI", block[8:16])
            itf = Interface(linktype, snaplen)
            for code, value in _parse_options(block[16:-4], endian):
                if code == 9 and value:
                    r = value[0]
                    itf.units_per_s = (2 ** (r & 0x7F)) if r & 0x80 else 10 ** r
                elif code == 14 and len(value) == 8:
                    itf.offset_s = struct.unpack(endian + "q", value)[0]
            if itf.units_per_s <= 0 or itf.units_per_s > 10**18:
                self._error(c.pos, f"interface timestamp resolution byte gives {itf.units_per_s} units per second")
                return False
            self.interfaces.append(itf)
            if linktype not in SUPPORTED_LINKTYPES and linktype not in self.linktypes:
                self.problems.append(CaptureError(
                    self.path, c.base + c.pos,
                    f"interface {len(self.interfaces) - 1}: {linktype_name(linktype)} is not supported: "
                    "its packets are counted, not decoded", fatal=False))
            self.linktypes.add(linktype)
        c.pos += blen
        return True

    def batches(self, file_index: int = 0, frame: int = 1) -> Iterator[PacketBatch]:
        """Batches from the reader's position; ``frame``: the number of the packet there (1 at
        the file's start; a reader resumed mid-file by iotwatch.parts gives its packet's)."""
        c = self.chunks
        bs = self.batch_size
        off = np.empty(bs, np.int64)
        caplen = np.empty(bs, np.int64)
        wirelen = np.empty(bs, np.int64)
        tsraw = np.empty(bs, np.int64)
        ts_ns = np.empty(bs, np.int64)
        ifid = np.empty(bs, np.int64)
        lt = np.empty(bs, np.int32)
        while True:
            n_if = len(self.interfaces)
            snaps = np.array([i.snaplen for i in self.interfaces] or [0], np.int64)
            start = c.pos
            n, pos, status = walk_pcapng(c.buf, c.pos, c.end, self.big, n_if, snaps, off, caplen, wirelen, tsraw, ifid)
            c.pos = pos
            if n:
                ts = ts_ns[:n]
                ifs = ifid[:n]
                ts_to_ns(tsraw[:n], ifs, self.interfaces, ts)
                if ifs[0] < 0:
                    ts[0] = self._last_ts  # an SPB has no time: it inherits the previous packet's
                    for k in range(1, n):
                        if ifs[k] >= 0:
                            break
                        ts[k] = ts[0]
                self._last_ts = int(ts[n - 1])
                types = np.array([i.linktype for i in self.interfaces] or [0], np.int32)
                lt[:n] = types[np.maximum(ifs, 0)]
                self.span = (start, pos)
                yield PacketBatch(c.buf, off[:n], caplen[:n], wirelen[:n], ts, lt[:n], file_index, frame)
                frame += n
                continue
            if status == CONTROL:
                if not self._control_block():
                    return
                continue
            if status == FULL:
                continue
            if status != NEED_MORE:
                self._error(pos, f"{_WHY[status]} (after packet {frame - 1}); the file is damaged from here")
                return
            need = 12
            if c.left >= 8:
                need = struct.unpack((">" if self.big else "<") + "I", c.buf[c.pos + 4 : c.pos + 8].tobytes())[0]
                if need < 12 or need % 4 or need > MAX_BLOCK:
                    self._error(c.pos, f"{_WHY[BAD_LENGTH]} ({need}); the file is damaged from here")
                    return
            if not c.fill(need):
                if c.left:
                    extra = f" ({c.gzip_error})" if c.gzip_error else ""
                    self._error(c.pos, f"last block (after packet {frame - 1}) is cut off: only {c.left} bytes remain{extra}")
                elif c.gzip_error:
                    self._error(c.pos, f"compressed data ends early ({c.gzip_error})")
                return

