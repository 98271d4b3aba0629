"""Leave-one-source-out evaluation: what detection does on a kind of capture it never learned from.

Every capture belongs to a **family** (its source): for a capture of ../shared/pcaps the set column
of MANIFEST.tsv (``iot_sentinel``, ``corelight_caldera``...), for a generated one the scenario that
wrote it (:func:`iotwatch.synth.sets.families`: ``scan``, ``c2``, ``site``, ``hospital``, one family
per flood vector), an injection into a real capture belonging to its behaviour's family and to the
real capture's set. For each family F, the behaviour model is trained on the captures that have
nothing of F (its decision thresholds from family-grouped folds inside that training set, as
``iotwatch train`` sets them) and measured on the captures of F:

* **rules + model**: the Detector's own verdicts (:func:`iotwatch.detect.verdict.combine`) — the
  rules' alerts plus the fold model's sustained model-only alerts, exactly as ``analyze`` would
  raise them with that model;
* **model alone**: a misbehaving host is flagged when one of the windows of its behaviour reaches
  the fold model's threshold for that behaviour; a normal host or victim is a false alarm when any
  of its windows reaches any behaviour's threshold. As in ``analyze``, the model alone does not
  judge a device typed router (its windows also carry the traffic it forwards).

Each capture is analysed once (rules only; the features do not depend on the model) and the
folds refit on the cached windows, so a dozen folds cost a dozen forest fits, not a dozen runs of
the pipeline.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..detect.alerts import Alert
from ..detect.verdict import combine
from ..vocab import CATEGORIES
from .behaviour import (
    Dataset,
    Warn,
    capture_dataset,
    cross_validate,
    fit_forest,
    forest_proba,
    thresholds_from,
    window_metrics,
)
from .evaluate import ALERT_WITHIN_S, HostResult, Report
from .labels import HostLabel
from .observe import Observation, label_devices, observe_labelled


@dataclass(slots=True)
class Pool:
    """Every labelled capture observed once, with its families and labelled windows."""

    observed: dict[Path, Observation]
    named: dict[HostLabel, list[str]]
    families: dict[Path, tuple[str, ...]]  # capture → (its family, other families it holds)
    data: Dataset
    window_s: float

    def family_names(self) -> list[str]:
        return sorted({f[0] for f in self.families.values()})


@dataclass(slots=True)
class Predictor:
    """A fitted multi-label forest with its decision thresholds: what combine() needs of a model."""

    estimator: Any
    outputs: list[str]  # the behaviours, in the order of predict_proba's columns
    thresholds: dict[str, float]

    @property
    def classes(self) -> list[str]:
        return list(self.outputs)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return forest_proba(self.estimator, X, self.outputs)


@dataclass(slots=True)
class FoldResult:
    family: str
    captures: int
    train_windows: int
    combined: Report  # rules + this fold's model
    model_hits: dict[HostLabel, bool] = field(default_factory=dict)  # misbehaving host → model alone flagged it
    model_false: list[tuple[HostLabel, str]] = field(default_factory=list)  # normal/victim host, class


def _manifest_sets(label_file: Path) -> dict[str, str]:
    m = label_file.parent / "MANIFEST.tsv"
    if not m.is_file():
        return {}
    out = {}
    with open(m, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            s, name = (row.get("set") or "").strip(), (row.get("file") or "").strip()
            if s and name:
                out[f"{s}/{name}"] = s
    return out


def capture_families(labels: Sequence[HostLabel]) -> dict[Path, tuple[str, ...]]:
    """Each capture's families (see the module docstring); a capture of no known source is its own
    label file's folder and name (one family per foreign label file)."""
    from ..synth.sets import families as synth_families

    sets: dict[Path, dict[str, str]] = {}
    out: dict[Path, tuple[str, ...]] = {}
    for lab in labels:
        if lab.capture in out:
            continue
        src = lab.source
        if src not in sets:
            sets[src] = _manifest_sets(src)
        fam: tuple[str, ...] = ()
        try:
            rel = lab.capture.relative_to(src.parent).as_posix()
        except ValueError:
            rel = ""
        if sets[src] and rel:
            fam = (sets[src].get(rel) or rel.split("/")[0],)
        if not fam:
            fam = synth_families(lab.capture)
        if not fam:
            fam = (src.name if src.name != "LABELS.tsv" else src.parent.name,)
        out[lab.capture] = fam
    return out


