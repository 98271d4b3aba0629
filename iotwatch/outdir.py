"""An ``analyze`` output folder → the run it records (alerts, devices, stats, windows, flows).

The report, the evidence pack and the before/after comparison all start from a folder that
``iotwatch analyze --out DIR`` wrote. This module reads it back: ``events.jsonl`` (device, alert
and stats events; flow events are skipped), ``windows.parquet`` and, on request, rows of
``flows.parquet/``. A missing or malformed file is an :class:`~iotwatch.errors.InputError` naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from .errors import InputError

EVENTS = "events.jsonl"
WINDOWS = "windows.parquet"
FLOWS = "flows.parquet"


@dataclass(slots=True)
class Run:
    """What one ``analyze`` run wrote, as plain records (events as their JSON dicts)."""

    folder: Path
    devices: list[dict[str, Any]] = field(default_factory=list)  # device events, in file order
    alerts: list[dict[str, Any]] = field(default_factory=list)  # alert events, in file order
    stats: dict[str, Any] = field(default_factory=dict)  # the final stats event
    windows: pa.Table | None = None  # windows.parquet (None when absent)

    def device(self, key: str) -> dict[str, Any] | None:
        """The device event of a MAC (or, without Ethernet, an IP), or None."""
        for d in self.devices:
            if d.get("mac") == key or (d.get("mac") is None and key in d.get("ips", [])):
                return d
        return None

    def alerts_of(self, dev: dict[str, Any]) -> list[dict[str, Any]]:
        """The alert events raised for a device event, in time order."""
        key = device_key(dev)
        out = [a for a in self.alerts if alert_device(a) == key]
        return sorted(out, key=lambda a: float(a.get("first_ts", 0.0)))

    @property
    def alerted(self) -> list[dict[str, Any]]:
        """Device events with at least one alert, by first alert time."""
        keys = {alert_device(a) for a in self.alerts}
        devs = [d for d in self.devices if device_key(d) in keys]
        return sorted(devs, key=lambda d: min(float(a["first_ts"]) for a in self.alerts_of(d)))

    @property
    def span(self) -> tuple[float, float] | None:
        """First and last packet time of the run (epoch s), from its devices."""
        if not self.devices:
            return None
        return (min(float(d["first_seen"]) for d in self.devices), max(float(d["last_seen"]) for d in self.devices))

    def flows(self, flow_ids: set[int] | None = None) -> pa.Table:
        """Rows of flows.parquet (all, or those with ``flow_id`` in ``flow_ids``)."""
        return read_flows(self.folder, flow_ids)


def device_key(dev: dict[str, Any]) -> str:
    """The key a device is known by: its MAC, or its (first) IP without Ethernet."""
    if dev.get("mac"):
        return str(dev["mac"])
    ips = dev.get("ips") or []
    return str(ips[0]) if ips else ""


def alert_device(alert: dict[str, Any]) -> str:
    return str(alert.get("src_mac") or alert.get("src_ip") or "")


def load(folder: str | Path, *, windows: bool = True) -> Run:
    """Read an output folder of ``iotwatch analyze``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "no such output folder (give the --out folder of `iotwatch analyze`)")
    path = folder / EVENTS
    if not path.is_file():
        raise InputError(folder, f"has no {EVENTS}: not an output folder of `iotwatch analyze`")
    run = Run(folder)
    try:
        with open(path, encoding="utf-8") as f:
            for no, line in enumerate(f, 1):
                if not line.strip() or '"event_type":"flow"' in line[:40]:
                    continue
                try:
                    ev = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(path, f"line {no} is not JSON ({e.msg})") from None
                kind = ev.get("event_type") if isinstance(ev, dict) else None
                if kind == "device":
                    run.devices.append(ev)
                elif kind == "alert":
                    run.alerts.append(ev)
                elif kind == "stats":
                    run.stats = ev
    except OSError as e:
        raise InputError(path, f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise InputError(path, "is not UTF-8 text") from None
    if windows and (folder / WINDOWS).is_file():
        import pyarrow.parquet as pq

        try:
            run.windows = pq.read_table(folder / WINDOWS)
        except (OSError, pa.ArrowException) as e:
            raise InputError(folder / WINDOWS, f"cannot be read as Parquet: {e}") from None
    return run


def read_flows(folder: Path, flow_ids: set[int] | None = None) -> pa.Table:
    """flows.parquet of an output folder (the dataset folder, or the single file older runs wrote)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    path = folder / FLOWS
    if not path.exists():
        raise InputError(folder, f"has no {FLOWS}: not an output folder of `iotwatch analyze`")
    try:
        data = ds.dataset(path, format="parquet")
        flt = pc.field("flow_id").isin(pa.array(sorted(flow_ids), pa.uint64())) if flow_ids is not None else None
        return data.to_table(filter=flt)
    except (OSError, pa.ArrowException) as e:
        raise InputError(path, f"cannot be read as Parquet: {e}") from None
