"""Captures → parts: where a split run cuts its input, on packet boundaries.

Every file is indexed by the same reader a single run uses (record headers only, no decoding):
for each batch the reader yields, its first record's byte offset, frame number and first
timestamp. A pcap or pcapng file larger than ``part_bytes`` is cut into byte ranges at those batch starts
(for pcapng, with the reader's state there: byte order, interfaces); a compressed file is one part
(a gzip stream cannot be entered in the middle). The batch table also tells
where the single run's batches begin, which the rare-frame budgets depend on (see
:mod:`iotwatch.parts.merge`), and where a part's look-back starts (:mod:`iotwatch.parts.part`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..capture.chunks import open_binary
from ..capture.pcap import GLOBAL_HEADER, RECORD_HEADER, PcapReader
from ..capture.pcapng import Interface, PcapngReader
from ..capture.source import open_capture
from ..errors import InputError

#: a part's size when none is given: large enough that a part's look-back and tail (a couple of
#: idle timeouts of traffic) are a small share of its work
DEFAULT_PART_BYTES = 256 << 20


@dataclass(slots=True)
class FileIndex:
    """One capture file as the single run reads it: its batches (in the reader's batching)."""

    path: str
    file_index: int  # position in the run's (time-ordered) list of files
    seekable: bool  # a classic, uncompressed pcap file: a part may start at any batch
    header: bytes  # the pcap file header (seekable files)
    batch_off: np.ndarray  # int64: byte offset of each batch's first record header (seekable files)
    batch_frame: np.ndarray  # int64: frame number of each batch's first packet (1-based)
    batch_ts: np.ndarray  # int64: timestamp (ns, clamped at 0 as the pipeline does) of each batch's first packet
    packets: int  # complete packets before the end of the file or its damage
    problems: list[InputError] = field(default_factory=list)  # what the reader found (reported once, here)
    ng_state: list[tuple[bool, tuple[tuple[int, int, int, int], ...], int]] = field(default_factory=list)
    #: (pcapng files) per batch, the reader's state where the batch begins: byte order, the
    #: interfaces in force (link type, snapshot length, units per second, offset) and the last
    #: packet's time (a Simple Packet Block inherits it)
    ts_max: int = -1  # the newest timestamp in the file (ns)
    back_ns: int = 0  # the furthest the timestamps go back in time within the file (ns)
    error: InputError | None = None  # not a capture at all: nothing read


def index_file(path: str, file_index: int, batch_size: int) -> FileIndex:
    """Walk one capture's record headers (a task of its own: files are indexed in parallel)."""
    empty = np.zeros(0, np.int64)
    try:
        r = open_capture(path, batch_size=batch_size)
    except InputError as e:
        return FileIndex(path, file_index, False, b"", empty, empty, empty, 0, error=e)
    offs: list[int] = []
    frames: list[int] = []
    stamps: list[int] = []
    packets = 0
    ts_max = -(1 << 62)
    back = 0
    seekable = not hasattr(r.chunks.f, "fileobj")  # (not a gzip stream)
    pcapng = isinstance(r, PcapngReader)
    states: list[tuple[bool, tuple[tuple[int, int, int, int], ...], int]] = []
    last_ts = 0
    header = b""
    try:
        if seekable and not pcapng:
            with open(path, "rb") as f:
                header = f.read(GLOBAL_HEADER)
        for b in r.batches(file_index):
            n = len(b)
            if not n:
                continue
            if pcapng:
                assert isinstance(r, PcapngReader)
                offs.append(r.chunks.base + r.span[0])
                states.append((r.big, tuple((i.linktype, i.snaplen, i.units_per_s, i.offset_s) for i in r.interfaces),
                               last_ts))
                last_ts = int(b.ts_ns[n - 1])
            else:
                offs.append(r.chunks.base + int(b.off[0]) - RECORD_HEADER if seekable else 0)
            frames.append(b.frame0)
            stamps.append(max(int(b.ts_ns[0]), 0))
            packets = b.frame0 + n - 1
            run = np.maximum.accumulate(np.maximum(b.ts_ns, 0))
            before = np.concatenate([[ts_max], np.maximum(run[:-1], ts_max)])
            back = max(back, int((before - np.maximum(b.ts_ns, 0)).max()))
            ts_max = max(ts_max, int(run[-1]))
        problems = list(r.problems)
    finally:
        r.chunks.close()
    return FileIndex(path, file_index, seekable, header, np.array(offs, np.int64), np.array(frames, np.int64),
                     np.array(stamps, np.int64), packets, problems, ng_state=states, ts_max=ts_max, back_ns=back)


@dataclass(frozen=True, slots=True)
class Part:
    """Frames [first, end) of one file: a task's own share of the input."""

    number: int
    file_index: int
    first: int  # first frame (1-based)
    end: int  # one past the last frame
    bytes: int  # about how many bytes of the file (for progress and balance)


@dataclass(slots=True)
class Plan:
    """The whole input in the single run's order, and its parts."""

    files: list[FileIndex]
    parts: list[Part]

    def batch_ids(self, file_index: np.ndarray, frame: np.ndarray) -> np.ndarray:
        """The single run's batch of each (file, frame): a number that grows with input order."""
        out = np.empty(len(frame), np.int64)
        for fi in np.unique(file_index).tolist():
            m = file_index == fi
            local = np.searchsorted(self.files[fi].batch_frame, frame[m], side="right") - 1
            out[m] = (np.int64(fi) << np.int64(32)) | local
        return out


#: packets that come this much earlier than one before them make a split run's windows near
#: there uncertain (a single run counts them in an open window or as late; a part may not)
BACK_NOTE_NS = 1_000_000_000


def time_notes(files: list[FileIndex]) -> list[str]:
    """Where the input's timestamps go back in time (files that overlap, packets out of order):
    there a split run may differ from a single run (docs/distributed.md)."""
    notes = []
    newest = -(1 << 62)
    for f in files:
        if f.error is not None or not f.packets:
            continue
        back = max(f.back_ns, newest - int(f.batch_ts[0]))
        if back > BACK_NOTE_NS:
            notes.append(f"{f.path}: timestamps go back in time by up to {back / 1e9:,.1f} s (files overlap, or "
                         "packets out of order): near there the split run's windows may differ from a single run's")
        newest = max(newest, f.ts_max)
    return notes


def make_plan(files: list[FileIndex], part_bytes: int = DEFAULT_PART_BYTES) -> Plan:
    """Cut every file into parts of about ``part_bytes`` at batch starts (seekable files only)."""
    parts: list[Part] = []
    for f in files:
        if f.error is not None or f.packets == 0:
            continue
        size = _size(f.path)
        if not f.seekable or size <= part_bytes or len(f.batch_off) < 2:
            parts.append(Part(len(parts), f.file_index, 1, f.packets + 1, size))
            continue
        n = max(1, round(size / part_bytes))
        # batch starts nearest to the even cuts (each part keeps at least one batch)
        cuts = sorted({int(np.searchsorted(f.batch_off, size * k / n)) for k in range(1, n)} - {0, len(f.batch_off)})
        starts = [0, *cuts]
        ends = [*cuts, len(f.batch_off)]
        for a, b in zip(starts, ends, strict=True):
            first = int(f.batch_frame[a])
            end = int(f.batch_frame[b]) if b < len(f.batch_frame) else f.packets + 1
            lo = int(f.batch_off[a])
            hi = int(f.batch_off[b]) if b < len(f.batch_off) else size
            parts.append(Part(len(parts), f.file_index, first, end, hi - lo))
    return Plan(files, parts)


def open_at(f: FileIndex, frame: int, batch_size: int) -> tuple[PcapReader | PcapngReader, int]:
    """A reader positioned at the batch holding ``frame`` (seekable files), or at the file's start;
    returns it with the frame number of its first record."""
    if f.seekable and len(f.batch_off):
        b = max(0, int(np.searchsorted(f.batch_frame, frame, side="right")) - 1)
        off = int(f.batch_off[b])
        from ..capture.chunks import Chunks

        fh = open_binary(Path(f.path))
        fh.seek(off)
        c = Chunks(fh, Path(f.path))
        c.base = off
        if not f.ng_state:
            return PcapReader(c, f.header, batch_size), int(f.batch_frame[b])
        r = PcapngReader(c, batch_size)  # resumed with the state the whole file's reading had there
        big, itfs, last_ts = f.ng_state[b]
        r.big = big
        r.interfaces = [Interface(lt, snap, units, offset) for lt, snap, units, offset in itfs]
        r.linktypes = {i.linktype for i in r.interfaces}
        r._last_ts = last_ts
        return r, int(f.batch_frame[b])
    return open_capture(f.path, batch_size=batch_size), 1


def _size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0