def build_pool(label_files: Sequence[str | Path], *, window_s: float = 60.0, n_jobs: int = 1,
               warn: Warn | None = None) -> Pool:
    """Observe every capture once (rules only) and keep its labelled windows."""
    labels, observed = observe_labelled(label_files, window_s=window_s, n_jobs=n_jobs, model=None)
    named = label_devices(labels, observed, warn)
    parts = [capture_dataset(obs, {lab: k for lab, k in named.items() if lab.capture == cap})
             for cap, obs in observed.items()]
    return Pool(observed, named, capture_families(labels), Dataset.concat(parts), window_s)


#: a fold's model learns from at most this many normal windows (drawn at random, seeded; every
#: misbehaving window is kept): days of idle devices add little but fitting time
MAX_NORMAL = 15_000
#: family-grouped folds inside a fold's training set, for its thresholds
INNER_FOLDS = 3


def fit(data: Dataset, seed: int = 0, n_jobs: int = 1, families: np.ndarray | None = None) -> Predictor:
    """A forest on ``data`` with thresholds from folds inside it grouped by source family
    (``families``, one per window; by device without them), as ``train`` sets them, with
    :data:`INNER_FOLDS` folds and at most :data:`MAX_NORMAL` normal windows."""
    normal = np.flatnonzero(data.Y.sum(axis=1) == 0)
    if len(normal) > MAX_NORMAL:
        drop = np.random.default_rng(seed).choice(normal, len(normal) - MAX_NORMAL, replace=False)
        keep = np.setdiff1d(np.arange(len(data)), drop)
        data = data.take(keep)
        families = families[keep] if families is not None else None
    oof, outputs = cross_validate(data, seed, n_jobs, INNER_FOLDS, families)
    th = thresholds_from(oof, outputs, data.Y)
    return Predictor(fit_forest(data, outputs, seed, n_jobs), outputs, th)


def _probs(model: Any, obs: Observation) -> dict[str, dict[str, np.ndarray]]:
    devs = [d for d, (_c, X) in obs.windows.items() if len(X)]
    if model is None or not devs:
        return {}
    p = model.predict_proba(np.vstack([obs.windows[d][1] for d in devs]))
    out, k = {}, 0
    for d in devs:
        n = len(obs.windows[d][1])
        out[d] = {c: p[k:k + n, j] for j, c in enumerate(model.classes)}
        k += n
    return out


def alerts_with(model: Any, obs: Observation, probs: dict[str, dict[str, np.ndarray]] | None = None) -> list[Alert]:
    """The alerts ``analyze`` raises on ``obs``'s capture with ``model``: the rules' (observed
    without a model; they do not depend on it) and the model's own sustained alerts, which
    :func:`~iotwatch.detect.verdict.combine` raises where no rule episode of any behaviour is."""
    if model is None:
        return list(obs.alerts)
    probs = _probs(model, obs) if probs is None else probs
    out = list(obs.alerts)
    w = obs.window_s
    for dev, p in probs.items():
        cols, X = obs.windows[dev]
        for a in combine(dev, obs.devices.get(dev), [], cols, X, model, w, None, [], p):
            covered = any(r.device == dev and r.first_ts - w <= a.last_ts and a.first_ts <= r.last_ts + w
                          for r in obs.alerts)
            if not covered:
                out.append(a)
    return out


