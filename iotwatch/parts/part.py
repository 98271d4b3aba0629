"""One part of a split run: the normal pipeline over the packets this part owns.

A flow's packets must meet the flow table together, or the split run would cut flows that the
single run keeps whole. So packets are shared out by **chains**: the packets of one 5-tuple whose
gaps are at most the idle timeout (exactly what the flow table keeps in one flow, or in one
flow after another when the active timeout cuts it). A chain belongs to the part where its first
packet lies. A part's task

* reads a **look-back** first, the idle timeout of traffic before its start, only to learn which
  5-tuples already have a chain going (those packets are the earlier part's, and skipped here);
* runs the pipeline over its own range, minus those foreign chains' packets (packets outside
  any flow, ARP and the like, belong to the range they lie in);
* reads on past its range (the **tail**), feeding only its own chains' packets, until every one of
  them has gone idle: then its flows are whole, ended at the same sweep as in the single run.

Flow sweeps run on a fixed grid of capture time (``FlowTable.sweep_after``): a part sweeps when
the single run would, at the first IP packet past each multiple of the sweep interval, whoever
owns that packet. The part hands back raw flow records (with the frame numbers the single run
gives), window rows with their distinct-destination sets, device partial totals, counters, and
every packet the side channel could set aside (its kind, device and batch of the single run):
:mod:`iotwatch.parts.merge` joins the parts into the single run's results.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .._jit import kernel
from ..addrs import LocalNets
from ..capture.batch import PacketBatch
from ..decode import Packets, decode
from ..devices import EdgeSets, rehash
from ..flows import FLOW_DTYPE, PacketFlowInfo, _mix, flow_key, frag_recall
from ..pipeline import Pipeline
from ..records import Stats
from ..settings import Settings
from ..sidecar import _kind_of, dns_keys
from .plan import FileIndex, Plan, open_at

LOOKBACK, OWN, TAIL = 0, 1, 2
#: pieces fed to the pipeline get a made-up file index from here on; their flows' first frames
#: are put back to the real ones afterwards
_FAKE_FILE = 1 << 20
_FRAME_MASK = (1 << 40) - 1
_NO_MAC = np.uint64(1) << np.uint64(63)

CAND_DTYPE = np.dtype([
    ("pos", np.int64),  # file index << 40 | frame: the packet's place in the input
    ("batch", np.int64),  # the single run's batch (Plan.batch_ids)
    ("ts", np.int64), ("who", np.uint64), ("kind", np.int8), ("l3", np.uint8), ("direction", np.uint8),
    ("flow_id", np.uint64),  # this part's flow id (merge renumbers)
    ("src_mac", np.uint64), ("dst_mac", np.uint64), ("src_hi", np.uint64), ("src_lo", np.uint64),
    ("dst_hi", np.uint64), ("dst_lo", np.uint64),
    ("data_off", np.int64), ("data_len", np.int64),  # the bytes from the IP/ARP header on, in PartResult.data
    ("name", np.uint64),  # a DNS query's question (sidecar.dns_question_key; 0 otherwise)
])
DEV_PART_DTYPE = np.dtype([
    ("kind", np.uint8), ("pk_out", np.uint64), ("pk_in", np.uint64), ("by_out", np.uint64), ("by_in", np.uint64),
    ("up", np.uint64), ("first", np.int64), ("last", np.int64), ("forwarder", np.uint8),
])
DIP_PART_DTYPE = np.dtype([("dev", np.int32), ("first", np.int64), ("last", np.int64), ("local", np.uint8)])


@kernel
def own_packets(l3, err, proto, src_hi, src_lo, dst_hi, dst_lo, sport, dport, frag, frag_id, ts_ns,  # type: ignore[no-untyped-def]
                region, idle_ns, sweep_ns, keys, lasts, owned, st, frag_keys, frag_ports, keep, trig):
    """Decide, packet by packet, which ones this part feeds (``keep``) and where the single run
    sweeps its flow table (``trig``: indices). ``st`` = [slots used, newest IP timestamp, newest
    own chain packet, stop index (-1)]. Returns (triggers, status: 0 done, 1 table half full at
    the returned index... see ``st[4]``)."""
    n = ts_ns.shape[0]
    mask = keys.shape[0] - 1
    fmask = frag_keys.shape[0] - 1
    nt = 0
    for i in range(n):
        keep[i] = 0
        t = ts_ns[i]
        ip = (l3[i] == 4 or l3[i] == 6) and err[i] != 1 and err[i] != 2
        if not ip:
            if region == OWN:
                keep[i] = 1
            continue
        if region != LOOKBACK:
            nxt = (st[1] // sweep_ns + 1) * sweep_ns
            if t >= nxt:
                trig[nt] = i
                nt += 1
                if region == TAIL and t - st[2] > idle_ns:
                    st[3] = i  # every own chain is idle: this sweep ends them, and the part
                    return nt
        if t > st[1]:
            st[1] = t
        if st[0] * 2 >= keys.shape[0]:
            st[4] = i  # the key table must grow first (the caller grows it and calls again)
            return nt
        pr = np.int64(proto[i])
        v6 = l3[i] == 6
        shi, slo, dhi, dlo = src_hi[i], src_lo[i], dst_hi[i], dst_lo[i]
        sp = np.int64(sport[i])
        dp = np.int64(dport[i])
        if not (pr == 6 or pr == 17 or pr == 132 or pr == 136):
            sp = 0
            dp = 0
        if frag[i] != 0:  # the flow table's own reassembly of ports, on its own small table
            fh = _mix(_mix(_mix(_mix(_mix(np.uint64(0 if v6 else pr), shi), slo), dhi), dlo), np.uint64(frag_id[i]))
            fs = np.int64(fh & np.uint64(fmask))
            if frag[i] == 1:
                frag_keys[fs] = fh
                frag_ports[fs] = (pr << 32) | (sp << 16) | dp
            elif frag_keys[fs] == fh and frag_ports[fs] >= 0:
                pr, sp, dp = frag_recall(frag_ports[fs])
            else:  # a later fragment before its first: outside any chain, kept where it lies
                if region == OWN:
                    keep[i] = 1
                continue
        h = flow_key(pr, v6, shi, slo, dhi, dlo, sp, dp)[7] | np.uint64(1)
        s = np.int64(h & np.uint64(mask))
        while keys[s] != 0 and keys[s] != h:
            s = (s + 1) & mask
        known = keys[s] == h
        if region == LOOKBACK:
            if not known:
                keys[s] = h
                st[0] += 1
            lasts[s] = t
            owned[s] = 0
        elif region == OWN:
            if known and t - lasts[s] <= idle_ns:
                keep[i] = owned[s]
            else:  # a chain begins here: this part's
                if not known:
                    keys[s] = h
                    st[0] += 1
                owned[s] = 1
                keep[i] = 1
            lasts[s] = t
        else:
            if known:
                if owned[s] == 1 and t - lasts[s] <= idle_ns:
                    keep[i] = 1
                else:
                    owned[s] = 0  # the chain ended: what follows is a later part's
                lasts[s] = t
        if keep[i] == 1 and t > st[2]:
            st[2] = t
    return nt


@kernel
def rare_kinds(l3, err, proto, sport, dport, info, f_new, src_mac, src_hi, src_lo, out_k, out_who):  # type: ignore[no-untyped-def]
    """The side channel's kind of every packet (0: none) and its device key, as ``select_rare``
    computes them before any budget."""
    no_mac = np.uint64(1) << np.uint64(63)
    for i in range(l3.shape[0]):
        out_k[i] = _kind_of(l3[i], err[i], proto[i], sport[i], dport[i], info[i], f_new[i])
        sm = src_mac[i]
        out_who[i] = sm if sm < no_mac else (src_lo[i] ^ (src_hi[i] * np.uint64(0x9E3779B97F4A7C15))) | no_mac


class _Collector:
    """Rides the part's pipeline as its only analyser: keeps the raw flow records and windows."""

    wants_rare = False

    def __init__(self) -> None:
        self.flows: list[np.ndarray] = []
        self.windows: list[pa.Table] = []

    def bind(self, window_s: float, local_nets: LocalNets) -> None:
        pass

    def on_flow_records(self, rows: np.ndarray) -> None:
        self.flows.append(rows.copy())

    def on_rare(self, frames: list) -> None:  # type: ignore[type-arg]
        pass

    def on_windows(self, table: pa.Table) -> None:
        self.windows.append(table)

    def prepare(self) -> float:
        return 0.0

    def conclude(self, devices: dict, files: list[str]) -> list:  # type: ignore[type-arg]
        return []


