"""What a device of each type uploads when nothing is wrong: the reference of the upload rule for
a device with no history of its own (docs/detection.md, "Baselines").

The table (``type_upload.json`` beside this module, versioned, shipped with the package) is
learned from benign captures by ``python -m iotwatch.learn.type_upload`` (``make type-upload``):
per inventory type, the 99th percentile of a normal device's upload to external addresses per
minute. A plug, a sensor or a hub sends at most a few hundred kB a minute to its cloud: judged
against its type, a plug pushing megabytes a minute is not normal for any plug. A camera or a
recorder streams video at whatever rate it is set to: it has no type norm (:data:`NO_NORM`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from ..errors import InputError

#: the table's layout version (``version`` in the file)
VERSION = 1
TABLE = Path(__file__).with_name("type_upload.json")
#: types with no upload norm: their normal includes bulk uploads of what they record or are given
#: (a camera's or a recorder's video, at any rate its settings ask for; a printer's scans sent to
#: the cloud), or says nothing of their type (a person's computer or phone; the gateway, which
#: carries the site's traffic; a device of unknown type). They are judged by their own history, a
#: baseline file, or the site's other devices and the uplink only
NO_NORM = ("camera", "recorder", "printer", "computer", "phone", "router", "unknown")


@lru_cache(maxsize=4)
def references(path: Path = TABLE) -> dict[str, float]:
    """Per device type, its normal upload per minute (bytes: the table's ``p99_bytes_per_min``)."""
    try:
        t = json.loads(path.read_text())
        if t.get("version") != VERSION:
            raise InputError(path, f"type upload table of version {t.get('version')}, this iotwatch reads version {VERSION}")
        return {k: float(v["p99_bytes_per_min"]) for k, v in t["types"].items() if k not in NO_NORM}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(path, f"not a type upload table: {e}") from None


def reference(device_type: str | None, window_s: float, path: Path = TABLE) -> float | None:
    """The normal upload per window of a device of ``device_type``; None when the type has none."""
    if not device_type:
        return None
    per_min = references(path).get(device_type)
    return None if per_min is None else per_min * window_s / 60.0
