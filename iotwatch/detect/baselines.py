"""Each device's normal upload, kept between runs: ``baselines.json`` written and read here.

A run writes the median upload per window of every device; ``--baseline`` gives that file (or
its output folder) to a later run, whose surges are then judged against it instead of against
the quiet part of its own capture.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import InputError, OutputError

#: what baselines.json holds, said in the file itself
WHAT = ("each device's median upload to external addresses per window, over the windows judged normal: "
        "no alert episode of the device touches them (windows_left_out counts the others); a device "
        "with no normal window has no baseline")


def write_baselines(path: Path, baselines: dict[str, dict[str, float]], window_s: float) -> None:
    """Write a run's per-device baselines (``Detector.baselines()``) as ``baselines.json``, replaced
    atomically (a live capture rewrites it while others may read it)."""
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps({"window_s": window_s, "what": WHAT, "devices": baselines}, indent=1) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"{path}: cannot write: {e.strerror or e}") from None


def load_baselines(path: str | Path, window_s: float) -> dict[str, float]:
    """Per-device upload baselines from an earlier run: its ``baselines.json`` or its output folder."""
    p = Path(path)
    if p.is_dir():
        p = p / "baselines.json"
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(p, "no such baseline file (give the baselines.json of an earlier `iotwatch analyze --out`)") from None
    except (OSError, ValueError) as e:
        raise InputError(p, f"not a baseline file ({e})") from None
    devs = data.get("devices") if isinstance(data, dict) else None
    if not isinstance(devs, dict):
        raise InputError(p, "not a baseline file (no \"devices\" object)")
    out = {}
    for dev, v in devs.items():
        try:
            per = float(v["upload_bytes_per_window"]) * window_s / float(v.get("window_s", window_s))
        except (KeyError, TypeError, ValueError):
            raise InputError(p, f"baseline of {dev} lacks upload_bytes_per_window") from None
        out[dev] = per
    return out
