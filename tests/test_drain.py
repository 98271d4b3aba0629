"""The compiled thread that drains dumpcap's pipe (capture/drain.py), without a network: every byte
arrives in order through a backlog much smaller than the stream, the thread reads while the
analysis holds the GIL, the pages a large backlog used go back once the reader has caught up,
the thread's priority is set as asked (and a priority out of range says so), and the reader's
chunk buffers lent to the evidence ring are not written over (capture/dumpcap.py)."""

from __future__ import annotations

import ctypes
import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from iotwatch.capture.drain import H, PipeDrain
from iotwatch.capture.dumpcap import PipeChunks
from iotwatch.capture.pcapng import PcapngReader


def drain_all(d: PipeDrain, total: int, rng: np.random.Generator) -> np.ndarray:
    """Take everything until the pipe ends, in pieces of random sizes at random moments."""
    out = np.empty(total + 1, np.uint8)
    at = 0
    while True:
        ended = d.ended  # (before taking: then 0 bytes taken means nothing more comes)
        k = d.take(out[: min(out.shape[0], at + int(rng.integers(1, 300_000)))], at)
        at += k
        if k == 0:
            if ended:
                return out[:at]
            time.sleep(0.0005 if rng.random() < 0.7 else 0.02)


def test_every_byte_arrives_in_order_through_a_small_backlog() -> None:
    rng = np.random.default_rng(7)
    data = rng.integers(0, 256, 24 << 20, dtype=np.uint8).tobytes()
    r, w = os.pipe()
    d = PipeDrain(r, backlog=1 << 20, keep=256 << 10)  # 24 laps of the ring, often full

    def write() -> None:
        mv, i = memoryview(data), 0
        while i < len(mv):
            i += os.write(w, mv[i : i + int(rng.integers(1, 200_000))])
        os.close(w)

    t = threading.Thread(target=write)
    t.start()
    got = drain_all(d, len(data), np.random.default_rng(8))
    t.join()
    assert got.tobytes() == data
    assert 0 < d.max_backlog <= 1 << 20
    d.close(2)
    os.close(r)


