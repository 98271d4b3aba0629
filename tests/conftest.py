from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHARED_PCAPS = SHARED / "pcaps"
CHECK_EVENTS = SHARED / "tools" / "check_events.py"
TSHARK = shutil.which("tshark")


def shared_captures() -> list[Path]:
    """Every capture listed in ../shared/pcaps/MANIFEST.tsv (empty when ../shared is absent)."""
    manifest = SHARED_PCAPS / "MANIFEST.tsv"
    if not manifest.exists():
        return []
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [SHARED_PCAPS / r["set"] / r["file"] for r in rows if (SHARED_PCAPS / r["set"] / r["file"]).exists()]


needs_shared = pytest.mark.skipif(not SHARED_PCAPS.exists(), reason="../shared/pcaps is absent (real captures not available)")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (run `make sysdeps`)")
