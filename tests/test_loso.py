"""Leave-one-source-out evaluation (iotwatch/learn/loso.py): families, folds that never train on
what they test, and the Detector's own verdicts with each fold's model."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_PCAPS, needs_shared

from iotwatch.learn import loso
from iotwatch.learn.labels import read_labels
from iotwatch.synth import Options, generate
from iotwatch.synth.sets import families


def test_generated_families_follow_the_generator() -> None:
    assert families(Path("scan-1001.pcap")) == ("scan",)
    assert families(Path("slowscan-3.pcap")) == ("slowscan",)
    assert families(Path("flood-greip-15.pcap")) == ("flood-greip",)
    assert families(Path("night-2.pcap")) == ("night",)
    # an injection belongs to its behaviour and to the real capture's set (held out with it)
    assert families(Path("inject-yi_camera_sample-c2-2023.pcap")) == ("c2", "monitr_yi_camera")
    assert families(Path("inject-Setup-A-1-STA-flood-2014.pcap")) == ("flood-greip", "iot_sentinel")
    assert families(Path("my-own-capture.pcap")) == ()


@needs_shared
def test_shared_captures_take_the_manifest_set() -> None:
    labels = read_labels(SHARED_PCAPS / "LABELS.tsv")
    fam = loso.capture_families(labels)
    with open(SHARED_PCAPS / "MANIFEST.tsv", newline="") as f:
        sets = {f"{r['set']}/{r['file']}": r["set"] for r in csv.DictReader(f, delimiter="\t")}
    for lab in labels:
        rel = lab.capture.relative_to(SHARED_PCAPS).as_posix()
        assert fam[lab.capture] == (sets[rel],)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> loso.Pool:
    d = tmp_path_factory.mktemp("loso")
    made = [generate(Options(sc, seed=seed, duration=150, uplink_mbps=4), d / f"{sc}-{seed}.pcap").labels_file
            for sc in ("scan", "udpscan", "c2", "site") for seed in (7301, 7302)]
    return loso.build_pool(made, n_jobs=2)


def test_each_family_is_judged_by_a_model_that_never_saw_it(pool: loso.Pool) -> None:
    assert pool.family_names() == ["c2", "scan", "site", "udpscan"]
    folds = loso.leave_one_source_out(pool, n_jobs=2)
    assert [f.family for f in folds] == pool.family_names()
    meta = np.array([m[0] for m in pool.data.meta])
    for f in folds:
        held = {str(c) for c, fam in pool.families.items() if fam[0] == f.family}
        assert f.captures == len(held) == 2
        assert f.train_windows == int((~np.isin(meta, list(held))).sum())  # nothing of the family in training
        assert {h.label.capture.name for h in f.combined.hosts} == {Path(c).name for c in held}
    rep = loso.merged(folds)
    # the rules catch every generated misbehaviour whatever the model; no normal host is accused
    assert [f"{h.label.capture.name} {h.label.behaviour}" for h in rep.missed] == []
    assert rep.false_alarms == [] and rep.device_days > 0
    text = loso.markdown(folds)
    assert "| udpscan | 2 |" in text and "Model alone" in text


def test_the_fold_verdicts_are_the_detectors(pool: loso.Pool) -> None:
    """With a model, alerts_with() adds exactly the model-only alerts combine() raises, never one
    that overlaps a rule episode of any behaviour (the model speaks where the rules are silent)."""
    model = loso.fit(pool.data, n_jobs=2)
    for obs in pool.observed.values():
        got = loso.alerts_with(model, obs)
        assert got[:len(obs.alerts)] == obs.alerts
        for a in got[len(obs.alerts):]:
            assert a.sources == ["model"]
            assert not any(r.device == a.device and r.first_ts - 60 <= a.last_ts and a.first_ts <= r.last_ts + 60
                           for r in obs.alerts)


def test_windows_show_every_behaviour_they_overlap() -> None:
    """Multi-label windows: a window of the hospital's camera that scans and brute-forces at once
    teaches both; the one-class view keeps the first of PRIORITY for reports."""
    from iotwatch.learn.behaviour import window_labels, window_targets
    from iotwatch.learn.labels import HostLabel
    from iotwatch.vocab import CATEGORIES

    def row(beh: str, first: float, end: float) -> HostLabel:
        return HostLabel(Path("h.pcap"), "10.0.0.5", "", beh, first, end, "camera", Path("h.labels.tsv"), 2)

    starts = np.arange(0.0, 300.0, 60.0)
    labs = [row("scan", 30.0, 150.0), row("bruteforce", 100.0, 170.0), row("exfil", 250.0, 400.0)]
    Y = window_targets(starts, 60.0, labs)
    shown = [[c for j, c in enumerate(CATEGORIES) if Y[i, j]] for i in range(len(starts))]
    assert shown == [["scan"], ["scan", "bruteforce"], ["scan", "bruteforce"], [], ["exfil"]]
    assert window_labels(starts, 60.0, labs).tolist() == ["scan", "scan", "scan", "normal", "exfil"]


def test_the_model_alone_flags_seeds_it_never_saw(pool: loso.Pool, tmp_path: Path) -> None:
    """A fold model (one monotone forest per behaviour, thresholds from grouped folds) trained on these
    seeds: the same fit twice gives the same model; on a scan and a site of seeds it never saw,
    the model alone flags the scanner as a scan and no device of the site."""
    model = loso.fit(pool.data, n_jobs=2)
    again = loso.fit(pool.data, n_jobs=2)
    assert model.outputs == ["scan", "c2"] == again.outputs and model.thresholds == again.thresholds
    assert all(0.6 <= t <= 0.99 for t in model.thresholds.values())
    from iotwatch.bundle import forest_arrays
    from iotwatch.learn.behaviour import view_columns

    views = view_columns(model.outputs)
    a, b = forest_arrays(model.estimator, True, views), forest_arrays(again.estimator, True, views)
    assert a is not None and b is not None and all(np.array_equal(a[k], b[k]) for k in a)  # the same trees
    made = [generate(Options(sc, seed=seed, duration=150, uplink_mbps=4), tmp_path / f"{sc}-{seed}.pcap").labels_file
            for sc, seed in (("scan", 7391), ("site", 7392))]
    new = loso.build_pool(made, n_jobs=2)
    caps = sorted(new.observed)
    _rep, hits, false = loso.score(new, caps, model, "unseen seeds")
    assert [lab.behaviour for lab in hits] == ["scan"] and all(hits.values())
    assert false == []
