"""Strong evidence, computed directly: one function per behaviour, each returning findings.

A finding is one episode of one behaviour of one device: when its first packet was sent
(``first_ts``), when the evidence crossed the rule's threshold (``fire_ts``: the moment a live
sensor would raise the alert), when it last showed (``last_ts``), and the evidence itself
(counts, ports, sample targets, flows and packet numbers). Thresholds are in :class:`Thresholds`
and documented in docs/detection.md; they were chosen on the generated scenarios and checked
against every labelled host of ../shared/pcaps (zero alerts on normal hosts and victims).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from .._jit import kernel
from ..addrs import ip_str
from .evidence import (
    A_HTTP,
    A_MIRAI_C2,
    A_TLS,
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

#: DNS record types a client has no use for, but a tunnel does (room for data in the answer):
#: NULL, TXT, MX, CNAME, ANY
ODD_QTYPES = frozenset((10, 16, 15, 5, 255))


@dataclass(frozen=True, slots=True)
class Thresholds:
    scan_targets: int = 10  # distinct probed (address, port) pairs ...
    scan_window_s: float = 60.0  # ... within this many seconds
    nmap_probes: int = 3  # probes to 2+ targets within nmap_window_s, one a NULL/FIN/Xmas or half-open probe
    nmap_window_s: float = 60.0
    arp_targets: int = 32  # distinct addresses ARP-requested within scan_window_s
    mirai_syns: int = 3  # SYNs with seq = destination address
    brute_conns: int = 3  # connections to one authentication service (or to telnet on 2+ internet hosts) within brute_window_s
    brute_window_s: float = 60.0
    flood_flows: int = 100  # flows to one target within flood_window_s ...
    flood_pkts: int = 3000  # ... carrying at least this many packets (HTTP floods: any number)
    flood_window_s: float = 10.0
    flood_pps: float = 300.0  # one-way packets/s of a single stream (GRE and other tunnels)
    dns_flood_names: int = 50  # distinct names under one domain to one resolver within flood_window_s
    tunnel_names: int = 10  # distinct encoded names to one resolver within scan_window_s
    tunnel_label_len: int = 24  # a label this long (or a name twice as long) carries encoded data
    surge_x: float = 20.0  # upload at least this many times the baseline ...
    surge_min_bytes: int = 5_000_000  # ... and at least this much in a window
    surge_min_bytes_10s: int = 1_000_000  # bytes sent after the surge started before the alert
    beacon_conns: int = 30  # connections to one peer at regular intervals ...
    beacon_min_span_s: float = 180.0  # ... over at least this long (a setup phase polls for a minute or two)
    beacon_cv: float = 0.25  # ... coefficient of variation of the intervals at most this
    beacon_max_period_s: float = 120.0
    tls_beacon_conns: int = 5  # or: new TLS connections to one peer, each over before the next ...
    tls_beacon_max_period_s: float = 10.0  # ... every few seconds ...
    tls_beacon_cv: float = 0.15  # ... like clockwork (a script, not a person or a keep-alive)
    episode_gap_s: float = 120.0  # evidence this far apart is two episodes


@dataclass(slots=True)
class Finding:
    category: str
    signature: str
    severity: int  # 1 high, 2 medium, 3 low (Suricata's order)
    score: float
    first_ts: float
    fire_ts: float
    last_ts: float
    evidence: dict[str, object] = field(default_factory=dict)
    rule: str = ""


def _bursts(ts: np.ndarray, gap: float) -> list[np.ndarray]:
    """Index ranges of events no more than ``gap`` seconds apart (ts sorted)."""
    if not len(ts):
        return []
    cut = np.flatnonzero(np.diff(ts) > gap) + 1
    return np.split(np.arange(len(ts)), cut)


def fire_index(ts: np.ndarray, targets: np.ndarray, k: int, window: float) -> int:
    """First index at which the events in (ts[i] - window, ts[i]] hold ``k`` distinct targets; -1 if never."""
    if len(ts) < k:
        return -1
    if len(np.unique(targets)) < k:
        return -1
    counts: Counter[int] = Counter()
    q: deque[int] = deque()
    for i in range(len(ts)):
        t = int(targets[i])
        counts[t] += 1
        q.append(i)
        while ts[q[0]] <= ts[i] - window:
            j = q.popleft()
            c = counts[int(targets[j])] - 1
            if c:
                counts[int(targets[j])] = c
            else:
                del counts[int(targets[j])]
        if len(counts) >= k:
            return i
    return -1


def fire_count(ts: np.ndarray, k: int, window: float) -> int:
    """First index at which (ts[i] - window, ts[i]] holds ``k`` events; -1 if never."""
    if len(ts) < k:
        return -1
    lo = np.searchsorted(ts, ts - window, side="right")
    ok = np.flatnonzero(np.arange(len(ts)) - lo + 1 >= k)
    return int(ok[0]) if len(ok) else -1


def fire_weighted(ts: np.ndarray, w: np.ndarray, total: float, window: float, start: int = 0) -> int:
    """First index >= start at which the weights of events in (ts[i] - window, ts[i]] sum to ``total``."""
    c = np.concatenate(([0.0], np.cumsum(w)))
    lo = np.searchsorted(ts, ts - window, side="right")
    ok = np.flatnonzero(c[1:] - c[lo] >= total)
    ok = ok[ok >= start]
    return int(ok[0]) if len(ok) else -1


@kernel
def _screen(key, ts, w, k, total, window, out):  # type: ignore[no-untyped-def]
    """Events sorted by (key, time): for each key group, 1 in ``out`` at its events when some
    (ts - window, ts] holds ``k`` events whose weights ``w`` sum to ``total``, else 0."""
    n = key.shape[0]
    a = 0
    while a < n:
        b = a
        while b < n and key[b] == key[a]:
            b += 1
        hit = 0
        if b - a >= k:
            lo = a
            acc = 0.0
            for i in range(a, b):
                acc += w[i]
                while ts[lo] <= ts[i] - window:
                    acc -= w[lo]
                    lo += 1
                if i - lo + 1 >= k and acc >= total:
                    hit = 1
                    break
        for i in range(a, b):
            out[i] = hit
        a = b


def screened_groups(keys: np.ndarray, ts: np.ndarray, weights: np.ndarray, k: int, total: float,
                    window: float) -> list[np.ndarray]:
    """Indices (time order) of the key groups that pass :func:`_screen`: a compiled pass, so that
    a busy device's hundreds of ordinary peers cost one loop, not one Python round each."""
    if len(keys) < k:
        return []
    order = np.lexsort((ts, keys))
    out = np.zeros(len(keys), np.uint8)
    _screen(keys[order], ts[order], weights[order].astype(np.float64), k, float(total), float(window), out)
    if not out.any():
        return []
    passed = order[out.astype(bool)]
    return _groups(keys[passed], k, passed)


