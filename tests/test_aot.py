"""Kernels compiled ahead of time (iotwatch/_aot.py) against numba's JIT.

The same captures analysed with each (``IOTWATCH_KERNELS=aot`` / ``jit``, in separate processes)
give identical events, flows and windows; a run on the ahead-of-time kernels imports no numba;
a missing, stale or damaged module leaves the run on the JIT with the same outputs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import CHECK_EVENTS, ROOT, SHARED_PCAPS, needs_shared

from iotwatch import _jit

DEMO = ROOT / "pcaps" / "demo-office.pcap"
VOLATILE = {"elapsed_s", "packets_per_s", "bytes_per_s"}

PROBE = """
import json, sys
from pathlib import Path
from iotwatch import _jit
from iotwatch.outputs import analyze_to_folder
from iotwatch.settings import Settings
analyze_to_folder([Path(p) for p in sys.argv[2:]], Path(sys.argv[1]), Settings())
print(json.dumps({"numba": "numba" in sys.modules, "aot": _jit.aot_loaded(), "jit": _jit.jit_loaded()}))
"""


@pytest.fixture(scope="session")
def aot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module for these sources: the install's when it is current (``make venv`` builds it),
    else built here (about a minute)."""
    installed = _jit.aot_dir()
    if (installed / f"{_jit.aot_name()}.pkl").exists():
        return installed
    out = tmp_path_factory.mktemp("aot")
    subprocess.run([sys.executable, "-m", "iotwatch._aot", "--out", str(out)], check=True, timeout=1200,
                   capture_output=True)
    return out


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The warm-up's tiny site as pcap and pcapng, the build's flood (past the evidence cap), the demo."""
    from iotwatch._aot import _flood_capture
    from iotwatch.capture.write import write_pcap, write_pcapng
    from iotwatch.warmup import warm_frames

    tmp = tmp_path_factory.mktemp("caps")
    write_pcap(tmp / "tiny.pcap", warm_frames())
    write_pcapng(tmp / "tiny.pcapng", warm_frames())
    return {"tiny.pcap": tmp / "tiny.pcap", "tiny.pcapng": tmp / "tiny.pcapng",
            "flood": _flood_capture(tmp, n=30_000), "demo": DEMO}


def analyse(caps: list[Path], out: Path, kernels: str, aot_dir: Path) -> dict[str, bool]:
    env = dict(os.environ, IOTWATCH_KERNELS=kernels, IOTWATCH_AOT_DIR=str(aot_dir))
    r = subprocess.run([sys.executable, "-c", PROBE, str(out), *map(str, caps)], env=env, capture_output=True,
                       text=True, timeout=900, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def outputs(out: Path) -> tuple[list[dict[str, object]], object, object]:
    events = []
    for line in (out / "events.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e.get("event_type") == "stats":
            for k in VOLATILE:
                e.pop(k, None)
        events.append(e)
    return events, pq.read_table(out / "flows.parquet"), pq.read_table(out / "windows.parquet")


def assert_same(a: Path, b: Path) -> None:
    ea, fa, wa = outputs(a)
    eb, fb, wb = outputs(b)
    assert ea == eb
    assert fa.num_rows > 0 and fa.equals(fb)  # type: ignore[attr-defined]
    assert wa.equals(wb)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["tiny.pcap", "tiny.pcapng", "flood", "demo"])
def test_aot_and_jit_outputs_identical(name: str, generated: dict[str, Path], aot_dir: Path, tmp_path: Path) -> None:
    cap = generated[name]
    aot = analyse([cap], tmp_path / "aot", "aot", aot_dir)
    jit = analyse([cap], tmp_path / "jit", "jit", aot_dir)
    assert aot == {"numba": False, "aot": True, "jit": False}, "every call of the run found its compiled function"
    assert jit["jit"] and jit["numba"]
    assert_same(tmp_path / "aot", tmp_path / "jit")
    if CHECK_EVENTS.exists():  # the public interface's checker, when ../shared is there
        r = subprocess.run([sys.executable, str(CHECK_EVENTS), str(tmp_path / "aot")], capture_output=True, text=True,
                           check=False)
        assert r.returncode == 0, r.stdout


@needs_shared
def test_aot_and_jit_identical_on_shared_captures(aot_dir: Path, tmp_path: Path) -> None:
    """Real captures (a port scan, an IoT device's setup, DNS exfiltration), read in place."""
    caps = [SHARED_PCAPS / p for p in ("sanders_packets/ppa1e_portscan.pcap", "iot_sentinel/EdimaxCam1/Setup-C-2-STA.pcap",
                                       "ndpi_protocols/dns_exfiltration.pcap")]
    for i, cap in enumerate(caps):
        assert analyse([cap], tmp_path / f"aot{i}", "aot", aot_dir)["aot"]
        analyse([cap], tmp_path / f"jit{i}", "jit", aot_dir)
        assert_same(tmp_path / f"aot{i}", tmp_path / f"jit{i}")


@pytest.mark.parametrize("damage", ["missing", "stale", "truncated index", "wrong module"])
def test_a_missing_or_stale_module_falls_back_to_the_jit(damage: str, generated: dict[str, Path], aot_dir: Path,
                                                          tmp_path: Path) -> None:
    """The module for these sources is looked for by name (a hash of the package's sources): a
    module built from other sources has another name; a damaged one does not load. Either way
    the run uses the JIT and its outputs are the ahead-of-time run's."""
    name = _jit.aot_name()
    built = sorted(aot_dir.glob(f"{name}*"))
    assert len(built) == 2  # the module and its index
    folder = tmp_path / "modules"
    folder.mkdir()
    other = _jit.aot_name("0" * 16)
    for f in built:
        if damage == "stale":  # as left by a build from other sources
            shutil.copy(f, folder / f.name.replace(name, other))
        elif damage in ("truncated index", "wrong module"):
            shutil.copy(f, folder / f.name)
    if damage == "truncated index":
        index = folder / f"{name}.pkl"
        index.write_bytes(index.read_bytes()[:100])
    if damage == "wrong module":  # not a loadable library (a half-written copy, another platform's file)
        module = next(f for f in folder.iterdir() if f.suffix != ".pkl")
        module.write_bytes(b"\x7fELF" + bytes(64))
    cap = generated["tiny.pcap"]
    fell_back = analyse([cap], tmp_path / "fallback", "aot", folder)
    assert fell_back["jit"] and fell_back["numba"] and not fell_back["aot"]
    assert analyse([cap], tmp_path / "aot", "aot", aot_dir)["aot"]
    assert_same(tmp_path / "fallback", tmp_path / "aot")


def test_the_module_name_follows_the_sources(tmp_path: Path) -> None:
    """A changed byte in any source of the package gives another hash, so another module name."""
    pkg = Path(_jit.__file__).resolve().parent
    copy = tmp_path / "iotwatch"
    shutil.copytree(pkg, copy, ignore=shutil.ignore_patterns("__pycache__", "_aot_kernels_*"))
    assert _jit.sources_hash(copy) == _jit.sources_hash()
    flows = copy / "flows.py"
    flows.write_text(flows.read_text() + "\n# a comment changes the hash too\n")
    assert _jit.sources_hash(copy) != _jit.sources_hash()


def test_choose_kernels_uses_the_module_for_every_size(aot_dir: Path) -> None:
    """With the module there the run needs no warm-up at any size; without it (``jit``) inputs of
    WARM_MIN_BYTES or more are warmed up and smaller ones load their kernels on first use."""
    probe = ("import json; from iotwatch.pipeline import choose_kernels, WARM_MIN_BYTES as W; "
             "print(json.dumps([choose_kernels(100), choose_kernels(W), choose_kernels(100 * W)]))")
    for kernels, want in (("aot", [False, False, False]), ("jit", [False, True, True])):
        env = dict(os.environ, IOTWATCH_KERNELS=kernels, IOTWATCH_AOT_DIR=str(aot_dir))
        r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120, check=True)
        assert json.loads(r.stdout) == want, kernels


