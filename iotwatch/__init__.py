"""iotwatch: find the cameras, recorders and other boxes on a network, and the ones that misbehave.

    import iotwatch
    a = iotwatch.analyze("capture.pcap")
    a.devices, a.flows, a.windows, a.stats, a.problems
"""

import os as _os
import sys as _sys

# Run as the `iotwatch` command (or `python -m iotwatch`)? Then Ctrl-C during the imports below
# (a second or so) is held until the command's main() can say "interrupted" in one line.
if _sys.argv and (_os.path.basename(_sys.argv[0]) == "iotwatch" or _sys.argv[0] == "-m"):
    from . import interrupt as _interrupt

    _interrupt.defer_until_resumed()
    _interrupt.checkpoint("import")

# Arrow's default allocator (mimalloc) reserves and keeps pages for reuse; flows come and go by
# the million under a flood, so iotwatch uses the system allocator, which hands freed blocks
# back: 10 MB less at the peak of a 10 M-flow flood, at the same speed (docs/benchmarks.md).
# The C++ side (the Parquet writer) reads ARROW_DEFAULT_MEMORY_POOL once, when Arrow is first
# imported, so it is set (unless the user chose a pool) before that; set_memory_pool covers
# an Arrow that was imported earlier, for the buffers made from Python.
_os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

if "pyarrow" in _sys.modules:  # imported before us: its Python-made buffers follow set_memory_pool
    _pa = _sys.modules["pyarrow"]
    _pa.set_memory_pool(_pa.system_memory_pool())

from .errors import CaptureError, InputError, IotwatchError, ModelError, OutputError, SettingsError
from .settings import Settings

__version__ = "0.1.0"

__all__ = ["Analysis", "CaptureError", "InputError", "IotwatchError", "ModelError", "OutputError", "Pipeline",
           "Settings", "SettingsError", "__version__", "analyze"]

#: loaded on first use: ``import iotwatch`` (and ``iotwatch --help``) stays free of NumPy, Arrow
#: and the compiled kernels until something needs them
_LAZY = {"Analysis": "pipeline", "Pipeline": "pipeline", "analyze": "pipeline"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'iotwatch' has no attribute {name!r}")
