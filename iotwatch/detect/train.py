"""Train and evaluate the behaviour model from labelled captures.

Each capture is analysed (in parallel with joblib: the same calls run on a Dask cluster under
``joblib.parallel_config(backend="dask")``) into per device window features; windows of a host
labelled with a behaviour, from its first bad packet to its last, take that behaviour's class, all
other windows of labelled hosts are ``normal`` (victims too: being attacked is not misbehaving),
and windows of unlabelled hosts are left out. Cross-validation splits by device (all windows of
one MAC, across captures, fall in the same fold), never at random over the windows of one
episode. The decision thresholds come from the out-of-fold probabilities: a class's threshold is
set above every normal window's probability for it, so the model alone does not accuse a
healthy device of the training set.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..labels import HostLabel, by_capture, read_many
from .features import FEATURE_NAMES, FEATURES
from .model import CLASSES, KIND

#: when several behaviours overlap in one window (the hospital), the window takes the first of
#: these: the one its traffic shows most
PRIORITY = ("flood", "exfil", "scan", "bruteforce", "c2")


@dataclass(slots=True)
class Dataset:
    X: np.ndarray
    y: np.ndarray  # class names
    groups: np.ndarray  # device identity
    meta: list[tuple[str, str, float]] = field(default_factory=list)  # capture, device, window start

    @classmethod
    def empty(cls) -> Dataset:
        return cls(np.zeros((0, len(FEATURES))), np.array([], dtype=object), np.array([], dtype=object), [])

    def __len__(self) -> int:
        return len(self.y)

    @staticmethod
    def concat(parts: list[Dataset]) -> Dataset:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Dataset.empty()
        return Dataset(np.vstack([p.X for p in parts]), np.concatenate([p.y for p in parts]),
                       np.concatenate([p.groups for p in parts]), [m for p in parts for m in p.meta])


def window_labels(starts: np.ndarray, window_s: float, labels: list[HostLabel]) -> np.ndarray:
    y = np.full(len(starts), "normal", dtype=object)
    for beh in reversed(PRIORITY):
        for lab in labels:
            if lab.behaviour != beh or lab.first_ts is None:
                continue
            end = lab.end_ts if lab.end_ts is not None else np.inf
            on = (starts + window_s > lab.first_ts) & (starts <= end)
            y[on] = beh
    return y


def capture_dataset(capture: Path, labels: list[HostLabel], window_s: float = 60.0,
                    model: Any = None) -> tuple[Dataset, list[Any], dict[str, Any], dict[str, float]]:
    """Analyse one capture; return its labelled windows, its alerts, its devices and each
    device's active time (seconds of the windows in which it sent or received)."""
    from ..pipeline import Settings, run
    from .detector import Detector, DetectSettings

    det = Detector(DetectSettings(window_s=window_s, model=model))
    pipe, _captures = run([capture], Settings(window_s=window_s), [], detector=det)
    devices, _stats = pipe.finish()
    parts = []
    feats = det.features()
    active = {dev: len(cols["window_start"]) * window_s for dev, (cols, _X) in feats.items()}
    for dev, (cols, X) in feats.items():
        rec = devices.get(dev)
        mac = rec.mac if rec is not None else None
        ips = rec.ips if rec is not None else [dev]
        mine = [lab for lab in labels if lab.matches(mac, ips)]
        if not mine or not len(X):
            continue
        starts = cols["window_start"]
        y = window_labels(starts, window_s, mine)
        group = mac if mac else f"{capture.name}:{dev}"
        parts.append(Dataset(X, y, np.full(len(y), group, dtype=object),
                             [(str(capture), dev, float(s)) for s in starts]))
    return Dataset.concat(parts), pipe.alerts, devices, active


