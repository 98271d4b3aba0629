"""Model bundles: a folder with an estimator saved by skops and a manifest that describes it.

    models/behaviour/
    ├── estimator.skops     the fitted scikit-learn estimator (skops format: no pickle)
    ├── forest.npz          its trees as plain arrays (what ``analyze`` scores with; no pickle)
    └── manifest.json       kind, sha256 of both files, feature schema (names, order, dtypes),
                            classes, library versions, training data, metrics, decision thresholds

A ``multilabel`` bundle (the behaviour model) holds a forest with one binary output per name of
``classes``; its probabilities are each output's probability of 1. A bundle with ``views`` holds
one binary forest per name of ``classes`` instead (a list, in ``classes`` order), each fitted on
the columns its view names (``manifest["views"]``: class → feature names); ``forest.npz`` holds
their trees together, each tree's features as columns of the whole feature row.

Loading never executes code from the file: skops only rebuilds the types on an explicit trusted
list (:data:`TRUSTED_TYPES`), and the estimator's sha256 must match the manifest before skops
even opens it. A bundle made for other features (names, order or dtypes) is refused, so a model
can never silently read columns it was not trained on.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ._jit import kernel
from .errors import ModelError

ESTIMATOR_FILE = "estimator.skops"
FOREST_FILE = "forest.npz"
MANIFEST_FILE = "manifest.json"
FORMAT = 1

#: Every type a bundle may contain beyond what skops trusts by default (numpy and scikit-learn
#: basics). Anything else in a file is refused, whoever wrote it.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.ExtraTreeClassifier",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss._loss.CyMultinomialLoss",
    "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "collections.OrderedDict",
    "numpy.dtype",
    "builtins.slice",
)


@dataclass(slots=True)
class Bundle:
    """A checked bundle. The estimator itself is opened on first use (``lazy``): scikit-learn costs
    about 100 MB of memory, which a long capture should not carry while it streams."""

    path: Path
    manifest: dict[str, Any]
    _estimator: Any = None

    _forest: dict[str, np.ndarray] | None = None

    @property
    def estimator(self) -> Any:
        if self._estimator is None:
            self._estimator = _open_estimator(self.path, self.manifest)
        return self._estimator

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (columns in ``classes`` order), from the plain-array forest when the
        bundle has one (no scikit-learn needed), else from the estimator."""
        if "forest" in self.manifest:
            if self._forest is None:
                self._forest = _open_forest(self.path, self.manifest)
            f = self._forest
            out = np.zeros((len(X), f["value"].shape[1]), np.float64)
            # scikit-learn compares float32 features with its thresholds: so do we
            _forest_proba(np.ascontiguousarray(X, np.float32).astype(np.float64), f["roots"], f["left"], f["right"],
                          f["feature"], f["threshold"], f["value"], out)
            return out
        return estimator_proba(self.estimator, X, bool(self.manifest.get("multilabel")), self.view_columns())

    def view_columns(self) -> list[list[int]] | None:
        """Per class, the feature columns its forest reads (a bundle with views), else None."""
        views = self.manifest.get("views")
        if not views:
            return None
        names = [f["name"] for f in self.manifest["features"]]
        return [[names.index(n) for n in views[c]] for c in self.classes]

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.path.name))

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def thresholds(self) -> dict[str, float]:
        return dict(self.manifest.get("thresholds", {}))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def versions() -> dict[str, str]:
    import numpy
    import sklearn
    import skops

    from . import __version__

    return {"python": platform.python_version(), "iotwatch": __version__, "scikit-learn": sklearn.__version__,
            "numpy": numpy.__version__, "skops": skops.__version__}


def positive_columns(estimator: Any) -> list[int]:
    """For a multi-label forest (one binary output per behaviour, fitted on 0/1 targets), the
    index of class 1 among each output's classes."""
    classes = estimator.classes_ if getattr(estimator, "n_outputs_", 1) > 1 else [estimator.classes_]
    return [list(np.asarray(c).tolist()).index(1) for c in classes]


