"""Labelled captures → the type model, and its honest evaluation (split by physical device).

    labels file (LABELS.tsv columns) ─► per capture: devices + flows (iotwatch.analyze),
        rare frames (dpkt, :mod:`.rare`) ─► per labelled host: features ─► RandomForest
                                                                      └─► bundle (skops + manifest)

Each capture is profiled once and cached under ``$IOTWATCH_CACHE`` (default
``/tmp/iotwatch-inventory-cache``), keyed on the file, its size and time, and the source of the
modules that make the profile, so a re-run only retrains.

Evaluation never lets a physical device be in training and test at once: folds are grouped by
MAC (by IP for hosts without one), since IoT Sentinel has 16 captures of each unit. It is scored
two ways over the same folds:

- per row: each labelled (capture, host) row typed from that capture alone;
- per device: each held-out unit typed once from all its labelled captures together, its
  fingerprints, traffic and totals merged as one ``iotwatch analyze cap1 cap2 ...`` run merges
  them (:meth:`Fingerprints.merge`, :meth:`DeviceTraffic.merge`, :meth:`DeviceRecord.merge`, then
  :func:`.classify.identify`, as :meth:`.analyser.Inventory.conclude` does).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import pickle
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..records import DeviceRecord
from . import analyser, classify, fingerprints, parse, rare, traffic
from .classify import (
    FEATURES,
    MODEL_KIND,
    SCORED_TYPES,
    Identity,
    TypeModel,
    decide,
    features,
    hints,
    identify,
)
from .fingerprints import Fingerprints
from .oui import REGISTRY, Vendor, lookup
from .traffic import DeviceTraffic, merge_traffic, traffic_from_flows

log = logging.getLogger(__name__)

RANDOM_STATE = 0
MODEL_NAME = "type-v1"


@dataclass(slots=True)
class Profile:
    """What the inventory sees of one capture."""

    devices: dict[str, DeviceRecord]
    fingerprints: Fingerprints
    traffic: dict[str, DeviceTraffic]


@dataclass(slots=True)
class Sample:
    file: str
    key: str  # device key in the capture
    group: str  # physical device: MAC, else IP
    label: str
    record: DeviceRecord | None
    sig: fingerprints.DeviceSignals
    traffic: DeviceTraffic | None
    x: np.ndarray


@dataclass(slots=True)
class UnitResult:
    """One held-out physical device typed once from all its labelled captures together."""

    group: str  # physical device: MAC, else IP
    key: str  # its device key
    label: str
    identity: Identity
    captures: int
    rows_right: int  # of its captures, how many its per-capture rows got right
    seen_s: float = 0.0  # seconds it is seen, summed over its captures
    span_s: float = 0.0  # first to last packet over all its captures (what the merged totals say)

    @property
    def predicted(self) -> str:
        return self.identity.device_type

    def reason(self) -> str:
        """One line: what typed it, on which evidence, and how its rows alone fared."""
        i = self.identity
        by = f"classifier {i.classified_by} ({i.type_confidence:.2f})" if i.classified_by else f"rule ({i.type_confidence:.2f})"
        ev = [e for e in i.evidence if not e.startswith("classifier ")][:3]
        return (f"{self.group} ({self.captures} captures, seen {_span(self.seen_s)} within {_span(self.span_s)}): "
                f"{self.label} → {self.predicted} by {by}; {'; '.join(ev) or 'no evidence'}; "
                f"its rows alone {self.rows_right}/{self.captures} right")


def _span(s: float) -> str:
    return f"{s / 86400:.0f} days" if s >= 2 * 86400 else f"{s / 3600:.1f} h" if s >= 7200 else f"{s:.0f} s"


@dataclass(slots=True)
class Evaluation:
    accuracy: float  # over labelled (capture, host) rows
    device_accuracy: float  # over physical devices (a device counts as right when all its rows are)
    n_rows: int
    n_devices: int
    labels: list[str]
    confusion: list[list[int]]  # rows: true label, columns: predicted (labels order)
    report: str  # sklearn classification_report text
    cctv_missed: list[str]  # camera/recorder rows not typed camera/recorder
    cctv_false: list[str]  # other rows typed camera/recorder
    by_rule: int  # rows decided by a rule
    excluded: list[str] = field(default_factory=list)  # labelled rows that are no device of their own
    errors: list[str] = field(default_factory=list)  # "file key: true → predicted"
    # per device, all its captures merged (same folds): one answer per physical device
    unit_accuracy: float = 0.0
    unit_labels: list[str] = field(default_factory=list)
    unit_confusion: list[list[int]] = field(default_factory=list)
    units: list[UnitResult] = field(default_factory=list)

    @property
    def unit_errors(self) -> list[UnitResult]:
        return [u for u in self.units if u.predicted != u.label]

    @staticmethod
    def _table(labels: list[str], confusion: list[list[int]]) -> str:
        w = max((len(x) for x in labels), default=0) + 1
        head = " " * w + "".join(f"{x[:5]:>6}" for x in labels)
        rows = [f"{t:<{w}}" + "".join(f"{n:>6}" for n in r) for t, r in zip(labels, confusion, strict=True)]
        return "\n".join([head, *rows])

    def table(self) -> str:
        """Confusion matrix of the rows as text."""
        return self._table(self.labels, self.confusion)

    def unit_table(self) -> str:
        """Confusion matrix of the devices (captures merged) as text."""
        return self._table(self.unit_labels, self.unit_confusion)

    def summary(self) -> str:
        return (f"type accuracy {self.accuracy:.3f} over {self.n_rows} labelled rows, "
                f"{self.device_accuracy:.3f} over {self.n_devices} physical devices (grouped folds); "
                f"{self.by_rule} rows decided by rule; camera/recorder missed {len(self.cctv_missed)}, "
                f"false {len(self.cctv_false)}; per device from all its captures merged "
                f"{self.unit_accuracy:.3f} over {len(self.units)} devices "
                f"({len(self.units) - len(self.unit_errors)} right)")


# --------------------------------------------------------------------------- profiles

def _code_version() -> str:
    h = hashlib.sha256()
    for mod in (parse, fingerprints, traffic, rare, analyser):
        h.update(Path(mod.__file__ or "").read_bytes())
    return h.hexdigest()[:16]


def _cache_dir() -> Path:
    return Path(os.environ.get("IOTWATCH_CACHE", "/tmp/iotwatch-inventory-cache"))


def profile_capture(path: str | Path, *, cache: bool = True) -> Profile:
    """Devices, rare-frame fingerprints and traffic of one capture (cached)."""
    import iotwatch

    p = Path(path)
    st = p.stat()
    tag = hashlib.sha256(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}|{_code_version()}".encode()).hexdigest()[:24]
    cfile = _cache_dir() / f"{tag}.pkl"
    if cache and cfile.exists():
        try:
            with open(cfile, "rb") as f:
                got = pickle.load(f)  # our own cache file, written below
            if isinstance(got, Profile):
                return got
        except Exception:
            pass
    a = iotwatch.analyze(p)
    fp = Fingerprints()
    for fr in rare.rare_frames(p):
        fp.add(fr)
    prof = Profile(devices=a.devices, fingerprints=fp, traffic=traffic_from_flows(a.flows))
    if cache:
        cfile.parent.mkdir(parents=True, exist_ok=True)
        tmp = cfile.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(prof, f)
        tmp.replace(cfile)
    return prof


def read_labels(label_files: Sequence[str | Path]) -> list[tuple[Path, dict[str, str]]]:
    """(capture path, row) for every row of the labels files; ``file`` is relative to its labels file."""
    out: list[tuple[Path, dict[str, str]]] = []
    for lf in label_files:
        lp = Path(lf)
        with open(lp, newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                out.append((lp.parent / row["file"], row))
    return out


def samples(label_files: Sequence[str | Path], *, include_unknown: bool = False) -> tuple[list[Sample], list[str]]:
    """One sample per labelled (capture, host) row; and the rows that are no device of their own."""
    rows = read_labels(label_files)
    by_file: dict[Path, list[dict[str, str]]] = defaultdict(list)
    for path, row in rows:
        if row["device_type"] == "unknown" and not include_unknown:
            continue
        by_file[path].append(row)
    out: list[Sample] = []
    excluded: list[str] = []
    seen: set[tuple[str, str]] = set()
    for path, frows in sorted(by_file.items()):
        if not path.exists():
            excluded.extend(f"{r['file']} {r['host_mac'] or r['host_ip']}: capture missing" for r in frows)
            continue
        prof = profile_capture(path)
        for r in frows:
            key = next((k for k in (r["host_mac"], r["host_ip"]) if k and k in prof.devices), None)
            if key is None:
                excluded.append(f"{r['file']} {r['host_mac'] or r['host_ip']}: not a device of its own in the capture")
                continue
            if (r["file"], key) in seen:  # one row per behaviour: the device once
                continue
            seen.add((r["file"], key))
            rec = prof.devices.get(key)
            sig = prof.fingerprints.get(key)
            tr = prof.traffic.get(key)
            vendor = lookup(key) if ":" in key else Vendor(None, None, False)
            x = features(rec, sig, tr, vendor, hints(vendor, sig, tr))
            out.append(Sample(r["file"], key, r["host_mac"] or r["host_ip"], r["device_type"], rec, sig, tr, x))
    return out, excluded


# --------------------------------------------------------------------------- model

def _estimator(n_jobs: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    # 100 trees: the same grouped-fold accuracy as 300 here, a third of the bundle
    return RandomForestClassifier(n_estimators=100, min_samples_leaf=1, random_state=RANDOM_STATE, n_jobs=n_jobs)


def _weights(groups: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Every type weighs the same, and within a type every physical device the same, however
    many captures it has (IoT Sentinel has 16 captures per unit, most other sets one)."""
    rows = Counter(groups)
    devices_of: dict[str, set[str]] = defaultdict(set)
    for g, t in zip(groups, labels, strict=True):
        devices_of[t].add(g)
    return np.array([1.0 / (rows[g] * len(devices_of[t])) for g, t in zip(groups, labels, strict=True)])


