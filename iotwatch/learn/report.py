"""``make eval``: the numbers of docs/evaluation.md, measured, with the commands that reproduce them.

    python -m iotwatch.learn.report OUT.md EVAL_LABELS_LIST [SHARED_PCAPS [TRAIN_LABELS_LIST]]

EVAL_LABELS_LIST (and TRAIN_LABELS_LIST) are files with one label file per line (what ``python -m
iotwatch.synth.sets eval`` and ``train`` print): scenarios with seeds never used in training, and
behaviours injected into real captures that training did not use (and the training set's). The
headline is leave-one-source-out over all of them and the shared labels (:mod:`.loso`).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..detect import model as behaviour
from ..detect.detector import Detector, DetectSettings
from ..pipeline import analyze
from . import loso
from .device_type import Evaluation, evaluate_type_model
from .labels import read_labels


def _section(title: str, body: str) -> str:
    return f"## {title}\n\n{body}\n"


def build(out: Path, eval_list: Path, shared: Path | None, train_list: Path | None = None, n_jobs: int = 2) -> str:
    bundle = behaviour.default_model()
    files = [Path(x) for x in eval_list.read_text().split() if x]
    train_files = [Path(x) for x in train_list.read_text().split() if x] if train_list is not None else []
    labels = shared / "LABELS.tsv" if shared is not None and (shared / "LABELS.tsv").exists() else None
    parts = ["# Evaluation", "",
             f"Written by `make eval` on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; every number below is "
             "measured by that run (the commands are given with each table). The headline is leave-one-source-out: "
             "each family of captures judged by a behaviour model that never saw it. The figures after it use the "
             f"shipped model (`models/behaviour`, {bundle.manifest['created'] if bundle else 'absent'}), "
             "trained on some of the same captures: in-sample where they say so.", ""]
    t = time.perf_counter()
    pool = loso.build_pool([*train_files, *files, *([labels] if labels else [])], n_jobs=n_jobs)
    t_pool = time.perf_counter() - t
    folds = loso.leave_one_source_out(pool, n_jobs=n_jobs)
    parts.append(_section(
        "Leave-one-source-out (the headline)",
        "Every capture of `make model`'s and `make eval`'s generated sets and of ../shared/pcaps/LABELS.tsv, "
        "grouped into families: for a shared capture the set column of MANIFEST.tsv, for a generated one the "
        "scenario that wrote it (one family per flood vector; a behaviour injected into a real capture belongs to "
        "its behaviour's family and to the real capture's set). For each family the behaviour model is trained "
        "on the captures that hold nothing of it (thresholds from source-family-grouped folds inside that training set, as "
        "`iotwatch train` sets them) and measured on the family: rules + that model as `analyze` would run them, "
        "and the model alone (a misbehaving host counts when a window of its behaviour reaches the fold model's "
        "threshold for it; a normal host or victim counts against it when any window reaches any behaviour's "
        "threshold; as in `analyze`, the model alone does not judge a device typed router, whose windows also "
        "carry the traffic it forwards). Each capture is analysed once; the folds refit on its windows "
        f"(analysis {t_pool:.0f} s, {len(folds)} folds {time.perf_counter() - t - t_pool:.0f} s).\n\n"
        "```sh\niotwatch evaluate build/train/*.labels.tsv build/eval/*.labels.tsv ../shared/pcaps/LABELS.tsv\n```\n\n"
        + loso.markdown(folds)))
    eval_caps = sorted({lab.capture for f in files for lab in read_labels(f)})
    rep, _h, _f = loso.score(pool, eval_caps, bundle, bundle.name if bundle else None)
    hospital = _hospital([f for f in files if f.name.startswith("hospital-")], bundle)
    parts.append(_section(
        "Held-out seeds: scenarios and injections (shipped model)",
        "Generated scenarios with seeds not used in training (`python -m iotwatch.synth.sets eval build/eval`: "
        "every scenario, every flood vector, seeds 1001-1002) and the five behaviours injected into real camera "
        "captures that training did not use. The shipped model saw other seeds of the same generators.\n\n"
        "```sh\niotwatch evaluate --model models/behaviour build/eval/*.labels.tsv\n```\n\n" + rep.markdown()))
    parts.append(_section("The hospital scenario", hospital))
    if labels is not None:
        shared_caps = sorted({lab.capture for lab in read_labels(labels)})
        rep_rules, _h, _f = loso.score(pool, shared_caps, None, None)
        rep_model, _h, _f = loso.score(pool, shared_caps, bundle, bundle.name if bundle else None)
        parts.append(_section(
            "Labelled real captures, in-sample (../shared/pcaps/LABELS.tsv)",
            "The public captures with their per-host ground truth. The rules never saw these labels; the shipped "
            "behaviour model was trained on them too (with the generated scenarios), so the rules + model figures "
            "and the model-alone window figures here are **in-sample**; the leave-one-source-out section above "
            "holds the honest ones.\n\n"
            "Rules only:\n\n```sh\niotwatch evaluate --no-model ../shared/pcaps/LABELS.tsv\n```\n\n"
            + rep_rules.markdown() + "\nRules + the shipped model (in-sample):\n\n```sh\niotwatch evaluate --model "
            "models/behaviour ../shared/pcaps/LABELS.tsv\n```\n\n" + rep_model.markdown()))
        ev = evaluate_type_model([labels], n_jobs=n_jobs)
        parts.append(_section(
            "Device types (issue 4), split by physical device",
            "Features from the same `analyze` run as detection (the pipeline's inventory: the sidecar's rare frames, "
            "the raw flow records).\n\n"
            "```sh\niotwatch evaluate --kind device_type ../shared/pcaps/LABELS.tsv\n```\n\n" + type_report(ev)))
    if bundle is not None:
        m = bundle.manifest["metrics"]
        rows = ["| class | precision | recall | F1 | windows |", "|---|---|---|---|---|"]
        rows += [f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
                 for c, v in m["per_class"].items()]
        parts.append(_section(
            "Behaviour model: cross-validation at training",
            f"From `models/behaviour/manifest.json` ({m['cross_validation']}; {m['windows']} windows of "
            f"{m['devices']} devices; decision thresholds {json.dumps(bundle.thresholds)}):\n\n" + "\n".join(rows)))
    from ..zeek.evaluate import compare, section  # detection on Zeek conn.log beside detection on packets

    tz, work = time.perf_counter(), eval_list.parent / "zeek-eval"
    comps = [compare("generated scenarios", files, work / "generated", bundle, n_jobs)]
    if labels is not None:
        comps.append(compare("shared labelled captures", [labels], work / "shared", bundle, n_jobs))
    parts.append(section(comps, time.perf_counter() - tz))
    parts.append(f"Evaluation time: {time.perf_counter() - t:.0f} s on this machine (2 cores).\n")
    text = "\n".join(parts)
    out.write_text(text)
    return text


def _hospital(label_files: list[Path], bundle: Any) -> str:
    """The recorder of each held-out hospital capture: what was said, how soon, × baseline, uplink share."""
    out = ["```sh", "iotwatch analyze build/eval/hospital-1001.pcap --uplink-mbps 4 --out out/", "```", "",
           "| capture | recorder | behaviour | first bad packet → alert | evidence |", "|---|---|---|---|---|"]
    for lf in label_files:
        labels = read_labels(lf)
        pcap = labels[0].capture
        a = analyze(pcap, detect=Detector(DetectSettings(model=bundle, uplink_mbps=4.0)))
        for lab in (x for x in labels if x.bad):
            mine = [x for x in a.alerts if x.src_mac == lab.host_mac and x.category == lab.behaviour]
            if not mine:
                out.append(f"| {pcap.name} | {lab.host} | {lab.behaviour} | **missed** | |")
                continue
            x = min(mine, key=lambda y: y.timestamp)
            ev = x.evidence
            extra = (f"{ev['x_baseline']:,.0f}× baseline, {ev.get('uplink_share', 0):.0%} of the 4 Mbit/s uplink"
                     if "x_baseline" in ev else x.signature[:80])
            delay = x.timestamp - lab.first_ts if lab.first_ts is not None else float("nan")
            out.append(f"| {pcap.name} | {lab.host} | {lab.behaviour} | {delay:.2f} s | {extra} |")
    return "\n".join(out) + "\n"


def type_report(ev: Evaluation) -> str:
    """The type evaluation as Markdown (docs/evaluation.md, ``evaluate --kind device_type``)."""
    lines = [ev.summary().capitalize() + ".", "", "Confusion matrix (rows: labelled type; columns: typed as):", "",
             "```", ev.table(), "```", "", "Per class:", "", "```", ev.report.rstrip(), "```"]
    if ev.cctv_missed:
        lines += ["", "Cameras/recorders not typed as such:", ""] + [f"- {x}" for x in ev.cctv_missed[:20]]
    if ev.cctv_false:
        lines += ["", "Typed camera/recorder wrongly:", ""] + [f"- {x}" for x in ev.cctv_false[:20]]
    if ev.units:
        lines += ["", "Per physical device, each held-out unit typed once from all its captures together "
                  "(as one `iotwatch analyze` run over them):", "", "```", ev.unit_table(), "```"]
        if ev.unit_errors:
            lines += ["", "Wrong devices:", ""] + [f"- {u.reason()}" for u in ev.unit_errors]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.stderr.write("usage: python -m iotwatch.learn.report OUT.md EVAL_LABELS_LIST [SHARED_PCAPS "
                         "[TRAIN_LABELS_LIST]]\n")
        return 2
    build(Path(argv[0]), Path(argv[1]), Path(argv[2]) if len(argv) > 2 else None,
          Path(argv[3]) if len(argv) > 3 else None)
    print(f"wrote {argv[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
