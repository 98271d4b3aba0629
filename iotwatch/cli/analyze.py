"""``iotwatch analyze`` and ``iotwatch devices``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .. import interrupt
from ..errors import CaptureError, InputError
from ..settings import DEFAULT_MAX_FLOWS, Settings
from .common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, say, user_errors

if TYPE_CHECKING:  # the library (NumPy, Arrow, numba) and rich load when a command runs, not for --help
    from rich.progress import Progress
    from rich.table import Table

    from ..detect import Alert
    from ..records import DeviceRecord, Stats

PROGRESS_MIN_BYTES = 64 << 20


def _print(*renderables: object) -> None:
    from rich.console import Console

    # a pipe or a log file has no width: give the tables room instead of rich's 80 columns
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    for r in renderables:
        console.print(r)


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _ips(d: DeviceRecord) -> str:
    return ", ".join(d.ips[:2]) + (f" (+{len(d.ips) - 2})" if len(d.ips) > 2 else "")


def _kind(d: DeviceRecord) -> str:
    if d.device_type is None:
        return "—"
    what = d.device_type + (f" {d.model}" if d.model else "")
    return f"{d.vendor + ' ' if d.vendor else ''}{what}"


def device_table(devices: dict[str, DeviceRecord], top: int) -> Table:
    from rich.table import Table

    t = Table(title="Devices, by bytes uploaded to external addresses", title_justify="left")
    t.add_column("MAC", no_wrap=True, min_width=17)
    t.add_column("IP", no_wrap=True, min_width=15)
    t.add_column("what", overflow="fold", ratio=1, min_width=12)
    for col in ("uploaded", "sent", "received"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("alerts", overflow="fold")
    rows = sorted(devices.values(), key=lambda d: (-d.upload_bytes, -d.bytes_out, d.key))
    for d in rows[:top] if top > 0 else rows:
        cats = sorted({str(a["category"]) for a in d.alerts})
        ip = (d.ips[0] + (f" +{len(d.ips) - 1}" if len(d.ips) > 1 else "")) if d.ips else "—"
        t.add_row(d.mac or "—", ip, _kind(d), _human(d.upload_bytes), _human(d.bytes_out), _human(d.bytes_in),
                  f"[bold red]{', '.join(cats)}[/]" if cats else "")
    if top > 0 and len(rows) > top:
        t.caption = f"{len(rows) - top} more devices in events.jsonl"
    return t


def inventory_table(devices: dict[str, DeviceRecord]) -> Table:
    from rich.table import Table

    t = Table(title="Device inventory", title_justify="left")
    t.add_column("MAC", no_wrap=True, min_width=17)
    t.add_column("IPs", overflow="fold")
    t.add_column("vendor", overflow="fold")
    t.add_column("type", overflow="fold", max_width=24)
    t.add_column("conf.", justify="right", no_wrap=True)
    t.add_column("evidence", overflow="fold", ratio=2)
    # the same words as analyze's table: "sent"/"received" are all frame bytes, "uploaded" only
    # those to external addresses (one name, one meaning)
    t.add_column("sent", justify="right", no_wrap=True)
    t.add_column("received", justify="right", no_wrap=True)
    order = {"recorder": 0, "camera": 1}
    for d in sorted(devices.values(), key=lambda d: (order.get(d.device_type or "", 2), d.device_type or "", d.key)):
        kind = (d.device_type or "—") + (f" ({d.model})" if d.model else "")
        conf = f"{d.type_confidence:.2f}" if d.type_confidence is not None else ""
        t.add_row(d.mac or "—", _ips(d) or "—", d.vendor or "—", kind, conf, "; ".join(d.evidence[:3]) or "—",
                  _human(d.bytes_out), _human(d.bytes_in))
    return t


def alerts_panel(alerts: list[Alert]) -> object:
    """The alerts in plain words, strongest first: what an auditor reads before anything else."""
    from rich.text import Text

    out = Text()
    out.append(f"{len(alerts)} alert(s)\n", style="bold red")
    for a in alerts:
        style = {1: "bold red", 2: "red", 3: "yellow"}.get(a.severity, "")
        out.append(f"  [{a.severity}] ", style=style)
        out.append(a.sentence() + "\n")
        ev = a.evidence
        facts = []
        for k in ("x_baseline", "uplink_share", "targets", "sessions", "packets_per_s", "period_s"):
            if k in ev:
                v = ev[k]
                facts.append(f"{k.replace('_', ' ')} {v:.0%}" if k == "uplink_share" else f"{k.replace('_', ' ')} {v}")
        if isinstance(ev.get("first_packet"), dict):
            fp = ev["first_packet"]
            where = f"#{fp['packet']}" if "packet" in fp else f" line {fp.get('line')}"  # conn.log input cites lines
            facts.append(f"first packet {Path(str(fp['file'])).name}{where}")
        if facts:
            out.append("      " + ", ".join(facts) + "\n", style="dim")
    return out


def report_duplicates(duplicates: list[tuple[Path, Path]]) -> None:
    """One line per file given more than once (read once)."""
    for again, kept in duplicates:
        same = "the same path" if again == kept else f"the same file as {kept}"
        say(f"iotwatch: note: {again} is {same}: read once")


def _report_problems(problems: list[InputError]) -> None:
    for p in problems:
        if isinstance(p, CaptureError):
            kind = "damaged" if p.fatal else "warning"
        else:
            kind = "error"
        say(f"iotwatch: {kind}: {p}")


def _rate(pps: float) -> str:
    return f"{pps / 1e6:.2f} M packets/s" if pps >= 1e6 else f"{pps / 1e3:.0f} k packets/s"


def _summary(stats: Stats, out: Path | None) -> str:
    where = f" → {out}" if out else ""
    return (f"{stats.packets:,} packets, {_human(stats.bytes)} in {stats.files} file(s), {stats.flows:,} flows, "
            f"{stats.devices} devices, {stats.alerts} alerts, {stats.elapsed_s:.2f} s ({_rate(stats.packets_per_s)}){where}")


def _settings(window: float, local_net: list[str], idle_timeout: float, active_timeout: float, max_flows: int,
              **analysers: object) -> Settings:
    """The run's settings, checked by the library (Settings.validate: one usage line, exit 2)."""
    with user_errors():
        return Settings(window_s=window, local_nets=tuple(local_net), idle_timeout=idle_timeout,
                        active_timeout=active_timeout, max_flows=max_flows,
                        **analysers).validate()  # type: ignore[arg-type]


