"""A labelled capture → what ``analyze`` computes of it, for training and evaluation.

One run of the pipeline per capture, with the analysers ``analyze`` attaches, made where it
makes them (:func:`iotwatch.pipeline.build_analysers`): the
:class:`~iotwatch.inventory.analyser.Inventory` (its rare-frame fingerprints and traffic
profiles, fed by the sidecar with the pipeline's own budgets) and the
:class:`~iotwatch.detect.Detector` (its device-window features and alerts, concluded after the
inventory as in ``analyze``). The models are trained and scored on exactly these objects, so what
a model learned from is what ``analyze`` feeds it.

Captures are observed in parallel with joblib (the same calls run on a Dask cluster under
``joblib.parallel_config(backend="dask")``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..detect import Detector
from ..detect.alerts import Alert
from ..errors import InputError
from ..inventory.analyser import Inventory
from ..inventory.fingerprints import Fingerprints
from ..inventory.traffic import DeviceTraffic
from ..pipeline import build_analysers, run
from ..records import DeviceRecord
from ..settings import Settings
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


def observe(capture: str | Path, *, window_s: float = 60.0, model: Any = None, detect: bool = True) -> Observation:
    """Analyse one capture as ``analyze`` does, with the shipped type model and ``model`` (a
    behaviour bundle, or None: rules only). ``detect=False``: the inventory alone (it concludes
    first and never reads the detector's results: the same fingerprints and traffic)."""
    settings = Settings(window_s=window_s, detect=detect, identify=True,
                        model=Path(model.path) if model is not None else None, no_model=model is None)
    analysers = build_analysers(settings)
    pipe, _captures = run([capture], settings, [], analysers=analysers)
    devices, _stats = pipe.finish()
    inv = next(a for a in analysers if isinstance(a, Inventory))
    det = next((a for a in analysers if isinstance(a, Detector)), None)
    fp = inv.fp
    fp.local = None  # its address test (a cached closure) stays here; the signals are kept
    return Observation(Path(capture), window_s, devices, pipe.alerts, det.features(devices=devices) if det is not None else {}, fp,
                       inv.traffic)


def observe_labelled(label_files: Iterable[str | Path], *, window_s: float = 60.0, n_jobs: int = 1,
                     model: Any = None, detect: bool = True) -> tuple[list[HostLabel], dict[Path, Observation]]:
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
    got = Parallel(n_jobs=n_jobs)(delayed(observe)(c, window_s=window_s, model=model, detect=detect)
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
        keys = lab.device_keys(observed[lab.capture].devices, nets.is_local)
        if keys or (lab.behaviour == "victim" and not lab.host_mac):
            out[lab] = keys
        elif warn:
            warn(f"{lab.where}: host {lab.host} is not a device in {lab.capture.name}: row left out")
    return out