def build_dataset(label_files: list[str | Path], *, window_s: float = 60.0, n_jobs: int = 1, model: Any = None
                  ) -> tuple[Dataset, dict[Path, tuple[list[Any], dict[str, Any], dict[str, float]]], list[HostLabel]]:
    from joblib import Parallel, delayed

    labels = read_many(label_files)
    groups = by_capture(labels)
    missing = [c for c in groups if not c.exists()]
    if missing:
        from ..errors import InputError

        raise InputError(missing[0], f"capture named in {groups[missing[0]][0].source} does not exist"
                                     + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    caps = sorted(groups)
    results = Parallel(n_jobs=n_jobs)(delayed(capture_dataset)(c, groups[c], window_s, model) for c in caps)
    data = Dataset.concat([r[0] for r in results])
    per_capture = {c: (r[1], r[2], r[3]) for c, r in zip(caps, results, strict=True)}
    return data, per_capture, labels


def make_estimator(seed: int, n_jobs: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    # A forest: robust to features on wildly different scales (packets vs ratios), no scaling to
    # ship, calibrated enough for thresholds, and every type it needs is on skops' trusted list.
    return RandomForestClassifier(n_estimators=100, min_samples_leaf=2, class_weight="balanced_subsample",
                                  random_state=seed, n_jobs=n_jobs)


def window_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    return {"per_class": {c: {"precision": round(float(p[k]), 4), "recall": round(float(r[k]), 4),
                              "f1": round(float(f[k]), 4), "support": int(s[k])} for k, c in enumerate(classes)},
            "confusion": {"labels": classes, "matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist()}}


def cross_validate(data: Dataset, seed: int, n_jobs: int, folds: int = 5) -> tuple[np.ndarray, list[str]]:
    """Out-of-fold class probabilities, folds grouped by device."""
    from sklearn.model_selection import GroupKFold

    classes = sorted(set(data.y))
    oof = np.zeros((len(data), len(classes)))
    n_groups = len(set(data.groups))
    k = min(folds, n_groups)
    if k < 2:
        return oof, classes
    for tr, te in GroupKFold(n_splits=k).split(data.X, data.y, data.groups):
        est = make_estimator(seed, n_jobs).fit(data.X[tr], data.y[tr])
        p = est.predict_proba(data.X[te])
        for j, c in enumerate(est.classes_):
            oof[te, classes.index(c)] = p[:, j]
    return oof, classes


def thresholds_from(oof: np.ndarray, classes: list[str], y: np.ndarray) -> dict[str, float]:
    out = {}
    normal = y == "normal"
    for j, c in enumerate(classes):
        if c == "normal":
            continue
        worst = float(oof[normal, j].max()) if normal.any() else 0.0
        out[c] = round(min(0.99, max(0.9, worst + 0.02)), 4)
    return out


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def train(label_files: list[str | Path], out: str | Path, *, window_s: float = 60.0, n_jobs: int = 1,
          seed: int = 0, log: Any = print) -> Path:
    from ..bundle import save_bundle

    log(f"analysing the captures of {len(label_files)} label file(s) (n_jobs={n_jobs})")
    data, _per, labels = build_dataset(label_files, window_s=window_s, n_jobs=n_jobs)
    if not len(data):
        from ..errors import InputError

        raise InputError(label_files[0], "no labelled device windows found (do the hosts match the captures?)")
    counts = Counter(data.y.tolist())
    log(f"{len(data)} windows of {len(set(data.groups))} devices: " + ", ".join(f"{c} {n}" for c, n in counts.most_common()))
    oof, classes = cross_validate(data, seed, n_jobs)
    pred = np.array(classes, dtype=object)[oof.argmax(axis=1)] if len(classes) else data.y
    metrics = {"cross_validation": "GroupKFold by device, out-of-fold windows", **window_metrics(data.y, pred, classes),
               "windows": len(data), "devices": len(set(data.groups)), "class_windows": dict(counts)}
    thresholds = thresholds_from(oof, classes, data.y)
    est = make_estimator(seed, n_jobs).fit(data.X, data.y)
    est.n_jobs = 1  # predicting a few windows: no process pool
    unknown = [c for c in est.classes_ if c not in CLASSES]
    if unknown:
        raise ValueError(f"unexpected classes {unknown}")
    captures = sorted({str(lab.capture) for lab in labels})
    path = save_bundle(out, est, kind=KIND, features=FEATURES, classes=[str(c) for c in est.classes_],
                       training=captures, metrics=metrics, thresholds=thresholds,
                       extra={"window_s": window_s, "seed": seed,
                              "label_files": [{"path": str(p), "sha256": sha256_of(Path(p))} for p in label_files],
                              "estimator_params": {k: v for k, v in est.get_params().items()
                                                   if isinstance(v, int | float | str | type(None))},
                              "feature_names": FEATURE_NAMES})
    log(f"model written to {path} (thresholds {thresholds})")
    return path