def _check_out(out: Path, top: int) -> None:
    """The options only the command has, checked before any work: --top, and an --out that is an
    existing file."""
    from ..errors import check_number

    with user_errors():
        check_number("top", top, low=0, high=1 << 31, integer=True, low_inclusive=True)
    if out.exists() and not out.is_dir():
        say(f"iotwatch: usage error: --out: {out} is an existing file, not a folder")
        raise typer.Exit(EXIT_USAGE)


Paths = Annotated[list[Path], typer.Argument(help="Capture files (pcap, pcapng, .gz) or folders of them; or "
                                             "Zeek conn.log files (TSV or JSON, .gz too; docs/zeek.md).",
                                             show_default=False)]
Window = Annotated[float, typer.Option("--window", "-w", help="Device window length in seconds.")]
LocalNet = Annotated[list[str], typer.Option("--local-net", help="A network (CIDR) to count as local besides "
                                             "RFC 1918, link-local and ULA. Repeat for several.")]
Idle = Annotated[float, typer.Option("--idle-timeout", help="Seconds without packets before a flow ends.")]
Active = Annotated[float, typer.Option("--active-timeout", help="Seconds after which a long flow is cut.")]
MaxFlows = Annotated[int, typer.Option("--max-flows", help="Flow table capacity; beyond it the least recently "
                                       "seen flows are evicted (and counted).")]
Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder (created if missing).")]
FlowEvents = Annotated[bool, typer.Option("--flow-events/--no-flow-events",
                                          help="Also write every flow as an EVE 'flow' event in events.jsonl "
                                          "(all flows are always in the flows.parquet folder; a flood makes this file large).")]
