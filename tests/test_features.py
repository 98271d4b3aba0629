"""Behaviour features (iotwatch/detect/features.py: BEHAVIOUR_FEATURES, VIEWS) and the behaviour
model's shape (one monotone forest per behaviour over its view, iotwatch/learn/behaviour.py): on
generated captures of seeds no model was trained on, each behaviour shows in the features that
describe it and the site's normal devices do not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from iotwatch.bundle import estimator_proba, forest_arrays, load_bundle, save_bundle
from iotwatch.detect.features import (
    BEHAVIOUR_FEATURES,
    FEATURE_NAMES,
    FEATURES,
    VIEWS,
    _entropy,
    _own_quiet,
    _regular_repeats,
)
from iotwatch.errors import ModelError
from iotwatch.learn import loso
from iotwatch.learn.behaviour import fit_forest, forest_proba, teaches, view_columns
from iotwatch.synth import Options, generate
from iotwatch.vocab import CATEGORIES


def test_views_name_features_and_every_behaviour() -> None:
    assert set(VIEWS) == set(CATEGORIES)
    assert all(n in FEATURE_NAMES for v in VIEWS.values() for n in v)
    assert all(n in FEATURE_NAMES for n in BEHAVIOUR_FEATURES)


def test_entropy_of_targets_per_window() -> None:
    w = np.array([0, 0, 0, 0, 1, 1, 2], np.int64)
    key = np.array([5, 6, 7, 8, 9, 9, 3], np.uint64)
    assert np.allclose(_entropy(w, key, 4), [2.0, 0.0, 0.0, 0.0])  # four targets: 2 bits; one: 0


def test_regular_repeats_follow_a_target_across_windows() -> None:
    """A target called every 40 s (less than once a window) is regular from its third call on,
    and counts every call so far; one called at random intervals never is."""
    ts = np.concatenate([np.arange(5) * 40.0, [3.0, 5.0, 90.0, 91.0, 170.0]])
    key = np.array([1] * 5 + [2] * 5, np.uint64)
    w = (ts // 60).astype(np.int64)
    assert _regular_repeats(ts, key, w, 4).tolist() == [0.0, 3.0, 5.0, 0.0]


def test_upload_against_the_quiet_part() -> None:
    """A surge that lasts longer than the quiet minutes before it stays a surge against them (the
    median would take it as the reference)."""
    up = np.array([2000.0, 2000, 2000, 900_000, 900_000, 900_000, 900_000, 900_000, 900_000])
    q = _own_quiet(up, 1000.0)
    assert q[:3].tolist() == [0.0, 0.0, 1.0] and (q[3:] == 450.0).all()


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> loso.Pool:
    d = tmp_path_factory.mktemp("feat")
    made = [generate(Options(sc, seed=8801, duration=240, uplink_mbps=4), d / f"{sc}-8801.pcap").labels_file
            for sc in ("bruteforce", "deadc2", "udpscan", "slowscan")]
    return loso.build_pool(made, n_jobs=2)


def _col(pool: loso.Pool, behaviour: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The feature's values in the windows showing ``behaviour`` and in the normal windows."""
    j = FEATURE_NAMES.index(name)
    shows = pool.data.Y[:, CATEGORIES.index(behaviour)] > 0
    normal = pool.data.Y.sum(axis=1) == 0
    return pool.data.X[shows, j], pool.data.X[normal, j]


def test_behaviours_show_in_their_views(pool: loso.Pool) -> None:
    caps = {Path(m[0]).name.split("-")[0] for m in pool.data.meta}
    assert caps == {"bruteforce", "deadc2", "udpscan", "slowscan"}
    # brute force: short sessions repeated to one login service, and their share of the window
    bad, ok = _col(pool, "bruteforce", "repeat_sessions_one_target")
    assert bad.max() >= 5 > ok.max()
    bad, ok = _col(pool, "bruteforce", "login_sessions")
    assert bad.max() >= 5 > ok.max()
    # a dead controller called like clockwork: failed connections to one target, regular
    bad, ok = _col(pool, "c2", "regular_failed_repeats")
    assert bad.max() >= 3 and ok.max() == 0
    # scans: nearly every connection fails (as does, now and then, a normal device's lone NTP or
    # DNS datagram); new targets fail every window; many ports of one host (the vertical UDP scan)
    # or many hosts (the slow scan)
    bad, ok = _col(pool, "scan", "failed_share")
    assert np.median(bad) >= 0.9 and np.mean(ok >= 0.9) < 0.2
    bad, ok = _col(pool, "scan", "port_entropy")
    assert bad.max() >= 6 > ok.max()
    bad, ok = _col(pool, "scan", "novel_failed_hosts")
    assert bad.max() >= 30 > ok.max()


def test_each_forest_reads_its_view_and_only_rises_with_evidence(pool: loso.Pool, tmp_path: Path) -> None:
    """One binary forest per behaviour, over its view only, monotone in each feature: raising any
    feature of a window never lowers a probability; a feature outside a behaviour's view never
    changes it. The bundle's plain-array trees give the estimators' probabilities."""
    outputs = [c for c in CATEGORIES if pool.data.Y[:, CATEGORIES.index(c)].any()]
    assert outputs == ["scan", "bruteforce", "c2"]
    est = fit_forest(pool.data, outputs, seed=0, n_jobs=2)
    assert [f.n_features_in_ for f in est] == [len(VIEWS[c]) for c in outputs]
    X = pool.data.X
    p = forest_proba(est, X, outputs)
    for j in range(X.shape[1]):
        up = X.copy()
        up[:, j] = up[:, j] * 2 + 1
        q = forest_proba(est, up, outputs)
        assert (q >= p - 1e-12).all(), FEATURE_NAMES[j]
        for k, c in enumerate(outputs):
            if FEATURE_NAMES[j] not in VIEWS[c]:
                assert np.allclose(q[:, k], p[:, k], rtol=0, atol=1e-12)
    # the windows of a behaviour without any of its evidence teach nothing about it
    quiet = (pool.data.Y[:, CATEGORIES.index("c2")] > 0) & ~teaches(pool.data, "c2")
    assert (pool.data.X[quiet][:, view_columns(["c2"])[0]] == 0).all()
    path = save_bundle(tmp_path / "m", est, kind="behaviour", features=FEATURES, classes=outputs, training=[],
                       metrics={}, thresholds={c: 0.6 for c in outputs}, multilabel=True,
                       views={c: list(VIEWS[c]) for c in outputs})
    b = load_bundle(path, kind="behaviour", features=FEATURES)
    assert b.manifest["views"] == {c: list(VIEWS[c]) for c in outputs}
    assert np.abs(b.predict_proba(X) - p).max() < 1e-9
    assert np.abs(estimator_proba(b.estimator, X, True, b.view_columns()) - p).max() < 1e-9
    a = forest_arrays(est, True, view_columns(outputs))
    assert a is not None and len(a["roots"]) == sum(len(f.estimators_) for f in est)


def test_a_bundle_with_a_view_of_unknown_features_is_refused(pool: loso.Pool, tmp_path: Path) -> None:
    import json

    est = fit_forest(pool.data, ["scan"], seed=0, n_jobs=1)
    path = save_bundle(tmp_path / "m", est, kind="behaviour", features=FEATURES, classes=["scan"], training=[],
                       metrics={}, thresholds={"scan": 0.6}, multilabel=True, views={"scan": list(VIEWS["scan"])})
    m = json.loads((path / "manifest.json").read_text())
    m["views"]["scan"] = ["no_such_feature"]
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match="views"):
        load_bundle(path, kind="behaviour", features=FEATURES)
