"""Zeek conn.log files (TSV with Zeek's header or JSON lines, ``.gz`` too) → one table of
connections with the columns the replay needs, typed.

Zeek's TSV conventions are followed: the ``#separator``, ``#unset_field`` and ``#empty_field``
lines, ``#fields`` naming the columns (in any order, extra columns ignored), ``#close`` and
further header blocks (concatenated logs) skipped. IoT-23's ``conn.log.labeled`` files, whose
last header names and values (``tunnel_parents   label   detailed-label``) are separated by
three spaces instead of a tab, are read as well, with the label columns kept. JSON lines are
Zeek's ``LogAscii::use_json`` output, with ``ts`` as epoch seconds or ISO 8601 text.

A line that cannot be used (too few fields, an address or a number that does not parse) is
skipped and counted; the file's problem names the first such line.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from ..addrs import parse_ips
from ..errors import InputError

#: what a conn.log must have, and what is used when present
REQUIRED = ("ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto")
OPTIONAL_NUM = ("duration", "orig_bytes", "resp_bytes", "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes",
                "ip_proto")
OPTIONAL_STR = ("uid", "conn_state", "history", "label", "detailed-label")
USED = frozenset(REQUIRED + OPTIONAL_NUM + OPTIONAL_STR)
NUMERIC = frozenset(("id.orig_p", "id.resp_p", *OPTIONAL_NUM)) - {"duration"}

#: the columns of :func:`read_conn_log`'s table
CONN_SCHEMA = pa.schema([
    ("ts", pa.float64()), ("uid", pa.string()), ("orig_h", pa.string()), ("orig_p", pa.int64()),
    ("resp_h", pa.string()), ("resp_p", pa.int64()), ("proto", pa.string()), ("duration", pa.float64()),
    ("orig_bytes", pa.int64()), ("resp_bytes", pa.int64()), ("conn_state", pa.string()), ("history", pa.string()),
    ("orig_pkts", pa.int64()), ("orig_ip_bytes", pa.int64()), ("resp_pkts", pa.int64()), ("resp_ip_bytes", pa.int64()),
    ("ip_proto", pa.int64()), ("label", pa.string()), ("detailed_label", pa.string()), ("line", pa.int64()),
])


@dataclass(slots=True)
class ConnLog:
    """The usable rows of one conn.log, and what was wrong with the others."""

    path: Path
    table: pa.Table
    skipped: int = 0
    problems: list[InputError] = field(default_factory=list)


def _raw_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
        if magic == b"\x1f\x8b":
            with gzip.open(path, "rb") as g:
                return g.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise InputError(path, f"cannot read: {getattr(e, 'strerror', None) or e}") from None


def sniff(path: Path) -> str | None:
    """'tsv' or 'json' when the file (or its gzip content) starts like a Zeek conn.log, else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == b"\x1f\x8b":
                with gzip.open(f, "rb") as g:
                    start = g.read(4096)
            else:
                start = f.read(4096)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    start = start.lstrip()
    if start.startswith(b"#separator"):
        return "tsv"
    if start.startswith(b"{") and b'"id.orig_h"' in start:
        return "json"
    return None


