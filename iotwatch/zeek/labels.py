"""IoT-23's label columns → host labels for ``train`` and ``evaluate``.

IoT-23 (Stratosphere Lab, 2020) publishes each capture's Zeek ``conn.log.labeled``: every
connection carries ``label`` (Benign / Malicious) and ``detailed-label`` (what the malware was
doing). iotwatch labels hosts and time ranges, not connections, so a labeled conn.log becomes
one label per (originating local host, behaviour): from the first such connection's start to the
last one's end; a local host with only benign connections is ``normal``. The conn.log is both
the label file and the "capture" analysed (``analyze`` reads conn.log files).

Detailed labels → behaviours (docs/zeek.md explains each choice):

======================================  ==========
IoT-23 detailed-label                   behaviour
======================================  ==========
PartOfAHorizontalPortScan               scan
PartOfAHorizontalPortScan-Attack        scan
Okiru                                   scan
Okiru-Attack                            bruteforce
Attack                                  bruteforce
DDoS                                    flood
C&C                                     c2
C&C-HeartBeat                           c2
C&C-HeartBeat-Attack                    c2
C&C-HeartBeat-FileDownload              c2
C&C-FileDownload                        c2
C&C-Torii                               c2
C&C-Mirai                               c2
C&C-PartOfAHorizontalPortScan           c2
FileDownload                            c2
======================================  ==========

IoT-23 has no exfiltration label. Malicious connections whose detailed label is unset or not in
the table name no behaviour: their host gets no label from them (neither bad nor normal).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..addrs import LocalNets, addr_classes, parse_ips
from ..errors import InputError
from ..learn.labels import HostLabel
from ..vocab import CATEGORIES
from .read import read_conn_log

DETAILED: dict[str, str] = {
    "PartOfAHorizontalPortScan": "scan",
    "PartOfAHorizontalPortScan-Attack": "scan",
    "Okiru": "scan",
    "Okiru-Attack": "bruteforce",
    "Attack": "bruteforce",
    "DDoS": "flood",
    "C&C": "c2",
    "C&C-HeartBeat": "c2",
    "C&C-HeartBeat-Attack": "c2",
    "C&C-HeartBeat-FileDownload": "c2",
    "C&C-FileDownload": "c2",
    "C&C-Torii": "c2",
    "C&C-Mirai": "c2",
    "C&C-PartOfAHorizontalPortScan": "c2",
    "FileDownload": "c2",
}


def behaviours(label: pa.Array, detailed: pa.Array) -> np.ndarray:
    """Per connection: its behaviour ("normal", one of the five, or "" for malicious without a
    usable detailed label, and for rows without labels)."""
    lab = pc.utf8_lower(pc.utf8_trim_whitespace(pc.fill_null(label, ""))).to_numpy(zero_copy_only=False)
    det = pc.utf8_trim_whitespace(pc.fill_null(detailed, "")).to_numpy(zero_copy_only=False)
    out = np.full(len(lab), "", dtype=object)
    out[lab == "benign"] = "normal"
    mal = lab == "malicious"
    for name, beh in DETAILED.items():
        out[mal & (det == name)] = beh
    return out


def host_labels(path: str | Path, local_nets: LocalNets | None = None) -> list[HostLabel]:
    """The host labels of an IoT-23 ``conn.log.labeled`` (raises InputError without label columns)."""
    p = Path(path)
    log = read_conn_log(p)
    t = log.table
    if t.num_rows and t["label"].null_count == t.num_rows:
        raise InputError(p, "a conn.log without IoT-23's label and detailed-label columns: no labels in it")
    beh = behaviours(t["label"], t["detailed_label"])
    _ok, _v6, hi, lo = parse_ips(t["orig_h"])
    local = addr_classes(hi, lo, local_nets or LocalNets()) == 1
    orig = t["orig_h"].to_numpy(zero_copy_only=False)
    start = t["ts"].to_numpy()
    end = start + pc.fill_null(t["duration"], 0.0).to_numpy()
    lines = t["line"].to_numpy()
    out: list[HostLabel] = []
    bad_hosts: set[str] = set()
    for b in CATEGORIES:
        sel = local & (beh == b)
        for host in np.unique(orig[sel]):
            rows = np.flatnonzero(sel & (orig == host))
            bad_hosts.add(str(host))
            out.append(HostLabel(p, str(host), "", b, float(start[rows].min()), float(end[rows].max()), "", p,
                                 int(lines[rows[0]])))
    normal = local & (beh == "normal")
    for host in np.unique(orig[normal]):
        if str(host) not in bad_hosts:
            first = int(lines[np.flatnonzero(normal & (orig == host))[0]])
            out.append(HostLabel(p, str(host), "", "normal", None, None, "", p, first))
    out.sort(key=lambda lab: lab.line)
    return out
