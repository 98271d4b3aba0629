"""iotwatch: find the cameras, recorders and other boxes on a network, and the ones that misbehave.

    import iotwatch
    a = iotwatch.analyze("capture.pcap")
    a.devices, a.flows, a.windows, a.stats, a.problems
"""

from .errors import CaptureError, InputError, IotwatchError, ModelError, OutputError
from .pipeline import Analysis, Pipeline, Settings, analyze

__version__ = "0.1.0"

__all__ = ["Analysis", "CaptureError", "InputError", "IotwatchError", "ModelError", "OutputError", "Pipeline",
           "Settings", "__version__", "analyze"]