def _fit(ss: Sequence[Sample], n_jobs: int) -> TypeModel:
    est = _estimator(n_jobs)
    x = np.vstack([s.x for s in ss])
    y = np.array([s.label for s in ss])
    est.fit(x, y, sample_weight=_weights([s.group for s in ss], [s.label for s in ss]))
    return TypeModel(est, MODEL_NAME)


def merge_unit(ss: Sequence[Sample]) -> tuple[str, DeviceRecord | None, Fingerprints, dict[str, DeviceTraffic]]:
    """One physical device's labelled captures as one run of ``iotwatch analyze`` over all of them
    sees it: its key, and its totals, fingerprints and traffic merged across the captures (in
    file order) with the merges the pipeline and :class:`.analyser.Inventory` use. A host that is a
    device by its MAC in one capture and only by its address in another is merged under its MAC
    (none of the labelled units is)."""
    key = ss[0].group if any(s.key == ss[0].group for s in ss) else ss[0].key
    rec: DeviceRecord | None = None
    fp = Fingerprints()
    tr: dict[str, DeviceTraffic] = {}
    for s in sorted(ss, key=lambda s: s.file):
        if s.record is not None:
            rec = s.record if rec is None else rec.merge(s.record)
        fp = fp.merge(Fingerprints(devices={key: s.sig}, frames=s.sig.frames))
        if s.traffic is not None:
            tr = merge_traffic(tr, {key: s.traffic})
    return key, rec, fp, tr


