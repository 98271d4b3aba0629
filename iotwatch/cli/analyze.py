"""``iotwatch analyze`` and ``iotwatch devices``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # rich is imported when there is something to show: it costs memory at the peak
    from rich.progress import Progress
    from rich.table import Table

from ..errors import CaptureError, InputError, IotwatchError, OutputError
from ..flows import DEFAULT_MAX_FLOWS
from ..pipeline import Settings, run
from ..records import DeviceRecord, Stats
from ..sinks import EveSink, MemorySink, ParquetSink

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 3, 130
PROGRESS_MIN_BYTES = 64 << 20



def _print(*renderables: object) -> None:
    from rich.console import Console

    console = Console(highlight=False)
    for r in renderables:
        console.print(r)


def _say(line: str) -> None:
    """One line on stderr, never wrapped: errors must stay one line for people and for grep."""
    sys.stderr.write(line.rstrip("\n") + "\n")


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def device_table(devices: dict[str, DeviceRecord], top: int) -> Table:
    from rich.table import Table

    t = Table(title="Devices, by bytes uploaded to external addresses", title_justify="left")
    t.add_column("MAC", no_wrap=True, min_width=17)
    t.add_column("IPs", overflow="fold", ratio=1)
    for col in ("uploaded", "sent", "received", "packets"):
        t.add_column(col, justify="right", no_wrap=True)
    rows = sorted(devices.values(), key=lambda d: (-d.upload_bytes, -d.bytes_out, d.key))
    for d in rows[:top] if top > 0 else rows:
        ips = ", ".join(d.ips[:2]) + (f" (+{len(d.ips) - 2})" if len(d.ips) > 2 else "")
        t.add_row(d.mac or "—", ips or "—", _human(d.upload_bytes), _human(d.bytes_out), _human(d.bytes_in),
                  f"{d.packets_out + d.packets_in:,}")
    if top > 0 and len(rows) > top:
        t.caption = f"{len(rows) - top} more devices in events.jsonl"
    return t


def _report_problems(problems: list[InputError]) -> None:
    for p in problems:
        if isinstance(p, CaptureError):
            kind = "damaged" if p.fatal else "warning"
        else:
            kind = "error"
        _say(f"iotwatch: {kind}: {p}")


def _rate(pps: float) -> str:
    return f"{pps / 1e6:.2f} M packets/s" if pps >= 1e6 else f"{pps / 1e3:.0f} k packets/s"


def _summary(stats: Stats, out: Path | None) -> str:
    where = f" → {out}" if out else ""
    return (f"{stats.packets:,} packets, {_human(stats.bytes)} in {stats.files} file(s), {stats.flows:,} flows, "
            f"{stats.devices} devices, {stats.elapsed_s:.2f} s ({_rate(stats.packets_per_s)}){where}")


def _settings(window: float, local_net: list[str], idle_timeout: float, active_timeout: float, max_flows: int) -> Settings:
    import ipaddress

    for net in local_net:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise typer.BadParameter(f"{net!r} is not a network in CIDR form (like 10.20.0.0/16)",
                                     param_hint="--local-net") from None
    if window <= 0:
        raise typer.BadParameter("must be positive", param_hint="--window")
    if idle_timeout <= 0 or active_timeout <= 0:
        raise typer.BadParameter("timeouts must be positive", param_hint="--idle-timeout/--active-timeout")
    if max_flows < 1024:
        raise typer.BadParameter("must be at least 1024", param_hint="--max-flows")
    return Settings(window_s=window, local_nets=tuple(local_net), idle_timeout=idle_timeout,
                    active_timeout=active_timeout, max_flows=max_flows)


Paths = Annotated[list[Path], typer.Argument(help="Capture files (pcap, pcapng, .gz) or folders of them.",
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
                                          "(all flows are always in flows.parquet; a flood makes this file large).")]
Top = Annotated[int, typer.Option("--top", help="Devices to list in the terminal (0: all).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only problems.")]


def analyze_command(paths: Paths, out: Out = Path("iotwatch-out"), window: Window = 60.0,
                    local_net: LocalNet = [],  # noqa: B006 - typer reads it, never mutated
                    idle_timeout: Idle = 120.0, active_timeout: Active = 1800.0, max_flows: MaxFlows = DEFAULT_MAX_FLOWS,
                    flow_events: FlowEvents = False, top: Top = 30, quiet: Quiet = False) -> None:
    """Analyse captures: devices, flows and per-device windows into OUT/events.jsonl and Parquet."""
    settings = _settings(window, local_net, idle_timeout, active_timeout, max_flows)
    code = run_analysis(paths, out, settings, flow_events=flow_events, top=top, quiet=quiet)
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


def run_analysis(paths: list[Path], out: Path, settings: Settings, *, flow_events: bool = False, top: int = 30,
                 quiet: bool = False) -> int:
    """The analyze command's body: returns the exit code. Whatever was read is written, even when
    the input is damaged or the run is interrupted (Ctrl-C)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        sinks = [EveSink(out / "events.jsonl", flow_events=flow_events), ParquetSink(out)]
    except OSError as e:
        _say(f"iotwatch: error: {out}: cannot create the output folder: {e.strerror or e}")
        return EXIT_ERROR
    except OutputError as e:
        _say(f"iotwatch: error: {e}")
        return EXIT_ERROR
    bar = _progress(paths, quiet)
    try:
        if bar is None:
            pipe, captures = run(paths, settings, sinks)
        else:
            with bar:
                task = bar.add_task("read", total=None)
                pipe, captures = run(paths, settings, sinks,
                                     progress=lambda done, whole: bar.update(task, completed=done, total=whole))
        devices, stats = pipe.finish()
    except IotwatchError as e:
        _say(f"iotwatch: error: {e}")
        return EXIT_ERROR
    finally:
        for sink in sinks:
            sink.close()
    _report_problems(captures.problems)
    if not quiet:
        _print(device_table(devices, top), _summary(stats, out))
    if stats.interrupted:
        _say(f"iotwatch: interrupted: results cover the {stats.packets:,} packets read")
        return EXIT_INTERRUPTED
    if stats.files == 0:
        if not captures.problems:
            _say("iotwatch: error: no capture could be read")
        return EXIT_ERROR
    return EXIT_PARTIAL if captures.problems else EXIT_OK


def devices_command(paths: Paths, window: Window = 60.0,
                    local_net: LocalNet = []) -> None:  # noqa: B006 - typer reads it, never mutated
    """Print the device inventory of captures (no files written)."""
    settings = _settings(window, local_net, 120.0, 1800.0, DEFAULT_MAX_FLOWS)
    try:
        pipe, captures = run(paths, settings, [MemorySink(keep_flows=False)])
        devices, stats = pipe.finish()
    except IotwatchError as e:
        _say(f"iotwatch: error: {e}")
        raise typer.Exit(EXIT_ERROR) from None
    _report_problems(captures.problems)
    _print(device_table(devices, 0), _summary(stats, None))
    raise typer.Exit(EXIT_PARTIAL if captures.problems else (EXIT_OK if stats.files else EXIT_ERROR))
