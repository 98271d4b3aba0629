"""How the per-packet loops are compiled.

``kernel`` is numba's njit with the GIL released (so the writer thread and the packet loop run
on both cores) and with numba's reference counting turned off (``_nrt=False``): a compiled
helper that takes arrays otherwise increments and decrements an atomic reference count for
every array argument on every call, which cost 150 ns per packet in the decoder alone.
Kernels compiled this way must not allocate arrays; those that do use ``allocating``.
Both cache their machine code next to the module (``__pycache__``), so only the first run
compiles.
"""

from __future__ import annotations

import numba as nb

kernel = nb.njit(cache=True, nogil=True, _nrt=False)
inline_kernel = nb.njit(cache=True, nogil=True, _nrt=False, inline="always")
allocating = nb.njit(cache=True, nogil=True)
