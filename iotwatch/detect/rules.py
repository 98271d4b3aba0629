"""Strong evidence, computed directly: one function per behaviour, each returning findings.

A finding is one episode of one behaviour of one device: when its first packet was sent
(``first_ts``), when the evidence crossed the rule's threshold (``fire_ts``: the moment a live
sensor would raise the alert), when it last showed (``last_ts``), and the evidence itself
(counts, ports, sample targets, flows and packet numbers). Thresholds are in :class:`Thresholds`
and documented in docs/detection.md; they were chosen on the generated scenarios and checked
against every labelled host of ../shared/pcaps (zero alerts on normal hosts and victims).
"""

from __future__ import annotations

import bisect
import hashlib
import threading
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import lru_cache

import numpy as np

from .._jit import kernel
from ..addrs import ip_str
from ..flows import PUSH_IDLE_S
from ..sidecar import BUDGET, K_ARP
from . import type_upload
from .evidence import (
    A_HTTP,
    A_MIRAI_C2,
    A_PROGRAM,
    A_TLS,
    K_ECHO,
    K_EMPTY_RST,
    K_EXT,
    K_HALF_OPEN,
    K_PROBE,
    K_UDP_NOREPLY,
    K_WEIRD,
    MAX_DNS,
    R_AUTH,
    R_HOST,
    R_PROBE,
    DeviceEvidence,
    DnsQuery,
    _slot,
    host_key,
    login_sessions,
    scan_probes,
    take_rows,
    target_keys,
)

ARP_BUDGET = BUDGET[K_ARP]
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
    surge_min_bytes: int = 5_000_000  # ... and at least this much a minute (a fast surge: alert at once)
    surge_slow_x: float = 100.0  # below that rate: this many times the device's own normal ...
    surge_sustain: int = 3  # ... for this many windows in a row (a slow surge)
    surge_history: int = 3  # quiet windows of its own before a slow surge can be judged
    surge_base_floor: float = 1000.0  # bytes a minute: a reference is never taken lower than this
    surge_peer_share: float = 0.5  # judged against the site's other devices: this share of the uplink
    surge_min_bytes_10s: int = 1_000_000  # bytes sent after the surge started before the alert
    beacon_conns: int = 30  # connections to one peer at regular intervals ...
    beacon_min_span_s: float = 180.0  # ... over at least this long (a setup phase polls for a minute or two)
    beacon_cv: float = 0.25  # ... coefficient of variation of the intervals at most this
    beacon_max_period_s: float = 120.0
    routine_periods: float = 1.5  # a regular peer called this many periods after the device appeared is routine
    tls_beacon_conns: int = 5  # or: new TLS connections to one peer, each over before the next ...
    tls_beacon_max_period_s: float = 10.0  # ... every few seconds ...
    tls_beacon_cv: float = 0.15  # ... like clockwork (a script, not a person or a keep-alive)
    connect_hosts: int = 20  # failed connects (retried SYNs too) to this many distinct internet hosts ...
    connect_window_s: float = 60.0  # ... within this long: a scan with ordinary connect() calls
    udp_ports_one_host: int = 100  # unanswered UDP to this many ports of one host within scan_window_s
    dead_attempts: int = 8  # failed connects to one (internet host, port) ...
    dead_cv: float = 0.1  # ... at intervals this regular ...
    dead_max_period_s: float = 300.0  # ... and at most this far apart: a dead controller
    icmp_tunnel_bytes: int = 100_000  # ICMP echo to one internet host carrying this much ...
    icmp_tunnel_mean: float = 200.0  # ... in packets this large on average (ping sends 64-100 bytes)
    episode_gap_s: float = 120.0  # evidence this far apart is two episodes
    credential_window_s: float = 600.0  # a public-address lookup, then a mail/FTP upload within this
    lookup_to_connect_s: float = 10.0  # a name looked up, then a connection to what it names within this
    heartbeat_beats: int = 8  # exchanges one side of a held session started on one beat ...
    heartbeat_on_beat: float = 2 / 3  # ... this share of all the exchanges it started at least (a message sent in two parts is two) ...
    heartbeat_min_period_s: float = 1.0  # ... with a beat this long ...
    heartbeat_max_period_s: float = 300.0  # ... at most
    report_parallel: int = 10  # a report channel is one session: not with more than this many to its peer at once
    callback_checkins: int = 6  # call-backs to the host that served the device a program ...
    callback_cv: float = 0.35  # ... at intervals with a coefficient of variation at most this (jitter allowed) ...
    callback_max_period_s: float = 600.0  # ... and at most this long on average


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
    rule: str = ""  # the rule that fired first
    more_rules: tuple[str, ...] = ()  # other rules of the same behaviour that fired on the same evidence


def _bursts(ts: np.ndarray, gap: float) -> list[np.ndarray]:
    """Index ranges of events no more than ``gap`` seconds apart (ts sorted)."""
    if not len(ts):
        return []
    cut = np.flatnonzero(np.diff(ts) > gap) + 1
    return np.split(np.arange(len(ts)), cut)


def fire_index(ts: np.ndarray, targets: np.ndarray, k: int, window: float, distinct: int | None = None) -> int:
    """First index at which the events in (ts[i] - window, ts[i]] hold ``k`` distinct targets; -1 if never.
    ``distinct``: how many distinct targets there are, when the caller has counted them."""
    if len(ts) < k:
        return -1
    if (len(np.unique(targets)) if distinct is None else distinct) < k:
        return -1
    counts: Counter[int] = Counter()
    q: deque[int] = deque()
    # (Python numbers, taken a block at a time: the loop may run over a device's whole history at
    # every pass of a live run, or stop at its first events)
    tl: list[int] = []
    tsl: list[float] = []
    for i in range(len(ts)):
        if i == len(tl):
            tl += targets[i: i + 512].tolist()
            tsl += ts[i: i + 512].tolist()
        counts[tl[i]] += 1
        q.append(i)
        while tsl[q[0]] <= tsl[i] - window:
            j = q.popleft()
            c = counts[tl[j]] - 1
            if c:
                counts[tl[j]] = c
            else:
                del counts[tl[j]]
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


@kernel
def _screen_in_time(key, ts, w, k, total, window, slot_group, slot_key, lo, acc, cnt, last, nxt, group, hit):  # type: ignore[no-untyped-def]
    """:func:`_screen` for events in time order, without sorting them by key: each key's events
    are linked in time order (``nxt``) and numbered by a hash index of the keys (``slot_group``
    and ``slot_key``, all -1 and a power of two of at least twice ``len(key)`` slots), and each
    key's window slides as its events come (``lo``, ``acc``, ``cnt``: its first event, weight
    and events in the window; ``last``: its newest event). The same sums in the same order as
    :func:`_screen`. Fills ``group`` (each event's key number, in order of first appearance) and
    ``hit`` (per key number, 1 when it passes); returns how many keys."""
    mask = slot_group.shape[0] - 1
    ng = 0
    for i in range(key.shape[0]):
        x = key[i]
        s = _slot(x, mask)
        while slot_group[s] >= 0 and slot_key[s] != x:
            s = (s + 1) & mask
        g = slot_group[s]
        if g < 0:
            g = ng
            ng += 1
            slot_group[s] = g
            slot_key[s] = x
            lo[g] = i
            acc[g] = 0.0
            cnt[g] = 0
            hit[g] = 0
        else:
            nxt[last[g]] = i
        last[g] = i
        group[i] = g
        if hit[g]:
            continue
        acc[g] += w[i]
        cnt[g] += 1
        while ts[lo[g]] <= ts[i] - window:
            acc[g] -= w[lo[g]]
            cnt[g] -= 1
            lo[g] = nxt[lo[g]]
        if cnt[g] >= k and acc[g] >= total:
            hit[g] = 1
    return ng


def screened_groups(keys: np.ndarray, ts: np.ndarray, weights: np.ndarray, k: int, total: float,
                    window: float) -> list[np.ndarray]:
    """Indices (time order) of the key groups that pass :func:`_screen`, in key order: a compiled
    pass, so that a busy device's hundreds of ordinary peers cost one loop, not one Python round
    each. Events in time order (a device's, as the rules read them) are screened as they come
    (:func:`_screen_in_time`: no sort of all of them by key, which cost more than the screen at
    every pass of a live run); only the events of the keys that pass are sorted."""
    n = len(keys)
    if n < k:
        return []
    if not bool((ts[1:] >= ts[:-1]).all()):
        order = np.lexsort((ts, keys))  # (key, time)
        out = np.zeros(n, np.uint8)
        _screen(keys[order], ts[order], weights[order].astype(np.float64), k, float(total), float(window), out)
        if not out.any():
            return []
        passed = order[out.astype(bool)]
        return _groups(keys[passed], k, passed)
    size = 16
    while size < 2 * n:
        size *= 2
    group = np.empty(n, np.int32)  # (32-bit indices: fewer fresh pages to fault in at every call)
    hit = np.empty(n, np.uint8)
    ng = _screen_in_time(np.ascontiguousarray(keys, np.uint64), np.ascontiguousarray(ts, np.float64),
                         np.ascontiguousarray(weights, np.float64), k, float(total), float(window),
                         np.full(size, -1, np.int32), np.empty(size, np.uint64), np.empty(n, np.int32),
                         np.empty(n, np.float64), np.empty(n, np.int32), np.empty(n, np.int32),
                         np.empty(n, np.int32), group, hit)
    if not hit[:ng].any():
        return []
    passed = np.flatnonzero(hit[:ng][group])  # (time order)
    kp = keys[passed]
    order = np.argsort(kp, kind="stable")  # the passing keys in key order, each in time order
    passed, kp = passed[order], kp[order]
    cut = np.flatnonzero(kp[1:] != kp[:-1]) + 1
    starts = np.concatenate(([0], cut)).tolist()
    ends = np.concatenate((cut, [len(kp)])).tolist()
    return [passed[a:b] for a, b in zip(starts, ends, strict=True) if b - a >= k]


def _union_size(a: np.ndarray, b: np.ndarray) -> int:
    """``len(np.union1d(a, b))`` of two sorted arrays of unique keys (a binary search of the
    smaller in the larger)."""
    if len(a) > len(b):
        a, b = b, a
    if not len(b):
        return len(a)
    at = np.minimum(np.searchsorted(b, a), len(b) - 1)
    return len(b) + int(np.count_nonzero(b[at] != a))


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


_target_keys = target_keys