def _groups(keys: np.ndarray, min_size: int, index: np.ndarray | None = None) -> list[np.ndarray]:
    """Indices of the events of each key with at least ``min_size`` events, in time order."""
    if len(keys) < min_size:
        return []
    order = np.argsort(keys, kind="stable")
    ks = keys[order]
    if index is not None:
        order = index[order]
    cut = np.flatnonzero(ks[1:] != ks[:-1]) + 1
    starts = np.concatenate(([0], cut))
    ends = np.concatenate((cut, [len(ks)]))
    return [np.sort(order[a:b]) for a, b in zip(starts.tolist(), ends.tolist(), strict=True) if b - a >= min_size]


def _target_keys(ev: np.ndarray, with_port: bool = True) -> np.ndarray:
    h = host_key(ev["dst_hi"], ev["dst_lo"])
    if with_port:
        h = h ^ (ev["dport"].astype(np.uint64) << np.uint64(1)) ^ ev["proto"].astype(np.uint64)
    return h


def _addr(ev: np.void | np.ndarray, side: str = "dst") -> str:
    return ip_str(bool(ev["v6"]), int(ev[f"{side}_hi"]), int(ev[f"{side}_lo"]))


def frame_ref(frame: int, files: list[str]) -> dict[str, object]:
    fi, no = frame >> 40, frame & ((1 << 40) - 1)
    return {"file": files[fi] if fi < len(files) else str(fi), "packet": int(no)}


def _samples(ev: np.ndarray, n: int = 5) -> list[str]:
    out: list[str] = []
    for e in ev:
        s = _addr(e) + (f":{int(e['dport'])}" if e["proto"] in (6, 17) else "")
        if s not in out:
            out.append(s)
        if len(out) >= n:
            break
    return out


def _ports(ev: np.ndarray, n: int = 5) -> list[int]:
    tcpudp = ev[(ev["proto"] == 6) | (ev["proto"] == 17)]
    return [int(p) for p, _ in Counter(tcpudp["dport"].tolist()).most_common(n)]


def _base(ev: np.ndarray, files: list[str], fire: int) -> dict[str, object]:
    return {"flows": len(ev), "packets_out": int(ev["pkts_out"].sum()), "packets_in": int(ev["pkts_in"].sum()),
            "first_packet": frame_ref(int(ev["frame"][0]), files),
            "alert_packet": frame_ref(int(ev["frame"][fire]), files),
            "flow_ids": [int(x) for x in ev["flow_id"][:5]]}


# scan --------------------------------------------------------------------------------------
PROBES = K_PROBE | K_WEIRD | K_ECHO | K_EMPTY_RST | K_HALF_OPEN