def type_unit(ss: Sequence[Sample], model: TypeModel | None) -> Identity:
    """The identity of one physical device from all its captures together (see :func:`merge_unit`)."""
    key, rec, fp, tr = merge_unit(ss)
    if rec is None:
        return decide(key, None, fp.get(key), tr.get(key), model)
    return identify({key: rec}, fp, tr, model)[key]


def evaluate_samples(ss: Sequence[Sample], *, n_splits: int = 5, n_jobs: int = 1,
                     excluded: Sequence[str] = ()) -> Evaluation:
    """Grouped k-fold (by physical device) of the whole decision: rules + classifier."""
    from sklearn.metrics import classification_report, confusion_matrix
    from sklearn.model_selection import GroupKFold

    groups = np.array([s.group for s in ss])
    y = np.array([s.label for s in ss])
    pred = np.empty(len(ss), dtype=object)
    ruled = 0
    unit_ident: dict[str, Identity] = {}
    folds = GroupKFold(n_splits=min(n_splits, len(set(groups))))
    for tr, te in folds.split(np.zeros(len(ss)), y, groups):
        model = _fit([ss[i] for i in tr], n_jobs)
        held: dict[str, list[Sample]] = defaultdict(list)
        for i in te:
            s = ss[i]
            ident = decide(s.key, s.record, s.sig, s.traffic, model, s.x)
            pred[i] = ident.device_type
            ruled += ident.classified_by is None
            held[s.group].append(s)
        # the same model, which never saw these units, types each once from all its captures
        for g, gs in held.items():
            unit_ident[g] = type_unit(gs, model)
    labels = [t for t in SCORED_TYPES if t in set(y) or t in set(pred)] + (["unknown"] if "unknown" in set(pred) else [])
    acc = float(np.mean(pred == y))
    dev_ok: dict[str, bool] = {}
    for g, t, p in zip(groups, y, pred, strict=True):
        dev_ok[g] = dev_ok.get(g, True) and t == p
    cm = confusion_matrix(y, pred.astype(str), labels=labels)
    rep = classification_report(y, pred.astype(str), labels=labels, zero_division=0)
    miss = [f"{s.file} {s.key}: {s.label} → {p}" for s, p in zip(ss, pred, strict=True)
            if s.label in classify.CCTV and p not in classify.CCTV]
    false = [f"{s.file} {s.key}: {s.label} → {p}" for s, p in zip(ss, pred, strict=True)
             if s.label not in classify.CCTV and p in classify.CCTV]
    errors = [f"{s.file} {s.key}: {s.label} → {p}" for s, p in zip(ss, pred, strict=True) if s.label != p]
    units: list[UnitResult] = []
    by_group: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_group[str(g)].append(i)
    for g, idx in by_group.items():
        key, rec, _, _ = merge_unit([ss[i] for i in idx])
        recs = [ss[i].record for i in idx]
        units.append(UnitResult(group=g, key=key, label=str(y[idx[0]]), identity=unit_ident[g], captures=len(idx),
                                rows_right=int(sum(pred[i] == y[i] for i in idx)),
                                seen_s=sum(r.last_seen - r.first_seen for r in recs if r is not None),
                                span_s=rec.last_seen - rec.first_seen if rec is not None else 0.0))
    uy = [u.label for u in units]
    up = [u.predicted for u in units]
    ulabels = [t for t in SCORED_TYPES if t in set(uy) or t in set(up)] + (["unknown"] if "unknown" in set(up) else [])
    ucm = confusion_matrix(uy, up, labels=ulabels) if units else np.zeros((0, 0), int)
    return Evaluation(accuracy=acc, device_accuracy=float(np.mean(list(dev_ok.values()))), n_rows=len(ss),
                      n_devices=len(dev_ok), labels=labels, confusion=cm.tolist(), report=rep,
                      cctv_missed=miss, cctv_false=false, by_rule=ruled, excluded=list(excluded), errors=errors,
                      unit_accuracy=float(np.mean([a == b for a, b in zip(uy, up, strict=True)])) if units else 0.0,
                      unit_labels=ulabels, unit_confusion=ucm.tolist(), units=units)


