"""Parts → the single run's results: flows, windows, devices, counters and the analysers' input.

* **Flows** come whole from the part that owned their chain; their ids are renumbered in input
  order of their first packet (the single run numbers flows as it creates them).
* **Windows** add up: rows of the same device and window (a window that several parts saw) sum
  their counters; distinct destinations are counted again from the union of the parts' sets;
  unanswered SYNs, ratios and upload shares are derived again.
* **Devices**: totals add up, first and last seen are the extremes, addresses are joined (and
  whether a MAC forwards traffic for others is decided again, as the device table does).
* **Rare frames**: every part kept every packet of a rare kind; the side channel's budgets (per
  batch of the single run, per device, kind and window) are applied here over all of them, in
  input order, by the same rules as :func:`iotwatch.sidecar.select_rare`.

The analysers (detector, inventory) then see the rare frames, the flow records and the windows
on this machine and conclude over the merged devices, exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._jit import kernel
from ..addrs import mac_str
from ..decode import NO_MAC
from ..devices import _ADDITIVE, KIND_MAC, MAX_EXT_IPS, EdgeSets
from ..flows import FLOW_DTYPE
from ..records import WINDOW_SCHEMA, DeviceRecord, Stats
from ..sidecar import (
    _BUDGET_ARRAY,
    DNS_BURST,
    DNS_BURST_BUDGET,
    K_FIRST,
    K_FIRST_LOGIN,
    KINDS,
    TABLE_SLOTS,
    RareFrame,
    _keys,
    admit,
)
from .part import CAND_DTYPE, PartResult

if TYPE_CHECKING:
    from ..analyser import Analyser


def renumber_flows(results: Sequence[PartResult]) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """All flows with the single run's ids (1, 2, ... in order of first packet), and for each part
    its (sorted own ids, new ids) to renumber what refers to them."""
    flows = np.concatenate([r.flows for r in results]) if results else np.zeros(0, FLOW_DTYPE)
    order = np.argsort(flows["frame"], kind="stable")
    new = np.empty(len(flows), np.uint64)
    new[order] = np.arange(1, len(flows) + 1, dtype=np.uint64)
    maps = []
    at = 0
    for r in results:
        n = len(r.flows)
        old = r.flows["flow_id"]
        o = np.argsort(old, kind="stable")
        maps.append((old[o], new[at:at + n][o]))
        at += n
    flows["flow_id"] = new
    return flows[order], maps


def _renumber(ids: np.ndarray, m: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    old, new = m
    out = np.zeros(len(ids), np.uint64)
    if not len(old):
        return out
    k = np.minimum(np.searchsorted(old, ids), len(old) - 1)
    hit = (old[k] == ids) & (ids != 0)
    out[hit] = new[k[hit]]
    return out


def merge_windows(results: Sequence[PartResult], window_s: float) -> pa.Table:
    """The parts' window rows as the single run's: one row per device and window."""
    tabs = [r.windows for r in results if r.windows.num_rows]
    if not tabs:
        return WINDOW_SCHEMA.empty_table()
    src = np.concatenate([np.full(r.windows.num_rows, k, np.int64) for k, r in enumerate(results) if r.windows.num_rows])
    t = pa.concat_tables(tabs)
    dev = pc.dictionary_encode(t["device"]).combine_chunks()
    codes = dev.indices.to_numpy()
    names = dev.dictionary.to_pylist()
    starts = t["window_start"].to_numpy()
    widx = np.round(starts / window_s).astype(np.int64)
    order = np.lexsort((codes, widx))
    codes, widx, src = codes[order], widx[order], src[order]
    t = t.take(pa.array(order))
    new_group = np.ones(len(order), bool)
    new_group[1:] = (codes[1:] != codes[:-1]) | (widx[1:] != widx[:-1])
    heads = np.flatnonzero(new_group)
    sizes = np.diff(np.append(heads, len(order)))
    cols: dict[str, np.ndarray] = {}
    for c in _ADDITIVE:
        cols[c] = np.add.reduceat(t[c].to_numpy().astype(np.uint64), heads) if len(heads) else np.zeros(0, np.uint64)
    sat = t["distinct_saturated"].to_numpy(zero_copy_only=False)
    cols["distinct_saturated"] = np.logical_or.reduceat(sat, heads)
    for c in ("dst_ips", "dst_ports"):
        v = t[c].to_numpy().astype(np.uint64)[heads]
        cols[c] = v
    for g in np.flatnonzero(sizes > 1).tolist():  # windows several parts saw: recount the distinct sets
        h = heads[g]
        name = names[codes[h]]
        w = int(widx[h])
        for c, attr in (("dst_ips", "ips"), ("dst_ports", "ports")):
            parts = [getattr(results[s].edges.get(w, EdgeSets()), attr).get(name) for s in src[h:h + sizes[g]].tolist()]
            parts = [p for p in parts if p is not None]
            cols[c][g] = len(np.unique(np.concatenate(parts))) if parts else 0
    syn = cols["syn_flows"].astype(np.int64)
    ans = np.minimum(cols["syn_answered"].astype(np.int64), syn)
    rej = np.minimum(cols["syn_rejected"].astype(np.int64), syn - ans)
    up = cols["upload_bytes"]
    gw = widx[heads]
    # each window's total upload over every device, for the shares
    uw, inv = np.unique(gw, return_inverse=True)
    total = np.zeros(len(uw), np.float64)
    np.add.at(total, inv, up.astype(np.float64))
    tot = total[inv]
    data = {
        "device": pa.array([names[c] for c in codes[heads].tolist()], pa.string()),
        "window_start": gw.astype(np.float64) * window_s,
        "window_s": np.full(len(heads), window_s, np.float64),
        "packets_out": cols["packets_out"], "packets_in": cols["packets_in"],
        "bytes_out": cols["bytes_out"], "bytes_in": cols["bytes_in"],
        "upload_bytes": up, "download_bytes": cols["download_bytes"],
        "dst_ips": cols["dst_ips"], "dst_ports": cols["dst_ports"],
        "new_flows": cols["new_flows"], "syn_flows": cols["syn_flows"],
        "syn_answered": ans.astype(np.uint64), "syn_rejected": rej.astype(np.uint64),
        "syn_unanswered": (syn - ans - rej).astype(np.uint64),
        "failed_handshake_ratio": np.where(syn > 0, (syn - ans) / np.maximum(syn, 1), 0.0),
        "rst_in": cols["rst_in"], "auth_attempts": cols["auth_attempts"], "dns_queries": cols["dns_queries"],
        "upload_share": np.where(tot > 0, up / np.where(tot > 0, tot, 1.0), 0.0),
        "distinct_saturated": cols["distinct_saturated"],
        "mirai_syns": cols["mirai_syns"],
    }
    # the single run's window_start is w * window_s computed the same way (window_rows)
    data["window_start"] = np.array([w * window_s for w in gw.tolist()], np.float64)
    return pa.Table.from_pydict(data, schema=WINDOW_SCHEMA)


def merge_devices(results: Sequence[PartResult]) -> dict[str, DeviceRecord]:
    """Device totals over all parts, as :meth:`iotwatch.devices.DeviceTable.totals` gives them."""
    acc: dict[str, dict[str, object]] = {}
    for r in results:
        rows = r.dev_rows
        by_dev: dict[int, list[tuple[int, int, str, bool]]] = {}
        for e, ip in zip(r.dips.tolist(), r.dip_ips, strict=True):
            dev, first, last, local = e
            by_dev.setdefault(int(dev), []).append((int(first), int(last), ip, bool(local)))
        for j, name in enumerate(r.devices):
            kind, pk_out, pk_in, by_out, by_in, up, first, last, fwd = rows[j].tolist()
            a = acc.get(name)
            if a is None:
                a = acc[name] = {"kind": kind, "pk_out": 0, "pk_in": 0, "by_out": 0, "by_in": 0, "up": 0,
                                 "first": first, "last": last, "fwd": False, "dips": {}}
            a["pk_out"] += pk_out  # type: ignore[operator]
            a["pk_in"] += pk_in  # type: ignore[operator]
            a["by_out"] += by_out  # type: ignore[operator]
            a["by_in"] += by_in  # type: ignore[operator]
            a["up"] += up  # type: ignore[operator]
            a["first"] = min(a["first"], first)  # type: ignore[type-var]
            a["last"] = max(a["last"], last)  # type: ignore[type-var]
            a["fwd"] = bool(a["fwd"]) or bool(fwd)
            dips: dict[str, list] = a["dips"]  # type: ignore[assignment, type-arg]
            for first_ts, last_ts, ip, local in by_dev.get(j, []):
                have = dips.get(ip)
                if have is None:
                    dips[ip] = [first_ts, last_ts, local]
                else:
                    have[0] = min(have[0], first_ts)
                    have[1] = max(have[1], last_ts)
    out: dict[str, DeviceRecord] = {}
    for name, a in sorted(acc.items(), key=lambda kv: (kv[1]["first"], kv[0])):  # type: ignore[return-value]
        dips = a["dips"]  # type: ignore[assignment]
        if a["kind"] == KIND_MAC:
            ext = sorted(v[0] for v in dips.values() if not v[2])  # type: ignore[union-attr]
            forwarder = bool(a["fwd"]) or len(ext) > MAX_EXT_IPS or (
                len(ext) == MAX_EXT_IPS and max(v[1] for v in dips.values() if not v[2]) > ext[-1])  # type: ignore[union-attr]
            entries = sorted((v[0], ip, v[2]) for ip, v in dips.items())  # type: ignore[union-attr]
            ips = [ip for _, ip, local in entries if local or not forwarder]
            mac: str | None = name
        else:
            mac = None
            ips = [name]
        rec = DeviceRecord(mac=mac, ips=ips, packets_out=int(a["pk_out"]), packets_in=int(a["pk_in"]),  # type: ignore[call-overload]
                           bytes_out=int(a["by_out"]), bytes_in=int(a["by_in"]), upload_bytes=int(a["up"]),  # type: ignore[call-overload]
                           first_seen=int(a["first"]) / 1e9, last_seen=int(a["last"]) / 1e9)  # type: ignore[call-overload]
        out[rec.key] = rec
    return out


def merge_stats(results: Sequence[PartResult]) -> Stats:
    st = Stats()
    for r in results:
        s = r.stats
        st.packets += s.packets
        st.bytes += s.bytes
        for k, v in s.undecodable.items():
            st.undecodable[k] = st.undecodable.get(k, 0) + v
        st.not_ip += s.not_ip
        st.fragments_without_first += s.fragments_without_first
        st.flows_evicted += s.flows_evicted
        st.devices_untracked += s.devices_untracked
        st.late_packets += s.late_packets
    return st


@kernel
def reselect(kind, who, name, ts_ns, batch, window_ns, per_batch, bkeys, bcount, state, budget, dns_burst,  # type: ignore[no-untyped-def]
             dns_burst_budget, counts, out_idx):
    """:func:`iotwatch.sidecar.select_rare` over candidates from every part, in input order:
    the same caps per batch and window (``batch``: the single run's batch of each) and per-device budgets."""
    n = kind.shape[0]
    m = 0
    cur = -1
    for i in range(n):
        if batch[i] != cur:
            cur = batch[i]
            for k in range(counts.shape[0]):
                counts[k] = 0
        if not admit(kind[i], who[i], ts_ns[i] // window_ns, name[i], counts, per_batch, bkeys, bcount, state, budget,
                     dns_burst, dns_burst_budget):
            continue
        out_idx[m] = i
        m += 1
    return m


def rare_frames(results: Sequence[PartResult], maps: list[tuple[np.ndarray, np.ndarray]], window_s: float,
                per_batch: int = 128) -> list[list[RareFrame]]:
    """The frames the single run's side channel sets aside, grouped by its batches, in order."""
    pieces = [r.cands for r in results]
    if not pieces or not sum(len(p) for p in pieces):
        return []
    c = np.concatenate(pieces) if pieces else np.zeros(0, CAND_DTYPE)
    owner = np.concatenate([np.full(len(p), k, np.int64) for k, p in enumerate(pieces)])
    order = np.argsort(c["pos"], kind="stable")
    c, owner = c[order], owner[order]
    out_idx = np.empty(len(c), np.int64)
    state = np.array([-1, 0], np.int64)
    m = reselect(c["kind"].astype(np.int64), c["who"], c["name"], c["ts"], c["batch"], int(window_s * 1e9), per_batch,
                 np.zeros(TABLE_SLOTS, np.uint64), np.zeros(TABLE_SLOTS, np.int64), state, _BUDGET_ARRAY, DNS_BURST,
                 DNS_BURST_BUDGET, np.zeros(16, np.int64), out_idx)
    sel = out_idx[:m]
    groups: list[list[RareFrame]] = []
    cur = None
    macs: dict[int, str | None] = {}

    def mac(v: int) -> str | None:
        s = macs.get(v, "")
        if s == "":
            s = macs[v] = None if (v >> 40) & 1 else mac_str(v)
        return s

    no_mac = int(NO_MAC)
    for i in sel.tolist():
        row = c[i]
        r = results[int(owner[i])]
        sm = int(row["src_mac"])
        if sm < no_mac:
            src, dst = mac(sm), mac(int(row["dst_mac"]))
        else:
            src, dst = _keys(row)
        k = int(row["kind"])
        off, ln = int(row["data_off"]), int(row["data_len"])
        fid = _renumber(np.array([row["flow_id"]], np.uint64), maps[int(owner[i])])[0]
        pos = int(row["pos"])
        f = RareFrame(float(row["ts"] / 1e9), pos >> 40, pos & ((1 << 40) - 1), int(row["l3"]), r.data[off:off + ln],
                      src, dst, KINDS[K_FIRST if k == K_FIRST_LOGIN else k], int(fid), int(row["direction"]))
        b = int(row["batch"])
        if b != cur:
            groups.append([])
            cur = b
        groups[-1].append(f)
    return groups


def feed_analysers(analysers: Sequence[Analyser], groups: list[list[RareFrame]], flows: np.ndarray,
                   windows: pa.Table, chunk: int = 1 << 14) -> None:
    """Hand the merged input to the analysers: rare frames (a flow's first payload always comes
    before its record, as in the single run), flow records, then the windows."""
    for frames in groups:
        for a in analysers:
            if a.wants_rare:
                a.on_rare(frames)
    for k in range(0, len(flows), chunk):
        rows = flows[k:k + chunk]
        for a in analysers:
            a.on_flow_records(rows)
    if windows.num_rows:
        for a in analysers:
            a.on_windows(windows)