def scan(d: DeviceEvidence, ev: np.ndarray, th: Thresholds, files: list[str], windows: dict[str, np.ndarray]) -> list[Finding]:
    out: list[Finding] = []
    k = ev["kind"]
    retried = ((k & PROBES) == K_PROBE) & (ev["pkts_out"] > 1) & (ev["pkts_in"] == 0)
    probes = ev[((k & PROBES) != 0) & ~retried]
    udp_probes = ev[((ev["kind"] & K_UDP_NOREPLY) != 0) & ((ev["kind"] & K_EXT) == 0)]
    mirai_total = int(windows["mirai_syns"].sum()) if len(windows) else 0
    for b in _bursts(probes["ts"], th.episode_gap_s):
        e = probes[b]
        tk = _target_keys(e)
        fi = fire_index(e["ts"], tk, th.scan_targets, th.scan_window_s)
        strong = (e["kind"] & (K_WEIRD | K_HALF_OPEN | K_EMPTY_RST)) != 0
        nmap_fi = _signature_fire(e["ts"], tk, strong, th) if strong.any() else -1
        dports = e["dport"][(e["proto"] == 6)]
        mirai_like = mirai_total >= th.mirai_syns and len(dports) and np.isin(dports, (23, 2323)).mean() > 0.8
        cands = [x for x in (fi, nmap_fi) if x >= 0]
        if mirai_like:
            tel = np.flatnonzero(np.isin(e["dport"], (23, 2323)))
            if len(tel) >= th.mirai_syns:
                cands.append(int(tel[th.mirai_syns - 1]))
        if not cands:
            continue
        f = min(cands)
        targets = len(np.unique(tk))
        hosts = len(np.unique(_target_keys(e, with_port=False)))
        kinds = []
        for bit, name in ((K_PROBE, "unanswered or rejected SYNs"), (K_HALF_OPEN, "half-open (SYN-ACK reset)"),
                          (K_EMPTY_RST, "empty connections reset by the client"), (K_WEIRD, "NULL/FIN/Xmas probes"),
                          (K_ECHO, "ICMP echo/timestamp requests")):
            c = int(((e["kind"] & bit) != 0).sum())
            if c:
                kinds.append(f"{c} {name}")
        if mirai_like:
            more = "+" if d.dropped else ""
            sig = (f"Mirai-style telnet scanner: {mirai_total:,} SYNs with TCP seq = destination address, to "
                   f"{hosts:,}{more} addresses on ports 23/2323")
            sev, score = 1, 0.99
        elif hosts >= 2:
            sig = f"network scan: probes to {targets} targets on {hosts} hosts ({', '.join(kinds)})"
            sev, score = (1 if targets >= 100 else 2), min(0.99, 0.7 + targets / 200)
        else:
            sig = f"port scan of {_addr(e[0])}: {targets} ports probed ({', '.join(kinds)})"
            sev, score = (1 if targets >= 100 else 2), min(0.99, 0.7 + targets / 200)
        evd = _base(e, files, f)
        if hosts == 1:
            evd["target"] = _addr(e[0])
        if d.dropped:
            evd["flows_not_kept"] = d.dropped  # past the evidence cap: counts above are lower bounds
        evd.update({"targets": targets, "hosts": hosts, "ports": _ports(e), "sample_targets": _samples(e),
                    "unanswered": int(((e["kind"] & K_PROBE) != 0).sum()), "mirai_syns": mirai_total if mirai_like else 0})
        out.append(Finding("scan", sig, sev, score, float(e["ts"][0]), float(e["ts"][f]),
                           float(max(e["end"].max(), e["ts"][-1])), evd, "probe_fanout" if f == fi else "probe_signature"))
    # UDP probes to many local hosts (a UDP sweep)
    for b in _bursts(udp_probes["ts"], th.episode_gap_s):
        e = udp_probes[b]
        fi = fire_index(e["ts"], _target_keys(e), th.scan_targets * 3, th.scan_window_s)
        if fi < 0:
            continue
        targets = len(np.unique(_target_keys(e)))
        evd = _base(e, files, fi)
        evd.update({"targets": targets, "ports": _ports(e), "sample_targets": _samples(e)})
        out.append(Finding("scan", f"UDP sweep: {targets} local targets never answered", 2, 0.8, float(e["ts"][0]),
                           float(e["ts"][fi]), float(e["end"].max()), evd, "udp_sweep"))
    # ARP sweep
    if d.arp:
        arp = np.array(d.arp, dtype=[("ts", np.float64), ("tpa", np.int64), ("frame", np.int64)])
        arp = arp[np.argsort(arp["ts"], kind="stable")]
        for b in _bursts(arp["ts"], th.episode_gap_s):
            a = arp[b]
            fi = fire_index(a["ts"], a["tpa"], th.arp_targets, th.scan_window_s)
            if fi < 0:
                continue
            n = len(np.unique(a["tpa"]))
            sample = [ip_str(False, 0, 0xFFFF00000000 | int(x)) for x in a["tpa"][:5]]
            out.append(Finding("scan", f"ARP sweep: who-has for {n} addresses", 2, min(0.99, 0.7 + n / 500),
                               float(a["ts"][0]), float(a["ts"][fi]), float(a["ts"][-1]),
                               {"arp_requests": len(a), "targets": n, "sample_targets": sample,
                                "first_packet": frame_ref(int(a["frame"][0]), files),
                                "alert_packet": frame_ref(int(a["frame"][fi]), files)}, "arp_sweep"))
    return out