def estimator_proba(estimator: Any, X: np.ndarray, multilabel: bool = False,
                    views: list[list[int]] | None = None) -> np.ndarray:
    """Columns in the bundle's ``classes`` order: a classifier's class probabilities or, for a
    ``multilabel`` forest, each output's probability of its class 1; with ``views``, ``estimator``
    is one binary forest per class, each reading its view's columns of ``X``."""
    if views is not None:
        return np.column_stack([_one_proba(est, X[:, cols]) for est, cols in zip(estimator, views, strict=True)])
    p = estimator.predict_proba(X)
    if not multilabel:
        return np.asarray(p)
    parts = p if isinstance(p, list) else [p]
    return np.column_stack([parts[k][:, j] for k, j in enumerate(positive_columns(estimator))])


def _one_proba(estimator: Any, X: np.ndarray) -> np.ndarray:
    """A binary forest's probability of class 1 (0 when it never saw a 1)."""
    classes = list(np.asarray(estimator.classes_).tolist())
    return estimator.predict_proba(X)[:, classes.index(1)] if 1 in classes else np.zeros(len(X))


def _view_arrays(forests: list[Any], views: list[list[int]]) -> dict[str, np.ndarray]:
    """One binary forest per class, each on its view's columns, as one set of flat arrays: a tree
    reads the whole row (its features mapped to their columns) and votes for its own class only,
    its leaf values scaled so that the mean over all trees is the mean over its forest's trees."""
    total = sum(len(f.estimators_) for f in forests)
    parts = []
    for k, (f, cols) in enumerate(zip(forests, views, strict=True)):
        a = forest_arrays(f)
        assert a is not None
        classes = list(np.asarray(f.classes_).tolist())
        v = np.zeros((len(a["value"]), len(forests)))
        if 1 in classes:
            v[:, k] = a["value"][:, classes.index(1)] * total / len(f.estimators_)
        leaf = a["left"] < 0
        a["feature"] = np.where(leaf, 0, np.asarray(cols, np.int64)[a["feature"]])
        a["value"] = v
        parts.append(a)
    base, out = 0, {k: [] for k in ("roots", "left", "right", "feature", "threshold", "value")}
    for a in parts:
        n = len(a["left"])
        out["roots"].append(a["roots"] + base)
        out["left"].append(np.where(a["left"] < 0, -1, a["left"] + base))
        out["right"].append(np.where(a["right"] < 0, -1, a["right"] + base))
        for k in ("feature", "threshold", "value"):
            out[k].append(a[k])
        base += n
    return {k: (np.vstack(v) if k == "value" else np.concatenate(v)) for k, v in out.items()}


def forest_arrays(estimator: Any, multilabel: bool = False,
                  views: list[list[int]] | None = None) -> dict[str, np.ndarray] | None:
    """The trees of a fitted forest classifier as flat arrays (None for other estimators); the
    leaf values are the columns :func:`estimator_proba` gives, averaged over the trees."""
    if views is not None:
        return _view_arrays(estimator, views)
    trees = getattr(estimator, "estimators_", None)
    if not trees or not all(hasattr(t, "tree_") for t in trees):
        return None
    pos = positive_columns(estimator) if multilabel else None
    roots, left, right, feature, threshold, value = [], [], [], [], [], []
    base = 0
    for t in trees:
        tr = t.tree_
        n = tr.node_count
        roots.append(base)
        leaf = tr.children_left < 0
        left.append(np.where(leaf, -1, tr.children_left + base))
        right.append(np.where(leaf, -1, tr.children_right + base))
        feature.append(np.where(leaf, 0, tr.feature))
        threshold.append(tr.threshold)
        if pos is None:
            v = tr.value[:, 0, :].astype(np.float64)
            value.append(v / np.maximum(v.sum(axis=1, keepdims=True), 1e-300))
        else:
            v = tr.value.astype(np.float64)  # (nodes, outputs, classes)
            v = v / np.maximum(v.sum(axis=2, keepdims=True), 1e-300)
            value.append(np.column_stack([v[:, k, j] for k, j in enumerate(pos)]))
        base += n
    return {"roots": np.array(roots, np.int64), "left": np.concatenate(left).astype(np.int64),
            "right": np.concatenate(right).astype(np.int64), "feature": np.concatenate(feature).astype(np.int64),
            "threshold": np.concatenate(threshold).astype(np.float64), "value": np.vstack(value)}


