"""Per device window features: the model's input, one row per device and window.

The window counters of the pipeline (:data:`iotwatch.records.WINDOW_FIELDS`) plus what the
evidence adds per window: probes by kind, the busiest authentication service, the busiest target,
ARP and DNS fan-out, the regularity of connections to one peer, and upload against the device's
own baseline; what the device's behaviour is made of, from its evidence events
(:data:`BEHAVIOUR_FEATURES`: entropy and novelty of targets, failures, repeated logins, regularity
across windows, held beats, where the upload goes); command and control as a sequence
(:data:`C2_FEATURES`: the beats each destination has held so far and the traits of a controller's
link); what exfiltration is made of whatever its
channel (:data:`EXFIL_FEATURES`: data in DNS names and ICMP echo payloads, uploads to hosts new for
the device); what a scan and a flood are whatever their variant (:data:`SCAN_FEATURES`: new
failed targets per name looked up, requests to one service); then scale-free views of the counters
(:data:`RATIOS`: what the traffic is made of, not how much of it there is) and each window against
the device's own earlier windows (:data:`HISTORY`, ``upload_x_quiet``). :data:`VIEWS` names, per
behaviour, the features its forest reads. :data:`FEATURES` fixes names, order and dtypes; model
bundles record it and refuse another.
"""

from __future__ import annotations

