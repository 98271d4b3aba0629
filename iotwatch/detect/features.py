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


def _key_host(ev: np.ndarray) -> np.ndarray:
    return ev["dst_lo"] ^ (ev["dst_hi"] * np.uint64(0x9E3779B97F4A7C15))


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
        # events are in time order: each window's events are one slice
        edges = np.searchsorted(ev["ts"], np.concatenate((starts[1:], [np.inf])), side="left")
        lo = 0
        for i in range(n):
            hi = int(edges[i])
            e = ev[lo:hi] if i else ev[:hi]
            lo = hi
            if not len(e):
                continue
            k = e["kind"]
            probes = e[(k & (K_PROBE | K_WEIRD | K_ECHO | K_EMPTY_RST | K_HALF_OPEN)) != 0]
            X[i, col["probes"]] = len(probes)
            if len(probes):
                X[i, col["probe_targets"]] = len(np.unique(_key_host(probes) ^ probes["dport"].astype(np.uint64)))
                X[i, col["probe_hosts"]] = len(np.unique(_key_host(probes)))
            X[i, col["weird_probes"]] = int(((k & K_WEIRD) != 0).sum())
            X[i, col["half_open"]] = int(((k & K_HALF_OPEN) != 0).sum())
            X[i, col["empty_rst"]] = int(((k & K_EMPTY_RST) != 0).sum())
            X[i, col["echo_requests"]] = int(((k & K_ECHO) != 0).sum())
            X[i, col["udp_noreply"]] = int(((k & K_UDP_NOREPLY) != 0).sum())
            auth = e[(k & K_AUTH) != 0]
            if len(auth):
                X[i, col["auth_max_service"]] = max(Counter((_key_host(auth) ^ auth["dport"].astype(np.uint64)).tolist()).values())
            X[i, col["ext_flows"]] = int(((k & K_EXT) != 0).sum())
            hosts = _key_host(e)
            _, inv, counts = np.unique(hosts, return_inverse=True, return_counts=True)
            X[i, col["max_flows_one_host"]] = counts.max()
            X[i, col["max_pkts_one_host"]] = np.bincount(inv, weights=e["pkts_out"].astype(np.float64)).max()
            ext = e[((k & K_EXT) != 0) & (e["proto"] == 6)]
            if len(ext) >= 3:
                best = 0
                eh = _key_host(ext) ^ ext["dport"].astype(np.uint64)
                for h in np.unique(eh):
                    t = np.sort(ext["ts"][eh == h])
                    if len(t) >= 3:
                        iv = np.diff(t)
                        if iv.mean() > 0 and iv.std() <= 0.25 * iv.mean():
                            best = max(best, len(t))
                X[i, col["beacon_max_regular"]] = best
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
