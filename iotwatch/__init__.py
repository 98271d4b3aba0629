"""iotwatch: find the cameras, recorders and other boxes on a network, and the ones that misbehave.

    import iotwatch
    a = iotwatch.analyze("capture.pcap")
    a.devices, a.flows, a.windows, a.stats, a.problems
"""

import pyarrow as _pa

# Arrow's default allocator (mimalloc) reserves and keeps pages for reuse; flows come and go by
# the million under a flood, so iotwatch uses the system allocator, which hands large blocks
# back and keeps the peak memory flat. Set before any Arrow array exists.
_pa.set_memory_pool(_pa.system_memory_pool())

from .errors import CaptureError, InputError, IotwatchError, ModelError, OutputError  # noqa: E402
from .pipeline import Analysis, Pipeline, Settings, analyze  # noqa: E402

__version__ = "0.1.0"

__all__ = ["Analysis", "CaptureError", "InputError", "IotwatchError", "ModelError", "OutputError", "Pipeline",
           "Settings", "__version__", "analyze"]
