"""Run the pipeline on Zeek conn.log files instead of captures (``iotwatch analyze conn.log``).

The files are read whole (:mod:`.read`), their rows sorted by start time across files, rebuilt
into packets (:mod:`.replay`) and fed to an ordinary :class:`~iotwatch.pipeline.Pipeline`. Alert
evidence that cites a packet of a capture cites the conn.log line (and Zeek uid) instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ..errors import InputError
from ..pipeline import Pipeline
from ..settings import Settings
from ..sinks import Sink
from .read import expand_conn_logs, read_conn_log
from .replay import connections, packets

if TYPE_CHECKING:
    from ..analyser import Analyser
    from ..detect import Alert, Detector
    from ..inventory.analyser import Inventory


class ConnLogSet:
    """Several conn.log files read as one stream of connections; problems are collected."""

    def __init__(self, paths: Iterable[str | Path]) -> None:
        self.paths = expand_conn_logs(paths)
        self.problems: list[InputError] = []
        self.duplicates: list[tuple[Path, Path]] = []  # (as CaptureSet's; conn.log files are read as given)
        self.files_read = 0
        self.rows = 0
        self.skipped = 0

    def read(self) -> pa.Table:
        tables = []
        for k, path in enumerate(self.paths):
            try:
                log = read_conn_log(path)
            except InputError as e:
                self.problems.append(e)
                continue
            self.files_read += 1
            self.problems += log.problems
            self.skipped += log.skipped
            self.rows += log.table.num_rows
            tables.append(log.table.append_column("file_index", pa.array(np.full(log.table.num_rows, k, np.int64))))
        if not tables:
            return pa.table({})
        return pa.concat_tables(tables)


def run_conn_logs(paths: Sequence[str | Path], settings: Settings | None = None, sinks: Iterable[Sink] = (),
                  detector: Detector | None = None, inventory: Inventory | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  analysers: Sequence[Analyser] = ()) -> tuple[Pipeline, ConnLogSet]:
    """Read conn.log files through a pipeline (as :func:`iotwatch.pipeline.run` reads captures).
    Alert evidence then cites conn.log lines (:func:`cite_lines`)."""
    settings = settings or Settings()
    logs = ConnLogSet(paths)
    table = logs.read()
    pipe = Pipeline(settings, sinks, detector=detector, inventory=inventory, analysers=analysers)
    from ..detect.detector import Detector as _Detector

    for a in pipe.analysers:  # a conn.log has no DNS questions: "no lookup" says nothing here
        if isinstance(a, _Detector):
            a.names_seen = False
    pipe.files = [str(p) for p in logs.paths]
    pipe.stats.files = logs.files_read
    pipe.stats.problems = len(logs.problems)
    if not table.num_rows:
        return pipe, logs
    conns, keep = connections(table)
    if not keep.all():
        logs.problems.append(InputError(logs.paths[0] if len(logs.paths) == 1 else "conn.log",
                                        f"{int((~keep).sum())} connection(s) with addresses that do not parse were skipped"))
        logs.skipped += int((~keep).sum())
        table = table.filter(pa.array(keep))
    # rows in replay order (by start time), so a rebuilt packet's connection names its log line
    order = np.argsort(np.round(table["ts"].to_numpy() * 1e9).astype(np.int64), kind="stable")
    lines = table["line"].to_numpy()[order]
    uids = table["uid"].take(pa.array(order)).combine_chunks()
    fidx = table["file_index"].to_numpy()[order]
    del table  # the replay needs only the arrays taken from it
    starts: list[np.ndarray] = []
    conn_of: list[np.ndarray] = []
    done = 0
    bs = settings.batch_size
    try:
        for chunk in packets(conns):
            for s in range(0, len(chunk.ts_ns), bs):
                e = min(len(chunk.ts_ns), s + bs)
                pk = type(chunk.packets)(chunk.packets.rec[s:e])
                pipe.feed_decoded(pk, chunk.ts_ns[s:e], chunk.wirelen[s:e], done + 1)
                new = np.flatnonzero(pipe.flows.packet_info(e - s).new & 1)
                starts.append(new + done + 1)
                conn_of.append(chunk.conn[s:e][new])
                done += e - s
            if progress is not None:
                progress(int(chunk.conn[-1]) + 1 if len(chunk.conn) else 0, len(conns))
    except KeyboardInterrupt:
        pipe.stats.interrupted = True
    pipe.stats.problems = len(logs.problems)
    frames = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    rows = np.concatenate(conn_of) if conn_of else np.zeros(0, np.int64)
    files = [str(p) for p in logs.paths]
    pipe.cite_evidence = lambda alerts: cite_lines(alerts, frames, rows, lines, uids, fidx, files)
    return pipe, logs


def cite_lines(alerts: list[Alert], frames: np.ndarray, rows: np.ndarray, lines: np.ndarray, uids: pa.Array,
               fidx: np.ndarray, files: list[str]) -> None:
    """Alert evidence from a conn.log run: each cited packet (the first of a rebuilt flow, by its
    number in the rebuilt stream: ``frames``, whose connections are ``rows``) becomes the conn.log
    file, line and Zeek uid of its connection."""
    order = np.argsort(frames)
    frames, rows = frames[order], rows[order]

    def cite(v: object) -> object:
        if not (isinstance(v, dict) and "packet" in v and "file" in v):
            return v
        k = int(np.searchsorted(frames, int(v["packet"]), side="right")) - 1
        if k < 0:
            return v
        r = int(rows[k])
        return {"file": files[int(fidx[r])], "line": int(lines[r]), "uid": uids[r].as_py()}

    for a in alerts:
        for key in ("first_packet", "alert_packet"):
            if key in a.evidence:
                a.evidence[key] = cite(a.evidence[key])