def _signature_fire(ts: np.ndarray, tk: np.ndarray, strong: np.ndarray, th: Thresholds) -> int:
    """First probe at which the last nmap_window_s hold nmap_probes probes to 2+ targets, one of
    them a raw-socket probe (NULL/FIN/Xmas, or a SYN-ACK answered with a bare RST)."""
    lo = np.searchsorted(ts, ts - th.nmap_window_s, side="right")
    for i in range(len(ts)):
        j = lo[i]
        if i - j + 1 >= th.nmap_probes and strong[j: i + 1].any() and len(np.unique(tk[j: i + 1])) >= 2:
            return i
    return -1


# brute force --------------------------------------------------------------------------------
def bruteforce(ev: np.ndarray, th: Thresholds, files: list[str]) -> list[Finding]:
    out: list[Finding] = []
    # sessions to login services (a C2 that listens on a telnet port is not a login)
    auth = ev[((ev["kind"] & K_AUTH) != 0) & ((ev["kind"] & (K_PROBE | K_HALF_OPEN)) == 0) & (ev["app"] != A_MIRAI_C2)]
    if len(auth) < th.brute_conns:
        return out
    for g in _groups(_target_keys(auth), th.brute_conns):
        e = auth[g]
        for b in _bursts(e["ts"], th.episode_gap_s):
            eb = e[b]
            fi = fire_count(eb["ts"], th.brute_conns, th.brute_window_s)
            if fi < 0:
                continue
            dur = eb["end"] - eb["ts"]
            port = int(eb["dport"][0])
            app = {22: "SSH", 23: "telnet", 2323: "telnet", 21: "FTP", 3389: "RDP", 5900: "VNC"}.get(port)
            apps = Counter(int(a) for a in eb["app"] if a)
            if not app and apps:
                app = {1: "SSH", 2: "telnet", 3: "FTP"}.get(apps.most_common(1)[0][0], "auth")
            sig = f"{app or 'login'} brute force on {_addr(eb[0])}:{port}: {len(eb)} short sessions"
            evd = _base(eb, files, fi)
            evd.update({"target": f"{_addr(eb[0])}:{port}", "sessions": len(eb),
                        "median_session_s": round(float(np.median(dur)), 3),
                        "bytes_out": int(eb["bytes_out"].sum())})
            out.append(Finding("bruteforce", sig, 1 if len(eb) >= 20 else 2, min(0.99, 0.75 + len(eb) / 100),
                               float(eb["ts"][0]), float(eb["ts"][fi]), float(eb["end"].max()), evd, "auth_sessions"))
    # telnet logins to several internet hosts at once: Mirai's loader-less spreading
    tel = auth[((auth["kind"] & K_EXT) != 0) & (np.isin(auth["dport"], (23, 2323)) | (auth["app"] == 2))]
    for b in _bursts(tel["ts"], th.episode_gap_s):
        eb = tel[b]
        hosts = _target_keys(eb, with_port=False)
        fi = fire_count(eb["ts"], th.brute_conns, th.brute_window_s)
        if fi < 0 or len(np.unique(hosts[: fi + 1])) < 2:
            continue
        n = len(np.unique(hosts))
        evd = _base(eb, files, fi)
        evd.update({"hosts": n, "sessions": len(eb), "sample_targets": _samples(eb),
                    "median_session_s": round(float(np.median(eb["end"] - eb["ts"])), 3)})
        out.append(Finding("bruteforce", f"telnet brute force against {n} internet hosts: {len(eb)} short sessions",
                           1, min(0.99, 0.8 + len(eb) / 100), float(eb["ts"][0]), float(eb["ts"][fi]),
                           float(eb["end"].max()), evd, "telnet_sessions_internet"))
    return out


