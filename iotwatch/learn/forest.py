"""The one estimator stack of both models: a random forest, folds grouped by physical device.

Behaviour (per window) and device type (per capture and host) are fitted and scored the same
way: a :func:`forest` (robust to features on wildly different scales, no scaling to ship, every
type it needs on skops' trusted list, stored as plain arrays for ``analyze``), and
:func:`grouped_folds`, which never puts one device in training and test at once (all windows of
one MAC across captures, all captures of one IoT Sentinel unit, fall in the same fold).

scikit-learn's own warnings (a class with one member, a metric without support) are never shown
to a user: :func:`quiet` silences them, and the trainers say what matters in one line of their
own (too few devices of a class, a model that cannot detect anything).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

N_TREES = 100
FOLDS = 5


def forest(seed: int, n_jobs: int, *, min_samples_leaf: int = 1, class_weight: str | None = None,
           monotonic_cst: list[int] | None = None) -> Any:
    """A random forest of :data:`N_TREES` trees (``monotonic_cst``: per feature, +1 when the
    probability of class 1 may only rise with it; binary forests only)."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=N_TREES, min_samples_leaf=min_samples_leaf, class_weight=class_weight,
                                  random_state=seed, n_jobs=n_jobs, monotonic_cst=monotonic_cst)


def grouped_folds(groups: np.ndarray, n_splits: int = FOLDS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs of ``min(n_splits, devices)`` folds grouped by ``groups``;
    none with fewer than two devices."""
    from sklearn.model_selection import GroupKFold

    k = min(n_splits, len(set(groups.tolist())))
    if k < 2:
        return
    yield from GroupKFold(n_splits=k).split(np.zeros(len(groups)), None, groups)


@contextmanager
def quiet() -> Iterator[None]:
    """scikit-learn's (and joblib's) warnings stay here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
