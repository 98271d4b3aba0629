"""Labelled captures → the type model (what a device is), and its honest evaluation.

    label files ─► per capture: one ``analyze`` run (:mod:`.observe`): devices, the inventory's
        fingerprints and traffic ─► per labelled host: features ─► RandomForest ─► bundle

The inventory's :class:`~iotwatch.inventory.analyser.Inventory` is fed by the pipeline's sidecar
with its own budgets, so the type model learns from exactly what ``analyze`` gives it.

Evaluation never lets a physical device be in training and test at once: folds are grouped by
MAC (by IP for hosts without one), since IoT Sentinel has 16 captures of each unit. It is scored
two ways over the same folds:

- per row: each labelled (capture, host) row typed from that capture alone;
- per device: each held-out unit typed once from all its labelled captures together, its
  fingerprints, traffic and totals merged as one ``iotwatch analyze cap1 cap2 ...`` run merges
  them (:meth:`Fingerprints.merge`, :meth:`DeviceTraffic.merge`, :meth:`DeviceRecord.merge`, then
  :func:`~iotwatch.inventory.classify.identify`, as :meth:`iotwatch.inventory.analyser.Inventory.conclude` does).

Given a bundle (``evaluate --kind device_type --model DIR``), every row and unit is typed by that
bundle instead (no folds): a score on held-out labels.

Rows whose type is not one of :data:`~iotwatch.inventory.classify.TYPES` (a typo), whose host is
no device of its capture, and types with fewer than :data:`MIN_DEVICES` devices are each said in
one line; ``unknown`` rows are left out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..bundle import save_bundle
from ..errors import InputError
from ..inventory import classify
from ..inventory.classify import (
    FEATURES,
    MODEL_KIND,
    SCORED_TYPES,
    TYPES,
    Identity,
    TypeModel,
    decide,
    features,
    hints,
    identify,
)
from ..inventory.fingerprints import DeviceSignals, Fingerprints
from ..inventory.oui import REGISTRY, Vendor, lookup
from ..inventory.traffic import DeviceTraffic, merge_traffic
from ..records import DeviceRecord
from .behaviour import check_out, sha256_of
from .forest import FOLDS, forest, grouped_folds, quiet
from .labels import HostLabel

if TYPE_CHECKING:
    from ..inventory.products import Catalogue
from .observe import label_devices, observe_labelled

RANDOM_STATE = 0
MODEL_NAME = "type-v1"
#: a type learned from fewer physical devices than this cannot be scored by device-grouped folds
MIN_DEVICES = 2

Warn = Callable[[str], None]


@dataclass(slots=True)
class Sample:
    file: str
    key: str  # device key in the capture
    group: str  # physical device: MAC, else IP
    label: str
    record: DeviceRecord | None
    sig: DeviceSignals
    traffic: DeviceTraffic | None
    x: np.ndarray
    capture: str = ""  # its path (``file`` is as the label file names it)


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
    scored_by: str = "grouped folds"  # or "model NAME": a given bundle typed every row and unit

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
                f"{self.device_accuracy:.3f} over {self.n_devices} physical devices ({self.scored_by}); "
                f"{self.by_rule} rows decided by rule; camera/recorder missed {len(self.cctv_missed)}, "
                f"false {len(self.cctv_false)}; per device from all its captures merged "
                f"{self.unit_accuracy:.3f} over {len(self.units)} devices "
                f"({len(self.units) - len(self.unit_errors)} right)")


# --------------------------------------------------------------------------- samples

def _shown(lab: HostLabel) -> str:
    """The capture as its label file names it."""
    try:
        return str(lab.capture.relative_to(lab.source.parent))
    except ValueError:
        return str(lab.capture)


def samples(label_files: Sequence[str | Path], *, n_jobs: int = 1, include_unknown: bool = False,
            warn: Warn | None = None) -> tuple[list[Sample], list[str]]:
    """One sample per labelled (capture, device); and the rows left out, with why (each also one
    line to ``warn``, except ``unknown`` rows and rows without a device_type)."""
    labels, observed = observe_labelled(label_files, n_jobs=n_jobs, detect=False)
    excluded: list[str] = []
    typed: list[HostLabel] = []
    untyped = 0
    for lab in labels:
        if not lab.device_type:
            untyped += 1
        elif lab.device_type not in TYPES:
            line = f"device_type {lab.device_type!r} is not one of {', '.join(TYPES)}: row left out"
            excluded.append(f"{_shown(lab)} {lab.host}: {line}")
            if warn:
                warn(f"{lab.where}: {line}")
        elif lab.device_type != "unknown" or include_unknown:
            typed.append(lab)
    if untyped and warn:
        warn(f"{untyped} label row{'s' * (untyped != 1)} without a device_type: left out of the type model")
    named = label_devices(typed, observed, warn)
    excluded += [f"{_shown(lab)} {lab.host}: not a device of its own in the capture"
                 for lab in typed if not named.get(lab)]
    out: list[Sample] = []
    seen: set[tuple[Path, str]] = set()
    for lab in sorted(named, key=lambda x: (str(x.capture), x.line)):
        obs = observed[lab.capture]
        for key in named[lab]:
            if (lab.capture, key) in seen:  # one row per behaviour: the device once
                continue
            seen.add((lab.capture, key))
            rec = obs.devices.get(key)
            sig = obs.fingerprints.get(key)
            tr = obs.traffic.get(key)
            vendor = lookup(key) if ":" in key else Vendor(None, None, False)
            x = features(rec, sig, tr, vendor, hints(vendor, sig, tr))
            out.append(Sample(_shown(lab), key, lab.host, lab.device_type, rec, sig, tr, x, str(lab.capture)))
    return out, excluded


def type_problems(ss: Sequence[Sample]) -> list[str]:
    """One line per type with too few physical devices to learn from or to score."""
    devices: dict[str, set[str]] = defaultdict(set)
    for s in ss:
        devices[s.label].add(s.group)
    return [f"type {t}: {len(d)} device{'s' * (len(d) != 1)}, fewer than {MIN_DEVICES}: learned from one unit, "
            "scored by no held-out device" for t, d in sorted(devices.items()) if len(d) < MIN_DEVICES]


# --------------------------------------------------------------------------- model


def _weights(groups: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Every type weighs the same, and within a type every physical device the same, however
    many captures it has (IoT Sentinel has 16 captures per unit, most other sets one)."""
    rows = Counter(groups)
    devices_of: dict[str, set[str]] = defaultdict(set)
    for g, t in zip(groups, labels, strict=True):
        devices_of[t].add(g)
    return np.array([1.0 / (rows[g] * len(devices_of[t])) for g, t in zip(groups, labels, strict=True)])


