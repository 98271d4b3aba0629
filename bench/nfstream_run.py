"""nfstream contender for `make bench`.

    python bench/nfstream_run.py FILE.pcap   -> one JSON line on stdout

Runs NFStreamer(source=FILE, statistical_analysis=False, n_dissections=0) (no DPI, no
statistics: nfstream's cheapest mode; other settings at their defaults, including its
meter processes and 120 s idle / 1800 s active timeouts) and iterates over every flow.
elapsed_s covers flow metering and iteration, not interpreter start-up or imports.
"""

from __future__ import annotations

import json
import sys
import time

from nfstream import NFStreamer


def run(path: str) -> dict[str, object]:
    t0 = time.perf_counter()
    flows = pkts = fwd = rev = nbytes = 0
    for flow in NFStreamer(source=path, statistical_analysis=False, n_dissections=0):
        flows += 1
        pkts += flow.bidirectional_packets
        fwd += flow.src2dst_packets
        rev += flow.dst2src_packets
        nbytes += flow.bidirectional_bytes
    elapsed = time.perf_counter() - t0
    return {
        "tool": "nfstream",
        "flows": flows,
        "flow_packets": pkts,  # packets nfstream put in a flow (IP only)
        "pkts_fwd": fwd,
        "pkts_rev": rev,
        "flow_bytes": nbytes,
        "elapsed_s": round(elapsed, 6),
    }


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: nfstream_run.py FILE.pcap", file=sys.stderr)
        return 2
    print(json.dumps(run(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
