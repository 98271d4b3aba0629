"""The live receive path: Wireshark's ``dumpcap`` captures, iotwatch reads its pcapng stream.

dumpcap (C, libpcap, a 64 MiB kernel buffer) is the only process that opens the interface: it
runs with capture capabilities (root, ``setcap`` or the wireshark group) so iotwatch needs none,
and it only receives. Its pcapng stream arrives on a pipe and is walked by the same compiled
pcapng walker as files, in batches of whatever has arrived. While nothing arrives, the reader
calls back every ``idle_s`` so the caller's clock keeps moving (windows close on a quiet network).

Why dumpcap rather than libpcap in this process (docs/capture.md has the measurements): the
capture runs in its own process with its own buffer, so an analysis pause (a verdict, a Parquet
write) is absorbed by the kernel buffer and the pipe, not lost; and iotwatch itself never holds a
raw socket.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import InputError
from .batch import PacketBatch
from .chunks import MAX_BUFFER, Chunks
from .drain import BACKLOG_BYTES, PipeDrain, renice
from .interfaces import InterfaceError
from .pcapng import SHB, PcapngReader
from .privileges import Stopper

BUFFER_MIB = 64  # kernel capture buffer: PERF_NOTES.md, no drop at 256 k packets/s with 64 MiB
SNAPLEN = 262_144
#: the nice value of dumpcap and of the thread draining its pipe, when allowed (root or
#: CAP_SYS_NICE): the capture wins the CPU over the analysis (and other work) at a burst, and the
#: analysis catches up from the backlog afterwards (docs/capture.md)
CAPTURE_NICE = -10
STOP_GRACE_S = 5.0  # after SIGINT, dumpcap flushes and exits within this; else it is killed
GATHER_S = 0.02  # once bytes arrive, wait up to this long for more before analysing them
GATHER_BYTES = 4 << 20  # ... or until this much is there
PIPE_BYTES = 16 << 20  # the pipe from dumpcap (root may exceed /proc/sys/fs/pipe-max-size)
POLL_S = 0.001  # while nothing has arrived, the analysis looks again after this long ...
POLL_MAX_S = 0.008  # ... doubling up to this on a quiet network
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux), spelled out for Pythons that lack the name


@dataclass(slots=True)
class DumpcapCounts:
    """What dumpcap said when it stopped (its ``Packets received/dropped`` line)."""

    received: int
    dropped: int  # pcap (kernel socket buffer) + dumpcap + flushed
    kernel: int  # pcap: libpcap's ps_drop, the kernel's capture buffer was full (dumpcap did not read in time)
    if_dropped: int  # ps_ifdrop: the interface's own drops as libpcap saw them


_COUNTS = re.compile(r"Packets received/dropped on interface '.*': (\d+)/(\d+) "
                     r"\(pcap:(\d+)/dumpcap:(\d+)/flushed:(\d+)/ps_ifdrop:(\d+)\)")


def parse_counts(text: str) -> DumpcapCounts | None:
    m = _COUNTS.search(text)
    if m is None:
        return None
    received, _dropped, pcap, dumpcap, flushed, ifdrop = map(int, m.groups())
    return DumpcapCounts(received=received, dropped=pcap + dumpcap + flushed, kernel=pcap, if_dropped=ifdrop)


def explain(stderr: str, interface: str) -> str:
    """dumpcap's error, as one line saying what to do."""
    low = stderr.lower()
    if "permission" in low or "operation not permitted" in low or "you don't have" in low:
        return (f"no permission to capture on {interface}: run as root, or give dumpcap capture capabilities "
                "(`sudo setcap cap_net_raw,cap_net_admin=eip $(command -v dumpcap)`, or `sudo dpkg-reconfigure "
                "wireshark-common` and join the wireshark group)")
    if "no such device" in low or "no device named" in low:
        return f"no interface named {interface!r} (`iotwatch interfaces` lists them)"
    if "filter" in low and ("syntax" in low or "invalid" in low or "can't parse" in low):
        line = next((x for x in stderr.splitlines() if "filter" in x.lower()), stderr.strip())
        return f"the capture filter (--bpf) is not valid: {line.strip()}"
    if "is down" in low or "network is down" in low:
        return f"{interface} is down: `sudo ip link set {interface} up`"
    lines = [x.strip() for x in stderr.splitlines() if x.strip() and not x.startswith(("Capturing on", "File:"))]
    return f"dumpcap could not capture on {interface}: {' '.join(lines) or 'it stopped without saying why'}"


