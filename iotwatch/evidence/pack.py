"""Alerts of an ``analyze`` output folder → one evidence folder per alerted device.

Which packets are an alert's: the flows it involves, from ``flows.parquet``, and every packet of
those flows, from the source captures the alert names (``evidence.first_packet.file``). An
alert involves

* the flows it cites (``evidence.flow_ids``);
* for ``scan`` and ``bruteforce``: every flow of the device during the alert (``first_ts`` ..
  ``last_ts``) to one of the cited (protocol, server port) pairs or the ports in
  ``evidence.ports``, or to the scanned host ``evidence.target``: the scanner's probes and the
  login sessions, not the device's ordinary traffic;
* for the other categories (``exfil``, ``c2``, ``flood``): every flow of the device during the
  alert with one of the cited flows' server addresses or the addresses in ``evidence.peers``,
  ``peer``, ``resolver``;
* for an ARP sweep (``evidence.arp_requests``): the device's ARP packets during the alert.

Packets are matched to flows by their unordered 5-tuple (both directions) and the flow's time
span. ``context_s`` seconds of all the device's packets before its first alert come along, so
the pack shows what the device did just before. The first packet of each alert carries a pcapng
comment naming the alert and the source frame (Wireshark: ``frame.comment``).

The captures are read with the compiled readers and decoder of :mod:`iotwatch.capture` and
:mod:`iotwatch.decode`; matching is vectorised numpy over each batch.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import __version__
from ..capture import CaptureSet
from ..decode import L3_ARP, NO_MAC, Packets, decode
from ..errors import InputError, OutputError
from ..outdir import Run, device_key, load
from .pcapng_out import PcapngWriter

DEFAULT_CONTEXT_S = 5.0
PORT_CATEGORIES = ("scan", "bruteforce")  # alerts whose flows are told by their server port
ICMP = (1, 58)
SLACK_NS = 2_000
MANIFEST, SUMS = "manifest.json", "SHA256SUMS"


@dataclass(slots=True)
class DevicePack:
    """The pack of one device, filled while the captures are read."""

    key: str
    folder: Path
    mac: int | None
    ips: list[tuple[int, int]]
    alerts: list[dict[str, Any]]
    flows: pa.Table
    keys: np.ndarray  # sorted flow keys
    key_start: np.ndarray  # int64 ns, earliest start of the flows with that key
    key_end: np.ndarray
    t_first_ns: int
    context_ns: int
    arp_spans: list[tuple[int, int]] = field(default_factory=list)  # ns spans of ARP sweeps
    refs: dict[tuple[int, int], list[str]] = field(default_factory=dict)  # (file index, frame) → comments
    found: dict[tuple[int, int], int] = field(default_factory=dict)  # (file index, frame) → pack frame
    writer: PcapngWriter | None = None
    context_packets: int = 0


@dataclass(slots=True)
class Pack:
    """What :func:`write_pack` wrote."""

    folder: Path
    manifest: dict[str, Any]
    devices: list[str]

    @property
    def packets(self) -> dict[str, int]:
        return {d["device"]: int(d["packets"]) for d in self.manifest["devices"]}


# --------------------------------------------------------------------------------------------
# Flow keys: the same 64-bit hash of an unordered 5-tuple for packets and for flow rows
# --------------------------------------------------------------------------------------------

def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective scramble of uint64 words."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def flow_keys(proto: np.ndarray, a_hi: np.ndarray, a_lo: np.ndarray, a_port: np.ndarray,
              b_hi: np.ndarray, b_lo: np.ndarray, b_port: np.ndarray) -> np.ndarray:
    """Hash of (protocol, {endpoint a, endpoint b}): the same for both directions. ICMP ports
    (type, code) are left out, since a request and its reply differ in type."""
    with np.errstate(over="ignore"):
        p = proto.astype(np.uint64)
        icmp = np.isin(proto, ICMP)
        pa_ = np.where(icmp, 0, a_port).astype(np.uint64)
        pb_ = np.where(icmp, 0, b_port).astype(np.uint64)
        ha = _mix(_mix(a_hi.astype(np.uint64)) ^ a_lo.astype(np.uint64)) ^ (pa_ << np.uint64(8)) ^ p
        hb = _mix(_mix(b_hi.astype(np.uint64)) ^ b_lo.astype(np.uint64)) ^ (pb_ << np.uint64(8)) ^ p
        ha, hb = _mix(ha), _mix(hb)
        lo, hi = np.minimum(ha, hb), np.maximum(ha, hb)
        return _mix(lo ^ _mix(hi + np.uint64(0x9E3779B97F4A7C15)))


def _addr_words(text: str) -> tuple[int, int]:
    """An address as iotwatch.decode stores it: IPv4-mapped for IPv4, two 64-bit words."""
    a = ipaddress.ip_address(text)
    v = int(a) | (0xFFFF << 32) if a.version == 4 else int(a)
    return v >> 64, v & 0xFFFFFFFFFFFFFFFF


def _mac_int(text: str) -> int:
    return int(text.replace(":", "").replace("-", ""), 16)


def _table_keys(t: pa.Table) -> np.ndarray:
    src = [_addr_words(s) for s in t.column("src_ip").to_pylist()]
    dst = [_addr_words(s) for s in t.column("dest_ip").to_pylist()]
    s = np.array(src, dtype=np.uint64).reshape(-1, 2)
    d = np.array(dst, dtype=np.uint64).reshape(-1, 2)
    return flow_keys(t.column("proto").to_numpy(), s[:, 0], s[:, 1], t.column("src_port").to_numpy(),
                     d[:, 0], d[:, 1], t.column("dest_port").to_numpy())


# --------------------------------------------------------------------------------------------
# Which flows an alert involves
# --------------------------------------------------------------------------------------------

def _peer_addrs(ev: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for k in ("peers", "peer", "resolver", "target", "targets_sample"):
        v = ev.get(k)
        for item in v if isinstance(v, list) else [v]:
            if isinstance(item, str):
                host = item.rsplit(":", 1)[0] if item.count(":") == 1 else item
                try:
                    out.add(str(ipaddress.ip_address(host.strip("[]"))))
                except ValueError:
                    continue
    return out


def involved(flows: pa.Table, alert: dict[str, Any]) -> np.ndarray:
    """Boolean mask of the device's ``flows`` that ``alert`` involves (see the module docs)."""
    ev = alert.get("evidence") or {}
    cited_ids = [int(x) for x in ev.get("flow_ids") or []]
    ids = flows.column("flow_id").to_numpy()
    cited = np.isin(ids, np.array(cited_ids, dtype=np.uint64))
    first, last = float(alert["first_ts"]), float(alert["last_ts"])
    during = (flows.column("start").to_numpy() <= last) & (flows.column("end").to_numpy() >= first)
    proto = flows.column("proto").to_numpy()
    if alert["alert"]["category"] in PORT_CATEGORIES:
        dport = flows.column("dest_port").to_numpy()
        pairs = {(int(p), int(d)) for p, d in zip(proto[cited], dport[cited], strict=True)}
        protos = {p for p, _ in pairs} or {6, 17}
        pairs |= {(p, int(d)) for d in ev.get("ports") or [] for p in protos}
        same = np.zeros(len(ids), dtype=bool)
        for p, d in pairs:
            same |= (proto == p) & (dport == d)
        # a scan of one host (evidence.target): every port it probed there
        target = pa.array(sorted(_peer_addrs({"target": ev.get("target")})), pa.string())
        same |= pc.is_in(flows.column("dest_ip"), target).to_numpy(zero_copy_only=False)
    else:
        addrs = _peer_addrs(ev) | set(flows.column("dest_ip").filter(pa.array(cited)).to_pylist())
        arr = pa.array(sorted(addrs), pa.string())
        same = (pc.is_in(flows.column("dest_ip"), arr).to_numpy(zero_copy_only=False)
                | pc.is_in(flows.column("src_ip"), arr).to_numpy(zero_copy_only=False))
    return cited | (during & same)


