#!/usr/bin/env python3
"""A stand-in for dumpcap that times its own writes: how long the capture side waits on iotwatch.

Writes the benchmark capture (bench/data/live.pcap, built by bench/live.py) as a pcapng stream on
stdout at a fixed rate, looping, with the current time as each packet's timestamp, in pieces of
one millisecond's packets, and measures every write. A real dumpcap that cannot write stops
reading its kernel buffer and drops; this one records how long its writes were blocked instead,
which isolates the pipe between the capture and the analysis from the kernel and the sender.
On SIGINT/SIGTERM it stops, appends a JSON line to ``STANDIN_OUT`` (total seconds blocked in
writes of more than 2 ms, the longest write, how far it fell behind its schedule) and prints
dumpcap's closing line, so that iotwatch reads it like dumpcap's.

    STANDIN_RATE=100000 STANDIN_OUT=/tmp/standin.jsonl IOTWATCH_DUMPCAP=bench/standin_dumpcap.py \\
        iotwatch capture -i lo --out /tmp/out --quiet --window 10

(``-i lo`` only satisfies the interface check; nothing is captured from it. The ``python3`` on
``PATH`` needs numpy: activate the project's .venv first.) With ``STANDIN_GO=FILE`` the packets
are sent only while FILE exists (bench/receive.py creates it when the analysis is ready, as
bench/live.py starts tcpreplay, and removes it to pause the stream, without ending it).
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
import time
from pathlib import Path

import numpy as np

CAPTURE = Path(__file__).resolve().parent / "data" / "live.pcap"


def pcapng_blocks(pcap: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The packets of a little-endian pcap file as pcapng enhanced packet blocks: (bytes, block
    starts, block lengths)."""
    raw = np.fromfile(pcap, np.uint8)
    b = raw.tobytes()
    offs, lens, off = [], [], 24
    while off + 16 <= len(b):
        incl = struct.unpack_from("<I", b, off + 8)[0]
        offs.append(off + 16)
        lens.append(incl)
        off += 16 + incl
    n = len(lens)
    caplen = np.array(lens, np.int64)
    blen = 32 + (caplen + 3) // 4 * 4
    starts = np.concatenate([[0], np.cumsum(blen)[:-1]])
    out = np.zeros(int(blen.sum()), np.uint8)
    for at, value in ((0, np.full(n, 6)), (4, blen), (20, caplen), (24, caplen)):
        for k in range(4):
            out[starts + at + k] = (value >> (8 * k)) & 0xFF
    for k in range(4):
        out[starts + blen - 4 + k] = (blen >> (8 * k)) & 0xFF
    for i in range(n):
        out[starts[i] + 28 : starts[i] + 28 + lens[i]] = raw[offs[i] : offs[i] + lens[i]]
    return out, starts, blen


def main() -> None:
    rate = float(os.environ.get("STANDIN_RATE", "100000"))
    report = Path(os.environ.get("STANDIN_OUT", "standin.jsonl"))
    out, starts, blen = pcapng_blocks(CAPTURE)
    n = len(starts)
    words = out.view("<u4")  # the timestamps are written as 32-bit words: two stores per packet, not eight
    hi_at = (starts + 12) // 4
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    fd = sys.stdout.fileno()
    shb = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
    idb = struct.pack("<IIHHII", 1, 20, 1, 0, 262144, 20)  # Ethernet, microseconds
    os.write(fd, shb + idb)
    go = os.environ.get("STANDIN_GO")
    while go and not stop and not Path(go).exists():  # the packets start once this file exists
        time.sleep(0.05)
    t0 = time.monotonic()
    sent = i = writes = 0
    blocked = longest = behind = 0.0
    while not stop:
        if go and not Path(go).exists():  # ... and pause while it is gone
            time.sleep(0.05)
            continue
        due = int((time.monotonic() - t0) * rate) - sent
        behind = max(behind, due / rate)
        if due <= 0:
            time.sleep(0.001)
            continue
        k = min(due, n - i, 20_000)
        us = int(time.time() * 1e6)
        words[hi_at[i : i + k]] = us >> 32  # (little-endian words: the blocks are 4-byte aligned)
        words[hi_at[i : i + k] + 1] = us & 0xFFFFFFFF
        a = starts[i]
        piece = memoryview(out[a : a + int(blen[i : i + k].sum())])  # type: ignore[arg-type]
        w0 = time.monotonic()
        while len(piece):
            try:
                piece = piece[os.write(fd, piece) :]
            except InterruptedError:
                continue
        took = time.monotonic() - w0
        writes += 1
        longest = max(longest, took)
        if took > 0.002:
            blocked += took
        sent += k
        i = (i + k) % n
    with report.open("a") as f:
        f.write(json.dumps({"rate": rate, "sent": sent, "seconds": round(time.monotonic() - t0, 2),
                            "blocked_s": round(blocked, 2), "longest_write_s": round(longest, 3),
                            "behind_max_s": round(behind, 3), "writes": writes}) + "\n")
    sys.stderr.write(f"Packets received/dropped on interface 'lo': {sent}/0 "
                     "(pcap:0/dumpcap:0/flushed:0/ps_ifdrop:0) (100.0%)\n")


if __name__ == "__main__":
    main()
