"""Packets (with their flow information) → devices and per-device time windows.

A device is a unicast MAC address seen on the captured segment; captures without Ethernet fall
back to IP addresses (local ones, plus up to ``max_external_ip_devices`` others). For each device
the table keeps totals over the whole input and, per window of ``window_s`` seconds aligned to
multiples of the window length, the counters of :data:`iotwatch.records.WINDOW_FIELDS`.

Windows close ``close_lag`` seconds after their end (so a SYN-ACK that arrives just after the
window still counts for the SYN's window), at the latest when a packet four windows later arrives.
A packet older than every open window is counted in the oldest open one (``late_packets``).

Both results are mergeable: :class:`DeviceTotals` add up, and :class:`WindowTable` keeps the
distinct-value sets of its first and last windows so that two halves of a capture, analysed
apart, merge into the windows of the whole (see :func:`merge_windows`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ._jit import allocating, inline_kernel, kernel
from .addrs import LocalNets, addr_class, ip_str, mac_str
from .decode import Packets
from .flows import PacketFlowInfo, _mix
from .records import WINDOW_SCHEMA, DeviceRecord

RING = 4
NEVER = int(np.iinfo(np.int64).max)  # a close time no timestamp reaches
# accumulator columns
(F_PK_OUT, F_PK_IN, F_BY_OUT, F_BY_IN, F_UP, F_DOWN, F_DST_IPS, F_DST_PORTS, F_NEW, F_SYN, F_SYN_ANS,
 F_SYN_REJ, F_RST_IN, F_AUTH, F_DNS, F_SAT, F_MIRAI) = range(17)
NF = 17
# kernel exit status
DONE, CLOSE_DUE, SET_FULL = 0, 1, 2

DEV_DTYPE = np.dtype([
    ("key", np.uint64), ("hi", np.uint64), ("lo", np.uint64),
    ("pk_out", np.uint64), ("pk_in", np.uint64), ("by_out", np.uint64), ("by_in", np.uint64), ("up", np.uint64),
    ("first", np.int64), ("last", np.int64),
    ("kind", np.uint8), ("v6", np.uint8), ("n_ext", np.uint8), ("forwarder", np.uint8),
], align=True)
DIP_DTYPE = np.dtype([("hash", np.uint64), ("hi", np.uint64), ("lo", np.uint64), ("first", np.int64),
                      ("last", np.int64), ("dev", np.int32), ("v6", np.uint8), ("local", np.uint8)], align=True)
KIND_MAC, KIND_IP = 0, 1
# values in the distinct table: a destination address is a 63-bit hash, a (protocol, port) pair
# is itself with the top bit set, so the two kinds never collide
PORT_VALUE_BIT = np.uint64(1 << 63)
IP_VALUE_MASK = np.uint64((1 << 63) - 1)
MAX_EXT_IPS = 8  # a MAC that sends from more non-local addresses than this forwards traffic (a router)
# device-table counters in st
ST_DEVS, ST_UNTRACKED, ST_EXT_DEVS, ST_LATE, ST_SET_USED, ST_SAT, ST_DIPS, ST_CLOSED_UPTO = range(8)


@dataclass(slots=True)
class DeviceSettings:
    window_s: float = 60.0
    close_lag_s: float = 10.0
    max_devices: int = 1 << 14
    max_external_ip_devices: int = 4096
    distinct_max: int = 1 << 20  # entries in the distinct-destination table before it saturates (21 MB)
    device_ips_max: int = 1 << 16


@kernel
def _dev_lookup(devs, index, st, key, kind, v6, hi, lo, ts, max_ext, external):  # type: ignore[no-untyped-def]
    mask = index.shape[0] - 1
    h = _mix(np.uint64(0x51ED), key)
    s = np.int64(h & np.uint64(mask))
    while index[s] >= 0:
        j = index[s]
        if devs[j].key == key:
            return j
        s = (s + 1) & mask
    if st[0] >= devs.shape[0] or (external and st[2] >= max_ext):
        st[1] += 1
        return -1
    j = st[0]
    st[0] += 1
    if external:
        st[2] += 1
    index[s] = j
    d = devs[j]
    d.key = key
    d.kind = kind
    d.v6 = v6
    d.hi = hi
    d.lo = lo
    d.first = ts
    d.last = ts
    return j


@kernel
def _set_add(keys, vals, devs_of, slots_of, st, slot, dev, val):  # type: ignore[no-untyped-def]
    """Add (slot, dev, val) to the distinct table. 1 if new, 0 if present, -1 if saturated."""
    mask = keys.shape[0] - 1
    k = _mix(_mix(np.uint64(slot + 1), np.uint64(dev)), val) | np.uint64(1)
    s = np.int64(k & np.uint64(mask))
    while keys[s] != 0:
        if keys[s] == k and devs_of[s] == dev and vals[s] == val and slots_of[s] == slot:
            return 0
        s = (s + 1) & mask
    if st[4] * 2 >= keys.shape[0]:
        return -1
    keys[s] = k
    vals[s] = val
    devs_of[s] = dev
    slots_of[s] = slot
    st[4] += 1
    return 1


@kernel
def _dip_add(dips, dindex, st, dev, v6, hi, lo, local, ts):  # type: ignore[no-untyped-def]
    mask = dindex.shape[0] - 1
    h = _mix(_mix(_mix(np.uint64(dev + 7), hi), lo), np.uint64(v6))
    s = np.int64(h & np.uint64(mask))
    while dindex[s] >= 0:
        j = dindex[s]
        e = dips[j]
        if e.hash == h and e.dev == dev and e.hi == hi and e.lo == lo:
            e.last = ts
            return 0
        s = (s + 1) & mask
    if st[6] >= dips.shape[0]:
        return -1
    j = st[6]
    st[6] += 1
    dindex[s] = j
    e = dips[j]
    e.hash = h
    e.dev = dev
    e.hi = hi
    e.lo = lo
    e.v6 = v6
    e.local = local
    e.first = ts
    e.last = ts
    return 1


@inline_kernel
def _seen(d, ts):  # type: ignore[no-untyped-def]
    if ts < d.first:
        d.first = ts
    if ts > d.last:
        d.last = ts


@inline_kernel
def _count_distinct(a, column, st, added):  # type: ignore[no-untyped-def]
    """Count a value the distinct table took as new; flag the window when the table was full."""
    if added == 1:
        a[column] += 1
    elif added < 0:
        a[F_SAT] = 1
        st[ST_SAT] += 1


@kernel
def update_devices(start, ts_ns, wirelen, l3, err, src_mac, dst_mac, src_hi, src_lo, dst_hi, dst_lo,  # type: ignore[no-untyped-def]
                   proto, dport, tcp_flags, tcp_seq, info, f_new, f_ans, f_kind,
                   devs, dindex, st, acc, slot_win, skeys, svals, sdevs, sslots, dips, dipindex,
                   net_hi, net_lo, mask_hi, mask_lo, window_ns, close_at, max_ext, can_grow):
    n = ts_ns.shape[0]
    for i in range(start, n):
        ts = ts_ns[i]
        if ts >= close_at:
            return i, CLOSE_DUE
        if can_grow and st[4] * 2 + 2 >= skeys.shape[0]:
            return i, SET_FULL
        win = ts // window_ns
        if win <= st[7]:
            win = st[7] + 1
            st[3] += 1
        slot = win % RING
        if slot_win[slot] != win:
            if slot_win[slot] >= 0:
                return i, CLOSE_DUE
            slot_win[slot] = win
        ip = l3[i] == 4 or l3[i] == 6
        v6 = l3[i] == 6
        scls = 2
        dcls = 2
        if ip and err[i] != 2:
            scls = addr_class(src_hi[i], src_lo[i], net_hi, net_lo, mask_hi, mask_lo)
            dcls = addr_class(dst_hi[i], dst_lo[i], net_hi, net_lo, mask_hi, mask_lo)
        elif l3[i] == 1 and src_lo[i] != 0:
            scls = addr_class(src_hi[i], src_lo[i], net_hi, net_lo, mask_hi, mask_lo)
        ds = -1
        dd = -1
        sm = src_mac[i]
        dm = dst_mac[i]
        if (sm >> np.uint64(48)) == 0:  # Ethernet: devices are unicast MACs
            if ((sm >> np.uint64(40)) & np.uint64(1)) == 0:
                ds = _dev_lookup(devs, dindex, st, sm, 0, 0, np.uint64(0), np.uint64(0), ts, max_ext, False)
            if ((dm >> np.uint64(40)) & np.uint64(1)) == 0:
                dd = _dev_lookup(devs, dindex, st, dm, 0, 0, np.uint64(0), np.uint64(0), ts, max_ext, False)
        elif ip and err[i] != 2:
            if scls != 2:
                k = _mix(_mix(np.uint64(0xA11), src_hi[i]), src_lo[i])
                ds = _dev_lookup(devs, dindex, st, k, 1, v6, src_hi[i], src_lo[i], ts, max_ext, scls == 0)
            if dcls != 2:
                k = _mix(_mix(np.uint64(0xA11), dst_hi[i]), dst_lo[i])
                dd = _dev_lookup(devs, dindex, st, k, 1, v6, dst_hi[i], dst_lo[i], ts, max_ext, dcls == 0)
        wl = wirelen[i]
        if ds >= 0:
            d = devs[ds]
            d.pk_out += 1
            d.by_out += wl
            _seen(d, ts)
            a = acc[ds, slot]
            a[F_PK_OUT] += 1
            a[F_BY_OUT] += wl
            if ip and dcls == 0:
                d.up += wl
                a[F_UP] += wl
            if (ip or l3[i] == 1) and scls != 2 and d.kind == 0:
                if scls == 1 or (d.forwarder == 0 and d.n_ext < MAX_EXT_IPS):
                    r = _dip_add(dips, dipindex, st, ds, v6, src_hi[i], src_lo[i], scls == 1, ts)
                    if r == 1 and scls == 0:
                        d.n_ext += 1
                elif scls == 0 and d.forwarder == 0:
                    d.forwarder = 1
            if ip and err[i] != 2:
                if f_new[i] & 1:
                    a[F_NEW] += 1
                    if proto[i] == 6:
                        if (tcp_flags[i] & 0x12) == 0x02:
                            a[F_SYN] += 1
                        dp = dport[i]
                        if dp == 23 or dp == 2323 or dp == 22:
                            a[F_AUTH] += 1
                if info[i] & 1:
                    a[F_DNS] += 1
                if (proto[i] == 6 and not v6 and (tcp_flags[i] & 0x12) == 0x02
                        and np.uint64(tcp_seq[i]) == (dst_lo[i] & np.uint64(0xFFFFFFFF))):
                    a[F_MIRAI] += 1
                if dcls != 2:
                    _count_distinct(a, F_DST_IPS, st, _set_add(
                        skeys, svals, sdevs, sslots, st, slot, ds, _mix(_mix(np.uint64(1), dst_hi[i]), dst_lo[i]) & IP_VALUE_MASK))
                    if proto[i] == 6 or proto[i] == 17:
                        _count_distinct(a, F_DST_PORTS, st, _set_add(
                            skeys, svals, sdevs, sslots, st, slot, ds,
                            np.uint64((np.int64(proto[i]) << 16) | np.int64(dport[i])) | PORT_VALUE_BIT))
        if dd >= 0:
            d = devs[dd]
            d.pk_in += 1
            d.by_in += wl
            _seen(d, ts)
            a = acc[dd, slot]
            a[F_PK_IN] += 1
            a[F_BY_IN] += wl
            if ip and scls == 0:
                a[F_DOWN] += wl
            if proto[i] == 6 and (tcp_flags[i] & 4):
                a[F_RST_IN] += 1
            aw = f_ans[i]
            if aw >= 0 and slot_win[aw % RING] == aw:
                if f_kind[i] == 1:
                    acc[dd, aw % RING, F_SYN_ANS] += 1
                else:
                    acc[dd, aw % RING, F_SYN_REJ] += 1
    return n, DONE


@allocating
def _clear_slot(skeys, svals, sdevs, sslots, st, slot, out_dev, out_val):  # type: ignore[no-untyped-def]
    """Remove a slot's entries from the distinct table (rehashing the rest); the removed
    (dev, value) pairs go to out_dev/out_val. Returns how many were removed."""
    cap = skeys.shape[0]
    keep_k = np.empty(st[4], np.uint64)
    keep_v = np.empty(st[4], np.uint64)
    keep_d = np.empty(st[4], np.int32)
    keep_s = np.empty(st[4], np.uint8)
    nk = 0
    nr = 0
    for s in range(cap):
        if skeys[s] == 0:
            continue
        if sslots[s] == slot:
            if nr < out_dev.shape[0]:
                out_dev[nr] = sdevs[s]
                out_val[nr] = svals[s]
            nr += 1
        else:
            keep_k[nk] = skeys[s]
            keep_v[nk] = svals[s]
            keep_d[nk] = sdevs[s]
            keep_s[nk] = sslots[s]
            nk += 1
        skeys[s] = 0
    mask = cap - 1
    for q in range(nk):
        s = np.int64(keep_k[q] & np.uint64(mask))
        while skeys[s] != 0:
            s = (s + 1) & mask
        skeys[s] = keep_k[q]
        svals[s] = keep_v[q]
        sdevs[s] = keep_d[q]
        sslots[s] = keep_s[q]
    st[4] = nk
    return nr


@dataclass(slots=True)
class EdgeSets:
    """Distinct-destination sets of one window, kept so that partial results merge exactly."""

    ips: dict[str, np.ndarray] = field(default_factory=dict)  # device → value hashes
    ports: dict[str, np.ndarray] = field(default_factory=dict)


class DeviceTable:
    """Live device and window accounting. Feed it with :meth:`update`; it yields closed windows."""

    def __init__(self, settings: DeviceSettings | None = None, local_nets: LocalNets | None = None) -> None:
        s = self.settings = settings or DeviceSettings()
        self.nets = local_nets or LocalNets()
        self.devs = np.zeros(s.max_devices, DEV_DTYPE)
        size = 1
        while size < 2 * s.max_devices:
            size *= 2
        self.dindex = np.full(size, -1, np.int32)
        self.st = np.zeros(8, np.int64)
        self.st[ST_CLOSED_UPTO] = -(1 << 62)
        self.acc = np.zeros((s.max_devices, RING, NF), np.uint64)
        self.slot_win = np.full(RING, -1, np.int64)
        self._alloc_set(1 << 16)
        self.dips = np.zeros(s.device_ips_max, DIP_DTYPE)
        dsize = 1
        while dsize < 2 * s.device_ips_max:
            dsize *= 2
        self.dipindex = np.full(dsize, -1, np.int32)
        self.window_ns = int(s.window_s * 1e9)
        self.lag_ns = int(min(s.close_lag_s, s.window_s) * 1e9)
        self.first_window: int | None = None
        self.edges: dict[int, EdgeSets] = {}  # window index → sets (first and last windows only)
        #: keep the sets of every window, not only the first and last (a part of a split run,
        #: iotwatch.parts: any of its windows may be shared with another part)
        self.keep_all_sets = False
        self.windows_closed = 0
        self._pending: list[tuple[list[str], int, float, np.ndarray]] = []
        self._pending_rows = 0

    def _alloc_set(self, size: int) -> None:
        self.skeys = np.zeros(size, np.uint64)
        self.svals = np.zeros(size, np.uint64)
        self.sdevs = np.zeros(size, np.int32)
        self.sslots = np.zeros(size, np.uint8)

    def _grow_set(self) -> bool:
        size = self.skeys.shape[0]
        if size * 2 > self.settings.distinct_max:
            return False
        old = (self.skeys, self.svals, self.sdevs, self.sslots)
        self._alloc_set(size * 2)
        rehash(old, (self.skeys, self.svals, self.sdevs, self.sslots))
        return True

    def _close_at(self) -> int:
        open_w = self.slot_win[self.slot_win >= 0]
        if not len(open_w):
            return NEVER
        return int(open_w.min() + 1) * self.window_ns + self.lag_ns

    def update(self, pk: Packets, ts_ns: np.ndarray, wirelen: np.ndarray, fi: PacketFlowInfo) -> Iterator[pa.Table]:
        n = len(ts_ns)
        if self.first_window is None and n:
            self.first_window = int(ts_ns[0]) // self.window_ns
        i = 0
        while i < n:
            i, status = update_devices(
                i, ts_ns, wirelen, pk.l3, pk.err, pk.src_mac, pk.dst_mac, pk.src_hi, pk.src_lo, pk.dst_hi,
                pk.dst_lo, pk.proto, pk.dport, pk.tcp_flags, pk.tcp_seq, pk.info, fi.new, fi.answered_window,
                fi.answer_kind, self.devs, self.dindex, self.st, self.acc, self.slot_win, self.skeys,
                self.svals, self.sdevs, self.sslots, self.dips, self.dipindex, *self.nets.arrays(),
                self.window_ns, self._close_at(), self.settings.max_external_ip_devices,
                self.skeys.shape[0] * 2 <= self.settings.distinct_max)
            if status == SET_FULL:
                self._grow_set()
            elif status == CLOSE_DUE:
                ts = int(ts_ns[i])
                win = ts // self.window_ns
                open_w = sorted(int(w) for w in self.slot_win[self.slot_win >= 0])
                due = [w for w in open_w if (w + 1) * self.window_ns + self.lag_ns <= ts or w <= win - RING]
                if not due and open_w:  # never stall: the oldest window goes
                    due = open_w[:1]
                for w in due:
                    self._close(w)
        if self._pending_rows >= 4096:
            yield self._take_pending()

    def _take_pending(self) -> pa.Table:
        t = pa.concat_tables([window_rows(*p) for p in self._pending]) if len(self._pending) > 1 else window_rows(*self._pending[0])
        self._pending.clear()
        self._pending_rows = 0
        return t

    def drain(self) -> Iterator[pa.Table]:
        """Hand over the windows closed so far (live capture calls this on a timer)."""
        if self._pending:
            yield self._take_pending()

    def _close(self, w: int, keep_sets: bool = False) -> None:
        slot = w % RING
        used = int(self.st[ST_DEVS])
        a = self.acc[:used, slot, :]
        active = np.flatnonzero((a[:, F_PK_OUT] + a[:, F_PK_IN]) > 0)
        keep = keep_sets or self.keep_all_sets or w == self.first_window
        cap = int(self.st[ST_SET_USED]) if keep else 0
        out_dev = np.empty(cap, np.int32)
        out_val = np.empty(cap, np.uint64)
        nr = _clear_slot(self.skeys, self.svals, self.sdevs, self.sslots, self.st, slot, out_dev, out_val)
        rows = a[active].copy()
        names = self.device_names(active)
        if keep:
            m = min(nr, cap)
            self.edges[w] = _edge_sets(out_dev[:m], out_val[:m], self.device_names)
        self.acc[:used, slot, :] = 0
        self.slot_win[slot] = -1
        self.st[ST_CLOSED_UPTO] = max(int(self.st[ST_CLOSED_UPTO]), w)
        self.windows_closed += 1
        if len(names):
            self._pending.append((names, w, self.settings.window_s, rows))
            self._pending_rows += len(names)

    def close_before(self, now_ns: int) -> None:
        """Close the windows due by ``now_ns`` (their end plus the close lag) with no packet: a live
        capture's clock moves on when the network is quiet. The rows wait for :meth:`drain`."""
        for w in sorted(int(x) for x in self.slot_win[self.slot_win >= 0]):
            if (w + 1) * self.window_ns + self.lag_ns <= now_ns:
                self._close(w)

    def flush(self) -> Iterator[pa.Table]:
        """Close every open window (end of input); their distinct sets are kept for merging."""
        for w in sorted(int(x) for x in self.slot_win[self.slot_win >= 0]):
            self._close(w, keep_sets=True)
        yield from self.drain()

    # results ----------------------------------------------------------------------------
    def device_names(self, idx: np.ndarray) -> list[str]:
        d = self.devs[idx]
        return [mac_str(int(r["key"])) if r["kind"] == KIND_MAC else ip_str(bool(r["v6"]), int(r["hi"]), int(r["lo"]))
                for r in d]

    def totals(self) -> dict[str, DeviceRecord]:
        used = int(self.st[ST_DEVS])
        nd = int(self.st[ST_DIPS])
        dips = self.dips[:nd]
        by_dev: dict[int, list[tuple[int, str, bool]]] = {}
        for e in dips:
            by_dev.setdefault(int(e["dev"]), []).append(
                (int(e["first"]), ip_str(bool(e["v6"]), int(e["hi"]), int(e["lo"])), bool(e["local"])))
        out: dict[str, DeviceRecord] = {}
        for j in range(used):
            r = self.devs[j]
            if r["kind"] == KIND_MAC:
                mac: str | None = mac_str(int(r["key"]))
                entries = sorted(by_dev.get(j, []))
                forwarder = bool(r["forwarder"])
                ips = [ip for _, ip, local in entries if local or not forwarder]
            else:
                mac = None
                ips = [ip_str(bool(r["v6"]), int(r["hi"]), int(r["lo"]))]
            rec = DeviceRecord(
                mac=mac, ips=ips, packets_out=int(r["pk_out"]), packets_in=int(r["pk_in"]),
                bytes_out=int(r["by_out"]), bytes_in=int(r["by_in"]), upload_bytes=int(r["up"]),
                first_seen=int(r["first"]) / 1e9, last_seen=int(r["last"]) / 1e9)
            out[rec.key] = rec
        return out

    def release(self) -> None:
        """Give the big tables' memory back (after :meth:`flush` and :meth:`totals`)."""
        self.acc = np.zeros((0, RING, NF), np.uint64)
        self._alloc_set(0)
        self.dips = np.zeros(0, DIP_DTYPE)
        self.dipindex = np.zeros(0, np.int32)

    @property
    def untracked(self) -> int:
        return int(self.st[ST_UNTRACKED])

    @property
    def late_packets(self) -> int:
        return int(self.st[ST_LATE])