def past_cap(ovf: np.ndarray, role: int, lo: float, hi: float, gap: float,
             keep: np.ndarray | None = None) -> np.ndarray:
    """The aggregate rows of events past the evidence cap (evidence.OVF_DTYPE) of one role that
    continue an episode of kept events spanning ``lo``..``hi``: rows chained to it with gaps of at
    most ``gap`` seconds. ``keep``: a mask of the rows that may count (a target's rows)."""
    if not len(ovf):
        return ovf[:0]
    m = ovf["role"] == role
    if keep is not None:
        m &= keep
    rows = ovf[m]
    rows = rows[np.argsort(rows["first"], kind="stable")]
    take = np.zeros(len(rows), bool)
    end = hi
    for i in range(len(rows)):
        if rows["first"][i] > end + gap:
            break
        if rows["last"][i] >= lo - gap:
            take[i] = True
            end = max(end, float(rows["last"][i]))
    return rows[take]


def lost_since(d: DeviceEvidence, role: int, lo: float) -> bool:
    """Whether events of ``role`` past the cap that fit no aggregate row may belong to an
    episode that began at ``lo`` (then its totals are lower bounds)."""
    return role in d.ovf_full_roles and d.dropped_last >= lo


def at_least(n: int, bound: bool) -> str:
    """A count in words: "at least N" when it is a lower bound."""
    return f"at least {n:,}" if bound else f"{n:,}"


def _add_past_cap(evd: dict[str, object], rows: np.ndarray) -> None:
    """Fold the aggregate rows past the cap into an alert's flow and packet counts."""
    if not len(rows):
        return
    n = int(rows["flows"].sum())
    evd["flows"] = int(evd.get("flows", 0)) + n  # type: ignore[call-overload]
    evd["packets_out"] = int(evd.get("packets_out", 0)) + int(rows["pkts_out"].sum())  # type: ignore[call-overload]
    evd["packets_in"] = int(evd.get("packets_in", 0)) + int(rows["pkts_in"].sum())  # type: ignore[call-overload]
    evd["flows_not_kept"] = n  # counted in the totals above; their flow records are in flows.parquet


def _mark_bounds(evd: dict[str, object], names: list[str]) -> None:
    if names:
        evd["lower_bounds"] = sorted(set(names) | set(evd.get("lower_bounds", [])))  # type: ignore[arg-type]


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
    """The ``n`` TCP and UDP ports the events went to most, most first (equal counts: the one
    seen first first, as ``Counter.most_common``); from one sort of the ports, not a Python
    count of a scan's or a flood's thousands of events at every pass of a live run."""
    dport = ev["dport"][(ev["proto"] == 6) | (ev["proto"] == 17)]
    u, first, count = np.unique(dport, return_index=True, return_counts=True)
    return u[np.lexsort((first, -count.astype(np.int64)))[:n]].tolist()


def _base(ev: np.ndarray, files: list[str], fire: int) -> dict[str, object]:
    return {"flows": len(ev), "packets_out": int(ev["pkts_out"].sum()), "packets_in": int(ev["pkts_in"].sum()),
            "first_packet": frame_ref(int(ev["frame"][0]), files),
            "alert_packet": frame_ref(int(ev["frame"][fire]), files),
            "flow_ids": [int(x) for x in ev["flow_id"][:5]]}


# scan --------------------------------------------------------------------------------------
PROBES = K_PROBE | K_WEIRD | K_ECHO | K_EMPTY_RST | K_HALF_OPEN


