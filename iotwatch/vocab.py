"""The words iotwatch's records share: one definition each, for detection, labels, models,
scenarios and the CLI (and light to import: the CLI's help text reads them)."""

from __future__ import annotations

#: what a device can be caught doing: an alert's ``alert.category``, a misbehaving host's label
CATEGORIES = ("scan", "bruteforce", "flood", "exfil", "c2")
#: a host's ``behaviour`` in a label file: a misbehaving one, a normal one, or a victim of another
LABELS = ("normal", "victim", *CATEGORIES)
#: the behaviour model's classes: one per category, and normal
MODEL_CLASSES = ("normal", *CATEGORIES)