@kernel
def rehash_slots(k0, k1, slot):  # type: ignore[no-untyped-def]
    """Place the non-zero keys of the open-addressing table ``k0`` into the larger, empty ``k1``
    (linear probing on the key's low bits); ``slot[q]``: where key ``q`` went (-1 for empty)."""
    mask = k1.shape[0] - 1
    for q in range(k0.shape[0]):
        slot[q] = -1
        if k0[q] == 0:
            continue
        s = np.int64(k0[q] & np.uint64(mask))
        while k1[s] != 0:
            s = (s + 1) & mask
        k1[s] = k0[q]
        slot[q] = s


def rehash(old: tuple[np.ndarray, ...], new: tuple[np.ndarray, ...]) -> None:
    """Move a table of parallel arrays (keys first) into a larger empty one."""
    slot = np.empty(len(old[0]), np.int64)
    rehash_slots(old[0], new[0], slot)
    used = slot >= 0
    for a, b in zip(old[1:], new[1:], strict=True):
        b[slot[used]] = a[used]


def _edge_sets(devs: np.ndarray, vals: np.ndarray, names_of) -> EdgeSets:  # type: ignore[no-untyped-def]
    e = EdgeSets()
    if not len(devs):
        return e
    is_port = (vals & PORT_VALUE_BIT) != 0
    uniq = np.unique(devs)
    names = dict(zip(uniq.tolist(), names_of(uniq), strict=True))
    for dv in uniq:
        m = devs == dv
        e.ips[names[int(dv)]] = np.sort(vals[m & ~is_port])
        e.ports[names[int(dv)]] = np.sort(vals[m & is_port])
    return e


