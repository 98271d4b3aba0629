"""How the per-packet loops are compiled: ahead of time at install, or by numba's JIT.

``kernel`` is numba's njit with the GIL released (so the writer thread and the packet loop run
on both cores) and with numba's reference counting turned off (``_nrt=False``): a compiled
helper that takes arrays otherwise increments and decrements an atomic reference count for
every array argument on every call, which cost 150 ns per packet in the decoder alone.
Kernels compiled this way must not allocate arrays; those that do use ``allocating``.
Both cache their machine code next to the module (``__pycache__``), so only the first run
compiles.

The decorators do not import numba: they return a :class:`Kernel` that becomes a numba
dispatcher the first time the JIT is needed (:func:`jit`). Importing numba, its first-use
set-up and loading each kernel from its cache cost about 0.35 s and 100 MB (and LLVM's library
maps 68 MB more), more than a small capture's whole analysis; so the install also compiles the
kernels ahead of time into one extension module (:mod:`iotwatch._aot`, docs/design.md
"Compiled kernels"), with the same options (the GIL released, reference counting only where a
kernel allocates), and a run (:func:`iotwatch.pipeline.choose_kernels`) calls those when the
argument types are ones that were compiled. Everything else goes to numba's JIT: a module
missing or built from other sources (its name carries a hash of the package's sources), a
signature not compiled, ``IOTWATCH_KERNELS=jit``. Both are compiled by the same numba from the
same Python functions for this machine's CPU, and the tests check that their outputs are
identical.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import pickle
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

_KINDS: dict[str, dict[str, Any]] = {
    "kernel": {"cache": True, "nogil": True, "_nrt": False},
    "inline_kernel": {"cache": True, "nogil": True, "_nrt": False, "inline": "always"},
    "allocating": {"cache": True, "nogil": True},
}

_lock = threading.RLock()
_kernels: list[Kernel] = []
_externals: list[External] = []
_jit_ready = False
#: (kernel id, argument keys) -> the ahead-of-time compiled function; None: not looked for yet
_aot_table: dict[tuple[str, tuple[Any, ...]], Callable[..., Any]] | None = None
_aot_module: Any = None
_use_aot = False


class Kernel:
    """A compiled function that imports numba only when the JIT is needed.

    Called from Python: the ahead-of-time compiled version when the run chose them
    (:func:`prefer_aot`) and one was compiled for these argument types, else numba's
    dispatcher (made on first use). Called from another kernel: numba sees the dispatcher,
    since :func:`jit` puts the dispatchers in the place of these objects in every iotwatch
    module before anything is compiled. Other attributes (``py_func``, ``signatures``) are
    the dispatcher's.
    """

    def __init__(self, py_func: Callable[..., Any], kind: str) -> None:
        self.py_func = py_func
        self.kind = kind
        self.id = f"{py_func.__module__}:{py_func.__qualname__}"
        self.dispatcher: Any = None
        self.__name__ = py_func.__name__
        self.__qualname__ = py_func.__qualname__
        self.__module__ = py_func.__module__
        self.__doc__ = py_func.__doc__
        self.__wrapped__ = py_func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _use_aot and not kwargs:
            keys = arg_keys(args)
            if keys is not None:
                fn = _aot_table.get((self.id, keys))  # type: ignore[union-attr]
                if fn is not None:
                    return fn(*args)
        d = self.dispatcher
        if d is None:
            jit()
            d = self.dispatcher
        return d(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if self.dispatcher is None:
            jit()
        return getattr(self.dispatcher, name)

    def __reduce__(self) -> tuple[Any, ...]:  # pickled by name, like a function
        return (_by_id, (self.id,))

    def __repr__(self) -> str:
        return f"<iotwatch kernel {self.id}>"


class External:
    """A C function that kernels call by ``name`` (numba's ``types.ExternalFunction``) at
    ``address`` in this process (None: not available; the kernels must not call it)."""

    def __init__(self, name: str, signature: str, address: int | None) -> None:
        self.name, self.signature, self.address = name, signature, address
        self.real: Any = None


def _by_id(kid: str) -> Any:
    module, _, qualname = kid.partition(":")
    return getattr(importlib.import_module(module), qualname)


def _decorator(kind: str) -> Callable[[Callable[..., Any]], Any]:
    def wrap(py_func: Callable[..., Any]) -> Any:
        with _lock:
            k = Kernel(py_func, kind)
            _kernels.append(k)
            if _jit_ready:  # a module imported after the JIT started: numba's dispatcher directly
                import numba as nb

                k.dispatcher = nb.njit(**_KINDS[kind])(py_func)
                return k.dispatcher
            return k

    return wrap


kernel = _decorator("kernel")
inline_kernel = _decorator("inline_kernel")
allocating = _decorator("allocating")


def external(name: str, signature: str, address: int | None) -> Any:
    """Declare a C function the kernels call: ``signature`` in numba's notation (``void(voidptr,
    voidptr)``). The JIT binds ``name`` to ``address``; the ahead-of-time module calls it
    through a pointer set when the module is loaded."""
    with _lock:
        e = External(name, signature, address)
        _externals.append(e)
        if _jit_ready:
            _make_external(e)
            return e.real
        return e


def _make_external(e: External) -> None:
    from llvmlite import binding as llvm
    from numba import types
    from numba.core import sigutils

    if e.address is not None:
        llvm.add_symbol(e.name, e.address)
    args, ret = sigutils.normalize_signature(e.signature)
    e.real = types.ExternalFunction(e.name, ret(*args))


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


def jit() -> None:
    """Import numba and turn every kernel into its dispatcher, once per process.

    The dispatchers replace the :class:`Kernel` objects (and the externals) in the globals of
    every loaded iotwatch module, so that kernels calling kernels type as before; Python callers
    holding a :class:`Kernel` are forwarded to its dispatcher."""
    global _jit_ready
    with _lock:
        if _jit_ready:
            return
        import numba as nb

        _numpy_support_without_blas()
        for e in _externals:
            _make_external(e)
        swap: dict[int, Any] = {id(e): e.real for e in _externals}
        for k in _kernels:
            k.dispatcher = nb.njit(**_KINDS[k.kind])(k.py_func)
            swap[id(k)] = k.dispatcher
        for name, mod in list(sys.modules.items()):
            if mod is None or not (name == "iotwatch" or name.startswith("iotwatch.")):
                continue
            g = vars(mod)
            for attr, value in list(g.items()):
                real = swap.get(id(value))
                if real is not None and (isinstance(value, (Kernel, External))):
                    g[attr] = real
        _jit_ready = True


def jit_loaded() -> bool:
    """Whether this process has turned to numba's JIT (numba imported, dispatchers made)."""
    return _jit_ready


