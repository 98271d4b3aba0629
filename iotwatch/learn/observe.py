"""A labelled capture → what ``analyze`` computes of it, for training and evaluation.

One run of the pipeline per capture, with the same analysers ``analyze`` attaches: a
:class:`~iotwatch.detect.Detector` (its device-window features and alerts) and an
:class:`~iotwatch.inventory.collect.Inventory` (its rare-frame fingerprints and traffic
profiles, fed by the sidecar with the pipeline's own budgets). The models are trained and scored
on exactly these objects, so what a model learned from is what ``analyze`` feeds it.

Captures are observed in parallel with joblib (the same calls run on a Dask cluster under
``joblib.parallel_config(backend="dask")``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..detect import Detector, DetectSettings
from ..detect.alerts import Alert
from ..errors import InputError
from ..inventory.collect import Inventory
from ..inventory.evidence import Fingerprints
from ..inventory.traffic import DeviceTraffic
from ..pipeline import Settings, run
from ..records import DeviceRecord
from .labels import HostLabel, by_capture, read_many


@dataclass(slots=True)
class Observation:
    """What one ``analyze`` run says of one capture."""

    capture: Path
    window_s: float
    devices: dict[str, DeviceRecord]  # device key → totals
    alerts: list[Alert]
    windows: dict[str, tuple[dict[str, np.ndarray], np.ndarray]]  # device → (window columns, features)
    fingerprints: Fingerprints  # the inventory's, from the sidecar's rare frames
    traffic: dict[str, DeviceTraffic]  # the inventory's, from the raw flow records

    def active_s(self, key: str) -> float:
        """Seconds of the windows in which the device sent or received."""
        cols, _X = self.windows.get(key, ({}, None))
        return len(cols.get("window_start", ())) * self.window_s


def observe(capture: str | Path, *, window_s: float = 60.0, model: Any = None, detect: bool = True,
            identify: bool = True) -> Observation:
    """Analyse one capture as ``analyze`` does (``model``: the behaviour bundle its detector uses).

    ``detect`` / ``identify``: attach the detector / the inventory (each sees the same packets,
    flows and rare frames with or without the other; leaving one out only saves its work)."""
    det = Detector(DetectSettings(window_s=window_s, model=model)) if detect else None
    inv = Inventory() if identify else None  # its identities are not used: the type model is what is learned
    pipe, _captures = run([capture], Settings(window_s=window_s), [], detector=det, inventory=inv)
    devices, _stats = pipe.finish()
    fp = inv.fp if inv is not None else Fingerprints()
    fp.local = None  # its address test (a cached closure) stays here; the signals are kept
    return Observation(Path(capture), window_s, devices, pipe.alerts, det.features() if det is not None else {}, fp,
                       inv.traffic if inv is not None else {})


def observe_labelled(label_files: Iterable[str | Path], *, window_s: float = 60.0, n_jobs: int = 1,
                     model: Any = None, detect: bool = True, identify: bool = True
                     ) -> tuple[list[HostLabel], dict[Path, Observation]]:
    """Read the label files and observe every capture they name once (a missing capture is an
    error, before any analysis)."""
    from joblib import Parallel, delayed

    files = list(label_files)
    labels = read_many(files)
    groups = by_capture(labels)
    missing = [c for c in groups if not c.exists()]
    if missing:
        raise InputError(missing[0], f"capture named in {groups[missing[0]][0].where} does not exist"
                                     + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    caps = sorted(groups)
    got = Parallel(n_jobs=n_jobs)(delayed(observe)(c, window_s=window_s, model=model, detect=detect, identify=identify)
                                  for c in caps)
    return labels, dict(zip(caps, got, strict=True))


def label_devices(labels: Iterable[HostLabel], observed: dict[Path, Observation],
                  warn: Any = None) -> dict[HostLabel, list[str]]:
    """The devices each row names in its capture (:meth:`HostLabel.device_keys`), for the rows
    kept. A row that names none is left out with one line to ``warn``, except a victim known by
    its address only: a server on the internet, or a target that never sent a packet, is no
    device of its own (kept, naming no device; it can carry no alert)."""
    from ..addrs import LocalNets

    nets = LocalNets()
    out: dict[HostLabel, list[str]] = {}
    for lab in labels:
        keys = lab.device_keys(observed[lab.capture].devices, nets.contains)
        if keys or (lab.behaviour == "victim" and not lab.host_mac):
            out[lab] = keys
        elif warn:
            warn(f"{lab.where}: host {lab.host} is not a device in {lab.capture.name}: row left out")
    return out
