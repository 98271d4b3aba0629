"""The hospital incident, generated and analysed once per test session (for the evidence, report
and compare tests): ``before`` is the incident, ``after`` the same site once the recorder is
isolated, with outside hosts still knocking on its address."""

from __future__ import annotations

import functools
from pathlib import Path

from iotwatch.cli.analyze import analyzers, run_analysis
from iotwatch.pipeline import Settings
from iotwatch.synth import Options, generate

UPLINK_MBPS = 2.0
BEFORE = Options("hospital", seed=11, duration=100, quiet=40, uplink_mbps=UPLINK_MBPS)
AFTER = Options("after", seed=11, duration=100, uplink_mbps=UPLINK_MBPS)


def analyse(pcap: Path, out: Path, uplink_mbps: float | None = UPLINK_MBPS) -> Path:
    """``iotwatch analyze PCAP --out OUT [--uplink-mbps M]``, in this process."""
    settings = Settings()
    det, inv = analyzers(settings, uplink_mbps=uplink_mbps)
    code = run_analysis([pcap], out, settings, quiet=True, detector=det, inventory=inv)
    assert code == 0, code
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
