"""``iotwatch capture`` (a live mirror port) and ``iotwatch interfaces``."""

from __future__ import annotations

import sys
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import IotwatchError
from ..settings import DEFAULT_MAX_FLOWS
from .analyze import (
    Baseline,
    LocalNet,
    ModelOpt,
    NoModel,
    Out,
    Quiet,
    TypeModelOpt,
    Uplink,
    Window,
    _human,
    _print,
    _settings,
    alerts_panel,
    device_table,
)
from .common import EXIT_ERROR, EXIT_OK, say

if TYPE_CHECKING:
    from ..live import LiveStatus
    from ..records import DeviceRecord, Stats

#: window rows the detector keeps in a live run (its baselines and model features look this far
#: back): a capture of days keeps a flat memory (docs/capture.md, "Long runs")
HISTORY_S = 24 * 3600.0

Interface = Annotated[str, typer.Option("--interface", "-i", help="Interface on the switch's mirror (SPAN) port "
                                        "(`iotwatch interfaces` lists them).", show_default=False)]
Bpf = Annotated[str | None, typer.Option("--bpf", help="Capture filter, libpcap syntax (\"not port 22\").")]
Duration = Annotated[float | None, typer.Option("--duration", help="Stop after this many seconds (default: "
                                                "until Ctrl-C or SIGTERM).")]
RingDir = Annotated[Path | None, typer.Option("--ring", help="Folder of the evidence ring: the captured packets "
                                              "as rotating pcapng files (default: OUT/ring).")]
RingFiles = Annotated[int, typer.Option("--ring-files", help="Files the ring keeps; the oldest is deleted beyond.")]
RingSize = Annotated[float, typer.Option("--ring-size", help="Size of one ring file, MB.")]
NoRing = Annotated[bool, typer.Option("--no-ring", help="Keep no packets on disk (alerts then cannot point to them).")]
Buffer = Annotated[int, typer.Option("--buffer-mib", help="Kernel capture buffer of dumpcap, MiB.")]
CaptureNice = Annotated[int, typer.Option("--capture-nice", help="Nice value (-20..19) of dumpcap and of the thread "
                                          "reading its pipe, so the capture wins the CPU over the analysis at a "
                                          "burst; below 0 it needs root or CAP_SYS_NICE (else left at 0). 0: as "
                                          "the analysis.")]
User = Annotated[str | None, typer.Option("--user", help="When run as root: the user the analysis runs as once "
                                          "dumpcap has opened the interface (default: the one who ran sudo).")]


def interfaces_command() -> None:
    """List the network interfaces with link state and counters, to find the mirror port
    (it is the one whose received counter climbs while its sent counter stays still)."""
    from rich.table import Table

    from ..capture.interfaces import interfaces

    t = Table(title="Network interfaces (from /sys/class/net)", title_justify="left")
    for col, just in (("name", "left"), ("MAC", "left"), ("link", "left"), ("speed", "right"),
                      ("received", "right"), ("rx bytes", "right"), ("sent", "right"), ("rx drops", "right")):
        t.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
    for i in interfaces():
        link = ("[green]up[/]" if i.usable else
                "[red]down[/]" if i.carrier is None else "[yellow]no carrier[/]" if i.carrier is False else i.operstate)
        t.add_row(i.name, i.mac or "—", link, f"{i.speed_mbps} Mb/s" if i.speed_mbps else "—",
                  f"{i.rx_packets:,}", _human(i.rx_bytes), f"{i.tx_packets:,}", f"{i.rx_drops:,}")
    _print(t)