# flood --------------------------------------------------------------------------------------
def flood(d: DeviceEvidence, ev: np.ndarray, th: Thresholds, files: list[str]) -> list[Finding]:
    out: list[Finding] = []
    if len(ev) >= th.flood_flows:
        hosts = _target_keys(ev, with_port=False)
        web_ev = _web(ev)
        # hosts that got flood_flows flows carrying flood_pkts packets in flood_window_s, and web
        # servers that got flood_flows connections (HTTP floods carry few packets each)
        cands = screened_groups(hosts, ev["ts"], ev["pkts_out"], th.flood_flows, th.flood_pkts, th.flood_window_s)
        web_idx = np.flatnonzero(web_ev)
        cands += [web_idx[g] for g in screened_groups(hosts[web_idx], ev["ts"][web_idx], np.zeros(len(web_idx)),
                                                      th.flood_flows, 0.0, th.flood_window_s)]
        for h in dict.fromkeys(int(hosts[g[0]]) for g in cands):
            e = ev[hosts == np.uint64(h)]
            for b in _bursts(e["ts"], th.episode_gap_s):
                eb = e[b]
                fi = fire_count(eb["ts"], th.flood_flows, th.flood_window_s)
                if fi < 0:
                    continue
                http = _web(eb).mean() > 0.5 and (eb["proto"] == 6).all()
                if not http:
                    # the packets: fire when the last flood_window_s hold flood_pkts of them
                    fi = fire_weighted(eb["ts"], eb["pkts_out"].astype(np.float64), th.flood_pkts, th.flood_window_s, start=fi)
                    if fi < 0:
                        continue
                    if eb["pkts_in"].sum() > 0.5 * eb["pkts_out"].sum():
                        continue  # answered conversations (a busy client), not a flood
                out.append(_flood_finding(eb, fi, files, "many_flows"))
    # one heavy one-way stream at a high rate (GRE and other single-flow vectors)
    heavy = ev[(ev["pkts_out"] >= 1000) & (ev["pkts_in"] * 10 < ev["pkts_out"]) & ~np.isin(ev["proto"], (6, 17))]
    for e in heavy:
        span = max(float(e["end"] - e["ts"]), 1e-3)
        rate = float(e["pkts_out"]) / span
        if rate >= th.flood_pps:
            f = _flood_finding(heavy[heavy["flow_id"] == e["flow_id"]], 0, files, "heavy_stream")
            f.fire_ts = float(e["ts"]) + min(span, 500 / rate)
            out.append(f)
    # DNS water torture: many distinct names under one domain to one resolver (the names are a
    # sample: the sidecar keeps at most 64 queries per device and minute)
    if len(d.dns) >= th.dns_flood_names:
        q = sorted(d.dns, key=lambda x: x.ts)
        by_res: dict[tuple[str, str], list] = {}
        for x in q:
            by_res.setdefault((x.resolver, _base_domain(x.qname)), []).append(x)
        for (res, _dom), qs in by_res.items():
            if len(qs) < th.dns_flood_names:
                continue
            ts = np.array([x.ts for x in qs])
            names = np.array([hash(x.qname) for x in qs], np.int64)
            for b in _bursts(ts, th.episode_gap_s):
                fi = fire_index(ts[b], names[b], th.dns_flood_names, th.flood_window_s)
                if fi < 0:
                    continue
                sub = [qs[i] for i in b]
                doms = Counter(_base_domain(x.qname) for x in sub)
                dom, _ = doms.most_common(1)[0]
                if np.mean([encoded_name(x.qname, th) or x.qtype in ODD_QTYPES for x in sub]) >= 0.5:
                    continue  # encoded names or odd record types: a tunnel, reported as exfiltration
                out.append(Finding(
                    "flood", f"DNS water torture: random names under {dom} sent to {res} "
                             f"({len(set(x.qname for x in sub[: fi + 1]))} distinct in {sub[fi].ts - sub[0].ts:.1f} s)",
                    1, 0.95, sub[0].ts, sub[fi].ts, sub[-1].ts,
                    {"queries_sampled": len(sub), "domain": dom, "resolver": res,
                     "sample_names": [x.qname for x in sub[:5]],
                     "first_packet": frame_ref(sub[0].frame, files), "alert_packet": frame_ref(sub[fi].frame, files)},
                    "dns_water_torture"))
    return out


def _web(ev: np.ndarray) -> np.ndarray:
    """Connections to a web service (by its HTTP request or its port): an HTTP flood's flows."""
    return (ev["proto"] == 6) & ((ev["app"] == A_HTTP) | np.isin(ev["dport"], (80, 8080, 8000, 443)))


def _flood_finding(eb: np.ndarray, fi: int, files: list[str], rule: str) -> Finding:
    span = max(float(eb["end"].max() - eb["ts"][0]), 1e-3)
    pkts = int(eb["pkts_out"].sum())
    proto = Counter(int(p) for p in eb["proto"]).most_common(1)[0][0]
    pname = {6: "TCP", 17: "UDP", 47: "GRE", 1: "ICMP"}.get(proto, f"IP proto {proto}")
    ports = _ports(eb)
    port_txt = "random ports" if len(np.unique(eb["dport"])) > 20 else ("port " + ",".join(str(p) for p in ports[:3]) if ports else "")
    sig = f"{pname} flood against {_addr(eb[0])} ({port_txt}): {pkts} packets, {pkts / span:,.0f} packets/s".replace(" ()", "")
    evd = _base(eb, files, fi)
    evd.update({"target": _addr(eb[0]), "packets_per_s": round(pkts / span, 1), "bytes_out": int(eb["bytes_out"].sum()),
                "ports": ports, "proto": pname})
    return Finding("flood", sig, 1, 0.97, float(eb["ts"][0]), float(eb["ts"][fi]), float(eb["end"].max()), evd, rule)