@kernel
def _forest_proba(X, roots, left, right, feature, threshold, value, out):  # type: ignore[no-untyped-def]
    n_trees = roots.shape[0]
    for i in range(X.shape[0]):
        for t in range(n_trees):
            node = roots[t]
            while left[node] >= 0:
                if X[i, feature[node]] <= threshold[node]:
                    node = left[node]
                else:
                    node = right[node]
            for c in range(value.shape[1]):
                out[i, c] += value[node, c]
        for c in range(value.shape[1]):
            out[i, c] /= n_trees


def _open_forest(folder: Path, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    path = folder / manifest["forest"]["file"]
    if not path.is_file():
        raise ModelError(f"{path}: forest file missing")
    digest = _sha256(path)
    if digest != manifest["forest"].get("sha256"):
        raise ModelError(f"{path}: sha256 {digest[:12]}… does not match the manifest; the file was altered")
    try:
        with np.load(path, allow_pickle=False) as z:
            f = {k: z[k] for k in ("roots", "left", "right", "feature", "threshold", "value")}
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"{path}: not a forest file ({e})") from None
    n = len(f["left"])
    nf = len(manifest.get("features", []))
    if (len(f["right"]) != n or len(f["feature"]) != n or len(f["threshold"]) != n or len(f["value"]) != n
            or f["value"].shape[1] != len(manifest.get("classes", [])) or not len(f["roots"])
            or f["left"].max(initial=-1) >= n or f["right"].max(initial=-1) >= n or f["roots"].max() >= n
            or f["feature"].min(initial=0) < 0 or f["feature"].max(initial=0) >= nf):
        raise ModelError(f"{path}: inconsistent forest arrays")
    return {k: np.ascontiguousarray(v) for k, v in f.items()}


