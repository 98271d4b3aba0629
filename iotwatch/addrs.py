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
