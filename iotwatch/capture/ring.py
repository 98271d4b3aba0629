"""The evidence ring: the packets of a live capture, kept on disk as rotating pcapng files.

The capture tool's pcapng stream is copied block for block (no re-encoding): each file starts
with the section and interface blocks in force, then the packet blocks of whole batches. A file
is closed once it holds ``size_bytes``; beyond ``files`` files the oldest is deleted, so the disk
use stays bounded. Each batch's packets are numbered as Wireshark numbers them in the file they
land in, so an alert's ``file#packet`` opens at the right packet.

A write that fails (a full disk) stops the ring, with the reason kept in :attr:`Ring.stopped`;
the analysis goes on without it.
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path

import numpy as np

from ..errors import OutputError


class Ring:
    def __init__(self, folder: Path, files: int = 10, size_bytes: int = 100 << 20, prefix: str = "iotwatch") -> None:
        if files < 1 or size_bytes < 1:
            raise ValueError("a ring needs at least one file of at least one byte")
        self.folder = folder
        self.files = files
        self.size_bytes = size_bytes
        self.prefix = prefix
        self.kept: deque[Path] = deque()
        self.written = 0  # files opened so far
        self.stopped: str | None = None
        self._fd = -1
        self._size = 0
        self._frames = 0
        self._headers = b""
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{folder}: cannot create the ring folder: {e.strerror or e}") from None

    @property
    def current(self) -> Path | None:
        return self.kept[-1] if self.kept and self._fd >= 0 else None

    def write(self, headers: list[bytes], blocks: np.ndarray, packets: int) -> tuple[Path, int] | None:
        """Append a batch's blocks; returns the file they are in and the number of their first
        packet there, or None when the ring has stopped."""
        if self.stopped is not None:
            return None
        head = b"".join(headers)
        try:
            if self._fd < 0 or head != self._headers or (self._size >= self.size_bytes and self._frames):
                self._open(head)
            first = self._frames + 1
            _write_all(self._fd, memoryview(blocks))  # type: ignore[arg-type]
        except OSError as e:
            where = self.current or self.folder
            if self._fd >= 0:
                try:  # no half-written block at the end: the file stays readable to its last whole batch
                    os.ftruncate(self._fd, self._size)
                except OSError:
                    pass
            self._stop(f"{where}: {e.strerror or e}")
            return None
        self._size += len(blocks)
        self._frames += packets
        path = self.kept[-1]
        return path, first

    def _open(self, head: bytes) -> None:
        self._close_file()
        while len(self.kept) >= self.files:
            old = self.kept.popleft()
            try:
                old.unlink()
            except FileNotFoundError:
                pass
        self.written += 1
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        path = self.folder / f"{self.prefix}-{self.written:05d}-{stamp}.pcapng"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        self.kept.append(path)
        self._headers = head
        _write_all(self._fd, memoryview(head))
        self._size = len(head)
        self._frames = 0

    def _stop(self, why: str) -> None:
        self.stopped = why
        self._close_file()

    def _close_file(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1

    def close(self) -> None:
        self._close_file()


def _write_all(fd: int, data: memoryview) -> None:
    while len(data):
        n = os.write(fd, data)
        data = data[n:]
