"""Device windows, flows and rare frames → verdicts: which device misbehaves, how, since when, why.

:class:`Detector` rides along the pipeline: it reduces finished flows and rare frames to compact
per-device evidence as they stream (:mod:`.evidence`), keeps the device windows, and at the end
runs the rules (:mod:`.rules`) and the behaviour model (:mod:`.model`) and combines them into one
:class:`Alert` per device and behaviour episode (:mod:`.verdict`).
"""

from .alerts import Alert
from .detector import Detector, DetectSettings

__all__ = ["Alert", "DetectSettings", "Detector"]
