"""The evidence ring: the packets of a live capture, kept on disk as rotating pcapng files.

The capture tool's pcapng stream is copied block for block (no re-encoding): each file starts
with the section and interface blocks in force, then the packet blocks of whole batches. A file
is closed once it holds ``size_bytes``; beyond ``files`` files the oldest is deleted, so the disk
use stays bounded. Each batch's packets are numbered as Wireshark numbers them in the file they
land in, so an alert's ``file#packet`` opens at the right packet.

The numbering is decided at once, on the caller's thread; the writing happens on a thread of its
own, so that a slow disk (writeback stalls) never holds up the analysis. A write that fails (a
full disk) stops the ring: the file is cut back to its last whole batch (readable), the reason is
kept in :attr:`Ring.stopped`, and the analysis goes on without the ring. The batches handed over
after the failed one and before the failure was seen (at most the queue's length) are then
numbered in a file that lacks them.

A batch's blocks are copied for the writer thread unless the caller lends them: ``write(...,
done=release)`` queues a view of the caller's buffer and calls ``release()`` on the writer thread
once the blocks are on their way to the disk or dropped (the caller keeps the buffer unchanged
until then; a live capture's pipe reader lends its chunk buffers this way, capture/dumpcap.py,
and so saves a copy of every packet on the analysis thread).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import OutputError

QUEUE = 8  # batches waiting for the disk (each at most the reader's buffer, 8 MiB)


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
        self._open_path: Path | None = None
        self._size = 0
        self._frames = 0
        self._headers = b""
        self._q: queue.Queue[tuple[str, Path | None, bytes | memoryview, Callable[[], None] | None] | None] = \
            queue.Queue(maxsize=QUEUE)
        self._error: str | None = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{folder}: cannot create the ring folder: {e.strerror or e}") from None
        self._t = threading.Thread(target=self._writer, name="iotwatch-ring", daemon=True)
        self._t.start()

    @property
    def current(self) -> Path | None:
        return self._open_path if self.stopped is None else None

    def write(self, headers: list[bytes], blocks: np.ndarray, packets: int,
              done: Callable[[], None] | None = None) -> tuple[Path, int] | None:
        """Append a batch's blocks; returns the file they go to and the number of their first
        packet there, or None when the ring has stopped. ``done``: the blocks are lent, not
        copied; it is called (on the writer thread, or at once when the ring has stopped) when
        they are no longer needed."""
        if self._error is not None and self.stopped is None:
            self.stopped = self._error
        if self.stopped is not None:
            if done is not None:
                done()
            return None
        head = b"".join(headers)
        if self._open_path is None or head != self._headers or (self._size >= self.size_bytes and self._frames):
            self._rotate(head)
        assert self._open_path is not None
        first = self._frames + 1
        if done is None:
            self._q.put(("data", None, blocks.tobytes(), None))  # a copy: the reader reuses its buffer
        else:
            self._q.put(("data", None, memoryview(blocks), done))  # type: ignore[arg-type]
        self._size += len(blocks)
        self._frames += packets
        return self._open_path, first

    def _rotate(self, head: bytes) -> None:
        self.written += 1
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        path = self.folder / f"{self.prefix}-{self.written:05d}-{stamp}.pcapng"
        while len(self.kept) >= self.files:
            self._q.put(("delete", self.kept.popleft(), b"", None))
        self.kept.append(path)
        self._q.put(("open", path, head, None))
        self._open_path, self._headers = path, head
        self._size, self._frames = len(head), 0

    def _writer(self) -> None:
        fd, good, path = -1, 0, None
        while True:
            item = self._q.get()
            if item is None:
                break
            op, target, data, done = item
            if self._error is not None:
                if done is not None:
                    done()
                continue  # stopped: what is still queued is dropped
            try:
                if op == "delete":
                    assert target is not None
                    try:
                        target.unlink()
                    except FileNotFoundError:
                        pass
                    continue
                if op == "open":
                    if fd >= 0:
                        os.close(fd)
                        fd = -1
                    path = target
                    fd = os.open(str(target), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
                    good = 0
                _write_all(fd, memoryview(data))
                good += len(data)
            except OSError as e:
                if fd >= 0:
                    try:  # no half-written block at the end: the file stays readable to its last whole batch
                        os.ftruncate(fd, good)
                        if good == 0 and path is not None:  # not even its header: no file at all
                            os.close(fd)
                            fd = -1
                            path.unlink()
                    except OSError:
                        pass
                self._error = f"{path or self.folder}: {e.strerror or e}"
            finally:
                if done is not None:
                    done()
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        """Write what is queued, close the file; :attr:`stopped` says if a write failed."""
        if self._t.is_alive():
            self._q.put(None)
            self._t.join()
        if self._error is not None and self.stopped is None:
            self.stopped = self._error


def _write_all(fd: int, data: memoryview) -> None:
    while len(data):
        n = os.write(fd, data)
        data = data[n:]
