"""Labelled captures → the behaviour model (what a device does, per window).

Each capture is observed once (:mod:`.observe`: the pipeline's own detector windows and
features). The model is multi-label: one binary forest per behaviour, over that behaviour's view
(:data:`~iotwatch.detect.features.VIEWS`) and monotone in it. A window of a host labelled
with a behaviour, from its first bad packet to its last, shows that behaviour; a window may show
several (the hospital's camera scans, brute-forces, beacons and uploads at once, and teaches all of
them, each to its own forest); other windows of labelled hosts show none (victims too: being
attacked is not misbehaving), and windows of unlabelled hosts are left out; a window labelled with
a behaviour but holding none of its view's evidence does not teach it (:func:`teaches`).
Cross-validation splits by source family (the captures' sets and generators), else by device
(:func:`.forest.grouped_folds`: all windows of one MAC, across captures, fall in the same fold),
never at random over the windows of one episode. The decision thresholds come from the out-of-fold
probabilities (:func:`thresholds_from`): a behaviour's threshold is set above every window of a
held-out family that shows no behaviour, within a floor and a cap.

Training says in one line each what would make a poor model: a row whose host is no device of
its capture, a class with fewer than :data:`MIN_DEVICES` devices or :data:`MIN_WINDOWS`
windows; it refuses a model that knows no misbehaviour (only ``normal``) unless forced.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import estimator_proba, save_bundle
from ..detect.features import FEATURE_NAMES, FEATURES, VIEWS
from ..detect.model import CLASSES, KIND
from ..errors import InputError
from ..vocab import CATEGORIES
from .forest import FOLDS, forest, grouped_folds, quiet
from .labels import HostLabel
from .observe import Observation, label_devices, observe_labelled

#: when several behaviours overlap in one window (the hospital), the window takes the first of
#: these: the one its traffic shows most
PRIORITY = ("flood", "exfil", "scan", "bruteforce", "c2")
#: a class learned from fewer devices than this cannot be scored by device-grouped folds
MIN_DEVICES = 2
MIN_WINDOWS = 5

Warn = Callable[[str], None]


@dataclass(slots=True)
class Dataset:
    X: np.ndarray
    y: np.ndarray  # one class name per window (the first of PRIORITY it shows), for window reports
    groups: np.ndarray  # device identity
    meta: list[tuple[str, str, float]] = field(default_factory=list)  # capture, device, window start
    #: (windows × CATEGORIES) 0/1: every behaviour a window shows (what the model learns)
    Y: np.ndarray = field(default_factory=lambda: np.zeros((0, len(CATEGORIES)), np.int8))

    @classmethod
    def empty(cls) -> Dataset:
        return cls(np.zeros((0, len(FEATURES))), np.array([], dtype=object), np.array([], dtype=object), [])

    def __len__(self) -> int:
        return len(self.y)

    def take(self, rows: np.ndarray) -> Dataset:
        """The windows at ``rows`` (indices or a mask)."""
        idx = np.flatnonzero(rows) if rows.dtype == bool else rows
        return Dataset(self.X[idx], self.y[idx], self.groups[idx], [self.meta[i] for i in idx], self.Y[idx])

    @staticmethod
    def concat(parts: list[Dataset]) -> Dataset:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Dataset.empty()
        return Dataset(np.vstack([p.X for p in parts]), np.concatenate([p.y for p in parts]),
                       np.concatenate([p.groups for p in parts]), [m for p in parts for m in p.meta],
                       np.vstack([p.Y for p in parts]))


def window_targets(starts: np.ndarray, window_s: float, labels: list[HostLabel]) -> np.ndarray:
    """(windows × CATEGORIES) 0/1: a window shows a behaviour when it overlaps a row of it (from
    its first bad packet to its end); several at once when behaviours overlap (the hospital)."""
    Y = np.zeros((len(starts), len(CATEGORIES)), np.int8)
    for lab in labels:
        if lab.behaviour not in CATEGORIES or lab.first_ts is None:
            continue
        end = lab.end_ts if lab.end_ts is not None else np.inf
        Y[(starts + window_s > lab.first_ts) & (starts <= end), CATEGORIES.index(lab.behaviour)] = 1
    return Y


def window_labels(starts: np.ndarray, window_s: float, labels: list[HostLabel]) -> np.ndarray:
    """One class name per window: the first behaviour of :data:`PRIORITY` it shows, else normal."""
    return single_labels(window_targets(starts, window_s, labels))


def single_labels(Y: np.ndarray) -> np.ndarray:
    y = np.full(len(Y), "normal", dtype=object)
    for beh in reversed(PRIORITY):
        y[Y[:, CATEGORIES.index(beh)] > 0] = beh
    return y


def capture_dataset(obs: Observation, named: dict[HostLabel, list[str]]) -> Dataset:
    """The labelled windows of one observed capture (``named``: its rows → their devices)."""
    mine: dict[str, list[HostLabel]] = {}
    for lab, keys in named.items():
        for k in keys:
            mine.setdefault(k, []).append(lab)
    parts = []
    for dev, (cols, X) in obs.windows.items():
        labs = mine.get(dev)
        if not labs or not len(X):
            continue
        starts = cols["window_start"]
        Y = window_targets(starts, obs.window_s, labs)
        rec = obs.devices.get(dev)
        group = rec.mac if rec is not None and rec.mac else f"{obs.capture.name}:{dev}"
        parts.append(Dataset(X, single_labels(Y), np.full(len(Y), group, dtype=object),
                             [(str(obs.capture), dev, float(s)) for s in starts], Y))
    return Dataset.concat(parts)


def build_dataset(label_files: Sequence[str | Path], *, window_s: float = 60.0, n_jobs: int = 1, model: Any = None,
                  warn: Warn | None = None) -> tuple[Dataset, dict[Path, Observation], dict[HostLabel, list[str]]]:
    """Observe every capture of the label files; return the labelled windows, the observations
    and the label rows kept with the devices they name (rows naming no device of their capture
    are left out, one line each to ``warn``)."""
    labels, observed = observe_labelled(label_files, window_s=window_s, n_jobs=n_jobs, model=model)
    named = label_devices(labels, observed, warn)
    parts = []
    for cap, obs in observed.items():
        parts.append(capture_dataset(obs, {lab: k for lab, k in named.items() if lab.capture == cap}))
    return Dataset.concat(parts), observed, named


def window_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    with quiet():
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
        cm = confusion_matrix(y_true, y_pred, labels=classes)
    return {"per_class": {c: {"precision": round(float(p[k]), 4), "recall": round(float(r[k]), 4),
                              "f1": round(float(f[k]), 4), "support": int(s[k])} for k, c in enumerate(classes)},
            "confusion": {"labels": classes, "matrix": cm.tolist()}}


def outputs_of(data: Dataset) -> list[str]:
    """The behaviours the model can learn from ``data``: those some window shows and some does
    not (one binary output each), in CATEGORIES order."""
    n = data.Y.sum(axis=0) if len(data) else np.zeros(len(CATEGORIES))
    return [c for j, c in enumerate(CATEGORIES) if 0 < n[j] < len(data)]


def view_columns(outputs: list[str]) -> list[list[int]]:
    """Per behaviour of ``outputs``, the feature columns of its view (:data:`VIEWS`)."""
    return [[FEATURE_NAMES.index(n) for n in VIEWS[c]] for c in outputs]


#: the behaviours whose forests learn what the behaviour is not from the windows that show no
#: behaviour at all (as every threshold is set): a window of another behaviour is left out of their
#: negatives. A C2 forest taught "not C2" by an exfiltration's or a scan's windows, which also hold
#: a beating channel, learns that a beat is not C2; the exfil and brute-force forests need those
#: windows (a scan's SYNs are upload too, a flood's sessions repeated logins: without them as
#: negatives, normal devices' windows of the same shape score higher and their thresholds rose to
#: 0.77-0.99 in leave-one-source-out trials)
#: A flood forest taught "not a flood" by a DNS tunnel's, a brute force's or a vertical scan's
#: windows (hundreds of requests to one resolver, service or host) held a held-out slow HTTP flood
#: (hundreds of sessions to one web server) under its threshold
QUIET_NEGATIVES: tuple[str, ...] = ("c2", "flood")


def teaches(data: Dataset, behaviour: str) -> np.ndarray:
    """The windows that teach ``behaviour``'s forest: all but the windows labelled with it that
    hold none of its evidence (every feature of its view 0: a controller's link idle between two
    heartbeats, the quiet minutes inside a labelled episode), and, for the behaviours of
    :data:`QUIET_NEGATIVES`, the windows that show another behaviour and not this one. A window
    labelled but without evidence says nothing of what the behaviour looks like, and taught as a
    positive it would make every idle window resemble it."""
    j = CATEGORIES.index(behaviour)
    cols = [FEATURE_NAMES.index(n) for n in VIEWS[behaviour]]
    shows = data.Y[:, j] > 0
    keep = ~(shows & ~(data.X[:, cols] != 0).any(axis=1))
    if behaviour in QUIET_NEGATIVES:
        keep &= shows | (data.Y.sum(axis=1) == 0)
    return keep


def fit_forest(data: Dataset, outputs: list[str], seed: int, n_jobs: int) -> list[Any]:
    """One binary forest per behaviour of ``outputs`` (a window can show several behaviours, and
    every scenario teaches every behaviour it holds), each on its view's features only and
    monotone: more of a behaviour's evidence never lowers its probability (see :data:`VIEWS`)."""
    out = []
    with quiet():
        for c, cols in zip(outputs, view_columns(outputs), strict=True):
            rows = teaches(data, c)
            est = behaviour_forest(seed, n_jobs, len(cols))
            out.append(est.fit(data.X[rows][:, cols].astype(np.float32), data.Y[rows, CATEGORIES.index(c)]))
    return out


