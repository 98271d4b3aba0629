"""Per device window features: the model's input, one row per device and window.

The window counters of the pipeline (:data:`iotwatch.records.WINDOW_FIELDS`) plus what the
evidence adds per window: probes by kind, the busiest authentication service, the busiest target,
ARP and DNS fan-out, the regularity of connections to one peer, and upload against the device's
own baseline. :data:`FEATURES` fixes names, order and dtypes; model bundles record it and refuse
another.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa

from .evidence import (
    K_AUTH,
    K_ECHO,
    K_EMPTY_RST,
    K_EXT,
    K_HALF_OPEN,
    K_PROBE,
    K_UDP_NOREPLY,
    K_WEIRD,
    DeviceEvidence,
    host_key,
)

WINDOW_COUNTERS = ("packets_out", "packets_in", "bytes_out", "bytes_in", "upload_bytes", "download_bytes", "dst_ips",
                   "dst_ports", "new_flows", "syn_flows", "syn_answered", "syn_rejected", "syn_unanswered",
                   "failed_handshake_ratio", "rst_in", "auth_attempts", "dns_queries", "upload_share", "mirai_syns")
EVIDENCE_FEATURES = ("probes", "probe_targets", "probe_hosts", "weird_probes", "half_open", "empty_rst", "echo_requests",
                     "udp_noreply", "auth_max_service", "ext_flows", "max_flows_one_host", "max_pkts_one_host",
                     "arp_targets", "dns_names", "dns_max_names_one_domain", "dns_mean_name_len", "dns_odd_types",
                     "c2_hellos", "beacon_max_regular", "upload_x_baseline", "upload_mbps")
FEATURES: list[tuple[str, str]] = [(n, "float64") for n in (*WINDOW_COUNTERS, *EVIDENCE_FEATURES)]
FEATURE_NAMES = [n for n, _ in FEATURES]


_MIX = np.uint64(0x9E3779B97F4A7C15)


def _groups_in_windows(w: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (window, key) pairs: the window of each pair, the pair of each event, pair sizes."""
    combined = key ^ ((w.astype(np.uint64) + np.uint64(1)) * _MIX)
    _, first, inv, counts = np.unique(combined, return_index=True, return_inverse=True, return_counts=True)
    return w[first], inv.ravel(), counts


