"""Label files: ground truth per capture and host, for training and evaluation (the one reader).

A label file is tab-separated with a header row (the columns of ../shared/pcaps/LABELS.tsv;
``iotwatch synth`` writes the same, in :data:`COLUMNS` order):

    file          capture path, relative to the label file's folder (or absolute)
    host_ip       the host's IP address (may be empty when host_mac is given)
    host_mac      the host's MAC address (may be empty when host_ip is given)
    behaviour     normal | victim | scan | bruteforce | flood | exfil | c2
    first_bad_ts  epoch seconds of the host's first packet of the behaviour (empty for normal/victim)
    end_ts        optional: epoch seconds of its last packet of the behaviour (empty: to the end)
    device_type   optional: camera, recorder, printer... (the inventory's types, or unknown)
    product       optional: the product model (``DS-2CD2043G0``, ``EdnetCam``): rows that name one
                  are the exemplars of the product catalogue ``train --kind device_type`` builds

Other columns (split, evidence, confidence...) are kept and ignored. One row per host and
behaviour; a host with several behaviours has several rows.

A row names a device of its capture (:meth:`HostLabel.device_keys`) by its MAC when the capture
has a device with that MAC, else by its address: the device keyed on it (a capture without
Ethernet); a row without a MAC and a local address names the devices that used the address. An
external address behind a MAC (a server on the internet, seen through the gateway) is no
device of the site: such a row names nothing.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..records import DeviceRecord
from ..vocab import CATEGORIES, LABELS

#: what a host did (:mod:`iotwatch.vocab`); normal and victim hosts are not misbehaving
BEHAVIOURS = LABELS
BAD = CATEGORIES
REQUIRED = ("file", "host_ip", "host_mac", "behaviour")
#: the columns ``iotwatch synth`` writes: LABELS.tsv's, then end_ts
COLUMNS = ("file", "split", "host_ip", "host_mac", "device_type", "behaviour", "first_bad_ts", "evidence",
           "confidence", "end_ts")


@dataclass(frozen=True, slots=True)
class HostLabel:
    capture: Path
    host_ip: str
    host_mac: str
    behaviour: str
    first_ts: float | None
    end_ts: float | None
    device_type: str
    source: Path  # the label file
    line: int
    product: str = ""  # the product model, when the row names one

    @property
    def bad(self) -> bool:
        return self.behaviour in BAD

    @property
    def host(self) -> str:
        return self.host_mac or self.host_ip

    @property
    def where(self) -> str:
        """``LABELS.tsv line 12``: where the row is, for a message."""
        return f"{self.source} line {self.line}"

    def device_keys(self, devices: Mapping[str, DeviceRecord], local: Callable[[str], bool]) -> list[str]:
        """The devices of a capture this row names (see the module docstring); [] when none.
        ``local``: is an address local (:meth:`iotwatch.addrs.LocalNets.is_local`)."""
        if self.host_mac:
            by_mac = [k for k, r in devices.items() if r.mac == self.host_mac]
            if by_mac:
                return by_mac
        if self.host_ip in devices:
            return [self.host_ip]
        if not self.host_mac and local(self.host_ip):
            return [k for k, r in devices.items() if self.host_ip in r.ips]
        return []


def _ts(v: str, path: Path, line: int, column: str) -> float | None:
    v = (v or "").strip()
    if not v:
        return None
    try:
        return float(v)
    except ValueError:
        raise InputError(path, f"line {line}: {column} {v!r} is not epoch seconds") from None


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """The rows of a label file as text, columns checked (what :func:`read_labels` types)."""
    p = Path(path)
    try:
        f = open(p, newline="")
    except OSError as e:
        raise InputError(p, f"cannot read the label file: {e.strerror or e}") from None
    with f:
        try:
            reader = csv.DictReader(f, delimiter="\t")
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(p, f"not a label file: missing column(s) {', '.join(missing)} "
                                    f"(tab-separated, header: file host_ip host_mac behaviour first_bad_ts ...)")
            return list(reader)
        except (UnicodeDecodeError, csv.Error) as e:
            raise InputError(p, f"not a label file: {e}") from None


def read_labels(path: str | Path) -> list[HostLabel]:
    """Read and check one label file (or an IoT-23 ``conn.log.labeled``: iotwatch.zeek.labels)."""
    p = Path(path)
    from ..zeek.read import sniff

    if p.is_file() and sniff(p) is not None:
        from ..zeek.labels import host_labels

        return host_labels(p)
    out: list[HostLabel] = []
    for k, row in enumerate(read_rows(p), start=2):
        beh = (row.get("behaviour") or "").strip()
        if beh not in BEHAVIOURS:
            raise InputError(p, f"line {k}: behaviour {beh!r} is not one of {', '.join(BEHAVIOURS)}")
        ip, mac = (row.get("host_ip") or "").strip(), (row.get("host_mac") or "").strip().lower()
        if not ip and not mac:
            raise InputError(p, f"line {k}: neither host_ip nor host_mac")
        cap = Path((row.get("file") or "").strip())
        if not str(cap) or str(cap) == ".":
            raise InputError(p, f"line {k}: empty file column")
        if not cap.is_absolute():
            cap = p.parent / cap
        out.append(HostLabel(cap, ip, mac, beh, _ts(row.get("first_bad_ts", ""), p, k, "first_bad_ts"),
                             _ts(row.get("end_ts", ""), p, k, "end_ts"), (row.get("device_type") or "").strip(),
                             p, k, (row.get("product") or "").strip()))
    return out


def read_many(paths: Iterable[str | Path]) -> list[HostLabel]:
    out: list[HostLabel] = []
    for p in paths:
        out += read_labels(p)
    return out


def by_capture(labels: list[HostLabel]) -> dict[Path, list[HostLabel]]:
    out: dict[Path, list[HostLabel]] = {}
    for lab in labels:
        out.setdefault(lab.capture, []).append(lab)
    return out
