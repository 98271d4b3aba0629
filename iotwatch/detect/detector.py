"""The detector: fed by the pipeline as the input streams, concluded at the end of input."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ..addrs import LocalNets
from ..records import DeviceRecord
from ..sidecar import RareFrame
from . import rules
from .alerts import Alert
from .evidence import Evidence, host_key
from .features import device_features, window_columns
from .verdict import combine


@dataclass(slots=True)
class DetectSettings:
    window_s: float = 60.0
    thresholds: rules.Thresholds = field(default_factory=rules.Thresholds)
    uplink_mbps: float | None = None
    baselines: dict[str, float] = field(default_factory=dict)  # device → upload bytes per window
    model: object | None = None  # a loaded behaviour Bundle (see .model)


class Detector:
    """An analyser (:class:`~iotwatch.analyser.Analyser`): evidence while the input streams,
    rules, the behaviour model and verdicts at the end."""

    wants_rare = True

    def __init__(self, settings: DetectSettings | None = None, local_nets: LocalNets | None = None) -> None:
        self.settings = settings or DetectSettings()
        self.evidence = Evidence(local_nets)
        self._windows: list[pa.Table] = []

    # streaming ------------------------------------------------------------------------------
    def on_flow_records(self, rows: np.ndarray) -> None:
        self.evidence.add_flows(rows)

    def on_rare(self, frames: list[RareFrame]) -> None:
        self.evidence.add_rare(frames)

    def on_windows(self, table: pa.Table) -> None:
        self._windows.append(table)

    # conclusion -----------------------------------------------------------------------------
    def features(self) -> dict[str, tuple[dict[str, np.ndarray], np.ndarray]]:
        """Per device: its window columns and feature matrix."""
        s = self.settings
        out = {}
        for dev, cols in window_columns(self._windows).items():
            X = device_features(cols, self.evidence.devices.get(dev), s.window_s, s.baselines.get(dev))
            out[dev] = (cols, X)
        return out

    def conclude(self, devices: dict[str, DeviceRecord], files: list[str]) -> list[Alert]:
        """Run the rules and the model over everything seen; return alerts, strongest first, and
        attach each device's alerts to its record."""
        s = self.settings
        th = s.thresholds
        uplink_bps = s.uplink_mbps * 1e6 if s.uplink_mbps else None
        feats = self.features()
        probs = self._probabilities(feats)
        alerts: list[Alert] = []
        for dev in sorted(set(self.evidence.devices) | set(feats)):
            d = self.evidence.devices.get(dev)
            cols, X = feats.get(dev, ({}, np.empty((0, 0))))
            findings: list[rules.Finding] = []
            ev = None
            if d is not None:
                ev = _own(d.events(), devices.get(dev))
                findings += rules.scan(d, ev, th, files, cols if cols else {"mirai_syns": np.zeros(0)})
                findings += rules.bruteforce(ev, th, files)
                findings += rules.flood(d, ev, th, files)
                findings += rules.dns_tunnel(d, th, files)
                findings += rules.c2(d, ev, th, files)
                if cols:
                    wt = np.zeros(len(cols["window_start"]), dtype=[("window_start", float), ("upload_bytes", float)])
                    wt["window_start"], wt["upload_bytes"] = cols["window_start"], cols["upload_bytes"]
                    findings += rules.upload_surge(ev, wt, th, files, s.baselines.get(dev), uplink_bps, s.window_s)
            alerts += combine(dev, devices.get(dev), findings, cols, X, s.model, s.window_s, ev, files,
                              probs.get(dev, {}))
        alerts.sort(key=lambda a: (a.severity, -a.score, a.timestamp))
        for a in alerts:
            rec = devices.get(a.device)
            if rec is not None:
                rec.alerts.append(a.summary())
        return alerts

    def _probabilities(self, feats: dict[str, tuple[dict[str, np.ndarray], np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
        """The model's class probabilities for every window of every device, in one call."""
        model = self.settings.model
        devs = [d for d, (_c, X) in feats.items() if len(X)]
        if model is None or not devs:
            return {}
        X = np.vstack([feats[d][1] for d in devs])
        p = model.predict_proba(X)  # type: ignore[attr-defined]
        classes = [str(c) for c in model.classes]  # type: ignore[attr-defined]
        out: dict[str, dict[str, np.ndarray]] = {}
        k = 0
        for d in devs:
            n = len(feats[d][1])
            out[d] = {c: p[k:k + n, j] for j, c in enumerate(classes)}
            k += n
        return out

    def prepare(self) -> float:
        """Open the model now (imports scikit-learn); returns the seconds it took (start-up, not work)."""
        import time

        t = time.perf_counter()
        model = self.settings.model
        if model is not None and "forest" not in model.manifest:  # type: ignore[attr-defined]
            _ = model.estimator  # type: ignore[attr-defined]
        return time.perf_counter() - t

    def baselines(self) -> dict[str, dict[str, float]]:
        """Each device's normal upload (median per window over its windows without alerts), to
        reuse with ``--baseline`` on a later capture."""
        out = {}
        for dev, cols in window_columns(self._windows).items():
            up = cols["upload_bytes"]
            out[dev] = {"upload_bytes_per_window": float(np.median(up)), "window_s": self.settings.window_s,
                        "windows": len(up)}
        return out


def _own(ev: np.ndarray, rec: DeviceRecord | None) -> np.ndarray:
    """The events a device sent from its own addresses: a router's MAC also carries the
    internet's traffic into the site, which is not the router's doing."""
    if rec is None or rec.mac is None or not len(ev):
        return ev
    own_keys = []
    for text in rec.ips:
        a = ipaddress.ip_address(text)
        v = int(a)
        hi, lo = (0, 0xFFFF00000000 | v) if a.version == 4 else (v >> 64, v & ((1 << 64) - 1))
        own_keys.append(host_key(np.uint64(hi), np.uint64(lo)))
    keys = host_key(ev["src_hi"], ev["src_lo"])
    return ev[np.isin(keys, np.array(own_keys, np.uint64))]