def save_bundle(path: str | Path, estimator: Any, *, kind: str, features: list[tuple[str, str]],
                classes: list[str], training: list[str], metrics: dict[str, Any], thresholds: dict[str, float],
                extra: dict[str, Any] | None = None, multilabel: bool = False,
                views: dict[str, list[str]] | None = None) -> Path:
    """Write ``estimator`` and its manifest into the folder ``path`` (created if needed).

    ``multilabel``: the estimator is a forest with one binary (0/1) output per name of ``classes``
    (a window may show several behaviours at once); its probabilities are each output's class 1.
    ``views``: the estimator is a list of binary forests, one per name of ``classes``, each fitted
    on the features its view names (class → feature names)."""
    import skops.io as sio

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    est = out / ESTIMATOR_FILE
    sio.dump(estimator, est)
    untrusted = [t for t in sio.get_untrusted_types(file=est) if t not in TRUSTED_TYPES]
    if untrusted:
        est.unlink()
        raise ModelError(f"{out}: the estimator contains types outside the trusted list: {', '.join(untrusted)}")
    names = [n for n, _ in features]
    cols = [[names.index(n) for n in views[c]] for c in classes] if views is not None else None
    forest = forest_arrays(estimator, multilabel, cols)
    forest_meta: dict[str, Any] = {}
    if forest is not None:
        np.savez(out / FOREST_FILE, **forest)
        forest_meta = {"forest": {"file": FOREST_FILE, "sha256": _sha256(out / FOREST_FILE),
                                  "trees": len(forest["roots"]), "nodes": len(forest["left"])}}
    manifest = {
        "format": FORMAT,
        "kind": kind,
        "name": out.name,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "estimator": {"file": ESTIMATOR_FILE, "sha256": _sha256(est),
                      "type": (f"list of {type(estimator[0]).__name__}" if isinstance(estimator, list)
                               else type(estimator).__name__)},
        **forest_meta,
        "features": [{"name": n, "dtype": d} for n, d in features],
        "classes": list(classes),
        **({"multilabel": True} if multilabel else {}),
        **({"views": {c: list(views[c]) for c in classes}} if views is not None else {}),
        "thresholds": thresholds,
        "versions": versions(),
        "training": training,
        "metrics": metrics,
        **(extra or {}),
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    return out


def load_bundle(path: str | Path, *, kind: str, features: list[tuple[str, str]], lazy: bool = False) -> Bundle:
    """Load a bundle, refusing a wrong kind, a hash mismatch, an untrusted type or other features.

    ``lazy``: check the manifest, the schema and the hash now, open the estimator (skops, trusted
    types) on first use of ``Bundle.estimator``."""
    folder = Path(path)
    mpath = folder / MANIFEST_FILE
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise ModelError(f"{folder}: not a model bundle (no {MANIFEST_FILE})") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"{mpath}: unreadable manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelError(f"{mpath}: unknown bundle format {manifest.get('format') if isinstance(manifest, dict) else '?'}")
    if manifest.get("kind") != kind:
        raise ModelError(f"{folder}: a {manifest.get('kind')!r} model, not a {kind!r} model")
    have = [(f.get("name"), f.get("dtype")) for f in manifest.get("features", [])]
    want = [(n, d) for n, d in features]
    if have != want:
        missing = [n for n, _ in want if n not in {h[0] for h in have}]
        extra = [n for n, _ in have if n not in {w[0] for w in want}]
        detail = (f"missing {', '.join(missing[:5])}" if missing else "") + \
                 ("; " if missing and extra else "") + (f"unknown {', '.join(str(x) for x in extra[:5])}" if extra else "")
        raise ModelError(f"{folder}: feature schema does not match this iotwatch "
                         f"({detail or 'same names, other order or dtypes'}); retrain with `iotwatch train`")
    views = manifest.get("views")
    if views is not None:
        known = {n for n, _ in want}
        if (not isinstance(views, dict) or set(views) != set(manifest.get("classes", []))
                or any(not isinstance(v, list) or not v or not set(v) <= known for v in views.values())):
            raise ModelError(f"{mpath}: views do not name one list of known features per class")
    _check_hash(folder, manifest)
    b = Bundle(folder, manifest)
    if "forest" in manifest:
        b._forest = _open_forest(folder, manifest)
    if not lazy:
        b._estimator = _open_estimator(folder, manifest)
    return b


def _check_hash(folder: Path, manifest: dict[str, Any]) -> Path:
    est_path = folder / manifest.get("estimator", {}).get("file", ESTIMATOR_FILE)
    if not est_path.is_file():
        raise ModelError(f"{est_path}: estimator file missing")
    digest = _sha256(est_path)
    if digest != manifest["estimator"].get("sha256"):
        raise ModelError(f"{est_path}: sha256 {digest[:12]}… does not match the manifest; the file was altered")
    return est_path


def _open_estimator(folder: Path, manifest: dict[str, Any]) -> Any:
    import skops.io as sio

    est_path = _check_hash(folder, manifest)  # again: the file is read now
    try:
        untrusted = [t for t in sio.get_untrusted_types(file=est_path) if t not in TRUSTED_TYPES]
    except Exception as e:  # skops raises many kinds on a damaged file
        raise ModelError(f"{est_path}: not a skops file ({e})") from None
    if untrusted:
        raise ModelError(f"{est_path}: refuses to load untrusted types: {', '.join(untrusted)}")
    try:
        return sio.load(est_path, trusted=list(TRUSTED_TYPES))
    except Exception as e:
        raise ModelError(f"{est_path}: cannot be loaded ({e})") from None