# ----------------------------------------------------------------------------------------
# Ahead-of-time compiled kernels


def arg_keys(args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The argument types as numba's ``typeof`` tells them apart, without numba: for arrays
    dtype, dimensions, layout, read-only and alignment (as numba has it: False only for a packed
    record dtype, whatever the data's address); for scalars the dtype numba gives them.
    None for anything else (the call goes to the JIT). One pass of a few attribute reads per
    argument: a flood run makes about 2,000 calls of up to 40 arguments."""
    out = []
    for v in args:
        t = type(v)
        if t is np.ndarray:
            n = v.flags.num  # C- and F-contiguous, writeable: one read
            dt = v.dtype
            out.append((dt, v.ndim, _LAYOUT[n & 3], not n & _WRITEABLE, dt.names is None or dt.isalignedstruct))
        elif t is int:
            if -(1 << 63) <= v < (1 << 63):
                out.append(_INT64)
            elif 0 <= v < (1 << 64):
                out.append(_UINT64)
            else:
                return None
        elif t is bool or t is np.bool_:
            out.append(_BOOL)
        elif t is float:
            out.append(_FLOAT64)
        elif isinstance(v, np.generic) and t is not np.void:
            out.append(v.dtype)
        else:
            return None
    return tuple(out)


_BOOL, _INT64, _UINT64, _FLOAT64 = np.dtype(np.bool_), np.dtype(np.int64), np.dtype(np.uint64), np.dtype(np.float64)
_LAYOUT = ("A", "C", "F", "C")  # by the C- and F-contiguous flags: numba says C when both hold
_WRITEABLE = 0x400  # NPY_ARRAY_WRITEABLE


def type_keys(types: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """:func:`arg_keys` of numba types (the build's side); None when one has no such key."""
    from numba import types as nt
    from numba.np.numpy_support import as_dtype

    out = []
    for t in types:
        try:
            if isinstance(t, nt.Array):
                out.append((as_dtype(t.dtype), t.ndim, t.layout, not t.mutable, t.aligned))
            elif isinstance(t, (nt.Boolean, nt.Integer, nt.Float)):
                out.append(as_dtype(t))
            else:
                return None
        except NotImplementedError:
            return None
    return tuple(out)


def sources_hash(root: Path | None = None) -> str:
    """A hash of the package's Python sources (those under ``root``, by default this package's):
    the ahead-of-time module's name carries it, so a module built from other sources (a kernel
    or a constant it reads changed) is never loaded."""
    root = root or Path(__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(p.read_bytes())
    h.update(f"{sys.version_info[:2]} {np.__version__}".encode())
    return h.hexdigest()[:16]


def aot_name(digest: str | None = None) -> str:
    """The ahead-of-time module's name for these sources (``iotwatch._aot_kernels_<hash>``)."""
    return f"_aot_kernels_{digest or sources_hash()}"


def aot_dir() -> Path:
    """Where the ahead-of-time module is looked for: ``IOTWATCH_AOT_DIR`` (an install whose
    package folder is read-only builds it elsewhere: ``python -m iotwatch._aot --out DIR``), else
    the package folder."""
    env = os.environ.get("IOTWATCH_AOT_DIR")
    return Path(env) if env else Path(__file__).resolve().parent


def _load_aot() -> None:
    """Import the ahead-of-time module built from these sources, if there is one, and index its
    functions by kernel and argument types (its ``.pkl`` beside it); nothing when it is missing,
    stale or does not load (the JIT then does everything)."""
    global _aot_table, _aot_module
    _aot_table = {}
    name = aot_name()
    folder = aot_dir()
    try:
        with open(folder / f"{name}.pkl", "rb") as f:
            entries = pickle.load(f)
        path = folder / f"{name}{importlib.machinery.EXTENSION_SUFFIXES[0]}"
        spec = importlib.util.spec_from_file_location(f"iotwatch.{name}", path)
        if spec is None or spec.loader is None:
            return
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    except (OSError, ImportError, pickle.UnpicklingError, EOFError, AttributeError, ValueError):
        return
    if entries.get("externals"):
        import ctypes

        lib = ctypes.CDLL(mod.__file__)
        by_name = {e.name: e for e in _externals}
        for ename in entries["externals"]:
            e = by_name.get(ename)
            if e is None or e.address is None:
                continue  # kernels that call it are not called in this process
            getattr(lib, f"{ename}__set")(ctypes.c_void_p(e.address))
    table = {}
    for kid, keys, symbol in entries["functions"]:
        table[(kid, keys)] = getattr(mod, symbol)
    _aot_module = mod
    _aot_table = table


def prefer_aot(on: bool) -> bool:
    """Ahead-of-time kernels on or off for the calls that follow; returns whether ahead-of-time
    kernels are in use (False when there is no module for these sources). ``IOTWATCH_KERNELS``
    overrides ``on``: ``jit`` never uses them, ``aot`` whenever they are there (whatever the
    input's size: for tests and comparisons)."""
    global _use_aot
    force = os.environ.get("IOTWATCH_KERNELS", "")
    if force in ("jit", "aot"):
        on = force == "aot"
    with _lock:
        if on and _aot_table is None:
            _load_aot()
        _use_aot = bool(on and _aot_table)
        return _use_aot


def aot_loaded() -> bool:
    """Whether the ahead-of-time module for these sources was found and loaded."""
    return bool(_aot_table)


def all_kernels() -> list[Kernel]:
    """Every kernel declared so far (the build compiles the signatures they were called with)."""
    return list(_kernels)


def all_externals() -> list[External]:
    return list(_externals)