def window_rows(names: list[str], w: int, window_s: float, a: np.ndarray) -> pa.Table:
    """Build the public window rows from accumulator rows of one window."""
    syn = a[:, F_SYN]
    ans = np.minimum(a[:, F_SYN_ANS], syn)
    rej = np.minimum(a[:, F_SYN_REJ], syn - ans)
    up = a[:, F_UP]
    total_up = float(up.sum())
    cols: dict[str, object] = {
        "device": pa.array(names, pa.string()),
        "window_start": np.full(len(names), w * window_s, np.float64),
        "window_s": np.full(len(names), window_s, np.float64),
        "packets_out": a[:, F_PK_OUT], "packets_in": a[:, F_PK_IN],
        "bytes_out": a[:, F_BY_OUT], "bytes_in": a[:, F_BY_IN],
        "upload_bytes": up, "download_bytes": a[:, F_DOWN],
        "dst_ips": a[:, F_DST_IPS], "dst_ports": a[:, F_DST_PORTS],
        "new_flows": a[:, F_NEW], "syn_flows": syn, "syn_answered": ans, "syn_rejected": rej,
        "syn_unanswered": syn - ans - rej,
        "failed_handshake_ratio": np.where(syn > 0, (syn - ans) / np.maximum(syn, 1), 0.0),
        "rst_in": a[:, F_RST_IN], "auth_attempts": a[:, F_AUTH], "dns_queries": a[:, F_DNS],
        "upload_share": up / total_up if total_up > 0 else np.zeros(len(names)),
        "distinct_saturated": a[:, F_SAT] > 0,
        "mirai_syns": a[:, F_MIRAI],
    }
    return pa.Table.from_pydict(cols, schema=WINDOW_SCHEMA)