def capture_command(interface: Interface, out: Out = Path("iotwatch-live"), bpf: Bpf = None,
                    duration: Duration = None, ring: RingDir = None, ring_files: RingFiles = 10,
                    ring_size: RingSize = 100.0, no_ring: NoRing = False, buffer_mib: Buffer = 64,
                    window: Window = 60.0,
                    local_net: LocalNet = [],  # noqa: B006 - typer reads it, never mutated
                    uplink_mbps: Uplink = None, baseline: Baseline = None, model: ModelOpt = None,
                    no_model: NoModel = False, type_model: TypeModelOpt = None, quiet: Quiet = False,
                    user: User = None, capture_nice: CaptureNice = -10) -> None:
    """Capture a mirror port live (passively, through dumpcap) and analyse it as `analyze` does:
    events.jsonl, Parquet and baselines.json written as the run goes, the packets kept in a
    rotating pcapng ring. Stops cleanly on Ctrl-C, SIGTERM or --duration."""
    from ..detect import Detector
    from ..live import LiveCapture, LiveEveSink, LiveOptions
    from ..pipeline import Pipeline, build_analysers
    from ..sinks import ParquetSink

    settings = _settings(window, local_net, 120.0, 1800.0, DEFAULT_MAX_FLOWS, model=model, no_model=no_model,
                         type_model=type_model, baseline=baseline, uplink_mbps=uplink_mbps)
    settings.close_lag_s = 1.0  # live: one file, in order; a window's alerts come a second after it ends
    if uplink_mbps is not None and uplink_mbps <= 0:
        raise typer.BadParameter("must be positive", param_hint="--uplink-mbps")
    if duration is not None and duration <= 0:
        raise typer.BadParameter("must be positive", param_hint="--duration")
    if ring_files < 1 or ring_size <= 0:
        raise typer.BadParameter("need at least one file of a positive size", param_hint="--ring-files/--ring-size")
    if buffer_mib < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--buffer-mib")
    if not -20 <= capture_nice <= 19:
        raise typer.BadParameter("must be between -20 and 19", param_hint="--capture-nice")
    opts = LiveOptions(interface=interface, bpf=bpf, duration_s=duration,
                       ring_dir=None if no_ring else (ring or out / "ring"), ring_files=ring_files,
                       ring_bytes=int(ring_size * 1e6), buffer_mib=buffer_mib, user=user,
                       capture_nice=capture_nice or None)
    live = LiveCapture(opts, baselines_path=out / "baselines.json")
    try:
        # dumpcap first: a missing interface or permission is said before anything is written,
        # and frames are captured (held in the kernel buffer) while the models and kernels load
        live.start()
    except IotwatchError as e:
        say(f"iotwatch: error: {e}")
        raise typer.Exit(EXIT_ERROR) from None
    sinks: list[LiveEveSink | ParquetSink] = []
    try:
        analysers = build_analysers(settings)
        for a in analysers:
            if isinstance(a, Detector):
                a.settings.history_s = HISTORY_S
        live.give_up_root(analysers)  # as root: the user's from here (outputs, ring, analysis)
        out.mkdir(parents=True, exist_ok=True)
        eve = LiveEveSink(out / "events.jsonl", window_s=window)
        sinks.append(eve)
        sinks.append(ParquetSink(out))
        pipe = Pipeline(settings, sinks, analysers=analysers, _warm=live.jit_warmup)
    except (OSError, IotwatchError) as e:
        live.abort()
        for s in sinks:
            s.close()
        say(f"iotwatch: error: {out}: cannot create the output folder: {e.strerror or e}" if isinstance(e, OSError)
             else f"iotwatch: error: {e}")
        raise typer.Exit(EXIT_ERROR) from None
    view = None if quiet else LiveView(interface, uplink_mbps)
    live.on_status = view.update if view else None
    live.on_warning = view.warn if view else say
    try:
        if view is not None:
            with view:
                devices, stats = live.run(pipe, eve)
        else:
            devices, stats = live.run(pipe, eve)
    except IotwatchError as e:
        say(f"iotwatch: error: {e}")
        raise typer.Exit(EXIT_ERROR) from None
    finally:
        for s in sinks:
            s.close()
    failed = live.source.failed if live.source is not None else None
    if not quiet:
        shown: list[object] = [alerts_panel(pipe.alerts)] if pipe.alerts else []
        _print(*shown, device_table(devices, 30), _live_summary(stats, out, live.user))
    elif stats.capture_drops or stats.if_drops:
        say(f"iotwatch: warning: {_drops(stats.capture_drops, stats.if_drops)}")
    raise typer.Exit(EXIT_ERROR if failed else EXIT_OK)


def _drops(capture: int | None, iface: int | None) -> str:
    c = "unknown" if capture is None else f"{capture:,}"
    return f"{c} packets dropped by the capture, {iface or 0:,} by the interface"