Top = Annotated[int, typer.Option("--top", help="Devices to list in the terminal (0: all).")]
ModelOpt = Annotated[Path | None, typer.Option("--model", help="Behaviour model bundle (default: models/behaviour, "
                                               "the one `make model` builds).")]
NoModel = Annotated[bool, typer.Option("--no-model", help="Rules only: no behaviour model.")]
TypeModelOpt = Annotated[Path | None, typer.Option("--type-model", help="Device-type model bundle (default: "
                                                   "models/device_type).")]
Baseline = Annotated[Path | None, typer.Option("--baseline", help="baselines.json of an earlier run (or its output "
                                               "folder): each device's normal upload, instead of learning it from "
                                               "the quiet part of this capture.")]
Uplink = Annotated[float | None, typer.Option("--uplink-mbps", help="The site's uplink, Mbit/s: upload surges are "
                                              "also given as a share of it.")]
ZeekOpt = Annotated[str | None, typer.Option("--zeek", metavar="tsv|json",
                                             help="Also write OUT/conn.log, Zeek's connection log: 'tsv' (Zeek's "
                                             "default format, with its header) or 'json' (JSON lines).")]
SyslogOpt = Annotated[str | None, typer.Option("--syslog", metavar="udp|tcp://HOST:PORT",
                                               help="Also send each alert as a CEF line in an RFC 5424 syslog "
                                               "message to this collector (TCP: octet-counting framing).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only problems.")]
ReportOpt = Annotated[bool, typer.Option("--report", help="Also write the audit report, OUT/report.ja.html and "
                                         "OUT/report.en.html (as `iotwatch report`).")]
EvidenceOpt = Annotated[bool, typer.Option("--evidence", help="Also write the evidence pack into OUT/evidence/ "
                                           "(as `iotwatch evidence`).")]
DaskOpt = Annotated[str | None, typer.Option("--dask", metavar="SCHEDULER",
                                             help="Spread the reading over the Dask cluster whose scheduler is at "
                                             "this address (tcp://HOST:8786); same results as one process "
                                             "(docs/distributed.md).")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="Spread the reading over a local Dask cluster "
                                                "of this many worker processes.")]
PartMb = Annotated[float, typer.Option("--part-mb", help="With --dask/--workers: cut capture files larger than this "
                                       "(MB) into parts of about this size, one task each.")]


