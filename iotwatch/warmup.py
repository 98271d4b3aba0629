"""Start-up: the compiled kernels loaded (or compiled) before the clock starts.

Like imports, this is paid once per process: :class:`~iotwatch.pipeline.Pipeline` calls
:func:`load_kernels` when it is made, and its ``elapsed_s`` counts from after it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .settings import Settings

_loaded = False


def warm_frames() -> list[tuple[float, bytes]]:
    """A few minutes of a tiny site, in frames: TCP with a handshake and data both ways, an
    unanswered SYN, DNS, ARP, to local and external peers, over three windows."""
    import struct

    def eth(src: int, dst: int, etype: int, body: bytes) -> bytes:
        return dst.to_bytes(6, "big") + src.to_bytes(6, "big") + struct.pack("!H", etype) + body

    def ip4(src: int, dst: int, proto: int, l4: bytes) -> bytes:
        return struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0, src, dst) + l4

    def tcp(sp: int, dp: int, seq: int, flags: int, data: bytes = b"") -> bytes:
        return struct.pack("!HHIIBBHHH", sp, dp, seq, 0, 0x50, flags, 8192, 0, 0) + data

    def udp(sp: int, dp: int, data: bytes) -> bytes:
        return struct.pack("!HHHH", sp, dp, 8 + len(data), 0) + data

    cam, rec, gw = 0x0012_3456_0001, 0x0012_3456_0002, 0x0012_3456_00FE
    a, b, ext = 0xC0A8_0114, 0xC0A8_0115, 0x5DB8_D822
    dns = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"
    arp = bytes.fromhex("0001080006040001") + cam.to_bytes(6, "big") + a.to_bytes(4, "big") + bytes(6) + b.to_bytes(4, "big")
    out = []
    for k, t0 in enumerate((1.0, 61.0, 150.0)):
        sp = 40000 + k
        out += [
            (t0, eth(cam, rec, 0x0800, ip4(a, b, 6, tcp(sp, 554, 1, 0x02)))),
            (t0 + 0.001, eth(rec, cam, 0x0800, ip4(b, a, 6, tcp(554, sp, 9, 0x12)))),
            (t0 + 0.002, eth(cam, rec, 0x0800, ip4(a, b, 6, tcp(sp, 554, 2, 0x18, b"OPTIONS rtsp://x/ RTSP/1.0\r\n\r\n")))),
            (t0 + 0.003, eth(rec, cam, 0x0800, ip4(b, a, 6, tcp(554, sp, 10, 0x18, b"RTSP/1.0 200 OK\r\n\r\n")))),
            (t0 + 0.004, eth(cam, gw, 0x0800, ip4(a, ext, 6, tcp(sp, 443, ext, 0x02)))),
            (t0 + 0.005, eth(cam, gw, 0x0800, ip4(a, 0x08080808, 17, udp(sp, 53, dns)))),
            (t0 + 0.006, eth(gw, cam, 0x0800, ip4(0x08080808, a, 17, udp(53, sp, dns)))),
            (t0 + 0.007, eth(cam, 0xFFFF_FFFF_FFFF, 0x0806, arp)),
        ]
    return out


def load_kernels() -> None:
    """Load the compiled kernels from numba's cache (or compile them) before the clock starts:
    like imports, this is start-up, paid once per process.

    numba keeps one machine-code version per argument layout, and a one-element array counts
    as contiguous where a real batch's column is strided: so the warm-up reads a small capture
    of several packets, both as pcap and pcapng, through the whole pipeline with the detector
    and the inventory, and gives every other kernel arrays of the layouts a real run passes."""
    global _loaded
    if _loaded:
        return
    import tempfile

    from .bundle import _forest_proba
    from .capture.write import write_pcap, write_pcapng
    from .detect import Detector, DetectSettings
    from .detect.rules import _screen, screened_groups
    from .inventory.analyser import Inventory
    from .pipeline import Pipeline, run

    small = Settings(max_flows=1024, max_devices=64)
    frames = warm_frames()
    try:
        with tempfile.TemporaryDirectory(prefix="iotwatch-warm-") as tmp:
            # both readers' loops load: a classic pcap and a pcapng of the same frames
            for name, write in (("warm.pcap", write_pcap), ("warm.pcapng", write_pcapng)):
                write(Path(tmp) / name, frames)
                pipe, _captures = run([Path(tmp) / name], small, [], detector=Detector(DetectSettings(model=None)), inventory=Inventory(),
                                      _warm=False)
                pipe.finish()
    except OSError:  # no writable temporary folder: warm up from memory (the readers load when first used)
        from .capture.memory import frames_to_batch

        pipe = Pipeline(small, [], detector=Detector(DetectSettings(model=None)), inventory=Inventory(), _warm=False)
        pipe.feed(frames_to_batch(frames))
        pipe.finish()
    z = np.zeros(2, np.int64)
    _screen(np.zeros(2, np.uint64), np.zeros(2), np.zeros(2), 2, 0.0, 1.0, np.zeros(2, np.uint8))
    screened_groups(np.zeros(2, np.uint64), np.zeros(2), np.zeros(2), 2, 0.0, 1.0)  # (its kernel for events in time order)
    _forest_proba(np.zeros((2, 1)), z, np.full(2, -1, np.int64), z, z, np.zeros(2), np.ones((2, 1)), np.zeros((2, 1)))
    _loaded = True


