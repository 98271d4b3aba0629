"""The ``iotwatch`` command: a thin typer layer over the library.

Each command group lives in its own module and turns library exceptions into one-line messages.
Exit codes: 0 success; 1 error (nothing could be analysed, output not writable); 2 usage error;
3 finished, but some input was damaged or partly unsupported (results cover what could be read).
"""

from __future__ import annotations

import os
import sys

import typer

from .. import __version__, interrupt
from .analyze import analyze_command, devices_command
from .capture import capture_command, interfaces_command
from .model import evaluate_command, train_command
from .report import compare_command, evidence_command, report_command
from .synth import synth_command

app = typer.Typer(
    name="iotwatch",
    help="Profile every device in packet captures and flag the ones that misbehave.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"iotwatch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """iotwatch: who is on the network, who uses the uplink, and who behaves like an infected box."""


app.command("analyze")(analyze_command)
app.command("devices")(devices_command)
app.command("capture")(capture_command)
app.command("interfaces")(interfaces_command)
app.command("synth")(synth_command)
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
app.command("evidence")(evidence_command)
app.command("report")(report_command)
app.command("compare")(compare_command)


def main() -> None:
    try:
        interrupt.resume()  # a Ctrl-C during the imports raises here, inside the handler below
        app()
    except KeyboardInterrupt:
        sys.stderr.write("iotwatch: interrupted\n")
        sys.exit(130)
    except Exception as e:  # a bug of ours, not the user's: one line, the traceback on request
        if os.environ.get("IOTWATCH_DEBUG"):
            raise
        sys.stderr.write(f"iotwatch: internal error: {type(e).__name__}: {e} "
                         "(set IOTWATCH_DEBUG=1 for the traceback and please report it)\n")
        sys.exit(1)


def entry() -> None:
    """The ``iotwatch`` console script: :func:`main`, then the process ends without the
    interpreter's finalisation (freeing every object of NumPy, Arrow and numba one by one: 0.07 s
    of a small run's 0.4 s of CPU, 0.15 s once numba is loaded). Output files are closed by
    then; stdout and stderr are flushed, and the ``atexit`` handlers run as they would. A run
    that left other threads (none of the commands does) exits the ordinary way."""
    import atexit
    import threading

    try:
        main()
        code: object = 0
    except SystemExit as e:
        code = e.code
    if threading.active_count() > 1 or not (code is None or isinstance(code, int)):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said on it
            code = code or 1
    os._exit(code or 0)