def _device_flows(run: Run, dev: dict[str, Any], alerts: list[dict[str, Any]]) -> tuple[pa.Table, list[str]]:
    """The flows the device's alerts involve, with a ``why`` column (the alert categories)."""
    first = min(float(a["first_ts"]) for a in alerts)
    last = max(float(a["last_ts"]) for a in alerts)
    cited = {int(x) for a in alerts for x in (a.get("evidence") or {}).get("flow_ids") or []}
    import pyarrow.dataset as ds

    from ..outdir import FLOWS

    path = run.folder / FLOWS
    if not path.exists():
        raise InputError(run.folder, f"has no {FLOWS}: not an output folder of `iotwatch analyze`")
    if dev.get("mac"):
        mine = (pc.field("src_mac") == dev["mac"]) | (pc.field("dest_mac") == dev["mac"])
    else:
        ips = pa.array(dev.get("ips") or [], pa.string())
        mine = pc.field("src_ip").isin(ips) | pc.field("dest_ip").isin(ips)
    flt = mine & (((pc.field("start") <= last) & (pc.field("end") >= first))
                  | pc.field("flow_id").isin(pa.array(sorted(cited), pa.uint64())))
    try:
        t = ds.dataset(path, format="parquet").to_table(filter=flt)
    except (OSError, pa.ArrowException) as e:
        raise InputError(path, f"cannot be read as Parquet: {e}") from None
    masks = [involved(t, a) for a in alerts]
    keep = np.logical_or.reduce(masks) if masks else np.zeros(t.num_rows, dtype=bool)
    why = [",".join(sorted({a["alert"]["category"] for a, m in zip(alerts, masks, strict=True) if m[i]}))
           for i in np.flatnonzero(keep)]
    t = t.filter(pa.array(keep)).append_column("why", pa.array(why, pa.string()))
    return t.sort_by([("start", "ascending"), ("flow_id", "ascending")]), why


