"""The behaviour model: a multi-label forest over device-window features (one probability per
behaviour), in a bundle."""

from __future__ import annotations

from pathlib import Path

from ..bundle import Bundle, load_bundle
from ..errors import ModelError
from ..vocab import MODEL_CLASSES
from .features import FEATURES

KIND = "behaviour"
CLASSES = MODEL_CLASSES
#: the bundle `analyze` uses unless told otherwise (rebuilt by `make model`)
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "models" / "behaviour"


def load(path: str | Path, lazy: bool = True) -> Bundle:
    """Check a behaviour bundle now; open its estimator when first used (see Bundle).

    A behaviour model gives one probability per behaviour (``multilabel``: a window may show
    several); a bundle of an older iotwatch, one class per window, is refused in one line."""
    b = load_bundle(path, kind=KIND, features=FEATURES, lazy=lazy)
    if not b.manifest.get("multilabel") and set(b.classes) != {"normal"}:
        raise ModelError(f"{b.path}: a behaviour model of an older iotwatch (one class per window, not one "
                         "probability per behaviour); retrain it with `iotwatch train`")
    return b


def default_model() -> Bundle | None:
    """The default bundle when it is there (a source checkout or `make model`), else None."""
    if not (DEFAULT_PATH / "manifest.json").is_file():
        return None
    return load(DEFAULT_PATH)
