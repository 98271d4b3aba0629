"""Cost of the inventory's traffic profile per finished flow: traffic_from_records (raw flow
records, what the pipeline calls on every batch) against traffic_from_flows (Arrow rows).

    .venv/bin/python bench/inventory_traffic.py [--repeat 20] [--loop] [CAPTURE...]

Batches of 16,384 flows (the flow table's export buffer):
  normal      finished flows of real captures (default: every capture under ../shared/pcaps
              with Ethernet, in MANIFEST order, until 16,384 flows), cycled to fill the batch
  flood-dst   one local MAC, TCP SYNs to random external addresses and random ports, unanswered
  flood-src   one MAC, spoofed random source addresses, SYNs to one local server on random ports
  noeth-src   flood-src without Ethernet (Linux cooked, raw IP): every spoofed source is a device
  noeth-local the same with external_ip_devices=False (devices: MACs and local addresses only)
Prints the median time per batch and per flow (after one warm-up call that loads the kernels).
``--loop`` also times the former per-flow Python loop on the Arrow rows, for comparison.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from iotwatch.addrs import MAPPED, LocalNets  # noqa: E402
from iotwatch.capture import CaptureSet  # noqa: E402
from iotwatch.decode import Packets, decode  # noqa: E402
from iotwatch.flows import FLOW_DTYPE, S_SYN, FlowSettings, FlowTable, flows_to_table  # noqa: E402
from iotwatch.inventory.traffic import traffic_from_flows, traffic_from_records  # noqa: E402

BATCH = 1 << 14
SHARED = ROOT.parent / "shared" / "pcaps"


def capture_records(paths: list[Path], want: int) -> np.ndarray:
    """Finished flow records of the captures, read through the pipeline's flow table."""
    got: list[np.ndarray] = []
    total = 0
    pk = Packets.allocate(1 << 15)
    for path in paths:
        ft = FlowTable(FlowSettings())
        for b in CaptureSet([path]).batches():
            if len(b) > len(pk):
                pk = Packets.allocate(len(b))
            p = decode(b, pk)
            got += [r.copy() for r in ft.update(p, b.ts_ns, b.wirelen, (b.file_index << 40) | b.frame0)]
        got += [r.copy() for r in ft.flush()]
        total = sum(map(len, got))
        if total >= want:
            break
    rows = np.concatenate(got)
    reps = -(-want // len(rows))
    return np.concatenate([rows] * reps)[:want]


def flood(n: int, spoofed: bool, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r = np.zeros(n, FLOW_DTYPE)
    bot = MAPPED | 0xC0A80140  # 192.168.1.64
    victim = MAPPED | 0xC0A80105 if spoofed else None
    others = MAPPED | rng.integers(0x0B000000, 0x7E000000, n, dtype=np.uint64)  # 11.0.0.0-125.255.255.255: none local
    c_lo = others if spoofed else np.full(n, bot, np.uint64)
    s_lo = np.full(n, victim, np.uint64) if spoofed else others
    a_first = c_lo < s_lo  # A is the smaller endpoint (same hi words)
    sport = rng.integers(1024, 65536, n)
    dport = rng.integers(1, 65536, n)
    r["alo"] = np.where(a_first, c_lo, s_lo)
    r["blo"] = np.where(a_first, s_lo, c_lo)
    r["aport"] = np.where(a_first, sport, dport)
    r["bport"] = np.where(a_first, dport, sport)
    r["client_a"] = a_first
    r["proto"] = 6
    r["state"] = S_SYN
    r["mac_c"] = 0xB0D59DB9F0B4
    r["mac_s"] = 0x001122334455
    r["pk"][:, 0] = 1
    r["by"][:, 0] = 60
    t = 1_754_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 1000
    r["first"] = t
    r["last"] = t
    r["flow_id"] = np.arange(1, n + 1, dtype=np.uint64)
    return r


def timed(fn, arg, nets, repeat: int, **kw) -> float:  # type: ignore[no-untyped-def]
    fn(arg, nets, **kw)  # warm-up: kernels load from numba's cache
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(arg, nets, **kw)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("captures", nargs="*", type=Path)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--loop", action="store_true", help="also time the former per-flow loop (slow)")
    a = ap.parse_args()
    paths = a.captures
    if not paths:
        import csv

        with open(SHARED / "MANIFEST.tsv", newline="") as f:
            paths = [SHARED / r["set"] / r["file"] for r in csv.DictReader(f, delimiter="\t") if r["link_type"] == "ether"]
    nets = LocalNets()
    noeth = flood(BATCH, True)
    noeth["mac_c"] = noeth["mac_s"] = 1 << 63
    batches = {"normal": (capture_records(paths, BATCH), {}), "flood-dst": (flood(BATCH, False), {}),
               "flood-src": (flood(BATCH, True), {}), "noeth-src": (noeth, {}),
               "noeth-local": (noeth, {"external_ip_devices": False})}
    print(f"{'batch':11} {'flows':>6} {'devices':>7} | {'records ms':>10} {'µs/flow':>7} | {'table ms':>9} {'µs/flow':>7}"
          + (f" | {'loop ms':>8} {'µs/flow':>7}" if a.loop else ""))
    for name, (rows, kw) in batches.items():
        n = len(rows)
        tr = timed(traffic_from_records, rows, nets, a.repeat, **kw)
        table = flows_to_table(rows)
        tt = timed(traffic_from_flows, table, nets, a.repeat, **kw)
        line = (f"{name:11} {n:6d} {len(traffic_from_records(rows, nets, **kw)):7d} | {tr * 1e3:10.2f} {tr / n * 1e6:7.3f} |"
                f" {tt * 1e3:9.2f} {tt / n * 1e6:7.3f}")
        if a.loop and not kw:
            sys.path.insert(0, str(ROOT / "tests"))
            from test_inventory import reference_traffic  # the former loop, kept as the tests' oracle

            tl = timed(reference_traffic, table, None, max(1, a.repeat // 10))
            line += f" | {tl * 1e3:8.1f} {tl / n * 1e6:7.3f}"
        print(line)


if __name__ == "__main__":
    main()
