"""Addresses: which are local to the site, and their text forms (in bulk).

Local means RFC 1918, loopback, link-local (169.254/16, fe80::/10), unique-local (fc00::/7) or a
network the user names with ``--local-net``. Multicast and broadcast are neither local devices
nor external peers.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

import numpy as np
import pyarrow as pa

from ._jit import allocating, inline_kernel

MAPPED = 0xFFFF00000000

_DEFAULT_LOCAL = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
                  "::1/128", "fe80::/10", "fc00::/7")


class LocalNets:
    """Networks counted as local, as arrays a compiled loop can test against."""

    def __init__(self, extra: list[str] | tuple[str, ...] = ()) -> None:
        nets = [ipaddress.ip_network(n, strict=False) for n in (*_DEFAULT_LOCAL, *extra)]
        self.networks = nets
        rows = []
        for net in nets:
            if net.version == 4:
                base = (MAPPED << 0) | int(net.network_address)
                mask_lo = ((1 << 64) - 1) ^ ((1 << (32 - net.prefixlen)) - 1)
                rows.append((0, base, (1 << 64) - 1, mask_lo, 4))
            else:
                v = int(net.network_address)
                full = ((1 << 128) - 1) ^ ((1 << (128 - net.prefixlen)) - 1)
                rows.append((v >> 64, v & ((1 << 64) - 1), full >> 64, full & ((1 << 64) - 1), 6))
        self.hi = np.array([r[0] for r in rows], np.uint64)
        self.lo = np.array([r[1] for r in rows], np.uint64)
        self.mask_hi = np.array([r[2] for r in rows], np.uint64)
        self.mask_lo = np.array([r[3] for r in rows], np.uint64)

        self.kind = lru_cache(maxsize=1 << 16)(self._kind)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.hi, self.lo, self.mask_hi, self.mask_lo

    def _kind(self, ip: str) -> int:
        """:func:`addr_class` of an address in text: ADDR_EXTERNAL, ADDR_LOCAL or ADDR_UNROUTED
        (multicast, broadcast, unspecified; and text that is no address)."""
        if is_unrouted(ip):
            return ADDR_UNROUTED
        a = ipaddress.ip_address(ip)
        if a.version == 6 and a.ipv4_mapped is not None:
            a = a.ipv4_mapped
        return ADDR_LOCAL if any(a in n for n in self.networks if n.version == a.version) else ADDR_EXTERNAL

    def is_local(self, ip: str) -> bool:
        """A device of the site's: RFC 1918, loopback, link-local, ULA or a ``--local-net``."""
        return self.kind(ip) == ADDR_LOCAL


#: address classes (:func:`addr_class`, :meth:`LocalNets.kind`)
ADDR_EXTERNAL, ADDR_LOCAL, ADDR_UNROUTED = 0, 1, 2


