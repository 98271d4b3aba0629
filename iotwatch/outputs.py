"""A run into an output folder: ``events.jsonl``, ``flows.parquet/``, ``windows.parquet`` and
``baselines.json`` — what ``iotwatch analyze --out DIR`` writes, as a library call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import interrupt
from .errors import InputError, OutputError
from .pipeline import ProgressFn, build_analysers, run
from .settings import Settings
from .sinks import EveSink, ParquetSink, Sink

if TYPE_CHECKING:
    from .detect.alerts import Alert
    from .records import DeviceRecord, Stats


@dataclass(slots=True)
class FolderRun:
    """What a run into a folder found: the same objects :func:`iotwatch.analyze` returns, without
    the flow and window tables (they are in the folder)."""

    out: Path
    devices: dict[str, DeviceRecord]
    stats: Stats
    alerts: list[Alert] = field(default_factory=list)
    problems: list[InputError] = field(default_factory=list)
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)  # (a file given again, the path read)
    notes: list[str] = field(default_factory=list)  # what the user should know of the run (not problems)


def analyze_to_folder(paths: Sequence[str | Path], out: Path, settings: Settings, *, flow_events: bool = False,
                      progress: ProgressFn | None = None, zeek: str | None = None,
                      syslog: str | None = None, cluster: object | None = None) -> FolderRun:
    """Analyse ``paths`` into ``out``. Models are opened before anything is written (a bad model
    file fails the run at once); whatever was read is written even when the input is damaged
    (``problems``) or the reading is interrupted (``stats.interrupted``). A Ctrl-C while the
    models open stops the run before reading; one while the verdicts and files are written is
    held until they are complete (:func:`iotwatch.interrupt.take` then says it came). ``zeek``
    ('tsv' or 'json') also writes ``conn.log``; ``syslog`` (udp:// or tcp://HOST:PORT) sends the
    alerts as CEF (docs/zeek.md): an unreachable collector fails the run before it starts, a
    failed send raises OutputError after everything is written. ``cluster`` (:class:`iotwatch.parts.cluster.Cluster`: a Dask client and a part size)
    spreads the reading over its workers (docs/distributed.md)."""
    from .detect import Detector
    from .detect.baselines import write_baselines

    with interrupt.deferred():  # opening the models: a Ctrl-C now stops the run before reading
        interrupt.checkpoint("models")
        analysers = build_analysers(settings)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create the output folder: {e.strerror or e}") from None
    sender = None
    if syslog is not None:
        from .syslog import SyslogSink

        sender = SyslogSink(syslog)
    sinks: list[Sink] = [EveSink(out / "events.jsonl", flow_events=flow_events)]
    try:
        sinks.append(ParquetSink(out))
        if zeek is not None:
            from .addrs import LocalNets
            from .zeek.connlog import ZeekSink

            sinks.append(ZeekSink(out / "conn.log", LocalNets(list(settings.local_nets)), zeek))
        if sender is not None:
            sinks.append(sender)
        if cluster is None:
            pipe, captures = run(paths, settings, sinks, analysers=analysers, progress=progress)
        else:
            from .parts.cluster import run_on_cluster

            pipe, captures = run_on_cluster(paths, settings, sinks, cluster.client, analysers=analysers,  # type: ignore[assignment, attr-defined]
                                            progress=progress, part_bytes=cluster.part_bytes)  # type: ignore[attr-defined]
        # verdicts and writers: a Ctrl-C now is held until every output is complete (the caller
        # sees it with interrupt.take())
        with interrupt.deferred():
            interrupt.checkpoint("verdicts")
            devices, stats = pipe.finish()
            interrupt.checkpoint("writers")
            for a in analysers:
                if isinstance(a, Detector):
                    write_baselines(out / "baselines.json", a.baselines(), settings.window_s)
            for sink in sinks:
                sink.close()
    finally:
        with interrupt.deferred():
            for sink in sinks:
                sink.close()
            if sender is not None and sender not in sinks:
                sender.close()
    if sender is not None and sender.problem is not None:
        raise sender.problem
    return FolderRun(out=out, devices=devices, stats=stats, alerts=pipe.alerts, problems=list(captures.problems),
                     duplicates=list(captures.duplicates), notes=list(getattr(captures, "notes", [])))