class PipeChunks(Chunks):
    """Chunks over dumpcap's pipe, drained by a compiled thread that never takes the GIL
    (:class:`~iotwatch.capture.drain.PipeDrain`): dumpcap's writes wait for the kernel only,
    whatever the analysis is doing, and what the analysis has not taken yet waits in a backlog
    of at most ``backlog`` bytes (past it, the pipe fills and dumpcap's kernel buffer takes over;
    its drops are counted).

    ``fill`` returns as soon as some bytes are there (a file's fill reads until its buffer is
    full), gathering for up to ``GATHER_S`` so that a batch is not a few packets; while nothing
    arrives it calls ``on_idle`` every ``idle_s``.

    The chunk buffer can be lent (:meth:`lend`: the evidence ring writes a batch's blocks from
    it on its own thread instead of copying them first). A lent buffer is never written over
    where it was lent: when the unconsumed bytes must move to the front, they move to another
    buffer (one given back, or a new one) and the lent one is reused once every lender has
    given it back. The buffers in use are bounded by the ring's queue (capture/ring.py)."""

    def __init__(self, f: BinaryIO, path: Path, on_idle: Callable[[], None], idle_s: float = 0.2,
                 chunk: int = 8 << 20, backlog: int = BACKLOG_BYTES, nice: int | None = None) -> None:
        super().__init__(f, path, chunk)
        self.on_idle = on_idle
        self.idle_s = idle_s
        self._drain = PipeDrain(f.fileno(), backlog, nice=nice)
        self.nice = self._drain.nice
        self._lent: dict[int, int] = {}  # id of a lent buffer → loans not given back yet
        self._spare: list[np.ndarray] = []  # buffers given back, ready for reuse
        self._lock = threading.Lock()

    def lend(self) -> Callable[[], None]:
        """Lend the current buffer (as it is now, up to :attr:`end`); returns the function that
        gives it back (callable once, from any thread)."""
        buf = self.buf
        key = id(buf)
        with self._lock:
            self._lent[key] = self._lent.get(key, 0) + 1

        def give_back() -> None:
            with self._lock:
                left = self._lent[key] - 1
                if left:
                    self._lent[key] = left
                    return
                del self._lent[key]
                if buf is not self.buf and buf.shape[0] == self.buf.shape[0]:
                    self._spare.append(buf)
        return give_back

    def make_room(self, need: int = 0, what: str = "a record") -> None:
        """As :meth:`Chunks.make_room`, but a lent buffer is left as it is: the unconsumed bytes
        move to the front of a spare one (or of a larger one, when ``need`` asks)."""
        with self._lock:
            if id(self.buf) in self._lent and (self.pos or need > self.buf.shape[0]):
                if need > MAX_BUFFER:
                    raise InputError(self.path, f"{what} of {need} bytes is larger than {MAX_BUFFER} bytes")
                size = self.buf.shape[0]
                while size < need:
                    size *= 2
                spare = self._spare.pop() if self._spare and size == self.buf.shape[0] else np.empty(size, np.uint8)
                left = self.left
                spare[:left] = self.buf[self.pos : self.end]
                self.base += self.pos
                self.buf, self.pos, self.end = spare, 0, left
                return
        super().make_room(need, what)

    @property
    def max_backlog(self) -> int:
        """The most bytes read from the pipe and not yet analysed at once (how far behind)."""
        return self._drain.max_backlog

    def _take(self) -> tuple[int, bool]:
        """Move what has arrived into the buffer: (bytes moved, whether the pipe had ended
        before, so that 0 bytes then means nothing more will come)."""
        ended = self._drain.ended  # (read first: what was written before the end is then taken)
        k = self._drain.take(self.buf, self.end)
        self.end += k
        return k, ended

    def fill(self, need: int = 0) -> bool:
        """Take what has arrived (at least ``need`` unconsumed bytes, unless the pipe ends first);
        False when nothing more will come."""
        if self.eof:
            return False
        self.make_room(need, "a block")
        had = self.end
        wait, quiet = POLL_S, time.monotonic()
        while self.end == had or self.left < need:
            k, ended = self._take()
            if k:
                wait = POLL_S
                continue
            if ended:
                self.eof = True
                return self.left > 0
            if self.end == self.buf.shape[0]:
                break
            time.sleep(wait)
            wait = min(wait * 2, POLL_MAX_S)  # a quiet network: wake less often
            if time.monotonic() - quiet >= self.idle_s:
                self.on_idle()
                quiet = time.monotonic()
        # gather for a moment: a batch of a few packets costs nearly what a full one costs
        deadline = time.monotonic() + GATHER_S
        while self.end - had < GATHER_BYTES and self.end < self.buf.shape[0]:
            k, ended = self._take()
            if k:
                continue
            left = deadline - time.monotonic()
            if ended or left <= 0:
                break
            time.sleep(min(left, POLL_S * 4))
        return True

    def close(self) -> None:
        """After dumpcap has exited: the thread reads the pipe's end (or, past the backlog, is
        told to give up) and stops before the pipe is closed under it."""
        self._drain.close(STOP_GRACE_S)
        super().close()


