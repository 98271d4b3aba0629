"""How often the flow kernel's beat tracker calls a session "held on a beat": generated report
channels against sessions whose exchanges come at random (docs/detection.md, "Inside one
connection").

Runs the kernel's own ``iotwatch.flows._beat`` on one flow record per session, fed the times at
which one side starts its exchanges, as the flow kernel does (the first exchange sets the anchor,
every later one goes through ``_beat``), and counts the sessions whose beats reach the rules'
share (``Thresholds.heartbeat_on_beat``) and count (``heartbeat_beats``).

    python bench/beats.py [--sessions 2000] [--seed 0] [--share 0.75]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from iotwatch.detect.rules import Thresholds
from iotwatch.flows import FLOW_DTYPE, PUSH_IDLE_S, _beat


def beats(times: np.ndarray) -> int:
    """Beats the kernel counts for one side whose exchanges start at ``times`` (seconds)."""
    rec = np.zeros(1, FLOW_DTYPE)
    r = rec[0]
    r["xanc"][0] = times[0]
    for t in times[1:]:
        _beat(r, 0, float(t))
    return int(rec["xbeat"][0, 0])


def report(rng: np.random.Generator) -> np.ndarray:
    """A status report every 2-20 s (1 % jitter), 4 % of them skipped, the body of 15 % sent
    1 s to half a period after the tag (as ``iotwatch synth reportc2`` does)."""
    period = float(rng.uniform(2.0, 20.0))
    t, out = float(rng.uniform(0.2, 1.0)), []
    for _ in range(int(rng.integers(12, 40))):
        if rng.random() > 0.04:
            out.append(t)
            if rng.random() < 0.15 and period > 3:
                out.append(t + float(rng.uniform(1.0, 0.5 * period)))
        t += period * (1.0 + float(rng.normal(0, 0.01)))
    return np.array(out)


KINDS: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "report channel": report,
    "random: exponential gaps": lambda g: np.cumsum(g.exponential(g.uniform(2, 30), int(g.integers(10, 60)))),
    "random: uniform gaps": lambda g: np.cumsum(g.uniform(1, g.uniform(2, 60), int(g.integers(10, 60)))),
    "random: log-normal gaps": lambda g: np.cumsum(1 + g.lognormal(g.uniform(0, 3), g.uniform(0.3, 1.5),
                                                                   int(g.integers(10, 60)))),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--share", type=float, default=None, help="another heartbeat_on_beat to try")
    a = ap.parse_args()
    th = Thresholds() if a.share is None else Thresholds(heartbeat_on_beat=a.share)
    rng = np.random.default_rng(a.seed)
    print(f"| sessions | counted | held on a beat ({th.heartbeat_on_beat:.2f} of exchanges, {th.heartbeat_beats}+ beats) |")
    print("|---|---|---|")
    for name, make in KINDS.items():
        n = held = 0
        for _ in range(a.sessions):
            t = make(rng)
            t = t[np.concatenate(([True], np.diff(t) >= PUSH_IDLE_S))]  # exchanges: 1 s apart at least
            if len(t) < 9:
                continue
            n += 1
            b = beats(t)
            held += b >= th.heartbeat_beats and b >= th.heartbeat_on_beat * len(t)
        print(f"| {name} | {n} | {held} ({held / max(n, 1):.1%}) |")


if __name__ == "__main__":
    main()