def _live_summary(s: Stats, out: Path, user: str | None = None) -> str:
    who = f" (analysed as user {user}: dumpcap alone kept root)" if user else ""
    return (f"{s.interface}: {s.packets:,} packets, {_human(s.bytes)}, {s.flows:,} flows, {s.devices} devices, "
            f"{s.alerts} alerts; {_drops(s.capture_drops, s.if_drops)}; {s.ring_files or 0} ring file(s) → {out}{who}")


class LiveView:
    """The terminal while capturing: rates, drops, top uploaders, new devices, alerts as raised."""

    def __init__(self, interface: str, uplink_mbps: float | None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.interface = interface
        self.uplink_bps = uplink_mbps * 1e6 if uplink_mbps else None
        self.console = Console(stderr=True, highlight=False)
        self.live = Live(console=self.console, refresh_per_second=2, transient=False,
                         redirect_stdout=False, redirect_stderr=False)
        self.alerts: deque[str] = deque(maxlen=8)
        self.known: dict[str, str] = {}  # device → what it is, as last shown
        self.new_devices: deque[str] = deque(maxlen=6)
        self.warnings: list[str] = []
        self._enabled = sys.stderr.isatty()

    def __enter__(self) -> LiveView:
        if self._enabled:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._enabled:
            self.live.__exit__(None, None, None)

    def warn(self, line: str) -> None:
        if line in self.warnings:
            return
        self.warnings.append(line)
        if self._enabled:
            self.console.print(line, style="yellow", markup=False)
        else:
            say(line)

    def update(self, s: LiveStatus) -> None:
        for a in s.new_alerts:
            self.alerts.append(a.sentence())
            if not self._enabled:
                say(f"iotwatch: alert: {a.sentence()}")
        for key, rec in s.devices.items():
            what = _what(rec)
            if key not in self.known or (what != "—" and self.known[key] == "—"):
                self.new_devices.append(f"{key} {', '.join(rec.ips[:1])} {what}".strip())
            self.known[key] = what
        if self._enabled:
            self.live.update(self._render(s))

    def _render(self, s: LiveStatus) -> object:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        head = Text()
        head.append(f"{self.interface}  ", style="bold")
        head.append(f"{s.now - s.started:,.0f} s  {s.packets_per_s:,.0f} packets/s  {s.bits_per_s / 1e6:,.2f} Mbit/s  "
                    f"{s.packets:,} packets  ")
        behind = max(0, s.interface_rx - s.packets)
        drops = s.if_drops + (s.capture_drops or 0)
        head.append(f"drops {drops:,}", style="bold red" if drops else "green")
        head.append(f"  (interface received {s.interface_rx:,}, {behind:,} not yet read)", style="dim")
        if s.ring_stopped:
            head.append(f"\nring stopped: {s.ring_stopped}", style="bold red")
        elif s.ring:
            head.append(f"\nring: {s.ring}", style="dim")
        up = Table(title="Top uploaders (to external addresses, last second)", title_justify="left", expand=False)
        for col in ("device", "IP", "what", "upload", "share of uplink" if self.uplink_bps else "share of upload"):
            up.add_column(col, no_wrap=True)
        total = sum(s.upload_bps.values())
        for key, bps in sorted(s.upload_bps.items(), key=lambda kv: -kv[1])[:5]:
            if bps <= 0:
                break
            rec = s.devices.get(key)
            share = bps / self.uplink_bps if self.uplink_bps else (bps / total if total else 0.0)
            up.add_row(key, rec.ips[0] if rec and rec.ips else "—", _what(rec) if rec else "—",
                       f"{bps / 1e6:,.2f} Mbit/s", f"{share:.0%}")
        parts: list[object] = [head, up]
        if self.new_devices:
            parts.append(Text("New devices:\n  " + "\n  ".join(self.new_devices), style="cyan"))
        parts.append(Text("Alerts:\n  " + ("\n  ".join(self.alerts) if self.alerts else "none yet"),
                          style="bold red" if self.alerts else "dim"))
        return Group(*parts)


def _what(rec: DeviceRecord) -> str:
    if rec.device_type is None:
        return "—"
    return " ".join(x for x in (rec.vendor, rec.device_type, rec.model) if x)
