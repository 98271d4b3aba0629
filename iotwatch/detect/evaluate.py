"""Evaluate detection (rules + model) against label files: what an analyst needs to trust it.

Host level (the verdicts a user sees): for every labelled behaviour of a host, was it alerted
with the right category, and how long after its first packet (time to first alert); alerts on
hosts labelled normal or victim are false alarms, also given per device-day. Window level (the
model alone): per-class precision, recall and F1 of the classifier over the labelled windows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..labels import BAD, HostLabel
from ..vocab import CATEGORIES
from .train import build_dataset, window_metrics

ALERT_WITHIN_S = 10.0


@dataclass(slots=True)
class HostResult:
    label: HostLabel
    categories: list[str]  # categories alerted on this host
    delay_s: float | None  # first alert of the labelled category after first_ts
    signature: str = ""


@dataclass(slots=True)
class Report:
    hosts: list[HostResult] = field(default_factory=list)
    false_alarms: list[tuple[HostLabel, str, str]] = field(default_factory=list)  # label, category, signature
    device_days: float = 0.0
    window: dict[str, Any] = field(default_factory=dict)
    captures: int = 0
    label_files: list[str] = field(default_factory=list)
    model: str | None = None

    # host-level numbers -----------------------------------------------------------------------
    def per_class(self) -> dict[str, dict[str, float]]:
        out = {}
        for c in CATEGORIES:
            tp = sum(1 for h in self.hosts if h.label.behaviour == c and c in h.categories)
            fn = sum(1 for h in self.hosts if h.label.behaviour == c and c not in h.categories)
            fp = sum(1 for h in self.hosts if h.label.behaviour != c and c in h.categories
                     and not self._host_has(h.label, c))
            p = tp / (tp + fp) if tp + fp else (1.0 if not fn else 0.0)
            r = tp / (tp + fn) if tp + fn else float("nan")
            f = 2 * p * r / (p + r) if tp and p + r else (0.0 if tp + fn else float("nan"))
            out[c] = {"precision": p, "recall": r, "f1": f, "support": tp + fn, "false_alarms": fp}
        return out

    def _host_has(self, label: HostLabel, category: str) -> bool:
        """Another row of the same host carries this behaviour (the hospital recorder)."""
        return any(h.label.capture == label.capture and h.label.host == label.host and h.label.behaviour == category
                   for h in self.hosts)

    def confusion(self) -> tuple[list[str], list[str], np.ndarray]:
        rows = ["normal", "victim", *CATEGORIES]
        cols = ["none", *CATEGORIES]
        m = np.zeros((len(rows), len(cols)), int)
        for h in self.hosts:
            r = rows.index(h.label.behaviour)
            cats = [c for c in h.categories if c == h.label.behaviour or not self._host_has(h.label, c)]
            if h.label.behaviour in BAD:
                # the row's own behaviour if caught, else what was said instead (or none)
                if h.label.behaviour in h.categories:
                    m[r, cols.index(h.label.behaviour)] += 1
                else:
                    others = [c for c in cats if c != h.label.behaviour]
                    m[r, cols.index(others[0]) if others else 0] += 1
            else:
                if cats:
                    for c in cats:
                        m[r, cols.index(c)] += 1
                else:
                    m[r, 0] += 1
        return rows, cols, m

    @property
    def detected(self) -> list[HostResult]:
        return [h for h in self.hosts if h.label.bad and h.label.behaviour in h.categories]

    @property
    def missed(self) -> list[HostResult]:
        return [h for h in self.hosts if h.label.bad and h.label.behaviour not in h.categories]

    def delays(self) -> np.ndarray:
        return np.array([h.delay_s for h in self.detected if h.delay_s is not None])

    def markdown(self) -> str:
        n_bad = sum(1 for h in self.hosts if h.label.bad)
        n_ok = sum(1 for h in self.hosts if not h.label.bad)
        d = self.delays()
        late = [h for h in self.detected if h.delay_s is not None and h.delay_s > ALERT_WITHIN_S]
        out = [f"Captures: {self.captures}; labelled host rows: {len(self.hosts)} ({n_bad} misbehaving, {n_ok} normal "
               f"or victim); model: {self.model or 'none (rules only)'}.", "",
               f"- Misbehaving hosts caught with the right category: **{len(self.detected)} / {n_bad}**",
               f"- Alerts on hosts labelled normal or victim: **{len(self.false_alarms)}** "
               f"({len(self.false_alarms) / self.device_days if self.device_days else 0:.3f} per device-day over "
               f"{self.device_days:.2f} device-days of traffic: the device windows these hosts were active in)",
               ]
        if len(d):
            out.append(f"- Time to first alert after the behaviour's first packet: median {np.median(d):.2f} s, "
                       f"max {d.max():.2f} s; within {ALERT_WITHIN_S:.0f} s: {int((d <= ALERT_WITHIN_S).sum())} / {len(d)}")
        out += ["", "| behaviour | precision | recall | F1 | host rows | false alarms |", "|---|---|---|---|---|---|"]
        for c, v in self.per_class().items():
            if v["support"] or v["false_alarms"]:
                out.append(f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} | "
                           f"{v['false_alarms']} |")
        rows, cols, m = self.confusion()
        out += ["", "Confusion matrix (rows: labelled behaviour of a host row; columns: category alerted):", "",
                "| label \\ alert | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for i, r in enumerate(rows):
            if m[i].sum():
                out.append(f"| {r} | " + " | ".join(str(x) for x in m[i]) + " |")
        if self.missed:
            out += ["", "Missed:", ""] + [f"- {h.label.capture.name} {h.label.host} {h.label.behaviour}"
                                          + (f" (alerted as {', '.join(h.categories)})" if h.categories else "")
                                          for h in self.missed]
        if late:
            out += ["", f"Alerted later than {ALERT_WITHIN_S:.0f} s:", ""] + [
                f"- {h.label.capture.name} {h.label.host} {h.label.behaviour}: {h.delay_s:.1f} s ({h.signature})" for h in late]
        if self.false_alarms:
            out += ["", "False alarms:", ""] + [f"- {lab.capture.name} {lab.host} ({lab.behaviour}): {c}: {s}"
                                                for lab, c, s in self.false_alarms]
        if self.window:
            out += ["", "Behaviour model alone, per window (the model's own thresholds; a window counts as its "
                        "behaviour when its probability reaches the threshold):", "",
                    "| class | precision | recall | F1 | windows |", "|---|---|---|---|---|"]
            for c, v in self.window["per_class"].items():
                out.append(f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |")
            labels_ = self.window["confusion"]["labels"]
            out += ["", "| window label \\ model | " + " | ".join(labels_) + " |", "|---" * (len(labels_) + 1) + "|"]
            for lab, row in zip(labels_, self.window["confusion"]["matrix"], strict=True):
                out.append(f"| {lab} | " + " | ".join(str(x) for x in row) + " |")
        return "\n".join(out) + "\n"


def evaluate(label_files: list[str | Path], model: Any, *, window_s: float = 60.0, n_jobs: int = 1) -> Report:
    data, per_capture, labels = build_dataset(label_files, window_s=window_s, n_jobs=n_jobs, model=model)
    rep = Report(captures=len(per_capture), label_files=[str(p) for p in label_files],
                 model=model.name if model is not None else None)
    for lab in labels:
        alerts, devices, active = per_capture[lab.capture]
        recs = [r for r in devices.values() if lab.matches(r.mac, r.ips)]
        mine = [a for a in alerts if any(a.device == r.key for r in recs)]
        cats = sorted({a.category for a in mine}, key=CATEGORIES.index)
        delay = None
        sig = ""
        if lab.bad:
            same = [a for a in mine if a.category == lab.behaviour]
            if same and lab.first_ts is not None:
                first = min(same, key=lambda a: a.timestamp)
                delay, sig = first.timestamp - lab.first_ts, first.signature
        else:
            for a in mine:
                rep.false_alarms.append((lab, a.category, a.signature))
            rep.device_days += sum(active.get(r.key, 0.0) for r in recs) / 86400
        rep.hosts.append(HostResult(lab, cats, delay, sig))
    if model is not None and len(data):
        p = model.predict_proba(data.X)
        classes = model.classes
        th = model.thresholds
        pred = np.full(len(data), "normal", dtype=object)
        best = np.zeros(len(data))
        for j, c in enumerate(classes):
            if c == "normal":
                continue
            hit = (p[:, j] >= th.get(c, 0.5)) & (p[:, j] > best)
            pred[hit] = c
            best[hit] = p[hit, j]
        rep.window = window_metrics(data.y, pred, [c for c in ("normal", *CATEGORIES) if c in set(data.y) | set(pred)])
    return rep


def counts_line(rep: Report) -> str:
    c = Counter(h.label.behaviour for h in rep.hosts)
    return ", ".join(f"{k} {v}" for k, v in c.most_common())


__all__ = ["Path", "Report", "counts_line", "evaluate"]