def _event_features(X: np.ndarray, col: dict[str, int], ev: np.ndarray, starts: np.ndarray) -> None:
    """Per-window evidence features, for all windows at once (events are in time order)."""
    n = len(starts)
    w = np.clip(np.searchsorted(starts, ev["ts"], side="right") - 1, 0, n - 1)
    k = ev["kind"]
    host = host_key(ev["dst_hi"], ev["dst_lo"])
    target = host ^ ev["dport"].astype(np.uint64)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(w[mask], minlength=n)

    def distinct(mask: np.ndarray, key: np.ndarray) -> np.ndarray:
        if not mask.any():
            return np.zeros(n)
        wu, _, _ = _groups_in_windows(w[mask], key[mask])
        return np.bincount(wu, minlength=n)

    def largest(mask: np.ndarray, key: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        out = np.zeros(n)
        if not mask.any():
            return out
        wu, inv, counts = _groups_in_windows(w[mask], key[mask])
        size = counts if weights is None else np.bincount(inv, weights=weights[mask])
        np.maximum.at(out, wu, size)
        return out

    probes = (k & (K_PROBE | K_WEIRD | K_ECHO | K_EMPTY_RST | K_HALF_OPEN)) != 0
    X[:, col["probes"]] = count(probes)
    X[:, col["probe_targets"]] = distinct(probes, target)
    X[:, col["probe_hosts"]] = distinct(probes, host)
    for name, bit in (("weird_probes", K_WEIRD), ("half_open", K_HALF_OPEN), ("empty_rst", K_EMPTY_RST),
                      ("echo_requests", K_ECHO), ("udp_noreply", K_UDP_NOREPLY), ("ext_flows", K_EXT)):
        X[:, col[name]] = count((k & bit) != 0)
    X[:, col["auth_max_service"]] = largest((k & K_AUTH) != 0, target)
    every = np.ones(len(ev), bool)
    X[:, col["max_flows_one_host"]] = largest(every, host)
    X[:, col["max_pkts_one_host"]] = largest(every, host, ev["pkts_out"].astype(np.float64))
    # the most regular series of connections to one external service in the window
    ext = ((k & K_EXT) != 0) & (ev["proto"] == 6)
    if ext.sum() >= 3:
        wu, inv, counts = _groups_in_windows(w[ext], target[ext])
        ts = ev["ts"][ext]
        order = np.lexsort((ts, inv))
        g, t = inv[order], ts[order]
        same = g[1:] == g[:-1]
        iv, gi = np.diff(t)[same], g[1:][same]
        m = len(counts)
        n_iv = np.bincount(gi, minlength=m)
        s1 = np.bincount(gi, weights=iv, minlength=m)
        s2 = np.bincount(gi, weights=iv * iv, minlength=m)
        mean = s1 / np.maximum(n_iv, 1)
        std = np.sqrt(np.maximum(s2 / np.maximum(n_iv, 1) - mean * mean, 0.0))
        regular = (counts >= 3) & (mean > 0) & (std <= 0.25 * mean)
        out = np.zeros(n)
        np.maximum.at(out, wu[regular], counts[regular])
        X[:, col["beacon_max_regular"]] = out


def device_features(windows: dict[str, np.ndarray], d: DeviceEvidence | None, window_s: float,
                    baseline: float | None) -> np.ndarray:
    """Feature matrix (n windows × len(FEATURES)) for one device; ``windows`` are its columns."""
    n = len(windows["window_start"])
    X = np.zeros((n, len(FEATURES)), np.float64)
    for j, name in enumerate(WINDOW_COUNTERS):
        X[:, j] = windows[name]
    base = len(WINDOW_COUNTERS)
    col = {name: base + k for k, name in enumerate(EVIDENCE_FEATURES)}
    starts = windows["window_start"]
    up = windows["upload_bytes"].astype(np.float64)
    # upload against the device's own baseline: the median of the earlier windows
    for i in range(n):
        b = baseline if baseline is not None else (float(np.median(up[:i])) if i >= 2 else None)
        X[i, col["upload_x_baseline"]] = up[i] / max(b, 1000.0) if b is not None else 0.0
    X[:, col["upload_mbps"]] = up * 8 / window_s / 1e6
    if d is None:
        return X
    ev = d.events()
    if len(ev):
        _event_features(X, col, ev, starts)
    if d.arp:
        a = np.array([(t, x) for t, x, _ in d.arp])
        w_of = np.searchsorted(starts, a[:, 0], side="right") - 1
        for i in np.unique(w_of):
            if 0 <= i < n:
                X[i, col["arp_targets"]] = len(np.unique(a[w_of == i, 1]))
    if d.dns:
        ts = np.array([q.ts for q in d.dns])
        w_of = np.searchsorted(starts, ts, side="right") - 1
        for i in np.unique(w_of):
            if not 0 <= i < n:
                continue
            qs = [d.dns[j] for j in np.flatnonzero(w_of == i)]
            names = {q.qname for q in qs}
            X[i, col["dns_names"]] = len(names)
            doms = Counter(".".join(q.split(".")[-2:]) for q in names)
            _dom, cnt = doms.most_common(1)[0]
            X[i, col["dns_max_names_one_domain"]] = cnt
            X[i, col["dns_mean_name_len"]] = float(np.mean([len(q) for q in names]))
            X[i, col["dns_odd_types"]] = float(np.mean([q.qtype in (10, 16, 15, 5, 255) for q in qs]))
    if d.c2_hellos:
        ts = np.array([t for t, _, _ in d.c2_hellos])
        w_of = np.searchsorted(starts, ts, side="right") - 1
        for i in w_of:
            if 0 <= i < n:
                X[i, col["c2_hellos"]] += 1
    return X


def window_columns(tables: list[pa.Table]) -> dict[str, dict[str, np.ndarray]]:
    """Window rows grouped by device, sorted by time: device → column name → array."""
    if not tables:
        return {}
    t = pa.concat_tables(tables).sort_by([("device", "ascending"), ("window_start", "ascending")])
    dev = t.column("device").to_numpy(zero_copy_only=False)
    cols = {name: t.column(name).to_numpy(zero_copy_only=False) for name in ("window_start", *WINDOW_COUNTERS)}
    out: dict[str, dict[str, np.ndarray]] = {}
    if not len(dev):
        return out
    cut = np.flatnonzero(dev[1:] != dev[:-1]) + 1
    for part in np.split(np.arange(len(dev)), cut):
        out[str(dev[part[0]])] = {k: v[part].astype(np.float64) for k, v in cols.items()}
    return out
