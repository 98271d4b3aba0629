"""Build the ahead-of-time compiled kernels: ``python -m iotwatch._aot`` (``make venv`` runs it).

Runs analyse their captures without importing numba (docs/design.md "Compiled kernels"): the
kernels come from one extension module compiled ahead of time with numba's ``pycc``. Which
functions, for which argument types, is not written down anywhere: this build analyses small
generated captures under the JIT (the warm-up's frames as pcap and pcapng, the demo office, a
flood past the evidence cap, the demo office with full flow and device tables) and compiles
every signature the kernels were called with, so a new kernel, or a new layout an old one is
called with, is covered at the next build. A call whose types were not compiled goes to the
JIT at run time (correct, only slower: numba is imported then).

Output, in the package folder: ``_aot_kernels_<hash>.<ext>`` (the module) and
``_aot_kernels_<hash>.pkl`` (kernel, argument types → exported function), where ``<hash>`` is
:func:`iotwatch._jit.sources_hash`: a module built from other sources is never loaded. Older
modules are removed. Needs a C compiler (gcc: ``make sysdeps``) and Python's headers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import _jit

PACKAGE = Path(__file__).resolve().parent


def record_signatures(extra: list[Path] | None = None) -> list[tuple[_jit.Kernel, list[Any]]]:
    """Analyse small generated captures (and ``extra``) under the JIT; return every kernel with
    the signatures (numba ``Signature``s, return type included) it was compiled or loaded for."""
    from .capture.write import write_pcap, write_pcapng
    from .outputs import analyze_to_folder
    from .settings import Settings
    from .warmup import load_kernels, warm_frames

    _jit.prefer_aot(False)
    _jit.jit()
    with tempfile.TemporaryDirectory(prefix="iotwatch-aot-") as tmp:
        t = Path(tmp)
        frames = warm_frames()
        write_pcap(t / "tiny.pcap", frames)
        write_pcapng(t / "tiny.pcapng", frames)
        caps = [t / "tiny.pcap", t / "tiny.pcapng", _demo_capture(t), _flood_capture(t), *(extra or [])]
        for i, cap in enumerate(caps):
            analyze_to_folder([cap], t / f"out{i}", Settings())
        # a flow table and a device table that fill up: the eviction and compaction paths
        analyze_to_folder([caps[2]], t / "full", Settings(max_flows=1024, max_devices=64))
        load_kernels()  # the warm-up's own calls (the rules' screen, the forest)
        _drain_pipe()  # a live capture's pipe thread
    out = []
    for k in _jit.all_kernels():
        d = k.dispatcher
        sigs = [d.overloads[args].signature for args in d.signatures]
        if sigs:
            out.append((k, sigs))
    return out


def _drain_pipe() -> None:
    """Drain a pipe as a live capture drains dumpcap's (capture/drain.py), so that its compiled
    thread is built too: a live run then starts no JIT."""
    from .capture.drain import PipeDrain

    r, w = os.pipe()
    try:
        os.write(w, bytes(4096))
        os.close(w)
        d = PipeDrain(r, backlog=1 << 20)
        while not d.ended:
            time.sleep(0.01)
        d.close(timeout=5.0)
    finally:
        os.close(r)


def _demo_capture(tmp: Path) -> Path:
    """The demo office (make pcaps), generated here: the package does not ship captures."""
    import subprocess

    path = tmp / "demo-office.pcap"
    subprocess.run([sys.executable, "-m", "iotwatch.synth.demo", str(path)], check=True,
                   stdout=subprocess.DEVNULL)
    return path


def _flood_capture(tmp: Path, n: int = 60_000) -> Path:
    """A spoofed SYN flood and a UDP spray from one device, past the detector's evidence cap
    (20,000 flows per device and class): the paths only floods take."""
    import random
    import struct

    from .capture.write import write_pcap

    rng = random.Random(1)
    src_mac, gw = (0x0012_3456_0001).to_bytes(6, "big"), (0x0012_3456_00FE).to_bytes(6, "big")
    frames = []
    for i in range(n):
        dst = rng.getrandbits(32) | 0x0100_0000
        sport, dport = 1024 + rng.getrandbits(15), rng.choice((23, 80, 443, 2323, 53, 123))
        if i % 4:
            l4 = struct.pack("!HHIIBBHHH", sport, dport, rng.getrandbits(32), 0, 0x50, 0x02, 1024, 0, 0)
            proto = 6
        else:
            l4 = struct.pack("!HHHH", sport, dport, 16, 0) + bytes(8)
            proto = 17
        ip = struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(l4), i & 0xFFFF, 0, 64, proto, 0, 0xC0A8_0114, dst) + l4
        frames.append((1000.0 + i * 1e-4, gw + src_mac + b"\x08\x00" + ip))
    path = tmp / "flood.pcap"
    write_pcap(path, frames)
    return path


def _shim_source(externals: list[_jit.External]) -> str:
    """C for each external function: the name the kernels call, forwarding through a pointer
    that :func:`iotwatch._jit._load_aot` sets (``NAME__set``) to the address in the process."""
    from numba import types
    from numba.core import sigutils

    ctype = {types.voidptr: "void *", types.void: "void", types.none: "void", types.int64: "long long",
             types.uint64: "unsigned long long", types.int32: "int", types.uint32: "unsigned int",
             types.float64: "double"}
    out = []
    for e in externals:
        args, ret = sigutils.normalize_signature(e.signature)
        params = ", ".join(f"{ctype[a]} a{i}" for i, a in enumerate(args)) or "void"
        names = ", ".join(f"a{i}" for i in range(len(args)))
        rt = ctype[ret]
        out += [f"static {rt} (*{e.name}_ptr)({', '.join(ctype[a] for a in args) or 'void'});",
                f"{rt} {e.name}({params}) {{ {'return ' if rt != 'void' else ''}{e.name}_ptr({names}); }}",
                f"void {e.name}__set(void *p) {{ {e.name}_ptr = p; }}"]
    return "\n".join(out) + "\n"


@contextlib.contextmanager
def _as_the_jit_compiles(kinds: dict[Any, str]) -> Iterator[None]:
    """Compile each exported function as numba's JIT compiles the kernel (``kinds``: Python
    function → its decorator's name), on this machine's CPU with its features.

    pycc compiles every function with one ``Flags`` object, which compiling a function changes
    (after the first, literal constants assigned to one variable no longer unify: "No conversion
    from Literal[int](1) to Literal[int](0)"): each gets its own here, with the kernel's options
    (the GIL released around the call, numba's reference counting only where it allocates).
    pycc's code generator targets a CPU model without its features (LLVM's defaults for the
    model, which a virtual machine may not offer): the host's features are given, as the JIT
    does."""
    import numba.pycc.compiler as pycc_compiler
    from numba.core.codegen import AOTCPUCodegen

    original = pycc_compiler.compile_extra
    features = AOTCPUCodegen._customize_tm_features

    def compile_extra(typingctx: Any, targetctx: Any, func: Any, args: Any, return_type: Any, flags: Any,
                      *a: Any, **kw: Any) -> Any:
        f = flags.copy()
        opts = _jit._KINDS[kinds[func]]
        f.release_gil = bool(opts.get("nogil"))
        f.nrt = bool(opts.get("_nrt", True))
        return original(typingctx, targetctx, func, args, return_type, f, *a, **kw)

    pycc_compiler.compile_extra = compile_extra
    AOTCPUCodegen._customize_tm_features = lambda self: self._get_host_cpu_features()  # type: ignore[method-assign]
    try:
        yield
    finally:
        pycc_compiler.compile_extra = original
        AOTCPUCodegen._customize_tm_features = features  # type: ignore[method-assign]


def build(out_dir: Path = PACKAGE, extra: list[Path] | None = None, verbose: bool = False) -> Path:
    """Record the signatures, compile them into the module for the current sources; return its
    path."""
    from llvmlite import binding as llvm
    from numba.pycc import CC

    digest = _jit.sources_hash()
    name = _jit.aot_name(digest)
    t0 = time.perf_counter()
    recorded = record_signatures(extra)
    cc = CC(name)
    cc.output_dir = str(out_dir)
    cc.target_cpu = llvm.get_host_cpu_name()  # as the JIT compiles: built on the machine that runs it
    cc.verbose = verbose
    functions = []
    n = 0
    for k, sigs in recorded:
        for sig in sigs:
            keys = _jit.type_keys(tuple(sig.args))
            if keys is None:
                continue
            symbol = f"k{n}_{k.__name__.lstrip('_')}"
            n += 1
            cc.export(symbol, sig)(k.py_func)
            functions.append((k.id, keys, symbol))
    externals = _jit.all_externals()
    with tempfile.TemporaryDirectory(prefix="iotwatch-aot-c-") as tmp:
        if externals:
            shim = Path(tmp) / "iotwatch_externals.c"
            shim.write_text(_shim_source(externals))
            cc._mixin_sources = [*cc._mixin_sources, str(shim)]  # pycc joins it to its folder: absolute stays
        with _as_the_jit_compiles({k.py_func: k.kind for k, _ in recorded}):
            cc.compile()
    index = out_dir / f"{name}.pkl"
    tmp_index = index.with_suffix(".pkl.tmp")
    with open(tmp_index, "wb") as f:
        pickle.dump({"functions": functions, "externals": [e.name for e in externals]}, f)
    os.replace(tmp_index, index)
    built = out_dir / cc.output_file
    for old in out_dir.glob("_aot_kernels_*"):
        if not old.name.startswith(name):
            old.unlink()
    print(f"iotwatch: {n} kernel signatures compiled ahead of time into {built.name} "
          f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return built


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m iotwatch._aot", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only say whether the module for these sources is there")
    ap.add_argument("--out", type=Path, default=None,
                    help="folder to write the module to (default: IOTWATCH_AOT_DIR, else the package folder)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.check:
        ok = _jit.prefer_aot(True)
        print(f"{_jit.aot_dir() / _jit.aot_name()}: {'loaded' if ok else 'missing or stale'}")
        return 0 if ok else 1
    out = args.out or _jit.aot_dir()
    out.mkdir(parents=True, exist_ok=True)
    build(out, verbose=args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