_ADDITIVE = ("packets_out", "packets_in", "bytes_out", "bytes_in", "upload_bytes", "download_bytes", "new_flows",
             "syn_flows", "syn_answered", "syn_rejected", "rst_in", "auth_attempts", "dns_queries", "mirai_syns")


def merge_windows(a: pa.Table, a_edges: dict[int, EdgeSets], b: pa.Table, b_edges: dict[int, EdgeSets],
                  window_s: float) -> tuple[pa.Table, dict[int, EdgeSets]]:
    """Merge the window tables of two partial runs (e.g. two halves of an archive).

    Rows of the same device and window add up; distinct counts of windows both runs saw are
    recounted from the kept sets; derived columns (unanswered SYNs, ratios, upload shares) are
    recomputed. Returns the merged table and the edge sets of the merged run.
    """
    both = pa.concat_tables([a, b]).to_pydict()
    merged: dict[tuple[str, float], dict[str, object]] = {}
    for row in (dict(zip(both, vals, strict=True)) for vals in zip(*both.values(), strict=True)):
        key = (str(row["device"]), float(row["window_start"]))  # type: ignore[arg-type]
        have = merged.get(key)
        if have is None:
            merged[key] = row
            continue
        for k in _ADDITIVE:
            have[k] = int(have[k]) + int(row[k])  # type: ignore[call-overload]
        have["distinct_saturated"] = bool(have["distinct_saturated"]) or bool(row["distinct_saturated"])
        w = round(key[1] / window_s)
        ea, eb = a_edges.get(w), b_edges.get(w)
        if ea is None or eb is None:
            raise ValueError(f"window {key[1]} of {key[0]} is in both runs but its sets were not kept")
        for col, attr in (("dst_ips", "ips"), ("dst_ports", "ports")):
            sa = getattr(ea, attr).get(key[0], np.empty(0, np.uint64))
            sb = getattr(eb, attr).get(key[0], np.empty(0, np.uint64))
            have[col] = len(np.union1d(sa, sb))
    rows = sorted(merged.values(), key=lambda r: (float(r["window_start"]), str(r["device"])))  # type: ignore[arg-type]
    totals: dict[float, int] = {}
    for r in rows:
        totals[float(r["window_start"])] = totals.get(float(r["window_start"]), 0) + int(r["upload_bytes"])  # type: ignore[arg-type,call-overload]
    for r in rows:
        syn, ans, rej = int(r["syn_flows"]), int(r["syn_answered"]), int(r["syn_rejected"])  # type: ignore[call-overload]
        ans = min(ans, syn)
        rej = min(rej, syn - ans)
        r["syn_answered"], r["syn_rejected"], r["syn_unanswered"] = ans, rej, syn - ans - rej
        r["failed_handshake_ratio"] = (syn - ans) / syn if syn else 0.0
        t = totals[float(r["window_start"])]  # type: ignore[arg-type]
        r["upload_share"] = int(r["upload_bytes"]) / t if t else 0.0  # type: ignore[call-overload]
    table = pa.Table.from_pylist(rows, schema=WINDOW_SCHEMA)
    edges: dict[int, EdgeSets] = {}
    for src in (a_edges, b_edges):
        for w, e in src.items():
            tgt = edges.setdefault(w, EdgeSets())
            for attr in ("ips", "ports"):
                for dev, vals in getattr(e, attr).items():
                    cur = getattr(tgt, attr).get(dev)
                    getattr(tgt, attr)[dev] = vals if cur is None else np.union1d(cur, vals)
    return table, edges
