"""Arrow without pandas in the ``iotwatch`` command's process.

pyarrow asks once per process whether pandas is installed: on its first conversion of a Python
list or a NumPy array (``pa.array``, ``Table.from_pydict``, ``to_numpy``), both its Python layer
and its C++ helpers ``import pandas`` if they can, to recognise pandas objects later. With pandas
installed (the ``test`` extra brings it, for the README's examples) that costs every run 0.2 s
and 40 MB, for objects the command never makes.

:func:`arrow_without_pandas` lets that one probe run while ``import pandas`` fails, so pyarrow
records "no pandas" and never asks again; pandas itself stays importable. Arrow's explicit pandas
calls (``Table.to_pandas``, ``Table.from_pandas``) import pandas when called and work as usual, but
until one of them has run, pyarrow does not recognise pandas objects handed to ``pa.array`` (a
``Series`` is read as a plain array: its NaNs are not nulls). So only the command calls this,
before its pipeline; a library user's process is left as it is, and code that mixes pandas
into the command's process later calls :func:`arrow_sees_pandas` first.
"""

from __future__ import annotations

import sys
from importlib.machinery import ModuleSpec


class _NoPandas:
    """A meta-path finder under which ``import pandas`` fails (for the length of the probe)."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("pandas is hidden from pyarrow's probe (iotwatch._pandas_probe)")
        return None


def arrow_without_pandas() -> None:
    """Run pyarrow's pandas probe now with pandas hidden (nothing when pandas is already loaded)."""
    if "pandas" in sys.modules:
        return
    import pyarrow as pa

    finder = _NoPandas()
    sys.meta_path.insert(0, finder)
    try:
        pa.array(["probe"])  # a list of strings: pyarrow's Python-side and C++-side probes both run here
    finally:
        sys.meta_path.remove(finder)


def arrow_sees_pandas() -> None:
    """Import pandas and let pyarrow recognise its objects again (after :func:`arrow_without_pandas`)."""
    import pyarrow as pa

    pa.table({}).to_pandas()  # an explicit pandas call: pyarrow imports pandas and records it