# --------------------------------------------------------------------------------------------
# The source captures
# --------------------------------------------------------------------------------------------

def _refs(alert: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    ev = alert.get("evidence") or {}
    # only packets of captures (an alert found in a Zeek conn.log cites log lines: nothing to cut)
    return [(k, ev[k]) for k in ("first_packet", "alert_packet") if isinstance(ev.get(k), dict) and "packet" in ev[k]]


def source_paths(run: Run, captures: list[Path]) -> list[Path]:
    """The source captures the alerts name, found where they were, beside the output folder, or
    among ``captures`` (matched by file name)."""
    named: list[str] = []
    for a in run.alerts:
        for _, ref in _refs(a):
            f = str(ref.get("file", ""))
            if f and f not in named:
                named.append(f)
    given = {p.name: p for p in captures}
    out: list[Path] = []
    for f in named:
        p = Path(f)
        for cand in (given.get(p.name), p, run.folder.parent / p.name, run.folder / p.name):
            if cand is not None and cand.is_file():
                out.append(cand)
                break
        else:
            raise InputError(f, "source capture named by the alerts not found (give it with --capture)")
    if not named:
        out = list(captures)
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise InputError(path, f"cannot read: {e.strerror or e}") from None
    return h.hexdigest()


def _folder_name(key: str) -> str:
    return re.sub(r"[^0-9A-Za-z.]+", "-", key).strip("-") or "device"


# --------------------------------------------------------------------------------------------
# The pack
# --------------------------------------------------------------------------------------------

def _prepare(run: Run, out: Path, sources: list[Path], context_s: float) -> list[DevicePack]:
    index = {str(p): i for i, p in enumerate(sources)}
    by_name = {p.name: i for i, p in enumerate(sources)}
    packs: list[DevicePack] = []
    for dev in run.alerted:
        alerts = run.alerts_of(dev)
        flows, _ = _device_flows(run, dev, alerts)
        keys = _table_keys(flows) if flows.num_rows else np.zeros(0, np.uint64)
        # flow times are float seconds (sub-µs off at epoch scale): widen each span by SLACK_NS
        starts = np.floor(flows.column("start").to_numpy() * 1e9).astype(np.int64) - SLACK_NS
        ends = np.ceil(flows.column("end").to_numpy() * 1e9).astype(np.int64) + SLACK_NS
        uk, inv = np.unique(keys, return_inverse=True)
        ks = np.full(len(uk), np.iinfo(np.int64).max, np.int64)
        ke = np.full(len(uk), np.iinfo(np.int64).min, np.int64)
        np.minimum.at(ks, inv, starts)
        np.maximum.at(ke, inv, ends)
        key = device_key(dev)
        p = DevicePack(key, out / _folder_name(key), _mac_int(dev["mac"]) if dev.get("mac") else None,
                       [_addr_words(ip) for ip in dev.get("ips") or []], alerts, flows, uk, ks, ke,
                       int(min(float(a["first_ts"]) for a in alerts) * 1e9), int(context_s * 1e9))
        for a in alerts:
            if "arp_requests" in (a.get("evidence") or {}):  # an ARP sweep: no flow, its ARP packets
                p.arp_spans.append((int(float(a["first_ts"]) * 1e9) - SLACK_NS, int(float(a["last_ts"]) * 1e9) + SLACK_NS))
            for what, ref in _refs(a):
                fi = index.get(str(ref.get("file")), by_name.get(Path(str(ref.get("file"))).name))
                if fi is not None:
                    label = "first packet" if what == "first_packet" else "packet that raised"
                    p.refs.setdefault((fi, int(ref["packet"])), []).append(
                        f"iotwatch: {label} of the {a['alert']['category'].upper()} alert: {a['alert']['signature']}")
        packs.append(p)
    return packs


def _select(p: DevicePack, pk: Packets, ts: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(selected, context) masks of a batch's packets for one device."""
    if p.mac is not None:
        mac = np.uint64(p.mac)
        mine = (pk.src_mac == mac) | (pk.dst_mac == mac)
    else:
        mine = np.zeros(len(ts), dtype=bool)
        for hi, lo in p.ips:
            mine |= (pk.src_hi == hi) & (pk.src_lo == lo) & (pk.src_mac == NO_MAC)
            mine |= (pk.dst_hi == hi) & (pk.dst_lo == lo) & (pk.dst_mac == NO_MAC)
    in_flow = np.zeros(len(ts), dtype=bool)
    if len(p.keys):
        i = np.minimum(np.searchsorted(p.keys, keys), len(p.keys) - 1)
        in_flow = (p.keys[i] == keys) & (ts >= p.key_start[i]) & (ts <= p.key_end[i])
    for t0, t1 in p.arp_spans:
        in_flow |= (pk.l3 == L3_ARP) & (ts >= t0) & (ts <= t1)
    context = mine & ~in_flow & (ts >= p.t_first_ns - p.context_ns) & (ts < p.t_first_ns)
    return mine & (in_flow | context), context


def write_pack(folder: str | Path, out: str | Path | None = None, *, captures: list[Path] | None = None,
               context_s: float = DEFAULT_CONTEXT_S) -> Pack:
    """Write the evidence pack of an ``analyze`` output ``folder`` into ``out`` (default
    ``folder/evidence``): one sub-folder per alerted device with ``packets.pcapng`` and
    ``flows.csv``, plus ``manifest.json`` and ``SHA256SUMS`` for the whole pack."""
    run = load(folder, windows=False)
    out = Path(out) if out is not None else run.folder / "evidence"
    sources = source_paths(run, list(captures or []))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create the evidence folder: {e.strerror or e}") from None
    packs = _prepare(run, out, sources, context_s)
    app = f"iotwatch {__version__} evidence pack"
    try:
        for p in packs:
            try:
                p.folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OutputError(f"{p.folder}: cannot create: {e.strerror or e}") from None
            p.writer = PcapngWriter(p.folder / "packets.pcapng", app)
        if packs:
            _read(sources, packs)
    finally:
        for p in packs:
            if p.writer is not None:
                p.writer.close()
    return _finish(run, out, sources, packs, context_s)


def _read(sources: list[Path], packs: list[DevicePack]) -> None:
    cs = CaptureSet(sources, order_by_time=False)
    buf = Packets.allocate(cs.batch_size)
    for b in cs.batches():
        pk = decode(b, buf)
        ts = b.ts_ns
        keys = flow_keys(pk.proto, pk.src_hi, pk.src_lo, pk.sport, pk.dst_hi, pk.dst_lo, pk.dport)
        for p in packs:
            sel, ctx = _select(p, pk, ts, keys)
            idx = np.flatnonzero(sel)
            if not len(idx):
                continue
            p.context_packets += int(ctx.sum())
            assert p.writer is not None
            marked = [fr - b.frame0 for fi, fr in p.refs if fi == b.file_index and b.frame0 <= fr < b.frame0 + len(b)]
            cuts = idx[np.isin(idx, np.array(marked, dtype=np.int64))].tolist() if marked else []
            start = 0
            for i in cuts:  # the alerts' packets carry a comment: written one by one, the rest in bulk
                k = int(np.searchsorted(idx, i))
                p.writer.many(b.buf, b.off, b.caplen, b.wirelen, ts, b.linktype, idx[start:k])
                frame = b.frame0 + i
                o, n = int(b.off[i]), int(b.caplen[i])
                p.found[(b.file_index, frame)] = p.writer.packet(
                    int(ts[i]), int(b.linktype[i]), b.buf[o:o + n].tobytes(), int(b.wirelen[i]),
                    "; ".join(p.refs[(b.file_index, frame)]))
                start = k + 1
            p.writer.many(b.buf, b.off, b.caplen, b.wirelen, ts, b.linktype, idx[start:])
    if cs.problems and cs.files_read == 0:
        raise cs.problems[0]


def _file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256(path), "bytes": path.stat().st_size}


def _finish(run: Run, out: Path, sources: list[Path], packs: list[DevicePack], context_s: float) -> Pack:
    import pyarrow.csv as pacsv

    index = {str(p): i for i, p in enumerate(sources)}
    by_name = {p.name: i for i, p in enumerate(sources)}
    devices: list[dict[str, Any]] = []
    sums: list[tuple[str, str]] = []
    for p in packs:
        flows = p.flows.cast(pa.schema([pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f
                                        for f in p.flows.schema]))
        try:
            pacsv.write_csv(flows, p.folder / "flows.csv")
        except (OSError, pa.ArrowException) as e:
            raise OutputError(f"{p.folder / 'flows.csv'}: cannot write: {e}") from None
        dev = run.device(p.key) or {}
        alerts = []
        for a in p.alerts:
            refs: dict[str, Any] = {}
            for what, ref in _refs(a):
                fi = index.get(str(ref.get("file")), by_name.get(Path(str(ref.get("file"))).name))
                refs[what] = {"file": Path(str(ref["file"])).name, "packet": int(ref["packet"]),
                              "pack_packet": p.found.get((fi, int(ref["packet"]))) if fi is not None else None}
            alerts.append({"category": a["alert"]["category"], "signature": a["alert"]["signature"],
                           "severity": a["alert"]["severity"], "first_ts": a["first_ts"], "last_ts": a["last_ts"],
                           "flow_ids": (a.get("evidence") or {}).get("flow_ids", []), **refs})
        files: dict[str, Any] = {}
        for name in ("packets.pcapng", "flows.csv"):
            entry = _file_entry(p.folder / name)
            files[name] = entry
            sums.append((entry["sha256"], f"{p.folder.name}/{name}"))
        devices.append({"device": p.key, "mac": dev.get("mac"), "ips": dev.get("ips", []), "vendor": dev.get("vendor"),
                        "device_type": dev.get("device_type"), "folder": p.folder.name,
                        "packets": p.writer.packets if p.writer else 0, "context_packets": p.context_packets,
                        "flows": p.flows.num_rows, "alerts": alerts, "files": files})
    manifest = {
        "tool": f"iotwatch {__version__}",
        "analysis": str(run.folder),
        "context_s": context_s,
        "selection": "packets of the flows each alert involves (docs/evidence.md), plus the device's packets "
                     f"in the {context_s:g} s before its first alert",
        "sources": [{"file": str(s), "name": s.name, **_file_entry(s)} for s in sources],
        "devices": devices,
    }
    try:
        (out / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        (out / SUMS).write_text("".join(f"{h}  {n}\n" for h, n in sums), encoding="utf-8")
    except OSError as e:
        raise OutputError(f"{out}: cannot write the manifest: {e.strerror or e}") from None
    return Pack(out, manifest, [p.key for p in packs])
