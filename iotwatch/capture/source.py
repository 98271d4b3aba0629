"""Turn the paths a user gives into one time-ordered stream of packet batches.

Files, ``.gz`` files and folders (searched recursively) are accepted. Files are read one after
the other in the order of their first packet's timestamp, so flow state carries across them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import CaptureError, InputError
from .batch import PacketBatch
from .chunks import DEFAULT_CHUNK, Chunks, open_binary
from .pcap import GLOBAL_HEADER, MAGIC_NS, MAGIC_US, PcapReader
from .pcapng import SHB, PcapngReader

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".dmp", ".pcap.gz", ".pcapng.gz", ".cap.gz")

Reader = PcapReader | PcapngReader


def open_capture(path: str | Path, chunk: int = DEFAULT_CHUNK, batch_size: int = 1 << 15) -> Reader:
    """Open a pcap or pcapng file (optionally gzip-compressed) and read its file header.

    Raises :class:`InputError` when the file is not a capture at all.
    """
    path = Path(path)
    f = open_binary(path)
    c = Chunks(f, path, chunk)
    try:
        head = c.read_exact(4)
        if head is None:
            size = c.base + c.end
            if size == 0:
                raise InputError(path, "is empty (0 bytes): not a capture")
            raise InputError(path, f"is only {size} bytes long: too short for a capture file header")
        magic_le = struct.unpack("<I", head)[0]
        magic_be = struct.unpack(">I", head)[0]
        if magic_le == SHB:
            c.pos -= 4
            return PcapngReader(c, batch_size)
        if MAGIC_US in (magic_le, magic_be) or MAGIC_NS in (magic_le, magic_be):
            rest = c.read_exact(GLOBAL_HEADER - 4)
            if rest is None:
                raise InputError(path, f"pcap file header is cut off: {c.base + c.end} of {GLOBAL_HEADER} bytes")
            return PcapReader(c, head + rest, batch_size)
        raise InputError(path, "is not a pcap or pcapng capture (unknown magic number "
                         f"0x{magic_be:08x}){' — is it a text file?' if head.isascii() else ''}")
    except BaseException:
        c.close()
        raise


def expand_paths(paths: Iterable[str | Path], duplicates: list[tuple[Path, Path]] | None = None) -> list[Path]:
    """Files as given, folders searched recursively for capture files (sorted by name). A file
    named twice (``F F``, a folder and a file in it, a symbolic or hard link to it) is listed
    once; each repeat goes to ``duplicates`` as (repeat, the path kept)."""
    out: list[Path] = []
    seen: dict[tuple[int, int], Path] = {}

    def add(q: Path) -> None:
        try:
            st = q.stat()
            key = (st.st_dev, st.st_ino)
        except OSError:  # unreadable: kept, and its reader says what is wrong
            out.append(q)
            return
        if key in seen:
            if duplicates is not None:
                duplicates.append((q, seen[key]))
            return
        seen[key] = q
        out.append(q)

    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.name.lower().endswith(CAPTURE_SUFFIXES))
            if not found:
                raise InputError(p, "folder holds no capture files (*.pcap, *.pcapng, *.cap, and .gz of those)")
            for q in found:
                add(q)
        elif p.exists():
            add(p)
        else:
            raise InputError(p, "no such file or folder")
    return out


def first_timestamp(path: Path) -> int | None:
    """Epoch nanoseconds of the file's first packet, or None if it has none / cannot be read."""
    try:
        r = open_capture(path, chunk=1 << 16, batch_size=1)
    except InputError:
        return None
    try:
        for b in r.batches():
            return int(b.ts_ns[0])
        return None
    finally:
        r.chunks.close()


class CaptureSet:
    """Several captures read as one stream, in time order. Problems are collected, not raised:
    a damaged file ends early and the next file is read."""

    def __init__(self, paths: Iterable[str | Path], *, order_by_time: bool = True, batch_size: int = 1 << 15) -> None:
        #: files given more than once, read once: (the repeat, the path read)
        self.duplicates: list[tuple[Path, Path]] = []
        self.paths = expand_paths(paths, self.duplicates)
        if order_by_time and len(self.paths) > 1:
            stamps = {p: first_timestamp(p) for p in self.paths}
            self.paths.sort(key=lambda p: (stamps[p] is None, stamps[p] or 0))
        self.batch_size = batch_size
        self.problems: list[InputError] = []
        self.linktypes: dict[Path, set[int]] = {}
        self.files_read = 0
        self.bytes_total = sum(_size(p) for p in self.paths)
        self.bytes_done = 0  # sizes of the files finished
        self._current: Reader | None = None
        self._current_size = 0

    @property
    def position(self) -> int:
        """Bytes of input read so far, for progress (on disk: compressed bytes for .gz)."""
        r = self._current
        if r is None:
            return self.bytes_done
        raw = getattr(r.chunks.f, "fileobj", None)  # a GzipFile's underlying file
        try:
            here = raw.tell() if raw is not None else r.chunks.base + r.chunks.pos
        except (OSError, ValueError):
            here = 0
        return self.bytes_done + min(here, self._current_size)

    def batches(self) -> Iterator[PacketBatch]:
        for i, path in enumerate(self.paths):
            try:
                r = open_capture(path, batch_size=self.batch_size)
            except InputError as e:
                self.problems.append(e)
                continue
            self.files_read += 1
            self._current, self._current_size = r, _size(path)
            try:
                yield from r.batches(i)
            finally:
                self.linktypes.setdefault(path, set()).update(r.linktypes)
                self.problems.extend(r.problems)
                r.chunks.close()
                self._current = None
                self.bytes_done += self._current_size


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


__all__ = ["CaptureError", "CaptureSet", "InputError", "Reader", "expand_paths", "open_capture"]