def scan(d: DeviceEvidence, ev: np.ndarray, th: Thresholds, files: list[str], windows: dict[str, np.ndarray],
         ovf: np.ndarray | None = None, sample_window_s: float = 60.0) -> list[Finding]:
    """``ovf``: the device's aggregate rows past the evidence cap (its own addresses' only);
    ``sample_window_s``: the window of the side channel's budgets (the run's window)."""
    out: list[Finding] = []
    ovf = d.ovf if ovf is None else ovf
    probe_mask = scan_probes(ev)
    probes = take_rows(ev, probe_mask)
    udp_probes = take_rows(ev, ((ev["kind"] & K_UDP_NOREPLY) != 0) & ((ev["kind"] & K_EXT) == 0))
    mirai_total = int(windows["mirai_syns"].sum()) if len(windows) else 0
    bursts = _bursts(probes["ts"], th.episode_gap_s)
    extra_of = [past_cap(ovf, R_PROBE, float(probes["ts"][b[0]]), float(probes["end"][b].max()), th.episode_gap_s)
                for b in bursts]
    # the distinct targets past the cap are kept per device: they count for an episode only when
    # it is the one episode the events past the cap continue
    shared = sum(1 for x in extra_of if len(x)) > 1
    for b, extra in zip(bursts, extra_of, strict=True):
        e = probes[b]
        tk = _target_keys(e)
        tkeys = np.unique(tk)  # (counted once: for the firing test and the alert)
        fi = fire_index(e["ts"], tk, th.scan_targets, th.scan_window_s, len(tkeys))
        strong = (e["kind"] & (K_WEIRD | K_HALF_OPEN | K_EMPTY_RST)) != 0
        nmap_fi = _signature_fire(e["ts"], tk, strong, th) if strong.any() else -1
        dports = e["dport"][(e["proto"] == 6)]
        mirai_like = mirai_total >= th.mirai_syns and len(dports) and np.isin(dports, (23, 2323)).mean() > 0.8
        cands = {"probe_fanout": fi, "probe_signature": nmap_fi}
        if mirai_like:
            tel = np.flatnonzero(np.isin(e["dport"], (23, 2323)))
            cands["mirai_scanner"] = int(tel[th.mirai_syns - 1]) if len(tel) >= th.mirai_syns else -1
        fired = sorted((i, name) for name, i in cands.items() if i >= 0)
        if not fired:
            continue
        f = fired[0][0]
        rule, more = fired[0][1], tuple(name for _, name in fired[1:])
        hkeys = np.unique(_target_keys(e, with_port=False))
        targets, hosts = len(tkeys), len(hkeys)
        bounds: list[str] = []
        lost = lost_since(d, R_PROBE, float(e["ts"][0]))
        if len(extra):
            if shared or d.ovf_distinct_full:
                bounds += ["targets", "hosts"]
            else:
                t2, h2 = d.distinct_past_cap()
                # (how many in the union only: both sets are sorted and unique, and the union
                # would sort the large one again at every pass of a live run)
                targets, hosts = _union_size(tkeys, t2), _union_size(hkeys, h2)
        if lost:
            bounds += ["flows", "packets_out", "packets_in", "unanswered", "targets", "hosts", "last_ts"]
        kinds = []
        kind_counts = {}
        for bit, field_, name in ((K_PROBE, "k_probe", "unanswered or rejected SYNs"),
                                  (K_HALF_OPEN, "k_half_open", "half-open (SYN-ACK reset)"),
                                  (K_EMPTY_RST, "k_empty_rst", "empty connections reset by the client"),
                                  (K_WEIRD, "k_weird", "NULL/FIN/Xmas probes"),
                                  (K_ECHO, "k_echo", "ICMP echo/timestamp requests")):
            c = int(((e["kind"] & bit) != 0).sum()) + int(extra[field_].sum())
            kind_counts[field_] = c
            if c:
                kinds.append(f"{at_least(c, lost)} {name}")
        tb, hb = "targets" in bounds, "hosts" in bounds
        if mirai_like:
            sig = (f"Mirai-style telnet scanner: {mirai_total:,} SYNs with TCP seq = destination address, to "
                   f"{at_least(hosts, hb)} addresses on ports 23/2323")
            sev, score = 1, 0.99
        elif hosts >= 2:
            sig = f"network scan: probes to {at_least(targets, tb)} targets on {at_least(hosts, hb)} hosts ({', '.join(kinds)})"
            sev, score = (1 if targets >= 100 else 2), min(0.99, 0.7 + targets / 200)
        else:
            sig = f"port scan of {_addr(e[0])}: {at_least(targets, tb)} ports probed ({', '.join(kinds)})"
            sev, score = (1 if targets >= 100 else 2), min(0.99, 0.7 + targets / 200)
        evd = _base(e, files, f)
        if hosts == 1:
            evd["target"] = _addr(e[0])
        _add_past_cap(evd, extra)
        evd.update({"targets": targets, "hosts": hosts, "ports": _ports(e), "sample_targets": _samples(e),
                    "unanswered": kind_counts["k_probe"], "mirai_syns": mirai_total if mirai_like else 0})
        _mark_bounds(evd, bounds)
        last = float(max(e["end"].max(), e["ts"][-1], extra["last"].max() if len(extra) else -np.inf))
        out.append(Finding("scan", sig, sev, score, float(e["ts"][0]), float(e["ts"][f]), last, evd, rule, more))
    # UDP probes to many local hosts (a UDP sweep)
    for b in _bursts(udp_probes["ts"], th.episode_gap_s):
        e = udp_probes[b]
        fi = fire_index(e["ts"], _target_keys(e), th.scan_targets * 3, th.scan_window_s)
        if fi < 0:
            continue
        targets = len(np.unique(_target_keys(e)))
        evd = _base(e, files, fi)
        evd.update({"targets": targets, "ports": _ports(e), "sample_targets": _samples(e)})
        # UDP probes past the evidence cap are counted per host, not per sweep: a lower bound then
        bound = d.dropped > 0 and d.dropped_last >= float(e["ts"][0])
        if bound:
            _mark_bounds(evd, ["flows", "packets_out", "packets_in", "targets", "last_ts"])
        out.append(Finding("scan", f"UDP sweep: {at_least(targets, bound)} local targets never answered", 2, 0.8, float(e["ts"][0]),
                           float(e["ts"][fi]), float(e["end"].max()), evd, "udp_sweep"))
    out += connect_fanout(ev, th, files, probe_mask)
    out += udp_port_scan(ev, th, files)
    # ARP sweep
    if d.arp:
        arp = d.arp_array()
        arp = arp[np.argsort(arp["ts"], kind="stable")]
        for b in _bursts(arp["ts"], th.episode_gap_s):
            a = arp[b]
            fi = fire_index(a["ts"], a["tpa"], th.arp_targets, th.scan_window_s)
            if fi < 0:
                continue
            n = len(np.unique(a["tpa"]))
            sample = [ip_str(False, 0, 0xFFFF00000000 | int(x)) for x in a["tpa"][:5]]
            # the side channel keeps a budget of ARP requests per device and window: a window
            # that used it all may have held more (counts are then lower bounds)
            per_window = np.unique((a["ts"] // sample_window_s).astype(np.int64), return_counts=True)[1]
            sampled = bool((per_window >= ARP_BUDGET).any())
            evd_a: dict[str, object] = {"arp_requests": len(a), "targets": n, "sample_targets": sample,
                                        "first_packet": frame_ref(int(a["frame"][0]), files),
                                        "alert_packet": frame_ref(int(a["frame"][fi]), files)}
            if sampled:
                evd_a["sampled"] = f"at most {ARP_BUDGET} ARP requests per device and {sample_window_s:g} s window are read"
                _mark_bounds(evd_a, ["arp_requests", "targets", "last_ts"])
            out.append(Finding("scan", f"ARP sweep: who-has for {at_least(n, sampled)} addresses", 2,
                               min(0.99, 0.7 + n / 500), float(a["ts"][0]), float(a["ts"][fi]), float(a["ts"][-1]),
                               evd_a, "arp_sweep"))
    return out


#: ports a device's own cloud and push services listen on (web, MQTT, XMPP, Apple and Google push):
#: a device whose internet is down retries them, on many addresses of its cloud's, like clockwork;
#: without the DNS answers that would tell them apart, failed connects to these ports are neither
#: a connect() scan nor calls to a dead controller
CLOUD_PORTS = (80, 443, 8883, 1883, 5222, 5223, 5228, 8443)


def _off_cloud(ev: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Indices of the events of ``mask`` not to a cloud port (:data:`CLOUD_PORTS`), in order: the
    ports read for those only (a few failed connects among a device's history, at every pass)."""
    i = np.flatnonzero(mask)
    dport = ev["dport"][i]
    cloud = np.zeros(len(i), np.bool_)
    for p in CLOUD_PORTS:  # (comparisons, not np.isin: its set-up costs more than a few failed connects)
        cloud |= dport == p
    return i[~cloud]


def failed_connects(ev: np.ndarray) -> np.ndarray:
    """Mask of TCP connection attempts to internet hosts that carried nothing: unanswered (the
    client's stack retransmitting its SYN included), refused, or reset empty."""
    return ((ev["kind"] & K_PROBE) != 0) & ((ev["kind"] & K_EXT) != 0) & (ev["proto"] == 6)


def connect_fanout(ev: np.ndarray, th: Thresholds, files: list[str], probes: np.ndarray | None = None) -> list[Finding]:
    """A scan made of ordinary ``connect()`` calls (an IoT bot without a raw socket): connection
    attempts timed out (the SYN retransmitted, never answered: what probe_fanout leaves out as an
    offline device's) to ``connect_hosts`` distinct internet hosts within ``connect_window_s``,
    off the cloud ports (:data:`CLOUD_PORTS`: a device whose internet is down retries its cloud
    on many of its addresses); a scanner knocks on telnet, web-admin and IoT service ports.
    ``probes``: ``scan_probes(ev)``, when the caller has it."""
    out: list[Finding] = []
    # the connects probe_fanout leaves out (a SYN its own stack retransmitted): raw-socket probes
    # and refused connects are its evidence already
    e_all = take_rows(ev, _off_cloud(ev, failed_connects(ev) & ~(scan_probes(ev) if probes is None else probes)))
    for b in _bursts(e_all["ts"], th.episode_gap_s):
        e = e_all[b]
        hk = host_key(e["dst_hi"], e["dst_lo"])
        fi = fire_index(e["ts"], hk, th.connect_hosts, th.connect_window_s)
        if fi < 0:
            continue
        hosts = len(np.unique(hk))
        span = max(float(e["ts"][-1] - e["ts"][0]), 1.0)
        evd = _base(e, files, fi)
        evd.update({"hosts": hosts, "targets": len(np.unique(_target_keys(e))), "ports": _ports(e),
                    "sample_targets": _samples(e), "hosts_per_s": round(hosts / span, 2)})
        out.append(Finding("scan", f"network scan with connect(): timed-out connections to {hosts} internet hosts "
                                   f"({hosts / span:.1f} new hosts/s, ports {', '.join(map(str, _ports(e)))})",
                           2, min(0.95, 0.7 + hosts / 400), float(e["ts"][0]), float(e["ts"][fi]), float(e["end"].max()),
                           evd, "connect_fanout"))
    return out


def udp_port_scan(ev: np.ndarray, th: Thresholds, files: list[str]) -> list[Finding]:
    """A vertical UDP scan: unanswered UDP to ``udp_ports_one_host`` ports of one host (local or
    on the internet) within ``scan_window_s`` (closed ports answer with ICMP, not UDP)."""
    out: list[Finding] = []
    u = take_rows(ev, ((ev["kind"] & K_UDP_NOREPLY) != 0) & (ev["proto"] == 17))
    if len(u) < th.udp_ports_one_host:
        return out
    hk = host_key(u["dst_hi"], u["dst_lo"])
    for g in _groups(hk, th.udp_ports_one_host):
        for b in _bursts(u["ts"][g], th.episode_gap_s):
            e = u[g[b]]
            fi = fire_index(e["ts"], e["dport"].astype(np.int64), th.udp_ports_one_host, th.scan_window_s)
            if fi < 0:
                continue
            ports = len(np.unique(e["dport"]))
            span = max(float(e["ts"][-1] - e["ts"][0]), 0.001)
            evd = _base(e, files, fi)
            evd.update({"target": _addr(e[0]), "targets": ports, "hosts": 1, "ports": _ports(e),
                        "sample_targets": _samples(e), "ports_per_s": round(ports / span, 1)})
            out.append(Finding("scan", f"UDP port scan of {_addr(e[0])}: {ports} ports never answered in "
                                       f"{span:.1f} s", 2, min(0.99, 0.7 + ports / 1000), float(e["ts"][0]),
                               float(e["ts"][fi]), float(e["end"].max()), evd, "udp_port_scan"))
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
def bruteforce(ev: np.ndarray, th: Thresholds, files: list[str], ovf: np.ndarray | None = None,
               lost_until: float = -np.inf) -> list[Finding]:
    """``ovf``: aggregate rows past the evidence cap; ``lost_until``: the last event past the cap
    when some fit no aggregate row (an episode that began before it may miss some: its totals
    are then lower bounds), else -inf."""
    out: list[Finding] = []
    ovf = np.zeros(0, ev.dtype) if ovf is None else ovf
    auth = take_rows(ev, login_sessions(ev))
    if len(auth) < th.brute_conns:
        return out
    for g in _groups(_target_keys(auth), th.brute_conns):
        e = auth[g]
        for b in _bursts(e["ts"], th.episode_gap_s):
            eb = e[b]
            fi = fire_count(eb["ts"], th.brute_conns, th.brute_window_s)
            if fi < 0:
                continue
            extra = past_cap(ovf, R_AUTH, float(eb["ts"][0]), float(eb["end"].max()), th.episode_gap_s,
                             keep=ovf["key"] == _target_keys(eb[:1])[0] if len(ovf) else None)
            n = len(eb) + int(extra["flows"].sum())
            bound = lost_until >= float(eb["ts"][0])
            dur = eb["end"] - eb["ts"]
            port = int(eb["dport"][0])
            app = {22: "SSH", 23: "telnet", 2323: "telnet", 21: "FTP", 3389: "RDP", 5900: "VNC"}.get(port)
            apps = Counter(int(a) for a in eb["app"] if a)
            if not app and apps:
                app = {1: "SSH", 2: "telnet", 3: "FTP"}.get(apps.most_common(1)[0][0], "auth")
            sig = f"{app or 'login'} brute force on {_addr(eb[0])}:{port}: {at_least(n, bound)} short sessions"
            evd = _base(eb, files, fi)
            _add_past_cap(evd, extra)
            evd.update({"target": f"{_addr(eb[0])}:{port}", "sessions": n,
                        "median_session_s": round(float(np.median(dur)), 3),
                        "bytes_out": int(eb["bytes_out"].sum()) + int(extra["bytes_out"].sum())})
            if bound:
                _mark_bounds(evd, ["flows", "sessions", "packets_out", "packets_in", "bytes_out", "last_ts"])
            last = float(max(eb["end"].max(), extra["last"].max() if len(extra) else -np.inf))
            out.append(Finding("bruteforce", sig, 1 if n >= 20 else 2, min(0.99, 0.75 + n / 100),
                               float(eb["ts"][0]), float(eb["ts"][fi]), last, evd, "auth_sessions"))
    # telnet logins to several internet hosts at once: Mirai's loader-less spreading
    tel = auth[((auth["kind"] & K_EXT) != 0) & (np.isin(auth["dport"], (23, 2323)) | (auth["app"] == 2))]
    for b in _bursts(tel["ts"], th.episode_gap_s):
        eb = tel[b]
        hosts = _target_keys(eb, with_port=False)
        fi = fire_count(eb["ts"], th.brute_conns, th.brute_window_s)
        if fi < 0 or len(np.unique(hosts[: fi + 1])) < 2:
            continue
        extra = past_cap(ovf, R_AUTH, float(eb["ts"][0]), float(eb["end"].max()), th.episode_gap_s,
                         keep=(ovf["ext"] == 1) & np.isin(ovf["dport"], (23, 2323)) if len(ovf) else None)
        n = len(np.union1d(np.unique(hosts), host_key(extra["dst_hi"], extra["dst_lo"])))
        sessions = len(eb) + int(extra["flows"].sum())
        bound = lost_until >= float(eb["ts"][0])
        evd = _base(eb, files, fi)
        _add_past_cap(evd, extra)
        evd.update({"hosts": n, "sessions": sessions, "sample_targets": _samples(eb),
                    "median_session_s": round(float(np.median(eb["end"] - eb["ts"])), 3)})
        if bound:
            _mark_bounds(evd, ["flows", "sessions", "hosts", "packets_out", "packets_in", "last_ts"])
        last = float(max(eb["end"].max(), extra["last"].max() if len(extra) else -np.inf))
        out.append(Finding("bruteforce", f"telnet brute force against {at_least(n, bound)} internet hosts: "
                                         f"{at_least(sessions, bound)} short sessions",
                           1, min(0.99, 0.8 + sessions / 100), float(eb["ts"][0]), float(eb["ts"][fi]),
                           last, evd, "telnet_sessions_internet"))
    return out


# flood --------------------------------------------------------------------------------------
def flood(d: DeviceEvidence, ev: np.ndarray, th: Thresholds, files: list[str], ovf: np.ndarray | None = None,
          windows: dict[str, np.ndarray] | None = None, sample_window_s: float = 60.0) -> list[Finding]:
    """``ovf``: the device's aggregate rows past the evidence cap (its own addresses' only);
    ``windows``: its window counters (exact DNS query counts)."""
    out: list[Finding] = []
    ovf = d.ovf if ovf is None else ovf
    if len(ev) >= th.flood_flows:
        hosts = _target_keys(ev, with_port=False)
        web_ev = _web(ev)
        # hosts that got flood_flows flows carrying flood_pkts packets in flood_window_s, and web
        # servers that got flood_flows connections (HTTP floods carry few packets each)
        cands = screened_groups(hosts, ev["ts"], ev["pkts_out"], th.flood_flows, th.flood_pkts, th.flood_window_s)
        of_host = {int(hosts[g[0]]): g for g in cands}  # host → its events (a group holds all of them)
        web_idx = np.flatnonzero(web_ev)
        cands += [web_idx[g] for g in screened_groups(hosts[web_idx], ev["ts"][web_idx], np.zeros(len(web_idx)),
                                                      th.flood_flows, 0.0, th.flood_window_s)]
        for h in dict.fromkeys(int(hosts[g[0]]) for g in cands):
            g = of_host.get(h)
            e = take_rows(ev, g) if g is not None else take_rows(ev, hosts == np.uint64(h))
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
                extra = past_cap(ovf, R_HOST, float(eb["ts"][0]), float(eb["end"].max()), th.episode_gap_s,
                                 keep=ovf["key"] == np.uint64(h) if len(ovf) else None)
                out.append(_flood_finding(eb, fi, files, "many_flows", extra, lost_since(d, R_HOST, float(eb["ts"][0]))))
    # one heavy one-way stream at a high rate (GRE and other single-flow vectors)
    proto = ev["proto"]  # (comparisons, not np.isin: over every event at every pass)
    heavy = take_rows(ev, (ev["pkts_out"] >= 1000) & (ev["pkts_in"] * 10 < ev["pkts_out"]) & (proto != 6) & (proto != 17))
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
        for res, qs, ts, names in _dns_groups(d):
            if len(qs) < th.dns_flood_names:
                continue
            for b in _bursts(ts, th.episode_gap_s):
                fi = fire_index(ts[b], names[b], th.dns_flood_names, th.flood_window_s)
                if fi < 0:
                    continue
                sub = [qs[i] for i in b]
                doms = Counter(_base_domain(x.qname) for x in sub)
                dom, _ = doms.most_common(1)[0]
                if np.mean([encoded_name(x.qname, th) or x.qtype in ODD_QTYPES for x in sub]) >= 0.5:
                    continue  # encoded names or odd record types: a tunnel, reported as exfiltration
                sampled, sent = dns_sampled(d, windows, sub[0].ts, sub[-1].ts, sample_window_s)
                evd_w: dict[str, object] = {
                    "queries_sampled": len(sub), "domain": dom, "resolver": res, "sample_names": [x.qname for x in sub[:5]],
                    "first_packet": frame_ref(sub[0].frame, files), "alert_packet": frame_ref(sub[fi].frame, files)}
                if sent is not None:
                    evd_w["dns_queries_sent"] = sent
                if sampled:
                    evd_w["sampled"] = "DNS queries are read within a budget per device and window: names are a sample"
                    _mark_bounds(evd_w, ["queries_sampled", "last_ts"])
                out.append(Finding(
                    "flood", f"DNS water torture: random names under {dom} sent to {res} "
                             f"({at_least(len(set(x.qname for x in sub[: fi + 1])), sampled)} distinct in "
                             f"{sub[fi].ts - sub[0].ts:.1f} s"
                             + (f"; {sent:,} DNS queries sent in those windows)" if sent is not None else ")"),
                    1, 0.95, sub[0].ts, sub[fi].ts, sub[-1].ts, evd_w, "dns_water_torture"))
    return out


@dataclass(slots=True)
class DnsGroups:
    """The flood rule's groups (:func:`_dns_groups`) of a device's first ``n`` DNS queries: the
    last of them (``last``), the latest time among them (``top``), each group's place by
    (resolver, base domain) and per group the resolver, the queries in time order, their times
    and their names' hashes."""

    n: int
    last: DnsQuery | None
    top: float
    where: dict[tuple[str, str], int]
    groups: list[tuple[str, list[DnsQuery], np.ndarray, np.ndarray]]


def _dns_groups(d: DeviceEvidence) -> list[tuple[str, list[DnsQuery], np.ndarray, np.ndarray]]:
    """The device's DNS queries in time order by (resolver, base domain), in the order the groups
    first show: per group the resolver, the queries, their times and their names' hashes. Kept
    (``d.dns_groups``) and taken up at the next call: a live run's passes ask at every pass. The
    queries are only ever appended, each a new object: the same query at the kept count, the
    same queries before it; those added since go after them, in time order, when none is older
    than the latest kept (as a device's queries come), else all are grouped again."""
    if not d.dns:
        return []
    box = d.dns_groups
    kept: DnsGroups | None = box[0] if box else None  # type: ignore[assignment]
    if kept is not None and kept.n <= len(d.dns) and d.dns[kept.n - 1] is kept.last:
        if kept.n == len(d.dns):
            return kept.groups
        new = d.dns[kept.n:]
        if min(x.ts for x in new) < kept.top:
            kept = None
    else:
        kept = None
    if kept is None:
        kept, new = DnsGroups(0, None, -np.inf, {}, []), d.dns
    grown = _grouped(kept, new)
    box[:] = [grown]
    return grown.groups


def _grouped(kept: DnsGroups, new: list[DnsQuery]) -> DnsGroups:
    """``kept`` with queries ``new`` (none older than its latest) added, in time order (a stable
    sort: ties keep the order they came in); ``kept`` is not changed (a view's copy may read it)."""
    where, groups = dict(kept.where), list(kept.groups)
    added: dict[int, list[DnsQuery]] = {}
    for x in sorted(new, key=lambda x: x.ts):
        key = (x.resolver, _base_domain(x.qname))
        i = where.get(key)
        if i is None:
            i = where[key] = len(groups)
            groups.append((x.resolver, [], np.zeros(0), np.zeros(0, np.int64)))
        added.setdefault(i, []).append(x)
    for i, xs in added.items():
        res, qs, ts, names = groups[i]
        groups[i] = (res, qs + xs, np.concatenate([ts, np.array([x.ts for x in xs])]),
                     np.concatenate([names, np.array([hash(x.qname) for x in xs], np.int64)]))
    top = max(kept.top, max(x.ts for x in new))
    return DnsGroups(kept.n + len(new), new[-1], top, where, groups)


def _web(ev: np.ndarray) -> np.ndarray:
    """Connections to a web service (by its HTTP request or its port): an HTTP flood's flows."""
    app, dport = ev["app"], ev["dport"]  # (comparisons, not np.isin: the rule asks over every event at every pass)
    return (ev["proto"] == 6) & ((app == A_HTTP) | (app == A_PROGRAM) | (dport == 80) | (dport == 8080) | (dport == 8000)
                                 | (dport == 443))


def _flood_finding(eb: np.ndarray, fi: int, files: list[str], rule: str, extra: np.ndarray | None = None,
                   bound: bool = False) -> Finding:
    """``extra``: aggregate rows past the evidence cap that continue the flood (counted in its
    totals); ``bound``: some of its flows fit no row (the totals are lower bounds)."""
    extra = extra if extra is not None else np.zeros(0, eb.dtype)
    last = float(max(eb["end"].max(), extra["last"].max() if len(extra) else -np.inf))
    span = max(last - float(eb["ts"][0]), 1e-3)
    pkts = int(eb["pkts_out"].sum()) + (int(extra["pkts_out"].sum()) if len(extra) else 0)
    proto = Counter(int(p) for p in eb["proto"]).most_common(1)[0][0]
    pname = {6: "TCP", 17: "UDP", 47: "GRE", 1: "ICMP"}.get(proto, f"IP proto {proto}")
    ports = _ports(eb)
    port_txt = "random ports" if len(np.unique(eb["dport"])) > 20 else ("port " + ",".join(str(p) for p in ports[:3]) if ports else "")
    sig = (f"{pname} flood against {_addr(eb[0])} ({port_txt}): {at_least(pkts, bound)} packets, "
           f"{pkts / span:,.0f} packets/s").replace(" ()", "")
    evd = _base(eb, files, fi)
    _add_past_cap(evd, extra)
    evd.update({"target": _addr(eb[0]), "packets_per_s": round(pkts / span, 1),
                "bytes_out": int(eb["bytes_out"].sum()) + (int(extra["bytes_out"].sum()) if len(extra) else 0),
                "ports": ports, "proto": pname})
    if bound:
        _mark_bounds(evd, ["flows", "packets_out", "packets_in", "bytes_out", "packets_per_s", "last_ts"])
    return Finding("flood", sig, 1, 0.97, float(eb["ts"][0]), float(eb["ts"][fi]), last, evd, rule)


@lru_cache(maxsize=65536)
def _base_domain(name: str) -> str:
    parts = name.rstrip(".").split(".")
    if len(parts) >= 3 and len(parts[-1]) == 2 and parts[-2] in ("co", "com", "net", "org", "ac", "gov", "edu", "ne", "or"):
        return ".".join(parts[-3:])
    return ".".join(parts[-2:])


# exfiltration -------------------------------------------------------------------------------
def dns_sampled(d: DeviceEvidence, windows: dict[str, np.ndarray] | None, lo: float, hi: float,
                window_s: float) -> tuple[bool, int | None]:
    """Whether the side channel's DNS budget left out queries the device sent in the windows
    spanning ``lo``..``hi``, and how many DNS queries it sent in them (the windows count every
    query exactly; None without windows)."""
    if not windows or "dns_queries" not in windows or not len(windows["window_start"]):
        return len(d.dns) >= MAX_DNS, None
    ws = windows["window_start"]
    m = (ws + window_s > lo) & (ws <= hi)
    if not m.any():
        return len(d.dns) >= MAX_DNS, None
    sent = int(windows["dns_queries"][m].sum())
    a, b = float(ws[m].min()), float(ws[m].max()) + window_s
    kept = sum(1 for x in d.dns if a <= x.ts < b)
    return sent > kept or len(d.dns) >= MAX_DNS, sent


def dns_tunnel(d: DeviceEvidence, th: Thresholds, files: list[str], windows: dict[str, np.ndarray] | None = None,
               sample_window_s: float = 60.0) -> list[Finding]:
    """``windows``: the device's window counters (exact DNS query counts, to tell a sample)."""
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
            sampled, sent = dns_sampled(d, windows, sub[0].ts, sub[-1].ts, sample_window_s)
            evd_t: dict[str, object] = {
                "queries": len(sub), "unique_names": uniq, "domain": dom, "encoded_bytes": enc,
                "mean_name_length": round(float(prefix.mean()), 1), "query_types": dict(types),
                "resolver": sub[0].resolver, "sample_names": [x.qname for x in sub[:3]],
                "first_packet": frame_ref(sub[0].frame, files), "alert_packet": frame_ref(sub[fi].frame, files)}
            if sent is not None:
                evd_t["dns_queries_sent"] = sent
            if sampled:
                evd_t["sampled"] = "DNS queries are read within a budget per device and window: names are a sample"
                _mark_bounds(evd_t, ["queries", "unique_names", "encoded_bytes", "last_ts"])
            more = f"; {sent:,} DNS queries sent in those windows" if sampled and sent is not None else ""
            out.append(Finding(
                "exfil", f"DNS tunnel: {at_least(uniq, sampled)} encoded names under {dom} ({at_least(enc, sampled)} bytes "
                         f"of names, types {', '.join(t for t, _ in types.most_common(3))}{more})",
                1, min(0.99, 0.8 + uniq / 500), sub[0].ts, sub[fi].ts, sub[-1].ts, evd_t, "dns_tunnel"))
    return out


def encoded_name(name: str, th: Thresholds) -> bool:
    """A name that carries data: a label of ``tunnel_label_len`` characters or more, or a long
    name made of several long labels (base32/hex chunks)."""
    longest = _longest_label(name)
    return longest >= th.tunnel_label_len or (len(name) >= 2 * th.tunnel_label_len and longest >= th.tunnel_label_len // 2)


@lru_cache(maxsize=65536)
def _longest_label(name: str) -> int:
    """(A device asks the same names again and again: each is measured once.)"""
    return max((len(x) for x in name.split(".")), default=0)


def _tunnel_domain(name: str) -> str:
    """The part of a tunnelled name that stays the same: the domain after the encoded labels, or
    the leading tag of tunnels that put it first (dnscat2's ``dnscat.``)."""
    labels = name.split(".")
    tail = [x for x in labels[-3:] if len(x) < 20]
    if len(tail) >= 2 and tail == labels[-len(tail):]:
        return ".".join(labels[-2:])
    return labels[0] + "."


#: where an upload surge's reference came from (the alert's ``evidence.reference``)
REF_FILE, REF_OWN, REF_PEERS, REF_TYPE = "baseline file", "own quiet windows", "site peers", "device type"


def active_upload(windows: np.ndarray, window_s: float, first_seen: float | None, last_seen: float | None) -> np.ndarray:
    """Upload per window at the rate the device kept while it was seen: a device's first and last
    windows are partial (it appeared, or the capture began or ended, inside them), so their
    bytes are scaled to a whole window (the part seen is taken as at least 10 s)."""
    up = windows["upload_bytes"].astype(np.float64)
    starts = windows["window_start"].astype(np.float64)
    lo = np.maximum(starts, first_seen if first_seen is not None else -np.inf)
    hi = np.minimum(starts + window_s, last_seen if last_seen is not None else np.inf)
    seen = np.clip(hi - lo, min(10.0, window_s), window_s)
    return up * (window_s / seen)


def _article(noun: str | None) -> str:
    """"a" or "an" before a device type in a signature (an appliance, a hub, an unknown device)."""
    return "an" if noun and noun[0].lower() in "aeiou" else "a"


def _sorted_median(s: list[float]) -> float:
    """``np.median`` of a sorted list (the middle value, or the mean of the two middle ones): the
    upload rule's reference at every window, without sorting the windows before it again."""
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def surge_windows(up: np.ndarray, th: Thresholds, window_s: float, baseline: float | None,
                  peer_base: float | None, uplink_bps: float | None = None,
                  type_base: float | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Which windows of a device surge, against which reference (bytes per window), and where the
    reference came from, per window. Causal: a window is judged only by the windows before it.

    The device's own reference is the baseline of an earlier run when given, else the median of
    its quiet windows so far. A window surges when its upload is ``surge_x`` times that and at
    least ``surge_min_bytes`` a minute; or, below that rate, ``surge_slow_x`` times it for
    ``surge_sustain`` windows in a row once the reference rests on an earlier run or on
    ``surge_history`` quiet windows (a slow, sustained surge: a camera that sends a few bytes a
    second pushing tens of kbit/s for minutes). A device with less history than that (a capture
    started mid-incident) is also judged against what the site's other devices upload
    (``peer_base``): ``surge_x`` times that and ``surge_peer_share`` of the uplink, whatever its
    size (a camera that always streams to its cloud has no quiet window either, but does not take
    most of the site's uplink). And against what its type uploads (``type_base``: the normal
    upload per window of the device's type, :mod:`.type_upload`): ``surge_x`` times that and at
    least ``surge_min_bytes`` a minute (a plug pushing megabytes a minute is not normal for any
    plug; a camera's reference is its video). Only windows under ``surge_x`` times the reference
    (the device's own when it has one, else its type's, else the site's) become the reference:
    a capture that starts with the surge never makes it the device's normal."""
    n = len(up)
    fast = np.zeros(n, bool)
    slow = np.zeros(n, bool)
    base_used = np.zeros(n)
    source = [""] * n
    floor = th.surge_base_floor * window_s / 60.0
    min_bytes = th.surge_min_bytes * window_s / 60.0
    quiet: list[float] = []  # the quiet windows' uploads so far, sorted (their median: the reference)
    for i in range(n):
        own = baseline if baseline is not None else (_sorted_median(quiet) if quiet else None)
        src = REF_FILE if baseline is not None else REF_OWN
        history = baseline is not None or len(quiet) >= th.surge_history
        peer = peer_base if (not history and peer_base is not None and uplink_bps) else None
        kind = type_base if not history else None
        if own is None and peer is None and kind is None:
            bisect.insort(quiet, float(up[i]))
            continue
        if own is not None:
            own = max(own, floor)
            base_used[i], source[i] = own, src
            if up[i] >= th.surge_x * own and up[i] >= min_bytes:
                fast[i] = True
                continue
            if history and up[i] >= th.surge_slow_x * own:
                slow[i] = True  # judged below, once it is known how long it lasts
                continue
        if kind is not None:
            kind = max(kind, floor)
            if up[i] >= th.surge_x * kind and up[i] >= min_bytes:
                fast[i] = True
                base_used[i], source[i] = kind, REF_TYPE
                continue
        if peer is not None:
            peer = max(peer, floor)
            if up[i] >= th.surge_x * peer and up[i] * 8 / window_s >= th.surge_peer_share * uplink_bps:  # type: ignore[operator]
                fast[i] = True
                base_used[i], source[i] = peer, REF_PEERS
                continue
        ref = own if own is not None else kind if kind is not None else peer
        if up[i] < th.surge_x * ref:  # type: ignore[operator]
            bisect.insort(quiet, float(up[i]))
        # else: far above the reference without (yet) the rate or the share of a surge: not normal
        # either, so never a reference (a surge that starts late in a window makes such a window)
    # slow windows count only in runs of surge_sustain (fast windows continue a run)
    surge = fast.copy()
    run = 0
    for i in range(n + 1):
        if i < n and (slow[i] or fast[i]):
            run += 1
            continue
        if run >= th.surge_sustain:
            surge[i - run:i] |= slow[i - run:i]
        run = 0
    return surge, base_used, source


def upload_surge(ev: np.ndarray, windows: np.ndarray, th: Thresholds, files: list[str], baseline: float | None,
                 uplink_bps: float | None, window_s: float, peer_base: float | None = None,
                 seen: tuple[float, float] | None = None, device_type: str | None = None) -> list[Finding]:
    """Episodes of windows whose upload to external addresses is far beyond the device's normal
    (see :func:`surge_windows`; ``seen``: the device's first and last packet, for the rate in its
    partial windows; ``device_type``: the inventory's type, whose normal upload is the reference
    while the device has no history of its own): with × reference, the reference used, the rate
    and its share of the uplink."""
    out: list[Finding] = []
    if not len(windows):
        return out
    up = active_upload(windows, window_s, *(seen or (None, None)))
    raw = windows["upload_bytes"].astype(np.float64)
    starts = windows["window_start"]
    type_base = type_upload.reference(device_type, window_s)
    surge, base_used, source = surge_windows(up, th, window_s, baseline, peer_base, uplink_bps, type_base)
    if not surge.any():
        return out
    ext = take_rows(ev, ((ev["kind"] & K_EXT) != 0) & (ev["bytes_out"] > 0))
    # episodes: runs of surge windows (one quiet window between two surges joins them)
    idx = np.flatnonzero(surge)
    groups = np.split(idx, np.flatnonzero(np.diff(idx) > 2) + 1)
    for g in groups:
        w0, w1 = float(starts[g[0]]), float(starts[g[-1]]) + window_s
        base = float(np.median(base_used[g]))
        ref = source[g[0]]
        # a slow surge is known once it has lasted surge_sustain windows
        slow_fire = float(starts[g[min(len(g), th.surge_sustain) - 1]]) + window_s
        sel = ext[(ext["end"] >= w0 - window_s) & (ext["ts"] < w1)]
        total = float(raw[g].sum())
        peak = float(raw[g].max())
        if len(sel):
            big = sel[sel["bytes_out"] >= 0.05 * sel["bytes_out"].max()]
            first = float(max(big["ts"].min(), w0 - window_s))
            fire = _surge_fire(big, first, base / window_s, th)
            if float(up[g].max()) < th.surge_min_bytes * window_s / 60.0:
                fire = max(fire, slow_fire)
            top = _top_peers(big, 3)
            # alert_packet: the first packet of the largest upload already under way when it fired
            going = big[big["ts"] <= fire]
            at = going[int(np.argmax(going["bytes_out"]))] if len(going) else big[0]
            evd: dict[str, object] = {"first_packet": frame_ref(int(big["frame"][0]), files),
                                      "alert_packet": frame_ref(int(at["frame"]), files),
                                      "flow_ids": [int(x) for x in big["flow_id"][:5]], "peers": top}
        else:
            first, fire, top = w0, w0 + window_s, []
            evd = {"first_packet": None, "alert_packet": None}  # no upload flow kept as evidence to cite
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
        rate = f"{rate_mbps:.1f} Mbit/s" if rate_mbps >= 0.1 else f"{rate_bps / 1e3:.0f} kbit/s"
        what = {REF_PEERS: "what the site's other devices upload",
                REF_TYPE: f"what {_article(device_type)} {device_type} normally uploads"}.get(ref, "its baseline")
        sig = f"upload surge: {rate} to {', '.join(top) or 'the internet'}, {x_base:,.0f}× {what}"
        if share is not None:
            sig += f", {share:.0%} of the uplink"
        evd.update({"upload_bytes": int(total), "peak_window_bytes": int(peak), "baseline_bytes_per_window": round(base, 1),
                    "x_baseline": round(x_base, 1), "upload_mbps": round(rate_mbps, 3), "windows": len(g),
                    "reference": ref})
        if ref == REF_TYPE:
            evd["device_type"] = device_type
        if share is not None:
            evd["uplink_share"] = round(share, 3)
        sev = 1 if (share or 0) >= 0.5 or x_base >= 1000 else 2
        out.append(Finding("exfil", sig, sev, min(0.99, 0.8 + np.log10(max(x_base, 1)) / 20), first, fire,
                           float(max(sel["end"].max(), w0)) if len(sel) else w1, evd, "upload_surge"))
    return out


def _top_peers(ev: np.ndarray, n: int) -> list[str]:
    """The ``n`` destinations the events sent the most bytes to, most first (equal totals: the one
    seen first first, as ``Counter.most_common``); by address, from columns (a surge's flows may
    be thousands, and the rule runs at every pass of a live run)."""
    if not len(ev):
        return []
    u, first, inv = np.unique(np.stack([ev["v6"].astype(np.uint64), ev["dst_hi"], ev["dst_lo"]], axis=1), axis=0,
                              return_index=True, return_inverse=True)
    sent = np.zeros(len(u), np.uint64)
    np.add.at(sent, inv.reshape(-1), ev["bytes_out"].astype(np.uint64))
    best = np.lexsort((first, ~sent))[:n]  # (~: the most bytes first, exactly)
    return [_addr(ev[int(first[j])]) for j in best.tolist()]


def _surge_fire(big: np.ndarray, first: float, base_rate: float, th: Thresholds) -> float:
    """When the bytes sent since ``first`` (flows spread evenly over their life) exceed both
    ``surge_min_bytes_10s`` and ``surge_x`` times the baseline rate over the same time."""
    end = float(big["end"].max())
    grid = np.arange(first, max(end, first) + 1.0, 0.5)
    sent = np.zeros(len(grid))
    ts = big["ts"].astype(np.float64)
    span = np.maximum(big["end"].astype(np.float64) - ts, 1e-3)
    sent_by = big["bytes_out"].astype(np.float64)
    # each flow's share of its bytes at each grid point, a block of flows at a time (the same
    # values as flow by flow; added in the flows' order, as before)
    step = max(1, (1 << 20) // max(len(grid), 1))
    for a in range(0, len(big), step):
        part = np.minimum(np.maximum((grid[None, :] - ts[a:a + step, None]) / span[a:a + step, None], 0.0), 1.0)
        part *= sent_by[a:a + step, None]
        for row in part:
            sent += row
    need = np.maximum(th.surge_min_bytes_10s, th.surge_x * base_rate * (grid - first))
    hit = np.flatnonzero(sent >= need)
    return float(grid[hit[0]]) if len(hit) else end


#: services that tell a host its public address: credential stealers ask one before they send
#: what they took (MITRE ATT&CK T1016, "System Network Configuration Discovery"; Suricata's ET
#: POLICY "External IP Lookup" rules name the same services)
IP_ECHO_DOMAINS = frozenset((
    "ipify.org", "ip-api.com", "icanhazip.com", "ifconfig.me", "ifconfig.co", "ipinfo.io", "ipecho.net",
    "myexternalip.com", "wtfismyip.com", "ident.me", "myip.com", "ipwho.is", "ipapi.co", "freegeoip.app",
    "checkip.amazonaws.com", "checkip.dyndns.org", "dyndns.org", "whatismyipaddress.com", "myip.dnsomatic.com",
    "ip.sb", "seeip.org", "db-ip.com", "geoplugin.net",
))
#: where stolen credentials go: mail submission and FTP uploads to the internet
CREDENTIAL_PORTS = {25: "SMTP", 465: "SMTPS", 587: "SMTP submission", 2525: "SMTP", 21: "FTP"}


def in_zone(name: str, zones: frozenset[str], *, apex: bool = True) -> bool:
    """Whether a DNS name lies under one of ``zones`` (or is one, with ``apex``): one set lookup
    per label of the name."""
    labels = name.rstrip(".").lower().split(".")
    return any(".".join(labels[k:]) in zones for k in range(0 if apex else 1, len(labels)))


@lru_cache(maxsize=65536)
def _ip_echo(name: str) -> bool:
    return in_zone(name, IP_ECHO_DOMAINS)


def credential_upload(d: DeviceEvidence, ev: np.ndarray, th: Thresholds, files: list[str]) -> list[Finding]:
    """A device that asks a what-is-my-IP service for its public address and then, within
    ``credential_window_s``, logs in to a mail or FTP server on the internet and sends data: the
    way credential stealers (AgentTesla and its kin) report what they took. Either alone is
    ordinary; together they are the stealer's routine."""
    asks = sorted((q for q in d.dns if _ip_echo(q.qname)), key=lambda q: q.ts)
    if not asks or not len(ev):
        return []
    ports = np.array(sorted(CREDENTIAL_PORTS), np.int64)
    sent = ev[((ev["kind"] & K_EXT) != 0) & (ev["proto"] == 6) & np.isin(ev["dport"].astype(np.int64), ports)
              & (ev["payload_out"] > 0) & (ev["pkts_in"] > 0)]
    out: list[Finding] = []
    for q in asks:
        after = sent[(sent["ts"] >= q.ts) & (sent["ts"] <= q.ts + th.credential_window_s)]
        if not len(after):
            continue
        first = after[0]
        servers = sorted({f"{_addr(e)}:{int(e['dport'])}" for e in after})
        proto = CREDENTIAL_PORTS[int(first["dport"])]
        sig = (f"credential upload: asked {q.qname.rstrip('.')} for its public address, then sent "
               f"{int(after['payload_out'].sum()):,} bytes over {proto} to {', '.join(servers[:3])}")
        evd: dict[str, object] = {
            "first_packet": frame_ref(q.frame, files), "alert_packet": frame_ref(int(first["frame"]), files),
            "ip_lookup": q.qname.rstrip("."), "resolver": q.resolver, "servers": servers[:5], "sessions": len(after),
            "bytes_sent": int(after["payload_out"].sum()), "flow_ids": [int(x) for x in after["flow_id"][:5]],
        }
        out.append(Finding("exfil", sig, 1, 0.95, q.ts, float(first["ts"]), float(after["end"].max()), evd,
                           "credential_upload"))
        break  # one episode: the first lookup that was followed by an upload
    return out


#: free dynamic-DNS zones: anyone can point a name under them at any address within minutes,
#: which is why remote-access trojans and botnets find their controllers through them (Suricata's
#: ET POLICY "DNS Query to DynDNS Domain" rules watch the same zones)
DYNAMIC_DNS_DOMAINS = frozenset((
    "duckdns.org", "no-ip.com", "no-ip.org", "no-ip.biz", "no-ip.info", "noip.me", "ddns.net", "hopto.org",
    "zapto.org", "sytes.net", "serveftp.com", "myftp.biz", "myftp.org", "servebeer.com", "redirectme.net",
    "servehttp.com", "serveblog.net", "bounceme.net", "ddnsking.com", "dynu.net", "dynu.com", "mooo.com",
    "chickenkiller.com", "afraid.org", "ydns.eu", "dynv6.net", "linkpc.net", "publicvm.com", "3utilities.com",
    "gotdns.ch", "dyndns.org", "dyndns.biz", "dynalias.com", "dnsalias.net", "myddns.me", "webredirect.org",
    "portmap.io", "ngrok.io", "ddns.me", "freeddns.org", "kozow.com", "loseyourip.com", "ooguy.com",
))
#: ports whose sessions are the everyday web, mail, name and time services
EVERYDAY_PORTS = np.array([53, 80, 123, 443, 853, 8080, 8443, 25, 465, 587, 993, 995, 143, 110], np.int64)


@lru_cache(maxsize=65536)
def _dynamic_dns(name: str) -> bool:
    """A host under a dynamic-DNS zone: not the provider itself, nor its what-is-my-IP service
    (checkip.dyndns.org answers everyone their address; a stealer asks it before it reports)."""
    return in_zone(name, DYNAMIC_DNS_DOMAINS, apex=False) and not _ip_echo(name)


def dynamic_dns_session(d: DeviceEvidence, ev: np.ndarray, th: Thresholds, files: list[str]) -> list[Finding]:
    """A device that looks up a name in a free dynamic-DNS zone and, within seconds, holds a
    session with data both ways to an internet host on a port no everyday service uses: how a
    remote-access trojan reaches its controller. (A recorder that keeps its own dynamic-DNS name
    up to date talks to the provider's web API, not to a host under such a name on an odd port.)"""
    asks = sorted((q for q in d.dns if _dynamic_dns(q.qname)), key=lambda q: q.ts)
    if not asks or not len(ev):
        return []
    sess = ev[((ev["kind"] & K_EXT) != 0) & (ev["proto"] == 6) & ~np.isin(ev["dport"].astype(np.int64), EVERYDAY_PORTS)
              & (ev["payload_out"] > 0) & (ev["payload_in"] > 0)]
    for q in asks:
        after = sess[(sess["ts"] >= q.ts) & (sess["ts"] <= q.ts + th.lookup_to_connect_s)]
        if not len(after):
            continue
        first = after[0]
        peer = f"{_addr(first)}:{int(first['dport'])}"
        more = sess[(sess["dst_hi"] == first["dst_hi"]) & (sess["dst_lo"] == first["dst_lo"]) & (sess["dport"] == first["dport"])
                    & (sess["ts"] >= q.ts)]
        up, down = int(more["payload_out"].sum()), int(more["payload_in"].sum())
        sig = (f"controller via dynamic DNS: {q.qname.rstrip('.')} then {len(more)} session(s) to {peer}, "
               f"{up:,} bytes sent, {down:,} received")
        evd: dict[str, object] = {
            "first_packet": frame_ref(q.frame, files), "alert_packet": frame_ref(int(first["frame"]), files),
            "name": q.qname.rstrip("."), "resolver": q.resolver, "peer": peer, "sessions": len(more),
            "bytes_sent": up, "bytes_received": down,
            "flow_ids": [int(x) for x in more["flow_id"][:5]],
        }
        return [Finding("c2", sig, 2, 0.9, q.ts, float(first["ts"]), float(more["end"].max()), evd, "dynamic_dns_c2")]
    return []


# command and control ------------------------------------------------------------------------
def c2(d: DeviceEvidence, ev: np.ndarray, th: Thresholds, files: list[str]) -> list[Finding]:
    out: list[Finding] = []
    for ts, flow_id, frame in d.c2_hellos[:1]:
        sel = take_rows(ev, ev["flow_id"] == flow_id)
        peer = f"{_addr(sel[0])}:{int(sel[0]['dport'])}" if len(sel) else "an external host"
        last = float(sel["end"].max()) if len(sel) else ts
        # first_packet: the session's first packet (its SYN when the capture holds it); alert_packet: the hello
        evd: dict[str, object] = {"peer": peer, "hellos": len(d.c2_hellos), "flow_ids": [int(flow_id)],
                                  "first_packet": frame_ref(int(sel["frame"][0]) if len(sel) else frame, files),
                                  "alert_packet": frame_ref(frame, files)}
        if len(sel):
            evd.update({"session_s": round(float(sel["end"][0] - sel["ts"][0]), 1), "packets_out": int(sel["pkts_out"][0])})
        out.append(Finding("c2", f"Mirai C2 session: binary hello to {peer} on a telnet port, then keep-alives",
                           1, 0.99, float(sel["ts"][0]) if len(sel) else ts, ts, last, evd, "mirai_c2_hello"))
    # beacons: regular new connections to one external peer (the columns read, not the events:
    # a device's whole history is judged at every pass of a live run)
    kind = ev["kind"]
    ci = np.flatnonzero(((kind & K_EXT) != 0) & (ev["proto"] == 6) & ((kind & (K_PROBE | K_HALF_OPEN)) == 0)
                        & (ev["app"] != A_MIRAI_C2))
    if len(ci) < th.tls_beacon_conns:
        return out
    ts, app, dport = ev["ts"][ci], ev["app"][ci], ev["dport"][ci]
    # (= _target_keys of these events: all TCP)
    keys = host_key(ev["dst_hi"][ci], ev["dst_lo"][ci]) ^ (dport.astype(np.uint64) << np.uint64(1)) ^ np.uint64(6)
    tls = (app == A_TLS) | (dport == 443) | (dport == 8443)
    fired: dict[int, int] = {}  # group key → first firing index within the key's connections
    of_key: dict[int, np.ndarray] = {}  # group key → its connections (indices into ci, time order)
    ones = np.ones(len(ci))
    th_key = _thresholds_key(th)
    for g in screened_groups(keys, ts, ones, th.beacon_conns, 0.0, th.beacon_conns * th.beacon_max_period_s):
        ts_g = ts[g]
        fi = _memo_fire("beacon", th_key, (ts_g,), lambda ts_g=ts_g: _beacon_fire(ts_g, th))
        if fi >= 0:
            fired[int(keys[g[0]])] = fi
            of_key[int(keys[g[0]])] = g  # (every connection of the key: its group)
    fast_keys: set[int] = set()
    tls_idx = np.flatnonzero(tls)
    end = ev["end"][ci] if len(tls_idx) >= th.tls_beacon_conns else None
    for g in screened_groups(keys[tls_idx], ts[tls_idx], ones[tls_idx], th.tls_beacon_conns, 0.0,
                             th.tls_beacon_max_period_s * th.tls_beacon_conns):
        ii = tls_idx[g]
        assert end is not None
        fi = _memo_fire("tls_beacon", th_key, (ts[ii], end[ii], app[ii], dport[ii]),
                        lambda ii=ii: _tls_beacon_fire(ev[ci[ii]], th))
        if fi >= 0:
            k = int(keys[ii[0]])
            allk = of_key.get(k)
            if allk is None:
                allk = of_key[k] = np.flatnonzero(keys == k)
            pos = int(np.searchsorted(ts[allk], ts[ii[fi]]))  # its place among all the key's connections
            if k not in fired or pos < fired[k]:
                fired[k] = pos
                fast_keys.add(k)
    seen = float(ev["ts"].min())
    for k, fi in fired.items():
        fast = fi if k in fast_keys else -1
        e = take_rows(ev, ci[of_key[k]])
        # the episode: the run of connections (gaps under 2 periods at most) that holds the firing one
        bursts = _bursts(e["ts"], th.beacon_max_period_s * 2)
        b = next(b for b in bursts if b[0] <= fi <= b[-1])
        eb, fi = e[b], fi - int(b[0])
        iv = np.diff(eb["ts"])
        period = float(np.median(iv)) if len(iv) else 0.0
        if fast < 0 and float(e["ts"][0]) - seen <= th.routine_periods * period:
            # a routine older than the capture: it shows within one period of the device being seen
            # (a device's check-ins with its own cloud); a beacon that starts later is new
            continue
        sig = f"beaconing to {_addr(eb[0])}:{int(eb['dport'][0])}: {len(eb)} connections every {period:.1f} s"
        evd = _base(eb, files, fi)
        evd.update({"peer": f"{_addr(eb[0])}:{int(eb['dport'][0])}", "connections": len(eb),
                    "period_s": round(period, 2),
                    "interval_cv": round(float(iv.std() / max(iv.mean(), 1e-9)), 3) if len(iv) else 0.0})
        out.append(Finding("c2", sig, 2, 0.85, float(eb["ts"][0]), float(eb["ts"][fi]), float(eb["end"].max()),
                           evd, "tls_beacon" if fi + int(b[0]) == fast else "beacon"))
    return out




def dead_controller(ev: np.ndarray, th: Thresholds, files: list[str]) -> list[Finding]:
    """Connection attempts to one internet host and port that never carry anything, repeated
    like clockwork: ``dead_attempts`` of them at intervals with a coefficient of variation of at
    most ``dead_cv`` (a bot calling a controller that is gone). Not on the cloud ports."""
    out: list[Finding] = []
    e_all = take_rows(ev, _off_cloud(ev, failed_connects(ev)))
    if len(e_all) < th.dead_attempts:
        return out
    keys = _target_keys(e_all)
    for g in _groups(keys, th.dead_attempts):
        e = e_all[g]
        if (e["pkts_in"] > 0).all() and (e["payload_in"] > 0).any():
            continue
        ts = e["ts"]
        k = th.dead_attempts
        iv = np.diff(ts)
        # the last k - 1 intervals before each attempt: their mean and spread, from running sums
        c1 = np.concatenate(([0.0], np.cumsum(iv)))
        c2 = np.concatenate(([0.0], np.cumsum(iv * iv)))
        i = np.arange(k - 1, len(ts))
        m = (c1[i] - c1[i - k + 1]) / (k - 1)
        sd = np.sqrt(np.maximum((c2[i] - c2[i - k + 1]) / (k - 1) - m * m, 0.0))
        hit = np.flatnonzero((m >= 0.5) & (m <= th.dead_max_period_s) & (sd <= th.dead_cv * m))
        if not len(hit):
            continue
        fi = int(i[hit[0]])
        peer = f"{_addr(e[0])}:{int(e['dport'][0])}"
        period = float(np.median(iv))
        evd = _base(e, files, fi)
        evd.update({"peer": peer, "connections": len(e), "period_s": round(period, 2),
                    "interval_cv": round(float(iv.std() / max(iv.mean(), 1e-9)), 3),
                    "answered": int((e["pkts_in"] > 0).sum())})
        out.append(Finding("c2", f"calls to a dead controller {peer}: {len(e)} failed connections every "
                                 f"{period:.1f} s", 2, 0.8, float(ts[0]), float(ts[fi]), float(e["end"].max()),
                           evd, "dead_controller"))
    return out


def icmp_tunnel(ev: np.ndarray, th: Thresholds, files: list[str]) -> list[Finding]:
    """ICMP echo to one internet host carrying ``icmp_tunnel_bytes`` in packets of
    ``icmp_tunnel_mean`` bytes or more on average, within ``scan_window_s``: data, not pings.
    Not when it is a flood's: at ``flood_pps`` or more with fewer than one reply in ten (a
    tunnel carries a conversation, its relay answers; a flood is one-way)."""
    out: list[Finding] = []
    e_all = take_rows(ev, ((ev["kind"] & K_ECHO) != 0) & ((ev["kind"] & K_EXT) != 0))
    if not len(e_all):
        return out
    hk = host_key(e_all["dst_hi"], e_all["dst_lo"])
    # only the hosts whose echo requests carry enough, and large enough, on the whole (the test
    # below, for every host at once: a device that pings many hosts costs no loop over them)
    u, inv = np.unique(hk, return_inverse=True)
    b_sum = np.bincount(inv, e_all["bytes_out"].astype(np.float64), len(u))
    p_sum = np.bincount(inv, e_all["pkts_out"].astype(np.float64), len(u))
    big = (b_sum >= th.icmp_tunnel_bytes) & (b_sum / np.maximum(p_sum, 1) >= th.icmp_tunnel_mean)
    if not big.any():
        return out
    keep = big[inv]
    e_all, hk = take_rows(e_all, keep), hk[keep]
    for g in _groups(hk, 1):
        e = e_all[g]
        b = e["bytes_out"].astype(np.float64)
        p = e["pkts_out"].astype(np.float64)
        if b.sum() < th.icmp_tunnel_bytes or b.sum() / max(p.sum(), 1) < th.icmp_tunnel_mean:
            continue
        span = max(float(e["end"].max() - e["ts"].min()), 1e-3)
        if e["pkts_in"].sum() * 10 < p.sum() and p.sum() / span >= th.flood_pps:
            continue  # one-way at a flood's rate: the flood rule's (heavy_stream)
        fi = fire_weighted(e["ts"], b, float(th.icmp_tunnel_bytes), th.scan_window_s)
        if fi < 0:
            continue
        evd = _base(e, files, fi)
        evd.update({"peer": _addr(e[0]), "bytes_out": int(b.sum()), "mean_packet_bytes": round(b.sum() / p.sum(), 1)})
        out.append(Finding("exfil", f"ICMP echo tunnel to {_addr(e[0])}: {int(b.sum()):,} bytes out in "
                                    f"{int(p.sum()):,} echo requests of {b.sum() / p.sum():.0f} bytes on average",
                           1, 0.9, float(e["ts"][0]), float(e["ts"][fi]), float(e["end"].max()), evd, "icmp_tunnel"))
    return out


#: what the beacon tests found per peer, by a digest of what they read (:func:`_memo_fire`)
_FIRE_MEMO: OrderedDict[tuple[object, ...], int] = OrderedDict()
_FIRE_MEMO_MAX = 1 << 16  # results kept (about 15 MB at most); the least recently used go first
FIRE_MEMO_STATS = [0, 0]  # results found in the memo, computed
_FIRE_MEMO_LOCK = threading.Lock()


def _memo_fire(name: str, th_key: str, arrays: tuple[np.ndarray, ...], compute: Callable[[], int]) -> int:
    """``compute()``, a beacon test's firing index over one peer's connections, remembered by a
    128-bit digest of every array the test reads and the thresholds: a live run's passes judge a
    device's whole history at every pass, but only the peers with new (or still settling)
    connections change, so the others' results are the same and found here. Exact: the same
    inputs, the same result; a different input, another digest."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        h.update(np.ascontiguousarray(a).view(np.uint8))
    key = (name, th_key, len(arrays[0]), h.digest())
    with _FIRE_MEMO_LOCK:  # (a library user may judge in threads)
        hit = _FIRE_MEMO.get(key)
        if hit is not None:
            _FIRE_MEMO.move_to_end(key)
            FIRE_MEMO_STATS[0] += 1
            return hit
        FIRE_MEMO_STATS[1] += 1
    fi = compute()
    with _FIRE_MEMO_LOCK:
        _FIRE_MEMO[key] = fi
        while len(_FIRE_MEMO) > _FIRE_MEMO_MAX:
            _FIRE_MEMO.popitem(last=False)
    return fi


_TH_KEYS: dict[str, str] = {}  # one object per set of thresholds, shared by the memo's keys


@lru_cache(maxsize=64)
def _thresholds_key(th: Thresholds) -> str:
    """The thresholds as a key of the memo (their text: any field type is a key; interned, so
    that the memo's keys do not each hold a copy). Made once per set of thresholds (a frozen
    dataclass: equal thresholds, one entry), not at every judgement of a live run's passes."""
    k = repr(tuple(getattr(th, f.name) for f in fields(th)))
    return _TH_KEYS.setdefault(k, k)


def _tls_beacon_fire(eb: np.ndarray, th: Thresholds) -> int:
    """First index at which the last ``tls_beacon_conns`` connections were TLS (by handshake or
    port 443/8443), each closed before the next began, at a short and steady period."""
    k = th.tls_beacon_conns
    n = len(eb)
    if n < k:
        return -1
    ts, end = eb["ts"], eb["end"]
    tls = ((eb["app"] == A_TLS) | (eb["dport"] == 443) | (eb["dport"] == 8443)).astype(np.int64)  # (not np.isin: called per peer)
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


# sessions held open: the cadence inside one flow ---------------------------------------------
#: telnet's ports: people type there; a machine keeping the session alive on a beat is a bot's
#: link to its controller (Mirai's CNC session, whose hello may lie before the capture)
TELNET_PORTS = (23, 2323)


def _on_beat(ev: np.ndarray, th: Thresholds, beats: int) -> np.ndarray:
    """Mask of the TCP sessions in which one side started ``beats`` exchanges or more on one beat
    of heartbeat_min_period_s..heartbeat_max_period_s, at least heartbeat_on_beat of all it started."""
    b = ev["hb_beats"].astype(np.int64)
    return ((ev["proto"] == 6) & (b >= beats) & (b >= th.heartbeat_on_beat * ev["hb_pushes"])
            & (ev["hb_beat_s"] >= th.heartbeat_min_period_s) & (ev["hb_beat_s"] <= th.heartbeat_max_period_s))


def _beat_fire(e: np.void, k: int) -> float:
    """When the ``k``-th beat came, as near as the flow record tells: the first two exchanges set
    the beat, so the session's start plus k + 1 beats (at the latest its end)."""
    return float(min(e["end"], e["ts"] + (k + 1) * float(e["hb_beat_s"])))


def held_heartbeat(ev: np.ndarray, th: Thresholds, files: list[str]) -> list[Finding]:
    """A session held open to an internet host in which one side keeps a heartbeat: exchanges on
    one beat (``heartbeat_beats`` of them, most of what it said), and either

    * the device reports and the far end never answers: the device's exchanges are on the beat,
      and since the session opened (its SYN in the capture) the peer has not sent one byte, on a
      port no everyday or cloud service uses. A remote-access trojan's status beacon (STRRAT
      sends "ping|STRRAT|…" every 5 s); a device's keep-alive to its cloud is always answered
      (MQTT's PINGRESP, a TLS record, an HTTP response). The channel is one session: not when
      more than ``report_parallel`` sessions to that peer and port are open at once (a slow HTTP
      flood holds hundreds, each fed a header line on a beat and never answered), or
    * the session is on a telnet port, where people type: a bot's link to its controller kept
      alive like clockwork (Mirai's CNC session, whichever side keeps the beat)."""
    out: list[Finding] = []
    if not len(ev):
        return out
    cand = take_rows(ev, _on_beat(ev, th, th.heartbeat_beats) & ((ev["kind"] & K_EXT) != 0))
    if not len(cand):  # (as most devices: the tests below cost more than the mask)
        return out
    quiet_port = ~np.isin(cand["dport"].astype(np.int64), np.concatenate((EVERYDAY_PORTS, CLOUD_PORTS)))
    report = (cand["hb_side"] == 0) & (cand["payload_in"] == 0) & (cand["opened"] == 1) & quiet_port
    if report.any():  # one session, not one of the many a slow HTTP flood (slowloris) holds at once
        tk, ck = target_keys(ev), target_keys(cand)
        for i in np.flatnonzero(report):
            same = take_rows(ev, tk == ck[i])
            report[i] = int(((same["ts"] < cand["end"][i]) & (same["end"] > cand["ts"][i])).sum()) <= th.report_parallel
    telnet = np.isin(cand["dport"], TELNET_PORTS)
    for e, rep in zip(cand[report | telnet], report[report | telnet], strict=True):
        peer = f"{_addr(e)}:{int(e['dport'])}"
        who = "the device" if e["hb_side"] == 0 else "the peer"
        beat = float(e["hb_beat_s"])
        span = float(e["end"] - e["ts"])
        if rep:
            sig = (f"report channel to {peer}: the device pushed {int(e['hb_beats'])} messages every {beat:.1f} s "
                   f"in one session held {span:.0f} s, never answered")
        else:
            sig = (f"heartbeat on a telnet port: {who} kept a session to {peer} alive every {beat:.1f} s "
                   f"({int(e['hb_beats'])} beats over {span:.0f} s)")
        evd = _session_evidence(e, files)
        out.append(Finding("c2", sig, 2, 0.85, float(e["ts"]), _beat_fire(e, th.heartbeat_beats), float(e["end"]),
                           evd, "held_heartbeat"))
    return out


def _session_evidence(e: np.void, files: list[str]) -> dict[str, object]:
    return {"peer": f"{_addr(e)}:{int(e['dport'])}", "flow_ids": [int(e["flow_id"])],
            "first_packet": frame_ref(int(e["frame"]), files),
            "alert_packet": frame_ref(int(e["frame"]), files),  # the session's first: records keep no later frame
            "session_s": round(float(e["end"] - e["ts"]), 1),
            "beat_side": "device" if e["hb_side"] == 0 else "peer", "exchanges": int(e["hb_pushes"]),
            "beats": int(e["hb_beats"]), "beat_s": round(float(e["hb_beat_s"]), 2),
            "interval_s": round(float(e["hb_iv"]), 2), "interval_cv": round(float(e["hb_cv"]), 3),
            "peer_exchanges" if e["hb_side"] == 0 else "device_exchanges": int(e["hb_other"]),
            "bytes_sent": int(e["payload_out"]), "bytes_received": int(e["payload_in"])}


def program_callback(ev: np.ndarray, th: Thresholds, files: list[str]) -> list[Finding]:
    """A device fetches a program (an HTTP response serving an executable, or an attachment named
    as a program or script: :func:`evidence.serves_program`) and then keeps calling back the host
    that served it: ``callback_checkins`` check-ins at intervals with a coefficient of variation of
    at most ``callback_cv`` (a stager's agent beaconing with jitter), either as new connections
    (starts within PUSH_IDLE_S of each other are one check-in) or as the device's exchanges in a
    session held open, or a session in which either side keeps a beat that long. Local hosts
    count: a controller on the site (a compromised machine, a red team's server) is still one.
    ``ev``: the device's external events and its local sessions, in time order."""
    out: list[Finding] = []
    tcp = take_rows(ev, ev["proto"] == 6) if len(ev) else ev
    progs = tcp[tcp["app"] == A_PROGRAM] if len(tcp) else tcp
    if not len(progs):
        return out
    k = th.callback_checkins
    hk = host_key(tcp["dst_hi"], tcp["dst_lo"])
    phk = host_key(progs["dst_hi"], progs["dst_lo"])
    for h in dict.fromkeys(phk.tolist()):
        dl = progs[phk == h][0]
        after = tcp[(hk == h) & (tcp["ts"] >= dl["ts"]) & (tcp["app"] != A_PROGRAM)]
        if not len(after):
            continue
        cands: list[tuple[float, str, np.ndarray, int]] = []  # fire time, what, the call-backs, the firing frame
        # check-ins as new connections
        starts = after["ts"]
        if len(starts) >= k:
            keep = np.concatenate(([True], np.diff(starts) > PUSH_IDLE_S))
            ci = starts[keep]
            if len(ci) >= k:
                iv = np.diff(ci)
                # the first k check-ins whose intervals are steady enough
                for j in range(k - 1, len(ci)):
                    w = iv[j - k + 1: j]
                    m = float(w.mean())
                    if 1.0 <= m <= th.callback_max_period_s and float(w.std()) <= th.callback_cv * m:
                        sel = after[(after["ts"] >= ci[0]) & (after["ts"] <= ci[-1])]
                        period = float(np.median(iv))
                        at = int(after["frame"][int(np.searchsorted(after["ts"], ci[j]))])
                        cands.append((float(ci[j]), f"{len(ci)} connections every {period:.0f} s "
                                                    f"(interval CV {float(iv.std() / max(iv.mean(), 1e-9)):.2f})",
                                      sel, at))
                        break
        # check-ins inside sessions held open
        device_steady = ((after["hb_side"] == 0) & (after["hb_pushes"] >= k) & (after["hb_iv"] >= 1.0)
                         & (after["hb_iv"] <= th.callback_max_period_s) & (after["hb_cv"] <= th.callback_cv))
        on_beat = _on_beat(after, th, k)
        held = after[device_steady | on_beat]
        if len(held):
            e = held[0]
            # its beat when the session keeps one (most of its side's exchanges on it), else the
            # mean interval of the device's steady exchanges (a jittered agent's beats, counted
            # by the kernel now and then, are no period)
            by_beat = bool(on_beat[device_steady | on_beat][0])
            period = float(e["hb_beat_s"]) if by_beat else float(e["hb_iv"])
            # the k-th beat, or the k-th of the device's exchanges (its first at the earliest at the start)
            fire = _beat_fire(e, k) if by_beat else float(min(e["end"], e["ts"] + (k - 1) * period))
            who = "the device" if e["hb_side"] == 0 else "the controller"
            # (the session's first packet: its record keeps no later frame)
            cands.append((fire, f"a session to :{int(e['dport'])} held {float(e['end'] - e['ts']):.0f} s in which {who} "
                                f"started {int(e['hb_pushes'])} exchanges every {period:.0f} s", held[:1], int(e["frame"])))
        if not cands:
            continue
        fire, what, sel, at = min(cands, key=lambda c: c[0])
        src = f"{_addr(dl)}:{int(dl['dport'])}"
        sig = f"call-backs to the host that served a program: fetched one from {src}, then {what}"
        evd: dict[str, object] = {
            "peer": _addr(dl), "program_from": src, "program_bytes": int(dl["payload_in"]),
            "first_packet": frame_ref(int(dl["frame"]), files), "alert_packet": frame_ref(at, files),
            "flow_ids": [int(dl["flow_id"]), *(int(x) for x in sel["flow_id"][:4])], "connections": len(sel),
            "ports": sorted({int(p) for p in sel["dport"]}),
        }
        if len(sel) == 1:
            evd.update({key: v for key, v in _session_evidence(sel[0], files).items()
                        if key not in ("peer", "flow_ids", "first_packet", "alert_packet")})
        out.append(Finding("c2", sig, 1, 0.9, float(dl["ts"]), fire, float(max(after["end"].max(), fire)), evd,
                           "program_callback"))
    return out
