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

import sys

import numba as nb


def _numpy_support_without_blas() -> None:
    """Load numba's NumPy support without its probe for scipy's BLAS.

    When numba first compiles or loads a function it imports ``numba.np.arraymath``, which
    imports ``scipy.linalg.cython_blas`` if scipy is installed (it is: scikit-learn needs it for
    training) to see whether ``np.dot`` can be offered. That drags in scipy.linalg,
    numpy.testing and unittest: 0.2 s and 14 MB of every ``analyze`` run for linear algebra
    that no kernel here uses. Hiding the module for the length of that one import makes numba
    record "no BLAS" (a kernel calling ``np.dot`` would then fail to compile, loudly); scipy
    itself stays importable for everything else.
    """
    name = "scipy.linalg.cython_blas"
    if name in sys.modules or "numba.np.arraymath" in sys.modules:
        return
    sys.modules[name] = None  # type: ignore[assignment]  # import now raises ImportError
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        if sys.modules.get(name, 0) is None:
            del sys.modules[name]


_numpy_support_without_blas()

kernel = nb.njit(cache=True, nogil=True, _nrt=False)
inline_kernel = nb.njit(cache=True, nogil=True, _nrt=False, inline="always")
allocating = nb.njit(cache=True, nogil=True)
