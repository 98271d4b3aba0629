"""``iotwatch analyze`` and ``iotwatch devices``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import CaptureError, InputError, IotwatchError, OutputError
from ..pipeline import Settings, run
from ..records import DeviceRecord, Stats
from ..sinks import EveSink, ParquetSink

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL = 0, 1, 3
PROGRESS_MIN_BYTES = 64 << 20

err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def device_table(devices: dict[str, DeviceRecord], top: int) -> Table:
    t = Table(title="Devices, by bytes uploaded to external addresses", title_justify="left")
    for col, kw in (("MAC", {}), ("IPs", {}), ("uploaded", {"justify": "right"}), ("sent", {"justify": "right"}),
                    ("received", {"justify": "right"}), ("packets out/in", {"justify": "right"})):
        t.add_column(col, **kw)  # type: ignore[arg-type]
    rows = sorted(devices.values(), key=lambda d: (-d.upload_bytes, -d.bytes_out, d.key))
    for d in rows[:top] if top > 0 else rows:
        ips = ", ".join(d.ips[:3]) + (f" (+{len(d.ips) - 3})" if len(d.ips) > 3 else "")
        t.add_row(d.mac or "—", ips or "—", _human(d.upload_bytes), _human(d.bytes_out), _human(d.bytes_in),
                  f"{d.packets_out:,}/{d.packets_in:,}")
    if top > 0 and len(rows) > top:
        t.caption = f"{len(rows) - top} more devices in events.jsonl"
    return t


def _report_problems(problems: list[InputError]) -> None:
    for p in problems:
        kind = "warning" if isinstance(p, CaptureError) and not p.fatal else "damaged"
        err_console.print(f"iotwatch: {kind}: {p}", markup=False)


def _summary(stats: Stats, out: Path | None) -> str:
    where = f" → {out}" if out else ""
    return (f"{stats.packets:,} packets, {_human(stats.bytes)} in {stats.files} file(s), {stats.flows:,} flows, "
            f"{stats.devices} devices, {stats.elapsed_s:.2f} s ({stats.packets_per_s / 1e6:.2f} M packets/s){where}")


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


PATHS = typer.Argument(..., help="Capture files (pcap, pcapng, .gz) or folders of them.", show_default=False)
WINDOW = typer.Option(60.0, "--window", "-w", help="Device window length in seconds.")
LOCAL_NET = typer.Option([], "--local-net", help="A network (CIDR) to count as local besides RFC 1918, "
                         "link-local and ULA. Repeat for several.")
IDLE = typer.Option(120.0, "--idle-timeout", help="Seconds without packets before a flow ends.")
ACTIVE = typer.Option(1800.0, "--active-timeout", help="Seconds after which a long flow is cut.")
MAX_FLOWS = typer.Option(1 << 19, "--max-flows", help="Flow table capacity; the least recently seen are evicted beyond it.")


def analyze_command(
    paths: list[Path] = PATHS,
    out: Path = typer.Option(Path("iotwatch-out"), "--out", "-o", help="Output folder (created if missing)."),
    window: float = WINDOW,
    local_net: list[str] = LOCAL_NET,
    idle_timeout: float = IDLE,
    active_timeout: float = ACTIVE,
    max_flows: int = MAX_FLOWS,
    flow_events: bool = typer.Option(True, "--flow-events/--no-flow-events",
                                     help="Also write every flow as a 'flow' event in events.jsonl."),
    top: int = typer.Option(30, "--top", help="Devices to list in the terminal (0: all)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only problems."),
) -> None:
    """Analyse captures: devices, flows and per-device windows into OUT/events.jsonl and Parquet."""
    settings = _settings(window, local_net, idle_timeout, active_timeout, max_flows)
    code = run_analysis(paths, out, settings, flow_events=flow_events, top=top, quiet=quiet)
    raise typer.Exit(code)


def run_analysis(paths: list[Path], out: Path, settings: Settings, *, flow_events: bool = True, top: int = 30,
                 quiet: bool = False) -> int:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        err_console.print(f"iotwatch: error: {out}: cannot create the output folder: {e.strerror or e}", markup=False)
        return EXIT_ERROR
    try:
        eve = EveSink(out / "events.jsonl", flow_events=flow_events)
        parquet = ParquetSink(out)
    except OutputError as e:
        err_console.print(f"iotwatch: error: {e}", markup=False)
        return EXIT_ERROR
    sinks = [eve, parquet]
    interrupted = False
    progress: Progress | None = None
    try:
        total = 0
        try:
            total = sum(p.stat().st_size for p in paths if p.is_file())
        except OSError:
            pass
        show = not quiet and err_console.is_terminal and (total >= PROGRESS_MIN_BYTES or any(p.is_dir() for p in paths))
        task = None
        if show:
            progress = Progress(TextColumn("reading"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                                console=err_console, transient=True)
            progress.start()
            task = progress.add_task("read", total=None)

        def tick(done: int, whole: int) -> None:
            if progress is not None and task is not None:
                progress.update(task, completed=done, total=whole)

        try:
            pipe, captures = run(paths, settings, sinks, progress=tick if show else None)
        except KeyboardInterrupt:
            interrupted = True
            raise
        devices, stats = pipe.finish()
    except InputError as e:
        for s in sinks:
            s.close()
        if progress:
            progress.stop()
        err_console.print(f"iotwatch: error: {e}", markup=False)
        return EXIT_ERROR
    except IotwatchError as e:
        if progress:
            progress.stop()
        err_console.print(f"iotwatch: error: {e}", markup=False)
        return EXIT_ERROR
    finally:
        if progress:
            progress.stop()
        if interrupted:
            for s in sinks:
                s.close()
    for s in sinks:
        s.close()
    _report_problems(captures.problems)
    if not quiet:
        out_console.print(device_table(devices, top))
        out_console.print(_summary(stats, out))
    if stats.files == 0:
        err_console.print("iotwatch: error: no capture could be read", markup=False)
        return EXIT_ERROR
    return EXIT_PARTIAL if captures.problems else EXIT_OK


def devices_command(
    paths: list[Path] = PATHS,
    window: float = WINDOW,
    local_net: list[str] = LOCAL_NET,
) -> None:
    """Print the device inventory of captures (no files written)."""
    from ..pipeline import Pipeline
    from ..sinks import MemorySink

    settings = _settings(window, local_net, 120.0, 1800.0, 1 << 19)
    try:
        pipe, captures = run(paths, settings, [MemorySink(keep_flows=False)])
        devices, stats = pipe.finish()
    except IotwatchError as e:
        err_console.print(f"iotwatch: error: {e}", markup=False)
        raise typer.Exit(EXIT_ERROR) from None
    _ = Pipeline
    _report_problems(captures.problems)
    out_console.print(device_table(devices, 0))
    out_console.print(_summary(stats, None))
    raise typer.Exit(EXIT_PARTIAL if captures.problems else (EXIT_OK if stats.files else EXIT_ERROR))


_ = (os, sys)