def score(pool: Pool, captures: Sequence[Path], model: Any, name: str | None) -> tuple[Report, dict[HostLabel, bool],
                                                                                     list[tuple[HostLabel, str]]]:
    """Host-level report of rules + ``model`` on ``captures``, and the model alone's verdicts."""
    caps = set(captures)
    rep = Report(captures=len(caps), model=name)
    hits: dict[HostLabel, bool] = {}
    false: list[tuple[HostLabel, str]] = []
    cache: dict[Path, tuple[list[Alert], dict[str, dict[str, np.ndarray]]]] = {}
    for lab, keys in pool.named.items():
        if lab.capture not in caps:
            continue
        obs = pool.observed[lab.capture]
        if lab.capture not in cache:
            probs = _probs(model, obs) if model is not None else {}
            cache[lab.capture] = (alerts_with(model, obs, probs), probs)
        alerts, probs = cache[lab.capture]
        mine = [a for a in alerts if a.device in keys]
        cats = sorted({a.category for a in mine}, key=CATEGORIES.index)
        delay, sig = None, ""
        if lab.bad:
            same = [a for a in mine if a.category == lab.behaviour]
            if same and lab.first_ts is not None:
                first = min(same, key=lambda a: a.timestamp)
                delay, sig = first.timestamp - lab.first_ts, first.signature
            if model is not None:
                hits[lab] = _model_flags(model, obs, probs, _judged(obs, keys), lab)
        else:
            rep.false_alarms += [(lab, a.category, a.signature) for a in mine]
            rep.device_days += sum(obs.active_s(k) for k in keys) / 86400
            if model is not None:
                false += [(lab, c) for c in _model_classes(model, probs, _judged(obs, keys))]
        rep.hosts.append(HostResult(lab, cats, delay, sig))
    if model is not None:
        rows = np.isin(np.array([m[0] for m in pool.data.meta], dtype=object), [str(c) for c in caps])
        if rows.any():
            rep.window = window_report(model, pool.data.X[rows], pool.data.y[rows])
    return rep, hits, false


def _judged(obs: Observation, keys: list[str]) -> list[str]:
    """The devices the model alone judges, as in ``analyze`` (:func:`~iotwatch.detect.verdict.combine`):
    not a router, whose windows also carry the traffic it forwards."""
    return [k for k in keys if (r := obs.devices.get(k)) is None or r.device_type != "router"]


def window_report(model: Any, X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The model alone per window: a window counts as the class whose probability reaches its
    threshold (the highest such), else normal."""
    p = model.predict_proba(X)
    pred = np.full(len(y), "normal", dtype=object)
    best = np.zeros(len(y))
    for j, c in enumerate(model.classes):
        if c == "normal":
            continue
        hit = (p[:, j] >= model.thresholds.get(c, 0.5)) & (p[:, j] > best)
        pred[hit] = c
        best[hit] = p[hit, j]
    return window_metrics(y, pred, [c for c in ("normal", *CATEGORIES) if c in set(y) | set(pred)])


def _model_flags(model: Any, obs: Observation, probs: dict[str, dict[str, np.ndarray]], keys: list[str],
                 lab: HostLabel) -> bool:
    """A window of the host's behaviour at or above the model's threshold for it."""
    th = model.thresholds.get(lab.behaviour, 0.9)
    w = obs.window_s
    end = lab.end_ts if lab.end_ts is not None else np.inf
    for k in keys:
        p = probs.get(k, {}).get(lab.behaviour)
        if p is None:
            continue
        starts = obs.windows[k][0]["window_start"]
        on = (starts + w > (lab.first_ts or -np.inf)) & (starts <= end)
        if on.any() and float(p[on].max()) >= th:
            return True
    return False


def _model_classes(model: Any, probs: dict[str, dict[str, np.ndarray]], keys: list[str]) -> list[str]:
    out = []
    for c in CATEGORIES:
        th = model.thresholds.get(c, 0.9)
        if any(c in probs.get(k, {}) and float(probs[k][c].max()) >= th for k in keys):
            out.append(c)
    return out


def window_families(pool: Pool) -> np.ndarray:
    """Each labelled window's family (its capture's first)."""
    fam = {str(c): f[0] for c, f in pool.families.items()}
    return np.array([fam[m[0]] for m in pool.data.meta], dtype=object)


def leave_one_source_out(pool: Pool, *, seed: int = 0, n_jobs: int = 1, log: Warn | None = None) -> list[FoldResult]:
    """One fold per family: train on the captures holding nothing of it, measure on its captures."""
    say = log or (lambda _s: None)
    meta_cap = np.array([m[0] for m in pool.data.meta], dtype=object)
    fam_of = window_families(pool)
    out = []
    for fam in pool.family_names():
        test = [c for c, f in pool.families.items() if f[0] == fam]
        keep = {str(c) for c, f in pool.families.items() if fam not in f}
        rows = np.isin(meta_cap, list(keep))
        train = pool.data.take(rows)
        model = fit(train, seed, n_jobs, fam_of[rows]) if train.Y.any() else None
        rep, hits, false = score(pool, test, model, f"trained without {fam}")
        say(f"fold {fam}: {len(test)} captures, {len(train)} training windows, "
            f"{len(rep.detected)}/{len(rep.detected) + len(rep.missed)} caught, {len(rep.false_alarms)} false alarms")
        out.append(FoldResult(fam, len(test), len(train), rep, hits, false))
    return out


def merged(folds: Sequence[FoldResult]) -> Report:
    """The folds' host results as one report (every capture is in exactly one fold)."""
    rep = Report(model="per fold: trained without the held-out family")
    for f in folds:
        rep.hosts += f.combined.hosts
        rep.false_alarms += f.combined.false_alarms
        rep.device_days += f.combined.device_days
        rep.captures += f.combined.captures
    return rep


