"""Ground-truth labels of generated captures, in the columns of ``../shared/pcaps/LABELS.tsv``
(:data:`iotwatch.learn.labels.COLUMNS`; :mod:`iotwatch.learn.labels` reads them back).

One row per (host, behaviour): ``file, split, host_ip, host_mac, device_type, behaviour,
first_bad_ts, evidence, confidence`` plus ``end_ts`` at the end. ``first_bad_ts`` and ``end_ts``
are the epoch seconds of the first and last packet *sent by that host* that belong to the
behaviour; both are empty for ``normal`` and ``victim`` rows (as in LABELS.tsv). ``split`` is
always ``synthetic`` and ``confidence`` ``high`` (the generator knows what it wrote). Internet
hosts (victims of a brute force or a flood) carry the router's MAC on the wire, so their
``host_mac`` is empty and they are matched by ``host_ip``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..learn.labels import COLUMNS
from .sessions import Host
from .wire import mac_text


@dataclass(slots=True)
class Label:
    host_ip: str
    host_mac: str
    device_type: str
    behaviour: str
    evidence: str
    first_ts: float | None = None
    end_ts: float | None = None

    @classmethod
    def normal(cls, host: Host, evidence: str) -> Label:
        return cls(host.ip_text, mac_text(host.mac), host.device_type, "normal", evidence)

    @classmethod
    def victim(cls, host: Host, evidence: str, *, local: bool = False) -> Label:
        return cls(host.ip_text, mac_text(host.mac) if local else "", host.device_type, "victim", evidence)

    def row(self, file: str) -> dict[str, str]:
        def ts(v: float | None) -> str:
            return "" if v is None else f"{v:.6f}"

        return {"file": file, "split": "synthetic", "host_ip": self.host_ip, "host_mac": self.host_mac,
                "device_type": self.device_type, "behaviour": self.behaviour, "first_bad_ts": ts(self.first_ts),
                "evidence": self.evidence, "confidence": "high", "end_ts": ts(self.end_ts)}


def labels_path(pcap: Path) -> Path:
    """FILE.pcap → FILE.labels.tsv"""
    return pcap.with_name(pcap.name.removesuffix(".pcap") + ".labels.tsv")


def write_labels(path: Path, file: str, labels: list[Label]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, delimiter="\t", lineterminator="\n")
        w.writeheader()
        for label in labels:
            w.writerow(label.row(file))
