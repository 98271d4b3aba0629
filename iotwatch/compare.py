"""Two runs (before and after a fix) → per device: did each alerted behaviour stop, how did its
upload change, and what still arrives from outside.

A device is followed by its key (MAC, or IP without Ethernet) from the ``before`` run to the
``after`` run. What arrives from outside is counted from the ``after`` run's flows: flows whose
client is an external address and whose server is the device. They are *inbound attempts* —
someone else's behaviour — and are reported apart from the device's own alerts, so a silenced
recorder that the internet keeps knocking on reads as "silent, still targeted", never as
"misbehaving".
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .addrs import LocalNets
from .errors import OutputError
from .outdir import FLOWS, Run, device_key

#: a device that sent at most this many packets in the ``after`` run is called silent
SILENT_PACKETS = 0


@dataclass(slots=True)
class Inbound:
    """Connection attempts from external addresses to one device (flows it is the server of)."""

    attempts: int = 0  # flows started by an external client
    packets: int = 0  # packets those clients sent
    answered: int = 0  # of the attempts, how many the device answered at all
    sources: int = 0  # distinct external clients
    first_ts: float | None = None
    last_ts: float | None = None
    ports: list[tuple[int, int]] = field(default_factory=list)  # (server port, attempts), most first
    top_sources: list[tuple[str, int]] = field(default_factory=list)  # (address, attempts), most first


@dataclass(slots=True)
class Behaviour:
    category: str
    signature: str
    first_ts: float
    stopped: bool
    after: str | None = None  # the after run's signature when it did not stop


@dataclass(slots=True)
class DeviceChange:
    key: str
    ip: str | None
    vendor: str | None
    device_type: str | None
    behaviours: list[Behaviour]
    new_alerts: list[tuple[str, str]]  # (category, signature) raised only after
    upload_before_bps: float
    upload_after_bps: float | None  # None: the device is not in the after run at all
    packets_out_after: int
    inbound_before: Inbound
    inbound_after: Inbound

    @property
    def upload_ratio(self) -> float | None:
        """Upload rate after / before (× before), None when it had no upload before."""
        if self.upload_after_bps is None or self.upload_before_bps <= 0:
            return None
        return self.upload_after_bps / self.upload_before_bps

    @property
    def silent(self) -> bool:
        return self.packets_out_after <= SILENT_PACKETS

    @property
    def verdict(self) -> str:
        """``still`` (an alert remains or is new), ``silent`` (sends nothing) or ``stopped``."""
        if self.new_alerts or any(not b.stopped for b in self.behaviours):
            return "still"
        return "silent" if self.silent else "stopped"


@dataclass(slots=True)
class Comparison:
    before: str
    after: str
    before_span: tuple[float, float] | None
    after_span: tuple[float, float] | None
    devices: list[DeviceChange]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for d, dev in zip(out["devices"], self.devices, strict=True):
            d["verdict"], d["silent"], d["upload_ratio"] = dev.verdict, dev.silent, dev.upload_ratio
        return out

    def write(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        except OSError as e:
            raise OutputError(f"{path}: cannot write: {e.strerror or e}") from None


def _duration(run: Run) -> float:
    span = run.span
    return max(1.0, span[1] - span[0]) if span else 1.0


def _external(addrs: list[str], nets: LocalNets) -> np.ndarray:
    out = np.zeros(len(addrs), dtype=bool)
    for i, a in enumerate(addrs):
        ip = ipaddress.ip_address(a)
        out[i] = not (ip.is_multicast or ip.is_unspecified or any(ip in n for n in nets.networks if n.version == ip.version))
    return out


def inbound(run: Run, dev: dict[str, Any], nets: LocalNets | None = None) -> Inbound:
    """What external clients sent to ``dev`` in ``run`` (from its flows.parquet)."""
    import pyarrow.dataset as ds

    nets = nets or LocalNets()
    path = run.folder / FLOWS
    if not path.exists():
        return Inbound()
    if dev.get("mac"):
        flt = pc.field("dest_mac") == dev["mac"]
    else:
        flt = pc.field("dest_ip").isin(pa.array(dev.get("ips") or [], pa.string()))
    t = ds.dataset(path, format="parquet").to_table(
        columns=["src_ip", "dest_port", "proto", "pkts_toserver", "pkts_toclient", "start", "end"], filter=flt)
    src = t.column("src_ip").to_pylist()
    ext = _external(src, nets)
    if not ext.any():
        return Inbound()
    t = t.filter(pa.array(ext))
    src = [s for s, e in zip(src, ext, strict=True) if e]
    ports = Counter(int(p) for p in t.column("dest_port").to_numpy())
    sources = Counter(src)
    return Inbound(attempts=t.num_rows, packets=int(pc.sum(t.column("pkts_toserver")).as_py() or 0),
                   answered=int(pc.sum(pc.greater(t.column("pkts_toclient"), 0)).as_py() or 0),
                   sources=len(sources), first_ts=float(pc.min(t.column("start")).as_py()),
                   last_ts=float(pc.max(t.column("end")).as_py()),
                   ports=ports.most_common(8), top_sources=sources.most_common(5))


def compare(before: Run, after: Run) -> Comparison:
    """Follow every device alerted in either run from ``before`` to ``after``."""
    nets = LocalNets()
    keys = list(dict.fromkeys([device_key(d) for d in before.alerted] + [device_key(d) for d in after.alerted]))
    t_before, t_after = _duration(before), _duration(after)
    out: list[DeviceChange] = []
    for key in keys:
        b, a = before.device(key), after.device(key)
        ref = b or a or {}
        after_alerts = after.alerts_of(a) if a else []
        after_cats = {x["alert"]["category"]: x["alert"]["signature"] for x in after_alerts}
        before_alerts = before.alerts_of(b) if b else []
        behaviours = [Behaviour(x["alert"]["category"], x["alert"]["signature"], float(x["first_ts"]),
                                x["alert"]["category"] not in after_cats, after_cats.get(x["alert"]["category"]))
                      for x in before_alerts]
        before_cats = {x["alert"]["category"] for x in before_alerts}
        new = [(x["alert"]["category"], x["alert"]["signature"]) for x in after_alerts
               if x["alert"]["category"] not in before_cats]
        out.append(DeviceChange(
            key=key, ip=(ref.get("ips") or [None])[0], vendor=ref.get("vendor"), device_type=ref.get("device_type"),
            behaviours=behaviours, new_alerts=new,
            upload_before_bps=(float(b["upload_bytes"]) * 8 / t_before) if b else 0.0,
            upload_after_bps=(float(a["upload_bytes"]) * 8 / t_after) if a else None,
            packets_out_after=int(a["packets_out"]) if a else 0,
            inbound_before=inbound(before, b, nets) if b else Inbound(),
            inbound_after=inbound(after, a, nets) if a else Inbound()))
    return Comparison(str(before.folder), str(after.folder), before.span, after.span, out)