def test_the_thread_reads_while_the_analysis_holds_the_gil() -> None:
    """A writer of 4 MiB into a 64 KiB pipe finishes while this thread holds the GIL the whole
    time (waitpid through ctypes.PyDLL does not release it): only a reader that never needs the
    GIL lets it. (With a reader that did, the writer would be killed by its timeout.)"""
    proc = subprocess.Popen(["timeout", "20", "dd", "if=/dev/zero", "bs=65536", "count=64"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    d = PipeDrain(proc.stdout.fileno(), backlog=8 << 20)
    status = ctypes.c_int(0)
    libc = ctypes.PyDLL(None)  # calls keep the GIL
    assert libc.waitpid(proc.pid, ctypes.byref(status), 0) == proc.pid
    proc.returncode = 0  # reaped above
    assert os.WIFEXITED(status.value) and os.WEXITSTATUS(status.value) == 0  # dd wrote everything
    got = drain_all(d, 4 << 20, np.random.default_rng(1))
    assert got.shape[0] == 4 << 20 and not got.any()
    d.close(2)
    proc.stdout.close()


def _rss_kb(address: int, size: int) -> int:
    """Resident kB of the pages in [address, address + size) (``mincore``: the range alone, not the
    mapping /proc/self/smaps shows, which the kernel may merge with a neighbouring one)."""
    page = os.sysconf("SC_PAGE_SIZE")
    vec = (ctypes.c_ubyte * (size // page))()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    assert libc.mincore(address, size, vec) == 0, os.strerror(ctypes.get_errno())
    return sum(v & 1 for v in vec) * page // 1024


def test_the_pages_of_a_large_backlog_go_back_when_the_reader_catches_up() -> None:
    r, w = os.pipe()
    d = PipeDrain(r, backlog=16 << 20, keep=1 << 20)
    address, size = d.buf.ctypes.data, d.buf.shape[0]
    blob = np.random.default_rng(0).integers(0, 256, 6 << 20, dtype=np.uint8).tobytes()
    mv, i = memoryview(blob), 0
    while i < len(mv):  # the reader takes nothing meanwhile: the backlog holds all of it
        i += os.write(w, mv[i : i + 65536])
    out = np.empty(8 << 20, np.uint8)
    deadline = time.monotonic() + 20
    while d.held < len(blob) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert d.held == len(blob) and _rss_kb(address, size) >= 6 << 10
    assert d.take(out, 0) == len(blob) and out[: len(blob)].tobytes() == blob
    # caught up: the thread goes on from the front and gives back what lies past `keep`
    while d.state[H] % d.buf.shape[0] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert d.state[H] % d.buf.shape[0] == 0
    assert _rss_kb(address, size) <= (1 << 10) + 8
    os.write(w, b"after")  # and the stream goes on, from the front
    got = b""
    while len(got) < 5 and time.monotonic() < deadline:
        k = d.take(out, 0)
        got += out[:k].tobytes()
        time.sleep(0.001)
    assert got == b"after"
    os.close(w)
    d.close(2)
    os.close(r)


def test_the_thread_runs_at_the_priority_asked() -> None:
    r, w = os.pipe()
    d = PipeDrain(r, backlog=1 << 20, nice=5)  # lowering one's own priority is always allowed
    assert d.nice == 5 and os.getpriority(os.PRIO_PROCESS, d._t.native_id) == 5  # type: ignore[arg-type]
    os.close(w)
    d.close(2)
    os.close(r)
    if os.geteuid() != 0:
        pytest.skip("a negative nice value needs root (or CAP_SYS_NICE)")
    r, w = os.pipe()
    d = PipeDrain(r, backlog=1 << 20, nice=-10)
    assert d.nice == -10 and os.getpriority(os.PRIO_PROCESS, d._t.native_id) == -10  # type: ignore[arg-type]
    os.close(w)
    d.close(2)
    os.close(r)


def test_a_capture_priority_out_of_range_says_so(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "iotwatch", "capture", "-i", "lo", "--out", str(tmp_path / "out"),
                        "--capture-nice", "-21"], capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "--capture-nice" in r.stderr and "between -20 and 19" in r.stderr
    assert not (tmp_path / "out").exists()


def _pcapng_stream(packets: int, rng: np.random.Generator) -> tuple[bytes, list[bytes]]:
    """A pcapng stream (section, interface, enhanced packet blocks of random sizes and bytes)
    and its frames."""
    shb = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
    idb = struct.pack("<IIHHII", 1, 20, 1, 0, 262144, 20)
    frames, parts = [], [shb, idb]
    for k in range(packets):
        frame = rng.integers(0, 256, int(rng.integers(60, 1515)), dtype=np.uint8).tobytes()
        pad = frame + bytes(-len(frame) % 4)
        ts = 1_700_000_000_000_000 + k
        parts.append(struct.pack("<IIIIIII", 6, 32 + len(pad), 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame))
                     + pad + struct.pack("<I", 32 + len(pad)))
        frames.append(frame)
    return b"".join(parts), frames


def test_lent_chunk_buffers_are_never_written_over_and_every_packet_arrives() -> None:
    """The evidence ring writes a batch's blocks from the pipe reader's chunk buffer on its own
    thread (capture/ring.py ``done``): while lent, those bytes must not change, although the
    reader goes on filling (small chunks here: the unconsumed bytes move to a spare buffer at
    almost every fill), and the packets still arrive whole and in order."""
    rng = np.random.default_rng(11)
    stream, frames = _pcapng_stream(20_000, rng)
    r, w = os.pipe()
    f = os.fdopen(r, "rb", buffering=0)
    chunks = PipeChunks(f, Path("test (live)"), on_idle=lambda: None, chunk=64 << 10, backlog=1 << 20)

    def write() -> None:
        sizes = np.random.default_rng(12)
        mv, i = memoryview(stream), 0
        try:
            while i < len(mv):
                i += os.write(w, mv[i : i + int(sizes.integers(1, 100_000))])
        except BrokenPipeError:  # the test failed and closed the pipe
            pass
        finally:
            os.close(w)

    t = threading.Thread(target=write, daemon=True)
    t.start()
    reader = PcapngReader(chunks, batch_size=97)
    loans: list[tuple[np.ndarray, bytes, object]] = []  # (the lent view, its bytes then, give back)
    got: list[bytes] = []
    checked = 0
    try:
        for b in reader.batches():
            got += [b.buf[o : o + c].tobytes() for o, c in zip(b.off.tolist(), b.caplen.tolist(), strict=True)]
            start, end = reader.span
            view = b.buf[start:end]
            loans.append((view, view.tobytes(), chunks.lend()))
            while len(loans) > int(rng.integers(0, 6)):  # given back late, in order (as the ring's writer does)
                view, then, give_back = loans.pop(0)
                assert view.tobytes() == then  # not written over while lent
                give_back()  # type: ignore[operator]
                checked += 1
        for view, then, give_back in loans:
            assert view.tobytes() == then
            give_back()  # type: ignore[operator]
    finally:
        chunks._drain.close(2)  # (a failed test leaves no thread behind: the writer sees the pipe close)
        f.close()
    t.join(10)
    assert got == frames and not reader.problems
    assert checked > 100 and len(chunks._spare) <= 8  # buffers come back and are reused, not piled up
