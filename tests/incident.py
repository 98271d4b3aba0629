"""The hospital incident, generated and analysed once per test session (for the evidence, report
and compare tests): ``before`` is the incident, ``after`` the same site once the recorder is
isolated, with outside hosts still knocking on its address."""

from __future__ import annotations

import functools
from pathlib import Path

from iotwatch.outputs import analyze_to_folder
from iotwatch.settings import Settings
from iotwatch.synth import Options, generate

UPLINK_MBPS = 2.0
BEFORE = Options("hospital", seed=11, duration=100, quiet=40, uplink_mbps=UPLINK_MBPS)
AFTER = Options("after", seed=11, duration=100, uplink_mbps=UPLINK_MBPS)


def analyse(pcap: Path, out: Path, uplink_mbps: float | None = UPLINK_MBPS) -> Path:
    """``iotwatch analyze PCAP --out OUT [--uplink-mbps M]``, in this process."""
    res = analyze_to_folder([pcap], out, Settings(uplink_mbps=uplink_mbps))
    assert res.problems == [] and res.stats.files == 1
    return out


def analyse_plain(pcap: Path, out: Path) -> Path:
    """The same with the defaults (no uplink given)."""
    return analyse(pcap, out, None)


@functools.cache
def incident(base: Path, which: str = "before") -> tuple[Path, Path]:
    """(capture, output folder) of the scenario ``which`` under ``base`` (made on first use)."""
    d = base / "incident"
    d.mkdir(parents=True, exist_ok=True)
    pcap = generate(BEFORE if which == "before" else AFTER, d / f"{which}.pcap").pcap
    return pcap, analyse(pcap, d / f"{which}-out")
