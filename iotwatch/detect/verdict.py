"""Rules and model → one verdict per device and behaviour episode.

* Rule findings of the same behaviour that overlap in time are one episode (the earliest firing
  rule gives the alert time; the others join its evidence).
* The behaviour model scores every window of the device; an episode's score is the larger of the
  rule's and the model's probability for that behaviour over the episode's windows, and the model
  is named among the sources when it agrees (probability at or above its threshold).
* The model alone raises an alert only with a probability at or above its threshold in
  ``MODEL_ONLY_WINDOWS`` consecutive windows; such alerts have severity 3 and say so. Never for a
  device typed a router: its windows also count the traffic it forwards for the site; nor about a
  device that started no flow during the capture (one that only answered is a server, not an actor).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..addrs import ip_str
from ..records import DeviceRecord
from ..vocab import CATEGORIES
from .alerts import Alert
from .features import FEATURE_NAMES, VIEWS
from .rules import Finding, frame_ref

MERGE_GAP_S = 120.0
MODEL_ONLY_WINDOWS = 2


def _merge(findings: list[Finding]) -> list[list[Finding]]:
    episodes: list[list[Finding]] = []
    for cat in CATEGORIES:
        fs = sorted((f for f in findings if f.category == cat), key=lambda f: f.first_ts)
        cur: list[Finding] = []
        end = -np.inf
        for f in fs:
            if cur and f.first_ts <= end + MERGE_GAP_S:
                cur.append(f)
                end = max(end, f.last_ts)
            else:
                if cur:
                    episodes.append(cur)
                cur, end = [f], f.last_ts
        if cur:
            episodes.append(cur)
    return episodes


def _overlap(a: Finding, b: Finding) -> bool:
    return a.first_ts <= b.last_ts + MERGE_GAP_S and b.first_ts <= a.last_ts + MERGE_GAP_S


def resolve(findings: list[Finding]) -> list[Finding]:
    """One behaviour seen through two rules: a flood to an internet target is also an upload
    surge, and a SYN flood on random ports of one host also looks like a port scan of it. The
    flood explains both; the others join its evidence instead of becoming alerts."""
    floods = [f for f in findings if f.category == "flood"]
    if not floods:
        return findings
    out = []
    for f in findings:
        host = next((g for g in floods if _overlap(f, g)), None)
        if host is not None and (
                (f.category == "exfil" and f.rule == "upload_surge")
                or (f.category == "scan" and f.evidence.get("target") == host.evidence.get("target")
                    and f.rule in ("probe_fanout", "udp_port_scan"))):
            host.evidence.setdefault("also", []).append(f.signature)  # type: ignore[union-attr]
            continue
        out.append(f)
    return out


def combine(dev: str, rec: DeviceRecord | None, findings: list[Finding], cols: dict[str, np.ndarray], X: np.ndarray,
            model: Any, window_s: float, ev: np.ndarray | None, files: list[str],
            probs: dict[str, np.ndarray]) -> list[Alert]:
    """``probs``: the model's class probabilities for the device's windows (Detector._probabilities)."""
    is_mac = len(dev) == 17 and dev.count(":") == 5
    mac = rec.mac if rec is not None else (dev if is_mac else None)
    ip = rec.ips[0] if rec is not None and rec.ips else (None if is_mac else dev)
    if ip is None and ev is not None and len(ev):
        ip = ip_str(bool(ev["v6"][0]), int(ev["src_hi"][0]), int(ev["src_lo"][0]))
    thresholds = model.thresholds if model is not None else {}
    starts = cols.get("window_start", np.empty(0))
    out: list[Alert] = []
    covered: dict[str, list[tuple[float, float]]] = {}
    for ep in _merge(resolve(findings)):
        first = min(ep, key=lambda f: f.fire_ts)
        cat = first.category
        lo, hi = min(f.first_ts for f in ep), max(f.last_ts for f in ep)
        score = max(f.score for f in ep)
        sources = [f"rule:{r}" for f in sorted(ep, key=lambda f: f.fire_ts) for r in (f.rule, *f.more_rules)]
        sources = list(dict.fromkeys(sources))
        evidence = dict(first.evidence)
        if len(ep) > 1:
            evidence["also"] = [f.signature for f in ep if f is not first and f.signature != first.signature][:5]
        if cat in probs and len(starts):
            m = (starts + window_s > lo) & (starts <= hi)
            if m.any():
                pm = float(probs[cat][m].max())
                evidence["model_probability"] = round(pm, 4)
                if pm >= thresholds.get(cat, 0.5):
                    sources.append("model")
                score = max(score, pm)
        covered.setdefault(cat, []).append((lo - window_s, hi + window_s))
        out.append(Alert(dev, mac, _cited_source(first, ev, files) or ip, cat, first.signature,
                         min(f.severity for f in ep), score, first.fire_ts, lo, hi, evidence, sources))
    # the model alone: sustained, confident, and where the rules are silent: nowhere near a rule's
    # episode of any behaviour (the windows a rule explained are that behaviour's traffic, read by
    # another view: a scan's or a flood's packets are upload too; a behaviour shown alongside it is
    # the rules' to report, each with its own alert); never for a router, whose windows also carry the traffic it forwards (not its own doing), nor
    # about a device that started no flow all capture long (it only answered others: a server, a
    # controller others call, a victim), whatever its windows' volumes resemble
    forwarder = rec is not None and rec.device_type == "router"
    answered_only = "new_flows" in cols and len(cols["new_flows"]) and not np.any(cols["new_flows"])
    for cat, p in ({} if forwarder or answered_only else probs).items():
        if cat not in CATEGORIES:
            continue
        thr = thresholds.get(cat, 0.9)
        hot = np.flatnonzero(p >= thr)
        if len(hot) < MODEL_ONLY_WINDOWS:
            continue
        runs = np.split(hot, np.flatnonzero(np.diff(starts[hot]) > window_s * 1.5) + 1)
        for r in runs:
            if len(r) < MODEL_ONLY_WINDOWS:
                continue
            lo, hi = float(starts[r[0]]), float(starts[r[-1]] + window_s)
            if any(a <= hi and lo <= b for spans in covered.values() for a, b in spans):
                continue
            top = _top_features(X[r], VIEWS.get(cat))
            fire = float(starts[r[MODEL_ONLY_WINDOWS - 1]] + window_s)
            evd: dict[str, object] = {"windows": len(r), "model_probability": round(float(p[r].max()), 4),
                                      "features": {n: float(X[r][:, FEATURE_NAMES.index(n)].max()) for n in top}}
            evd.update(_window_packets(ev, lo, hi, fire, files))
            out.append(Alert(dev, mac, ip, cat, f"behaviour model: windows resemble {cat} ({', '.join(top)})", 3,
                             float(p[r].max()), fire, lo, hi, evd, ["model"]))
    return out


def _top_features(X: np.ndarray, view: tuple[str, ...] | None = None, n: int = 3) -> list[str]:
    """The features of these windows furthest from zero on a log scale (a readable hint, not SHAP),
    among the behaviour's view when given (the features its forest reads: the evidence it judged)."""
    cols = [FEATURE_NAMES.index(f) for f in view] if view else list(range(len(FEATURE_NAMES)))
    v = np.log1p(np.abs(X[:, cols]).max(axis=0))
    return [FEATURE_NAMES[cols[i]] for i in np.argsort(-v, kind="stable")[:n] if v[i] > 0] or [FEATURE_NAMES[cols[0]]]