def evaluate_type_model(label_files: Sequence[str | Path], *, n_splits: int = 5, n_jobs: int = 1) -> Evaluation:
    """Accuracy, per-class report and confusion matrix with folds grouped by physical device."""
    ss, excluded = samples(label_files)
    return evaluate_samples(ss, n_splits=n_splits, n_jobs=n_jobs, excluded=excluded)


def train_type_model(label_files: Sequence[str | Path], out_dir: str | Path, *, n_jobs: int = 1,
                     n_splits: int = 5) -> tuple[Path, Evaluation]:
    """Fit the type model on every labelled row, evaluate it by grouped folds, write the bundle."""
    from ..bundle import save_bundle

    ss, excluded = samples(label_files)
    ev = evaluate_samples(ss, n_splits=n_splits, n_jobs=n_jobs, excluded=excluded)
    model = _fit(ss, n_jobs)
    import dpkt
    import netaddr

    path = save_bundle(
        out_dir, model.estimator, kind=MODEL_KIND, features=FEATURES, classes=model.classes,
        training=[str(Path(f)) for f in label_files],
        metrics={"split": f"GroupKFold({n_splits}) by physical device (MAC)", "accuracy": round(ev.accuracy, 4),
                 "device_accuracy": round(ev.device_accuracy, 4), "rows": ev.n_rows, "devices": ev.n_devices,
                 "labels": ev.labels, "confusion": ev.confusion, "cctv_missed": len(ev.cctv_missed),
                 "cctv_false": len(ev.cctv_false), "decided_by_rule": ev.by_rule, "excluded_rows": len(ev.excluded),
                 "per_device": {
                     "protocol": "each held-out physical device typed once from all its labelled captures merged "
                                 "(Fingerprints/DeviceTraffic/DeviceRecord.merge, as one `iotwatch analyze` run of "
                                 "them); same folds",
                     "accuracy": round(ev.unit_accuracy, 4), "devices": len(ev.units),
                     "right": len(ev.units) - len(ev.unit_errors), "decided_by_rule":
                         sum(u.identity.classified_by is None for u in ev.units),
                     "labels": ev.unit_labels, "confusion": ev.unit_confusion,
                     "wrong": [f"{u.group}: {u.label} → {u.predicted}" for u in ev.unit_errors]}},
        thresholds={"rule_decides": classify.RULE_DECIDES},
        extra={"model_name": MODEL_NAME, "oui_registry": REGISTRY, "dpkt": dpkt.__version__,
               "netaddr": netaddr.__version__, "random_state": RANDOM_STATE},
    )
    return path, ev


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m iotwatch.inventory.train LABELS.tsv... --out DIR``: train, print the evaluation."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m iotwatch.inventory.train")
    ap.add_argument("labels", nargs="+")
    ap.add_argument("--out", default=None, help="bundle folder (evaluation only without it)")
    ap.add_argument("--jobs", type=int, default=1)
    a = ap.parse_args(argv)
    if a.out:
        path, ev = train_type_model(a.labels, a.out, n_jobs=a.jobs)
    else:
        path, ev = None, evaluate_type_model(a.labels, n_jobs=a.jobs)
    w = sys.stdout.write
    w(ev.summary() + "\n\nPer row (each labelled row typed from its capture alone):\n\n" + ev.report + "\n"
      + ev.table() + "\n")
    for e in ev.errors:
        w(f"error: {e}\n")
    right = len(ev.units) - len(ev.unit_errors)
    w(f"\nPer device (each held-out unit typed once from all its labelled captures merged): "
      f"{ev.unit_accuracy:.3f} over {len(ev.units)} devices ({right} right)\n\n" + ev.unit_table() + "\n")
    for u in ev.unit_errors:
        w(f"wrong device: {u.reason()}\n")
    for e in ev.excluded:
        w(f"excluded: {e}\n")
    if path:
        w(f"bundle: {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
