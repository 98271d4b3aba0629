"""The one exception tree of iotwatch.

    IotwatchError                 root: the CLI catches this one type
    ├── InputError                a path the user gave cannot be used (missing, not a capture, ...)
    │   └── CaptureError          a capture is damaged at a byte offset; what came before is kept
    ├── OutputError               the output folder or a file in it cannot be written
    └── ModelError                a model bundle is missing, altered or does not fit the features

Every message is one line that names the file and says what is wrong, ready for a terminal.
"""

from __future__ import annotations

from pathlib import Path


class IotwatchError(Exception):
    """Root of every error iotwatch raises on purpose."""


class InputError(IotwatchError):
    """A path given by the user cannot be read as a capture."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}")


class CaptureError(InputError):
    """A capture is damaged at ``offset``; the packets before it were read.

    ``fatal`` is False for problems that do not stop reading (a record longer than the
    snapshot length, a link type we count but cannot decode).
    """

    def __init__(self, path: str | Path, offset: int, message: str, *, fatal: bool = True) -> None:
        self.offset = offset
        self.fatal = fatal
        super().__init__(path, f"byte {offset}: {message}")
        self.message = message


class OutputError(IotwatchError):
    """The output folder or one of its files cannot be written."""


class ModelError(IotwatchError):
    """A model bundle cannot be loaded or does not match the features."""