def _cited_source(f: Finding, ev: np.ndarray | None, files: list[str]) -> str | None:
    """The source address of the packet an alert cites first: a device that changed address
    between captures is named by the address its evidence shows."""
    fp = f.evidence.get("first_packet")
    if ev is None or not len(ev) or not isinstance(fp, dict) or fp.get("file") not in files:
        return None
    code = (files.index(str(fp["file"])) << 40) | int(fp["packet"])  # type: ignore[call-overload]
    hit = np.flatnonzero(ev["frame"] == code)
    if not len(hit):
        return None
    e = ev[hit[0]]
    return ip_str(bool(e["v6"]), int(e["src_hi"]), int(e["src_lo"]))


def _window_packets(ev: np.ndarray | None, lo: float, hi: float, fire: float, files: list[str]) -> dict[str, object]:
    """first_packet / alert_packet of a model-only alert: the first evidence event of its windows
    and the last one before it fired (null when the device kept no evidence event then)."""
    if ev is None or not len(ev):
        return {"first_packet": None, "alert_packet": None}
    m = np.flatnonzero((ev["ts"] >= lo) & (ev["ts"] < hi))
    if not len(m):
        return {"first_packet": None, "alert_packet": None}
    before = m[ev["ts"][m] <= fire]
    at = before[-1] if len(before) else m[0]
    return {"first_packet": frame_ref(int(ev["frame"][m[0]]), files), "alert_packet": frame_ref(int(ev["frame"][at]), files)}
