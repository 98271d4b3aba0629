"""The behaviour model: a scikit-learn classifier over device-window features, in a bundle."""

from __future__ import annotations

from pathlib import Path

from ..bundle import Bundle, load_bundle
from ..vocab import MODEL_CLASSES
from .features import FEATURES

KIND = "behaviour"
CLASSES = MODEL_CLASSES
#: the bundle `analyze` uses unless told otherwise (rebuilt by `make model`)
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "models" / "behaviour"


def load(path: str | Path, lazy: bool = True) -> Bundle:
    """Check a behaviour bundle now; open its estimator when first used (see Bundle)."""
    return load_bundle(path, kind=KIND, features=FEATURES, lazy=lazy)


def default_model() -> Bundle | None:
    """The default bundle when it is there (a source checkout or `make model`), else None."""
    if not (DEFAULT_PATH / "manifest.json").is_file():
        return None
    return load(DEFAULT_PATH)
