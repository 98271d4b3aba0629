from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHARED_PCAPS = SHARED / "pcaps"
CHECK_EVENTS = SHARED / "tools" / "check_events.py"
TSHARK = shutil.which("tshark")


def analyze_events(capture: Path, out: Path) -> list[dict]:  # type: ignore[type-arg]
    """``iotwatch analyze CAPTURE --out OUT -q`` in a child process, as a user runs it: it must end
    with 0 and, when ../shared is there, its events.jsonl must pass check_events.py; its events."""
    r = subprocess.run([sys.executable, "-m", "iotwatch", "analyze", str(capture), "--out", str(out), "-q"],
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr
    if CHECK_EVENTS.exists():
        c = subprocess.run([sys.executable, str(CHECK_EVENTS), str(out)], capture_output=True, text=True, check=False)
        assert c.returncode == 0, c.stdout + c.stderr
    return [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]


def generated_pool(folder: Path, scenarios: tuple[str, ...], duration: float, first_seed: int = 9001):  # type: ignore[no-untyped-def]
    """Each scenario generated once (seeds ``first_seed`` on, which neither `make model`'s nor `make
    eval`'s set uses) and observed into a leave-one-source-out pool, as `iotwatch evaluate` builds it."""
    from iotwatch.learn import loso
    from iotwatch.synth import Options, generate

    made = [generate(Options(sc, seed=first_seed + k, duration=duration, uplink_mbps=4),
                     folder / f"{sc}-{first_seed + k}.pcap").labels_file for k, sc in enumerate(scenarios)]
    return loso.build_pool(made, n_jobs=2)


def shared_captures() -> list[Path]:
    """Every capture listed in ../shared/pcaps/MANIFEST.tsv (empty when ../shared is absent)."""
    manifest = SHARED_PCAPS / "MANIFEST.tsv"
    if not manifest.exists():
        return []
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [SHARED_PCAPS / r["set"] / r["file"] for r in rows if (SHARED_PCAPS / r["set"] / r["file"]).exists()]


needs_shared = pytest.mark.skipif(not SHARED_PCAPS.exists(), reason="../shared/pcaps is absent (real captures not available)")
#: real captures of call-backs to a controller (held sessions, lookups, beacons over minutes): what a
#: live run's incremental passes and features are checked against the full ones on
CALLBACK_CAPTURES = ("slips_testdata/test-cc-capture-1.pcap", "corelight_caldera/caldera_sandcat.pcap")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (run `make sysdeps`)")