def _fit(ss: Sequence[Sample], n_jobs: int) -> TypeModel:
    # 100 trees: the same grouped-fold accuracy as 300 here, a third of the bundle
    est = forest(RANDOM_STATE, n_jobs)
    x = np.vstack([s.x for s in ss])
    y = np.array([s.label for s in ss])
    with quiet():
        est.fit(x, y, sample_weight=_weights([s.group for s in ss], [s.label for s in ss]))
    return TypeModel(est, MODEL_NAME)


def merge_unit(ss: Sequence[Sample]) -> tuple[str, DeviceRecord | None, Fingerprints, dict[str, DeviceTraffic]]:
    """One physical device's labelled captures as one run of ``iotwatch analyze`` over all of them
    sees it: its key, and its totals, fingerprints and traffic merged across the captures (in
    file order) with the merges the pipeline and :class:`~iotwatch.inventory.analyser.Inventory` use. A host that is a
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


def evaluate_samples(ss: Sequence[Sample], *, n_splits: int = FOLDS, n_jobs: int = 1,
                     excluded: Sequence[str] = (), model: TypeModel | None = None) -> Evaluation:
    """Grouped k-fold (by physical device) of the whole decision: rules + classifier; or, given
    ``model``, the whole decision with that model on every row and unit (no folds)."""
    from sklearn.metrics import classification_report, confusion_matrix

    groups = np.array([s.group for s in ss])
    y = np.array([s.label for s in ss])
    pred = np.empty(len(ss), dtype=object)
    ruled = 0
    unit_ident: dict[str, Identity] = {}
    if model is not None:
        splits: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(0, np.int64), np.arange(len(ss)))]
    else:
        splits = list(grouped_folds(groups, n_splits))
        if not splits:
            raise ValueError("device-grouped folds need samples of at least 2 devices")
    for tr, te in splits:
        fold_model = model if model is not None else _fit([ss[i] for i in tr], n_jobs)
        held: dict[str, list[Sample]] = defaultdict(list)
        for i in te:
            s = ss[i]
            ident = decide(s.key, s.record, s.sig, s.traffic, fold_model, s.x)
            pred[i] = ident.device_type
            ruled += ident.classified_by is None
            held[s.group].append(s)
        # the same model, which never saw these units, types each once from all its captures
        for g, gs in held.items():
            unit_ident[g] = type_unit(gs, fold_model)
    labels = [t for t in SCORED_TYPES if t in set(y) or t in set(pred)] + (["unknown"] if "unknown" in set(pred) else [])
    acc = float(np.mean(pred == y))
    dev_ok: dict[str, bool] = {}
    for g, t, p in zip(groups, y, pred, strict=True):
        dev_ok[g] = dev_ok.get(g, True) and t == p
    with quiet():
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
    with quiet():
        ucm = confusion_matrix(uy, up, labels=ulabels) if units else np.zeros((0, 0), int)
    return Evaluation(accuracy=acc, device_accuracy=float(np.mean(list(dev_ok.values()))), n_rows=len(ss),
                      n_devices=len(dev_ok), labels=labels, confusion=cm.tolist(), report=rep,
                      cctv_missed=miss, cctv_false=false, by_rule=ruled, excluded=list(excluded), errors=errors,
                      unit_accuracy=float(np.mean([a == b for a, b in zip(uy, up, strict=True)])) if units else 0.0,
                      unit_labels=ulabels, unit_confusion=ucm.tolist(), units=units,
                      scored_by="grouped folds" if model is None else f"model {model.name}")


def _enough(label_files: Sequence[str | Path], ss: Sequence[Sample], *, folds: bool) -> None:
    """Refuse, in one line, samples that cannot be learned from or scored."""
    if not ss:
        raise InputError(label_files[0], "no labelled device found (do the hosts match the captures?)")
    n = len({s.group for s in ss})
    if folds and n < 2:
        raise InputError(label_files[0], f"{n} labelled device: device-grouped folds need at least 2 "
                                         "(or score a trained bundle with evaluate --model)")


def evaluate_type_model(label_files: Sequence[str | Path], *, n_splits: int = FOLDS, n_jobs: int = 1,
                        model: TypeModel | None = None, warn: Warn | None = None) -> Evaluation:
    """Accuracy, per-class report and confusion matrix: by folds grouped by physical device, or
    of the given ``model`` on these (held-out) labels."""
    ss, excluded = samples(label_files, n_jobs=n_jobs, warn=warn)
    _enough(label_files, ss, folds=model is None)
    return evaluate_samples(ss, n_splits=n_splits, n_jobs=n_jobs, excluded=excluded, model=model)


def train_type_model(label_files: Sequence[str | Path], out_dir: str | Path, *, n_jobs: int = 1,
                     n_splits: int = FOLDS, force: bool = False, warn: Warn | None = None
                     ) -> tuple[Path, Evaluation]:
    """Fit the type model on every labelled row, evaluate it by grouped folds, write the bundle.

    Raises :class:`InputError` for an unusable ``out_dir`` (before any analysis), no labelled
    device, or fewer than two types (unless ``force``)."""
    import dpkt
    import netaddr

    check_out(out_dir)
    ss, excluded = samples(label_files, n_jobs=n_jobs, warn=warn)
    _enough(label_files, ss, folds=True)
    kinds = sorted({s.label for s in ss})
    if len(kinds) < 2 and not force:
        raise InputError(label_files[0], f"only the type {kinds[0]} is labelled: such a model tells nothing apart "
                                         "(label more types, or --force to write it anyway)")
    for line in type_problems(ss):
        if warn:
            warn(line)
    ev = evaluate_samples(ss, n_splits=n_splits, n_jobs=n_jobs, excluded=excluded)
    model = _fit(ss, n_jobs)
    model.estimator.n_jobs = 1  # typing a few devices: no thread pool
    captures = sorted({s.capture or s.file for s in ss})
    path = save_bundle(
        out_dir, model.estimator, kind=MODEL_KIND, features=FEATURES, classes=model.classes,
        training=captures,
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
               "netaddr": netaddr.__version__, "random_state": RANDOM_STATE,
               "features_from": "the pipeline's Inventory (sidecar rare frames, raw flow records), as `analyze`",
               "label_files": [{"path": str(p), "sha256": sha256_of(Path(p))} for p in label_files]},
    )
    return path, ev


def train_catalogue(label_files: Sequence[str | Path], out_dir: str | Path, *, n_jobs: int = 1) -> Catalogue | None:
    """The product catalogue the label files name (:func:`iotwatch.learn.products.from_labels`),
    profiled by the pipeline's inventory, measured leaving one capture set out and saved to
    ``out_dir``; None when no row names a product."""
    from . import products

    check_out(out_dir)
    items = products.from_labels(label_files)
    if not items:
        return None
    corpus = [r / f for r in products.corpus_roots(label_files) for f in ("MANIFEST.tsv", "iot_sentinel/MODELS.tsv")]
    training = {"label_files": [{"path": str(p), "sha256": sha256_of(Path(p))} for p in [*label_files, *corpus]],
                "captures": len({str(x.path) for x in items}), "products": len({x.product for x in items})}
    return products.rebuild("", out_dir, jobs=n_jobs, items=items, training=training)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m iotwatch.learn.device_type LABELS.tsv... [--out DIR]``: train (or only
    evaluate), print the evaluation."""
    import argparse
    import sys

    from ..errors import IotwatchError

    ap = argparse.ArgumentParser(prog="python -m iotwatch.learn.device_type")
    ap.add_argument("labels", nargs="+")
    ap.add_argument("--out", default=None, help="bundle folder (evaluation only without it)")
    ap.add_argument("--jobs", type=int, default=1)
    a = ap.parse_args(argv)

    def warn(line: str) -> None:
        sys.stderr.write(f"warning: {line}\n")

    try:
        if a.out:
            path, ev = train_type_model(a.labels, a.out, n_jobs=a.jobs, warn=warn)
        else:
            path, ev = None, evaluate_type_model(a.labels, n_jobs=a.jobs, warn=warn)
    except IotwatchError as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
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
