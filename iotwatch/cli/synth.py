"""``iotwatch synth``: write a scenario capture and its labels (docs/scenarios.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..vocab import CATEGORIES
from .common import EXIT_USAGE, say, user_errors

# the scenario names, without importing the generators (scapy) into every iotwatch command
SCENARIOS = ("site", "night", "hospital", *CATEGORIES, "slowscan", "udpscan", "deadc2", "icmptunnel", "reportc2", "localc2",
             # synth/access.py
             "sweep", "portscan", "nmapudp", "netscan", "sshbrute", "ftpbrute", "icmpflood", "flagflood", "slowhttp",
             "dnstorture",
             # synth/covert.py
             "tlsbeacon", "postbeacon", "ratsession", "dnstunnel", "dnsexfil", "credexfil", "chunkupload", "slowexfil",
             "after")

Scenario = Annotated[str, typer.Argument(help=f"One of: {', '.join(SCENARIOS)}.", show_default=False)]
Out = Annotated[Path, typer.Option("--out", "-o", help="Capture to write (FILE.pcap; labels go to FILE.labels.tsv).")]
Seed = Annotated[int, typer.Option("--seed", help="Seed: rates, timing, targets and devices follow from it.")]
Duration = Annotated[float | None, typer.Option("--duration", help="Capture length in seconds (default 600 for "
                                                "hospital, 300 otherwise; with --inject: length of the behaviour, "
                                                "default to the end of the real capture).")]
Uplink = Annotated[float, typer.Option("--uplink-mbps", help="Uplink the upload surge fills (hospital, exfil) "
                                       "and that caps flood rates, Mbit/s.")]
Vector = Annotated[str, typer.Option("--vector", help="Flood vector: udp, vse, dns, syn, ack, greip, http.")]
Quiet = Annotated[float | None, typer.Option("--quiet", help="Seconds of normal traffic before the first bad "
                                             "packet (default: seeded, several minutes for hospital).")]
Inject = Annotated[Path | None, typer.Option("--inject", help="Put the behaviour on a device of this real "
                                             "Ethernet capture instead of a generated site.")]
HostOpt = Annotated[str | None, typer.Option("--host", help="With --inject: the device, by MAC or IPv4 address.")]


def synth_command(scenario: Scenario, out: Out, seed: Seed = 1, duration: Duration = None,
                  uplink_mbps: Uplink = 10.0, vector: Vector = "udp", quiet: Quiet = None,
                  inject_from: Inject = None, host: HostOpt = None) -> None:
    """Generate a labelled capture: a benign site, the hospital incident, or one Mirai behaviour."""
    from ..synth import Options, generate, inject

    opts = Options(scenario, seed=seed, duration=duration, uplink_mbps=uplink_mbps, vector=vector, quiet=quiet)
    try:
        with user_errors():
            opts.check()
            if (inject_from is None) != (host is None):
                raise ValueError("--inject and --host go together")
            if inject_from is not None and host is not None:
                result = inject(opts, inject_from, host, out)
            else:
                result = generate(opts, out)
    except ValueError as e:
        say(f"iotwatch: usage error: {e}")
        raise typer.Exit(EXIT_USAGE) from None
    size = result.pcap.stat().st_size / 1e6
    bad = sorted({lb.behaviour for lb in result.labels if lb.behaviour in CATEGORIES})
    victims = sum(lb.behaviour == "victim" for lb in result.labels)
    what = ", ".join(bad) or (f"no misbehaving device, {victims} victim(s)" if victims else "all normal")
    typer.echo(f"{result.pcap}: {result.packets:,} packets, {size:.1f} MB, {len(result.labels)} labels "
               f"({what}) → {result.labels_file}, {result.elapsed_s:.1f} s")