def test_argument_types_are_told_apart_as_numba_does() -> None:
    """The run picks a compiled function by the key :func:`iotwatch._jit.arg_keys` makes of the
    arguments without numba; it must equal the key of the numba types the build compiled for,
    layout by layout (a 1-D contiguous array is C, a column of a 2-D array is A, a packed record
    unaligned, a read-only array apart from a writeable one)."""
    import numba
    import numpy as np

    packed = np.dtype([("a", "u8"), ("b", "u1")])
    ro = np.zeros(6)
    ro.flags.writeable = False
    values = [np.zeros(10), np.zeros((3, 3)), np.zeros((3, 3))[:, 1], np.zeros((3, 3), order="F"),
              np.zeros((3, 3))[::2, ::2], np.zeros(0), np.zeros((1, 3)), np.zeros(5, np.uint8)[::2], np.zeros(4, packed),
              np.zeros(4, np.dtype(packed.descr, align=True)), np.zeros(3, np.int32), ro, 5, -3, 2**63 + 5, True, 1.5,
              np.int32(3), np.uint64(7), np.float32(2), np.bool_(True)]
    keys = [_jit.arg_keys((v,)) for v in values]
    assert keys == [_jit.type_keys((numba.typeof(v),)) for v in values]
    assert keys[0] != keys[2] != keys[1]  # a column of a 2-D array is neither 1-D C nor 2-D C
    assert keys[0] != keys[11]  # read-only
    assert keys[8] != keys[9]  # packed record, aligned record
    assert _jit.arg_keys(("text",)) is None and _jit.arg_keys((2**70,)) is None


def test_a_live_captures_pipe_thread_runs_on_the_module(aot_dir: Path) -> None:
    """A live run chooses its kernels as for an input without end (``live.live_kernels``): with the
    module, no warm-up, and the compiled thread that drains dumpcap's pipe (capture/drain.py) is
    the module's, so the run starts no JIT; without it, the JIT and its warm-up."""
    probe = """
import json, os, time
import numpy as np
from iotwatch import _jit
from iotwatch.live import live_kernels
warm = live_kernels()
from iotwatch.capture.drain import PipeDrain
data = np.random.default_rng(5).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
r, w = os.pipe()
d = PipeDrain(r, backlog=1 << 20)
got, out = [], np.empty(1 << 16, np.uint8)
for k in range(0, len(data), 1 << 15):
    os.write(w, data[k:k + (1 << 15)])
    n = d.take(out, 0)
    got.append(out[:n].tobytes())
os.close(w)
while not d.ended or d.held:
    n = d.take(out, 0)
    got.append(out[:n].tobytes())
    time.sleep(0.001)
d.close(timeout=5.0)
print(json.dumps({"warm": warm, "same": b"".join(got) == data, "jit": _jit.jit_loaded()}))
"""
    for kernels, want in (("aot", {"warm": False, "same": True, "jit": False}),
                          ("jit", {"warm": True, "same": True, "jit": True})):
        env = dict(os.environ, IOTWATCH_KERNELS=kernels, IOTWATCH_AOT_DIR=str(aot_dir))
        r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300,
                           check=False)
        assert r.returncode == 0, r.stderr[-2000:]
        assert json.loads(r.stdout.strip().splitlines()[-1]) == want, kernels