def _grow_pipe(fd: int) -> None:
    """Make the pipe from dumpcap as large as allowed (64 KiB by default: a few dozen packets)."""
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    except (OSError, ValueError):
        limit = 1 << 20
    for size in (max(limit, PIPE_BYTES) if os.geteuid() == 0 else limit, limit):
        try:
            fcntl.fcntl(fd, F_SETPIPE_SZ, min(size, PIPE_BYTES))
            return
        except OSError:
            continue


class DumpcapSource:
    """A running dumpcap on one interface; :meth:`batches` yields what it captures until it stops."""

    def __init__(self, interface: str, *, bpf: str | None = None, buffer_mib: int = BUFFER_MIB,
                 batch_size: int = 1 << 15, on_idle: Callable[[], None] = lambda: None, idle_s: float = 0.2,
                 dumpcap: str | None = None, nice: int | None = CAPTURE_NICE) -> None:
        exe = dumpcap or os.environ.get("IOTWATCH_DUMPCAP") or shutil.which("dumpcap")
        if exe is None:
            raise InterfaceError("dumpcap (Wireshark's capture tool) is not installed: `sudo apt-get install "
                                 "wireshark-common` (Debian/Ubuntu) or `sudo dnf install wireshark-cli` (Fedora)")
        cmd = [exe, "-i", interface, "-q", "-n", "-w", "-", "-s", str(SNAPLEN), "-B", str(buffer_mib)]
        if bpf:
            cmd += ["-f", bpf]
        self.interface = interface
        self.path = Path(f"{interface} (live)")
        self.batch_size = batch_size
        self.counts: DumpcapCounts | None = None
        self.reader: PcapngReader | None = None
        self._stderr: list[str] = []
        # its own session: a Ctrl-C at the terminal reaches iotwatch only, which stops dumpcap
        # itself and then reads what is still in the pipe (nothing captured is lost)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     bufsize=0, start_new_session=True)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._err_thread = threading.Thread(target=self._read_stderr, name="dumpcap-stderr", daemon=True)
        self._err_thread.start()
        _grow_pipe(self.proc.stdout.fileno())
        self.chunks = PipeChunks(self.proc.stdout, self.path, on_idle, idle_s, nice=nice)  # type: ignore[arg-type]
        #: the nice value dumpcap and the pipe thread run at (None: left as they were, not allowed)
        self.nice = None if nice is None else renice(self.proc.pid, nice)
        if self.chunks.nice is None:
            self.nice = None
        self._stopping = False
        #: signals dumpcap for us once we are no longer root (capture/privileges.py); None: we signal it
        self.stopper: Stopper | None = None

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in iter(self.proc.stderr.readline, b""):
            self._stderr.append(line.decode(errors="replace"))

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def open(self) -> PcapngReader:
        """Wait for dumpcap's section header; raises :class:`InterfaceError` if it could not start."""
        head = self.chunks.read_exact(4)
        if head is None or int.from_bytes(head, "little") != SHB:
            self.proc.wait()
            self._err_thread.join(timeout=2)
            raise InterfaceError(explain(self.stderr, self.interface))
        self.chunks.pos -= 4
        self.reader = PcapngReader(self.chunks, self.batch_size)
        return self.reader

    def batches(self) -> Iterator[PacketBatch]:
        reader = self.reader or self.open()
        yield from reader.batches(0)

    def stop(self) -> None:
        """Ask dumpcap to stop: it flushes what it holds into the pipe and exits (the reader then ends)."""
        if not self._stopping and self.proc.poll() is None:
            self._stopping = True
            if self.stopper is not None:
                self.stopper.interrupt()
                return
            try:
                self.proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass

    def close(self) -> DumpcapCounts | None:
        """Stop dumpcap if needed, wait for it, and return its final counts."""
        self.stop()
        try:
            self.proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            if self.stopper is not None:
                self.stopper.kill()
            else:
                self.proc.kill()
            self.proc.wait()
        if self.stopper is not None:
            self.stopper.done()
        self._err_thread.join(timeout=2)
        self.chunks.close()
        self.counts = parse_counts(self.stderr)
        return self.counts

    @property
    def failed(self) -> str | None:
        """dumpcap's complaint when it ended with an error by itself, else None."""
        rc = self.proc.poll()
        if rc is None or self._stopping:
            return None
        if rc != 0 or "dumpcap:" in self.stderr:
            return explain(self.stderr, self.interface)
        return None