def markdown(folds: Sequence[FoldResult]) -> str:
    """The headline: per family and in all, rules + model and the model alone."""
    rep = merged(folds)
    n_bad = sum(1 for h in rep.hosts if h.label.bad)
    hits = {k: v for f in folds for k, v in f.model_hits.items()}
    false = [x for f in folds for x in f.model_false]
    caught_m = sum(hits.values())
    lines = [
        f"- Folds: {len(folds)} families; captures: {rep.captures}; labelled host rows: {len(rep.hosts)} "
        f"({n_bad} misbehaving, {len(rep.hosts) - n_bad} normal or victim)",
        f"- Rules + model, misbehaving hosts flagged with the right category: **{len(rep.detected)} / {n_bad}**",
        f"- Rules + model, alerts on hosts labelled normal or victim: **{len(rep.false_alarms)}** over "
        f"**{rep.device_days:.2f} device-days** of their traffic (the device windows they were active in)",
        f"- Model alone (a window of the host's behaviour at the fold model's threshold): **{caught_m} / {n_bad}** "
        f"({caught_m / n_bad:.1%})" if n_bad else "- Model alone: no misbehaving host",
        f"- Model alone, normal hosts or victims with a window at a class threshold: **{len(false)}**",
        "", "| held-out family | captures | training windows | misbehaving hosts | rules + model | model alone "
            "| alerts on normal/victim hosts | model alone on normal/victim hosts | normal device-days |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in folds:
        r = f.combined
        nb = sum(1 for h in r.hosts if h.label.bad)
        lines.append(f"| {f.family} | {f.captures} | {f.train_windows} | {nb} | {len(r.detected)} | "
                     f"{sum(f.model_hits.values())} | {len(r.false_alarms)} | {len(f.model_false)} | "
                     f"{r.device_days:.2f} |")
    lines += ["", "Time to first alert (rules + model) per behaviour, from the behaviour's first packet:", "",
              "| behaviour | hosts caught | median | max | within 10 s |", "|---|---|---|---|---|"]
    for c in CATEGORIES:
        d = np.array([h.delay_s for h in rep.detected if h.label.behaviour == c and h.delay_s is not None])
        if len(d):
            lines.append(f"| {c} | {len(d)} | {np.median(d):.2f} s | {d.max():.2f} s | "
                         f"{int((d <= ALERT_WITHIN_S).sum())} / {len(d)} |")
    missed_m = [k for k, v in hits.items() if not v]
    lines += ["", "All folds together (host level, rules + model):", "", rep.markdown()]
    if missed_m:
        lines += ["Missed by the model alone:", ""] + [
            f"- {lab.capture.name} {lab.host} {lab.behaviour} (family {fam})"
            for f in folds for lab, ok in f.model_hits.items() if not ok for fam in [f.family]] + [""]
    if false:
        lines += ["Model alone on normal hosts or victims:", ""] + [
            f"- {lab.capture.name} {lab.host} ({lab.behaviour}): {c}" for lab, c in false] + [""]
    return "\n".join(lines) + "\n"
