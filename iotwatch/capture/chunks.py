"""Streaming file reads into a reusable numpy buffer (bounded memory, no whole-file loads)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import InputError

DEFAULT_CHUNK = 4 << 20
MAX_BUFFER = 256 << 20  # largest record/block we are willing to hold (pcapng blocks can be big)


def open_binary(path: Path) -> BinaryIO:
    """Open a file for reading, transparently decompressing gzip."""
    try:
        f = open(path, "rb")
    except IsADirectoryError:
        raise InputError(path, "is a directory where a capture file was expected") from None
    except OSError as e:
        raise InputError(path, f"cannot open: {e.strerror or e}") from None
    head = f.peek(2)[:2]  # (not read and seek back: a pipe or FIFO cannot seek)
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    return f


class Chunks:
    """A growable window onto a file: ``buf[pos:end]`` are bytes not consumed yet.

    ``base`` is the file offset of ``buf[0]``, so ``base + pos`` is a byte offset in the
    (decompressed) file, used in error messages.
    """

    def __init__(self, f: BinaryIO, path: Path, chunk: int = DEFAULT_CHUNK) -> None:
        self.f = f
        self.path = path
        self.buf = np.empty(chunk, dtype=np.uint8)
        self.pos = 0
        self.end = 0
        self.base = 0
        self.eof = False
        self.gzip_error: str | None = None

    @property
    def left(self) -> int:
        return self.end - self.pos

    def make_room(self, need: int = 0, what: str = "a record") -> None:
        """Move the unconsumed bytes to the front of the buffer, and grow it until it can hold
        ``need`` of them (up to MAX_BUFFER: a larger record is damage, not data)."""
        left = self.left
        if self.pos:
            self.buf[:left] = self.buf[self.pos : self.end]
            self.base += self.pos
            self.pos, self.end = 0, left
        if need > self.buf.shape[0]:
            if need > MAX_BUFFER:
                raise InputError(self.path, f"{what} of {need} bytes is larger than {MAX_BUFFER} bytes")
            size = self.buf.shape[0]
            while size < need:
                size *= 2
            grown = np.empty(size, dtype=np.uint8)
            grown[:left] = self.buf[:left]
            self.buf = grown

    def fill(self, need: int = 0) -> bool:
        """Move unconsumed bytes to the front and read more. Returns False at end of file.

        ``need`` asks for the buffer to hold at least that many unconsumed bytes.
        """
        if self.eof:
            return False
        self.make_room(need)
        view = memoryview(self.buf)[self.end :]  # type: ignore[arg-type]
        got_any = False
        while self.end < self.buf.shape[0]:
            try:
                n = self.f.readinto(view[: self.buf.shape[0] - self.end])  # type: ignore[attr-defined]
            except (OSError, EOFError, gzip.BadGzipFile) as e:
                # a damaged or cut-off .gz: keep what was decompressed, report like a truncation
                self.eof = True
                self.gzip_error = str(e) or type(e).__name__
                return got_any
            if not n:
                self.eof = True
                break
            got_any = True
            self.end += n
            view = memoryview(self.buf)[self.end :]  # type: ignore[arg-type]
        return got_any or self.left > 0

    def read_exact(self, n: int) -> bytes | None:
        """Return the next n bytes (consuming them), or None if the file ends first."""
        while self.left < n and self.fill(n):
            pass
        if self.left < n:
            return None
        b = self.buf[self.pos : self.pos + n].tobytes()
        self.pos += n
        return b

    def close(self) -> None:
        try:
            self.f.close()
        except OSError:
            pass
