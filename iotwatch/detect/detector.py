"""The detector: fed by the pipeline as the input streams, concluded at the end of input."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
import pyarrow as pa

from ..addrs import LocalNets, parse_ips
from ..errors import SettingsError, check_number
from ..records import DeviceRecord
from ..sidecar import RareFrame
from . import rules
from .alerts import Alert
from .evidence import R_AUTH, DeviceEvidence, Evidence, host_key, take_rows
from .features import FeatureState, device_features, window_columns
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
        self._cols: dict[str, dict[str, np.ndarray]] | None = None  # _columns(), until windows come
        #: a live run's passes (conclude_live): per device the inputs of its last judgement and
        #: its alerts then, and per device the windows the model scored (starts, features, probabilities)
        self._live: dict[str, tuple[tuple[object, ...], list[Alert]]] = {}
        self._live_probs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        #: per device what its last judgement computed from its kept events (Detector._judge)
        self._live_memo: dict[str, dict[str, object]] = {}
        #: the devices whose last judgement kept the features of an earlier pass (a recheck's)
        self._live_kept: set[str] = set()
        self.live_judged = (0, 0)  # devices the last conclude_live judged again, of all devices
        #: the input shows DNS questions (a Zeek conn.log replay has none: iotwatch.zeek.source
        #: sets False, and no channel is judged reached without a lookup)
        self.names_seen = True
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
        self._cols = None
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
    def _columns(self) -> dict[str, dict[str, np.ndarray]]:
        """Per device its window columns (computed again only when windows came)."""
        if self._cols is None:
            self._cols = window_columns(self._windows)
        return self._cols

    def features(self, evidence: Evidence | None = None, devices: dict[str, DeviceRecord] | None = None,
                 ) -> dict[str, tuple[dict[str, np.ndarray], np.ndarray]]:
        """Per device: its window columns and feature matrix (over ``evidence``; None: the detector's)."""
        s = self.settings
        ev = self.evidence if evidence is None else evidence
        out = {}
        for dev, cols in self._columns().items():
            X = device_features(cols, ev.devices.get(dev), self.window_s, s.baselines.get(dev),
                                _device_type(devices, dev), self.names_seen)
            out[dev] = (cols, X)
        return out

    def conclude(self, devices: dict[str, DeviceRecord], files: list[str],
                 features_evidence: Evidence | None = None) -> list[Alert]:
        """Run the rules and the model over everything seen; return alerts, strongest first, and
        attach each device's alerts to its record. ``features_evidence``: the evidence the model's
        features are taken over, when not the detector's (what a live run's recheck passes
        judge by: the evidence of the pass at the newest window close, see :meth:`conclude_live`)."""
        feats = self.features(features_evidence, devices)
        probs = self._probabilities(feats)
        peers = _peer_uploads(self._columns(), devices)
        alerts: list[Alert] = []
        for dev in sorted(set(self.evidence.devices) | set(feats)):
            cols, X = feats.get(dev, ({}, np.empty((0, 0))))
            alerts += self._judge(dev, cols, X, probs.get(dev, {}), devices, files, peers.get(dev))
        return self._ranked(alerts, devices)

    def conclude_live(self, devices: dict[str, DeviceRecord], files: list[str], rescore: bool = True) -> list[Alert]:
        """:meth:`conclude` for a live run's verdict passes, judging only what changed: the same
        alerts, in the same order, as :meth:`conclude` over the same evidence, windows and
        records. A device is judged again only when its inputs moved since the previous pass:
        its evidence (:meth:`Evidence.state <iotwatch.detect.evidence.Evidence.state>`), its
        windows, the parts of its record the rules read (addresses, type, first and last
        packet) or the site's upload reference (:func:`_peer_uploads`); the others keep the
        alerts of their last judgement. The model scores only windows whose features changed
        (a closed window's usually do not). The end of the run takes :meth:`conclude`.

        ``rescore`` False (a recheck pass: no window closed since the previous pass): the rules
        judge the evidence as it is now, the model the windows as it judged them at the last
        pass with ``rescore`` (their features are not taken again): the same alerts as
        :meth:`conclude` with ``features_evidence`` the evidence of that pass. What the model
        reads of a window changes between two closes only by the flows of the window's last
        moments settling; they count at the next close (and at the end), the rules count them
        at once."""
        cols_all = self._columns()
        peers = _peer_uploads(cols_all, devices)
        ev = self.evidence
        judged: dict[str, tuple[tuple[object, ...], list[Alert]]] = {}
        todo: dict[str, tuple[tuple[object, ...], dict[str, np.ndarray]]] = {}
        for dev in sorted(set(ev.devices) | set(cols_all)):
            cols = cols_all.get(dev, {})
            rec = devices.get(dev)
            key = (ev.state(dev), _columns_key(cols), _record_key(rec, cols, self.window_s), peers.get(dev))
            last = self._live.get(dev)
            # (a judgement whose features were kept from an earlier pass is taken again when
            # the features are taken: its evidence may have moved since that pass)
            if last is not None and last[0] == key and (not rescore or dev not in self._live_kept):
                judged[dev] = last
            else:
                todo[dev] = (key, cols)
        s = self.settings
        memo = self._live_memo
        feats = {}
        kept = set()
        for dev, (_k, cols) in todo.items():
            if not cols:
                continue
            m = memo.setdefault(dev, {})
            ck = _columns_key(cols)
            if not rescore and "X" in m and m["features_key"][1] == ck:
                # a recheck: the windows the model judged at the last close, as it judged them
                kept.add(dev)
            else:
                dtype = _device_type(devices, dev)
                fk = (_events_key(ev.devices.get(dev)), ck, dtype)
                if m.get("features_key") != fk:
                    m["features_key"] = fk
                    # (only the windows whose features can have changed are taken again)
                    state = m.setdefault("features", FeatureState())
                    m["X"] = state.update(cols, ev.devices.get(dev), self.window_s,  # type: ignore[attr-defined]
                                          s.baselines.get(dev), dtype, self.names_seen)
            feats[dev] = (cols, m["X"])
        probs = self._probabilities(feats, self._live_probs)
        for dev, (key, cols) in todo.items():
            X = feats[dev][1] if cols else np.empty((0, 0))
            judged[dev] = (key, self._judge(dev, cols, X, probs.get(dev, {}), devices, files, peers.get(dev),
                                            memo.setdefault(dev, {})))
        for dev in set(self._live_probs) - set(cols_all):
            del self._live_probs[dev]
        for dev in set(memo) - set(judged):
            del memo[dev]
        self._live = {dev: judged[dev] for dev in sorted(judged)}
        self._live_kept = (self._live_kept & (set(judged) - set(todo))) | kept
        self.live_judged = (len(todo), len(judged))
        return self._ranked([a for _k, alerts in self._live.values() for a in alerts], devices)

    def _judge(self, dev: str, cols: dict[str, np.ndarray], X: np.ndarray, probs: dict[str, np.ndarray],
               devices: dict[str, DeviceRecord], files: list[str], peer: float | None,
               memo: dict[str, object] | None = None) -> list[Alert]:
        """One device's alerts: its rules' findings and the model's probabilities, combined.
        ``memo`` (a live run's passes): the findings of the rules that read only the device's kept
        events at its previous judgement; used again while those events are the same, and updated."""
        s = self.settings
        th = s.thresholds
        uplink_bps = s.uplink_mbps * 1e6 if s.uplink_mbps else None
        d = self.evidence.devices.get(dev)
        rec = devices.get(dev)
        findings: list[rules.Finding] = []
        ev = None
        if d is not None:
            key = (_events_key(d), None if rec is None else (rec.mac, tuple(rec.ips)))
            same = memo is not None and memo.get("events_key") == key
            ev = _own(d.events(), rec)
            ovf = _own(d.ovf, rec)  # the counts past the evidence cap, same rule
            findings += rules.scan(d, ev, th, files, cols if cols else {"mirai_syns": np.zeros(0)}, ovf, self.window_s)
            findings += rules.bruteforce(ev, th, files, ovf, d.dropped_last if R_AUTH in d.ovf_full_roles else -np.inf)
            findings += rules.flood(d, ev, th, files, ovf, cols, self.window_s)
            findings += rules.dns_tunnel(d, th, files, cols, self.window_s)
            if same:
                # (copies: the verdicts add to a finding's evidence when another rule joins it)
                findings += copy.deepcopy(memo["events_findings"])  # type: ignore[index, call-overload]
            else:
                by_events = self._events_rules(d, ev, rec, files)
                if memo is not None:
                    memo.update(events_key=key, events_findings=copy.deepcopy(by_events))
                findings += by_events
            if cols:
                wt = np.zeros(len(cols["window_start"]), dtype=[("window_start", float), ("upload_bytes", float)])
                wt["window_start"], wt["upload_bytes"] = cols["window_start"], cols["upload_bytes"]
                findings += rules.upload_surge(ev, wt, th, files, s.baselines.get(dev), uplink_bps, self.window_s,
                                               peer, (rec.first_seen, rec.last_seen) if rec else None,
                                               rec.device_type if rec else None)
        return combine(dev, rec, findings, cols, X, s.model, self.window_s, ev, files, probs)

    def _events_rules(self, d: DeviceEvidence, ev: np.ndarray, rec: DeviceRecord | None,
                      files: list[str]) -> list[rules.Finding]:
        """The findings of the rules that read only the device's kept events (``ev``, its own),
        its local sessions, DNS queries and C2 hellos: the same while those are (:func:`_events_key`)."""
        th = self.settings.thresholds
        findings: list[rules.Finding] = []
        findings += rules.c2(d, ev, th, files)
        findings += rules.dead_controller(ev, th, files)
        findings += rules.icmp_tunnel(ev, th, files)
        findings += rules.credential_upload(d, ev, th, files)
        findings += rules.dynamic_dns_session(d, ev, th, files)
        findings += rules.held_heartbeat(ev, th, files)
        loc = _own(d.local_events(), rec)
        both = take_rows(np.concatenate([ev, loc]), np.argsort(np.concatenate([ev["ts"], loc["ts"]]), kind="stable")) \
            if len(loc) else ev  # (ev is in time order already)
        findings += rules.program_callback(both, th, files)
        return findings

    def _ranked(self, alerts: list[Alert], devices: dict[str, DeviceRecord]) -> list[Alert]:
        """Strongest first; each device's episodes noted (for :meth:`baselines`) and its alerts
        attached to its record."""
        alerts.sort(key=lambda a: (a.severity, -a.score, a.timestamp))
        self._alerted = {}
        for a in alerts:
            self._alerted.setdefault(a.device, []).append((a.first_ts, a.last_ts))
        for a in alerts:
            rec = devices.get(a.device)
            if rec is not None:
                rec.alerts.append(a.summary())
        return alerts

    def _probabilities(self, feats: dict[str, tuple[dict[str, np.ndarray], np.ndarray]],
                       known: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
                       ) -> dict[str, dict[str, np.ndarray]]:
        """The model's class probabilities for every window of every device, in one call.
        ``known``: per device the window starts, features and probabilities scored before (a
        live run's passes); only the windows whose features are not among them are scored, and
        ``known`` is updated."""
        model = self.settings.model
        devs = [d for d, (_c, X) in feats.items() if len(X)]
        if model is None or not devs:
            return {}
        fresh: dict[str, np.ndarray] = {}  # device → mask of its windows to score
        reuse: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # device → (mask of known windows, their row there)
        for d in devs:
            cols, X = feats[d]
            todo = np.ones(len(X), np.bool_)
            old = known.get(d) if known is not None else None
            if old is not None:
                o_starts, o_X, _o_p = old
                starts = cols["window_start"]
                j = np.minimum(np.searchsorted(o_starts, starts), max(len(o_starts) - 1, 0))
                same = (o_starts[j] == starts) if len(o_starts) else np.zeros(len(X), np.bool_)
                same[same] = ((o_X[j[same]] == X[same]) | (np.isnan(o_X[j[same]]) & np.isnan(X[same]))).all(axis=1)
                todo = ~same
                reuse[d] = (same, j[same])
            fresh[d] = todo
        rows = [feats[d][1][fresh[d]] for d in devs if fresh[d].any()]
        p = model.predict_proba(np.vstack(rows)) if rows else None  # type: ignore[attr-defined]
        classes = [str(c) for c in model.classes]  # type: ignore[attr-defined]
        out: dict[str, dict[str, np.ndarray]] = {}
        k = 0
        for d in devs:
            X = feats[d][1]
            P = np.empty((len(X), len(classes)), np.float64)
            n = int(fresh[d].sum())
            if n:
                assert p is not None
                P[fresh[d]] = p[k:k + n]
                k += n
            if d in reuse:
                same, j = reuse[d]
                P[same] = known[d][2][j]  # type: ignore[index]
            if known is not None:
                known[d] = (feats[d][0]["window_start"], X, P)
            out[d] = {c: P[:, i] for i, c in enumerate(classes)}
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
        for dev, cols in self._columns().items():
            up, starts = cols["upload_bytes"], cols["window_start"]
            normal = np.ones(len(up), bool)
            for lo, hi in self._alerted.get(dev, []):
                normal &= ~((starts + w > lo) & (starts <= hi))
            if not normal.any():
                continue
            out[dev] = {"upload_bytes_per_window": float(np.median(up[normal])), "window_s": w,
                        "windows": int(normal.sum()), "windows_left_out": int((~normal).sum())}
        return out


def _device_type(devices: dict[str, DeviceRecord] | None, dev: str) -> str | None:
    """The inventory's type of a device (the reference of ``upload_x_type``), None when unknown."""
    rec = devices.get(dev) if devices else None
    return rec.device_type if rec is not None else None


def _events_key(d: DeviceEvidence | None) -> tuple[int, ...]:
    """What a device's kept events, local sessions, ARP requests, DNS queries and C2 hellos are
    (each only ever grows; in an evidence view, a digest of what the view added): not its counts
    past the cap (DeviceEvidence.ovf), which the scan, brute-force and flood rules read."""
    if d is None:
        return ()
    return d.n, d.view_events, d.n_local, d.view_local, len(d.arp), len(d.dns), len(d.c2_hellos)


def _columns_key(cols: dict[str, np.ndarray]) -> tuple[object, ...]:
    """What a device's window rows are: rows are only ever added (and, past ``history_s``, the
    oldest dropped), each final once its window closed."""
    if not cols or not len(cols["window_start"]):
        return ()
    starts = cols["window_start"]
    return len(starts), float(starts[0]), float(starts[-1]), float(cols["upload_bytes"].sum()), \
        float(cols["packets_out"].sum())


def _record_key(rec: DeviceRecord | None, cols: dict[str, np.ndarray], window_s: float) -> tuple[object, ...] | None:
    """What the verdicts read of a device's record: its addresses and type, and its first and
    last packet as far as they matter (the upload rule's rate in the first and last windows:
    a last packet past the end of the newest window changes nothing)."""
    if rec is None:
        return None
    seen: tuple[float | None, ...] = ()
    if cols and len(cols["window_start"]):
        starts = cols["window_start"]
        lo, hi = float(starts[0]), float(starts[-1]) + window_s
        seen = (None if rec.first_seen is None else max(min(rec.first_seen, hi), lo),
                None if rec.last_seen is None else min(max(rec.last_seen, lo), hi))
    return rec.mac, tuple(rec.ips), rec.device_type, seen


def _peer_uploads(cols_of: dict[str, dict[str, np.ndarray]], devices: dict[str, DeviceRecord]) -> dict[str, float]:
    """Per device, what the site's other devices upload to external addresses in a window: the
    upper quartile of their medians (the reference for a device seen only while it surges).
    From one sorted array for the whole site: leaving a device out shifts the ranks above it."""
    devs = [d for d, c in cols_of.items() if c and len(c["upload_bytes"]) and d in devices]
    if len(devs) < 2:
        return {}
    med = np.array([np.median(cols_of[d]["upload_bytes"]) for d in devs], np.float64)
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
    own_keys = _own_keys(tuple(rec.ips))
    keys = host_key(ev["src_hi"], ev["src_lo"])
    if len(own_keys) == 1:
        own = keys == own_keys[0]
    elif len(own_keys):  # (np.isin by a binary search in the sorted keys: one pass over the events)
        at = np.minimum(np.searchsorted(own_keys, keys), len(own_keys) - 1)
        own = own_keys[at] == keys
    else:
        own = np.zeros(len(ev), np.bool_)
    return ev if own.all() else take_rows(ev, own)  # (all its own, as for most devices: no copy)


@lru_cache(maxsize=4096)
def _own_keys(ips: tuple[str, ...]) -> np.ndarray:
    """The sorted keys (evidence.host_key) of a device's addresses: parsed all at once, and once
    per set of addresses (a live run's passes ask for every device judged, at every pass)."""
    ok, _v6, hi, lo = parse_ips(pa.array(list(ips), pa.string()))
    keys = np.sort(host_key(hi[ok], lo[ok]))
    keys.setflags(write=False)
    return keys
