"""The one exception tree of iotwatch.

    IotwatchError                 root: the CLI catches this one type
    ├── InputError                a path the user gave cannot be used (missing, not a capture, ...)
    │   └── CaptureError          a capture is damaged at a byte offset; what came before is kept
    ├── OutputError               the output folder or a file in it cannot be written
    ├── ModelError                a model bundle is missing, altered or does not fit the features
    └── SettingsError             a setting or argument is out of range (also a ValueError)

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

    def __reduce__(self) -> tuple[object, ...]:  # pickled whole (a Dask task's error comes back so)
        return (InputError, (self.path, self.message))


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

    def __reduce__(self) -> tuple[object, ...]:
        return (_capture_error, (self.path, self.offset, self.message, self.fatal))


def _capture_error(path: str, offset: int, message: str, fatal: bool) -> CaptureError:
    return CaptureError(path, offset, message, fatal=fatal)


class OutputError(IotwatchError):
    """The output folder or one of its files cannot be written."""


class ModelError(IotwatchError):
    """A model bundle cannot be loaded or does not match the features."""


class SettingsError(IotwatchError, ValueError):
    """A setting or argument is out of range (``field`` names it, as the library spells it).

    Raised before any work starts. It is also a :class:`ValueError`, so code written against
    earlier versions that caught ``ValueError`` keeps working.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")

    def __reduce__(self) -> tuple[object, ...]:
        return (SettingsError, (self.field, self.message))


def check_number(field: str, value: object, *, low: float, high: float, integer: bool = False,
                 low_inclusive: bool = False) -> None:
    """Raise :class:`SettingsError` unless ``value`` is a finite number in (low, high] (or
    [low, high] with ``low_inclusive``), and an integer when ``integer``."""
    import math
    from numbers import Integral, Real

    if isinstance(value, bool) or not isinstance(value, Real):  # (NumPy's numbers are Real too)
        raise SettingsError(field, f"must be a number, not {value!r}")
    if integer and not isinstance(value, Integral):
        raise SettingsError(field, f"must be a whole number, not {value!r}")
    if not math.isfinite(value):
        raise SettingsError(field, f"must be a finite number, not {value}")
    if value < low or (value == low and not low_inclusive) or value > high:
        lo = f">= {_num(low)}" if low_inclusive else f"> {_num(low)}"
        raise SettingsError(field, f"must be {lo} and <= {_num(high)}, not {_num(value)}")


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"
