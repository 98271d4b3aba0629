"""The detector: fed by the pipeline as the input streams, concluded at the end of input."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa

from ..addrs import LocalNets
from ..errors import SettingsError, check_number
from ..records import DeviceRecord
from ..sidecar import RareFrame
from . import rules
from .alerts import Alert
from .evidence import R_AUTH, Evidence, host_key
from .features import device_features, window_columns
from .verdict import combine

#: ``DetectSettings.model``'s default: the shipped behaviour model (models/behaviour) when present
DEFAULT_MODEL = "default"


@dataclass(slots=True)
class DetectSettings:
    """How the detector judges. Library defaults give the same results as the CLI's defaults:

    * ``window_s``: None takes the run's window (the pipeline's); a number must equal it.
    * ``model``: ``DEFAULT_MODEL`` (the default) is the shipped behaviour model, as ``analyze``
      uses; None is rules only; or a loaded bundle (see :mod:`.model`).
    """

    window_s: float | None = None
    thresholds: rules.Thresholds = field(default_factory=rules.Thresholds)
    uplink_mbps: float | None = None
    baselines: dict[str, float] = field(default_factory=dict)  # device → upload bytes per window
    model: object | None = DEFAULT_MODEL
    #: keep the window rows of this many seconds before the newest window (None: all, as offline);
    #: a live capture of days sets it so that its memory stays flat
    history_s: float | None = None

    def validate(self) -> DetectSettings:
        """Raise :class:`~iotwatch.errors.SettingsError` for a value out of range; return self."""
        from ..settings import Settings

        if self.window_s is not None:
            check_number("window_s", self.window_s, low=0, high=Settings.MAX_WINDOW_S)
        if self.uplink_mbps is not None:
            check_number("uplink_mbps", self.uplink_mbps, low=0, high=Settings.MAX_UPLINK_MBPS)
        for dev, b in self.baselines.items():
            check_number(f"baselines[{dev}]", b, low=0, high=1e18, low_inclusive=True)
        return self


class Detector:
    """An analyser (:class:`~iotwatch.analyser.Analyser`): evidence while the input streams,
    rules, the behaviour model and verdicts at the end."""

    wants_rare = True

    def __init__(self, settings: DetectSettings | None = None, local_nets: LocalNets | None = None) -> None:
        s = (settings or DetectSettings()).validate()
        if isinstance(s.model, str) and s.model == DEFAULT_MODEL:
            from .model import default_model

            s = replace(s, model=default_model())
        self.settings = s
        self.window_s = s.window_s if s.window_s is not None else 60.0
        self._nets_given = local_nets is not None
        self.evidence = Evidence(local_nets)
        self._windows: list[pa.Table] = []
        self._alerted: dict[str, list[tuple[float, float]]] = {}  # device → its alert episodes (conclude)

    def bind(self, window_s: float, local_nets: LocalNets) -> None:
        """Join a run (the pipeline calls this): take its window and local networks unless given;
        a window of its own that differs from the run's is refused, never silently kept."""
        if self.settings.window_s is None:
            self.window_s = window_s
        elif self.settings.window_s != window_s:
            raise SettingsError("window_s", f"the detector's window ({self.settings.window_s:g} s) differs from the "
                                f"run's ({window_s:g} s): give the same, or leave DetectSettings.window_s unset")
        if not self._nets_given:
            self.evidence.nets = local_nets

    # streaming ------------------------------------------------------------------------------
    def on_flow_records(self, rows: np.ndarray) -> None:
        self.evidence.add_flows(rows)

    def on_rare(self, frames: list[RareFrame]) -> None:
        self.evidence.add_rare(frames)

    def on_windows(self, table: pa.Table) -> None:
        self._windows.append(table)
        if self.settings.history_s is not None and table.num_rows:
            # windows arrive in time order: the old ones are at the front
            cutoff = float(np.max(table["window_start"].to_numpy())) - self.settings.history_s
            while self._windows:
                starts = self._windows[0]["window_start"].to_numpy()
                if len(starts) and starts.max() < cutoff:
                    self._windows.pop(0)
                    continue
                if len(starts) and starts.min() < cutoff:
                    self._windows[0] = self._windows[0].filter(pa.array(starts >= cutoff))
                break

    # conclusion -----------------------------------------------------------------------------
    def features(self) -> dict[str, tuple[dict[str, np.ndarray], np.ndarray]]:
        """Per device: its window columns and feature matrix."""
        s = self.settings
        out = {}
        for dev, cols in window_columns(self._windows).items():
            X = device_features(cols, self.evidence.devices.get(dev), self.window_s, s.baselines.get(dev))
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
        peers = _peer_uploads(feats, devices)
        alerts: list[Alert] = []
        for dev in sorted(set(self.evidence.devices) | set(feats)):
            d = self.evidence.devices.get(dev)
            cols, X = feats.get(dev, ({}, np.empty((0, 0))))
            findings: list[rules.Finding] = []
            ev = None
            if d is not None:
                ev = _own(d.events(), devices.get(dev))
                ovf = _own(d.ovf, devices.get(dev))  # the counts past the evidence cap, same rule
                findings += rules.scan(d, ev, th, files, cols if cols else {"mirai_syns": np.zeros(0)}, ovf, self.window_s)
                findings += rules.bruteforce(ev, th, files, ovf, d.dropped_last if R_AUTH in d.ovf_full_roles else -np.inf)
                findings += rules.flood(d, ev, th, files, ovf, cols, self.window_s)
                findings += rules.dns_tunnel(d, th, files, cols, self.window_s)
                findings += rules.c2(d, ev, th, files)
                findings += rules.dead_controller(ev, th, files)
                findings += rules.icmp_tunnel(ev, th, files)
                findings += rules.credential_upload(d, ev, th, files)
                findings += rules.dynamic_dns_session(d, ev, th, files)
                findings += rules.held_heartbeat(ev, th, files)
                loc = _own(d.local_events(), devices.get(dev))
                both = np.concatenate([ev, loc]) if len(loc) else ev
                findings += rules.program_callback(both[np.argsort(both["ts"], kind="stable")], th, files)
                if cols:
                    wt = np.zeros(len(cols["window_start"]), dtype=[("window_start", float), ("upload_bytes", float)])
                    wt["window_start"], wt["upload_bytes"] = cols["window_start"], cols["upload_bytes"]
                    rec = devices.get(dev)
                    findings += rules.upload_surge(ev, wt, th, files, s.baselines.get(dev), uplink_bps, self.window_s,
                                                   peers.get(dev), (rec.first_seen, rec.last_seen) if rec else None)
            alerts += combine(dev, devices.get(dev), findings, cols, X, s.model, self.window_s, ev, files,
                              probs.get(dev, {}))
        alerts.sort(key=lambda a: (a.severity, -a.score, a.timestamp))
        self._alerted = {}
        for a in alerts:
            self._alerted.setdefault(a.device, []).append((a.first_ts, a.last_ts))
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
        """Each device's normal upload, to reuse with ``--baseline`` on a later capture: the median
        per window over the windows judged normal (none of the device's alert episodes, whatever
        their behaviour, touches them). A device with no such window gets no baseline: a surge
        is never stored as anybody's normal. Call after :meth:`conclude`."""
        out = {}
        w = self.window_s
        for dev, cols in window_columns(self._windows).items():
            up, starts = cols["upload_bytes"], cols["window_start"]
            normal = np.ones(len(up), bool)
            for lo, hi in self._alerted.get(dev, []):
                normal &= ~((starts + w > lo) & (starts <= hi))
            if not normal.any():
                continue
            out[dev] = {"upload_bytes_per_window": float(np.median(up[normal])), "window_s": w,
                        "windows": int(normal.sum()), "windows_left_out": int((~normal).sum())}
        return out