def _base_domain(name: str) -> str:
    parts = name.rstrip(".").split(".")
    if len(parts) >= 3 and len(parts[-1]) == 2 and parts[-2] in ("co", "com", "net", "org", "ac", "gov", "edu", "ne", "or"):
        return ".".join(parts[-3:])
    return ".".join(parts[-2:])


# exfiltration -------------------------------------------------------------------------------
def dns_tunnel(d: DeviceEvidence, th: Thresholds, files: list[str]) -> list[Finding]:
    out: list[Finding] = []
    if len(d.dns) < th.tunnel_names:
        return out
    # names that carry data, or queries for record types a client has no use for (iodine asks for
    # NULL records, dnscat2 for TXT/MX/CNAME: room for the answer's payload)
    q = sorted((x for x in d.dns if encoded_name(x.qname, th) or x.qtype in ODD_QTYPES), key=lambda x: x.ts)
    by_res: dict[str, list] = {}
    for x in q:
        by_res.setdefault(x.resolver, []).append(x)
    for _res, qs in by_res.items():
        if len(qs) < th.tunnel_names:
            continue
        ts = np.array([x.ts for x in qs])
        names = np.array([hash(x.qname) for x in qs], np.int64)
        for b in _bursts(ts, th.episode_gap_s):
            sub = [qs[i] for i in b]
            fi = fire_index(ts[b], names[b], th.tunnel_names, th.scan_window_s)
            if fi < 0:
                continue
            dom = Counter(_tunnel_domain(x.qname) for x in sub).most_common(1)[0][0]
            prefix = np.array([max(len(x.qname) - len(dom) - 1, 0) for x in sub])
            uniq = len({x.qname for x in sub})
            enc = int(prefix.sum())
            types = Counter({1: "A", 5: "CNAME", 10: "NULL", 15: "MX", 16: "TXT", 28: "AAAA", 255: "ANY"}.get(x.qtype, str(x.qtype)) for x in sub)
            out.append(Finding(
                "exfil", f"DNS tunnel: {uniq} encoded names under {dom} ({enc:,} bytes of names, types {', '.join(t for t, _ in types.most_common(3))})",
                1, min(0.99, 0.8 + uniq / 500), sub[0].ts, sub[fi].ts, sub[-1].ts,
                {"queries": len(sub), "unique_names": uniq, "domain": dom, "encoded_bytes": enc,
                 "mean_name_length": round(float(prefix.mean()), 1), "query_types": dict(types),
                 "resolver": sub[0].resolver, "sample_names": [x.qname for x in sub[:3]],
                 "first_packet": frame_ref(sub[0].frame, files), "alert_packet": frame_ref(sub[fi].frame, files)},
                "dns_tunnel"))
    return out


