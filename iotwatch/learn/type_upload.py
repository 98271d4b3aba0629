"""What each device type uploads when nothing is wrong: the table the upload rule judges a
device by when it has no history of its own (``iotwatch/detect/type_upload.json``).

``python -m iotwatch.learn.type_upload LABELS... [--out FILE] [--n-jobs N]`` (``make type-upload``)
observes every capture of the label files as ``analyze`` does (:mod:`.observe`), takes the hosts
labelled normal (a host with a misbehaving row in the same capture is left out), types each
by the inventory (the type ``analyze`` gives it, which is what the rule will know at run time)
and measures its upload to external addresses per minute, in the windows it was active in, at
the rate it kept while seen (:func:`iotwatch.detect.rules.active_upload`, as the rule reads it).
Per type: how many devices and windows, the median, the 99th percentile and the largest minute,
and how many of those benign minutes the rule would call a surge with the table's reference (the
check that the table cannot raise an alert on what it learned from: 0 for every type written).
Only types with :data:`MIN_DEVICES` devices and :data:`MIN_WINDOWS` windows get an entry;
computers, phones, routers and devices of unknown type never do (what a person's machine or the
gateway uploads has no type norm: :data:`iotwatch.detect.type_upload.NO_NORM`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ..detect.rules import Thresholds, active_upload
from ..detect.type_upload import NO_NORM, TABLE, VERSION
from ..inventory.classify import TYPES
from .labels import BAD
from .observe import label_devices, observe_labelled

MIN_DEVICES = 3  # a type's norm rests on at least this many devices ...
MIN_WINDOWS = 20  # ... and this many minutes of them
QUANTILE = 0.99  # the reference: what the type's normal devices stay under 99 minutes in 100


def per_type_uploads(label_files: Iterable[str | Path], *, window_s: float = 60.0,
                     n_jobs: int = 1) -> tuple[dict[str, list[np.ndarray]], dict[str, set[str]], list[str]]:
    """Per inventory type: the upload per minute of each benign device's windows; the devices
    (MAC or address) of each type; the label files read."""
    files = [str(f) for f in label_files]
    labels, observed = observe_labelled(files, window_s=window_s, n_jobs=n_jobs, model=None)
    named = label_devices(labels, observed)
    bad = {(lab.capture, k) for lab, keys in named.items() if lab.behaviour in BAD for k in keys}
    ups: dict[str, list[np.ndarray]] = {}
    devs: dict[str, set[str]] = {}
    for lab, keys in named.items():
        if lab.behaviour != "normal":
            continue
        obs = observed[lab.capture]
        for key in keys:
            rec = obs.devices.get(key)
            cols, _X = obs.windows.get(key, ({}, None))
            if (lab.capture, key) in bad or rec is None or not cols or not len(cols.get("window_start", ())):
                continue
            kind = rec.device_type or "unknown"
            w = np.zeros(len(cols["window_start"]), dtype=[("window_start", float), ("upload_bytes", float)])
            w["window_start"], w["upload_bytes"] = cols["window_start"], cols["upload_bytes"]
            up = active_upload(w, window_s, rec.first_seen, rec.last_seen) * (60.0 / window_s)
            ups.setdefault(kind, []).append(up)
            devs.setdefault(kind, set()).add(rec.mac or key)
    return ups, devs, files


def table(ups: dict[str, list[np.ndarray]], devs: dict[str, set[str]], files: list[str],
          th: Thresholds | None = None) -> dict[str, object]:
    """The versioned table (see the module's docstring)."""
    th = th or Thresholds()
    types: dict[str, dict[str, object]] = {}
    for kind in TYPES:
        if kind in NO_NORM or kind not in ups:
            continue
        up = np.concatenate(ups[kind])
        if len(devs[kind]) < MIN_DEVICES or len(up) < MIN_WINDOWS:
            continue
        ref = float(np.quantile(up, QUANTILE))
        would = int(((up >= th.surge_x * max(ref, th.surge_base_floor)) & (up >= th.surge_min_bytes)).sum())
        types[kind] = {"devices": len(devs[kind]), "windows": len(up),
                       "median_bytes_per_min": round(float(np.median(up)), 1),
                       "p99_bytes_per_min": round(ref, 1), "max_bytes_per_min": round(float(up.max()), 1),
                       "benign_minutes_judged_surges": would}
    return {"version": VERSION,
            "what": ("upload to external addresses per minute of devices labelled normal, by the type the "
                     "inventory gives them; the upload rule's reference for a device without history of its "
                     f"own is p99_bytes_per_min (docs/detection.md, \"Baselines\"). Types with fewer than "
                     f"{MIN_DEVICES} devices or {MIN_WINDOWS} minutes, and {', '.join(NO_NORM)}, have no entry."),
            "made": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "made_by": "python -m iotwatch.learn.type_upload " + " ".join(files),
            "label_files": files, "types": types}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m iotwatch.learn.type_upload", description=__doc__.split("\n\n")[0])
    ap.add_argument("labels", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=TABLE)
    ap.add_argument("--n-jobs", "-j", type=int, default=1)
    a = ap.parse_args(argv)
    t = table(*per_type_uploads(a.labels, n_jobs=a.n_jobs))
    bad = {k: v["benign_minutes_judged_surges"] for k, v in t["types"].items()  # type: ignore[attr-defined]
           if v["benign_minutes_judged_surges"]}
    for k, v in t["types"].items():  # type: ignore[attr-defined]
        print(f"{k:10} {v['devices']:5} devices {v['windows']:7} minutes  p99 {v['p99_bytes_per_min']:>14,.0f} B/min"
              f"  max {v['max_bytes_per_min']:>14,.0f}")
    if bad:
        print(f"{a.out}: not written: the rule would call benign minutes surges with this table: {bad}",
              file=sys.stderr)
        return 1
    a.out.write_text(json.dumps(t, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