import bisect
from collections import Counter
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from .._jit import allocating, inline_kernel
from . import type_upload
from .evidence import (
    A_FTP,
    A_MIRAI_C2,
    A_PROGRAM,
    A_SMTP,
    EVENT_DTYPE,
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
from .rules import Thresholds, _dynamic_dns, _ip_echo, encoded_name

_TH = Thresholds()

WINDOW_COUNTERS = ("packets_out", "packets_in", "bytes_out", "bytes_in", "upload_bytes", "download_bytes", "dst_ips",
                   "dst_ports", "new_flows", "syn_flows", "syn_answered", "syn_rejected", "syn_unanswered",
                   "failed_handshake_ratio", "rst_in", "auth_attempts", "dns_queries", "upload_share", "mirai_syns")
EVIDENCE_FEATURES = ("probes", "probe_targets", "probe_hosts", "weird_probes", "half_open", "empty_rst", "echo_requests",
                     "udp_noreply", "auth_max_service", "ext_flows", "max_flows_one_host", "max_pkts_one_host",
                     "arp_targets", "dns_names", "dns_max_names_one_domain", "dns_mean_name_len", "dns_odd_types",
                     "c2_hellos", "beacon_max_regular", "upload_x_baseline", "upload_mbps")
#: behaviour-describing views of a device's evidence events (:func:`_behaviour_features`): the
#: mix of its targets and ports, novelty against its own earlier windows, what failed, repeated
#: short sessions to one service, periodicity across windows, sessions held on a beat, where the
#: upload goes: what a behaviour is, whatever the capture's scale or context
BEHAVIOUR_FEATURES = ("host_entropy", "port_entropy", "novel_host_share", "novel_failed_hosts",
                      "failed_hosts_per_lookup", "failed_share",
                      "failed_targets", "failed_ports_one_host", "repeat_sessions_one_target", "repeat_session_share",
                      "repeat_logins_one_target", "login_sessions", "short_session_share",
                      "regular_failed_repeats", "regular_conn_repeats", "held_beats", "top_upload_share",
                      "top_upload_novel", "top_upload_out_in", "echo_bytes_per_packet")
#: command and control as a sequence (:func:`_c2_features`): per channel (one device, one
#: destination address and port) the beats it has held so far, across windows (connections on a
#: steady interval, or exchanges on one beat inside held sessions, reconnects included), and per
#: window the most beats of a channel with each trait a controller's link has and a device's link
#: to its own cloud does not: an odd port, a destination new since the device's start-up, a name
#: in a dynamic-DNS zone, an address reached without a lookup, a peer that never answers with
#: data, a host that served the device a program; how many of those traits the most suspicious
#: beating channel has, and (the c2 view) the beats of a channel with two traits or one of
#: TELLING_TRAITS
C2_FEATURES = ("c2_beats", "c2_beats_odd_port", "c2_beats_new_dest", "c2_beats_dynamic_dns", "c2_beats_unnamed",
               "c2_beats_unanswered", "c2_beats_program_host", "c2_beats_bot_hello",
               "c2_beat_traits", "c2_beats_suspect")
#: what exfiltration is made of, whatever its channel (:func:`_exfil_features`): data carried in
#: DNS query names and in ICMP echo payloads (channels meant for tiny messages), uploads to hosts
#: the device had never reached, and what comes back from them; data handed to a mail or file
#: server the device had no business with (``send_service_bytes``: see :data:`SEND_SERVICE_PORTS`)
EXFIL_FEATURES = ("dns_data_bytes", "echo_data_bytes", "covert_bytes", "new_host_upload", "new_host_out_in",
                  "send_service_bytes", "upload_x_type")
#: upload_x_type: the window's upload over what a device of its type (the inventory's) uploads
#: when nothing is wrong (:func:`iotwatch.detect.type_upload.reference`, the upload rule's
#: reference for a device without history: the 99th percentile of normal devices of the type),
#: from the first window on: a plug pushing megabytes a minute is not normal for any plug, even
#: in a capture too short to have quiet minutes of its own. 0 for a type without a norm (a camera,
#: a recorder, a computer: :data:`~iotwatch.detect.type_upload.NO_NORM`) or an unknown one
#: the services that take mail and files from a client to a server, by their well-known port
#: (IANA Service Name and Transport Protocol Port Number Registry: ftp 21, smtp 25, submissions
#: 465 (RFC 8314), submission 587 (RFC 6409), ftps-data 989, ftps 990) or, on any port, by the
#: server's greeting or the client's first command (:data:`~iotwatch.detect.evidence.A_FTP`,
#: :data:`~iotwatch.detect.evidence.A_SMTP`)
MAIL_PORTS, FILE_PORTS = np.array([25, 465, 587], np.int64), np.array([21, 989, 990], np.int64)
SEND_SERVICE_PORTS = np.concatenate((MAIL_PORTS, FILE_PORTS))
#: send_x_quiet: send_service_bytes over the lower QUIET_QUANTILE of the device's earlier windows'
#: (at least SEND_FLOOR, from the first window on; see :func:`_send_service_bytes`)
SEND_FLOOR = 1.0
#: covert_x_quiet: covert_bytes over the lower QUIET_QUANTILE of the device's earlier windows' (at
#: least COVERT_FLOOR, from the first window on: such channels carry no data in a device's normal
#: traffic, so the floor is the smallest amount that is data at all, one encoded label of the
#: length the rules call encoded); data_out_x_quiet: the larger of upload_x_quiet and
#: covert_x_quiet, the window's outgoing data against the device's quiet minutes on the channel
#: where it departs most (see VIEWS)
COVERT_FLOOR = float(_TH.tunnel_label_len)
#: what a scan, a flood and a brute force are, whatever their variant (:func:`_scan_features`):
#: distinct targets (host × protocol × port, and addresses asked for by ARP) that failed for the
#: first time in the device's history, per name the device looked up (a vertical scan of one host
#: and a horizontal sweep of a network read alike; a device whose cloud is down looked each host up)
#: and a probe no ordinary client makes (:data:`SIGNATURE_PROBES`: a session opened and reset empty
#: by the client, a NULL, FIN or Xmas segment) weighs :data:`SIGNATURE_WEIGHT` targets; the most
#: requests to one service (host × protocol × port) and to one host in a window, and the sessions
#: held open to one service during it (a slow HTTP flood's hundreds, each trickling a few bytes)
SCAN_FEATURES = ("novel_failed_targets", "novel_arp_targets", "signature_targets", "scan_targets_per_lookup",
                 "top_target_requests", "top_host_requests", "open_sessions_one_service")
#: the probes only a scanner's raw socket or connect()-and-reset makes: no normal device or victim
#: of the labelled captures (59 device-days) sent one (a half-open SYN-ACK reset is not among
#: them: Happy Eyeballs' cancelled connection is one, and IoT Sentinel's devices show two a minute)
SIGNATURE_PROBES = K_EMPTY_RST | K_WEIRD
#: a target a signature probe reached counts as this many targets in ``scan_targets_per_lookup``:
#: one such probe says "scanner" as surely as the tens of failed connections a normal device never
#: reaches in a minute (chosen by looking at the leave-one-source-out runs, see docs/detection.md)
SIGNATURE_WEIGHT = 10.0
#: ... in a window where the device's probes reached at least this many targets (as the rules'
#: probe_signature: a scan tries several; a flood of NULL/FIN/Xmas segments hits one)
SIGNATURE_MIN_TARGETS = 2
#: each behaviour's view: the features that describe it, and the only ones its forest reads
#: (learn/behaviour.py: one binary forest per behaviour, monotone in each, so that more of a
#: behaviour's evidence never lowers its probability). A behaviour is judged by what it is, not by
#: what its training captures happened to show alongside it (the hospital's brute force always
#: came with a Mirai scan, its C2 with an upload)
VIEWS: dict[str, tuple[str, ...]] = {
    "scan": ("scan_targets_per_lookup",),
    "bruteforce": ("repeat_logins_one_target",),
    # requests to one host and to one service, whatever carries them (flows, unanswered packets,
    # DNS queries, sessions held open): not the busiest host's packets or flows counted in the
    # window of a flow's first packet, nor the upload rate or the device's own history, which a
    # DNS or slow HTTP flood (a few Mbit/s at most, from the capture's first minute) lacks
    "flood": ("packets_out", "out_in_packets", "top_host_requests", "top_target_requests"),
    # one feature, whatever the channel: a monotone tree caps every window on the low side of a
    # split at the split's mean, so a view of one feature per channel (upload, DNS names, ICMP
    # payloads) scores a held-out channel's windows, low on the others, under the threshold
    "exfil": ("data_out_x_quiet",),
    # one feature as well: each controller shows its own traits (a dynamic-DNS name, a program
    # served from the LAN, an odd port and no lookup...), and a monotone forest over one feature
    # per trait capped a held-out family strong in one trait only near 0.5 (tlsbeacon, localc2)
    "c2": ("c2_beats_suspect",),
}
#: scale-free views of the counters above (numerator, denominator): what a window's traffic is made
#: of rather than how much of it there is, so that a rate or a capture length never seen in
#: training reads like the ones seen (a flood of another vector, an upload surge on a slow link)
RATIOS: tuple[tuple[str, str, str], ...] = (
    ("out_in_packets", "packets_out", "packets_in"),
    ("out_in_bytes", "bytes_out", "bytes_in"),
    ("bytes_per_packet_out", "bytes_out", "packets_out"),
    ("packets_per_flow", "packets_out", "new_flows"),
    ("hosts_per_flow", "dst_ips", "new_flows"),
    ("ports_per_host", "dst_ports", "dst_ips"),
    ("syn_answered_share", "syn_answered", "syn_flows"),
    ("syn_unanswered_share", "syn_unanswered", "syn_flows"),
    ("syn_rejected_share", "syn_rejected", "syn_flows"),
    ("syn_flow_share", "syn_flows", "new_flows"),
    ("probe_share", "probes", "new_flows"),
    ("probe_host_share", "probe_hosts", "dst_ips"),
    ("auth_share", "auth_attempts", "new_flows"),
    ("auth_one_service_share", "auth_max_service", "new_flows"),
    ("top_host_packet_share", "max_pkts_one_host", "packets_out"),
    ("top_host_flow_share", "max_flows_one_host", "new_flows"),
    ("external_flow_share", "ext_flows", "new_flows"),
    ("echo_share", "echo_requests", "packets_out"),
    ("udp_noreply_share", "udp_noreply", "new_flows"),
    ("mirai_syn_share", "mirai_syns", "syn_flows"),
    ("rst_in_share", "rst_in", "packets_in"),
    ("weird_probe_share", "weird_probes", "probes"),
    ("half_open_share", "half_open", "probes"),
    ("empty_rst_share", "empty_rst", "probes"),
    ("dns_query_share", "dns_queries", "packets_out"),
)
#: a window against the device's own earlier windows (their median, at least the floor; 0 before
#: two earlier windows): how far it departs from what this device usually does
HISTORY: tuple[tuple[str, str, float], ...] = (
    ("packets_out_x_own", "packets_out", 10.0),
    ("new_flows_x_own", "new_flows", 2.0),
    ("dst_ips_x_own", "dst_ips", 2.0),
    ("bytes_out_x_own", "bytes_out", 1000.0),
)
#: upload_x_quiet: upload over the lower quantile QUIET_QUANTILE of the device's earlier windows
#: (at least 1,000 B; 0 before two earlier windows): against its quiet minutes, not its median
QUIET_QUANTILE = 0.2
DERIVED = (*(n for n, _a, _b in RATIOS), *(n for n, _c, _f in HISTORY), "upload_x_quiet", "covert_x_quiet",
           "data_out_x_quiet", "send_x_quiet")
FEATURES: list[tuple[str, str]] = [(n, "float64") for n in (*WINDOW_COUNTERS, *EVIDENCE_FEATURES, *BEHAVIOUR_FEATURES,
                                                             *C2_FEATURES, *EXFIL_FEATURES, *SCAN_FEATURES, *DERIVED)]
FEATURE_NAMES = [n for n, _ in FEATURES]


_MIX = np.uint64(0x9E3779B97F4A7C15)

# columns of the compiled event pass (_event_columns), in its output order
_EVENT_COLUMNS = ("probes", "probe_targets", "probe_hosts", "weird_probes", "half_open", "empty_rst", "echo_requests",
                  "udp_noreply", "ext_flows", "auth_max_service", "max_flows_one_host", "max_pkts_one_host",
                  "beacon_max_regular")
_PROBE_BITS = K_PROBE | K_WEIRD | K_ECHO | K_EMPTY_RST | K_HALF_OPEN
# the event kinds counted per window, in _EVENT_COLUMNS order from "weird_probes" to "ext_flows"
_COUNTED = (K_WEIRD, K_HALF_OPEN, K_EMPTY_RST, K_ECHO, K_UDP_NOREPLY, K_EXT)


class _Tables(NamedTuple):
    """Five open-addressing tables of event groups, one row each (T_*)."""

    cnt: np.ndarray
    keys: np.ndarray
    wsum: np.ndarray
    first_w: np.ndarray
    ts_last: np.ndarray
    s1: np.ndarray
    s2: np.ndarray


@inline_kernel
def _group(g, t, key, w, weight, ts):  # type: ignore[no-untyped-def]
    """Find or add ``key`` in open-addressing table ``t`` of ``g`` (see _Tables); add one event
    (its weight and, for interval statistics, the gap since the group's previous event).
    Returns whether the group is new."""
    keys, cnt = g.keys[t], g.cnt[t]
    mask = keys.shape[0] - 1
    s = np.int64((key * _MIX) >> np.uint64(32)) & mask
    while cnt[s] > 0 and keys[s] != key:
        s = (s + 1) & mask
    new = cnt[s] == 0
    if new:
        keys[s] = key
        g.first_w[t, s] = w
        g.wsum[t, s] = 0.0
        g.s1[t, s] = 0.0
        g.s2[t, s] = 0.0
    else:
        iv = ts - g.ts_last[t, s]
        g.s1[t, s] += iv
        g.s2[t, s] += iv * iv
    cnt[s] += 1
    g.wsum[t, s] += weight
    g.ts_last[t, s] = ts
    return new


# the tables of _event_columns: probe targets, probe hosts, auth targets, all hosts, external TCP targets
T_PROBE_TARGET, T_PROBE_HOST, T_AUTH, T_HOST, T_EXT_TCP = range(5)


@allocating
def _event_columns(w, kind, host, target, pkts_out, ts, proto, n, out):  # type: ignore[no-untyped-def]
    """Every per-window evidence feature in one pass over a device's events (time order).

    Events are grouped by a key mixed with their window, as ``(key ^ (window + 1) * MIX)``;
    a group counts in the window of its first event. ``out`` is (n windows, len(_EVENT_COLUMNS))."""
    m = w.shape[0]
    size = 16
    while size < 2 * m + 2:
        size *= 2
    g = _Tables(np.zeros((5, size), np.int64),  # 0: an empty slot; the rest is set when a group starts
                np.empty((5, size), np.uint64), np.empty((5, size), np.float64), np.empty((5, size), np.int64),
                np.empty((5, size), np.float64), np.empty((5, size), np.float64), np.empty((5, size), np.float64))
    for i in range(m):
        k = kind[i]
        wi = w[i]
        salt = (np.uint64(wi) + np.uint64(1)) * _MIX
        hk = host[i] ^ salt
        tk = target[i] ^ salt
        if k & _PROBE_BITS:
            out[wi, 0] += 1
            if _group(g, T_PROBE_TARGET, tk, wi, 1.0, ts[i]):
                out[wi, 1] += 1
            if _group(g, T_PROBE_HOST, hk, wi, 1.0, ts[i]):
                out[wi, 2] += 1
        for j in range(len(_COUNTED)):
            if k & _COUNTED[j]:
                out[wi, 3 + j] += 1
        if (k & K_EXT) and proto[i] == 6:
            _group(g, T_EXT_TCP, tk, wi, 1.0, ts[i])
        if k & K_AUTH:
            _group(g, T_AUTH, tk, wi, 1.0, ts[i])
        _group(g, T_HOST, hk, wi, np.float64(pkts_out[i]), ts[i])
    cnt, first_w = g.cnt, g.first_w
    for s in range(size):
        if cnt[T_AUTH, s] > 0 and cnt[T_AUTH, s] > out[first_w[T_AUTH, s], 9]:
            out[first_w[T_AUTH, s], 9] = cnt[T_AUTH, s]
        if cnt[T_HOST, s] > 0:
            fw = first_w[T_HOST, s]
            if cnt[T_HOST, s] > out[fw, 10]:
                out[fw, 10] = cnt[T_HOST, s]
            if g.wsum[T_HOST, s] > out[fw, 11]:
                out[fw, 11] = g.wsum[T_HOST, s]
        c = cnt[T_EXT_TCP, s]
        if c >= 3:
            niv = c - 1
            mean = g.s1[T_EXT_TCP, s] / niv
            std = np.sqrt(max(g.s2[T_EXT_TCP, s] / niv - mean * mean, 0.0))
            if mean > 0 and std <= 0.25 * mean and c > out[first_w[T_EXT_TCP, s], 12]:
                out[first_w[T_EXT_TCP, s], 12] = c


def _event_features(X: np.ndarray, col: dict[str, int], ev: np.ndarray, starts: np.ndarray) -> None:
    """Per-window evidence features, for all windows at once (events are in time order)."""
    n = len(starts)
    w = np.clip(np.searchsorted(starts, ev["ts"], side="right") - 1, 0, n - 1).astype(np.int64)
    host = host_key(ev["dst_hi"], ev["dst_lo"])
    target = host ^ ev["dport"].astype(np.uint64)
    out = np.zeros((n, len(_EVENT_COLUMNS)), np.float64)
    _event_columns(w, np.ascontiguousarray(ev["kind"]), host, target, np.ascontiguousarray(ev["pkts_out"]),
                   np.ascontiguousarray(ev["ts"]), np.ascontiguousarray(ev["proto"]), n, out)
    for j, name in enumerate(_EVENT_COLUMNS):
        X[:, col[name]] = out[:, j]


_FAILED = K_PROBE | K_WEIRD | K_HALF_OPEN | K_EMPTY_RST | K_UDP_NOREPLY
#: a short session: a completed TCP session with payload of at most this many client packets,
#: client payload bytes and seconds (a login attempt, a request), whatever its port
SHORT_PKTS, SHORT_PAYLOAD, SHORT_S = 40, 4096, 30.0
#: connections to one target are regular when at least REGULAR_MIN of them came at intervals whose
#: coefficient of variation is at most REGULAR_CV (and at least one second apart on average)
REGULAR_MIN, REGULAR_CV = 3, 0.25
#: a held session beats when one side started most of its exchanges on one beat (as the rules' _on_beat)
HELD_ON_BEAT = 0.75
_APP_LOGIN = (1, 2, 3)  # ssh, telnet, ftp (evidence.APPS)


def _pairs(w: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (window, key) pairs: their window, key, event count, and each event's pair number."""
    order = np.lexsort((key, w))
    ws, ks = w[order], key[order]
    new = np.ones(len(ws), bool)
    new[1:] = (ws[1:] != ws[:-1]) | (ks[1:] != ks[:-1])
    gid = np.cumsum(new) - 1
    pair = np.empty(len(w), np.int64)
    pair[order] = gid
    return ws[new], ks[new], np.bincount(gid), pair


def _p_first(pair: np.ndarray) -> np.ndarray:
    """The index of the first event of each pair number in ``pair`` (as :func:`_pairs` numbers them)."""
    _u, first = np.unique(pair, return_index=True)
    return first


def _entropy(w: np.ndarray, key: np.ndarray, n: int) -> np.ndarray:
    """Per window, the Shannon entropy (bits) of ``key`` over its events."""
    out = np.zeros(n)
    if not len(w):
        return out
    pw, _k, c, _p = _pairs(w, key)
    tot = np.bincount(pw, c, minlength=n)
    p = c / tot[pw]
    return np.bincount(pw, -p * np.log2(p), minlength=n)


def _regular_repeats(ts: np.ndarray, key: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
    """Per window, the most connections any one target had so far in the device's history (up to
    and including the window) when their intervals were regular (:data:`REGULAR_CV`): a
    controller called like clockwork, dead or alive, whatever its port and however slow its beat."""
    out = np.zeros(n)
    if len(ts) < REGULAR_MIN:
        return out
    order = np.lexsort((ts, key))
    k, t, ww = key[order], ts[order], w[order]
    start = np.ones(len(k), bool)
    start[1:] = k[1:] != k[:-1]
    gid = np.cumsum(start) - 1
    first = np.flatnonzero(start)
    iv = np.diff(t, prepend=t[0])
    iv[start] = 0.0
    s1, s2 = np.cumsum(iv), np.cumsum(iv * iv)
    s1 -= s1[first][gid]
    s2 -= s2[first][gid]
    cnt = np.arange(len(k)) - first[gid] + 1
    niv = np.maximum(cnt - 1, 1)
    mean = s1 / niv
    std = np.sqrt(np.maximum(s2 / niv - mean * mean, 0.0))
    ok = (cnt >= REGULAR_MIN) & (mean >= 1.0) & (std <= REGULAR_CV * mean)
    np.maximum.at(out, ww[ok], cnt[ok].astype(np.float64))
    return out


def _behaviour_features(X: np.ndarray, col: dict[str, int], ev: np.ndarray, starts: np.ndarray,
                        pre: _Prefix | None = None) -> None:
    """The :data:`BEHAVIOUR_FEATURES` of every window of a device (events in time order) that
    read a window's own events (the rest: :func:`_cumulative_features`). ``pre``: the keys of the
    device's events before ``ev`` (a live pass's rows from one on, :class:`FeatureState`)."""
    n = len(starts)
    ts = ev["ts"]
    w = np.clip(np.searchsorted(starts, ts, side="right") - 1, 0, n - 1).astype(np.int64)
    kind = ev["kind"].astype(np.int64)
    host = host_key(ev["dst_hi"], ev["dst_lo"])
    dport = ev["dport"].astype(np.uint64)
    target = host ^ (dport * _MIX)
    # a failure: a connection nobody completed, a datagram or an echo request nobody answered
    failed = ((kind & _FAILED) != 0) | (((kind & K_ECHO) != 0) & (ev["pkts_in"] == 0))
    tcp = ev["proto"] == 6
    nflows = np.maximum(X[:, WINDOW_COUNTERS.index("new_flows")], 1.0)
    X[:, col["host_entropy"]] = _entropy(w, host, n)
    tu = tcp | (ev["proto"] == 17)
    X[:, col["port_entropy"]] = _entropy(w[tu], dport[tu], n)
    # novelty: a host is new in the window of its first event
    pw, pk, _c, pair = _pairs(w, host)
    hosts, first_i = np.unique(host, return_index=True)
    novel = w[first_i][np.searchsorted(hosts, pk)] == pw
    if pre is not None:
        novel &= ~_member(pk, pre.hosts)
    X[:, col["novel_host_share"]] = np.bincount(pw, novel, minlength=n) / np.maximum(np.bincount(pw, minlength=n), 1)
    first_failed = np.zeros(len(pw), bool)
    first_failed[pair[first_i]] = failed[first_i]
    X[:, col["novel_failed_hosts"]] = np.bincount(pw, novel & first_failed, minlength=n)
    # a scanner contacts addresses it never looked up; a device whose cloud does not answer looked
    # each one up (IoT Sentinel's WeMo plugs: 20 unreachable hosts a minute, 17 DNS queries)
    X[:, col["failed_hosts_per_lookup"]] = (X[:, col["novel_failed_hosts"]]
                                            / (1.0 + X[:, WINDOW_COUNTERS.index("dns_queries")]))
    X[:, col["failed_share"]] = np.bincount(w, failed, minlength=n) / np.maximum(nflows, np.bincount(w, minlength=n))
    if failed.any():
        fw, _k, _c, fp = _pairs(w[failed], target[failed])
        X[:, col["failed_targets"]] = np.bincount(fw, minlength=n)
        # the most ports that failed on one host (a vertical scan): distinct (host, port) per host
        one = _p_first(fp)
        hw, _k, hc, _p = _pairs(w[failed][one], host[failed][one])
        most = np.zeros(n)
        np.maximum.at(most, hw, hc.astype(np.float64))
        X[:, col["failed_ports_one_host"]] = most
    # sessions: completed TCP with payload; short ones, repeated to one target, logins
    sess = tcp & ~failed & ((ev["payload_out"] > 0) | (ev["payload_in"] > 0))
    short = sess & (ev["pkts_out"] <= SHORT_PKTS) & (ev["payload_out"] <= SHORT_PAYLOAD) & (ev["end"] - ts <= SHORT_S)
    if short.any():
        sw, _sk, sc, _sp = _pairs(w[short], target[short])
        rep = np.zeros(n)
        np.maximum.at(rep, sw, sc.astype(np.float64))
        X[:, col["repeat_sessions_one_target"]] = rep
        X[:, col["repeat_session_share"]] = rep / nflows
    login = sess & (((kind & K_AUTH) != 0) | np.isin(ev["app"], _APP_LOGIN))
    X[:, col["login_sessions"]] = np.bincount(w, login, minlength=n)
    if login.any():
        lw, _lk, lc, _lp = _pairs(w[login], target[login])
        rep = np.zeros(n)
        np.maximum.at(rep, lw, lc.astype(np.float64))
        X[:, col["repeat_logins_one_target"]] = rep
    X[:, col["short_session_share"]] = np.bincount(w, short, minlength=n) / np.maximum(np.bincount(w, sess, minlength=n), 1)
    # where the upload goes: the busiest destination's share, whether it is new, its out/in
    up = ev["bytes_out"].astype(np.float64)
    if up.any():
        pout = np.bincount(pair, up)
        pin = np.bincount(pair, ev["payload_in"].astype(np.float64), minlength=len(pout))
        ppay = np.bincount(pair, ev["payload_out"].astype(np.float64), minlength=len(pout))
        order = np.lexsort((pout, pw))
        last = np.ones(len(order), bool)
        last[:-1] = pw[order][1:] != pw[order][:-1]
        top = order[last]  # the busiest pair of each window with events
        tw = pw[top]
        bo = np.maximum(X[tw, WINDOW_COUNTERS.index("bytes_out")], pout[top])
        X[tw, col["top_upload_share"]] = np.where(bo > 0, pout[top] / np.maximum(bo, 1.0), 0.0)
        X[tw, col["top_upload_novel"]] = (novel[top] & (pout[top] > 0)).astype(np.float64)
        X[tw, col["top_upload_out_in"]] = ppay[top] / np.maximum(pin[top], 1.0)
    echo = (kind & K_ECHO) != 0
    if echo.any():
        eb = np.bincount(w[echo], up[echo], minlength=n)
        ep = np.bincount(w[echo], ev["pkts_out"][echo].astype(np.float64), minlength=n)
        X[:, col["echo_bytes_per_packet"]] = eb / np.maximum(ep, 1.0)


def _cumulative_features(X: np.ndarray, col: dict[str, int], ev: np.ndarray, starts: np.ndarray,
                         from_row: int = 0) -> None:
    """The :data:`BEHAVIOUR_FEATURES` of windows ``from_row`` on that read the device's whole
    history up to them (periodicity across windows, held sessions' beats: taken over all its
    events, ``X``'s rows from ``from_row`` on written, the others left)."""
    n = len(starts)
    if not len(ev):
        return
    ts = ev["ts"]
    w = np.clip(np.searchsorted(starts, ts, side="right") - 1, 0, n - 1).astype(np.int64)
    kind = ev["kind"].astype(np.int64)
    target = host_key(ev["dst_hi"], ev["dst_lo"]) ^ (ev["dport"].astype(np.uint64) * _MIX)
    tcp = ev["proto"] == 6
    tu = tcp | (ev["proto"] == 17)
    # periodicity across windows: failed connections to one target, and any connection to one
    probe = tcp & ((kind & K_PROBE) != 0)
    X[from_row:, col["regular_failed_repeats"]] = _regular_repeats(ts[probe], target[probe], w[probe], n)[from_row:]
    ext = tu & ((kind & K_EXT) != 0)
    X[from_row:, col["regular_conn_repeats"]] = _regular_repeats(ts[ext], target[ext], w[ext], n)[from_row:]
    # sessions held on a beat: the beats accrued by each window they span (the first 4,096)
    X[from_row:, col["held_beats"]] = 0.0
    beats = ev["hb_beats"].astype(np.float64)
    held = np.flatnonzero(tcp & (beats >= 3) & (beats >= HELD_ON_BEAT * ev["hb_pushes"]) & (ev["hb_beat_s"] >= 1.0))
    for i in held[:4096]:
        lo = max(int(w[i]), 0)
        hi = int(np.clip(np.searchsorted(starts, ev["end"][i], side="right") - 1, lo, n - 1))
        if hi < from_row:
            continue
        lo = max(lo, from_row)
        ends = starts[lo:hi + 1] + (starts[1] - starts[0] if n > 1 else 60.0)
        acc = np.minimum(beats[i], np.floor((ends - ts[i]) / float(ev["hb_beat_s"][i])))
        np.maximum(X[lo:hi + 1, col["held_beats"]], acc, out=X[lo:hi + 1, col["held_beats"]])


def _service_key(ev: np.ndarray) -> np.ndarray:
    """One key per destination service of each event: host × protocol × port (ICMP: its code)."""
    port = (ev["dport"].astype(np.uint64) << np.uint64(8)) | ev["proto"].astype(np.uint64)
    return host_key(ev["dst_hi"], ev["dst_lo"]) ^ port * _MIX


def _first_in_window(w: np.ndarray, key: np.ndarray, n: int, seen: np.ndarray | None = None) -> np.ndarray:
    """Per window, how many distinct keys appear for the first time there (events in time order;
    ``seen``: the sorted keys of earlier events, not new)."""
    if not len(key):
        return np.zeros(n)
    k, first = np.unique(key, return_index=True)
    if seen is not None:
        first = first[~_member(k, seen)]
    return np.bincount(w[first], minlength=n).astype(np.float64)


def _top_per_window(w: np.ndarray, key: np.ndarray, weight: np.ndarray, n: int) -> np.ndarray:
    """Per window, the largest summed ``weight`` of one key (0 in a window without events)."""
    out = np.zeros(n)
    if len(w):
        pw, _k, _c, pair = _pairs(w, key)
        np.maximum.at(out, pw, np.bincount(pair, weight, minlength=len(pw)))
    return out


def _request_features(X: np.ndarray, col: dict[str, int], ev: np.ndarray, starts: np.ndarray) -> None:
    """``top_target_requests`` and ``top_host_requests``: the most requests to one service (host ×
    protocol × port or ICMP code) and to one host in a window. Each flow is a request, and so is
    each packet nobody answered of a flow of neither TCP nor UDP (an ICMP echo or GRE flood is one
    flow of thousands of packets; not an ICMP error or reply: an answer), and each DNS query of the window, whatever flows carry them (a
    stub that keeps its source port sends all its queries in one flow; they all go to port 53 of
    the device's resolver). ``open_sessions_one_service``: the most TCP sessions to one service
    open at some time in the window (begun in it or held from before) that carried data, and
    ``top_target_requests`` is at least that: a slow HTTP flood holds hundreds at once, each
    trickling a few bytes, where a browser or a hub keeps a few and a recorder one per camera."""
    n = len(starts)
    w = np.clip(np.searchsorted(starts, ev["ts"], side="right") - 1, 0, n - 1)
    proto = ev["proto"]
    # an ICMP error or reply is an answer, not a request (a UDP scan's victim sends hundreds of
    # port unreachables in one flow)
    icmp_answer = ((proto == 1) | (proto == 58)) & ((ev["kind"] & K_ECHO) == 0)
    other = (proto != 6) & (proto != 17) & ~icmp_answer
    req = 1.0 + np.where(other, np.maximum(ev["pkts_out"].astype(np.float64) - ev["pkts_in"] - 1.0, 0.0), 0.0)
    svc = _service_key(ev)
    X[:, col["top_target_requests"]] = _top_per_window(w, svc, req, n)
    X[:, col["top_host_requests"]] = _top_per_window(w, host_key(ev["dst_hi"], ev["dst_lo"]), req, n)
    sess = np.flatnonzero((proto == 6) & (ev["payload_out"] > 0) & ((ev["kind"] & _FAILED) == 0))
    if len(sess):
        lo = w[sess]
        hi = np.clip(np.searchsorted(starts, ev["end"][sess], side="right") - 1, lo, n - 1)
        cnt = hi - lo + 1
        idx = np.repeat(np.arange(len(sess)), cnt)
        wi = lo[idx] + np.arange(len(idx)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        X[:, col["open_sessions_one_service"]] = _top_per_window(wi, svc[sess][idx], np.ones(len(idx)), n)


def _scan_features(X: np.ndarray, col: dict[str, int], ev: np.ndarray, starts: np.ndarray, arp_novel: np.ndarray,
                   pre: _Prefix | None = None) -> None:
    """The :data:`SCAN_FEATURES` of every window of a device (events in time order; ``arp_novel``:
    per window the ARP targets asked for the first time, :func:`_arp_novel`)."""
    n = len(starts)
    if len(ev):
        kind = ev["kind"].astype(np.int64)
        failed = ((kind & _FAILED) != 0) | (((kind & K_ECHO) != 0) & (ev["pkts_in"] == 0))
        if failed.any():
            e = ev[failed]
            w = np.clip(np.searchsorted(starts, e["ts"], side="right") - 1, 0, n - 1)
            X[:, col["novel_failed_targets"]] = _first_in_window(w, _service_key(e), n,
                                                                 None if pre is None else pre.failed)
        sig = (kind & SIGNATURE_PROBES) != 0
        if sig.any():
            e = ev[sig]
            w = np.clip(np.searchsorted(starts, e["ts"], side="right") - 1, 0, n - 1)
            pw, _k, _c, _p = _pairs(w, _service_key(e))
            X[:, col["signature_targets"]] = np.bincount(pw, minlength=n)
        _request_features(X, col, ev, starts)
    X[:, col["novel_arp_targets"]] = arp_novel
    dns = X[:, WINDOW_COUNTERS.index("dns_queries")]
    sig, probed = X[:, col["signature_targets"]], X[:, col["probe_targets"]]
    X[:, col["scan_targets_per_lookup"]] = (X[:, col["novel_failed_targets"]] + X[:, col["novel_arp_targets"]]
                                            + SIGNATURE_WEIGHT * np.where(probed >= SIGNATURE_MIN_TARGETS, sig, 0.0)
                                            ) / (1.0 + dns)
    for name in ("top_target_requests", "top_host_requests"):
        np.maximum(X[:, col[name]], dns, out=X[:, col[name]])
    np.maximum(X[:, col["top_target_requests"]], X[:, col["open_sessions_one_service"]],
               out=X[:, col["top_target_requests"]])


#: an ICMP echo request of a plain ping: 64-100 bytes on the wire (Linux 98, Windows 74); what an
#: echo request carries beyond this is data (the rules' icmp_tunnel reads the same)
PING_BYTES = 100


@lru_cache(maxsize=65536)
def _name_data(name: str) -> int:
    """Characters of data a DNS name carries: its labels below the registered domain (the last two)
    when one of them is long enough to hold encoded data (:func:`~iotwatch.detect.rules.encoded_name`);
    0 for an ordinary name (a long host name of a cloud, a CDN's short hashes). A name whose last
    label is no top-level domain (the root zone's are letters, or ``xn--`` IDNs) has no registered
    domain: all its labels count (dnscat2 asks its own server ``dnscat.<hex>`` directly)."""
    if not encoded_name(name, _TH):
        return 0
    labels = name.rstrip(".").split(".")
    tld = labels[-1]
    if not (tld.isalpha() or tld.lower().startswith("xn--")):
        return sum(len(x) for x in labels)
    return sum(len(x) for x in labels[:-2])


def _exfil_features(X: np.ndarray, col: dict[str, int], ev: np.ndarray, side: _Side, starts: np.ndarray,
                    width: float, seen_from: int, pre: _Prefix | None = None) -> None:
    """The :data:`EXFIL_FEATURES` of every window of a device (events in time order) but
    ``send_service_bytes`` (:func:`_send_service_bytes`): ``width`` the spacing of the device's
    first two windows, ``seen_from`` the window of its first event."""
    n = len(starts)
    # data in DNS names: the encoded part of the distinct names kept in a window, scaled to the
    # queries the window counted when the side channel's budget kept only some of them
    if len(side.dns_ts):
        w = np.searchsorted(starts, side.dns_ts, side="right") - 1
        ok = (w >= 0) & (w < n)
        if ok.any():
            w, data, key = w[ok], side.dns_data[ok], side.dns_key[ok]
            order = np.lexsort((key, w))
            first = np.ones(len(order), bool)
            first[1:] = (w[order][1:] != w[order][:-1]) | (key[order][1:] != key[order][:-1])
            once = order[first]  # each distinct name once per window
            kept = np.bincount(w, minlength=n).astype(np.float64)
            sent = np.maximum(X[:, WINDOW_COUNTERS.index("dns_queries")], kept)
            X[:, col["dns_data_bytes"]] = np.bincount(w[once], data[once], minlength=n) * sent / np.maximum(kept, 1.0)
    if len(ev):
        kind = ev["kind"]
        echo = (kind & K_ECHO) != 0
        if echo.any():
            e = ev[echo]
            extra = np.maximum(e["bytes_out"].astype(np.float64) - PING_BYTES * e["pkts_out"].astype(np.float64), 0.0)
            _spread(X[:, col["echo_data_bytes"]], starts, width, e["ts"], e["end"], extra)
        # uploads to hosts the device had never reached: first reached in this window, after a
        # window in which it was already seen (before that, every host is new)
        ext = (kind & K_EXT) != 0
        if ext.any():
            e = ev[ext]
            host = host_key(e["dst_hi"], e["dst_lo"])
            w = np.clip(np.searchsorted(starts, e["ts"], side="right") - 1, 0, n - 1)
            u, first_i = np.unique(host, return_index=True)
            new_w = w[first_i][np.searchsorted(u, host)]
            new = (new_w == w) & (w > seen_from)
            if pre is not None:
                new &= ~_member(host, pre.ext)
            if new.any():
                out = np.bincount(w[new], e["payload_out"][new].astype(np.float64), minlength=n)
                back = np.bincount(w[new], e["payload_in"][new].astype(np.float64), minlength=n)
                X[:, col["new_host_upload"]] = np.maximum(out - back, 0.0)
                X[:, col["new_host_out_in"]] = out / np.maximum(back, 1.0)
    X[:, col["covert_bytes"]] = X[:, col["dns_data_bytes"]] + X[:, col["echo_data_bytes"]]


def _send_service_bytes(ev: np.ndarray, d: DeviceEvidence, starts: np.ndarray) -> np.ndarray:
    """Per window, the payload a device sent to internet servers of a mail or file service
    (:data:`SEND_SERVICE_PORTS`) that it had no business with: a server it first reached on that
    service after asking a what-is-my-IP service for its public address (within the rules'
    ``credential_window_s``: the stealer's routine, MITRE ATT&CK T1016 then T1048), or, after its
    start-up (:data:`STARTUP_S`), a server new for it on a kind of service (mail, files) it had
    not used since it came up. Everything the device sent to such a server counts (an FTP upload's
    data connection goes to the server's address on a port of its choosing). A camera or a
    recorder that mails snapshots or pushes clips as configured does so from its start-up, to the
    same server; a person's computer that sends mail did so before (or asks no address first)."""
    n = len(starts)
    out = np.zeros(n)
    tcp = ev[((ev["kind"] & K_EXT) != 0) & (ev["proto"] == 6)]
    if not len(tcp):
        return out
    app = tcp["app"]
    dport = tcp["dport"].astype(np.int64)
    mail = (app == A_SMTP) | np.isin(dport, MAIL_PORTS)
    files = (app == A_FTP) | np.isin(dport, FILE_PORTS)
    svc = (mail | files) & (tcp["payload_out"] > 0) & (tcp["pkts_in"] > 0)
    if not svc.any():
        return out
    ts = tcp["ts"]
    host = host_key(tcp["dst_hi"], tcp["dst_lo"])
    t_dev = min(float(ev["ts"].min()), float(starts[0]))
    up = t_dev + STARTUP_S
    # when the device first reached each host (on anything), and first used each kind of service
    hosts, inv = np.unique(host, return_inverse=True)
    t_host = np.full(len(hosts), np.inf)
    np.minimum.at(t_host, inv, ts)
    t_mail = float(ts[svc & mail].min()) if (svc & mail).any() else np.inf
    t_files = float(ts[svc & files].min()) if (svc & files).any() else np.inf
    asks = np.array(sorted(q.ts for q in d.dns if _ip_echo(q.qname))) if d.dns else np.zeros(0)
    i = np.flatnonzero(svc)
    t = ts[i]
    j = np.searchsorted(asks, t, side="right")
    asked = (j > 0) & (t - asks[np.maximum(j - 1, 0)] <= _TH.credential_window_s) if len(asks) else np.zeros(len(i), bool)
    kind_new = np.where(mail[i], t_mail, t_files) > up
    bad = np.zeros(len(hosts), bool)
    bad[inv[i[asked | (kind_new & (t_host[inv[i]] > up))]]] = True
    sel = bad[inv]
    if sel.any():
        w = np.clip(np.searchsorted(starts, ts[sel], side="right") - 1, 0, n - 1)
        out += np.bincount(w, tcp["payload_out"][sel].astype(np.float64), minlength=n)
    return out


#: a flow spread over its windows (:func:`_spread`) counts nothing in a window it overlaps by less
SPREAD_MIN_S = 1.0


def _spread(out: np.ndarray, starts: np.ndarray, width: float, t0: np.ndarray, t1: np.ndarray, v: np.ndarray) -> None:
    """Add each value ``v`` to the windows its span ``t0``..``t1`` overlaps, in proportion to the
    overlap (a flow of several minutes counts in each of its windows)."""
    n = len(starts)
    lo = np.clip(np.searchsorted(starts, t0, side="right") - 1, 0, n - 1)
    hi = np.clip(np.searchsorted(starts, t1, side="right") - 1, lo, n - 1)
    cnt = hi - lo + 1
    idx = np.repeat(np.arange(len(lo)), cnt)
    wi = lo[idx] + np.arange(len(idx)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    ov = np.minimum(starts[wi] + width, t1[idx]) - np.maximum(starts[wi], t0[idx])
    ov[ov < SPREAD_MIN_S] = 0.0  # the last answer of a flow, just past a window's start: nothing sent there
    tot = np.bincount(idx, ov, minlength=len(lo))
    frac = np.where(tot[idx] > 0, ov / np.maximum(tot[idx], 1e-12), 1.0 / cnt[idx])
    out += np.bincount(wi, v[idx] * frac, minlength=n)


def _own_median(x: np.ndarray, floor: float, from_row: int = 0) -> np.ndarray:
    """Each value over the median of the values before it (at least ``floor``); 0 for the first
    two. ``from_row``: only the values from there on (the others 0)."""
    out = np.zeros(len(x))
    earlier: list[float] = np.sort(x[:from_row]).tolist()  # kept sorted
    for i, v in enumerate(x[from_row:].tolist(), from_row):
        if i >= 2:
            h = i // 2
            m = earlier[h] if i % 2 else (earlier[h - 1] + earlier[h]) / 2
            out[i] = v / max(m, floor)
        bisect.insort(earlier, v)
    return out


def _own_quiet(x: np.ndarray, floor: float, first: int = 2, keep_x: float | None = None) -> np.ndarray:
    """Each value over the lower quantile of the values before it (:func:`_quiet_ratios`)."""
    return _quiet_ratios(x, floor, first, keep_x)[0]


def _quiet_ratios(x: np.ndarray, floor: float, first: int = 2, keep_x: float | None = None, from_row: int = 0,
                  kept: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each value over the lower :data:`QUIET_QUANTILE` of the values before it (at least
    ``floor``); 0 for the first ``first``, and over ``floor`` alone before any. Unlike the median,
    a surge that has lasted longer than the quiet part before it does not become its own reference.
    ``keep_x``: a value ``keep_x`` times its reference or more never becomes part of the reference
    (as the upload rule keeps its reference: a capture that starts with the incident never makes it
    the device's normal). Returns the ratios and which values joined the reference; ``from_row``
    with ``kept`` (that second array, of a computation over the same values before ``from_row``):
    only the values from ``from_row`` on (the others 0)."""
    out = np.zeros(len(x))
    joined = np.ones(len(x), np.bool_)
    if from_row:
        assert kept is not None
        joined[:from_row] = kept[:from_row]
    earlier: list[float] = np.sort(x[:from_row][joined[:from_row]]).tolist()  # kept sorted
    for i, v in enumerate(x[from_row:].tolist(), from_row):
        ref = max(earlier[int(QUIET_QUANTILE * (len(earlier) - 1))] if earlier else 0.0, floor)
        if i >= first:
            out[i] = v / ref
        if keep_x is None or v < keep_x * ref:
            bisect.insort(earlier, v)
        else:
            joined[i] = False
    return out, joined


def derived_features(X: np.ndarray, from_row: int = 0, kept: dict[str, np.ndarray] | None = None,
                     ) -> dict[str, np.ndarray]:
    """Fill the :data:`DERIVED` columns of a device's feature matrix (windows in time order) from
    its other columns. ``from_row``: only the rows from there on, the others being those of an
    earlier call over the same rows before it, which returned ``kept`` (what joined each
    window's quiet references); returns that of this call."""
    idx = {n: j for j, (n, _t) in enumerate(FEATURES)}
    k = from_row
    for name, num, den in RATIOS:
        X[k:, idx[name]] = X[k:, idx[num]] / np.maximum(X[k:, idx[den]], 1.0)
    for name, col, floor in HISTORY:
        X[k:, idx[name]] = _own_median(X[:, idx[col]], floor, k)[k:]
    out: dict[str, np.ndarray] = {}
    for name, src, floor, first, keep_x in (("upload_x_quiet", "upload_bytes", 1000.0, 2, None),
                                            ("covert_x_quiet", "covert_bytes", COVERT_FLOOR, 0, _TH.surge_x),
                                            ("send_x_quiet", "send_service_bytes", SEND_FLOOR, 0, _TH.surge_x)):
        ratio, out[name] = _quiet_ratios(X[:, idx[src]], floor, first, keep_x, k, None if kept is None else kept[name])
        X[k:, idx[name]] = ratio[k:]
    X[k:, idx["data_out_x_quiet"]] = np.maximum.reduce([X[k:, idx["upload_x_quiet"]], X[k:, idx["covert_x_quiet"]],
                                                        X[k:, idx["send_x_quiet"]], X[k:, idx["upload_x_type"]]])
    return out


def device_features(windows: dict[str, np.ndarray], d: DeviceEvidence | None, window_s: float,
                    baseline: float | None, device_type: str | None = None, names_seen: bool = True) -> np.ndarray:
    """Feature matrix (n windows × len(FEATURES)) for one device; ``windows`` are its columns,
    ``device_type`` the inventory's type (the reference of ``upload_x_type``). ``names_seen``:
    the input shows DNS questions (False for a Zeek conn.log, which has none: no channel is then
    judged reached without a lookup). The same computation as :meth:`FeatureState.update`, from
    the first window."""
    return FeatureState().update(windows, d, window_s, baseline, device_type, names_seen)


class _Side(NamedTuple):
    """A device's ARP requests, DNS queries and C2 hellos as arrays (what the features read of
    them), and the lists' lengths and last entries they were taken from."""

    arp_ts: np.ndarray
    arp_tgt: np.ndarray
    dns_ts: np.ndarray
    dns_data: np.ndarray  # characters of data in the name (_name_data)
    dns_key: np.ndarray  # hash of the name
    dns_ddns: np.ndarray  # the name is in a dynamic-DNS zone (rules._dynamic_dns)
    hello_ts: np.ndarray
    lasts: tuple[object, object, object]  # the last entry of each list (they are only appended to)


def _side_arrays(d: DeviceEvidence | None, old: _Side | None) -> tuple[_Side, float | None]:
    """:class:`_Side` of ``d``, extending ``old`` when the lists only grew since; and the earliest
    time among the entries added (None: none added; -inf: the lists are not ``old``'s extended)."""
    arp, dns, hel = (d.arp, d.dns, d.c2_hellos) if d is not None else ([], [], [])
    if old is not None:
        n0 = (len(old.arp_ts), len(old.dns_ts), len(old.hello_ts))
        grown = all(len(cur) >= k and (k == 0 or cur[k - 1] is last)
                    for cur, k, last in zip((arp, dns, hel), n0, old.lasts, strict=True))
    if old is None or not grown:
        old, n0, t_new = None, (0, 0, 0), -np.inf
    else:
        if (len(arp), len(dns), len(hel)) == n0:
            return old, None
        t_new = np.inf
    a_new, q_new, h_new = arp[n0[0]:], dns[n0[1]:], hel[n0[2]:]
    a = np.array([(t, x) for t, x, _ in a_new], np.float64).reshape(-1, 2)
    q_ts = np.fromiter((q.ts for q in q_new), np.float64, len(q_new))
    q_data = np.fromiter((_name_data(q.qname) for q in q_new), np.float64, len(q_new))
    q_key = np.fromiter((hash(q.qname) for q in q_new), np.int64, len(q_new))
    q_ddns = np.fromiter((_dynamic_dns(q.qname) for q in q_new), np.bool_, len(q_new))
    h_ts = np.fromiter((t for t, _, _ in h_new), np.float64, len(h_new))
    if t_new == np.inf:
        t_new = float(min(a[:, 0].min(initial=np.inf), q_ts.min(initial=np.inf), h_ts.min(initial=np.inf)))
    lasts = tuple(cur[-1] if cur else None for cur in (arp, dns, hel))
    if old is None:
        return _Side(a[:, 0].copy(), a[:, 1].copy(), q_ts, q_data, q_key, q_ddns, h_ts,  # type: ignore[arg-type]
                     lasts), t_new
    return _Side(np.concatenate((old.arp_ts, a[:, 0])), np.concatenate((old.arp_tgt, a[:, 1])),
                 np.concatenate((old.dns_ts, q_ts)), np.concatenate((old.dns_data, q_data)),
                 np.concatenate((old.dns_key, q_key)), np.concatenate((old.dns_ddns, q_ddns)),
                 np.concatenate((old.hello_ts, h_ts)), lasts), t_new  # type: ignore[arg-type]


def _arp_novel(side: _Side, starts: np.ndarray) -> np.ndarray:
    """Per window, the ARP targets the device asked for the first time (``novel_arp_targets``)."""
    n = len(starts)
    if not len(side.arp_ts):
        return np.zeros(n)
    w = np.clip(np.searchsorted(starts, side.arp_ts, side="right") - 1, 0, n - 1)
    return _first_in_window(w, side.arp_tgt.astype(np.int64), n)


class _Prefix(NamedTuple):
    """What the features' novelty reads of a device's events before a boundary (the first
    ``j`` in time order): the sorted distinct keys of their hosts, of the services of the failed
    ones (``novel_failed_targets``) and of the hosts of the external ones (``new_host_upload``)."""

    j: int
    hosts: np.ndarray
    failed: np.ndarray
    ext: np.ndarray


def _prefix_keys(ev: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct keys of :class:`_Prefix` over ``ev``, sorted."""
    kind = ev["kind"].astype(np.int64)
    failed = ((kind & _FAILED) != 0) | (((kind & K_ECHO) != 0) & (ev["pkts_in"] == 0))
    hosts = host_key(ev["dst_hi"], ev["dst_lo"])
    return np.unique(hosts), np.unique(_service_key(ev[failed])), np.unique(hosts[(kind & K_EXT) != 0])


def _member(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Whether each key is in ``sorted_keys`` (sorted, distinct)."""
    if not len(sorted_keys):
        return np.zeros(len(keys), np.bool_)
    i = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[i] == keys


def _merge_keys(sorted_keys: np.ndarray, more: np.ndarray) -> np.ndarray:
    """``sorted_keys`` with the distinct keys of ``more`` not in it yet, sorted."""
    more = np.unique(more)
    more = more[~_member(more, sorted_keys)]
    return np.insert(sorted_keys, np.searchsorted(sorted_keys, more), more) if len(more) else sorted_keys


def _first_difference(a: np.ndarray | None, b: np.ndarray) -> int:
    """The first position where two event arrays differ (in any field; the shorter one's length
    when one begins the other; 0 without ``a``)."""
    if a is None:
        return 0
    m = min(len(a), len(b))
    if not m:
        return 0
    dt = np.flatnonzero(a["ts"][:m] != b["ts"][:m])
    m = int(dt[0]) if len(dt) else m
    if not m:
        return 0
    size = a.dtype.itemsize
    ua, ub = a[:m].view(np.uint8), b[:m].view(np.uint8)
    words = (m * size) // 8
    diff = np.flatnonzero(ua[:words * 8].view(np.uint64) != ub[:words * 8].view(np.uint64))
    if len(diff):
        return int(diff[0]) * 8 // size
    tail = np.flatnonzero(ua[words * 8:] != ub[words * 8:])
    return (words * 8 + int(tail[0])) // size if len(tail) else m


_BASE = len(WINDOW_COUNTERS)
_COL = {name: _BASE + k for k, name in enumerate((*EVIDENCE_FEATURES, *BEHAVIOUR_FEATURES, *C2_FEATURES,
                                                   *EXFIL_FEATURES, *SCAN_FEATURES))}
#: the features of a window that may change with what comes after it: the traits a channel shows
#: over its whole life and the beats it held (C2_FEATURES), and whether a mail or file server was
#: one the device had no business with (send_service_bytes): taken again for every window
_WHOLE = (*C2_FEATURES, "send_service_bytes")
#: the features taken over the whole history up to each window (_cumulative_features) and the
#: upload's own (device_features)
_HISTORY_OWN = ("regular_failed_repeats", "regular_conn_repeats", "held_beats", "upload_x_baseline", "upload_mbps",
                "upload_x_type")
#: the columns _evidence_features writes for a window from its own events
_WINDOWED = np.array([_COL[n] for n in (*EVIDENCE_FEATURES, *BEHAVIOUR_FEATURES, *EXFIL_FEATURES, *SCAN_FEATURES)
                      if n not in _WHOLE and n not in _HISTORY_OWN], np.int64)
_ROW_COLUMNS = ("window_start", *WINDOW_COUNTERS)


class FeatureState:
    """One device's feature matrix between a live run's verdict passes (``Detector.conclude_live``):
    :meth:`update` takes again only the windows whose features can have changed since the previous
    call, and gives exactly what :func:`device_features` gives over everything.

    What a window's features read (docs/detection.md, "Features in a live run"): its own events
    and counters; what came before it (a host, a failed service or an external host new since
    the device's first event, ARP targets never asked for, regularity and held beats so far, the
    median and quiet part of the earlier windows); a few read the device's whole history,
    later events included (:data:`_WHOLE`: a channel's traits and beats, a mail or file server
    found bad later), and are taken again for every window at every update. So a window is taken
    again from the earliest one a new, changed or removed event, ARP request, DNS query, C2
    hello or window row falls in (events in time order: the first position where this call's
    differ from the previous call's), or that an event still going reaches into (its share of an
    ICMP echo flow spread over the windows it overlaps); the last known window always, when new
    windows came (what lay past it counted there). A change of the baseline, the device's type,
    the window or ``names_seen`` takes every window again."""

    def __init__(self) -> None:
        self.X: np.ndarray | None = None
        self._rows: np.ndarray | None = None  # window starts and counters of X's rows
        self._ev: np.ndarray | None = None  # the events X was taken over
        self._side: _Side | None = None
        self._pre: _Prefix | None = None
        self._key: tuple[object, ...] | None = None
        self._kept: dict[str, np.ndarray] | None = None  # derived_features' reference state
        #: the first window the last update took again (its number of windows: none)
        self.from_row = 0

    def update(self, windows: dict[str, np.ndarray], d: DeviceEvidence | None, window_s: float,
               baseline: float | None, device_type: str | None = None, names_seen: bool = True) -> np.ndarray:
        """The feature matrix of ``windows`` over ``d`` (as :func:`device_features`), taking again
        only the windows that can have changed since the previous update."""
        starts = windows["window_start"]
        n = len(starts)
        rows = np.column_stack([np.asarray(windows[c], np.float64) for c in _ROW_COLUMNS]) if n else \
            np.zeros((0, len(_ROW_COLUMNS)))
        ev = d.events() if d is not None else np.empty(0, EVENT_DTYPE)
        side, t_side = _side_arrays(d, self._side)
        key = (window_s, baseline, device_type, names_seen, d is None)
        k = self._first_row(rows, ev, starts, t_side) if self.X is not None and key == self._key else 0
        self.from_row = k
        X = np.zeros((n, len(FEATURES)), np.float64)
        if k:
            X[:k] = self.X[:k]  # type: ignore[index]
        X[:, :_BASE] = rows[:, 1:]
        col = _COL
        up = rows[:, 1 + WINDOW_COUNTERS.index("upload_bytes")]
        # upload against the device's baseline: the one given, else the median of its earlier windows
        X[k:, col["upload_x_baseline"]] = up[k:] / max(baseline, 1000.0) if baseline is not None \
            else _own_median(up, 1000.0, k)[k:]
        X[:, col["upload_mbps"]] = up * 8 / window_s / 1e6
        kind = type_upload.reference(device_type, window_s)
        if kind:
            X[:, col["upload_x_type"]] = up / kind
        if d is not None:
            width = float(starts[1] - starts[0]) if n > 1 else 60.0
            if k < n:
                self._windowed(X, d, ev, side, starts, width, k)
                _cumulative_features(X, col, ev, starts, k)
            for name in C2_FEATURES:
                X[:, col[name]] = 0.0
            _c2_features(X, col, d, side, starts, window_s, names_seen)
            X[:, col["send_service_bytes"]] = _send_service_bytes(ev, d, starts) if len(ev) else 0.0
        # the derived columns, from the first window whose inputs changed (send_service_bytes of
        # any window may have)
        kd = k
        if k and self.X is not None:
            j = col["send_service_bytes"]
            moved = np.flatnonzero(X[:k, j] != self.X[:k, j])
            kd = int(moved[0]) if len(moved) else k
        self._kept = derived_features(X, kd, self._kept if kd else None)
        self.X, self._rows, self._ev, self._side, self._key = X, rows, ev, side, key
        return X

    def _first_row(self, rows: np.ndarray, ev: np.ndarray, starts: np.ndarray, t_side: float | None) -> int:
        """The first window whose features can differ from the previous update's."""
        old = self._rows
        assert old is not None
        n, n0 = len(rows), len(old)
        if n < n0:
            return 0
        same = (rows[:n0] == old).all(axis=1)
        k = int(np.argmin(same)) if not same.all() else n
        if n > n0 and n0:
            # what lay past the last known window counted in it; and an ICMP echo flow reaching
            # into the new ones spreads its payload over more windows
            k = min(k, n0 - 1)
            reach = ((ev["kind"] & K_ECHO) != 0) & (ev["end"] >= starts[n0])
            if reach.any():
                k = min(k, int(np.searchsorted(starts, ev["ts"][reach].min(), side="right")) - 1)
        i0 = _first_difference(self._ev, ev)
        assert self._ev is not None
        times = [a["ts"][i0] for a in (self._ev, ev) if i0 < len(a)]
        if t_side is not None:
            times.append(t_side)
        if times:
            k = min(k, int(np.searchsorted(starts, min(times), side="right")) - 1)
        return max(k, 0)

    def _windowed(self, X: np.ndarray, d: DeviceEvidence, ev: np.ndarray, side: _Side, starts: np.ndarray,
                  width: float, k: int) -> None:
        """The features of windows ``k`` on that read their own events (_evidence_features),
        taken over the events that fall in them or reach into them, with what came before as
        :class:`_Prefix`."""
        n = len(starts)
        j = int(np.searchsorted(ev["ts"], starts[k], side="left")) if k else 0
        r0 = k
        sub = ev[j:]
        pre = None
        if j:
            reach = np.flatnonzero(ev["end"][:j] >= starts[k])
            if len(reach):  # events before the boundary still going in window k (sessions, flows spread)
                sub = np.concatenate((ev[reach], sub))
                r0 = int(np.clip(np.searchsorted(starts, ev["ts"][reach[0]], side="right") - 1, 0, k))
            p = self._pre
            if p is not None and p.j <= j:  # (the events before p.j are the same: p.j <= j <= the first change)
                part = ev[p.j:j]
                if len(part):
                    h, f, e = _prefix_keys(part)
                    p = _Prefix(j, _merge_keys(p.hosts, h), _merge_keys(p.failed, f), _merge_keys(p.ext, e))
            else:
                p = _Prefix(j, *_prefix_keys(ev[:j]))
            pre = p
        self._pre = pre  # (kept for the next update's prefix: the events before it are unchanged)
        seen_from = int(np.clip(np.searchsorted(starts, ev["ts"][0], side="right") - 1, 0, n - 1)) if len(ev) else 0
        T = np.zeros((n - r0, len(FEATURES)), np.float64)
        T[:, :_BASE] = X[r0:, :_BASE]
        _evidence_features(T, _COL, sub, d, side, starts[r0:], width, seen_from - r0, _arp_novel(side, starts)[r0:],
                           pre)
        X[k:, _WINDOWED] = T[k - r0:, _WINDOWED]


def _evidence_features(X: np.ndarray, col: dict[str, int], ev: np.ndarray, d: DeviceEvidence, side: _Side,
                       starts: np.ndarray, width: float, seen_from: int, arp_novel: np.ndarray,
                       pre: _Prefix | None = None) -> None:
    """The features of windows ``starts`` that read their own events (and, through ``pre``, what
    came before them): every one of :data:`EVIDENCE_FEATURES`, :data:`BEHAVIOUR_FEATURES`,
    :data:`EXFIL_FEATURES` and :data:`SCAN_FEATURES` but those of :data:`_WHOLE` and the upload's."""
    n = len(starts)
    if len(ev):
        _event_features(X, col, ev, starts)
        _behaviour_features(X, col, ev, starts, pre)
    _exfil_features(X, col, ev, side, starts, width, seen_from, pre)
    _scan_features(X, col, ev, starts, arp_novel, pre)
    if len(side.arp_ts):
        w_of = np.searchsorted(starts, side.arp_ts, side="right") - 1
        for i in np.unique(w_of):
            if 0 <= i < n:
                X[i, col["arp_targets"]] = len(np.unique(side.arp_tgt[w_of == i]))
    if len(side.dns_ts):
        w_of = np.searchsorted(starts, side.dns_ts, side="right") - 1
        for i in np.unique(w_of):
            if not 0 <= i < n:
                continue
            qs = [d.dns[j] for j in np.flatnonzero(w_of == i)]
            names = {q.qname for q in qs}
            X[i, col["dns_names"]] = len(names)
            doms = Counter(".".join(q.split(".")[-2:]) for q in names)
            _dom, cnt = doms.most_common(1)[0]
            X[i, col["dns_max_names_one_domain"]] = cnt
            X[i, col["dns_mean_name_len"]] = sum(len(q) for q in names) / len(names)
            X[i, col["dns_odd_types"]] = sum(q.qtype in (10, 16, 15, 5, 255) for q in qs) / len(qs)
    if len(side.hello_ts):
        w_of = np.searchsorted(starts, side.hello_ts, side="right") - 1
        for i in w_of:
            if 0 <= i < n:
                X[i, col["c2_hellos"]] += 1


#: a device's start-up: a destination first reached later than this after the device's first
#: event is new for it (not among what it talked to when it came up or when the capture began)
STARTUP_S = 120.0
#: a channel's connections are on a beat while each interval is within BEAT_TOLERANCE of the
#: channel's median interval (at least BEAT_MIN_S apart): a jittered check-in keeps its beat, a
#: burst of retries or a user's browsing does not
BEAT_TOLERANCE, BEAT_MIN_S, BEAT_MAX_S = 0.4, 1.0, 3600.0
#: a held session's exchanges count as beats when one side started them on one beat (as the
#: rules' _on_beat), or at least BEAT_MIN_S apart on average with a coefficient of variation of at
#: most PACED_CV (of PACED_MIN exchanges or more)
PACED_CV, PACED_MIN = 0.75, 4
#: a destination was looked up when the device asked for a name at most LOOKUP_S before it first
#: reached it
LOOKUP_S = 30.0
#: c2_beats_suspect: the most beats of a channel with at least this many traits, or with one of
#: TELLING_TRAITS, once it has held SUSPECT_BEATS beats (two intervals that agree: one "beat" is
#: only a repeat, two connections at any interval, a retry)
SUSPECT_TRAITS, SUSPECT_BEATS = 2, 2
#: the traits that say what the destination is, not only that it is unusual for the device: a name
#: in a free dynamic-DNS zone, a host that served the device a program, a bot's hello. A device's
#: link to its own vendor's service has none of them (an odd port, a destination new since
#: start-up, an address reached without a lookup or a peer that never answers: each alone, a
#: normal device's channel may have one)
TELLING_TRAITS = ("c2_beats_dynamic_dns", "c2_beats_program_host", "c2_beats_bot_hello")
#: c2_beat_traits and c2_beats_suspect: channels that held at least this many beats so far
TRAIT_BEATS = 3
#: a channel carries messages, not bulk data: a connection or session whose client sent more than
#: this many payload bytes per exchange on average is not one (a RAT's pushes are tens of kB)
BULK_EXCHANGE = 262_144
#: the ports of everyday and cloud services (the rules' EVERYDAY_PORTS and CLOUD_PORTS): any other is odd
_USUAL_PORTS = np.array([25, 53, 80, 110, 123, 143, 443, 465, 587, 853, 993, 995, 1883, 5222, 5223, 5228, 8080,
                         8443, 8883], np.int64)
# the channel traits of C2_FEATURES, in order from "c2_beats_odd_port"
_TRAITS = ("c2_beats_odd_port", "c2_beats_new_dest", "c2_beats_dynamic_dns", "c2_beats_unnamed",
           "c2_beats_unanswered", "c2_beats_program_host", "c2_beats_bot_hello")


def _channel_beats(ev: np.ndarray, ch: np.ndarray, w: np.ndarray, starts: np.ndarray,
                   window_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Beats held so far per (channel, window) where the channel was active: (channel, window,
    beats, the beat's period in seconds, the beats of that connection run or session alone).
    Connections to a channel count one beat each while their intervals stay within
    :data:`BEAT_TOLERANCE` of the channel's median interval (the current run's length); a session
    held on a beat counts the exchanges on that beat it had made by each window's end; the
    sessions of a channel add up (a trojan that reconnects keeps its count)."""
    n = len(starts)
    ts = ev["ts"]
    # connection runs: per channel, sorted by time
    order = np.lexsort((ts, ch))
    c, t = ch[order], ts[order]
    first = np.ones(len(c), bool)
    first[1:] = c[1:] != c[:-1]
    iv = np.diff(t, prepend=t[0])
    iv[first] = np.nan
    gid = np.cumsum(first) - 1
    ng = int(gid[-1]) + 1 if len(gid) else 0
    med = np.full(ng, np.nan)
    ok = ~np.isnan(iv)
    if ok.any():
        # per-channel median interval: sort intervals within channels
        o2 = np.lexsort((iv[ok], gid[ok]))
        gi, vi = gid[ok][o2], iv[ok][o2]
        cnt = np.bincount(gi, minlength=ng)
        start = np.concatenate(([0], np.cumsum(cnt)[:-1]))
        has = cnt > 0
        med[has] = vi[start[has] + (cnt[has] - 1) // 2]
    m = med[gid]
    steady = ok & (m >= BEAT_MIN_S) & (m <= BEAT_MAX_S) & (np.abs(iv - m) <= BEAT_TOLERANCE * np.nan_to_num(m))
    # the run length: steady intervals in a row ending at each connection (reset by any other)
    cs = np.cumsum(steady)
    reset = np.maximum.accumulate(np.where(~steady, cs, 0))
    run = (cs - reset).astype(np.float64)
    out_c, out_w, out_b, out_p, out_o = [c[run > 0]], [w[order][run > 0]], [run[run > 0]], [m[run > 0]], [run[run > 0]]
    # held sessions: exchanges on one beat, accrued by the end of each window they span
    # (the session's opening exchange, a hello or a login, starts the clock and is never a beat
    # itself: a bot's link with its hello and two heartbeats is on its beat)
    on_beat = ((ev["hb_beats"] >= 2) & (ev["hb_beats"] >= HELD_ON_BEAT * (ev["hb_pushes"].astype(np.int64) - 1))
               & (ev["hb_beat_s"] >= BEAT_MIN_S))
    # or exchanges at a slow, steady-ish pace (a status push whose body sometimes lags its tag)
    paced = (ev["hb_pushes"] >= PACED_MIN) & (ev["hb_iv"] >= BEAT_MIN_S) & (ev["hb_cv"] <= PACED_CV)
    beats = np.where(on_beat, ev["hb_beats"], np.where(paced, ev["hb_pushes"], 0)).astype(np.float64)
    beat_s = np.where(on_beat, ev["hb_beat_s"], ev["hb_iv"]).astype(np.float64)
    held = np.flatnonzero((ev["proto"] == 6) & (beats >= 2))
    if len(held) > 1:  # one session at a time: not one opened while another to the channel was held
        o = held[np.lexsort((ts[held], ch[held]))]
        f = np.ones(len(o), bool)
        f[1:] = ch[o][1:] != ch[o][:-1]
        prev_end = np.empty(len(o))
        prev_end[0] = -np.inf
        prev_end[1:] = ev["end"][o][:-1]
        prev_end[f] = -np.inf
        held = np.sort(o[ts[o] >= prev_end])
    if len(held):
        lo = w[held]
        hi = np.clip(np.searchsorted(starts, ev["end"][held], side="right") - 1, lo, n - 1)
        span = np.minimum(hi - lo + 1, n)
        rep = np.repeat(np.arange(len(held)), span)
        k = np.arange(len(rep)) - np.repeat(np.cumsum(span) - span, span) + np.repeat(lo, span)
        i = held[rep]
        acc = np.minimum(beats[i], np.floor(np.maximum(starts[k] + window_s - ts[i], 0.0) / beat_s[i]))
        # the sessions of a channel add up: each session's beats by the window's end, plus those of
        # the channel's sessions that ended before it began (sessions held at once do not add up)
        hc = ch[held]
        t_lo, t_hi = float(ts.min()), float(ev["end"].max())
        scale = t_hi - t_lo + 1.0
        o3 = np.lexsort((ev["end"][held], hc))
        key_end = hc[o3] * scale + (ev["end"][held][o3] - t_lo)
        cum = np.concatenate(([0.0], np.cumsum(beats[held][o3])))
        ch_start = np.searchsorted(key_end, hc * scale, side="left")
        before = np.searchsorted(key_end, hc * scale + (ts[held] - t_lo), side="right")
        done = cum[before] - cum[ch_start]
        out_c.append(hc[rep])
        out_w.append(k)
        out_b.append(acc + done[rep])
        out_p.append(beat_s[i])
        out_o.append(acc)
    return (np.concatenate(out_c), np.concatenate(out_w).astype(np.int64), np.concatenate(out_b),
            np.concatenate(out_p), np.concatenate(out_o))


def _c2_features(X: np.ndarray, col: dict[str, int], d: DeviceEvidence, side: _Side, starts: np.ndarray,
                 window_s: float, names_seen: bool = True) -> None:
    """The :data:`C2_FEATURES` of every window of a device: its TCP channels (external ones, and
    its local sessions: a controller may sit on the site), the beats each held so far, and the
    traits of each (see :data:`C2_FEATURES`). ``side``: its DNS queries as arrays (:class:`_Side`)."""
    def small(e: np.ndarray) -> np.ndarray:  # small messages: not a bulk upload (chunks of megabytes posted one by one)
        return e["payload_out"] <= BULK_EXCHANGE * np.maximum(e["hb_pushes"], 1)

    ev = d.events()
    loc = d.local_events()
    if len(ev):  # not the logins (a brute force's repeated sessions are its own behaviour)
        ev = ev[(ev["proto"] == 6) & ((ev["kind"] & K_EXT) != 0) & ~np.isin(ev["app"], _APP_LOGIN) & small(ev)]
    if len(loc):
        loc = loc[(loc["proto"] == 6) & small(loc)]
    if len(loc):  # (the events are in time order already: the local ones go among them)
        ev = np.concatenate((ev, loc)) if len(ev) else loc
        ev = ev[np.argsort(ev["ts"], kind="stable")]
    if len(ev) < 2 and not (len(ev) and ev["hb_beats"].max() >= 2):
        return
    n = len(starts)
    ts = ev["ts"]
    w = np.clip(np.searchsorted(starts, ts, side="right") - 1, 0, n - 1).astype(np.int64)
    host = host_key(ev["dst_hi"], ev["dst_lo"])
    dport = ev["dport"].astype(np.int64)
    keys, first_i, ch = np.unique(host ^ (dport.astype(np.uint64) * _MIX), return_index=True, return_inverse=True)
    ch = ch.astype(np.int64)
    nc = len(keys)
    cw, ww, cb, _cp, _own = _channel_beats(ev, ch, w, starts, window_s)
    if not len(cw):
        return
    # the traits of each channel (from its first event)
    t_first = ts[first_i]
    # a local destination: no name is looked up for it, and its services use their own ports
    ext = (ev["kind"][first_i] & K_EXT) != 0
    odd = ext & ~np.isin(dport[first_i], _USUAL_PORTS)
    t_dev = min(float(ts[0]), float(starts[0]))
    new_dest = t_first > t_dev + STARTUP_S
    # lookups: when the device asked, and whether the name was in a dynamic-DNS zone
    q_ts, dd_ts = np.sort(side.dns_ts), np.sort(side.dns_ts[side.dns_ddns])

    def asked_before(qt: np.ndarray) -> np.ndarray:
        j = np.searchsorted(qt, t_first, side="right")
        prev = np.where(j > 0, qt[np.maximum(j - 1, 0)], -np.inf) if len(qt) else np.full(nc, -np.inf)
        return t_first - prev <= LOOKUP_S

    opened = ev["opened"][first_i] == 1
    # unanswered: the peer never sent a byte since the channel began in the capture (its SYN: of a
    # session already running, what the peer said before is unknown)
    pay_in = np.bincount(ch, ev["payload_in"].astype(np.float64), minlength=nc)
    unanswered = opened & (pay_in == 0)
    # unnamed: the channel began in the capture with no lookup just before it, and is a series of
    # connections or a session whose peer never answers (one session answered on every beat may
    # have been looked up long before: a device's own cloud, its address cached)
    conns = np.bincount(ch, minlength=nc)
    # (only where lookups can be seen at all: a conn.log carries none, and "no lookup" would then
    # be true of every device's own cloud)
    unnamed = ext & opened & ~asked_before(q_ts) & ((conns >= 2) | unanswered) & names_seen
    ddns = asked_before(dd_ts)
    prog = np.zeros(nc, bool)
    is_prog = ev["app"] == A_PROGRAM
    if is_prog.any():  # the channels to a host that served the device a program (its call-backs)
        prog = np.isin(host[first_i], host[is_prog])
    # a bot's hello: the channel's session began with a Mirai-style binary hello
    hello = np.zeros(nc, bool)
    hello[ch[ev["app"] == A_MIRAI_C2]] = True
    traits = np.stack((odd, new_dest, ddns, unnamed, unanswered, prog, hello), axis=1)
    _channel_suspicion(X, col, traits, cw, ww, cb)


def _channel_suspicion(X: np.ndarray, col: dict[str, int], traits: np.ndarray, cw: np.ndarray, ww: np.ndarray,
                       cb: np.ndarray) -> None:
    """Per window, from each channel's traits (channels × _TRAITS) and its beats so far in each
    window it was active (channel ``cw``, window ``ww``, beats ``cb``): the most beats of any
    channel, of a channel with each trait, the traits of the most suspicious channel that held
    TRAIT_BEATS beats, and the beats of a suspect channel (two traits or a telling one, from its
    SUSPECT_BEATS-th beat)."""
    X[:, col["c2_beats"]] = 0.0
    np.maximum.at(X[:, col["c2_beats"]], ww, cb)
    for j, name in enumerate(_TRAITS):
        sel = traits[cw, j]
        if sel.any():
            np.maximum.at(X[:, col[name]], ww[sel], cb[sel])
    nt = traits[cw].sum(axis=1).astype(np.float64)
    beating = cb >= TRAIT_BEATS
    if beating.any():
        np.maximum.at(X[:, col["c2_beat_traits"]], ww[beating], nt[beating])
    telling = traits[cw][:, [_TRAITS.index(t) for t in TELLING_TRAITS]].any(axis=1)
    sus = ((nt >= SUSPECT_TRAITS) | telling) & (cb >= SUSPECT_BEATS)
    if sus.any():
        np.maximum.at(X[:, col["c2_beats_suspect"]], ww[sus], cb[sus])


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
