"""Columns → JSON lines, in bulk.

A template is a list of literal text pieces and typed column references; a compiled loop writes
every row into one byte buffer. This is what keeps a million ``flow`` events cheap: no Python
dict, no ``json.dumps`` per row. Values are numbers and strings that never need escaping
(addresses, Community IDs, fixed names); anything else goes through ``json.dumps``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ._jit import allocating, inline_kernel

INT, FLOAT, STR, STR_OR_NULL, ISO, HEX2 = 0, 1, 2, 3, 4, 5
_IF, _END = 6, 7  # an optional group: written only where the named int column is non-zero


@dataclass(frozen=True, slots=True)
class Col:
    kind: int
    name: str


@dataclass(frozen=True, slots=True)
class If:
    """``If(column, [pieces...])``: the pieces are written only where ``column`` is non-zero."""

    name: str
    pieces: Sequence[str | Col]


Template = Sequence["str | Col | If"]


@inline_kernel
def _put_uint(out, q, v):  # type: ignore[no-untyped-def]
    if v == 0:
        out[q] = 48
        return q + 1
    k = 0
    x = v
    while x > 0:
        x //= 10
        k += 1
    for j in range(k - 1, -1, -1):
        out[q + j] = 48 + v % 10
        v //= 10
    return q + k


@inline_kernel
def _put_digits(out, q, v, width):  # type: ignore[no-untyped-def]
    for j in range(width - 1, -1, -1):
        out[q + j] = 48 + v % 10
        v //= 10
    return q + width


@allocating
def _format(n, lit_data, lit_off, ops_kind, ops_arg, ops_jump, ints, floats, sdata, soff, svalid, out):  # type: ignore[no-untyped-def]
    q = 0
    hexd = np.frombuffer(b"0123456789abcdef", np.uint8)
    for i in range(n):
        k = -1
        while k + 1 < ops_kind.shape[0]:
            k += 1
            kind = ops_kind[k]
            a = ops_arg[k]
            if kind == 6:
                if ints[a, i] == 0:
                    k = ops_jump[k]
                continue
            if kind == 7:
                continue
            if kind == 5:
                v = ints[a, i]
                out[q] = hexd[(v >> 4) & 15]
                out[q + 1] = hexd[v & 15]
                q += 2
                continue
            if kind == -1:
                for b in range(lit_off[a], lit_off[a + 1]):
                    out[q] = lit_data[b]
                    q += 1
            elif kind == 0:
                v = ints[a, i]
                if v < 0:
                    out[q] = 45
                    q += 1
                    v = -v
                q = _put_uint(out, q, v)
            elif kind == 1:
                x = floats[a, i]
                if not np.isfinite(x):
                    for c in (110, 117, 108, 108):
                        out[q] = c
                        q += 1
                    continue
                if x < 0:
                    out[q] = 45
                    q += 1
                    x = -x
                us = np.int64(np.round(x * 1e6))
                q = _put_uint(out, q, us // 1000000)
                out[q] = 46
                q = _put_digits(out, q + 1, us % 1000000, 6)
            elif kind == 2 or kind == 3:
                if kind == 3 and not svalid[a, i]:
                    for c in (110, 117, 108, 108):
                        out[q] = c
                        q += 1
                    continue
                if kind == 3:
                    out[q] = 34
                    q += 1
                for b in range(soff[a, i], soff[a, i + 1]):
                    out[q] = sdata[b]
                    q += 1
                if kind == 3:
                    out[q] = 34
                    q += 1
            else:  # ISO-8601 UTC from epoch seconds, microseconds
                us = np.int64(np.round(floats[a, i] * 1e6))
                secs = us // 1000000
                days = secs // 86400
                rem = secs - days * 86400
                # civil_from_days (H. Hinnant)
                z = days + 719468
                era = (z if z >= 0 else z - 146096) // 146097
                doe = z - era * 146097
                yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
                y = yoe + era * 400
                doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
                mp = (5 * doy + 2) // 153
                d = doy - (153 * mp + 2) // 5 + 1
                m = mp + 3 if mp < 10 else mp - 9
                if m <= 2:
                    y += 1
                q = _put_digits(out, q, y, 4)
                out[q] = 45
                q = _put_digits(out, q + 1, m, 2)
                out[q] = 45
                q = _put_digits(out, q + 1, d, 2)
                out[q] = 84
                q = _put_digits(out, q + 1, rem // 3600, 2)
                out[q] = 58
                q = _put_digits(out, q + 1, (rem // 60) % 60, 2)
                out[q] = 58
                q = _put_digits(out, q + 1, rem % 60, 2)
                out[q] = 46
                q = _put_digits(out, q + 1, us % 1000000, 6)
                for c in (43, 48, 48, 48, 48):
                    out[q] = c
                    q += 1
    return q


def _string_arrays(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.string())
    n = len(arr)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], np.int32, n + 1, arr.offset * 4).astype(np.int64)
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), bool)
    return data, offsets, valid


def format_lines(template: Template, columns: Mapping[str, np.ndarray | pa.Array], n: int) -> memoryview:
    """Render ``n`` rows of ``template`` (one JSON line each, newline included)."""
    lits: list[bytes] = []
    kinds: list[int] = []
    args: list[int] = []
    jumps: list[int] = []
    int_names: list[str] = []
    float_names: list[str] = []
    str_names: list[str] = []

    def col_index(group: list[str], name: str) -> int:
        if name not in group:
            group.append(name)
        return group.index(name)

    def emit(pieces: Template) -> None:
        for piece in pieces:
            if isinstance(piece, str):
                kinds.append(-1)
                args.append(len(lits))
                jumps.append(0)
                lits.append(piece.encode())
            elif isinstance(piece, If):
                start = len(kinds)
                kinds.append(_IF)
                args.append(col_index(int_names, piece.name))
                jumps.append(0)
                emit(piece.pieces)
                kinds.append(_END)
                args.append(0)
                jumps.append(0)
                jumps[start] = len(kinds) - 1
            else:
                group = {INT: int_names, HEX2: int_names, FLOAT: float_names, ISO: float_names}.get(piece.kind, str_names)
                kinds.append(piece.kind)
                args.append(col_index(group, piece.name))
                jumps.append(0)

    emit(template)
    lit_off = np.zeros(len(lits) + 1, np.int64)
    np.cumsum([len(x) for x in lits], out=lit_off[1:])
    lit_data = np.frombuffer(b"".join(lits) or b"\0", np.uint8)
    ints = np.zeros((max(len(int_names), 1), n), np.int64)
    for k, name in enumerate(int_names):
        ints[k] = np.asarray(columns[name]).astype(np.int64, copy=False)
    floats = np.zeros((max(len(float_names), 1), n), np.float64)
    for k, name in enumerate(float_names):
        floats[k] = np.asarray(columns[name], np.float64)
    parts = [_string_arrays(columns[name]) for name in str_names]  # type: ignore[arg-type]
    soff = np.zeros((max(len(parts), 1), n + 1), np.int64)
    svalid = np.ones((max(len(parts), 1), n), np.bool_)
    base = 0
    for k, (data, off, valid) in enumerate(parts):
        soff[k] = off + base
        svalid[k] = valid
        base += len(data)
    sdata = np.concatenate([p[0] for p in parts]) if parts else np.zeros(1, np.uint8)
    per_row = int(lit_off[-1]) + 21 * kinds.count(INT) + 2 * kinds.count(HEX2) + \
        40 * (kinds.count(FLOAT) + kinds.count(ISO)) + 6 * (kinds.count(STR) + kinds.count(STR_OR_NULL))
    out = np.empty(per_row * n + len(sdata) + 1, np.uint8)
    used = _format(n, lit_data, lit_off, np.array(kinds, np.int64), np.array(args, np.int64),
                   np.array(jumps, np.int64), ints, floats, sdata, soff, svalid, out)
    return memoryview(out[:used])  # type: ignore[arg-type]