def _peer_uploads(feats: dict[str, tuple[dict[str, np.ndarray], np.ndarray]],
                  devices: dict[str, DeviceRecord]) -> dict[str, float]:
    """Per device, what the site's other devices upload to external addresses in a window: the
    upper quartile of their medians (the reference for a device seen only while it surges).
    From one sorted array for the whole site: leaving a device out shifts the ranks above it."""
    devs = [d for d, (c, _X) in feats.items() if c and len(c["upload_bytes"]) and d in devices]
    if len(devs) < 2:
        return {}
    med = np.array([np.median(feats[d][0]["upload_bytes"]) for d in devs], np.float64)
    order = np.argsort(med, kind="stable")
    s = med[order]
    rank = np.empty(len(devs), np.int64)
    rank[order] = np.arange(len(devs))
    pos = 0.75 * (len(devs) - 2)  # numpy's linear percentile over the n - 1 others
    lo = int(np.floor(pos))
    hi = min(lo + 1, len(devs) - 2)
    # the others' k-th value is the site's k-th below the device's own rank, the (k+1)-th from it on
    v_lo = np.where(lo < rank, s[lo], s[min(lo + 1, len(devs) - 1)])
    v_hi = np.where(hi < rank, s[hi], s[min(hi + 1, len(devs) - 1)])
    ref = v_lo + (pos - lo) * (v_hi - v_lo)
    return dict(zip(devs, ref.tolist(), strict=True))


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
