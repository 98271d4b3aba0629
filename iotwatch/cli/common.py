"""What every command shares: exit codes, one-line messages, and the one place library errors
become them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from ..errors import IotwatchError, SettingsError

#: exit codes (README: "Exit codes")
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def say(line: str) -> None:
    """One line on stderr, never wrapped: errors must stay one line for people and for grep."""
    sys.stderr.write(line.rstrip("\n") + "\n")


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's errors (a path, a capture, a model, an output folder the user gave)
    into one line on stderr and exit code 1; a setting out of range into one usage line and exit
    code 2. Bugs of ours are left to ``cli.main``."""
    try:
        yield
    except SettingsError as e:
        raise usage_error(e) from None
    except IotwatchError as e:
        say(f"iotwatch: error: {e}")
        raise typer.Exit(EXIT_ERROR) from None


#: library setting → the option that sets it (usage errors name the option the user typed)
OPTION_OF = {"window_s": "--window", "idle_timeout": "--idle-timeout", "active_timeout": "--active-timeout",
             "max_flows": "--max-flows", "local_nets": "--local-net", "uplink_mbps": "--uplink-mbps", "top": "--top"}


def usage_error(e: SettingsError) -> typer.Exit:
    """One line on stderr naming the option, and the usage exit code (to raise)."""
    say(f"iotwatch: usage error: {OPTION_OF.get(e.field, e.field)}: {e.message}")
    return typer.Exit(EXIT_USAGE)