@lru_cache(maxsize=1 << 16)
def is_unrouted(ip: str) -> bool:
    """Multicast, broadcast (255.255.255.255) or unspecified — a DHCP client before its lease, an
    mDNS group: neither a local device nor an external peer (and text that is no address)."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return True
    if a.version == 6 and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    return a.is_multicast or a.is_unspecified or (a.version == 4 and int(a) == 0xFFFFFFFF)


@inline_kernel
def addr_class(hi, lo, net_hi, net_lo, mask_hi, mask_lo):  # type: ignore[no-untyped-def]
    """0 external unicast, 1 local, 2 multicast/broadcast/unspecified (ADDR_*); the one rule,
    compiled (:meth:`LocalNets.kind` is the same for addresses in text)."""
    if hi == 0 and (lo >> np.uint64(32)) == np.uint64(0xFFFF):
        v4 = lo & np.uint64(0xFFFFFFFF)
        if (v4 >> np.uint64(28)) == np.uint64(14) or v4 == np.uint64(0xFFFFFFFF) or v4 == np.uint64(0):
            return 2
    elif (hi >> np.uint64(56)) == np.uint64(0xFF) or (hi == 0 and lo == 0):
        return 2
    for k in range(net_hi.shape[0]):
        if (hi & mask_hi[k]) == net_hi[k] and (lo & mask_lo[k]) == net_lo[k]:
            return 1
    return 0


@allocating
def _format_ips(v6, hi, lo, o, offsets):  # type: ignore[no-untyped-def]
    """Write the text of every address into the flat buffer ``o``; offsets[i]..offsets[i+1]."""
    hexd = np.frombuffer(b"0123456789abcdef", np.uint8)
    g = np.zeros(8, np.int64)
    q = 0
    for i in range(hi.shape[0]):
        offsets[i] = q
        mapped = v6[i] and hi[i] == 0 and (lo[i] >> np.uint64(32)) == np.uint64(0xFFFF)
        if mapped:  # RFC 5952 section 5: ::ffff:a.b.c.d
            for c in (58, 58, 102, 102, 102, 102, 58):
                o[q] = c
                q += 1
        if not v6[i] or mapped:
            v = np.int64(lo[i] & np.uint64(0xFFFFFFFF))
            for k in range(4):
                octet = (v >> (24 - 8 * k)) & 0xFF
                if octet >= 100:
                    o[q] = 48 + octet // 100
                    q += 1
                if octet >= 10:
                    o[q] = 48 + (octet // 10) % 10
                    q += 1
                o[q] = 48 + octet % 10
                q += 1
                if k < 3:
                    o[q] = 46
                    q += 1
            continue
        for k in range(4):
            g[k] = np.int64((hi[i] >> np.uint64(48 - 16 * k)) & np.uint64(0xFFFF))
            g[4 + k] = np.int64((lo[i] >> np.uint64(48 - 16 * k)) & np.uint64(0xFFFF))
        # RFC 5952: compress the first longest run of two or more zero groups
        best, blen, run, rstart = -1, 1, 0, 0
        for k in range(8):
            if g[k] == 0:
                if run == 0:
                    rstart = k
                run += 1
                if run > blen:
                    best, blen = rstart, run
            else:
                run = 0
        k = 0
        while k < 8:
            if k == best:
                o[q] = 58
                q += 1
                if k == 0:
                    o[q] = 58
                    q += 1
                k += blen
                if k >= 8:
                    break
                continue
            v = g[k]
            started = False
            for s in range(12, -4, -4):
                d = (v >> s) & 0xF
                if d or started or s == 0:
                    o[q] = hexd[d]
                    q += 1
                    started = True
            if k < 7:
                o[q] = 58
                q += 1
            k += 1
    offsets[hi.shape[0]] = q


def format_ips(v6: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> pa.Array:
    """Text forms of many addresses (IPv4 dotted, IPv6 RFC 5952) as a pyarrow string array."""
    n = len(hi)
    out = np.empty(n * 40 + 1, np.uint8)
    offsets = np.zeros(n + 1, np.int32)
    _format_ips(np.asarray(v6, np.bool_), hi, lo, out, offsets)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(out[: offsets[n]])])


@allocating
def _format_macs(macs, out):  # type: ignore[no-untyped-def]
    hexd = np.frombuffer(b"0123456789abcdef", np.uint8)
    for i in range(macs.shape[0]):
        m = macs[i]
        q = i * 17
        for k in range(6):
            octet = np.int64((m >> np.uint64(40 - 8 * k)) & np.uint64(0xFF))
            out[q] = hexd[octet >> 4]
            out[q + 1] = hexd[octet & 15]
            if k < 5:
                out[q + 2] = 58
            q += 3


def format_macs(macs: np.ndarray) -> pa.Array:
    """'aa:bb:cc:dd:ee:ff' for each 48-bit integer; null where there is none (a value above 48 bits)."""
    macs = np.ascontiguousarray(macs, np.uint64)
    n = len(macs)
    out = np.empty(n * 17 + 1, np.uint8)
    _format_macs(macs, out)
    offsets = np.arange(0, (n + 1) * 17, 17, dtype=np.int32)
    valid = (macs >> np.uint64(48)) == 0
    null_count = int(n - np.count_nonzero(valid))
    mask = None if null_count == 0 else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(pa.string(), n, [mask, pa.py_buffer(offsets), pa.py_buffer(out)],
                                 null_count=null_count)


def mac_str(mac: int) -> str:
    return ":".join(f"{(mac >> s) & 0xFF:02x}" for s in range(40, -8, -8))


def ip_str(v6: bool, hi: int, lo: int) -> str:
    if not v6:
        return str(ipaddress.IPv4Address(lo & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address((hi << 64) | lo))


@inline_kernel
def _parse_v4(d, a, b):  # type: ignore[no-untyped-def]
    """Dotted IPv4 text d[a:b] → (ok, address as an integer)."""
    v = np.uint64(0)
    parts = 0
    cur = -1
    for k in range(a, b + 1):
        c = d[k] if k < b else 46
        if c == 46:
            if cur < 0 or cur > 255:
                return False, np.uint64(0)
            v = (v << np.uint64(8)) | np.uint64(cur)
            parts += 1
            cur = -1
        elif 48 <= c <= 57:
            cur = (0 if cur < 0 else cur * 10) + (c - 48)
            if cur > 255:
                return False, np.uint64(0)
        else:
            return False, np.uint64(0)
    if parts != 4:
        return False, np.uint64(0)
    return True, v


@inline_kernel
def _parse_ip(d, a, b, groups):  # type: ignore[no-untyped-def]
    """Parse the text address d[a:b] (dotted IPv4, or IPv6 with '::' and an optional dotted tail;
    ``groups``: 8 words of scratch). Returns (ok, v6, hi, lo) in the two-word layout (IPv4 as ::ffff:a.b.c.d)."""
    is6 = False
    for k in range(a, b):
        if d[k] == 58:
            is6 = True
            break
    if not is6:
        ok4, v = _parse_v4(d, a, b)
        return ok4, False, np.uint64(0), (np.uint64(0xFFFF00000000) | v) if ok4 else np.uint64(0)
    for q in range(8):
        groups[q] = 0
    n = 0
    gap = -1
    k = a
    if b - a >= 2 and d[a] == 58 and d[a + 1] == 58:
        gap = 0
        k = a + 2
    while k < b:
        # one group, or a dotted IPv4 tail
        e = k
        dotted = False
        while e < b and d[e] != 58:
            if d[e] == 46:
                dotted = True
            e += 1
        if dotted:
            ok, lo4 = _parse_v4(d, k, e)
            if not ok or n > 6 or e != b:
                return False, False, np.uint64(0), np.uint64(0)
            groups[n] = (lo4 >> np.uint64(16)) & np.uint64(0xFFFF)
            groups[n + 1] = lo4 & np.uint64(0xFFFF)
            n += 2
            k = e
            break
        if e == k or e - k > 4 or n >= 8:
            return False, False, np.uint64(0), np.uint64(0)
        g = np.uint64(0)
        for q in range(k, e):
            c = d[q]
            if 48 <= c <= 57:
                x = c - 48
            elif 97 <= c <= 102:
                x = c - 87
            elif 65 <= c <= 70:
                x = c - 55
            else:
                return False, False, np.uint64(0), np.uint64(0)
            g = (g << np.uint64(4)) | np.uint64(x)
        groups[n] = g
        n += 1
        k = e
        if k < b:  # at a ':'
            if k + 1 < b and d[k + 1] == 58:
                if gap >= 0:
                    return False, False, np.uint64(0), np.uint64(0)
                gap = n
                k += 2
            else:
                k += 1
                if k == b:
                    return False, False, np.uint64(0), np.uint64(0)
    if gap >= 0:
        if n > 7:
            return False, False, np.uint64(0), np.uint64(0)
        shift = 8 - n
        for q in range(n - 1, gap - 1, -1):
            groups[q + shift] = groups[q]
        for q in range(gap, gap + shift):
            groups[q] = 0
    elif n != 8:
        return False, False, np.uint64(0), np.uint64(0)
    hi = np.uint64(0)
    lo = np.uint64(0)
    for q in range(4):
        hi = (hi << np.uint64(16)) | groups[q]
        lo = (lo << np.uint64(16)) | groups[q + 4]
    return True, True, hi, lo


@allocating
def _parse_ips(data, offsets, valid, ok, v6, hi, lo):  # type: ignore[no-untyped-def]
    groups = np.zeros(8, np.uint64)
    for i in range(offsets.shape[0] - 1):
        if not valid[i]:
            ok[i] = False
            continue
        ok[i], v6[i], hi[i], lo[i] = _parse_ip(data, offsets[i], offsets[i + 1], groups)


def parse_ips(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Text addresses (an Arrow string array) → (ok, v6, hi, lo) in the flow table's two-word
    layout, parsed in one compiled pass. ``ok`` is False for nulls and text that is no address."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.string()) if not pa.types.is_string(arr.type) else arr
    n = len(arr)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], np.int32, n + 1, arr.offset * 4) if n else np.zeros(1, np.int32)
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None and bufs[2].size else np.zeros(1, np.uint8)
    valid = arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else np.ones(n, np.bool_)
    ok, v6 = np.zeros(n, np.bool_), np.zeros(n, np.bool_)
    hi, lo = np.zeros(n, np.uint64), np.zeros(n, np.uint64)
    _parse_ips(data, offsets, valid, ok, v6, hi, lo)
    return ok, v6, hi, lo


@allocating
def _classify(hi, lo, net_hi, net_lo, mask_hi, mask_lo, out):  # type: ignore[no-untyped-def]
    for i in range(hi.shape[0]):
        out[i] = addr_class(hi[i], lo[i], net_hi, net_lo, mask_hi, mask_lo)


def addr_classes(hi: np.ndarray, lo: np.ndarray, nets: LocalNets) -> np.ndarray:
    """:func:`addr_class` of many addresses: 0 external unicast, 1 local, 2 multicast/broadcast/unspecified."""
    out = np.empty(len(hi), np.uint8)
    _classify(np.ascontiguousarray(hi), np.ascontiguousarray(lo), *nets.arrays(), out)
    return out