def forest_proba(est: Any, X: np.ndarray, outputs: list[str]) -> np.ndarray:
    """(windows × outputs) probability of each behaviour, as a bundle gives it."""
    return estimator_proba(est, X.astype(np.float32), multilabel=True, views=view_columns(outputs))


def cross_validate(data: Dataset, seed: int, n_jobs: int, n_splits: int = FOLDS,
                   groups: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """Out-of-fold probability of each behaviour (``outputs_of(data)``), folds grouped by device,
    or by ``groups`` (one per window: the windows' source families) when they hold two or more;
    0 in a fold whose training part has no window of that behaviour."""
    outputs = outputs_of(data)
    oof = np.zeros((len(data), len(outputs)))
    by = groups if groups is not None and len(set(groups.tolist())) >= 2 else data.groups
    for tr, te in grouped_folds(by, n_splits):
        part = data.take(tr)
        have = [c for c in outputs_of(part) if c in outputs]
        if not have:
            continue
        p = forest_proba(fit_forest(part, have, seed, n_jobs), data.X[te], have)
        for k, c in enumerate(have):
            oof[te, outputs.index(c)] = p[:, k]
    return oof, outputs


def _over(p: np.ndarray, outputs: list[str], thresholds: dict[str, float]) -> np.ndarray:
    """(windows × CATEGORIES) 0/1: the behaviours whose probability reaches its threshold."""
    Y = np.zeros((len(p), len(CATEGORIES)), np.int8)
    for j, c in enumerate(outputs):
        Y[:, CATEGORIES.index(c)] = p[:, j] >= thresholds.get(c, 0.5)
    return Y


#: how much a window showing a behaviour weighs against one that does not, in its forest. Not
#: "balanced" (tens of times, the ratio of normal windows to a behaviour's): with a monotone forest,
#: a few labelled windows of faint evidence (an nmap probe of one port on one host, the first login
#: of a brute force) so weighted make every window with as much evidence (a normal device's one
#: failed connection, one login) read as the behaviour
POSITIVE_WEIGHT = 4.0


def behaviour_forest(seed: int, n_jobs: int, n_features: int | None = None) -> Any:
    """A behaviour's binary forest over ``n_features`` view features, each constrained to raise
    (never lower) the behaviour's probability; without ``n_features``, an unconstrained forest."""
    if not n_features:
        return forest(seed, n_jobs, min_samples_leaf=2, class_weight="balanced_subsample")
    return forest(seed, n_jobs, min_samples_leaf=2, class_weight={0: 1.0, 1: POSITIVE_WEIGHT},
                  monotonic_cst=[1] * n_features)


#: a behaviour's decision threshold is the highest out-of-fold probability of that behaviour among
#: the windows that show no behaviour, plus THRESHOLD_MARGIN, kept within [THRESHOLD_FLOOR, THRESHOLD_CAP]
THRESHOLD_MARGIN = 0.02
THRESHOLD_FLOOR = 0.6
THRESHOLD_CAP = 0.99


def thresholds_from(oof: np.ndarray, outputs: list[str], Y: np.ndarray) -> dict[str, float]:
    """Per behaviour, the lowest probability at which the model alone names it: above every
    out-of-fold window (scored by forests that never saw its fold: its family, see
    :func:`cross_validate`) that shows no behaviour at all (normal hosts' and victims' windows; a
    window of another behaviour may resemble this one, a UDP flood on random ports a UDP port scan),
    within the floor and cap above."""
    out = {}
    quiet_rows = Y.sum(axis=1) == 0
    for j, c in enumerate(outputs):
        neg = quiet_rows
        worst = float(oof[neg, j].max()) if neg.any() else 0.0
        out[c] = round(min(THRESHOLD_CAP, max(THRESHOLD_FLOOR, worst + THRESHOLD_MARGIN)), 4)
    return out


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_out(out: str | Path) -> Path:
    """A bundle folder can be written there (before any analysis): not an existing file, nor a
    folder holding something other than a bundle."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise InputError(p, "exists and is not a folder: give a new or a bundle folder to --out")
    if p.is_dir() and any(p.iterdir()) and not (p / "manifest.json").is_file():
        raise InputError(p, "is a folder that holds no model bundle: give a new or a bundle folder to --out")
    return p


def class_problems(data: Dataset) -> list[str]:
    """One line per class (normal, or a behaviour some window shows) too thin to learn or to score."""
    out = []
    masks = {"normal": data.Y.sum(axis=1) == 0} if len(data) else {}
    masks.update({c: data.Y[:, j] > 0 for j, c in enumerate(CATEGORIES) if len(data) and data.Y[:, j].any()})
    for c, m in sorted(masks.items()):
        n, devs = int(m.sum()), len(set(data.groups[m].tolist()))
        if devs < MIN_DEVICES or n < MIN_WINDOWS:
            out.append(f"class {c}: {n} window{'s' * (n != 1)} of {devs} device{'s' * (devs != 1)}, fewer than "
                       f"{MIN_WINDOWS} windows of {MIN_DEVICES} devices: learned from too little, scored by no "
                       "held-out device")
    return out


def train(label_files: Sequence[str | Path], out: str | Path, *, window_s: float = 60.0, n_jobs: int = 1,
          seed: int = 0, force: bool = False, log: Warn | None = None, warn: Warn | None = None) -> Path:
    """Train the behaviour model on the labelled captures; write its bundle to ``out``.

    ``log`` gets progress lines, ``warn`` the problems of the labels (one line each).
    Raises :class:`InputError` for an unusable ``out`` (before any analysis), no labelled
    window, or a model without any misbehaviour class (unless ``force``)."""
    say = log or (lambda _s: None)
    check_out(out)
    say(f"analysing the captures of {len(label_files)} label file(s) (n_jobs={n_jobs})")
    data, observed, named = build_dataset(label_files, window_s=window_s, n_jobs=n_jobs, warn=warn)
    if not len(data):
        raise InputError(label_files[0], "no labelled device windows found (do the hosts match the captures?)")
    counts = Counter(data.y.tolist())
    shows = {c: int(data.Y[:, j].sum()) for j, c in enumerate(CATEGORIES) if data.Y[:, j].any()}
    say(f"{len(data)} windows of {len(set(data.groups))} devices: normal {int((data.Y.sum(axis=1) == 0).sum())}"
        + "".join(f", {c} {n}" for c, n in shows.items()) + " (a window may show several behaviours)")
    if set(counts) == {"normal"} and not force:
        raise InputError(label_files[0], "every labelled window is normal: such a model detects nothing "
                                         "(label misbehaving hosts, or --force to write it anyway)")
    for line in class_problems(data):
        (warn or say)(line)
    from .loso import capture_families  # (loso builds on this module)

    fam = {str(c): f[0] for c, f in capture_families(list(named)).items()}
    families = np.array([fam.get(m[0], m[0]) for m in data.meta], dtype=object)
    by_family = len(set(families.tolist())) >= 2
    oof, outputs = cross_validate(data, seed, n_jobs, groups=families)
    pred = single_labels(_over(oof, outputs, {c: 0.5 for c in outputs}))
    classes = [c for c in ("normal", *CATEGORIES) if c in set(data.y.tolist()) | set(pred.tolist())]
    metrics = {"cross_validation": f"GroupKFold by {'source family' if by_family else 'device'}, out-of-fold "
                                   "windows (a window is the first behaviour of PRIORITY whose probability reaches "
                                   "0.5, else normal)",
               **window_metrics(data.y, pred, classes),
               "windows": len(data), "devices": len(set(data.groups)), "class_windows": dict(counts),
               "behaviour_windows": {c: int(data.Y[:, j].sum()) for j, c in enumerate(CATEGORIES)}}
    thresholds = thresholds_from(oof, outputs, data.Y)
    if outputs:
        est: Any = fit_forest(data, outputs, seed, n_jobs)
        names = outputs
        for f in est:
            f.n_jobs = 1  # predicting a few windows: no process pool
        params = est[0].get_params()
    else:  # forced: a model that knows only normal windows (it never names a behaviour)
        with quiet():
            est = behaviour_forest(seed, n_jobs).fit(data.X.astype(np.float32), data.y)
        names = [str(c) for c in est.classes_]
        est.n_jobs = 1
        params = est.get_params()
    unknown = [c for c in names if c not in CLASSES]
    if unknown:
        raise InputError(label_files[0], f"unexpected classes {unknown}")
    captures = sorted(str(c) for c in observed)
    path = save_bundle(out, est, kind=KIND, features=FEATURES, classes=names, multilabel=bool(outputs),
                       views={c: list(VIEWS[c]) for c in names} if outputs else None,
                       training=captures, metrics=metrics, thresholds=thresholds,
                       extra={"window_s": window_s, "seed": seed,
                              "label_files": [{"path": str(p), "sha256": sha256_of(Path(p))} for p in label_files],
                              "estimator_params": {k: v for k, v in params.items()
                                                   if isinstance(v, int | float | str | type(None))},
                              "feature_names": FEATURE_NAMES})
    say(f"model written to {path} (thresholds {thresholds})")
    return path
