"""Draining dumpcap's pipe without the GIL: a compiled reader thread and a ring of bytes.

dumpcap writes its pcapng stream into a pipe; while the pipe is full it cannot write, it stops
reading its kernel buffer, and past that buffer packets are lost. The pipe is small: the kernel
gives an unprivileged process (and root without ``CAP_SYS_RESOURCE``) at most
``/proc/sys/fs/pipe-max-size``, 1 MiB by default, which 200 k packets/s of 700 bytes fill in
7 ms. A reader thread in Python needs the GIL after every read, and the analysis holds it for
milliseconds at a time (longer when the machine is loaded and the holder is descheduled), so
dumpcap stalled behind the pipe again and again (measured: blocked writing a third of the time
at 150 k packets/s; docs/benchmarks.md).

Here the reading thread never takes the GIL: it runs one compiled loop (numba, ``nogil``) that
calls the C library's ``read`` straight into a ring of bytes, the *backlog*, and publishes how
far it wrote. The analysis takes bytes from the other end when it is ready. dumpcap's
writes therefore wait only for the kernel, whatever the analysis does, until the backlog is full
(``BACKLOG_BYTES``: seconds of traffic; then the pipe and dumpcap's buffer take over, and
dumpcap counts what it loses).

Byte ``i`` of the stream lands at ``i % size`` of the ring. One writer (the thread), one reader
(the analysis); the shared state is a small int64 array, each slot written by one side only: the
thread counts the bytes written, the reader the bytes taken. When the thread finds that the
reader has taken everything, it goes on from the front of the ring (it writes where the skip
starts and ends before the count that reveals it, and the reader, finding its position where the
skip starts, jumps), and gives back (``madvise``) the pages past ``KEEP_BYTES``: an analysis
that keeps up only ever touches the first megabytes, and memory is held only while it is behind.
"""

from __future__ import annotations

import mmap
import os
import signal
import threading

import numpy as np
from numba import types

from .._jit import kernel

BACKLOG_BYTES = 256 << 20  # read from the pipe but not yet analysed, at most (resident only while behind)
KEEP_BYTES = 16 << 20  # pages of the backlog kept when it empties; beyond, they go back to the system
MIN_ROOM = 64 << 10  # the thread waits while less room than this is free (the backlog is full)
PACE_US = 1000  # after each read the thread waits this long (µs): at most 1,000 reads a second, not one
# per write of dumpcap's; a 1 MiB pipe holds 7 ms of 200 k packets/s of 700 bytes (1 ms of 1 GB/s)
FULL_US = 1000  # while the backlog is full, the thread looks again this often (µs)

# slots of the shared state (int64). H (bytes written, ever), SKIP_FROM, SKIP_TO, END, MAX, HIGH:
# written by the thread; T (bytes taken, ever): by the reader; STOP: by the reader
H, T, SKIP_FROM, SKIP_TO, END, STOP, MAX, HIGH = range(8)

# (addresses and sizes as signed 64-bit integers: same registers, and no unsigned/signed mixing)
_read = types.ExternalFunction("read", types.intp(types.int32, types.intp, types.intp))
_usleep = types.ExternalFunction("usleep", types.int32(types.uint32))
_madvise = types.ExternalFunction("madvise", types.int32(types.intp, types.intp, types.int32))
_poll = types.ExternalFunction("poll", types.int32(types.intp, types.intp, types.int32))
_getpid = types.ExternalFunction("getpid", types.int32())  # an opaque call: the compiler keeps stores in order
MADV_DONTNEED = 4
POLLIN = 1
WAIT_MS = 10  # the thread waits for the pipe at most this long before looking at the backlog again


