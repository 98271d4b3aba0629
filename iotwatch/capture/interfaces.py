"""The network interfaces of this machine, as Linux shows them in /sys/class/net.

Reading sysfs sends nothing and needs no privilege: this is how ``iotwatch interfaces`` lists the
ports an auditor can capture on, and how a live capture checks its interface and reads the
interface's own counters (its drops, and its transmit counter, which must not move).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import IotwatchError

SYS_NET = Path("/sys/class/net")

#: interface counters that mean "the interface dropped a received frame"
RX_DROP_COUNTERS = ("rx_dropped", "rx_missed_errors", "rx_fifo_errors")


class InterfaceError(IotwatchError):
    """The interface cannot be captured on (missing, down, no permission); the message says what to do."""


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    mac: str | None
    operstate: str  # up, down, unknown (loopback, some virtual links), dormant...
    carrier: bool | None  # None when the link is administratively down (the kernel then hides it)
    speed_mbps: int | None
    rx_packets: int
    rx_bytes: int
    tx_packets: int
    rx_drops: int

    @property
    def usable(self) -> bool:
        """Frames can arrive: the link is up with a carrier (loopback and some virtual links say unknown)."""
        return self.carrier is True and self.operstate in ("up", "unknown")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, ValueError):  # EINVAL for speed/carrier of a down link
        return None


def _int(path: Path) -> int | None:
    v = _read(path)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def counter(name: str, what: str) -> int:
    """One statistics counter of an interface (0 when the driver does not keep it)."""
    return _int(SYS_NET / name / "statistics" / what) or 0


def rx_drops(name: str) -> int:
    return sum(counter(name, c) for c in RX_DROP_COUNTERS)


def interface(name: str) -> Interface | None:
    d = SYS_NET / name
    if not name or "/" in name or not d.is_dir():
        return None
    carrier = _int(d / "carrier")
    speed = _int(d / "speed")
    mac = _read(d / "address")
    return Interface(name=name, mac=mac if mac and mac != "00:00:00:00:00:00" else None,
                     operstate=_read(d / "operstate") or "unknown",
                     carrier=None if carrier is None else carrier == 1,
                     speed_mbps=speed if speed is not None and speed > 0 else None,
                     rx_packets=counter(name, "rx_packets"), rx_bytes=counter(name, "rx_bytes"),
                     tx_packets=counter(name, "tx_packets"), rx_drops=rx_drops(name))


def interfaces() -> list[Interface]:
    """Every interface of this network namespace, by name."""
    try:
        names = sorted(p.name for p in SYS_NET.iterdir())
    except OSError:
        return []
    return [i for i in map(interface, names) if i is not None]


def check(name: str) -> Interface:
    """The interface, if a capture on it can receive frames; else :class:`InterfaceError` saying what to do."""
    itf = interface(name)
    if itf is None:
        known = ", ".join(i.name for i in interfaces()) or "none"
        raise InterfaceError(f"no interface named {name!r} on this machine (interfaces: {known}; "
                             "`iotwatch interfaces` shows their link state)")
    if itf.operstate == "down" and itf.carrier is None:
        raise InterfaceError(f"{name} is administratively down: bring it up with `sudo ip link set {name} up` "
                             "(no address is needed to capture)")
    if itf.carrier is False or itf.operstate in ("down", "lowerlayerdown", "notpresent"):
        raise InterfaceError(f"{name} has no link: plug it into the switch's mirror (SPAN) port and check the cable")
    return itf
