"""Where a run's start-up goes: run by `make bench` (bench/run.py) with iotwatch's interpreter.

    .venv/bin/python bench/startup.py TINY.pcap OUT_DIR

Prints one JSON object: for each phase of `iotwatch analyze TINY.pcap --out OUT_DIR`, in the
order a run pays them, the wall seconds and the peak RSS (MB) at its end. The phases are the
CLI's own steps (imports, kernels, models, the analysis and its outputs) called one by one.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def main() -> None:
    tiny, out = Path(sys.argv[1]), Path(sys.argv[2])
    phases: list[dict[str, object]] = []
    t = time.perf_counter()

    def mark(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        phases.append({"phase": name, "s": round(now - t, 4),
                       "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)})
        t = now

    mark("interpreter")
    import iotwatch.cli
    mark("CLI modules (typer)")
    import numpy  # noqa: F401
    mark("NumPy")
    import pyarrow  # noqa: F401

    from iotwatch._pandas_probe import arrow_without_pandas

    arrow_without_pandas()  # as the command does before its pipeline
    mark("Arrow")
    import iotwatch.outputs
    import iotwatch.pipeline
    mark("iotwatch's pipeline modules")
    from iotwatch import _jit
    from iotwatch.pipeline import choose_kernels
    from iotwatch.warmup import load_kernels

    warm = choose_kernels(tiny.stat().st_size)  # as the pipeline decides
    if _jit.aot_loaded():
        mark("compiled kernels loaded (ahead-of-time module)")
    else:  # no module for these sources: numba's JIT, as the first kernel call would start it
        _jit.jit()
        mark("numba imported (no ahead-of-time kernels for these sources)")
        if warm:
            load_kernels()
            mark("compiled kernels loaded, warm-up run")
    from iotwatch.pipeline import build_analysers
    from iotwatch.settings import Settings

    for a in build_analysers(Settings()):
        a.prepare()
    mark("models and registries opened")
    iotwatch.outputs.analyze_to_folder([tiny], out, Settings())
    mark("the analysis and its outputs" + ("" if _jit.aot_loaded() or warm else " (kernels loaded on first use)"))
    print(json.dumps(phases))


if __name__ == "__main__":
    main()