def expand_conn_logs(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders searched recursively for conn*.log* files (conn.log, conn.log.labeled,
    conn.log.gz, Zeek's rotated conn.HH:MM:SS-HH:MM:SS.log.gz)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("conn*.log*") if q.is_file())
        else:
            out.append(p)
    return out


def is_conn_log(path: Path) -> bool:
    """A Zeek conn.log, or a folder with conn.log files and no capture files."""
    if path.is_dir():
        from ..capture.source import CAPTURE_SUFFIXES

        if any(q.name.lower().endswith(CAPTURE_SUFFIXES) for q in path.rglob("*") if q.is_file()):
            return False
        return any(sniff(q) for q in expand_conn_logs([path]))
    return path.is_file() and sniff(path) is not None


def read_conn_log(path: str | Path) -> ConnLog:
    """Read one conn.log (TSV or JSON lines, gzip or not). Raises :class:`InputError` when the
    file cannot be read at all or lacks a required field."""
    path = Path(path)
    kind = sniff(path)
    if kind is None:
        raise InputError(path, "not a Zeek conn.log (no '#separator' header and no JSON lines with 'id.orig_h')")
    data = _raw_bytes(path)
    raw, lines, dropped = _read_tsv(path, data) if kind == "tsv" else _read_json(path, data)
    return _normalise(path, raw, lines, dropped)


def _header_blocks(data: bytes) -> tuple[dict[str, str], bytes | memoryview, np.ndarray]:
    """The header fields of the first block, the data lines without any '#' line (a view into
    ``data`` when they are one stretch, as in a file with one header), and each kept line's
    1-based line number in the file."""
    header: dict[str, str] = {}
    keep: list[tuple[int, int]] = []
    numbers: list[np.ndarray] = []
    pos, line_no = 0, 1
    n = len(data)
    while pos < n:
        if data[pos] == 35:  # '#'
            end = data.find(b"\n", pos)
            end = n if end < 0 else end
            text = data[pos + 1:end].decode("utf-8", "replace").rstrip("\r")
            if text.startswith("separator"):
                key, _, value = text.partition(" ")
            else:
                key, _, value = text.partition("\t")
            header.setdefault(key, value)
            pos, line_no = end + 1, line_no + 1
            continue
        nxt = data.find(b"\n#", pos)
        end = n if nxt < 0 else nxt + 1
        count = data.count(b"\n", pos, end) + (0 if data[end - 1] == 10 else 1)
        keep.append((pos, end))
        numbers.append(np.arange(line_no, line_no + count, dtype=np.int64))
        pos, line_no = end, line_no + count
    lines = np.concatenate(numbers) if numbers else np.zeros(0, np.int64)
    view = memoryview(data)
    if len(keep) == 1 and data[keep[0][1] - 1] == 10:
        return header, view[keep[0][0]:keep[0][1]], lines
    return header, b"".join(bytes(view[a:b]) + (b"" if data[b - 1] == 10 else b"\n") for a, b in keep), lines


def _read_tsv(path: Path, data: bytes) -> tuple[pa.Table, np.ndarray, int]:
    header, body, lines = _header_blocks(data)
    sep = header.get("separator", "\\x09").strip()
    if sep.startswith("\\x"):
        try:
            sep = chr(int(sep[2:], 16))
        except ValueError:
            raise InputError(path, f"bad #separator {sep!r}") from None
    fields_line = header.get("fields")
    if fields_line is None:
        raise InputError(path, "no #fields line: not a Zeek log")
    names = fields_line.split(sep)
    if any("   " in n for n in names):  # IoT-23's labeled files: the last names (and values) are space-separated
        names = [m for n in names for m in n.split()]
        body = bytes(body).replace(b"   ", sep.encode())
    if "path" in header and header["path"] not in ("conn", ""):
        raise InputError(path, f"a Zeek {header['path']}.log, not a conn.log")
    unset = header.get("unset_field", "-")
    empty = header.get("empty_field", "(empty)")
    if not body:
        return pa.table({n: pa.array([], pa.string()) for n in names}), lines, 0
    used = [n for n in names if n in USED]
    typed = {n: (pa.float64() if n in ("ts", "duration") else pa.int64() if n in NUMERIC else pa.string()) for n in used}
    t = None
    for types in (typed, {n: pa.string() for n in used}):  # numbers parsed as numbers; a bad one: all as text
        try:
            t = pacsv.read_csv(
                pa.BufferReader(pa.py_buffer(body)),
                read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 24),
                parse_options=pacsv.ParseOptions(delimiter=sep, quote_char=False, escape_char=False,
                                                  newlines_in_values=False, invalid_row_handler=_skip_row),
                convert_options=pacsv.ConvertOptions(column_types=types, null_values=[unset], strings_can_be_null=True,
                                                     quoted_strings_can_be_null=False, include_columns=used),
            )
            break
        except pa.ArrowInvalid as e:
            error = e
    if t is None:
        raise InputError(path, f"cannot parse: {error}") from None
    dropped = len(lines) - t.num_rows
    if dropped:  # rows with a wrong field count were dropped: find which
        lines = _kept_lines(body, lines, sep.encode(), len(names))
    if empty != unset:
        t = pa.table({n: pc.if_else(pc.equal(t[n], empty), "", t[n]) if n in OPTIONAL_STR else t[n]
                      for n in t.column_names})
    return t, lines, dropped


def _skip_row(row: object) -> str:
    return "skip"


def _kept_lines(body: bytes | memoryview, lines: np.ndarray, sep: bytes, n_fields: int) -> np.ndarray:
    """Line numbers of the rows with the right field count (rare path: a damaged file)."""
    counts = np.array([ln.count(sep) + 1 for ln in bytes(body).split(b"\n") if ln], np.int64)
    return lines[: len(counts)][counts == n_fields]


def _read_json(path: Path, data: bytes) -> tuple[pa.Table, np.ndarray, int]:
    data = data.replace(b"\r\n", b"\n")
    tidy = b"\n\n" not in data and not data.startswith(b"\n")
    raw: list[bytes] = [] if tidy else data.split(b"\n")
    good = [] if tidy else [k for k, ln in enumerate(raw) if ln.strip()]
    try:
        body = data if tidy else b"\n".join(raw[k] for k in good)
        t = pajson.read_json(io.BytesIO(body), parse_options=pajson.ParseOptions(newlines_in_values=False),
                             read_options=pajson.ReadOptions(block_size=1 << 24))
        lines = np.arange(1, t.num_rows + 1, dtype=np.int64) if tidy else np.array(good, np.int64) + 1
        return t, lines, 0
    except pa.ArrowInvalid:
        if tidy:
            raw = data.split(b"\n")
            good = [k for k, ln in enumerate(raw) if ln.strip()]
        # a damaged line: parse line by line (the rare path) and keep the good ones
        import json

        rows, kept = [], []
        for k in good:
            try:
                obj = json.loads(raw[k])
            except ValueError:
                continue
            if isinstance(obj, dict):
                rows.append(obj)
                kept.append(k + 1)
        t = pa.Table.from_pylist(rows) if rows else pa.table({})
        lines = np.array(kept, np.int64)
    return t, lines, len(good) - len(lines)


def _num(t: pa.Table, name: str, kind: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """A column as numbers (nulls where unset); and where a set value did not parse."""
    n = t.num_rows
    if name not in t.column_names:
        return pa.nulls(n, kind), np.zeros(n, np.bool_)
    col = t[name].combine_chunks()
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        ok = pc.match_substring_regex(col, r"^-?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$")
        good = pc.if_else(ok, col, pa.scalar(None, pa.string()))
        out = pc.cast(pc.cast(good, pa.float64()), kind, safe=False)
        bad = (col.is_valid().to_numpy(zero_copy_only=False) & ~ok.fill_null(False).to_numpy(zero_copy_only=False))
        return out, bad
    if pa.types.is_boolean(col.type) or pa.types.is_null(col.type):
        return pa.nulls(n, kind), np.zeros(n, np.bool_)
    return pc.cast(col, kind, safe=False), np.zeros(n, np.bool_)


def _str(t: pa.Table, name: str) -> pa.Array:
    if name not in t.column_names:
        return pa.nulls(t.num_rows, pa.string())
    col = t[name].combine_chunks()
    return col if pa.types.is_string(col.type) else pc.cast(col, pa.string())


def _timestamps(t: pa.Table) -> tuple[pa.Array, np.ndarray]:
    col = t["ts"].combine_chunks()
    if pa.types.is_string(col.type) and len(col) and pc.any(pc.match_substring(col, "T")).as_py():
        # JSON::TS_ISO8601: 2019-01-02T10:33:01.123456Z
        stamp = pc.strptime(pc.utf8_slice_codeunits(col, 0, 19), format="%Y-%m-%dT%H:%M:%S", unit="s",
                            error_is_null=True)
        frac = pc.extract_regex(col, r"^.{19}(?P<f>\.[0-9]+)?")
        frac_s = pc.cast(pc.if_else(pc.is_null(pc.struct_field(frac, [0])), "0", pc.binary_join_element_wise(
            "0", pc.struct_field(frac, [0]), "")), pa.float64(), safe=False)
        secs = pc.add(pc.cast(pc.cast(stamp, pa.int64()), pa.float64()), frac_s.fill_null(0.0))
        bad = col.is_valid().to_numpy(zero_copy_only=False) & stamp.is_null().to_numpy(zero_copy_only=False)
        return secs, bad
    return _num(t, "ts", pa.float64())


def _normalise(path: Path, t: pa.Table, lines: np.ndarray, dropped: int = 0) -> ConnLog:
    missing = [f for f in REQUIRED if f not in t.column_names]
    if missing:
        raise InputError(path, f"no {', '.join(missing)} field: not a conn.log")
    n = t.num_rows
    ts, bad = _timestamps(t)
    cols: dict[str, pa.Array] = {"ts": ts}
    for name in ("id.orig_p", "id.resp_p"):
        arr, b = _num(t, name, pa.int64())
        cols[name.split(".")[1]] = arr
        bad |= b | arr.is_null().to_numpy(zero_copy_only=False)
    for name in OPTIONAL_NUM:
        arr, b = _num(t, name, pa.float64() if name == "duration" else pa.int64())
        cols[name] = arr
        bad |= b
    bad |= ts.is_null().to_numpy(zero_copy_only=False)
    for name in ("id.orig_h", "id.resp_h"):
        col = _str(t, name)
        cols[name.split(".")[1]] = col
        bad |= ~parse_ips(col)[0]
    proto = pc.utf8_lower(_str(t, "proto"))
    known = pc.is_in(proto, pa.array(["tcp", "udp", "icmp"])).fill_null(False).to_numpy(zero_copy_only=False)
    # Zeek 6.1+ logs other IP protocols as unknown_transport with their number in ip_proto
    other = (pc.equal(proto, "unknown_transport").fill_null(False).to_numpy(zero_copy_only=False)
             & cols["ip_proto"].is_valid().to_numpy(zero_copy_only=False))
    bad |= ~(known | other)
    cols["proto"] = proto
    for name in OPTIONAL_STR:
        cols[name.replace("-", "_")] = _str(t, name)
    cols["line"] = pa.array(lines if len(lines) == n else np.arange(1, n + 1), pa.int64())
    table = pa.table({f.name: cols[f.name] for f in CONN_SCHEMA}, schema=CONN_SCHEMA)
    problems: list[InputError] = []
    if dropped:
        problems.append(InputError(path, f"{dropped} line(s) that are not JSON objects or have the wrong number of "
                                         "fields were skipped"))
    skipped = int(bad.sum())
    if skipped:
        first = int(np.asarray(cols["line"])[np.flatnonzero(bad)[0]])
        problems.append(InputError(path, f"line {first}: {skipped} line(s) with a missing or bad ts, address, port or "
                                         f"proto (tcp, udp, icmp) were skipped"))
        table = table.filter(pa.array(~bad))
    return ConnLog(path, table, skipped + dropped, problems)