def encoded_name(name: str, th: Thresholds) -> bool:
    """A name that carries data: a label of ``tunnel_label_len`` characters or more, or a long
    name made of several long labels (base32/hex chunks)."""
    labels = name.split(".")
    longest = max((len(x) for x in labels), default=0)
    return longest >= th.tunnel_label_len or (len(name) >= 2 * th.tunnel_label_len and longest >= th.tunnel_label_len // 2)


def _tunnel_domain(name: str) -> str:
    """The part of a tunnelled name that stays the same: the domain after the encoded labels, or
    the leading tag of tunnels that put it first (dnscat2's ``dnscat.``)."""
    labels = name.split(".")
    tail = [x for x in labels[-3:] if len(x) < 20]
    if len(tail) >= 2 and tail == labels[-len(tail):]:
        return ".".join(labels[-2:])
    return labels[0] + "."


def upload_surge(ev: np.ndarray, windows: np.ndarray, th: Thresholds, files: list[str], baseline: float | None,
                 uplink_bps: float | None, window_s: float) -> list[Finding]:
    """Windows whose upload is ``surge_x`` times the device's baseline (its own quiet windows, or
    ``baseline`` bytes per window from an earlier capture)."""
    out: list[Finding] = []
    if not len(windows):
        return out
    up = windows["upload_bytes"].astype(np.float64)
    starts = windows["window_start"]
    surge = np.zeros(len(up), bool)
    base_used = np.zeros(len(up))
    quiet: list[float] = []
    for i in range(len(up)):
        if baseline is not None:
            base = baseline
        elif quiet:
            base = float(np.median(quiet))
        else:
            base = None
        if base is not None:
            limit = max(th.surge_x * max(base, 1000.0), th.surge_min_bytes * window_s / 60.0)
        else:
            limit = float("inf")
        if up[i] >= limit:
            surge[i] = True
            base_used[i] = max(base or 0.0, 1000.0)
        else:
            quiet.append(up[i])
    if not surge.any():
        return out
    ext = ev[((ev["kind"] & K_EXT) != 0) & (ev["bytes_out"] > 0)]
    # episodes: runs of surge windows (one quiet window between two surges joins them)
    idx = np.flatnonzero(surge)
    groups = np.split(idx, np.flatnonzero(np.diff(idx) > 2) + 1)
    for g in groups:
        w0, w1 = float(starts[g[0]]), float(starts[g[-1]]) + window_s
        base = float(np.median(base_used[g]))
        sel = ext[(ext["end"] >= w0 - window_s) & (ext["ts"] < w1)]
        total = float(up[g].sum())
        peak = float(up[g].max())
        if len(sel):
            big = sel[sel["bytes_out"] >= 0.05 * sel["bytes_out"].max()]
            first = float(max(big["ts"].min(), w0 - window_s))
            fire = _surge_fire(big, first, base / window_s, th)
            peers = Counter()
            for e in big:
                peers[_addr(e)] += int(e["bytes_out"])
            top = [p for p, _ in peers.most_common(3)]
            evd: dict[str, object] = {"first_packet": frame_ref(int(big["frame"][0]), files), "flow_ids": [int(x) for x in big["flow_id"][:5]],
                                      "peers": top}
        else:
            first, fire, top, evd = w0, w0 + window_s, [], {}
        x_base = peak / base
        # the rate while it surges: the busiest window, or the surge's own flows over their life
        # when the surge fills only part of a window
        rate_bps = peak * 8 / window_s
        if len(sel):
            span = float(big["end"].max()) - first
            if span >= 5.0:
                rate_bps = max(rate_bps, float(big["bytes_out"].sum()) * 8 / span)
        share = min(1.0, rate_bps / uplink_bps) if uplink_bps else None
        rate_mbps = rate_bps / 1e6
        sig = f"upload surge: {rate_mbps:.1f} Mbit/s to {', '.join(top) or 'the internet'}, {x_base:,.0f}× its baseline"
        if share is not None:
            sig += f", {share:.0%} of the uplink"
        evd.update({"upload_bytes": int(total), "peak_window_bytes": int(peak), "baseline_bytes_per_window": round(base, 1),
                    "x_baseline": round(x_base, 1), "upload_mbps": round(rate_mbps, 3), "windows": len(g)})
        if share is not None:
            evd["uplink_share"] = round(share, 3)
        sev = 1 if (share or 0) >= 0.5 or x_base >= 1000 else 2
        out.append(Finding("exfil", sig, sev, min(0.99, 0.8 + np.log10(max(x_base, 1)) / 20), first, fire,
                           float(max(sel["end"].max(), w0)) if len(sel) else w1, evd, "upload_surge"))
    return out


def _surge_fire(big: np.ndarray, first: float, base_rate: float, th: Thresholds) -> float:
    """When the bytes sent since ``first`` (flows spread evenly over their life) exceed both
    ``surge_min_bytes_10s`` and ``surge_x`` times the baseline rate over the same time."""
    end = float(big["end"].max())
    grid = np.arange(first, max(end, first) + 1.0, 0.5)
    sent = np.zeros(len(grid))
    for e in big:
        span = max(float(e["end"] - e["ts"]), 1e-3)
        frac = np.clip((grid - float(e["ts"])) / span, 0, 1)
        sent += frac * float(e["bytes_out"])
    need = np.maximum(th.surge_min_bytes_10s, th.surge_x * base_rate * (grid - first))
    hit = np.flatnonzero(sent >= need)
    return float(grid[hit[0]]) if len(hit) else end


# command and control ------------------------------------------------------------------------
def c2(d: DeviceEvidence, ev: np.ndarray, th: Thresholds, files: list[str]) -> list[Finding]:
    out: list[Finding] = []
    for ts, flow_id, frame in d.c2_hellos[:1]:
        sel = ev[ev["flow_id"] == flow_id]
        peer = f"{_addr(sel[0])}:{int(sel[0]['dport'])}" if len(sel) else "an external host"
        last = float(sel["end"].max()) if len(sel) else ts
        evd: dict[str, object] = {"peer": peer, "hellos": len(d.c2_hellos), "flow_ids": [int(flow_id)],
                                  "alert_packet": frame_ref(frame, files)}
        if len(sel):
            evd.update({"session_s": round(float(sel["end"][0] - sel["ts"][0]), 1), "packets_out": int(sel["pkts_out"][0])})
        out.append(Finding("c2", f"Mirai C2 session: binary hello to {peer} on a telnet port, then keep-alives",
                           1, 0.99, float(sel["ts"][0]) if len(sel) else ts, ts, last, evd, "mirai_c2_hello"))
    # beacons: regular new connections to one external peer
    conn = ev[((ev["kind"] & K_EXT) != 0) & (ev["proto"] == 6) & ((ev["kind"] & (K_PROBE | K_HALF_OPEN)) == 0)]
    conn = conn[conn["app"] != A_MIRAI_C2]
    if len(conn) < th.tls_beacon_conns:
        return out
    keys = _target_keys(conn)
    tls = (conn["app"] == A_TLS) | np.isin(conn["dport"], (443, 8443))
    fired: dict[int, int] = {}  # group key → first firing index within the key's connections
    ones = np.ones(len(conn))
    for g in screened_groups(keys, conn["ts"], ones, th.beacon_conns, 0.0, th.beacon_conns * th.beacon_max_period_s):
        fi = _beacon_fire(conn["ts"][g], th)
        if fi >= 0:
            fired[int(keys[g[0]])] = fi
    fast_keys: set[int] = set()
    tls_idx = np.flatnonzero(tls)
    for g in screened_groups(keys[tls_idx], conn["ts"][tls_idx], ones[tls_idx], th.tls_beacon_conns, 0.0,
                             th.tls_beacon_max_period_s * th.tls_beacon_conns):
        sub = conn[tls_idx[g]]
        fi = _tls_beacon_fire(sub, th)
        if fi >= 0:
            k = int(keys[tls_idx[g[0]]])
            allk = np.flatnonzero(keys == k)
            pos = int(np.searchsorted(conn["ts"][allk], sub["ts"][fi]))  # its place among all the key's connections
            if k not in fired or pos < fired[k]:
                fired[k] = pos
                fast_keys.add(k)
    for k, fi in fired.items():
        fast = fi if k in fast_keys else -1
        e = conn[keys == k]
        # the episode: the run of connections (gaps under 2 periods at most) that holds the firing one
        bursts = _bursts(e["ts"], th.beacon_max_period_s * 2)
        b = next(b for b in bursts if b[0] <= fi <= b[-1])
        eb, fi = e[b], fi - int(b[0])
        iv = np.diff(eb["ts"])
        period = float(np.median(iv)) if len(iv) else 0.0
        sig = f"beaconing to {_addr(eb[0])}:{int(eb['dport'][0])}: {len(eb)} connections every {period:.1f} s"
        evd = _base(eb, files, fi)
        evd.update({"peer": f"{_addr(eb[0])}:{int(eb['dport'][0])}", "connections": len(eb),
                    "period_s": round(period, 2),
                    "interval_cv": round(float(iv.std() / max(iv.mean(), 1e-9)), 3) if len(iv) else 0.0})
        out.append(Finding("c2", sig, 2, 0.85, float(eb["ts"][0]), float(eb["ts"][fi]), float(eb["end"].max()),
                           evd, "tls_beacon" if fi + int(b[0]) == fast else "beacon"))
    return out


def _tls_beacon_fire(eb: np.ndarray, th: Thresholds) -> int:
    """First index at which the last ``tls_beacon_conns`` connections were TLS (by handshake or
    port 443/8443), each closed before the next began, at a short and steady period."""
    k = th.tls_beacon_conns
    n = len(eb)
    if n < k:
        return -1
    ts, end = eb["ts"], eb["end"]
    tls = ((eb["app"] == A_TLS) | np.isin(eb["dport"], (443, 8443))).astype(np.int64)
    iv = np.diff(ts)
    seq = (end[:-1] <= ts[1:]).astype(np.int64)  # session i over before i + 1 began
    i = np.arange(k - 1, n)
    j = i - k + 1
    ct = np.concatenate(([0], np.cumsum(tls)))
    c1 = np.concatenate(([0.0], np.cumsum(iv)))
    c2 = np.concatenate(([0.0], np.cumsum(iv * iv)))
    cs = np.concatenate(([0], np.cumsum(seq)))
    m = (c1[i] - c1[j]) / (k - 1)
    var = np.maximum((c2[i] - c2[j]) / (k - 1) - m * m, 0.0)
    ok = ((ct[i + 1] - ct[j]) == k) & (cs[i] - cs[j] == k - 1) & (m >= 0.5) & (m <= th.tls_beacon_max_period_s) \
        & (np.sqrt(var) <= th.tls_beacon_cv * m)
    hit = np.flatnonzero(ok)
    return int(i[hit[0]]) if len(hit) else -1


def _beacon_fire(ts: np.ndarray, th: Thresholds) -> int:
    """First index at which the connections of the last ``beacon_min_span_s`` (at least
    ``beacon_conns`` of them) came at regular intervals."""
    k = th.beacon_conns
    n = len(ts)
    if n < k:
        return -1
    i = np.arange(n)
    j = np.searchsorted(ts, ts - th.beacon_min_span_s, side="right") - 1
    j = np.maximum(0, np.minimum(j, i - k + 1))
    iv = np.diff(ts)
    c1 = np.concatenate(([0.0], np.cumsum(iv)))
    c2 = np.concatenate(([0.0], np.cumsum(iv * iv)))
    cnt = np.maximum(i - j, 1)
    m = (c1[i] - c1[j]) / cnt
    var = np.maximum((c2[i] - c2[j]) / cnt - m * m, 0.0)
    ok = (i >= k - 1) & (ts - ts[0] >= th.beacon_min_span_s) & (m >= 0.5) & (m <= th.beacon_max_period_s) \
        & (np.sqrt(var) <= th.beacon_cv * m)
    hit = np.flatnonzero(ok)
    return int(hit[0]) if len(hit) else -1
