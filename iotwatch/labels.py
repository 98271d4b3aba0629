"""Label files: ground truth per capture and host, for training and evaluation.

A label file is tab-separated with a header row (the columns of ../shared/pcaps/LABELS.tsv):

    file          capture path, relative to the label file's folder (or absolute)
    host_ip       the host's IP address (may be empty when host_mac is given)
    host_mac      the host's MAC address (may be empty when host_ip is given)
    behaviour     normal | victim | scan | bruteforce | flood | exfil | c2
    first_bad_ts  epoch seconds of the host's first packet of the behaviour (empty for normal/victim)
    end_ts        optional: epoch seconds of its last packet of the behaviour (empty: to the end)
    device_type   optional: camera, recorder, printer... (the inventory's labels)

Other columns (split, evidence, confidence...) are kept and ignored. One row per host and
behaviour; a host with several behaviours has several rows.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

BEHAVIOURS = ("normal", "victim", "scan", "bruteforce", "flood", "exfil", "c2")
BAD = ("scan", "bruteforce", "flood", "exfil", "c2")
REQUIRED = ("file", "host_ip", "host_mac", "behaviour")


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

    @property
    def bad(self) -> bool:
        return self.behaviour in BAD

    def matches(self, mac: str | None, ips: Iterable[str]) -> bool:
        """Does a device (its MAC and addresses) carry this label?"""
        if self.host_mac:
            return mac is not None and mac == self.host_mac
        return bool(self.host_ip) and self.host_ip in set(ips)

    @property
    def host(self) -> str:
        return self.host_mac or self.host_ip


def _ts(v: str, path: Path, line: int, column: str) -> float | None:
    v = (v or "").strip()
    if not v:
        return None
    try:
        return float(v)
    except ValueError:
        raise InputError(path, f"line {line}: {column} {v!r} is not epoch seconds") from None


def read_labels(path: str | Path) -> list[HostLabel]:
    """Read and check one label file (or an IoT-23 ``conn.log.labeled``: iotwatch.zeek.labels)."""
    p = Path(path)
    from .zeek.read import sniff

    if p.is_file() and sniff(p) is not None:
        from .zeek.labels import host_labels

        return host_labels(p)
    try:
        f = open(p, newline="")
    except OSError as e:
        raise InputError(p, f"cannot read the label file: {e.strerror or e}") from None
    with f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(p, f"not a label file: missing column(s) {', '.join(missing)} "
                                f"(tab-separated, header: file host_ip host_mac behaviour first_bad_ts ...)")
        out: list[HostLabel] = []
        for k, row in enumerate(reader, start=2):
            beh = (row.get("behaviour") or "").strip()
            if beh not in BEHAVIOURS:
                raise InputError(p, f"line {k}: behaviour {beh!r} is not one of {', '.join(BEHAVIOURS)}")
            ip, mac = (row.get("host_ip") or "").strip(), (row.get("host_mac") or "").strip().lower()
            if not ip and not mac:
                raise InputError(p, f"line {k}: neither host_ip nor host_mac")
            cap = Path((row.get("file") or "").strip())
            if not str(cap):
                raise InputError(p, f"line {k}: empty file column")
            if not cap.is_absolute():
                cap = p.parent / cap
            out.append(HostLabel(cap, ip, mac, beh, _ts(row.get("first_bad_ts", ""), p, k, "first_bad_ts"),
                                 _ts(row.get("end_ts", ""), p, k, "end_ts"), (row.get("device_type") or "").strip(),
                                 p, k))
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