class _Candidates:
    """Stands in for the side channel: every packet of a rare kind, with its bytes, no budget
    (the budgets are applied over all parts at once by the merge)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.frames = np.zeros(0, np.int64)  # real positions of the piece being fed (set by the runner)
        self.rows: list[np.ndarray] = []
        self.data: list[bytes] = []
        self.size = 0
        self._k = np.zeros(0, np.int8)
        self._who = np.zeros(0, np.uint64)

    def pick(self, batch: PacketBatch, pk: Packets, fi: PacketFlowInfo) -> list:  # type: ignore[type-arg]
        n = len(batch)
        if len(self._k) < n:
            self._k = np.zeros(n, np.int8)
            self._who = np.zeros(n, np.uint64)
        k, who = self._k[:n], self._who[:n]
        rare_kinds(pk.l3, pk.err, pk.proto, pk.sport, pk.dport, pk.info, fi.new, pk.src_mac, pk.src_hi, pk.src_lo, k, who)
        idx = np.flatnonzero(k)
        if not len(idx):
            return []
        rec = pk.rec[idx]
        c = np.zeros(len(idx), CAND_DTYPE)
        pos = self.frames[idx]
        c["pos"] = pos
        c["batch"] = self.plan.batch_ids(pos >> 40, pos & _FRAME_MASK)
        c["ts"] = batch.ts_ns[idx]
        c["who"] = who[idx]
        c["kind"] = k[idx]
        names = np.zeros(len(idx), np.uint64)
        dns_keys(c["kind"], idx, batch.buf, batch.off, pk.l3_off, batch.caplen, pk.ip_len, pk.payload, names)
        c["name"] = names
        c["flow_id"] = fi.flow_id[idx]
        c["direction"] = fi.direction[idx]
        for name in ("l3", "src_mac", "dst_mac", "src_hi", "src_lo", "dst_hi", "dst_lo"):
            c[name] = rec[name]
        starts = batch.off[idx] + rec["l3_off"]
        ends = batch.off[idx] + batch.caplen[idx]
        lens = np.maximum(ends - starts, 0)
        c["data_len"] = lens
        c["data_off"] = self.size + np.concatenate([[0], np.cumsum(lens)[:-1]])
        buf = batch.buf
        self.data.append(b"".join(buf[a:b].tobytes() for a, b in zip(starts.tolist(), ends.tolist(), strict=True)))
        self.size += int(lens.sum())
        self.rows.append(c)
        return []


@dataclass(slots=True)
class PartResult:
    """What one part hands back to the merge."""

    number: int
    flows: np.ndarray  # FLOW_DTYPE, first frames real, flow ids this part's own
    windows: pa.Table
    edges: dict[int, EdgeSets]
    devices: list[str]  # device names, in the order of dev_rows
    dev_rows: np.ndarray  # DEV_PART_DTYPE
    dips: np.ndarray  # DIP_PART_DTYPE: a device's source addresses (index into devices)
    dip_ips: list[str]
    stats: Stats
    cands: np.ndarray  # CAND_DTYPE
    data: bytes
    packets_read: int = 0  # packets read, look-back and tail included (the cost of splitting)
    lookback_packets: int = 0
    tail_packets: int = 0
    extra: dict[str, float] = field(default_factory=dict)


def _segments(plan: Plan, number: int, idle_ns: int) -> Iterator[tuple[FileIndex, int, int, int]]:
    """(file, first frame, end frame, region) in input order: look-back, own range, then the tail."""
    part = plan.parts[number]
    files = plan.files
    f0 = files[part.file_index]
    b0 = int(np.searchsorted(f0.batch_frame, part.first, side="right")) - 1
    t_start = int(f0.batch_ts[max(b0, 0)])
    # look-back: from the last batch that began more than the idle timeout before the part
    start: tuple[int, int] | None = None
    for fi in range(part.file_index, -1, -1):
        f = files[fi]
        if f.error is not None or not len(f.batch_frame):
            continue
        upto = b0 if fi == part.file_index else len(f.batch_frame)
        if fi != part.file_index and f.ts_max < t_start - idle_ns:  # nothing in it is needed
            nxt = next((g.file_index for g in files[fi + 1:part.file_index + 1] if g.error is None and g.packets), None)
            start = (nxt if nxt is not None else part.file_index, 1)
            break
        older = np.flatnonzero(f.batch_ts[:upto] < t_start - idle_ns)
        if len(older):
            start = (fi, int(f.batch_frame[older[-1]]))
            break
    if start is None:
        first_file = next((f.file_index for f in files if f.error is None and f.packets), part.file_index)
        start = (first_file, 1)
    for fi in range(start[0], part.file_index + 1):
        f = files[fi]
        if f.error is not None or not f.packets:
            continue
        lo = start[1] if fi == start[0] else 1
        hi = part.first if fi == part.file_index else f.packets + 1
        if lo < hi:
            yield f, lo, hi, LOOKBACK
    yield f0, part.first, part.end, OWN
    if part.end <= f0.packets:
        yield f0, part.end, f0.packets + 1, TAIL
    for f in files[part.file_index + 1:]:
        if f.error is None and f.packets:
            yield f, 1, f.packets + 1, TAIL


def _read(f: FileIndex, first: int, end: int, batch_size: int) -> Iterator[tuple[PacketBatch, int, int]]:
    """Batches covering frames [first, end) of a file, each with the slice [lo, hi) inside it."""
    r, frame = open_at(f, first, batch_size)
    try:
        it = r.batches(f.file_index, frame)
        for b in it:
            n = len(b)
            lo = max(0, first - b.frame0)
            hi = min(n, end - b.frame0)
            if hi <= 0:
                if b.frame0 >= end:
                    return
                continue
            if lo < hi:
                yield b, lo, hi
            if b.frame0 + n >= end:
                return
    finally:
        r.chunks.close()


def run_part(plan: Plan, number: int, settings: Settings) -> PartResult:
    """Run one part (a Dask task; also callable in-process)."""
    s = settings.validate()
    collector = _Collector()
    pipe = Pipeline(s, [], threaded=False, analysers=[collector])
    pipe.devices.keep_all_sets = True
    pipe.flows.next_sweep = 1 << 62  # the part sweeps where the single run does (below), never by itself
    wants_rare = s.detect or s.identify
    cands = _Candidates(plan)
    if wants_rare:
        pipe.sidecar = cands  # type: ignore[assignment]
    idle_ns = int(s.idle_timeout * 1e9)
    sweep_ns = pipe.flows.sweep_ns
    size = 1 << 16
    keys = np.zeros(size, np.uint64)
    lasts = np.zeros(size, np.int64)
    owned = np.zeros(size, np.uint8)
    st = np.array([0, -1, -(1 << 62), -1, -1], np.int64)
    frag_keys = np.zeros(1 << 14, np.uint64)
    frag_ports = np.zeros(1 << 14, np.int64)
    pk_buf = Packets.allocate(s.batch_size)
    keep = np.zeros(s.batch_size, np.uint8)
    trig = np.zeros(s.batch_size, np.int64)
    piece_frames: list[np.ndarray] = []
    read = lookback = tail = 0
    first_packet = True
    done = False

    def feed(b: PacketBatch, pk: Packets, lo: int, hi: int) -> None:
        idx = np.flatnonzero(keep[lo:hi]) + lo
        if not len(idx):
            return
        seq = len(piece_frames)
        real = (np.int64(b.file_index) << np.int64(40)) | (b.frame0 + idx)
        piece_frames.append(real)
        sub = PacketBatch(b.buf, b.off[idx], b.caplen[idx], b.wirelen[idx], b.ts_ns[idx], b.linktype[idx],
                          b.file_index, 0)
        cands.frames = real
        pipe.feed_decoded(Packets(pk.rec[idx]), sub.ts_ns, sub.wirelen, ((_FAKE_FILE + seq) << 40) | 1, sub)

    for f, first, end, region in _segments(plan, number, idle_ns):
        if done:
            break
        for b, lo, hi in _read(f, first, end, s.batch_size):
            n = len(b)
            if n and b.ts_ns.min() < 0:
                np.maximum(b.ts_ns, 0, out=b.ts_ns)
            if first_packet:
                first_packet = False
                if region == OWN:  # the input's first packet: the single run's first sweep is due after it
                    st[1] = int(b.ts_ns[lo])
            if n > len(pk_buf):
                pk_buf = Packets.allocate(n)
                keep = np.zeros(n, np.uint8)
                trig = np.zeros(n, np.int64)
            pk = decode(b, pk_buf)
            read += hi - lo
            if region == LOOKBACK:
                lookback += hi - lo
            pos = lo
            while pos < hi:
                st[3] = -1
                st[4] = -1
                r = pk.rec
                nt = own_packets(r["l3"][pos:hi], r["err"][pos:hi], r["proto"][pos:hi], r["src_hi"][pos:hi],
                                 r["src_lo"][pos:hi], r["dst_hi"][pos:hi], r["dst_lo"][pos:hi], r["sport"][pos:hi],
                                 r["dport"][pos:hi], r["frag"][pos:hi], r["frag_id"][pos:hi], b.ts_ns[pos:hi],
                                 region, idle_ns, sweep_ns, keys, lasts, owned, st, frag_keys, frag_ports,
                                 keep[pos:hi], trig)
                stop = int(st[3])
                grow = int(st[4])
                upto = hi if stop < 0 and grow < 0 else pos + (stop if stop >= 0 else grow)
                at = pos
                for q in trig[:nt].tolist():
                    t_idx = pos + q
                    feed(b, pk, at, t_idx)
                    for rows in pipe.flows.expire(int(b.ts_ns[t_idx])):
                        pipe._out("flows", rows)
                    at = t_idx
                if stop >= 0:
                    if region == TAIL:
                        tail += upto - lo
                    done = True
                    break
                feed(b, pk, at, upto)
                if grow >= 0:
                    keys, lasts, owned = _grow(keys, lasts, owned)
                pos = upto
            if done:
                break
            if region == TAIL:
                tail += hi - lo
    for rows in pipe.flows.flush():
        pipe._out("flows", rows)
    for t in pipe.devices.flush():
        pipe._out("windows", t)
    flows = np.concatenate(collector.flows) if collector.flows else np.zeros(0, FLOW_DTYPE)
    if len(flows):  # the made-up first frames back to the real ones
        allf = np.concatenate(piece_frames)
        starts = np.concatenate([[0], np.cumsum([len(p) for p in piece_frames])[:-1]])
        fr = flows["frame"]
        flows["frame"] = allf[starts[(fr >> 40) - _FAKE_FILE] + (fr & _FRAME_MASK) - 1]
    dt = pipe.devices
    used = int(dt.st[0])
    devs = dt.devs[:used]
    dev_rows = np.zeros(used, DEV_PART_DTYPE)
    for name in DEV_PART_DTYPE.names:  # type: ignore[union-attr]
        dev_rows[name] = devs[name]
    names = dt.device_names(np.arange(used))
    nd = int(dt.st[6])
    d = dt.dips[:nd]
    dips = np.zeros(nd, DIP_PART_DTYPE)
    for name in DIP_PART_DTYPE.names:  # type: ignore[union-attr]
        dips[name] = d[name]
    from ..addrs import ip_str

    dip_ips = [ip_str(bool(e["v6"]), int(e["hi"]), int(e["lo"])) for e in d]
    stats = pipe.stats
    stats.flows_evicted = pipe.flows.evicted
    stats.fragments_without_first = pipe.flows.fragments_without_first
    stats.devices_untracked = dt.untracked
    stats.late_packets = dt.late_packets
    windows = pa.concat_tables(collector.windows) if collector.windows else None
    from ..records import WINDOW_SCHEMA

    return PartResult(
        number=number, flows=flows, windows=windows if windows is not None else WINDOW_SCHEMA.empty_table(),
        edges=dt.edges, devices=names, dev_rows=dev_rows, dips=dips, dip_ips=dip_ips, stats=stats,
        cands=np.concatenate(cands.rows) if cands.rows else np.zeros(0, CAND_DTYPE), data=b"".join(cands.data),
        packets_read=read, lookback_packets=lookback, tail_packets=tail)


def _grow(keys: np.ndarray, lasts: np.ndarray, owned: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k2 = np.zeros(len(keys) * 2, np.uint64)
    l2 = np.zeros(len(keys) * 2, np.int64)
    o2 = np.zeros(len(keys) * 2, np.uint8)
    rehash((keys, lasts, owned), (k2, l2, o2))
    return k2, l2, o2