def analyze_command(paths: Paths, out: Out = Path("iotwatch-out"), window: Window = 60.0,
                    local_net: LocalNet = [],  # noqa: B006 - typer reads it, never mutated
                    idle_timeout: Idle = 120.0, active_timeout: Active = 1800.0, max_flows: MaxFlows = DEFAULT_MAX_FLOWS,
                    flow_events: FlowEvents = False, top: Top = 30, quiet: Quiet = False,
                    model: ModelOpt = None, no_model: NoModel = False, type_model: TypeModelOpt = None,
                    baseline: Baseline = None, uplink_mbps: Uplink = None, report: ReportOpt = False,
                    evidence: EvidenceOpt = False, zeek: ZeekOpt = None, syslog: SyslogOpt = None,
                    dask: DaskOpt = None, workers: WorkersOpt = None, part_mb: PartMb = 256.0) -> None:
    """Analyse captures: alerts, devices (what they are), flows and per-device windows into
    OUT/events.jsonl and Parquet."""
    settings = _settings(window, local_net, idle_timeout, active_timeout, max_flows, model=model,
                         no_model=no_model, type_model=type_model, baseline=baseline, uplink_mbps=uplink_mbps)
    _check_out(out, top)
    if zeek is not None and zeek not in ("tsv", "json"):
        raise typer.BadParameter("must be tsv or json", param_hint="--zeek")
    if syslog is not None:
        from ..syslog import parse_target

        try:
            parse_target(syslog)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--syslog") from None
    if dask is not None and workers is not None:
        say("iotwatch: usage error: --dask and --workers: give one (an existing cluster, or a local one)")
        raise typer.Exit(EXIT_USAGE)
    if not 0.001 <= part_mb <= 1 << 20:
        say(f"iotwatch: usage error: --part-mb: must be between 0.001 and {1 << 20}, not {part_mb:g}")
        raise typer.Exit(EXIT_USAGE)
    if workers is not None and not 1 <= workers <= 4096:
        say(f"iotwatch: usage error: --workers: must be between 1 and 4096, not {workers}")
        raise typer.Exit(EXIT_USAGE)
    code = run_analysis(paths, out, settings, flow_events=flow_events, top=top, quiet=quiet, zeek=zeek, syslog=syslog,
                        dask=dask, workers=workers, part_bytes=int(part_mb * 1e6))
    if code in (EXIT_OK, EXIT_PARTIAL) and (report or evidence):
        from .report import after_analysis  # the report's libraries only when asked for

        code = after_analysis(out, report=report, evidence=evidence, quiet=quiet) or code
    raise typer.Exit(code)


def _progress(paths: list[Path], quiet: bool) -> Progress | None:
    """A progress bar on stderr for big inputs read at a terminal."""
    if quiet or not sys.stderr.isatty():
        return None
    try:
        total = sum(p.stat().st_size for p in paths if p.is_file())
    except OSError:
        total = 0
    if total < PROGRESS_MIN_BYTES and not any(p.is_dir() for p in paths):
        return None
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("reading"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True, highlight=False), transient=True)


def _cluster_progress(quiet: bool) -> Progress | None:
    """The bar of a run on a Dask cluster: parts done, by bytes (on stderr, at a terminal)."""
    if quiet or not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("parts done"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True, highlight=False), transient=True)


def run_analysis(paths: list[Path], out: Path, settings: Settings, *, flow_events: bool = False, top: int = 30,
                 quiet: bool = False, zeek: str | None = None, syslog: str | None = None,
                 dask: str | None = None, workers: int | None = None, part_bytes: int = 256_000_000) -> int:
    """The analyze command's body: returns the exit code. Whatever was read is written, even when
    the input is damaged or the run is interrupted (Ctrl-C)."""
    from .._pandas_probe import arrow_without_pandas

    arrow_without_pandas()  # before the pipeline's first Arrow array: no pandas import (0.2 s, 40 MB)
    from ..outputs import analyze_to_folder
    from ..zeek.read import is_conn_log

    logs = [p for p in paths if is_conn_log(p)]
    if logs and len(logs) != len(paths):
        say("iotwatch: error: give either captures or Zeek conn.log files, not both")
        return EXIT_USAGE
    client = None
    if dask is not None or workers is not None:
        if logs:
            say("iotwatch: usage error: --dask/--workers read captures, not Zeek conn.log files")
            return EXIT_USAGE
        from ..parts.cluster import Cluster, connect

        with user_errors():
            client = connect(dask, workers)
        if not quiet:
            say(f"iotwatch: Dask dashboard: {client.dashboard_link}")
        bar = _cluster_progress(quiet)
    else:
        bar = None if logs else _progress(paths, quiet)  # conn.log files are read whole: no progress bar
    try:
        with user_errors():
            if bar is None:
                res = analyze_to_folder(paths, out, settings, flow_events=flow_events, zeek=zeek, syslog=syslog,
                                        cluster=Cluster(client, part_bytes) if client is not None else None)
            else:
                with bar:
                    task = bar.add_task("read", total=None)
                    res = analyze_to_folder(paths, out, settings, flow_events=flow_events, zeek=zeek, syslog=syslog,
                                            progress=lambda done, whole: bar.update(task, completed=done, total=whole),
                                            cluster=Cluster(client, part_bytes) if client is not None else None)
    finally:
        if client is not None:
            from ..parts.cluster import close

            close(client)
    for note in res.notes:
        say(f"iotwatch: note: {note}")
    stats = res.stats
    report_duplicates(res.duplicates)
    _report_problems(res.problems)
    late = interrupt.take()  # Ctrl-C after the reading: the results are complete, and the run stops here
    if not quiet and not late:
        shown: list[object] = [alerts_panel(res.alerts)] if res.alerts else []
        _print(*shown, device_table(res.devices, top), _summary(stats, out))
    if stats.interrupted:
        say(f"iotwatch: interrupted: results cover the {stats.packets:,} packets read → {out}")
        return EXIT_INTERRUPTED
    if late:
        say(f"iotwatch: interrupted after the reading: results are complete for the {stats.packets:,} packets read "
            f"→ {out}")
        return EXIT_INTERRUPTED
    if stats.files == 0:
        if not res.problems:
            say("iotwatch: error: no capture could be read")
        return EXIT_ERROR
    return EXIT_PARTIAL if res.problems else EXIT_OK


