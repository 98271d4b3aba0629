"""An in-memory packet source: frames given as bytes become batches, no file needed.

The equivalent of httpx's MockTransport for our pipeline: flows, device windows and (later)
detectors are tested from frames built in the test itself, and a live capture loop can hand
over what it received the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from .batch import LINKTYPE_ETHERNET, PacketBatch


def frames_to_batch(frames: Iterable[tuple[float | int, bytes]] | Iterable[tuple[float | int, bytes, int]],
                    linktype: int = LINKTYPE_ETHERNET, *, time_in_ns: bool = False, file_index: int = 0,
                    frame0: int = 1) -> PacketBatch:
    """Pack (timestamp, frame bytes[, link type]) tuples into one batch. Timestamps are epoch
    seconds (float) unless ``time_in_ns``; wire length is the frame length."""
    rows = list(frames)
    n = len(rows)
    lengths = np.array([len(r[1]) for r in rows], np.int64)
    off = np.zeros(n, np.int64)
    if n:
        np.cumsum(lengths[:-1], out=off[1:])
    buf = np.frombuffer(b"".join(r[1] for r in rows) or b"\0", np.uint8).copy()
    ts = np.array([int(r[0]) if time_in_ns else round(float(r[0]) * 1e9) for r in rows], np.int64)
    lt = np.array([r[2] if len(r) > 2 else linktype for r in rows], np.int32)  # type: ignore[misc]
    return PacketBatch(buf, off, lengths, lengths.copy(), ts, lt, file_index, frame0)


def batches(frames: Iterable[tuple[float, bytes]], size: int = 4096, linktype: int = LINKTYPE_ETHERNET) -> Iterator[PacketBatch]:
    """Split a stream of (epoch seconds, frame bytes) into batches of ``size``."""
    chunk: list[tuple[float, bytes]] = []
    frame = 1
    for f in frames:
        chunk.append(f)
        if len(chunk) == size:
            yield frames_to_batch(chunk, linktype, frame0=frame)
            frame += size
            chunk = []
    if chunk:
        yield frames_to_batch(chunk, linktype, frame0=frame)
