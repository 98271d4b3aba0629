"""A run spread over a Dask cluster: index the files, run the parts, merge here.

:func:`connect` opens a :class:`distributed.Client` to an existing scheduler (``--dask ADDRESS``)
or starts a local cluster of worker processes (``--workers N``). :func:`run_on_cluster` is what
:func:`iotwatch.outputs.analyze_to_folder` runs instead of :func:`iotwatch.pipeline.run` then:

1. one task per file walks its record headers (:func:`iotwatch.parts.plan.index_file`);
2. the files are cut into parts (:func:`~iotwatch.parts.plan.make_plan`), one task each
   (:func:`iotwatch.parts.part.run_part`); a task whose worker dies is run again elsewhere (Dask
   reschedules it; ``retries`` covers a task that failed on a worker's own trouble);
3. the parts are merged on this machine (:mod:`iotwatch.parts.merge`), where the analysers
   conclude and the sinks write, as in a single run.

A part that fails (its file vanished, became unreadable) is a problem of that file, reported in
one line like any damaged input; the other parts' results are still merged and written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..capture import CaptureSet
from ..errors import InputError, SettingsError
from ..records import DeviceRecord, Stats
from ..settings import Settings
from ..sinks import Sink, deliver_end
from . import merge as _merge
from .part import PartResult, run_part
from .plan import DEFAULT_PART_BYTES, FileIndex, Plan, index_file, make_plan, time_notes

if TYPE_CHECKING:
    from ..analyser import Analyser
    from ..detect.alerts import Alert

#: how often a part is tried when its worker fails (a lost worker's task is rescheduled by Dask
#: itself, up to its ``distributed.scheduler.allowed-failures``)
RETRIES = 2

ProgressFn = Callable[[int, int], None]


def connect(address: str | None = None, workers: int | None = None) -> Any:
    """A Dask client: to the scheduler at ``address``, or to a new local cluster of ``workers``
    single-threaded worker processes. Raises SettingsError when neither or both are given, and
    InputError when the scheduler cannot be reached."""
    if (address is None) == (workers is None):
        raise SettingsError("dask", "give a scheduler address or a number of local workers, not both")
    from distributed import Client, LocalCluster

    if workers is not None:
        if workers < 1 or workers > 4096:
            raise SettingsError("workers", f"must be between 1 and 4096, not {workers}")
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                               silence_logs=40)
        return Client(cluster)
    try:
        return Client(address, timeout="20s")
    except (OSError, TimeoutError) as e:
        raise InputError(str(address), f"cannot reach the Dask scheduler: {e}") from None


@contextmanager
def joblib_backend(client: Any) -> Iterator[None]:
    """joblib's Dask backend on ``client``'s cluster: the learning path (``iotwatch.learn``:
    observing every labelled capture, growing the forests' trees) runs its joblib calls as
    tasks there. The workers need the captures and models at the same paths."""
    import joblib

    with joblib.parallel_config(backend="dask"):
        yield


@dataclass(slots=True)
class Cluster:
    """Where a split run goes (``analyze_to_folder(cluster=...)``): a Dask client, and the size
    of a part (a larger file is cut into byte ranges of about this size)."""

    client: Any
    part_bytes: int = DEFAULT_PART_BYTES


def close(client: Any) -> None:
    """Close the client, and the local cluster it started (if any)."""
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


@dataclass(slots=True)
class _Captures:
    """What analyze_to_folder reads of a CaptureSet."""

    paths: list[Path]
    problems: list[InputError] = field(default_factory=list)
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)
    files_read: int = 0
    notes: list[str] = field(default_factory=list)


class MergedRun:
    """The merged parts, standing in for a :class:`~iotwatch.pipeline.Pipeline` whose input is
    all read: :meth:`finish` hands everything to the analysers and the sinks."""

    def __init__(self, settings: Settings, sinks: Iterable[Sink], analysers: Sequence[Analyser],
                 results: list[PartResult], files: list[str], t0: float, problems: int, files_read: int) -> None:
        self.settings = settings
        self.sinks = list(sinks)
        self.analysers = list(analysers)
        self.results = sorted(results, key=lambda r: r.number)
        self.files = files
        self.alerts: list[Alert] = []
        self.stats = _merge.merge_stats(self.results)
        self.stats.files = files_read
        self.stats.problems = problems
        self._t0 = t0
        self.flows = np.zeros(0)
        self.windows = pa.table({})

    def finish(self) -> tuple[dict[str, DeviceRecord], Stats]:
        from ..flows import flows_to_table
        from ..pipeline import CHUNK

        s = self.settings
        for a in self.analysers:
            a.bind(s.window_s, _nets(s))
        res = self.results
        flows, maps = _merge.renumber_flows(res)
        windows = _merge.merge_windows(res, s.window_s)
        devices = _merge.merge_devices(res)
        groups = _merge.rare_frames(res, maps, s.window_s) if any(a.wants_rare for a in self.analysers) else []
        self.results = []  # (their memory goes as soon as the merged tables exist)
        st = self.stats
        st.flows = len(flows)
        st.windows = windows.num_rows
        st.devices = len(devices)
        _merge.feed_analysers(self.analysers, groups, flows, windows)
        for k in range(0, len(flows), CHUNK):
            t = flows_to_table(flows[k:k + CHUNK])
            for sink in self.sinks:
                sink.on_flows(t)
        for sink in self.sinks:
            sink.on_windows(windows)
        self.flows, self.windows = flows, windows
        loading = 0.0
        for a in self.analysers:
            loading += a.prepare()
            self.alerts += a.conclude(devices, self.files)
        st.alerts = len(self.alerts)
        st.elapsed_s = time.perf_counter() - self._t0 - loading
        deliver_end(self.sinks, self.alerts, devices, st)
        return devices, st


def _nets(s: Settings) -> Any:
    from ..addrs import LocalNets

    return LocalNets(list(s.local_nets))


def index_files(client: Any, files: Sequence[str], batch_size: int) -> list[FileIndex]:
    """Walk every file's record headers, one task per file, in the run's file order."""
    futs = client.map(index_file, list(files), range(len(files)), [batch_size] * len(files), pure=False,
                      retries=RETRIES, key=[f"iotwatch-index-{k}" for k in range(len(files))])
    indexes: list[FileIndex] = client.gather(futs)
    return sorted(indexes, key=lambda f: f.file_index)


def run_parts(client: Any, plan: Plan, settings: Settings, progress: ProgressFn | None = None,
              interrupted: list[bool] | None = None) -> tuple[list[PartResult], list[InputError]]:
    """Run every part of ``plan`` as a task; return the results and, for each part that failed
    (its file vanished or became unreadable since it was indexed), the problem, in one line.
    Ctrl-C stops waiting: the parts done so far are returned (``interrupted`` gets True)."""
    from distributed import as_completed

    total = sum(p.bytes for p in plan.parts)
    # the plan as a task of its own (not scattered data): a worker lost with its copy, and the
    # scheduler gives it again to whoever runs the part next
    plan_f = client.submit(_given, plan, pure=False, key=f"iotwatch-plan-{id(plan):x}")
    futs = [client.submit(run_part, plan_f, p.number, settings, pure=False, retries=RETRIES,
                          key=f"iotwatch-part-{p.number}") for p in plan.parts]
    results: list[PartResult] = []
    problems: list[tuple[int, InputError]] = []
    done = 0
    if progress is not None:
        progress(0, total)
    by_key = {f.key: plan.parts[k] for k, f in enumerate(futs)}
    try:
        for fut in as_completed(futs):
            part = by_key[fut.key]
            path = plan.files[part.file_index].path
            try:
                results.append(fut.result())
            except InputError as e:  # the usual one line, naming the file; the other parts go on
                problems.append((part.number, e))
            except OSError as e:
                problems.append((part.number, InputError(path, f"cannot read frames {part.first}-{part.end - 1}: {e}")))
            except Exception as e:  # the cluster's own trouble (a part lost past its retries...): that part's line
                problems.append((part.number, InputError(
                    path, f"frames {part.first}-{part.end - 1} failed on the cluster: {type(e).__name__}: {e}")))
            done += part.bytes
            if progress is not None:
                progress(done, total)
    except KeyboardInterrupt:  # the parts done are merged and written; the others are cancelled
        if interrupted is not None:
            interrupted.append(True)
    finally:
        client.cancel([plan_f, *futs])
    # parts that read the same file (a look-back, a tail) fail alike: one line per problem
    lines = dict.fromkeys(str(e) for _, e in sorted(problems, key=lambda x: x[0]))
    first = {str(e): e for _, e in reversed(sorted(problems, key=lambda x: x[0]))}
    return results, [first[k] for k in lines]


def _given(x: Any) -> Any:
    return x


def run_on_cluster(paths: Sequence[str | Path], settings: Settings, sinks: Iterable[Sink], client: Any,
                   analysers: Sequence[Analyser] = (), progress: ProgressFn | None = None,
                   part_bytes: int = DEFAULT_PART_BYTES) -> tuple[MergedRun, _Captures]:
    """Index, split, run and gather the parts of ``paths`` on ``client``'s cluster. Returns the
    merged run (call its ``finish``) and the input's problems, duplicates and notes."""
    t0 = time.perf_counter()
    captures = CaptureSet(paths, batch_size=settings.batch_size)  # the single run's file order
    files = [str(p) for p in captures.paths]
    indexes = index_files(client, files, settings.batch_size)
    out = _Captures(paths=list(captures.paths), duplicates=list(captures.duplicates))
    for f in indexes:
        if f.error is not None:
            out.problems.append(f.error)
        else:
            out.files_read += 1
            out.problems.extend(f.problems)
    out.notes = time_notes(indexes)
    plan = make_plan(indexes, part_bytes)
    stopped: list[bool] = []
    results, failed = run_parts(client, plan, settings, progress, stopped)
    out.problems += failed
    run = MergedRun(settings, sinks, analysers, results, files, t0, len(out.problems), out.files_read)
    run.stats.interrupted = bool(stopped)
    return run, out