def catalogue_table(identities: dict[str, Any]) -> Table:
    """Which catalogued product each device matched, how closely, and the next product."""
    from rich.table import Table

    t = Table(title="Product catalogue matches", title_justify="left")
    for name, kw in (("device", {"no_wrap": True, "min_width": 17}), ("product", {"overflow": "fold"}),
                     ("type", {}), ("distance", {"justify": "right"}), ("conf.", {"justify": "right"}),
                     ("next product", {"overflow": "fold"}), ("shared facts", {"overflow": "fold", "ratio": 2})):
        t.add_column(name, **kw)
    for key in sorted(identities):
        m = identities[key].match
        if m is None:
            continue
        t.add_row(key, m.product or "(none close)", m.device_type or "—", f"{m.distance:.2f}", f"{m.confidence:.2f}",
                  f"{m.runner_up or '—'} {m.runner_up_distance:.2f}", ", ".join(m.shared[:3]) or "—")
    return t


CatalogueOpt = Annotated[bool, typer.Option("--catalogue", help="Also show which catalogued product each device "
                                                                "matched, its distance and confidence.")]


def devices_command(paths: Paths, window: Window = 60.0,
                    local_net: LocalNet = [],  # noqa: B006 - typer reads it, never mutated
                    type_model: TypeModelOpt = None, catalogue: CatalogueOpt = False) -> None:
    """Print the device inventory of captures: vendor, type, confidence and evidence (no files written)."""
    from ..inventory.analyser import Inventory
    from ..pipeline import build_analysers, run
    from ..sinks import MemorySink

    settings = _settings(window, local_net, 120.0, 1800.0, DEFAULT_MAX_FLOWS, detect=False, type_model=type_model)
    with user_errors():
        analysers = build_analysers(settings)
        pipe, captures = run(paths, settings, [MemorySink(keep_flows=False)], analysers=analysers)
        devices, stats = pipe.finish()
    report_duplicates(captures.duplicates)
    _report_problems(captures.problems)
    if catalogue:
        inv = next((a for a in analysers if isinstance(a, Inventory)), None)
        if inv is None or inv.catalogue is None:
            _print(inventory_table(devices), "no product catalogue (models/product_catalogue is missing)",
                   _summary(stats, None))
        else:
            _print(inventory_table(devices), catalogue_table(inv.identities), _summary(stats, None))
    else:
        _print(inventory_table(devices), _summary(stats, None))
    raise typer.Exit(EXIT_PARTIAL if captures.problems else (EXIT_OK if stats.files else EXIT_ERROR))
