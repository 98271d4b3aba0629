"""Rare frames → per-device signals: a compact, mergeable collector.

:class:`Fingerprints` keeps, per device key, a counter of values per signal kind (see
:mod:`.parse` for the kinds), capped at :data:`MAX_VALUES` distinct values per kind so that a
chatty device (a PC resolving thousands of names) stays small. Two collectors built on two
halves of a capture merge into the collector of the whole (up to the cap).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..addrs import is_unrouted
from .parse import FrameLike, addresses, signals
from .traffic import default_local

MAX_VALUES = 48  # distinct values kept per (device, kind)


class _Addressed(FrameLike, Protocol):
    @property
    def src(self) -> str | None: ...
    @property
    def dst(self) -> str | None: ...


@dataclass(slots=True)
class DeviceSignals:
    """Everything the rare packets said about one device: kind → value → times seen."""

    kinds: dict[str, Counter[str]] = field(default_factory=dict)
    frames: int = 0

    def add(self, kind: str, value: str, n: int = 1) -> None:
        c = self.kinds.get(kind)
        if c is None:
            c = self.kinds[kind] = Counter()
        if value in c or len(c) < MAX_VALUES:
            c[value] += n

    def values(self, kind: str) -> list[str]:
        """Values of ``kind``, most frequent first."""
        c = self.kinds.get(kind)
        return [v for v, _ in c.most_common()] if c else []

    def has(self, kind: str) -> bool:
        return kind in self.kinds

    def count(self, kind: str) -> int:
        c = self.kinds.get(kind)
        return sum(c.values()) if c else 0

    def merge(self, other: DeviceSignals) -> DeviceSignals:
        out = DeviceSignals(frames=self.frames + other.frames)
        for src in (self, other):
            for kind, c in src.kinds.items():
                for v, n in c.items():
                    out.add(kind, v, n)
        return out


@dataclass(slots=True)
class Fingerprints:
    """Per-device signals from rare frames. ``add`` each frame; ``merge`` partial results.

    A fact about an external address seen behind a MAC (a web server's ``Server`` header
    arriving through the gateway) belongs to no device: it is dropped, not pinned on the
    gateway. ``local`` says which addresses are local (default: RFC 1918 and friends).
    """

    devices: dict[str, DeviceSignals] = field(default_factory=dict)
    frames: int = 0
    unparsed: int = 0  # frames that gave no signal (nothing to say, or malformed)
    local: Callable[[str], bool] | None = field(default=None, repr=False, compare=False)

    def add(self, frame: _Addressed) -> None:
        self.frames += 1
        sigs = signals(frame)
        if not sigs:
            self.unparsed += 1
            return
        ips = addresses(frame.l3, bytes(frame.data))
        is_local = self.local or default_local
        for s in sigs:
            key = frame.src if s.who == "src" else frame.dst
            if key is None:
                continue
            if ips is not None and len(key) == 17 and ":" in key:
                ip = ips[0] if s.who == "src" else ips[1]
                if not is_local(ip) and not is_unrouted(ip):
                    continue
            self.device(key).add(s.kind, s.value)
        if frame.src is not None:
            self.device(frame.src).frames += 1

    def device(self, key: str) -> DeviceSignals:
        d = self.devices.get(key)
        if d is None:
            d = self.devices[key] = DeviceSignals()
        return d

    def get(self, key: str) -> DeviceSignals:
        return self.devices.get(key) or DeviceSignals()

    def merge(self, other: Fingerprints) -> Fingerprints:
        out = Fingerprints(frames=self.frames + other.frames, unparsed=self.unparsed + other.unparsed,
                           local=self.local)
        for k in self.devices.keys() | other.devices.keys():
            a, b = self.devices.get(k), other.devices.get(k)
            out.devices[k] = a.merge(b) if a and b else (a or b).merge(DeviceSignals())  # type: ignore[union-attr]
        return out