@kernel
def _drain(fd: int, buf: np.ndarray, st: np.ndarray, keep: int, page: int,
           pfd: np.ndarray) -> None:  # pragma: no cover - compiled
    """Read ``fd`` into the ring ``buf`` until it ends or ``st[STOP]`` is set (no GIL held).
    ``pfd``: two int32, a ``struct pollfd`` for ``fd``. Byte ``i`` of the stream is at
    ``buf[i % size]``; the data not yet taken is [st[T], st[H])."""
    base = np.int64(buf.ctypes.data)
    pfd_at = np.int64(pfd.ctypes.data)
    size = buf.shape[0]
    while st[STOP] == 0:
        h = st[H]
        t = st[T]
        if t == st[SKIP_FROM] and h != t:  # the reader has not seen the last skip yet: it is where it leads
            t = st[SKIP_TO]
        off = h % size
        if h == t and off >= keep:
            # the reader has taken everything: go on from the front of the buffer (the reader,
            # finding its position at SKIP_FROM, jumps to SKIP_TO), and give back the pages past
            # ``keep`` that a backlog used (nobody reads them now)
            high = max(st[HIGH], off)
            _madvise(base + keep, (high - keep) // page * page, MADV_DONTNEED)
            st[HIGH] = 0
            st[SKIP_FROM] = h
            st[SKIP_TO] = h - off + size
            _getpid()
            st[H] = h - off + size
            continue
        room = min(size - (h - t), size - off)  # free, and contiguous up to the end of the buffer
        if size - (h - t) < MIN_ROOM:  # full: the reader is far behind
            _usleep(FULL_US)
            continue
        pfd[1] = POLLIN  # (events; revents, the upper half, cleared)
        if _poll(pfd_at, 1, WAIT_MS) == 0:  # nothing yet: look at the backlog again
            continue
        n = _read(fd, base + off, room)
        if n <= 0:  # the pipe ended (or failed: signals are blocked in this thread, so not EINTR)
            st[END] = 1 if n == 0 else 2
            return
        st[H] = h + n
        st[HIGH] = max(st[HIGH], off + n)
        if h + n - t > st[MAX]:
            st[MAX] = h + n - t
        # at most 1,000 reads a second, not one per write of dumpcap's; also the moment the reader
        # takes what is there, so that the thread, waking, finds the backlog empty (see above)
        _usleep(PACE_US)
    st[END] = 1


def renice(tid: int, nice: int) -> int | None:
    """Set the nice value of a process or thread (Linux: a thread id works); returns it, or None
    when not allowed (a value below 0 needs root or ``CAP_SYS_NICE``)."""
    try:
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        return None
    return nice


class PipeDrain:
    """The reading thread and its backlog. :meth:`take` gives the reader what has arrived."""

    def __init__(self, fd: int, backlog: int = BACKLOG_BYTES, keep: int = KEEP_BYTES, nice: int | None = None) -> None:
        page = mmap.PAGESIZE
        size = max(backlog // page * page, 4 * MIN_ROOM)
        # private (pages given back with madvise are freed), page-aligned; untouched pages cost nothing
        self._map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.buf = np.frombuffer(self._map, np.uint8)
        self.state = np.zeros(8, np.int64)
        self.fd = fd
        self._keep = min(keep // page * page, size)
        self._t = threading.Thread(target=self._run, name="iotwatch-pipe", daemon=True)
        self._t.start()
        #: the thread's nice value when ``nice`` was given and allowed (see :func:`renice`), else None
        self.nice = None if nice is None or self._t.native_id is None else renice(self._t.native_id, nice)

    def _run(self) -> None:
        # a signal delivered to this thread would interrupt its read; the main thread handles them
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        pfd = np.array([self.fd, 0], np.int32)
        _drain(self.fd, self.buf, self.state, self._keep, mmap.PAGESIZE, pfd)

    #: the pipe has ended (or failed), or the thread was stopped
    ended = property(lambda self: bool(self.state[END]))
    #: the most bytes held at once (how far the analysis fell behind the pipe)
    max_backlog = property(lambda self: int(self.state[MAX]))

    @property
    def held(self) -> int:
        return int(self.state[H] - self.state[T])

    def take(self, out: np.ndarray, at: int) -> int:
        """Copy what has arrived, as much as fits, into ``out[at:]``; returns the bytes copied."""
        st = self.state
        size = self.buf.shape[0]
        got = 0
        room = out.shape[0] - at
        while room > 0:
            h, t = int(st[H]), int(st[T])  # (H first: a skip's marks are written before it)
            if h > t and int(st[SKIP_FROM]) == t:  # the thread went on from the front
                t = int(st[SKIP_TO])
                st[T] = t
            k = min(h - t, size - t % size, room)
            if k <= 0:
                break
            out[at + got : at + got + k] = self.buf[t % size : t % size + k]
            st[T] = t + k
            got += k
            room -= k
        return got

    def close(self, timeout: float) -> None:
        """Stop the thread (after the pipe has ended, it has stopped by itself)."""
        self.state[STOP] = 1
        self._t.join(timeout=timeout)
        if not self._t.is_alive():
            self.buf = np.empty(0, np.uint8)
            try:
                self._map.close()
            except BufferError:  # a view is still held somewhere: the mapping goes with it
                pass
